//! Store tests: the conformance suite every `Store` implementation passes (`conformance.rs`,
//! written once) and one module per implementation that runs it and adds what only that
//! backend has. Real databases: SQLite files in temp dirs, and a PostgreSQL database per test
//! on the server `scripts/test` provides.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod conformance;
#[path = "../support/postgres.rs"]
mod pg;
mod postgres;
mod sqlite;
