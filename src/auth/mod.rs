//! Authentication logic with no I/O on the request path: keys, claims, token issue and
//! verification, `Authorization` header parsing.

pub mod bearer;
pub mod claims;
pub mod keys;
pub mod tokens;
