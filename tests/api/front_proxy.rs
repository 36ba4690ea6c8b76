//! Forward-auth behind real front proxies: nginx (`auth_request`) and Caddy (`forward_auth`)
//! run with the configurations of `examples/forward-auth/`, in front of the echo upstream, the
//! gateway their decision service. Each proxy runs as a child process in the foreground on a
//! free loopback port, with its own temp prefix, pid and log paths, and is killed on drop.
//! The examples nothing here can run (Traefik, Envoy) are parsed and their keys checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::{binary, client, stderr_lines, Setup, TestApp};
use crate::tools;

/// Decision-only routes (no upstream: the front proxy forwards) like the tests elsewhere use.
const ROUTES: &str = r#"
[[routes]]
prefix = "/public"
auth = "public"

[[routes]]
prefix = "/api"
auth = "token"

[[routes]]
prefix = "/admin"
auth = "fresh"
fresh_max_age = "5m"

[[routes]]
prefix = "/ops"
auth = "token"
roles = ["ops"]
"#;

/// The addresses the example files use for the gateway, the app and the front proxy.
const EXAMPLE_GATEWAY: &str = "127.0.0.1:8080";
const EXAMPLE_APP: &str = "127.0.0.1:9000";
const EXAMPLE_PROXY: &str = "127.0.0.1:8000";

/// An example file of `examples/forward-auth/`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/forward-auth")
        .join(name)
}

fn read_example(name: &str) -> String {
    std::fs::read_to_string(example(name)).unwrap()
}

/// A gateway deciding for a front proxy that reads the original request from `source`.
async fn gateway(source: &str) -> TestApp {
    TestApp::spawn_with(Setup {
        forward_auth: format!("enabled = true\nsource = \"{source}\"\n"),
        routes: Some(ROUTES.to_owned()),
        ..Setup::default()
    })
    .await
}

/// `text` with the example addresses replaced by the gateway's, the app's and `proxy_port`.
fn readdress(text: &str, app: &TestApp, proxy_port: u16) -> String {
    for address in [EXAMPLE_GATEWAY, EXAMPLE_APP, EXAMPLE_PROXY] {
        assert!(
            text.contains(address),
            "the example no longer uses {address}"
        );
    }
    text.replace(EXAMPLE_GATEWAY, &app.addr.to_string())
        .replace(EXAMPLE_APP, &app.echo.to_string())
        .replace(EXAMPLE_PROXY, &format!("127.0.0.1:{proxy_port}"))
}

/// A port nobody listens on now (the kernel's choice); the proxy binds it next.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A front proxy running as a child process; killed and waited for on drop.
struct FrontProxy {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl FrontProxy {
    /// `http://ADDR` + `path`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts `command`, whose stderr goes through `ready`: `Some(true)` once a line shows
    /// the proxy listening, `Some(false)` for a line that shows it failed.
    // ok: the child is killed and waited for by `Drop` once it is inside a `FrontProxy`, and
    // a test that panics before that ends the test process anyway.
    #[allow(clippy::zombie_processes)]
    fn start(
        mut command: Command,
        dir: TempDir,
        port: u16,
        ready: fn(&str) -> Option<bool>,
    ) -> FrontProxy {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the front proxy starts");
        let lines = stderr_lines(&mut child);
        let mut seen = Vec::new();
        loop {
            // A bound, not a pause: the proxy announces itself long before.
            let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the front proxy stopped or never said it listens:\n{}",
                    seen.join("\n")
                );
            };
            let verdict = ready(&line);
            seen.push(line);
            match verdict {
                Some(true) => break,
                Some(false) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the front proxy failed:\n{}", seen.join("\n"));
                }
                None => {}
            }
        }
        FrontProxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        }
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example nginx.conf made runnable here: its addresses replaced, and temp files, pid
/// and logs in `dir` instead of root-owned default paths.
fn nginx_config(app: &TestApp, port: u16, dir: &Path) -> PathBuf {
    let text = readdress(&read_example("nginx.conf"), app, port);
    let temp = "http {\n    access_log off;\n    client_body_temp_path body;\n    \
                proxy_temp_path proxy;\n    fastcgi_temp_path fastcgi;\n    \
                uwsgi_temp_path uwsgi;\n    scgi_temp_path scgi;\n";
    assert_eq!(text.matches("http {\n").count(), 1);
    let path = dir.join("nginx.conf");
    std::fs::write(&path, text.replace("http {\n", temp)).unwrap();
    path
}

