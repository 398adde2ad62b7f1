//! Writing the files commands produce, never half-written.

use std::io::Write;
use std::path::Path;

use fleetform::hub::SnapshotError;
use fleetform::hub::snapshot::AtomicFile;

/// [`write_atomically`], owner-only (0600).
pub fn write_private(path: &Path, text: &str) -> Result<(), SnapshotError> {
    write(AtomicFile::create_private(path)?, path, text)
}

/// Replaces a file without ever leaving it half-written.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), SnapshotError> {
    write(AtomicFile::create(path)?, path, text)
}

fn write(mut file: AtomicFile, path: &Path, text: &str) -> Result<(), SnapshotError> {
    file.write_all(text.as_bytes()).map_err(|source| SnapshotError::Write { path: path.to_path_buf(), source })?;
    file.commit().map(|_| ()).map_err(SnapshotError::from)
}
