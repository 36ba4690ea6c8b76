//! The application: everything checked and built from a [`Config`], then the listeners bound
//! (port 0 works; the bound addresses are exposed), run until the shutdown handle fires, and
//! drained as HTTP-API.md §6 describes.
//!
//! `App` never listens for signals itself: the binary turns SIGTERM/SIGHUP into calls on
//! [`App::shutdown_handle`] and [`App::reload_handle`], and tests call them directly.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminService;
use crate::auth::authenticator::Authenticator;
use crate::auth::keys::{load_keys, KeyLoad};
use crate::auth::limiter::LoginLimiter;
use crate::auth::password::PasswordHasher;
use crate::auth::revocation::RevocationIndex;
use crate::auth::tokens::TokenService;
use crate::clock::{secs, Clock};
use crate::config::{self, Config, ConfigError, StoreUrl};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::proxy::ProxyState;
use crate::server::drain::Drain;
use crate::server::{accept_loop, tls, ServeOptions};
use crate::sessions::{SessionRules, Sessions};
use crate::store::SqliteStore;
use crate::store::Store;

/// How long a login may wait for an argon2 slot before it is answered `503`.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How often the revocation log is read for entries written by other processes (§6: ≤ 1 s).
const REVOCATION_POLL: Duration = Duration::from_millis(250);
/// How often expired revocations, sessions and login-limit windows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration mistake (exit 64): bad key material, unreadable TLS files, ...
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Anything else (exit 1): the store cannot be opened, a port cannot be bound, ...
    #[error("{0}")]
    Runtime(String),
}

/// Why a running gateway stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `shutdown_grace` passed with requests still in flight.
    #[error("shutdown grace ran out with {0} request(s) still in flight")]
    GraceExpired(usize),
}

/// Everything a request may need, built once and shared.
pub struct AppState {
    /// The configuration the gateway started with (routes and `[proxy]` live in `proxy`).
    pub config: Config,
    /// Draining flag and in-flight count.
    pub drain: Drain,
    /// Users, sessions, revocation log.
    pub store: Arc<dyn Store>,
    /// Issues and verifies tokens.
    pub tokens: Arc<TokenService>,
    /// Revoked sessions, users and tokens, in memory.
    pub revocations: Arc<RevocationIndex>,
    /// Turns request credentials into identities.
    pub auth: Arc<Authenticator>,
    /// Wall time.
    pub clock: Clock,
    /// argon2id on the blocking pool, behind a semaphore.
    pub hasher: PasswordHasher,
    /// Failed-login limiting.
    pub limiter: LoginLimiter,
    /// Login sessions: open, refresh, step up, end.
    pub sessions: Sessions,
    /// The route table and proxy settings; swapped whole on reload.
    pub proxy: ArcSwap<ProxyState>,
    /// TLS configuration of the public listener; swapped on reload.
    pub tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    /// Cancelled when the gateway begins to shut down (closes upgraded connections).
    pub shutdown: CancellationToken,
    /// Request, auth-failure and upstream-error metrics for `/metrics`.
    pub metrics: Metrics,
}

/// A built gateway with its listeners bound, ready to [`run`](App::run).
pub struct App {
    state: Arc<AppState>,
    public: TcpListener,
    admin: Option<TcpListener>,
    log_cursor: i64,
}

/// Reloads `[[routes]]`, `[proxy]` and the TLS files of a running gateway.
#[derive(Clone)]
pub struct ReloadHandle {
    state: Arc<AppState>,
}

impl App {
    /// Checks what a start would check — key material (from `AUTHGATE_JWT_SECRET` too), TLS
    /// files, upstream CA, store — without creating files or binding ports.
    pub fn check(config: &Config) -> Result<(), StartError> {
        load_keys(
            &config.tokens,
            &config.source,
            env_secret(),
            KeyLoad::CheckOnly,
        )?;
        if let Some(files) = &config.server.tls {
            tls::server_config(files, &config.source)?;
        }
        ProxyState::build(config)?;
        match &config.store.url {
            StoreUrl::Sqlite(path) => SqliteStore::check(path)
                .map_err(|e| store_config_error(config, path, &e.to_string()))?,
        }
        Ok(())
    }

