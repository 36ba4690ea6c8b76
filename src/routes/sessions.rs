//! Login sessions: login (opens one), refresh (rotation, reuse detection, grace), fresh
//! (step-up in the same session) and logout (revokes the whole session).

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::body::{self, required};
use super::token_json;
use crate::app::AppState;
use crate::auth::accounts_rules::{MAX_PASSWORD_BYTES, MAX_USERNAME_CHARS};
use crate::auth::authenticator::Accept;
use crate::auth::claims::new_jti;
use crate::auth::error::AuthError;
use crate::auth::limiter;
use crate::auth::tokens::{AccountGrant, IssueError, SessionGrant};
use crate::body::Body;
use crate::clock::{claim_time, secs};
use crate::error::ApiError;
use crate::gateway::RequestContext;
use crate::store::{RefreshOutcome, Session, User};

/// Body of `POST /auth/login`. No `Debug`: it holds a password.
#[derive(Deserialize)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
}

/// Body of `POST /auth/fresh`. No `Debug`: it holds a password.
#[derive(Deserialize)]
struct FreshBody {
    password: Option<String>,
}

/// Answer of login and refresh. No `Debug`: it holds tokens.
#[derive(Serialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    token_type: &'static str,
    expires_in: u64,
}

/// `POST /auth/login`.
pub async fn login(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<Body>, ApiError> {
    let ip = client_ip(state, &req, ctx);
    let (parts, body) = req.into_parts();
    let creds: LoginBody = body::read(&parts.headers, body, state.config.server.max_body).await?;
    let username = required(&creds.username, "username")?;
    let password = required(&creds.password, "password")?;
    check_lengths(username, password)?;

    let user = authenticate(state, username, password, ip).await?;

    let now = state.clock.now();
    let session = Session {
        sid: random_id()?,
        user_id: user.id,
        created_at: now,
        expires_at: now + secs(state.tokens.refresh_ttl()),
        auth_time: now,
        refresh_jti: random_id()?,
        refresh_issued_at: now,
        revoked: false,
    };
    state.store.create_session(&session).await?;
    tracing::info!(user_id = user.id, "login");
    let access = issue_access(state, &user, &session, true, now)?;
    let refresh = issue_refresh(state, &session, &session.refresh_jti, now)?;
    answer(state, &session, now, access, Some(refresh))
}

/// `POST /auth/refresh`.
pub async fn refresh(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let identity = state.auth.require(req.headers(), Accept::Refresh)?;
    let now = state.clock.now();
    // A refresh token expires with its session. The leeway lets it verify a few seconds
    // past that, but the session is over: nothing issued now could be valid.
    if claim_time(now) >= identity.expires_at {
        return Err(AuthError::Expired.into());
    }
    if !state.config.auth.refresh_rotation {
        let session = live_session(state, &identity.session_id, now).await?;
        let user = live_user(state, identity.user_id).await?;
        let access = issue_access(state, &user, &session, false, now)?;
        return answer(state, &session, now, access, None);
    }
    let new = random_id()?;
    let outcome = state
        .store
        .rotate_refresh(
            &identity.session_id,
            &identity.token_id,
            &new,
            now,
            secs(state.config.auth.refresh_reuse_grace),
            secs(state.tokens.leeway()),
        )
        .await?;
    match outcome {
        RefreshOutcome::Rotated(session) | RefreshOutcome::WithinGrace(session) => {
            // Either way the answer carries the session's current refresh token: freshly
            // made, or (two tabs refreshing at once) re-signed with its claims unchanged.
            if session.user_id != identity.user_id {
                return Err(AuthError::Invalid("refresh token names another user").into());
            }
            let user = live_user(state, identity.user_id).await?;
            let access = issue_access(state, &user, &session, false, now)?;
            let refresh = issue_refresh(
                state,
                &session,
                &session.refresh_jti,
                session.refresh_issued_at,
            )?;
            answer(state, &session, now, access, Some(refresh))
        }
        RefreshOutcome::ReuseDetected(revocation) => {
            state.revocations.apply(&[revocation]);
            tracing::warn!(
                user_id = identity.user_id,
                "refresh token reuse: session revoked"
            );
            Err(AuthError::Revoked.into())
        }
        RefreshOutcome::Revoked => Err(AuthError::Revoked.into()),
    }
}

/// `POST /auth/fresh`: a new fresh access token in the same session after a password check.
pub async fn fresh(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<Body>, ApiError> {
    let ip = client_ip(state, &req, ctx);
    let identity = state.auth.require(req.headers(), Accept::AccessOrRefresh)?;
    let (parts, body) = req.into_parts();
    let input: FreshBody = body::read(&parts.headers, body, state.config.server.max_body).await?;
    let password = required(&input.password, "password")?;
    check_lengths("-", password)?;
    let user = live_user(state, identity.user_id).await?;
    authenticate(state, &user.username, password, ip).await?;

    let now = state.clock.now();
    state.store.set_auth_time(&identity.session_id, now).await?;
    let session = live_session(state, &identity.session_id, now).await?;
    let access = issue_access(state, &user, &session, true, now)?;
    answer(state, &session, now, access, None)
}

/// `POST /auth/logout`: revokes the whole session — its refresh token and every access token
/// issued in it. Store commit, then memory, then the 200.
pub async fn logout(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let identity = state.auth.require(req.headers(), Accept::AccessOrRefresh)?;
    let revoked = state
        .store
        .revoke_session(
            &identity.session_id,
            state.clock.now(),
            secs(state.tokens.leeway()),
        )
        .await?;
    let Some(revocation) = revoked else {
        return Err(AuthError::Revoked.into());
    };
    state.revocations.apply(&[revocation]);
    tracing::info!(user_id = identity.user_id, "logout");
    super::message("Logged out.")
}

/// Checks `password` against the stored hash of `username` and returns the user; counts the
/// outcome for the login limiter. One argon2 verify whether or not the user exists (against a
/// dummy hash when not): same answer, same time. Login, `/auth/fresh` and `PUT /auth/password`
/// all check passwords here.
pub(crate) async fn authenticate(
    state: &Arc<AppState>,
    username: &str,
    password: &str,
    ip: std::net::IpAddr,
) -> Result<User, ApiError> {
    // Admitted under the limiter's lock: concurrent attempts cannot exceed the budget.
    let attempt = state
        .limiter
        .begin(username, ip, Instant::now())
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let found = state.store.user_by_name(username).await?;
    let hash = found.as_ref().map(|u| u.password_hash.as_str());
    let ok = state.hasher.verify(password, hash).await?;
    match (ok, found) {
        (true, Some(u)) => {
            attempt.succeeded();
            Ok(u.user)
        }
        _ => {
            attempt.failed(Instant::now());
            tracing::info!(reason = "invalid_credentials", "password check failed");
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// The address login limiting counts against.
pub(crate) fn client_ip<B>(
    state: &Arc<AppState>,
    req: &Request<B>,
    ctx: &RequestContext,
) -> std::net::IpAddr {
    let proxy = state.proxy.load();
    limiter::client_ip(
        ctx.conn.peer.ip(),
        req.headers(),
        &proxy.config.trusted_proxies,
    )
}

/// Field lengths that are refused before any hashing (a 1 MB password never reaches argon2).
pub(crate) fn check_lengths(username: &str, password: &str) -> Result<(), ApiError> {
    if username.len() > 4 * MAX_USERNAME_CHARS || username.chars().count() > MAX_USERNAME_CHARS {
        return Err(ApiError::InvalidRequest("username is too long".into()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidRequest(
            "password is too long (at most 1024 bytes)".into(),
        ));
    }
    Ok(())
}

async fn live_session(state: &Arc<AppState>, sid: &str, now: i64) -> Result<Session, ApiError> {
    match state.store.session(sid).await? {
        Some(s) if !s.revoked && s.expires_at > now => Ok(s),
        _ => Err(AuthError::Revoked.into()),
    }
}

/// The user a token names, or `token_revoked` when they were deleted.
pub(crate) async fn live_user(state: &Arc<AppState>, id: i64) -> Result<User, ApiError> {
    state
        .store
        .user_by_id(id)
        .await?
        .ok_or(AuthError::Revoked.into())
}

/// An access token for `user` in `session` (see `TokenService::issue_access`).
pub(crate) fn issue_access(
    state: &Arc<AppState>,
    user: &User,
    session: &Session,
    fresh: bool,
    now: i64,
) -> Result<String, ApiError> {
    let account = AccountGrant {
        user_id: user.id,
        username: &user.username,
        roles: &user.roles,
    };
    state
        .tokens
        .issue_access(&account, &grant(session), fresh, now)
        .map_err(ApiError::from)
}

/// The refresh token `jti` of `session`, issued at `issued_at`; it expires with the session.
fn issue_refresh(
    state: &Arc<AppState>,
    session: &Session,
    jti: &str,
    issued_at: i64,
) -> Result<String, ApiError> {
    state
        .tokens
        .issue_refresh(&grant(session), jti, issued_at)
        .map_err(ApiError::from)
}

fn grant(session: &Session) -> SessionGrant<'_> {
    SessionGrant {
        user_id: session.user_id,
        sid: &session.sid,
        auth_time: session.auth_time,
        expires_at: session.expires_at,
    }
}

/// The token answer; `expires_in` is the access token's real lifetime, which is shorter than
/// `access_ttl` when the session ends sooner.
fn answer(
    state: &Arc<AppState>,
    session: &Session,
    now: i64,
    access_token: String,
    refresh_token: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let until_session_end = claim_time(session.expires_at.saturating_sub(now));
    token_json(&TokenAnswer {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl().as_secs().min(until_session_end),
    })
}

/// A new token or session id; without the OS random source the request fails (500) rather
/// than issue a guessable id.
fn random_id() -> Result<String, ApiError> {
    new_jti().map_err(|e| IssueError::from(e).into())
}
