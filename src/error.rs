//! The one error type at the HTTP boundary, and the one function that renders it.
//!
//! Every error the gateway itself answers is JSON `{"error": CODE, "message": TEXT}` with the
//! status and code of docs/http-api.md §1; every 401 carries `WWW-Authenticate`. Details that could
//! help an attacker (which check failed, store errors) go to the log, never into the body.
//! A gRPC call refused on the proxied side gets the same error the gRPC way instead
//! ([`ApiError::into_grpc_response`], §7.1): same headers, a status mapped to gRPC's.

use std::borrow::Cow;

use http::header::{
    HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::auth::error::AuthError;
use crate::auth::password::HashError;
use crate::auth::policy::Refusal;
use crate::auth::tokens::IssueError;
use crate::server::response::{full, Body};
use crate::sessions::SessionError;
use crate::store::StoreError;

/// The JSON body of every error answer.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

/// An error answered by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: malformed body, missing or blank field, bad path, several credentials.
    InvalidRequest(Cow<'static, str>),
    /// 401: no bearer token where one is needed.
    MissingToken,
    /// 401: `exp` has passed beyond the leeway.
    TokenExpired,
    /// 401: bad signature, malformed, wrong claims or type. The reason is for logs only.
    InvalidToken(&'static str),
    /// 401: the token's `jti`, session or user is revoked.
    TokenRevoked,
    /// 401: the route needs a fresh token (RFC 9470 step-up), optionally within `max_age` seconds.
    FreshTokenRequired {
        /// The route's `fresh_max_age` in seconds, when it has one.
        max_age: Option<u64>,
    },
    /// 401: unknown user or wrong password, alike in every way.
    InvalidCredentials,
    /// 403: the token lacks a role the route requires.
    Forbidden,
    /// 403: registration is switched off.
    RegistrationDisabled,
    /// 403: a cookie-authenticated unsafe request without the matching `X-CSRF-TOKEN`, or a
    /// sign-in page post from a foreign `Origin` (login CSRF).
    CsrfFailed,
    /// 403: a CORS preflight from an origin, or for a method, that is not allowed.
    CorsForbidden,
    /// 403 `forbidden`: a peer outside `[forward_auth] allowed_peers` asked for a decision.
    PeerNotAllowed,
    /// 403 with the code and message of the refusal inside: the forward-auth endpoint answers
    /// what would be a 400 or a 405 elsewhere this way (front proxies treat any status but
    /// 200, 401 and 403 as their own error), keeping the code (docs/http-api.md §7.3).
    AsForbidden(Box<ApiError>),
    /// 404: no route or endpoint.
    NotFound,
    /// 405: the path exists but not for this method; `allow` lists the methods that do.
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: HeaderValue,
    },
    /// 408: a request body moved no byte for too long: an auth endpoint's for `body_timeout`,
    /// a proxied one's for the route's `idle_timeout` before any answer began.
    RequestTimeout,
    /// 409: the username exists (case-insensitively).
    UsernameTaken,
    /// 413: body over `max_body`.
    PayloadTooLarge,
    /// 414: request-target over 8 KiB.
    UriTooLong,
    /// 431: header section over `max_header_bytes` or `max_headers`; the message says which.
    HeadersTooLarge(&'static str),
    /// 415: body neither JSON nor form-urlencoded.
    UnsupportedMediaType,
    /// 429: too many failed logins; retry after this many seconds.
    RateLimited {
        /// Seconds until the window passes.
        retry_after: u64,
    },
    /// 502: upstream refused, reset or sent garbage.
    BadGateway,
    /// 503: draining for shutdown or overloaded.
    Unavailable {
        /// Seconds the client should wait.
        retry_after: u64,
        /// Ask the client to close the connection (draining).
        close: bool,
    },
    /// 504: upstream did not answer in time.
    GatewayTimeout,
    /// 500: anything else; the detail is logged where it happened.
    Internal,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::MissingToken
            | Self::TokenExpired
            | Self::InvalidToken(_)
            | Self::TokenRevoked
            | Self::FreshTokenRequired { .. }
            | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden
            | Self::RegistrationDisabled
            | Self::CsrfFailed
            | Self::CorsForbidden
            | Self::PeerNotAllowed
            | Self::AsForbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UsernameTaken => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine code of docs/http-api.md §1.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::MissingToken => "missing_token",
            Self::TokenExpired => "token_expired",
            Self::InvalidToken(_) => "invalid_token",
            Self::TokenRevoked => "token_revoked",
            Self::FreshTokenRequired { .. } => "fresh_token_required",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden | Self::PeerNotAllowed => "forbidden",
            Self::RegistrationDisabled => "registration_disabled",
            Self::CsrfFailed => "csrf_failed",
            Self::CorsForbidden => "cors_forbidden",
            Self::AsForbidden(inner) => inner.code(),
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::UsernameTaken => "username_taken",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge(_) => "headers_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::BadGateway => "bad_gateway",
            Self::Unavailable { .. } => "unavailable",
            Self::GatewayTimeout => "gateway_timeout",
            Self::Internal => "internal",
        }
    }

    /// The human message of the body. Every `invalid_token` cause shares one message so the
    /// body is no oracle for which check failed.
    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::InvalidRequest(m) => return m.clone(),
            Self::AsForbidden(inner) => return inner.message(),
            Self::MissingToken => "A bearer token is required.",
            Self::TokenExpired => "Token has expired.",
            Self::InvalidToken(_) => "Token is invalid.",
            Self::TokenRevoked => "Token has been revoked.",
            Self::FreshTokenRequired { .. } => "A fresh token is required: authenticate again.",
            Self::InvalidCredentials => "Invalid username or password.",
            Self::Forbidden => "The token lacks a required role.",
            Self::RegistrationDisabled => "Registration is disabled.",
            Self::CsrfFailed => {
                "The CSRF check failed: send the csrf cookie's value in X-CSRF-TOKEN."
            }
            Self::CorsForbidden => "This cross-origin request is not allowed.",
            Self::PeerNotAllowed => "This address may not ask for forward-auth decisions.",
            Self::NotFound => "Not found.",
            Self::MethodNotAllowed { .. } => "Method not allowed.",
            Self::RequestTimeout => "The request body stopped arriving.",
            Self::UsernameTaken => "That username is taken.",
            Self::PayloadTooLarge => "Request body is too large.",
            Self::UriTooLong => "The request-target is longer than 8 KiB.",
            Self::HeadersTooLarge(m) => m,
            Self::UnsupportedMediaType => {
                "Body must be application/json or application/x-www-form-urlencoded."
            }
            Self::RateLimited { .. } => "Too many failed attempts; try again later.",
            Self::BadGateway => "The upstream service failed.",
            Self::Unavailable { .. } => "The gateway is unavailable; try again later.",
            Self::GatewayTimeout => "The upstream service did not answer in time.",
            Self::Internal => "Internal error.",
        })
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750, RFC 9470), `None` for other statuses.
    /// Every fixed challenge is a constant: under a flood of bad tokens 401s are the hot path.
    pub fn challenge(&self) -> Option<Cow<'static, str>> {
        const REALM: &str = "Bearer realm=\"authgate\"";
        const EXPIRED: &str = "Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\"Token has expired.\"";
        const INVALID: &str = "Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\"Token is invalid.\"";
        const REVOKED: &str = "Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\"Token has been revoked.\"";
        const STEP_UP: &str = "Bearer realm=\"authgate\", error=\"insufficient_user_authentication\", error_description=\"A fresh token is required: authenticate again.\"";
        Some(match self {
            Self::MissingToken | Self::InvalidCredentials => Cow::Borrowed(REALM),
            Self::TokenExpired => Cow::Borrowed(EXPIRED),
            Self::InvalidToken(_) => Cow::Borrowed(INVALID),
            Self::TokenRevoked => Cow::Borrowed(REVOKED),
            Self::FreshTokenRequired { max_age: None } => Cow::Borrowed(STEP_UP),
            Self::FreshTokenRequired { max_age: Some(age) } => {
                Cow::Owned(format!("{STEP_UP}, max_age={age}"))
            }
            _ => return None,
        })
    }

    /// Renders the error as the JSON response of docs/http-api.md §1: the one place that does.
    /// The response carries its [`ErrorCode`] for the access log and metrics.
    pub fn into_response(self) -> Response<Body> {
        let body = ErrorBody {
            error: self.code(),
            message: &self.message(),
        };
        // Two plain strings always serialise; the fallback only keeps this panic-free.
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = Response::new(full(bytes));
        *res.status_mut() = self.status();
        res.extensions_mut().insert(ErrorCode(self.code()));
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.add_headers(headers);
        res
    }

    /// The headers every rendering of this error carries, whatever its body: the
    /// `WWW-Authenticate` challenge of a 401, `Allow`, `Retry-After`, `Connection: close`.
    pub fn add_headers(&self, headers: &mut http::HeaderMap) {
        match self.challenge() {
            Some(Cow::Borrowed(c)) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(c));
            }
            Some(Cow::Owned(c)) => {
                if let Ok(v) = HeaderValue::try_from(c) {
                    headers.insert(WWW_AUTHENTICATE, v);
                }
            }
            None => {}
        }
        match self {
            Self::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, allow.clone());
            }
            Self::RateLimited { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from((*retry_after).max(1)));
            }
            Self::Unavailable { retry_after, close } => {
                headers.insert(RETRY_AFTER, HeaderValue::from((*retry_after).max(1)));
                if *close {
                    headers.insert(CONNECTION, HeaderValue::from_static("close"));
                }
            }
            // Where the stalled body stands is unknown: the connection cannot be reused.
            Self::RequestTimeout => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
    }
}

