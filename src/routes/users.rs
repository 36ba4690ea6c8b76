//! Operator resources: `GET`/`DELETE /auth/users/{id}` for holders of the `admin` role (read
//! from the token, never the store), and the JWK Set.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::accounts::AccountView;
use super::{json, Endpoints};
use crate::auth::policy::require_roles;
use crate::error::ApiError;
use crate::server::response::Body;

/// The role `/auth/users/{id}` requires.
const ADMIN_ROLE: &str = "admin";

/// How long verifiers may cache the JWK Set. Short enough that a key added to `verify_keys`
/// ahead of a rotation reaches every verifier within minutes; a verifier meeting an unknown
/// `kid` should fetch the set again anyway.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

impl Endpoints {
    /// `GET` or `DELETE /auth/users/{id}`; `id` is `None` when it does not fit an integer.
    pub(super) async fn user(
        &self,
        req: &Request<Incoming>,
        method: Method,
        id: Option<i64>,
    ) -> Result<Response<Body>, ApiError> {
        let identity = self.access_identity(req)?;
        require_roles(&identity, &[ADMIN_ROLE.to_owned()])?;
        let id = id.ok_or(ApiError::NotFound)?;
        if method == Method::DELETE {
            if !self.sessions.delete_user(id).await? {
                return Err(ApiError::NotFound);
            }
            return super::message("User deleted.");
        }
        let user = self.store.user_by_id(id).await?.ok_or(ApiError::NotFound)?;
        json(StatusCode::OK, &AccountView::of(&user))
    }

    /// `GET /auth/jwks.json`: the verification keys for upstreams that check tokens
    /// themselves; 404 under HS256, whose secret is never published.
    pub(super) fn jwks(&self) -> Result<Response<Body>, ApiError> {
        match self.tokens.jwks() {
            Some(set) => {
                let mut res = json(StatusCode::OK, &*set)?;
                res.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static(JWKS_CACHE_CONTROL),
                );
                Ok(res)
            }
            None => Err(ApiError::NotFound),
        }
    }
}
