//! The `fleetform` command line: the clap tree, and dispatch to one module per command in
//! [`commands`]. Shared arguments are in [`args`], terminal decisions (colour, prompt,
//! Ctrl-C, SIGPIPE) in [`ui`], the CLI's own errors in [`error`].

mod args;
mod commands;
mod error;
mod files;
mod revisions;
mod ui;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use args::Color;
use commands::hub::HubCommand;
use error::{CommandError, UserInputs};

/// GitOps for Azure IoT Edge fleets: deployments as KDL files, checked, planned per
/// device and applied in priority order.
#[derive(Parser)]
#[command(name = "fleetform", version, about, max_term_width = 100)]
struct Cli {
    /// When to use colour: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every .kdl file under PATHs and report every problem with its location.
    ///
    /// Includes the hub's size limits: each twin's desired properties as one deployment
    /// writes them (`$edgeAgent`, `$edgeHub`, each module's `twin`) at most 32 KB by the
    /// hub's size rule; files over 4 MiB are refused unread (README "Input limits").
    Validate(commands::validate::Args),
    /// Print the Configuration JSON the hub will receive for one deployment.
    ///
    /// A deployment holding secrets needs FLEETFORM_HASH_KEY (at least 32 characters, the same
    /// wherever plan and apply run): its id covers each secret through a MAC under that key.
    Render(commands::render::Args),
    /// Compare the declared deployments with the hub: what apply will do, and what every
    /// device will run before and after, grouped into cohorts.
    ///
    /// Deployments holding secrets need FLEETFORM_HASH_KEY (see `render --help`). A hub
    /// configuration already holding the rendered content under an older hash scheme or key
    /// is relabelled in place, not replaced.
    /// Device twins of the wrong shape (`tags` not an object, `capabilities.iotEdge` not a
    /// boolean, …) are counted in a warning on stderr, with sample device ids.
    Plan(commands::plan::Args),
    /// Make the hub match the repository: carry out a saved plan, or plan, show it and ask
    /// for confirmation.
    ///
    /// Exit codes: 0 done (or no changes), 1 error, refused, stale plan, failed step or
    /// failed rollout (--wait), 3 (--wait) written but a deployment targets no device (or
    /// is outranked on every device it targets), 130 interrupted by Ctrl-C.
    Apply(commands::apply::Args),
    /// Show the deployments on the hub: managed ones with their commit and rollout
    /// metrics, unmanaged IoT Edge deployments apart.
    Status(commands::status::Args),
    /// Explain one device: the twin values the target conditions read, which deployments
    /// target it (and which clause fails for the others), its stack, and where every
    /// module, route and twin property of its effective manifest comes from.
    Explain(commands::explain::Args),
    /// Run a twin query or try a target condition against a hub.
    ///
    /// A text starting with SELECT runs as the hub's query endpoint would (FROM devices or
    /// devices.modules; TOP, COUNT, AVG, SUM, MIN, MAX, GROUP BY; strings in '…' or "…" with
    /// \' \" \\ \uXXXX escapes); anything else is a target condition (single quotes only), and
    /// the IoT Edge devices it targets are listed. Device twins of the wrong
    /// shape are counted in a warning on stderr, with sample device ids. Registry passwords
    /// and settings named like a credential read "(sensitive)" in the rows.
    Query(commands::query::Args),
    /// Copy a hub (configurations, device twins, module twins) into a snapshot directory
    /// that plan, explain and query read offline.
    Snapshot(commands::snapshot::Args),
    /// Work with hubs: generate a synthetic fleet snapshot, or serve one as a local hub.
    #[command(subcommand)]
    Hub(HubCommand),
    /// Write .kdl files from a hub's IoT Edge deployments (adopting the ones fleetform does
    /// not manage yet), or from a deployment.json manifest (VS Code, iotedgedev).
    Import(commands::import::Args),
    /// Rewrite .kdl files into the canonical layout, keeping comments.
    Fmt(commands::fmt::Args),
    /// Start a deployments repository: deployments/ with one commented standard
    /// deployment, GitHub workflows using the fleetform action, .gitignore, README.
    ///
    /// Refuses (and writes nothing) when any of those files exists, unless --force.
    Init(commands::init::Args),
    /// Print a shell completion script for bash, zsh, fish, PowerShell or elvish.
    ///
    /// For example `fleetform completions bash > ~/.local/share/bash-completion/completions/fleetform`,
    /// or `fleetform completions zsh > "${fpath[1]}/_fleetform"`.
    Completions(commands::completions::Args),
    /// Print a manual page (roff), or write one per command with --out DIR.
    ///
    /// `fleetform man plan | man -l -` reads one page; `fleetform man --out
    /// ~/.local/share/man/man1` installs fleetform.1, fleetform-plan.1, fleetform-hub-serve.1, …
    Man(commands::man::Args),
    /// Print the JSON Schema of `plan --format json` or `explain --format json`.
    ///
    /// Generated from the output types; schema/plan.schema.json and
    /// schema/explain.schema.json hold the same text.
    Schema(commands::schema::Args),
}

