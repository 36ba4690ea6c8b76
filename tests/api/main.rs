//! Integration tests: the real server on port 0, real upstreams, real SQLite files, real
//! HTTP clients. One binary, one file per behaviour area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod demo;
mod helpers;
mod lifecycle;
mod proxy;
mod server;
mod sessions;
mod tools;
