//! Raw → validated: every rule of docs/configuration.md beyond TOML types.
//!
//! This is the only place a well-formed file can still be refused. Each refusal is a
//! [`ConfigError`] naming the key path, the value as written (strings quoted) and a reason that
//! says how to fix it. Key files, certificates and the secret are not read here: the modules
//! that use them do, so this stays a pure function of the text.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use ipnet::IpNet;

use super::log_level::check_log_level;
use super::raw::{
    RawAdmin, RawArgon2, RawAuth, RawCompat, RawConfig, RawCookies, RawCors, RawForwardAuth,
    RawIdentityHeaders, RawLog, RawLoginLimit, RawProxy, RawRoute, RawServer, RawStore, RawTokens,
};
use super::types::redact_url;
use super::{
    AdminConfig, Argon2Settings, AuthConfig, CompatConfig, Config, ConfigError, CookieConfig,
    CorsConfig, ErrorFormat, ForwardAuthConfig, ForwardAuthSource, IdentityHeaders,
    LegacyTokensConfig, LogConfig, LogFormat, LoginLimit, PostgresUrl, ProxyConfig, RegisterLimit,
    RouteAuth, RouteConfig, SameSite, ServerConfig, StoreConfig, StoreUrl, TlsFiles,
    TokenAlgorithm, TokensConfig, UpstreamProtocol,
};
use crate::origin::Origin;

/// Longest accepted duration: longer ones are typos, and would overflow `Instant` arithmetic.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Bounds of `server.max_header_bytes`: below 1 KiB ordinary requests fail; above 1 MiB one
/// pending request head could hold that much memory per connection (HTTP/2 decodes up to four
/// times the advertised limit before giving up on a connection).
const MIN_HEADER_BYTES: i64 = 1024;
const MAX_HEADER_BYTES: i64 = 1024 * 1024;

/// Upper bound of `server.max_headers`: the HTTP/1 parser allocates room for twice this many
/// fields for every request.
const MAX_HEADERS: i64 = 1000;

/// Upper bound of `min_password_length`: passwords are limited to 1024 bytes.
const MAX_PASSWORD_LENGTH: i64 = 1024;

/// More connections per replica than PostgreSQL's default `max_connections` is a typo.
const MAX_POOL_SIZE: i64 = 1000;

/// Headers the gateway sets, strips or relies on itself; an identity header must not be one.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "content-type",
    "forwarded",
    "x-request-id",
    // hop-by-hop (RFC 9110 §7.6.1 and the legacy ones proxies still remove)
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a zero duration is meaningful for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zero {
    Allowed,
    Refused,
}

/// Turns the raw mirror into a [`Config`], or names the first key that breaks a rule.
pub(crate) fn validate(file: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let c = Checker { file };
    let server = c.server(raw.server)?;
    let admin = c.admin(raw.admin, &server)?;
    let store = c.store(raw.store)?;
    let tokens = c.tokens(raw.tokens)?;
    let auth = c.auth(raw.auth)?;
    let proxy = c.proxy(raw.proxy)?;
    let log = c.log(raw.log)?;
    let cors = c.cors(raw.cors)?;
    let forward_auth = c.forward_auth(raw.forward_auth)?;
    let compat = c.compat(raw.compat)?;
    let routes = c.routes(raw.routes, &auth, &proxy, &forward_auth)?;
    Ok(Config {
        source: file.to_path_buf(),
        server,
        admin,
        store,
        tokens,
        auth,
        proxy,
        log,
        cors,
        forward_auth,
        compat,
        routes,
    })
}

/// The rules, with the file name every error carries.
struct Checker<'a> {
    file: &'a Path,
}

