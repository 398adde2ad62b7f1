//! Writing a snapshot directory, each file atomically and owner-only.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::Configuration;
use crate::util::atomic_file::{AtomicFile, sync_parent};

use super::{
    CONFIGURATIONS_FILE, DEVICES_JSON, DEVICES_JSONL, MODULES_JSON, MODULES_JSONL, SNAPSHOT_INFO_FILE, SnapshotError,
    TwinFormat,
};

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
        Ok(file.commit()?)
    }

    /// Writes `snapshot.json`: when the twins were read (`plan --twins` says how old they are).
    pub fn write_twins_read_at(&self, at: std::time::SystemTime) -> Result<u64, SnapshotError> {
        let path = self.dir.join(SNAPSHOT_INFO_FILE);
        let mut file = AtomicFile::create_private(&path)?;
        let info = serde_json::json!({ "twinsReadAt": humantime::format_rfc3339_seconds(at).to_string() });
        serde_json::to_writer_pretty(&mut file, &info)
            .map_err(io::Error::from)
            .and_then(|()| file.write_all(b"\n"))
            .map_err(|source| SnapshotError::Write { path: path.clone(), source })?;
        Ok(file.commit()?)
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
        result.map_err(|source| SnapshotError::Write { path: self.file.target().to_path_buf(), source })?;
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
                .map_err(|source| SnapshotError::Write { path: self.file.target().to_path_buf(), source })?;
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
    use crate::hub::snapshot::{DEVICES_JSON, Snapshot};
    use serde_json::json;

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
}
