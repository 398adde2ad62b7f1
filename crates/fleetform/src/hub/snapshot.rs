//! The snapshot directory: a hub kept as JSON files (DESIGN.md "Hub backends").
//!
//! ```text
//! configurations.json   the list endpoint's array (`GET /configurations`)
//! devices.json          device twins as one JSON array (`POST /devices/query`, `SELECT * FROM devices`)
//!   or devices.jsonl    one device twin per line, for large fleets
//! modules.json[l]       optional module twins (`GET /twins/{d}/modules/{m}`)
//! ```
//!
//! Twins are never all held at once: a plan over 1,000,000 devices reads each twin, folds
//! it into its result and drops it. Both twin formats are cut into records (one twin's
//! bytes) by `Splitter` before serde_json sees them, which keeps memory bounded by the
//! largest twin, lets the parallel reader hand records to worker threads, and lets every
//! error name the file, line and column where the twin starts.
//!
//! Writes go through [`AtomicFile`] (temp file in the same directory, fsync, rename, fsync
//! directory) so that a crash leaves either the old file or the new one, never a torn one.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use serde::Serialize;
use serde_json::Value;
use tempfile::NamedTempFile;

use crate::model::Configuration;
pub use crate::model::fleet::Projection;
use crate::model::twin::{ModuleTwin, Twin, TwinRecord, TwinShapeError};

pub const CONFIGURATIONS_FILE: &str = "configurations.json";
pub const DEVICES_JSON: &str = "devices.json";
pub const DEVICES_JSONL: &str = "devices.jsonl";
pub const MODULES_JSON: &str = "modules.json";
pub const MODULES_JSONL: &str = "modules.jsonl";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// Read buffer for twin files: large enough that `fill_buf` rarely splits a twin.
const READ_BUFFER: usize = 256 * 1024;
/// A parallel batch is cut at whichever limit comes first. 1 MiB of ~1 KB twins keeps a
/// worker busy for a few milliseconds (cheap channel traffic) while the queue of
/// `2 × threads` batches stays at a few MiB.
const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_RECORDS: usize = 4096;

/// Everything that can go wrong reading or writing a snapshot directory.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SnapshotError {
    #[error("snapshot directory {} does not exist or is not a directory", dir.display())]
    #[diagnostic(
        code(fleetform::snapshot::not_a_directory),
        help("--hub takes a directory holding configurations.json and devices.json or devices.jsonl")
    )]
    NotADirectory { dir: PathBuf },

    #[error(
        "not a snapshot directory: {}: expected configurations.json and devices.json or devices.jsonl",
        dir.display()
    )]
    #[diagnostic(
        code(fleetform::snapshot::not_a_snapshot),
        help(
            "create one with `fleetform snapshot --hub <connection> --out DIR` or `fleetform hub generate --out DIR`"
        )
    )]
    NotASnapshot { dir: PathBuf },

    /// Half a snapshot: reading it as a hub without deployments (or without devices)
    /// would plan deletions or report an empty fleet from what is only a copying mistake.
    #[error("incomplete snapshot directory {}: {missing} is missing (it holds {present})", dir.display())]
    #[diagnostic(
        code(fleetform::snapshot::incomplete),
        help(
            "a snapshot needs both configurations.json and devices.json or devices.jsonl; make a complete one with `fleetform snapshot --hub <connection> --out DIR`, or write `[]` into the missing file if the hub really has none"
        )
    )]
    Incomplete { dir: PathBuf, missing: &'static str, present: String },

    #[error("{}: both {first} and {second} exist", dir.display())]
    #[diagnostic(
        code(fleetform::snapshot::ambiguous),
        help("keep one of them: .json holds a JSON array of twins, .jsonl one twin per line")
    )]
    Ambiguous { dir: PathBuf, first: &'static str, second: &'static str },

    #[error("cannot read {}: {source}", path.display())]
    #[diagnostic(code(fleetform::snapshot::read))]
    Read { path: PathBuf, source: io::Error },

    #[error("cannot write {}: {source}", path.display())]
    #[diagnostic(code(fleetform::snapshot::write), help("the previous file, if any, is left untouched"))]
    Write { path: PathBuf, source: io::Error },

    #[error("malformed JSON at {}:{line}:{column}: {message}", file.display())]
    #[diagnostic(code(fleetform::snapshot::syntax))]
    Syntax {
        file: PathBuf,
        line: u64,
        column: u64,
        message: String,
        #[help]
        help: String,
    },

    #[error("{what} at {}:{line} is not a JSON object", file.display())]
    #[diagnostic(
        code(fleetform::snapshot::not_an_object),
        help("each twin is one JSON object; .json files hold an array of them, .jsonl files one per line")
    )]
    NotAnObject { what: &'static str, file: PathBuf, line: u64 },

    #[error("twin without {field} at {}:{line}", file.display())]
    #[diagnostic(
        code(fleetform::snapshot::missing_id),
        help(
            "every {what} needs a non-empty string `{field}`; export twins with `SELECT * FROM devices` so that ids are included"
        )
    )]
    MissingId { what: &'static str, field: &'static str, file: PathBuf, line: u64 },

    #[error("duplicate {what} {key:?} at {}:{line} (first at line {first_line})", file.display())]
    #[diagnostic(
        code(fleetform::snapshot::duplicate),
        help("a hub holds one twin per id; the snapshot was probably concatenated from overlapping exports")
    )]
    Duplicate { what: &'static str, key: String, file: PathBuf, line: u64, first_line: u64 },

    #[error("duplicate configuration id {id:?} in {}", file.display())]
    #[diagnostic(
        code(fleetform::snapshot::duplicate_configuration),
        help("configuration ids are unique on a hub; remove one of the entries")
    )]
    DuplicateConfiguration { file: PathBuf, id: String },
}

