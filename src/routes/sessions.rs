//! Login sessions over HTTP: login (opens one), refresh, fresh (step-up in the same session)
//! and logout. Only parsing and answering happens here; the session rules are `sessions/`'.

use http::{Request, Response};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::passwords::check_lengths;
use super::{token_json, Endpoints};
use crate::auth::authenticator::Accept;
use crate::error::ApiError;
use crate::server::context::RequestContext;
use crate::server::request_body::required;
use crate::server::response::Body;
use crate::sessions::Issued;

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

impl Endpoints {
    /// `POST /auth/login`.
    pub(super) async fn login(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let creds: LoginBody = self.read_body(req).await?;
        let username = required(&creds.username, "username")?;
        let password = required(&creds.password, "password")?;
        check_lengths(username, password)?;
        let user = self.passwords.check(username, password, ctx.client).await?;
        answer(self.sessions.login(&user).await?)
    }

    /// `POST /auth/refresh`.
    pub(super) async fn refresh(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let identity = self.auth.require(req.headers(), Accept::Refresh)?;
        answer(self.sessions.refresh(&identity).await?)
    }

    /// `POST /auth/fresh`: a new fresh access token in the same session after a password check.
    pub(super) async fn fresh(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let identity = self.auth.require(req.headers(), Accept::AccessOrRefresh)?;
        let input: FreshBody = self.read_body(req).await?;
        let password = required(&input.password, "password")?;
        check_lengths("-", password)?;
        let user = self.sessions.live_user(identity.user_id).await?;
        self.passwords
            .check(&user.username, password, ctx.client)
            .await?;
        answer(self.sessions.step_up(&identity, &user).await?)
    }

    /// `POST /auth/logout`: revokes the whole session — its refresh token and every access
    /// token issued in it. Store commit, then memory, then the 200.
    pub(super) async fn logout(&self, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let identity = self.auth.require(req.headers(), Accept::AccessOrRefresh)?;
        self.sessions.logout(&identity).await?;
        super::message("Logged out.")
    }
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
