//! Authentication logic with no I/O on the request path: keys, claims, token issue and
//! verification, `Authorization` parsing, the in-memory revocation index, the one verify
//! function the proxy calls, login limiting, and password hashing (on the blocking pool).

pub mod accounts_rules;
pub mod bearer;
pub mod claims;
pub mod keys;
pub mod limiter;
pub mod password;
pub mod revocation;
pub mod tokens;
pub mod verify;
