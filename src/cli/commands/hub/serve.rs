//! `fleetform hub serve`: runs the emulator and announces it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use fleetform_hub_emulator::{Behaviour, ClassStats, QuotaOptions, ServeOptions, Serving, Stats, Tier};

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
    /// Devices whose twin matches this target condition (e.g. "tags.location.building='43'")
    /// report failure (500) instead of success: a failing cohort, the same devices every
    /// run. Adds to --simulate-failure-share.
    #[arg(long, value_name = "CONDITION")]
    pub simulate_failure_where: Option<String>,
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
    /// Enforce this IoT Hub tier's per-minute operation quotas (queries, configurations,
    /// twin reads): past them requests get 429 ThrottlingException. No tier, no quotas.
    #[arg(long, value_name = "F1|S1|S2|S3")]
    pub tier: Option<Tier>,
    /// Hub units the quotas scale with (needs --tier; F1 always has one).
    #[arg(long, value_name = "N", requires = "tier")]
    pub units: Option<u32>,
    /// Length of one quota window: 60s on a hub; shorter rehearses the same request
    /// counts faster (pair with FLEETFORM_QUOTA_WINDOW on the client).
    #[arg(long, value_name = "DURATION", default_value = "60s", requires = "tier")]
    pub quota_window: String,
    /// Recount each deployment's metrics at most this often, as IoT Hub's configuration
    /// runs do (every 5m); between runs reads return the last run's counts (e.g. a wave
    /// just widened still shows the wave before). Not given: recounted on every read.
    #[arg(long, value_name = "DURATION")]
    pub metrics_interval: Option<String>,
    /// After each deployment write it makes, print `held: METHOD PATH` on stdout and delay
    /// the reply this long: a fault rehearsal that kills the client there, after the write
    /// and before the client learns of it.
    #[arg(long, value_name = "DURATION")]
    pub hold_writes: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let simulate_success_after =
        args.simulate_success_after.map(|s| args::seconds("--simulate-success-after", s)).transpose()?;
    let quotas = match args.tier {
        Some(tier) => {
            Some(QuotaOptions { tier, units: args.units.unwrap_or(1), window: args::duration(&args.quota_window)? })
        }
        None => None,
    };
    let behaviour = Behaviour {
        simulate_success_after,
        simulate_failure_share: args.simulate_failure_share,
        simulate_failure_where: args.simulate_failure_where,
        inject_429: args.inject_429,
        inject_503: args.inject_503,
        seed: args.seed,
        quotas,
        metrics_interval: args.metrics_interval.as_deref().map(args::duration).transpose()?,
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
    let hold_writes = args.hold_writes.as_deref().map(args::duration).transpose()?;
    let options = ServeOptions { state: args.state, listen: args.listen, behaviour, entra, hold_writes };
    let stats = fleetform_hub_emulator::serve(options, banner)?;
    eprint!("{}", summary(&stats));
    Ok(ExitCode::SUCCESS)
}

/// What the emulator did, on stderr when it stops, one line per operation class.
fn summary(stats: &Stats) -> String {
    let mut out = format!(
        "emulator stopped: {} requests, {} throttled 429, {} injected 429, {} injected 503, {} unauthorized\n",
        stats.requests, stats.throttled, stats.injected429, stats.injected503, stats.unauthorized
    );
    let classes = [
        ("queries", &stats.classes.queries),
        ("configurations", &stats.classes.configurations),
        ("twin reads", &stats.classes.twin_reads),
    ];
    for (name, ClassStats { requests, throttled, rows, bytes }) in classes {
        out.push_str(&format!(
            "  {name:<15} {requests:>9} requests {throttled:>7} throttled {rows:>10} rows {:>10.1} MiB\n",
            *bytes as f64 / (1024.0 * 1024.0)
        ));
    }
    out
}

/// On stdout, which scripts and tests read: the URL, then the connection string.
fn banner(serving: &Serving) {
    let Serving { url, connection_string, devices, modules, packed_bytes, loaded_in } = serving;
    eprintln!(
        "loaded {devices} device twins and {modules} module twins ({:.1} MiB compressed) in {:.1} s",
        *packed_bytes as f64 / (1024.0 * 1024.0),
        loaded_in.as_secs_f64()
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "fleetform hub emulator listening on {url}");
    let _ = writeln!(out, "connection string: {connection_string}");
    let _ = writeln!(out, "try: fleetform query '*' --hub \"{connection_string}\" --endpoint {url}    (Ctrl-C stops)");
    let _ = out.flush();
}
