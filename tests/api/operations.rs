//! Running authgate as an operator does: signing keys rotated by SIGHUP on the real binary
//! (JWKS carries old and new keys, a removed key's tokens are refused at once, a bad key file
//! keeps the running keys), and what `/metrics` shows about it.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    client, header, user_cli_async, with_routes, write_binary_config, Process, TestApp, PASSWORD,
};

/// A fresh Ed25519 key pair in `dir`: (private PKCS#8 PEM path, public SPKI PEM path).
fn ed25519_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&private, pair.serialize_pem()).unwrap();
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    (private, public)
}

/// Writes the config of an EdDSA gateway signing with `private` and also accepting `verify`.
fn write_eddsa_config(dir: &Path, private: &Path, verify: &[&Path]) -> PathBuf {
    let path = dir.join("authgate.toml");
    let verify: Vec<String> = verify
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{d}/authgate.db"

[tokens]
algorithm = "EdDSA"
private_key_file = {private:?}
verify_keys = [{verify}]

[log]
format = "json"
level = "info"
"#,
        d = dir.display(),
        private = private.display().to_string(),
        verify = verify.join(", "),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends SIGHUP and waits for the reload's verdict in the log: true when applied.
fn reload(p: &Process) -> bool {
    p.signal("HUP");
    let line = p.next_json_line(|v| {
        let m = v["message"].as_str().unwrap_or("");
        m == "configuration reloaded" || m.starts_with("reload refused")
    });
    line["message"] == "configuration reloaded"
}

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let head = token.split('.').next().unwrap();
    let head: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap(),
    )
    .unwrap();
    head["kid"].as_str().unwrap().to_owned()
}

/// A small client of one running binary.
struct Gateway<'a> {
    p: &'a Process,
    c: reqwest::Client,
}

