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
//! - PostgreSQL's writers run in parallel, so its cursor is not a seq but a transaction
//!   horizon. Every entry records the id of the transaction that wrote it (`xact`, from
//!   `pg_current_xact_id()`), and every read also returns its snapshot's `xmin`
//!   (`pg_snapshot_xmin(pg_current_snapshot())`): the oldest transaction still in flight, so
//!   every entry the read could not see was written by a transaction at or above it. The
//!   cursor keeps that `xmin` and the seqs of the entries already delivered at or above it;
//!   the next read fetches the entries with `xact >= xmin` and leaves out those seqs. A
//!   transaction that commits out of seq order is therefore still fetched, and nothing is
//!   delivered twice. The remembered seqs are only those written since the oldest
//!   transaction in flight, so the set stays small (empty whenever no write is in flight).

use super::Revocation;

/// Where a reader of the revocation feed stands: everything up to it has been delivered.
/// Opaque to readers, who only hand it back; valid with any store on the same database,
/// across restarts of the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedCursor {
    position: Position,
}

/// A cursor's state, by the kind of store that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    /// SQLite: the highest `seq` confirmed delivered, `0` before any entry.
    Seq(i64),
    /// PostgreSQL: every entry written by a transaction below `xmin` was delivered, and of
    /// those written at or above it, the ones whose seqs are in `delivered` (sorted).
    Horizon { xmin: i64, delivered: Vec<i64> },
}

impl FeedCursor {
    /// The cursor after every entry up to `position` (serialised writers: SQLite).
    pub(crate) fn at(position: i64) -> FeedCursor {
        FeedCursor {
            position: Position::Seq(position),
        }
    }

    /// The cursor after every entry written below transaction `xmin`, and the entries of
    /// seqs `delivered` written at or above it (parallel writers: PostgreSQL).
    pub(crate) fn horizon(xmin: i64, mut delivered: Vec<i64>) -> FeedCursor {
        delivered.sort_unstable();
        delivered.dedup();
        FeedCursor {
            position: Position::Horizon { xmin, delivered },
        }
    }

    /// The highest `seq` confirmed delivered, for a cursor made by [`FeedCursor::at`].
    pub(crate) fn position(&self) -> Option<i64> {
        match self.position {
            Position::Seq(seq) => Some(seq),
            Position::Horizon { .. } => None,
        }
    }

    /// The transaction horizon and the seqs delivered at or above it, for a cursor made by
    /// [`FeedCursor::horizon`].
    pub(crate) fn as_horizon(&self) -> Option<(i64, &[i64])> {
        match &self.position {
            Position::Seq(_) => None,
            Position::Horizon { xmin, delivered } => Some((*xmin, delivered)),
        }
    }
}

/// A wake-up for a follower of the feed (see [`Store::feed_signals`](super::Store::feed_signals)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSignal {
    /// Announcements are heard (again): anything announced before may have been missed, so
    /// read the feed now.
    Listening,
    /// A writer committed these entries and announced them: apply them now (they are
    /// durable), and read the feed, which delivers them again in order.
    Appended(Vec<Revocation>),
}

/// The receiving end of a store's [`FeedSignal`]s; dropping it stops the listening.
pub type FeedSignals = tokio::sync::mpsc::Receiver<FeedSignal>;

/// Entries read from the revocation feed, and the cursor the next read resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// In `seq` order.
    pub entries: Vec<Revocation>,
    /// Where to resume.
    pub cursor: FeedCursor,
}
