//! The hub's per-minute operation throttles (docs/hub-semantics.md#quotas) and the request
//! counts per operation class that `GET /_emulator/stats` reports.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The operation classes the hub throttles separately, as far as the emulated REST subset
/// reaches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// `POST /devices/query`.
    Queries,
    /// Everything under `/configurations` (create, update, list, delete, get, testQueries).
    Configurations,
    /// `GET /twins/{d}` and `GET /twins/{d}/modules/{m}`.
    TwinReads,
}

impl OpClass {
    pub const ALL: [OpClass; 3] = [OpClass::Queries, OpClass::Configurations, OpClass::TwinReads];

    pub fn name(self) -> &'static str {
        match self {
            OpClass::Queries => "queries",
            OpClass::Configurations => "configurations",
            OpClass::TwinReads => "twinReads",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An IoT Hub tier that throttles the classes above (the basic tiers have no
/// configurations or twins, so the emulator does not offer them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    F1,
    S1,
    S2,
    S3,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("unknown hub tier `{given}`")]
#[diagnostic(code(fleetform::emulator::tier), help("give F1, S1, S2 or S3"))]
pub struct UnknownTier {
    pub given: String,
}

impl FromStr for Tier {
    type Err = UnknownTier;

    fn from_str(s: &str) -> Result<Tier, UnknownTier> {
        match s.to_ascii_uppercase().as_str() {
            "F1" => Ok(Tier::F1),
            "S1" => Ok(Tier::S1),
            "S2" => Ok(Tier::S2),
            "S3" => Ok(Tier::S3),
            _ => Err(UnknownTier { given: s.to_string() }),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Tier::F1 => "F1",
            Tier::S1 => "S1",
            Tier::S2 => "S2",
            Tier::S3 => "S3",
        };
        f.write_str(name)
    }
}

impl Tier {
    /// Operations of `class` a hub of this tier with `units` units admits per minute
    /// (docs/hub-semantics.md#quotas). A free hub has exactly one unit.
    pub fn per_minute(self, class: OpClass, units: u32) -> u64 {
        let units = u64::from(if self == Tier::F1 { 1 } else { units.max(1) });
        match (class, self) {
            (OpClass::Queries, Tier::F1 | Tier::S1 | Tier::S2) => 20 * units,
            (OpClass::Queries, Tier::S3) => 1_000 * units,
            (OpClass::Configurations, _) => 20 * units,
            // Twin reads are per second on the quotas page: 100/s for F1 and S1 whatever the
            // units, the higher of 100/s and 10/s/unit on S2, 500/s/unit on S3.
            (OpClass::TwinReads, Tier::F1 | Tier::S1) => 100 * 60,
            (OpClass::TwinReads, Tier::S2) => (100 * 60).max(10 * 60 * units),
            (OpClass::TwinReads, Tier::S3) => 500 * 60 * units,
        }
    }
}

/// The quotas `hub serve --tier T --units N [--quota-window D]` enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaOptions {
    pub tier: Tier,
    pub units: u32,
    /// How long one quota window lasts: a minute on the hub, shorter for rehearsals (the
    /// same operation counts, in less time).
    pub window: Duration,
}

/// Counters of one operation class.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassStats {
    /// Requests of this class that were authorized (throttled ones included).
    pub requests: u64,
    /// Of those, answered 429 because the class was over its quota.
    pub throttled: u64,
    /// Twins (or result rows) sent back.
    pub rows: u64,
    /// Response body bytes sent back.
    pub bytes: u64,
}

/// Fixed quota windows per class: the hub applies its throttles "in minute ranges"; the
/// emulator leaves out traffic shaping (queueing before rejecting), so a client that
/// keeps inside the quota never sees a 429 and one that does not sees it at once.
pub struct Quotas {
    options: Option<QuotaOptions>,
    window_start: Instant,
    used: [u64; 3],
    pub stats: [ClassStats; 3],
}

impl Quotas {
    pub fn new(options: Option<QuotaOptions>, now: Instant) -> Quotas {
        Quotas { options, window_start: now, used: [0; 3], stats: [ClassStats::default(); 3] }
    }