impl SnapshotError {
    /// The line the error points at, for picking the first of several errors found by
    /// parallel workers (so that the parallel reader reports what the serial one would).
    fn line(&self) -> u64 {
        match self {
            SnapshotError::Syntax { line, .. }
            | SnapshotError::NotAnObject { line, .. }
            | SnapshotError::MissingId { line, .. }
            | SnapshotError::Duplicate { line, .. } => *line,
            _ => u64::MAX,
        }
    }
}

/// Which framing a twin file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwinFormat {
    /// One JSON array of twin objects (the query endpoint's and `az`'s output).
    Json,
    /// One twin object per line; blank lines are ignored.
    JsonLines,
}

/// A twin file found in a snapshot directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwinFile {
    pub path: PathBuf,
    pub format: TwinFormat,
}

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

    pub fn projection(&self) -> Projection {
        self.projection
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
        TwinReader::open(self.devices.as_ref(), self.projection)
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
        par_fold::<Twin, A, I, F>(self.devices.as_ref(), self.projection, threads, init, fold)
    }

    /// [`Snapshot::par_fold_devices`] for module twins.
    pub fn par_fold_module_twins<A, I, F>(&self, threads: usize, init: I, fold: F) -> Result<Vec<A>, SnapshotError>
    where
        A: Send,
        I: Fn() -> A + Sync,
        F: Fn(&mut A, ModuleTwin) + Sync,
    {
        par_fold::<ModuleTwin, A, I, F>(self.modules.as_ref(), Projection::Full, threads, init, fold)
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
            return Err(SnapshotError::DuplicateConfiguration { file: path.to_path_buf(), id: c.id.clone() });
        }
    }
    Ok(configurations)
}

/// Where a record starts in its file (1-based line and byte column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordPos {
    line: u64,
    column: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArrayState {
    Start,
    First,
    AfterElement,
    Done,
}

/// Cuts a twin file into records, one twin's bytes each, without parsing them.
///
/// serde_json has no pull iterator over the elements of an array read from a stream (its
/// `StreamDeserializer` takes whitespace-separated values, and a `SeqAccess` visitor is
/// push-only), so for `.json` the array's framing is scanned here: commas, brackets and
/// strings are tracked just enough to find where each top-level object ends. What is
/// inside an object is left to serde_json, which reports any error in it.
struct Splitter<R> {
    reader: R,
    path: PathBuf,
    format: TwinFormat,
    state: ArrayState,
    /// Current line (1-based) and bytes consumed on it.
    line: u64,
    column: u64,
}

impl<R: BufRead> Splitter<R> {
    fn new(reader: R, path: PathBuf, format: TwinFormat) -> Self {
        Splitter {
            reader,
            path,
            format,
            state: ArrayState::Start,
            line: match format {
                TwinFormat::Json => 1,
                TwinFormat::JsonLines => 0,
            },
            column: 0,
        }
    }

    /// Appends the next record's bytes to `out` and returns where it starts, or `None`
    /// at the end of the file.
    fn next_record(&mut self, out: &mut Vec<u8>) -> Result<Option<RecordPos>, SnapshotError> {
        match self.format {
            TwinFormat::JsonLines => self.next_line(out),
            TwinFormat::Json => self.next_element(out),
        }
    }

    fn next_line(&mut self, out: &mut Vec<u8>) -> Result<Option<RecordPos>, SnapshotError> {
        loop {
            let start = out.len();
            let n = self.reader.read_until(b'\n', out).map_err(|source| self.read_error(source))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if out.last() == Some(&b'\n') {
                out.pop();
            }
            if out.last() == Some(&b'\r') {
                out.pop();
            }
            let mut column = 1;
            if self.line == 1 && out[start..].starts_with(UTF8_BOM) {
                out.drain(start..start + UTF8_BOM.len());
                column += UTF8_BOM.len() as u64;
            }
            if out[start..].iter().all(u8::is_ascii_whitespace) {
                out.truncate(start);
                continue;
            }
            return Ok(Some(RecordPos { line: self.line, column }));
        }
    }

