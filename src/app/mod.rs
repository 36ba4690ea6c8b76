//! The application: everything checked and built from a [`Config`], then the listeners bound
//! (port 0 works; the bound addresses are exposed), run until the shutdown handle fires, and
//! drained as docs/http-api.md §6 describes.
//!
//! Building wires the parts together: one token service, revocation index, authenticator and
//! store shared by the account endpoints (`routes/`) and the proxy (`proxy/`), which own the
//! rest of what they use; the public service ([`gateway`]) sits above both, and hands
//! forward-auth decisions (when `[forward_auth]` is enabled) to `routes::ForwardAuth` with the
//! proxy's table of the request seen through `decisions`. `App` never
//! listens for signals itself: the binary turns SIGTERM/SIGHUP into calls on
//! [`App::shutdown_handle`] and [`App::reload_handle`], and tests call them directly.

mod background;
pub mod cors;
mod decisions;
mod follower;
pub mod gateway;
mod reload;
mod ticker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::authenticator::Authenticator;
use crate::auth::keys::{load_keys, KeyLoad};
use crate::auth::legacy::LegacyTokens;
use crate::auth::limiter::LoginLimiter;
use crate::auth::password::{HashQueue, PasswordHasher};
use crate::auth::tokens::TokenService;
use crate::clock::Clock;
use crate::config::{Config, ConfigError, StoreUrl};
use crate::proxy::browser::BrowserRules;
use crate::proxy::table::ProxyTable;
use crate::proxy::Proxy;
use crate::routes::{EndpointSettings, Endpoints, ForwardAuth, Passwords};
use crate::server::admin::AdminService;
use crate::server::connection::Connections;
use crate::server::drain::Drain;
use crate::server::limits::HeadLimits;
use crate::server::{accept_loop, tls, ServeOptions};
use crate::sessions::{SessionRules, Sessions};
use crate::store::health::{WatchedStore, WriteHealth};
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use background::Background;
use follower::RevocationFollower;
use gateway::Gateway;
pub use reload::ReloadHandle;

/// Connections the admin listener serves at once (probes and scrapes).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// How long a login may wait for an argon2 slot before it is answered `503`.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(2);

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

/// A built gateway with its listeners bound, ready to [`run`](App::run).
pub struct App {
    config: Arc<Config>,
    gateway: Arc<Gateway>,
    admin_service: Arc<AdminService>,
    background: Background,
    reload: ReloadHandle,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    store: Arc<dyn Store>,
    tokens: Arc<TokenService>,
    hasher: PasswordHasher,
    drain: Arc<Drain>,
    /// The public listener's connections (built early: `/metrics` counts them).
    connections: Arc<Connections>,
    shutdown: CancellationToken,
    public: TcpListener,
    admin: Option<TcpListener>,
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
        ProxyTable::build(config)?;
        legacy_tokens(config, Clock::system())?;
        crate::store::check(&config.store.url)
            .map_err(|e| store_config_error(config, &e.to_string()))?;
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
            .with_clock(clock.clone())
            .with_csrf(config.auth.cookies.enabled);
        let tokens = Arc::new(tokens);
        let tls = match &config.server.tls {
            Some(files) => Some(Arc::new(ArcSwap::new(tls::server_config(
                files,
                &config.source,
            )?))),
            None => None,
        };
        let table = Arc::new(ArcSwap::from_pointee(ProxyTable::build(&config)?));
        let store = crate::store::open(&config.store)
            .await
            .map_err(StartError::Runtime)?;
        // Every write's outcome is recorded, so /readyz can say whether the store accepts
        // writes without writing itself.
        let write_health = Arc::new(WriteHealth::default());
        let store: Arc<dyn Store> = Arc::new(WatchedStore::new(store, write_health.clone()));
        // Only replicas sharing PostgreSQL fail closed when out of sync (§6); an SQLite
        // gateway reads a log on its own disk.
        let max_staleness = match config.store.url {
            StoreUrl::Postgres(_) => Some(config.store.max_staleness),
            StoreUrl::Sqlite(_) => None,
        };
        let legacy = legacy_tokens(&config, clock.clone())?;
        let mut follower =
            RevocationFollower::start(store.clone(), clock.now(), tokens.leeway(), max_staleness)
                .await
                .map_err(|e| StartError::Runtime(format!("cannot read the revocation log: {e}")))?;
        if legacy.is_some() {
            follower
                .load_directory()
                .await
                .map_err(|e| StartError::Runtime(format!("cannot read the users: {e}")))?;
        }
        let revocations = follower.index();
        let confirmed = follower.confirmed();
        let hasher = build_hasher(&config).await?;
        // Failed password checks take as long as the slowest scheme the store holds, so
        // imported users cannot be told apart by timing (docs/http-api.md §7.5).
        let samples = store
            .password_hash_samples()
            .await
            .map_err(|e| StartError::Runtime(format!("cannot read the password hashes: {e}")))?;
        let floor = hasher
            .measure_floor(&samples)
            .await
            .map_err(|e| StartError::Runtime(format!("cannot time the password hashes: {e}")))?;
        tracing::debug!(floor = ?floor, schemes = samples.len(), "failed password checks padded");
        let limiter = LoginLimiter::new(store.clone(), config.auth.login_limit, clock.clone())
            .with_register_limit(config.auth.register_limit);

