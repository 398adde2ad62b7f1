//! Arguments several commands share, and the typed values the commands' text arguments
//! become. Values are checked when the command runs, not by clap, so that their errors are
//! reported (and exit) like every other error.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use clap::ValueEnum;
use fleetform::hub::credential::CredentialKind;
use fleetform::hub::rest::{Pacer, Quota, RestOptions, Tier, pacer};
use fleetform::hub::{Hub, HubError, shape::ShapeChecked};

use crate::cli::error::CommandError;

#[derive(Clone, Copy, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

/// `--ref REV`: read the deployment files from a git commit instead of the working tree.
#[derive(clap::Args)]
pub struct RefArg {
    /// Read the .kdl files from this commit (branch, tag, id) instead of the working tree;
    /// files are shown as REV:path.
    #[arg(long = "ref", value_name = "REV")]
    pub git_ref: Option<String>,
}

#[derive(clap::Args)]
pub struct HubArgs {
    /// The hub: a snapshot directory (configurations.json and devices.json[l]), a
    /// connection string "HostName=…;SharedAccessKeyName=…;SharedAccessKey=…", env:NAME
    /// to read one from variable NAME, or a host name <hub>.azure-devices.net to sign in
    /// with Microsoft Entra ID (see --hub-credential). Without it,
    /// IOTHUB_CONNECTION_STRING is used.
    #[arg(long, env = "FLEETFORM_HUB", value_name = "HUB", hide_env_values = true)]
    pub hub: Option<String>,
    /// Base URL replacing https://<HostName>: the emulator (http://127.0.0.1:PORT) or a
    /// sovereign cloud.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    #[command(flatten)]
    pub access: HubAccess,
}

/// How fleetform reaches a hub beyond naming it: pacing and sign-in. Apart from
/// [`HubArgs`] so that `validate`, which reads a hub only when `--hub` is on its command
/// line (never from FLEETFORM_HUB), shares them.
#[derive(clap::Args)]
pub struct HubAccess {
    /// The hub's tier. With it, requests are paced to stay within --hub-share of the hub's
    /// per-minute quotas (queries 20/unit on S1 and S2, 1,000/unit on S3; deployments
    /// 20/unit). Without it, requests go as fast as the hub answers, backing off on 429.
    #[arg(long, value_enum, ignore_case = true, env = "FLEETFORM_HUB_TIER", value_name = "TIER")]
    pub hub_tier: Option<HubTier>,
    /// The hub's units, which multiply its quotas (with --hub-tier).
    #[arg(long, env = "FLEETFORM_HUB_UNITS", value_name = "N", default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub hub_units: u32,
    /// The share of each of the hub's quotas fleetform may use (with --hub-tier). Half by
    /// default: other services query the same hub, and two runs at once still fit.
    #[arg(long, env = "FLEETFORM_HUB_SHARE", value_name = "SHARE", default_value_t = pacer::DEFAULT_SHARE)]
    pub hub_share: f64,
    /// The hub's metering window, for rehearsals against `fleetform hub serve
    /// --quota-window` (set through FLEETFORM_QUOTA_WINDOW, e.g. 1s). A real hub meters
    /// per minute.
    #[arg(long, env = "FLEETFORM_QUOTA_WINDOW", value_name = "DURATION", hide = true,
        value_parser = humantime::parse_duration)]
    pub quota_window: Option<Duration>,
    /// How to sign in with Entra ID when --hub is a host name: auto picks workload
    /// (AZURE_FEDERATED_TOKEN_FILE set), else client-secret (AZURE_CLIENT_SECRET), else
    /// client-certificate (AZURE_CLIENT_CERTIFICATE_PATH, a PEM with certificate and RSA
    /// key), else managed-identity (IDENTITY_ENDPOINT/MSI_ENDPOINT), else azure-cli. Given, any host
    /// name is signed in to.
    #[arg(long, env = "FLEETFORM_HUB_CREDENTIAL", value_name = "CREDENTIAL")]
    pub hub_credential: Option<HubCredential>,
}

/// `--hub-credential`: which Entra ID credential signs in.
#[derive(Clone, Copy, ValueEnum)]
pub enum HubCredential {
    Auto,
    ClientSecret,
    ClientCertificate,
    Workload,
    ManagedIdentity,
    AzureCli,
}

impl From<HubCredential> for CredentialKind {
    fn from(choice: HubCredential) -> CredentialKind {
        match choice {
            HubCredential::Auto => CredentialKind::Auto,
            HubCredential::ClientSecret => CredentialKind::ClientSecret,
            HubCredential::ClientCertificate => CredentialKind::ClientCertificate,
            HubCredential::Workload => CredentialKind::Workload,
            HubCredential::ManagedIdentity => CredentialKind::ManagedIdentity,
            HubCredential::AzureCli => CredentialKind::AzureCli,
        }
    }
}

