//! The revocation feed: how a reader follows the revocation log that every process on the
//! database appends to, from a cursor it can resume from.
//!
//! The guarantee every [`Store`](super::Store) implementation gives: a reader that starts from
//! [`Store::live_revocations`](super::Store::live_revocations) and then calls
//! [`Store::revocations_since`](super::Store::revocations_since) with each returned cursor
//! receives every entry committed — by any connection or process — after the snapshot it
//! started from, in some call. Nothing is skipped, whatever order concurrent writers commit
//! in. An entry may come more than once (applying an entry twice is harmless), and entries
//! pruned before the reader got to them (their tokens have all expired) may never come.
//!
//! Commit order is not sequence order in general: a sequence hands out numbers when a row is
//! inserted, and a transaction holding a lower number can commit after one holding a higher
//! number, so "resume after the highest seq seen" can skip the late one. How each backend
//! closes that gap:
//! - SQLite serialises writers: one write transaction at a time holds the database's write
//!   lock, assigns its seqs (AUTOINCREMENT: above every seq ever used) and commits before the
//!   next one starts, and a read transaction sees exactly the transactions committed before
//!   it began. So every entry with a seq at or below the highest one a reader saw was already
//!   visible to it, and the cursor can be that seq alone.
//! - A store whose writers run in parallel (PostgreSQL) must keep more in its cursor: for
//!   example only confirm positions below the oldest transaction still in flight
//!   (`pg_snapshot_xmin`) and remember the entries it already delivered above them, or
//!   re-read a window of recent seqs and de-duplicate. The cursor is opaque to readers so
//!   such state can live in it.

use super::Revocation;

/// Where a reader of the revocation feed stands: everything up to it has been delivered.
/// Opaque to readers, who only hand it back; valid with any store on the same database,
/// across restarts of the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedCursor {
    /// The highest `seq` confirmed delivered (SQLite), `0` before any entry.
    position: i64,
}

impl FeedCursor {
    /// The cursor after every entry up to `position`.
    pub(crate) fn at(position: i64) -> FeedCursor {
        FeedCursor { position }
    }

    /// The highest `seq` confirmed delivered.
    pub(crate) fn position(&self) -> i64 {
        self.position
    }
}

/// Entries read from the revocation feed, and the cursor the next read resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// In `seq` order.
    pub entries: Vec<Revocation>,
    /// Where to resume.
    pub cursor: FeedCursor,
}
