use std::io;
use std::path::PathBuf;

use crate::util::atomic_file::WriteError;

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
    pub(super) fn line(&self) -> u64 {
        match self {
            SnapshotError::Syntax { line, .. }
            | SnapshotError::NotAnObject { line, .. }
            | SnapshotError::MissingId { line, .. }
            | SnapshotError::Duplicate { line, .. } => *line,
            _ => u64::MAX,
        }
    }
}

impl From<WriteError> for SnapshotError {
    fn from(WriteError { path, source }: WriteError) -> Self {
        SnapshotError::Write { path, source }
    }
}
