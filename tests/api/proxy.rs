//! The proxy: routing, policy, header rewriting, forwarding, streaming, WebSockets, reload.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Lets a test hold an upstream response until it says so.
#[derive(Clone)]
pub struct Release {
    arrived: Arc<Notify>,
    go: Arc<Notify>,
}

impl Release {
    /// Waits until the upstream has received a request.
    pub async fn wait_for_request(&self) {
        self.arrived.notified().await;
    }

    /// Lets held requests answer.
    pub fn release(&self) {
        self.go.notify_waiters();
    }
}

/// An upstream that answers `200 held` only after [`Release::release`].
pub async fn held_upstream() -> (SocketAddr, Release) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Release {
        arrived: Arc::new(Notify::new()),
        go: Arc::new(Notify::new()),
    };
    let r = release.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let r = r.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let r = r.clone();
                    async move {
                        let go = r.go.notified();
                        tokio::pin!(go);
                        // Registered before announcing arrival, so a release cannot be missed.
                        go.as_mut().enable();
                        r.arrived.notify_one();
                        go.await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"held",
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, release)
}
