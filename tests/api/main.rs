//! Integration tests: the real server on port 0, real upstreams, real SQLite files (and
//! PostgreSQL databases for several replicas), real HTTP clients. One binary, one file per
//! behaviour area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod browsers;
mod catalogue_accounts;
mod catalogue_gaps;
mod catalogue_http;
mod catalogue_lockout;
mod catalogue_logs;
mod catalogue_tokens;
mod chromium;
mod demo;
mod grpc;
// The echo upstream, the oracle of what the gateway forwards: the demo's own file, compiled
// into this test binary (the library does not export it).
#[path = "../../src/cli/echo_upstream.rs"]
mod echo;
mod examples;
mod faults;
mod flask;
mod forward_auth;
mod front_proxy;
mod helpers;
mod lifecycle;
mod limits;
mod memory;
mod openapi;
mod operations;
mod packaging;
mod parking;
#[path = "../support/postgres.rs"]
mod pg;
mod protocols;
mod proxy;
mod replicas;
mod server;
mod sessions;
mod slow_clients;
mod telemetry;
mod tools;
mod webdriver;
mod websocket_close;
