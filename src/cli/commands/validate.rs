//! `fleetform validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use fleetform::render::plural;

use crate::cli::args::{Format, RefArg, joined};
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
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let Args { paths, format, max_problems, git } = args;
    let ws = fleetform::git::load_workspace(&paths, git.git_ref.as_deref())?;
    let ok = ws.problems.is_empty();
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
                    .collect();
                m.insert("warnings".into(), serde_json::Value::Array(list));
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
            } else {
                eprintln!("{} problem{} found", ws.problems.len(), plural(ws.problems.len()));
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
