//! `fleetform apply`: a saved plan checked against the hub and the repository, or a fresh
//! plan confirmed on the terminal; then the steps, and `--wait` for the rollout.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use fleetform::apply::{self, ApplyError};
use fleetform::hub::rest::RestOptions;
use fleetform::plan::{Decision, RolloutPlan};
use fleetform::render;

use crate::cli::args::{self, Format, HubArgs, Prune, RefArg};
use crate::cli::error::CommandError;
use crate::cli::revisions;
use crate::cli::ui::{self, EXIT_INTERRUPTED, Ui};
use crate::cli::workspace::declared;

/// Overrides the `--wait` polling interval, in milliseconds: tests poll fast.
const WAIT_INTERVAL_ENV: &str = "FLEETFORM_WAIT_INTERVAL_MS";

#[derive(clap::Args)]
pub struct Args {
    /// A plan saved by `fleetform plan --out FILE` (any file whose first non-blank
    /// character is `{`, which must be JSON of kind fleetform-plan; its MAC is checked
    /// with FLEETFORM_HASH_KEY; carried out only if planning now derives the same steps)
    /// followed by the deployment paths it was made from, or just the paths (files or
    /// directories searched recursively for *.kdl, symlinks followed; default ".").
    #[arg(value_name = "PLANFILE | PATH")]
    pub args: Vec<PathBuf>,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Apply without asking (CI). Without it, apply asks for `yes` on a terminal.
    #[arg(long)]
    pub auto_approve: bool,
    /// Delete managed deployments that are no longer declared (planning only; a
    /// saved plan already says what it deletes).
    #[arg(long)]
    pub prune: bool,
    /// With --prune (or a plan file made with it), allow an empty set of deployments
    /// (which deletes every managed deployment). Without it, finding no deployments is an
    /// error, since that is far more often a wrong path than a wish to delete everything.
    #[arg(long)]
    pub allow_empty: bool,
    /// Overall deadline for each hub operation, retries of 429/5xx included.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub timeout: String,
    /// After the writes, wait until the created and updated deployments are applied
    /// and reported successful by their devices (default 15m when given bare). For a
    /// deployment with `rollout`, drive the whole rollout in this run: poll the wave's
    /// metrics, promote, until it completes or rolls back.
    ///
    /// Exit codes with rollouts: 0 complete (or none in progress), 10 a rollout started
    /// or a wave was promoted, 11 a rollout waits (rule not met, soaking, or --wait timed
    /// out), 12 rolled back (now or earlier), 13 refused: new content while a rollout is
    /// unfinished, or its old deployment deleted outside fleetform (--restart-rollout).
    #[arg(long, value_name = "DURATION", num_args = 0..=1, require_equals = true, default_missing_value = "15m")]
    pub wait: Option<String>,
    /// Apply even when the deployment files have uncommitted changes (the
    /// fleetform-commit label then names a commit that does not hold them). Every loaded
    /// file is checked by its real path, so changes behind a symlink count too.
    #[arg(long)]
    pub allow_dirty: bool,
    #[command(flatten)]
    pub git: RefArg,
    /// For a deployment with `rollout`: retry a content that was rolled back, or start
    /// new content over an unfinished rollout (deleting the unfinished new deployment),
    /// or give a rollout whose old deployment was deleted by hand its whole target now,
    /// instead of refusing with exit 13 (docs/rollouts.md).
    #[arg(long)]
    pub restart_rollout: bool,
    /// text, or json (one report object on stdout; the plan goes to stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args, ui: &Ui) -> Result<ExitCode, CommandError> {
    let timeout = args::duration(&args.timeout)?;
    let wait_for = args.wait.as_deref().map(args::duration).transpose()?;
    let rev = args.git.git_ref.as_deref();
    let (saved, paths) = match args.args.first() {
        Some(first) => match apply::load_plan_file(first)? {
            // Without paths after it, the plan's own paths (relative to where it was made).
            Some(saved) if args.args.len() == 1 => {
                let paths = saved.paths.iter().map(PathBuf::from).collect();
                (Some(saved), paths)
            }
            Some(saved) => (Some(saved), args.args[1..].to_vec()),
            None => (None, args.args.clone()),
        },
        None => (None, Vec::new()),
    };
    let paths = if paths.is_empty() { vec![PathBuf::from(".")] } else { paths };
    // What is applied must be what was committed, so that fleetform-commit is the truth.
    // From a commit (--ref) the working tree does not matter.
    if !args.allow_dirty && rev.is_none() {
        refuse_uncommitted(&paths)?;
    }
    let Some(mut rendered) = declared(&paths, rev)? else { return Ok(ExitCode::from(1)) };
    let prune = Prune { prune: args.prune, allow_empty: args.allow_empty };
    match &saved {
        None => prune.check(&paths, &rendered)?,
        // A saved plan prunes by its own `prune`: the same empty-set guard applies, so a
        // plan file cannot delete every managed deployment without --allow-empty.
        Some(saved) => Prune { prune: saved.prune, ..prune }.check(&paths, &rendered)?,
    }
    let hub = args.hub.open_hub_with(RestOptions { deadline: timeout, ..Default::default() })?;
    let json = args.format == Format::Json;
    // Human-facing text goes to stderr in json mode, so stdout holds one JSON document.
    let say = |text: &str| {
        if json {
            eprint!("{text}");
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    };

    let restart = args.restart_rollout;
    let (first, source) = match saved {
        Some(saved) => {
            if args.prune {
                eprintln!("note: --prune is ignored with a plan file: the plan already says what it deletes");
            }
            let current = hub.configurations()?;
            // The plan kept the hub's id where the content is already there under another
            // id (adoption, an older hash scheme or key); so must the check and the steps.
            fleetform::plan::adopt_ids(&mut rendered, &current);
            let problems = apply::check_saved(&saved, &hub.identity(), &current, &rendered);
            if !problems.is_empty() {
                return Err(ApplyError::Stale { problems }.into());
            }
            // The file is only a request: what is carried out must be what planning from
            // the repository and the hub gives now, so a hand-edited step is refused.
            let rederived = super::plan::plan_against(rendered.clone(), current, hub.as_ref(), saved.prune, restart)?;
            let problems = apply::unjustified_steps(&saved.steps, &rederived.steps);
            if !problems.is_empty() {
                return Err(ApplyError::Altered { problems }.into());
            }
            say(&render::apply::saved_plan_heading(&saved));
            let round = Round {
                steps: saved.steps,
                write: rederived.to_write(),
                expected: saved.expected_applied,
                rollouts: rederived.rollouts,
            };
            (round, "plan")
        }
        None => {
            let plan =
                super::plan::plan_against(rendered.clone(), hub.configurations()?, hub.as_ref(), args.prune, restart)?;
            let paint = render::text::Paint { color: ui.color_stdout && !json };
            say(&render::text::plan_text(&plan, paint));
            if refused(&plan.rollouts) {
                return Ok(ExitCode::from(EXIT_ROLLOUT_REFUSED));
            }
            if plan.has_changes() && !args.auto_approve && ui::confirm_apply(&plan.hub) != Some(true) {
                return Ok(ExitCode::from(1));
            }
            let round = Round {
                write: plan.to_write(),
                steps: plan.steps,
                expected: plan.expected_applied,
                rollouts: plan.rollouts,
            };
            (round, "repository")
        }
    };
    if refused(&first.rollouts) {
        return Ok(ExitCode::from(EXIT_ROLLOUT_REFUSED));
    }
    let in_progress = |rollouts: &[RolloutPlan]| rollouts.iter().any(|r| rollout_in_progress(&r.next));
    let drive = wait_for.is_some() && in_progress(&first.rollouts);
    if first.steps.is_empty() && !drive {
        let mut code = ExitCode::SUCCESS;
        for r in &first.rollouts {
            say(&format!("{}\n", render::rollout::transition_line(r)));
        }
        if let Some(c) = rollout_exit(&first.rollouts) {
            code = ExitCode::from(c);
        }
        if json {
            let mut v = render::json::apply_unchanged_json(source);
            if !first.rollouts.is_empty() {
                v["rollouts"] = serde_json::to_value(&first.rollouts).unwrap_or_default();
            }
            println!("{v}");
        } else if source == "plan" && first.rollouts.is_empty() {
            // A fresh plan's text already ends with this line.
            println!("No changes. The hub matches the repository.");
        }
        return Ok(code);
    }

    let interrupted = ui::interrupt_between_steps();
    let commit = revisions::source_commit(&paths, rev)?;
    let options = apply::ApplyOptions { commit };
    let run_round = |round: &Round| -> apply::ApplyReport {
        let total = round.steps.len();
        apply::execute(hub.as_ref(), &round.steps, &round.write, &options, &interrupted, &mut |r| {
            eprintln!("{}", render::apply::step_line(r, total));
        })
    };
    // Re-reads the hub and decides again; later rounds only carry rollout transitions.
    let replan = || -> Result<Round, CommandError> {
        let plan =
            super::plan::plan_against(rendered.clone(), hub.configurations()?, hub.as_ref(), args.prune, restart)?;
        let steps: Vec<_> = plan.steps.iter().filter(|s| is_rollout_step(&s.reason)).cloned().collect();
        if steps.len() < plan.steps.len() {
            eprintln!(
                "note: the hub changed beyond the rollouts since this apply started; only rollout steps are run now: plan again for the rest"
            );
        }
        let steps = steps.into_iter().enumerate().map(|(i, mut s)| {
            s.number = i + 1;
            s
        });
        Ok(Round {
            steps: steps.collect(),
            write: plan.to_write(),
            expected: plan.expected_applied,
            rollouts: plan.rollouts,
        })
    };

    let report = run_round(&first);
    if !json {
        print!("{}", report.summary_text());
    } else {
        eprint!("{}", report.summary_text());
    }
    let mut latest = first.rollouts.clone();
    let mut last = report.clone();
    let mut retries = 0;
    // Another apply changed N or O between our read and our write (HTTP 412): read the
    // hub again and decide again, so that a wave is promoted once.
    while !last.completed() && !latest.is_empty() && raced(&last) && retries < RACE_RETRIES {
        retries += 1;
        eprintln!("note: the hub changed during this apply (HTTP 412): reading it again and deciding again");
        let round = replan()?;
        last = run_round(&round);
        latest = round.rollouts;
    }
    if last.completed() {
        for r in &latest {
            say(&format!("{}\n", render::rollout::transition_line(r)));
        }
    }
    let mut rollout_timed_out = false;
    if drive || (wait_for.is_some() && last.completed() && in_progress(&latest)) {
        let limit = wait_for.unwrap_or_default();
        let deadline = std::time::Instant::now() + limit;
        let interval = wait_interval().unwrap_or(apply::WaitOptions::DEFAULT_INTERVAL);
        let mut said: Vec<String> = Vec::new();
        while last.completed() && in_progress(&latest) {
            if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                rollout_timed_out = true;
                break;
            }
            let until = now + interval.min(deadline - now);
            while std::time::Instant::now() < until && !interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(50).min(interval));
            }
            let round = replan()?;
            last = if round.steps.is_empty() { last } else { run_round(&round) };
            if last.completed() {
                for r in &round.rollouts {
                    let line = render::rollout::transition_line(r);
                    // A rollout that waits says so once, not on every poll.
                    if !said.contains(&line) {
                        say(&format!("{line}\n"));
                        said.push(line);
                    }
                }
            }
            latest = round.rollouts;
        }
        if rollout_timed_out {
            say(&format!(
                "Rollout wait timed out after {}: still in progress; the next apply continues where this one stopped.\n",
                humantime::format_duration(limit)
            ));
        }
    }
    let mut wait_outcome = None;
    if report.completed()
        && let Some(limit) = wait_for
    {
        // Deployments outside the rollouts: the ordinary wait for their devices.
        let rolling: Vec<String> = first
            .rollouts
            .iter()
            .filter_map(|r| r.pair())
            .flat_map(|(o, n, x)| [Some(o), Some(n), x])
            .flatten()
            .map(|id| id.to_string())
            .collect();
        let ids: Vec<_> = report.written_ids().into_iter().filter(|id| !rolling.contains(&id.to_string())).collect();
        if !ids.is_empty() {
            let mut options = apply::WaitOptions::new(limit, first.expected.clone());
            if let Some(interval) = wait_interval() {
                options.interval = interval;
            }
            let mut display = render::progress::ProgressDisplay::new(std::io::stderr().is_terminal());
            let outcome = apply::wait(hub.as_ref(), &ids, &options, &interrupted, &mut |p| display.show(p));
            display.finish();
            let outcome = outcome?;
            say(&format!("{}\n", outcome.message()));
            wait_outcome = Some(outcome);
        }
    }
    if json {
        let mut v = render::json::apply_json(source, &report, wait_outcome.as_ref());
        // The decisions of the last round, as `plan --format json` shows them.
        if !latest.is_empty() {
            v["rollouts"] = serde_json::to_value(&latest).unwrap_or_default();
        }
        super::print_json(&v);
    }
    let interrupted_run = matches!(last.stopped, Some(apply::Stop::Interrupted))
        || matches!(wait_outcome, Some(apply::WaitOutcome::Interrupted { .. }))
        || (interrupted.load(std::sync::atomic::Ordering::SeqCst) && in_progress(&latest));
    Ok(if interrupted_run {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if !report.completed() || !last.completed() {
        ExitCode::from(1)
    } else if let Some(w) = wait_outcome.as_ref().filter(|w| !w.succeeded()) {
        ExitCode::from(w.exit_code())
    } else if let Some(code) = rollout_exit(&latest) {
        ExitCode::from(code)
    } else {
        ExitCode::SUCCESS
    })
}

