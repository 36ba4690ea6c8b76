//! The real binary: config errors exit 64 before any port is bound, check-config, SIGTERM
//! drains and exits 0, admin endpoints live on the admin port only, HTTPS over HTTP/1.1 and
//! HTTP/2, the open-files limit raised at start.

use std::net::TcpListener;
use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::{binary, client, crypto, run, write_binary_config, Process};

/// Asserts that starting with `config_text` exits 64 naming `key` and `reason`.
fn assert_config_error(config_text: &str, env: &[(&str, &str)], key: &str, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, config_text).unwrap();
    let (code, stderr) = run(&["--config", path.to_str().unwrap()], env);
    assert_eq!(code, Some(64), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains(&path.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains(key), "names {key}: {stderr}");
    assert!(stderr.contains(reason), "says {reason:?}: {stderr}");
    // check-config agrees, with the same message.
    let (code, check) = run(&["check-config", "--config", path.to_str().unwrap()], env);
    assert_eq!(code, Some(64), "check-config: {check}");
    assert!(check.contains(key), "check-config names {key}: {check}");
}

#[test]
fn each_class_of_config_error_exits_64_with_its_message() {
    assert_config_error("[server]\nlisen = \"x\"\n", &[], "server.lisen", "unknown");
    assert_config_error(
        "[server]\nlisten = [1]\n",
        &[],
        "server.listen",
        "wrong type",
    );
    assert_config_error("[server\n", &[], "", "not valid TOML");
    assert_config_error(
        "[tokens]\naccess_ttl = \"fifteen\"\n",
        &[],
        "tokens.access_ttl",
        "fifteen",
    );
    assert_config_error(
        "[[routes]]\nprefix = \"/a\"\nupstream = \"htp://x\"\nauth = \"token\"\n",
        &[],
        "routes[0].upstream",
        "http",
    );
    assert_config_error(
        "[store]\nmax_staleness = \"5s\"\n",
        &[],
        "store.max_staleness",
        "postgres",
    );
    assert_config_error(
        "[store]\nurl = \"postgres://u@h/db?sslmode=require\"\n",
        &[],
        "store.url",
        "TLS",
    );
    assert_config_error(
        "[tokens]\nalgorithm = \"EdDSA\"\n",
        &[],
        "tokens.private_key_file",
        "",
    );
    assert_config_error(
        "[auth]\nargon2 = { memory_kib = 1, iterations = 1, parallelism = 1 }\n",
        &[],
        "auth.argon2",
        "",
    );
}

#[test]
fn a_short_secret_is_refused_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, [7u8; 16]).unwrap();
    let text = format!("[tokens]\nsecret_file = \"{}\"\n", secret.display());
    assert_config_error(&text, &[], "tokens.secret_file", "");
    assert_config_error(
        "",
        &[("AUTHGATE_JWT_SECRET", "too-short")],
        "AUTHGATE_JWT_SECRET",
        "",
    );
}

#[test]
fn missing_tls_files_are_a_config_error() {
    assert_config_error(
        "[server]\ntls_cert_file = \"/nonexistent/c.pem\"\ntls_key_file = \"/nonexistent/k.pem\"\n",
        &[],
        "server.tls_cert_file",
        "",
    );
}

#[test]
fn a_bad_config_exits_64_before_binding_its_port() {
    // Hold the port the config names: if the gateway bound before checking the key material
    // it would fail with "address in use" (exit 1), not 64.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, [7u8; 8]).unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"\"\n[tokens]\nsecret_file = \"{}\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let (code, stderr) = run(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, Some(64), "{stderr}");
}

#[test]
fn check_config_accepts_the_example_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/authgate.toml"))
            .unwrap();
    // Point the example's data paths into the temp dir, so "creates nothing" is checkable.
    let text = example
        .replace(
            "sqlite://data/authgate.db",
            &format!("sqlite://{}/data/authgate.db", dir.path().display()),
        )
        .replace(
            "\"data/jwt-secret\"",
            &format!("\"{}/data/jwt-secret\"", dir.path().display()),
        );
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, text).unwrap();
    let (code, stderr) = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "check-config created files"
    );
}

#[test]
fn check_config_checks_a_postgres_url_offline_and_never_prints_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    let secret = format!("secret_file = \"{}/jwt-secret\"", dir.path().display());
    // A host that cannot resolve: check-config does not connect, so the URL's shape is all
    // it can judge.
    let good = format!(
        "[store]\nurl = \"postgres://app:pa55word@db.invalid:5432/authgate\"\n\
         max_staleness = \"3s\"\npool_size = 8\n[tokens]\n{secret}\n"
    );
    std::fs::write(&path, good).unwrap();
    let (code, stderr) = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("pa55word"), "{stderr}");
    // Starting does connect: with nothing listening there, a runtime error (exit 1),
    // password hidden.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!(
        "[store]\nurl = \"postgres://app:pa55word@127.0.0.1:{port}/authgate\"\n[tokens]\n{secret}\n"
    );
    std::fs::write(&path, unreachable).unwrap();
    let (code, stderr) = run(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("postgres://***@127.0.0.1:{port}/authgate")),
        "{stderr}"
    );
    assert!(!stderr.contains("pa55word"), "{stderr}");

    let bad = "[store]\nurl = \"postgres://app:pa55word@db.invalid/authgate?sslmode=require\"\n";
    std::fs::write(&path, bad).unwrap();
    let (code, stderr) = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("store.url"), "{stderr}");
    assert!(!stderr.contains("pa55word"), "{stderr}");
}

