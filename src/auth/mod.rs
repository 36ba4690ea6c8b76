//! Authentication with no I/O on the request path, and no HTTP server: the [`Authenticator`]
//! that turns request headers into an [`Identity`], the route policy that decides on it, and
//! what they stand on — keys, claims, token issue and verification, `Authorization` parsing,
//! the in-memory revocation index — plus login limiting and password hashing (on the
//! blocking pool) for the account endpoints.
//!
//! [`Authenticator`]: authenticator::Authenticator
//! [`Identity`]: identity::Identity

pub mod accounts_rules;
pub mod authenticator;
pub mod bearer;
pub mod claims;
pub mod cookies;
pub mod error;
pub mod hash_formats;
pub mod identity;
pub mod keys;
pub mod legacy;
pub mod limiter;
pub mod password;
pub mod policy;
pub mod revocation;
pub mod tokens;
pub mod verified_cache;