/// `nginx -p DIR/ -e stderr -g GLOBALS -c CONFIG` plus `extra` arguments.
fn nginx_command(dir: &Path, config: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(tools::nginx());
    command
        .arg("-p")
        .arg(format!("{}/", dir.display()))
        .args(["-e", "stderr", "-g"])
        .arg("daemon off; master_process off; pid nginx.pid; error_log stderr notice;")
        .arg("-c")
        .arg(config)
        .args(extra);
    command
}

/// nginx with the example configuration in front of `app`'s echo upstream.
fn start_nginx(app: &TestApp) -> FrontProxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = nginx_config(app, port, dir.path());
    let command = nginx_command(dir.path(), &config, &[]);
    // nginx reports its OS limits once its listening sockets are open, before serving.
    FrontProxy::start(command, dir, port, |line| {
        if line.contains("[emerg]") || line.contains("[alert]") {
            Some(false)
        } else if line.contains("getrlimit(RLIMIT_NOFILE)") {
            Some(true)
        } else {
            None
        }
    })
}

/// Caddy with the example Caddyfile in front of `app`'s echo upstream; its config and data
/// folders (autosave, certificates) in a temp dir.
fn start_caddy(app: &TestApp) -> FrontProxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("Caddyfile");
    std::fs::write(&config, readdress(&read_example("Caddyfile"), app, port)).unwrap();
    let mut command = caddy_command(dir.path());
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config);
    FrontProxy::start(command, dir, port, |line| {
        if line.contains("\"level\":\"error\"") || line.starts_with("Error") {
            Some(false)
        } else if line.contains("serving initial configuration") {
            Some(true)
        } else {
            None
        }
    })
}

/// `caddy` with its home, config and data folders in `dir`.
fn caddy_command(dir: &Path) -> Command {
    let mut command = Command::new(tools::caddy());
    command
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"));
    command
}

/// The headers the echo upstream received, lowercase name → every value in order.
async fn upstream_saw(res: reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the request should reach the upstream"
    );
    let echo: Value = res.json().await.unwrap();
    echo["headers"]
        .as_array()
        .expect("an echo answer")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The user id the gateway gives `token`'s user.
async fn user_id(app: &TestApp, token: &str) -> String {
    let me: Value = app.get("/auth/me", Some(token)).await.json().await.unwrap();
    me["id"].as_i64().unwrap().to_string()
}

/// A `DELETE` with `username`'s valid `token` through `proxy` reaches the upstream with the
/// identity the gateway decided, copied by the proxy over the client's own copy; returns the
/// headers the upstream saw.
async fn assert_identity_reaches_upstream(
    app: &TestApp,
    proxy: &FrontProxy,
    username: &str,
    token: &str,
) -> Vec<(String, String)> {
    let id = user_id(app, token).await;
    let res = client()
        .delete(proxy.url("/api/orders/1?x=1"))
        .bearer_auth(token)
        .header("X-Auth-User-Id", "999")
        .header("X-Auth-Roles", "admin")
        .send()
        .await
        .unwrap();
    let seen = upstream_saw(res).await;
    assert_eq!(values(&seen, "x-auth-user-id"), [id.as_str()]);
    assert_eq!(values(&seen, "x-auth-username"), [username]);
    // No roles: empty, which nginx sends as no header and Caddy as an empty one.
    let roles = values(&seen, "x-auth-roles");
    assert!(roles.iter().all(|r| r.is_empty()), "{roles:?}");
    assert_eq!(values(&seen, "x-auth-fresh"), ["true"]);
    seen
}