    /// Builds every part from `config`, then binds the listeners. Everything that can be a
    /// configuration mistake is checked before the first port is bound.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let keys = load_keys(
            &config.tokens,
            &config.source,
            env_secret(),
            KeyLoad::CreateMissing,
        )?;
        let clock = Clock::system();
        let tokens = TokenService::new(&config.tokens, keys)
            .map_err(|e| StartError::Runtime(format!("token keys: {e}")))?
            .with_clock(clock.clone());
        let tokens = Arc::new(tokens);
        let tls = match &config.server.tls {
            Some(files) => Some(Arc::new(ArcSwap::new(tls::server_config(
                files,
                &config.source,
            )?))),
            None => None,
        };
        let proxy = ProxyState::build(&config)?;
        let store = crate::store::open(&config.store.url)
            .await
            .map_err(StartError::Runtime)?;
        let (revocations, log_cursor) = load_revocations(store.as_ref(), &clock).await?;
        let auth = Arc::new(Authenticator::new(tokens.clone(), revocations.clone()));
        let hasher = build_hasher(&config).await?;
        let limiter = LoginLimiter::new(config.auth.login_limit);
        let sessions = Sessions::new(
            store.clone(),
            tokens.clone(),
            revocations.clone(),
            clock.clone(),
            SessionRules {
                refresh_rotation: config.auth.refresh_rotation,
                refresh_reuse_grace: config.auth.refresh_reuse_grace,
            },
        );

        let public = bind(config.server.listen, "server.listen").await?;
        let admin = match config.admin.listen {
            Some(addr) => Some(bind(addr, "admin.listen").await?),
            None => None,
        };
        let state = Arc::new(AppState {
            config,
            drain: Drain::default(),
            store,
            tokens,
            revocations,
            auth,
            clock,
            hasher,
            limiter,
            sessions,
            proxy: ArcSwap::from_pointee(proxy),
            tls,
            shutdown: CancellationToken::new(),
            metrics: Metrics::new(),
        });
        Ok(App {
            state,
            public,
            admin,
            log_cursor,
        })
    }

    /// The bound public address (the real port when the config said 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .unwrap_or(self.state.config.server.listen)
    }

    /// The bound admin address, when the admin listener is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Cancel this token to start a graceful shutdown.
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// A handle that reloads the route table, `[proxy]` and TLS files.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            state: self.state.clone(),
        }
    }

    /// The shared state (for tests and benchmarks that drive parts directly).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until the shutdown handle fires, then drains: new connections are refused,
    /// requests on kept-alive connections get `503` with `Connection: close`, `/readyz` fails,
    /// and in-flight requests get `shutdown_grace` to finish.
    pub async fn run(self) -> Result<(), RunError> {
        let App {
            state,
            public,
            admin,
            log_cursor,
        } = self;
        let background = CancellationToken::new();
        spawn_background(state.clone(), log_cursor, background.clone());
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let admin_done =
            admin.map(|listener| spawn_admin(listener, state.clone(), background.clone()));
        // Tests (and operators) read the bound ports from this line.
        tracing::info!(
            listen = %public.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin_addr.map(|a| a.to_string()).unwrap_or_default(),
            tls = state.tls.is_some(),
            "authgate serving"
        );
        let graceful = GracefulShutdown::new();
        let opts = ServeOptions {
            header_timeout: state.config.server.request_header_timeout,
            max_connections: state.config.server.max_connections,
            tls: state.tls.clone(),
        };
        let gateway = Arc::new(Gateway::new(state.clone()));
        accept_loop(public, opts, gateway, &graceful, state.shutdown.clone()).await;

        // The listener is dropped: new connections are refused from here on.
        state.drain.start();
        let grace = state.config.server.shutdown_grace;
        let deadline = Instant::now() + grace;
        tracing::info!(in_flight = state.drain.in_flight(), grace = ?grace, "draining");
        let idle = state.drain.wait_idle(grace).await;
        let left = deadline.saturating_duration_since(Instant::now());
        let closed = tokio::time::timeout(left, graceful.shutdown())
            .await
            .is_ok();
        let in_flight = state.drain.in_flight();
        background.cancel();
        if let Some(done) = admin_done {
            let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
        }
        if idle && closed {
            tracing::info!("drained; exiting");
            Ok(())
        } else {
            Err(RunError::GraceExpired(in_flight))
        }
    }
}

impl ReloadHandle {
    /// Reads `path` again and applies it (see [`ReloadHandle::apply`]).
    /// Everything — reading the file, the CA and TLS files — runs on the blocking pool.
    pub async fn reload_from(&self, path: &Path) -> Result<(), ConfigError> {
        let path = path.to_path_buf();
        let handle = self.clone();
        tokio::task::spawn_blocking(move || handle.apply(config::load(&path)?))
            .await
            .map_err(|e| {
                ConfigError::new(Path::new("-"), "", None, format!("reload task failed: {e}"))
            })?
    }

