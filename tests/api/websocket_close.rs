//! WebSocket tunnels the gateway closes end with close frames to both sides: 1008 "token
//! revoked" on logout, 1008 "token expired" at expiry, 1001 on shutdown — masked towards the
//! upstream, unmasked towards the client (tungstenite refuses anything else), and never in the
//! middle of a frame that is in flight.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{with_routes, TestApp};

/// Long enough that only a hang reaches it.
const GUARD: Duration = Duration::from_secs(20);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket upstream that echoes data messages and reports every close frame it receives.
async fn recording_ws_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Option<CloseFrame>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Close(frame) = msg {
                        let _ = tx.send(frame);
                    } else if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn app_with(ws: SocketAddr, tokens: &str) -> TestApp {
    let mut setup = with_routes(&format!(
        "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws}\"\nauth = \"token\"\n\n\
         [[routes]]\nprefix = \"/wspub\"\nupstream = \"http://{ws}\"\nauth = \"public\"\n"
    ));
    setup.tokens = tokens.to_owned();
    TestApp::spawn_with(setup).await
}

async fn connect(addr: SocketAddr, path: &str, token: Option<&str>) -> Ws {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(GUARD, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .expect("handshake");
    ws
}

async fn roundtrip(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let back = tokio::time::timeout(GUARD, ws.next()).await.unwrap();
    assert_eq!(back.unwrap().unwrap().to_text().unwrap(), text);
}

/// The close frame the client receives next (data messages still in flight are skipped);
/// the client then answers it as any WebSocket client does, and sees the connection end.
async fn client_close(ws: &mut Ws) -> CloseFrame {
    let read = async {
        let frame = loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => break frame,
                Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
                Some(Ok(_)) => continue,
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        };
        // Reading on sends tungstenite's reply; the gateway then ends the connection.
        while let Some(Ok(_)) = ws.next().await {}
        frame
    };
    tokio::time::timeout(GUARD, read)
        .await
        .expect("a close frame and the end of the connection in time")
}

async fn upstream_close(rx: &mut mpsc::UnboundedReceiver<Option<CloseFrame>>) -> CloseFrame {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .expect("the upstream got a close frame in time")
        .expect("the upstream is running")
        .expect("the close frame has a code")
}