    fn next_element(&mut self, out: &mut Vec<u8>) -> Result<Option<RecordPos>, SnapshotError> {
        loop {
            match self.state {
                ArrayState::Start => {
                    let buf = self.reader.fill_buf().map_err(|e| Self::io(&self.path, e))?;
                    if buf.starts_with(UTF8_BOM) {
                        self.reader.consume(UTF8_BOM.len());
                    }
                    match self.peek_non_ws()? {
                        Some(b'[') => {
                            self.bump();
                            self.state = ArrayState::First;
                        }
                        found => return Err(self.unexpected(found, "a JSON array of twins `[`")),
                    }
                }
                ArrayState::First => match self.peek_non_ws()? {
                    Some(b']') => {
                        self.bump();
                        self.state = ArrayState::Done;
                    }
                    Some(b'{') => return self.element(out).map(Some),
                    found => return Err(self.unexpected(found, "a twin object `{` or `]`")),
                },
                ArrayState::AfterElement => match self.peek_non_ws()? {
                    Some(b',') => {
                        self.bump();
                        match self.peek_non_ws()? {
                            Some(b'{') => return self.element(out).map(Some),
                            found => {
                                return Err(self.unexpected(found, "a twin object `{` after `,`"));
                            }
                        }
                    }
                    Some(b']') => {
                        self.bump();
                        self.state = ArrayState::Done;
                    }
                    found => return Err(self.unexpected(found, "`,` or `]`")),
                },
                ArrayState::Done => {
                    return match self.peek_non_ws()? {
                        None => Ok(None),
                        found => Err(self.unexpected(found, "the end of the file after `]`")),
                    };
                }
            }
        }
    }

