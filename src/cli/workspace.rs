//! The deployments a command reads: loaded from the working tree or a commit, validated,
//! and rendered; problems are printed as `validate` prints them.

use std::io::Write;
use std::path::PathBuf;

use fleetform::manifest::{self, ProcessEnv, Rendered, SecretMode};
use fleetform::render::plural;
use fleetform::spec::Problem;

use crate::cli::error::CommandError;

pub fn print_problems(problems: &[Problem]) {
    let mut err = std::io::stderr().lock();
    for p in problems {
        let _ = writeln!(err, "{:?}", miette::Report::new(p.clone()));
    }
}

/// Loads, validates and renders the declared deployments with secrets resolved; prints
/// every problem and returns None when there are any.
pub fn declared(paths: &[PathBuf], rev: Option<&str>) -> Result<Option<Vec<Rendered>>, CommandError> {
    declared_with(paths, rev, &ProcessEnv)
}

/// [`declared`], reading secrets from `env`.
pub fn declared_with(
    paths: &[PathBuf],
    rev: Option<&str>,
    env: &dyn manifest::Env,
) -> Result<Option<Vec<Rendered>>, CommandError> {
    let ws = fleetform::git::load_workspace(paths, rev)?;
    if !ws.problems.is_empty() {
        print_problems(&ws.problems);
        eprintln!("{} problem{} found; fix them before planning", ws.problems.len(), plural(ws.problems.len()));
        return Ok(None);
    }
    match manifest::render_all(&ws.deployments, env, SecretMode::Reveal) {
        Ok(r) => Ok(Some(r)),
        Err(problems) => {
            print_problems(&problems);
            Ok(None)
        }
    }
}
