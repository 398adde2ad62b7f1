//! `fleetform status`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::args::{Format, HubArgs};
use crate::cli::error::CommandError;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub hub: HubArgs,
    /// The repository to compare each deployment's fleetform-commit with: is it HEAD,
    /// or has HEAD moved on?
    #[arg(long, value_name = "PATH", default_value = ".")]
    pub repo: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let hub = args.hub.open_hub()?;
    let mut report = fleetform::apply::status(hub.as_ref())?;
    fleetform::apply::compare_with_head(&mut report, &args.repo);
    fleetform::apply::sample_failed_devices(hub.as_ref(), &mut report)?;
    match args.format {
        Format::Text => print!("{}", fleetform::render::status::status_text(&report)),
        Format::Json => super::print_json(&report),
    }
    Ok(ExitCode::SUCCESS)
}