    /// Copies one object, starting at the `{` under the cursor, into `out`.
    fn element(&mut self, out: &mut Vec<u8>) -> Result<RecordPos, SnapshotError> {
        let pos = RecordPos { line: self.line, column: self.column + 1 };
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        loop {
            let buf = self.reader.fill_buf().map_err(|e| Self::io(&self.path, e))?;
            if buf.is_empty() {
                return Err(SnapshotError::Syntax {
                    file: self.path.clone(),
                    line: pos.line,
                    column: pos.column,
                    message: "end of file inside this twin object".into(),
                    help: "the file was probably cut short; re-export it".into(),
                });
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if b == b'\n' {
                    self.line += 1;
                    self.column = 0;
                } else {
                    self.column += 1;
                }
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    // Brackets are counted without matching `{` to `}`: a mismatch is
                    // still inside this record, and serde_json reports it precisely.
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(buf.len());
            out.extend_from_slice(&buf[..take]);
            self.reader.consume(take);
            if end.is_some() {
                self.state = ArrayState::AfterElement;
                return Ok(pos);
            }
        }
    }

    /// Skips whitespace and returns the next byte without consuming it.
    fn peek_non_ws(&mut self) -> Result<Option<u8>, SnapshotError> {
        loop {
            let buf = self.reader.fill_buf().map_err(|e| Self::io(&self.path, e))?;
            if buf.is_empty() {
                return Ok(None);
            }
            let mut skipped = 0;
            for &b in buf {
                match b {
                    b'\n' => {
                        self.line += 1;
                        self.column = 0;
                    }
                    b' ' | b'\t' | b'\r' => self.column += 1,
                    other => {
                        self.reader.consume(skipped);
                        return Ok(Some(other));
                    }
                }
                skipped += 1;
            }
            self.reader.consume(skipped);
        }
    }

    /// Consumes the (non-newline) byte `peek_non_ws` returned.
    fn bump(&mut self) {
        self.reader.consume(1);
        self.column += 1;
    }

    fn unexpected(&self, found: Option<u8>, expected: &str) -> SnapshotError {
        let found = match found {
            None => "the end of the file".to_string(),
            Some(b) if b.is_ascii_graphic() => format!("`{}`", b as char),
            Some(b) => format!("byte 0x{b:02x}"),
        };
        SnapshotError::Syntax {
            file: self.path.clone(),
            line: self.line,
            column: self.column + 1,
            message: format!("expected {expected}, found {found}"),
            help: "a .json twin file holds one JSON array of twin objects: [{\"deviceId\": ...}, ...]".into(),
        }
    }

    fn read_error(&self, source: io::Error) -> SnapshotError {
        Self::io(&self.path, source)
    }

    fn io(path: &Path, source: io::Error) -> SnapshotError {
        SnapshotError::Read { path: path.to_path_buf(), source }
    }
}

fn open_splitter(file: &TwinFile) -> Result<Splitter<BufReader<File>>, SnapshotError> {
    let handle = File::open(&file.path).map_err(|source| SnapshotError::Read { path: file.path.clone(), source })?;
    Ok(Splitter::new(BufReader::with_capacity(READ_BUFFER, handle), file.path.clone(), file.format))
}

/// The part of a serde_json error message without its " at line L column C" suffix,
/// which would be wrong here since serde_json only saw one record.
fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// Maps a serde_json error inside a record to a position in the file.
fn syntax_error(file: &Path, pos: RecordPos, e: &serde_json::Error, help: String) -> SnapshotError {
    let (line, column) = (e.line() as u64, e.column() as u64);
    let (line, column) =
        if line <= 1 { (pos.line, pos.column + column.saturating_sub(1)) } else { (pos.line + line - 1, column) };
    SnapshotError::Syntax { file: file.to_path_buf(), line, column, message: serde_message(e), help }
}

/// Top-level twin members [`Projection::Targeting`] keeps, besides `properties.reported`.
const TARGETING_MEMBERS: [&str; 3] = ["deviceId", "capabilities", "tags"];

/// A map key, borrowed from the input when it has no escapes (most keys): skipped
/// members then cost no allocation at all.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Builds the projected twin. Anything that is not an object becomes `null`, so that the
/// caller reports "not a JSON object" exactly as for a full read.
struct TargetingVisitor {
    /// Inside `properties`: keep `reported` only.
    properties: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for TargetingVisitor {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TargetingVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a twin object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Value, M::Error> {
        use serde::de::IgnoredAny;
        let mut out = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            // Property names are case-insensitive in the query language.
            let is = |name: &str| key.eq_ignore_ascii_case(name);
            if self.properties {
                if is("reported") {
                    out.insert(key.into_owned(), map.next_value::<Value>()?);
                } else if is("desired") {
                    // Not kept, but its shape is checked like a full read's (a `desired`
                    // that is not an object stands as `null`), so the wrong shape is
                    // reported whichever way the twin was read.
                    if !map.next_value_seed(IsObject)? {
                        out.insert(key.into_owned(), Value::Null);
                    }
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            } else if TARGETING_MEMBERS.iter().any(|m| is(m)) {
                out.insert(key.into_owned(), map.next_value::<Value>()?);
            } else if is("properties") {
                let properties = map.next_value_seed(TargetingVisitor { properties: true })?;
                out.insert(key.into_owned(), properties);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Value, S::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Whether a value is a JSON object, read without building it.
struct IsObject;

impl<'de> serde::de::DeserializeSeed<'de> for IsObject {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IsObject {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<bool, M::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        Ok(true)
    }

    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<bool, S::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

fn parse_value(bytes: &[u8], projection: Projection) -> Result<Value, serde_json::Error> {
    match projection {
        Projection::Full => serde_json::from_slice(bytes),
        Projection::Targeting => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = serde::de::DeserializeSeed::deserialize(TargetingVisitor { properties: false }, &mut de)?;
            de.end()?;
            Ok(value)
        }
    }
}

fn parse_record<T: TwinRecord>(
    bytes: &[u8],
    pos: RecordPos,
    file: &Path,
    format: TwinFormat,
    projection: Projection,
) -> Result<T, SnapshotError> {
    let value = parse_value(bytes, projection).map_err(|e| {
        let help = match format {
            TwinFormat::JsonLines => {
                "each line of a .jsonl file is one complete twin object; a pretty-printed array belongs in a .json file"
            }
            TwinFormat::Json => "fix the twin object at this position or re-export the file",
        };
        syntax_error(file, pos, &e, help.into())
    })?;
    T::from_value(value).map_err(|e| match e {
        TwinShapeError::NotAnObject => {
            SnapshotError::NotAnObject { what: T::WHAT, file: file.to_path_buf(), line: pos.line }
        }
        TwinShapeError::MissingField(field) => {
            SnapshotError::MissingId { what: T::WHAT, field, file: file.to_path_buf(), line: pos.line }
        }
    })
}

/// Ids seen so far and the line each was first seen at. Keys are boxed strings (about
/// 60 bytes per device all told), the one per-device cost the readers keep.
#[derive(Default)]
struct SeenIds {
    lines: HashMap<Box<str>, u64>,
    key: String,
}

impl SeenIds {
    /// Records `twin` seen at `line`; on a duplicate returns (key, first line, later line).
    /// Lines may arrive out of order (parallel workers), so the earliest is kept.
    fn check<T: TwinRecord>(&mut self, twin: &T, line: u64) -> Option<(String, u64, u64)> {
        self.key.clear();
        twin.write_key(&mut self.key);
        match self.lines.get_mut(self.key.as_str()) {
            Some(first) => {
                let pair = ((*first).min(line), (*first).max(line));
                *first = pair.0;
                Some((self.key.clone(), pair.0, pair.1))
            }
            None => {
                self.lines.insert(self.key.as_str().into(), line);
                None
            }
        }
    }
}

fn duplicate(what: &'static str, file: &Path, (key, first_line, line): (String, u64, u64)) -> SnapshotError {
    SnapshotError::Duplicate { what, key, file: file.to_path_buf(), line, first_line }
}

/// Streams twins of one kind from a snapshot file, in file order. After the first error
/// the iterator ends: a file with a syntax error cannot be trusted past it.
pub struct TwinReader<T> {
    projection: Projection,
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
            projection,
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
        let twin: T = parse_record(&self.record, pos, &splitter.path, splitter.format, self.projection)?;
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

/// Records cut from the file, parsed by one worker: `bytes` holds them back to back and
/// `ends[i]` is where record `i` ends.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<(usize, RecordPos)>,
}

struct WorkerResult<A> {
    acc: A,
    seen: SeenIds,
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
fn par_fold<T, A, I, F>(
    file: Option<&TwinFile>,
    projection: Projection,
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
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let Some(file) = file else {
        return Ok((0..threads).map(|_| init()).collect());
    };
    let mut splitter = open_splitter(file)?;
    let stop = AtomicBool::new(false);
    let (sender, receiver) = mpsc::sync_channel::<Batch>(threads * 2);
    // Workers own the receiver: if they all stop (a panic in `fold`), it is dropped and
    // the producer's `send` fails instead of blocking on a full queue forever.
    let receiver = Arc::new(Mutex::new(receiver));

    let (producer_error, results) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                let (stop, init, fold) = (&stop, &init, &fold);
                let path = file.path.as_path();
                scope.spawn(move || worker::<T, A, F>(&receiver, stop, init(), fold, path, file.format, projection))
            })
            .collect();
        drop(receiver);

        let mut producer_error = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let mut batch = Batch::default();
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
            if !batch.ends.is_empty() && sender.send(batch).is_err() {
                break;
            }
            if !filled {
                break;
            }
        }
        drop(sender);
        let results: Vec<WorkerResult<A>> =
            workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect();
        (producer_error, results)
    });

    let mut first_error = producer_error;
    let mut accs = Vec::with_capacity(results.len());
    let mut merged: Option<SeenIds> = None;
    for result in results {
        if let Some(e) = result.first_error {
            keep_first(&mut first_error, e);
        }
        accs.push(result.acc);
        // Ids seen by different workers are merged into the largest set, moving keys.
        let (mut big, small) = match merged.take() {
            None => {
                merged = Some(result.seen);
                continue;
            }
            Some(m) if m.lines.len() >= result.seen.lines.len() => (m, result.seen),
            Some(m) => (result.seen, m),
        };
        for (key, line) in small.lines {
            match big.lines.get_mut(&key) {
                Some(first) => {
                    let pair = ((*first).min(line), (*first).max(line));
                    *first = pair.0;
                    keep_first(&mut first_error, duplicate(T::WHAT, &file.path, (key.into(), pair.0, pair.1)));
                }
                None => {
                    big.lines.insert(key, line);
                }
            }
        }
        merged = Some(big);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(accs),
    }
}

fn worker<T, A, F>(
    receiver: &Mutex<mpsc::Receiver<Batch>>,
    stop: &AtomicBool,
    mut acc: A,
    fold: &F,
    path: &Path,
    format: TwinFormat,
    projection: Projection,
) -> WorkerResult<A>
where
    T: TwinRecord,
    F: Fn(&mut A, T),
{
    let mut seen = SeenIds::default();
    let mut first_error = None;
    loop {
        // A poisoned lock only means another worker panicked; the scope re-raises that
        // panic, so this worker just stops.
        let next = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => break,
        };
        let Ok(batch) = next else { break };
        let mut start = 0;
        for &(end, pos) in &batch.ends {
            let bytes = &batch.bytes[start..end];
            start = end;
            let twin = match parse_record::<T>(bytes, pos, path, format, projection) {
                Ok(twin) => twin,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    keep_first(&mut first_error, e);
                    break;
                }
            };
            if let Some(dup) = seen.check(&twin, pos.line) {
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
    }
    WorkerResult { acc, seen, first_error }
}

/// A file written atomically: bytes go to a temp file beside the target, and
/// [`AtomicFile::commit`] syncs it, renames it over the target and syncs the directory.
/// Dropping it uncommitted removes the temp file and leaves the target as it was.
pub struct AtomicFile {
    target: PathBuf,
    writer: BufWriter<NamedTempFile>,
    bytes: u64,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile, SnapshotError> {
        Self::create_with(target, false)
    }

