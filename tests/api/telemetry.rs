//! Logs as an operator meets them, from the real binary with its standard error piped:
//! `[log] level` checked by check-config and replaced by `RUST_LOG` when set; JSON access
//! lines with exactly their fields as plain values; the request id, route and client on every
//! line of a request (handlers, the blocking pool, tunnels that outlive it); security events
//! with username and address and never the password; no colour codes when not on a terminal.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::helpers::{client, run, write_binary_config_with_log, Process, PASSWORD};

// ---------------------------------------------------------------------------------------------
// [log] level and RUST_LOG
// ---------------------------------------------------------------------------------------------

/// `check-config` on a file whose `[log]` section is `log`: (exit code, stderr).
fn check_log(log: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, format!("[log]\n{log}\n")).unwrap();
    run(&["check-config", "--config", path.to_str().unwrap()], env)
}

#[test]
fn check_config_refuses_a_log_level_outside_the_grammar_with_exit_64() {
    for level in [
        "warning",
        "infos",
        "authgate",
        "info,authgate",
        "authgate=loud",
    ] {
        let (code, stderr) = check_log(&format!("level = \"{level}\""), &[]);
        assert_eq!(code, Some(64), "{level}: {stderr}");
        assert!(stderr.contains("log.level"), "{level}: {stderr}");
        assert!(stderr.contains(&format!("{level:?}")), "{level}: {stderr}");
    }
    let (_, stderr) = check_log("level = \"warning\"", &[]);
    assert!(stderr.contains("did you mean \"warn\""), "{stderr}");
}

#[test]
fn check_config_accepts_levels_and_lists_of_levels_and_targets() {
    for level in [
        "trace",
        "debug",
        "info",
        "warn",
        "error",
        "info,authgate::proxy=debug",
        "authgate=debug,warn",
        "warn, authgate::access=info",
    ] {
        let (code, stderr) = check_log(&format!("level = \"{level}\""), &[]);
        assert_eq!(code, Some(0), "{level}: {stderr}");
    }
}

