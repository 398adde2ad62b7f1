//! The git repository the deployment files live in (read-only, no network).

use std::path::Path;

/// The commit `HEAD` points at in the repository that contains `path`, if any.
pub fn head_commit(path: &Path) -> Option<String> {
    let repo = git2::Repository::discover(path).ok()?;
    let commit = repo.head().ok()?.peel_to_commit().ok()?;
    Some(commit.id().to_string())
}
