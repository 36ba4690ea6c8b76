//! Connection handling: the request-head timeout is real and the connection cap holds; the
//! admin port's metrics.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Setup, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let app = TestApp::spawn_with(Setup {
        server: "request_header_timeout = \"1s\"".into(),
        ..Setup::default()
    })
    .await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // The gateway closes the connection (possibly after a 408); reading reaches EOF.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 10 s");
    // The configured 1 s, not hyper's 30 s default nor the 10 s of our default config.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Everyone else is still served.
    let ok = app.get("/public/x", None).await;
    assert_eq!(ok.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_max_connections_wait_until_a_slot_frees() {
    let app = TestApp::spawn_with(Setup {
        server: "max_connections = 1".into(),
        ..Setup::default()
    })
    .await;
    // The first connection takes the only slot and holds it (idle, kept alive).
    let mut first = TcpStream::connect(app.addr).await.unwrap();
    first
        .write_all(b"GET /public/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    // A second connection is accepted by the kernel but not served while the first is open.
    let second = {
        let url = app.url("/public/b");
        tokio::spawn(async move { crate::helpers::client().get(url).send().await })
    };
    let waited = tokio::time::timeout(Duration::from_millis(300), async {
        while !second.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        waited.is_err(),
        "the second connection was served beyond the cap"
    );
    // Closing the first frees the slot and the second is answered.
    drop(first);
    let res = second.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_on_the_admin_port_count_requests_auth_failures_and_upstream_errors() {
    let app = TestApp::spawn_with(Setup {
        routes: Some(
            crate::helpers::default_routes("127.0.0.1:9".parse().unwrap())
                .replace("prefix = \"/public\"", "prefix = \"/down\""),
        ),
        ..Setup::default()
    })
    .await;
    assert_eq!(
        app.get("/api/x", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/down/x", None).await.status(),
        StatusCode::BAD_GATEWAY
    );
    let res = app
        .client
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    for want in [
        r#"authgate_requests_total{route="/api",status="401"} 1"#,
        r#"authgate_auth_failures_total{reason="missing_token"} 1"#,
        r#"authgate_upstream_errors_total{route="/down",error="bad_gateway"} 1"#,
        r#"authgate_revocation_entries{kind="session"} 0"#,
        r#"authgate_request_duration_seconds_count{route="/api"} 1"#,
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    // Never on the public port.
    assert_eq!(
        app.get("/metrics", None).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}