fn assert_frame(frame: &CloseFrame, code: u16, reason: &str) {
    assert_eq!(frame.code, CloseCode::from(code), "{frame:?}");
    assert_eq!(frame.reason.as_str(), reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_closes_the_tunnel_with_1008_token_revoked_on_both_sides() {
    let (ws_addr, mut closes) = recording_ws_upstream().await;
    let app = app_with(ws_addr, "").await;
    let tokens = app.user("carol").await;
    let mut ws = connect(app.addr, "/ws/chat", Some(&tokens.access)).await;
    roundtrip(&mut ws, "hello").await;
    assert_eq!(app.logout(&tokens.access).await.status(), 200);
    assert_frame(&client_close(&mut ws).await, 1008, "token revoked");
    assert_frame(&upstream_close(&mut closes).await, 1008, "token revoked");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_closes_the_tunnel_with_1008_token_expired_on_both_sides() {
    let (ws_addr, mut closes) = recording_ws_upstream().await;
    let app = app_with(ws_addr, "access_ttl = \"2s\"\nleeway = \"0s\"").await;
    let tokens = app.user("erin").await;
    let mut ws = connect(app.addr, "/ws/chat", Some(&tokens.access)).await;
    roundtrip(&mut ws, "before expiry").await;
    assert_frame(&client_close(&mut ws).await, 1008, "token expired");
    assert_frame(&upstream_close(&mut closes).await, 1008, "token expired");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_tunnels_with_1001_on_both_sides() {
    let (ws_addr, mut closes) = recording_ws_upstream().await;
    let app = app_with(ws_addr, "").await;
    let tokens = app.user("frank").await;
    let mut authed = connect(app.addr, "/ws/chat", Some(&tokens.access)).await;
    let mut public = connect(app.addr, "/wspub/chat", None).await;
    roundtrip(&mut authed, "a").await;
    roundtrip(&mut public, "b").await;
    // The clients answer the close handshake while the gateway drains.
    let stopping = tokio::spawn(app.stop());
    for ws in [&mut authed, &mut public] {
        let frame = client_close(ws).await;
        assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
    }
    for _ in 0..2 {
        let frame = upstream_close(&mut closes).await;
        assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
    }
    tokio::time::timeout(GUARD, stopping)
        .await
        .expect("the gateway stops once the tunnels are closed")
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// A frame in flight: raw bytes on both sides
// ---------------------------------------------------------------------------------------------

/// A WebSocket upstream that completes the handshake and then only records the raw bytes it
/// receives (published as they arrive) until the gateway closes the connection.
async fn raw_ws_upstream() -> (SocketAddr, watch::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let head = read_head(&mut stream).await;
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("a Sec-WebSocket-Key");
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        let mut chunk = vec![0u8; 1 << 16];
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            tx.send_modify(|seen| seen.extend_from_slice(&chunk[..n]));
        }
    });
    (addr, rx)
}

/// Reads an HTTP head byte by byte (nothing after it is consumed).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Waits until the upstream has seen at least `n` bytes; returns them.
async fn upstream_saw(seen: &mut watch::Receiver<Vec<u8>>, n: usize) -> Vec<u8> {
    let got = tokio::time::timeout(GUARD, seen.wait_for(|bytes| bytes.len() >= n))
        .await
        .map(|r| r.map(|bytes| bytes.clone()));
    match got {
        Ok(Ok(bytes)) => bytes,
        _ => panic!("the upstream saw {} of {n} bytes", seen.borrow().len()),
    }
}

fn masked(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frame_in_flight_when_the_token_is_revoked_is_finished_before_the_close_frame() {
    let (ws_addr, mut seen) = raw_ws_upstream().await;
    let app = app_with(ws_addr, "").await;
    let tokens = app.user("grace").await;

    let mut client = TcpStream::connect(app.addr).await.unwrap();
    let upgrade = format!(
        "GET /ws/chat HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        tokens.access
    );
    client.write_all(upgrade.as_bytes()).await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");

    // The first fragment of a large message (FIN clear, binary), 1 MiB with a 64-bit length,
    // masked as a client must; only half of its payload goes out before the revocation.
    const LEN: usize = 1 << 20;
    let key = [0x11, 0x22, 0x33, 0x44];
    let payload: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let mut header = vec![0x02, 0x80 | 127];
    header.extend_from_slice(&(LEN as u64).to_be_bytes());
    header.extend_from_slice(&key);
    let body = masked(&payload, key);
    client.write_all(&header).await.unwrap();
    client.write_all(&body[..LEN / 2]).await.unwrap();
    upstream_saw(&mut seen, header.len() + LEN / 2).await;

    assert_eq!(app.logout(&tokens.access).await.status(), 200);
    // The client, idle between frames on its side, gets the close frame at once: unmasked.
    let mut close = [0u8; 17];
    tokio::time::timeout(GUARD, client.read_exact(&mut close))
        .await
        .expect("the client's close frame in time")
        .unwrap();
    assert_eq!(close[..2], [0x88, 15]);
    assert_eq!(close[2..4], 1008u16.to_be_bytes());
    assert_eq!(&close[4..], b"token revoked");

    // The rest of the fragment still reaches the upstream; a frame after it does not.
    client.write_all(&body[LEN / 2..]).await.unwrap();
    let after = [0x81, 0x80 | 2, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    client.write_all(&after).await.unwrap();
    let close_len = 2 + 4 + 15;
    let got = upstream_saw(&mut seen, header.len() + LEN + close_len).await;
    assert_eq!(&got[..header.len()], &header[..]);
    assert_eq!(
        &got[header.len()..header.len() + LEN],
        &body[..],
        "payload changed"
    );
    let frame = &got[header.len() + LEN..];
    assert_eq!(frame[..2], [0x88, 0x80 | 15], "a masked close frame");
    let unmasked = masked(&frame[6..6 + 15], [frame[2], frame[3], frame[4], frame[5]]);
    assert_eq!(unmasked[..2], 1008u16.to_be_bytes());
    assert_eq!(&unmasked[2..], b"token revoked");
    // The gateway ends the upstream connection after its close frame: nothing else arrives.
    let done = tokio::time::timeout(GUARD, seen.wait_for(|_| false))
        .await
        .map(|r| r.is_err());
    assert_eq!(done, Ok(true), "the upstream connection stayed open");
    assert_eq!(seen.borrow().len(), header.len() + LEN + close_len);
    drop(client);
    app.stop().await;
}
