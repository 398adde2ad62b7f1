//! Keeping fleetform inside a share of the hub's per-minute quotas
//! (docs/hub-semantics.md#pacing).
//!
//! IoT Hub meters each operation class per minute and unit, for the whole hub: every
//! service that queries it draws from the same quota. Backing off after a 429 only works
//! once the quota is already spent, for everyone; a pacer spends at most its share, so the
//! others never see the throttle because of fleetform. One token bucket per class.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An IoT Hub standard tier (the basic tiers have no configurations, so no deployments).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    S1,
    S2,
    S3,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::S1 => "S1",
            Tier::S2 => "S2",
            Tier::S3 => "S3",
        })
    }
}

/// The operation classes the hub throttles separately and fleetform uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationClass {
    /// `POST /devices/query`: every page is one query operation.
    Queries,
    /// Configurations and edge deployments: create, update, list, delete (and get).
    Configurations,
    /// `GET /twins/…`: metered per second (100/s on S1), far above the few single-twin
    /// reads fleetform makes, so never paced.
    TwinReads,
}

impl OperationClass {
    /// Operations per minute and unit (docs/hub-semantics.md#throttling).
    pub fn per_minute_per_unit(self, tier: Tier) -> u32 {
        match (self, tier) {
            (OperationClass::Queries, Tier::S1 | Tier::S2) => 20,
            (OperationClass::Queries, Tier::S3) => 1000,
            (OperationClass::Configurations, _) => 20,
            (OperationClass::TwinReads, Tier::S1 | Tier::S2) => 6000,
            (OperationClass::TwinReads, Tier::S3) => 30_000,
        }
    }
}

/// The hub's size and fleetform's share of its quotas.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quota {
    pub tier: Tier,
    /// Units the hub is provisioned with (1 or more).
    pub units: u32,
    /// The share of each quota fleetform may use, in (0, 1].
    pub share: f64,
    /// The metering window: a minute on a hub; shorter for rehearsals against the
    /// emulator started with the same `--quota-window`.
    pub window: Duration,
}

/// Half: other services (dashboards, provisioning back ends, operators' `az` sessions) draw
/// from the same quota, and with half each, two fleetform runs at once (two pull requests
/// planning) still fit together.
pub const DEFAULT_SHARE: f64 = 0.5;

/// The hub's metering window.
pub const MINUTE: Duration = Duration::from_secs(60);

impl Quota {
    pub fn new(tier: Tier, units: u32) -> Quota {
        Quota { tier, units: units.max(1), share: DEFAULT_SHARE, window: MINUTE }
    }

    /// Operations of `class` fleetform may send per window: the share of the hub's quota,
    /// rounded down, but at least one (a share too small for even one would stall).
    pub fn budget(&self, class: OperationClass) -> u32 {
        let hub = f64::from(class.per_minute_per_unit(self.tier)) * f64::from(self.units.max(1));
        ((hub * self.share.clamp(0.0, 1.0)).floor() as u32).max(1)
    }

    /// A tenth of the budget may go at once (a small plan does not wait for its three
    /// requests); the rest refills evenly.
    fn burst(&self, class: OperationClass) -> u32 {
        (self.budget(class) / 10).max(1)
    }

    /// Tokens one window refills. A window `[t, t + window)` can spend what the bucket held
    /// at `t` (at most the burst) and the tokens that became whole before its end (fewer
    /// than the refill): burst + refill − 1, which this makes the budget.
    fn refill(&self, class: OperationClass) -> u32 {
        self.budget(class) - self.burst(class) + 1
    }

    /// Time between operations of `class` once the burst is spent.
    pub fn interval(&self, class: OperationClass) -> Duration {
        self.window.div_f64(f64::from(self.refill(class)))
    }

    /// How long `operations` of `class` take at the paced rate, the burst included: what a
    /// read of that many pages costs in wall time on this hub.
    pub fn time_for(&self, class: OperationClass, operations: u64) -> Duration {
        let paced = operations.saturating_sub(u64::from(self.burst(class)));
        self.interval(class).mul_f64(paced as f64)
    }
}

/// Where the pacer reads the time and waits: the real clock, or a test's.
pub trait Clock: Send + Sync {
    /// Time since some fixed start.
    fn now(&self) -> Duration;
    fn sleep(&self, duration: Duration);
}

/// The machine's monotonic clock.
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration)
    }
}

struct Bucket {
    tokens: f64,
    capacity: f64,
    /// Tokens per second.
    rate: f64,
    last: Duration,
}

impl Bucket {
    fn new(quota: &Quota, class: OperationClass, now: Duration) -> Bucket {
        let capacity = f64::from(quota.burst(class));
        let refill = f64::from(quota.refill(class));
        Bucket { tokens: capacity, capacity, rate: refill / quota.window.as_secs_f64(), last: now }
    }

    /// Takes a token if there is one; otherwise says how long until there is.
    fn take(&mut self, now: Duration) -> Result<(), Duration> {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        // Rounded up to the next microsecond, so the wake-up finds the token whole.
        let wait = (1.0 - self.tokens) / self.rate;
        Err(Duration::from_micros((wait * 1e6).ceil() as u64))
    }
}

