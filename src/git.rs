//! The git repository the deployment files live in (read-only, no network).
//!
//! `--ref REV` reads the `.kdl` files straight out of a commit's tree (no checkout, the
//! working tree is never touched); `--base REV` finds the merge base with `HEAD`; apply
//! asks whether the working tree is dirty and whether the commit a plan was made from is
//! still an ancestor of `HEAD`.
//!
//! Files read from a commit are named `REV:path` in diagnostics, with `path` relative to
//! the repository root — the form `git show REV:path` accepts, so a reported location can
//! be opened directly.

use std::path::{Component, Path, PathBuf};

use git2::{ObjectType, Repository, Status, StatusOptions, TreeWalkMode, TreeWalkResult};

use crate::spec::{LoadError, SourceFile, Workspace};

/// Why files could not be read from git.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GitError {
    #[error("{path} is not inside a git repository")]
    #[diagnostic(
        code(fleetform::git::not_a_repository),
        help("--ref and --base read files from git; run inside a clone")
    )]
    NotARepository { path: String },
    #[error("unknown revision `{rev}`: {message}")]
    #[diagnostic(
        code(fleetform::git::unknown_revision),
        help(
            "give a branch, tag or commit (e.g. main, origin/main, HEAD~1); in CI fetch enough history (fetch-depth: 0)"
        )
    )]
    UnknownRevision { rev: String, message: String },
    #[error("{path} is not in commit {rev}")]
    #[diagnostic(
        code(fleetform::git::not_in_commit),
        help("the path may have been added after that commit or renamed")
    )]
    PathNotInCommit { rev: String, path: String },
    #[error("{path} is outside the repository at {root}")]
    #[diagnostic(code(fleetform::git::outside_repository))]
    OutsideRepository { path: String, root: String },
    #[error("the repository has no working tree (bare repository)")]
    #[diagnostic(code(fleetform::git::bare))]
    Bare,
    #[error("no merge base between {rev} and HEAD")]
    #[diagnostic(
        code(fleetform::git::no_merge_base),
        help("the branches share no history; fetch more history or pick another base")
    )]
    NoMergeBase { rev: String },
    #[error("{path} in {rev} is not UTF-8 text")]
    #[diagnostic(code(fleetform::io), help("KDL files are UTF-8"))]
    NotUtf8 { rev: String, path: String },
    #[error("git: {0}")]
    #[diagnostic(code(fleetform::git::other))]
    Git(#[from] git2::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Load(#[from] LoadError),
}

/// The commit `HEAD` points at in the repository that contains `path`, if any.
pub fn head_commit(path: &Path) -> Option<String> {
    let repo = git2::Repository::discover(path).ok()?;
    let commit = repo.head().ok()?.peel_to_commit().ok()?;
    Some(commit.id().to_string())
}

/// Loads the workspace from the working tree (`rev` = `None`) or from commit `rev`: the one
/// entry point every command that reads deployments uses, so that `--ref` means the same
/// everywhere.
pub fn load_workspace(paths: &[PathBuf], rev: Option<&str>) -> Result<Workspace, GitError> {
    match rev {
        None => Ok(Workspace::load(paths)?),
        Some(rev) => Ok(Workspace::from_sources(sources_at(paths, rev)?)),
    }
}

/// The workspace at the base of a change (`plan --base`): like [`load_workspace`] at
/// `rev`, except that a path missing from that commit holds no deployments (a pull
/// request may add the folder) instead of being an error.
pub fn load_base_workspace(paths: &[PathBuf], rev: &str) -> Result<Workspace, GitError> {
    Ok(Workspace::from_sources(read_sources(paths, rev, true)?))
}

/// The full id of the commit `rev` names, in the repository containing `path`.
pub fn resolve_commit(path: &Path, rev: &str) -> Result<String, GitError> {
    let repo = discover(path)?;
    Ok(resolve(&repo, rev)?.id().to_string())
}

/// The `.kdl` files under `paths` as they are in commit `rev`, in name order.
pub fn sources_at(paths: &[PathBuf], rev: &str) -> Result<Vec<SourceFile>, GitError> {
    read_sources(paths, rev, false)
}

