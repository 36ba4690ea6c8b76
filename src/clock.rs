//! The gateway's one clock: wall time as seconds since the Unix epoch.
//!
//! Everything that stamps or compares wall times (tokens, sessions, revocation expiry,
//! freshness, tunnels, pruning, the failed-login windows that replicas share, the operator
//! CLI) asks a [`Clock`], so tests can run on a [`Clock::manual`] one they move by hand.
//! Monotonic intervals (timeouts, the revocation follower's staleness) use `Instant` instead
//! and are not its business. jsonwebtoken's own `exp`/`nbf`
//! check reads the system time; a manual clock does not reach inside it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall time: the system's, or a manual one for tests. Cloning shares the same time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds since the epoch of a manual clock; `None` for the system clock.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands at `secs` seconds since the epoch until [`Clock::advance`] moves it.
    pub fn manual(secs: u64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(secs.saturating_mul(1000)))),
        }
    }

    /// Moves a manual clock forward by `by` (whole milliseconds); the system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Some(ms) = &self.manual {
            let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            ms.fetch_add(by, Ordering::Relaxed);
        }
    }

    /// Time since the epoch (zero should the system clock stand before it).
    pub fn since_epoch(&self) -> Duration {
        match &self.manual {
            Some(ms) => Duration::from_millis(ms.load(Ordering::Relaxed)),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// Whole seconds since the epoch, signed as the store keeps times.
    pub fn now(&self) -> i64 {
        secs(self.since_epoch())
    }

    /// Whole seconds since the epoch, unsigned as JWT claims carry times.
    pub fn now_u64(&self) -> u64 {
        self.since_epoch().as_secs()
    }

    /// [`Clock::now_u64`], but never earlier than the system clock: for checks that must agree
    /// with code reading the system clock itself (jsonwebtoken's `exp`). The system clock reads
    /// once.
    pub fn now_u64_not_before_system(&self) -> u64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        match &self.manual {
            Some(_) => self.now_u64().max(system),
            None => system,
        }
    }
}

/// Whole seconds of a duration as the store's signed seconds (saturating).
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A stored time (signed seconds) as a claim time; times before the epoch become 0.
pub fn claim_time(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_and_clones_share_it() {
        let clock = Clock::manual(1_000);
        let shared = clock.clone();
        assert_eq!(clock.now(), 1_000);
        shared.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now(), 1_001);
        assert_eq!(clock.since_epoch(), Duration::from_millis(1_001_500));
        assert_eq!(clock.now_u64(), 1_001);
    }

    #[test]
    fn the_system_clock_is_past_2020_and_ignores_advance() {
        let clock = Clock::system();
        let before = clock.now();
        clock.advance(Duration::from_secs(1_000_000));
        assert!(before > 1_577_836_800);
        assert!(clock.now() - before < 1_000_000);
    }

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(secs(Duration::from_secs(u64::MAX)), i64::MAX);
        assert_eq!(claim_time(-5), 0);
        assert_eq!(claim_time(7), 7);
    }
}
