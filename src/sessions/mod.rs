//! Login sessions, the domain rules between the account endpoints and the store: open one
//! (login), refresh it (rotation, grace, reuse detection), step up inside it, end it (logout),
//! and the revocations a password change or an account deletion brings.
//!
//! It calls the store, the token service and the in-memory revocation index, and knows
//! nothing of HTTP: `routes/` parses the request, checks the password, calls in here and
//! renders the answer. Every revocation goes to the store first (durable), then to memory.
//!
//! The rules themselves — rotation, grace, reuse, when a session is over, which sessions a
//! revocation takes and how long its entry stays in force — are pure functions in [`rules`];
//! [`operations`] applies them to a store (the operator CLI calls those too). The store
//! keeps data and offers atomic steps (a compare-and-swap of the refresh token, a revocation
//! with its log entry in one transaction), but decides no policy.

pub mod operations;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::claims::{new_jti, TokenType};
use crate::auth::error::AuthError;
use crate::auth::identity::Identity;
use crate::auth::revocation::RevocationIndex;
use crate::auth::tokens::{AccountGrant, IssueError, SessionGrant, Signed, TokenService};
use crate::clock::{claim_time, secs, Clock};
use crate::store::{RevocationKind, Session, Store, StoreError, User};
use operations::RefreshOutcome;
use rules::RefreshTiming;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The token, its session or its user no longer stands (revoked, expired, deleted).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A token could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// The session rules of `[auth]`.
#[derive(Debug, Clone, Copy)]
pub struct SessionRules {
    /// Each refresh returns a new refresh token and retires the old one.
    pub refresh_rotation: bool,
    /// How long a retired refresh token is still answered without counting as reuse.
    pub refresh_reuse_grace: Duration,
}

/// Tokens handed to the client after a login, refresh or step-up.
/// No `Debug`: it holds tokens.
pub struct Issued {
    /// The new access token.
    pub access_token: String,
    /// The access token's `csrf` claim (cookies enabled).
    pub access_csrf: Option<String>,
    /// The session's refresh token, when the operation hands one out.
    pub refresh_token: Option<String>,
    /// The refresh token's `csrf` claim (cookies enabled, refresh token handed out).
    pub refresh_csrf: Option<String>,
    /// The access token's real lifetime in seconds: shorter than `access_ttl` when the
    /// session ends sooner.
    pub expires_in: u64,
    /// The refresh token's remaining lifetime in seconds: until the session ends.
    pub refresh_expires_in: u64,
}

/// The session domain; built once and shared by the account endpoints.
pub struct Sessions {
    store: Arc<dyn Store>,
    tokens: Arc<TokenService>,
    revocations: Arc<RevocationIndex>,
    clock: Clock,
    rules: SessionRules,
}

