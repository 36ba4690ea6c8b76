//! The serde mirror of the TOML file: every key of docs/configuration.md, its default, no checks.
//!
//! Values that need a rule (durations, addresses, URLs, enumerations, ranges) stay strings or
//! wide integers here so that `validate.rs` can name the key and quote the value as written.
//! Every struct refuses unknown keys, so a misspelt key is an error rather than a default.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub server: RawServer,
    pub admin: RawAdmin,
    pub store: RawStore,
    pub tokens: RawTokens,
    pub auth: RawAuth,
    pub proxy: RawProxy,
    pub log: RawLog,
    pub cors: RawCors,
    pub forward_auth: RawForwardAuth,
    pub compat: RawCompat,
    pub routes: Vec<RawRoute>,
}

/// `[compat]`: what a service migrating from flask-jwt-extended keeps for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCompat {
    pub error_format: String,
    pub flask_jwt_extended: Option<RawFlaskJwtExtended>,
}

impl Default for RawCompat {
    fn default() -> Self {
        Self {
            error_format: "authgate".into(),
            flask_jwt_extended: None,
        }
    }
}

/// `[compat.flask_jwt_extended]`: both keys required when the section is present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawFlaskJwtExtended {
    pub secret_file: Option<String>,
    pub accept_until: Option<String>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub listen: String,
    pub max_body: i64,
    pub request_header_timeout: String,
    pub shutdown_grace: String,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub max_connections: i64,
    pub body_timeout: String,
    pub max_header_bytes: i64,
    pub max_headers: i64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body: 65536,
            request_header_timeout: "10s".into(),
            shutdown_grace: "30s".into(),
            tls_cert_file: None,
            tls_key_file: None,
            max_connections: 10000,
            body_timeout: "10s".into(),
            max_header_bytes: 65536,
            max_headers: 100,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAdmin {
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawStore {
    pub url: String,
    /// PostgreSQL only; `None` when the file does not set it (default 10 s).
    pub max_staleness: Option<String>,
    /// PostgreSQL only; `None` when the file does not set it (default 16).
    pub pool_size: Option<i64>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: "sqlite://data/authgate.db".into(),
            max_staleness: None,
            pool_size: None,
        }
    }
}

/// `[tokens]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTokens {
    pub algorithm: String,
    pub secret_file: String,
    pub private_key_file: Option<String>,
    pub verify_keys: Option<Vec<String>>,
    pub issuer: String,
    pub audience: Option<String>,
    pub access_ttl: String,
    pub refresh_ttl: String,
    pub leeway: String,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            algorithm: "HS256".into(),
            secret_file: "data/jwt-secret".into(),
            private_key_file: None,
            verify_keys: None,
            issuer: "authgate".into(),
            audience: None,
            access_ttl: "15m".into(),
            refresh_ttl: "30d".into(),
            leeway: "5s".into(),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAuth {
    pub prefix: String,
    pub allow_registration: bool,
    pub min_password_length: i64,
    pub refresh_rotation: bool,
    pub refresh_reuse_grace: String,
    pub argon2: RawArgon2,
    pub login_limit: RawLoginLimit,
    pub register_limit: RawRegisterLimit,
    pub reserved_usernames: Vec<String>,
    pub cookies: RawCookies,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            prefix: "/auth".into(),
            allow_registration: true,
            min_password_length: 8,
            refresh_rotation: true,
            refresh_reuse_grace: "10s".into(),
            argon2: RawArgon2::default(),
            login_limit: RawLoginLimit::default(),
            register_limit: RawRegisterLimit::default(),
            reserved_usernames: ["admin", "root", "administrator", "system"]
                .map(String::from)
                .to_vec(),
            cookies: RawCookies::default(),
        }
    }
}

/// `[auth.cookies]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCookies {
    pub enabled: bool,
    pub secure: bool,
    pub same_site: String,
    pub domain: Option<String>,
    pub redirect_origins: Vec<String>,
    pub tokens_in_body: bool,
}

impl Default for RawCookies {
    fn default() -> Self {
        Self {
            enabled: false,
            secure: true,
            same_site: "Lax".into(),
            domain: None,
            redirect_origins: Vec::new(),
            tokens_in_body: true,
        }
    }
}

/// `[cors]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCors {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: String,
}

impl Default for RawCors {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: list(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
            allowed_headers: list(&[
                "Authorization",
                "Content-Type",
                "X-CSRF-TOKEN",
                "X-Request-Id",
            ]),
            expose_headers: list(&["X-Request-Id"]),
            allow_credentials: false,
            max_age: "10m".into(),
        }
    }
}

/// `[auth] argon2 = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawArgon2 {
    pub memory_kib: i64,
    pub iterations: i64,
    pub parallelism: i64,
}

