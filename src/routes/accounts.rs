//! Accounts: register, the caller's own account (`/me`), password change and self-deletion.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::body::{self, required};
use super::json;
use super::sessions::{authenticate, client_ip};
use crate::app::AppState;
use crate::auth::accounts_rules::{check_password as password_rules, check_username};
use crate::auth::authenticator::Accept;
use crate::auth::error::AuthError;
use crate::auth::identity::Identity;
use crate::auth::policy::require_fresh;
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::RequestContext;
use crate::store::User;

/// Body of `POST /auth/register`. No `Debug`: it holds a password.
#[derive(Deserialize)]
struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
}

/// Body of `PUT /auth/password`. No `Debug`: it holds passwords.
#[derive(Deserialize)]
struct PasswordBody {
    current_password: Option<String>,
    new_password: Option<String>,
}

/// The account shape of `/auth/me` and `/auth/users/{id}`.
#[derive(Debug, Serialize)]
pub(crate) struct AccountView<'a> {
    id: i64,
    username: &'a str,
    roles: &'a [String],
    created_at: String,
}

impl<'a> AccountView<'a> {
    /// The public view of `user`; `created_at` in RFC 3339 UTC.
    pub(crate) fn of(user: &'a User) -> Self {
        let secs = u64::try_from(user.created_at).unwrap_or(0);
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        Self {
            id: user.id,
            username: &user.username,
            roles: &user.roles,
            created_at: humantime::format_rfc3339_seconds(at).to_string(),
        }
    }
}

/// `POST /auth/register`.
pub async fn register(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // Answered before parsing: a closed door says so whatever is sent.
    if !state.config.auth.allow_registration {
        return Err(ApiError::RegistrationDisabled);
    }
    let (parts, body) = req.into_parts();
    let input: RegisterBody =
        body::read(&parts.headers, body, state.config.server.max_body).await?;
    let username = required(&input.username, "username")?;
    let password = required(&input.password, "password")?;
    check_username(username).map_err(|m| ApiError::InvalidRequest(m.into()))?;
    password_rules(password, state.config.auth.min_password_length)
        .map_err(|m| ApiError::InvalidRequest(m.into()))?;
    let hash = state.hasher.hash(password).await?;
    let user = state
        .store
        .create_user(username, &hash, Vec::new(), state.clock.now())
        .await?;
    tracing::info!(user_id = user.id, "registered");
    json(
        StatusCode::CREATED,
        &serde_json::json!({ "id": user.id, "username": user.username, "message": "Account created." }),
    )
}

/// `GET /auth/me`.
pub async fn me(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let identity = access_identity(state, req)?;
    let user = state.sessions.live_user(identity.user_id).await?;
    json(StatusCode::OK, &AccountView::of(&user))
}

/// `DELETE /auth/me`: needs a fresh token; the user and every token of theirs are gone.
pub async fn delete_me(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let identity = access_identity(state, req)?;
    require_fresh(&identity, None, state.clock.now_u64())?;
    if !state.sessions.delete_user(identity.user_id).await? {
        return Err(AuthError::Revoked.into());
    }
    super::message("Account deleted.")
}

/// `PUT /auth/password`: needs a fresh token and the current password; every other session
/// of the user is revoked, the calling one kept.
pub async fn change_password(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<Body>, ApiError> {
    let ip = client_ip(state, &req, ctx);
    let identity = access_identity(state, &req)?;
    require_fresh(&identity, None, state.clock.now_u64())?;
    let (parts, body) = req.into_parts();
    let input: PasswordBody =
        body::read(&parts.headers, body, state.config.server.max_body).await?;
    let current = required(&input.current_password, "current_password")?;
    let new = required(&input.new_password, "new_password")?;
    super::sessions::check_lengths("-", current)?;
    password_rules(new, state.config.auth.min_password_length)
        .map_err(|m| ApiError::InvalidRequest(format!("new_password: {m}").into()))?;
    let user = state.sessions.live_user(identity.user_id).await?;
    authenticate(state, &user.username, current, ip).await?;

    let hash = state.hasher.hash(new).await?;
    let revoked = state
        .sessions
        .change_password(user.id, &hash, &identity.session_id)
        .await?;
    tracing::info!(
        user_id = user.id,
        sessions_revoked = revoked,
        "password changed"
    );
    super::message("Password changed; other sessions were signed out.")
}

/// The verified, unrevoked access-token identity of a request.
pub(crate) fn access_identity<B>(
    state: &Arc<AppState>,
    req: &Request<B>,
) -> Result<Identity, ApiError> {
    Ok(state.auth.require(req.headers(), Accept::Access)?)
}
