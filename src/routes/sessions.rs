//! Login sessions over HTTP: login (opens one), refresh, fresh (step-up in the same session)
//! and logout. Only parsing and answering happens here; the session rules are `sessions/`'.

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
use crate::auth::limiter;
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::RequestContext;
use crate::sessions::Issued;
use crate::store::User;

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
    answer(state.sessions.login(&user).await?)
}

/// `POST /auth/refresh`.
pub async fn refresh(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let identity = state.auth.require(req.headers(), Accept::Refresh)?;
    answer(state.sessions.refresh(&identity).await?)
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
    let user = state.sessions.live_user(identity.user_id).await?;
    authenticate(state, &user.username, password, ip).await?;
    answer(state.sessions.step_up(&identity, &user).await?)
}

/// `POST /auth/logout`: revokes the whole session — its refresh token and every access token
/// issued in it. Store commit, then memory, then the 200.
pub async fn logout(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let identity = state.auth.require(req.headers(), Accept::AccessOrRefresh)?;
    state.sessions.logout(&identity).await?;
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

/// The token answer of login, refresh and step-up.
fn answer(issued: Issued) -> Result<Response<Body>, ApiError> {
    token_json(&TokenAnswer {
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
    })
}