impl Command {
    /// The paths, output paths and revisions the user typed, for the connection-string check.
    fn inputs(&self) -> UserInputs<'_> {
        let mut inputs = UserInputs::default();
        match self {
            Command::Validate(a) => {
                inputs.read(&a.paths).rev(&a.git);
            }
            Command::Render(a) => {
                inputs.read(&a.paths).rev(&a.git);
            }
            Command::Explain(a) => {
                inputs.read(&a.paths).rev(&a.git);
            }
            Command::Fmt(a) => {
                inputs.read(&a.paths);
            }
            Command::Plan(a) => {
                inputs.read(&a.paths).rev(&a.git).revs.extend(a.base.as_deref());
                inputs.outs.extend(a.out.as_deref());
            }
            Command::Apply(a) => {
                inputs.read(&a.args).rev(&a.git);
            }
            Command::Import(a) => {
                inputs.paths.extend(a.manifest.as_deref());
                inputs.outs.push(&a.out);
            }
            Command::Snapshot(a) => inputs.outs.push(&a.out),
            Command::Hub(HubCommand::Generate(a)) => inputs.outs.push(&a.out),
            Command::Init(a) => inputs.outs.push(&a.dir),
            Command::Man(a) => inputs.outs.extend(a.out.as_deref()),
            Command::Status(_)
            | Command::Query(_)
            | Command::Hub(HubCommand::Serve(_))
            | Command::Completions(_)
            | Command::Schema(_) => {}
        }
        inputs
    }

    /// Apply and the emulator keep going when a reader of their progress goes away: their
    /// writes to the hub must not be cut off by it.
    fn writes_to_a_hub(&self) -> bool {
        matches!(self, Command::Apply(_) | Command::Hub(HubCommand::Serve(_)))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.command.writes_to_a_hub() {
        ui::quiet_on_closed_pipe();
    }
    let ui = ui::Ui::new(cli.color);
    match run(cli.command, &ui) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{:?}", miette::Report::new(error));
            ExitCode::from(1)
        }
    }
}

fn run(command: Command, ui: &ui::Ui) -> Result<ExitCode, CommandError> {
    error::refuse_misplaced_connection_strings(&command.inputs())?;
    match command {
        Command::Validate(args) => commands::validate::run(args),
        Command::Render(args) => commands::render::run(args),
        Command::Plan(args) => commands::plan::run(args, ui),
        Command::Apply(args) => commands::apply::run(args, ui),
        Command::Status(args) => commands::status::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Query(args) => commands::query::run(args),
        Command::Snapshot(args) => commands::snapshot::run(args),
        Command::Hub(command) => commands::hub::run(command),
        Command::Import(args) => commands::import::run(args),
        Command::Fmt(args) => commands::fmt::run(args),
        Command::Init(args) => commands::init::run(args),
        Command::Completions(args) => commands::completions::run(args),
        Command::Man(args) => commands::man::run(args),
        Command::Schema(args) => commands::schema::run(args),
    }
}
