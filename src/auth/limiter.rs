//! Failed-login limiting in three tiers (docs/http-api.md §3, §6 "Sessions"), and the choice of
//! which address counts as the client's.
//!
//! Every password check is counted against three counters, each with its own fixed window
//! that opens at its first failure and lasts `window`: the username and client address
//! together (`max_failures`), the username from any address (`user_max_failures`) and the
//! address for any username (`address_max_failures`). Answering 429 does not extend a window;
//! once one has passed its count starts over. A success clears the username's counters (its
//! own and its pairs); `authgate user unlock` does the same.
//!
//! The counters live in the store, so replicas share one budget. A check in flight counts
//! too: [`LoginLimiter::begin`] reserves it against all three counters in one atomic store
//! step that admits it only when every counter has room for its failures plus the checks
//! still in flight — on every replica, since the reservations are in the store as well. A
//! reservation lapses after [`LEASE`] if its process dies before reporting the outcome. Here
//! the rules are applied: which counters, what limits, what `Retry-After`; the store applies
//! them as plain comparisons at the times given (milliseconds from the [`Clock`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderMap;
use ipnet::IpNet;

use crate::clock::Clock;
use crate::config::{LoginLimit, RegisterLimit};
use crate::store::{
    CounterKey, CounterReading, CounterTimes, LoginFinish, LoginOutcome, LoginReserve, Store,
    StoreError,
};

/// How long a reservation counts when its check never reports an outcome (the process died):
/// far longer than any password check takes (the hash queue gives up after 2 s).
pub const LEASE: Duration = Duration::from_secs(30);

/// The username part of the registration counters' keys: `/` is in no username, so no
/// login counter (and no `user unlock`) can meet them.
const REGISTRATIONS: &str = "/register";