    /// Like [`AtomicFile::create`], but the file is owner-only (0600) whatever the file it
    /// replaces allowed: for files that hold credentials (snapshots, saved plans).
    pub fn create_private(target: &Path) -> Result<AtomicFile, SnapshotError> {
        Self::create_with(target, true)
    }

    fn create_with(target: &Path, private: bool) -> Result<AtomicFile, SnapshotError> {
        let write_error = |source| SnapshotError::Write { path: target.to_path_buf(), source };
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // A dot-prefixed name keeps an interrupted write out of listings and out of the
        // snapshot reader's file names.
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // Temp files are private (0600) by default; the file replaces a snapshot file that
        // others may read, so keep the target's permissions, or make it like any new
        // file (0666 less the umask).
        match fs::metadata(target) {
            // tempfile creates 0600 files, which is what a private file wants.
            _ if private => {}
            Ok(meta) => {
                builder.permissions(meta.permissions());
            }
            Err(_) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    builder.permissions(fs::Permissions::from_mode(0o666));
                }
            }
        }
        let temp = builder.tempfile_in(dir).map_err(write_error)?;
        Ok(AtomicFile { target: target.to_path_buf(), writer: BufWriter::with_capacity(READ_BUFFER, temp), bytes: 0 })
    }

    /// The file this will replace on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Makes the new content durable and visible; returns the bytes written.
    pub fn commit(self) -> Result<u64, SnapshotError> {
        let target = self.target;
        let write_error = |source| SnapshotError::Write { path: target.clone(), source };
        let temp = self.writer.into_inner().map_err(|e| write_error(e.into_error()))?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(&target).map_err(|e| write_error(e.error))?;
        sync_parent(&target).map_err(write_error)?;
        Ok(self.bytes)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.writer.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// The rename is only durable once the directory entry is; POSIX needs an fsync of the
/// directory for that. Other platforms have no such call (and no need for it).
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Writes the files of a snapshot directory, each atomically. Apply rewrites
/// `configurations.json` through this; `snapshot` and `hub generate` write whole ones.
#[derive(Clone, Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
}

impl SnapshotWriter {
    /// Creates `dir` (and its parents) if needed, owner-only (0700): a snapshot holds the
    /// hub's registry passwords and tokens, so its files are written 0600 as well.
    pub fn create(dir: &Path) -> Result<SnapshotWriter, SnapshotError> {
        let write_error = |source| SnapshotError::Write { path: dir.to_path_buf(), source };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(write_error)?;
        Ok(SnapshotWriter { dir: dir.to_path_buf() })
    }

