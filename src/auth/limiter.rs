//! Failed-login limiting per username and per client address (HTTP-API §3, §6 "Sessions"),
//! and the choice of which address counts as the client's.
//!
//! Windows are fixed: they open at the first failure and last `window`; answering 429 does
//! not extend them, and once one has passed the count starts over. Time is passed in, so
//! callers (and tests) own the clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::header::HeaderMap;
use ipnet::IpNet;

use crate::config::LoginLimit;

/// Table size under which `record_failure` does not bother pruning expired windows.
const PRUNE_FLOOR: usize = 4096;

/// The de-facto standard header proxies append client addresses to (`http` has no constant).
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Counts failed logins per lowercased username and per client address. Share it behind an
/// `Arc`; every method takes one short mutex hold and never awaits.
#[derive(Debug)]
pub struct LoginLimiter {
    limit: LoginLimit,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    users: HashMap<String, Window>,
    addrs: HashMap<IpAddr, Window>,
    /// Combined size at which the next `record_failure` prunes; doubles with live entries so
    /// pruning stays amortised O(1) per failure.
    prune_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
    /// Password checks admitted by [`LoginLimiter::begin`] and not finished yet. They count
    /// against the budget, so a burst of concurrent attempts cannot all pass the check before
    /// the first failure is recorded.
    pending: u32,
}

impl Window {
    /// Time left in this window at `now`, or `None` once it has passed.
    fn remaining(&self, now: Instant, length: Duration) -> Option<Duration> {
        length
            .checked_sub(now.saturating_duration_since(self.opened))
            .filter(|left| !left.is_zero())
    }

    /// Seconds to wait (at least 1) when this window has used up its failures, or when the
    /// checks in flight would use up the rest (then the wait is short: they may succeed).
    fn retry_after(&self, now: Instant, limit: &LoginLimit) -> Option<u64> {
        let failures = if self.remaining(now, limit.window).is_some() {
            self.failures
        } else {
            0
        };
        if failures >= limit.max_failures {
            return self.remaining(now, limit.window).map(ceil_secs);
        }
        (failures.saturating_add(self.pending) >= limit.max_failures).then_some(1)
    }

    /// Live: a running window, or checks still in flight.
    fn is_live(&self, now: Instant, length: Duration) -> bool {
        self.pending > 0 || (self.failures > 0 && self.remaining(now, length).is_some())
    }
}

/// One admitted password check (from [`LoginLimiter::begin`]). Report its outcome with
/// [`Attempt::failed`] or [`Attempt::succeeded`]; dropped without one (the request failed
/// for another reason), it simply stops counting as pending.
#[derive(Debug)]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    user: String,
    addr: IpAddr,
    open: bool,
}

impl Attempt<'_> {
    /// The password was wrong: counts a failure against the username and the address.
    pub fn failed(mut self, now: Instant) {
        self.open = false;
        let window = self.limiter.limit.window;
        let mut state = self.limiter.lock();
        let state = &mut *state;
        for w in [
            state.users.get_mut(&self.user),
            state.addrs.get_mut(&self.addr),
        ]
        .into_iter()
        .flatten()
        {
            w.pending = w.pending.saturating_sub(1);
            count(w, now, window);
        }
        if state.users.len() + state.addrs.len() >= state.prune_at {
            prune_state(state, now, window);
        }
    }

    /// The password was right: clears the username's failures (not the address's).
    pub fn succeeded(mut self) {
        self.open = false;
        let mut state = self.limiter.lock();
        if let Some(w) = state.users.get_mut(&self.user) {
            w.pending = w.pending.saturating_sub(1);
            w.failures = 0;
        }
        if let Some(w) = state.addrs.get_mut(&self.addr) {
            w.pending = w.pending.saturating_sub(1);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let mut state = self.limiter.lock();
        if let Some(w) = state.users.get_mut(&self.user) {
            w.pending = w.pending.saturating_sub(1);
        }
        if let Some(w) = state.addrs.get_mut(&self.addr) {
            w.pending = w.pending.saturating_sub(1);
        }
    }
}

