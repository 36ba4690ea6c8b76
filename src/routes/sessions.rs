//! Login sessions over HTTP: login (opens one; from the API or from the sign-in page),
//! refresh, fresh (step-up in the same session) and logout. Only parsing and answering happens
//! here; the session rules are `sessions/`', the browser rules `signin.rs`'.

use http::header::ORIGIN;
use http::{Request, Response};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::passwords::check_lengths;
use super::signin::shown_on_page;
use super::{token_json, Endpoints};
use crate::auth::authenticator::Accept;
use crate::error::ApiError;
use crate::origin::request_host;
use crate::server::context::RequestContext;
use crate::server::request_body::{is_form, required};
use crate::server::response::Body;
use crate::sessions::Issued;
use crate::store::User;

/// Body of `POST /auth/login`; `rd` only in the sign-in page's posts. No `Debug`: it holds a
/// password.
#[derive(Deserialize)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    rd: Option<String>,
}

/// The query of `GET /auth/login` (the sign-in page).
#[derive(Deserialize)]
struct PageQuery {
    rd: Option<String>,
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
    /// `POST /auth/login`. With cookies enabled, a form post carrying `rd` is the sign-in
    /// page's: its `Origin` is checked first (login CSRF), success is a `303` to `rd` with
    /// the cookies set, and a failed sign-in is the page again with a message.
    pub(super) async fn login(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let form = is_form(req.headers());
        let origin = req.headers().get(ORIGIN).cloned();
        let host = request_host(req.uri(), req.headers()).map(str::to_owned);
        let creds: LoginBody = self.read_body(req).await?;
        if let (Some(browser), true, Some(rd)) = (&self.browser, form, creds.rd.as_deref()) {
            browser.check_origin(origin.as_ref(), host.as_deref())?;
            return match self.check_login(&creds, ctx).await {
                Ok(user) => Ok(browser.signed_in(rd, &self.sessions.login(&user).await?)),
                Err(e) if shown_on_page(&e) => Ok(browser.page(rd, Some(&e))),
                Err(e) => Err(e),
            };
        }
        let user = self.check_login(&creds, ctx).await?;
        self.answer(self.sessions.login(&user).await?)
    }

    /// The user whose username and password `creds` holds.
    async fn check_login(&self, creds: &LoginBody, ctx: &RequestContext) -> Result<User, ApiError> {
        let username = required(&creds.username, "username")?;
        let password = required(&creds.password, "password")?;
        check_lengths(username, password)?;
        self.passwords.check(username, password, ctx.client).await
    }

    /// `GET /auth/login` from a browser (cookies enabled): the sign-in page, which posts
    /// back the `rd` of its query.
    pub(super) fn sign_in_page<B>(&self, req: &Request<B>) -> Result<Response<Body>, ApiError> {
        let Some(browser) = &self.browser else {
            return Err(ApiError::NotFound);
        };
        let query: Option<PageQuery> = req
            .uri()
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok());
        let rd = query.and_then(|q| q.rd).unwrap_or_default();
        Ok(browser.page(&rd, None))
    }

    /// `POST /auth/refresh`.
    pub(super) async fn refresh(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let identity = self
            .auth
            .require(req.headers(), req.method(), Accept::Refresh)?;
        self.answer(self.sessions.refresh(&identity).await?)
    }

    /// `POST /auth/fresh`: a new fresh access token in the same session after a password check.
    pub(super) async fn fresh(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let identity = self
            .auth
            .require(req.headers(), req.method(), Accept::AccessOrRefresh)?;
        let input: FreshBody = self.read_body(req).await?;
        let password = required(&input.password, "password")?;
        check_lengths("-", password)?;
        let user = self.sessions.live_user(identity.user_id).await?;
        self.passwords
            .check(&user.username, password, ctx.client)
            .await?;
        self.answer(self.sessions.step_up(&identity, &user).await?)
    }

    /// `POST /auth/logout`: revokes the whole session — its refresh token and every access
    /// token issued in it. Store commit, then memory, then the 200.
    pub(super) async fn logout(&self, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let identity = self
            .auth
            .require(req.headers(), req.method(), Accept::AccessOrRefresh)?;
        self.sessions.logout(&identity).await?;
        super::message("Logged out.")
    }
}

/// Answer of login, refresh and step-up with `tokens_in_body = false` (cookies only).
#[derive(Serialize)]
struct CookieAnswer {
    expires_in: u64,
}

impl Endpoints {
    /// The token answer of login, refresh and step-up: the tokens in the JSON (unless
    /// `tokens_in_body = false`) and, with cookies enabled, in cookies.
    fn answer(&self, issued: Issued) -> Result<Response<Body>, ApiError> {
        let in_body = self.browser.as_ref().is_none_or(|b| b.tokens_in_body());
        let mut res = if in_body {
            token_json(&TokenAnswer {
                access_token: issued.access_token.clone(),
                refresh_token: issued.refresh_token.clone(),
                token_type: "Bearer",
                expires_in: issued.expires_in,
            })?
        } else {
            token_json(&CookieAnswer {
                expires_in: issued.expires_in,
            })?
        };
        if let Some(browser) = &self.browser {
            browser.set_cookies(res.headers_mut(), &issued);
        }
        Ok(res)
    }
}
