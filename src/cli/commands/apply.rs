//! `fleetform apply`: a saved plan checked against the hub and the repository, or a fresh
//! plan confirmed on the terminal; then the steps, and `--wait` for the rollout.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use fleetform::apply::{self, ApplyError};
use fleetform::hub::rest::RestOptions;
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
    /// and reported successful by their devices (default 15m when given bare).
    #[arg(long, value_name = "DURATION", num_args = 0..=1, require_equals = true, default_missing_value = "15m")]
    pub wait: Option<String>,
    /// Apply even when the deployment files have uncommitted changes (the
    /// fleetform-commit label then names a commit that does not hold them). Every loaded
    /// file is checked by its real path, so changes behind a symlink count too.
    #[arg(long)]
    pub allow_dirty: bool,
    #[command(flatten)]
    pub git: RefArg,
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

    let (steps, declared_now, expected_applied, source) = match saved {
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
            let rederived = super::plan::plan_against(rendered.clone(), current, hub.as_ref(), saved.prune)?;
            let problems = apply::unjustified_steps(&saved.steps, &rederived.steps);
            if !problems.is_empty() {
                return Err(ApplyError::Altered { problems }.into());
            }
            say(&render::apply::saved_plan_heading(&saved));
            (saved.steps, rendered, saved.expected_applied, "plan")
        }
        None => {
            let plan = super::plan::plan_against(rendered, hub.configurations()?, hub.as_ref(), args.prune)?;
            let paint = render::text::Paint { color: ui.color_stdout && !json };
            say(&render::text::plan_text(&plan, paint));
            if plan.has_changes() && !args.auto_approve && ui::confirm_apply(&plan.hub) != Some(true) {
                return Ok(ExitCode::from(1));
            }
            (plan.steps, plan.declared, plan.expected_applied, "repository")
        }
    };
    if steps.is_empty() {
        if json {
            println!("{}", render::json::apply_unchanged_json(source));
        } else if source == "plan" {
            // A fresh plan's text already ends with this line.
            println!("No changes. The hub matches the repository.");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let interrupted = ui::interrupt_between_steps();
    let commit = revisions::source_commit(&paths, rev)?;
    let total = steps.len();
    let options = apply::ApplyOptions { commit };
    let report = apply::execute(hub.as_ref(), &steps, &declared_now, &options, &interrupted, &mut |r| {
        eprintln!("{}", render::apply::step_line(r, total));
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
            let mut options = apply::WaitOptions::new(limit, expected_applied);
            if let Some(ms) = std::env::var(WAIT_INTERVAL_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                options.interval = std::time::Duration::from_millis(ms);
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
        super::print_json(&render::json::apply_json(source, &report, wait_outcome.as_ref()));
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