impl LoginLimiter {
    /// A limiter with no failures recorded.
    pub fn new(limit: LoginLimit) -> Self {
        Self {
            limit,
            state: Mutex::new(State {
                users: HashMap::new(),
                addrs: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// Admits one password check for `username` from `addr`, or `Err(retry_after_secs)` when
    /// the failures recorded plus the checks still in flight have used up `max_failures` for
    /// either. Admission and counting happen under one lock, so concurrent attempts cannot
    /// exceed the budget; the returned [`Attempt`] reports the outcome.
    pub fn begin(&self, username: &str, addr: IpAddr, now: Instant) -> Result<Attempt<'_>, u64> {
        let user = user_key(username);
        let addr = addr.to_canonical();
        let mut state = self.lock();
        let by_user = state
            .users
            .get(&user)
            .and_then(|w| w.retry_after(now, &self.limit));
        let by_addr = state
            .addrs
            .get(&addr)
            .and_then(|w| w.retry_after(now, &self.limit));
        if let Some(secs) = by_user.max(by_addr) {
            return Err(secs);
        }
        let state = &mut *state;
        for w in [
            state.users.entry(user.clone()).or_insert(fresh(now)),
            state.addrs.entry(addr).or_insert(fresh(now)),
        ] {
            w.pending = w.pending.saturating_add(1);
        }
        Ok(Attempt {
            limiter: self,
            user,
            addr,
            open: true,
        })
    }

    /// Drops every window that has passed; the gateway calls this every few seconds.
    pub fn prune(&self, now: Instant) {
        let window = self.limit.window;
        prune_state(&mut self.lock(), now, window);
    }

    /// Number of usernames and addresses currently tracked.
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let state = self.lock();
        (state.users.len(), state.addrs.len())
    }

    // Every update is a single counter write, so a poisoned table is still consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn fresh(now: Instant) -> Window {
    Window {
        opened: now,
        failures: 0,
        pending: 0,
    }
}

/// Adds a failure to a running window, or opens a window (at the first failure) when none is
/// running.
fn count(w: &mut Window, now: Instant, length: Duration) {
    if w.failures == 0 || w.remaining(now, length).is_none() {
        w.opened = now;
        w.failures = 0;
    }
    w.failures = w.failures.saturating_add(1);
}

fn prune_state(state: &mut State, now: Instant, length: Duration) {
    state.users.retain(|_, w| w.is_live(now, length));
    state.addrs.retain(|_, w| w.is_live(now, length));
    let live = state.users.len() + state.addrs.len();
    state.prune_at = PRUNE_FLOOR.max(live.saturating_mul(2));
}

/// Usernames match case-insensitively (§6); the allowed characters are ASCII.
fn user_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

fn ceil_secs(d: Duration) -> u64 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    whole.max(1)
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
    use http::HeaderValue;

    const WINDOW: Duration = Duration::from_secs(60);

    fn limiter(max_failures: u32) -> LoginLimiter {
        LoginLimiter::new(LoginLimit {
            max_failures,
            window: WINDOW,
        })
    }

    /// A password check admitted at `now` that fails.
    fn fail(l: &LoginLimiter, user: &str, a: IpAddr, now: Instant) {
        l.begin(user, a, now).expect("admitted").failed(now);
    }

    /// Whether a check would be admitted at `now` (the reservation is released at once).
    fn check(l: &LoginLimiter, user: &str, a: IpAddr, now: Instant) -> Result<(), u64> {
        l.begin(user, a, now).map(drop)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
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
    fn concurrent_attempts_cannot_exceed_the_budget() {
        let l = limiter(3);
        let now = Instant::now();
        let a = ip("192.0.2.1");
        let held: Vec<Attempt<'_>> = (0..3).map(|_| l.begin("alice", a, now).unwrap()).collect();
        // Three checks in flight use up the budget: a fourth is refused before any failure.
        assert_eq!(l.begin("alice", a, now).err(), Some(1));
        assert!(
            l.begin("bob", a, now).is_err(),
            "the address is at its budget too"
        );
        for attempt in held {
            attempt.failed(now);
        }
        let retry = l.begin("alice", ip("192.0.2.2"), now).err();
        assert_eq!(
            retry,
            Some(60),
            "three failures close the username's window"
        );
    }

    #[test]
    fn an_attempt_dropped_without_an_outcome_frees_its_slot() {
        let l = limiter(1);
        let now = Instant::now();
        let a = ip("192.0.2.1");
        let first = l.begin("alice", a, now).unwrap();
        assert!(l.begin("alice", a, now).is_err());
        drop(first);
        let second = l.begin("alice", a, now).unwrap();
        second.succeeded();
        assert!(l.begin("alice", a, now).is_ok());
    }

    #[test]
    fn a_window_opens_at_the_first_failure_not_at_the_first_attempt() {
        let l = limiter(1);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let attempt = l.begin("alice", a, t0).unwrap();
        let t1 = t0 + Duration::from_secs(30);
        attempt.failed(t1);
        // The window runs from t1, so at t0 + 61 s it still has 29 s left.
        let at = t0 + Duration::from_secs(61);
        assert_eq!(l.begin("alice", ip("192.0.2.9"), at).err(), Some(29));
    }

    #[test]
    fn max_failures_are_allowed_then_the_next_attempt_is_limited() {
        let l = limiter(3);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert_eq!(check(&l, "alice", a, t0), Ok(()));
            fail(&l, "alice", a, t0);
        }
        assert_eq!(check(&l, "alice", a, t0), Err(60));
        assert_eq!(
            check(&l, "alice", a, t0 + Duration::from_millis(59_500)),
            Err(1)
        );
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        let l = limiter(1);
        let t0 = Instant::now();
        fail(&l, "bob", ip("10.0.0.1"), t0);
        let at = t0 + Duration::from_millis(30_001);
        assert_eq!(check(&l, "bob", ip("10.0.0.9"), at), Err(30));
        let at = t0 + Duration::from_millis(59_999);
        assert_eq!(check(&l, "bob", ip("10.0.0.9"), at), Err(1));
    }

    #[test]
    fn after_the_window_the_count_starts_over() {
        let l = limiter(2);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        fail(&l, "alice", a, t0);
        fail(&l, "alice", a, t0 + Duration::from_secs(10));
        assert!(check(&l, "alice", a, t0 + Duration::from_secs(59)).is_err());
        let later = t0 + WINDOW;
        assert_eq!(check(&l, "alice", a, later), Ok(()));
        fail(&l, "alice", a, later);
        assert_eq!(
            check(&l, "alice", a, later),
            Ok(()),
            "one failure in a new window"
        );
        fail(&l, "alice", a, later);
        assert_eq!(check(&l, "alice", a, later), Err(60));
    }

    #[test]
    fn limited_attempts_do_not_extend_the_window() {
        let l = limiter(1);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        fail(&l, "alice", a, t0);
        for s in [1, 20, 40, 59] {
            assert!(check(&l, "alice", a, t0 + Duration::from_secs(s)).is_err());
        }
        assert_eq!(check(&l, "alice", a, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn failures_inside_a_window_do_not_move_its_start() {
        let l = limiter(5);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for s in [0, 20, 40, 50, 55] {
            fail(&l, "alice", a, t0 + Duration::from_secs(s));
        }
        assert_eq!(check(&l, "alice", a, t0 + Duration::from_secs(55)), Err(5));
    }

    #[test]
    fn usernames_are_compared_case_insensitively() {
        let l = limiter(2);
        let t0 = Instant::now();
        fail(&l, "Alice", ip("10.0.0.1"), t0);
        fail(&l, "ALICE", ip("10.0.0.2"), t0);
        assert!(check(&l, "alice", ip("10.0.0.3"), t0).is_err());
    }

    #[test]
    fn success_clears_the_username_but_not_the_address() {
        let l = limiter(3);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        fail(&l, "alice", a, t0);
        fail(&l, "alice", a, t0);
        l.begin("alice", a, t0).expect("admitted").succeeded();
        // alice starts from zero: one more failure leaves her under the limit...
        fail(&l, "alice", ip("10.9.9.9"), t0);
        assert_eq!(check(&l, "alice", ip("10.9.9.8"), t0), Ok(()));
        // ...while the address kept its two failures: one more closes it for everyone.
        fail(&l, "bob", a, t0);
        assert!(
            check(&l, "carol", a, t0).is_err(),
            "the address is still counted"
        );
    }

    #[test]
    fn one_address_is_limited_across_usernames() {
        let l = limiter(3);
        let t0 = Instant::now();
        let a = ip("192.0.2.7");
        for name in ["u1", "u2", "u3"] {
            fail(&l, name, a, t0);
        }
        assert!(check(&l, "u4", a, t0).is_err());
        assert_eq!(check(&l, "u4", ip("192.0.2.8"), t0), Ok(()));
    }

    #[test]
    fn the_longer_of_the_two_waits_is_reported() {
        let l = limiter(1);
        let t0 = Instant::now();
        fail(&l, "alice", ip("10.0.0.1"), t0);
        fail(&l, "bob", ip("10.0.0.2"), t0 + Duration::from_secs(30));
        let now = t0 + Duration::from_secs(31);
        assert_eq!(check(&l, "bob", ip("10.0.0.1"), now), Err(59));
    }

    #[test]
    fn an_ipv4_mapped_peer_counts_as_its_ipv4_address() {
        let l = limiter(1);
        let t0 = Instant::now();
        fail(&l, "a", ip("::ffff:10.0.0.1"), t0);
        assert!(check(&l, "b", ip("10.0.0.1"), t0).is_err());
    }

    #[test]
    fn prune_forgets_passed_windows_only() {
        let l = limiter(3);
        let t0 = Instant::now();
        fail(&l, "old", ip("10.0.0.1"), t0);
        fail(&l, "new", ip("10.0.0.2"), t0 + Duration::from_secs(30));
        l.prune(t0 + WINDOW);
        assert_eq!(l.tracked(), (1, 1));
        l.prune(t0 + Duration::from_secs(90));
        assert_eq!(l.tracked(), (0, 0));
    }

    #[test]
    fn a_growing_table_prunes_itself_on_failure() {
        let l = limiter(3);
        let t0 = Instant::now();
        let n = PRUNE_FLOOR / 2 - 1;
        for i in 0..n {
            let addr = IpAddr::from([10, 1, (i >> 8) as u8, i as u8]);
            fail(&l, &format!("user{i}"), addr, t0);
        }
        assert_eq!(l.tracked(), (n, n));
        let later = t0 + WINDOW;
        fail(&l, "last", ip("10.0.0.2"), later);
        assert_eq!(l.tracked(), (1, 1));
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