#[test]
fn rust_log_is_held_to_the_same_grammar_and_named_when_refused() {
    // The file is valid; RUST_LOG, which would replace its level, is not.
    for (args, what) in [(&["check-config"][..], "check-config"), (&[][..], "serve")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.toml");
        std::fs::write(
            &path,
            "[admin]\nlisten = \"\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let mut argv = args.to_vec();
        argv.extend(["--config", path.to_str().unwrap()]);
        // A too-short secret stops a start that got past RUST_LOG, rather than letting it serve.
        let env = [("RUST_LOG", "warning"), ("AUTHGATE_JWT_SECRET", "short")];
        let (code, stderr) = run(&argv, &env);
        assert_eq!(code, Some(64), "{what}: {stderr}");
        assert!(stderr.contains("RUST_LOG"), "{what}: {stderr}");
        assert!(stderr.contains("did you mean \"warn\""), "{what}: {stderr}");
    }
    // An empty RUST_LOG counts as unset.
    let (code, stderr) = check_log("level = \"info\"", &[("RUST_LOG", "")]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_log_replaces_the_level_of_the_file() {
    // The file says error: only RUST_LOG can bring the info lines (the serving line that
    // `Process::start` waits for, and the access lines).
    let g = Gateway::start(
        "format = \"json\"\nlevel = \"error\"",
        "",
        &[("RUST_LOG", "info")],
    )
    .await;
    let res = g.get("/public/x", &[("x-request-id", "rust-log-1")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let access = g.p.next_json_line(|v| v["request_id"] == "rust-log-1");
    assert_eq!(access["status"], 200);

    // The file says info; RUST_LOG keeps the gateway's own lines and drops the access lines.
    let g = Gateway::start(
        "format = \"json\"\nlevel = \"info\"",
        "",
        &[("RUST_LOG", "error,authgate::app=info")],
    )
    .await;
    let res = g.get("/public/x", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rest = g.stop();
    assert!(
        rest.iter().any(|l| l.contains("drained; exiting")),
        "authgate::app lines stay: {rest:?}"
    );
    assert!(
        !rest.iter().any(|l| l.contains("\"status\"")),
        "no access line: {rest:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// JSON lines: plain values, the access line's fields, the request's fields on every line
// ---------------------------------------------------------------------------------------------

/// The fields of a JSON line, by name.
fn keys(line: &Value) -> BTreeSet<&str> {
    line.as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Whether `line` is an access line (its own `status`).
fn is_access(line: &Value) -> bool {
    line["status"].is_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxied_requests_access_line_has_every_field_as_a_plain_json_value() {
    let g = Gateway::start("format = \"json\"\nlevel = \"info\"", "", &[]).await;
    let (user_id, token) = g.user("ada").await;

    let res = g
        .get(
            "/api/orders/7?access=granted&q=%22x%22",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-request-id", "trace-200"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let line =
        g.p.next_json_line(|v| is_access(v) && v["request_id"] == "trace-200");
    let want: BTreeSet<&str> = [
        "timestamp",
        "level",
        "request_id",
        "method",
        "path",
        "route",
        "status",
        "latency_us",
        "client",
        "user_id",
    ]
    .into();
    assert_eq!(keys(&line), want, "{line}");
    // Plain values: no quotes of a Debug rendering, numbers as numbers, no query string.
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/api/orders/7");
    assert_eq!(line["route"], "/api");
    assert_eq!(line["status"], 200);
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["user_id"], user_id);
    assert!(line["latency_us"].is_u64(), "{line}");
    let timestamp = line["timestamp"].as_str().unwrap();
    assert!(
        timestamp.len() > 20 && timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
        "RFC 3339 in UTC: {timestamp}"
    );

    // A refusal: its §1 code, and no user, since no token was accepted.
    let res = g
        .get("/api/orders/7", &[("x-request-id", "trace-401")])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let line =
        g.p.next_json_line(|v| is_access(v) && v["request_id"] == "trace-401");
    let mut want = want;
    want.remove("user_id");
    want.insert("error");
    assert_eq!(keys(&line), want, "{line}");
    assert_eq!(line["error"], "missing_token");
    assert_eq!(line["status"], 401);
    assert_eq!(line["route"], "/api");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_failure_is_logged_with_the_request_id_route_and_client_of_its_access_line() {
    let g = Gateway::start("format = \"json\"\nlevel = \"info\"", "", &[]).await;
    // No request id sent: the generated one, returned to the client, is the one logged.
    let res = g.get("/down/x", &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let warning = g.p.next_json_line(|v| v["message"] == "upstream failed");
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["request_id"], request_id.as_str(), "{warning}");
    assert_eq!(warning["route"], "/down", "{warning}");
    assert_eq!(warning["client"], "127.0.0.1", "{warning}");
    let access = g.p.next_json_line(is_access);
    assert_eq!(access["request_id"], request_id.as_str(), "{access}");
    assert_eq!(access["error"], "bad_gateway", "{access}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_and_lockouts_name_the_username_and_client_and_never_the_password() {
    let g = Gateway::start(
        "format = \"json\"\nlevel = \"info\"",
        "login_limit = { max_failures = 2, window = \"15m\" }",
        &[],
    )
    .await;
    g.user("grace").await;
    // A username with a line break and a colour code: logged as it was sent, escaped.
    let username = "grace\n\u{1b}[31m";
    let wrong = "Wr0ng-Password-Never-Logged";
    let mut seen = Vec::new();
    for (attempt, status) in [
        (1, StatusCode::UNAUTHORIZED),
        (2, StatusCode::UNAUTHORIZED),
        (3, StatusCode::TOO_MANY_REQUESTS),
    ] {
        let res = g.login(username, wrong).await;
        assert_eq!(res.status(), status, "attempt {attempt}");
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let lines =
            g.p.json_lines_until(|v| is_access(v) && v["request_id"] == request_id.as_str());
        let event = lines
            .iter()
            .map(|(_, v)| v)
            .find(|v| v["level"] == "WARN")
            .unwrap_or_else(|| panic!("attempt {attempt}: no warning in {lines:?}"));
        let message = if attempt < 3 {
            "password check failed"
        } else {
            "password check refused: too many failures"
        };
        assert_eq!(event["message"], message, "{event}");
        assert_eq!(event["username"], username, "{event}");
        assert_eq!(event["client"], "127.0.0.1", "{event}");
        assert_eq!(event["request_id"], request_id.as_str(), "{event}");
        assert_eq!(event["route"], "auth:login", "{event}");
        seen.extend(lines.into_iter().map(|(raw, _)| raw));
    }
    for line in &seen {
        assert!(!line.contains(wrong), "a password in the log: {line}");
        assert!(
            !line.contains('\u{1b}'),
            "a raw escape code in the log: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_logged_on_the_blocking_pool_carries_the_request_id() {
    let g = Gateway::start("format = \"json\"\nlevel = \"info\"", "", &[]).await;
    g.user("hopper").await;
    // A stored hash argon2 cannot check: the verification on the blocking pool logs an error.
    let db = rusqlite::Connection::open(g.dir.path().join("authgate.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE users SET password_hash = '$pbkdf2-sha256$i=1000$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA' \
             WHERE username = 'hopper'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let res = g.login("hopper", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let error = g.p.next_json_line(|v| v["level"] == "ERROR");
    assert_eq!(
        error["message"], "stored password hash cannot be verified",
        "{error}"
    );
    assert_eq!(error["target"], "authgate::auth::password", "{error}");
    assert_eq!(error["request_id"], request_id.as_str(), "{error}");
    assert_eq!(error["route"], "auth:login", "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_tunnel_logs_its_end_with_the_request_id_of_its_upgrade() {
    let ws = crate::proxy::ws_echo_upstream().await;
    let routes =
        format!("[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws}\"\nauth = \"token\"\n");
    let g =
        Gateway::start_with_routes("format = \"json\"\nlevel = \"info\"", "", &[], &routes).await;
    let (user_id, token) = g.user("lovelace").await;
    let mut req = format!("ws://{}/ws/chat", g.p.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req.headers_mut()
        .insert("x-request-id", "tunnel-1".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    socket.send(Message::text("hi")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap().to_text().unwrap(),
        "hi"
    );
    let access =
        g.p.next_json_line(|v| is_access(v) && v["request_id"] == "tunnel-1");
    assert_eq!(access["status"], 101);
    // The tunnel outlives its request; when the client leaves, its last line still says
    // which request opened it.
    socket.close(None).await.unwrap();
    drop(socket);
    let ended =
        g.p.next_json_line(|v| v["message"] == "upgraded connection ended");
    assert_eq!(ended["request_id"], "tunnel-1", "{ended}");
    assert_eq!(ended["route"], "/ws", "{ended}");
    assert_eq!(ended["user_id"], user_id, "{ended}");
}

// ---------------------------------------------------------------------------------------------
// Pretty lines
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn piped_pretty_lines_have_no_colour_codes_and_escape_client_values() {
    let g = Gateway::start("format = \"pretty\"\nlevel = \"info\"", "", &[]).await;
    assert!(!g.p.serving.contains('\u{1b}'), "{:?}", g.p.serving);
    let res = g.get("/public/x", &[("x-request-id", "pretty-1")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = g
        .login("eve\n\u{1b}[31mINFO forged", "whatever-password")
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let rest = g.stop();
    for line in &rest {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
    }
    let access = rest
        .iter()
        .find(|l| l.contains("request_id=pretty-1"))
        .unwrap_or_else(|| panic!("no access line for pretty-1: {rest:?}"));
    for field in [
        "authgate::access:",
        "method=GET",
        "path=/public/x",
        "route=/public",
        "status=200",
        "client=127.0.0.1",
    ] {
        assert!(access.contains(field), "{field} in {access:?}");
    }
    // The forged "line" stays inside the quoted username of the real one.
    let failed = rest
        .iter()
        .find(|l| l.contains("password check failed"))
        .unwrap_or_else(|| panic!("no failed-login line: {rest:?}"));
    assert!(
        failed.contains(r#"username="eve\n\u{1b}[31mINFO forged""#),
        "{failed:?}"
    );
    assert!(!rest.iter().any(|l| l.starts_with("INFO forged")));
}

// ---------------------------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------------------------

/// The binary with `[log]` as given, `/public` (public) and `/api` (token) in front of the
/// echo upstream, `/down` (public) in front of a closed port, and `auth` lines for `[auth]`.
struct Gateway {
    p: Process,
    dir: TempDir,
    _stop_echo: DropGuard,
}

impl Gateway {
    async fn start(log: &str, auth: &str, env: &[(&str, &str)]) -> Gateway {
        Self::start_with_routes(log, auth, env, "").await
    }

    async fn start_with_routes(
        log: &str,
        auth: &str,
        env: &[(&str, &str)],
        extra: &str,
    ) -> Gateway {
        let stop = CancellationToken::new();
        let echo = crate::echo::spawn(([127, 0, 0, 1], 0).into(), stop.clone())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let body = format!(
            "[auth]\n{auth}\n\n{}\n{extra}",
            routes(echo, "127.0.0.1:9".parse().unwrap())
        );
        let path = write_binary_config_with_log(dir.path(), "", log, &body);
        let p = Process::start(&path, env);
        Gateway {
            p,
            dir,
            _stop_echo: stop.drop_guard(),
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = client().get(format!("http://{}{path}", self.p.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        client()
            .post(format!("http://{}/auth/login", self.p.addr))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Registers `username` with [`PASSWORD`] and logs in: (user id, access token).
    async fn user(&self, username: &str) -> (u64, String) {
        let res = client()
            .post(format!("http://{}/auth/register", self.p.addr))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
        let res = self.login(username, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK);
        let token = res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        (id, token)
    }

    /// SIGTERM, then every line up to the end of the log (the process has exited).
    fn stop(self) -> Vec<String> {
        self.p.signal("TERM");
        let mut rest = Vec::new();
        loop {
            match self.p.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => panic!("still running after SIGTERM: {rest:?}"),
            }
        }
    }
}

/// The routes of [`Gateway`].
fn routes(echo: SocketAddr, closed: SocketAddr) -> String {
    format!(
        "[[routes]]\nprefix = \"/public\"\nupstream = \"http://{echo}\"\nauth = \"public\"\n\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"http://{echo}\"\nauth = \"token\"\n\n\
         [[routes]]\nprefix = \"/down\"\nupstream = \"http://{closed}\"\nauth = \"public\"\n"
    )
}
