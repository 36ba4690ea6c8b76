//! authgate: an authentication gateway in front of HTTP services.
//!
//! The binary in `main.rs` only parses the command line; everything else lives here so that
//! integration tests drive the same code the binary runs.

pub mod auth;
pub mod config;
pub mod store;
