//! Session operations that need only a store: refreshing with rotation over the store's
//! compare-and-swap, revoking every session of a user, deleting a user. The gateway's
//! [`Sessions`](super::Sessions) and the operator CLI both call them, so a rule is applied
//! the same way whoever writes.
//!
//! The rules come from [`super::rules`]; the store only reads and writes rows, each
//! multi-row change in one transaction. What makes concurrent writers safe is stated where
//! it happens.

use std::time::Duration;

use super::rules::{self, RefreshTiming, RefreshVerdict};
use crate::auth::revocation::fold_username;
use crate::store::{Revocation, RevocationKind, Session, Store, StoreError, User};

/// What presenting a refresh token to [`refresh_rotating`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The presented token was current and is now retired; the session (as updated) carries
    /// the new `refresh_jti`.
    Rotated(Session),
    /// The presented token was retired within the grace period: nothing changed; answer with
    /// the session's current refresh token (its `refresh_jti`, same `exp`).
    WithinGrace(Session),
    /// A retired token came back after the grace period (or an unknown `jti` of the session):
    /// the session is now revoked and this entry was appended to the log.
    ReuseDetected(Revocation),
    /// The session is unknown, already revoked, or over beyond the leeway.
    Revoked,
}

/// Presents refresh token `presented_jti` of session `sid` at `now`, rotating it to `new_jti`
/// when it is current.
///
/// The verdict is taken on the session as read, and a rotation is made only through the
/// store's compare-and-swap, so of concurrent refreshes of one token — in this process or in
/// any other on the same database — exactly one rotates. A loser's swap fails because
/// another writer changed the session first; it re-reads the session and is judged again:
/// within the grace, reuse, or over (a logout won the race). Acting on the other verdicts
/// after the read is safe: each is the answer the refresh had at the moment of the read
/// (within the grace, the token re-signed was current then), and reuse and over never turn
/// back (a retired `jti` never becomes current again). Reuse revokes through the store's
/// revoke-if-not-revoked, so only one of several concurrent replays reports it.
pub async fn refresh_rotating(
    store: &dyn Store,
    sid: &str,
    presented_jti: &str,
    new_jti: &str,
    now: i64,
    timing: RefreshTiming,
) -> Result<RefreshOutcome, StoreError> {
    // Two reads suffice: after a lost swap the presented token is no longer current, or the
    // session is revoked. A third verdict of `Rotate` would mean the store broke its
    // compare-and-swap; refuse rather than loop.
    for _ in 0..2 {
        let Some(session) = store.session(sid).await? else {
            return Ok(RefreshOutcome::Revoked);
        };
        match rules::judge_refresh(&session, presented_jti, now, timing) {
            RefreshVerdict::Over => return Ok(RefreshOutcome::Revoked),
            RefreshVerdict::WithinGrace => return Ok(RefreshOutcome::WithinGrace(session)),
            RefreshVerdict::Reuse => {
                return Ok(match store.revoke_session(sid, now).await? {
                    Some(entry) => RefreshOutcome::ReuseDetected(entry),
                    None => RefreshOutcome::Revoked,
                })
            }
            RefreshVerdict::Rotate => {
                if store.swap_refresh(sid, presented_jti, new_jti, now).await? {
                    return Ok(RefreshOutcome::Rotated(rules::rotated(
                        session, new_jti, now,
                    )));
                }
            }
        }
    }
    tracing::warn!("a refresh lost the rotation twice; refusing it");
    Ok(RefreshOutcome::Revoked)
}

/// Revokes every session of `user` whose tokens may still verify at `now`, and cuts off
/// their legacy tokens (`user logout-all`). Returns the entries appended (the cut-off first).
/// [`StoreError::NotFound`] for an unknown user.
pub async fn revoke_all_sessions(
    store: &dyn Store,
    user: &User,
    now: i64,
    leeway: Duration,
) -> Result<Vec<Revocation>, StoreError> {
    let mut entries = vec![cut_off_legacy_tokens(store, &user.username, now).await?];
    entries.extend(
        store
            .revoke_user_sessions(user.id, rules::sweep(None, now, leeway))
            .await?,
    );
    Ok(entries)
}

/// Deletes user `id` at `now` and revokes every token of theirs, whatever session it is in,
/// legacy tokens included. `None` when no such user exists.
pub async fn delete_user(
    store: &dyn Store,
    id: i64,
    now: i64,
    refresh_ttl: Duration,
) -> Result<Option<Vec<Revocation>>, StoreError> {
    let Some(user) = store.user_by_id(id).await? else {
        return Ok(None);
    };
    let cutoff = cut_off_legacy_tokens(store, &user.username, now).await?;
    let deleted = store
        .delete_user(id, now, rules::user_tokens_expire_by(now, refresh_ttl))
        .await?;
    Ok(deleted.map(|mut entries| {
        entries.insert(0, cutoff);
        entries
    }))
}

/// Refuses from now on every legacy (flask-jwt-extended) token of `username` issued at or
/// before `now` (docs/http-api.md §7.5): the per-user cut-off that logout-all, a password change,
/// deletion — and disabling a user — set. Returns the durable log entry; the caller applies
/// it to its in-memory index (a running gateway reads it from the log within a second).
///
/// Callers set it *before* the change it belongs to: should that change then fail, the
/// legacy tokens are refused for nothing, never accepted after a change that happened.
pub async fn cut_off_legacy_tokens(
    store: &dyn Store,
    username: &str,
    now: i64,
) -> Result<Revocation, StoreError> {
    // Never pruned: a legacy token's lifetime is the old app's, unknown to the store.
    let kind = RevocationKind::LegacyCutoff {
        username: fold_username(username),
        before: now,
    };
    store.append_revocation(kind, i64::MAX).await
}
