//! Plain-TCP HTTP/1 connections that cost no buffers while idle.
//!
//! hyper keeps an HTTP/1 connection's read buffer (8–16 KiB) and header write buffer (8 KiB)
//! for the connection's whole life, so ten thousand idle keep-alive connections cost a few
//! hundred megabytes. Here a connection is served in *segments*: when it has been quiet for a
//! while ([`park_after`]: no bytes read, no request in progress, nothing waiting to be
//! written), hyper's connection is asked to stop after the message in progress without
//! closing the socket (`poll_without_shutdown`), its buffers are freed, and the bare socket
//! waits for its next bytes; they start a new hyper connection on the same socket. The client
//! sees one kept-alive connection throughout.
//!
//! The rules that held before still hold: a parked connection that stays silent is closed once
//! `request_header_timeout` has passed since it went quiet (give or take one [`park_after`]),
//! a shutdown closes a parked connection at once and lets a serving one finish its answer. A
//! request whose body may still be arriving keeps its connection unparked until the next
//! request (hyper alone knows where such a body ends). hyper's upgrade machinery only works on
//! connections it closes itself, so here a `101` hands the socket over through the request's
//! [`Handoff`] instead (see [`super::upgrade`]).

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, MissedTickBehavior};

use super::connection::{Activity, Connections, Watched};
use super::response::Body;

/// How long a connection must have been quiet before it is parked: a second, or a quarter of
/// the header timeout when that is shorter, so parking never comes close to the idle limit.
pub(super) fn park_after(header_timeout: Duration) -> Duration {
    (header_timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

/// How a segment (one hyper connection on the socket) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The client closed, asked to close, or the gateway shut down: close the socket.
    Closed,
    /// Parked on purpose: wait for the next bytes without buffers.
    Parked,
    /// A `101` went out: the socket belongs to the tunnel now.
    Upgraded,
}

/// Serves HTTP/1 on one plain connection, segment after segment, until it closes.
pub(super) struct Segments<'a> {
    /// The listener's HTTP/1 settings.
    pub builder: &'a http1::Builder,
    /// What the connection's service and socket report.
    pub activity: &'a Arc<Activity>,
    /// `request_header_timeout`.
    pub header_timeout: Duration,
    /// The listener's connections: its shutdown, and the count of parked ones.
    pub set: &'a Connections,
}

