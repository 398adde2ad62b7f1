//! The deployment language: `.kdl` files -> typed [`Deployment`]s, with every problem
//! reported as a spanned miette diagnostic ([`Problem`]).

mod checks;
mod decode;
pub mod diag;
pub mod fmt;
pub mod limits;
pub mod model;
pub mod rules;
pub mod source;
pub mod ties;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use decode::syntax_problems;
pub use diag::{Code, Problem};
pub use model::*;
pub use source::SourceFile;

/// Failure to read the files at all (as opposed to problems inside them).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    #[error("{path}: no such file or directory")]
    #[diagnostic(code(fleetform::io), help("pass a directory of .kdl files or a .kdl file"))]
    NotFound { path: String },
    #[error("{path}: {source}")]
    #[diagnostic(code(fleetform::io))]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file ({kind})")]
    #[diagnostic(
        code(fleetform::io::not_a_file),
        help("deployment files are regular .kdl files (or symlinks to them); pass the file itself or its directory")
    )]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is {size} bytes; deployment files may be at most {max} bytes")]
    #[diagnostic(
        code(fleetform::too_large),
        help(
            "split the deployments into several .kdl files; a deployment's content must fit the hub's own size limits anyway"
        )
    )]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("{path} is not UTF-8 text")]
    #[diagnostic(code(fleetform::io), help("KDL files are UTF-8; re-save the file as UTF-8"))]
    NotUtf8 { path: String },
}

/// Every deployment found under some paths, and every problem found on the way.
#[derive(Debug, Default)]
pub struct Workspace {
    pub files: Vec<Arc<SourceFile>>,
    pub deployments: Vec<Deployment>,
    pub problems: Vec<Problem>,
}

impl Workspace {
    /// Reads every `*.kdl` file under each path (recursively, in name order, skipping
    /// hidden folders), so that output is the same on every machine.
    pub fn load(paths: &[PathBuf]) -> Result<Workspace, LoadError> {
        let mut sources = Vec::new();
        for root in paths {
            for path in kdl_files(root)? {
                let display = path.display().to_string();
                let text = read_kdl_file(&path, &display)?;
                sources.push(SourceFile::new(display, path, text));
            }
        }
        Ok(Workspace::from_sources(sources))
    }

    /// Builds the model from files already in memory (a git tree, a test).
    pub fn from_sources(sources: Vec<SourceFile>) -> Workspace {
        let mut ws = Workspace::default();
        for file in sources {
            let file = Arc::new(file);
            let found = decode::parse_file(&file, &mut ws.problems);
            ws.deployments.extend(found);
            ws.files.push(file);
        }
        checks::check_workspace(&ws.deployments, &mut ws.problems);
        ws
    }

    pub fn find(&self, name: &str) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.name.0 == name)
    }
}

/// Reads one `.kdl` file as UTF-8, refusing it over [`limits::MAX_FILE_BYTES`] before
/// reading, so a huge file costs neither the time nor the memory. `validate`, `plan` and
/// `fmt` all read through here.
pub fn read_kdl_file(path: &Path, display: &str) -> Result<String, LoadError> {
    let size = std::fs::metadata(path).map_err(|source| LoadError::Read { path: display.to_string(), source })?.len();
    limits::check_file_size(display, size, limits::MAX_FILE_BYTES)?;
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: display.to_string(), source })?;
    String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 { path: display.to_string() })
}

/// The `.kdl` files a path stands for: itself if it is a file, else those below it.
/// Symlinks are followed (walkdir reports a link back to an ancestor as an error); a FIFO,
/// socket or device is refused without being opened, so nothing blocks or reads forever.
pub fn kdl_files(root: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::NotFound { path: root.display().to_string() });
        }
        Err(source) => return Err(LoadError::Read { path: root.display().to_string(), source }),
    };
    if meta.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    if !meta.is_dir() {
        return Err(LoadError::NotRegular { path: root.display().to_string(), kind: kind_of(&meta.file_type()) });
    }
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = entry.map_err(|e| LoadError::Read {
            path: e.path().map_or_else(|| root.display().to_string(), |p| p.display().to_string()),
            source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("file system loop")),
        })?;
        if entry.path().extension().is_none_or(|x| x != "kdl") || entry.file_type().is_dir() {
            continue;
        }
        if !entry.file_type().is_file() {
            return Err(LoadError::NotRegular {
                path: entry.path().display().to_string(),
                kind: kind_of(&entry.file_type()),
            });
        }
        out.push(entry.into_path());
    }
    Ok(out)
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if t.is_symlink() { "a broken symlink" } else { "not a file or directory" }
}
