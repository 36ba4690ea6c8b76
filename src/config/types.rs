//! Validated configuration: what the rest of the gateway reads.
//!
//! Every value here has passed the rules of docs/configuration.md; nothing downstream re-checks
//! or re-parses it. The raw serde mirror of the file lives in `raw.rs` and is converted into
//! these types by `validate.rs`, the only place a configuration can fail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use ipnet::IpNet;

use crate::origin::Origin;

/// The whole validated configuration of one gateway process.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from, as given on the command line (for messages).
    pub source: PathBuf,
    /// `[server]`: the public listener.
    pub server: ServerConfig,
    /// `[admin]`: the operator listener.
    pub admin: AdminConfig,
    /// `[store]`: where users, sessions and revocations live.
    pub store: StoreConfig,
    /// `[tokens]`: signing, lifetimes, issuer.
    pub tokens: TokensConfig,
    /// `[auth]`: the account endpoints.
    pub auth: AuthConfig,
    /// `[proxy]`: defaults for forwarding.
    pub proxy: ProxyConfig,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[cors]`: cross-origin requests from browsers.
    pub cors: CorsConfig,
    /// `[forward_auth]`: the decision endpoint for a proxy in front.
    pub forward_auth: ForwardAuthConfig,
    /// `[compat]`: migrating from flask-jwt-extended.
    pub compat: CompatConfig,
    /// `[[routes]]`: the route table, in file order.
    pub routes: Vec<RouteConfig>,
}

/// `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Public listener address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Largest accepted body on the auth endpoints, in bytes.
    pub max_body: usize,
    /// How long a client may take to send a request head.
    pub request_header_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_grace: Duration,
    /// Certificate and key files; when present the public listener speaks TLS.
    pub tls: Option<TlsFiles>,
    /// Accepted connections beyond this wait in the kernel backlog.
    pub max_connections: usize,
    /// How long an auth endpoint's request body may move no byte before it is answered `408`.
    pub body_timeout: Duration,
    /// Largest request header section: names plus values plus 32 bytes a field (HTTP/2's count).
    pub max_header_bytes: usize,
    /// Most header fields a request may carry (pseudo-headers not counted).
    pub max_headers: usize,
}

/// PEM files for the public listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Admin listener address; `None` when `listen = ""` switches it off.
    pub listen: Option<SocketAddr>,
}

/// `[store]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Which store, and where.
    pub url: StoreUrl,
    /// PostgreSQL only (10 s otherwise unused): how long a replica may go without confirming
    /// it is in sync with the revocation log before authenticated routes fail closed (503).
    pub max_staleness: Duration,
    /// PostgreSQL only (16 otherwise unused): pooled connections per replica, besides the one
    /// that listens for revocation notifications.
    pub pool_size: usize,
}

impl StoreConfig {
    /// The store at `url` with the defaults of the other keys (for tools and tests).
    pub fn with_url(url: StoreUrl) -> StoreConfig {
        StoreConfig {
            url,
            max_staleness: Duration::from_secs(10),
            pool_size: 16,
        }
    }
}

/// A parsed `[store] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An embedded SQLite database file (relative paths resolved against the working directory).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by several replicas.
    Postgres(PostgresUrl),
}

/// The URL as an operator would write it, for messages (never holds a password).
impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => url.fmt(f),
        }
    }
}

/// A `postgres://` URL as written, already checked to parse as a connection string. It may
/// hold a password, so `Display` and `Debug` show it with the user information and any
/// `password=` parameter replaced by `***`; only [`PostgresUrl::connection_string`] gives the
/// real text, to the code that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Wraps a URL that validation has checked.
    pub(crate) fn new(text: String) -> Self {
        PostgresUrl(text)
    }

    /// The URL with its password: for connecting only, never for messages.
    pub fn connection_string(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({:?})", redact_url(&self.0))
    }
}

/// `url` fit for a message: the user information of its authority (`user:password@`) replaced
/// by `***@`, and the value of a `password` query parameter by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut out = match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    };
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

/// Signing algorithm of issued tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// Ed25519.
    EdDsa,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl TokenAlgorithm {
    /// The spelling used in the config file and in a JWT header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// True for the algorithms that sign with a private key file.
    pub fn is_asymmetric(self) -> bool {
        !matches!(self, Self::Hs256)
    }
}