/// The body of a token error in the flask-jwt-extended format.
#[derive(serde::Serialize)]
struct FlaskBody<'a> {
    msg: &'a str,
}

impl ApiError {
    /// Status and `msg` of a token error the way flask-jwt-extended answers it (docs/http-api.md
    /// §7.5): 401 for a missing, expired or revoked token, fresh required and CSRF failure;
    /// 422 for a malformed token, a bad signature, a wrong type, `iss`/`aud` or a token not
    /// yet valid. `None` for every other error, which keeps §1.
    pub fn flask_answer(&self) -> Option<(StatusCode, &'static str)> {
        use crate::auth::legacy::{PAST_ACCEPT_UNTIL, UNKNOWN_USER};
        const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
        Some(match self {
            Self::MissingToken => (UNAUTHORIZED, "Missing Authorization Header"),
            Self::TokenExpired => (UNAUTHORIZED, "Token has expired"),
            Self::TokenRevoked => (UNAUTHORIZED, "Token has been revoked"),
            Self::FreshTokenRequired { .. } => (UNAUTHORIZED, "Fresh token required"),
            Self::CsrfFailed => (UNAUTHORIZED, "CSRF double submit tokens do not match"),
            // Not a flaw of the token itself: the user it names, or the window to accept it.
            Self::InvalidToken(reason) if *reason == UNKNOWN_USER => {
                (UNAUTHORIZED, "Error loading the user")
            }
            Self::InvalidToken(reason) if *reason == PAST_ACCEPT_UNTIL => {
                (UNAUTHORIZED, "Token is no longer accepted")
            }
            Self::InvalidToken(reason) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                match *reason {
                    "bad signature" => "Signature verification failed",
                    "nbf in the future" => "The token is not yet valid (nbf)",
                    "wrong iss" => "Invalid issuer",
                    "wrong or unexpected aud" => "Invalid audience",
                    "wrong token type" => "Wrong token type",
                    _ => "Invalid token",
                },
            ),
            _ => return None,
        })
    }

    /// Renders the error as flask-jwt-extended would (`{"msg": ...}`) when it is a token
    /// error, else as §1. The 401s keep their `WWW-Authenticate`.
    pub fn into_flask_response(self) -> Response<Body> {
        let Some((status, msg)) = self.flask_answer() else {
            return self.into_response();
        };
        let bytes = serde_json::to_vec(&FlaskBody { msg }).unwrap_or_default();
        let mut res = Response::new(full(bytes));
        *res.status_mut() = status;
        res.extensions_mut().insert(ErrorCode(self.code()));
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::UNAUTHORIZED {
            self.add_headers(headers);
            // A CSRF failure is a 403 in §1, without a challenge; as a 401 it needs one.
            headers
                .entry(WWW_AUTHENTICATE)
                .or_insert(HeaderValue::from_static("Bearer realm=\"authgate\""));
        }
        res
    }
}