/// A refreshed (not fresh) access token of the session of `refresh`.
async fn refreshed(app: &TestApp, refresh: &str) -> String {
    let v: Value = app.refresh(refresh).await.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_lets_through_what_the_gateway_allows_with_its_identity() {
    let app = gateway("x-original").await;
    let nginx = start_nginx(&app);
    let c = client();
    let tokens = app.user("alice").await;
    let seen = assert_identity_reaches_upstream(&app, &nginx, "alice", &tokens.access).await;
    assert_eq!(values(&seen, "x-request-id").len(), 1);

    // The account endpoints work through nginx; the decision endpoint is not reachable.
    let res = c
        .get(nginx.url("/auth/me"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = c.get(nginx.url("/auth/verify")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_refuses_with_the_gateways_status() {
    let app = gateway("x-original").await;
    let nginx = start_nginx(&app);
    let c = client();
    let tokens = app.user("bob").await;

    // No token: 401 with the gateway's challenge, passed on by nginx.
    let res = c.get(nginx.url("/api/x")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"authgate\""
    );
    // A path no route matches: default_auth = "token".
    let res = c.get(nginx.url("/elsewhere")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A missing role.
    let res = c
        .get(nginx.url("/ops/x"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A refreshed (not fresh) token on a fresh route, then the fresh one passes.
    let stale = refreshed(&app, &tokens.refresh).await;
    let res = c
        .get(nginx.url("/admin/x"))
        .bearer_auth(&stale)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("insufficient_user_authentication"),
        "{challenge}"
    );
    let res = c
        .get(nginx.url("/admin/x"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    upstream_saw(res).await;
    // A revoked token.
    assert_eq!(app.logout(&tokens.access).await.status(), StatusCode::OK);
    let res = c
        .get(nginx.url("/api/x"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("revoked"), "{challenge}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_never_lets_client_headers_choose_the_decision_or_the_identity() {
    let app = gateway("x-original").await;
    let nginx = start_nginx(&app);
    let c = client();
    // The original URI and method the client claims, in every header a stack might read:
    // the decision is about the real request, so no token on /api is still 401.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let res = c
            .request(method, nginx.url("/api/orders/1"))
            .header("X-Forwarded-Uri", "/public/x")
            .header("X-Forwarded-Method", "GET")
            .header("X-Original-URI", "/public/x")
            .header("X-Original-Method", "GET")
            .header("X-Original-URL", "/public/x")
            .header("X-Rewrite-URL", "/public/x")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // A client's identity headers on a public path never reach the upstream.
    let res = c
        .get(nginx.url("/public/page"))
        .header("X-Auth-User-Id", "1")
        .header("X-Auth-Username", "admin")
        .header("X-Auth-Roles", "admin")
        .header("X-Auth-Session-Id", "s")
        .header("X-Auth-Fresh", "true")
        .header("X_Auth_User_Id", "1")
        .send()
        .await
        .unwrap();
    let seen = upstream_saw(res).await;
    let leaked: Vec<_> = seen
        .iter()
        .filter(|(n, _)| n.replace('_', "-").starts_with("x-auth-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "client identity reached the upstream: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_forward_auth_lets_through_what_the_gateway_allows_and_nothing_spoofed() {
    let app = gateway("x-forwarded").await;
    let caddy = start_caddy(&app);
    let c = client();
    let tokens = app.user("carol").await;
    assert_identity_reaches_upstream(&app, &caddy, "carol", &tokens.access).await;

    // Refusals come back with the gateway's status and §1 body (Caddy relays the answer).
    let res = c
        .get(caddy.url("/api/x"))
        .header("X-Forwarded-Uri", "/public/x")
        .header("X-Forwarded-Method", "GET")
        .header("X-Original-URI", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "missing_token");
    let res = c
        .get(caddy.url("/ops/x"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // An anonymous request on a public path: no identity header of the client's survives.
    let res = c
        .get(caddy.url("/public/page"))
        .header("X-Auth-User-Id", "1")
        .header("X-Auth-Roles", "admin")
        .send()
        .await
        .unwrap();
    let seen = upstream_saw(res).await;
    assert!(
        values(&seen, "x-auth-user-id").iter().all(|v| v.is_empty()),
        "{seen:?}"
    );
    assert!(
        values(&seen, "x-auth-roles").iter().all(|v| v.is_empty()),
        "{seen:?}"
    );
    // The decision endpoint is not reachable through Caddy.
    let res = c.get(caddy.url("/auth/verify")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_nginx_example_passes_nginx_t() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nginx.conf");
    let temp = "http {\n    client_body_temp_path body;\n    proxy_temp_path proxy;\n    \
                fastcgi_temp_path fastcgi;\n    uwsgi_temp_path uwsgi;\n    scgi_temp_path scgi;\n";
    std::fs::write(
        &config,
        read_example("nginx.conf").replace("http {\n", temp),
    )
    .unwrap();
    let out = nginx_command(dir.path(), &config, &["-t"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("test is successful"),
        "{text}"
    );
}

#[test]
fn the_caddy_example_passes_caddy_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out = caddy_command(dir.path())
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(example("Caddyfile"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("Valid configuration"),
        "{text}"
    );
}

#[test]
fn the_gateway_example_passes_check_config() {
    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(example("authgate.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The YAML file `name` of the examples as JSON, read by PyYAML in the test venv.
fn yaml_example(name: &str) -> Value {
    let script = "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let path = example(name);
    let text = tools::run(&tools::python(), &["-c", script, path.to_str().unwrap()]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))
}

/// The identity headers as the examples name them.
const IDENTITY: [&str; 5] = [
    "X-Auth-User-Id",
    "X-Auth-Username",
    "X-Auth-Roles",
    "X-Auth-Session-Id",
    "X-Auth-Fresh",
];

#[test]
fn the_traefik_file_provider_example_asks_verify_and_copies_every_identity_header() {
    let config = yaml_example("traefik-dynamic.yml");
    let http = &config["http"];
    let auth = &http["middlewares"]["authgate"]["forwardAuth"];
    assert_eq!(auth["address"], "http://127.0.0.1:8080/auth/verify");
    let copied: Vec<&str> = auth["authResponseHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(copied, IDENTITY);
    // Traefik must overwrite the client's X-Forwarded-* (the default): never trust them.
    assert!(auth.get("trustForwardHeader").is_none_or(|v| v == false));
    let app = &http["routers"]["app"];
    assert_eq!(app["middlewares"][0], "authgate");
    // authgate's own endpoints are routed, the decision endpoint is not.
    let rule = http["routers"]["authgate"]["rule"].as_str().unwrap();
    assert!(rule.contains("PathPrefix(`/auth`)") && rule.contains("!PathPrefix(`/auth/verify`)"));
    let url = &http["services"]["authgate"]["loadBalancer"]["servers"][0]["url"];
    assert_eq!(url, "http://127.0.0.1:8080");
}

#[test]
fn the_traefik_labels_example_asks_verify_and_copies_every_identity_header() {
    let compose = yaml_example("traefik-compose.yml");
    let services = &compose["services"];
    let labels = |service: &str| -> Vec<(String, String)> {
        services[service]["labels"]
            .as_array()
            .unwrap_or_else(|| panic!("{service} has no labels"))
            .iter()
            .map(|l| {
                let (k, v) = l.as_str().unwrap().split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    };
    let label = |service: &str, key: &str| {
        labels(service)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{service}: no label {key}"))
    };
    let prefix = "traefik.http.middlewares.authgate.forwardauth";
    assert_eq!(
        label("authgate", &format!("{prefix}.address")),
        "http://authgate:8080/auth/verify"
    );
    assert_eq!(
        label("authgate", &format!("{prefix}.authresponseheaders")),
        IDENTITY.join(",")
    );
    assert!(labels("authgate")
        .iter()
        .all(|(k, v)| !k.ends_with("trustforwardheader") || v == "false"));
    assert!(label("app", "traefik.http.routers.app.middlewares").starts_with("authgate"));
    let rule = label("authgate", "traefik.http.routers.authgate.rule");
    assert!(rule.contains("!PathPrefix(`/auth/verify`)"), "{rule}");
}

/// Every `(key, value)` pair anywhere in `value`, depth first.
fn find_all<'a>(value: &'a Value, key: &str, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    found.push(v);
                }
                find_all(v, key, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| find_all(v, key, found)),
        _ => {}
    }
}

#[test]
fn the_envoy_example_asks_verify_by_path_and_copies_every_identity_header() {
    let config = yaml_example("envoy.yaml");
    let mut services = Vec::new();
    find_all(&config, "http_service", &mut services);
    assert_eq!(services.len(), 1, "one ext_authz HTTP service");
    let service = services[0];
    assert_eq!(service["path_prefix"], "/auth/verify");
    assert_eq!(service["server_uri"]["cluster"], "authgate");
    let upstream: Vec<&str> = service["authorization_response"]["allowed_upstream_headers"]
        ["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["exact"].as_str().unwrap())
        .collect();
    let lower: Vec<String> = IDENTITY.iter().map(|h| h.to_ascii_lowercase()).collect();
    assert_eq!(upstream, lower);
    // The filter's own settings: cookies reach the decision, failures deny.
    let mut filters = Vec::new();
    find_all(&config, "typed_config", &mut filters);
    let ext_authz = filters
        .iter()
        .find(|f| f.get("http_service").is_some())
        .unwrap();
    assert_eq!(
        ext_authz["@type"],
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
    );
    assert!(ext_authz
        .get("failure_mode_allow")
        .is_none_or(|v| v == false));
    let allowed = ext_authz["allowed_headers"]["patterns"].to_string();
    assert!(allowed.contains("cookie"), "{allowed}");
    // Envoy normalises before it routes and asks, as the gateway does when it decides.
    let mut normalize = Vec::new();
    find_all(&config, "normalize_path", &mut normalize);
    assert_eq!(normalize, [&Value::Bool(true)]);
    // Clients never reach the decision endpoint.
    let mut direct = Vec::new();
    find_all(&config, "direct_response", &mut direct);
    assert!(direct.iter().any(|d| d["status"] == 404), "{direct:?}");
}