fn read_sources(paths: &[PathBuf], rev: &str, missing_ok: bool) -> Result<Vec<SourceFile>, GitError> {
    let start = paths.first().map_or_else(|| PathBuf::from("."), Clone::clone);
    let repo = discover(&start)?;
    let commit = resolve(&repo, rev)?;
    let tree = commit.tree()?;
    let mut out = Vec::new();
    for path in paths {
        let rel = repo_relative(&repo, path)?;
        let rel_text = rel.to_string_lossy().replace('\\', "/");
        let not_in = || GitError::PathNotInCommit { rev: rev.to_string(), path: path.display().to_string() };
        let mut found: Vec<(String, git2::Oid)> = Vec::new();
        if rel_text.is_empty() {
            collect_kdl(&tree, "", &mut found)?;
        } else {
            let entry = match tree.get_path(&rel) {
                Ok(e) => e,
                Err(_) if missing_ok => continue,
                Err(_) => return Err(not_in()),
            };
            match entry.kind() {
                Some(ObjectType::Blob) => found.push((rel_text.clone(), entry.id())),
                Some(ObjectType::Tree) => {
                    let sub = repo.find_tree(entry.id())?;
                    collect_kdl(&sub, &format!("{rel_text}/"), &mut found)?;
                }
                _ => return Err(not_in()),
            }
        }
        found.sort();
        for (file, oid) in found {
            // The object header gives the size without inflating the blob, so a huge
            // file in history is refused as cheaply as one on disk.
            let (size, _) = repo.odb()?.read_header(oid)?;
            crate::spec::limits::check_file_size(
                &format!("{rev}:{file}"),
                size as u64,
                crate::spec::limits::MAX_FILE_BYTES,
            )?;
            let blob = repo.find_blob(oid)?;
            let text = String::from_utf8(blob.content().to_vec())
                .map_err(|_| GitError::NotUtf8 { rev: rev.to_string(), path: file.clone() })?;
            out.push(SourceFile::new(format!("{rev}:{file}"), &file, text));
        }
    }
    Ok(out)
}

/// The `.kdl` blobs below `tree`, skipping hidden folders (as the working-tree walk does).
fn collect_kdl(tree: &git2::Tree<'_>, prefix: &str, out: &mut Vec<(String, git2::Oid)>) -> Result<(), GitError> {
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = entry.name().unwrap_or("");
        match entry.kind() {
            Some(ObjectType::Tree) if name.starts_with('.') => TreeWalkResult::Skip,
            Some(ObjectType::Blob) if name.ends_with(".kdl") => {
                out.push((format!("{prefix}{dir}{name}"), entry.id()));
                TreeWalkResult::Ok
            }
            _ => TreeWalkResult::Ok,
        }
    })?;
    Ok(())
}

fn discover(path: &Path) -> Result<Repository, GitError> {
    // A path that exists only in the commit (deleted since) still has a parent that exists.
    let mut probe = absolute(path);
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    // Only "no repository here" means that; a repository git cannot open (corrupt,
    // unreadable, unsafe owner) is an error, so that apply's dirty check fails closed.
    Repository::discover(&probe).map_err(|e| match e.code() {
        git2::ErrorCode::NotFound => GitError::NotARepository { path: path.display().to_string() },
        _ => GitError::Git(e),
    })
}

fn resolve<'r>(repo: &'r Repository, rev: &str) -> Result<git2::Commit<'r>, GitError> {
    let unknown = |e: git2::Error| GitError::UnknownRevision { rev: rev.to_string(), message: e.message().to_string() };
    repo.revparse_single(rev).map_err(unknown)?.peel_to_commit().map_err(unknown)
}

