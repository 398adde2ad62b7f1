//! What the CLI decides about the terminal: colour, the error format, the confirmation
//! prompt, Ctrl-C during apply, and a closed stdout pipe.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::args::Color;

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The terminal decisions made once from `--color`, the terminals and `NO_COLOR`.
pub struct Ui {
    /// Whether stdout gets colour (plans).
    pub color_stdout: bool,
}

fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Ui {
    /// Decides colour for stdout, and installs the error format for stderr (colour and
    /// Unicode only on a terminal; a fixed width otherwise, so logs and tests read alike).
    pub fn new(color: Color) -> Self {
        let color_stdout = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::io::stdout().is_terminal() && !no_color_env(),
        };
        let stderr_terminal = std::io::stderr().is_terminal();
        let color_stderr = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => stderr_terminal && !no_color_env(),
        };
        let _ = miette::set_hook(Box::new(move |_| {
            let mut opts =
                miette::MietteHandlerOpts::new().color(color_stderr).unicode(stderr_terminal).terminal_links(false);
            if !stderr_terminal {
                opts = opts.width(100);
            }
            Box::new(opts.build())
        }));
        Ui { color_stdout }
    }
}

/// `fleetform plan | head` must end quietly when `head` closes the pipe, as other Unix
/// tools do, instead of panicking on the failed write. Only for commands that write nothing
/// but their output.
pub fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Whether the user answered `yes` on the terminal to applying to `hub`. `None` when
/// there is no terminal to ask on (the refusal is printed).
pub fn confirm_apply(hub: &str) -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "Refusing to apply: no terminal to confirm on. Pass --auto-approve, or save the plan with \
             `fleetform plan --out FILE` and apply FILE."
        );
        return None;
    }
    eprint!("\nDo you want to apply these changes to {hub}? Only 'yes' will be accepted: ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if answer.trim() != "yes" {
        eprintln!("Apply cancelled; nothing was changed.");
        return Some(false);
    }
    Some(true)
}

/// The flag apply reads between steps. The first Ctrl-C only raises it, so no write is
/// cut off; a second one quits at once (safe too: each write is atomic on the hub and in a
/// snapshot, and the next apply converges from wherever this one stopped).
pub fn interrupt_between_steps() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
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
    interrupted
}

/// Device twins of the wrong shape were skipped while reading the hub: said on stderr, so
/// that the plan or query on stdout stays what it would be, and nobody misses it.
pub fn warn_wrong_shapes(hub: &fleetform::hub::shape::ShapeChecked) {
    let report = hub.report();
    if !report.is_empty() {
        eprintln!("{report}");
    }
}
