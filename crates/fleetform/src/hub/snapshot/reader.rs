//! Reading a snapshot directory: which files it holds, its configurations, and its twins
//! streamed in file order or folded in parallel.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::BufReader;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use crate::model::Configuration;
use crate::model::fleet::Projection;
use crate::model::twin::{ModuleTwin, Twin, TwinRecord};

use super::parallel::par_fold;
use super::projection::Reading;
use super::record::{SeenIds, duplicate, parse_record, syntax_error};
use super::splitter::{RecordPos, Splitter, UTF8_BOM, open_splitter};
use super::{
    CONFIGURATIONS_FILE, DEVICES_JSON, DEVICES_JSONL, MODULES_JSON, MODULES_JSONL, SnapshotError, TwinFile, TwinFormat,
};

/// An opened snapshot directory. Opening only looks at which files exist; the files are
/// read when asked for, so `open` is cheap and errors come with the file that has them.
#[derive(Clone, Debug)]
pub struct Snapshot {
    dir: PathBuf,
    configurations: Option<PathBuf>,
    devices: Option<TwinFile>,
    modules: Option<TwinFile>,
    projection: Projection,
}

impl Snapshot {
    /// Opens `dir`. It must hold both `configurations.json` and a device twin file: a
    /// missing one is an error, never an empty hub or fleet (an explicitly empty file,
    /// `[]` or an empty `.jsonl`, is fine). Module twins are optional. Holding both
    /// `.json` and `.jsonl` of the same twins is an error, since silently preferring one
    /// would plan against the wrong fleet.
    pub fn open(dir: &Path) -> Result<Snapshot, SnapshotError> {
        if !dir.is_dir() {
            return Err(SnapshotError::NotADirectory { dir: dir.to_path_buf() });
        }
        let configurations = Some(dir.join(CONFIGURATIONS_FILE)).filter(|p| p.is_file());
        let devices = find_twin_file(dir, DEVICES_JSON, DEVICES_JSONL)?;
        let modules = find_twin_file(dir, MODULES_JSON, MODULES_JSONL)?;
        match (&configurations, &devices) {
            (None, None) => return Err(SnapshotError::NotASnapshot { dir: dir.to_path_buf() }),
            (None, Some(d)) => {
                return Err(SnapshotError::Incomplete {
                    dir: dir.to_path_buf(),
                    missing: CONFIGURATIONS_FILE,
                    present: file_name(&d.path),
                });
            }
            (Some(_), None) => {
                return Err(SnapshotError::Incomplete {
                    dir: dir.to_path_buf(),
                    missing: "devices.json or devices.jsonl",
                    present: CONFIGURATIONS_FILE.to_string(),
                });
            }
            (Some(_), Some(_)) => {}
        }
        Ok(Snapshot { dir: dir.to_path_buf(), configurations, devices, modules, projection: Projection::Full })
    }

    /// Reads device twins with `projection` from now on (module twins are always whole).
    pub fn with_projection(mut self, projection: Projection) -> Snapshot {
        self.projection = projection;
        self
    }

    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn devices_file(&self) -> Option<&TwinFile> {
        self.devices.as_ref()
    }

    pub fn modules_file(&self) -> Option<&TwinFile> {
        self.modules.as_ref()
    }

    /// The hub's configurations (`configurations.json`, present since `open`). Read whole:
    /// a hub holds at most 100 of them. Duplicate ids are an error.
    pub fn configurations(&self) -> Result<Vec<Configuration>, SnapshotError> {
        let path = self.configurations.clone().unwrap_or_else(|| self.dir.join(CONFIGURATIONS_FILE));
        read_configurations(&path)
    }

    /// Streams the device twins in file order. The reader keeps one twin's bytes and the
    /// set of ids seen (for the duplicate check), never the twins themselves.
    pub fn devices(&self) -> Result<DeviceReader, SnapshotError> {
        TwinReader::open(self.devices.as_ref(), self.projection.clone())
    }

    /// Streams the module twins; empty when the snapshot has none.
    pub fn module_twins(&self) -> Result<ModuleReader, SnapshotError> {
        TwinReader::open(self.modules.as_ref(), Projection::Full)
    }

