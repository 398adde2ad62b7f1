//! `fleetform plan`, and the one place the CLI plans (apply plans through
//! [`plan_against`] too).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use fleetform::hub::shape::ShapeChecked;
use fleetform::hub::{Fleet, Hub, SnapshotHub, TwinsFromSnapshot, TwinsReadAt, twins_read_at};
use fleetform::manifest::{self, ProcessEnv, Rendered, SecretMode};
use fleetform::model::Configuration;
use fleetform::model::ReadError;
use fleetform::plan::{Plan, PlanOptions};
use fleetform::render;

use crate::cli::args::{HubArgs, PlanFormat, Prune, RefArg, duration};
use crate::cli::error::CommandError;
use crate::cli::files::write_private;
use crate::cli::revisions::{self, MergeBase};
use crate::cli::ui::Ui;
use crate::cli::workspace::{declared, declared_with, print_problems};

#[derive(clap::Args)]
pub struct Args {
    /// Files or directories (searched recursively for *.kdl).
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub hub: HubArgs,
    /// text (terminal), markdown (pull-request comment) or json.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Delete managed deployments that are no longer declared (otherwise they are
    /// reported as orphaned and kept).
    #[arg(long)]
    pub prune: bool,
    /// With --prune, allow an empty set of deployments (which deletes every managed
    /// deployment). Without it, finding no deployments is an error, since that is far
    /// more often a wrong path than a wish to delete everything.
    #[arg(long)]
    pub allow_empty: bool,
    /// Also show replaced and updated deployments as a unified diff of their JSON.
    #[arg(long)]
    pub diff: bool,
    /// Plan as `apply --restart-rollout` would: retry a rolled-back content, or start new
    /// content over an unfinished rollout (docs/rollouts.md).
    #[arg(long)]
    pub restart_rollout: bool,
    /// Save the plan for `fleetform apply PLANFILE` (no secrets are written). With
    /// FLEETFORM_HASH_KEY set the file is sealed with a MAC: apply then refuses any edit.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when the hub matches the repository, 2 when it does not (changes to write,
    /// or a rollout under way, refused or rolled back), 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub git: RefArg,
    /// Also show what this change does: the deployments declared at the merge base of
    /// REV and HEAD compared with the head (the working tree, or --ref), with the
    /// device impact on the hub's twins. For pull requests: --base origin/main.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Exit 4 (after printing the whole plan) when a warning with one of these codes
    /// fires, e.g. W011,W013; `all` for any warning. README "Reading a plan as a reviewer"
    /// lists the codes.
    #[arg(long, value_name = "CODES", value_delimiter = ',', value_parser = parse_fail_on)]
    pub fail_on: Vec<FailOn>,
    /// Read the device twins from this snapshot directory (made earlier by `fleetform
    /// snapshot`, e.g. by a nightly job) instead of the hub; the deployments are still read
    /// from the hub, in one request. Says how old the twins are.
    #[arg(long, value_name = "DIR")]
    pub twins: Option<PathBuf>,
    /// With --twins, warn when the twins are older than this (e.g. 12h, 2d).
    #[arg(long, value_name = "AGE", default_value = "24h", requires = "twins")]
    pub twins_max_age: String,
    /// Plan even when `(env)` / `(secret-env)` variables (or FLEETFORM_HASH_KEY) are not set,
    /// for reviewers and pull requests from forks: the ids of deployments that read them
    /// are shown as unknown, the rest is planned exactly, and the plan says which
    /// variables were missing. Such a plan cannot be saved with --out. Implied by
    /// `--format markdown` when CI is set (and --out is not).
    #[arg(long)]
    pub without_secrets: bool,
}

/// `plan` exit code: a warning named by `--fail-on` fired.
pub const EXIT_FAIL_ON: u8 = 4;

/// One `--fail-on` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    All,
    Code(fleetform::merge::WarningCode),
}