#[test]
fn usage_errors_exit_2_and_version_and_help_work() {
    assert_eq!(run(&["--no-such-flag"], &[]).0, Some(2));
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(binary()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "check-config", "demo", "user", "--config"] {
        assert!(help.contains(word), "--help mentions {word}: {help}");
    }
}

/// The soft and hard open-files limits of process `pid`, from /proc.
fn open_files_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
}

#[test]
fn the_open_files_soft_limit_is_raised_to_the_hard_limit_at_start_and_logged() {
    let (_, hard) = open_files_limits("self");
    assert!(
        hard > 256,
        "this test needs a hard limit above 256, not {hard}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_binary_config(dir.path(), "", "");
    // A shell lowers the soft limit the gateway inherits, then becomes the gateway.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -S -n 256 && exec "$0" --config "$1""#)
        .arg(binary())
        .arg(&path)
        .env_remove("RUST_LOG");
    let p = Process::start_command(cmd);
    let pid = p.child.id().to_string();
    assert_eq!(open_files_limits(&pid), (hard, hard));
    let line = p
        .before_serving
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "open-files limit raised to the hard limit")
        .unwrap_or_else(|| panic!("no raise line in {:?}", p.before_serving));
    assert_eq!(line["from"], 256);
    assert_eq!(line["to"], hard);
    assert_eq!(line["level"], "INFO");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_answer_on_the_admin_port_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_binary_config(dir.path(), "", "");
    let p = Process::start(&path, &[]);
    let admin = p.admin.expect("admin address");
    let c = client();
    let health = c
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = c
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    for path in ["/healthz", "/readyz"] {
        let public = c
            .get(format!("http://{}{path}", p.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(
            public.status(),
            StatusCode::NOT_FOUND,
            "{path} on the public port"
        );
    }
    // The store was created on first start.
    assert!(dir.path().join("authgate.db").exists());
    assert!(dir.path().join("jwt-secret").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_refuses_new_connections_fails_readyz_drains_and_exits_0() {
    let (upstream, release) = crate::proxy::held_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "[[routes]]\nprefix = \"/slow\"\nupstream = \"http://{upstream}\"\nauth = \"public\"\n"
    );
    let path = write_binary_config(dir.path(), "shutdown_grace = \"30s\"", &routes);
    let mut p = Process::start(&path, &[]);
    let admin = p.admin.unwrap();
    let base = format!("http://{}", p.addr);
    let c = client();
    // A kept-alive connection, made before the signal.
    let keep = client();
    assert_eq!(
        keep.get(format!("{base}/nothing"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // A request in flight, held by the upstream.
    let in_flight = {
        let c = c.clone();
        let url = format!("{base}/slow/x");
        tokio::spawn(async move { c.get(url).send().await })
    };
    release.wait_for_request().await;

    p.signal("TERM");
    // /readyz turns 503 once draining has begun...
    loop {
        let r = c
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::task::yield_now().await;
    }
    // ...by which time the public listener is closed: new connections are refused.
    let fresh = client().get(format!("{base}/nothing")).send().await;
    assert!(fresh.is_err(), "new connection accepted during drain");
    // A request on the kept-alive connection gets 503 and Connection: close.
    let r = keep.get(format!("{base}/nothing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["connection"], "close");
    assert!(r.headers().contains_key("retry-after"));
    // The in-flight request completes, then the process exits 0.
    release.release();
    let done = in_flight.await.unwrap().unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let code = tokio::task::spawn_blocking(move || p.wait()).await.unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_generated_certificate_works_over_http1_and_http2() {
    crypto();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        cert_path.display(),
        key_path.display()
    );
    let path = write_binary_config(dir.path(), &server, "");
    let p = Process::start(&path, &[]);
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/auth/nothing", p.addr.port());
    for (h2, version) in [
        (false, reqwest::Version::HTTP_11),
        (true, reqwest::Version::HTTP_2),
    ] {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([root.clone()])
            .resolve("localhost", p.addr);
        if !h2 {
            b = b.http1_only();
        }
        let r = b.build().unwrap().get(&url).send().await.unwrap();
        assert_eq!(r.version(), version);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers().contains_key("x-request-id"));
    }
    // Plain HTTP on the TLS port does not get through.
    let plain = client()
        .get(format!("http://{}/auth/nothing", p.addr))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::NOT_FOUND);
}