    /// Parses device twins on `threads` worker threads (0 = one per available core) and
    /// folds each into a per-worker accumulator made by `init`; returns the accumulators.
    /// Twins reach `fold` in no particular order. Errors are the ones the serial reader
    /// would report first (lowest line), and then no accumulator is returned.
    pub fn par_fold_devices<A, I, F>(&self, threads: usize, init: I, fold: F) -> Result<Vec<A>, SnapshotError>
    where
        A: Send,
        I: Fn() -> A + Sync,
        F: Fn(&mut A, Twin) + Sync,
    {
        par_fold::<Twin, A, I, F>(self.devices.as_ref(), Reading::new(&self.projection), threads, init, fold)
    }

    /// [`Snapshot::par_fold_devices`] for module twins.
    pub fn par_fold_module_twins<A, I, F>(&self, threads: usize, init: I, fold: F) -> Result<Vec<A>, SnapshotError>
    where
        A: Send,
        I: Fn() -> A + Sync,
        F: Fn(&mut A, ModuleTwin) + Sync,
    {
        par_fold::<ModuleTwin, A, I, F>(self.modules.as_ref(), Reading::Full, threads, init, fold)
    }

    /// [`Snapshot::par_fold_module_twins`] keeping of each module twin only its ids and
    /// `properties.reported.modules` (what an `$edgeAgent` twin reports running); the
    /// rest is checked as JSON, ids are checked for duplicates, and errors are placed as
    /// for a full read.
    pub fn par_fold_agent_twins<A, I, F>(&self, threads: usize, init: I, fold: F) -> Result<Vec<A>, SnapshotError>
    where
        A: Send,
        I: Fn() -> A + Sync,
        F: Fn(&mut A, ModuleTwin) + Sync,
    {
        par_fold::<ModuleTwin, A, I, F>(self.modules.as_ref(), Reading::AgentReports, threads, init, fold)
    }

