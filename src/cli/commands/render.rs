//! `fleetform render`.

use std::path::PathBuf;
use std::process::ExitCode;

use fleetform::manifest::{self, ProcessEnv, SecretMode};
use fleetform::render::plural;

use crate::cli::args::RefArg;
use crate::cli::error::CommandError;
use crate::cli::workspace::print_problems;

#[derive(clap::Args)]
pub struct Args {
    /// The deployment's name.
    pub name: String,
    /// Files or directories (searched recursively for *.kdl).
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// Show registry passwords and (secret) values instead of "(sensitive)".
    #[arg(long)]
    pub show_secrets: bool,
    #[command(flatten)]
    pub git: RefArg,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let Args { name, paths, show_secrets, git } = args;
    let ws = fleetform::git::load_workspace(&paths, git.git_ref.as_deref())?;
    if !ws.problems.is_empty() {
        print_problems(&ws.problems);
        eprintln!("{} problem{} found; fix them before rendering", ws.problems.len(), plural(ws.problems.len()));
        return Ok(ExitCode::from(1));
    }
    let Some(d) = ws.find(&name) else {
        let names: Vec<&str> = ws.deployments.iter().map(|d| d.name.0.as_str()).collect();
        let hint = match fleetform::spec::diag::did_you_mean(&name, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if names.is_empty() => "no deployments were found under the given paths".to_string(),
            None => format!("declared deployments: {}", names.join(", ")),
        };
        return Err(CommandError::NoSuchDeployment { name, hint });
    };
    let mode = if show_secrets { SecretMode::Reveal } else { SecretMode::Mask };
    match manifest::render(d, &ProcessEnv, mode) {
        Ok(r) => {
            super::print_json(&r.configuration);
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            print_problems(&problems);
            Ok(ExitCode::from(1))
        }
    }
}