impl Checker<'_> {
    fn err(&self, key: &str, value: Option<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, key, value, reason)
    }

    /// An error about a string value, quoted as written.
    fn bad(&self, key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
        self.err(key, Some(format!("{value:?}")), reason)
    }

    /// An error about a URL value, quoted with any user information (`user:password@`)
    /// replaced by `***@`: a password in a URL must not reach a terminal or a log.
    fn bad_url(&self, key: &str, url: &str, reason: impl Into<String>) -> ConfigError {
        self.err(key, Some(format!("{:?}", redact_url(url))), reason)
    }

    /// An error about a key that must be present but is not.
    fn missing(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        self.err(key, None, reason)
    }

    fn duration(&self, key: &str, text: &str, zero: Zero) -> Result<Duration, ConfigError> {
        let d = humantime::parse_duration(text).map_err(|e| {
            self.bad(
                key,
                text,
                format!(
                    "is not a duration ({e}); write a number and a unit, \
                     like \"30s\", \"15m\", \"12h\" or \"30d\""
                ),
            )
        })?;
        if d.is_zero() && zero == Zero::Refused {
            return Err(self.bad(key, text, "must be longer than zero"));
        }
        if d > MAX_DURATION {
            return Err(self.bad(key, text, "is longer than 100 years; surely a typo"));
        }
        Ok(d)
    }

    /// A file path: anything but empty (files are read by the modules that use them).
    fn path(&self, key: &str, text: &str) -> Result<PathBuf, ConfigError> {
        if text.is_empty() {
            return Err(self.bad(key, text, "is empty; give a file path or remove the key"));
        }
        Ok(PathBuf::from(text))
    }

    /// An integer within `min..=max`.
    fn int(&self, key: &str, n: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
        if (min..=max).contains(&n) {
            return Ok(n);
        }
        let reason = if max == i64::MAX {
            format!("must be at least {min}")
        } else {
            format!("must be between {min} and {max}")
        };
        Err(self.err(key, Some(n.to_string()), reason))
    }

    fn usize(&self, key: &str, n: i64, min: i64, max: i64) -> Result<usize, ConfigError> {
        let n = self.int(key, n, min, max)?;
        usize::try_from(n)
            .map_err(|_| self.err(key, Some(n.to_string()), "is too large for this machine"))
    }

    fn u32(&self, key: &str, n: i64, min: i64) -> Result<u32, ConfigError> {
        let n = self.int(key, n, min, i64::from(u32::MAX))?;
        u32::try_from(n).map_err(|_| self.err(key, Some(n.to_string()), "is too large"))
    }

    fn socket_addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.parse().map_err(|e| {
            self.bad(
                key,
                text,
                format!(
                    "is not an IP:port address ({e}); write e.g. \"127.0.0.1:8080\" or \
                     \"[::1]:8080\" (host names are not resolved)"
                ),
            )
        })
    }

    fn server(&self, raw: RawServer) -> Result<ServerConfig, ConfigError> {
        let tls = match (raw.tls_cert_file, raw.tls_key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.missing(
                    "server.tls_key_file",
                    "is missing: server.tls_cert_file is set, and TLS needs both files",
                ))
            }
            (None, Some(_)) => {
                return Err(self.missing(
                    "server.tls_cert_file",
                    "is missing: server.tls_key_file is set, and TLS needs both files",
                ))
            }
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert_file: self.path("server.tls_cert_file", &cert)?,
                key_file: self.path("server.tls_key_file", &key)?,
            }),
        };
        Ok(ServerConfig {
            listen: self.socket_addr("server.listen", &raw.listen)?,
            max_body: self.usize("server.max_body", raw.max_body, 1, i64::MAX)?,
            request_header_timeout: self.duration(
                "server.request_header_timeout",
                &raw.request_header_timeout,
                Zero::Refused,
            )?,
            shutdown_grace: self.duration(
                "server.shutdown_grace",
                &raw.shutdown_grace,
                Zero::Allowed,
            )?,
            tls,
            max_connections: self.usize(
                "server.max_connections",
                raw.max_connections,
                1,
                i64::MAX,
            )?,
            body_timeout: self.duration("server.body_timeout", &raw.body_timeout, Zero::Refused)?,
            max_header_bytes: self.usize(
                "server.max_header_bytes",
                raw.max_header_bytes,
                MIN_HEADER_BYTES,
                MAX_HEADER_BYTES,
            )?,
            max_headers: self.usize("server.max_headers", raw.max_headers, 1, MAX_HEADERS)?,
        })
    }

    fn admin(&self, raw: RawAdmin, server: &ServerConfig) -> Result<AdminConfig, ConfigError> {
        if raw.listen.is_empty() {
            return Ok(AdminConfig { listen: None });
        }
        let listen = self.socket_addr("admin.listen", &raw.listen)?;
        // Port 0 picks a free port, so two port-0 listeners never collide.
        if listen == server.listen && listen.port() != 0 {
            return Err(self.bad(
                "admin.listen",
                &raw.listen,
                "is the same address as server.listen; the admin listener needs its own \
                 (or \"\" to switch it off)",
            ));
        }
        Ok(AdminConfig {
            listen: Some(listen),
        })
    }

    fn store(&self, raw: RawStore) -> Result<StoreConfig, ConfigError> {
        let url = self.store_url(&raw.url)?;
        let defaults = StoreConfig::with_url(url.clone());
        let postgres = matches!(url, StoreUrl::Postgres(_));
        let only_postgres = |key: &str, value: String| {
            self.err(
                key,
                Some(value),
                "applies only to a postgres:// store (several replicas); remove it for SQLite",
            )
        };
        let max_staleness = match &raw.max_staleness {
            None => defaults.max_staleness,
            Some(text) if !postgres => {
                return Err(only_postgres("store.max_staleness", format!("{text:?}")))
            }
            Some(text) => self.duration("store.max_staleness", text, Zero::Refused)?,
        };
        let pool_size = match raw.pool_size {
            None => defaults.pool_size,
            Some(n) if !postgres => return Err(only_postgres("store.pool_size", n.to_string())),
            Some(n) => usize::try_from(self.int("store.pool_size", n, 1, MAX_POOL_SIZE)?)
                .unwrap_or(defaults.pool_size),
        };
        Ok(StoreConfig {
            url,
            max_staleness,
            pool_size,
        })
    }

    /// `sqlite://` followed by the path itself: a URL parser would make `data` of
    /// `sqlite://data/authgate.db` a host name. `postgres://` is checked as a connection
    /// string, offline: nothing connects here.
    fn store_url(&self, url: &str) -> Result<StoreUrl, ConfigError> {
        const KEY: &str = "store.url";
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {}
            "postgres" | "postgresql" => return self.postgres_url(url),
            _ => {
                return Err(self.bad_url(
                    KEY,
                    url,
                    "is not a supported store URL; use sqlite://REL/PATH (relative to the \
                     working directory), sqlite:///ABS/PATH (absolute) or \
                     postgres://USER@HOST/DATABASE",
                ))
            }
        }
        if rest.is_empty() || rest.ends_with('/') {
            return Err(self.bad_url(
                KEY,
                url,
                "names no database file; write sqlite://REL/PATH or sqlite:///ABS/PATH",
            ));
        }
        if rest.contains(['?', '#']) {
            return Err(self.bad_url(
                KEY,
                url,
                "holds \"?\" or \"#\"; SQLite URL options are not supported, give only the path",
            ));
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(rest)))
    }

    /// A PostgreSQL URL that tokio-postgres parses, names a host and a database, and asks for
    /// no TLS this build cannot give (connections are plain: loopback or a private network).
    fn postgres_url(&self, url: &str) -> Result<StoreUrl, ConfigError> {
        const KEY: &str = "store.url";
        let parsed: tokio_postgres::Config = url.parse().map_err(|e| {
            self.bad_url(
                KEY,
                url,
                format!(
                    "is not a PostgreSQL URL ({e}); write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
                ),
            )
        })?;
        if parsed.get_hosts().is_empty() {
            return Err(self.bad_url(
                KEY,
                url,
                "names no host; write postgres://USER@HOST[:PORT]/DATABASE",
            ));
        }
        if parsed.get_dbname().is_none_or(str::is_empty) {
            return Err(self.bad_url(
                KEY,
                url,
                "names no database; write postgres://USER@HOST[:PORT]/DATABASE",
            ));
        }
        if parsed.get_user().is_none_or(str::is_empty) {
            return Err(self.bad_url(
                KEY,
                url,
                "names no user; write postgres://USER@HOST[:PORT]/DATABASE",
            ));
        }
        if parsed.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(self.bad_url(
                KEY,
                url,
                "asks for TLS (sslmode=require), which this build does not speak to PostgreSQL; \
                 connect over loopback or a private network with sslmode=disable or prefer",
            ));
        }
        Ok(StoreUrl::Postgres(PostgresUrl::new(url.to_owned())))
    }

    fn tokens(&self, raw: RawTokens) -> Result<TokensConfig, ConfigError> {
        let algorithm = self.algorithm(&raw.algorithm)?;
        let private_key_file = self.key_material(algorithm, &raw)?;
        let verify_keys = raw
            .verify_keys
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, k)| self.path(&format!("tokens.verify_keys[{i}]"), k))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.issuer.is_empty() {
            return Err(self.bad(
                "tokens.issuer",
                &raw.issuer,
                "must not be empty: it is the iss claim of every token",
            ));
        }
        if raw.audience.as_deref() == Some("") {
            return Err(self.bad(
                "tokens.audience",
                "",
                "must not be empty; remove the key for tokens without an audience",
            ));
        }
        let access_ttl = self.duration("tokens.access_ttl", &raw.access_ttl, Zero::Refused)?;
        let refresh_ttl = self.duration("tokens.refresh_ttl", &raw.refresh_ttl, Zero::Refused)?;
        if access_ttl >= refresh_ttl {
            return Err(self.bad(
                "tokens.access_ttl",
                &raw.access_ttl,
                format!(
                    "must be shorter than tokens.refresh_ttl ({:?})",
                    raw.refresh_ttl
                ),
            ));
        }
        Ok(TokensConfig {
            algorithm,
            secret_file: self.path("tokens.secret_file", &raw.secret_file)?,
            private_key_file,
            verify_keys,
            issuer: raw.issuer,
            audience: raw.audience,
            access_ttl,
            refresh_ttl,
            leeway: self.duration("tokens.leeway", &raw.leeway, Zero::Allowed)?,
        })
    }

    fn algorithm(&self, text: &str) -> Result<TokenAlgorithm, ConfigError> {
        match text {
            "HS256" => Ok(TokenAlgorithm::Hs256),
            "EdDSA" => Ok(TokenAlgorithm::EdDsa),
            "ES256" => Ok(TokenAlgorithm::Es256),
            "RS256" => Ok(TokenAlgorithm::Rs256),
            _ => Err(self.bad(
                "tokens.algorithm",
                text,
                "is not a supported algorithm; use one of \"HS256\", \"EdDSA\", \"ES256\", \
                 \"RS256\", spelt exactly so",
            )),
        }
    }

    /// The private key an asymmetric algorithm needs, refused for HS256 (which would ignore
    /// it silently), and `verify_keys` refused for HS256 alike.
    fn key_material(
        &self,
        algorithm: TokenAlgorithm,
        raw: &RawTokens,
    ) -> Result<Option<PathBuf>, ConfigError> {
        const KEY: &str = "tokens.private_key_file";
        let name = algorithm.as_str();
        if !algorithm.is_asymmetric() {
            if let Some(file) = &raw.private_key_file {
                return Err(self.bad(
                    KEY,
                    file,
                    format!(
                        "is set, but algorithm {name:?} signs with tokens.secret_file; remove it \
                         or choose \"EdDSA\", \"ES256\" or \"RS256\""
                    ),
                ));
            }
            if let Some(keys) = raw.verify_keys.as_ref().filter(|k| !k.is_empty()) {
                return Err(self.err(
                    "tokens.verify_keys",
                    Some(format!("{keys:?}")),
                    format!(
                        "only apply to asymmetric algorithms, and algorithm is {name:?}; \
                         remove the key"
                    ),
                ));
            }
            return Ok(None);
        }
        match &raw.private_key_file {
            Some(file) => self.path(KEY, file).map(Some),
            None => Err(self.missing(
                KEY,
                format!("is required: algorithm {name:?} signs with a private key file (PEM)"),
            )),
        }
    }

    fn auth(&self, raw: RawAuth) -> Result<AuthConfig, ConfigError> {
        if let Some(problem) = prefix_problem(&raw.prefix, false) {
            return Err(self.bad("auth.prefix", &raw.prefix, problem));
        }
        let min_password_length = self.usize(
            "auth.min_password_length",
            raw.min_password_length,
            1,
            MAX_PASSWORD_LENGTH,
        )?;
        Ok(AuthConfig {
            prefix: raw.prefix,
            allow_registration: raw.allow_registration,
            min_password_length,
            refresh_rotation: raw.refresh_rotation,
            // Zero is meaningful: no grace, every late reuse of a rotated token counts.
            refresh_reuse_grace: self.duration(
                "auth.refresh_reuse_grace",
                &raw.refresh_reuse_grace,
                Zero::Allowed,
            )?,
            argon2: self.argon2(&raw.argon2)?,
            login_limit: self.login_limit(&raw.login_limit)?,
            register_limit: RegisterLimit {
                max: self.u32("auth.register_limit.max", raw.register_limit.max, 1)?,
                window: self.duration(
                    "auth.register_limit.window",
                    &raw.register_limit.window,
                    Zero::Refused,
                )?,
            },
            reserved_usernames: self.reserved_usernames(&raw.reserved_usernames)?,
            cookies: self.cookies(raw.cookies)?,
        })
    }

    fn cookies(&self, raw: RawCookies) -> Result<CookieConfig, ConfigError> {
        let same_site = match raw.same_site.as_str() {
            "Strict" => SameSite::Strict,
            "Lax" => SameSite::Lax,
            "None" => SameSite::None,
            other => {
                return Err(self.bad(
                    "auth.cookies.same_site",
                    other,
                    "is not a SameSite value; use \"Strict\", \"Lax\" or \"None\"",
                ))
            }
        };
        if same_site == SameSite::None && !raw.secure {
            return Err(self.bad(
                "auth.cookies.same_site",
                &raw.same_site,
                "needs secure = true: browsers drop SameSite=None cookies without Secure",
            ));
        }
        if let Some(domain) = &raw.domain {
            let valid = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid {
                return Err(self.bad(
                    "auth.cookies.domain",
                    domain,
                    "is not a domain name (letters, digits, \".\" and \"-\"), like \"example.com\"",
                ));
            }
        }
        let redirect_origins = raw
            .redirect_origins
            .iter()
            .enumerate()
            .map(|(i, o)| self.origin(&format!("auth.cookies.redirect_origins[{i}]"), o))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CookieConfig {
            enabled: raw.enabled,
            secure: raw.secure,
            same_site,
            domain: raw.domain,
            redirect_origins,
            tokens_in_body: raw.tokens_in_body,
        })
    }

    /// One origin, `scheme://host[:port]` exactly as a browser's `Origin` header spells it.
    fn origin(&self, key: &str, text: &str) -> Result<Origin, ConfigError> {
        if text == "null" {
            return Err(self.bad(
                key,
                text,
                "is refused: \"null\" is the origin of sandboxed frames, files and \
                 redirects, which any site can produce",
            ));
        }
        Origin::parse(text).ok_or_else(|| {
            self.bad(
                key,
                text,
                "is not an origin; write scheme, host and optional port only, like \
                 \"https://app.example.com\" or \"http://localhost:3000\" (no path, no \"/\" at the end)",
            )
        })
    }

    fn cors(&self, raw: RawCors) -> Result<CorsConfig, ConfigError> {
        let mut any_origin = false;
        let mut allowed_origins = Vec::with_capacity(raw.allowed_origins.len());
        for (i, text) in raw.allowed_origins.iter().enumerate() {
            let key = format!("cors.allowed_origins[{i}]");
            if text == "*" {
                if raw.allow_credentials {
                    return Err(self.bad(
                        &key,
                        text,
                        "cannot be combined with cors.allow_credentials = true: any site could \
                         then act with the user's cookies; list the origins instead",
                    ));
                }
                any_origin = true;
            } else {
                allowed_origins.push(self.origin(&key, text)?);
            }
        }
        let allowed_methods = raw
            .allowed_methods
            .iter()
            .enumerate()
            .map(|(i, m)| self.method(&format!("cors.allowed_methods[{i}]"), m))
            .collect::<Result<Vec<_>, _>>()?;
        let header_names = |field: &str, names: &[String]| {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                        self.bad(
                            &format!("cors.{field}[{i}]"),
                            n,
                            "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(CorsConfig {
            any_origin,
            allowed_origins,
            allowed_methods,
            allowed_headers: header_names("allowed_headers", &raw.allowed_headers)?,
            expose_headers: header_names("expose_headers", &raw.expose_headers)?,
            allow_credentials: raw.allow_credentials,
            max_age: self.duration("cors.max_age", &raw.max_age, Zero::Allowed)?,
        })
    }

    /// An uppercase HTTP method name.
    fn method(&self, key: &str, text: &str) -> Result<Method, ConfigError> {
        let method = Method::from_bytes(text.as_bytes())
            .map_err(|_| self.bad(key, text, "is not an HTTP method name"))?;
        let upper = text.to_ascii_uppercase();
        if *text != upper {
            return Err(self.bad(
                key,
                text,
                format!("must be uppercase: methods match exactly, so write {upper:?}"),
            ));
        }
        Ok(method)
    }

    fn argon2(&self, raw: &RawArgon2) -> Result<Argon2Settings, ConfigError> {
        let settings = Argon2Settings {
            memory_kib: self.u32("auth.argon2.memory_kib", raw.memory_kib, 0)?,
            iterations: self.u32("auth.argon2.iterations", raw.iterations, 0)?,
            parallelism: self.u32("auth.argon2.parallelism", raw.parallelism, 0)?,
        };
        let Argon2Settings {
            memory_kib: m,
            iterations: t,
            parallelism: p,
        } = settings;
        argon2::Params::new(m, t, p, None).map_err(|e| {
            self.err(
                "auth.argon2",
                Some(format!(
                    "{{ memory_kib = {m}, iterations = {t}, parallelism = {p} }}"
                )),
                format!(
                    "is refused by the argon2 crate: {e} (the OWASP minimum is \
                     memory_kib = 19456, iterations = 2, parallelism = 1)"
                ),
            )
        })?;
        Ok(settings)
    }

    fn login_limit(&self, raw: &RawLoginLimit) -> Result<LoginLimit, ConfigError> {
        Ok(LoginLimit {
            max_failures: self.u32("auth.login_limit.max_failures", raw.max_failures, 1)?,
            user_max_failures: self.u32(
                "auth.login_limit.user_max_failures",
                raw.user_max_failures,
                1,
            )?,
            address_max_failures: self.u32(
                "auth.login_limit.address_max_failures",
                raw.address_max_failures,
                1,
            )?,
            window: self.duration("auth.login_limit.window", &raw.window, Zero::Refused)?,
        })
    }

    fn reserved_usernames(&self, raw: &[String]) -> Result<Vec<String>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(i, name)| {
                if name.is_empty() {
                    return Err(self.bad(
                        &format!("auth.reserved_usernames[{i}]"),
                        name,
                        "is empty; list usernames to refuse at registration",
                    ));
                }
                Ok(name.to_lowercase())
            })
            .collect()
    }

    fn strip_header_prefixes(&self, raw: &[String]) -> Result<Vec<String>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(i, prefix)| {
                // A prefix is the start of a header name: a non-empty run of name characters.
                if HeaderName::from_bytes(prefix.as_bytes()).is_err() {
                    return Err(self.bad(
                        &format!("proxy.strip_header_prefixes[{i}]"),
                        prefix,
                        "is not the start of a header name (letters, digits and \
                         !#$%&'*+-.^_`|~ only, at least one)",
                    ));
                }
                // A family that takes a header the gateway relies on would break requests
                // (framing, host, credentials, the client's request id, forwarding).
                let folded = loose_spelling(prefix);
                let covered = RESERVED_HEADERS
                    .iter()
                    .chain(&["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"])
                    .find(|name| name.starts_with(folded.as_str()));
                if let Some(name) = covered {
                    return Err(self.bad(
                        &format!("proxy.strip_header_prefixes[{i}]"),
                        prefix,
                        format!(
                            "would strip {name}, a header the gateway reads or forwards \
                             itself; use a narrower prefix like \"X-Auth-\""
                        ),
                    ));
                }
                Ok(prefix.to_ascii_lowercase())
            })
            .collect()
    }

    fn proxy(&self, raw: RawProxy) -> Result<ProxyConfig, ConfigError> {
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, t)| self.ip_net(&format!("proxy.trusted_proxies[{i}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        let upstream_ca_file = match &raw.upstream_ca_file {
            Some(f) => Some(self.path("proxy.upstream_ca_file", f)?),
            None => None,
        };
        Ok(ProxyConfig {
            timeout: self.duration("proxy.timeout", &raw.timeout, Zero::Refused)?,
            identity_headers: self.identity_headers(&raw.identity_headers)?,
            trusted_proxies,
            upstream_ca_file,
            idle_timeout: self.duration("proxy.idle_timeout", &raw.idle_timeout, Zero::Refused)?,
            strip_header_prefixes: self.strip_header_prefixes(&raw.strip_header_prefixes)?,
        })
    }

    fn ip_net(&self, key: &str, text: &str) -> Result<IpNet, ConfigError> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(net);
        }
        text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            self.bad(
                key,
                text,
                "is not an IP network; write a CIDR like \"10.0.0.0/8\" or a bare address",
            )
        })
    }

    fn identity_headers(&self, raw: &RawIdentityHeaders) -> Result<IdentityHeaders, ConfigError> {
        let headers = IdentityHeaders {
            user_id: self.identity_header("user_id", &raw.user_id)?,
            username: self.identity_header("username", &raw.username)?,
            roles: self.identity_header("roles", &raw.roles)?,
            session_id: self.identity_header("session_id", &raw.session_id)?,
            fresh: self.identity_header("fresh", &raw.fresh)?,
        };
        let fields = [
            ("user_id", &raw.user_id, &headers.user_id),
            ("username", &raw.username, &headers.username),
            ("roles", &raw.roles, &headers.roles),
            ("session_id", &raw.session_id, &headers.session_id),
            ("fresh", &raw.fresh, &headers.fresh),
        ];
        // Client copies are stripped under `_`/`-` spellings too, so those collide as well.
        for (i, (field, text, name)) in fields.iter().enumerate() {
            let earlier = fields[..i]
                .iter()
                .find(|(_, _, n)| loose_spelling(n.as_str()) == loose_spelling(name.as_str()));
            if let Some((other, _, _)) = earlier {
                return Err(self.bad(
                    &format!("proxy.identity_headers.{field}"),
                    text,
                    format!(
                        "is the same header as proxy.identity_headers.{other}; \
                         the five identity headers must differ"
                    ),
                ));
            }
        }
        Ok(headers)
    }

    fn identity_header(&self, field: &str, text: &str) -> Result<HeaderName, ConfigError> {
        let key = &format!("proxy.identity_headers.{field}");
        let name = HeaderName::from_bytes(text.as_bytes()).map_err(|_| {
            self.bad(
                key,
                text,
                "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)",
            )
        })?;
        let spelling = loose_spelling(name.as_str());
        if spelling.starts_with("x-forwarded-") || RESERVED_HEADERS.contains(&spelling.as_str()) {
            return Err(self.bad(
                key,
                text,
                "is a header the gateway sets, strips or forwards itself (hop-by-hop, \
                 forwarding, credentials or framing); choose another, like \"X-Auth-...\"",
            ));
        }
        Ok(name)
    }

    fn log(&self, raw: RawLog) -> Result<LogConfig, ConfigError> {
        let format = match raw.format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            _ => {
                return Err(self.bad(
                    "log.format",
                    &raw.format,
                    "is not a log format; use \"pretty\" or \"json\"",
                ))
            }
        };
        let level =
            check_log_level(&raw.level).map_err(|e| self.bad("log.level", &raw.level, e))?;
        Ok(LogConfig { format, level })
    }

    fn compat(&self, raw: RawCompat) -> Result<CompatConfig, ConfigError> {
        let error_format = match raw.error_format.as_str() {
            "authgate" => ErrorFormat::Authgate,
            "flask-jwt-extended" => ErrorFormat::FlaskJwtExtended,
            other => {
                return Err(self.bad(
                    "compat.error_format",
                    other,
                    "is not an error format; use \"authgate\" or \"flask-jwt-extended\"",
                ))
            }
        };
        let flask_jwt_extended = match raw.flask_jwt_extended {
            None => None,
            Some(legacy) => {
                let key = "compat.flask_jwt_extended.secret_file";
                let Some(secret_file) = legacy.secret_file else {
                    return Err(self.missing(
                        key,
                        "is required: the file holding the Flask app's JWT_SECRET_KEY",
                    ));
                };
                let key = "compat.flask_jwt_extended.accept_until";
                let Some(until) = legacy.accept_until else {
                    return Err(self.missing(
                        key,
                        "is required: the RFC 3339 time after which legacy tokens are refused, \
                         like \"2027-06-30T00:00:00Z\"",
                    ));
                };
                let accept_until = humantime::parse_rfc3339(&until)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .and_then(|d| i64::try_from(d.as_secs()).ok())
                    .ok_or_else(|| {
                        self.bad(
                            key,
                            &until,
                            "is not an RFC 3339 time in UTC; write it like \
                             \"2027-06-30T00:00:00Z\"",
                        )
                    })?;
                Some(LegacyTokensConfig {
                    secret_file: self
                        .path("compat.flask_jwt_extended.secret_file", &secret_file)?,
                    accept_until,
                })
            }
        };
        Ok(CompatConfig {
            error_format,
            flask_jwt_extended,
        })
    }

    fn forward_auth(&self, raw: RawForwardAuth) -> Result<ForwardAuthConfig, ConfigError> {
        let source = match raw.source.as_str() {
            "x-forwarded" => ForwardAuthSource::XForwarded,
            "x-original" => ForwardAuthSource::XOriginal,
            "path" => ForwardAuthSource::Path,
            other => {
                return Err(self.bad(
                    "forward_auth.source",
                    other,
                    "is not a forward-auth source; use \"x-forwarded\" (Traefik, Caddy), \
                     \"x-original\" (nginx) or \"path\" (Envoy ext_authz)",
                ))
            }
        };
        let allowed_peers = raw
            .allowed_peers
            .iter()
            .enumerate()
            .map(|(i, p)| self.ip_net(&format!("forward_auth.allowed_peers[{i}]"), p))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.enabled && allowed_peers.is_empty() {
            return Err(self.err(
                "forward_auth.allowed_peers",
                Some("[]".into()),
                "is empty, so no proxy may ask for a decision; list your front proxies' \
                 addresses, like [\"127.0.0.1/32\"]",
            ));
        }
        let default_auth = self.route_auth("forward_auth.default_auth", Some(&raw.default_auth))?;
        Ok(ForwardAuthConfig {
            enabled: raw.enabled,
            source,
            allowed_peers,
            default_auth,
        })
    }

    fn routes(
        &self,
        raw: Vec<RawRoute>,
        auth: &AuthConfig,
        proxy: &ProxyConfig,
        forward_auth: &ForwardAuthConfig,
    ) -> Result<Vec<RouteConfig>, ConfigError> {
        let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let route = self.route(i, r, auth, proxy, forward_auth)?;
            if let Some(j) = routes.iter().position(|o| o.prefix == route.prefix) {
                return Err(self.bad(
                    &format!("routes[{i}].prefix"),
                    &route.prefix,
                    format!("duplicates routes[{j}].prefix; each prefix may appear once"),
                ));
            }
            routes.push(route);
        }
        Ok(routes)
    }

    fn route(
        &self,
        i: usize,
        raw: RawRoute,
        auth: &AuthConfig,
        proxy: &ProxyConfig,
        forward_auth: &ForwardAuthConfig,
    ) -> Result<RouteConfig, ConfigError> {
        let key = |k: &str| format!("routes[{i}].{k}");
        let prefix = self.route_prefix(&key("prefix"), raw.prefix.clone(), &auth.prefix)?;
        let upstream = match &raw.upstream {
            Some(u) => Some(self.upstream(&key("upstream"), u)?),
            None if forward_auth.enabled => {
                self.no_forwarding_keys(i, &raw)?;
                None
            }
            None => {
                return Err(self.missing(
                    &key("upstream"),
                    "is required: the http(s) URL requests are forwarded to, like \
                     \"http://127.0.0.1:9000\"; only with [forward_auth] enabled = true may a \
                     route that serves forward-auth decisions alone leave it out",
                ))
            }
        };
        let upstream_protocol = match &upstream {
            Some(upstream) => self.upstream_protocol(
                &key("upstream_protocol"),
                raw.upstream_protocol.as_deref(),
                upstream,
            )?,
            // Never used: nothing is forwarded on a decision-only route.
            None => UpstreamProtocol::Http1,
        };
        let websocket = match raw.websocket {
            Some(true) if upstream_protocol == UpstreamProtocol::H2c => {
                return Err(self.err(
                    &key("websocket"),
                    Some("true".into()),
                    "cannot be true with upstream_protocol = \"h2c\": WebSocket upgrades \
                     travel over HTTP/1.1 only; remove it (h2c routes default to false)",
                ))
            }
            Some(w) => w,
            None => upstream_protocol != UpstreamProtocol::H2c,
        };
        let route_auth = self.route_auth(&key("auth"), raw.auth.as_deref())?;
        let methods = match &raw.methods {
            Some(m) => Some(self.methods(
                &key("methods"),
                m,
                "is empty, which would refuse every request; remove the key to allow all methods",
            )?),
            None => None,
        };
        let fresh_methods = self.fresh_methods(
            i,
            raw.fresh_methods.as_deref(),
            route_auth,
            methods.as_deref(),
        )?;
        let fresh_max_age =
            self.fresh_max_age(i, raw.fresh_max_age.as_deref(), route_auth, &fresh_methods)?;
        let roles = self.roles(i, raw.roles.unwrap_or_default(), route_auth)?;
        let timeout = match &raw.timeout {
            Some(t) => self.duration(&key("timeout"), t, Zero::Refused)?,
            None => proxy.timeout,
        };
        let idle_timeout = match &raw.idle_timeout {
            Some(t) => self.duration(&key("idle_timeout"), t, Zero::Refused)?,
            None => proxy.idle_timeout,
        };
        if raw.login_redirect && !auth.cookies.enabled {
            return Err(self.err(
                &key("login_redirect"),
                Some("true".into()),
                "needs [auth.cookies] enabled = true: the sign-in page signs in with cookies",
            ));
        }
        Ok(RouteConfig {
            prefix,
            upstream,
            auth: route_auth,
            fresh_max_age,
            fresh_methods,
            roles,
            methods,
            strip_prefix: raw.strip_prefix,
            forward_authorization: raw.forward_authorization,
            websocket,
            timeout,
            upstream_protocol,
            preserve_host: raw.preserve_host,
            idle_timeout,
            login_redirect: raw.login_redirect,
            cors: raw.cors.unwrap_or(true),
        })
    }

    /// A route without `upstream` only serves forward-auth decisions: a key that only shapes
    /// forwarding would be silently ignored there, so it is refused.
    fn no_forwarding_keys(&self, i: usize, raw: &RawRoute) -> Result<(), ConfigError> {
        let set = [
            ("strip_prefix", raw.strip_prefix.then(|| "true".to_owned())),
            (
                "forward_authorization",
                raw.forward_authorization.then(|| "true".to_owned()),
            ),
            ("websocket", raw.websocket.map(|w| w.to_string())),
            ("timeout", raw.timeout.as_ref().map(|t| format!("{t:?}"))),
            (
                "upstream_protocol",
                raw.upstream_protocol.as_ref().map(|p| format!("{p:?}")),
            ),
            (
                "preserve_host",
                raw.preserve_host.then(|| "true".to_owned()),
            ),
            (
                "idle_timeout",
                raw.idle_timeout.as_ref().map(|t| format!("{t:?}")),
            ),
        ];
        match set.into_iter().find(|(_, value)| value.is_some()) {
            Some((name, value)) => Err(self.err(
                &format!("routes[{i}].{name}"),
                value,
                "only shapes forwarding, and this route has no upstream (it serves forward-auth \
                 decisions alone); remove it or add an upstream",
            )),
            None => Ok(()),
        }
    }

    /// `http1` (default for `http://`), `h2c` (`http://` only) or `auto` (default for
    /// `https://`, where ALPN decides; never with `http://`, which has no ALPN).
    fn upstream_protocol(
        &self,
        key: &str,
        text: Option<&str>,
        upstream: &Uri,
    ) -> Result<UpstreamProtocol, ConfigError> {
        let https = upstream.scheme() == Some(&http::uri::Scheme::HTTPS);
        let Some(text) = text else {
            return Ok(if https {
                UpstreamProtocol::Auto
            } else {
                UpstreamProtocol::Http1
            });
        };
        let protocol = match text {
            "http1" => UpstreamProtocol::Http1,
            "h2c" => UpstreamProtocol::H2c,
            "auto" => UpstreamProtocol::Auto,
            _ => {
                return Err(self.bad(
                    key,
                    text,
                    "is not an upstream protocol; use \"http1\", \"h2c\" or \"auto\"",
                ))
            }
        };
        match (protocol, https) {
            (UpstreamProtocol::Auto, false) => Err(self.bad(
                key,
                text,
                "needs an https:// upstream: ALPN, which picks the version, is part of TLS; \
                 use \"h2c\" for HTTP/2 in clear text or \"http1\"",
            )),
            (UpstreamProtocol::H2c, true) => Err(self.bad(
                key,
                text,
                "needs an http:// upstream (h2c is HTTP/2 in clear text); over https use \
                 \"auto\", where ALPN picks h2",
            )),
            _ => Ok(protocol),
        }
    }

    /// `fresh_methods`: `token` routes only, methods spelt as in `methods`, and each one a
    /// method the route's `methods` allows.
    fn fresh_methods(
        &self,
        i: usize,
        texts: Option<&[String]>,
        route_auth: RouteAuth,
        allowed: Option<&[Method]>,
    ) -> Result<Vec<Method>, ConfigError> {
        let key = format!("routes[{i}].fresh_methods");
        let Some(texts) = texts else {
            return Ok(Vec::new());
        };
        if route_auth != RouteAuth::Token {
            return Err(self.err(
                &key,
                Some(format!("{texts:?}")),
                format!(
                    "only applies to auth = \"token\", and this route's auth is {:?}; \
                     use auth = \"token\" or remove it",
                    route_auth_name(route_auth)
                ),
            ));
        }
        let methods = self.methods(
            &key,
            texts,
            "is empty, which asks nothing; list the methods that need a fresh token, or \
             remove the key",
        )?;
        if let Some(allowed) = allowed {
            for (k, method) in methods.iter().enumerate() {
                if !allowed.contains(method) {
                    return Err(self.bad(
                        &format!("{key}[{k}]"),
                        method.as_str(),
                        format!(
                            "is not in routes[{i}].methods, so no request could ever need it; \
                             add it there or remove it here"
                        ),
                    ));
                }
            }
        }
        Ok(methods)
    }

    /// `fresh_max_age`: with `auth = "fresh"`, or with `fresh_methods` on a `token` route.
    fn fresh_max_age(
        &self,
        i: usize,
        age: Option<&str>,
        route_auth: RouteAuth,
        fresh_methods: &[Method],
    ) -> Result<Option<Duration>, ConfigError> {
        let key = format!("routes[{i}].fresh_max_age");
        let Some(age) = age else {
            return Ok(None);
        };
        let applies = route_auth == RouteAuth::Fresh
            || (route_auth == RouteAuth::Token && !fresh_methods.is_empty());
        if !applies {
            return Err(self.bad(
                &key,
                age,
                "only applies to auth = \"fresh\" or to a token route's fresh_methods; \
                 set one of them or remove it",
            ));
        }
        self.duration(&key, age, Zero::Refused).map(Some)
    }

    fn route_prefix(
        &self,
        key: &str,
        prefix: Option<String>,
        auth_prefix: &str,
    ) -> Result<String, ConfigError> {
        let Some(prefix) = prefix else {
            return Err(self.missing(
                key,
                "is required: the path prefix this route serves, like \"/api\"",
            ));
        };
        if let Some(problem) = prefix_problem(&prefix, true) {
            return Err(self.bad(key, &prefix, problem));
        }
        let under_auth = crate::path::under_prefix(&prefix, auth_prefix).is_some();
        if under_auth {
            return Err(self.bad(
                key,
                &prefix,
                format!(
                    "is under the auth prefix {auth_prefix:?} (auth.prefix), whose requests \
                     never reach a route; choose another prefix or move auth.prefix"
                ),
            ));
        }
        Ok(prefix)
    }

    /// An absolute http(s) URL with a host and nothing a forwarded request could not use;
    /// a trailing `/` of its path is removed so it can be prepended to request paths.
    fn upstream(&self, key: &str, text: &str) -> Result<Uri, ConfigError> {
        const EXAMPLE: &str = "write e.g. \"http://127.0.0.1:9000\"";
        if text.contains('#') {
            return Err(self.bad_url(
                key,
                text,
                "has a fragment (#...), which upstreams never see",
            ));
        }
        let uri: Uri = text.parse().map_err(|e| {
            self.bad_url(key, text, format!("is not an http(s) URL ({e}); {EXAMPLE}"))
        })?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(self.bad_url(
                key,
                text,
                format!("is not an absolute http(s) URL; {EXAMPLE}"),
            ));
        };
        if *scheme != http::uri::Scheme::HTTP && *scheme != http::uri::Scheme::HTTPS {
            return Err(self.bad_url(
                key,
                text,
                format!(
                    "has scheme {:?}; only http and https are supported",
                    scheme.as_str()
                ),
            ));
        }
        if authority.as_str().contains('@') {
            return Err(self.bad_url(
                key,
                text,
                "holds user information (user@); credentials in upstream URLs are not supported",
            ));
        }
        if authority.host().is_empty() {
            return Err(self.bad_url(key, text, format!("has no host; {EXAMPLE}")));
        }
        if uri.query().is_some() {
            return Err(self.bad_url(
                key,
                text,
                "has a query string (?...); an upstream is a base URL, the query of each \
                 request is forwarded as is",
            ));
        }
        let path = uri.path().trim_end_matches('/');
        format!("{}://{}{}", scheme.as_str(), authority.as_str(), path)
            .parse()
            .map_err(|e| self.bad(key, text, format!("is not an http(s) URL ({e}); {EXAMPLE}")))
    }

    fn route_auth(&self, key: &str, text: Option<&str>) -> Result<RouteAuth, ConfigError> {
        match text {
            Some("public") => Ok(RouteAuth::Public),
            Some("optional") => Ok(RouteAuth::Optional),
            Some("token") => Ok(RouteAuth::Token),
            Some("fresh") => Ok(RouteAuth::Fresh),
            Some(other) => Err(self.bad(
                key,
                other,
                "is not a route policy; use \"public\", \"optional\", \"token\" or \"fresh\"",
            )),
            None => Err(self.missing(
                key,
                "is required: \"public\", \"optional\", \"token\" or \"fresh\" (never a \
                 silent default)",
            )),
        }
    }

    fn roles(
        &self,
        i: usize,
        roles: Vec<String>,
        auth: RouteAuth,
    ) -> Result<Vec<String>, ConfigError> {
        if !roles.is_empty() && auth == RouteAuth::Public {
            return Err(self.err(
                &format!("routes[{i}].roles"),
                Some(format!("{roles:?}")),
                "cannot be required on a public route, which never reads tokens; \
                 use auth = \"token\" or remove roles",
            ));
        }
        if !roles.is_empty() && auth == RouteAuth::Optional {
            return Err(self.err(
                &format!("routes[{i}].roles"),
                Some(format!("{roles:?}")),
                "cannot be required on an optional route, which lets anonymous requests \
                 through; use auth = \"token\" or remove roles",
            ));
        }
        for (k, role) in roles.iter().enumerate() {
            let key = format!("routes[{i}].roles[{k}]");
            if role.is_empty() {
                return Err(self.bad(&key, role, "is empty; a role is a non-empty name"));
            }
            if role.contains(',') {
                return Err(self.bad(
                    &key,
                    role,
                    "holds \",\"; roles travel comma-separated in the roles identity header",
                ));
            }
        }
        Ok(roles)
    }

    /// A route's `methods` or `fresh_methods` (`list_key`): valid, uppercase, distinct, not
    /// empty (`empty` says why that is wrong), and never `TRACE`, which is never forwarded.
    fn methods(
        &self,
        list_key: &str,
        texts: &[String],
        empty: &str,
    ) -> Result<Vec<Method>, ConfigError> {
        if texts.is_empty() {
            return Err(self.err(list_key, Some("[]".into()), empty));
        }
        let mut methods: Vec<Method> = Vec::with_capacity(texts.len());
        for (k, text) in texts.iter().enumerate() {
            let key = format!("{list_key}[{k}]");
            let method = self.method(&key, text)?;
            if let Some(j) = methods.iter().position(|m| *m == method) {
                return Err(self.bad(
                    &key,
                    text,
                    format!("is listed twice (also {list_key}[{j}])"),
                ));
            }
            if method == Method::TRACE {
                return Err(self.bad(
                    &key,
                    text,
                    "is never forwarded: the gateway answers TRACE with 405 on every route",
                ));
            }
            methods.push(method);
        }
        Ok(methods)
    }
}