/// The de-facto standard header proxies append client addresses to (`http` has no constant).
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Why a password check was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A counter is full: retry after this many seconds (at least 1; 1 when only checks in
    /// flight fill it, as they may yet succeed).
    #[error("too many failed logins; retry after {retry_after} s")]
    Limited {
        /// Seconds until the fullest counter's window passes.
        retry_after: u64,
    },
    /// The store could not be asked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counts failed password checks in the store. Cheap to clone and share.
#[derive(Clone)]
pub struct LoginLimiter {
    store: Arc<dyn Store>,
    limit: LoginLimit,
    clock: Clock,
    /// Registrations per address, counted in the same store table (one counter per address).
    registrations: Option<RegisterLimit>,
}

impl LoginLimiter {
    /// A limiter keeping its counters in `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn Store>, limit: LoginLimit, clock: Clock) -> Self {
        Self {
            store,
            limit,
            clock,
            registrations: None,
        }
    }

    /// The same limiter also counting registrations per client address (`register_limit`).
    pub fn with_register_limit(mut self, limit: RegisterLimit) -> Self {
        self.registrations = Some(limit);
        self
    }

    /// Admits one registration attempt from `addr`, or refuses it with the `Retry-After` of
    /// the address's window. Every admitted attempt counts whatever its answer: report it with
    /// [`Attempt::counted`]. Without a register limit every attempt is admitted.
    pub async fn begin_registration(&self, addr: IpAddr) -> Result<Attempt, LimitError> {
        let Some(limit) = self.registrations else {
            return Ok(self.attempt(String::new(), Vec::new(), self.limit.window));
        };
        let address = addr.to_canonical().to_string();
        self.reserve(
            String::new(),
            vec![(key(REGISTRATIONS, &address), limit.max)],
            limit.window,
        )
        .await
    }

    /// Admits one password check for `username` from `addr` — reserved against its three
    /// counters in one store step — or refuses it with the `Retry-After` of the fullest
    /// counter. The returned [`Attempt`] reports the outcome.
    pub async fn begin(&self, username: &str, addr: IpAddr) -> Result<Attempt, LimitError> {
        let user = user_key(username);
        let address = addr.to_canonical().to_string();
        let counters = vec![
            (key(&user, &address), self.limit.max_failures),
            (key(&user, ""), self.limit.user_max_failures),
            (key("", &address), self.limit.address_max_failures),
        ];
        self.reserve(user, counters, self.limit.window).await
    }

    /// Reserves one check against `counters` (each with its limit), all counted in `window`.
    async fn reserve(
        &self,
        user: String,
        counters: Vec<(CounterKey, u32)>,
        window: Duration,
    ) -> Result<Attempt, LimitError> {
        let times = self.times(window);
        let reserve = LoginReserve {
            counters: counters.clone(),
            times,
            lease_until: times.now.saturating_add(millis(LEASE)),
        };
        let reservation = self.store.reserve_login(reserve).await?;
        if !reservation.admitted {
            let limits = counters.iter().map(|(_, max)| *max);
            let retry_after = reservation
                .readings
                .iter()
                .zip(limits)
                .filter_map(|(reading, max)| retry_after(reading, max, window, times.now))
                .max()
                .unwrap_or(1);
            return Err(LimitError::Limited { retry_after });
        }
        let keys = counters.into_iter().map(|(key, _)| key).collect();
        Ok(self.attempt(user, keys, window))
    }

    fn attempt(&self, user: String, counters: Vec<CounterKey>, window: Duration) -> Attempt {
        Attempt {
            limiter: self.clone(),
            user,
            counters,
            window,
            open: true,
        }
    }

    /// Drops counters with nothing left in them; the gateway calls this every minute. A
    /// counter is kept for the longer of the login and registration windows.
    pub async fn prune(&self) -> Result<usize, StoreError> {
        let longest = self
            .registrations
            .map_or(self.limit.window, |r| r.window.max(self.limit.window));
        self.store.prune_login_counters(self.times(longest)).await
    }

    fn times(&self, window: Duration) -> CounterTimes {
        let now = millis(self.clock.since_epoch());
        CounterTimes {
            now,
            window_from: now.saturating_sub(millis(window)),
        }
    }

    async fn finish(&self, counters: Vec<CounterKey>, outcome: LoginOutcome, window: Duration) {
        if counters.is_empty() {
            return;
        }
        let finish = LoginFinish {
            counters,
            outcome,
            times: self.times(window),
        };
        // The reservation lapses with its lease should this fail; the check's answer stands.
        if let Err(e) = self.store.finish_login(finish).await {
            tracing::warn!(error = %e, "cannot record a password check's outcome");
        }
    }
}

/// Seconds to wait for a counter found full at `now`: until its `window` passes when its
/// failures alone fill it, else 1 (the checks in flight may succeed). `None` when it has room.
fn retry_after(reading: &CounterReading, max: u32, window: Duration, now: i64) -> Option<u64> {
    if reading.failures >= max {
        let ends = reading.window_start.saturating_add(millis(window));
        return Some(ceil_secs(ends.saturating_sub(now)));
    }
    (reading.failures.saturating_add(reading.pending) >= max).then_some(1)
}

/// Clears the failed-login counts of `username` (its own counter and its pairs with
/// addresses), for `authgate user unlock`. Returns how many counters had failures.
pub async fn unlock(store: &dyn Store, username: &str) -> Result<usize, StoreError> {
    store.clear_login_failures(&user_key(username)).await
}

/// One admitted password check (from [`LoginLimiter::begin`]). Report its outcome with
/// [`Attempt::failed`] or [`Attempt::succeeded`]; dropped without one (the request failed
/// otherwise, or its client went away), its reservation is released in the background.
pub struct Attempt {
    limiter: LoginLimiter,
    user: String,
    counters: Vec<CounterKey>,
    window: Duration,
    open: bool,
}

impl Attempt {
    /// The password was wrong: a failure on all three counters.
    pub async fn failed(mut self) {
        self.open = false;
        let counters = std::mem::take(&mut self.counters);
        self.limiter
            .finish(counters, LoginOutcome::Failed, self.window)
            .await;
    }

