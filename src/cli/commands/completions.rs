//! `fleetform completions SHELL`: a completion script generated from the clap tree, so it
//! can never offer a subcommand or flag the binary does not have.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::error::CommandError;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let mut command = crate::cli::Cli::command();
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout().lock());
    Ok(ExitCode::SUCCESS)
}