/// `[tokens]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensConfig {
    /// Signing algorithm.
    pub algorithm: TokenAlgorithm,
    /// HS256 secret file (created with 64 random bytes on first start).
    pub secret_file: PathBuf,
    /// Private key for the asymmetric algorithms.
    pub private_key_file: Option<PathBuf>,
    /// Public keys still accepted while rotating (asymmetric only).
    pub verify_keys: Vec<PathBuf>,
    /// `iss` of issued tokens, required on verified ones.
    pub issuer: String,
    /// `aud` of issued tokens, required on verified ones when set.
    pub audience: Option<String>,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// Lifetime of a login session and its refresh tokens.
    pub refresh_ttl: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// `[auth]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Path prefix of the account endpoints, e.g. `/auth`.
    pub prefix: String,
    /// Whether `POST {prefix}/register` is open.
    pub allow_registration: bool,
    /// Shortest accepted password, in Unicode scalar values.
    pub min_password_length: usize,
    /// Whether each refresh returns a new refresh token and retires the old one.
    pub refresh_rotation: bool,
    /// How long a retired refresh token is still answered without counting as reuse.
    pub refresh_reuse_grace: Duration,
    /// argon2id cost parameters (already accepted by the argon2 crate).
    pub argon2: Argon2Settings,
    /// Failed-login limiting.
    pub login_limit: LoginLimit,
    /// Registrations per client address.
    pub register_limit: RegisterLimit,
    /// Usernames refused at registration (lowercase; compared case-insensitively). The CLI
    /// may still create them.
    pub reserved_usernames: Vec<String>,
    /// `[auth.cookies]`: tokens in cookies, CSRF, the sign-in page.
    pub cookies: CookieConfig,
}

/// `[auth.cookies]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// Tokens also travel in cookies (with the `csrf` claim and double-submit checks).
    pub enabled: bool,
    /// The `Secure` attribute.
    pub secure: bool,
    /// The `SameSite` attribute.
    pub same_site: SameSite,
    /// The `Domain` attribute; none (host-only cookies) unless configured.
    pub domain: Option<String>,
    /// Origins the sign-in page may send the browser back to (besides this host's paths).
    pub redirect_origins: Vec<Origin>,
    /// Whether login, refresh and step-up answers still carry the tokens in their JSON.
    pub tokens_in_body: bool,
}

/// A cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only with requests from the same site.
    Strict,
    /// Also sent on top-level navigations from other sites (the default).
    Lax,
    /// Sent with every request, cross-site ones included (needs `Secure`).
    None,
}

/// `[cors]` section. CORS is off while no origin is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// `"*"` was listed: every origin is allowed (never with credentials).
    pub any_origin: bool,
    /// The origins allowed, exactly.
    pub allowed_origins: Vec<Origin>,
    /// Methods a preflight may ask for.
    pub allowed_methods: Vec<Method>,
    /// Request headers a preflight may ask for.
    pub allowed_headers: Vec<HeaderName>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<HeaderName>,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age: Duration,
}

impl CorsConfig {
    /// Whether CORS is on at all.
    pub fn enabled(&self) -> bool {
        self.any_origin || !self.allowed_origins.is_empty()
    }

    /// Whether `origin` is allowed.
    pub fn allows(&self, origin: &Origin) -> bool {
        self.any_origin || self.allowed_origins.contains(origin)
    }
}

/// argon2id parameters as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

/// `[auth] login_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimit {
    /// Failures of one username from one client address (the pair) answered with 401 before
    /// further attempts of that pair get 429.
    pub max_failures: u32,
    /// Failures of one username from any address before every attempt on it gets 429.
    pub user_max_failures: u32,
    /// Failures from one client address for any username before every attempt from it gets
    /// 429.
    pub address_max_failures: u32,
    /// Fixed window, one per counter, counted from its first failure.
    pub window: Duration,
}

/// `[auth] register_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterLimit {
    /// Registration attempts from one client address answered (with anything but 429)
    /// within `window` before further ones get 429.
    pub max: u32,
    /// Fixed window, counted from the address's first attempt.
    pub window: Duration,
}

/// `[proxy]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Default upstream timeout of a route.
    pub timeout: Duration,
    /// Names of the identity headers sent upstream.
    pub identity_headers: IdentityHeaders,
    /// Peers whose `X-Forwarded-For` is believed for rate limiting.
    pub trusted_proxies: Vec<IpNet>,
    /// Extra CA certificate(s) for https upstreams.
    pub upstream_ca_file: Option<PathBuf>,
    /// Default of a route's `idle_timeout`: a proxied body that moves no byte for this long
    /// is ended.
    pub idle_timeout: Duration,
    /// Client headers whose names start with one of these (lowercase) never reach upstreams.
    pub strip_header_prefixes: Vec<String>,
}

/// Header names the gateway sets on authenticated requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// User id (`sub`).
    pub user_id: HeaderName,
    /// Username as registered.
    pub username: HeaderName,
    /// Roles, comma-separated.
    pub roles: HeaderName,
    /// Session id (`sid`).
    pub session_id: HeaderName,
    /// `true` or `false`.
    pub fresh: HeaderName,
}