impl Default for RawArgon2 {
    fn default() -> Self {
        Self {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// `[auth] register_limit = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRegisterLimit {
    pub max: i64,
    pub window: String,
}

impl Default for RawRegisterLimit {
    fn default() -> Self {
        Self {
            max: 10,
            window: "1h".into(),
        }
    }
}

/// `[auth] login_limit = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLoginLimit {
    pub max_failures: i64,
    pub user_max_failures: i64,
    pub address_max_failures: i64,
    pub window: String,
}

impl Default for RawLoginLimit {
    fn default() -> Self {
        Self {
            max_failures: 5,
            user_max_failures: 20,
            address_max_failures: 20,
            window: "15m".into(),
        }
    }
}

/// `[proxy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawProxy {
    pub timeout: String,
    pub identity_headers: RawIdentityHeaders,
    pub trusted_proxies: Vec<String>,
    pub upstream_ca_file: Option<String>,
    pub idle_timeout: String,
    pub strip_header_prefixes: Vec<String>,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            timeout: "30s".into(),
            identity_headers: RawIdentityHeaders::default(),
            trusted_proxies: Vec::new(),
            upstream_ca_file: None,
            idle_timeout: "5m".into(),
            strip_header_prefixes: vec!["X-Auth-".into()],
        }
    }
}

/// `[proxy] identity_headers = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawIdentityHeaders {
    pub user_id: String,
    pub username: String,
    pub roles: String,
    pub session_id: String,
    pub fresh: String,
}

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        Self {
            user_id: "X-Auth-User-Id".into(),
            username: "X-Auth-Username".into(),
            roles: "X-Auth-Roles".into(),
            session_id: "X-Auth-Session-Id".into(),
            fresh: "X-Auth-Fresh".into(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

/// `[forward_auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawForwardAuth {
    pub enabled: bool,
    pub source: String,
    pub allowed_peers: Vec<String>,
    pub default_auth: String,
}

impl Default for RawForwardAuth {
    fn default() -> Self {
        Self {
            enabled: false,
            source: "x-forwarded".into(),
            allowed_peers: vec!["127.0.0.1/32".into(), "::1/128".into()],
            default_auth: "token".into(),
        }
    }
}

/// One `[[routes]]` entry. `prefix`, `upstream` and `auth` are required, but optional here so
/// that their absence is reported as `routes[N].prefix` rather than as a whole-table error;
/// `timeout` and `idle_timeout` fall back to `[proxy]`, and `upstream_protocol` and
/// `websocket` have defaults that depend on other keys (the upstream's scheme, the protocol).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRoute {
    pub prefix: Option<String>,
    pub upstream: Option<String>,
    pub auth: Option<String>,
    pub fresh_max_age: Option<String>,
    pub fresh_methods: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub strip_prefix: bool,
    pub forward_authorization: bool,
    pub websocket: Option<bool>,
    pub timeout: Option<String>,
    pub upstream_protocol: Option<String>,
    pub preserve_host: bool,
    pub idle_timeout: Option<String>,
    pub login_redirect: bool,
    /// `None` means the default, `true`.
    pub cors: Option<bool>,
}

/// Reads `text` into the raw mirror; TOML syntax errors, unknown keys and wrong types become
/// a [`ConfigError`] naming the key path (`routes[2].upstream`) and toml's own message.
pub(crate) fn from_toml(file: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(file, text, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| shape_error(file, text, e))
}

fn syntax_error(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let reason = format!("is not valid TOML{}: {}", at(text, e), e.message());
    ConfigError::new(file, "", None, reason)
}

/// An unknown key or a value of the wrong type, found by serde with the key path tracked.
fn shape_error(
    file: &Path,
    text: &str,
    e: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let path = e.path().to_string();
    let key = if path == "." { String::new() } else { path };
    let inner = e.into_inner();
    let message = inner.message();
    let position = at(text, &inner);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let allowed = rest.split_once(", expected ").map_or("", |(_, a)| a);
        let allowed = allowed.strip_prefix("one of ").unwrap_or(allowed);
        let reason = format!("is an unknown key{position}; allowed keys here: {allowed}");
        return ConfigError::new(file, key, None, reason);
    }
    let value = inner
        .span()
        .and_then(|s| text.get(s))
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 80 && !v.contains('\n'))
        .map(str::to_string);
    let reason = match message.strip_prefix("invalid type: ") {
        Some(detail) => {
            let expected = detail.rsplit_once(", expected ").map_or(detail, |(_, x)| x);
            format!(
                "is the wrong type{position}: expected {}",
                plain_type(expected)
            )
        }
        None => format!("{message}{position}"),
    };
    ConfigError::new(file, key, value, reason)
}

/// serde's names for the raw types, in the words of a TOML file.
fn plain_type(expected: &str) -> &str {
    match expected {
        "i64" => "an integer",
        "a sequence" => "an array",
        "a boolean" => "a boolean (true or false)",
        x if x.starts_with("struct ") => "a table",
        x => x,
    }
}

/// ` at line L, column C` for an error with a position, empty otherwise.
fn at(text: &str, e: &toml::de::Error) -> String {
    let Some(before) = e.span().and_then(|s| text.get(..s.start)) else {
        return String::new();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" at line {line}, column {column}")
}
