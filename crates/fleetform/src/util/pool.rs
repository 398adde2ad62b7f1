//! A bounded fan-out: one producer on the calling thread, a fixed set of scoped workers.
//!
//! Not rayon: the producer here is a sequential reader (a file cut into batches) whose
//! pace must be held back by the workers, which a bounded channel does directly.

use std::sync::{Arc, Mutex, mpsc};

/// `threads`, or one per available core when it is 0.
pub fn threads_or_cores(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Where the producer puts jobs.
pub struct Feed<J> {
    sender: mpsc::SyncSender<J>,
}

impl<J> Feed<J> {
    /// Queues a job, waiting while the queue is full; false once every worker has stopped
    /// (the producer should stop too: nobody will take the job).
    pub fn send(&self, job: J) -> bool {
        self.sender.send(job).is_ok()
    }
}

/// The jobs one worker takes, until the producer is done and the queue is empty.
pub struct Intake<'a, J> {
    receiver: &'a Mutex<mpsc::Receiver<J>>,
}

impl<J> Iterator for Intake<'_, J> {
    type Item = J;

    fn next(&mut self) -> Option<J> {
        // A poisoned lock only means another worker panicked; `fan_out` re-raises that
        // panic, so this worker just stops.
        let guard = self.receiver.lock().ok()?;
        guard.recv().ok()
    }
}

/// Runs `produce` on the calling thread while `threads` workers run `work`, each over its
/// share of the jobs; returns what the producer and each worker returned. At most
/// `2 × threads` jobs wait in the queue, so memory stays bounded however much is
/// produced. A panic in a worker is re-raised here.
pub fn fan_out<J, P, R>(
    threads: usize,
    produce: impl FnOnce(&Feed<J>) -> P,
    work: impl Fn(Intake<'_, J>) -> R + Sync,
) -> (P, Vec<R>)
where
    J: Send,
    R: Send,
{
    let threads = threads.max(1);
    let (sender, receiver) = mpsc::sync_channel::<J>(threads * 2);
    // Workers own the receiver: if they all stop (a panic), it is dropped and the
    // producer's `send` fails instead of blocking on a full queue forever.
    let receiver = Arc::new(Mutex::new(receiver));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                let work = &work;
                scope.spawn(move || work(Intake { receiver: &receiver }))
            })
            .collect();
        drop(receiver);
        let feed = Feed { sender };
        let produced = produce(&feed);
        // Closing the queue is what ends the workers' intake.
        drop(feed);
        let results =
            workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect();
        (produced, results)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_reaches_one_worker() {
        let (sent, sums) =
            fan_out(3, |feed| (1..=1000u64).take_while(|&n| feed.send(n)).count(), |jobs| jobs.sum::<u64>());
        assert_eq!(sent, 1000);
        assert_eq!(sums.len(), 3);
        assert_eq!(sums.iter().sum::<u64>(), 500_500);
    }

    #[test]
    fn a_producer_stops_when_the_workers_are_gone() {
        let result = std::panic::catch_unwind(|| {
            fan_out(
                2,
                |feed| while feed.send(0u8) {},
                |mut jobs| {
                    jobs.next();
                    panic!("worker gave up");
                },
            )
        });
        assert!(result.is_err());
    }
}
