//! The store: users, login sessions and the revocation log.
//!
//! All SQL lives below this module and runs off the async reactor threads.

mod model;

pub use model::*;
