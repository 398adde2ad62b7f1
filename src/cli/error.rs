//! How a command fails: with the library's error as the library reports it, or with one
//! of the CLI's own refusals, whose help names the flag or step that changes the outcome.
//! Library errors carry data and name no flags; the flags are the CLI's business.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use fleetform::git::{GitError, Uncommitted};
use fleetform::hub::HubSpecError;
use fleetform::model::ReadError;
use miette::Diagnostic;

use crate::cli::args::{RefArg, joined};

/// Why a command failed; printed through miette, exit code 1.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CommandError {
    /// The library's error, boxed whole (code, help, labels), so it reads exactly as the
    /// library wrote it.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Library(ReadError),

    /// A connection string given as a path or revision (a slip of `--hub`): the errors
    /// about a missing file or an unknown revision would print it, key and all, and `--out`
    /// would create a directory named after it.
    #[error("<a connection string>: not {what}; pass it with --hub")]
    #[diagnostic(
        code(fleetform::connection_string_misplaced),
        help(
            "give the hub with --hub \"$IOTHUB_CONNECTION_STRING\" (or --hub env:NAME, or set IOTHUB_CONNECTION_STRING), and {where_} a real {what_plain}"
        )
    )]
    MisplacedConnectionString { what: &'static str, what_plain: &'static str, where_: &'static str },

    /// `--hub` or `--endpoint` names no hub: the library says what is wrong with the value,
    /// this says which flag gave it and what it takes.
    #[error("{}", hub_arg_message(reason, given.as_deref()))]
    #[diagnostic(code(fleetform::hub_arg), help("{}", hub_arg_help(reason)))]
    HubArg { reason: HubSpecError, given: Option<String> },

    #[error("{} has uncommitted changes", path.display())]
    #[diagnostic(help("commit the changes first, or pass --allow-dirty to apply the working tree as it is"))]
    Dirty { path: PathBuf },

    #[error("{found}")]
    #[diagnostic(help("commit the changes first, or pass --allow-dirty to apply the working tree as it is"))]
    Uncommitted { found: Uncommitted },

    /// Not knowing whether the tree is clean is not knowing that it is.
    #[error("cannot tell whether {} has uncommitted changes: {reason}", path.display())]
    #[diagnostic(help(
        "fix the repository (try `git status` there), or pass --allow-dirty to apply the working tree without the check"
    ))]
    DirtyUnknown { path: PathBuf, reason: GitError },

    #[error("cannot tell whether the deployment files have uncommitted changes: {reason}")]
    #[diagnostic(help(
        "fix the repository (try `git status` there), or pass --allow-dirty to apply the working tree without the check"
    ))]
    UncommittedUnknown { reason: GitError },

    #[error("no deployments found in {}: --prune would delete every managed deployment", joined(paths))]
    #[diagnostic(
        code(fleetform::prune_empty),
        help("check the paths; pass --allow-empty to delete every managed deployment on purpose")
    )]
    PruneEmpty { paths: Vec<PathBuf> },

    #[error("the deployments at {base} (merge base {merge_base}) have {count} problem{}", fleetform::render::plural(*count))]
    #[diagnostic(help(
        "the change is shown against the deployments at the merge base; fix them there or pick another --base"
    ))]
    BaseProblems { base: String, merge_base: String, count: usize },

    #[error("no deployment named \"{name}\"")]
    #[diagnostic(help("{hint}"))]
    NoSuchDeployment { name: String, hint: String },

    #[error("{flag} {value} is not a share")]
    #[diagnostic(help("give a share between 0 and 1, e.g. 0.9"))]
    NotAShare { flag: &'static str, value: f64 },

    #[error("{flag} {value}: give a number of seconds, e.g. 5")]
    NotSeconds { flag: &'static str, value: f64 },

    #[error("{name}={value:?} is not a duration")]
    #[diagnostic(help("{hint}"))]
    BadEnvDuration { name: &'static str, value: String, hint: &'static str },

    #[error("cannot create {}: {reason}", path.display())]
    CreateDir { path: PathBuf, reason: std::io::Error },

    #[error("{path}: {reason}")]
    Canonicalize { path: String, reason: std::io::Error },

    #[error("cannot encode the plan: {reason}")]
    EncodePlan { reason: serde_json::Error },

    #[error("cannot save a plan made without secrets ({}) for apply", missing.join(", "))]
    #[diagnostic(
        code(fleetform::plan_without_secrets),
        help(
            "the ids of the deployments that read them are unknown, so apply could not write them; set the variables and plan again with --out"
        )
    )]
    SaveWithoutSecrets { missing: Vec<String> },

    /// `init` or `man --out` could not write its files.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Output(#[from] crate::cli::commands::init::OutputError),
}

