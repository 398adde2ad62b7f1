//! `fleetform man`: manual pages generated from the clap tree (the same text as `--help`).
//!
//! Without `--out` one page goes to stdout (`fleetform man plan | man -l -`); with it, one
//! file per command and subcommand, named the way `man` looks them up (`fleetform.1`,
//! `fleetform-plan.1`, `fleetform-hub-serve.1`), each written atomically.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use fleetform::util::atomic_file::AtomicFile;

use crate::cli::commands::init::OutputError;
use crate::cli::error::CommandError;

#[derive(clap::Args)]
pub struct Args {
    /// Write every page (fleetform.1 and one per subcommand) into DIR, created if missing.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out: Option<PathBuf>,
    /// Print the page of this subcommand (`plan`, `hub serve`, …) instead of fleetform.1.
    #[arg(value_name = "COMMAND", num_args = 0..)]
    pub command: Vec<String>,
}

/// The tree as man pages see it: built (so global flags reach every subcommand) and
/// without clap's `help` subcommand, which has no page of its own to give.
pub fn man_tree() -> clap::Command {
    let mut command = crate::cli::Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

/// Every page: the file name (`fleetform-hub-serve.1`) and the command it documents, the
/// root first. A subcommand's page is titled with its full path so `man` finds it.
pub fn pages() -> Vec<(String, clap::Command)> {
    fn walk(command: &clap::Command, title: String, out: &mut Vec<(String, clap::Command)>) {
        out.push((title.clone(), command.clone().display_name(title.clone())));
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, format!("{title}-{}", sub.get_name()), out);
        }
    }
    let root = man_tree();
    let mut out = Vec::new();
    walk(&root, root.get_name().to_string(), &mut out);
    out
}

fn render(command: clap::Command) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Subcommands carry no version of their own; the footer names the release for all.
    let source = format!("fleetform {}", env!("CARGO_PKG_VERSION"));
    // Writing into a Vec cannot fail.
    let _ = clap_mangen::Man::new(command).source(source).manual("fleetform manual").render(&mut bytes);
    bytes
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    if let Some(dir) = &args.out {
        write_all(dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let wanted =
        std::iter::once("fleetform".to_string()).chain(args.command.iter().cloned()).collect::<Vec<_>>().join("-");
    match pages().into_iter().find(|(title, _)| *title == wanted) {
        Some((_, command)) => {
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&render(command));
            Ok(ExitCode::SUCCESS)
        }
        None => Err(OutputError::NoSuchCommand {
            given: args.command.join(" "),
            known: pages().into_iter().skip(1).map(|(_, c)| command_path(&c)).collect(),
        }
        .into()),
    }
}

/// `hub serve` for the page of `fleetform hub serve`: what to type after `fleetform man`.
fn command_path(command: &clap::Command) -> String {
    let bin = command.get_bin_name().unwrap_or_else(|| command.get_name());
    bin.strip_prefix("fleetform ").unwrap_or(bin).to_string()
}

fn write_all(dir: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir { path: dir.to_path_buf(), source })?;
    let mut written = Vec::new();
    for (title, command) in pages() {
        let path = dir.join(format!("{title}.1"));
        let mut file = AtomicFile::create(&path)?;
        std::io::Write::write_all(&mut file, &render(command))
            .map_err(|source| fleetform::util::atomic_file::WriteError { path: path.clone(), source })?;
        file.commit()?;
        written.push(path);
    }
    // Listed once every page is in place: a reader that stops early cannot cut the
    // writing short.
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
