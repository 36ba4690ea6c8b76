//! Connection handling: the request-head timeout is real, the connection cap holds, and
//! https upstreams are reached through `upstream_ca_file`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{crypto, Setup, TestApp};

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
    assert!(started.elapsed() < Duration::from_secs(10));
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

/// An https upstream with a self-signed certificate for `localhost`; returns its port and the
/// certificate PEM.
async fn tls_upstream() -> (u16, String) {
    crypto();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = serde_json::json!({
                        "path": req.uri().path(),
                        "version": format!("{:?}", req.version()),
                        "host": req.headers().get("host").and_then(|h| h.to_str().ok()),
                    });
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body.to_string(),
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, pem)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_are_trusted_through_upstream_ca_file() {
    let (port, pem) = tls_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let app = TestApp::spawn_in(
        Setup {
            proxy: format!("upstream_ca_file = \"{}\"", ca.display()),
            routes: Some(format!(
                "[[routes]]\nprefix = \"/secure\"\nupstream = \"https://localhost:{port}\"\nauth = \"public\"\n"
            )),
            ..Setup::default()
        },
        dir,
    )
    .await;
    let res = app.get("/secure/x", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["path"], "/secure/x");
    assert_eq!(
        body["version"], "HTTP/2.0",
        "ALPN negotiated h2 with the upstream"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_upstream_with_an_untrusted_certificate_is_a_bad_gateway() {
    let (port, _pem) = tls_upstream().await;
    let app = TestApp::spawn_with(Setup {
        routes: Some(format!(
            "[[routes]]\nprefix = \"/secure\"\nupstream = \"https://localhost:{port}\"\nauth = \"public\"\n"
        )),
        ..Setup::default()
    })
    .await;
    let res = app.get("/secure/x", None).await;
    crate::helpers::assert_error(res, StatusCode::BAD_GATEWAY, "bad_gateway").await;
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
