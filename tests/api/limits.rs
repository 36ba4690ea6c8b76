//! Limits on what a client may send and how slowly: the request-target (414), the header
//! section on HTTP/1.1 and HTTP/2 (431), parser-level refusals, and the body timeout of the
//! auth endpoints (408). Raw sockets where an HTTP client would tidy the bytes up.

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{raw_exchange, raw_request, RawResponse, Setup, TestApp};

/// The request id the gateway returned, asserting there is one.
fn request_id(res: &RawResponse) -> String {
    res.header("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on a {} answer", res.status))
        .to_owned()
}

/// Asserts a raw answer is the §1 JSON error `code` with `status` and a request id.
fn assert_raw_error(res: &RawResponse, status: u16, code: &str) {
    assert_eq!(res.status, status, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.error_code(), code, "{}", res.text());
    assert!(!request_id(res).is_empty());
}

/// A client speaking HTTP/2 with prior knowledge to the plain-text listener.
fn h2_client() -> reqwest::Client {
    crate::helpers::crypto();
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client")
}

// ---------------------------------------------------------------------------------------------
// Request-target (414)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_request_target_over_8_kib_is_414_with_a_json_body() {
    let app = TestApp::spawn().await;
    // Exactly 8 KiB still reaches the route.
    let at = format!("/public/{}", "a".repeat(8192 - "/public/".len()));
    let res = raw_request(app.addr, "GET", &at, &[]).await;
    assert_eq!(res.status, 200, "{}", res.text());
    // One byte more, in the path or in the query, is 414 from the gateway itself.
    let over = format!("{at}b");
    assert_raw_error(
        &raw_request(app.addr, "GET", &over, &[]).await,
        414,
        "uri_too_long",
    );
    let query = format!("/public/x?q={}", "b".repeat(9 * 1024));
    assert_raw_error(
        &raw_request(app.addr, "GET", &query, &[]).await,
        414,
        "uri_too_long",
    );
    // On a protected route too, before any token check.
    let api = format!("/api/{}", "c".repeat(9 * 1024));
    assert_raw_error(
        &raw_request(app.addr, "GET", &api, &[]).await,
        414,
        "uri_too_long",
    );
    // Over HTTP/2, the :path counts the same.
    let res = h2_client().get(app.url(&query)).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert!(res.headers().contains_key("x-request-id"));
    crate::helpers::assert_error(res, StatusCode::URI_TOO_LONG, "uri_too_long").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_70_kib_target_is_refused_414_by_the_parser_itself() {
    let app = TestApp::spawn().await;
    let long = format!("/public/{}", "a".repeat(70 * 1024));
    let res = raw_request(app.addr, "GET", &long, &[]).await;
    // hyper's own limit (64 KiB): the status is right, the body is empty (docs/BEHAVIOUR.md).
    assert_eq!(res.status, 414);
    assert!(res.body.is_empty(), "{}", res.text());
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Header section (431)
// ---------------------------------------------------------------------------------------------

/// `n` header lines besides `Host` and `Connection`.
fn many_headers(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect()
}

/// `GET /public/x` over HTTP/2 with `headers`.
async fn h2_get(app: &TestApp, headers: &[(String, String)]) -> reqwest::Response {
    let mut req = h2_client().get(app.url("/public/x"));
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    res
}

/// Asserts the gateway's own 431: §1 JSON with a request id.
async fn assert_431(res: reqwest::Response) {
    assert!(res.headers().contains_key("x-request-id"));
    crate::helpers::assert_error(
        res,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;
}

fn as_pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn more_header_fields_than_max_headers_is_431_on_http1() {
    let app = TestApp::spawn().await;
    // Host + Connection + 98 = 100 fields: the default limit, served.
    let fits = many_headers(98);
    let res = raw_request(app.addr, "GET", "/public/x", &as_pairs(&fits)).await;
    assert_eq!(res.status, 200, "{} {:?}", res.text(), res.headers);
    // 101 fields: the gateway's own 431, JSON with a request id.
    let over = many_headers(99);
    let res = raw_request(app.addr, "GET", "/public/x", &as_pairs(&over)).await;
    assert_raw_error(&res, 431, "headers_too_large");
    // 150 fields is still the gateway's answer (hyper's parser takes twice the limit).
    let res = raw_request(app.addr, "GET", "/public/x", &as_pairs(&many_headers(148))).await;
    assert_raw_error(&res, 431, "headers_too_large");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_header_over_max_header_bytes_is_431_on_http1_and_http2() {
    let app = TestApp::spawn().await;
    // A 60 KB cookie is within the default 64 KiB.
    let big = "c".repeat(60_000);
    let res = raw_request(app.addr, "GET", "/public/x", &[("cookie", &big)]).await;
    assert_eq!(res.status, 200);
    // One 64 KiB cookie: over (name + value + 32 alone exceed 65536).
    let cookie = "c".repeat(65_536);
    let res = raw_request(app.addr, "GET", "/public/x", &[("cookie", &cookie)]).await;
    assert_raw_error(&res, 431, "headers_too_large");
    let cookie_field = |value: &str| vec![("cookie".to_owned(), value.to_owned())];
    assert_431(h2_get(&app, &cookie_field(&cookie)).await).await;
    // Within the limit over HTTP/2 (which used to stop at 16 KiB).
    let res = h2_get(&app, &cookie_field(&big)).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_limits_are_configurable_and_count_alike_on_both_protocols() {
    let app = TestApp::spawn_with(Setup {
        server: "max_header_bytes = 2048\nmax_headers = 10".into(),
        ..Setup::default()
    })
    .await;
    // Many small fields summing past 2048 bytes: 8 fields of 32 + 2 + 230.
    let value = "v".repeat(230);
    let fields: Vec<(String, String)> = (0..8).map(|i| (format!("x{i}"), value.clone())).collect();
    let res = raw_request(app.addr, "GET", "/public/x", &as_pairs(&fields)).await;
    assert_raw_error(&res, 431, "headers_too_large");
    assert_431(h2_get(&app, &fields).await).await;
    // 11 fields over HTTP/2: ten of ours and reqwest's `accept` (pseudo-headers not counted).
    assert_431(h2_get(&app, &many_headers(10)).await).await;
    // 10 fields pass on both (HTTP/1.1: eight, `Host` and `Connection`).
    let res = h2_get(&app, &many_headers(9)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = raw_request(app.addr, "GET", "/public/x", &as_pairs(&many_headers(8))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_past_the_parsers_cap_is_refused_without_reading_more() {
    let app = TestApp::spawn().await;
    // The parser's cap is max_header_bytes + 16 KiB of raw head; a head that reaches it without
    // ending is refused by hyper: 431, no body, and the connection closed.
    let cap = 65_536 + 16_384;
    let mut head = b"GET /public/x HTTP/1.1\r\nHost: gw\r\nx-big: ".to_vec();
    head.resize(cap, b'a');
    let res = raw_exchange(app.addr, &head).await;
    assert_eq!(res.status, 431);
    assert!(res.body.is_empty());
    // HTTP/2: h2 answers a header list over its cap with a bare 431 as well.
    let huge = "c".repeat(100_000);
    let res = h2_client()
        .get(app.url("/public/x"))
        .header("cookie", &huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(!res.headers().contains_key("x-request-id"));
    // Nobody else is affected.
    assert_eq!(app.get("/public/x", None).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folded_header_is_refused_by_the_parser_with_400() {
    let app = TestApp::spawn().await;
    let res = raw_exchange(
        app.addr,
        b"GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n",
    )
    .await;
    // hyper refuses obsolete line folding before the gateway sees the request: the status is
    // right, the body is empty (docs/BEHAVIOUR.md).
    assert_eq!(res.status, 400);
    assert!(res.body.is_empty());
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Body timeout (408)
// ---------------------------------------------------------------------------------------------

/// Opens a connection and sends the head of `POST path` announcing `len` body bytes, then
/// `first` of them.
async fn stalled_post(app: &TestApp, path: &str, len: usize, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream
}

/// Reads everything until the gateway closes the connection, within 10 s.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buf),
    )
    .await
    .expect("the gateway closed the connection within 10 s")
    .unwrap_or_default();
    buf
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auth_body_that_stops_moving_is_408_and_the_connection_closes() {
    let app = TestApp::spawn_with(Setup {
        server: "body_timeout = \"1s\"".into(),
        ..Setup::default()
    })
    .await;
    let mut slow = stalled_post(&app, "/auth/login", 64, b"{\"username\":").await;
    let answer = read_until_closed(&mut slow).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.contains("\"error\":\"request_timeout\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-request-id: "),
        "{text}"
    );
    app.stop().await;
}
