//! `fleetform hub …`: tools around hubs, from the emulator crate.

pub mod generate;
pub mod serve;

use std::process::ExitCode;

use clap::Subcommand;

use crate::cli::error::CommandError;

#[derive(Subcommand)]
pub enum HubCommand {
    /// Write a reproducible synthetic fleet snapshot (campus-style tags, skewed).
    Generate(generate::Args),
    /// Serve a snapshot directory as a local IoT Hub (REST subset, SAS auth, etags,
    /// deployment assignment, metrics). Prints the URL and a connection string.
    Serve(serve::Args),
}

pub fn run(command: HubCommand) -> Result<ExitCode, CommandError> {
    match command {
        HubCommand::Generate(args) => generate::run(args),
        HubCommand::Serve(args) => serve::run(args),
    }
}
