//! The client side of an upgraded connection (a WebSocket's `101`), whichever way the
//! connection was served.
//!
//! Connections served by hyper's upgradeable connection (TLS, HTTP/2) hand their socket over
//! through hyper's [`OnUpgrade`]. Plain HTTP/1 connections are served so that hyper never
//! closes their socket (the `http1` module), which rules out hyper's upgrade machinery: there
//! the connection hands its socket to whoever asked, through a `Handoff` the request
//! carries.

use std::sync::Mutex;

use http::Request;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// A socket after `101 Switching Protocols`, with whatever the client sent after its
/// request already in front of it.
pub trait UpgradedIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpgradedIo for T {}

/// The client's upgraded connection, once the `101` has gone out.
pub enum ClientUpgrade {
    /// Through hyper's upgrade machinery.
    Hyper(OnUpgrade),
    /// Handed over by a plain HTTP/1 connection.
    Handed(oneshot::Receiver<Box<dyn UpgradedIo>>),
}

impl ClientUpgrade {
    /// The upgrade of `req`: call before the request is answered. `None` when the request
    /// asks for no upgrade hyper or the connection would honour.
    pub fn on<B>(req: &mut Request<B>) -> Self {
        if let Some(handoff) = req.extensions_mut().remove::<Handoff>() {
            let (tx, rx) = oneshot::channel();
            handoff.set(tx);
            return Self::Handed(rx);
        }
        Self::Hyper(hyper::upgrade::on(req))
    }

    /// Waits for the `101` to be written; `None` when the connection ended first (or the
    /// answer was not a `101`).
    pub async fn finish(self) -> Option<Box<dyn UpgradedIo>> {
        match self {
            Self::Hyper(on) => match on.await {
                Ok(io) => Some(Box::new(TokioIo::new(io))),
                Err(_) => None,
            },
            Self::Handed(rx) => rx.await.ok(),
        }
    }
}

/// The sending end of a handed-over socket.
type Sender = oneshot::Sender<Box<dyn UpgradedIo>>;

/// Where a plain HTTP/1 connection sends its socket after a `101`: set on a request that asks
/// to upgrade, filled by [`ClientUpgrade::on`].
#[derive(Clone, Default)]
pub(super) struct Handoff(std::sync::Arc<Mutex<Option<Sender>>>);

impl Handoff {
    fn set(&self, tx: Sender) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(tx);
        }
    }

    /// Gives the socket to whoever asked for it; dropped (closed) when nobody did.
    pub(super) fn hand_over(&self, io: Box<dyn UpgradedIo>) {
        let tx = self.0.lock().ok().and_then(|mut slot| slot.take());
        if let Some(tx) = tx {
            let _ = tx.send(io);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connection's handoff, and the upgrade of a request that carried it.
    fn asked() -> (Handoff, ClientUpgrade) {
        let handoff = Handoff::default();
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut().insert(handoff.clone());
        (handoff, ClientUpgrade::on(&mut req))
    }

    #[tokio::test]
    async fn a_handed_socket_reaches_the_request_that_asked() {
        let (handoff, upgrade) = asked();
        assert!(matches!(upgrade, ClientUpgrade::Handed(_)));
        let (ours, mut theirs) = tokio::io::duplex(64);
        handoff.hand_over(Box::new(ours));
        let mut io = upgrade.finish().await.expect("handed over");
        io.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
    }

    #[tokio::test]
    async fn a_connection_that_ends_first_finishes_the_upgrade_with_none() {
        let (handoff, upgrade) = asked();
        drop(handoff);
        assert!(upgrade.finish().await.is_none());
        // A request without a handoff asks hyper, which has no upgrade for it either.
        let mut req = Request::get("/").body(()).unwrap();
        assert!(ClientUpgrade::on(&mut req).finish().await.is_none());
    }
}