/// Every library error a command can meet becomes a [`CommandError::Library`].
macro_rules! library_errors {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CommandError {
            fn from(e: $t) -> Self {
                CommandError::Library(ReadError::new(e))
            }
        }
    )*};
}

library_errors!(
    GitError,
    fleetform::hub::HubError,
    fleetform::hub::SnapshotError,
    fleetform::apply::ApplyError,
    fleetform::plan::PlanError,
    fleetform::spec::LoadError,
    fleetform::import::ImportError,
    fleetform::query::QueryRunError,
    fleetform::explain::ExplainError,
    fleetform_hub_emulator::EmulatorError,
    fleetform_hub_emulator::auth::EntraConfigError,
    fleetform_hub_emulator::generate::GenerateError,
);

/// The paths, output paths and revisions a command line holds.
#[derive(Default)]
pub struct UserInputs<'a> {
    pub paths: Vec<&'a Path>,
    pub outs: Vec<&'a Path>,
    pub revs: Vec<&'a str>,
}

impl<'a> UserInputs<'a> {
    pub fn read(&mut self, paths: &'a [PathBuf]) -> &mut Self {
        self.paths.extend(paths.iter().map(PathBuf::as_path));
        self
    }

    pub fn rev(&mut self, git: &'a RefArg) -> &mut Self {
        self.revs.extend(git.git_ref.as_deref());
        self
    }
}

/// Refuses a connection string given as a path, an output path or a revision, before
/// anything reads, creates or prints it.
pub fn refuse_misplaced_connection_strings(inputs: &UserInputs<'_>) -> Result<(), CommandError> {
    let check = |text: &OsStr, what, what_plain, where_| {
        if fleetform::hub::connection::ConnectionString::looks_like(&text.to_string_lossy()) {
            Err(CommandError::MisplacedConnectionString { what, what_plain, where_ })
        } else {
            Ok(())
        }
    };
    for p in &inputs.paths {
        check(p.as_os_str(), "a file or folder", "file or folder", "as the path give")?;
    }
    for p in &inputs.outs {
        check(p.as_os_str(), "an output path", "directory or file", "as --out give")?;
    }
    for r in &inputs.revs {
        check(OsStr::new(r), "a git revision", "branch, tag or commit", "as --ref/--base give")?;
    }
    Ok(())
}

const HUB_FORMS: &str = "--hub takes a snapshot directory (e.g. examples/campus/hub), a connection string \
                         (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…) or env:NAME";

fn hub_arg_message(reason: &HubSpecError, given: Option<&str>) -> String {
    match reason {
        HubSpecError::NoHubGiven => format!(
            "{reason}: no --hub, and neither FLEETFORM_HUB nor {} is set",
            fleetform::hub::CONNECTION_STRING_ENV
        ),
        // `given` is `env:NAME` here: the name, never a value.
        HubSpecError::EnvVarUnset { .. } => format!("--hub {}: {reason}", given.unwrap_or("env:")),
        HubSpecError::NotADirectory { .. } => format!("--hub {reason}"),
        HubSpecError::Unrecognised => format!("--hub: {reason}"),
        HubSpecError::EndpointWithSnapshot { path } => format!(
            "--endpoint applies to a hub reached by connection string, not to the snapshot directory {}",
            path.display()
        ),
        HubSpecError::EndpointNotAUrl { .. } => format!("--endpoint {reason}"),
        HubSpecError::Connection(_) => format!("--hub: {reason}"),
        HubSpecError::CredentialWithoutHost => format!("--hub-credential: {reason}"),
    }
}

fn hub_arg_help(reason: &HubSpecError) -> String {
    match reason {
        HubSpecError::NoHubGiven => {
            format!("pass --hub, or set FLEETFORM_HUB or {}; {HUB_FORMS}", fleetform::hub::CONNECTION_STRING_ENV)
        }
        HubSpecError::EnvVarUnset { name } => {
            format!("export {name} with the hub's connection string, or pass --hub another way")
        }
        HubSpecError::EndpointWithSnapshot { .. } => "drop --endpoint, or give --hub a connection string".to_string(),
        HubSpecError::EndpointNotAUrl { .. } => {
            "--endpoint takes the REST base URL, e.g. http://127.0.0.1:8080 for the emulator".to_string()
        }
        HubSpecError::CredentialWithoutHost => {
            "give --hub the hub's host name (e.g. --hub myhub.azure-devices.net), or drop --hub-credential".to_string()
        }
        _ => HUB_FORMS.to_string(),
    }
}
