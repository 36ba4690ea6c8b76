//! Operator resources: `GET`/`DELETE /auth/users/{id}` for holders of the `admin` role (read
//! from the token, never the store), and the JWK Set.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::accounts::{access_identity, AccountView};
use super::json;
use crate::app::AppState;
use crate::auth::policy::require_roles;
use crate::body::Body;
use crate::error::ApiError;

/// The role `/auth/users/{id}` requires.
const ADMIN_ROLE: &str = "admin";

/// `GET` or `DELETE /auth/users/{id}`; `id` is `None` when it does not fit an integer.
pub async fn handle(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
    method: Method,
    id: Option<i64>,
) -> Result<Response<Body>, ApiError> {
    let identity = access_identity(state, req)?;
    require_roles(&identity, &[ADMIN_ROLE.to_owned()])?;
    let id = id.ok_or(ApiError::NotFound)?;
    if method == Method::DELETE {
        if !state.sessions.delete_user(id).await? {
            return Err(ApiError::NotFound);
        }
        return super::message("User deleted.");
    }
    let user = state
        .store
        .user_by_id(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    json(StatusCode::OK, &AccountView::of(&user))
}

/// `GET /auth/jwks.json`: the verification keys for upstreams that check tokens themselves;
/// 404 under HS256, whose secret is never published.
pub fn jwks(state: &Arc<AppState>) -> Result<Response<Body>, ApiError> {
    match state.tokens.jwks() {
        Some(set) => json(StatusCode::OK, &set),
        None => Err(ApiError::NotFound),
    }
}