/// The §1 code of an error answer, kept in the response's extensions: the access log and the
/// metrics read it from there, so a handler that renders an error its own way (the sign-in
/// page's HTML, a logout answer with its cookies cleared) still counts as that error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// `grpc-status`.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// What gRPC's `grpc-message` percent-encodes: controls, `%` and (always) non-ASCII.
const GRPC_MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

impl ApiError {
    /// The gRPC status code of this refusal (docs/http-api.md §7.1): 401 → 16 UNAUTHENTICATED,
    /// 403 → 7 PERMISSION_DENIED, 404 → 12 UNIMPLEMENTED, 429 → 8 RESOURCE_EXHAUSTED, 502 and
    /// 503 → 14 UNAVAILABLE, 504 → 4 DEADLINE_EXCEEDED, anything else → 13 INTERNAL.
    pub fn grpc_status(&self) -> u8 {
        match self.status().as_u16() {
            401 => 16,
            403 => 7,
            404 => 12,
            429 => 8,
            502 | 503 => 14,
            504 => 4,
            _ => 13,
        }
    }

    /// Renders the error as a gRPC trailers-only answer: HTTP 200, `content-type:
    /// application/grpc`, `grpc-status` and `grpc-message` in the one header block that ends
    /// the stream, and the headers of the JSON answer (`WWW-Authenticate`, `Allow`,
    /// `Retry-After`) kept.
    pub fn into_grpc_response(self) -> Response<Body> {
        let status = self.grpc_status();
        let message = self.message();
        let message = utf8_percent_encode(&message, GRPC_MESSAGE_ESCAPES).to_string();
        let (mut parts, _json) = self.into_response().into_parts();
        parts.status = StatusCode::OK;
        let headers = &mut parts.headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(status)));
        if let Ok(message) = HeaderValue::try_from(message) {
            headers.insert(GRPC_MESSAGE, message);
        }
        // An empty body: hyper ends the stream with the header block (trailers-only).
        Response::from_parts(parts, full(bytes::Bytes::new()))
    }
}

