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

use git2::{ObjectType, Repository, Status, StatusOptions};

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
    #[error("{rev}:{link} is a symlink to {target}, which is outside the repository")]
    #[diagnostic(
        code(fleetform::git::link_outside),
        help(
            "files read from a commit (--ref, --base) must be in that commit: commit the target inside the repository and link to it there, or replace the link with the file"
        )
    )]
    LinkOutside { rev: String, link: String, target: String },
    #[error("{rev}:{link} is a symlink to {target}, which is not in commit {rev}")]
    #[diagnostic(
        code(fleetform::git::link_target_missing),
        help("commit the link's target too, or fix or remove the link")
    )]
    LinkTargetMissing { rev: String, link: String, target: String },
    #[error(
        "{rev}:{link}: symlinks loop (the link leads back into a folder that contains it, or more than {MAX_LINK_HOPS} links in a row)"
    )]
    #[diagnostic(code(fleetform::git::link_loop), help("fix or remove the link"))]
    LinkLoop { rev: String, link: String },
    #[error("{git} is there but is not a usable repository: {message}")]
    #[diagnostic(
        code(fleetform::git::broken_repository),
        help(
            "a `.git` file must point at an existing git directory (`gitdir: PATH`); fix or remove it (try `git status` there)"
        )
    )]
    BrokenRepository { git: String, message: String },
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
    let workdir = repo.workdir().ok_or(GitError::Bare)?.to_path_buf();
    let at = CommitTree { repo: &repo, root: tree.id(), rev, workdir };
    let mut out = Vec::new();
    for path in paths {
        let rel = repo_relative(&repo, path)?;
        let rel_text = rel.to_string_lossy().replace('\\', "/");
        let not_in = || GitError::PathNotInCommit { rev: rev.to_string(), path: path.display().to_string() };
        let mut found: Vec<(String, git2::Oid)> = Vec::new();
        match at.resolve(Vec::new(), &rel_text)? {
            None if missing_ok => continue,
            None => return Err(not_in()),
            Some((real, Node::Blob(oid))) => found.push((real.join("/"), oid)),
            Some((real, Node::Tree(oid))) => at.collect(&real, oid, &mut Vec::new(), &mut found)?,
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

/// Symlinks followed for one path before it counts as a loop (the limit Linux uses).
const MAX_LINK_HOPS: usize = 40;

/// Folders nested in one walk (through links) before it counts as a loop.
const MAX_DEPTH: usize = 256;

/// The mode git records for a symlink: its blob holds the link's target as text.
const LINK_MODE: i32 = 0o120_000;

/// A tree entry a path resolved to.
#[derive(Clone, Copy)]
enum Node {
    Blob(git2::Oid),
    Tree(git2::Oid),
}

/// One commit's tree, read the way the working tree would be: symlinks are followed
/// inside the commit (relative to the link, as the file system does), so that `--ref`
/// sees the deployments a checkout of that commit would. A link whose target is not in
/// the commit (outside the repository, or missing) is an error naming it, never skipped:
/// a skipped folder of deployments would read as deleted, and `--prune` would delete them.
struct CommitTree<'r> {
    repo: &'r Repository,
    root: git2::Oid,
    rev: &'r str,
    workdir: PathBuf,
}

impl CommitTree<'_> {
    /// Resolves `path` (relative, `/`-separated) from folder `dir` (components from the
    /// root, a real folder of the tree) to its real path and entry, following symlinks
    /// in every component. `Ok(None)`: no such path, and no link was involved.
    fn resolve(&self, dir: Vec<String>, path: &str) -> Result<Option<(Vec<String>, Node)>, GitError> {
        let mut pending: std::collections::VecDeque<String> =
            path.split('/').filter(|c| !c.is_empty()).map(str::to_string).collect();
        let mut real = Vec::new();
        let mut trees = vec![self.root];
        for c in dir {
            let Some(Node::Tree(t)) = self.child(*trees.last().unwrap_or(&self.root), &c)? else {
                return Ok(None);
            };
            real.push(c);
            trees.push(t);
        }
        let mut blob = None;
        let mut hops = 0;
        // The last link followed and its target, for errors.
        let mut link: Option<(String, String)> = None;
        let missing = |link: &Option<(String, String)>| match link {
            Some((link, target)) => Err(GitError::LinkTargetMissing {
                rev: self.rev.to_string(),
                link: link.clone(),
                target: target.clone(),
            }),
            None => Ok(None),
        };
        while let Some(c) = pending.pop_front() {
            if blob.is_some() {
                // `file/more`: a file is not a folder.
                return missing(&link);
            }
            match c.as_str() {
                "." => continue,
                ".." => {
                    if real.pop().is_none() {
                        let (link, target) = link.clone().unwrap_or_default();
                        return Err(GitError::LinkOutside { rev: self.rev.to_string(), link, target });
                    }
                    trees.pop();
                    continue;
                }
                _ => {}
            }
            let tree = self.repo.find_tree(*trees.last().unwrap_or(&self.root))?;
            let Some(entry) = tree.get_name(&c) else { return missing(&link) };
            if entry.filemode() == LINK_MODE {
                let link_path = real.iter().chain(std::iter::once(&c)).cloned().collect::<Vec<_>>().join("/");
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(GitError::LinkLoop { rev: self.rev.to_string(), link: link_path });
                }
                let target = String::from_utf8_lossy(self.repo.find_blob(entry.id())?.content()).into_owned();
                let mut next: Vec<String> = Vec::new();
                if target.starts_with('/') {
                    // An absolute link can still point into this repository's own checkout.
                    let within = self.within_workdir(Path::new(&target)).ok_or_else(|| GitError::LinkOutside {
                        rev: self.rev.to_string(),
                        link: link_path.clone(),
                        target: target.clone(),
                    })?;
                    real.clear();
                    trees.truncate(1);
                    next.extend(within);
                } else {
                    next.extend(target.split('/').filter(|c| !c.is_empty()).map(str::to_string));
                }
                link = Some((link_path, target));
                for c in next.into_iter().rev() {
                    pending.push_front(c);
                }
                continue;
            }
            match entry.kind() {
                Some(ObjectType::Tree) => trees.push(entry.id()),
                Some(ObjectType::Blob) => blob = Some(entry.id()),
                // A submodule's commit: its files are not in this commit.
                _ => return missing(&link),
            }
            real.push(c);
        }
        Ok(Some(match blob {
            Some(b) => (real, Node::Blob(b)),
            None => (real, Node::Tree(*trees.last().unwrap_or(&self.root))),
        }))
    }

    fn child(&self, tree: git2::Oid, name: &str) -> Result<Option<Node>, GitError> {
        let tree = self.repo.find_tree(tree)?;
        Ok(tree.get_name(name).and_then(|e| match e.kind() {
            Some(ObjectType::Tree) if e.filemode() != LINK_MODE => Some(Node::Tree(e.id())),
            Some(ObjectType::Blob) if e.filemode() != LINK_MODE => Some(Node::Blob(e.id())),
            _ => None,
        }))
    }

    /// The components of absolute `target` below the repository's working tree, if it is there.
    fn within_workdir(&self, target: &Path) -> Option<Vec<String>> {
        let target = absolute(target);
        let roots = [self.workdir.clone(), self.workdir.canonicalize().unwrap_or_else(|_| self.workdir.clone())];
        let rest = roots.iter().find_map(|r| target.strip_prefix(absolute(r)).ok())?;
        Some(rest.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect())
    }

    /// The `.kdl` blobs below folder `real` (tree `oid`), by real path, skipping hidden
    /// folders as the working-tree walk does and following links as it does. `stack`
    /// holds the real folders being walked, to refuse a link back into one of them.
    fn collect(
        &self,
        real: &[String],
        oid: git2::Oid,
        stack: &mut Vec<Vec<String>>,
        out: &mut Vec<(String, git2::Oid)>,
    ) -> Result<(), GitError> {
        let loop_at = |name: &str| GitError::LinkLoop {
            rev: self.rev.to_string(),
            link: real.iter().map(String::as_str).chain(std::iter::once(name)).collect::<Vec<_>>().join("/"),
        };
        if stack.len() >= MAX_DEPTH {
            return Err(loop_at(""));
        }
        stack.push(real.to_vec());
        let tree = self.repo.find_tree(oid)?;
        for entry in tree.iter() {
            let name = entry.name().unwrap_or("").to_string();
            let path = || real.iter().chain(std::iter::once(&name)).cloned().collect::<Vec<_>>();
            if entry.filemode() == LINK_MODE {
                if name.starts_with('.') {
                    continue;
                }
                match self.resolve(real.to_vec(), &name)? {
                    Some((target, Node::Blob(b))) => {
                        // Chosen by the link's name, as the working-tree walk does.
                        if name.ends_with(".kdl") {
                            out.push((target.join("/"), b));
                        }
                    }
                    Some((target, Node::Tree(t))) => {
                        if stack.iter().any(|walked| walked.starts_with(&target)) {
                            return Err(loop_at(&name));
                        }
                        self.collect(&target, t, stack, out)?;
                    }
                    None => {
                        return Err(GitError::LinkTargetMissing {
                            rev: self.rev.to_string(),
                            link: path().join("/"),
                            target: String::new(),
                        });
                    }
                }
                continue;
            }
            match entry.kind() {
                Some(ObjectType::Tree) if !name.starts_with('.') => self.collect(&path(), entry.id(), stack, out)?,
                Some(ObjectType::Blob) if name.ends_with(".kdl") => out.push((path().join("/"), entry.id())),
                _ => {}
            }
        }
        stack.pop();
        Ok(())
    }
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
        // A `.git` that git cannot follow (a gitlink to a removed worktree) is a broken
        // repository, not "no repository": the dirty check must not pass for it.
        git2::ErrorCode::NotFound => {
            match probe.ancestors().map(|a| a.join(".git")).find(|g| g.symlink_metadata().is_ok()) {
                Some(git) => {
                    GitError::BrokenRepository { git: git.display().to_string(), message: e.message().to_string() }
                }
                None => GitError::NotARepository { path: path.display().to_string() },
            }
        }
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

