//! Configuration: the TOML file of docs/configuration.md, read, checked and typed.
//!
//! `types` holds the validated shapes the rest of the gateway reads; `error` the one error
//! type naming file, key path, value and reason; `raw` the serde mirror of the file with its
//! defaults; `validate` every rule beyond TOML types; `log_level` the grammar of `[log] level`
//! (shared with `RUST_LOG`). [`load`] and [`parse`] are the way in,
//! [`restart_needed`] tells a reload which sections it cannot apply.

mod error;
mod log_level;
mod raw;
mod types;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use log_level::check_log_level;
pub use types::*;

/// Reads and validates the configuration file at `path`.
///
/// An unreadable file (missing, no permission, not UTF-8) is an error with an empty key and
/// the I/O error as reason. Nothing else is read: key, certificate and secret files are left
/// to the modules that use them.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "", None, format!("cannot be read: {e}")))?;
    parse(path, &text)
}

/// Validates configuration `text`; `path` names it in errors and becomes [`Config::source`].
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw = raw::from_toml(path, text)?;
    validate::validate(path, raw)
}

/// The sections whose values differ between `old` and `new` and so need a restart:
/// a reload (SIGHUP) applies only `[[routes]]` and `[proxy]` (with them the route table and
/// identity headers the forward-auth endpoint decides by), and re-reads the TLS files
/// itself, so changed `server.tls` file names are not compared — but switching TLS on or
/// off changes the listener and is reported as `"server"`. The key files of an asymmetric
/// algorithm (`tokens.private_key_file`, `tokens.verify_keys`) are re-read by a reload too, so
/// they are not compared either; any other `[tokens]` change is `"tokens"`.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let without_tls = |s: &ServerConfig| {
        (
            s.tls.is_some(),
            ServerConfig {
                tls: None,
                ..s.clone()
            },
        )
    };
    let changed = [
        (
            "server",
            without_tls(&old.server) != without_tls(&new.server),
        ),
        ("admin", old.admin != new.admin),
        ("store", old.store != new.store),
        (
            "tokens",
            without_key_files(&old.tokens) != without_key_files(&new.tokens),
        ),
        ("auth", old.auth != new.auth),
        ("log", old.log != new.log),
        ("cors", old.cors != new.cors),
        ("forward_auth", old.forward_auth != new.forward_auth),
    ];
    changed
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
}