    pub fn options(&self) -> Option<&QuotaOptions> {
        self.options.as_ref()
    }

    /// Counts one request of `class` at `now`; `Err` with the limit when it is over quota.
    pub fn admit(&mut self, class: OpClass, now: Instant) -> Result<(), Throttled> {
        let i = class.index();
        self.stats[i].requests += 1;
        let Some(options) = &self.options else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= options.window {
            // Windows stay aligned to the start, as minute ranges are to the clock.
            let windows = elapsed.as_nanos() / options.window.as_nanos().max(1);
            let step = options.window.as_nanos().saturating_mul(windows);
            self.window_start += Duration::from_nanos(u64::try_from(step).unwrap_or(u64::MAX));
            self.used = [0; 3];
        }
        let limit = options.tier.per_minute(class, options.units);
        if self.used[i] >= limit {
            self.stats[i].throttled += 1;
            let resets_in = (self.window_start + options.window).saturating_duration_since(now);
            return Err(Throttled { class, limit, tier: options.tier, units: options.units, resets_in });
        }
        self.used[i] += 1;
        Ok(())
    }

    /// Counts what a successful reply of `class` sent.
    pub fn served(&mut self, class: OpClass, rows: u64, bytes: u64) {
        let s = &mut self.stats[class.index()];
        s.rows += rows;
        s.bytes += bytes;
    }

    pub fn class(&self, class: OpClass) -> ClassStats {
        self.stats[class.index()]
    }
}

/// A request over its class's quota.
#[derive(Clone, Copy, Debug)]
pub struct Throttled {
    pub class: OpClass,
    pub limit: u64,
    pub tier: Tier,
    pub units: u32,
    pub resets_in: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_follow_the_quotas_page() {
        // Hand-copied from the table in docs/hub-semantics.md#quotas.
        assert_eq!(Tier::S1.per_minute(OpClass::Queries, 1), 20);
        assert_eq!(Tier::S2.per_minute(OpClass::Queries, 3), 60);
        assert_eq!(Tier::S3.per_minute(OpClass::Queries, 2), 2_000);
        assert_eq!(Tier::F1.per_minute(OpClass::Queries, 9), 20);
        assert_eq!(Tier::S3.per_minute(OpClass::Configurations, 4), 80);
        assert_eq!(Tier::S1.per_minute(OpClass::TwinReads, 5), 6_000);
        assert_eq!(Tier::S2.per_minute(OpClass::TwinReads, 5), 6_000);
        assert_eq!(Tier::S2.per_minute(OpClass::TwinReads, 20), 12_000);
        assert_eq!(Tier::S3.per_minute(OpClass::TwinReads, 1), 30_000);
        assert!("s9".parse::<Tier>().is_err());
        assert_eq!("s3".parse::<Tier>().unwrap(), Tier::S3);
    }

    #[test]
    fn a_class_is_refused_past_its_quota_until_the_window_turns() {
        let t0 = Instant::now();
        let window = Duration::from_secs(2);
        let mut q = Quotas::new(Some(QuotaOptions { tier: Tier::S1, units: 1, window }), t0);
        for _ in 0..20 {
            q.admit(OpClass::Queries, t0).unwrap();
        }
        let over = q.admit(OpClass::Queries, t0 + Duration::from_millis(500)).unwrap_err();
        assert_eq!(over.limit, 20);
        assert_eq!(over.resets_in, Duration::from_millis(1500));
        // Other classes have their own budget.
        q.admit(OpClass::Configurations, t0).unwrap();
        q.admit(OpClass::Queries, t0 + window).unwrap();
        let s = q.class(OpClass::Queries);
        assert_eq!((s.requests, s.throttled), (22, 1));
    }

    #[test]
    fn no_options_means_no_quota() {
        let t0 = Instant::now();
        let mut q = Quotas::new(None, t0);
        for _ in 0..10_000 {
            q.admit(OpClass::Queries, t0).unwrap();
        }
        assert_eq!(q.class(OpClass::Queries).requests, 10_000);
    }
}
