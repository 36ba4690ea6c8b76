//! The auth layer: password hashing, account input rules, revocation checks and login limiting.

pub mod accounts_rules;
pub mod limiter;
pub mod password;
pub mod revocation;
