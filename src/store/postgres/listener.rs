//! The `LISTEN` side of revocation announcements: one dedicated connection per follower,
//! outside the pool (a pooled connection never delivers notifications, and `LISTEN` is
//! per-session), whose [`Connection::poll_message`] this task polls itself.
//!
//! Writers `NOTIFY` on [`CHANNEL`] in the transaction that appends revocation entries, one
//! notification per entry carrying it ([`announcement`]), so an announcement arrives only once
//! its entry is committed. The task turns each into a [`FeedSignal::Appended`] with the entry
//! — the follower applies it without a round trip to the database, then reads the feed — and
//! every (re)connection into [`FeedSignal::Listening`]: the follower then reads the feed,
//! catching up on whatever was announced while nobody listened. It reconnects with a capped
//! backoff and stops when the receiver is dropped.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Connection, NoTls, Socket};

use crate::store::{FeedSignal, FeedSignals, Revocation};

/// The notification channel of the revocation log.
pub(super) const CHANNEL: &str = "authgate_revocations";

/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Announcements queued for the follower; beyond this they are dropped (their entries come
/// with the next read of the feed, at most one poll later).
const QUEUE: usize = 1024;

/// The payload announcing `entry`: `SEQ KIND COVERS_UNTIL VALUE` (the value last: it is the
/// only free-form part). Well under PostgreSQL's 8000-byte payload limit: ids are at most 128
/// characters.
pub(super) fn announcement(entry: &Revocation) -> String {
    let (kind, value) = entry.kind.encode();
    format!("{} {kind} {} {value}", entry.seq, entry.covers_until)
}

/// The entry an [`announcement`] carries; `None` for a payload this build does not read
/// (the feed delivers the entry anyway).
fn announced(payload: &str) -> Option<Revocation> {
    let mut parts = payload.splitn(4, ' ');
    let seq = parts.next()?.parse().ok()?;
    let kind = parts.next()?;
    let covers_until = parts.next()?.parse().ok()?;
    let value = parts.next()?;
    Revocation::decode(seq, kind, value.to_owned(), covers_until).ok()
}

/// Starts listening on a connection of its own made from `config`.
pub(super) fn spawn(config: tokio_postgres::Config) -> FeedSignals {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(listen_until_dropped(config, tx));
    rx
}

async fn listen_until_dropped(config: tokio_postgres::Config, tx: mpsc::Sender<FeedSignal>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match listen_once(&config, &tx, &mut backoff).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                error = %e,
                retry_in = ?backoff,
                "revocation announcements: connection lost; reconnecting (the feed is polled meanwhile)"
            ),
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a listening connection ended.
#[derive(Debug, thiserror::Error)]
enum ListenError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the server closed the connection")]
    Closed,
}

/// One connection's life: connect, `LISTEN`, forward notifications. `Ok` when the receiver
/// went away, `Err` when the connection failed or ended.
async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &mpsc::Sender<FeedSignal>,
    backoff: &mut Duration,
) -> Result<(), ListenError> {
    let (client, connection) = config.connect(NoTls).await?;
    let (heard, mut notes) = mpsc::channel::<Option<Revocation>>(QUEUE);
    let driver = tokio::spawn(drive(connection, heard));
    // Aborts the driver (closing the connection) however this function ends.
    let _abort = AbortOnDrop(driver.abort_handle());
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    *backoff = MIN_BACKOFF;
    tracing::debug!("revocation announcements: listening");
    if tx.send(FeedSignal::Listening).await.is_err() {
        return Ok(());
    }
    loop {
        tokio::select! {
            () = tx.closed() => return Ok(()),
            note = notes.recv() => {
                let Some(entry) = note else {
                    break;
                };
                // A full queue: the follower is behind, and reads the feed anyway.
                let _ = tx.try_send(FeedSignal::Appended(entry.into_iter().collect()));
            }
        }
    }
    // The driver ended: the connection failed or closed. Its error says why.
    match driver.await {
        Ok(Err(e)) => Err(e.into()),
        _ => Err(ListenError::Closed),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls the connection — which also carries the client's `LISTEN` — and reports each
/// notification; ends with the connection's error, or `Ok` when it closed.
async fn drive(
    mut connection: Connection<Socket, NoTlsStream>,
    heard: mpsc::Sender<Option<Revocation>>,
) -> Result<(), tokio_postgres::Error> {
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(note))) => {
                let _ = heard.try_send(announced(note.payload()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod tests {
    use super::*;
    use crate::store::RevocationKind;

    #[test]
    fn an_announcement_carries_its_entry_of_every_kind() {
        for kind in [
            RevocationKind::Session("s-1_x".into()),
            RevocationKind::Token("a b".into()),
            RevocationKind::User(42),
        ] {
            let entry = Revocation {
                seq: 7,
                kind,
                covers_until: 1_900_000_000,
            };
            assert_eq!(announced(&announcement(&entry)), Some(entry));
        }
        assert_eq!(announced(""), None);
        assert_eq!(announced("7 session"), None);
        assert_eq!(announced("x session 1 s"), None);
        assert_eq!(announced("7 gremlin 1 s"), None);
    }
}
