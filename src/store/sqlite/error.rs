//! SQLite errors as [`StoreError`]s: the one mapping, whose messages never hold SQL text.

use rusqlite::{ffi, ErrorCode};

use crate::store::StoreError;

/// Maps a SQLite error to a [`StoreError`] whose message holds no SQL text.
pub(super) fn map_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Busy,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt,
            code => StoreError::Internal(match message {
                Some(message) => format!("{message} ({code:?}, code {})", failure.extended_code),
                None => format!("{code:?} (code {})", failure.extended_code),
            }),
        },
        // Its Display would echo the statement.
        rusqlite::Error::SqlInputError {
            error, msg, offset, ..
        } => StoreError::Internal(format!(
            "{msg} at offset {offset} of a statement ({:?})",
            error.code
        )),
        other => StoreError::Internal(other.to_string()),
    }
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error()
        .is_some_and(|f| f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE)
}
