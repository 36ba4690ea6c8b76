//! The endpoints the gateway serves itself under the auth prefix (docs/http-api.md §3): one file
//! per resource, each handler a method of [`Endpoints`]. Unknown paths answer 404 and wrong
//! methods 405 before any token is read. The forward-auth decision endpoint (`verify.rs`,
//! §7.3) is its own [`ForwardAuth`], built only when enabled: it takes any method and any
//! sub-path, and the route table of the request.
//!
//! The endpoints share the authenticator, the token service and the store with the proxy,
//! own the session domain, the password checks (hasher and login limiter) and their settings,
//! and import nothing of the proxy's.

mod accounts;
mod passwords;
mod sessions;
mod signin;
mod users;
mod verify;

use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::authenticator::{Accept, Authenticator};
use crate::auth::identity::Identity;
use crate::auth::tokens::TokenService;
use crate::clock::Clock;
use crate::config::CookieConfig;
use crate::error::ApiError;
use crate::server::context::RequestContext;
use crate::server::request_body;
use crate::server::response::{close_connection, full, Body};
use crate::sessions::Sessions;
use crate::store::Store;
use crate::telemetry;
pub use passwords::Passwords;
use signin::Browser;
pub use verify::{original_request, DecisionTable, ForwardAuth, VERIFY_PATH};

/// The settings of `[auth]` and `[server]` the endpoints read (fixed until a restart).
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    /// The auth prefix (`/auth`): the refresh cookie's Path, the sign-in form's action.
    pub prefix: String,
    /// `[auth.cookies]`: tokens in cookies, the sign-in page.
    pub cookies: CookieConfig,
    /// Whether `POST {prefix}/register` is open.
    pub allow_registration: bool,
    /// Shortest accepted password, in Unicode scalar values.
    pub min_password_length: usize,
    /// Usernames refused at registration (lowercase).
    pub reserved_usernames: Vec<String>,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// Longest wait for the next piece of a request body (`408` beyond).
    pub body_timeout: std::time::Duration,
}

/// The account endpoints and what they use; built once.
pub struct Endpoints {
    auth: Arc<Authenticator>,
    tokens: Arc<TokenService>,
    store: Arc<dyn Store>,
    sessions: Sessions,
    passwords: Passwords,
    settings: EndpointSettings,
    /// Cookies and the sign-in page; `None` while cookies are disabled.
    browser: Option<Browser>,
    clock: Clock,
}

/// One endpoint under the prefix: which handler, and which methods it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Register,
    Login,
    Refresh,
    Fresh,
    Logout,
    Me,
    Password,
    User,
    Jwks,
}

impl Endpoint {
    fn find(sub_path: &str) -> Option<(Endpoint, Option<&str>)> {
        let e = match sub_path {
            "/register" => Self::Register,
            "/login" => Self::Login,
            "/refresh" => Self::Refresh,
            "/fresh" => Self::Fresh,
            "/logout" => Self::Logout,
            "/me" => Self::Me,
            "/password" => Self::Password,
            "/jwks.json" => Self::Jwks,
            _ => {
                let id = sub_path.strip_prefix("/users/")?;
                // A non-numeric (or nested) id is simply not a resource: 404.
                return (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                    .then_some((Self::User, Some(id)));
            }
        };
        Some((e, None))
    }

    fn allow(self) -> &'static str {
        match self {
            Self::Register | Self::Login | Self::Refresh | Self::Fresh | Self::Logout => "POST",
            Self::Me | Self::User => "GET, DELETE",
            Self::Password => "PUT",
            Self::Jwks => "GET",
        }
    }

    /// Whether the endpoint reads a request body (the others ignore any body).
    fn reads_body(self) -> bool {
        matches!(
            self,
            Self::Register | Self::Login | Self::Fresh | Self::Password
        )
    }

    fn name(self) -> &'static str {
        match self {
            Self::Register => "auth:register",
            Self::Login => "auth:login",
            Self::Refresh => "auth:refresh",
            Self::Fresh => "auth:fresh",
            Self::Logout => "auth:logout",
            Self::Me => "auth:me",
            Self::Password => "auth:password",
            Self::User => "auth:users",
            Self::Jwks => "auth:jwks",
        }
    }
}

impl Endpoints {
    /// The endpoints over the shared `auth`, `tokens` and `store`, with their own session
    /// domain, password checks and settings.
    pub fn new(
        auth: Arc<Authenticator>,
        tokens: Arc<TokenService>,
        store: Arc<dyn Store>,
        sessions: Sessions,
        passwords: Passwords,
        settings: EndpointSettings,
        clock: Clock,
    ) -> Self {
        let browser = Browser::new(&settings.cookies, &settings.prefix);
        Self {
            auth,
            tokens,
            store,
            sessions,
            passwords,
            settings,
            browser,
            clock,
        }
    }

