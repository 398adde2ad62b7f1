//! Which commits a command reads (`--ref`, `--base`) and which commit it records.

use std::path::{Path, PathBuf};

use fleetform::git::GitError;

/// Where git looks for the repository: the first deployment path, else the current folder.
pub fn repository_of(paths: &[PathBuf]) -> &Path {
    paths.first().map_or(Path::new("."), PathBuf::as_path)
}

/// The commit the deployments are read from: `--ref` resolved, else the HEAD of the
/// working tree's repository (none outside a repository). Recorded as `fleetform-commit`
/// and in saved plans.
pub fn source_commit(paths: &[PathBuf], rev: Option<&str>) -> Result<Option<String>, GitError> {
    match rev {
        Some(rev) => Ok(Some(fleetform::git::resolve_commit(repository_of(paths), rev)?)),
        None => Ok(paths.first().and_then(|p| fleetform::git::head_commit(p))),
    }
}

/// The merge base of `base` and HEAD, for `plan --base`.
pub struct MergeBase {
    /// The full commit id.
    pub commit: String,
}

impl MergeBase {
    pub fn of(paths: &[PathBuf], base: &str) -> Result<Self, GitError> {
        Ok(MergeBase { commit: fleetform::git::merge_base(repository_of(paths), base)? })
    }

    /// The 12-character id the base's files are read at, and messages name.
    pub fn short(&self) -> &str {
        &self.commit[..self.commit.len().min(12)]
    }

    /// The 8-character id the change view's label shows (`origin/main@1a2b3c4d`).
    pub fn label(&self, base: &str) -> String {
        format!("{base}@{}", &self.commit[..self.commit.len().min(8)])
    }
}