/// The §1 answer of each authentication and authorisation refusal.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::MissingToken => ApiError::MissingToken,
            AuthError::MultipleCredentials => {
                ApiError::InvalidRequest("send exactly one bearer credential".into())
            }
            AuthError::MalformedCredential => {
                ApiError::InvalidRequest("the Authorization header is malformed".into())
            }
            AuthError::Expired => ApiError::TokenExpired,
            AuthError::Invalid(reason) => ApiError::InvalidToken(reason),
            AuthError::Revoked => ApiError::TokenRevoked,
            AuthError::FreshRequired { max_age } => ApiError::FreshTokenRequired { max_age },
            AuthError::Forbidden => ApiError::Forbidden,
            AuthError::CsrfFailed => ApiError::CsrfFailed,
            AuthError::Unavailable => ApiError::Unavailable {
                retry_after: 1,
                close: false,
            },
        }
    }
}

/// A route policy's refusal: its auth error, or `405` with the route's `Allow`.
impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::Auth(e) => e.into(),
            Refusal::Method { allow } => ApiError::MethodNotAllowed { allow },
        }
    }
}

/// Store failures are logged here, once, and answered opaquely.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => ApiError::UsernameTaken,
            // A login that raced `authgate user disable`: answered as a wrong password.
            StoreError::UserDisabled => ApiError::InvalidCredentials,
            StoreError::Busy => {
                tracing::warn!("store busy");
                ApiError::Unavailable {
                    retry_after: 1,
                    close: false,
                }
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                ApiError::Unavailable {
                    retry_after: 1,
                    close: false,
                }
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal
            }
        }
    }
}

/// A full hashing queue is `503` with `Retry-After`, so a login storm sheds load; a hashing
/// failure is logged here and answered `internal`.
impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => ApiError::Unavailable {
                retry_after: 1,
                close: false,
            },
            HashError::Internal(detail) => {
                tracing::error!(error = %detail, "password hashing failed");
                ApiError::Internal
            }
        }
    }
}

/// A token the gateway cannot issue is its own fault: logged here, answered `internal`.
impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        tracing::error!(error = %e, "cannot issue a token");
        ApiError::Internal
    }
}

