//! authgate: an authentication gateway in front of HTTP services.
//!
//! The binary in `main.rs` only parses the command line; everything else lives here so that
//! integration tests drive the same code the binary runs. The way a request travels:
//! `server` accepts and speaks HTTP, `gateway` is the per-request line (request id, access
//! log, errors to responses), `routes` serves the account endpoints, `proxy` routes, checks
//! (through `auth`) and forwards, `store` keeps users, sessions and the revocation log.

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod echo;
pub mod error;
pub mod gateway;
pub mod metrics;
pub mod operator;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod sessions;
mod signals;
pub mod store;
pub mod telemetry;