    /// Makes an existing snapshot directory owner-only too (`snapshot --out` into a
    /// directory made by hand).
    pub fn restrict_dir(&self) -> Result<(), SnapshotError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(|source| SnapshotError::Write { path: self.dir.clone(), source })?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `configurations.json`, pretty-printed (people read and diff it).
    pub fn write_configurations(&self, configurations: &[Configuration]) -> Result<u64, SnapshotError> {
        let path = self.dir.join(CONFIGURATIONS_FILE);
        let mut file = AtomicFile::create_private(&path)?;
        serde_json::to_writer_pretty(&mut file, configurations)
            .map_err(io::Error::from)
            .and_then(|()| file.write_all(b"\n"))
            .map_err(|source| SnapshotError::Write { path: path.clone(), source })?;
        file.commit()
    }

    /// Writes device twins (any `Serialize`, e.g. `Twin::value()` or the generator's
    /// structs) as `devices.jsonl` or a pretty `devices.json`, then removes the other
    /// format's file so the directory stays unambiguous. Returns the bytes written.
    pub fn write_devices<I>(&self, format: TwinFormat, twins: I) -> Result<u64, SnapshotError>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        self.write_twins(DEVICES_JSON, DEVICES_JSONL, format, twins)
    }

    /// Writes module twins as `modules.jsonl` or `modules.json`, like [`Self::write_devices`].
    pub fn write_module_twins<I>(&self, format: TwinFormat, twins: I) -> Result<u64, SnapshotError>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        self.write_twins(MODULES_JSON, MODULES_JSONL, format, twins)
    }

    fn write_twins<I>(
        &self,
        json: &'static str,
        jsonl: &'static str,
        format: TwinFormat,
        twins: I,
    ) -> Result<u64, SnapshotError>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let mut file = self.twin_file(json, jsonl, format)?;
        for twin in twins {
            file.push(&twin)?;
        }
        file.commit()
    }

    /// Opens `devices.jsonl` / `devices.json` for writing twin by twin; for writers that
    /// produce twins alongside something else (the generator writes device and module
    /// twins in one pass).
    pub fn devices_file(&self, format: TwinFormat) -> Result<TwinFileWriter, SnapshotError> {
        self.twin_file(DEVICES_JSON, DEVICES_JSONL, format)
    }

    /// Opens `modules.jsonl` / `modules.json` for writing twin by twin.
    pub fn module_twins_file(&self, format: TwinFormat) -> Result<TwinFileWriter, SnapshotError> {
        self.twin_file(MODULES_JSON, MODULES_JSONL, format)
    }

    fn twin_file(
        &self,
        json: &'static str,
        jsonl: &'static str,
        format: TwinFormat,
    ) -> Result<TwinFileWriter, SnapshotError> {
        let (name, other) = match format {
            TwinFormat::Json => (json, jsonl),
            TwinFormat::JsonLines => (jsonl, json),
        };
        Ok(TwinFileWriter {
            file: AtomicFile::create_private(&self.dir.join(name))?,
            format,
            other: self.dir.join(other),
            records: 0,
            scratch: Vec::new(),
        })
    }
}

/// A twin file being written, one twin at a time, atomically: nothing is visible until
/// [`TwinFileWriter::commit`], which also removes the other format's file (`devices.json`
/// when writing `devices.jsonl` and vice versa) so the directory stays unambiguous.
pub struct TwinFileWriter {
    file: AtomicFile,
    format: TwinFormat,
    other: PathBuf,
    records: u64,
    scratch: Vec<u8>,
}

impl TwinFileWriter {
    /// Appends one twin (any `Serialize`: a `&Value`, `Twin::value()`, a generator struct).
    pub fn push<T: Serialize + ?Sized>(&mut self, twin: &T) -> Result<(), SnapshotError> {
        let result = match self.format {
            TwinFormat::JsonLines => serde_json::to_writer(&mut self.file, twin)
                .map_err(io::Error::from)
                .and_then(|()| self.file.write_all(b"\n")),
            TwinFormat::Json => self.push_pretty(twin),
        };
        result.map_err(|source| SnapshotError::Write { path: self.file.target.clone(), source })?;
        self.records += 1;
        Ok(())
    }