    /// Applies `[[routes]]`, `[proxy]` and the TLS files of `new` atomically; in-flight
    /// requests keep what they started with. Changes elsewhere are logged as needing a restart.
    /// On error nothing changes. It reads files: call it off the reactor (as `reload_from`
    /// does) or from a test.
    pub fn apply(&self, new: Config) -> Result<(), ConfigError> {
        let proxy = ProxyState::build(&new)?;
        let tls = match &new.server.tls {
            Some(files) => Some(tls::server_config(files, &new.source)?),
            None => None,
        };
        self.state.proxy.store(Arc::new(proxy));
        match (&self.state.tls, tls) {
            (Some(slot), Some(cfg)) => slot.store(cfg),
            (None, None) => {}
            _ => tracing::warn!("TLS switched on or off: needs a restart, not applied"),
        }
        for section in config::restart_needed(&self.state.config, &new) {
            tracing::warn!(section, "changed: needs a restart, not applied");
        }
        Ok(())
    }
}

/// The revocation index as the store has it now, and the log position the poller resumes
/// from. The cursor is read before the live entries, so nothing committed in between is
/// missed (entries seen twice are applied idempotently).
async fn load_revocations(
    store: &dyn Store,
    clock: &Clock,
) -> Result<(Arc<RevocationIndex>, i64), StartError> {
    let unreadable = |e| StartError::Runtime(format!("cannot read the revocation log: {e}"));
    let cursor = store.last_seq().await.map_err(unreadable)?;
    let live = store
        .live_revocations(clock.now())
        .await
        .map_err(unreadable)?;
    let index = Arc::new(RevocationIndex::new());
    index.apply(&live);
    Ok((index, cursor))
}

/// The password hasher with max(1, cores − 1) permits. Building it computes the dummy hash:
/// one argon2 run, on the blocking pool.
async fn build_hasher(config: &Config) -> Result<PasswordHasher, StartError> {
    let permits = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1);
    let argon2 = config.auth.argon2;
    tokio::task::spawn_blocking(move || PasswordHasher::new(argon2, permits, HASH_QUEUE_WAIT))
        .await
        .map_err(|e| StartError::Runtime(format!("hasher task failed: {e}")))?
        .map_err(|e| StartError::Config(ConfigError::new(&config.source, "auth.argon2", None, e)))
}

/// The raw bytes of `AUTHGATE_JWT_SECRET`, when set.
fn env_secret() -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    std::env::var_os("AUTHGATE_JWT_SECRET").map(|v| v.into_vec())
}

fn store_config_error(config: &Config, path: &Path, reason: &str) -> ConfigError {
    ConfigError::new(
        &config.source,
        "store.url",
        Some(format!("{:?}", format!("sqlite://{}", path.display()))),
        reason.to_owned(),
    )
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Runtime(format!("{key}: cannot listen on {addr}: {e}")))
}

fn spawn_admin(
    listener: TcpListener,
    state: Arc<AppState>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let opts = ServeOptions {
            header_timeout: state.config.server.request_header_timeout,
            max_connections: 64,
            tls: None,
        };
        let service = Arc::new(AdminService::new(state));
        accept_loop(listener, opts, service, &graceful, stop).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), graceful.shutdown()).await;
    })
}

/// Keeps the in-memory revocation index in step with the log (other processes write to it
/// too) and prunes what has expired.
///
/// The poller keeps its own cursor into the log rather than the index's highest applied
/// `seq`: this process applies its own revocations at once, and they may carry a higher `seq`
/// than another process's entry committed just before and not yet read.
fn spawn_background(state: Arc<AppState>, cursor: i64, stop: CancellationToken) {
    tokio::spawn(poll_revocations(state.clone(), cursor, stop.clone()));
    tokio::spawn(prune_expired(state, stop));
}

/// Applies revocation-log entries written since `cursor`, every [`REVOCATION_POLL`].
async fn poll_revocations(state: Arc<AppState>, mut cursor: i64, stop: CancellationToken) {
    let mut tick = interval(REVOCATION_POLL);
    while next_tick(&mut tick, &stop).await {
        match state.store.revocations_since(cursor).await {
            Ok(entries) => {
                if let Some(last) = entries.iter().map(|e| e.seq).max() {
                    cursor = cursor.max(last);
                    state.revocations.apply(&entries);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the revocation log"),
        }
    }
}

/// Drops expired revocations, login-limit windows and store rows, every [`PRUNE_EVERY`].
async fn prune_expired(state: Arc<AppState>, stop: CancellationToken) {
    let mut tick = interval(PRUNE_EVERY);
    while next_tick(&mut tick, &stop).await {
        let now = state.clock.now();
        state.revocations.prune(now);
        state.limiter.prune(Instant::now());
        // Session rows stay through the leeway: their tokens still verify until then.
        let leeway = secs(state.tokens.leeway());
        if let Err(e) = state.store.prune(now - leeway).await {
            tracing::warn!(error = %e, "cannot prune the store");
        }
    }
}

/// A ticker that, after a stall, waits a full period rather than firing a burst.
fn interval(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for the next tick; false once `stop` fires.
async fn next_tick(tick: &mut tokio::time::Interval, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        _ = tick.tick() => true,
    }
}
