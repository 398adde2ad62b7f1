//! The files a snapshot directory holds and how twin files are framed.

use std::path::PathBuf;

pub const CONFIGURATIONS_FILE: &str = "configurations.json";
pub const DEVICES_JSON: &str = "devices.json";
pub const DEVICES_JSONL: &str = "devices.jsonl";
pub const MODULES_JSON: &str = "modules.json";
pub const MODULES_JSONL: &str = "modules.jsonl";
/// When `fleetform snapshot` started reading the twins: `{"twinsReadAt": "<RFC 3339>"}`.
pub const SNAPSHOT_INFO_FILE: &str = "snapshot.json";

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
