//! `fleetform fmt`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use fleetform::render::plural;
use fleetform::spec;

use crate::cli::error::CommandError;
use crate::cli::files::write_atomically;
use crate::cli::workspace::print_problems;

#[derive(clap::Args)]
pub struct Args {
    /// Change nothing; list the files that are not formatted and exit 1 if any.
    #[arg(long)]
    pub check: bool,
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let Args { check, paths } = args;
    let mut unformatted = Vec::new();
    let mut failed = false;
    for root in &paths {
        for path in spec::kdl_files(root)? {
            let display = path.display().to_string();
            let text = spec::read_kdl_file(&path, &display)?;
            // The formatter recurses per level, so too deep a file is refused before it.
            if spec::limits::too_deep(&text).is_some() {
                let file = Arc::new(spec::SourceFile::new(display.clone(), &path, text));
                print_problems(&spec::limits::nesting_problem(&file).into_iter().collect::<Vec<_>>());
                failed = true;
                continue;
            }
            let formatted = match spec::fmt::format_source(&text) {
                Ok(f) => f,
                Err(e) => {
                    // Syntax errors are reported the same way `validate` reports them.
                    let file = Arc::new(spec::SourceFile::new(display.clone(), &path, text));
                    print_problems(&spec::syntax_problems(&file, e));
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
                let target = std::fs::canonicalize(&path)
                    .map_err(|reason| CommandError::Canonicalize { path: display.clone(), reason })?;
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