    /// Calls `f` for every device twin on `threads` worker threads (0 = all cores).
    pub fn for_each_device_parallel<F>(&self, threads: usize, f: F) -> Result<(), SnapshotError>
    where
        F: Fn(Twin) + Sync,
    {
        self.par_fold_devices(threads, || (), |_, twin| f(twin)).map(drop)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn find_twin_file(dir: &Path, json: &'static str, jsonl: &'static str) -> Result<Option<TwinFile>, SnapshotError> {
    let array = dir.join(json);
    let lines = dir.join(jsonl);
    match (array.is_file(), lines.is_file()) {
        (true, true) => Err(SnapshotError::Ambiguous { dir: dir.to_path_buf(), first: json, second: jsonl }),
        (true, false) => Ok(Some(TwinFile { path: array, format: TwinFormat::Json })),
        (false, true) => Ok(Some(TwinFile { path: lines, format: TwinFormat::JsonLines })),
        (false, false) => Ok(None),
    }
}

/// Reads a `configurations.json` file (also usable on `az iot edge deployment list`
/// output, which is the same array).
pub fn read_configurations(path: &Path) -> Result<Vec<Configuration>, SnapshotError> {
    let bytes = fs::read(path).map_err(|source| SnapshotError::Read { path: path.to_path_buf(), source })?;
    let text = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
    let configurations: Vec<Configuration> = serde_json::from_slice(text).map_err(|e| {
        syntax_error(
            path,
            RecordPos { line: 1, column: 1 },
            &e,
            "configurations.json holds the JSON array `GET /configurations` returns".into(),
        )
    })?;
    let mut ids = HashSet::new();
    for c in &configurations {
        if !ids.insert(c.id.as_str()) {
            return Err(SnapshotError::DuplicateConfiguration { file: path.to_path_buf(), id: c.id.to_string() });
        }
    }
    Ok(configurations)
}

/// Streams twins of one kind from a snapshot file, in file order. After the first error
/// the iterator ends: a file with a syntax error cannot be trusted past it.
pub struct TwinReader<T> {
    reading: Reading,
    splitter: Option<Splitter<BufReader<File>>>,
    record: Vec<u8>,
    seen: SeenIds,
    _kind: PhantomData<fn() -> T>,
}

pub type DeviceReader = TwinReader<Twin>;
pub type ModuleReader = TwinReader<ModuleTwin>;

impl<T: TwinRecord> TwinReader<T> {
    fn open(file: Option<&TwinFile>, projection: Projection) -> Result<Self, SnapshotError> {
        Ok(TwinReader {
            reading: Reading::new(&projection),
            splitter: file.map(open_splitter).transpose()?,
            record: Vec::new(),
            seen: SeenIds::default(),
            _kind: PhantomData,
        })
    }

    fn read_next(&mut self) -> Result<Option<T>, SnapshotError> {
        let Some(splitter) = &mut self.splitter else {
            return Ok(None);
        };
        self.record.clear();
        let Some(pos) = splitter.next_record(&mut self.record)? else {
            return Ok(None);
        };
        let twin: T = parse_record(&self.record, pos, &splitter.path, splitter.format, &self.reading)?;
        if let Some(dup) = self.seen.check(&twin, pos.line) {
            return Err(duplicate(T::WHAT, &splitter.path, dup));
        }
        Ok(Some(twin))
    }
}

impl<T: TwinRecord> Iterator for TwinReader<T> {
    type Item = Result<T, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.read_next() {
            Ok(Some(twin)) => Some(Ok(twin)),
            Ok(None) => {
                self.splitter = None;
                None
            }
            Err(e) => {
                self.splitter = None;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::snapshot::SnapshotWriter;
    use crate::model::Priority;

    #[test]
    fn open_needs_snapshot_files_and_rejects_ambiguity() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Snapshot::open(&dir.path().join("nope")), Err(SnapshotError::NotADirectory { .. })));
        let e = Snapshot::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("expected configurations.json and devices.json or devices.jsonl"));
        fs::write(dir.path().join(MODULES_JSONL), "").unwrap();
        assert!(matches!(Snapshot::open(dir.path()), Err(SnapshotError::NotASnapshot { .. })));

        fs::write(dir.path().join(DEVICES_JSONL), "{\"deviceId\":\"a\"}\n").unwrap();
        let e = Snapshot::open(dir.path()).unwrap_err();
        assert!(matches!(&e, SnapshotError::Incomplete { missing: CONFIGURATIONS_FILE, .. }), "{e:?}");
        fs::write(dir.path().join(CONFIGURATIONS_FILE), "[]").unwrap();
        let snap = Snapshot::open(dir.path()).unwrap();
        assert!(snap.configurations().unwrap().is_empty());
        assert_eq!(snap.devices().unwrap().count(), 1);
        assert_eq!(snap.module_twins().unwrap().count(), 0);

        fs::write(dir.path().join(DEVICES_JSON), "[]").unwrap();
        assert!(matches!(Snapshot::open(dir.path()), Err(SnapshotError::Ambiguous { first: DEVICES_JSON, .. })));
    }

    #[test]
    fn configurations_roundtrip_and_duplicates_fail() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter::create(dir.path()).unwrap();
        let configs = vec![
            Configuration {
                id: "campus-base".into(),
                priority: Priority(10),
                target_condition: "tags.environment='prod'".into(),
                ..Default::default()
            },
            Configuration { id: "canary".into(), priority: Priority(20), ..Default::default() },
        ];
        writer.write_configurations(&configs).unwrap();
        writer.write_devices(TwinFormat::JsonLines, [0u8; 0]).unwrap();
        let snap = Snapshot::open(dir.path()).unwrap();
        assert_eq!(snap.configurations().unwrap(), configs);

        fs::write(dir.path().join(CONFIGURATIONS_FILE), r#"[{"id":"a"},{"id":"a"}]"#).unwrap();
        assert!(matches!(
            snap.configurations(),
            Err(SnapshotError::DuplicateConfiguration { id, .. }) if id == "a"
        ));
        fs::write(dir.path().join(CONFIGURATIONS_FILE), "[\n {\"id\": 5}\n]").unwrap();
        let e = snap.configurations().unwrap_err();
        assert!(matches!(e, SnapshotError::Syntax { line: 2, .. }), "{e:?}");
    }
}
