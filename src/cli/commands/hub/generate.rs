//! `fleetform hub generate`.

use std::path::PathBuf;
use std::process::ExitCode;

use fleetform_hub_emulator::generate::{GenerateOptions, deployments_kdl, generate};

use crate::cli::args;
use crate::cli::error::CommandError;
use crate::cli::files::write_atomically;

#[derive(clap::Args)]
pub struct Args {
    /// How many device twins.
    #[arg(long)]
    pub devices: usize,
    /// Seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of IoT Edge devices (0 to 1).
    #[arg(long, default_value_t = 0.9)]
    pub edge_share: f64,
    /// Also write this many matching deployments to OUT/deployments/fleet.kdl
    /// (about a tenth standard, the rest layered), for benchmarks and demos.
    #[arg(long, value_name = "N")]
    pub deployments: Option<usize>,
    /// The snapshot directory to write (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let Args { devices, seed, edge_share, deployments, out } = args;
    let edge_share = args::share("--edge-share", edge_share)?;
    let opts = GenerateOptions { devices, seed, edge_share, ..Default::default() };
    let started = std::time::Instant::now();
    let summary = generate(&opts, &out)?;
    eprintln!(
        "wrote {} devices ({} IoT Edge) in {} buildings to {} ({:.1} MiB) in {:.1} s",
        summary.devices,
        summary.edge_devices,
        summary.buildings,
        out.display(),
        summary.bytes_written() as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
    if let Some(n) = deployments.filter(|n| *n > 0) {
        let dir = out.join("deployments");
        std::fs::create_dir_all(&dir).map_err(|reason| CommandError::CreateDir { path: dir.clone(), reason })?;
        let file = dir.join("fleet.kdl");
        write_atomically(&file, &deployments_kdl(n))?;
        eprintln!("wrote {n} deployments to {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
