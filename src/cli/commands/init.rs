//! `fleetform init [DIR]`: a new deployments repository — one commented standard
//! deployment, the GitHub workflows that plan pull requests and apply `main` through the
//! fleetform action, a `.gitignore` for saved plans and snapshots, a README.
//!
//! Nothing already there is overwritten without `--force`, and either every file is
//! written or none is: all of them are staged as temp files first, and a failure while
//! moving them into place removes the ones already moved.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fleetform::util::atomic_file::{AtomicFile, WriteError};

use crate::cli::error::CommandError;

#[derive(clap::Args)]
pub struct Args {
    /// The repository to write into; created if missing. Existing files other than the
    /// skeleton's are left alone.
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite skeleton files that already exist (the refusal lists them).
    #[arg(long)]
    pub force: bool,
}

/// The skeleton: where each file goes, and what it holds. The workflows are the ones in
/// `examples/ci/`, so the examples and what `init` writes cannot drift apart.
pub const SKELETON: &[(&str, &str)] = &[
    ("deployments/base.kdl", include_str!("init/base.kdl")),
    (".github/workflows/fleetform-plan.yml", include_str!("../../../examples/ci/github-pr-plan.yml")),
    (".github/workflows/fleetform-apply.yml", include_str!("../../../examples/ci/github-apply.yml")),
    (".gitignore", include_str!("init/gitignore")),
    ("README.md", include_str!("init/README.md")),
];

/// Why `init`, `man --out` or another command writing files of its own did not.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OutputError {
    #[error("{} already holds {}", dir.display(), files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))]
    #[diagnostic(
        code(fleetform::init::exists),
        help("nothing was written; move those files away, init another directory, or pass --force to overwrite them")
    )]
    Exists { dir: PathBuf, files: Vec<PathBuf> },

    #[error("cannot create {}: {source}", path.display())]
    #[diagnostic(code(fleetform::output::create_dir), help("check that the parent directory exists and is writable"))]
    CreateDir { path: PathBuf, source: std::io::Error },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Write(#[from] WriteError),

    #[error("no command \"{given}\"")]
    #[diagnostic(code(fleetform::man::no_such_command), help("the pages are: {}", known.join(", ")))]
    NoSuchCommand { given: String, known: Vec<String> },
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let written = write_skeleton(&args.dir, args.force)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    let dir = args.dir.display();
    println!(
        "\nNext: fleetform hub generate --devices 300 --out {dir}/local-hub\n      fleetform plan --hub {dir}/local-hub {dir}/deployments"
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes [`SKELETON`] under `dir`; returns the paths written.
pub fn write_skeleton(dir: &Path, force: bool) -> Result<Vec<PathBuf>, OutputError> {
    let targets: Vec<(PathBuf, &str)> = SKELETON.iter().map(|(rel, body)| (dir.join(rel), *body)).collect();
    if !force {
        let existing: Vec<PathBuf> = SKELETON
            .iter()
            .map(|(rel, _)| PathBuf::from(rel))
            .filter(|rel| dir.join(rel).symlink_metadata().is_ok())
            .collect();
        if !existing.is_empty() {
            return Err(OutputError::Exists { dir: dir.to_path_buf(), files: existing });
        }
    }
    let mut made_dirs = Vec::new();
    let staged = stage(&targets, &mut made_dirs);
    let staged = match staged {
        Ok(staged) => staged,
        Err(e) => {
            remove_dirs(&made_dirs);
            return Err(e);
        }
    };
    let mut committed = Vec::new();
    for file in staged {
        let path = file.target().to_path_buf();
        if let Err(e) = file.commit() {
            // Without --force none of these existed, so removing them restores the
            // directory; with it, the files already replaced keep their new content.
            if !force {
                for done in &committed {
                    let _ = std::fs::remove_file(done);
                }
                remove_dirs(&made_dirs);
            }
            return Err(e.into());
        }
        committed.push(path);
    }
    Ok(committed)
}

/// Every file written to a temp file beside its target; dropping them (on an error) leaves
/// nothing behind. Directories created on the way are recorded, deepest last.
fn stage(targets: &[(PathBuf, &str)], made_dirs: &mut Vec<PathBuf>) -> Result<Vec<AtomicFile>, OutputError> {
    let mut staged = Vec::new();
    for (path, body) in targets {
        if let Some(parent) = path.parent() {
            create_dirs(parent, made_dirs)?;
        }
        let mut file = AtomicFile::create(path)?;
        file.write_all(body.as_bytes()).map_err(|source| WriteError { path: path.clone(), source })?;
        staged.push(file);
    }
    Ok(staged)
}

fn create_dirs(dir: &Path, made: &mut Vec<PathBuf>) -> Result<(), OutputError> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
    for d in missing.into_iter().rev() {
        std::fs::create_dir(d).map_err(|source| OutputError::CreateDir { path: d.to_path_buf(), source })?;
        made.push(d.to_path_buf());
    }
    Ok(())
}

/// Removes the directories `init` created, deepest first; ones that are not empty (a
/// file someone else put there meanwhile) stay.
fn remove_dirs(made: &[PathBuf]) {
    for d in made.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}
