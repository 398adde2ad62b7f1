//! Parsing a twin file on several threads: the calling thread cuts records, workers
//! parse, check ids and fold, and the first error (by line) wins as it would serially.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::model::twin::TwinRecord;
use crate::util::pool;

use super::projection::Reading;
use super::record::{SeenIds, duplicate, parse_record};
use super::splitter::{RecordPos, open_splitter};
use super::{SnapshotError, TwinFile, TwinFormat};

/// A parallel batch is cut at whichever limit comes first. 1 MiB of ~1 KB twins keeps a
/// worker busy for a few milliseconds (cheap channel traffic) while the queue of
/// `2 × threads` batches stays at a few MiB.
const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_RECORDS: usize = 4096;

/// Records cut from the file, parsed by one worker: `bytes` holds them back to back and
/// `ends[i]` is where record `i` ends.
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<(usize, RecordPos)>,
}

impl Batch {
    fn new() -> Batch {
        // Room for the last record that crosses the limit, so the buffer rarely grows.
        Batch { bytes: Vec::with_capacity(BATCH_BYTES + BATCH_BYTES / 4), ends: Vec::with_capacity(BATCH_RECORDS) }
    }

    fn recycle(mut self, spare: &Mutex<Vec<Batch>>) {
        self.bytes.clear();
        self.ends.clear();
        let mut spare = spare.lock().unwrap_or_else(|e| e.into_inner());
        // The queue holds at most `2 × threads` batches; a few more in hand is plenty.
        if spare.len() < 8 {
            spare.push(self);
        }
    }
}

struct WorkerResult<A> {
    acc: A,
    first_error: Option<SnapshotError>,
}

fn keep_first(slot: &mut Option<SnapshotError>, e: SnapshotError) {
    if slot.as_ref().is_none_or(|old| e.line() < old.line()) {
        *slot = Some(e);
    }
}

/// The calling thread cuts the file into batches of records (cheap: no parsing) and
/// `threads` workers parse them, check ids and fold. The queue is bounded, so memory is
/// the batches in flight plus the id set, whatever the fleet size.
pub(super) fn par_fold<T, A, I, F>(
    file: Option<&TwinFile>,
    reading: Reading,
    threads: usize,
    init: I,
    fold: F,
) -> Result<Vec<A>, SnapshotError>
where
    T: TwinRecord,
    A: Send,
    I: Fn() -> A + Sync,
    F: Fn(&mut A, T) + Sync,
{
    let threads = pool::threads_or_cores(threads);
    let Some(file) = file else {
        return Ok((0..threads).map(|_| init()).collect());
    };
    let mut splitter = open_splitter(file)?;
    let stop = AtomicBool::new(false);
    // Spent batches go back to the producer: a fresh 1 MiB buffer per batch, grown by
    // doubling, cost a copy of every byte read and a page fault for every new page.
    let spare: Mutex<Vec<Batch>> = Mutex::new(Vec::new());
    // One set for all workers, not one each merged at the end: the merge held both sets
    // and grew the larger one, the peak of a million-device read. A lock per record is
    // a few dozen nanoseconds against the microseconds of parsing the record.
    let seen: Mutex<SeenIds> = Mutex::new(SeenIds::default());
    let path = file.path.as_path();
    let (producer_error, results) = pool::fan_out(
        threads,
        |feed| {
            let mut producer_error = None;
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut batch = spare.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(Batch::new);
                let filled = loop {
                    match splitter.next_record(&mut batch.bytes) {
                        Ok(Some(pos)) => {
                            batch.ends.push((batch.bytes.len(), pos));
                            if batch.bytes.len() >= BATCH_BYTES || batch.ends.len() >= BATCH_RECORDS {
                                break true;
                            }
                        }
                        Ok(None) => break false,
                        Err(e) => {
                            producer_error = Some(e);
                            break false;
                        }
                    }
                };
                // Records before a framing error are still checked, so that an earlier
                // error in them wins, as it would when reading serially.
                if !batch.ends.is_empty() && !feed.send(batch) {
                    break;
                }
                if !filled {
                    break;
                }
            }
            producer_error
        },
        |batches| worker::<T, A, F>(batches, &stop, &spare, &seen, init(), &fold, path, file.format, &reading),
    );

    let mut first_error = producer_error;
    let mut accs = Vec::with_capacity(results.len());
    for result in results {
        if let Some(e) = result.first_error {
            keep_first(&mut first_error, e);
        }
        accs.push(result.acc);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(accs),
    }
}

#[allow(clippy::too_many_arguments)]
fn worker<T, A, F>(
    batches: pool::Intake<'_, Batch>,
    stop: &AtomicBool,
    spare: &Mutex<Vec<Batch>>,
    seen: &Mutex<SeenIds>,
    mut acc: A,
    fold: &F,
    path: &Path,
    format: TwinFormat,
    reading: &Reading,
) -> WorkerResult<A>
where
    T: TwinRecord,
    F: Fn(&mut A, T),
{
    let mut first_error = None;
    for batch in batches {
        let mut start = 0;
        for &(end, pos) in &batch.ends {
            let bytes = &batch.bytes[start..end];
            start = end;
            let twin = match parse_record::<T>(bytes, pos, path, format, reading) {
                Ok(twin) => twin,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    keep_first(&mut first_error, e);
                    break;
                }
            };
            let dup = seen.lock().unwrap_or_else(|e| e.into_inner()).check(&twin, pos.line);
            if let Some(dup) = dup {
                stop.store(true, Ordering::Relaxed);
                keep_first(&mut first_error, duplicate(T::WHAT, path, dup));
                continue;
            }
            // Once anything failed the result is an error; keep checking (an earlier
            // line may still fail elsewhere) but skip the caller's work.
            if !stop.load(Ordering::Relaxed) {
                fold(&mut acc, twin);
            }
        }
        batch.recycle(spare);
    }
    WorkerResult { acc, first_error }
}
