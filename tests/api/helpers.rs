//! Test harness: a real gateway on port 0 (in-process or as the real binary), a real SQLite
//! file in a temp dir, the echo upstream, and a real HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use authgate::app::{App, ReloadHandle, RunError};
use authgate::auth::password::PasswordHasher;
use authgate::auth::tokens::TokenService;
use authgate::server::drain::Drain;
use authgate::store::Store;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The password every test user gets unless a test says otherwise.
pub const PASSWORD: &str = "correct horse battery";

/// Installs rustls' ring provider once for reqwest (built without a default provider).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A plain reqwest client that does not follow redirects or use proxies.
pub fn client() -> Client {
    crypto();
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Pieces of the config file a test can change.
#[derive(Clone, Default)]
pub struct Setup {
    /// Extra lines for `[server]`.
    pub server: String,
    /// Extra lines for `[tokens]`.
    pub tokens: String,
    /// Extra lines for `[auth]`.
    pub auth: String,
    /// Extra lines for `[proxy]`.
    pub proxy: String,
    /// Extra lines for `[auth.cookies]`.
    pub cookies: String,
    /// Extra lines for `[cors]`.
    pub cors: String,
    /// Extra lines for `[forward_auth]`.
    pub forward_auth: String,
    /// Extra lines for `[compat]` (its subtable `[compat.flask_jwt_extended]` too).
    pub compat: String,
    /// `[[routes]]` tables; `None` means the default routes to the echo upstream. Every
    /// [`ECHO`] in the text is replaced by the echo upstream's address.
    pub routes: Option<String>,
    /// The `[store]` lines; `None` means an SQLite file in the data folder.
    pub store: Option<String>,
    /// The HS256 secret file; `None` means one in the data folder. Replicas share one.
    pub secret_file: Option<PathBuf>,
}

impl Setup {
    /// The config text for a gateway storing its data in `dir` and fronting `echo`.
    pub fn config_text(&self, dir: &Path, echo: SocketAddr) -> String {
        let routes = match &self.routes {
            Some(routes) => routes.replace(ECHO, &echo.to_string()),
            None => default_routes(echo),
        };
        let store = match &self.store {
            Some(store) => store.clone(),
            None => format!("url = \"sqlite://{}/authgate.db\"", dir.display()),
        };
        let secret_file = match &self.secret_file {
            Some(file) => file.clone(),
            None => dir.join("jwt-secret"),
        };
        // Every in-process test client comes from 127.0.0.1: tests that are not about the
        // registration limit must not run into its default of 10 an hour.
        let auth = if self.auth.contains("register_limit") {
            self.auth.clone()
        } else {
            format!(
                "register_limit = {{ max = 100000, window = \"1h\" }}\n{}",
                self.auth
            )
        };
        format!(
            r#"[server]
listen = "127.0.0.1:0"
{server}
[admin]
listen = "127.0.0.1:0"

[store]
{store}

[tokens]
secret_file = "{secret_file}"
{tokens}
[auth]
{auth}
[auth.cookies]
{cookies}
[proxy]
{proxy}
[cors]
{cors}
[log]
level = "warn"

[forward_auth]
{forward_auth}

[compat]
{compat}

{routes}
"#,
            secret_file = secret_file.display(),
            server = self.server,
            tokens = self.tokens,
            proxy = self.proxy,
            cookies = self.cookies,
            cors = self.cors,
            forward_auth = self.forward_auth,
            compat = self.compat,
        )
    }
}

/// Stands for the echo upstream's `host:port` in [`Setup::routes`].
pub const ECHO: &str = "{echo}";

/// The default routes with [`ECHO`] for the echo upstream's address; see [`default_routes`].
pub const DEFAULT_ROUTES: &str = r#"[[routes]]
prefix = "/public"
upstream = "http://{echo}"
auth = "public"

[[routes]]
prefix = "/api"
upstream = "http://{echo}"
auth = "token"

[[routes]]
prefix = "/admin"
upstream = "http://{echo}"
auth = "fresh"
fresh_max_age = "5m"

[[routes]]
prefix = "/ops"
upstream = "http://{echo}"
auth = "token"
roles = ["ops"]
methods = ["GET"]
"#;

/// `/public` (public), `/api` (token), `/admin` (fresh, 5 minutes) and `/ops` (token + role
/// `ops`, `GET` only), all to `echo`.
pub fn default_routes(echo: SocketAddr) -> String {
    DEFAULT_ROUTES.replace(ECHO, &echo.to_string())
}

/// A setup with the default routes followed by `extra` (where [`ECHO`] works too).
pub fn with_routes(extra: &str) -> Setup {
    Setup {
        routes: Some(format!("{DEFAULT_ROUTES}\n{extra}")),
        ..Setup::default()
    }
}

/// A gateway running in this process.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Public address.
    pub addr: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// The echo upstream.
    pub echo: SocketAddr,
    /// A client for the gateway.
    pub client: Client,
    /// Starts a graceful shutdown.
    pub shutdown: CancellationToken,
    /// Reloads routes and `[proxy]`.
    pub reload: ReloadHandle,
    /// Parts of the gateway, for direct checks.
    pub state: Parts,
    /// The data folder (database, secret, config).
    pub dir: TempDir,
    /// The config file written for this app.
    pub config_path: PathBuf,
    /// The setup it was started with.
    pub setup: Setup,
    task: JoinHandle<Result<(), RunError>>,
    echo_stop: CancellationToken,
}