    /// Serves `sub_path` (the normalised path below the auth prefix). Returns the result and
    /// the endpoint's name for the access log.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
        sub_path: &str,
    ) -> (Result<Response<Body>, ApiError>, &'static str) {
        let has_body = req.version() < http::Version::HTTP_2 && !req.body().is_end_stream();
        let Some((endpoint, id)) = Endpoint::find(sub_path) else {
            return (Err(ApiError::NotFound), "auth:-");
        };
        telemetry::record_route(endpoint.name());
        let mut result = self.serve(req, ctx, endpoint, id).await;
        if let (Endpoint::Logout, Some(browser)) = (endpoint, &self.browser) {
            // Every logout answer clears the cookies, a refusal included (§7.4): a browser
            // holding a revoked or broken session is signed out either way.
            let mut res = result.unwrap_or_else(ApiError::into_response);
            browser.clear_cookies(res.headers_mut());
            result = Ok(res);
        }
        // Error answers are closed by the public service when a body is left unread; a
        // success of an endpoint that ignores bodies leaves one unread too.
        if let Ok(res) = &mut result {
            if has_body && !endpoint.reads_body() {
                close_connection(res);
            }
        }
        (result, endpoint.name())
    }

    async fn serve(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
        endpoint: Endpoint,
        id: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let method = req.method().clone();
        match (endpoint, method) {
            (Endpoint::Register, Method::POST) => self.register(req, ctx).await,
            (Endpoint::Login, Method::POST) => self.login(req, ctx).await,
            (Endpoint::Login, Method::GET) if self.serves_page(&req) => self.sign_in_page(&req),
            (Endpoint::Refresh, Method::POST) => self.refresh(&req).await,
            (Endpoint::Fresh, Method::POST) => self.fresh(req, ctx).await,
            (Endpoint::Logout, Method::POST) => self.logout(&req).await,
            (Endpoint::Me, Method::GET) => self.me(&req).await,
            (Endpoint::Me, Method::DELETE) => self.delete_me(&req).await,
            (Endpoint::Password, Method::PUT) => self.change_password(req, ctx).await,
            (Endpoint::User, m @ (Method::GET | Method::DELETE)) => {
                let id = id.and_then(|s| s.parse::<i64>().ok());
                self.user(&req, m, id).await
            }
            (Endpoint::Jwks, Method::GET) => self.jwks(),
            _ => Err(ApiError::MethodNotAllowed {
                allow: HeaderValue::from_static(endpoint.allow()),
            }),
        }
    }

    /// The verified, unrevoked access-token identity of a request.
    fn access_identity<B>(&self, req: &Request<B>) -> Result<Identity, ApiError> {
        Ok(self
            .auth
            .require(req.headers(), req.method(), Accept::Access)?)
    }

    /// Whether a `GET` of the login endpoint gets the sign-in page: cookies enabled and an
    /// `Accept` that wants HTML (otherwise it stays a `405`).
    fn serves_page<B>(&self, req: &Request<B>) -> bool {
        self.browser.is_some() && crate::server::accept::wants_html(req.headers())
    }

    /// The request's body as `T` (JSON or form), at most `max_body` bytes, none of them more
    /// than `body_timeout` after the last.
    async fn read_body<T: DeserializeOwned>(&self, req: Request<Incoming>) -> Result<T, ApiError> {
        let (parts, body) = req.into_parts();
        let limits = request_body::BodyLimits {
            max_body: self.settings.max_body,
            timeout: self.settings.body_timeout,
        };
        request_body::read(&parts.headers, body, limits).await
    }
}

/// A JSON response.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, ApiError> {
    let bytes = serde_json::to_vec(value).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise a response");
        ApiError::Internal
    })?;
    let mut res = Response::new(full(bytes));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

/// A JSON response carrying tokens: never cached (RFC 6749 §5.1).
fn token_json<T: Serialize>(value: &T) -> Result<Response<Body>, ApiError> {
    let mut res = json(StatusCode::OK, value)?;
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `{"message": ...}` with 200.
fn message(text: &'static str) -> Result<Response<Body>, ApiError> {
    json(StatusCode::OK, &serde_json::json!({ "message": text }))
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn user_ids_must_be_numeric() {
        assert!(matches!(
            Endpoint::find("/users/12"),
            Some((Endpoint::User, Some("12")))
        ));
        assert!(Endpoint::find("/users/abc").is_none());
        assert!(Endpoint::find("/users/").is_none());
        assert!(Endpoint::find("/users/1/x").is_none());
    }

    #[test]
    fn unknown_paths_are_not_endpoints() {
        assert!(Endpoint::find("/nope").is_none());
        assert!(Endpoint::find("").is_none());
    }
}