/// Why a file apply would load is not the committed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uncommitted {
    /// Modified, staged, untracked or ignored in the repository that holds it (which may be
    /// another one than the deployments', reached through a symlink).
    Changed { file: PathBuf, real: PathBuf },
    /// Reached through a symlink from inside a repository, but the file itself is in none:
    /// no commit records what it held.
    OutsideAnyRepository { file: PathBuf, real: PathBuf },
}

impl std::fmt::Display for Uncommitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let same = |file: &Path, real: &Path| file == real || absolute(file) == real;
        match self {
            Uncommitted::Changed { file, real } if same(file, real) => {
                write!(f, "{} has uncommitted changes", file.display())
            }
            Uncommitted::Changed { file, real } => {
                write!(f, "{} (the symlinked file {}) has uncommitted changes", file.display(), real.display())
            }
            Uncommitted::OutsideAnyRepository { file, real } => write!(
                f,
                "{} is a symlink to {}, which is in no git repository, so no commit records what it holds",
                file.display(),
                real.display()
            ),
        }
    }
}

/// The first of `files` (the files a load read, as it named them) whose content is not
/// committed, each checked by its real path against the repository that contains it, so
/// that a change reached through a symlink is seen. `in_repository`: the deployment paths
/// are in a repository; a file in none then counts as uncommitted (outside any
/// repository, as with no repository at all, there is no commit to disagree with).
pub fn uncommitted_file(files: &[PathBuf], in_repository: bool) -> Result<Option<Uncommitted>, GitError> {
    // One discovery per folder: a thousand files in one folder open its repository once.
    let mut repos: Vec<Repository> = Vec::new();
    let mut by_folder: std::collections::HashMap<PathBuf, Option<usize>> = std::collections::HashMap::new();
    for file in files {
        let real =
            file.canonicalize().map_err(|source| LoadError::Read { path: file.display().to_string(), source })?;
        let folder = real.parent().map_or_else(|| real.clone(), Path::to_path_buf);
        let found = match by_folder.get(&folder) {
            Some(found) => *found,
            None => {
                let found = match discover(&real) {
                    Ok(repo) => Some(match repos.iter().position(|r| r.path() == repo.path()) {
                        Some(same) => same,
                        None => {
                            repos.push(repo);
                            repos.len() - 1
                        }
                    }),
                    Err(GitError::NotARepository { .. }) => None,
                    Err(e) => return Err(e),
                };
                by_folder.insert(folder, found);
                found
            }
        };
        let Some(at) = found else {
            if in_repository {
                return Ok(Some(Uncommitted::OutsideAnyRepository { file: file.clone(), real }));
            }
            continue;
        };
        let repo = &repos[at];
        let rel = repo_relative(repo, &real)?;
        // Current (empty) is the only clean answer: new, ignored or changed all mean the
        // commit does not hold this content.
        if !repo.status_file(&rel)?.is_empty() {
            return Ok(Some(Uncommitted::Changed { file: file.clone(), real }));
        }
    }
    Ok(None)
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

    #[cfg(unix)]
    #[test]
    fn links_in_a_commit_are_followed_within_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("shared/deep")).unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("shared/a.kdl"), "// a\n").unwrap();
        std::fs::write(dir.path().join("shared/deep/b.kdl"), "// b\n").unwrap();
        // Absolute, into the repository's own checkout; relative, to a file; a link to a
        // link; and a non-.kdl name for a file, which the walk leaves alone.
        std::os::unix::fs::symlink(dir.path().join("shared/deep"), dir.path().join("d/abs")).unwrap();
        std::os::unix::fs::symlink("../shared/a.kdl", dir.path().join("d/rel.kdl")).unwrap();
        std::os::unix::fs::symlink("rel.kdl", dir.path().join("d/again.kdl")).unwrap();
        std::os::unix::fs::symlink("../shared/a.kdl", dir.path().join("d/notes.txt")).unwrap();
        commit_all(&repo, "links");
        let got = sources_at(&[dir.path().join("d")], "HEAD").unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["HEAD:shared/a.kdl", "HEAD:shared/a.kdl", "HEAD:shared/deep/b.kdl"]);
        assert!(got.iter().all(|s| s.text.starts_with("// ")), "contents, not link text");
        // A link given as the path itself.
        let one = sources_at(&[dir.path().join("d/abs")], "HEAD").unwrap();
        assert_eq!(one[0].name, "HEAD:shared/deep/b.kdl");
        // A chain of links longer than the limit is a loop.
        std::os::unix::fs::symlink("l1", dir.path().join("d/l0")).unwrap();
        std::os::unix::fs::symlink("l0", dir.path().join("d/l1")).unwrap();
        commit_all(&repo, "loop");
        assert!(matches!(sources_at(&[dir.path().join("d")], "HEAD"), Err(GitError::LinkLoop { .. })));
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