impl TestApp {
    /// Starts a gateway with the default setup.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Setup::default()).await
    }

    /// Starts a gateway with `setup`.
    pub async fn spawn_with(setup: Setup) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_in(setup, dir).await
    }

    /// Starts a gateway with `setup` on the data folder `dir` (reused across restarts).
    pub async fn spawn_in(setup: Setup, dir: TempDir) -> TestApp {
        let echo_stop = CancellationToken::new();
        let echo = crate::echo::spawn(([127, 0, 0, 1], 0).into(), echo_stop.clone())
            .await
            .expect("echo upstream");
        let config_path = dir.path().join("authgate.toml");
        std::fs::write(&config_path, setup.config_text(dir.path(), echo)).expect("write config");
        let config = authgate::config::load(&config_path).expect("valid config");
        let app = App::build(config).await.expect("app builds");
        let addr = app.public_addr();
        let admin = app.admin_addr().expect("admin listener");
        let shutdown = app.shutdown_handle();
        let reload = app.reload_handle();
        let state = Parts {
            store: app.store(),
            tokens: app.tokens(),
            hasher: app.hasher(),
            drain: app.drain(),
        };
        let task = tokio::spawn(app.run());
        TestApp {
            base: format!("http://{addr}"),
            addr,
            admin,
            echo,
            client: client(),
            shutdown,
            reload,
            state,
            dir,
            config_path,
            setup,
            task,
            echo_stop,
        }
    }

    /// Shuts the gateway down and waits for it; returns the data folder for a restart.
    pub async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.echo_stop.cancel();
        self.dir
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /auth/register` with JSON credentials.
    pub async fn register(&self, username: &str, password: &str) -> Response {
        self.client
            .post(self.url("/auth/register"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("register request")
    }

    /// `POST /auth/login` with JSON credentials.
    pub async fn login_raw(&self, username: &str, password: &str) -> Response {
        self.client
            .post(self.url("/auth/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("login request")
    }

    /// Registers `username` with [`PASSWORD`] and logs in; returns the tokens.
    pub async fn user(&self, username: &str) -> Tokens {
        let r = self.register(username, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::CREATED, "register {username}");
        self.login(username).await
    }

    /// Logs `username` in with [`PASSWORD`].
    pub async fn login(&self, username: &str) -> Tokens {
        let r = self.login_raw(username, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "login {username}");
        let v: Value = r.json().await.expect("login json");
        Tokens {
            access: v["access_token"].as_str().expect("access").to_owned(),
            refresh: v["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// `POST /auth/refresh` with `refresh`.
    pub async fn refresh(&self, refresh: &str) -> Response {
        self.client
            .post(self.url("/auth/refresh"))
            .bearer_auth(refresh)
            .send()
            .await
            .expect("refresh request")
    }

    /// `GET path` with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("GET request")
    }

    /// `POST /auth/fresh` with `token` and `password`.
    pub async fn fresh(&self, token: &str, password: &str) -> Response {
        self.client
            .post(self.url("/auth/fresh"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "password": password }))
            .send()
            .await
            .expect("fresh request")
    }

    /// A request to `path` with an optional bearer token, for tests that need to shape it.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let req = self.client.request(method, self.url(path));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `POST /auth/login` for `name` as if from `ip`: an `X-Forwarded-For` the gateway
    /// believes when the test peer (127.0.0.1) is in `trusted_proxies`.
    pub async fn login_from(&self, name: &str, ip: &str, password: &str) -> Response {
        self.request(reqwest::Method::POST, "/auth/login", None)
            .header("x-forwarded-for", ip)
            .json(&serde_json::json!({ "username": name, "password": password }))
            .send()
            .await
            .expect("login request")
    }

    /// `POST /auth/logout` with `token`.
    pub async fn logout(&self, token: &str) -> Response {
        self.client
            .post(self.url("/auth/logout"))
            .bearer_auth(token)
            .send()
            .await
            .expect("logout request")
    }
}

/// The parts of a running gateway that tests inspect or drive directly.
#[derive(Clone)]
pub struct Parts {
    /// The store it uses.
    pub store: Arc<dyn Store>,
    /// Its token service.
    pub tokens: Arc<TokenService>,
    /// Its password hasher (sharing the counters of the one in use).
    pub hasher: PasswordHasher,
    /// Its drain state.
    pub drain: Arc<Drain>,
}

/// An access and a refresh token.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Access token.
    pub access: String,
    /// Refresh token.
    pub refresh: String,
}

/// The first value of header `name` as text, or "" when absent.
pub fn header(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Asserts the §1 error shape and returns the body.
pub async fn assert_error(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status for {code}");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/json");
    if status == StatusCode::UNAUTHORIZED {
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"authgate\""),
            "challenge: {challenge}"
        );
    }
    let body: Value = res.json().await.expect("error json");
    assert_eq!(body["error"], code, "body: {body}");
    assert!(body["message"].is_string());
    body
}

/// Asserts a `429 rate_limited` with a `Retry-After` of 1 s to the 15-minute window.
pub async fn assert_limited(res: Response) {
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=900).contains(&retry), "Retry-After: {retry}");
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

/// The decoded claims of a JWT (no verification: for looking at what the gateway issued).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("claims json")
}

/// The path of the built `authgate` binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_authgate")
}

/// Runs `authgate ARGS` to completion with `env` added (and the test runner's `RUST_LOG`
/// removed: it would replace the config's log level); returns (exit code, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args).stdin(Stdio::null()).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run authgate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A gateway running as the real binary, started from a config file.
pub struct Process {
    /// The child process.
    pub child: Child,
    /// Public address, read from its "serving" log line.
    pub addr: SocketAddr,
    /// Admin address.
    pub admin: Option<SocketAddr>,
    /// The "serving" log line itself.
    pub serving: String,
    /// The log lines before the "serving" line.
    pub before_serving: Vec<String>,
    /// Log lines after the "serving" line, read on a thread.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Process {
    /// Starts `authgate --config CONFIG` and waits for its "serving" line (JSON or pretty
    /// logs). The test runner's `RUST_LOG` is not passed on; `env` may set one.
    // ok: the child is killed and waited for by `Drop` once it is inside a `Process`, and a
    // test that panics before that ends the test process anyway.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Process {
        let mut cmd = Command::new(binary());
        cmd.arg("--config").arg(config).env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start_command(cmd)
    }

    /// Starts `cmd` (which runs the gateway, perhaps through a wrapper such as `sh -c`) with
    /// its stderr read as [`Process::start`] does, and waits for its "serving" line. The
    /// environment is left as `cmd` has it.
    // ok: as for `start`.
    #[allow(clippy::zombie_processes)]
    pub fn start_command(mut cmd: Command) -> Process {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn authgate");
        let rx = stderr_lines(&mut child);
        let mut before_serving = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the gateway logs a serving line");
            if let Some((addr, admin)) = serving_addresses(&line) {
                return Process {
                    child,
                    addr,
                    admin,
                    serving: line,
                    before_serving,
                    lines: rx,
                };
            }
            before_serving.push(line);
        }
    }

    /// The next log line (JSON) for which `wanted` is true; the lines before it are passed
    /// over. Fails when the log ends or stays quiet for 30 seconds.
    pub fn next_json_line(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let mut lines = self.json_lines_until(wanted);
        lines.pop().expect("the wanted line").1
    }

    /// The next log lines (JSON), as written and parsed, up to and including the first for
    /// which `wanted` is true. Fails when the log ends or stays quiet for 30 seconds.
    pub fn json_lines_until(&self, wanted: impl Fn(&Value) -> bool) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("no wanted log line ({e}) after {seen:?}"));
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line:?}"));
            let done = wanted(&v);
            seen.push((line, v));
            if done {
                return seen;
            }
        }
    }

    /// Sends `signal` (e.g. "TERM", "HUP", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        self.child.wait().expect("wait for the gateway").code()
    }
}

/// The child's piped stderr, line by line, read on a thread that keeps draining it after
/// the receiver is gone, so the child never blocks on a full pipe.
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            // Nobody listening any more is no reason to stop reading.
            let _ = tx.send(line);
        }
    });
    rx
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The public and admin addresses of an "authgate serving" log line, JSON or pretty
/// (`... authgate serving listen=127.0.0.1:PORT admin=127.0.0.1:PORT ...`).
fn serving_addresses(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        if v["message"] != "authgate serving" {
            return None;
        }
        let addr = v["listen"].as_str()?.parse().ok()?;
        let admin = v["admin"].as_str().and_then(|a| a.parse().ok());
        return Some((addr, admin));
    }
    if !line.contains("authgate serving") {
        return None;
    }
    let field = |name: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|a| a.parse().ok())
    };
    Some((field("listen")?, field("admin")))
}

/// Writes a config file for the binary: JSON logs, ports 0, data in `dir`, `server` extra
/// lines for `[server]` and `body` for everything else (routes, ...).
pub fn write_binary_config(dir: &Path, server: &str, body: &str) -> PathBuf {
    write_binary_config_with_log(dir, server, "format = \"json\"\nlevel = \"info\"", body)
}

/// [`write_binary_config`] with `log` as the `[log]` section.
pub fn write_binary_config_with_log(dir: &Path, server: &str, log: &str, body: &str) -> PathBuf {
    let path = dir.join("authgate.toml");
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
{server}

[admin]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{d}/authgate.db"

[tokens]
secret_file = "{d}/jwt-secret"

[log]
{log}

{body}
"#,
        d = dir.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// An HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header lines in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name` (any case).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` code of a gateway error body, or "" when the body is not one.
    pub fn error_code(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Sends `method target` over a fresh TCP connection exactly as written (no client-side path
/// normalisation), with `Host: addr`, the `headers` lines as given, and `Connection: close`
/// unless `headers` has a `Connection` line of its own; reads the response to EOF.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut text = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
    {
        text.push_str("Connection: close\r\n");
    }
    text.push_str("\r\n");
    raw_exchange(addr, text.as_bytes()).await
}

/// Writes `bytes` to a fresh connection and parses what comes back until EOF (or, for a
/// response with `Content-Length`, until the body is complete), within 10 seconds.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(bytes).await.expect("write request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(res) = parse_raw(&buf) {
                return res;
            }
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return parse_raw_at_eof(&buf);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("raw response within 10 s")
}

/// A complete response in `buf`: head plus a `Content-Length` body. `None` when more is needed
/// or the length is only known at EOF.
fn parse_raw(buf: &[u8]) -> Option<RawResponse> {
    let (status, headers, body) = split_head(buf)?;
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")?
        .1
        .parse()
        .ok()?;
    (body.len() >= len).then(|| RawResponse {
        status,
        headers,
        body: body[..len].to_vec(),
    })
}

fn parse_raw_at_eof(buf: &[u8]) -> RawResponse {
    let (status, headers, body) = split_head(buf).unwrap_or_else(|| {
        panic!(
            "no complete response head: {:?}",
            String::from_utf8_lossy(buf)
        )
    });
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Status, header lines and the bytes after the head.
type Head<'a> = (u16, Vec<(String, String)>, &'a [u8]);

fn split_head(buf: &[u8]) -> Option<Head<'_>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers, &buf[end + 4..]))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let Some(chunk) = body.get(start..start + size) else {
            out.extend_from_slice(&body[start.min(body.len())..]);
            break;
        };
        out.extend_from_slice(chunk);
        body = body.get(start + size + 2..).unwrap_or(&[]);
    }
    out
}

/// Runs `authgate --config CONFIG ARGS` to completion (blocking), with `stdin` piped in when
/// given (otherwise empty); returns its output.
pub fn user_cli(config: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn authgate");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("authgate output")
}

/// [`user_cli`] off the async reactor.
pub async fn user_cli_async(
    config: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        user_cli(&config, &args, stdin.as_deref())
    })
    .await
    .expect("cli task")
}
