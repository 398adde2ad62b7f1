//! `fleetform hub serve`: runs the emulator and announces it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use fleetform_hub_emulator::{Behaviour, ServeOptions, Serving};

use crate::cli::args;
use crate::cli::error::CommandError;

#[derive(clap::Args)]
pub struct Args {
    /// The state directory (a snapshot directory); every change is written back to it.
    #[arg(long)]
    pub state: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8484")]
    pub listen: SocketAddr,
    /// Devices report their new $edgeAgent desired version this many seconds after it
    /// changes (off when not given).
    #[arg(long, value_name = "SECS")]
    pub simulate_success_after: Option<f64>,
    /// Share of devices (0 to 1) that report failure (500) instead of success.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub simulate_failure_share: f64,
    /// Share of requests (0 to 1) answered 429 ThrottlingException.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub inject_429: f64,
    /// Share of requests (0 to 1) answered 503 ServiceUnavailable.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub inject_503: f64,
    /// Seed for simulated failures and injected faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also accept Microsoft Entra ID Bearer tokens issued by this issuer (the `iss` claim,
    /// e.g. https://sts.windows.net/<tenant>/) for the audience https://iothubs.azure.net.
    #[arg(long, value_name = "URL", requires = "entra_jwks")]
    pub entra_issuer: Option<String>,
    /// The issuer's signing keys: a JSON Web Key Set file (what its jwks_uri serves).
    #[arg(long, value_name = "FILE", requires = "entra_issuer")]
    pub entra_jwks: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let simulate_success_after =
        args.simulate_success_after.map(|s| args::seconds("--simulate-success-after", s)).transpose()?;
    let behaviour = Behaviour {
        simulate_success_after,
        simulate_failure_share: args.simulate_failure_share,
        inject_429: args.inject_429,
        inject_503: args.inject_503,
        seed: args.seed,
    };
    let entra = match (&args.entra_issuer, &args.entra_jwks) {
        (Some(issuer), Some(jwks)) => Some(fleetform_hub_emulator::auth::EntraVerifier::from_file(issuer, jwks)?),
        _ => None,
    };
    if let Some(issuer) = &args.entra_issuer {
        eprintln!(
            "accepting Entra ID Bearer tokens from {issuer} for {}",
            fleetform_hub_emulator::auth::IOT_HUB_AUDIENCE
        );
    }
    let options = ServeOptions { state: args.state, listen: args.listen, behaviour, entra };
    let stats = fleetform_hub_emulator::serve(options, banner)?;
    eprintln!(
        "emulator stopped: {} requests, {} injected 429, {} injected 503, {} unauthorized",
        stats.requests, stats.injected429, stats.injected503, stats.unauthorized
    );
    Ok(ExitCode::SUCCESS)
}

/// On stdout, which scripts and tests read: the URL, then the connection string.
fn banner(serving: &Serving) {
    let Serving { url, connection_string } = serving;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "fleetform hub emulator listening on {url}");
    let _ = writeln!(out, "connection string: {connection_string}");
    let _ = writeln!(out, "try: fleetform query '*' --hub \"{connection_string}\" --endpoint {url}    (Ctrl-C stops)");
    let _ = out.flush();
}
