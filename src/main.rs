//! The `fleetform` command line: argument parsing and printing over the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

// Twins are parsed into many small JSON values across threads; glibc malloc fragments and
// serialises there (plan over 1M devices was 3x slower with it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use fleetform::manifest::{self, ProcessEnv, SecretMode};
use fleetform::spec::{self, Problem};

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

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum PlanFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check every .kdl file under PATHs and report every problem with its location.
    ///
    /// Includes the hub's size limits: each twin's desired properties as one deployment
    /// writes them (`$edgeAgent`, `$edgeHub`, each module's `twin`) at most 32 KB by the
    /// hub's size rule; files over 4 MiB are refused unread (README "Input limits").
    Validate {
        /// Files or directories (searched recursively for *.kdl).
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Show at most N problems in text output (JSON always lists every one); the
        /// total is still counted. 0 shows them all.
        #[arg(long, value_name = "N", default_value_t = 100)]
        max_problems: usize,
        #[command(flatten)]
        git: RefArg,
    },
    /// Print the Configuration JSON the hub will receive for one deployment.
    ///
    /// A deployment holding secrets needs FLEETFORM_HASH_KEY (at least 32 characters, the same
    /// wherever plan and apply run): its id covers each secret through a MAC under that key.
    Render {
        /// The deployment's name.
        name: String,
        /// Files or directories (searched recursively for *.kdl).
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        /// Show registry passwords and (secret) values instead of "(sensitive)".
        #[arg(long)]
        show_secrets: bool,
        #[command(flatten)]
        git: RefArg,
    },
    /// Compare the declared deployments with the hub: what apply will do, and what every
    /// device will run before and after, grouped into cohorts.
    ///
    /// Deployments holding secrets need FLEETFORM_HASH_KEY (see `render --help`). A hub
    /// configuration already holding the rendered content under an older hash scheme or key
    /// is relabelled in place, not replaced.
    /// Device twins of the wrong shape (`tags` not an object, `capabilities.iotEdge` not a
    /// boolean, …) are counted in a warning on stderr, with sample device ids.
    Plan {
        /// Files or directories (searched recursively for *.kdl).
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        hub: HubArgs,
        /// text (terminal), markdown (pull-request comment) or json.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Delete managed deployments that are no longer declared (otherwise they are
        /// reported as orphaned and kept).
        #[arg(long)]
        prune: bool,
        /// With --prune, allow an empty set of deployments (which deletes every managed
        /// deployment). Without it, finding no deployments is an error, since that is far
        /// more often a wrong path than a wish to delete everything.
        #[arg(long)]
        allow_empty: bool,
        /// Also show replaced and updated deployments as a unified diff of their JSON.
        #[arg(long)]
        diff: bool,
        /// Save the plan for `fleetform apply PLANFILE` (no secrets are written). With
        /// FLEETFORM_HASH_KEY set the file is sealed with a MAC: apply then refuses any edit.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Exit 0 when there are no changes, 2 when there are, 1 on errors.
        #[arg(long)]
        detailed_exitcode: bool,
        #[command(flatten)]
        git: RefArg,
        /// Also show what this change does: the deployments declared at the merge base of
        /// REV and HEAD compared with the head (the working tree, or --ref), with the
        /// device impact on the hub's twins. For pull requests: --base origin/main.
        #[arg(long, value_name = "REV")]
        base: Option<String>,
    },
    /// Make the hub match the repository: carry out a saved plan, or plan, show it and ask
    /// for confirmation.
    ///
    /// Exit codes: 0 done (or no changes), 1 error, refused, stale plan, failed step or
    /// failed rollout (--wait), 3 (--wait) written but a deployment targets no device (or
    /// is outranked on every device it targets), 130 interrupted by Ctrl-C.
    Apply {
        /// A plan saved by `fleetform plan --out FILE` (any file whose first non-blank
        /// character is `{`, which must be JSON of kind fleetform-plan; its MAC is checked
        /// with FLEETFORM_HASH_KEY; carried out only if planning now derives the same steps)
        /// followed by the deployment paths it was made from, or just the paths (files or
        /// directories searched recursively for *.kdl, symlinks followed; default ".").
        #[arg(value_name = "PLANFILE | PATH")]
        args: Vec<PathBuf>,
        #[command(flatten)]
        hub: HubArgs,
        /// Apply without asking (CI). Without it, apply asks for `yes` on a terminal.
        #[arg(long)]
        auto_approve: bool,
        /// Delete managed deployments that are no longer declared (planning only; a
        /// saved plan already says what it deletes).
        #[arg(long)]
        prune: bool,
        /// With --prune (or a plan file made with it), allow an empty set of deployments
        /// (which deletes every managed deployment). Without it, finding no deployments is an
        /// error, since that is far more often a wrong path than a wish to delete everything.
        #[arg(long)]
        allow_empty: bool,
        /// Overall deadline for each hub operation, retries of 429/5xx included.
        #[arg(long, value_name = "DURATION", default_value = "10m")]
        timeout: String,
        /// After the writes, wait until the created and updated deployments are applied
        /// and reported successful by their devices (default 15m when given bare).
        #[arg(long, value_name = "DURATION", num_args = 0..=1, require_equals = true, default_missing_value = "15m")]
        wait: Option<String>,
        /// Apply even when the deployment files have uncommitted changes (the
        /// fleetform-commit label then names a commit that does not hold them). Every loaded
        /// file is checked by its real path, so changes behind a symlink count too.
        #[arg(long)]
        allow_dirty: bool,
        #[command(flatten)]
        git: RefArg,
        /// text, or json (one report object on stdout; the plan goes to stderr).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show the deployments on the hub: managed ones with their commit and rollout
    /// metrics, unmanaged IoT Edge deployments apart.
    Status {
        #[command(flatten)]
        hub: HubArgs,
        /// The repository to compare each deployment's fleetform-commit with: is it HEAD,
        /// or has HEAD moved on?
        #[arg(long, value_name = "PATH", default_value = ".")]
        repo: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Explain one device: the twin values the target conditions read, which deployments
    /// target it (and which clause fails for the others), its stack, and where every
    /// module, route and twin property of its effective manifest comes from.
    Explain {
        /// The device id.
        device: String,
        /// Files or directories (searched recursively for *.kdl).
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        hub: HubArgs,
        /// Explain the hub's configurations as they are now, instead of the repository's
        /// deployments as they will be after apply (the default, --declared).
        #[arg(long, conflicts_with = "declared")]
        current: bool,
        /// Explain the repository's deployments as apply would leave them (the default).
        #[arg(long)]
        declared: bool,
        #[command(flatten)]
        git: RefArg,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run a twin query or try a target condition against a hub.
    ///
    /// A text starting with SELECT runs as the hub's query endpoint would (FROM devices or
    /// devices.modules; TOP, COUNT, AVG, SUM, MIN, MAX, GROUP BY; strings in '…' or "…" with
    /// \' \" \\ \uXXXX escapes); anything else is a target condition (single quotes only), and
    /// the IoT Edge devices it targets are listed. Device twins of the wrong
    /// shape are counted in a warning on stderr, with sample device ids. Registry passwords
    /// and settings named like a credential read "(sensitive)" in the rows.
    Query {
        /// `SELECT … FROM devices …`, or a condition such as "tags.location.building='20'".
        text: String,
        #[command(flatten)]
        hub: HubArgs,
        /// text: one device id per line (or one JSON row per line); json: a JSON array.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Copy a hub (configurations, device twins, module twins) into a snapshot directory
    /// that plan, explain and query read offline.
    Snapshot {
        #[command(flatten)]
        hub: HubArgs,
        /// The snapshot directory to write (created if missing). It holds the hub's
        /// registry passwords and tokens: the directory is made owner-only (0700), its
        /// files 0600.
        #[arg(long)]
        out: PathBuf,
        /// Replace every sensitive value (registry passwords, settings named like a
        /// credential, values secret in any deployment version) with a marker. plan,
        /// explain, query and status still work on it; it cannot restore a hub or be
        /// imported with real passwords.
        #[arg(long)]
        redact: bool,
    },
    /// Work with hubs: generate a synthetic fleet snapshot, or serve one as a local hub.
    #[command(subcommand)]
    Hub(HubCommand),
    /// Write .kdl files from a hub's IoT Edge deployments (adopting the ones fleetform does
    /// not manage yet), or from a deployment.json manifest (VS Code, iotedgedev).
    Import {
        #[command(flatten)]
        hub: HubArgs,
        /// Convert this deployment manifest instead of reading a hub: a deployment.json
        /// (standard or layered), `az iot edge deployment show` output, or an iotedgedev
        /// deployment.template.json (${VAR} from the environment and the .env beside it,
        /// read as python-dotenv reads it; ${MODULES.Name} from modules/Name/module.json).
        /// Nothing is written when a placeholder is unresolved or the result would not
        /// validate.
        /// At most 4 MiB: larger is refused before reading (no deployment the hub accepts is
        /// that large).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// With --manifest: the deployment's name (default: a whole configuration's id,
        /// else the file name).
        #[arg(long, requires = "manifest")]
        name: Option<String>,
        /// With --manifest: the deployment's priority (default: a whole configuration's
        /// priority, else 10).
        #[arg(long, requires = "manifest")]
        priority: Option<i32>,
        /// With --manifest: the target condition (default: a whole configuration's
        /// targetCondition, else `target #null`, no device).
        #[arg(long, requires = "manifest", value_name = "CONDITION")]
        target: Option<String>,
        /// The directory to write one <name>.kdl per deployment into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Replace files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Rewrite .kdl files into the canonical layout, keeping comments.
    Fmt {
        /// Change nothing; list the files that are not formatted and exit 1 if any.
        #[arg(long)]
        check: bool,
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
    },
}

/// `--ref REV`: read the deployment files from a git commit instead of the working tree.
#[derive(clap::Args)]
struct RefArg {
    /// Read the .kdl files from this commit (branch, tag, id) instead of the working tree;
    /// files are shown as REV:path.
    #[arg(long = "ref", value_name = "REV")]
    git_ref: Option<String>,
}

#[derive(clap::Args)]
struct HubArgs {
    /// The hub: a snapshot directory (configurations.json and devices.json[l]), a
    /// connection string "HostName=…;SharedAccessKeyName=…;SharedAccessKey=…", or env:NAME
    /// to read one from variable NAME. Without it, IOTHUB_CONNECTION_STRING is used.
    #[arg(long, env = "FLEETFORM_HUB", value_name = "HUB", hide_env_values = true)]
    hub: Option<String>,
    /// Base URL replacing https://<HostName>: the emulator (http://127.0.0.1:PORT) or a
    /// sovereign cloud.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
}

#[derive(Subcommand)]
enum HubCommand {
    /// Write a reproducible synthetic fleet snapshot (campus-style tags, skewed).
    Generate {
        /// How many device twins.
        #[arg(long)]
        devices: usize,
        /// Seed: the same seed writes the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of IoT Edge devices (0 to 1).
        #[arg(long, default_value_t = 0.9)]
        edge_share: f64,
        /// Also write this many matching deployments to OUT/deployments/fleet.kdl
        /// (about a tenth standard, the rest layered), for benchmarks and demos.
        #[arg(long, value_name = "N")]
        deployments: Option<usize>,
        /// The snapshot directory to write (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve a snapshot directory as a local IoT Hub (REST subset, SAS auth, etags,
    /// deployment assignment, metrics). Prints the URL and a connection string.
    Serve {
        /// The state directory (a snapshot directory); every change is written back to it.
        #[arg(long)]
        state: PathBuf,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8484")]
        listen: std::net::SocketAddr,
        /// Devices report their new $edgeAgent desired version this many seconds after it
        /// changes (off when not given).
        #[arg(long, value_name = "SECS")]
        simulate_success_after: Option<f64>,
        /// Share of devices (0 to 1) that report failure (500) instead of success.
        #[arg(long, value_name = "F", default_value_t = 0.0)]
        simulate_failure_share: f64,
        /// Share of requests (0 to 1) answered 429 ThrottlingException.
        #[arg(long, value_name = "RATE", default_value_t = 0.0)]
        inject_429: f64,
        /// Share of requests (0 to 1) answered 503 ServiceUnavailable.
        #[arg(long, value_name = "RATE", default_value_t = 0.0)]
        inject_503: f64,
        /// Seed for simulated failures and injected faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Apply { .. } | Command::Hub(HubCommand::Serve { .. })) {
        quiet_on_closed_pipe();
    }
    COLOR.store(
        matches!(cli.color, Color::Always)
            || (matches!(cli.color, Color::Auto)
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())),
        std::sync::atomic::Ordering::Relaxed,
    );
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let unicode = std::io::stderr().is_terminal();
    let width = if std::io::stderr().is_terminal() { None } else { Some(100) };
    let _ = miette::set_hook(Box::new(move |_| {
        let mut opts = miette::MietteHandlerOpts::new().color(color).unicode(unicode).terminal_links(false);
        if let Some(w) = width {
            opts = opts.width(w);
        }
        Box::new(opts.build())
    }));
    match run(cli.command) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(1)
        }
    }
}

/// `fleetform plan | head` must end quietly when `head` closes the pipe, as other Unix
/// tools do, instead of panicking on the failed write. Only for commands that write nothing
/// but their output: apply and the emulator keep going (their writes to the hub must not
/// be cut off by a reader of their progress going away).
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Refuses a connection string given as a path or revision (a slip of `--hub`): the
/// errors about a missing file or an unknown revision would print it, key and all, and
/// `--out` would create a directory named after it.
fn refuse_misplaced_connection_strings(command: &Command) -> miette::Result<()> {
    use fleetform::hub::connection::MisplacedConnectionString as M;
    let mut paths: Vec<&std::path::Path> = Vec::new();
    let mut outs: Vec<&std::path::Path> = Vec::new();
    let mut revs: Vec<&str> = Vec::new();
    match command {
        Command::Validate { paths: p, git, .. }
        | Command::Render { paths: p, git, .. }
        | Command::Explain { paths: p, git, .. } => {
            paths.extend(p.iter().map(PathBuf::as_path));
            revs.extend(git.git_ref.as_deref());
        }
        Command::Fmt { paths: p, .. } => paths.extend(p.iter().map(PathBuf::as_path)),
        Command::Plan { paths: p, git, base, out, .. } => {
            paths.extend(p.iter().map(PathBuf::as_path));
            revs.extend(git.git_ref.as_deref());
            revs.extend(base.as_deref());
            outs.extend(out.as_deref());
        }
        Command::Apply { args, git, .. } => {
            paths.extend(args.iter().map(PathBuf::as_path));
            revs.extend(git.git_ref.as_deref());
        }
        Command::Import { manifest, out, .. } => {
            paths.extend(manifest.as_deref());
            outs.push(out);
        }
        Command::Snapshot { out, .. } | Command::Hub(HubCommand::Generate { out, .. }) => outs.push(out),
        _ => {}
    }
    for p in paths {
        M::check(p.as_os_str(), "a file or folder", "file or folder", "as the path give")?;
    }
    for p in outs {
        M::check(p.as_os_str(), "an output path", "directory or file", "as --out give")?;
    }
    for r in revs {
        M::check(std::ffi::OsStr::new(r), "a git revision", "branch, tag or commit", "as --ref/--base give")?;
    }
    Ok(())
}

fn run(command: Command) -> miette::Result<ExitCode> {
    refuse_misplaced_connection_strings(&command)?;
    match command {
        Command::Validate { paths, format, max_problems, git } => {
            validate(&paths, format, max_problems, git.git_ref.as_deref())
        }
        Command::Render { name, paths, show_secrets, git } => {
            render(&name, &paths, show_secrets, git.git_ref.as_deref())
        }
        Command::Import { hub, manifest, name, priority, target, out, force } => {
            import(&hub, manifest.as_deref(), name, priority, target, &out, force)
        }
        Command::Fmt { check, paths } => fmt(check, &paths),
        Command::Plan { paths, hub, format, prune, allow_empty, diff, out, detailed_exitcode, git, base } => {
            let revs = Revisions { head: git.git_ref, base };
            let prune = Prune { prune, allow_empty };
            plan(&paths, &hub, format, prune, diff, out.as_deref(), detailed_exitcode, &revs)
        }
        Command::Apply { args, hub, auto_approve, prune, allow_empty, timeout, wait, allow_dirty, git, format } => {
            let rev = git.git_ref;
            let prune = Prune { prune, allow_empty };
            apply(&args, &hub, ApplyFlags { auto_approve, prune, timeout, wait, allow_dirty, rev, format })
        }
        Command::Status { hub, repo, format } => status(&hub, &repo, format),
        Command::Explain { device, paths, hub, current, declared: _, git, format } => {
            explain(&device, &paths, &hub, current, git.git_ref.as_deref(), format)
        }
        Command::Query { text, hub, format } => query(&text, &hub, format),
        Command::Snapshot { hub, out, redact } => snapshot(&hub, &out, redact),
        Command::Hub(HubCommand::Generate { devices, seed, edge_share, deployments, out }) => {
            generate(devices, seed, edge_share, deployments, &out)
        }
        Command::Hub(HubCommand::Serve {
            state,
            listen,
            simulate_success_after,
            simulate_failure_share,
            inject_429,
            inject_503,
            seed,
        }) => serve(state, listen, simulate_success_after, simulate_failure_share, inject_429, inject_503, seed),
    }
}

fn print_problems(problems: &[Problem]) {
    let mut err = std::io::stderr().lock();
    for p in problems {
        let _ = writeln!(err, "{:?}", miette::Report::new(p.clone()));
    }
}

fn validate(paths: &[PathBuf], format: Format, max_problems: usize, rev: Option<&str>) -> miette::Result<ExitCode> {
    let ws = fleetform::git::load_workspace(paths, rev)?;
    let ok = ws.problems.is_empty();
    match format {
        Format::Json => {
            let out = serde_json::json!({
                "valid": ok,
                "files": ws.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                "deployments": ws.deployments.iter().map(|d| serde_json::json!({"name": d.name, "kind": d.kind, "priority": d.priority})).collect::<Vec<_>>(),
                "problems": ws.problems.iter().map(Problem::to_json).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Format::Text => {
            // A terminal is no use past a screenful or so; the count below stays exact.
            let shown = if max_problems == 0 { ws.problems.len() } else { max_problems.min(ws.problems.len()) };
            print_problems(&ws.problems[..shown]);
            if shown < ws.problems.len() {
                let more = ws.problems.len() - shown;
                eprintln!("… and {more} more problem{} (--max-problems 0 shows all)", plural(more));
            }
            if ws.deployments.is_empty() && ok {
                // Not an error (a new repository has none yet), but never silent: plan and
                // apply --prune refuse this unless --allow-empty.
                eprintln!(
                    "warning: no deployments found in {} (symlinks are followed, hidden folders skipped)",
                    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                );
            }
            if ok {
                println!(
                    "{} deployment{} in {} file{}: valid",
                    ws.deployments.len(),
                    plural(ws.deployments.len()),
                    ws.files.len(),
                    plural(ws.files.len())
                );
            } else {
                eprintln!("{} problem{} found", ws.problems.len(), plural(ws.problems.len()));
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Whether stdout gets colour (decided once from --color, the terminal and NO_COLOR).
static COLOR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Loads, validates and renders the declared deployments with secrets resolved; prints
/// every problem and returns None when there are any.
fn declared(paths: &[PathBuf], rev: Option<&str>) -> miette::Result<Option<Vec<manifest::Rendered>>> {
    declared_with(paths, rev, &ProcessEnv)
}

fn declared_with(
    paths: &[PathBuf],
    rev: Option<&str>,
    env: &dyn manifest::Env,
) -> miette::Result<Option<Vec<manifest::Rendered>>> {
    let ws = fleetform::git::load_workspace(paths, rev)?;
    if !ws.problems.is_empty() {
        print_problems(&ws.problems);
        eprintln!("{} problem{} found; fix them before planning", ws.problems.len(), plural(ws.problems.len()));
        return Ok(None);
    }
    match manifest::render_all(&ws.deployments, env, SecretMode::Reveal) {
        Ok(r) => Ok(Some(r)),
        Err(problems) => {
            print_problems(&problems);
            Ok(None)
        }
    }
}

/// Which commits `plan` reads: `head` (`--ref`, else the working tree) and `base`.
struct Revisions {
    head: Option<String>,
    base: Option<String>,
}

/// The `--base` section: the head's deployments planned against the merge base's, over
/// the hub's devices. Secrets that are not set read as placeholders on both sides.
fn change_section(
    paths: &[PathBuf],
    revs: &Revisions,
    base: &str,
    hub: &dyn fleetform::hub::Hub,
) -> miette::Result<Option<fleetform::plan::Plan>> {
    let start = paths.first().map_or(std::path::Path::new("."), |p| p.as_path());
    let merge_base = fleetform::git::merge_base(start, base)?;
    let short = &merge_base[..merge_base.len().min(12)];
    let env = fleetform::plan::PlaceholderEnv(&ProcessEnv);
    let base_ws = fleetform::git::load_base_workspace(paths, short)?;
    if !base_ws.problems.is_empty() {
        print_problems(&base_ws.problems);
        return Err(miette::miette!(
            help =
                "the change is shown against the deployments at the merge base; fix them there or pick another --base",
            "the deployments at {base} (merge base {short}) have {} problem{}",
            base_ws.problems.len(),
            plural(base_ws.problems.len())
        ));
    }
    let base_rendered = match manifest::render_all(&base_ws.deployments, &env, SecretMode::Reveal) {
        Ok(r) => r,
        Err(problems) => {
            print_problems(&problems);
            return Ok(None);
        }
    };
    let Some(head) = declared_with(paths, revs.head.as_deref(), &env)? else { return Ok(None) };
    let label = format!("{base}@{}", &merge_base[..merge_base.len().min(8)]);
    let on_hub = hub.configurations()?;
    Ok(Some(fleetform::plan::change_plan(&label, &base_rendered, head, &on_hub, &fleetform::hub::Fleet(hub))?))
}

/// `--prune` and whether it may act on an empty set of deployments.
#[derive(Clone, Copy)]
struct Prune {
    prune: bool,
    allow_empty: bool,
}

impl Prune {
    /// Pruning with nothing declared deletes every managed deployment: refused unless
    /// asked for, because a wrong path, a skipped link or a bad checkout looks the same.
    fn check(self, paths: &[PathBuf], rendered: &[manifest::Rendered]) -> miette::Result<()> {
        if self.prune && !self.allow_empty && rendered.is_empty() {
            return Err(miette::miette!(
                code = "fleetform::prune_empty",
                help = "check the paths; pass --allow-empty to delete every managed deployment on purpose",
                "no deployments found in {}: --prune would delete every managed deployment",
                paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn plan(
    paths: &[PathBuf],
    hub: &HubArgs,
    format: PlanFormat,
    prune: Prune,
    show_diff: bool,
    out: Option<&std::path::Path>,
    detailed_exitcode: bool,
    revs: &Revisions,
) -> miette::Result<ExitCode> {
    let Some(rendered) = declared(paths, revs.head.as_deref())? else { return Ok(ExitCode::from(1)) };
    prune.check(paths, &rendered)?;
    let prune = prune.prune;
    let hub =
        fleetform::hub::shape::ShapeChecked::new(fleetform::hub::open(hub.hub.as_deref(), hub.endpoint.as_deref())?);
    let change = match &revs.base {
        Some(base) => match change_section(paths, revs, base, hub.as_ref())? {
            Some(c) => Some(c),
            None => return Ok(ExitCode::from(1)),
        },
        None => None,
    };
    let current = hub.as_ref().configurations()?;
    let fleet = fleetform::hub::Fleet(hub.as_ref());
    let plan = fleetform::plan::plan(rendered, current, &fleet, &fleetform::plan::PlanOptions { prune })?;
    hub.warn();
    let mut stdout = std::io::stdout().lock();
    match format {
        PlanFormat::Text => {
            let paint = fleetform::render::text::Paint { color: COLOR.load(std::sync::atomic::Ordering::Relaxed) };
            if let Some(c) = &change {
                let _ = writeln!(stdout, "What this change does\n=====================");
                let _ = write!(stdout, "{}", fleetform::render::text::plan_text(c, paint));
                let _ = writeln!(stdout, "\nPlan against the hub\n====================");
            }
            let _ = write!(stdout, "{}", fleetform::render::text::plan_text(&plan, paint));
        }
        PlanFormat::Markdown => {
            use fleetform::render::markdown::{MAX_CHARS, plan_markdown_titled};
            // One PR comment holds both sections: each gets half of GitHub's limit.
            let max = if change.is_some() { MAX_CHARS / 2 } else { MAX_CHARS };
            if let Some(c) = &change {
                let _ = writeln!(stdout, "{}", plan_markdown_titled(c, "What this change does", max));
            }
            let _ = write!(stdout, "{}", plan_markdown_titled(&plan, "fleetform plan", max));
        }
        PlanFormat::Json => {
            let mut json = fleetform::render::json::plan_json(&plan);
            if let (Some(c), serde_json::Value::Object(m)) = (&change, &mut json) {
                m.insert("change".into(), fleetform::render::json::plan_json(c));
            }
            let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&json).unwrap_or_default());
        }
    }
    if show_diff {
        let _ = write!(stdout, "{}", fleetform::render::text::unified_diffs(&plan));
    }
    if let Some(file) = out {
        let commit = match &revs.head {
            Some(rev) => {
                Some(fleetform::git::resolve_commit(paths.first().map_or(std::path::Path::new("."), |p| p), rev)?)
            }
            None => paths.first().and_then(|p| fleetform::git::head_commit(p)),
        };
        let mut saved = fleetform::plan::SavedPlan::new(&plan, commit, fleetform::render::summary_line(&plan));
        saved.paths = paths.iter().map(|p| p.display().to_string()).collect();
        // With a key, any edit of the file is refused at apply; without one, the
        // re-derivation at apply still bounds what an edit can do.
        if let Some(key) = std::env::var_os(manifest::HASH_KEY_VAR).filter(|k| !k.is_empty()) {
            saved.seal(key.as_encoded_bytes()).map_err(|e| miette::miette!("cannot encode the plan: {e}"))?;
        }
        let text = serde_json::to_string_pretty(&saved).map_err(|e| miette::miette!("cannot encode the plan: {e}"))?;
        // A saved plan carries the hub's configurations it will replace, passwords masked
        // but everything else a reader of the hub could see: owner-only like a snapshot.
        write_private(file, &(text + "\n"))?;
        eprintln!("Saved the plan to {}; apply it with `fleetform apply {}`", file.display(), file.display());
    }
    Ok(match (detailed_exitcode, plan.has_changes()) {
        (true, true) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

fn explain(
    device: &str,
    paths: &[PathBuf],
    hub: &HubArgs,
    current: bool,
    rev: Option<&str>,
    format: Format,
) -> miette::Result<ExitCode> {
    use fleetform::explain::{State, explain_device};
    let (state, rendered) = if current {
        (State::Current, Vec::new())
    } else {
        match declared(paths, rev)? {
            Some(r) => (State::Declared, r),
            None => return Ok(ExitCode::from(1)),
        }
    };
    let hub =
        fleetform::hub::shape::ShapeChecked::new(fleetform::hub::open(hub.hub.as_deref(), hub.endpoint.as_deref())?);
    let current = hub.as_ref().configurations()?;
    let e = explain_device(&fleetform::hub::Fleet(hub.as_ref()), &current, rendered, device, state)?;
    hub.warn();
    match format {
        Format::Text => print!("{}", e.to_text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&e.to_json()).unwrap_or_default()),
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn render(name: &str, paths: &[PathBuf], show_secrets: bool, rev: Option<&str>) -> miette::Result<ExitCode> {
    let ws = fleetform::git::load_workspace(paths, rev)?;
    if !ws.problems.is_empty() {
        print_problems(&ws.problems);
        eprintln!("{} problem{} found; fix them before rendering", ws.problems.len(), plural(ws.problems.len()));
        return Ok(ExitCode::from(1));
    }
    let Some(d) = ws.find(name) else {
        let names: Vec<&str> = ws.deployments.iter().map(|d| d.name.0.as_str()).collect();
        let hint = match spec::diag::did_you_mean(name, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if names.is_empty() => "no deployments were found under the given paths".to_string(),
            None => format!("declared deployments: {}", names.join(", ")),
        };
        return Err(miette::miette!(help = hint, "no deployment named \"{name}\""));
    };
    let mode = if show_secrets { SecretMode::Reveal } else { SecretMode::Mask };
    match manifest::render(d, &ProcessEnv, mode) {
        Ok(r) => {
            println!("{}", serde_json::to_string_pretty(&r.configuration).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            print_problems(&problems);
            Ok(ExitCode::from(1))
        }
    }
}

fn fmt(check: bool, paths: &[PathBuf]) -> miette::Result<ExitCode> {
    let mut unformatted = Vec::new();
    let mut failed = false;
    for root in paths {
        for path in spec::kdl_files(root)? {
            let display = path.display().to_string();
            let text = spec::read_kdl_file(&path, &display)?;
            // The formatter recurses per level, so too deep a file is refused before it.
            if spec::limits::too_deep(&text).is_some() {
                let file = std::sync::Arc::new(spec::SourceFile::new(display.clone(), &path, text));
                print_problems(&spec::limits::nesting_problem(&file).into_iter().collect::<Vec<_>>());
                failed = true;
                continue;
            }
            let formatted = match spec::fmt::format_source(&text) {
                Ok(f) => f,
                Err(e) => {
                    // Syntax errors are reported the same way `validate` reports them.
                    let file = std::sync::Arc::new(spec::SourceFile::new(display.clone(), &path, text));
                    let problems = spec::syntax_problems(&file, e);
                    print_problems(&problems);
                    failed = true;
                    continue;
                }
            };
            if formatted == text {
                continue;
            }
            if check {
                println!("{display}");
            } else {
                // Through a symlink to its target, replaced atomically there: the link
                // stays a link (replacing it would cut it off from the file it shares).
                let target = std::fs::canonicalize(&path).map_err(|e| miette::miette!("{display}: {e}"))?;
                write_atomically(&target, &formatted)?;
                eprintln!("formatted {display}");
            }
            unformatted.push(display);
        }
    }
    if check && !unformatted.is_empty() {
        eprintln!("{} file{} not formatted; run `fleetform fmt` to fix", unformatted.len(), plural(unformatted.len()));
        return Ok(ExitCode::from(1));
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// [`write_atomically`], owner-only (0600).
fn write_private(path: &std::path::Path, text: &str) -> miette::Result<()> {
    let mut file = fleetform::hub::snapshot::AtomicFile::create_private(path)?;
    file.write_all(text.as_bytes())
        .map_err(|source| fleetform::hub::SnapshotError::Write { path: path.to_path_buf(), source })?;
    file.commit()?;
    Ok(())
}

/// Replaces a file without ever leaving it half-written.
fn write_atomically(path: &std::path::Path, text: &str) -> miette::Result<()> {
    let mut file = fleetform::hub::snapshot::AtomicFile::create(path)?;
    file.write_all(text.as_bytes())
        .map_err(|source| fleetform::hub::SnapshotError::Write { path: path.to_path_buf(), source })?;
    file.commit()?;
    Ok(())
}

fn import(
    hub: &HubArgs,
    manifest_file: Option<&std::path::Path>,
    name: Option<String>,
    priority: Option<i32>,
    target: Option<String>,
    out: &std::path::Path,
    force: bool,
) -> miette::Result<ExitCode> {
    let (imported, skipped) = match manifest_file {
        Some(file) => {
            let display = file.display().to_string();
            let text = fleetform::import::read_manifest_file(file, &display)?;
            let stem = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            // `deployment.template.json` and `deployment.amd64.json` name the deployment after the folder.
            let default = match stem.split('.').next() {
                Some("deployment") | None => file
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().to_string()))
                    .unwrap_or_else(|| "deployment".to_string()),
                Some(s) => s.to_string(),
            };
            let opts = fleetform::import::ManifestOptions {
                name,
                default_name: default,
                priority,
                target,
                dir: file.canonicalize().ok().and_then(|p| p.parent().map(std::path::Path::to_path_buf)),
            };
            (vec![fleetform::import::from_manifest(&display, &text, &opts)?], Vec::new())
        }
        None => {
            let hub = fleetform::hub::open(hub.hub.as_deref(), hub.endpoint.as_deref())?;
            fleetform::import::from_hub(&hub.configurations()?)
        }
    };
    std::fs::create_dir_all(out).map_err(|e| miette::miette!("cannot create {}: {e}", out.display()))?;
    let mut written = 0;
    let mut variables: Vec<String> = Vec::new();
    for i in &imported {
        let file = out.join(format!("{}.kdl", i.name));
        if file.exists() && !force {
            eprintln!("{} exists; left alone (--force replaces it)", file.display());
            continue;
        }
        write_atomically(&file, &i.text)?;
        eprintln!("wrote {}", file.display());
        written += 1;
        for note in &i.notes {
            eprintln!("  note: {note}");
        }
        for (var, _) in &i.env {
            if !variables.contains(var) {
                variables.push(var.clone());
            }
        }
    }
    for s in &skipped {
        eprintln!("skipped {}: {}", s.id, s.reason);
    }
    eprintln!("{written} deployment{} imported into {}", plural(written), out.display());
    if !variables.is_empty() {
        variables.sort();
        eprintln!("set these before plan/apply: {}", variables.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn query(text: &str, hub: &HubArgs, format: Format) -> miette::Result<ExitCode> {
    let hub =
        fleetform::hub::shape::ShapeChecked::new(fleetform::hub::open(hub.hub.as_deref(), hub.endpoint.as_deref())?);
    let mut out = fleetform::query::run_on_hub(&fleetform::hub::Fleet(hub.as_ref()), text)?;
    // Rows can hold the hub's registry passwords and tokens (`SELECT properties.desired
    // FROM devices.modules`): masked by place (registry passwords, credential-named
    // settings), which needs no further request to the hub.
    if let fleetform::query::QueryOutput::Rows(rows) = &mut out {
        let redactor = fleetform::plan::Redactor::default();
        rows.iter_mut().for_each(|r| redactor.mask_in_place(r));
    }
    hub.warn();
    let mut stdout = std::io::stdout().lock();
    match (out, format) {
        (fleetform::query::QueryOutput::Targeted(ids), Format::Text) => {
            for id in &ids {
                let _ = writeln!(stdout, "{id}");
            }
            eprintln!("{} IoT Edge device{} targeted", ids.len(), plural(ids.len()));
        }
        (fleetform::query::QueryOutput::Targeted(ids), Format::Json) => {
            let rows: Vec<serde_json::Value> =
                ids.into_iter().map(|id| serde_json::json!({ "deviceId": id })).collect();
            let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        }
        (fleetform::query::QueryOutput::Rows(rows), Format::Text) => {
            for row in &rows {
                // A row of just an id prints as the id, like the targeting form.
                match row.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("deviceId")).and_then(|v| v.as_str())
                {
                    Some(id) => {
                        let _ = writeln!(stdout, "{id}");
                    }
                    None => {
                        let _ = writeln!(stdout, "{}", serde_json::to_string(row).unwrap_or_default());
                    }
                }
            }
            eprintln!("{} row{}", rows.len(), plural(rows.len()));
        }
        (fleetform::query::QueryOutput::Rows(rows), Format::Json) => {
            let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(
    devices: usize,
    seed: u64,
    edge_share: f64,
    deployments: Option<usize>,
    out: &std::path::Path,
) -> miette::Result<ExitCode> {
    if !(0.0..=1.0).contains(&edge_share) {
        return Err(miette::miette!(
            help = "give a share between 0 and 1, e.g. 0.9",
            "--edge-share {edge_share} is not a share"
        ));
    }
    let opts = fleetform_hub_emulator::generate::GenerateOptions { devices, seed, edge_share, ..Default::default() };
    let started = std::time::Instant::now();
    let summary = fleetform_hub_emulator::generate::generate(&opts, out)?;
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
        std::fs::create_dir_all(&dir).map_err(|e| miette::miette!("cannot create {}: {e}", dir.display()))?;
        let file = dir.join("fleet.kdl");
        write_atomically(&file, &fleetform_hub_emulator::generate::deployments_kdl(n))?;
        eprintln!("wrote {n} deployments to {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn snapshot(hub: &HubArgs, out: &std::path::Path, redact: bool) -> miette::Result<ExitCode> {
    let hub = fleetform::hub::open(hub.hub.as_deref(), hub.endpoint.as_deref())?;
    let started = std::time::Instant::now();
    let summary = fleetform::hub::snapshot_with(hub.as_ref(), out, redact)?;
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

fn serve(
    state: PathBuf,
    listen: std::net::SocketAddr,
    simulate_success_after: Option<f64>,
    simulate_failure_share: f64,
    inject_429: f64,
    inject_503: f64,
    seed: u64,
) -> miette::Result<ExitCode> {
    let simulate_success_after = match simulate_success_after {
        None => None,
        Some(s) if s.is_finite() && s >= 0.0 => Some(std::time::Duration::from_secs_f64(s)),
        Some(s) => return Err(miette::miette!("--simulate-success-after {s}: give a number of seconds, e.g. 5")),
    };
    let behaviour = fleetform_hub_emulator::Behaviour {
        simulate_success_after,
        simulate_failure_share,
        inject_429,
        inject_503,
        seed,
    };
    fleetform_hub_emulator::serve(fleetform_hub_emulator::ServeOptions { state, listen, behaviour })?;
    Ok(ExitCode::SUCCESS)
}

struct ApplyFlags {
    auto_approve: bool,
    prune: Prune,
    timeout: String,
    wait: Option<String>,
    allow_dirty: bool,
    rev: Option<String>,
    format: Format,
}

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

fn apply(args: &[PathBuf], hub_args: &HubArgs, flags: ApplyFlags) -> miette::Result<ExitCode> {
    use fleetform::apply;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let timeout = apply::parse_duration(&flags.timeout)?;
    let wait_for = flags.wait.as_deref().map(apply::parse_duration).transpose()?;
    let (saved, paths) = match args.first() {
        Some(first) => match apply::load_plan_file(first)? {
            // Without paths after it, the plan's own paths (relative to where it was made).
            Some(saved) if args.len() == 1 => {
                let paths = saved.paths.iter().map(PathBuf::from).collect();
                (Some(saved), paths)
            }
            Some(saved) => (Some(saved), args[1..].to_vec()),
            None => (None, args.to_vec()),
        },
        None => (None, Vec::new()),
    };
    let paths = if paths.is_empty() { vec![PathBuf::from(".")] } else { paths };
    // What is applied must be what was committed, so that fleetform-commit is the truth.
    // Files outside any repository have no commit to disagree with.
    // From a commit (--ref) the working tree does not matter.
    if !flags.allow_dirty && flags.rev.is_none() {
        let mut in_repository = false;
        for p in &paths {
            match fleetform::git::is_dirty(p) {
                Ok(false) => in_repository = true,
                Err(fleetform::git::GitError::NotARepository { .. }) => {}
                Ok(true) => {
                    return Err(miette::miette!(
                        help = "commit the changes first, or pass --allow-dirty to apply the working tree as it is",
                        "{} has uncommitted changes",
                        p.display()
                    ));
                }
                // Not knowing whether the tree is clean is not knowing that it is.
                Err(e) => {
                    return Err(miette::miette!(
                        help = "fix the repository (try `git status` there), or pass --allow-dirty to apply the \
                                working tree without the check",
                        "cannot tell whether {} has uncommitted changes: {e}",
                        p.display()
                    ));
                }
            }
        }
        // The folder's status does not see through symlinks: check every file the load
        // will read, by its real path, in the repository that holds it. A path that
        // cannot be listed is reported by the load itself.
        let files: Vec<PathBuf> = paths.iter().filter_map(|p| spec::kdl_files(p).ok()).flatten().collect();
        match fleetform::git::uncommitted_file(&files, in_repository) {
            Ok(None) => {}
            Ok(Some(found)) => {
                return Err(miette::miette!(
                    help = "commit the changes first, or pass --allow-dirty to apply the working tree as it is",
                    "{found}"
                ));
            }
            Err(e) => {
                return Err(miette::miette!(
                    help = "fix the repository (try `git status` there), or pass --allow-dirty to apply the \
                            working tree without the check",
                    "cannot tell whether the deployment files have uncommitted changes: {e}"
                ));
            }
        }
    }
    let Some(mut rendered) = declared(&paths, flags.rev.as_deref())? else { return Ok(ExitCode::from(1)) };
    match &saved {
        None => flags.prune.check(&paths, &rendered)?,
        // A saved plan prunes by its own `prune`: the same empty-set guard applies, so a
        // plan file cannot delete every managed deployment without --allow-empty.
        Some(saved) => Prune { prune: saved.prune, allow_empty: flags.prune.allow_empty }.check(&paths, &rendered)?,
    }
    let options = fleetform::hub::rest::RestOptions { deadline: timeout, ..Default::default() };
    let hub = fleetform::hub::open_with(hub_args.hub.as_deref(), hub_args.endpoint.as_deref(), options)?;
    let json = flags.format == Format::Json;
    // Human-facing text goes to stderr in json mode, so stdout holds one JSON document.
    let say = |text: &str| {
        if json {
            eprint!("{text}");
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    };

    let (steps, declared_now, expected_applied, source) = match saved {
        Some(saved) => {
            if flags.prune.prune {
                eprintln!("note: --prune is ignored with a plan file: the plan already says what it deletes");
            }
            let current = hub.configurations()?;
            // The plan kept the hub's id where the content is already there under another
            // id (adoption, an older hash scheme or key); so must the check and the steps.
            fleetform::plan::adopt_ids(&mut rendered, &current);
            let problems = apply::check_saved(&saved, &hub.identity(), &current, &rendered);
            if !problems.is_empty() {
                return Err(apply::ApplyError::Stale { problems }.into());
            }
            // The file is only a request: what is carried out must be what planning from
            // the repository and the hub gives now, so a hand-edited step is refused.
            let rederived = fleetform::plan::plan(
                rendered.clone(),
                current,
                &fleetform::hub::Fleet(hub.as_ref()),
                &fleetform::plan::PlanOptions { prune: saved.prune },
            )?;
            let problems = apply::unjustified_steps(&saved.steps, &rederived.steps);
            if !problems.is_empty() {
                return Err(apply::ApplyError::Altered { problems }.into());
            }
            say(&format!("Applying the plan saved at {} against {}.\n{}\n", saved.created, saved.hub, saved.summary));
            (saved.steps, rendered, saved.expected_applied, "plan")
        }
        None => {
            let plan = fleetform::plan::plan(
                rendered,
                hub.configurations()?,
                &fleetform::hub::Fleet(hub.as_ref()),
                &fleetform::plan::PlanOptions { prune: flags.prune.prune },
            )?;
            let paint =
                fleetform::render::text::Paint { color: COLOR.load(std::sync::atomic::Ordering::Relaxed) && !json };
            say(&fleetform::render::text::plan_text(&plan, paint));
            if plan.has_changes() && !flags.auto_approve {
                if !std::io::stdin().is_terminal() {
                    eprintln!(
                        "Refusing to apply: no terminal to confirm on. Pass --auto-approve, or save the plan with \
                         `fleetform plan --out FILE` and apply FILE."
                    );
                    return Ok(ExitCode::from(1));
                }
                eprint!("\nDo you want to apply these changes to {}? Only 'yes' will be accepted: ", plan.hub);
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                if answer.trim() != "yes" {
                    eprintln!("Apply cancelled; nothing was changed.");
                    return Ok(ExitCode::from(1));
                }
            }
            (plan.steps, plan.declared, plan.expected_applied, "repository")
        }
    };
    if steps.is_empty() {
        if json {
            println!("{}", serde_json::json!({"changes": false, "steps": [], "source": source}));
        } else if source == "plan" {
            // A fresh plan's text already ends with this line.
            println!("No changes. The hub matches the repository.");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // The first Ctrl-C only raises the flag, read between steps, so no write is cut
        // off; a second one quits at once (safe too: each write is atomic on the hub and
        // in a snapshot, and the next apply converges from wherever this one stopped).
        let handler = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("\nInterrupted again: quitting now. Plan and apply again to converge.");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            eprintln!("\nInterrupted: stopping after the current step (Ctrl-C again quits at once)…");
        });
        if let Err(e) = handler {
            eprintln!("note: Ctrl-C will end apply at once, not between steps ({e})");
        }
    }
    let commit = match &flags.rev {
        Some(rev) => Some(fleetform::git::resolve_commit(paths.first().map_or(std::path::Path::new("."), |p| p), rev)?),
        None => paths.first().and_then(|p| fleetform::git::head_commit(p)),
    };
    let total = steps.len();
    let report =
        apply::execute(hub.as_ref(), &steps, &declared_now, &apply::ApplyOptions { commit }, &interrupted, &mut |r| {
            let what = match r.status {
                apply::StepStatus::Done => "done".to_string(),
                apply::StepStatus::AlreadyDone => format!("done ({})", r.message.as_deref().unwrap_or("already")),
                apply::StepStatus::Failed => format!("FAILED: {}", r.message.as_deref().unwrap_or("error")),
                apply::StepStatus::NotRun => "not run".to_string(),
            };
            let op = match r.step.op {
                fleetform::plan::StepOp::Create => "create",
                fleetform::plan::StepOp::Update => "update",
                fleetform::plan::StepOp::Delete => "delete",
            };
            eprintln!("[{}/{total}] {op} {} ({}): {what}", r.step.number, r.step.id, r.step.name);
        });
    if !json {
        print!("{}", report.summary_text());
    } else {
        eprint!("{}", report.summary_text());
    }
    let mut wait_outcome = None;
    if report.completed()
        && let Some(limit) = wait_for
    {
        let ids = report.written_ids();
        if !ids.is_empty() {
            let options = apply::WaitOptions::new(limit, expected_applied);
            let mut display = apply::wait::ProgressDisplay::new(std::io::stderr().is_terminal());
            let outcome = apply::wait(hub.as_ref(), &ids, &options, &interrupted, &mut |p| display.show(p));
            display.finish();
            let outcome = outcome?;
            say(&format!("{}\n", outcome.message()));
            wait_outcome = Some(outcome);
        }
    }
    if json {
        let out = serde_json::json!({
            "changes": true,
            "source": source,
            "completed": report.completed(),
            "stopped": report.stopped,
            "steps": report.results,
            "wait": wait_outcome,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    let interrupted_run = matches!(report.stopped, Some(apply::Stop::Interrupted))
        || matches!(wait_outcome, Some(apply::WaitOutcome::Interrupted { .. }));
    Ok(if interrupted_run {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if !report.completed() {
        ExitCode::from(1)
    } else if let Some(w) = wait_outcome.as_ref().filter(|w| !w.succeeded()) {
        ExitCode::from(w.exit_code())
    } else {
        ExitCode::SUCCESS
    })
}

fn status(hub: &HubArgs, repo: &std::path::Path, format: Format) -> miette::Result<ExitCode> {
    let hub = fleetform::hub::open(hub.hub.as_deref(), hub.endpoint.as_deref())?;
    let mut report = fleetform::apply::status(hub.as_ref())?;
    fleetform::apply::compare_with_head(&mut report, repo);
    match format {
        Format::Text => print!("{}", fleetform::apply::status_text(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
    }
    Ok(ExitCode::SUCCESS)
}
