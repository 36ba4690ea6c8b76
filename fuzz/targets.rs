//! The bodies of authgate's fuzz targets, shared by the cargo-fuzz binaries in
//! `fuzz/fuzz_targets/` (nightly, libFuzzer) and by `tests/fuzz_targets.rs`, which drives the
//! same functions with proptest on stable. Each takes arbitrary bytes, must never panic, and
//! asserts what must hold of whatever the parser accepts.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::OnceLock;

use authgate::auth::claims::TokenType;
use authgate::auth::cookies::{request_cookie, strip_gateway_cookies};
use authgate::auth::keys::{load_keys, KeyLoad};
use authgate::auth::tokens::TokenService;
use authgate::config::ForwardAuthSource;
use authgate::path::{normalize, under_prefix};
use authgate::routes::original_request;
use authgate::server::request_body::decode_body;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A token service with a fixed HS256 secret, built once.
fn tokens() -> &'static TokenService {
    static SERVICE: OnceLock<TokenService> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let config = authgate::config::parse(Path::new("fuzz.toml"), "").unwrap();
        let keys = load_keys(
            &config.tokens,
            Path::new("fuzz.toml"),
            Some(b"fuzzing-secret-fuzzing-secret-fuzzing-secret".to_vec()),
            KeyLoad::CheckOnly,
        )
        .unwrap();
        TokenService::new(&config.tokens, keys).unwrap()
    })
}

/// Token decoding: no input the fuzzer makes is a token this service signed.
pub fn token_decoding(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    assert!(tokens().verify(&text, TokenType::Access).is_err());
    assert!(tokens()
        .verify_as(&text, &[TokenType::Access, TokenType::Refresh])
        .is_err());
}

/// Path normalisation: accepted paths are canonical, stable, and stay under a prefix they
/// claim to be under.
pub fn path_normalisation(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(path) = normalize(&text) {
        assert!(path.starts_with('/'), "{path:?}");
        assert!(!path.contains("//"), "{path:?}");
        assert!(path.split('/').all(|s| s != "." && s != ".."), "{path:?}");
        assert_eq!(normalize(&path).as_deref(), Ok(path.as_str()), "{text:?}");
        for prefix in ["/api", "/a/b", "/"] {
            if let Some(rest) = under_prefix(&path, prefix) {
                assert!(rest.is_empty() || rest.starts_with('/') || prefix == "/");
            }
        }
    }
}

/// Config parsing: any text is a config or an error naming a key, never a panic.
pub fn config_parsing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = authgate::config::parse(Path::new("fuzz.toml"), &text) {
        assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
    }
}

/// The login and registration body shape (the endpoints' own types are private).
#[derive(serde::Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

/// Auth request bodies: JSON and form bodies decode or are a 4xx, never a panic; a form field
/// never decodes to text that is not what was sent (no U+FFFD stand-ins).
pub fn auth_bodies(data: &[u8]) {
    for content_type in ["application/json", "application/x-www-form-urlencoded"] {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        match decode_body::<Credentials>(&headers, data) {
            Ok(body) => {
                let sent_replacement = data.windows(3).any(|w| w == "\u{fffd}".as_bytes())
                    || data
                        .windows(9)
                        .any(|w| w.eq_ignore_ascii_case(b"%ef%bf%bd"));
                for field in [body.username, body.password].into_iter().flatten() {
                    if content_type.ends_with("urlencoded") && !sent_replacement {
                        assert!(!field.contains('\u{fffd}'), "a form value was made up");
                    }
                }
            }
            Err(e) => assert!(e.status().is_client_error(), "{e:?}"),
        }
    }
}

/// Cookie parsing: any `Cookie` header reads and strips without panicking, and stripping
/// leaves none of the gateway's cookies behind.
pub fn cookies(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.append(http::header::COOKIE, value.clone());
    headers.append(http::header::COOKIE, value);
    for name in [
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
    ] {
        if let Some(v) = request_cookie(&headers, name) {
            assert!(!v.is_empty());
        }
    }
    strip_gateway_cookies(&mut headers);
    for name in [
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
        "csrf_refresh_token",
    ] {
        assert_eq!(
            request_cookie(&headers, name),
            None,
            "{name} survived stripping"
        );
    }
}

/// The forward-auth header reader: the original method and path from any header values, for
/// each source; what it accepts is a normalised path.
pub fn forward_auth_headers(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (method, uri, own) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut headers = HeaderMap::new();
    for (m, u) in [
        ("x-forwarded-method", "x-forwarded-uri"),
        ("x-original-method", "x-original-uri"),
    ] {
        if let Ok(v) = HeaderValue::from_bytes(method) {
            headers.insert(HeaderName::from_static(m), v);
        }
        if let Ok(v) = HeaderValue::from_bytes(uri) {
            headers.insert(HeaderName::from_static(u), v);
        }
    }
    let own = String::from_utf8_lossy(own);
    for source in [
        ForwardAuthSource::XForwarded,
        ForwardAuthSource::XOriginal,
        ForwardAuthSource::Path,
    ] {
        if let Ok((_, path)) = original_request(source, &Method::GET, &headers, &own) {
            assert_eq!(normalize(&path).as_deref(), Ok(path.as_str()));
        }
    }
}
