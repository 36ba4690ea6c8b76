//! Upstream protocols and proxy conventions (docs/http-api.md §7.1): HTTP/1.0, HTTP/1.1 and HTTP/2
//! clients against HTTP/1.0, HTTP/1.1 and h2c upstreams, trailers both ways, cookie joining,
//! `Via`, `TRACE`, `Max-Forwards`, `Transfer-Encoding` strictness, the forwarding headers,
//! the route timeout and `idle_timeout`, `Expect: 100-continue`, client body faults, the gRPC
//! form of refusals, and the per-method freshness and optional authentication of §7.2.
//!
//! Clients are hyper's own connections (so a test controls versions and trailers exactly) and
//! raw sockets (where an HTTP client would tidy the bytes up). The probe upstream answers
//! HTTP/1.1 and h2c on one port and reports what it received, trailers included.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::channel::Channel;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{assert_error, claims, raw_exchange, raw_request, with_routes, TestApp};
use crate::proxy::{
    bearer, echo_header, echo_headers, echoed, recording_upstream, serve, ws_connect,
    ws_echo_upstream, ws_roundtrip,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestBody = BoxBody<Bytes, BoxError>;

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn full(bytes: &'static [u8]) -> TestBody {
    Full::new(Bytes::from_static(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// `bytes` followed by `trailers`, of unknown length (so HTTP/1.1 sends it chunked).
fn with_trailers(bytes: &'static [u8], trailers: &[(&'static str, &'static str)]) -> TestBody {
    let mut map = HeaderMap::new();
    for (name, value) in trailers {
        map.insert(*name, HeaderValue::from_static(value));
    }
    http_body_util::StreamBody::new(futures_util::stream::iter([
        Ok::<_, BoxError>(hyper::body::Frame::data(Bytes::from_static(bytes))),
        Ok(hyper::body::Frame::trailers(map)),
    ]))
    .boxed()
}

/// A body the test feeds frame by frame.
fn channel() -> (http_body_util::channel::Sender<Bytes, BoxError>, TestBody) {
    let (tx, body) = Channel::<Bytes, BoxError>::new(4);
    (tx, body.boxed())
}

/// What came back: head, body, trailers.
struct Answer {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn trailer(&self, name: &str) -> Option<String> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn collect(res: Response<Incoming>) -> Answer {
    let (parts, body) = res.into_parts();
    let collected = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("the body within 10 s")
        .expect("a complete body");
    let trailers = collected.trailers().cloned();
    Answer {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// Sends `req` over a fresh HTTP/2 connection with prior knowledge (no TLS) to `addr`.
async fn h2(addr: SocketAddr, req: Request<TestBody>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("an answer within 10 s")
        .unwrap()
}

/// Sends `req` over a fresh HTTP/1.1 connection to `addr`.
async fn h1(addr: SocketAddr, req: Request<TestBody>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("an answer within 10 s")
        .unwrap()
}

/// An HTTP/2 request to the gateway at `app`.
fn h2_req(app: &TestApp, method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", app.addr))
        .version(Version::HTTP_2)
}

/// An HTTP/1.1 request (origin form, `Host` set) to the gateway at `app`.
fn h1_req(app: &TestApp, method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", app.addr.to_string())
}

/// Writes `bytes` on a fresh connection and reads everything until the peer closes.
async fn raw_to_eof(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the peer closes within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response with a `Content-Length` body off a kept-alive connection: the head
/// (lower-cased) and the body.
async fn read_one(stream: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return (head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------------------------

fn pairs(headers: &HeaderMap) -> Vec<[String; 2]> {
    headers
        .iter()
        .map(|(k, v)| {
            [
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ]
        })
        .collect()
}

/// The probe: reads the whole request, trailers included, and answers JSON `{version,
/// authority, headers, body_bytes, trailers}` in a body of unknown length, followed by the
/// trailers `x-sum` (the body bytes received) and `x-from` (announced in `Trailer`).
async fn probe_upstream() -> SocketAddr {
    serve(|req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let (body_bytes, trailers) = match body.collect().await {
            Ok(c) => {
                let trailers = c.trailers().map(pairs).unwrap_or_default();
                (c.to_bytes().len(), trailers)
            }
            Err(_) => (0, Vec::new()),
        };
        let json = serde_json::json!({
            "version": format!("{:?}", parts.version),
            "authority": parts.uri.authority().map(|a| a.to_string()),
            "path": parts.uri.path(),
            "headers": pairs(&parts.headers),
            "body_bytes": body_bytes,
            "trailers": trailers,
        });
        let mut sent = HeaderMap::new();
        sent.insert("x-sum", HeaderValue::from(body_bytes));
        sent.insert("x-from", HeaderValue::from_static("probe"));
        // A stream of unknown length, so an HTTP/1.1 answer is chunked and can carry trailers.
        let data = Bytes::from(json.to_string());
        let body = http_body_util::StreamBody::new(futures_util::stream::iter([
            Ok::<_, BoxError>(hyper::body::Frame::data(data)),
            Ok(hyper::body::Frame::trailers(sent)),
        ]));
        Response::builder()
            .header("content-type", "application/json")
            .header("trailer", "x-sum, x-from")
            .header("via", "1.1 upstream-proxy")
            .body(body.boxed())
            .unwrap()
    })
    .await
}

/// `[{ name, value }]` of a probe report as pairs.
fn reported(v: &Value, field: &str, name: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_owned())
        .collect()
}

/// Routes to the probe: `/h1` (HTTP/1.1), `/h2c` (h2c), both token-free; `/h2ct` (h2c,
/// token); `/keep` and `/keeph2c` with `preserve_host`; `/strip` strips its prefix.
fn probe_routes(probe: SocketAddr) -> String {
    format!(
        r#"
[[routes]]
prefix = "/h1"
upstream = "http://{probe}"
auth = "public"

[[routes]]
prefix = "/h2c"
upstream = "http://{probe}"
auth = "public"
upstream_protocol = "h2c"

[[routes]]
prefix = "/h2ct"
upstream = "http://{probe}"
auth = "token"
upstream_protocol = "h2c"

[[routes]]
prefix = "/keep"
upstream = "http://{probe}"
auth = "public"
preserve_host = true

[[routes]]
prefix = "/keeph2c"
upstream = "http://{probe}"
auth = "public"
upstream_protocol = "h2c"
preserve_host = true

[[routes]]
prefix = "/strip"
upstream = "http://{probe}/base"
auth = "public"
strip_prefix = true
"#
    )
}

async fn probe_app() -> (TestApp, SocketAddr) {
    let probe = probe_upstream().await;
    let app = TestApp::spawn_with(with_routes(&probe_routes(probe))).await;
    (app, probe)
}

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_client_version_reaches_every_upstream_version_and_gets_the_gateways_own() {
    let (app, _) = probe_app().await;
    for path in ["/h1/x", "/h2c/x"] {
        let want_upstream = if path.starts_with("/h2c") {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        let over_h2 = collect(
            h2(
                app.addr,
                h2_req(&app, Method::GET, path).body(empty()).unwrap(),
            )
            .await,
        )
        .await;
        assert_eq!(over_h2.status, StatusCode::OK, "{path}");
        assert_eq!(over_h2.version, Version::HTTP_2, "{path}");
        assert_eq!(over_h2.json()["version"], want_upstream, "{path}");
        let over_h1 = collect(
            h1(
                app.addr,
                h1_req(&app, Method::GET, path).body(empty()).unwrap(),
            )
            .await,
        )
        .await;
        assert_eq!(over_h1.version, Version::HTTP_11, "{path}");
        assert_eq!(over_h1.json()["version"], want_upstream, "{path}");
        // An HTTP/1.0 client, without Host: never a chunked body (the length is only known at
        // the end, so the body runs to the connection's close).
        let text = raw_to_eof(app.addr, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1."), "{head}");
        assert!(head.contains(" 200 "), "{head}");
        assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["version"], want_upstream);
    }
}

/// A child process killed (and waited for) when the test ends, however it ends.
/// A child process killed (and reaped) when dropped.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python's `http.server` (HTTP/1.0, the connection closed after each answer) serving
/// `hello.txt`; killed on drop.
struct PythonHttpServer {
    _child: KillOnDrop,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PythonHttpServer {
    fn start() -> PythonHttpServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.txt"), "hello from 1.0").unwrap();
        let mut child = Command::new(crate::tools::python())
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python http.server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PythonHttpServer {
            _child: KillOnDrop(child),
            port,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http10_upstream_does_not_make_the_answer_http10_or_close_a_kept_alive_client() {
    let py = PythonHttpServer::start();
    let route = format!(
        "[[routes]]\nprefix = \"/py\"\nupstream = \"http://127.0.0.1:{}\"\nauth = \"public\"\nstrip_prefix = true\n",
        py.port
    );
    let app = TestApp::spawn_with(with_routes(&route)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    for round in 0..3 {
        let req = format!("GET /py/hello.txt HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr);
        stream.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = read_one(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "round {round}: {head}");
        assert!(!head.contains("connection: close"), "round {round}: {head}");
        assert!(head.contains("via: 1.0 authgate"), "round {round}: {head}");
        assert_eq!(body, "hello from 1.0");
    }
}

// ---------------------------------------------------------------------------------------------
// Trailers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn trailers_pass_both_ways_over_http2_and_chunked_http11() {
    let (app, _) = probe_app().await;
    for path in ["/h1/t", "/h2c/t"] {
        // HTTP/2 client: request trailers up, response trailers down.
        let req = h2_req(&app, Method::POST, path)
            .header("te", "trailers")
            .header("trailer", "x-checksum")
            .body(with_trailers(b"twelve bytes", &[("x-checksum", "c0ffee")]))
            .unwrap();
        let a = collect(h2(app.addr, req).await).await;
        assert_eq!(a.status, StatusCode::OK);
        let v = a.json();
        assert_eq!(v["body_bytes"], 12, "{path}");
        assert_eq!(
            reported(&v, "trailers", "x-checksum"),
            ["c0ffee"],
            "{path} up over h2"
        );
        assert_eq!(reported(&v, "headers", "te"), ["trailers"], "{path}");
        assert_eq!(
            a.trailer("x-sum").as_deref(),
            Some("12"),
            "{path} down over h2"
        );
        assert_eq!(a.trailer("x-from").as_deref(), Some("probe"), "{path}");

        // HTTP/1.1 client: a chunked request with trailers, a chunked answer with trailers.
        let req = h1_req(&app, Method::POST, path)
            .header("te", "trailers")
            .header("trailer", "x-checksum")
            .body(with_trailers(b"twelve bytes", &[("x-checksum", "beef")]))
            .unwrap();
        let a = collect(h1(app.addr, req).await).await;
        assert_eq!(a.status, StatusCode::OK);
        let v = a.json();
        assert_eq!(
            reported(&v, "trailers", "x-checksum"),
            ["beef"],
            "{path} up over 1.1"
        );
        assert_eq!(a.headers["trailer"], "x-sum, x-from", "{path}");
        assert_eq!(
            a.trailer("x-sum").as_deref(),
            Some("12"),
            "{path} down over 1.1"
        );
    }
    // An HTTP/2 request of declared length with trailers: the HTTP/1.1 upstream gets it
    // chunked, so the trailers still arrive.
    let mut checksum = HeaderMap::new();
    checksum.insert("x-checksum", HeaderValue::from_static("d00d"));
    let sized = Full::new(Bytes::from_static(b"twelve bytes"))
        .map_err(|never| match never {})
        .with_trailers(async move { Some(Ok(checksum)) })
        .boxed();
    let req = h2_req(&app, Method::POST, "/h1/sized")
        .header("content-length", "12")
        .header("trailer", "x-checksum")
        .body(sized)
        .unwrap();
    let v = collect(h2(app.addr, req).await).await.json();
    assert_eq!(v["body_bytes"], 12);
    assert_eq!(reported(&v, "trailers", "x-checksum"), ["d00d"]);
    assert!(reported(&v, "headers", "content-length").is_empty());
    // The same answer as raw bytes: a chunked body whose last chunk is followed by trailers.
    let text = raw_to_eof(
        app.addr,
        format!(
            "POST /h2c/raw HTTP/1.1\r\nHost: {}\r\nTE: trailers\r\nTrailer: X-Checksum\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\nX-Checksum: 42\r\n\r\n",
            app.addr
        )
        .as_bytes(),
    )
    .await;
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("transfer-encoding: chunked"), "{text}");
    assert!(lower.contains("\r\n0\r\nx-sum: 5\r\n"), "{text}");
    assert!(
        text.contains("x-checksum"),
        "the request trailer reached h2c: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Headers: cookies, Via, the client's host, the prefix
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn cookies_of_an_http2_client_reach_an_http11_upstream_as_one_field() {
    let (app, _) = probe_app().await;
    let req = h2_req(&app, Method::GET, "/h1/c")
        .header("cookie", "session=abc")
        .header("cookie", "theme=dark")
        .body(empty())
        .unwrap();
    let v = collect(h2(app.addr, req).await).await.json();
    assert_eq!(
        reported(&v, "headers", "cookie"),
        ["session=abc; theme=dark"]
    );
    // The echo upstream (HTTP/1.1) sees the same through the default routes.
    let req = h2_req(&app, Method::GET, "/public/c")
        .header("cookie", "a=1")
        .header("cookie", "b=2; c=3")
        .body(empty())
        .unwrap();
    let v = collect(h2(app.addr, req).await).await.json();
    assert_eq!(echo_header(&v, "cookie"), "a=1; b=2; c=3");
}

/// A Flask app behind Werkzeug's `ProxyFix` (trusting one proxy for host, proto and prefix),
/// answering `/cookies` with the cookies it read and the external URL it builds for itself.
const FLASK_APP: &str = r#"
import sys
from flask import Flask, jsonify, request, url_for
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import make_server
app = Flask("behind")
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)
@app.route("/cookies")
def cookies():
    return jsonify(cookies=request.cookies, url=url_for("cookies", _external=True))
server = make_server("127.0.0.1", 0, app, threaded=True)
print("PORT", server.port, flush=True)
server.serve_forever()
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_flask_app_reads_joined_cookies_and_builds_urls_under_the_stripped_prefix() {
    let mut child = KillOnDrop(
        Command::new(crate::tools::python())
            .args(["-u", "-c", FLASK_APP])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Flask app starts"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the Flask app said {line:?}"));
    let app = TestApp::spawn_with(with_routes(&format!(
        "[[routes]]\nprefix = \"/flask\"\nupstream = \"http://127.0.0.1:{port}\"\nauth = \"public\"\nstrip_prefix = true\n"
    )))
    .await;
    let req = h2_req(&app, Method::GET, "/flask/cookies")
        .header("cookie", "session=abc")
        .header("cookie", "theme=dark")
        .body(empty())
        .unwrap();
    let a = collect(h2(app.addr, req).await).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let v = a.json();
    assert_eq!(
        v["cookies"],
        serde_json::json!({"session": "abc", "theme": "dark"})
    );
    assert_eq!(v["url"], format!("http://{}/flask/cookies", app.addr));
}

#[tokio::test(flavor = "multi_thread")]
async fn via_is_appended_on_requests_and_responses_with_the_received_version() {
    let (app, _) = probe_app().await;
    let req = h2_req(&app, Method::GET, "/h2c/v")
        .header("via", "1.1 edge")
        .body(empty())
        .unwrap();
    let a = collect(h2(app.addr, req).await).await;
    assert_eq!(
        reported(&a.json(), "headers", "via"),
        ["1.1 edge", "2 authgate"]
    );
    let via: Vec<_> = a.headers.get_all("via").iter().collect();
    assert_eq!(
        via,
        ["1.1 upstream-proxy", "2 authgate"],
        "received over h2c"
    );
    let a = collect(
        h1(
            app.addr,
            h1_req(&app, Method::GET, "/h1/v").body(empty()).unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(reported(&a.json(), "headers", "via"), ["1.1 authgate"]);
    let via: Vec<_> = a.headers.get_all("via").iter().collect();
    assert_eq!(via, ["1.1 upstream-proxy", "1.1 authgate"]);
    let text = raw_to_eof(app.addr, b"GET /public/v HTTP/1.0\r\n\r\n").await;
    assert!(text.contains("\"1.0 authgate\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_host_follows_the_absolute_target_then_authority_then_host() {
    let (app, _) = probe_app().await;
    let res = raw_request(
        app.addr,
        "GET",
        "http://asked.example:8080/public/x",
        &[("Host", "other.example")],
    )
    .await;
    let v = echoed(&res);
    assert_eq!(echo_header(&v, "x-forwarded-host"), "asked.example:8080");
    assert_eq!(echo_header(&v, "host"), app.echo.to_string());
    let req = h2_req(&app, Method::GET, "/public/x")
        .body(empty())
        .unwrap();
    let v = collect(h2(app.addr, req).await).await.json();
    assert_eq!(echo_header(&v, "x-forwarded-host"), app.addr.to_string());
    let res = raw_request(app.addr, "GET", "/public/x", &[("Host", "plain.example")]).await;
    assert_eq!(
        echo_header(&echoed(&res), "x-forwarded-host"),
        "plain.example"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn preserve_host_sends_the_clients_host_to_http11_and_h2c_upstreams() {
    let (app, probe) = probe_app().await;
    let res = raw_request(app.addr, "GET", "/keep/x", &[("Host", "shop.example")]).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let v = res.json();
    assert_eq!(reported(&v, "headers", "host"), ["shop.example"]);
    assert_eq!(
        reported(&v, "headers", "x-forwarded-host"),
        ["shop.example"]
    );
    let res = raw_request(app.addr, "GET", "/keeph2c/x", &[("Host", "shop.example")]).await;
    let v = res.json();
    assert_eq!(v["version"], "HTTP/2.0");
    assert_eq!(
        v["authority"], "shop.example",
        ":authority is the client's host"
    );
    // Without preserve_host the upstream's own authority.
    let res = raw_request(app.addr, "GET", "/h1/x", &[("Host", "shop.example")]).await;
    assert_eq!(
        reported(&res.json(), "headers", "host"),
        [probe.to_string()]
    );
    let res = raw_request(app.addr, "GET", "/h2c/x", &[("Host", "shop.example")]).await;
    assert_eq!(res.json()["authority"], probe.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_host_is_refused_on_preserve_host_routes_whatever_the_upstream_protocol() {
    let (app, _) = probe_app().await;
    // `/keep` goes out on the plain HTTP/1.1 pool (origin form, Host set apart), `/keeph2c` on
    // the h2c client (the host becomes :authority): the same refusal on both.
    for path in ["/keep/x", "/keeph2c/x"] {
        let res = raw_request(app.addr, "GET", path, &[("Host", "")]).await;
        assert_eq!(res.status, 400, "{path}: {}", res.text());
        assert_eq!(
            res.error_code(),
            "invalid_request",
            "{path}: {}",
            res.text()
        );
    }
    // Without preserve_host the client's host is not sent, and an empty one is no reason to
    // refuse.
    let res = raw_request(app.addr, "GET", "/h1/x", &[("Host", "")]).await;
    assert_eq!(res.status, 200, "{}", res.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_prefix_is_the_stripped_prefix_and_never_the_clients() {
    let (app, _) = probe_app().await;
    let res = raw_request(
        app.addr,
        "GET",
        "/strip/orders/1",
        &[("X-Forwarded-Prefix", "/evil")],
    )
    .await;
    let v = res.json();
    assert_eq!(v["path"], "/base/orders/1");
    assert_eq!(reported(&v, "headers", "x-forwarded-prefix"), ["/strip"]);
    let res = raw_request(app.addr, "GET", "/h1/x", &[("X-Forwarded-Prefix", "/evil")]).await;
    assert!(reported(&res.json(), "headers", "x-forwarded-prefix").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Methods: TRACE, OPTIONS with Max-Forwards
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn trace_is_never_forwarded_and_max_forwards_zero_is_answered_by_the_gateway() {
    let (rec, seen) = recording_upstream().await;
    let routes = format!(
        "[[routes]]\nprefix = \"/r\"\nupstream = \"http://{rec}\"\nauth = \"token\"\n\
         [[routes]]\nprefix = \"/rp\"\nupstream = \"http://{rec}\"\nauth = \"public\"\nmethods = [\"GET\", \"OPTIONS\"]\n"
    );
    let app = TestApp::spawn_with(with_routes(&routes)).await;
    let tokens = app.user("tracy").await;
    let auth = bearer(&tokens.access);
    // TRACE: after the token checks on a token route, 405 with the default Allow list.
    let res = raw_request(app.addr, "TRACE", "/r/x", &[]).await;
    assert_eq!(res.status, 401);
    let res = raw_request(app.addr, "TRACE", "/r/x", &[("Authorization", &auth)]).await;
    assert_eq!(res.status, 405, "{}", res.text());
    assert_eq!(res.error_code(), "method_not_allowed");
    assert_eq!(
        res.header("allow"),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
    );
    let res = raw_request(app.addr, "TRACE", "/rp/x", &[]).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.header("allow"), Some("GET, OPTIONS"));
    // OPTIONS with Max-Forwards: 0: answered here, without a token.
    let res = raw_request(app.addr, "OPTIONS", "/r/x", &[("Max-Forwards", "0")]).await;
    assert_eq!(res.status, 204, "{}", res.text());
    assert_eq!(
        res.header("allow"),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
    );
    let res = raw_request(app.addr, "OPTIONS", "/rp/x", &[("Max-Forwards", "0")]).await;
    assert_eq!(res.status, 204);
    assert_eq!(res.header("allow"), Some("GET, OPTIONS"));
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
    // A larger value is decremented on the way.
    let res = raw_request(app.addr, "OPTIONS", "/public/x", &[("Max-Forwards", "5")]).await;
    assert_eq!(echo_header(&echoed(&res), "max-forwards"), "4");
    let res = raw_request(app.addr, "OPTIONS", "/r/x", &[("Max-Forwards", "1")]).await;
    assert_eq!(res.status, 401, "forwarding needs the token");
}

// ---------------------------------------------------------------------------------------------
// Bytes an HTTP client would tidy up: Transfer-Encoding, bad chunks, encoded dot segments
// ---------------------------------------------------------------------------------------------

/// `authgate_upstream_errors_total` lines of the gateway's metrics.
async fn upstream_error_lines(app: &TestApp) -> Vec<String> {
    let text = app
        .client
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("authgate_upstream_errors_total{"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_encodings_other_than_one_chunked_are_refused_before_forwarding() {
    let (rec, seen) = recording_upstream().await;
    let app = TestApp::spawn_with(with_routes(&format!(
        "[[routes]]\nprefix = \"/rec\"\nupstream = \"http://{rec}\"\nauth = \"public\"\n"
    )))
    .await;
    for te in ["gzip, chunked", "chunked, chunked", "identity, chunked"] {
        let res = raw_exchange(
            app.addr,
            format!(
                "POST /rec/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(res.status, 400, "{te}: {}", res.text());
        assert_eq!(res.error_code(), "invalid_request", "{te}");
    }
    let res = raw_exchange(
        app.addr,
        b"POST /rec/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 400, "two lines: {}", res.text());
    assert!(seen.lock().unwrap().is_empty(), "none was forwarded");
    let res = raw_exchange(
        app.addr,
        b"POST /rec/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_chunked_body_is_the_clients_400_never_a_502_or_an_upstream_error() {
    let app = TestApp::spawn().await;
    let before = upstream_error_lines(&app).await;
    // Bad from the first chunk, and bad after a good one (forwarding already started).
    for body in [
        "ZZ\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\nnot-hex\r\nxx\r\n0\r\n\r\n",
    ] {
        let res = raw_exchange(
            app.addr,
            format!(
                "POST /public/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(res.status, 400, "{body:?}: {}", res.text());
        assert_eq!(res.error_code(), "invalid_request");
    }
    // A body cut short of its Content-Length by the client closing its sending side.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"POST /public/x HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly some")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains(" 502 "), "{text}");
    assert_eq!(
        upstream_error_lines(&app).await,
        before,
        "nothing counted upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_dot_segments_with_parameters_are_refused() {
    let (rec, seen) = recording_upstream().await;
    let app = TestApp::spawn_with(with_routes(&format!(
        "[[routes]]\nprefix = \"/rec\"\nupstream = \"http://{rec}\"\nauth = \"public\"\n"
    )))
    .await;
    for target in [
        "/public/..%3B/api/x",
        "/public/..%3b/api/x",
        "/public/%2e%2e%3b/api/x",
        "/rec/.%3Bx/api/x",
        "/rec/..;/api/x",
    ] {
        let res = raw_request(app.addr, "GET", target, &[]).await;
        assert_eq!(res.status, 400, "{target}: {}", res.text());
        assert_eq!(res.error_code(), "invalid_request", "{target}");
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_query_parameter_is_refused_on_non_public_routes() {
    let app = TestApp::spawn_with(with_routes(
        "[[routes]]\nprefix = \"/maybe\"\nupstream = \"http://{echo}\"\nauth = \"optional\"\n",
    ))
    .await;
    let tokens = app.user("quentin").await;
    for path in [
        "/api/x?access_token=abc",
        "/api/x?a=1&access_token=abc",
        "/api/x?access%5Ftoken=abc",
        "/maybe/x?access_token=abc",
    ] {
        let res = app.get(path, Some(&tokens.access)).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let v =
        crate::proxy::echo_json(app.get("/api/x?token=abc&b=2", Some(&tokens.access)).await).await;
    assert_eq!(v["query"], "token=abc&b=2");
    let v = crate::proxy::echo_json(app.get("/public/x?access_token=abc", None).await).await;
    assert_eq!(
        v["query"], "access_token=abc",
        "public routes never read tokens"
    );
}

// ---------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_longer_than_the_route_timeout_is_not_cut() {
    let app = TestApp::spawn_with(with_routes(
        "[[routes]]\nprefix = \"/quick\"\nupstream = \"http://{echo}\"\nauth = \"public\"\ntimeout = \"1s\"\n",
    ))
    .await;
    let (mut tx, body) = channel();
    let req = h1_req(&app, Method::POST, "/quick/upload")
        .body(body)
        .unwrap();
    let sending = tokio::spawn(async move {
        for _ in 0..4 {
            tx.send_data(Bytes::from_static(b"0123456789"))
                .await
                .unwrap();
            // Time passing is the behaviour under test: the upload takes over 1.5 s.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let a = collect(h1(app.addr, req).await).await;
    sending.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["body_bytes"], 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_route_timeout_runs_again_once_the_body_is_sent() {
    let (held, _release) = crate::proxy::held_upstream().await;
    let app = TestApp::spawn_with(with_routes(&format!(
        "[[routes]]\nprefix = \"/held\"\nupstream = \"http://{held}\"\nauth = \"public\"\ntimeout = \"1s\"\n"
    )))
    .await;
    let res = app
        .client
        .post(app.url("/held/x"))
        .body("a body the upstream never answers")
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::GATEWAY_TIMEOUT, "gateway_timeout").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_on_an_auto_route_gets_an_http11_connection_though_h2_is_offered() {
    // Offers h2 and http/1.1 by ALPN.
    let (cert_pem, _, tls) = crate::proxy::localhost_tls();
    // A WebSocket echo over TLS that would pick h2 if the client offered it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                use futures_util::{SinkExt, StreamExt};
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert_pem).unwrap();
    let mut setup = with_routes(&format!(
        "[[routes]]\nprefix = \"/wss\"\nupstream = \"https://localhost:{port}\"\nauth = \"public\"\n"
    ));
    setup.proxy = format!("upstream_ca_file = \"{}\"", ca.display());
    let app = TestApp::spawn_with(setup).await;
    let mut socket = ws_connect(app.addr, "/wss", None).await.unwrap();
    ws_roundtrip(&mut socket, "over http/1.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_request_body_is_408_and_a_stalled_answer_is_cut() {
    // The stalling upstream: answers a head and five of ten bytes, then nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalling = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
                    .await;
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    let routes = format!(
        "[[routes]]\nprefix = \"/idle\"\nupstream = \"http://{{echo}}\"\nauth = \"public\"\nidle_timeout = \"1s\"\n\
         [[routes]]\nprefix = \"/stall\"\nupstream = \"http://{stalling}\"\nauth = \"public\"\nidle_timeout = \"1s\"\n\
         [[routes]]\nprefix = \"/stallh2\"\nupstream = \"http://{stalling}\"\nauth = \"public\"\nidle_timeout = \"1s\"\n"
    );
    let app = TestApp::spawn_with(with_routes(&routes)).await;
    // The request body stops after 3 of 10 bytes, before any answer: 408.
    let res = raw_exchange(
        app.addr,
        b"POST /idle/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
    )
    .await;
    assert_eq!(res.status, 408, "{}", res.text());
    assert_eq!(res.error_code(), "request_timeout");
    // The answer stops after 5 of 10 bytes: the client's answer is cut, over 1.1 and 2.
    let res = h1(
        app.addr,
        h1_req(&app, Method::GET, "/stall/x").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect())
        .await
        .expect("cut within 10 s");
    assert!(body.is_err(), "a stalled body passed as complete");
    let req = h2_req(&app, Method::GET, "/stallh2/x")
        .body(empty())
        .unwrap();
    let res = h2(app.addr, req).await;
    let body = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect())
        .await
        .expect("reset within 10 s");
    assert!(body.is_err(), "a stalled HTTP/2 stream passed as complete");
}

#[tokio::test(flavor = "multi_thread")]
async fn upgraded_connections_are_exempt_from_idle_timeout() {
    let ws = ws_echo_upstream().await;
    let app = TestApp::spawn_with(with_routes(&format!(
        "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws}\"\nauth = \"public\"\nidle_timeout = \"1s\"\n"
    )))
    .await;
    let mut socket = ws_connect(app.addr, "/ws", None).await.unwrap();
    ws_roundtrip(&mut socket, "before").await;
    // Time passing is the behaviour under test: longer than the route's idle_timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws_roundtrip(&mut socket, "after").await;
}

// ---------------------------------------------------------------------------------------------
// Expect: 100-continue
// ---------------------------------------------------------------------------------------------

/// Sends a head with `Expect: 100-continue` and a 5-byte `Content-Length`, and returns the
/// first bytes the gateway answers, plus the connection.
async fn expect_head(app: &TestApp, path: &str, extra: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n{extra}\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    (String::from_utf8_lossy(&buf[..n]).into_owned(), stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_is_answered_only_after_the_token_check_and_the_upstreams_100() {
    // Changed by docs/http-api.md §7.1 (this replaces tests/api/proxy.rs's
    // expect_100_continue_gets_its_interim_answer_and_the_body_passes, where the gateway sent
    // its own 100): no 100 before the route's checks pass, and the upstream's own 100 or final
    // answer is relayed.
    let refusing = crate::proxy::raw_upstream(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        true,
    )
    .await;
    // An upstream that ignores Expect: reads head and body, never sends 100.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let deaf = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.ends_with(b"hello") {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndeaf")
                    .await;
            });
        }
    });
    let routes = format!(
        "[[routes]]\nprefix = \"/refuse\"\nupstream = \"http://{refusing}\"\nauth = \"public\"\n\
         [[routes]]\nprefix = \"/deaf\"\nupstream = \"http://{deaf}\"\nauth = \"public\"\n"
    );
    let app = TestApp::spawn_with(with_routes(&routes)).await;

    // A public route: the echo upstream's 100 is relayed, then the body passes.
    let (first, mut stream) = expect_head(&app, "/public/x", "").await;
    assert!(first.starts_with("HTTP/1.1 100"), "{first}");
    stream.write_all(b"hello").await.unwrap();
    let (head, body) = read_one(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains("\"body_bytes\":5"), "{body}");
    // No token: the final 401 comes first; the body is never asked for.
    let (first, _) = expect_head(&app, "/api/x", "").await;
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    // With a token: the upstream's 100 is relayed, then the body passes.
    let tokens = app.user("edgar").await;
    let auth = format!("Authorization: {}\r\n", bearer(&tokens.access));
    let (first, mut stream) = expect_head(&app, "/api/x", &auth).await;
    assert!(first.starts_with("HTTP/1.1 100"), "{first}");
    stream.write_all(b"hello").await.unwrap();
    let (head, body) = read_one(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains("\"body_bytes\":5"), "{body}");
    // An upstream that refuses at once: its 413 reaches the client with no 100 before it.
    let (first, _) = expect_head(&app, "/refuse/x", "").await;
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
    // An upstream that ignores Expect: after a short wait the body is asked for anyway.
    let (first, mut stream) = expect_head(&app, "/deaf/x", "").await;
    assert!(first.starts_with("HTTP/1.1 100"), "{first}");
    stream.write_all(b"hello").await.unwrap();
    let (head, body) = read_one(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "deaf");
}

// ---------------------------------------------------------------------------------------------
// gRPC-shaped refusals (the real gRPC client and server are in grpc.rs)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn grpc_requests_refused_by_the_gateway_get_trailers_only_grpc_answers() {
    let (app, _) = probe_app().await;
    let grpc = |path: &str, content_type: &str| {
        h2_req(&app, Method::POST, path)
            .header("content-type", content_type.to_owned())
            .header("te", "trailers")
            .body(full(b"\0\0\0\0\0"))
            .unwrap()
    };
    let a = collect(h2(app.addr, grpc("/h2ct/pkg.Svc/M", "application/grpc")).await).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/grpc");
    assert_eq!(a.headers["grpc-status"], "16");
    assert!(a.headers.contains_key("grpc-message"));
    assert!(a.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm=\"authgate\""));
    assert!(a.body.is_empty() && a.trailers.is_none(), "trailers-only");
    let a = collect(
        h2(
            app.addr,
            grpc("/nowhere/pkg.Svc/M", "application/grpc+proto"),
        )
        .await,
    )
    .await;
    assert_eq!(a.headers["grpc-status"], "12", "no route: UNIMPLEMENTED");
    let tokens = app.user("greta").await;
    let mut req = grpc("/h2ct/pkg.Svc/M", "application/grpc");
    req.headers_mut()
        .insert("authorization", bearer("not.a.token").parse().unwrap());
    let a = collect(h2(app.addr, req).await).await;
    assert_eq!(a.headers["grpc-status"], "16");
    // gRPC-Web and HTTP/1.1 keep the JSON answers.
    let a = collect(
        h2(
            app.addr,
            grpc("/h2ct/pkg.Svc/M", "application/grpc-web+proto"),
        )
        .await,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["error"], "missing_token");
    let req = h1_req(&app, Method::POST, "/h2ct/pkg.Svc/M")
        .header("content-type", "application/grpc")
        .body(full(b"\0\0\0\0\0"))
        .unwrap();
    let a = collect(h1(app.addr, req).await).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // An allowed call passes untouched, TE: trailers included.
    let mut req = grpc("/h2ct/pkg.Svc/M", "application/grpc");
    req.headers_mut()
        .insert("authorization", bearer(&tokens.access).parse().unwrap());
    let a = collect(h2(app.addr, req).await).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(reported(&v, "headers", "te"), ["trailers"]);
    assert_eq!(
        reported(&v, "headers", "x-auth-user-id"),
        [claims(&tokens.access)["sub"].as_str().unwrap()]
    );
}

// ---------------------------------------------------------------------------------------------
// §7.2: fresh_methods and optional, end to end
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn fresh_methods_ask_a_fresh_token_for_those_methods_only() {
    let app = TestApp::spawn_with(with_routes(
        r#"
[[routes]]
prefix = "/orders"
upstream = "http://{echo}"
auth = "token"
fresh_methods = ["POST", "DELETE"]
fresh_max_age = "5m"
methods = ["GET", "POST", "DELETE"]
"#,
    ))
    .await;
    let tokens = app.user("frida").await;
    // A fresh login token passes everything.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let res = app
            .request(method.clone(), "/orders/1", Some(&tokens.access))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{method}");
    }
    // A refreshed (not fresh) token: GET yes, POST and DELETE need a step-up.
    let refreshed: Value = app.refresh(&tokens.refresh).await.json().await.unwrap();
    let stale = refreshed["access_token"].as_str().unwrap();
    let res = app.get("/orders/1", Some(stale)).await;
    assert_eq!(res.status(), StatusCode::OK);
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let res = app
            .request(method, "/orders/1", Some(stale))
            .send()
            .await
            .unwrap();
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_error(res, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
        assert!(
            challenge.contains("insufficient_user_authentication"),
            "{challenge}"
        );
        assert!(challenge.ends_with("max_age=300"), "{challenge}");
    }
    // Not allowed at all: 405 only after the token checks.
    let res = app
        .request(reqwest::Method::PUT, "/orders/1", None)
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    let res = app
        .request(reqwest::Method::PUT, "/orders/1", Some(stale))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_routes_forward_anonymous_and_identified_requests_and_refuse_bad_tokens() {
    let app = TestApp::spawn_with(with_routes(
        "[[routes]]\nprefix = \"/feed\"\nupstream = \"http://{echo}\"\nauth = \"optional\"\n",
    ))
    .await;
    // Anonymous, other schemes, and an empty Bearer: forwarded without identity, and client
    // copies of the identity headers removed all the same.
    for authorization in [None, Some("Basic dXNlcjpwYXNz"), Some("Bearer ")] {
        let mut req = app
            .request(reqwest::Method::GET, "/feed/x", None)
            .header("X-Auth-User-Id", "1");
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let v = crate::proxy::echo_json(req.send().await.unwrap()).await;
        assert!(
            echo_headers(&v, "x-auth-user-id").is_empty(),
            "{authorization:?}"
        );
        assert!(
            echo_headers(&v, "x-auth-username").is_empty(),
            "{authorization:?}"
        );
    }
    let tokens = app.user("olive").await;
    let v = crate::proxy::echo_json(app.get("/feed/x", Some(&tokens.access)).await).await;
    assert_eq!(echo_header(&v, "x-auth-username"), "olive");
    // Present but bad, expired or revoked: the same 401 as a token route.
    let res = app.get("/feed/x", Some("not.a.token")).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let res = app.get("/feed/x", Some(&tokens.refresh)).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(app.logout(&tokens.access).await.status(), StatusCode::OK);
    let res = app.get("/feed/x", Some(&tokens.access)).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "token_revoked").await;
}
