//! How far a twin read has got, for whoever shows it: the library reports, the CLI draws.

use std::fmt;
use std::sync::Arc;

/// Which twins are being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwinKind {
    Devices,
    Modules,
}

impl TwinKind {
    /// The collection a whole read queries (`SELECT * FROM <collection>`).
    pub fn collection(self) -> &'static str {
        match self {
            TwinKind::Devices => "devices",
            TwinKind::Modules => "devices.modules",
        }
    }
}

impl fmt::Display for TwinKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TwinKind::Devices => "device twins",
            TwinKind::Modules => "module twins",
        })
    }
}

/// Where a read is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStage {
    /// Before the first page; `total` is known if the hub counted.
    Started,
    /// A page arrived.
    Page,
    /// The read is over, successfully or not.
    Finished,
}

/// One report of a twin read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadProgress {
    pub what: TwinKind,
    pub stage: ReadStage,
    /// Rows the hub holds (`SELECT COUNT()`), when it answered.
    pub total: Option<u64>,
    /// Rows read so far.
    pub rows: u64,
    /// Pages read so far.
    pub pages: u64,
    /// Rows per full page (`x-ms-max-item-count`).
    pub page_size: u64,
    /// The time between pages the pacer allows, when requests are paced: what the time left
    /// is computed from (the hub's quota, not the network, sets the pace of a large read).
    pub page_interval: Option<std::time::Duration>,
}

impl ReadProgress {
    /// Pages still to read, when the total is known.
    pub fn pages_left(&self) -> Option<u64> {
        let left = self.total?.saturating_sub(self.rows);
        Some(left.div_ceil(self.page_size.max(1)))
    }

    /// The time the remaining pages take at the paced rate, when both are known.
    pub fn paced_time_left(&self) -> Option<std::time::Duration> {
        let interval = self.page_interval?;
        Some(interval.saturating_mul(u32::try_from(self.pages_left()?).unwrap_or(u32::MAX)))
    }
}

/// Receives [`ReadProgress`] reports, possibly from the thread that reads.
#[derive(Clone)]
pub struct ProgressObserver(Arc<dyn Fn(ReadProgress) + Send + Sync>);

impl ProgressObserver {
    pub fn new(observe: impl Fn(ReadProgress) + Send + Sync + 'static) -> ProgressObserver {
        ProgressObserver(Arc::new(observe))
    }

    pub fn report(&self, progress: ReadProgress) {
        (self.0)(progress)
    }
}

impl fmt::Debug for ProgressObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressObserver")
    }
}