pub fn parse_fail_on(s: &str) -> Result<FailOn, fleetform::merge::BadWarningCode> {
    if s.trim().eq_ignore_ascii_case("all") { Ok(FailOn::All) } else { s.trim().parse().map(FailOn::Code) }
}

/// The codes of `plan`'s warnings (and of the `--base` section's) that `--fail-on` names.
fn failing(fail_on: &[FailOn], plans: &[&Plan]) -> Vec<fleetform::merge::WarningCode> {
    failing_codes(fail_on, plans.iter().flat_map(|p| &p.warnings).map(|w| w.code))
}

/// Which of `codes` `--fail-on` names, each once, in order (plan's and validate's).
pub fn failing_codes(
    fail_on: &[FailOn],
    codes: impl IntoIterator<Item = fleetform::merge::WarningCode>,
) -> Vec<fleetform::merge::WarningCode> {
    let mut hit: Vec<_> = codes
        .into_iter()
        .filter(|code| fail_on.iter().any(|f| *f == FailOn::All || *f == FailOn::Code(*code)))
        .collect();
    hit.sort();
    hit.dedup();
    hit
}

/// The plan from `current` (the hub's configurations, as just read) to `declared`, over
/// the hub's devices.
pub fn plan_against(
    declared: Vec<Rendered>,
    current: Vec<Configuration>,
    hub: &dyn Hub,
    prune: bool,
    restart_rollout: bool,
) -> Result<Plan, CommandError> {
    let metrics_interval = metrics_interval()?;
    Ok(fleetform::plan::plan(
        declared,
        current,
        &Fleet(hub),
        &PlanOptions { prune, restart_rollout, now: None, metrics_interval, ..Default::default() },
    )?)
}

/// How often the hub recomputes deployment metrics, which a rollout waits for after each
/// widening: IoT Hub's five minutes unless `FLEETFORM_METRICS_INTERVAL` says otherwise (the
/// emulator recomputes on every read, so rehearsals against it set `0s`).
fn metrics_interval() -> Result<Option<u64>, CommandError> {
    let Ok(value) = std::env::var(METRICS_INTERVAL_ENV) else { return Ok(None) };
    let bad = || CommandError::BadEnvDuration {
        name: METRICS_INTERVAL_ENV,
        value: value.clone(),
        hint: "write e.g. 5m or 0s (the emulator recomputes metrics on every read), or unset it for IoT Hub's 5m",
    };
    let parsed = fleetform::apply::parse_duration(&value).map_err(|_| bad())?;
    Ok(Some(parsed.as_secs()))
}

/// Overrides the hub's metric interval (README "Progressive rollouts").
pub const METRICS_INTERVAL_ENV: &str = "FLEETFORM_METRICS_INTERVAL";

