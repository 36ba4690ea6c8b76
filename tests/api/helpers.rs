//! Test harness: a real gateway on port 0 (in-process or as the real binary), a real SQLite
//! file in a temp dir, the echo upstream, and a real HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use authgate::app::{App, AppState, ReloadHandle, RunError};
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
    /// `[[routes]]` tables; `None` means the default three routes to the echo upstream.
    pub routes: Option<String>,
}

impl Setup {
    /// The config text for a gateway storing its data in `dir` and fronting `echo`.
    pub fn config_text(&self, dir: &Path, echo: SocketAddr) -> String {
        let routes = self.routes.clone().unwrap_or_else(|| default_routes(echo));
        format!(
            r#"[server]
listen = "127.0.0.1:0"
{server}
[admin]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{dir}/authgate.db"

[tokens]
secret_file = "{dir}/jwt-secret"
{tokens}
[auth]
{auth}
[proxy]
{proxy}
[log]
level = "warn"

{routes}
"#,
            dir = dir.display(),
            server = self.server,
            tokens = self.tokens,
            auth = self.auth,
            proxy = self.proxy,
        )
    }
}

/// `/public` (public), `/api` (token), `/admin` (fresh, 5 minutes) and `/ops` (token + role
/// `ops`), all to `echo`.
pub fn default_routes(echo: SocketAddr) -> String {
    format!(
        r#"[[routes]]
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
"#
    )
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
    /// Shared state, for direct checks.
    pub state: Arc<AppState>,
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
        let echo = authgate::echo::spawn(([127, 0, 0, 1], 0).into(), echo_stop.clone())
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
        let state = app.state();
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

/// An access and a refresh token.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Access token.
    pub access: String,
    /// Refresh token.
    pub refresh: String,
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

/// A gateway running as the real binary, started from a config file.
pub struct Process {
    /// The child process.
    pub child: Child,
    /// Public address, read from its "serving" log line.
    pub addr: SocketAddr,
    /// Admin address.
    pub admin: Option<SocketAddr>,
    /// Log lines after the "serving" line, read on a thread.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Process {
    /// Starts `authgate --config CONFIG` and waits for its "serving" line (JSON logs).
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Process {
        let mut cmd = Command::new(binary());
        cmd.arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn authgate");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the gateway logs a serving line");
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["message"] == "authgate serving" {
                let addr = v["listen"].as_str().expect("listen").parse().expect("addr");
                let admin = v["admin"].as_str().and_then(|a| a.parse().ok());
                return Process {
                    child,
                    addr,
                    admin,
                    lines: rx,
                };
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

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config file for the binary: JSON logs, ports 0, data in `dir`, `server` extra
/// lines for `[server]` and `body` for everything else (routes, ...).
pub fn write_binary_config(dir: &Path, server: &str, body: &str) -> PathBuf {
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
format = "json"
level = "info"

{body}
"#,
        d = dir.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}
