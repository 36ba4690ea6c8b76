//! Idle plain HTTP/1 connections are parked without buffers and come back for their next
//! request: the server module's accept loop on port 0 with a small handler, real sockets, and
//! tokio's paused clock, which lets idle time pass at once and in order (no sleeping).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use authgate::server::connection::Connections;
use authgate::server::limits::HeadLimits;
use authgate::server::response::{full, Body, BoxError};
use authgate::server::upgrade::ClientUpgrade;
use authgate::server::{accept_loop, ConnInfo, Handler, ServeOptions};

/// Answers `ok`; `/slow` answers `a`, then `b` a second later, in a body of unknown length; a
/// request with `Upgrade` gets a `101` and a tunnel that echoes 5 bytes.
struct Echo;

impl Handler for Echo {
    async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        _conn: ConnInfo,
    ) -> Response<Body> {
        if req.uri().path() == "/slow" {
            let (mut tx, body) = Channel::<Bytes, BoxError>::new(1);
            tokio::spawn(async move {
                tx.send_data(Bytes::from_static(b"a")).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
                tx.send_data(Bytes::from_static(b"b")).await.unwrap();
            });
            return Response::new(body.boxed());
        }
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

/// A server with `header_timeout`, and a client whose first request it has answered.
async fn after_one_answer(header_timeout: Duration) -> (Server, Client) {
    let server = start(header_timeout).await;
    let mut client = Client::connect(&server).await;
    client.send(GET).await;
    client.answer().await;
    (server, client)
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
    // A request every 50 ms for a second: never quiet for a whole 60 ms.
    for _ in 0..20 {
        client.send(GET).await;
        client.answer().await;
        idle(Duration::from_millis(50)).await;
        assert_eq!(server.connections.parked(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_closes_once_idle_for_the_header_timeout() {
    let (server, mut client) = after_one_answer(Duration::from_secs(2)).await;
    let answered = Instant::now();
    client.closed().await;
    let idle_for = answered.elapsed();
    assert!(
        idle_for >= Duration::from_secs(2) && idle_for <= Duration::from_millis(2250),
        "closed after {idle_for:?}"
    );
    assert_eq!(server.connections.parked(), 0);
}

/// Sends the rest of a head cut after `Ho`, expects its answer, and expects the connection
/// to park once idle.
async fn finish_the_head_then_park(client: &mut Client, server: &Server) {
    client.send(b"st: x\r\n\r\n").await;
    assert!(client.answer().await.starts_with("HTTP/1.1 200"));
    idle(Duration::from_secs(1)).await;
    assert_eq!(server.connections.parked(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_head_in_progress_keeps_its_connection_unparked() {
    let (server, mut client) = after_one_answer(Duration::from_secs(10)).await;
    client.send(b"GET / HTTP/1.1\r\nHo").await;
    idle(Duration::from_secs(1)).await;
    // hyper holds the partial head, and its header timeout runs from its first byte.
    assert_eq!(server.connections.parked(), 0);
    finish_the_head_then_park(&mut client, &server).await;
}

#[tokio::test(start_paused = true)]
async fn a_head_in_progress_still_ends_at_the_header_timeout() {
    let (_server, mut client) = after_one_answer(Duration::from_secs(2)).await;
    let started = Instant::now();
    // A byte every 900 ms: each pause is long enough to park an idle connection.
    for byte in b"GET / HTTP/1.1\r\n".chunks(1).take(2) {
        client.send(byte).await;
        idle(Duration::from_millis(900)).await;
    }
    client.closed().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_millis(2100),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_head_cut_by_a_pause_is_finished_after_parking() {
    let server = start(Duration::from_secs(10)).await;
    let mut client = Client::connect(&server).await;
    // The first bytes of a second request ride with the first: read with it, they are
    // what hyper holds when the connection goes quiet and parks, and go back in front of
    // the socket for the next segment.
    client
        .send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo")
        .await;
    client.answer().await;
    idle(Duration::from_secs(1)).await;
    assert_eq!(server.connections.parked(), 0);
    finish_the_head_then_park(&mut client, &server).await;
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
    let (server, mut client) = after_one_answer(Duration::from_secs(10)).await;
    idle(Duration::from_secs(1)).await;
    assert_eq!(server.connections.parked(), 1);
    server.connections.shutdown().await;
    client.closed().await;
    assert_eq!(server.connections.parked(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_upgrade_after_parking_hands_the_socket_over_with_the_bytes_sent_early() {
    let (server, mut client) = after_one_answer(Duration::from_secs(10)).await;
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

/// An answer that hyper ends by closing the connection (HTTP/1.0: no length, no chunks) and
/// that streams across a pause long enough to park: the connection still closes as it ends.
#[tokio::test(start_paused = true)]
async fn an_answer_that_ends_with_its_connection_closes_it_after_a_long_pause() {
    for request in [
        &b"GET /slow HTTP/1.0\r\n\r\n"[..],
        b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let server = start(Duration::from_secs(10)).await;
        let mut client = Client::connect(&server).await;
        let started = Instant::now();
        client.send(request).await;
        let mut all = Vec::new();
        client.stream.read_to_end(&mut all).await.unwrap();
        let all = String::from_utf8(all).unwrap();
        assert!(all.starts_with("HTTP/1."), "{all}");
        assert!(all.contains('a') && all.contains('b'), "{all}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "closed after {took:?}");
        assert_eq!(server.connections.parked(), 0);
    }
}

/// A kept-alive answer streamed across a pause is finished, and the connection parks after.
#[tokio::test(start_paused = true)]
async fn a_kept_alive_answer_streamed_across_a_pause_is_finished_then_parks() {
    let server = start(Duration::from_secs(10)).await;
    let mut client = Client::connect(&server).await;
    client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // Chunked: "1\r\na\r\n", "1\r\nb\r\n", then the last chunk.
    let got = client.until(b"0\r\n\r\n").await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.contains("\r\nb\r\n"),
        "{got}"
    );
    idle(Duration::from_secs(1)).await;
    assert_eq!(server.connections.parked(), 1);
    client.send(GET).await;
    assert!(client.answer().await.starts_with("HTTP/1.1 200"));
}
