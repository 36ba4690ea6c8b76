//! PostgreSQL and pool errors as [`StoreError`]s: the one mapping, whose messages hold neither
//! SQL text nor a connection string.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// Maps a client error. Errors below the SQL level (connection refused or lost, I/O) and the
/// server's "going away" answers are [`StoreError::Unavailable`]; lost serialisation races
/// are [`StoreError::Busy`].
pub(super) fn map_err(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        return StoreError::Unavailable(with_causes(&e));
    };
    let code = db.code();
    // The message only: a DETAIL can quote row values.
    let text = format!("{} (SQLSTATE {})", db.message(), code.code());
    if code == &SqlState::T_R_SERIALIZATION_FAILURE || code == &SqlState::T_R_DEADLOCK_DETECTED {
        return StoreError::Busy;
    }
    if is_unavailable(code) {
        return StoreError::Unavailable(text);
    }
    StoreError::Internal(text)
}

/// The error's text followed by its causes ("error connecting to server: Connection refused
/// (os error 111)"): the driver's own text stops before the cause, which is what an operator
/// needs to tell a refused connection from a timeout.
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Server states that say "not now" rather than "wrong": class 08 (connection exception),
/// 53 (insufficient resources, e.g. too many connections), 57P (shutting down, starting up).
fn is_unavailable(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

/// Whether `e` is a unique-constraint violation.
pub(super) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Whether `e` lost a deadlock or serialisation race, so the whole transaction may be retried.
pub(super) fn is_retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Busy)
}

/// Maps a failure to get a pooled connection: the server is unreachable or every
/// connection stayed busy past the wait.
pub(super) fn map_pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => match map_err(e) {
            StoreError::Internal(text) => StoreError::Unavailable(text),
            other => other,
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}