    /// A registration attempt was answered (whatever the answer): it counts against its
    /// address, like a failure.
    pub async fn counted(self) {
        self.failed().await;
    }

    /// The password was right: the reservation ends and the username's counters are
    /// cleared (the address keeps its count).
    pub async fn succeeded(mut self) {
        self.open = false;
        let counters = std::mem::take(&mut self.counters);
        let outcome = LoginOutcome::Succeeded {
            clear_username: std::mem::take(&mut self.user),
        };
        self.limiter.finish(counters, outcome, self.window).await;
    }

    /// No outcome (the check did not happen): the reservation just ends, now rather than in
    /// the background as when the attempt is dropped.
    pub async fn release(mut self) {
        self.open = false;
        let counters = std::mem::take(&mut self.counters);
        self.limiter
            .finish(counters, LoginOutcome::Abandoned, self.window)
            .await;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let limiter = self.limiter.clone();
        let counters = std::mem::take(&mut self.counters);
        let window = self.window;
        // Outside a runtime (never in the gateway) the lease ends the reservation instead.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                limiter
                    .finish(counters, LoginOutcome::Abandoned, window)
                    .await
            });
        }
    }
}

fn key(username: &str, address: &str) -> CounterKey {
    CounterKey {
        username: username.to_owned(),
        address: address.to_owned(),
    }
}

/// Usernames match case-insensitively (§6); the allowed characters are ASCII.
fn user_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// Whole milliseconds of `d`, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds rounded up to whole seconds, at least 1.
fn ceil_secs(ms: i64) -> u64 {
    let secs = ms.saturating_add(999) / 1000;
    u64::try_from(secs).unwrap_or(0).max(1)
}

