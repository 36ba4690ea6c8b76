//! Password checks of the account endpoints: login, `/auth/fresh` and `PUT /auth/password`
//! all check a password here, under the failed-login limiter and on the bounded hashing pool.

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::accounts_rules::{MAX_PASSWORD_BYTES, MAX_USERNAME_CHARS};
use crate::auth::limiter::{Attempt, LimitError, LoginLimiter};
use crate::auth::password::PasswordHasher;
use crate::error::ApiError;
use crate::store::{Store, User, UserWithHash};

/// The store's password hashes, checked under the limiter.
pub struct Passwords {
    store: Arc<dyn Store>,
    hasher: PasswordHasher,
    limiter: LoginLimiter,
}

impl Passwords {
    /// Checks against `store` with `hasher`, counting failures in `limiter`.
    pub fn new(store: Arc<dyn Store>, hasher: PasswordHasher, limiter: LoginLimiter) -> Self {
        Self {
            store,
            hasher,
            limiter,
        }
    }

    /// Checks `password` against the stored hash of `username` and returns the user; counts
    /// the outcome for the login limiter against the name, the client address `client` and
    /// the pair. One argon2 verify whether or not the user exists (against a dummy hash when
    /// not): same answer, same store calls, same time. A disabled user is checked like an
    /// unknown one (against the dummy hash, padded to the same floor), so their right password
    /// is answered, timed and counted exactly like a wrong one.
    pub async fn check(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<User, ApiError> {
        // Reserved in the store in one atomic step: concurrent attempts, on any replica,
        // cannot exceed the budget.
        let attempt = self
            .limiter
            .begin(username, client)
            .await
            .map_err(|e| match e {
                LimitError::Limited { retry_after } => {
                    // Security events name the account and the address, never the password.
                    tracing::warn!(
                        username,
                        client = %client,
                        retry_after,
                        "password check refused: too many failures"
                    );
                    ApiError::RateLimited { retry_after }
                }
                LimitError::Store(e) => e.into(),
            })?;
        // The hasher's own unknown-user path covers disabled users too: a cheap imported hash
        // of a disabled account cannot answer faster than a wrong password.
        let found = (self.store.user_by_name(username).await?).filter(|u| !u.user.disabled);
        let hash = found.as_ref().map(|u| u.password_hash.as_str());
        let checked = self.hasher.check(password, hash).await?;
        match (checked.matched, found) {
            (true, Some(u)) => {
                attempt.succeeded().await;
                if checked.rehash {
                    self.rehash(&u, password).await;
                }
                Ok(u.user)
            }
            _ => {
                attempt.failed().await;
                tracing::warn!(username, client = %client, "password check failed");
                Err(ApiError::InvalidCredentials)
            }
        }
    }

    /// Admits one registration from `client` under `register_limit`, or `429`. The attempt
    /// counts once reported with [`Attempt::counted`], whatever the registration's answer.
    pub async fn begin_registration(&self, client: IpAddr) -> Result<Attempt, ApiError> {
        self.limiter
            .begin_registration(client)
            .await
            .map_err(|e| match e {
                LimitError::Limited { retry_after } => {
                    tracing::warn!(client = %client, retry_after, "registration refused: too many");
                    ApiError::RateLimited { retry_after }
                }
                LimitError::Store(e) => e.into(),
            })
    }

    /// Replaces `user`'s imported or outdated hash with argon2id of the configured parameters
    /// now that `password` is known to match it (docs/http-api.md §7.5). Only if the stored hash is
    /// still the one checked, so a concurrent password change wins. A failure is logged; the
    /// login it follows stands, and the next one tries again.
    async fn rehash(&self, user: &UserWithHash, password: &str) {
        let replaced = match self.hasher.hash(password).await {
            Ok(new_hash) => self
                .store
                .rehash_password(user.user.id, &user.password_hash, &new_hash)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match replaced {
            Ok(true) => tracing::info!(user_id = user.user.id, "password re-hashed with argon2id"),
            Ok(false) => {}
            Err(e) => tracing::warn!(user_id = user.user.id, error = %e, "re-hashing failed"),
        }
    }

    /// The argon2id hash of a new password (on the bounded pool).
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        Ok(self.hasher.hash(password).await?)
    }
}

/// Field lengths that are refused before any hashing (a 1 MB password never reaches argon2).
pub fn check_lengths(username: &str, password: &str) -> Result<(), ApiError> {
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
