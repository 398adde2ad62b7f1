//! The progress bar drawn on stderr while a hub's twins are read over REST.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

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
                    bar.set_message(status(&progress));
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

/// What the bar says beside the rows: the pages read and the time left. When requests are
/// paced, the pacer's interval, not the rate observed so far, says how long the rest takes:
/// the first pages go at once (the burst), so the observed rate would promise far too much.
pub fn status(progress: &ReadProgress) -> String {
    let pages = match progress.pages {
        1 => "1 page".to_string(),
        n => format!("{n} pages"),
    };
    let left = match progress.paced_time_left() {
        Some(left) => format!(", {} left at the paced rate", short_duration(left)),
        None => String::new(),
    };
    format!("reading {}: {pages}{left}", progress.what)
}

/// Whole seconds, as humans read a countdown (`1h 40m 6s`).
fn short_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs_f64().ceil() as u64)).to_string()
}

fn bar(progress: &ReadProgress) -> indicatif::ProgressBar {
    let bar = match progress.total {
        // Paced, the message carries the time left; otherwise indicatif's estimate does.
        Some(total) if progress.page_interval.is_some() => indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} rows")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        Some(total) => indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} rows ({per_sec}, {eta} left)")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_message(status(progress));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::rest::TwinKind;

    #[test]
    fn the_status_counts_pages_and_the_paced_time_left() {
        let mut p = ReadProgress {
            what: TwinKind::Devices,
            stage: ReadStage::Page,
            total: Some(10_500),
            rows: 3000,
            pages: 3,
            page_size: 1000,
            page_interval: Some(Duration::from_secs(6)),
        };
        // 7,500 rows left: 8 pages of at most 1,000, 6 s apart.
        assert_eq!(status(&p), "reading device twins: 3 pages, 48s left at the paced rate");
        p.page_interval = None;
        assert_eq!(status(&p), "reading device twins: 3 pages");
        p.pages = 1;
        p.total = None;
        p.page_interval = Some(Duration::from_secs(6));
        assert_eq!(status(&p), "reading device twins: 1 page");
    }
}