/// The address login limiting counts for a request: the socket peer, or — when the peer is
/// in `trusted` — the right-most `X-Forwarded-For` entry (over all such header lines, in
/// order) that is not itself trusted. An entry that does not parse as an IP address stops
/// the walk, and the last address that did parse is used. IPv4-mapped IPv6 addresses are
/// treated as the IPv4 address they carry.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut last_good = peer.to_canonical();
    if !is_trusted(&last_good) {
        return last_good;
    }
    // Right to left: later lines were appended by proxies nearer to us.
    for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = line.to_str() else {
            return last_good;
        };
        for item in text.rsplit(',') {
            let Ok(ip) = item.trim().parse::<IpAddr>() else {
                return last_good;
            };
            last_good = ip.to_canonical();
            if !is_trusted(&last_good) {
                return last_good;
            }
        }
    }
    last_good
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use http::HeaderValue;

    const WINDOW: Duration = Duration::from_secs(60);

    /// A limiter on a fresh SQLite store, on a manual clock the test moves.
    struct Fixture {
        limiter: LoginLimiter,
        clock: Clock,
        _dir: tempfile::TempDir,
    }

    async fn fixture(pair: u32, user: u32, address: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        let clock = Clock::manual(1_000_000);
        let limit = LoginLimit {
            max_failures: pair,
            user_max_failures: user,
            address_max_failures: address,
            window: WINDOW,
        };
        Fixture {
            limiter: LoginLimiter::new(Arc::new(store), limit, clock.clone()),
            clock,
            _dir: dir,
        }
    }

    #[tokio::test]
    async fn registrations_count_per_address_in_their_own_window_apart_from_logins() {
        let f = fixture(1, 1, 1).await;
        let limiter = f.limiter.clone().with_register_limit(RegisterLimit {
            max: 2,
            window: Duration::from_secs(3600),
        });
        for _ in 0..2 {
            limiter
                .begin_registration(ip("192.0.2.1"))
                .await
                .expect("admitted")
                .counted()
                .await;
        }
        let refused = limiter.begin_registration(ip("192.0.2.1")).await;
        assert!(
            matches!(refused, Err(LimitError::Limited { retry_after: 3600 })),
            "{:?}",
            refused.err()
        );
        // Another address, and logins from this one, are not touched.
        assert!(limiter.begin_registration(ip("192.0.2.2")).await.is_ok());
        assert_eq!(f.check("alice", "192.0.2.1").await, Ok(()));
        // Pruning keeps the hour-long window although logins count over a minute.
        f.clock.advance(Duration::from_secs(120));
        limiter.prune().await.unwrap();
        assert!(limiter.begin_registration(ip("192.0.2.1")).await.is_err());
        f.clock.advance(Duration::from_secs(3600));
        assert!(limiter.begin_registration(ip("192.0.2.1")).await.is_ok());
    }

    impl Fixture {
        async fn fail(&self, user: &str, a: &str) {
            self.limiter
                .begin(user, ip(a))
                .await
                .expect("admitted")
                .failed()
                .await;
        }

        /// Whether a check would be admitted now (the reservation is released at once).
        async fn check(&self, user: &str, a: &str) -> Result<(), u64> {
            match self.limiter.begin(user, ip(a)).await {
                Ok(attempt) => {
                    attempt.release().await;
                    Ok(())
                }
                Err(LimitError::Limited { retry_after }) => Err(retry_after),
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[tokio::test]
    async fn the_pair_tier_limits_one_address_for_one_user_only() {
        let f = fixture(3, 20, 20).await;
        for _ in 0..3 {
            assert_eq!(f.check("alice", "10.0.0.1").await, Ok(()));
            f.fail("alice", "10.0.0.1").await;
        }
        assert_eq!(f.check("alice", "10.0.0.1").await, Err(60));
        assert_eq!(
            f.check("ALICE", "10.0.0.1").await,
            Err(60),
            "case-insensitive"
        );
        // The owner elsewhere, and others at that address, are not locked out.
        assert_eq!(f.check("alice", "10.0.0.2").await, Ok(()));
        assert_eq!(f.check("bob", "10.0.0.1").await, Ok(()));
    }

    #[tokio::test]
    async fn the_user_tier_counts_over_every_address() {
        let f = fixture(5, 3, 20).await;
        for a in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            f.fail("alice", a).await;
        }
        assert_eq!(f.check("alice", "10.0.0.4").await, Err(60));
        assert_eq!(f.check("bob", "10.0.0.4").await, Ok(()));
    }

    #[tokio::test]
    async fn the_address_tier_counts_over_every_username() {
        let f = fixture(5, 20, 3).await;
        for u in ["u1", "u2", "u3"] {
            f.fail(u, "192.0.2.7").await;
        }
        assert_eq!(f.check("u4", "192.0.2.7").await, Err(60));
        assert_eq!(f.check("u4", "192.0.2.8").await, Ok(()));
    }

    #[tokio::test]
    async fn concurrent_attempts_cannot_exceed_the_budget() {
        let f = fixture(3, 20, 20).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(f.limiter.begin("alice", ip("192.0.2.1")).await.unwrap());
        }
        // Three checks in flight fill the pair: a fourth is refused before any failure,
        // with a short wait (they may succeed).
        assert_eq!(f.check("alice", "192.0.2.1").await, Err(1));
        for attempt in held {
            attempt.failed().await;
        }
        assert_eq!(f.check("alice", "192.0.2.1").await, Err(60));
    }

    #[tokio::test]
    async fn an_attempt_dropped_without_an_outcome_frees_its_slot() {
        let f = fixture(1, 20, 20).await;
        let first = f.limiter.begin("alice", ip("192.0.2.1")).await.unwrap();
        assert_eq!(f.check("alice", "192.0.2.1").await, Err(1));
        drop(first);
        // The release runs in the background: wait for it by retrying, on a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while f.check("alice", "192.0.2.1").await.is_err() {
            assert!(std::time::Instant::now() < deadline, "slot never freed");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_reservation_lapses_after_its_lease() {
        let f = fixture(1, 20, 20).await;
        let held = f.limiter.begin("alice", ip("192.0.2.1")).await.unwrap();
        assert_eq!(f.check("alice", "192.0.2.1").await, Err(1));
        f.clock.advance(LEASE);
        assert_eq!(
            f.check("alice", "192.0.2.1").await,
            Ok(()),
            "a dead process's reservation"
        );
        drop(held);
    }

    #[tokio::test]
    async fn a_window_opens_at_the_first_failure_not_at_the_first_attempt() {
        let f = fixture(1, 20, 20).await;
        let attempt = f.limiter.begin("alice", ip("192.0.2.1")).await.unwrap();
        f.clock.advance(Duration::from_secs(30));
        attempt.failed().await;
        // The window runs from the failure, so 61 s after the attempt it has 29 s left.
        f.clock.advance(Duration::from_secs(31));
        assert_eq!(f.check("alice", "192.0.2.1").await, Err(29));
    }

    #[tokio::test]
    async fn retry_after_rounds_up_and_is_never_zero() {
        let f = fixture(1, 20, 20).await;
        f.fail("bob", "10.0.0.1").await;
        f.clock.advance(Duration::from_millis(30_001));
        assert_eq!(f.check("bob", "10.0.0.1").await, Err(30));
        f.clock.advance(Duration::from_millis(29_998));
        assert_eq!(f.check("bob", "10.0.0.1").await, Err(1));
    }

    #[tokio::test]
    async fn after_the_window_the_count_starts_over_and_429s_do_not_extend_it() {
        let f = fixture(2, 20, 20).await;
        f.fail("alice", "10.0.0.1").await;
        f.clock.advance(Duration::from_secs(10));
        f.fail("alice", "10.0.0.1").await;
        for _ in 0..4 {
            f.clock.advance(Duration::from_secs(12));
            assert!(f.check("alice", "10.0.0.1").await.is_err());
        }
        f.clock.advance(Duration::from_secs(2)); // 60 s after the first failure
        assert_eq!(f.check("alice", "10.0.0.1").await, Ok(()));
        f.fail("alice", "10.0.0.1").await;
        assert_eq!(
            f.check("alice", "10.0.0.1").await,
            Ok(()),
            "one failure in a new window"
        );
        f.fail("alice", "10.0.0.1").await;
        assert_eq!(f.check("alice", "10.0.0.1").await, Err(60));
    }

    #[tokio::test]
    async fn success_clears_the_username_but_not_the_address() {
        let f = fixture(3, 3, 3).await;
        f.fail("alice", "10.0.0.1").await;
        f.fail("alice", "10.0.0.1").await;
        f.limiter
            .begin("alice", ip("10.0.0.1"))
            .await
            .unwrap()
            .succeeded()
            .await;
        // alice starts from zero: two more failures leave her pair under its limit...
        f.fail("alice", "10.0.0.9").await;
        f.fail("alice", "10.0.0.9").await;
        assert_eq!(f.check("alice", "10.0.0.9").await, Ok(()));
        // ...while the address kept its two failures: one more closes it for everyone.
        f.fail("bob", "10.0.0.1").await;
        assert!(
            f.check("carol", "10.0.0.1").await.is_err(),
            "the address is still counted"
        );
    }

    #[tokio::test]
    async fn unlock_clears_a_usernames_counters_only() {
        let f = fixture(2, 20, 3).await;
        f.fail("alice", "10.0.0.1").await;
        f.fail("alice", "10.0.0.1").await;
        assert!(f.check("alice", "10.0.0.1").await.is_err());
        assert_eq!(unlock(f.limiter.store.as_ref(), "ALICE").await.unwrap(), 2);
        assert_eq!(f.check("alice", "10.0.0.1").await, Ok(()));
        // The address keeps its two failures: the third fills it.
        f.fail("bob", "10.0.0.1").await;
        assert!(f.check("carol", "10.0.0.1").await.is_err());
    }

    #[tokio::test]
    async fn the_longest_wait_of_the_full_counters_is_reported() {
        let f = fixture(1, 20, 1).await;
        f.fail("alice", "10.0.0.1").await;
        f.clock.advance(Duration::from_secs(30));
        f.fail("bob", "10.0.0.2").await;
        f.clock.advance(Duration::from_secs(1));
        // bob from 10.0.0.1: the address (29 s left) and bob's... pair is new; the address
        // of alice's failure and bob's own address are not the same counter.
        assert_eq!(f.check("bob", "10.0.0.1").await, Err(29));
        assert_eq!(f.check("bob", "10.0.0.2").await, Err(59));
    }

    #[tokio::test]
    async fn an_ipv4_mapped_peer_counts_as_its_ipv4_address() {
        let f = fixture(5, 20, 1).await;
        f.fail("a", "::ffff:10.0.0.1").await;
        assert!(f.check("b", "10.0.0.1").await.is_err());
    }

    #[tokio::test]
    async fn prune_forgets_passed_windows_only() {
        let f = fixture(3, 20, 20).await;
        f.fail("old", "10.0.0.1").await;
        f.clock.advance(Duration::from_secs(30));
        f.fail("new", "10.0.0.2").await;
        f.clock.advance(Duration::from_secs(30));
        assert_eq!(f.limiter.prune().await.unwrap(), 3, "old's three counters");
        f.clock.advance(Duration::from_secs(30));
        assert_eq!(f.limiter.prune().await.unwrap(), 3);
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("test net")).collect()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(
                X_FORWARDED_FOR,
                HeaderValue::from_str(line).expect("header"),
            );
        }
        h
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_used_and_xff_ignored() {
        let h = xff(&["203.0.113.9"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn an_untrusted_peer_is_used_even_when_others_are_trusted() {
        let h = xff(&["203.0.113.9"]);
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("198.51.100.1"), &h, &t), ip("198.51.100.1"));
    }

    #[test]
    fn a_trusted_peer_yields_the_rightmost_untrusted_entry() {
        let h = xff(&["1.1.1.1, 203.0.113.9, 10.0.0.5"]);
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("203.0.113.9"));
    }

    #[test]
    fn entries_across_several_header_lines_are_walked_in_order() {
        let h = xff(&["1.1.1.1, 203.0.113.9", "10.0.0.7", "10.0.0.5,10.0.0.6"]);
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("203.0.113.9"));
        let h = xff(&["1.1.1.1", "203.0.113.9"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("203.0.113.9"));
    }

    #[test]
    fn a_spoofed_leftmost_entry_is_not_believed() {
        // The client sent "6.6.6.6"; our trusted proxy appended the real address.
        let h = xff(&["6.6.6.6, 198.51.100.20"]);
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("198.51.100.20"));
    }

    #[test]
    fn an_unparsable_entry_stops_the_walk_at_the_last_good_address() {
        let t = nets(&["10.0.0.0/8"]);
        let h = xff(&["203.0.113.9, garbage, 10.0.0.5"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.5"));
        let h = xff(&["203.0.113.9, unknown"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
        let h = xff(&["203.0.113.9,"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
    }

    #[test]
    fn a_non_ascii_header_line_stops_the_walk() {
        let t = nets(&["10.0.0.0/8"]);
        let mut h = xff(&["203.0.113.9"]);
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff1.2.3.4").expect("opaque bytes are valid"),
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
    }

    #[test]
    fn when_every_entry_is_trusted_the_leftmost_is_used() {
        let t = nets(&["10.0.0.0/8"]);
        let h = xff(&["10.0.0.3, 10.0.0.4"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.3"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &t),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv6_entries_and_mapped_peers_are_handled() {
        let t = nets(&["10.0.0.0/8", "fd00::/8"]);
        let h = xff(&["2001:db8::1, fd00::2"]);
        assert_eq!(client_ip(ip("::ffff:10.0.0.1"), &h, &t), ip("2001:db8::1"));
    }
}
