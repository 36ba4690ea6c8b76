//! Configuration: the TOML file of CONFIG.md, read, checked and turned into typed values.
//!
//! `types` holds the validated shapes the rest of the gateway reads; `error` the one error
//! type naming file, key path, value and reason.

mod error;
mod types;

pub use error::ConfigError;
pub use types::*;
