//! `fleetform validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use fleetform::render::plural;

use fleetform::hub::{Fleet, HubRead, SnapshotHub};
use fleetform::merge::Warning;

use super::plan::{EXIT_FAIL_ON, FailOn, failing_codes, parse_fail_on};
use crate::cli::args::{Format, HubAccess, HubArgs, RefArg, joined};
use crate::cli::error::CommandError;
use crate::cli::workspace::print_problems;

#[derive(clap::Args)]
pub struct Args {
    /// Files or directories (searched recursively for *.kdl).
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Show at most N problems in text output (JSON always lists every one); the
    /// total is still counted. 0 shows them all.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_problems: usize,
    #[command(flatten)]
    pub git: RefArg,
    /// Also check the declared queries against this hub's device twins, as plan does,
    /// without planning: W011 (a literal of another type than the fleet holds at that
    /// path), W012 (a path no twin has, with "did you mean") and W013 (a deployment that
    /// targets no device). A snapshot directory, a connection string, env:NAME or a host
    /// name, as for plan; unlike plan, FLEETFORM_HUB and IOTHUB_CONNECTION_STRING are not
    /// read, so validate stays offline unless asked.
    #[arg(long, value_name = "HUB")]
    pub hub: Option<String>,
    /// With --hub: base URL replacing https://<HostName> (the emulator, a sovereign cloud).
    #[arg(long, value_name = "URL", requires = "hub")]
    pub endpoint: Option<String>,
    #[command(flatten)]
    pub access: HubAccess,
    /// Check against the device twins of this snapshot directory (made by `fleetform
    /// snapshot`) instead of a hub's.
    #[arg(long, value_name = "DIR", conflicts_with = "hub")]
    pub twins: Option<PathBuf>,
    /// Exit 4 when a warning with one of these codes fires, e.g. W011,W013; `all` for any
    /// warning (as plan does; problems still exit 1 first).
    #[arg(long, value_name = "CODES", value_delimiter = ',', value_parser = parse_fail_on)]
    pub fail_on: Vec<FailOn>,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let Args { paths, format, max_problems, git, hub, endpoint, access, twins, fail_on } = args;
    let ws = fleetform::git::load_workspace(&paths, git.git_ref.as_deref())?;
    let mut problems = ws.problems.clone();
    // The fleet checks read the rendered queries, so they run only on valid files.
    let fleet = match (&hub, &twins) {
        (None, None) => None,
        _ if !problems.is_empty() => None,
        _ => match fleet_checks(&ws.deployments, hub, endpoint, access, twins.as_deref())? {
            Ok(found) => Some(found),
            Err(render) => {
                problems.extend(render);
                None
            }
        },
    };
    let ok = problems.is_empty();
    // Warnings do not make the files invalid: the hub accepts them, a reviewer should not.
    let warnings = fleetform::spec::ties::equal_priority_overlaps(&ws.deployments);
    // What a deployment says that the hub accepts yet counts or runs wrong (W015 to W018).
    let language: Vec<fleetform::merge::Warning> = fleetform::manifest::lint_declared(&ws.deployments)
        .into_iter()
        .map(|c| fleetform::merge::Warning::new(c, &Default::default()))
        .collect();
    match format {
        Format::Json => {
            let mut json = fleetform::render::json::validate_json(&ws);
            if let serde_json::Value::Object(m) = &mut json {
                let with_text = |mut v: serde_json::Value, text: String| {
                    if let serde_json::Value::Object(o) = &mut v {
                        o.insert("text".into(), text.into());
                    }
                    v
                };
                let list = warnings
                    .iter()
                    .map(|w| with_text(serde_json::to_value(w).unwrap_or_default(), w.to_string()))
                    .chain(
                        language.iter().map(|w| with_text(serde_json::to_value(w).unwrap_or_default(), w.to_string())),
                    )
                    .chain(
                        fleet
                            .iter()
                            .flat_map(|f| &f.warnings)
                            .map(|w| with_text(serde_json::to_value(w).unwrap_or_default(), w.to_string())),
                    )
                    .collect();
                m.insert("warnings".into(), serde_json::Value::Array(list));
                if let Some(f) = &fleet {
                    m.insert("fleet".into(), serde_json::json!({ "hub": f.hub }));
                }
                if problems.len() > ws.problems.len() {
                    // Rendering problems (found only when checking against a fleet).
                    let extra = problems[ws.problems.len()..]
                        .iter()
                        .map(|p| serde_json::to_value(p.to_json()).unwrap_or_default());
                    if let Some(serde_json::Value::Array(list)) = m.get_mut("problems") {
                        list.extend(extra);
                    }
                    m.insert("valid".into(), false.into());
                }
            }
            super::print_json(&json)
        }
        Format::Text => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            for w in &language {
                eprintln!("warning: {w}");
            }
            for w in fleet.iter().flat_map(|f| &f.warnings) {
                eprintln!("warning: {w}");
            }
            // A terminal is no use past a screenful or so; the count below stays exact.
            let shown = if max_problems == 0 { problems.len() } else { max_problems.min(problems.len()) };
            print_problems(&problems[..shown]);
            if shown < problems.len() {
                let more = problems.len() - shown;
                eprintln!("… and {more} more problem{} (--max-problems 0 shows all)", plural(more));
            }
            if ws.deployments.is_empty() && ok {
                // Not an error (a new repository has none yet), but never silent: plan and
                // apply --prune refuse this unless --allow-empty.
                eprintln!(
                    "warning: no deployments found in {} (symlinks are followed, hidden folders skipped)",
                    joined(&paths)
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
                if let Some(f) = &fleet {
                    let n = f.warnings.len();
                    println!("checked against the device twins of {}: {n} warning{}", f.hub, plural(n));
                }
            } else {
                eprintln!("{} problem{} found", problems.len(), plural(problems.len()));
            }
        }
    }
    if !ok {
        return Ok(ExitCode::from(1));
    }
    let codes = warnings
        .iter()
        .map(|w| w.code)
        .chain(language.iter().chain(fleet.iter().flat_map(|f| &f.warnings)).map(|w| w.code));
    let hit = failing_codes(&fail_on, codes);
    if !hit.is_empty() {
        let codes: Vec<String> = hit.iter().map(ToString::to_string).collect();
        eprintln!("error: the files have warnings that --fail-on names: {} (exit {EXIT_FAIL_ON})", codes.join(", "));
        return Ok(ExitCode::from(EXIT_FAIL_ON));
    }
    Ok(ExitCode::SUCCESS)
}