/// `[tokens]` less what a reload re-reads: the key files of an asymmetric algorithm.
fn without_key_files(t: &TokensConfig) -> TokensConfig {
    if !t.algorithm.is_asymmetric() {
        return t.clone();
    }
    TokensConfig {
        private_key_file: None,
        verify_keys: Vec::new(),
        ..t.clone()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use http::HeaderName;

    use super::*;

    const EXAMPLE: &str = include_str!("../../config/authgate.toml");

    fn parse_ok(text: &str) -> Config {
        parse(Path::new("f.toml"), text).expect("the config should be valid")
    }

    fn message(text: &str) -> String {
        parse(Path::new("f.toml"), text)
            .expect_err("the config should be refused")
            .to_string()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    fn header(name: &'static str) -> HeaderName {
        HeaderName::from_static(name)
    }

    /// Asserts every section but `[[routes]]` holds the defaults of docs/configuration.md.
    fn assert_defaults(c: &Config) {
        assert_eq!(
            c.server,
            ServerConfig {
                listen: addr("127.0.0.1:8080"),
                max_body: 65536,
                request_header_timeout: Duration::from_secs(10),
                shutdown_grace: Duration::from_secs(30),
                tls: None,
                max_connections: 10000,
                body_timeout: Duration::from_secs(10),
                max_header_bytes: 65536,
                max_headers: 100,
            }
        );
        assert_eq!(c.admin.listen, Some(addr("127.0.0.1:9090")));
        assert_eq!(
            c.store,
            StoreConfig {
                url: StoreUrl::Sqlite(PathBuf::from("data/authgate.db")),
                max_staleness: Duration::from_secs(10),
                pool_size: 16,
            }
        );
        assert_eq!(
            c.tokens,
            TokensConfig {
                algorithm: TokenAlgorithm::Hs256,
                secret_file: PathBuf::from("data/jwt-secret"),
                private_key_file: None,
                verify_keys: Vec::new(),
                issuer: "authgate".into(),
                audience: None,
                access_ttl: Duration::from_secs(15 * 60),
                refresh_ttl: Duration::from_secs(30 * 86400),
                leeway: Duration::from_secs(5),
            }
        );
        assert_eq!(
            c.auth,
            AuthConfig {
                prefix: "/auth".into(),
                allow_registration: true,
                min_password_length: 8,
                refresh_rotation: true,
                refresh_reuse_grace: Duration::from_secs(10),
                argon2: Argon2Settings {
                    memory_kib: 19456,
                    iterations: 2,
                    parallelism: 1,
                },
                login_limit: LoginLimit {
                    max_failures: 5,
                    user_max_failures: 20,
                    address_max_failures: 20,
                    window: Duration::from_secs(15 * 60),
                },
                register_limit: RegisterLimit {
                    max: 10,
                    window: Duration::from_secs(3600),
                },
                reserved_usernames: vec![
                    "admin".into(),
                    "root".into(),
                    "administrator".into(),
                    "system".into(),
                ],
                cookies: CookieConfig {
                    enabled: false,
                    secure: true,
                    same_site: SameSite::Lax,
                    domain: None,
                    redirect_origins: Vec::new(),
                    tokens_in_body: true,
                },
            }
        );
        assert_eq!(
            c.proxy,
            ProxyConfig {
                timeout: Duration::from_secs(30),
                identity_headers: IdentityHeaders {
                    user_id: header("x-auth-user-id"),
                    username: header("x-auth-username"),
                    roles: header("x-auth-roles"),
                    session_id: header("x-auth-session-id"),
                    fresh: header("x-auth-fresh"),
                },
                trusted_proxies: Vec::new(),
                upstream_ca_file: None,
                idle_timeout: Duration::from_secs(5 * 60),
                strip_header_prefixes: vec!["x-auth-".into()],
            }
        );
        assert_eq!(
            c.log,
            LogConfig {
                format: LogFormat::Pretty,
                level: "info".into(),
            }
        );
        assert_eq!(
            c.forward_auth,
            ForwardAuthConfig {
                enabled: false,
                source: ForwardAuthSource::XForwarded,
                allowed_peers: vec![
                    "127.0.0.1/32".parse().expect("cidr"),
                    "::1/128".parse().expect("cidr"),
                ],
                default_auth: RouteAuth::Token,
            }
        );
    }

    #[test]
    fn an_empty_file_gives_every_default_and_no_routes() {
        let c = parse_ok("");
        assert_defaults(&c);
        assert!(c.routes.is_empty());
        assert_eq!(c.source, PathBuf::from("f.toml"));
    }

    #[test]
    fn a_file_of_only_routes_gives_defaults_elsewhere() {
        let c = parse_ok(
            "[[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9000\"\nauth = \"public\"\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"https://api.internal/v1\"\n\
             auth = \"fresh\"\nroles = [\"admin\"]\nmethods = [\"GET\"]\nstrip_prefix = true\n\
             forward_authorization = true\n",
        );
        assert_defaults(&c);
        let prefixes: Vec<&str> = c.routes.iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/", "/api"]);
        let api = &c.routes[1];
        assert_eq!(api.auth, RouteAuth::Fresh);
        assert_eq!(
            api.upstream.as_ref().map(ToString::to_string).as_deref(),
            Some("https://api.internal/v1")
        );
        assert!(api.strip_prefix && api.forward_authorization);
        assert_eq!(api.timeout, Duration::from_secs(30));
        assert_eq!(api.idle_timeout, Duration::from_secs(5 * 60));
        assert_eq!(
            api.upstream_protocol,
            UpstreamProtocol::Auto,
            "https default"
        );
        assert_eq!(c.routes[0].upstream_protocol, UpstreamProtocol::Http1);
        assert!(!api.preserve_host && api.fresh_methods.is_empty());
    }

    #[test]
    fn the_shipped_example_parses_and_holds_the_defaults() {
        let c = parse(Path::new("config/authgate.toml"), EXAMPLE).expect("example is valid");
        assert_defaults(&c);
        assert_eq!(c.routes.len(), 2);
        let (public, api) = (&c.routes[0], &c.routes[1]);
        assert_eq!(
            (public.prefix.as_str(), public.auth),
            ("/public", RouteAuth::Public)
        );
        assert_eq!((api.prefix.as_str(), api.auth), ("/api", RouteAuth::Token));
        for r in &c.routes {
            assert_eq!(
                r.upstream.as_ref().map(ToString::to_string).as_deref(),
                Some("http://127.0.0.1:9000/")
            );
            assert_eq!(r.timeout, Duration::from_secs(30));
            assert_eq!(r.methods, None);
            assert!(r.websocket && !r.strip_prefix && !r.forward_authorization);
        }
    }

    #[test]
    fn toml_syntax_errors_give_toml_message_with_line_and_column() {
        assert_eq!(
            message("[server]\nlisten = \n"),
            "f.toml: is not valid TOML at line 2, column 10: string values must be quoted, \
             expected literal string"
        );
        let e = parse(Path::new("f.toml"), "[log]\nlevel = \"a\"\nlevel = \"b\"\n")
            .expect_err("duplicate key");
        assert_eq!(e.key, "");
        assert!(e.reason.contains("line 3, column 1"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named_by_full_path_with_the_allowed_keys() {
        assert_eq!(
            message("[auth]\nargon2 = { memory_kib = 19456, memory = 1 }\n"),
            "f.toml: auth.argon2.memory: is an unknown key at line 2, column 32; allowed keys \
             here: `memory_kib`, `iterations`, `parallelism`"
        );
        let e = parse(
            Path::new("f.toml"),
            "[[routes]]\nprefix = \"/a\"\n[[routes]]\nprefix = \"/b\"\n[[routes]]\nupstrem = 1\n",
        )
        .expect_err("unknown key");
        assert_eq!(e.key, "routes[2].upstrem");
        assert!(
            e.reason.contains("unknown key") && e.reason.contains("`upstream`"),
            "{e}"
        );
        let e = parse(Path::new("f.toml"), "[serverx]\n").expect_err("unknown section");
        assert_eq!(e.key, "serverx");
        assert!(e.reason.contains("`server`"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key_and_the_expected_type() {
        assert_eq!(
            message("[server]\nmax_body = \"64k\"\n"),
            "f.toml: server.max_body: \"64k\" is the wrong type at line 2, column 12: expected \
             an integer"
        );
        let e = parse(
            Path::new("f.toml"),
            "[[routes]]\nprefix = \"/a\"\n[[routes]]\nprefix = \"/b\"\n[[routes]]\nupstream = 5\n",
        )
        .expect_err("wrong type");
        assert_eq!(e.key, "routes[2].upstream");
        assert_eq!(e.value.as_deref(), Some("5"));
        assert!(e.reason.ends_with("expected a string"), "{e}");
        let e = parse(Path::new("f.toml"), "[auth]\nlogin_limit = 5\n").expect_err("wrong type");
        assert_eq!(e.key, "auth.login_limit");
        assert!(e.reason.ends_with("expected a table"), "{e}");
    }

    #[test]
    fn an_unreadable_file_names_the_io_error_and_no_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.toml");
        let e = load(&missing).expect_err("missing file");
        assert_eq!(e.key, "");
        assert_eq!(e.file, missing);
        assert!(e.reason.starts_with("cannot be read: "), "{e}");
        assert!(e.to_string().contains("No such file"), "{e}");
    }

    #[test]
    fn load_reads_the_file_and_records_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, "[log]\nformat = \"json\"\n").expect("write");
        let c = load(&path).expect("valid");
        assert_eq!(c.source, path);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn restart_needed_names_changed_sections_except_routes_proxy_and_tls_files() {
        let old = parse_ok(EXAMPLE);
        let same = parse_ok(
            "[proxy]\ntimeout = \"5s\"\n[server]\ntls_cert_file = \"c\"\ntls_key_file = \"k\"\n",
        );
        assert_eq!(restart_needed(&old, &old), Vec::<&str>::new());
        let changed_tls_only = parse_ok(
            "[proxy]\ntimeout = \"9s\"\n[server]\ntls_cert_file = \"c2\"\ntls_key_file = \"k2\"\n",
        );
        assert_eq!(restart_needed(&same, &changed_tls_only), Vec::<&str>::new());
        assert_eq!(restart_needed(&old, &same), ["server"]);
        // Asymmetric key files are re-read by the reload; HS256's secret file is not.
        let keys = |private: &str, verify: &str| {
            parse_ok(&format!(
                "[tokens]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"{private}\"\n\
                 verify_keys = [{verify}]\n"
            ))
        };
        assert_eq!(
            restart_needed(&keys("a.pem", ""), &keys("b.pem", "\"a.pub\"")),
            Vec::<&str>::new()
        );
        let secret = |file: &str| parse_ok(&format!("[tokens]\nsecret_file = \"{file}\"\n"));
        assert_eq!(restart_needed(&secret("a"), &secret("b")), ["tokens"]);
        let new = parse_ok(
            "[server]\nmax_body = 1\n[admin]\nlisten = \"\"\n[store]\nurl = \"sqlite://x.db\"\n\
             [tokens]\nissuer = \"other\"\n[auth]\nallow_registration = false\n\
             [log]\nlevel = \"debug\"\n[forward_auth]\nenabled = true\n",
        );
        assert_eq!(
            restart_needed(&old, &new),
            [
                "server",
                "admin",
                "store",
                "tokens",
                "auth",
                "log",
                "forward_auth"
            ]
        );
    }
}