pub fn run(args: Args, ui: &Ui) -> Result<ExitCode, CommandError> {
    let paths = &args.paths;
    let head = args.git.git_ref.as_deref();
    // A markdown plan in CI is a review comment, never applied: a pull request from a fork
    // has no secrets, and failing there would leave the reviewer with no plan at all. Apply
    // still needs every value, so a missing secret cannot slip through to the hub.
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let implied = !args.without_secrets && args.format == PlanFormat::Markdown && ci && args.out.is_none();
    let (rendered, without) = if args.without_secrets || implied {
        let Some((rendered, without)) = declared_without_secrets(paths, head)? else { return Ok(ExitCode::from(1)) };
        (rendered, without.is_partial().then_some(without))
    } else {
        let Some(rendered) = declared(paths, head)? else { return Ok(ExitCode::from(1)) };
        (rendered, None)
    };
    if let Some(w) = &without {
        if args.out.is_some() {
            return Err(CommandError::SaveWithoutSecrets { missing: w.missing.clone() });
        }
        let why = if implied { " (implied by --format markdown with CI set)" } else { "" };
        eprintln!(
            "note: planning without {}{why}: the ids of the deployments that read them are unknown; this plan cannot be applied",
            w.missing.join(", ")
        );
    }
    let prune = Prune { prune: args.prune, allow_empty: args.allow_empty };
    prune.check(paths, &rendered)?;
    let hub = match &args.twins {
        None => args.hub.open_shape_checked()?,
        Some(dir) => twins_from_snapshot(&args.hub, dir, duration(&args.twins_max_age)?)?,
    };
    let change = match &args.base {
        Some(base) => match change_section(paths, head, base, hub.as_ref())? {
            Some(c) => Some(c),
            None => return Ok(ExitCode::from(1)),
        },
        None => None,
    };
    let mut plan =
        plan_against(rendered, hub.as_ref().configurations()?, hub.as_ref(), prune.prune, args.restart_rollout)?;
    plan.without_secrets = without;
    crate::cli::ui::warn_wrong_shapes(&hub);
    let mut stdout = std::io::stdout().lock();
    match args.format {
        PlanFormat::Text => {
            let paint = render::text::Paint { color: ui.color_stdout };
            if let Some(c) = &change {
                let _ = writeln!(stdout, "What this change does\n=====================");
                let _ = write!(stdout, "{}", render::text::plan_text(c, paint));
                let _ = writeln!(stdout, "\nPlan against the hub\n====================");
            }
            match &change {
                Some(c) if c.same_changes(&plan) => {
                    let _ = writeln!(stdout, "{}\n\n{}", render::markdown::SAME_AS_CHANGE, render::summary_line(&plan));
                }
                _ => {
                    let _ = write!(stdout, "{}", render::text::plan_text(&plan, paint));
                }
            }
        }
        PlanFormat::Markdown => match &change {
            Some(c) => {
                let _ = write!(stdout, "{}", render::markdown::plan_markdown_with_base(c, &plan));
            }
            None => {
                let _ = write!(stdout, "{}", render::markdown::plan_markdown(&plan));
            }
        },
        PlanFormat::Json => {
            // Straight to the pipe: a 1M-device plan's JSON is tens of megabytes, which
            // a string would hold a second time.
            let mut out = std::io::BufWriter::with_capacity(1 << 16, &mut stdout);
            let written = render::json::write_plan_json(&plan, change.as_ref(), &mut out);
            let _ = written.map_err(std::io::Error::from).and_then(|()| {
                writeln!(out)?;
                out.flush()
            });
            drop(out);
        }
    }
    if args.diff {
        let diffs = match args.format {
            PlanFormat::Markdown => render::markdown::unified_diffs_markdown(&plan),
            _ => render::text::unified_diffs(&plan),
        };
        let _ = write!(stdout, "{diffs}");
    }
    if let Some(file) = &args.out {
        let commit = revisions::source_commit(paths, head)?;
        let mut saved = fleetform::plan::SavedPlan::new(&plan, commit, render::summary_line(&plan));
        saved.paths = paths.iter().map(|p| p.display().to_string()).collect();
        // With a key, any edit of the file is refused at apply; without one, the
        // re-derivation at apply still bounds what an edit can do.
        if let Some(key) = std::env::var_os(manifest::HASH_KEY_VAR).filter(|k| !k.is_empty()) {
            saved.seal(key.as_encoded_bytes()).map_err(|reason| CommandError::EncodePlan { reason })?;
        }
        let text = serde_json::to_string_pretty(&saved).map_err(|reason| CommandError::EncodePlan { reason })?;
        // A saved plan carries the hub's configurations it will replace, passwords masked
        // but everything else a reader of the hub could see: owner-only like a snapshot.
        write_private(file, &(text + "\n"))?;
        eprintln!("Saved the plan to {}; apply it with `fleetform apply {}`", file.display(), file.display());
    }
    let plans: Vec<&Plan> = change.iter().chain([&plan]).collect();
    let hit = failing(&args.fail_on, &plans);
    if !hit.is_empty() {
        let codes: Vec<String> = hit.iter().map(ToString::to_string).collect();
        eprintln!("error: the plan has warnings that --fail-on names: {} (exit {EXIT_FAIL_ON})", codes.join(", "));
        return Ok(ExitCode::from(EXIT_FAIL_ON));
    }
    Ok(match (args.detailed_exitcode, plan.out_of_sync()) {
        (true, true) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

/// [`declared`] for `--without-secrets`: unset variables read as placeholders, and the
/// deployments that read them get unknown ids.
fn declared_without_secrets(
    paths: &[PathBuf],
    rev: Option<&str>,
) -> Result<Option<(Vec<Rendered>, fleetform::plan::WithoutSecrets)>, CommandError> {
    let ws = fleetform::git::load_workspace(paths, rev)?;
    if !ws.problems.is_empty() {
        print_problems(&ws.problems);
        eprintln!("{} problem{} found; fix them before planning", ws.problems.len(), render::plural(ws.problems.len()));
        return Ok(None);
    }
    match fleetform::plan::render_without_secrets(&ws.deployments, &ProcessEnv) {
        Ok(r) => Ok(Some(r)),
        Err(problems) => {
            print_problems(&problems);
            Ok(None)
        }
    }
}

/// `--twins DIR`: the hub the arguments name for the deployments, the snapshot in `dir` for
/// the twins. Says on stderr how old the twins are (stdout stays the plan, whatever its
/// format), and warns past `max_age`.
fn twins_from_snapshot(
    hub: &HubArgs,
    dir: &std::path::Path,
    max_age: std::time::Duration,
) -> Result<ShapeChecked, CommandError> {
    let twins = SnapshotHub::open(dir)?;
    let read_at = twins_read_at(&twins).map_err(|e| CommandError::Library(ReadError::new(e)))?;
    let age = read_at.age(std::time::SystemTime::now());
    let when = humantime::format_rfc3339_seconds(read_at.time());
    let how = match read_at {
        TwinsReadAt::Recorded(_) => "",
        TwinsReadAt::FileModified(_) => ", by the device file's time: the snapshot records none",
    };
    eprintln!("Device twins from {}, read {} ago ({when}{how}).", dir.display(), rounded(age));
    if age > max_age {
        eprintln!(
            "warning: the device twins are older than --twins-max-age {}: device counts may be out of date; refresh them with `fleetform snapshot --out {}`",
            rounded(max_age),
            dir.display()
        );
    }
    let live = hub.open_hub()?;
    Ok(ShapeChecked::new(Box::new(TwinsFromSnapshot::new(live, twins))))
}

/// An age to the minute (`3h 12m`): the seconds of a snapshot's age are noise.
fn rounded(age: std::time::Duration) -> String {
    let minutes = age.as_secs() / 60;
    if minutes == 0 {
        return "under a minute".to_string();
    }
    humantime::format_duration(std::time::Duration::from_secs(minutes * 60)).to_string()
}

/// The `--base` section: the head's deployments planned against the merge base's, over
/// the hub's devices. Secrets that are not set read as placeholders on both sides.
fn change_section(
    paths: &[PathBuf],
    head: Option<&str>,
    base: &str,
    hub: &dyn Hub,
) -> Result<Option<Plan>, CommandError> {
    let merge_base = MergeBase::of(paths, base)?;
    let env = fleetform::plan::PlaceholderEnv(&ProcessEnv);
    let base_ws = fleetform::git::load_base_workspace(paths, merge_base.short())?;
    if !base_ws.problems.is_empty() {
        print_problems(&base_ws.problems);
        return Err(CommandError::BaseProblems {
            base: base.to_string(),
            merge_base: merge_base.short().to_string(),
            count: base_ws.problems.len(),
        });
    }
    let base_rendered = match manifest::render_all(&base_ws.deployments, &env, SecretMode::Reveal) {
        Ok(r) => r,
        Err(problems) => {
            print_problems(&problems);
            return Ok(None);
        }
    };
    let Some(head) = declared_with(paths, head, &env)? else { return Ok(None) };
    let on_hub = hub.configurations()?;
    Ok(Some(fleetform::plan::change_plan(&merge_base.label(base), &base_rendered, head, &on_hub, &Fleet(hub))?))
}