        let public = bind(config.server.listen, "server.listen").await?;
        let admin = match config.admin.listen {
            Some(addr) => Some(bind(addr, "admin.listen").await?),
            None => None,
        };

        let config = Arc::new(config);
        let auth = Arc::new(
            Authenticator::new(tokens.clone(), revocations.clone())
                .with_cookies(config.auth.cookies.enabled)
                .with_legacy(legacy),
        );
        let drain = Arc::new(Drain::default());
        let metrics = Arc::new(Metrics::new());
        metrics.set_key_generation(tokens.key_generation());
        let shutdown = CancellationToken::new();
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
        let endpoints = Endpoints::new(
            auth.clone(),
            tokens.clone(),
            store.clone(),
            sessions,
            Passwords::new(store.clone(), hasher.clone(), limiter.clone()),
            EndpointSettings {
                prefix: config.auth.prefix.clone(),
                cookies: config.auth.cookies.clone(),
                allow_registration: config.auth.allow_registration,
                min_password_length: config.auth.min_password_length,
                reserved_usernames: config.auth.reserved_usernames.clone(),
                max_body: config.server.max_body,
                body_timeout: config.server.body_timeout,
            },
            clock.clone(),
        );
        let forward_auth = config
            .forward_auth
            .enabled
            .then(|| ForwardAuth::new(auth.clone(), &config.forward_auth, clock.clone()));
        let proxy = Proxy::new(
            auth,
            &tokens,
            table.clone(),
            BrowserRules::new(&config),
            shutdown.clone(),
            clock.clone(),
        );
        let connections = Connections::new();
        add_probes(
            &metrics,
            &drain,
            &connections,
            proxy.open_tunnels(),
            &hasher,
            confirmed,
        );
        let gateway = Gateway::new(
            endpoints,
            proxy,
            config.auth.prefix.clone(),
            cors::Cors::new(&config.cors),
            forward_auth,
            drain.clone(),
            metrics.clone(),
        )
        .with_limits(head_limits(&config))
        .with_error_format(config.compat.error_format);
        let admin_service = AdminService::new(
            drain.clone(),
            store.clone(),
            metrics.clone(),
            revocations.clone(),
        )
        .with_write_health(write_health);
        let background = Background {
            follower,
            store: store.clone(),
            revocations,
            limiter,
            leeway: tokens.leeway(),
            clock,
        };
        Ok(App {
            reload: ReloadHandle::new(config.clone(), table, tls.clone(), tokens.clone(), metrics),
            config,
            gateway: Arc::new(gateway),
            admin_service: Arc::new(admin_service),
            background,
            tls,
            store,
            tokens,
            hasher,
            drain,
            connections,
            shutdown,
            public,
            admin,
        })
    }

    /// The bound public address (the real port when the config said 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .unwrap_or(self.config.server.listen)
    }

    /// The bound admin address, when the admin listener is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Cancel this token to start a graceful shutdown.
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// A handle that reloads the route table, `[proxy]` and TLS files.
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// The store (for tests and tools that inspect or seed it directly).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The token service (for tests that sign tokens of their own).
    pub fn tokens(&self) -> Arc<TokenService> {
        self.tokens.clone()
    }

    /// The password hasher (shares its counters with the one the endpoints use).
    pub fn hasher(&self) -> PasswordHasher {
        self.hasher.clone()
    }

    /// The drain state (draining flag and in-flight count).
    pub fn drain(&self) -> Arc<Drain> {
        self.drain.clone()
    }

    /// Serves until the shutdown handle fires, then drains: new connections are refused,
    /// requests on kept-alive connections get `503` with `Connection: close`, `/readyz` fails,
    /// and in-flight requests get `shutdown_grace` to finish.
    pub async fn run(self) -> Result<(), RunError> {
        let App {
            config,
            gateway,
            admin_service,
            background,
            tls,
            drain,
            connections,
            shutdown,
            public,
            admin,
            ..
        } = self;
        let stop_background = CancellationToken::new();
        background.spawn(stop_background.clone());
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let header_timeout = config.server.request_header_timeout;
        let admin_done = admin.map(|listener| {
            let opts = ServeOptions {
                header_timeout,
                send_timeout: config.server.body_timeout,
                max_connections: ADMIN_MAX_CONNECTIONS,
                tls: None,
                limits: head_limits(&config),
            };
            spawn_admin(listener, admin_service, opts, stop_background.clone())
        });
        // Tests (and operators) read the bound ports from this line.
        tracing::info!(
            listen = %public.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin_addr.map(|a| a.to_string()).unwrap_or_default(),
            tls = tls.is_some(),
            "authgate serving"
        );
        let opts = ServeOptions {
            header_timeout,
            send_timeout: config.server.body_timeout,
            max_connections: config.server.max_connections,
            tls,
            limits: head_limits(&config),
        };
        let workers = match crate::server::workers::Workers::start("authgate-srv") {
            Ok(workers) => Some(workers),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start worker threads; serving on the main runtime");
                None
            }
        };
        accept_loop(
            public,
            opts,
            gateway,
            &connections,
            shutdown,
            workers.as_ref(),
        )
        .await;

        // The listener is dropped: new connections are refused from here on.
        drain.start();
        let grace = config.server.shutdown_grace;
        let deadline = Instant::now() + grace;
        tracing::info!(in_flight = drain.in_flight(), grace = ?grace, "draining");
        let idle = drain.wait_idle(grace).await;
        let left = deadline.saturating_duration_since(Instant::now());
        let closed = tokio::time::timeout(left, connections.shutdown())
            .await
            .is_ok();
        let in_flight = drain.in_flight();
        stop_background.cancel();
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

