//! Proxying: everything between a matched request and the upstream.
//!
//! `path` gives the one canonical path both routing and forwarding use; `router` is the
//! compiled route table (built once per config, swapped whole on reload); `headers` rewrites
//! request and response headers in the order HTTP-API.md §6 fixes.

pub mod headers;
pub mod path;
pub mod router;
