//! The session rules as pure functions over stored data and a time: which refresh token is
//! answered how (rotation, reuse grace, reuse detection), when a session is over, which
//! sessions a password change or logout-all takes, and how long a revocation stays in force.
//!
//! Nothing here reads a clock or a store: callers pass `now` (seconds since the epoch) and
//! the data, so each rule is tested with plain numbers. The store keeps facts (a session's
//! `expires_at`, the `exp` a revocation covers); the verification leeway is added here only.

use std::time::Duration;

use crate::clock::secs;
use crate::store::{RetiredRefresh, Session, SessionSweep};

/// How the refresh timings of `[auth]` and `[tokens]` are counted, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshTiming {
    /// A retired refresh token is answered without counting as reuse for this long after its
    /// retirement; `0` disables the grace.
    pub grace_secs: i64,
    /// Tokens verify this long past their `exp`, so a session lasts this long past its end.
    pub leeway_secs: i64,
}

/// What presenting a refresh token to its session calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// It is the session's current refresh token: retire it for a new one.
    Rotate,
    /// It was retired within the grace (two tabs refreshing at once): answer with the
    /// session's current refresh token, change nothing.
    WithinGrace,
    /// It was retired longer ago than the grace, or the session never had it: someone
    /// replays a stolen token, so the whole session goes.
    Reuse,
    /// The session is revoked, or over beyond the leeway: nothing can be refreshed.
    Over,
}

/// Judges `presented_jti` against `session` as it stands at `now`.
pub fn judge_refresh(
    session: &Session,
    presented_jti: &str,
    now: i64,
    timing: RefreshTiming,
) -> RefreshVerdict {
    if session.revoked || is_over(session, now, timing.leeway_secs) {
        return RefreshVerdict::Over;
    }
    if presented_jti == session.refresh_jti {
        return RefreshVerdict::Rotate;
    }
    let within_grace = timing.grace_secs > 0
        && session.retired_refresh.as_ref().is_some_and(|retired| {
            retired.jti == presented_jti
                && now.saturating_sub(retired.retired_at) <= timing.grace_secs
        });
    if within_grace {
        RefreshVerdict::WithinGrace
    } else {
        RefreshVerdict::Reuse
    }
}

/// `session` after a rotation at `now` made `new_jti` its current refresh token.
pub fn rotated(mut session: Session, new_jti: &str, now: i64) -> Session {
    let retired = std::mem::replace(&mut session.refresh_jti, new_jti.to_owned());
    session.retired_refresh = Some(RetiredRefresh {
        jti: retired,
        retired_at: now,
    });
    session
}

/// Whether `session` is over for refreshing at `now`: past its end plus the leeway, when not
/// even its last refresh token still verifies.
pub fn is_over(session: &Session, now: i64, leeway_secs: i64) -> bool {
    now > session.expires_at.saturating_add(leeway_secs)
}

/// Whether `session` can still issue tokens at `now` (step-up, refresh without rotation):
/// neither revoked nor past its end.
pub fn is_live(session: &Session, now: i64) -> bool {
    !session.revoked && session.expires_at > now
}

/// The time by which tokens count as gone at `now`: `now` minus the leeway. Revocation
/// entries covering tokens only until then, and session rows that ended by then, may be
/// forgotten (loading, pruning).
pub fn expired_by(now: i64, leeway: Duration) -> i64 {
    now.saturating_sub(secs(leeway))
}

/// The sessions of a user that a password change (keeping the caller's `keep_sid`) or a
/// logout-all (`None`) revokes at `now`: every one not revoked yet whose tokens may still
/// verify, that is, ending no earlier than `now - leeway`.
pub fn sweep(keep_sid: Option<&str>, now: i64, leeway: Duration) -> SessionSweep<'_> {
    SessionSweep {
        keep_sid,
        expiring_from: now.saturating_sub(secs(leeway)),
        revoked_at: now,
    }
}