    /// Pretty elements are rendered alone and indented one level, so that the array reads
    /// like one pretty document. Indenting after every newline is safe because JSON
    /// strings cannot hold a raw newline.
    fn push_pretty<T: Serialize + ?Sized>(&mut self, twin: &T) -> io::Result<()> {
        self.scratch.clear();
        serde_json::to_writer_pretty(&mut self.scratch, twin)?;
        let opening: &[u8] = if self.records == 0 { b"[\n  " } else { b",\n  " };
        self.file.write_all(opening)?;
        for (i, line) in self.scratch.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.file.write_all(b"\n  ")?;
            }
            self.file.write_all(line)?;
        }
        Ok(())
    }

    /// Twins pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Closes the array (for `.json`), makes the file durable and visible, removes the
    /// other format's file; returns the bytes written.
    pub fn commit(mut self) -> Result<u64, SnapshotError> {
        if self.format == TwinFormat::Json {
            let closing: &[u8] = if self.records == 0 { b"[]\n" } else { b"\n]\n" };
            self.file
                .write_all(closing)
                .map_err(|source| SnapshotError::Write { path: self.file.target.clone(), source })?;
        }
        let bytes = self.file.commit()?;
        let other = self.other;
        match fs::remove_file(&other) {
            Ok(()) => sync_parent(&other).map_err(|source| SnapshotError::Write { path: other.clone(), source })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SnapshotError::Write { path: other, source });
            }
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split_all(format: TwinFormat, text: &str) -> Result<Vec<(RecordPos, String)>, SnapshotError> {
        let mut s = Splitter::new(text.as_bytes(), PathBuf::from("t"), format);
        let mut out = Vec::new();
        let mut records = Vec::new();
        while let Some(pos) = s.next_record(&mut out)? {
            records.push((pos, String::from_utf8(std::mem::take(&mut out)).unwrap()));
        }
        Ok(records)
    }

    fn pos(line: u64, column: u64) -> RecordPos {
        RecordPos { line, column }
    }

    #[test]
    fn splits_array_elements_with_positions_and_tricky_strings() {
        let text = "\u{feff} [\n  {\"deviceId\":\"a\",\"s\":\"}]\\\"{\"},\n  {\"deviceId\":\"b\",\n \"x\":[{}]}\n]\n";
        let records = split_all(TwinFormat::Json, text).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, pos(2, 3));
        assert_eq!(records[0].1, r#"{"deviceId":"a","s":"}]\"{"}"#);
        assert_eq!(records[1].0, pos(3, 3));
        assert_eq!(records[1].1, "{\"deviceId\":\"b\",\n \"x\":[{}]}");
        assert!(split_all(TwinFormat::Json, " [ ] ").unwrap().is_empty());
    }

    #[test]
    fn array_framing_errors_point_at_the_byte() {
        let cases = [
            ("", 1, 1, "expected a JSON array"),
            ("{\"deviceId\":\"a\"}", 1, 1, "found `{`"),
            ("[{\"deviceId\":\"a\"},\n ]", 2, 2, "after `,`"),
            ("[{\"deviceId\":\"a\"} {}]", 1, 19, "expected `,` or `]`"),
            ("[{\"deviceId\":\"a\"}] x", 1, 20, "end of the file after"),
            ("[1]", 1, 2, "a twin object"),
            ("[{\"deviceId\":\"a\"", 1, 2, "end of file inside"),
        ];
        for (text, line, column, needle) in cases {
            match split_all(TwinFormat::Json, text) {
                Err(SnapshotError::Syntax { line: l, column: c, message, .. }) => {
                    assert_eq!((l, c), (line, column), "{text:?}: {message}");
                    assert!(message.contains(needle), "{text:?}: {message}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn splits_lines_skipping_blank_ones_and_crlf() {
        let records = split_all(TwinFormat::JsonLines, "{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}").unwrap();
        let lines: Vec<_> = records.iter().map(|(p, r)| (p.line, r.as_str())).collect();
        assert_eq!(lines, [(1, "{\"a\":1}"), (4, "{\"b\":2}"), (5, "{\"c\":3}")]);
    }

    #[test]
    fn error_inside_a_record_is_mapped_to_file_position() {
        let file = Path::new("devices.json");
        let e =
            parse_record::<Twin>(b"{\"deviceId\":\n  \"a\" x}", pos(10, 5), file, TwinFormat::Json, Projection::Full)
                .unwrap_err();
        match e {
            SnapshotError::Syntax { line, column, message, .. } => {
                assert_eq!((line, column), (11, 7));
                assert!(!message.contains("at line"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let e = parse_record::<Twin>(b"{\"deviceId\": x}", pos(10, 5), file, TwinFormat::Json, Projection::Full)
            .unwrap_err();
        assert!(matches!(e, SnapshotError::Syntax { line: 10, column: 18, .. }), "{e:?}");
    }

    #[test]
    fn targeting_projection_keeps_what_conditions_can_reference() {
        let file = Path::new("devices.jsonl");
        let text = br#"{"deviceId":"d","etag":"AAA=","Tags":{"a":{"b":1}},"capabilities":{"iotEdge":true},
            "properties":{"desired":{"x":1,"$version":2},"reported":{"fw":"2.4.1"}},"x509Thumbprint":{"p":null}}"#;
        let twin: Twin = parse_record(text, pos(1, 1), file, TwinFormat::JsonLines, Projection::Targeting).unwrap();
        assert_eq!(
            twin.value(),
            &json!({"deviceId":"d","Tags":{"a":{"b":1}},"capabilities":{"iotEdge":true},
                "properties":{"reported":{"fw":"2.4.1"}}})
        );
        assert!(twin.is_edge());
        // Skipped members are still checked as JSON, and positions stay exact.
        let e = parse_record::<Twin>(
            br#"{"deviceId":"d","etag":[1,}"#,
            pos(4, 1),
            file,
            TwinFormat::JsonLines,
            Projection::Targeting,
        )
        .unwrap_err();
        assert!(matches!(e, SnapshotError::Syntax { line: 4, column: 27, .. }), "{e:?}");
        let e =
            parse_record::<Twin>(b"[1]", pos(2, 1), file, TwinFormat::JsonLines, Projection::Targeting).unwrap_err();
        assert!(matches!(e, SnapshotError::NotAnObject { line: 2, .. }), "{e:?}");
        let e =
            parse_record::<Twin>(b"{} x", pos(2, 1), file, TwinFormat::JsonLines, Projection::Targeting).unwrap_err();
        assert!(matches!(e, SnapshotError::Syntax { column: 4, .. }), "{e:?}");
        // `desired` is dropped by the projection, but a wrong shape of it is still seen.
        for (text, wrong) in [
            (&br#"{"deviceId":"d","properties":{"desired":"x","reported":{}}}"#[..], true),
            (br#"{"deviceId":"d","properties":{"desired":[1],"reported":{}}}"#, true),
            (br#"{"deviceId":"d","properties":{"desired":{"a":{"b":1}},"reported":{}}}"#, false),
        ] {
            let twin: Twin = parse_record(text, pos(1, 1), file, TwinFormat::JsonLines, Projection::Targeting).unwrap();
            let full: Twin = parse_record(text, pos(1, 1), file, TwinFormat::JsonLines, Projection::Full).unwrap();
            assert_eq!(crate::hub::shape::issues(&twin), crate::hub::shape::issues(&full));
            assert_eq!(
                crate::hub::shape::issues(&twin).contains(&crate::hub::shape::ShapeIssue::DesiredNotObject),
                wrong
            );
        }
        let e = parse_record::<Twin>(br#"{"tags":{}}"#, pos(3, 1), file, TwinFormat::JsonLines, Projection::Targeting)
            .unwrap_err();
        assert!(matches!(e, SnapshotError::MissingId { line: 3, .. }), "{e:?}");
    }

    #[test]
    fn seen_ids_keep_the_earliest_line() {
        let twin = |id: &str| Twin::from_value(json!({"deviceId": id})).unwrap();
        let mut seen = SeenIds::default();
        assert_eq!(seen.check(&twin("a"), 9), None);
        assert_eq!(seen.check(&twin("a"), 4), Some(("a".into(), 4, 9)));
        assert_eq!(seen.check(&twin("a"), 7), Some(("a".into(), 4, 7)));
        assert_eq!(seen.check(&twin("b"), 1), None);
    }

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
                priority: 10,
                target_condition: "tags.environment='prod'".into(),
                ..Default::default()
            },
            Configuration { id: "canary".into(), priority: 20, ..Default::default() },
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

    #[test]
    fn writing_one_twin_format_removes_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter::create(dir.path()).unwrap();
        let twins = [json!({"deviceId": "a"}), json!({"deviceId": "b"})];
        writer.write_devices(TwinFormat::Json, &twins).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(DEVICES_JSON)).unwrap(),
            "[\n  {\n    \"deviceId\": \"a\"\n  },\n  {\n    \"deviceId\": \"b\"\n  }\n]\n"
        );
        writer.write_devices(TwinFormat::Json, [0u8; 0]).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join(DEVICES_JSON)).unwrap(), "[]\n");
        writer.write_devices(TwinFormat::Json, &twins).unwrap();
        writer.write_devices(TwinFormat::JsonLines, &twins).unwrap();
        assert!(!dir.path().join(DEVICES_JSON).exists());
        writer.write_configurations(&[]).unwrap();
        let ids: Vec<String> = Snapshot::open(dir.path())
            .unwrap()
            .devices()
            .unwrap()
            .map(|t| t.unwrap().device_id().to_string())
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn uncommitted_atomic_file_leaves_target_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.json");
        fs::write(&target, "old").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"new").unwrap();
        drop(f);
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(f.commit().unwrap(), 3);
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["x.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
            AtomicFile::create(&target).unwrap().commit().unwrap();
            let mode = fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640, "keeps the replaced file's permissions");
            AtomicFile::create_private(&target).unwrap().commit().unwrap();
            let mode = fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a private file is owner-only even over a readable one");
        }
    }
}