/// `--hub-tier`: the standard tiers, which are the ones with IoT Edge deployments.
#[derive(Clone, Copy, ValueEnum)]
pub enum HubTier {
    #[value(name = "S1")]
    S1,
    #[value(name = "S2")]
    S2,
    #[value(name = "S3")]
    S3,
}

impl From<HubTier> for Tier {
    fn from(t: HubTier) -> Tier {
        match t {
            HubTier::S1 => Tier::S1,
            HubTier::S2 => Tier::S2,
            HubTier::S3 => Tier::S3,
        }
    }
}

impl HubArgs {
    /// The hub these arguments name, with the REST backend's default options.
    pub fn open_hub(&self) -> Result<Box<dyn Hub>, CommandError> {
        self.open_hub_with(RestOptions::default())
    }

    /// [`Self::open_hub`], counting device twins of the wrong shape for a warning
    /// ([`crate::cli::ui::warn_wrong_shapes`]) instead of failing on them.
    pub fn open_shape_checked(&self) -> Result<ShapeChecked, CommandError> {
        Ok(ShapeChecked::new(self.open_hub()?))
    }

    /// The hub these arguments name; `options` apply when it is a connection string. On a
    /// terminal, reading a hub's twins over REST draws a progress bar on stderr.
    pub fn open_hub_with(&self, options: RestOptions) -> Result<Box<dyn Hub>, CommandError> {
        let on_progress = options.on_progress.clone().or_else(fleetform::render::read_progress::stderr_bar);
        let pacer = match options.pacer.clone() {
            Some(p) => Some(p),
            None => self.quota()?.map(|q| Arc::new(Pacer::new(q))),
        };
        let options = RestOptions { on_progress, pacer, ..options };
        let credential = self.access.hub_credential.map(CredentialKind::from);
        let opened = fleetform::hub::open_signed_in(self.hub.as_deref(), self.endpoint.as_deref(), credential, options);
        opened.map_err(|e| match e {
            HubError::Spec(reason) => CommandError::HubArg { reason, given: self.hub.clone() },
            other => other.into(),
        })
    }
}

impl HubArgs {
    /// The hub's quotas and fleetform's share of them, when the tier is known.
    pub fn quota(&self) -> Result<Option<Quota>, CommandError> {
        self.access.quota()
    }
}

impl HubAccess {
    /// The hub's quotas and fleetform's share of them, when the tier is known.
    pub fn quota(&self) -> Result<Option<Quota>, CommandError> {
        let Some(tier) = self.hub_tier else { return Ok(None) };
        let share = share("--hub-share", self.hub_share)?;
        if share == 0.0 {
            return Err(CommandError::NotAShare { flag: "--hub-share", value: share });
        }
        let window = self.quota_window.filter(|w| !w.is_zero()).unwrap_or(pacer::MINUTE);
        Ok(Some(Quota { share, window, ..Quota::new(tier.into(), self.hub_units) }))
    }
}

/// `--prune` and whether it may act on an empty set of deployments.
#[derive(Clone, Copy)]
pub struct Prune {
    pub prune: bool,
    pub allow_empty: bool,
}

impl Prune {
    /// Pruning with nothing declared deletes every managed deployment: refused unless
    /// asked for, because a wrong path, a skipped link or a bad checkout looks the same.
    pub fn check(self, paths: &[PathBuf], rendered: &[fleetform::manifest::Rendered]) -> Result<(), CommandError> {
        if self.prune && !self.allow_empty && rendered.is_empty() {
            return Err(CommandError::PruneEmpty { paths: paths.to_vec() });
        }
        Ok(())
    }
}

/// A duration such as `90s`, `10m`, `1h30m` or `500ms`.
pub fn duration(text: &str) -> Result<Duration, CommandError> {
    Ok(fleetform::apply::parse_duration(text)?)
}

/// A share between 0 and 1 (`--edge-share`).
pub fn share(flag: &'static str, value: f64) -> Result<f64, CommandError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(CommandError::NotAShare { flag, value });
    }
    Ok(value)
}

/// A number of seconds, 0 or more (`--simulate-success-after`).
pub fn seconds(flag: &'static str, value: f64) -> Result<Duration, CommandError> {
    if value.is_finite() && value >= 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(CommandError::NotSeconds { flag, value })
    }
}

/// Paths as the user typed them, comma-separated, for messages.
pub fn joined(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