/// What the fleet checks found, and against what.
struct FleetFindings {
    hub: String,
    warnings: Vec<Warning>,
}

/// The fleet checks of plan against `--hub` or `--twins`, on the deployments rendered as
/// a plan without secrets renders them (a missing secret changes no query). `Err` holds
/// rendering problems.
fn fleet_checks(
    deployments: &[fleetform::spec::model::Deployment],
    hub: Option<String>,
    endpoint: Option<String>,
    access: HubAccess,
    twins: Option<&std::path::Path>,
) -> Result<Result<FleetFindings, Vec<fleetform::spec::Problem>>, CommandError> {
    let rendered = match fleetform::plan::render_without_secrets(deployments, &fleetform::manifest::ProcessEnv) {
        Ok((rendered, _)) => rendered,
        Err(problems) => return Ok(Err(problems)),
    };
    let source: Box<dyn HubRead> = match twins {
        Some(dir) => Box::new(SnapshotHub::open(dir)?),
        None => Box::new(HubArgs { hub, endpoint, access }.open_shape_checked()?),
    };
    let warnings =
        fleetform::plan::lint::check_fleet(&rendered, &Fleet(source.as_ref())).map_err(CommandError::Library)?;
    Ok(Ok(FleetFindings { hub: source.describe(), warnings }))
}