impl Gateway<'_> {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.p.addr)
    }

    async fn register_and_login(&self, name: &str) -> String {
        let body = serde_json::json!({ "username": name, "password": PASSWORD });
        let r = self
            .c
            .post(self.url("/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        self.login(name).await
    }

    async fn login(&self, name: &str) -> String {
        let body = serde_json::json!({ "username": name, "password": PASSWORD });
        let r = self
            .c
            .post(self.url("/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn me(&self, token: &str) -> (StatusCode, Value) {
        let r = self
            .c
            .get(self.url("/auth/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// The kids the JWK Set publishes, after checking its `Cache-Control`.
    async fn jwks_kids(&self) -> Vec<String> {
        let r = self
            .c
            .get(self.url("/auth/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(r.headers(), "cache-control"), "public, max-age=300");
        let set: Value = r.json().await.unwrap();
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn metrics(&self) -> String {
        let admin = self.p.admin.unwrap();
        let r = self
            .c
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rotates_signing_keys_and_a_removed_key_is_refused_right_after_the_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_pub) = ed25519_pair(dir.path(), "old");
    let (new, new_pub) = ed25519_pair(dir.path(), "new");
    let config = write_eddsa_config(dir.path(), &old, &[]);
    let p = Process::start(&config, &[]);
    let g = Gateway { p: &p, c: client() };

    let by_old = g.register_and_login("rotor").await;
    let old_kid = kid_of(&by_old);
    assert_eq!(g.jwks_kids().await, vec![old_kid.clone()]);
    assert!(g
        .metrics()
        .await
        .contains("authgate_token_key_generation 0"));

    // Step 1: sign with the new key, keep accepting the old one. JWKS carries both.
    write_eddsa_config(dir.path(), &new, &[&old_pub]);
    assert!(reload(&p));
    let by_new = g.login("rotor").await;
    let new_kid = kid_of(&by_new);
    assert_ne!(new_kid, old_kid);
    assert_eq!(g.jwks_kids().await, [new_kid.clone(), old_kid.clone()]);
    assert_eq!(g.me(&by_old).await.0, StatusCode::OK);
    assert_eq!(g.me(&by_new).await.0, StatusCode::OK);

    // Step 2: the old key is gone: its token is refused by the very next request.
    write_eddsa_config(dir.path(), &new, &[]);
    assert!(reload(&p));
    let (status, body) = g.me(&by_old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(g.me(&by_new).await.0, StatusCode::OK);
    assert_eq!(g.jwks_kids().await, vec![new_kid.clone()]);

    // A key file that does not parse: the reload is refused and the running keys stay.
    std::fs::write(&new_pub, "not a key").unwrap();
    write_eddsa_config(dir.path(), &new, &[&new_pub]);
    assert!(!reload(&p));
    assert_eq!(g.me(&by_new).await.0, StatusCode::OK);
    assert_eq!(g.jwks_kids().await, [new_kid]);
    let text = g.metrics().await;
    assert!(text.contains("authgate_token_key_generation 2"), "{text}");
    assert!(
        text.contains(r#"authgate_config_reloads_total{result="success"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"authgate_config_reloads_total{result="failure"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("authgate_config_last_reload_success_timestamp_seconds "),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// authgate explain
// ---------------------------------------------------------------------------------------------

const EXPLAIN_ROUTES: &str = r#"
[[routes]]
prefix = "/api"
upstream = "http://127.0.0.1:9/v1"
auth = "token"
strip_prefix = true
methods = ["GET", "POST"]

[[routes]]
prefix = "/admin"
upstream = "http://127.0.0.1:9"
auth = "token"
roles = ["admin"]
"#;

/// `authgate explain --json` for `config`: (exit code, the report).
async fn explain(config: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["explain", "--json"];
    all.extend_from_slice(args);
    let out = user_cli_async(config, &all, None).await;
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_names_the_route_upstream_headers_and_the_failing_check_with_its_error_code() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_binary_config(dir.path(), "", EXPLAIN_ROUTES);
    let p = Process::start(&config, &[]);
    let g = Gateway { p: &p, c: client() };
    let token = g.register_and_login("explained").await;

    // A valid token on a token route: forwarded, prefix stripped, identity headers set.
    let (code, r) = explain(
        &config,
        &["--token", &token, "get", "http://h/api/../api/items?x=1"],
    )
    .await;
    assert_eq!(code, Some(0));
    assert_eq!(r["path"], "/api/items", "{r}");
    assert_eq!(r["route"]["prefix"], "/api");
    assert_eq!(r["verdict"]["forwarded"], true, "{r}");
    assert_eq!(r["upstream"]["url"], "http://127.0.0.1:9/v1/items?x=1");
    assert_eq!(r["upstream"]["headers"]["x-auth-username"], "explained");
    assert_eq!(r["upstream"]["headers"]["x-forwarded-prefix"], "/api");
    assert_eq!(r["upstream"]["headers"]["authorization"], Value::Null);
    // No roles: the header is sent empty, not removed (as the proxy does).
    assert_eq!(r["upstream"]["headers"]["x-auth-roles"], "", "{r}");
    assert!(
        r["upstream"]["headers"]["x-forwarded-host"].is_string(),
        "{r}"
    );
    assert!(r["upstream"]["headers"]["via"].is_string(), "{r}");
    assert_eq!(check(&r, "token")["result"], "pass");
    assert_eq!(check(&r, "revocation")["result"], "pass");
    assert!(
        r["revocation"]
            .as_str()
            .unwrap()
            .starts_with("read from the store"),
        "{r}"
    );

    // The role check fails: 403 forbidden, as the gateway answers.
    let (_, r) = explain(&config, &["--token", &token, "GET", "/admin/panel"]).await;
    assert_eq!(r["verdict"]["status"], 403, "{r}");
    assert_eq!(r["verdict"]["error"], "forbidden");
    assert_eq!(check(&r, "roles")["result"], "fail");
    let live =
        g.c.get(g.url("/admin/panel"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    assert_eq!(live.status(), StatusCode::FORBIDDEN);

    // A method the route does not take: 405 after the token checks.
    let (_, r) = explain(&config, &["--token", &token, "DELETE", "/api/items"]).await;
    assert_eq!(r["verdict"]["error"], "method_not_allowed", "{r}");
    assert_eq!(check(&r, "method")["result"], "fail");

    // No token, a forged one, no route.
    let (_, r) = explain(&config, &["GET", "/api/items"]).await;
    assert_eq!(r["verdict"]["error"], "missing_token", "{r}");
    let (_, r) = explain(&config, &["--token", "a.b.c", "GET", "/api/items"]).await;
    assert_eq!(r["verdict"]["error"], "invalid_token", "{r}");
    assert_eq!(check(&r, "token")["result"], "fail");
    let (_, r) = explain(&config, &["GET", "/apix/items"]).await;
    assert_eq!(r["verdict"]["status"], 404, "{r}");
    assert!(
        r["no_route"]
            .as_str()
            .unwrap()
            .contains("/api matches only as text"),
        "{r}"
    );
    let (_, r) = explain(&config, &["POST", "/auth/login"]).await;
    assert_eq!(r["handled_by"], "gateway", "{r}");

    // Revoked through the store (by the operator CLI): explain reads it from there.
    let out = user_cli_async(&config, &["user", "logout-all", "explained"], None).await;
    assert!(out.status.success());
    let (_, r) = explain(&config, &["--token", &token, "GET", "/api/items"]).await;
    assert_eq!(r["verdict"]["error"], "token_revoked", "{r}");
    assert_eq!(check(&r, "revocation")["result"], "fail");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_says_so_when_the_store_cannot_be_read_and_prints_text_by_default() {
    let dir = tempfile::tempdir().unwrap();
    // A store that is not there yet (and must not be created by explain).
    let config = write_binary_config(dir.path(), "", EXPLAIN_ROUTES);
    let out = user_cli_async(&config, &["explain", "GET", "/api/items"], None).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("revocation  not checked"), "{text}");
    assert!(text.contains("verdict     401 missing_token"), "{text}");
    assert!(
        text.contains("route       routes[0] prefix \"/api\""),
        "{text}"
    );
    assert!(!dir.path().join("authgate.db").exists());
    assert!(!dir.path().join("jwt-secret").exists());

    // A URL that is not one is a usage error.
    let out = user_cli_async(&config, &["explain", "GET", "http://[bad"], None).await;
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// /metrics
// ---------------------------------------------------------------------------------------------

/// The value of the sample `series` (name with its labels, exactly as exposed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_process_build_connections_tunnels_accounts_hashing_and_sync_figures() {
    let ws = crate::proxy::ws_echo_upstream().await;
    let app = TestApp::spawn_with(with_routes(&format!(
        "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws}\"\nauth = \"token\"\n"
    )))
    .await;
    let tokens = app.user("metered").await;
    assert_eq!(
        app.login_raw("metered", "wrong password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.refresh(&tokens.refresh).await.status(), StatusCode::OK);
    // Page views of the login endpoint are not login attempts.
    let page = app
        .client
        .get(app.url("/auth/login"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_ne!(
        page.status(),
        StatusCode::OK,
        "cookies are off: no sign-in page"
    );
    let mut tunnel = crate::proxy::ws_connect(app.addr, "/ws/x", Some(&tokens.access))
        .await
        .unwrap();
    crate::proxy::ws_roundtrip(&mut tunnel, "counted").await;

    let r = app
        .client
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(sample(&text, family) > 0.0, "{family}");
    }
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"authgate_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    // Only the admin request is being answered, and it is not on the public listener.
    assert_eq!(sample(&text, "authgate_requests_in_flight"), 0.0);
    assert!(
        sample(&text, "authgate_open_connections") >= 2.0,
        "pooled client + tunnel"
    );
    assert_eq!(sample(&text, "authgate_websocket_tunnels"), 1.0);
    assert_eq!(
        sample(&text, r#"authgate_logins_total{outcome="success"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"authgate_logins_total{outcome="invalid_credentials"}"#
        ),
        1.0
    );
    assert!(!text.contains(r#"authgate_logins_total{outcome="method_not_allowed"}"#));
    assert_eq!(
        sample(&text, r#"authgate_registrations_total{outcome="success"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"authgate_refreshes_total{outcome="success"}"#),
        1.0
    );
    assert_eq!(sample(&text, "authgate_hash_queue_depth"), 0.0);
    // register + login + failed login: one wait for a hashing slot each.
    assert_eq!(
        sample(&text, "authgate_hash_queue_waits_total"),
        app.state.hasher.hashes_started() as f64
    );
    assert!(sample(&text, "authgate_hash_queue_wait_seconds_total") >= 0.0);
    assert!(sample(&text, "authgate_revocation_sync_lag_seconds") >= 0.0);
    assert_eq!(
        sample(&text, r#"authgate_config_reloads_total{result="failure"}"#),
        0.0
    );
    assert!(
        sample(
            &text,
            "authgate_config_last_reload_success_timestamp_seconds"
        ) > 1.6e9
    );
}

// ---------------------------------------------------------------------------------------------
// Operator CLI: passwd, disable/enable, list --json, completions, man
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn user_passwd_disable_and_enable_revoke_sessions_and_a_disabled_login_looks_like_a_wrong_password(
) {
    let app = TestApp::spawn().await;
    let cfg = app.config_path.clone();
    let first = app.user("dora").await;

    // passwd from standard input: every session revoked, only the new password works.
    let out = user_cli_async(
        &cfg,
        &["user", "passwd", "dora"],
        Some("brand new password\n"),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s) revoked"));
    // The refresh reads its session from the store: revoked at once.
    assert_eq!(
        app.refresh(&first.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app.login_raw("dora", PASSWORD).await;
    crate::helpers::assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let r = app.login_raw("dora", "brand new password").await;
    assert_eq!(r.status(), StatusCode::OK);
    let second: Value = r.json().await.unwrap();
    let too_short = user_cli_async(&cfg, &["user", "passwd", "dora"], Some("short\n")).await;
    assert_eq!(too_short.status.code(), Some(1));
    let nobody = user_cli_async(
        &cfg,
        &["user", "passwd", "nobody"],
        Some("long enough pw\n"),
    )
    .await;
    assert_eq!(nobody.status.code(), Some(1));

    // disable: sessions revoked; the right password is answered exactly like a wrong one,
    // after one argon2 run as well.
    let out = user_cli_async(&cfg, &["user", "disable", "dora"], None).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("disabled; 1 session(s) revoked"));
    let refresh = second["refresh_token"].as_str().unwrap();
    assert_eq!(
        app.refresh(refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let hashes = app.state.hasher.hashes_started();
    let wrong = app.login_raw("dora", "not the password").await;
    assert_eq!(app.state.hasher.hashes_started(), hashes + 1);
    let disabled = app.login_raw("dora", "brand new password").await;
    assert_eq!(app.state.hasher.hashes_started(), hashes + 2);
    assert_eq!(wrong.status(), disabled.status());
    assert_eq!(
        header(wrong.headers(), "www-authenticate"),
        header(disabled.headers(), "www-authenticate")
    );
    let (wrong, disabled): (Value, Value) =
        (wrong.json().await.unwrap(), disabled.json().await.unwrap());
    assert_eq!(wrong, disabled);
    assert_eq!(disabled["error"], "invalid_credentials");

    // list --json shows it; enable lets the user in again.
    let out = user_cli_async(&cfg, &["user", "list", "--json"], None).await;
    assert!(out.status.success());
    let users: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users[0]["username"], "dora", "{users}");
    assert_eq!(users[0]["disabled"], true);
    assert_eq!(users[0]["roles"], serde_json::json!([]));
    assert!(users[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let out = user_cli_async(&cfg, &["user", "list"], None).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("(disabled)"));
    let out = user_cli_async(&cfg, &["user", "enable", "dora"], None).await;
    assert!(out.status.success());
    let r = app.login_raw("dora", "brand new password").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn completions_for_each_shell_and_the_man_page_are_generated_from_the_cli() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = std::process::Command::new(crate::helpers::binary())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("explain") && script.contains("passwd"),
            "{shell}"
        );
    }
    let out = std::process::Command::new(crate::helpers::binary())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // The man page (`authgate man > authgate.1`).
    let out = std::process::Command::new(crate::helpers::binary())
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH authgate 1"), "{page}");
    for sub in ["explain", "completions", "check\\-config", "user"] {
        assert!(page.contains(sub), "{sub} missing from\n{page}");
    }
}
