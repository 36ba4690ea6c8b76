//! Accounts: register, the caller's own account (`/me`), password change and self-deletion.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::passwords::check_lengths;
use super::{json, Endpoints};
use crate::auth::accounts_rules::{check_password as password_rules, check_username};
use crate::auth::error::AuthError;
use crate::auth::policy::require_fresh;
use crate::error::ApiError;
use crate::server::context::RequestContext;
use crate::server::request_body::required;
use crate::server::response::Body;
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
pub(super) struct AccountView<'a> {
    id: i64,
    username: &'a str,
    roles: &'a [String],
    created_at: String,
}

impl<'a> AccountView<'a> {
    /// The public view of `user`; `created_at` in RFC 3339 UTC.
    pub(super) fn of(user: &'a User) -> Self {
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

impl Endpoints {
    /// `POST /auth/register`.
    pub(super) async fn register(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        // Answered before parsing: a closed door says so whatever is sent.
        if !self.settings.allow_registration {
            return Err(ApiError::RegistrationDisabled);
        }
        // `register_limit`, before the body is read; every answered attempt counts.
        let attempt = self.passwords.begin_registration(ctx.client).await?;
        let answer = self.register_counted(req).await;
        attempt.counted().await;
        answer
    }

    /// `POST /auth/register` once admitted by the registration limit.
    async fn register_counted(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let input: RegisterBody = self.read_body(req).await?;
        let username = required(&input.username, "username")?;
        let password = required(&input.password, "password")?;
        check_username(username).map_err(|m| ApiError::InvalidRequest(m.into()))?;
        password_rules(password, self.settings.min_password_length)
            .map_err(|m| ApiError::InvalidRequest(m.into()))?;
        // Reserved names look taken (the CLI may create them); no hash is spent on them.
        if self
            .settings
            .reserved_usernames
            .contains(&username.to_lowercase())
        {
            return Err(ApiError::UsernameTaken);
        }
        let hash = self.passwords.hash(password).await?;
        let user = self
            .store
            .create_user(username, &hash, Vec::new(), self.clock.now())
            .await?;
        // Legacy tokens naming this user work at once (docs/http-api.md §7.5).
        self.auth.user_created(user.id, &user.username);
        tracing::info!(user_id = user.id, "registered");
        json(
            StatusCode::CREATED,
            &serde_json::json!({ "id": user.id, "username": user.username, "message": "Account created." }),
        )
    }

    /// `GET /auth/me`.
    pub(super) async fn me(&self, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let identity = self.access_identity(req)?;
        let user = self.sessions.live_user(identity.user_id).await?;
        json(StatusCode::OK, &AccountView::of(&user))
    }

    /// `DELETE /auth/me`: needs a fresh token; the user and every token of theirs are gone.
    pub(super) async fn delete_me(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let identity = self.access_identity(req)?;
        require_fresh(&identity, None, self.clock.now_u64())?;
        if !self.sessions.delete_user(identity.user_id).await? {
            return Err(AuthError::Revoked.into());
        }
        super::message("Account deleted.")
    }

    /// `PUT /auth/password`: needs a fresh token and the current password; every other
    /// session of the user is revoked, the calling one kept.
    pub(super) async fn change_password(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let identity = self.access_identity(&req)?;
        require_fresh(&identity, None, self.clock.now_u64())?;
        let input: PasswordBody = self.read_body(req).await?;
        let current = required(&input.current_password, "current_password")?;
        let new = required(&input.new_password, "new_password")?;
        check_lengths("-", current)?;
        password_rules(new, self.settings.min_password_length)
            .map_err(|m| ApiError::InvalidRequest(format!("new_password: {m}").into()))?;
        let user = self.sessions.live_user(identity.user_id).await?;
        self.passwords
            .check(&user.username, current, ctx.client)
            .await?;

        let hash = self.passwords.hash(new).await?;
        let revoked = self
            .sessions
            .change_password(&user, &hash, &identity.session_id)
            .await?;
        tracing::info!(
            user_id = user.id,
            sessions_revoked = revoked,
            "password changed"
        );
        super::message("Password changed; other sessions were signed out.")
    }
}
