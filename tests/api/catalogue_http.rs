//! The attack catalogue's HTTP cases (sections E, F and G: identity-header spoofing and
//! hop-by-hop abuse, HTTP/1.1 framing and smuggling, path and method tricks) as raw bytes over
//! TCP, against routes whose upstream records every request it receives. A refused case must
//! leave it untouched; a smuggled request must never arrive as a request of its own.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{raw_exchange, raw_request, RawResponse, Setup, TestApp};
use crate::proxy::{echo_headers, echoed, recording_upstream, Seen};

/// `/pub` (public) and `/tok` (token) to a recording upstream; `/api` (token) and `/public`
/// to the echo upstream.
async fn bench() -> (TestApp, Seen) {
    let (rec, seen) = recording_upstream().await;
    let app = TestApp::spawn_with(Setup {
        routes: Some(format!(
            "{}\n[[routes]]\nprefix = \"/pub\"\nupstream = \"http://{rec}\"\nauth = \"public\"\n\n\
             [[routes]]\nprefix = \"/tok\"\nupstream = \"http://{rec}\"\nauth = \"token\"\n",
            crate::helpers::DEFAULT_ROUTES
        )),
        ..Setup::default()
    })
    .await;
    (app, seen)
}

/// Sends `bytes` on one connection and reads everything until the gateway closes it.
async fn exchange_all(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(res: &RawResponse) -> u16 {
    res.status
}

// ---------------------------------------------------------------- E: identity headers

#[tokio::test(flavor = "multi_thread")]
async fn e1_to_e6_spoofed_identity_in_every_spelling_and_by_connection_nomination() {
    let (app, _seen) = bench().await;
    let tokens = app.user("eve").await;
    let auth = format!("Bearer {}", tokens.access);
    let sub = crate::helpers::claims(&tokens.access)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = raw_request(
        app.addr,
        "GET",
        "/api/x",
        &[
            ("Authorization", &auth),
            ("X-Auth-User-Id", "2"),
            ("x-auth-user-id", "3"),
            ("X_Auth_User_Id", "4"),
            ("x-auth_user-id", "5"),
            ("X-Auth-Roles", "admin"),
            ("X-Auth-Fresh", "true"),
            ("X-Auth-Anything", "x"),
            // E6: asking the gateway to drop its own header after adding it.
            ("Connection", "X-Auth-User-Id, X-Auth-Roles"),
        ],
    )
    .await;
    let echo = echoed(&res);
    assert_eq!(echo_headers(&echo, "x-auth-user-id"), [sub]);
    assert_eq!(echo_headers(&echo, "x-auth-roles"), [""]);
    assert_eq!(echo_headers(&echo, "x-auth-fresh"), ["true"]);
    for gone in ["x_auth_user_id", "x-auth_user-id", "x-auth-anything"] {
        assert!(echo_headers(&echo, gone).is_empty(), "{gone}");
    }

    // E2: a public route gets no identity at all, whatever the client claims.
    let res = raw_request(
        app.addr,
        "GET",
        "/public/x",
        &[("X-Auth-User-Id", "admin"), ("X-Auth-Roles", "admin")],
    )
    .await;
    let echo = echoed(&res);
    assert!(echo_headers(&echo, "x-auth-user-id").is_empty());
    assert!(echo_headers(&echo, "x-auth-roles").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn e7_to_e12_hop_by_hop_forwarding_and_routing_headers() {
    let (app, _seen) = bench().await;
    let tokens = app.user("mallory").await;
    let auth = format!("Bearer {}", tokens.access);
    let res = raw_request(
        app.addr,
        "GET",
        "/api/x",
        &[
            ("Authorization", &auth),
            // E7: nominating the credential does not unauthenticate the request.
            ("Connection", "Authorization, Keep-Alive"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic eDp5"),
            ("X-Forwarded-For", "127.0.0.1"),
            ("Forwarded", "for=127.0.0.1"),
            ("X-Real-IP", "127.0.0.1"),
            ("X-Original-URL", "/admin"),
            ("X-Rewrite-URL", "/admin"),
        ],
    )
    .await;
    let echo = echoed(&res);
    // E8: hop-by-hop fields end here.
    for gone in [
        "keep-alive",
        "proxy-authorization",
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
    ] {
        assert!(echo_headers(&echo, gone).is_empty(), "{gone}");
    }
    // E9: the client's X-Forwarded-For is kept and the peer appended, never replaced.
    assert_eq!(
        echo_headers(&echo, "x-forwarded-for"),
        ["127.0.0.1, 127.0.0.1"]
    );
    // E12 (decision D-8): the client's bearer token does not go upstream by default.
    assert!(echo_headers(&echo, "authorization").is_empty());
}

// ---------------------------------------------------------------- F: framing

#[tokio::test(flavor = "multi_thread")]
async fn f1_f2_a_request_framed_twice_never_smuggles_a_second_one() {
    let (app, seen) = bench().await;
    // CL.TE: the chunked body ends at once; the rest would be a second request to a reader
    // that believed Content-Length.
    let smuggle = b"POST /pub/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 44\r\n\
                    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /pub/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    let _ = exchange_all(app.addr, smuggle).await;
    // TE.CL: the chunk claims 8 bytes that a Content-Length reader would leave behind.
    let smuggle = b"POST /pub/b HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\
                    Transfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\nGET /pub/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    let _ = exchange_all(app.addr, smuggle).await;
    let seen = seen.lock().unwrap();
    assert!(
        !seen.iter().any(|t| t.contains("smuggled")),
        "a smuggled request arrived: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn f3_to_f8_malformed_framing_and_header_lines_are_400_and_untouched() {
    let (app, seen) = bench().await;
    let cases: &[(&str, &[u8])] = &[
        (
            "F3 xchunked",
            b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "F3 chunked, identity",
            b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "F3 two TE lines",
            b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "F3 gzip, chunked",
            b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "F4 TE on HTTP/1.0",
            b"POST /pub/x HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "F5 differing CL",
            b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        (
            "F5 CL +6",
            b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nContent-Length: +6\r\n\r\nabcdef",
        ),
        (
            "F5 CL -1",
            b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "F7 bare CR in a value",
            b"GET /pub/x HTTP/1.1\r\nHost: gw\r\nX-A: a\rb\r\n\r\n",
        ),
        (
            "F7 NUL in a value",
            b"GET /pub/x HTTP/1.1\r\nHost: gw\r\nX-A: a\x00b\r\n\r\n",
        ),
        (
            "F7 obs-fold",
            b"GET /pub/x HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n b\r\n\r\n",
        ),
        (
            "F8 whitespace before the first header",
            b"GET /pub/x HTTP/1.1\r\n Host: gw\r\n\r\n",
        ),
        ("F9 no Host", b"GET /pub/x HTTP/1.1\r\n\r\n"),
        (
            "F9 two Hosts",
            b"GET /pub/x HTTP/1.1\r\nHost: gw\r\nHost: evil\r\n\r\n",
        ),
    ];
    for (case, bytes) in cases {
        let res = raw_exchange(app.addr, bytes).await;
        assert_eq!(res.status, 400, "{case}: {}", res.text());
    }
    // F6: chunk sizes that overflow or are not hex are the client's fault, never a 502.
    for (case, bytes) in [
        (
            "F6 overflow",
            &b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n"[..],
        ),
        (
            "F6 not hex",
            &b"POST /pub/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n"[..],
        ),
    ] {
        let text = exchange_all(app.addr, bytes).await;
        assert!(!text.starts_with("HTTP/1.1 200 "), "{case}: {text}");
        assert!(!text.contains(" 502 "), "{case}: {text}");
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().all(|t| !t.is_empty()) && seen.len() <= 2,
        "only the F6 requests may have begun upstream: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn f10_f11_pipelined_requests_are_each_authenticated_and_refusals_upload_nothing() {
    let (app, seen) = bench().await;
    let tokens = app.user("pipe").await;
    // F10: the first request's token does not carry over to the second.
    let pipelined = format!(
        "GET /tok/first HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\r\n\
         GET /tok/second HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        tokens.access
    );
    let text = exchange_all(app.addr, pipelined.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("HTTP/1.1 401 "), "{text}");
    assert_eq!(*seen.lock().unwrap(), ["/tok/first"]);

    // F11: no 100 Continue before the token check; the refusal comes first.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /tok/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

// ---------------------------------------------------------------- G: paths and methods

#[tokio::test(flavor = "multi_thread")]
async fn g_disguised_paths_never_reach_a_token_route_without_a_token() {
    let (app, seen) = bench().await;
    for target in [
        "/pub/../tok/x",
        "/pub/./../tok/x",
        "/pub/%2e%2e/tok/x",
        "/pub/%2E%2e/tok/x",
        "/pub/.%2e/tok/x",
        "/pub%2f..%2ftok/x",
        "/pub/..%2ftok/x",
        "/pub\\..\\tok\\x",
        "/pub/%5c../tok/x",
        "//tok/x",
        "/pub//../tok/x",
        "/TOK/x",
        "/Tok/x",
        "/pub/..;/tok/x",
        "/tok;x/y",
        "/tok./x",
        "/pub/%252e%252e/tok/x",
        "/pub/%c0%ae%c0%ae/tok/x",
        "/pub/x/../../tok/x",
        "/tok/x?/pub/",
    ] {
        let res = raw_request(app.addr, "GET", target, &[]).await;
        let reached: Vec<String> = seen.lock().unwrap().drain(..).collect();
        for t in &reached {
            // A public request may pass with its path made harmless, never as a /tok one.
            // Decoded at most once: `%252e` stays `%2e` for the public upstream, whose own
            // decoding is its business (docs/security.md, double encoding).
            assert!(
                t.starts_with("/pub/") && !t.contains("/../") && !t.contains("/./"),
                "{target}: the upstream saw {t:?} ({})",
                status_of(&res)
            );
        }
        if reached.is_empty() {
            assert!(
                matches!(res.status, 400 | 401 | 404),
                "{target}: {}",
                res.status
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn g8_g11_g13_prefix_boundaries_methods_and_overrides() {
    let (app, seen) = bench().await;
    // G8: /tok does not swallow /tokens, /pub does not lend itself to /public-ish names.
    let res = raw_request(app.addr, "GET", "/tokens/x", &[]).await;
    assert_eq!(res.status, 404);
    // G11: odd method spellings on a token route are refused before anything reaches it.
    for method in ["get", "GeT", "FOO", "PROPFIND", "TRACE"] {
        let res = raw_request(app.addr, method, "/tok/x", &[]).await;
        assert!(
            matches!(res.status, 400 | 401 | 405),
            "{method}: {}",
            res.status
        );
    }
    // G13: override headers do not change what is authorised (no token: still 401).
    let res = raw_request(
        app.addr,
        "POST",
        "/tok/x",
        &[("X-HTTP-Method-Override", "GET"), ("Content-Length", "0")],
    )
    .await;
    assert_eq!(res.status, 401);
    assert!(seen.lock().unwrap().is_empty());
    // A request-target in absolute form names its own host; the path rules are the same.
    let res = raw_exchange(
        app.addr,
        b"GET http://gw/pub/../tok/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 401);
    assert!(seen.lock().unwrap().is_empty());
}