/// `path` made absolute against the current directory and cleaned of `.` and `..`
/// without touching the file system (the path may not exist in the working tree).
fn absolute(path: &Path) -> PathBuf {
    let joined =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` relative to the repository's root (empty for the root itself).
fn repo_relative(repo: &Repository, path: &Path) -> Result<PathBuf, GitError> {
    let root = repo.workdir().ok_or(GitError::Bare)?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    // Canonicalise the longest existing prefix (symlinked temp dirs, /private on macOS).
    let abs = absolute(path);
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(n) => rest.push(n.to_os_string()),
            None => break,
        }
        existing.pop();
    }
    let mut full = existing.canonicalize().unwrap_or(existing);
    for n in rest.into_iter().rev() {
        full.push(n);
    }
    full.strip_prefix(&root)
        .map(Path::to_path_buf)
        .map_err(|_| GitError::OutsideRepository { path: path.display().to_string(), root: root.display().to_string() })
}

/// The merge base of `rev` and `HEAD` in the repository containing `path`, as a commit id.
pub fn merge_base(path: &Path, rev: &str) -> Result<String, GitError> {
    let repo = discover(path)?;
    let base = resolve(&repo, rev)?;
    let head = repo.head()?.peel_to_commit()?;
    repo.merge_base(base.id(), head.id())
        .map(|oid| oid.to_string())
        .map_err(|_| GitError::NoMergeBase { rev: rev.to_string() })
}

/// Whether the working tree has changes apply would not be applying from a commit: any
/// modified, staged, deleted or renamed tracked file under `path`, or an untracked `.kdl`
/// file under it (other untracked files — build output, notes — do not change a plan).
pub fn is_dirty(path: &Path) -> Result<bool, GitError> {
    let repo = discover(path)?;
    let rel = repo_relative(&repo, path)?;
    let mut opts = StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false);
    let spec = rel.to_string_lossy().replace('\\', "/");
    if !spec.is_empty() {
        opts.pathspec(&spec);
    }
    let statuses = repo.statuses(Some(&mut opts))?;
    Ok(statuses.iter().any(|e| {
        let s = e.status();
        if s == Status::WT_NEW {
            e.path().is_some_and(|p| p.ends_with(".kdl"))
        } else {
            !s.is_empty() && !s.contains(Status::IGNORED)
        }
    }))
}

/// Whether `commit` is `HEAD` or one of its ancestors in the repository containing `path`.
/// `false` means HEAD is on another line of history; `Ok(true)` with a different id means
/// HEAD has moved on since the commit (compare with [`head_commit`]).
pub fn commit_is_ancestor_of_head(path: &Path, commit: &str) -> Result<bool, GitError> {
    let repo = discover(path)?;
    let commit = resolve(&repo, commit)?.id();
    let head = repo.head()?.peel_to_commit()?.id();
    Ok(head == commit || repo.graph_descendant_of(head, commit)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_all(repo: &Repository, message: &str) -> git2::Oid {
        let mut index = repo.index().unwrap();
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let parents: Vec<git2::Commit> = repo.head().ok().and_then(|h| h.peel_to_commit().ok()).into_iter().collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &refs).unwrap()
    }

    #[test]
    fn reads_files_from_a_commit_and_reports_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("d/.hidden")).unwrap();
        std::fs::write(dir.path().join("d/a.kdl"), "// one\n").unwrap();
        std::fs::write(dir.path().join("d/.hidden/x.kdl"), "x\n").unwrap();
        std::fs::write(dir.path().join("d/notes.txt"), "n\n").unwrap();
        let first = commit_all(&repo, "one");
        std::fs::remove_file(dir.path().join("d/a.kdl")).unwrap();
        std::fs::write(dir.path().join("d/b.kdl"), "// two\n").unwrap();
        commit_all(&repo, "two");

        let at = |rev: &str| sources_at(&[dir.path().join("d")], rev);
        let old = at(&first.to_string()).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].name, format!("{first}:d/a.kdl"));
        assert_eq!(old[0].text.as_str(), "// one\n");
        let new = at("HEAD").unwrap();
        assert_eq!(new.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["HEAD:d/b.kdl"]);
        // A file deleted from the working tree is still readable from the commit.
        let file = sources_at(&[dir.path().join("d/a.kdl")], "HEAD~1").unwrap();
        assert_eq!(file[0].name, "HEAD~1:d/a.kdl");
        assert!(matches!(at("nope"), Err(GitError::UnknownRevision { .. })));
        assert!(matches!(sources_at(&[dir.path().join("d/a.kdl")], "HEAD"), Err(GitError::PathNotInCommit { .. })));
        let outside = tempfile::tempdir().unwrap();
        assert!(matches!(sources_at(&[outside.path().to_path_buf()], "HEAD"), Err(GitError::NotARepository { .. })));
    }

    #[test]
    fn dirty_and_ancestry() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        std::fs::write(dir.path().join("a.kdl"), "a\n").unwrap();
        let first = commit_all(&repo, "one").to_string();
        assert!(!is_dirty(dir.path()).unwrap());
        std::fs::write(dir.path().join("notes.txt"), "n\n").unwrap();
        assert!(!is_dirty(dir.path()).unwrap(), "untracked non-KDL files are not dirt");
        std::fs::write(dir.path().join("b.kdl"), "b\n").unwrap();
        assert!(is_dirty(dir.path()).unwrap(), "an untracked .kdl file is");
        std::fs::remove_file(dir.path().join("b.kdl")).unwrap();
        std::fs::write(dir.path().join("a.kdl"), "changed\n").unwrap();
        assert!(is_dirty(dir.path()).unwrap(), "a modified tracked file is");
        let second = commit_all(&repo, "two").to_string();
        assert!(!is_dirty(dir.path()).unwrap());
        assert!(commit_is_ancestor_of_head(dir.path(), &first).unwrap());
        assert!(commit_is_ancestor_of_head(dir.path(), &second).unwrap());
        assert_eq!(head_commit(dir.path()).as_deref(), Some(second.as_str()));
        // A commit on another line of history is not an ancestor.
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.head().unwrap().peel_to_tree().unwrap();
        let parent = repo.find_commit(git2::Oid::from_str(&first).unwrap()).unwrap();
        let side = repo.commit(None, &sig, &sig, "side", &tree, &[&parent]).unwrap();
        assert!(!commit_is_ancestor_of_head(dir.path(), &side.to_string()).unwrap());
        assert_eq!(merge_base(dir.path(), &side.to_string()).unwrap(), first);
    }
}
