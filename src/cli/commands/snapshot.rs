//! `fleetform snapshot`.

use std::path::PathBuf;
use std::process::ExitCode;

use fleetform::render::plural;

use crate::cli::args::HubArgs;
use crate::cli::error::CommandError;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub hub: HubArgs,
    /// The snapshot directory to write (created if missing). It holds the hub's
    /// registry passwords and tokens: the directory is made owner-only (0700), its
    /// files 0600.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace every sensitive value (registry passwords, settings named like a
    /// credential, values secret in any deployment version) with a marker. plan,
    /// explain, query and status still work on it; it cannot restore a hub or be
    /// imported with real passwords.
    #[arg(long)]
    pub redact: bool,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let Args { hub, out, redact } = args;
    let hub = hub.open_hub()?;
    let started = std::time::Instant::now();
    let summary = fleetform::hub::snapshot_with(hub.as_ref(), &out, redact)?;
    eprintln!(
        "wrote {} configuration{}, {} device twin{} and {} module twin{} from {} to {} in {:.1} s",
        summary.configurations,
        plural(summary.configurations),
        summary.devices,
        plural(summary.devices as usize),
        summary.module_twins,
        plural(summary.module_twins as usize),
        hub.describe(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    if redact {
        eprintln!(
            "sensitive values are replaced by \"{}\"; the directory is owner-only (0700, files 0600)",
            fleetform::plan::redact::REDACTED
        );
    } else {
        eprintln!(
            "{} holds the hub's registry passwords and tokens in clear: it is owner-only (0700, files 0600); \
             keep it out of git and CI artifacts, or write it with --redact",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
