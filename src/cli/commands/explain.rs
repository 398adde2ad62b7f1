//! `fleetform explain`.

use std::path::PathBuf;
use std::process::ExitCode;

use fleetform::explain::{State, explain_device};
use fleetform::hub::Fleet;

use crate::cli::args::{Format, HubArgs, RefArg};
use crate::cli::error::CommandError;
use crate::cli::workspace::declared;

#[derive(clap::Args)]
pub struct Args {
    /// The device id.
    pub device: String,
    /// Files or directories (searched recursively for *.kdl).
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Explain the hub's configurations as they are now, instead of the repository's
    /// deployments as they will be after apply (the default, --declared).
    #[arg(long, conflicts_with = "declared")]
    pub current: bool,
    /// Explain the repository's deployments as apply would leave them (the default).
    #[arg(long)]
    pub declared: bool,
    #[command(flatten)]
    pub git: RefArg,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let (state, rendered) = if args.current {
        (State::Current, Vec::new())
    } else {
        match declared(&args.paths, args.git.git_ref.as_deref())? {
            Some(r) => (State::Declared, r),
            None => return Ok(ExitCode::from(1)),
        }
    };
    let hub = args.hub.open_shape_checked()?;
    let current = hub.as_ref().configurations()?;
    let e = explain_device(&Fleet(hub.as_ref()), &current, rendered, &args.device, state)?;
    crate::cli::ui::warn_wrong_shapes(&hub);
    match args.format {
        Format::Text => print!("{}", e.to_text()),
        Format::Json => super::print_json(&e.to_json()),
    }
    Ok(ExitCode::SUCCESS)
}