/// The figures `/metrics` reads from running parts on each scrape.
fn add_probes(
    metrics: &Metrics,
    drain: &Arc<Drain>,
    connections: &Arc<Connections>,
    tunnels: Arc<std::sync::atomic::AtomicUsize>,
    hasher: &PasswordHasher,
    confirmed: tokio::sync::watch::Receiver<tokio::time::Instant>,
) {
    use crate::telemetry::metrics::ProbeKind::{self, Counter, Gauge};
    let d = drain.clone();
    metrics.add_probe(
        "requests_in_flight",
        "Requests being answered now (public listener)",
        Gauge,
        move || d.in_flight() as f64,
    );
    let c = connections.clone();
    metrics.add_probe(
        "open_connections",
        "Open connections on the public listener, upgraded ones included",
        Gauge,
        move || c.live() as f64,
    );
    metrics.add_probe(
        "websocket_tunnels",
        "WebSocket tunnels open now",
        Gauge,
        move || tunnels.load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    /// Name, help, kind, and the figure read from the hasher's queue.
    type HashQueueProbe = (&'static str, &'static str, ProbeKind, fn(&HashQueue) -> f64);
    let hash_queue: [HashQueueProbe; 3] = [
        (
            "hash_queue_depth",
            "Password checks waiting for a hashing slot now",
            Gauge,
            |q| q.waiting as f64,
        ),
        (
            "hash_queue_waits",
            "Waits for a hashing slot, finished or given up",
            Counter,
            |q| q.waits as f64,
        ),
        (
            "hash_queue_wait_seconds",
            "Seconds spent waiting for a hashing slot, all waits together (divide by \
             hash_queue_waits for the mean)",
            Counter,
            |q| q.wait_seconds,
        ),
    ];
    for (name, help, kind, read) in hash_queue {
        let h = hasher.clone();
        metrics.add_probe(name, help, kind, move || read(&h.queue()));
    }
    metrics.add_probe(
        "revocation_sync_lag_seconds",
        "Seconds since the revocation index was last confirmed in sync with the store's log \
         (PostgreSQL: past max_staleness authenticated routes answer 503)",
        Gauge,
        move || confirmed.borrow().elapsed().as_secs_f64(),
    );
}

/// The password hasher with max(1, cores − 1) permits. Building it computes the dummy hash:
/// one argon2 run, on the blocking pool.
async fn build_hasher(config: &Config) -> Result<PasswordHasher, StartError> {
    let permits = crate::server::workers::count().saturating_sub(1).max(1);
    let argon2 = config.auth.argon2;
    tokio::task::spawn_blocking(move || PasswordHasher::new(argon2, permits, HASH_QUEUE_WAIT))
        .await
        .map_err(|e| StartError::Runtime(format!("hasher task failed: {e}")))?
        .map_err(|e| StartError::Config(ConfigError::new(&config.source, "auth.argon2", None, e)))
}

/// The legacy token verifier of `[compat.flask_jwt_extended]`, when configured; its secret
/// file must be readable (a configuration error otherwise).
fn legacy_tokens(config: &Config, clock: Clock) -> Result<Option<Arc<LegacyTokens>>, StartError> {
    let Some(legacy) = &config.compat.flask_jwt_extended else {
        return Ok(None);
    };
    let tokens = LegacyTokens::load(legacy, &config.source, config.tokens.leeway, clock)?;
    Ok(Some(Arc::new(tokens)))
}

/// The raw bytes of `AUTHGATE_JWT_SECRET`, when set (the gateway and `explain` read it).
pub fn env_secret() -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    std::env::var_os("AUTHGATE_JWT_SECRET").map(|v| v.into_vec())
}

fn store_config_error(config: &Config, reason: &str) -> ConfigError {
    ConfigError::new(
        &config.source,
        "store.url",
        Some(format!("{:?}", config.store.url.to_string())),
        reason.to_owned(),
    )
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Runtime(format!("{key}: cannot listen on {addr}: {e}")))
}

/// `[server]`'s header limits.
fn head_limits(config: &Config) -> HeadLimits {
    HeadLimits {
        max_header_bytes: config.server.max_header_bytes,
        max_headers: config.server.max_headers,
    }
}

fn spawn_admin(
    listener: TcpListener,
    service: Arc<AdminService>,
    opts: ServeOptions,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let connections = Connections::new();
        accept_loop(listener, opts, service, &connections, stop, None).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), connections.shutdown()).await;
    })
}
