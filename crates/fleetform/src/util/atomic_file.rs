//! Replacing a file so that a crash leaves either the old content or the new, never a mix.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Large enough that writing a big snapshot file costs few system calls.
const WRITE_BUFFER: usize = 256 * 1024;

/// A file that could not be written. The diagnostic is the one snapshot writes have
/// always shown (their errors convert into `SnapshotError::Write`).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot write {}: {source}", path.display())]
#[diagnostic(code(fleetform::snapshot::write), help("the previous file, if any, is left untouched"))]
pub struct WriteError {
    pub path: PathBuf,
    pub source: io::Error,
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
    pub fn create(target: &Path) -> Result<AtomicFile, WriteError> {
        Self::create_with(target, false)
    }

    /// Like [`AtomicFile::create`], but the file is owner-only (0600) whatever the file it
    /// replaces allowed: for files that hold credentials (snapshots, saved plans).
    pub fn create_private(target: &Path) -> Result<AtomicFile, WriteError> {
        Self::create_with(target, true)
    }

    fn create_with(target: &Path, private: bool) -> Result<AtomicFile, WriteError> {
        let write_error = |source| WriteError { path: target.to_path_buf(), source };
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
        Ok(AtomicFile { target: target.to_path_buf(), writer: BufWriter::with_capacity(WRITE_BUFFER, temp), bytes: 0 })
    }

    /// The file this will replace on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Makes the new content durable and visible; returns the bytes written.
    pub fn commit(self) -> Result<u64, WriteError> {
        let target = self.target;
        let write_error = |source| WriteError { path: target.clone(), source };
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
pub fn sync_parent(path: &Path) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
