//! The progress bar drawn on stderr while a hub's twins are read over REST.

use std::io::IsTerminal;
use std::sync::Mutex;

use crate::hub::rest::{ProgressObserver, ReadProgress, ReadStage};

/// An observer for [`crate::hub::rest::RestOptions::on_progress`] that draws a bar on
/// stderr (a spinner when the hub did not count its rows); `None` when stderr is not a
/// terminal, where redrawing would only litter a log.
pub fn stderr_bar() -> Option<ProgressObserver> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let current: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
    Some(ProgressObserver::new(move |progress: ReadProgress| {
        let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
        match progress.stage {
            ReadStage::Started => *current = Some(bar(&progress)),
            ReadStage::Page => {
                if let Some(bar) = current.as_ref() {
                    bar.set_position(progress.rows);
                }
            }
            ReadStage::Finished => {
                if let Some(bar) = current.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }))
}

fn bar(progress: &ReadProgress) -> indicatif::ProgressBar {
    let bar = match progress.total {
        Some(total) => indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}, {eta} left)")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_message(format!("reading {}", progress.what));
    bar
}