/// The latest `exp` any token of a user deleted at `now` can carry: no session of theirs
/// outlives one started right now. Their `User` revocation entry covers tokens until then.
pub fn user_tokens_expire_by(now: i64, refresh_ttl: Duration) -> i64 {
    now.saturating_add(secs(refresh_ttl))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod tests {
    use super::*;

    const LEEWAY: i64 = 30;
    const GRACE: RefreshTiming = RefreshTiming {
        grace_secs: 10,
        leeway_secs: LEEWAY,
    };

    fn session() -> Session {
        Session {
            sid: "s1".into(),
            user_id: 1,
            created_at: 1_000,
            expires_at: 5_000,
            auth_time: 1_000,
            refresh_jti: "s1-r0".into(),
            retired_refresh: None,
            revoked: false,
        }
    }

    #[test]
    fn the_current_token_rotates_then_the_grace_then_reuse() {
        let s = session();
        assert_eq!(
            judge_refresh(&s, "s1-r0", 1_100, GRACE),
            RefreshVerdict::Rotate
        );
        let s = rotated(s, "s1-r1", 1_100);
        assert_eq!(s.refresh_jti, "s1-r1");
        assert_eq!(s.expires_at, 5_000, "no sliding expiry");
        assert_eq!(s.refresh_issued_at(), 1_100);
        assert_eq!(
            judge_refresh(&s, "s1-r0", 1_110, GRACE),
            RefreshVerdict::WithinGrace
        );
        assert_eq!(
            judge_refresh(&s, "s1-r0", 1_111, GRACE),
            RefreshVerdict::Reuse
        );
        assert_eq!(
            judge_refresh(&s, "s1-r1", 1_111, GRACE),
            RefreshVerdict::Rotate
        );
    }

    #[test]
    fn a_zero_grace_makes_every_retired_token_reuse() {
        let s = rotated(session(), "s1-r1", 1_100);
        let timing = RefreshTiming {
            grace_secs: 0,
            leeway_secs: LEEWAY,
        };
        assert_eq!(
            judge_refresh(&s, "s1-r0", 1_100, timing),
            RefreshVerdict::Reuse
        );
    }

    #[test]
    fn an_unknown_jti_of_the_session_is_reuse() {
        assert_eq!(
            judge_refresh(&session(), "forged", 1_001, GRACE),
            RefreshVerdict::Reuse
        );
        // An older retired token, two rotations back, too.
        let s = rotated(rotated(session(), "s1-r1", 1_100), "s1-r2", 1_105);
        assert_eq!(
            judge_refresh(&s, "s1-r0", 1_106, GRACE),
            RefreshVerdict::Reuse
        );
    }

    #[test]
    fn a_revoked_or_ended_session_is_over_beyond_the_leeway_only() {
        let s = session();
        assert_eq!(
            judge_refresh(&s, "s1-r0", 5_000 + LEEWAY + 1, GRACE),
            RefreshVerdict::Over
        );
        assert_eq!(
            judge_refresh(&s, "s1-r0", 5_000 + LEEWAY, GRACE),
            RefreshVerdict::Rotate
        );
        let revoked = Session {
            revoked: true,
            ..session()
        };
        assert_eq!(
            judge_refresh(&revoked, "s1-r0", 1_001, GRACE),
            RefreshVerdict::Over
        );
    }

    #[test]
    fn a_session_is_live_until_its_end_and_not_once_revoked() {
        let s = session();
        assert!(is_live(&s, 4_999));
        assert!(!is_live(&s, 5_000));
        assert!(!is_live(
            &Session {
                revoked: true,
                ..session()
            },
            1_001
        ));
        assert_eq!(session().refresh_issued_at(), 1_000, "issued at the login");
    }

    #[test]
    fn a_sweep_takes_sessions_whose_tokens_may_still_verify() {
        let leeway = Duration::from_secs(30);
        let sweep = sweep(Some("keep"), 2_000, leeway);
        assert_eq!(sweep.keep_sid, Some("keep"));
        assert_eq!(sweep.expiring_from, 1_970);
        assert_eq!(sweep.revoked_at, 2_000);
        assert_eq!(expired_by(2_000, leeway), 1_970);
    }

    #[test]
    fn a_deleted_users_entry_covers_a_session_started_now() {
        assert_eq!(
            user_tokens_expire_by(2_000, Duration::from_secs(86_400)),
            88_400
        );
    }
}