/// A session operation's failure, by its cause.
impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Auth(e) => e.into(),
            SessionError::Store(e) => e.into(),
            SessionError::Issue(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_401_carries_a_bearer_challenge() {
        for e in [
            ApiError::MissingToken,
            ApiError::TokenExpired,
            ApiError::InvalidToken("x"),
            ApiError::TokenRevoked,
            ApiError::FreshTokenRequired { max_age: None },
            ApiError::InvalidCredentials,
        ] {
            let res = e.into_response();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            let c = res.headers()[WWW_AUTHENTICATE].to_str().unwrap_or_default();
            assert!(c.starts_with("Bearer realm=\"authgate\""), "{c}");
        }
    }

    #[test]
    fn step_up_challenge_has_bare_integer_max_age() {
        let c = ApiError::FreshTokenRequired { max_age: Some(300) }
            .challenge()
            .unwrap_or_default();
        assert!(c.contains("error=\"insufficient_user_authentication\""));
        assert!(c.ends_with(", max_age=300"), "{c}");
    }

    #[test]
    fn challenges_describe_the_error_with_its_body_message() {
        for e in [
            ApiError::TokenExpired,
            ApiError::InvalidToken("x"),
            ApiError::TokenRevoked,
            ApiError::FreshTokenRequired { max_age: None },
            ApiError::FreshTokenRequired { max_age: Some(5) },
        ] {
            let c = e.challenge().unwrap_or_default();
            let description = format!("error_description=\"{}\"", e.message());
            assert!(c.contains(&description), "{c}");
        }
    }

    #[test]
    fn missing_token_challenge_has_no_error_parameter() {
        assert_eq!(
            ApiError::MissingToken.challenge().as_deref(),
            Some("Bearer realm=\"authgate\"")
        );
    }

    #[test]
    fn grpc_answers_map_statuses_and_keep_the_challenge() {
        use http_body::Body as _;
        let cases = [
            (ApiError::MissingToken, 16),
            (ApiError::TokenRevoked, 16),
            (ApiError::Forbidden, 7),
            (ApiError::NotFound, 12),
            (ApiError::RateLimited { retry_after: 3 }, 8),
            (ApiError::BadGateway, 14),
            (
                ApiError::Unavailable {
                    retry_after: 1,
                    close: false,
                },
                14,
            ),
            (ApiError::GatewayTimeout, 4),
            (ApiError::InvalidRequest("x".into()), 13),
            (
                ApiError::MethodNotAllowed {
                    allow: HeaderValue::from_static("GET"),
                },
                13,
            ),
            (ApiError::Internal, 13),
        ];
        for (e, code) in cases {
            let challenge = e.challenge();
            let res = e.into_grpc_response();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
            assert_eq!(res.headers()["grpc-status"], code.to_string().as_str());
            assert!(res.headers().contains_key("grpc-message"));
            assert!(res.body().is_end_stream(), "trailers-only: no body");
            assert_eq!(
                res.headers()
                    .get(WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap_or_default().to_owned()),
                challenge.map(|c| c.into_owned())
            );
        }
        let res = ApiError::InvalidRequest("100% über".into()).into_grpc_response();
        assert_eq!(res.headers()["grpc-message"], "100%25 %C3%BCber");
    }

    #[test]
    fn the_flask_format_answers_token_errors_with_msg_and_its_statuses() {
        let cases = [
            (ApiError::MissingToken, 401),
            (ApiError::TokenExpired, 401),
            (ApiError::TokenRevoked, 401),
            (ApiError::FreshTokenRequired { max_age: None }, 401),
            (ApiError::CsrfFailed, 401),
            (ApiError::InvalidToken("bad signature"), 422),
            (ApiError::InvalidToken("wrong token type"), 422),
            (ApiError::InvalidToken("malformed token"), 422),
        ];
        for (e, status) in cases {
            let res = e.into_flask_response();
            assert_eq!(res.status().as_u16(), status);
            assert_eq!(
                res.headers().contains_key(WWW_AUTHENTICATE),
                status == 401,
                "{res:?}"
            );
        }
        assert_eq!(
            ApiError::Forbidden.into_flask_response().status(),
            StatusCode::FORBIDDEN,
            "other errors keep §1"
        );
    }

    #[test]
    fn invalid_token_reason_never_reaches_the_body() {
        let a = ApiError::InvalidToken("bad signature");
        let b = ApiError::InvalidToken("wrong issuer");
        assert_eq!(a.message(), b.message());
        assert_eq!(a.challenge(), b.challenge());
    }
}
