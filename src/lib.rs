//! authgate: an authentication gateway in front of HTTP services.
//!
//! The binary in `main.rs` only parses the command line; everything else lives here so that
//! integration tests drive the same code the binary runs. The way a request travels:
//! `server` accepts and speaks HTTP; `app::gateway` is the per-request line (request id,
//! client address, access log, errors to responses); under the auth prefix `routes` serves the
//! account endpoints (with the `sessions` domain), everything else goes to `proxy`, which
//! routes, asks `auth` for an identity and a policy decision, and forwards. `store` keeps
//! users, sessions and the revocation log.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod origin;
pub mod path;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod sessions;
pub mod store;
pub mod telemetry;