/// A route policy as spelt in the file.
fn route_auth_name(auth: RouteAuth) -> &'static str {
    match auth {
        RouteAuth::Public => "public",
        RouteAuth::Optional => "optional",
        RouteAuth::Token => "token",
        RouteAuth::Fresh => "fresh",
    }
}

/// Header-name spelling with `_` read as `-`, as the gateway's identity-header stripping does.
fn loose_spelling(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Why `prefix` cannot be a path prefix, or `None` when it can. Request paths are matched
/// after normalisation (dot segments removed, `//` collapsed, unreserved characters decoded),
/// so a prefix holding anything normalisation removes could never match.
fn prefix_problem(prefix: &str, allow_root: bool) -> Option<String> {
    if !prefix.starts_with('/') {
        return Some("must start with \"/\", like \"/api\"".into());
    }
    if prefix == "/" {
        return (!allow_root).then(|| {
            "cannot be \"/\": the account endpoints need a prefix of their own, like \"/auth\""
                .into()
        });
    }
    if prefix.ends_with('/') {
        return Some(format!(
            "must not end with \"/\" ({:?} already matches the paths under it)",
            prefix.trim_end_matches('/')
        ));
    }
    if let Some(c) = prefix.chars().find(|c| matches!(c, '?' | '#')) {
        return Some(format!(
            "holds {c:?}; a prefix is matched against the path only, never a query or fragment"
        ));
    }
    if prefix.contains('%') {
        return Some(
            "holds \"%\"; prefixes match the decoded path, so write the character itself".into(),
        );
    }
    if prefix.contains("//") {
        return Some(
            "holds \"//\"; request paths are matched with runs of \"/\" collapsed, so it could \
             never match"
                .into(),
        );
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return Some(
            "has a \".\" or \"..\" segment; request paths are matched with those removed, so it \
             could never match"
                .into(),
        );
    }
    prefix.chars().find(|c| !is_path_char(*c)).map(|c| {
        format!(
            "holds {c:?}, which a request path never holds unencoded; use letters, digits and \
             -._~!$&'()*+,;=:@"
        )
    })
}

/// RFC 3986 `pchar` without `%`, plus `/`.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/-._~!$&'()*+,;=:@".contains(c)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A route table the rule tests put their one broken value next to.
    const ROUTE: &str = "[[routes]]\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:9000\"\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        crate::config::parse(Path::new("f.toml"), text)
    }

    /// The full Display string of the error `text` produces.
    fn message(text: &str) -> String {
        parse(text)
            .expect_err("the config should be refused")
            .to_string()
    }

    /// Asserts that `text` is refused on `key` with a reason containing `fragment`.
    fn refused(text: &str, key: &str, fragment: &str) {
        let e = parse(text).expect_err("the config should be refused");
        assert_eq!(e.key, key, "wrong key in: {e}");
        assert!(e.reason.contains(fragment), "{fragment:?} not in: {e}");
    }

    fn route(extra: &str) -> String {
        format!("{ROUTE}{extra}\n")
    }

    fn only_route(text: &str) -> RouteConfig {
        let config = parse(text).expect("the config should be valid");
        assert_eq!(config.routes.len(), 1);
        config.routes.into_iter().next().expect("one route")
    }

    #[test]
    fn a_duration_that_does_not_parse_is_refused_with_an_example() {
        assert_eq!(
            message("[proxy]\ntimeout = \"30\"\n"),
            "f.toml: proxy.timeout: \"30\" is not a duration (time unit needed, for example \
             30sec or 30ms); write a number and a unit, like \"30s\", \"15m\", \"12h\" or \"30d\""
        );
    }

    #[test]
    fn zero_durations_are_refused_except_grace_and_leeway() {
        assert_eq!(
            message("[server]\nrequest_header_timeout = \"0s\"\n"),
            "f.toml: server.request_header_timeout: \"0s\" must be longer than zero"
        );
        refused(
            "[auth]\nlogin_limit = { window = \"0s\" }\n",
            "auth.login_limit.window",
            "zero",
        );
        refused(
            "[store]\nurl = \"postgres://u@h/db\"\nmax_staleness = \"0s\"\n",
            "store.max_staleness",
            "zero",
        );
        refused(
            "[tokens]\naccess_ttl = \"0s\"\n",
            "tokens.access_ttl",
            "zero",
        );
        let config = parse(
            "[server]\nshutdown_grace = \"0s\"\n[tokens]\nleeway = \"0s\"\n\
             [auth]\nrefresh_reuse_grace = \"0s\"\n",
        )
        .expect("zero grace and leeway are valid");
        assert_eq!(config.server.shutdown_grace, Duration::ZERO);
        assert_eq!(config.tokens.leeway, Duration::ZERO);
        assert_eq!(config.auth.refresh_reuse_grace, Duration::ZERO);
    }

    #[test]
    fn absurdly_long_durations_are_refused() {
        refused(
            "[proxy]\ntimeout = \"200years\"\n",
            "proxy.timeout",
            "100 years",
        );
    }

    #[test]
    fn register_limit_reserved_usernames_and_strip_prefixes_are_checked_by_key() {
        let c = parse(
            "[auth]\nregister_limit = { max = 3, window = \"10m\" }\n\
             reserved_usernames = [\"Ops\"]\n[proxy]\nstrip_header_prefixes = [\"X-Internal-\"]\n",
        )
        .expect("valid");
        assert_eq!(c.auth.register_limit.max, 3);
        assert_eq!(c.auth.register_limit.window, Duration::from_secs(600));
        assert_eq!(c.auth.reserved_usernames, ["ops"]);
        assert_eq!(c.proxy.strip_header_prefixes, ["x-internal-"]);
        let c = parse("[proxy]\nstrip_header_prefixes = []\n").expect("valid");
        assert!(c.proxy.strip_header_prefixes.is_empty());

        refused(
            "[auth]\nregister_limit = { max = 0 }\n",
            "auth.register_limit.max",
            "",
        );
        refused(
            "[auth]\nregister_limit = { window = \"0s\" }\n",
            "auth.register_limit.window",
            "",
        );
        refused(
            "[auth]\nreserved_usernames = [\"\"]\n",
            "auth.reserved_usernames[0]",
            "empty",
        );
        for (bad, why) in [
            ("X-", "x-request-id"),
            ("content", "content-length"),
            ("Host", "host"),
        ] {
            refused(
                &format!("[proxy]\nstrip_header_prefixes = [\"{bad}\"]\n"),
                "proxy.strip_header_prefixes[0]",
                why,
            );
        }
        for bad in ["", "X Auth", "X-Auth:"] {
            refused(
                &format!("[proxy]\nstrip_header_prefixes = [\"ok-\", \"{bad}\"]\n"),
                "proxy.strip_header_prefixes[1]",
                "header name",
            );
        }
    }

    #[test]
    fn a_listen_address_must_be_ip_and_port() {
        refused(
            "[server]\nlisten = \"localhost:8080\"\n",
            "server.listen",
            "IP:port",
        );
        refused("[admin]\nlisten = \"9090\"\n", "admin.listen", "IP:port");
    }

    #[test]
    fn an_empty_admin_listen_switches_the_admin_listener_off() {
        let config = parse("[admin]\nlisten = \"\"\n").expect("valid");
        assert_eq!(config.admin.listen, None);
    }

    #[test]
    fn admin_and_server_on_the_same_address_are_refused() {
        refused(
            "[server]\nlisten = \"127.0.0.1:9090\"\n",
            "admin.listen",
            "same address as server.listen",
        );
    }

    #[test]
    fn max_body_and_max_connections_must_be_positive() {
        assert_eq!(
            message("[server]\nmax_body = 0\n"),
            "f.toml: server.max_body: 0 must be at least 1"
        );
        refused(
            "[server]\nmax_connections = -3\n",
            "server.max_connections",
            "at least 1",
        );
    }

    #[test]
    fn header_limits_and_body_timeout_are_checked_with_their_bounds() {
        let c =
            parse("[server]\nmax_header_bytes = 1024\nmax_headers = 1\nbody_timeout = \"250ms\"\n")
                .expect("valid");
        assert_eq!(c.server.max_header_bytes, 1024);
        assert_eq!(c.server.max_headers, 1);
        assert_eq!(c.server.body_timeout, Duration::from_millis(250));
        assert_eq!(
            message("[server]\nmax_header_bytes = 1023\n"),
            "f.toml: server.max_header_bytes: 1023 must be between 1024 and 1048576"
        );
        refused(
            "[server]\nmax_header_bytes = 2000000\n",
            "server.max_header_bytes",
            "between 1024 and 1048576",
        );
        refused(
            "[server]\nmax_headers = 0\n",
            "server.max_headers",
            "between 1 and 1000",
        );
        refused(
            "[server]\nmax_headers = 1001\n",
            "server.max_headers",
            "between 1 and 1000",
        );
        assert_eq!(
            message("[server]\nbody_timeout = \"0s\"\n"),
            "f.toml: server.body_timeout: \"0s\" must be longer than zero"
        );
        refused(
            "[server]\nbody_timeout = \"ten\"\n",
            "server.body_timeout",
            "not a duration",
        );
    }

    #[test]
    fn tls_needs_both_files_and_names_the_missing_one() {
        assert_eq!(
            message("[server]\ntls_cert_file = \"c.pem\"\n"),
            "f.toml: server.tls_key_file: is missing: server.tls_cert_file is set, and TLS \
             needs both files"
        );
        refused(
            "[server]\ntls_key_file = \"k.pem\"\n",
            "server.tls_cert_file",
            "is missing",
        );
        let config = parse("[server]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n")
            .expect("valid");
        let tls = config.server.tls.expect("tls set");
        assert_eq!(tls.cert_file, PathBuf::from("c.pem"));
        assert_eq!(tls.key_file, PathBuf::from("k.pem"));
    }

    #[test]
    fn sqlite_urls_give_relative_and_absolute_paths() {
        let relative = parse("[store]\nurl = \"sqlite://var/db/a.db\"\n").expect("valid");
        assert_eq!(
            relative.store.url,
            StoreUrl::Sqlite(PathBuf::from("var/db/a.db"))
        );
        let absolute = parse("[store]\nurl = \"sqlite:///srv/a.db\"\n").expect("valid");
        assert_eq!(
            absolute.store.url,
            StoreUrl::Sqlite(PathBuf::from("/srv/a.db"))
        );
    }

    #[test]
    fn a_sqlite_url_without_a_path_is_refused() {
        refused(
            "[store]\nurl = \"sqlite://\"\n",
            "store.url",
            "names no database file",
        );
        refused(
            "[store]\nurl = \"sqlite:///\"\n",
            "store.url",
            "names no database file",
        );
    }

    #[test]
    fn passwords_in_urls_never_reach_the_message() {
        let m = message("[store]\nurl = \"postgres://app:s3cretPW@db/auth?sslmode=require\"\n");
        assert!(!m.contains("s3cretPW"), "{m}");
        assert!(
            m.contains("\"postgres://***@db/auth?sslmode=require\""),
            "{m}"
        );
        let m = message(
            "[[routes]]\nprefix = \"/a\"\nupstream = \"http://u:pw123@h:1/x\"\nauth = \"token\"\n",
        );
        assert!(!m.contains("pw123"), "{m}");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        let m = message(
            "[store]\nurl = \"postgres://h/db?user=u&password=qwerty99&sslmode=require\"\n",
        );
        assert!(!m.contains("qwerty99"), "{m}");
        assert!(
            m.contains("\"postgres://h/db?user=u&password=***&sslmode=require\""),
            "{m}"
        );
    }

    #[test]
    fn cookie_and_cors_rules_are_checked() {
        refused(
            "[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n",
            "cors.allowed_origins[0]",
            "allow_credentials",
        );
        refused(
            "[cors]\nallowed_origins = [\"https://a.example\", \"null\"]\n",
            "cors.allowed_origins[1]",
            "sandboxed",
        );
        refused(
            "[auth.cookies]\nredirect_origins = [\"null\"]\n",
            "auth.cookies.redirect_origins[0]",
            "sandboxed",
        );
        refused(
            "[auth.cookies]\nredirect_origins = [\"https://a.example/\"]\n",
            "auth.cookies.redirect_origins[0]",
            "is not an origin",
        );
        refused(
            "[auth.cookies]\nsecure = false\nsame_site = \"None\"\n",
            "auth.cookies.same_site",
            "secure = true",
        );
        refused(
            "[auth.cookies]\nsame_site = \"lax\"\n",
            "auth.cookies.same_site",
            "SameSite",
        );
        refused(
            &route("auth = \"token\"\nlogin_redirect = true"),
            "routes[0].login_redirect",
            "[auth.cookies] enabled = true",
        );
        refused(
            "[cors]\nallowed_methods = [\"get\"]\n",
            "cors.allowed_methods[0]",
            "uppercase",
        );
        let ok = parse(
            "[auth.cookies]\nenabled = true\n[cors]\nallowed_origins = [\"*\"]\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:9000\"\n\
             auth = \"token\"\nlogin_redirect = true\ncors = false\n",
        )
        .unwrap();
        assert!(ok.cors.any_origin && ok.cors.enabled());
        assert!(ok.routes[0].login_redirect && !ok.routes[0].cors);
        let off = parse(ROUTE).map(|c| c.cors.enabled());
        assert!(matches!(off, Err(_) | Ok(false)));
    }

    #[test]
    fn a_valid_postgres_url_never_shows_its_password() {
        let c = parse("[store]\nurl = \"postgres://app:s3cretPW@db:5433/auth\"\n").expect("valid");
        let StoreUrl::Postgres(url) = &c.store.url else {
            panic!("{:?}", c.store.url);
        };
        assert_eq!(
            url.connection_string(),
            "postgres://app:s3cretPW@db:5433/auth"
        );
        for shown in [
            format!("{url}"),
            format!("{url:?}"),
            format!("{:?}", c.store),
            c.store.url.to_string(),
        ] {
            assert!(!shown.contains("s3cretPW"), "{shown}");
            assert!(shown.contains("postgres://***@db:5433/auth"), "{shown}");
        }
        assert_eq!(c.store.max_staleness, Duration::from_secs(10));
        assert_eq!(c.store.pool_size, 16);
        let c = parse(
            "[store]\nurl = \"postgresql://u@h/db\"\nmax_staleness = \"2s\"\npool_size = 4\n",
        )
        .expect("valid");
        assert_eq!(c.store.max_staleness, Duration::from_secs(2));
        assert_eq!(c.store.pool_size, 4);
    }

    #[test]
    fn postgres_urls_must_name_host_user_and_database_and_ask_no_tls() {
        for (url, reason) in [
            ("postgres://u@h", "names no database"),
            ("postgres://u@h/", "names no database"),
            ("postgres:///db?user=u", "names no host"),
            ("postgres://h/db", "names no user"),
            ("postgres://u@h/db?sslmode=require", "TLS"),
            (
                "postgres://u@h/db?sslmode=verify-full",
                "is not a PostgreSQL URL",
            ),
            ("postgres://u@h:notaport/db", "is not a PostgreSQL URL"),
            ("postgres://u@h/db?bogus=1", "is not a PostgreSQL URL"),
        ] {
            refused(&format!("[store]\nurl = \"{url}\"\n"), "store.url", reason);
        }
    }

    #[test]
    fn max_staleness_and_pool_size_are_errors_with_sqlite() {
        refused(
            "[store]\nmax_staleness = \"10s\"\n",
            "store.max_staleness",
            "only to a postgres:// store",
        );
        refused(
            "[store]\nurl = \"sqlite://a.db\"\npool_size = 16\n",
            "store.pool_size",
            "only to a postgres:// store",
        );
        refused(
            "[store]\nurl = \"postgres://u@h/db\"\npool_size = 0\n",
            "store.pool_size",
            "between 1 and 1000",
        );
    }

    #[test]
    fn the_three_login_limit_tiers_default_and_must_be_positive() {
        let c = parse("").expect("valid");
        assert_eq!(c.auth.login_limit.max_failures, 5);
        assert_eq!(c.auth.login_limit.user_max_failures, 20);
        assert_eq!(c.auth.login_limit.address_max_failures, 20);
        let c =
            parse("[auth]\nlogin_limit = { user_max_failures = 7, address_max_failures = 9 }\n")
                .expect("valid");
        assert_eq!(
            (
                c.auth.login_limit.max_failures,
                c.auth.login_limit.user_max_failures,
                c.auth.login_limit.address_max_failures
            ),
            (5, 7, 9)
        );
        for key in ["max_failures", "user_max_failures", "address_max_failures"] {
            refused(
                &format!("[auth]\nlogin_limit = {{ {key} = 0 }}\n"),
                &format!("auth.login_limit.{key}"),
                "between 1 and",
            );
        }
    }

    #[test]
    fn other_store_schemes_are_refused() {
        refused(
            "[store]\nurl = \"mysql://h/db\"\n",
            "store.url",
            "not a supported store URL",
        );
        refused(
            "[store]\nurl = \"data/a.db\"\n",
            "store.url",
            "not a supported store URL",
        );
    }

    #[test]
    fn the_algorithm_must_be_spelt_exactly() {
        refused(
            "[tokens]\nalgorithm = \"hs256\"\n",
            "tokens.algorithm",
            "spelt exactly",
        );
        refused(
            "[tokens]\nalgorithm = \"none\"\n",
            "tokens.algorithm",
            "not a supported",
        );
    }

    #[test]
    fn asymmetric_algorithms_need_a_private_key_file() {
        assert_eq!(
            message("[tokens]\nalgorithm = \"EdDSA\"\n"),
            "f.toml: tokens.private_key_file: is required: algorithm \"EdDSA\" signs with a \
             private key file (PEM)"
        );
        let config = parse(
            "[tokens]\nalgorithm = \"ES256\"\nprivate_key_file = \"k.pem\"\n\
             verify_keys = [\"old.pem\"]\n",
        )
        .expect("valid");
        assert_eq!(config.tokens.algorithm, TokenAlgorithm::Es256);
        assert_eq!(config.tokens.private_key_file, Some(PathBuf::from("k.pem")));
        assert_eq!(config.tokens.verify_keys, vec![PathBuf::from("old.pem")]);
    }

    #[test]
    fn hs256_refuses_private_key_file_and_verify_keys() {
        refused(
            "[tokens]\nprivate_key_file = \"k.pem\"\n",
            "tokens.private_key_file",
            "signs with tokens.secret_file",
        );
        assert_eq!(
            message("[tokens]\nverify_keys = [\"old.pem\"]\n"),
            "f.toml: tokens.verify_keys: [\"old.pem\"] only apply to asymmetric algorithms, and \
             algorithm is \"HS256\"; remove the key"
        );
    }

    #[test]
    fn access_ttl_must_be_shorter_than_refresh_ttl() {
        assert_eq!(
            message("[tokens]\naccess_ttl = \"1h\"\nrefresh_ttl = \"60m\"\n"),
            "f.toml: tokens.access_ttl: \"1h\" must be shorter than tokens.refresh_ttl (\"60m\")"
        );
    }

    #[test]
    fn issuer_and_audience_must_not_be_empty() {
        refused(
            "[tokens]\nissuer = \"\"\n",
            "tokens.issuer",
            "must not be empty",
        );
        refused(
            "[tokens]\naudience = \"\"\n",
            "tokens.audience",
            "must not be empty",
        );
        let config = parse("[tokens]\naudience = \"my-api\"\n").expect("valid");
        assert_eq!(config.tokens.audience.as_deref(), Some("my-api"));
    }

    #[test]
    fn the_auth_prefix_follows_the_prefix_rules_and_is_not_root() {
        assert_eq!(
            message("[auth]\nprefix = \"/\"\n"),
            "f.toml: auth.prefix: \"/\" cannot be \"/\": the account endpoints need a prefix of \
             their own, like \"/auth\""
        );
        refused(
            "[auth]\nprefix = \"auth\"\n",
            "auth.prefix",
            "must start with \"/\"",
        );
        refused(
            "[auth]\nprefix = \"/auth/\"\n",
            "auth.prefix",
            "must not end with \"/\"",
        );
        refused("[auth]\nprefix = \"/a?b\"\n", "auth.prefix", "'?'");
        refused("[auth]\nprefix = \"/a%2fb\"\n", "auth.prefix", "\"%\"");
        refused("[auth]\nprefix = \"/a//b\"\n", "auth.prefix", "\"//\"");
        refused(
            "[auth]\nprefix = \"/a/../b\"\n",
            "auth.prefix",
            "\"..\" segment",
        );
    }

    #[test]
    fn min_password_length_is_between_1_and_1024() {
        refused(
            "[auth]\nmin_password_length = 0\n",
            "auth.min_password_length",
            "between 1",
        );
        refused(
            "[auth]\nmin_password_length = 1025\n",
            "auth.min_password_length",
            "1024",
        );
    }

    #[test]
    fn argon2_parameters_the_crate_refuses_are_refused_with_its_message() {
        let e = parse("[auth]\nargon2 = { memory_kib = 8, iterations = 2, parallelism = 4 }\n")
            .expect_err("refused");
        assert_eq!(e.key, "auth.argon2");
        assert_eq!(
            e.value.as_deref(),
            Some("{ memory_kib = 8, iterations = 2, parallelism = 4 }")
        );
        let crate_message = argon2::Params::new(8, 2, 4, None)
            .expect_err("argon2 refuses")
            .to_string();
        assert!(e.reason.contains(&crate_message), "{e}");
        refused(
            "[auth]\nargon2 = { iterations = 0 }\n",
            "auth.argon2",
            "refused by the argon2 crate",
        );
        refused(
            "[auth]\nargon2 = { memory_kib = -1 }\n",
            "auth.argon2.memory_kib",
            "between",
        );
    }

    #[test]
    fn login_limit_needs_at_least_one_failure() {
        refused(
            "[auth]\nlogin_limit = { max_failures = 0 }\n",
            "auth.login_limit.max_failures",
            "between 1",
        );
    }

    #[test]
    fn identity_headers_must_be_valid_names_and_are_stored_lowercase() {
        refused(
            "[proxy]\nidentity_headers = { user_id = \"X Auth\" }\n",
            "proxy.identity_headers.user_id",
            "not a valid header name",
        );
        let config =
            parse("[proxy]\nidentity_headers = { fresh = \"X-Is-Fresh\" }\n").expect("valid");
        assert_eq!(config.proxy.identity_headers.fresh.as_str(), "x-is-fresh");
    }

    #[test]
    fn identity_headers_must_differ_even_by_underscore_spelling() {
        assert_eq!(
            message("[proxy]\nidentity_headers = { username = \"x-auth-user_id\" }\n"),
            "f.toml: proxy.identity_headers.username: \"x-auth-user_id\" is the same header as \
             proxy.identity_headers.user_id; the five identity headers must differ"
        );
    }

    #[test]
    fn identity_headers_may_not_be_headers_the_gateway_manages() {
        for name in [
            "Host",
            "Authorization",
            "Connection",
            "Content-Length",
            "Transfer-Encoding",
            "Cookie",
            "X-Forwarded-For",
            "X-Forwarded-Whatever",
            "X-Request-Id",
            "Keep-Alive",
            "Upgrade",
            "TE",
            "Trailer",
            "Proxy-Authorization",
        ] {
            refused(
                &format!("[proxy]\nidentity_headers = {{ roles = \"{name}\" }}\n"),
                "proxy.identity_headers.roles",
                "sets, strips or forwards itself",
            );
        }
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_bare_addresses() {
        let config = parse("[proxy]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\", \"192.0.2.7\"]\n")
            .expect("valid");
        let nets: Vec<String> = config
            .proxy
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
        refused(
            "[proxy]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
            "proxy.trusted_proxies[1]",
            "not an IP network",
        );
    }

    #[test]
    fn upstream_ca_file_is_a_path_and_not_read() {
        let config = parse("[proxy]\nupstream_ca_file = \"/nonexistent/ca.pem\"\n").expect("valid");
        assert_eq!(
            config.proxy.upstream_ca_file,
            Some(PathBuf::from("/nonexistent/ca.pem"))
        );
    }

    #[test]
    fn log_format_and_level_are_checked() {
        assert_eq!(
            message("[log]\nformat = \"text\"\n"),
            "f.toml: log.format: \"text\" is not a log format; use \"pretty\" or \"json\""
        );
        refused(
            "[log]\nlevel = \"authgate=loud\"\n",
            "log.level",
            "the level \"loud\", which is not a level",
        );
        refused("[log]\nlevel = \"\"\n", "log.level", "is empty");
        assert_eq!(
            message("[log]\nlevel = \"warning\"\n"),
            "f.toml: log.level: \"warning\" is not a level (did you mean \"warn\"?); use one of \
             trace, debug, info, warn, error, or a list of levels and target=level entries like \
             \"info,authgate::proxy=debug\""
        );
        let config =
            parse("[log]\nformat = \"json\"\nlevel = \"authgate=debug,info\"\n").expect("valid");
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn route_prefix_upstream_and_auth_are_required() {
        assert_eq!(
            message("[[routes]]\nupstream = \"http://h\"\nauth = \"token\"\n"),
            "f.toml: routes[0].prefix: is required: the path prefix this route serves, like \
             \"/api\""
        );
        refused(
            "[[routes]]\nprefix = \"/a\"\nauth = \"token\"\n",
            "routes[0].upstream",
            "required",
        );
        refused(&route(""), "routes[0].auth", "is required");
    }

    #[test]
    fn route_prefixes_follow_the_path_rules() {
        let bad = |prefix: &str, fragment: &str| {
            refused(
                &format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://h\"\nauth = \"public\"\n"),
                "routes[0].prefix",
                fragment,
            )
        };
        bad("api", "must start with \"/\"");
        bad("/api/", "must not end with \"/\"");
        bad("/api#x", "'#'");
        bad("/a%20b", "\"%\"");
        bad("//api", "\"//\"");
        bad("/api/./v1", "\".\" or \"..\" segment");
        bad("/a b", "' '");
        let root =
            parse("[[routes]]\nprefix = \"/\"\nupstream = \"http://h\"\nauth = \"public\"\n")
                .expect("a root route is valid");
        assert_eq!(root.routes[0].prefix, "/");
    }

    #[test]
    fn duplicate_route_prefixes_name_the_earlier_route() {
        let text = format!("{}auth = \"token\"\n{}auth = \"public\"\n", ROUTE, ROUTE);
        assert_eq!(
            message(&text),
            "f.toml: routes[1].prefix: \"/api\" duplicates routes[0].prefix; each prefix may \
             appear once"
        );
    }

    #[test]
    fn routes_under_the_auth_prefix_are_refused_on_segment_boundaries() {
        let at = |prefix: &str| {
            format!(
                "[[routes]]\nprefix = \"{prefix}\"\nupstream = \"http://h\"\nauth = \"public\"\n"
            )
        };
        refused(
            &at("/auth"),
            "routes[0].prefix",
            "under the auth prefix \"/auth\"",
        );
        refused(&at("/auth/x"), "routes[0].prefix", "under the auth prefix");
        parse(&at("/authors")).expect("/authors is not under /auth");
    }

    #[test]
    fn upstreams_must_be_absolute_http_urls() {
        let at = |upstream: &str| {
            format!("[[routes]]\nprefix = \"/a\"\nupstream = \"{upstream}\"\nauth = \"public\"\n")
        };
        assert_eq!(
            message(&at("htp://x")),
            "f.toml: routes[0].upstream: \"htp://x\" has scheme \"htp\"; only http and https are \
             supported"
        );
        refused(&at("127.0.0.1:9000"), "routes[0].upstream", "absolute");
        refused(&at("/just/a/path"), "routes[0].upstream", "absolute");
        refused(
            &at("http://u:p@h/"),
            "routes[0].upstream",
            "user information",
        );
        refused(&at("http://h/?q=1"), "routes[0].upstream", "query string");
        refused(&at("http://h/#f"), "routes[0].upstream", "fragment");
        refused(&at("http:// h"), "routes[0].upstream", "not an http(s) URL");
    }

    #[test]
    fn an_upstream_loses_the_trailing_slash_of_its_path() {
        let at = |upstream: &str| {
            format!("[[routes]]\nprefix = \"/a\"\nupstream = \"{upstream}\"\nauth = \"public\"\n")
        };
        let upstream = |text: &str| only_route(&at(text)).upstream.expect("an upstream");
        let u = upstream("https://h.example:8443/base/");
        assert_eq!(u.to_string(), "https://h.example:8443/base");
        assert_eq!(u.path(), "/base");
        let u = upstream("http://127.0.0.1:9000/");
        assert_eq!(u.host(), Some("127.0.0.1"));
        assert_eq!(u.port_u16(), Some(9000));
        assert_eq!(u.path(), "/");
    }

    #[test]
    fn route_auth_must_be_one_of_four_policies() {
        refused(
            &route("auth = \"Token\""),
            "routes[0].auth",
            "not a route policy",
        );
    }

    #[test]
    fn fresh_max_age_applies_to_fresh_routes_and_to_fresh_methods() {
        // Changed by docs/http-api.md §7.2: a token route may set it with fresh_methods; without
        // them it still has nothing to apply to.
        refused(
            &route("auth = \"token\"\nfresh_max_age = \"5m\""),
            "routes[0].fresh_max_age",
            "only applies to auth = \"fresh\" or to a token route's fresh_methods",
        );
        for auth in ["public", "optional"] {
            refused(
                &route(&format!("auth = \"{auth}\"\nfresh_max_age = \"5m\"")),
                "routes[0].fresh_max_age",
                "only applies to auth = \"fresh\"",
            );
        }
        let r = only_route(&route("auth = \"fresh\"\nfresh_max_age = \"5m\""));
        assert_eq!(r.fresh_max_age, Some(Duration::from_secs(300)));
        let r = only_route(&route(
            "auth = \"token\"\nfresh_methods = [\"DELETE\"]\nfresh_max_age = \"5m\"",
        ));
        assert_eq!(r.fresh_max_age, Some(Duration::from_secs(300)));
        assert_eq!(r.fresh_methods, [Method::DELETE]);
    }

    #[test]
    fn fresh_methods_only_on_token_routes_and_within_the_route_methods() {
        for auth in ["public", "optional", "fresh"] {
            refused(
                &route(&format!("auth = \"{auth}\"\nfresh_methods = [\"POST\"]")),
                "routes[0].fresh_methods",
                "only applies to auth = \"token\"",
            );
        }
        assert_eq!(
            message(&route(
                "auth = \"token\"\nmethods = [\"GET\", \"POST\"]\nfresh_methods = [\"POST\", \"DELETE\"]"
            )),
            "f.toml: routes[0].fresh_methods[1]: \"DELETE\" is not in routes[0].methods, so no \
             request could ever need it; add it there or remove it here"
        );
        refused(
            &route("auth = \"token\"\nfresh_methods = [\"post\"]"),
            "routes[0].fresh_methods[0]",
            "must be uppercase",
        );
        refused(
            &route("auth = \"token\"\nfresh_methods = [\"PUT\", \"PUT\"]"),
            "routes[0].fresh_methods[1]",
            "listed twice (also routes[0].fresh_methods[0])",
        );
        refused(
            &route("auth = \"token\"\nfresh_methods = []"),
            "routes[0].fresh_methods",
            "is empty",
        );
        let r = only_route(&route(
            "auth = \"token\"\nmethods = [\"GET\", \"DELETE\"]\nfresh_methods = [\"DELETE\"]",
        ));
        assert_eq!(r.fresh_methods, [Method::DELETE]);
        assert_eq!(r.fresh_max_age, None);
        let r = only_route(&route(
            "auth = \"token\"\nfresh_methods = [\"POST\", \"PUT\", \"PATCH\", \"DELETE\"]",
        ));
        assert_eq!(r.fresh_methods.len(), 4);
    }

    #[test]
    fn optional_routes_refuse_roles_and_fresh_methods() {
        let r = only_route(&route("auth = \"optional\""));
        assert_eq!(r.auth, RouteAuth::Optional);
        assert_eq!(
            message(&route("auth = \"optional\"\nroles = [\"admin\"]")),
            "f.toml: routes[0].roles: [\"admin\"] cannot be required on an optional route, \
             which lets anonymous requests through; use auth = \"token\" or remove roles"
        );
        refused(
            &route("auth = \"optional\"\nfresh_methods = [\"DELETE\"]"),
            "routes[0].fresh_methods",
            "this route's auth is \"optional\"",
        );
    }

    #[test]
    fn compat_keys_are_checked_and_name_the_key() {
        let c = parse(
            "[compat]\nerror_format = \"flask-jwt-extended\"\n\
             [compat.flask_jwt_extended]\nsecret_file = \"legacy/jwt-secret\"\n\
             accept_until = \"2027-06-30T00:00:00Z\"\n",
        )
        .expect("valid");
        assert_eq!(c.compat.error_format, ErrorFormat::FlaskJwtExtended);
        let legacy = c.compat.flask_jwt_extended.expect("legacy tokens on");
        assert_eq!(legacy.secret_file, PathBuf::from("legacy/jwt-secret"));
        assert_eq!(legacy.accept_until, 1_814_313_600);
        let default = parse("").expect("valid");
        assert_eq!(default.compat, CompatConfig::default());
        refused(
            "[compat]\nerror_format = \"flask\"\n",
            "compat.error_format",
            "is not an error format",
        );
        refused(
            "[compat.flask_jwt_extended]\nsecret_file = \"s\"\naccept_until = \"2027-06-30\"\n",
            "compat.flask_jwt_extended.accept_until",
            "is not an RFC 3339 time",
        );
        refused(
            "[compat.flask_jwt_extended]\naccept_until = \"2027-06-30T00:00:00Z\"\n",
            "compat.flask_jwt_extended.secret_file",
            "is required",
        );
    }

    #[test]
    fn forward_auth_keys_are_checked_and_name_the_key() {
        let c = parse(
            "[forward_auth]\nenabled = true\nsource = \"x-original\"\n\
             allowed_peers = [\"10.0.0.0/8\", \"::1\"]\ndefault_auth = \"public\"\n",
        )
        .expect("valid");
        assert!(c.forward_auth.enabled);
        assert_eq!(c.forward_auth.source, ForwardAuthSource::XOriginal);
        assert_eq!(c.forward_auth.default_auth, RouteAuth::Public);
        let peers: Vec<String> = c
            .forward_auth
            .allowed_peers
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(peers, ["10.0.0.0/8", "::1/128"]);
        let path = parse("[forward_auth]\nsource = \"path\"\n").expect("valid");
        assert_eq!(path.forward_auth.source, ForwardAuthSource::Path);
        assert_eq!(
            message("[forward_auth]\nsource = \"x-forwarded-uri\"\n"),
            "f.toml: forward_auth.source: \"x-forwarded-uri\" is not a forward-auth source; use \
             \"x-forwarded\" (Traefik, Caddy), \"x-original\" (nginx) or \"path\" (Envoy \
             ext_authz)"
        );
        refused(
            "[forward_auth]\nallowed_peers = [\"10.0.0.300/8\"]\n",
            "forward_auth.allowed_peers[0]",
            "is not an IP network",
        );
        refused(
            "[forward_auth]\nenabled = true\nallowed_peers = []\n",
            "forward_auth.allowed_peers",
            "no proxy may ask",
        );
        parse("[forward_auth]\nallowed_peers = []\n").expect("harmless while disabled");
        refused(
            "[forward_auth]\ndefault_auth = \"deny\"\n",
            "forward_auth.default_auth",
            "is not a route policy",
        );
        refused(
            "[forward_auth]\nenable = true\n",
            "forward_auth.enable",
            "unknown key",
        );
    }

    #[test]
    fn upstream_may_be_left_out_only_with_forward_auth_and_no_forwarding_keys() {
        let decision = "[[routes]]\nprefix = \"/d\"\nauth = \"token\"\nroles = [\"ops\"]\n";
        assert_eq!(
            message(decision),
            "f.toml: routes[0].upstream: is required: the http(s) URL requests are forwarded \
             to, like \"http://127.0.0.1:9000\"; only with [forward_auth] enabled = true may a \
             route that serves forward-auth decisions alone leave it out"
        );
        let enabled = format!("[forward_auth]\nenabled = true\n{decision}");
        let r = only_route(&enabled);
        assert_eq!(r.upstream, None);
        assert_eq!(
            (r.auth, r.roles.as_slice()),
            (RouteAuth::Token, &["ops".to_owned()][..])
        );
        for (line, key) in [
            ("strip_prefix = true", "strip_prefix"),
            ("forward_authorization = true", "forward_authorization"),
            ("websocket = false", "websocket"),
            ("timeout = \"5s\"", "timeout"),
            ("upstream_protocol = \"http1\"", "upstream_protocol"),
            ("preserve_host = true", "preserve_host"),
            ("idle_timeout = \"1m\"", "idle_timeout"),
        ] {
            refused(
                &format!("{enabled}{line}\n"),
                &format!("routes[0].{key}"),
                "only shapes forwarding, and this route has no upstream",
            );
        }
        // The policy keys still follow their rules on a decision route.
        refused(
            &format!("{enabled}fresh_max_age = \"5m\"\n"),
            "routes[0].fresh_max_age",
            "only applies to",
        );
    }

    #[test]
    fn trace_is_refused_in_methods_and_fresh_methods() {
        refused(
            &route("auth = \"token\"\nmethods = [\"GET\", \"TRACE\"]"),
            "routes[0].methods[1]",
            "never forwarded",
        );
        refused(
            &route("auth = \"token\"\nfresh_methods = [\"TRACE\"]"),
            "routes[0].fresh_methods[0]",
            "never forwarded",
        );
    }

    /// A route to `upstream` with the extra `lines`.
    fn route_to(upstream: &str, lines: &str) -> String {
        format!(
            "[[routes]]\nprefix = \"/g\"\nupstream = \"{upstream}\"\nauth = \"token\"\n{lines}\n"
        )
    }

    #[test]
    fn upstream_protocol_defaults_by_scheme_and_must_fit_it() {
        let r = only_route(&route_to("http://127.0.0.1:50051", ""));
        assert_eq!(r.upstream_protocol, UpstreamProtocol::Http1);
        assert!(r.websocket);
        let r = only_route(&route_to("https://svc.internal", ""));
        assert_eq!(r.upstream_protocol, UpstreamProtocol::Auto);
        assert!(r.websocket);
        let r = only_route(&route_to(
            "https://svc.internal",
            "upstream_protocol = \"http1\"",
        ));
        assert_eq!(r.upstream_protocol, UpstreamProtocol::Http1);
        let r = only_route(&route_to(
            "http://127.0.0.1:50051",
            "upstream_protocol = \"h2c\"",
        ));
        assert_eq!(r.upstream_protocol, UpstreamProtocol::H2c);
        assert!(!r.websocket, "h2c routes default to no WebSockets");
        assert_eq!(
            message(&route_to(
                "http://127.0.0.1:1",
                "upstream_protocol = \"auto\""
            )),
            "f.toml: routes[0].upstream_protocol: \"auto\" needs an https:// upstream: ALPN, \
             which picks the version, is part of TLS; use \"h2c\" for HTTP/2 in clear text or \
             \"http1\""
        );
        refused(
            &route_to("https://svc.internal", "upstream_protocol = \"h2c\""),
            "routes[0].upstream_protocol",
            "needs an http:// upstream",
        );
        refused(
            &route_to("http://127.0.0.1:1", "upstream_protocol = \"h2\""),
            "routes[0].upstream_protocol",
            "use \"http1\", \"h2c\" or \"auto\"",
        );
    }

    #[test]
    fn websockets_cannot_be_switched_on_for_h2c_routes() {
        refused(
            &route_to(
                "http://127.0.0.1:1",
                "upstream_protocol = \"h2c\"\nwebsocket = true",
            ),
            "routes[0].websocket",
            "HTTP/1.1 only",
        );
        let r = only_route(&route_to(
            "http://127.0.0.1:1",
            "upstream_protocol = \"h2c\"\nwebsocket = false",
        ));
        assert!(!r.websocket);
        let r = only_route(&route_to("https://svc.internal", "websocket = false"));
        assert!(!r.websocket);
    }

    #[test]
    fn idle_timeout_defaults_to_the_proxy_value_and_may_be_set_per_route() {
        let text = format!(
            "[proxy]\nidle_timeout = \"90s\"\n{}{}",
            route_to("http://127.0.0.1:1", ""),
            route_to("http://127.0.0.1:2", "idle_timeout = \"2s\"").replace("/g", "/h"),
        );
        let c = parse(&text).expect("valid");
        assert_eq!(c.proxy.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.routes[0].idle_timeout, Duration::from_secs(90));
        assert_eq!(c.routes[1].idle_timeout, Duration::from_secs(2));
        refused(
            &route_to("http://127.0.0.1:1", "idle_timeout = \"0s\""),
            "routes[0].idle_timeout",
            "longer than zero",
        );
        refused(
            "[proxy]\nidle_timeout = \"soon\"\n",
            "proxy.idle_timeout",
            "is not a duration",
        );
    }

    #[test]
    fn preserve_host_is_a_boolean_defaulting_to_false() {
        assert!(!only_route(&route_to("http://127.0.0.1:1", "")).preserve_host);
        assert!(only_route(&route_to("http://127.0.0.1:1", "preserve_host = true")).preserve_host);
        refused(
            &route_to("http://127.0.0.1:1", "preserve_host = \"yes\""),
            "routes[0].preserve_host",
            "wrong type",
        );
    }

    #[test]
    fn roles_are_refused_on_public_routes_and_checked_elsewhere() {
        assert_eq!(
            message(&route("auth = \"public\"\nroles = [\"admin\"]")),
            "f.toml: routes[0].roles: [\"admin\"] cannot be required on a public route, which \
             never reads tokens; use auth = \"token\" or remove roles"
        );
        refused(
            &route("auth = \"token\"\nroles = [\"\"]"),
            "routes[0].roles[0]",
            "is empty",
        );
        refused(
            &route("auth = \"token\"\nroles = [\"ok\", \"a,b\"]"),
            "routes[0].roles[1]",
            "comma-separated",
        );
        let r = only_route(&route("auth = \"token\"\nroles = [\"admin\", \"ops\"]"));
        assert_eq!(r.roles, ["admin", "ops"]);
    }

    #[test]
    fn methods_must_be_valid_uppercase_distinct_and_not_empty() {
        assert_eq!(
            message(&route("auth = \"token\"\nmethods = [\"GET\", \"post\"]")),
            "f.toml: routes[0].methods[1]: \"post\" must be uppercase: methods match exactly, so \
             write \"POST\""
        );
        refused(
            &route("auth = \"token\"\nmethods = [\"GE T\"]"),
            "routes[0].methods[0]",
            "not an HTTP method",
        );
        refused(
            &route("auth = \"token\"\nmethods = [\"GET\", \"GET\"]"),
            "routes[0].methods[1]",
            "listed twice (also routes[0].methods[0])",
        );
        refused(
            &route("auth = \"token\"\nmethods = []"),
            "routes[0].methods",
            "is empty",
        );
        let r = only_route(&route("auth = \"token\"\nmethods = [\"GET\", \"PURGE\"]"));
        assert_eq!(
            r.methods,
            Some(vec![
                Method::GET,
                Method::from_bytes(b"PURGE").expect("valid")
            ])
        );
    }

    #[test]
    fn route_defaults_follow_the_proxy_timeout() {
        let text = format!("[proxy]\ntimeout = \"7s\"\n{}", route("auth = \"token\""));
        let r = only_route(&text);
        assert_eq!(r.timeout, Duration::from_secs(7));
        assert_eq!(r.methods, None);
        assert!(r.roles.is_empty());
        assert!(!r.strip_prefix && !r.forward_authorization && r.websocket);
        assert_eq!(r.fresh_max_age, None);
        let r = only_route(&route(
            "auth = \"token\"\ntimeout = \"2s\"\nwebsocket = false",
        ));
        assert_eq!(r.timeout, Duration::from_secs(2));
        assert!(!r.websocket);
        refused(
            &route("auth = \"token\"\ntimeout = \"0s\""),
            "routes[0].timeout",
            "zero",
        );
    }
}