/// `apply` exit codes for rollouts (README "Exit codes", docs/rollouts.md).
pub const EXIT_ROLLOUT_ADVANCED: u8 = 10;
pub const EXIT_ROLLOUT_WAITING: u8 = 11;
pub const EXIT_ROLLED_BACK: u8 = 12;
pub const EXIT_ROLLOUT_REFUSED: u8 = 13;

/// How often a 412 during a rollout is re-read and re-decided before apply gives up.
const RACE_RETRIES: usize = 3;

/// One plan's worth of writes: the steps, what they write, and the rollouts they advance.
struct Round {
    steps: Vec<fleetform::plan::Step>,
    write: Vec<fleetform::manifest::Rendered>,
    expected: std::collections::BTreeMap<String, u64>,
    rollouts: Vec<RolloutPlan>,
}

fn wait_interval() -> Option<std::time::Duration> {
    std::env::var(WAIT_INTERVAL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
}

fn is_rollout_step(reason: &str) -> bool {
    use fleetform::plan::rollout as r;
    [
        r::REASON_START,
        r::REASON_RESTART,
        r::REASON_PROMOTE,
        r::REASON_COMPLETE,
        r::REASON_RECORD,
        r::REASON_ROLLBACK,
        r::REASON_CLEAR_RECORD,
    ]
    .contains(&reason)
}

/// Whether the run stopped on an etag mismatch.
fn raced(report: &apply::ApplyReport) -> bool {
    report
        .results
        .iter()
        .any(|r| r.status == apply::StepStatus::Failed && r.message.as_deref().is_some_and(|m| m.contains("HTTP 412")))
}

fn refused(rollouts: &[RolloutPlan]) -> bool {
    let refusals: Vec<&RolloutPlan> =
        rollouts.iter().filter(|r| matches!(r.next, Decision::Refuse { .. } | Decision::OldGone { .. })).collect();
    for r in &refusals {
        eprintln!("error: rollout of {}: {}", r.name, render::rollout::decision_text(r));
    }
    if !refusals.is_empty() {
        eprintln!("Nothing was changed.");
    }
    !refusals.is_empty()
}

fn rollout_in_progress(d: &Decision) -> bool {
    matches!(d, Decision::Start { .. } | Decision::Promote { .. } | Decision::Wait { .. })
}

/// The exit code the rollouts of the last round call for, if any: rolled back beats
/// advanced beats waiting; a completed rollout is success.
fn rollout_exit(rollouts: &[RolloutPlan]) -> Option<u8> {
    let any = |f: fn(&Decision) -> bool| rollouts.iter().any(|r| f(&r.next));
    if any(|d| matches!(d, Decision::RollBack { .. } | Decision::RolledBack { .. })) {
        Some(EXIT_ROLLED_BACK)
    } else if any(|d| matches!(d, Decision::Start { .. } | Decision::Promote { .. })) {
        Some(EXIT_ROLLOUT_ADVANCED)
    } else if any(|d| matches!(d, Decision::Wait { .. })) {
        Some(EXIT_ROLLOUT_WAITING)
    } else {
        None
    }
}

/// Refuses deployment files with uncommitted changes, or whose state git cannot tell.
/// Files outside any repository have no commit to disagree with.
fn refuse_uncommitted(paths: &[PathBuf]) -> Result<(), CommandError> {
    let mut in_repository = false;
    for p in paths {
        match fleetform::git::is_dirty(p) {
            Ok(false) => in_repository = true,
            Err(fleetform::git::GitError::NotARepository { .. }) => {}
            Ok(true) => return Err(CommandError::Dirty { path: p.clone() }),
            Err(reason) => return Err(CommandError::DirtyUnknown { path: p.clone(), reason }),
        }
    }
    // The folder's status does not see through symlinks: check every file the load
    // will read, by its real path, in the repository that holds it. A path that
    // cannot be listed is reported by the load itself.
    let files: Vec<PathBuf> = paths.iter().filter_map(|p| fleetform::spec::kdl_files(p).ok()).flatten().collect();
    match fleetform::git::uncommitted_file(&files, in_repository) {
        Ok(None) => Ok(()),
        Ok(Some(found)) => Err(CommandError::Uncommitted { found }),
        Err(reason) => Err(CommandError::UncommittedUnknown { reason }),
    }
}