impl IdentityHeaders {
    /// The five names: user id, username, roles, session id, fresh.
    pub fn names(&self) -> [&HeaderName; 5] {
        [
            &self.user_id,
            &self.username,
            &self.roles,
            &self.session_id,
            &self.fresh,
        ]
    }
}

/// `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Human-readable or JSON lines.
    pub format: LogFormat,
    /// A level or a list of `level` and `target=level` entries, checked by
    /// [`check_log_level`](super::check_log_level) and without blanks around entries.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[forward_auth]` section: `{auth prefix}/verify` answers "may this request pass?" for a
/// proxy already in front (nginx `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`,
/// Envoy `ext_authz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// Whether the decision endpoint answers at all (off: it is an unknown endpoint, 404).
    pub enabled: bool,
    /// Where the original method and URI are read from; one source, never a fall-through.
    pub source: ForwardAuthSource,
    /// TCP peers that may ask (never a forwarded address).
    pub allowed_peers: Vec<IpNet>,
    /// The policy of a path no route matches.
    pub default_auth: RouteAuth,
}

/// `[compat]` section (docs/http-api.md §7.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompatConfig {
    /// How token errors are answered.
    pub error_format: ErrorFormat,
    /// Legacy tokens accepted; `None`: refused.
    pub flask_jwt_extended: Option<LegacyTokensConfig>,
}

/// The shape of token error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorFormat {
    /// `{"error", "message"}` with the statuses of docs/http-api.md §1.
    #[default]
    Authgate,
    /// `{"msg"}` with flask-jwt-extended's statuses (401 and 422).
    FlaskJwtExtended,
}

/// `[compat.flask_jwt_extended]`: tokens minted by the Flask app being replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTokensConfig {
    /// The Flask app's `JWT_SECRET_KEY`, as raw bytes in a file.
    pub secret_file: PathBuf,
    /// Seconds since the epoch after which legacy tokens are `invalid_token`.
    pub accept_until: i64,
}

/// Where the decision endpoint reads the original request's method and URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardAuthSource {
    /// `X-Forwarded-Method` and `X-Forwarded-Uri` (Traefik, Caddy: they overwrite client copies).
    XForwarded,
    /// `X-Original-Method` and `X-Original-URI` (nginx, whose configuration must set both).
    XOriginal,
    /// The verify request's own method, and its path after the verify prefix (Envoy
    /// `ext_authz` with `path_prefix`).
    Path,
}

/// Who may pass a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// No token needed; a token, if sent, is ignored.
    Public,
    /// No token: forwarded anonymously; a valid access token: forwarded with identity
    /// headers; a bad one: refused as on a `token` route.
    Optional,
    /// A valid access token.
    Token,
    /// A valid fresh access token.
    Fresh,
}

/// The HTTP version the gateway speaks to a route's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS too, offering only `http/1.1` by ALPN); the default for `http://`.
    Http1,
    /// HTTP/2 with prior knowledge in clear text (what gRPC servers speak); `http://` only.
    H2c,
    /// ALPN picks `h2` or `http/1.1`; `https://` only, and its default.
    Auto,
}

impl UpstreamProtocol {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2c => "h2c",
            Self::Auto => "auto",
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Path prefix, starting with `/` and not ending in `/` (except `/` itself).
    pub prefix: String,
    /// Absolute http(s) URL of the upstream; a path in it is prepended to forwarded paths.
    /// `None` only on a route used for forward-auth decisions alone (proxied requests to it
    /// are answered 404).
    pub upstream: Option<Uri>,
    /// Token policy.
    pub auth: RouteAuth,
    /// `fresh` routes, and the `fresh_methods` of `token` routes: the token's `auth_time`
    /// must be within this age.
    pub fresh_max_age: Option<Duration>,
    /// `token` routes only: methods that need a fresh token (empty: none).
    pub fresh_methods: Vec<Method>,
    /// Roles the token must all hold.
    pub roles: Vec<String>,
    /// Allowed methods; `None` means all.
    pub methods: Option<Vec<Method>>,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// Forward the client's `Authorization` header.
    pub forward_authorization: bool,
    /// Allow WebSocket upgrades (never on `h2c` routes).
    pub websocket: bool,
    /// Connect plus the wait for the response head once the request body has been sent.
    pub timeout: Duration,
    /// The HTTP version spoken to the upstream.
    pub upstream_protocol: UpstreamProtocol,
    /// Send the client's host as `Host` instead of the upstream's authority.
    pub preserve_host: bool,
    /// A proxied body (either way) that moves no byte for this long is ended.
    pub idle_timeout: Duration,
    /// A browser refused for lack of a token is sent to the sign-in page instead.
    pub login_redirect: bool,
    /// The gateway answers preflights and adds CORS headers here (`false`: the upstream does).
    pub cors: bool,
}
