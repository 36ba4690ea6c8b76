//! A real gRPC server and client through the gateway (docs/http-api.md §7.1): grpcio from the test
//! venv (`tests/api/grpc_peer.py`), behind a token route on an h2c upstream and on an https
//! upstream (ALPN h2). grpcio is grpc-core, the strictest peer there is about `te: trailers`,
//! trailers-only answers and HTTP/2 framing, and needs no generated code or protoc here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::helpers::{claims, with_routes, TestApp};

/// The peer script next to this file.
fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/grpc_peer.py")
}

/// A grpcio server (`grpc_peer.py serve`), killed on drop.
pub struct GrpcServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl GrpcServer {
    /// Starts a server in clear text, or with TLS from `tls` (certificate, key) files.
    pub fn start(tls: Option<(&Path, &Path)>) -> GrpcServer {
        let mut cmd = Command::new(crate::tools::python());
        cmd.args(["-u", script(), "serve"]);
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the gRPC peer starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the gRPC peer said {line:?}"));
        GrpcServer { child, port }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call with grpcio's client (`grpc_peer.py call`): the JSON it prints.
pub async fn call(target: String, method: &str, token: Option<&str>, extra: &[&str]) -> Value {
    let mut args = vec![
        "-u".to_owned(),
        script().to_owned(),
        "call".to_owned(),
        target,
        method.to_owned(),
    ];
    if let Some(t) = token {
        args.extend(["--token".to_owned(), t.to_owned()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(crate::tools::python())
            .args(&args)
            .output()
            .expect("the gRPC client runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gRPC client failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// How many calls the server has answered, asked directly (not through the gateway).
async fn calls_served(server: &GrpcServer) -> u64 {
    let v = call(format!("127.0.0.1:{}", server.port), "Calls", None, &[]).await;
    assert_eq!(v["code"], "OK", "{v}");
    v["responses"][0]["calls"].as_u64().unwrap()
}

/// Unary and server-streaming calls with a token, none without, through `app` to `server`.
async fn check_calls_through(app: &TestApp, server: &GrpcServer, user: &str) {
    let tokens = app.user(user).await;
    let user_id = claims(&tokens.access)["sub"].as_str().unwrap().to_owned();
    let target = app.addr.to_string();
    let before = calls_served(server).await;

    let v = call(target.clone(), "Unary", Some(&tokens.access), &[]).await;
    assert_eq!(v["code"], "OK", "{v}");
    assert_eq!(v["responses"][0]["user_id"], user_id.as_str());
    assert_eq!(v["responses"][0]["username"], user);
    assert_eq!(v["responses"][0]["message"], "hello");
    let v = call(target.clone(), "Stream", Some(&tokens.access), &[]).await;
    assert_eq!(v["code"], "OK", "{v}");
    let responses = v["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 3, "{v}");
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["user_id"], user_id.as_str());
    }
    assert_eq!(calls_served(server).await, before + 2);

    // Refused by the gateway: UNAUTHENTICATED with the challenge, and the server never called.
    for token in [None, Some("not.a.token"), Some(tokens.refresh.as_str())] {
        let v = call(target.clone(), "Unary", token, &[]).await;
        assert_eq!(v["code"], "UNAUTHENTICATED", "{token:?}: {v}");
        let details = v["details"].as_str().unwrap().to_ascii_lowercase();
        assert!(details.contains("token"), "{v}");
        let challenge = v["trailing"]["www-authenticate"]
            .as_str()
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer realm=\"authgate\""), "{v}");
        let v = call(target.clone(), "Stream", token, &[]).await;
        assert_eq!(v["code"], "UNAUTHENTICATED", "{token:?}: {v}");
    }
    assert_eq!(
        calls_served(server).await,
        before + 2,
        "refused calls reached it"
    );
    // A service no route serves: UNIMPLEMENTED from the gateway itself.
    let v = call(
        target,
        "Unary",
        Some(&tokens.access),
        &["--service", "demo.Other"],
    )
    .await;
    assert_eq!(v["code"], "UNIMPLEMENTED", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_pass_a_token_route_to_an_h2c_upstream() {
    let server = GrpcServer::start(None);
    let route = format!(
        "[[routes]]\nprefix = \"/demo.Echo\"\nupstream = \"http://127.0.0.1:{}\"\nauth = \"token\"\nupstream_protocol = \"h2c\"\n",
        server.port
    );
    let app = TestApp::spawn_with(with_routes(&route)).await;
    check_calls_through(&app, &server, "grace").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_pass_a_token_route_to_an_https_upstream() {
    let (cert_pem, key_pem, _) = crate::proxy::localhost_tls();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let server = GrpcServer::start(Some((&cert, &key)));
    let route = format!(
        "[[routes]]\nprefix = \"/demo.Echo\"\nupstream = \"https://localhost:{}\"\nauth = \"token\"\n",
        server.port
    );
    let mut setup = with_routes(&route);
    setup.proxy = format!("upstream_ca_file = \"{}\"", cert.display());
    let app = TestApp::spawn_with(setup).await;
    // Asked directly, the server needs TLS: count its calls over TLS too.
    let ca = cert.to_str().unwrap().to_owned();
    let direct = |method: &'static str| {
        let ca = ca.clone();
        let target = format!("127.0.0.1:{}", server.port);
        async move {
            let extra = ["--ca", ca.as_str(), "--authority", "localhost"];
            call(target, method, None, &extra).await
        }
    };
    let v = direct("Calls").await;
    assert_eq!(v["code"], "OK", "{v}");
    let tokens = app.user("helen").await;
    let v = call(app.addr.to_string(), "Unary", Some(&tokens.access), &[]).await;
    assert_eq!(v["code"], "OK", "{v}");
    assert_eq!(v["responses"][0]["username"], "helen");
    let v = call(app.addr.to_string(), "Stream", Some(&tokens.access), &[]).await;
    assert_eq!(v["responses"].as_array().unwrap().len(), 3, "{v}");
    let before = direct("Calls").await["responses"][0]["calls"]
        .as_u64()
        .unwrap();
    let v = call(app.addr.to_string(), "Unary", None, &[]).await;
    assert_eq!(v["code"], "UNAUTHENTICATED", "{v}");
    let after = direct("Calls").await["responses"][0]["calls"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before, "a refused call reached the server");
}
