//! The `LISTEN` side of revocation announcements: one dedicated connection per follower,
//! outside the pool (a pooled connection never delivers notifications, and `LISTEN` is
//! per-session), whose [`Connection::poll_message`] this task polls itself.
//!
//! Writers `NOTIFY` on [`CHANNEL`] in the transaction that appends revocation entries, so an
//! announcement arrives only once its entries are committed. The task turns each into a
//! [`FeedSignal::Appended`], and every (re)connection into [`FeedSignal::Listening`] — the
//! follower then reads the feed, catching up on whatever was announced while nobody listened.
//! It reconnects with a capped backoff and stops when the receiver is dropped.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Connection, NoTls, Socket};

use crate::store::{FeedSignal, FeedSignals};

/// The notification channel of the revocation log.
pub(super) const CHANNEL: &str = "authgate_revocations";

/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Signals are wake-ups: a few queued are as good as many.
const QUEUE: usize = 4;

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
    let (heard, mut notes) = mpsc::channel::<()>(QUEUE);
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
                if note.is_none() {
                    break;
                }
                // A full queue already holds a wake-up: this one adds nothing.
                let _ = tx.try_send(FeedSignal::Appended);
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
    heard: mpsc::Sender<()>,
) -> Result<(), tokio_postgres::Error> {
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(_))) => {
                // A full queue already holds a wake-up.
                let _ = heard.try_send(());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        }
    }
}