impl Sessions {
    /// Sessions kept in `store`, with tokens from `tokens` and revocations applied to
    /// `revocations` as soon as they are durable.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Arc<TokenService>,
        revocations: Arc<RevocationIndex>,
        clock: Clock,
        rules: SessionRules,
    ) -> Self {
        Self {
            store,
            tokens,
            revocations,
            clock,
            rules,
        }
    }

    /// Opens a session for `user`, whose password was just checked: a fresh access token
    /// and the session's first refresh token.
    pub async fn login(&self, user: &User) -> Result<Issued, SessionError> {
        let now = self.clock.now();
        let session = Session {
            sid: new_jti().map_err(IssueError::from)?,
            user_id: user.id,
            created_at: now,
            expires_at: now + secs(self.tokens.refresh_ttl()),
            auth_time: now,
            refresh_jti: new_jti().map_err(IssueError::from)?,
            retired_refresh: None,
            revoked: false,
        };
        self.store.create_session(&session).await?;
        tracing::info!(user_id = user.id, "login");
        let access = self.access_token(user, &session, true, now)?;
        let refresh = self
            .tokens
            .issue_refresh(&grant(&session), &session.refresh_jti, now)?;
        Ok(self.issued(&session, now, access, Some(refresh)))
    }

    /// A new (not fresh) access token for the session of the refresh token `refresh`, and
    /// with rotation the session's current refresh token: freshly made, or — when the
    /// presented one was retired within the grace (two tabs refreshing at once) — the
    /// current one re-signed with its claims unchanged. A retired token presented after the
    /// grace revokes the whole session.
    pub async fn refresh(&self, refresh: &Identity) -> Result<Issued, SessionError> {
        if refresh.legacy {
            return self.exchange_legacy(refresh).await;
        }
        let now = self.clock.now();
        // A refresh token expires with its session. The leeway lets it verify a few seconds
        // past that, but the session is over: nothing issued now could be valid.
        if claim_time(now) >= refresh.expires_at {
            return Err(AuthError::Expired.into());
        }
        if !self.rules.refresh_rotation {
            let session = self.live_session(&refresh.session_id, now).await?;
            let user = self.live_user(refresh.user_id).await?;
            let access = self.access_token(&user, &session, false, now)?;
            return Ok(self.issued(&session, now, access, None));
        }
        let new = new_jti().map_err(IssueError::from)?;
        let timing = RefreshTiming {
            grace_secs: secs(self.rules.refresh_reuse_grace),
            leeway_secs: secs(self.tokens.leeway()),
        };
        let outcome = operations::refresh_rotating(
            self.store.as_ref(),
            &refresh.session_id,
            &refresh.token_id,
            &new,
            now,
            timing,
        )
        .await?;
        match outcome {
            RefreshOutcome::Rotated(session) | RefreshOutcome::WithinGrace(session) => {
                if session.user_id != refresh.user_id {
                    return Err(AuthError::Invalid("refresh token names another user").into());
                }
                let user = self.live_user(refresh.user_id).await?;
                let access = self.access_token(&user, &session, false, now)?;
                let token = self.tokens.issue_refresh(
                    &grant(&session),
                    &session.refresh_jti,
                    session.refresh_issued_at(),
                )?;
                Ok(self.issued(&session, now, access, Some(token)))
            }
            RefreshOutcome::ReuseDetected(revocation) => {
                self.revocations.apply(&[revocation]);
                tracing::warn!(
                    user_id = refresh.user_id,
                    "refresh token reuse: session revoked"
                );
                Err(AuthError::Revoked.into())
            }
            RefreshOutcome::Revoked => Err(AuthError::Revoked.into()),
        }
    }

    /// A legacy refresh token (docs/http-api.md §7.5) exchanged for authgate tokens in one session
    /// per legacy `jti`: the first use opens it, every later use answers its current tokens
    /// (no reuse detection), and it ends at the earlier of the legacy token's `exp` and
    /// `refresh_ttl` from the first use — never later than the legacy token would have.
    async fn exchange_legacy(&self, legacy: &Identity) -> Result<Issued, SessionError> {
        let now = self.clock.now();
        let legacy_exp = i64::try_from(legacy.expires_at).unwrap_or(i64::MAX);
        let expires_at = legacy_exp.min(now.saturating_add(secs(self.tokens.refresh_ttl())));
        if expires_at <= now {
            return Err(AuthError::Expired.into());
        }
        let opened = Session {
            sid: new_jti().map_err(IssueError::from)?,
            user_id: legacy.user_id,
            created_at: now,
            expires_at,
            auth_time: i64::try_from(legacy.auth_time).unwrap_or(now),
            refresh_jti: new_jti().map_err(IssueError::from)?,
            retired_refresh: None,
            revoked: false,
        };
        let session = self
            .store
            .exchange_legacy(&legacy.token_id, legacy_exp, &opened)
            .await?
            // Recorded, but its session is over and pruned.
            .ok_or(SessionError::Auth(AuthError::Expired))?;
        if session.user_id != legacy.user_id {
            return Err(AuthError::Invalid("legacy token exchanged for another user").into());
        }
        if session.revoked {
            return Err(AuthError::Revoked.into());
        }
        if !rules::is_live(&session, now) {
            return Err(AuthError::Expired.into());
        }
        if session.sid == opened.sid {
            tracing::info!(user_id = legacy.user_id, "legacy refresh token exchanged");
        }
        let user = self.live_user(legacy.user_id).await?;
        let access = self.access_token(&user, &session, false, now)?;
        let refresh = if self.rules.refresh_rotation {
            Some(self.tokens.issue_refresh(
                &grant(&session),
                &session.refresh_jti,
                session.refresh_issued_at(),
            )?)
        } else {
            None
        };
        Ok(self.issued(&session, now, access, refresh))
    }

    /// Step-up: `user` (of `identity`'s session) just typed their password again; a fresh
    /// access token in the same session, whose `auth_time` moves to now. A legacy token has
    /// no session to step up in: the password check opens one, as a login does.
    pub async fn step_up(&self, identity: &Identity, user: &User) -> Result<Issued, SessionError> {
        if identity.legacy {
            return self.login(user).await;
        }
        let now = self.clock.now();
        self.store.set_auth_time(&identity.session_id, now).await?;
        let session = self.live_session(&identity.session_id, now).await?;
        let access = self.access_token(user, &session, true, now)?;
        Ok(self.issued(&session, now, access, None))
    }

    /// Ends `identity`'s session: its refresh token and every access token issued in it.
    /// A session already ended is [`AuthError::Revoked`].
    pub async fn logout(&self, identity: &Identity) -> Result<(), SessionError> {
        if identity.legacy {
            // A legacy token has no session: its `jti` is revoked, until its own `exp`; a
            // refresh token also ends the session it was exchanged into, if it was.
            let exp = i64::try_from(identity.expires_at).unwrap_or(i64::MAX);
            let kind = RevocationKind::Token(identity.token_id.clone());
            let mut entries = vec![self.store.append_revocation(kind, exp).await?];
            if identity.token_type == TokenType::Refresh {
                if let Some(sid) = self.store.legacy_session_of(&identity.token_id).await? {
                    let ended = self.store.revoke_session(&sid, self.clock.now()).await?;
                    entries.extend(ended);
                }
            }
            self.revocations.apply(&entries);
            tracing::info!(user_id = identity.user_id, "logout (legacy token)");
            return Ok(());
        }
        let revoked = self
            .store
            .revoke_session(&identity.session_id, self.clock.now())
            .await?;
        let Some(revocation) = revoked else {
            return Err(AuthError::Revoked.into());
        };
        let mut entries = vec![revocation];
        // A session a legacy refresh token was exchanged into takes that token with it.
        if let Some((jti, exp)) = self.store.legacy_exchange_of(&identity.session_id).await? {
            let kind = RevocationKind::Token(jti);
            entries.push(self.store.append_revocation(kind, exp).await?);
        }
        // Into memory last, right before the answer: a tunnel of the session is closed by
        // it, and a client waiting for both sees the logout answered as the tunnel closes.
        self.revocations.apply(&entries);
        tracing::info!(user_id = identity.user_id, "logout");
        Ok(())
    }

    /// Stores `new_hash` as `user`'s password and ends every other session of theirs,
    /// keeping `keep_sid` (the caller's), and every legacy token of theirs. Returns how many
    /// sessions ended.
    pub async fn change_password(
        &self,
        user: &User,
        new_hash: &str,
        keep_sid: &str,
    ) -> Result<usize, SessionError> {
        let now = self.clock.now();
        let cutoff =
            operations::cut_off_legacy_tokens(self.store.as_ref(), &user.username, now).await?;
        self.revocations.apply(&[cutoff]);
        let sweep = rules::sweep(Some(keep_sid), now, self.tokens.leeway());
        let revoked = self.store.set_password(user.id, new_hash, sweep).await?;
        self.revocations.apply(&revoked);
        Ok(revoked.len())
    }

    /// Deletes user `id` and revokes every token of theirs (store, then memory). False when
    /// no such user exists.
    pub async fn delete_user(&self, id: i64) -> Result<bool, SessionError> {
        let deleted = operations::delete_user(
            self.store.as_ref(),
            id,
            self.clock.now(),
            self.tokens.refresh_ttl(),
        )
        .await?;
        match deleted {
            Some(revoked) => {
                self.revocations.apply(&revoked);
                tracing::info!(user_id = id, "user deleted");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The user a token names, or [`AuthError::Revoked`] when they were deleted.
    pub async fn live_user(&self, id: i64) -> Result<User, SessionError> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or(SessionError::Auth(AuthError::Revoked))
    }

    /// The session `sid` while it is neither revoked nor over.
    async fn live_session(&self, sid: &str, now: i64) -> Result<Session, SessionError> {
        match self.store.session(sid).await? {
            Some(s) if rules::is_live(&s, now) => Ok(s),
            _ => Err(AuthError::Revoked.into()),
        }
    }

    fn access_token(
        &self,
        user: &User,
        session: &Session,
        fresh: bool,
        now: i64,
    ) -> Result<Signed, IssueError> {
        let account = AccountGrant {
            user_id: user.id,
            username: &user.username,
            roles: &user.roles,
        };
        self.tokens
            .issue_access(&account, &grant(session), fresh, now)
    }

    fn issued(
        &self,
        session: &Session,
        now: i64,
        access: Signed,
        refresh: Option<Signed>,
    ) -> Issued {
        let until_session_end = claim_time(session.expires_at.saturating_sub(now));
        let (refresh_token, refresh_csrf) = match refresh {
            Some(r) => (Some(r.token), r.csrf),
            None => (None, None),
        };
        Issued {
            access_token: access.token,
            access_csrf: access.csrf,
            refresh_token,
            refresh_csrf,
            expires_in: self.tokens.access_ttl().as_secs().min(until_session_end),
            refresh_expires_in: until_session_end,
        }
    }
}

fn grant(session: &Session) -> SessionGrant<'_> {
    SessionGrant {
        user_id: session.user_id,
        sid: &session.sid,
        auth_time: session.auth_time,
        expires_at: session.expires_at,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auth::claims::TokenType;
    use crate::auth::identity::Presentation;
    use crate::auth::keys::test_keys::config;
    use crate::auth::keys::{load_keys, KeyLoad};
    use crate::config::TokenAlgorithm;
    use crate::store::SqliteStore;

    struct Fixture {
        sessions: Sessions,
        tokens: Arc<TokenService>,
        store: Arc<dyn Store>,
        clock: Clock,
        _dir: tempfile::TempDir,
    }

    async fn fixture(rotation: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let secret = Some(b"sessions-test-secret-of-enough-bytes!!".to_vec());
        let keys = load_keys(&cfg, Path::new("t.toml"), secret, KeyLoad::CheckOnly).unwrap();
        // Now, on a clock the test moves: the tokens themselves verify on the system clock.
        let clock = Clock::manual(Clock::system().now_u64());
        let tokens = Arc::new(
            TokenService::new(&cfg, keys)
                .unwrap()
                .with_clock(clock.clone()),
        );
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("authgate.db"))
                .await
                .unwrap(),
        );
        let rules = SessionRules {
            refresh_rotation: rotation,
            refresh_reuse_grace: Duration::from_secs(0),
        };
        let sessions = Sessions::new(
            store.clone(),
            tokens.clone(),
            Arc::new(RevocationIndex::new()),
            clock.clone(),
            rules,
        );
        Fixture {
            sessions,
            tokens,
            store,
            clock,
            _dir: dir,
        }
    }

    fn identity(tokens: &TokenService, token: &str, kind: TokenType) -> Identity {
        let verified = tokens.verify_as(token, &[kind]).unwrap();
        Identity::from_verified(verified, Presentation::BearerHeader)
    }

    #[tokio::test]
    async fn refresh_rotates_until_the_session_ends_on_the_clock() {
        let f = fixture(true).await;
        let user = f
            .store
            .create_user("alice", "$argon2id$unused", vec![], f.clock.now())
            .await
            .unwrap();
        let issued = f.sessions.login(&user).await.unwrap();
        assert_eq!(issued.expires_in, f.tokens.access_ttl().as_secs());
        let refresh = issued.refresh_token.unwrap();
        let first = identity(&f.tokens, &refresh, TokenType::Refresh);

        let rotated = f.sessions.refresh(&first).await.unwrap();
        let next = rotated.refresh_token.unwrap();
        assert_ne!(next, refresh);
        // The retired token again, past a zero grace: reuse, the whole session is revoked.
        assert!(matches!(
            f.sessions.refresh(&first).await,
            Err(SessionError::Auth(AuthError::Revoked))
        ));

        // A new session, then the clock moves to its end: nothing can be refreshed.
        let issued = f.sessions.login(&user).await.unwrap();
        let token = identity(
            &f.tokens,
            &issued.refresh_token.unwrap(),
            TokenType::Refresh,
        );
        f.clock.advance(f.tokens.refresh_ttl());
        assert!(matches!(
            f.sessions.refresh(&token).await,
            Err(SessionError::Auth(AuthError::Expired))
        ));
    }

    #[tokio::test]
    async fn an_access_token_never_outlives_its_session() {
        let f = fixture(false).await;
        let user = f
            .store
            .create_user("bob", "$argon2id$unused", vec![], f.clock.now())
            .await
            .unwrap();
        let issued = f.sessions.login(&user).await.unwrap();
        let token = identity(
            &f.tokens,
            &issued.refresh_token.unwrap(),
            TokenType::Refresh,
        );
        // Ten seconds before the session ends, a refresh gets an access token of ten seconds.
        f.clock
            .advance(f.tokens.refresh_ttl() - Duration::from_secs(10));
        let refreshed = f.sessions.refresh(&token).await.unwrap();
        assert_eq!(refreshed.expires_in, 10);
        assert!(refreshed.refresh_token.is_none());
    }
}