/// One token bucket per operation class, shared by every request a [`super::RestHub`] sends
/// (retries included: a retried request is metered like the first).
pub struct Pacer {
    quota: Quota,
    clock: Arc<dyn Clock>,
    queries: Mutex<Bucket>,
    configurations: Mutex<Bucket>,
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacer").field("quota", &self.quota).finish_non_exhaustive()
    }
}

impl Pacer {
    pub fn new(quota: Quota) -> Pacer {
        Pacer::with_clock(quota, Arc::new(SystemClock::default()))
    }

    pub fn with_clock(quota: Quota, clock: Arc<dyn Clock>) -> Pacer {
        let now = clock.now();
        Pacer {
            queries: Mutex::new(Bucket::new(&quota, OperationClass::Queries, now)),
            configurations: Mutex::new(Bucket::new(&quota, OperationClass::Configurations, now)),
            quota,
            clock,
        }
    }

    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Waits until an operation of `class` is within the budget, and counts it.
    pub fn acquire(&self, class: OperationClass) {
        let bucket = match class {
            OperationClass::Queries => &self.queries,
            OperationClass::Configurations => &self.configurations,
            OperationClass::TwinReads => return,
        };
        loop {
            // The lock is not held while sleeping, so other threads' classes go on.
            let outcome = bucket.lock().unwrap_or_else(|e| e.into_inner()).take(self.clock.now());
            match outcome {
                Ok(()) => return,
                Err(wait) => self.clock.sleep(wait),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A clock that only moves when slept on.
    #[derive(Default)]
    pub(crate) struct FakeClock(Mutex<Duration>);

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap()
        }
        fn sleep(&self, duration: Duration) {
            *self.0.lock().unwrap() += duration;
        }
    }

    /// The most operations any window of length `window` holds, over send times `times`.
    fn busiest_window(times: &[Duration], window: Duration) -> usize {
        let mut most = 0;
        let mut start = 0;
        for (end, t) in times.iter().enumerate() {
            while *t >= times[start] + window {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }

    #[test]
    fn budgets_follow_the_quota_table() {
        // 20/min/unit on S1, one unit, half: 10; S3 two units, half: 1000.
        assert_eq!(Quota::new(Tier::S1, 1).budget(OperationClass::Queries), 10);
        assert_eq!(Quota::new(Tier::S2, 3).budget(OperationClass::Queries), 30);
        assert_eq!(Quota::new(Tier::S3, 2).budget(OperationClass::Queries), 1000);
        assert_eq!(Quota::new(Tier::S3, 2).budget(OperationClass::Configurations), 20);
        let tiny = Quota { share: 0.01, ..Quota::new(Tier::S1, 1) };
        assert_eq!(tiny.budget(OperationClass::Queries), 1, "a share too small still makes progress");
    }

    #[test]
    fn never_exceeds_the_budget_in_any_window() {
        for (tier, units, share) in [(Tier::S1, 1, 0.5), (Tier::S1, 4, 0.3), (Tier::S3, 1, 0.5), (Tier::S2, 1, 1.0)] {
            let quota = Quota { share, ..Quota::new(tier, units) };
            let clock = Arc::new(FakeClock::default());
            let pacer = Pacer::with_clock(quota, clock.clone());
            let budget = quota.budget(OperationClass::Queries) as usize;
            let mut times = Vec::new();
            for _ in 0..budget * 5 {
                pacer.acquire(OperationClass::Queries);
                times.push(clock.now());
            }
            assert!(busiest_window(&times, MINUTE) <= budget, "{tier} ×{units} at {share}");
            // And no slower than it needs to be: after the burst, one per interval.
            let expected = quota.time_for(OperationClass::Queries, times.len() as u64);
            let drift = clock.now().abs_diff(expected);
            assert!(drift < Duration::from_millis(5), "{tier} ×{units} at {share}: {:?} vs {expected:?}", clock.now());
        }
    }

    #[test]
    fn classes_have_their_own_buckets_and_windows_scale() {
        let quota = Quota { window: Duration::from_secs(1), ..Quota::new(Tier::S3, 1) };
        let clock = Arc::new(FakeClock::default());
        let pacer = Pacer::with_clock(quota, clock.clone());
        let mut config_times = Vec::new();
        for _ in 0..40 {
            pacer.acquire(OperationClass::Configurations);
            config_times.push(clock.now());
        }
        assert!(busiest_window(&config_times, Duration::from_secs(1)) <= 10);
        // Configurations spent theirs; queries still have their burst, at no wait.
        let before = clock.now();
        for _ in 0..quota.burst(OperationClass::Queries) {
            pacer.acquire(OperationClass::Queries);
        }
        assert_eq!(clock.now(), before);
    }

    #[test]
    fn simulated_read_times() {
        // 1,000 pages (1M Edge devices at 1,000 rows a page), plus the two counts.
        let s1 = Quota::new(Tier::S1, 1).time_for(OperationClass::Queries, 1002);
        let s3 = Quota::new(Tier::S3, 1).time_for(OperationClass::Queries, 1002);
        // S1: budget 10 (half of 20), burst 1, then one every 6 s: 1,001 × 6 s.
        assert_eq!(s1, Duration::from_secs(6006));
        // S3: budget 500, burst 50, then 451 a minute: 952 × 60/451 s ≈ 126.7 s.
        assert!(s3.abs_diff(Duration::from_secs_f64(952.0 * 60.0 / 451.0)) < Duration::from_millis(1), "{s3:?}");
    }
}