impl Segments<'_> {
    /// Serves `io` with `service` until the client, the idle rule, an upgrade or a shutdown
    /// ends the connection.
    pub async fn serve<S>(&self, mut io: Watched, mut service: S)
    where
        S: HttpService<Incoming, ResBody = Body> + Unpin,
        S::Future: Unpin,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A segment resumed with bytes hyper had read (a request head cut by the pause) may
        // not park again before a request begins, so a slow head gets one extension at most.
        let mut parks_from = 0;
        loop {
            // Boxed: the connection and its buffers are freed while the socket is parked.
            let mut conn = Box::new(self.builder.serve_connection(TokioIo::new(io), service));
            let ended = match self.segment(&mut conn, parks_from).await {
                Ok(ended) => ended,
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended with an error");
                    return;
                }
            };
            let http1::Parts {
                io: tokio_io,
                read_buf,
                service: returned,
                ..
            } = conn.into_parts();
            (io, service) = (tokio_io.into_inner(), returned);
            // Bytes read but not used, copied out: the empty rest still holds hyper's whole
            // read buffer.
            let unread = Bytes::copy_from_slice(&read_buf);
            drop(read_buf);
            match ended {
                Ended::Upgraded => {
                    io.rewind(unread);
                    self.activity.handoff.hand_over(Box::new(io));
                    return;
                }
                Ended::Closed => {
                    let _ = io.shutdown().await;
                    return;
                }
                Ended::Parked if !unread.is_empty() => {
                    parks_from = self.activity.progress().requests + 1;
                    io.rewind(unread);
                }
                Ended::Parked => {
                    tracing::debug!("parked");
                    if !self.parked(&io).await {
                        return;
                    }
                    parks_from = 0;
                }
            }
        }
    }

    /// Runs one hyper connection until it ends; parks it once it has been quiet for a whole
    /// [`park_after`] and at least `parks_from` requests have begun.
    async fn segment<S>(
        &self,
        conn: &mut http1::Connection<TokioIo<Watched>, S>,
        parks_from: u64,
    ) -> hyper::Result<Ended>
    where
        S: HttpService<Incoming, ResBody = Body> + Unpin,
        S::Future: Unpin,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let period = park_after(self.header_timeout);
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut seen = self.activity.progress();
        let mut ending = None;
        loop {
            tokio::select! {
                r = poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                    r?;
                    break;
                }
                () = self.set.stop().cancelled(), if ending.is_none() => {
                    Pin::new(&mut *conn).graceful_shutdown();
                    ending = Some(Ended::Closed);
                }
                _ = ticks.tick(), if ending.is_none() => {
                    let now = self.activity.progress();
                    if now == seen && now.requests >= parks_from && self.activity.quiet() {
                        Pin::new(&mut *conn).graceful_shutdown();
                        ending = Some(Ended::Parked);
                    }
                    seen = now;
                }
            }
        }
        Ok(if self.activity.is_upgraded() {
            Ended::Upgraded
        } else {
            ending.unwrap_or(Ended::Closed)
        })
    }

    /// Waits, holding no buffer, for the parked socket's next bytes. False when it should
    /// close instead: silent past the header timeout, or the listener shutting down.
    async fn parked(&self, io: &Watched) -> bool {
        let _parked = self.set.park();
        let rest = self
            .header_timeout
            .saturating_sub(park_after(self.header_timeout));
        tokio::select! {
            r = io.readable() => r.is_ok(),
            () = tokio::time::sleep(rest) => {
                tracing::debug!("closing a kept-alive connection idle past the header timeout");
                false
            }
            () = self.set.stop().cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use http::header::{CONNECTION, UPGRADE};
    use http::{Request, Response, StatusCode};
    use hyper::body::Incoming;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::park_after;
    use crate::server::connection::Connections;
    use crate::server::limits::HeadLimits;
    use crate::server::response::{full, Body};
    use crate::server::upgrade::ClientUpgrade;
    use crate::server::{accept_loop, ConnInfo, Handler, ServeOptions};

    /// Answers `ok`; a request with `Upgrade` gets a `101` and a tunnel that echoes 5 bytes.
    struct Echo;

    impl Handler for Echo {
        async fn handle(
            self: Arc<Self>,
            mut req: Request<Incoming>,
            _conn: ConnInfo,
        ) -> Response<Body> {
            if !req.headers().contains_key(UPGRADE) {
                return Response::new(full("ok"));
            }
            let upgrade = ClientUpgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = upgrade.finish().await.expect("the socket is handed over");
                let mut got = [0u8; 5];
                io.read_exact(&mut got).await.unwrap();
                io.write_all(&got).await.unwrap();
            });
            let mut res = Response::new(full(""));
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            res.headers_mut()
                .insert(CONNECTION, "upgrade".parse().unwrap());
            res.headers_mut().insert(UPGRADE, "echo".parse().unwrap());
            res
        }
    }

    struct Server {
        addr: SocketAddr,
        connections: Arc<Connections>,
    }

    async fn start(header_timeout: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Connections::new();
        let opts = ServeOptions {
            header_timeout,
            send_timeout: Duration::from_secs(30),
            max_connections: 16,
            tls: None,
            limits: HeadLimits {
                max_header_bytes: 8192,
                max_headers: 100,
            },
        };
        let set = connections.clone();
        tokio::spawn(async move {
            accept_loop(
                listener,
                opts,
                Arc::new(Echo),
                &set,
                CancellationToken::new(),
                None,
            )
            .await;
        });
        Server { addr, connections }
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// A client connection that reads answers one at a time.
    struct Client {
        stream: TcpStream,
        read: Vec<u8>,
    }

    impl Client {
        async fn connect(server: &Server) -> Self {
            let stream = TcpStream::connect(server.addr).await.unwrap();
            // Virtual time runs far ahead of the kernel's delayed ACK, which Nagle's algorithm
            // would wait for before sending a second small write.
            stream.set_nodelay(true).unwrap();
            Self {
                stream,
                read: Vec::new(),
            }
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
        }

        /// Reads until `end` has arrived; returns everything up to it and keeps the rest.
        async fn until(&mut self, end: &[u8]) -> String {
            let mut buf = [0u8; 1024];
            loop {
                if let Some(at) = self.read.windows(end.len()).position(|w| w == end) {
                    let rest = self.read.split_off(at + end.len());
                    let got = std::mem::replace(&mut self.read, rest);
                    return String::from_utf8(got).unwrap();
                }
                let n = self.stream.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "closed after {:?}",
                    String::from_utf8_lossy(&self.read)
                );
                self.read.extend_from_slice(&buf[..n]);
            }
        }

        /// Reads one `ok` answer.
        async fn answer(&mut self) -> String {
            self.until(b"\r\n\r\nok").await
        }

        /// Waits for the server to close the connection.
        async fn closed(&mut self) {
            let mut buf = [0u8; 16];
            assert_eq!(self.stream.read(&mut buf).await.unwrap(), 0, "closed");
        }
    }

    /// Lets virtual time pass: every timer due in `d` fires, as the server's would.
    async fn idle(d: Duration) {
        tokio::time::sleep(d).await;
    }

    #[test]
    fn parking_waits_a_tenth_of_a_second_or_a_quarter_of_a_short_header_timeout() {
        assert_eq!(
            park_after(Duration::from_secs(10)),
            Duration::from_millis(100)
        );
        assert_eq!(
            park_after(Duration::from_millis(200)),
            Duration::from_millis(50)
        );
        assert_eq!(park_after(Duration::ZERO), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_parks_and_its_next_request_is_served() {
        let server = start(Duration::from_secs(10)).await;
        let mut client = Client::connect(&server).await;
        client.send(GET).await;
        assert!(client.answer().await.starts_with("HTTP/1.1 200"));
        assert_eq!(server.connections.parked(), 0);
        idle(Duration::from_secs(1)).await;
        assert_eq!(server.connections.parked(), 1);
        for _ in 0..3 {
            client.send(GET).await;
            assert!(client.answer().await.starts_with("HTTP/1.1 200"));
            assert_eq!(server.connections.parked(), 0);
            idle(Duration::from_secs(1)).await;
            assert_eq!(server.connections.parked(), 1);
        }
        assert_eq!(server.connections.live(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_in_use_does_not_park() {
        let server = start(Duration::from_secs(10)).await;
        let mut client = Client::connect(&server).await;
        // A request every 50 ms for a second: never quiet for a whole 100 ms.
        for _ in 0..20 {
            client.send(GET).await;
            client.answer().await;
            idle(Duration::from_millis(50)).await;
            assert_eq!(server.connections.parked(), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_connection_closes_once_idle_for_the_header_timeout() {
        let server = start(Duration::from_secs(2)).await;
        let mut client = Client::connect(&server).await;
        client.send(GET).await;
        client.answer().await;
        let answered = Instant::now();
        client.closed().await;
        let idle_for = answered.elapsed();
        assert!(
            idle_for >= Duration::from_secs(2) && idle_for <= Duration::from_millis(2250),
            "closed after {idle_for:?}"
        );
        assert_eq!(server.connections.parked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_cut_by_a_pause_is_finished_after_parking() {
        let server = start(Duration::from_secs(10)).await;
        let mut client = Client::connect(&server).await;
        client.send(GET).await;
        client.answer().await;
        client.send(b"GET / HTTP/1.1\r\nHo").await;
        idle(Duration::from_secs(1)).await;
        // hyper's connection stopped with the bytes it had read; they went back in front of
        // the socket for the next one, which may not park before a request begins.
        assert_eq!(server.connections.parked(), 0);
        client.send(b"st: x\r\n\r\n").await;
        assert!(client.answer().await.starts_with("HTTP/1.1 200"));
        idle(Duration::from_secs(1)).await;
        assert_eq!(server.connections.parked(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn pipelined_requests_are_all_answered() {
        let server = start(Duration::from_secs(10)).await;
        let mut client = Client::connect(&server).await;
        client.send(&GET.repeat(3)).await;
        for _ in 0..3 {
            assert!(client.answer().await.starts_with("HTTP/1.1 200"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_closes_a_parked_connection() {
        let server = start(Duration::from_secs(10)).await;
        let mut client = Client::connect(&server).await;
        client.send(GET).await;
        client.answer().await;
        idle(Duration::from_secs(1)).await;
        assert_eq!(server.connections.parked(), 1);
        server.connections.shutdown().await;
        client.closed().await;
        assert_eq!(server.connections.parked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgrade_after_parking_hands_the_socket_over_with_the_bytes_sent_early() {
        let server = start(Duration::from_secs(10)).await;
        let mut client = Client::connect(&server).await;
        client.send(GET).await;
        client.answer().await;
        idle(Duration::from_secs(1)).await;
        assert_eq!(server.connections.parked(), 1);
        // The tunnel's first bytes ride with the upgrade request: hyper reads them with it.
        let mut upgrade =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n".to_vec();
        upgrade.extend_from_slice(b"hello");
        client.send(&upgrade).await;
        let got = client.until(b"hello").await;
        assert!(got.starts_with("HTTP/1.1 101"), "{got}");
        assert_eq!(server.connections.parked(), 0);
    }
}
