//! Property tests of the security parsers against naive reference implementations: path
//! normalisation never escapes the prefix it matched and agrees with an RFC 3986 reference;
//! the router's answer equals a naive longest-prefix matcher's; `Host`, cookie, token, bearer
//! and CORS-origin parsing never panic and never accept what the reference refuses. (The
//! sign-in page's redirect target is private to its module; its property lives there.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use authgate::auth::bearer::bearer_token;
use authgate::auth::claims::TokenType;
use authgate::auth::cookies::request_cookie;
use authgate::auth::keys::{load_keys, KeyLoad};
use authgate::auth::tokens::TokenService;
use authgate::origin::{is_valid_host, Origin};
use authgate::path::{normalize, under_prefix};
use authgate::proxy::router::Router;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

/// Pieces path tricks are made of.
fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%41".to_owned()),
        Just("%7E".to_owned()),
        Just(";".to_owned()),
        Just("api".to_owned()),
        Just("admin".to_owned()),
        "[a-z0-9_~-]{1,3}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(path_piece(), 0..10).prop_map(|v| format!("/{}", v.concat()))
}

/// The reference: decode `%XX` escapes of unreserved characters only, collapse runs of `/`,
/// then remove dot segments as RFC 3986 §5.2.4 does. `None` for anything with a dot segment
/// carrying `;` parameters or an escape the reference does not model (the gateway refuses or
/// keeps those; the property only compares what both handle).
fn reference_normalize(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut decoded = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                decoded.push(b as char);
            } else {
                return None;
            }
            i += 3;
        } else {
            decoded.push(bytes[i] as char);
            i += 1;
        }
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in &segments {
        if seg.starts_with(".;") || seg.starts_with("..;") {
            return None;
        }
        match *seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = format!("/{}", out.join("/"));
    if trailing && path != "/" {
        path.push('/');
    }
    Some(path)
}

/// Route prefixes a table may hold.
fn prefixes() -> impl Strategy<Value = Vec<String>> {
    let prefix = prop_oneof![
        Just("/".to_owned()),
        Just("/api".to_owned()),
        Just("/api/v1".to_owned()),
        Just("/admin".to_owned()),
        Just("/adm".to_owned()),
        "/[a-c]{1,2}(/[a-c]{1,2})?",
    ];
    proptest::collection::btree_set(prefix, 1..6).prop_map(|s| s.into_iter().collect())
}

/// The naive matcher: the longest prefix equal to the path or followed in it by `/`.
fn reference_route<'a>(prefixes: &'a [String], path: &str) -> Option<&'a str> {
    prefixes
        .iter()
        .filter(|p| {
            p.as_str() == "/"
                || path == p.as_str()
                || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
        })
        .max_by_key(|p| p.len())
        .map(String::as_str)
}

fn router_for(prefixes: &[String]) -> Router {
    let routes: String = prefixes
        .iter()
        .map(|p| format!("[[routes]]\nprefix = \"{p}\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"public\"\n"))
        .collect();
    let config = authgate::config::parse(Path::new("p.toml"), &routes).expect("valid routes");
    Router::new(&config.routes).expect("router")
}

/// The reference `Host` check: `name[:port]` of letters, digits and `-._~`, or `[v6][:port]`.
fn reference_host(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("v6", Some(port)),
            None if after.is_empty() => ("v6", None),
            None => return false,
        }
    } else {
        match value.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    let name_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    name_ok && port_ok
}

fn token_service() -> TokenService {
    let config = authgate::config::parse(Path::new("t.toml"), "").unwrap();
    let keys = load_keys(
        &config.tokens,
        Path::new("t.toml"),
        Some(b"property-test-secret-property-test-secret".to_vec()),
        KeyLoad::CheckOnly,
    )
    .unwrap();
    TokenService::new(&config.tokens, keys).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn normalisation_agrees_with_the_rfc_3986_reference_where_both_answer(raw in path()) {
        if let (Ok(ours), Some(reference)) = (normalize(&raw), reference_normalize(&raw)) {
            prop_assert_eq!(ours.trim_end_matches('/'), reference.trim_end_matches('/'), "{}", raw);
        }
    }

    #[test]
    fn a_normalised_path_never_escapes_the_prefix_it_matched(
        prefix in prop_oneof![Just("/api"), Just("/admin"), Just("/a/b")],
        rest in path(),
    ) {
        let raw = format!("{prefix}{rest}");
        if let Ok(path) = normalize(&raw) {
            if under_prefix(&path, prefix).is_some() {
                // Under the prefix for the reference too: no dot segment climbed out.
                let reference = reference_normalize(&raw);
                if let Some(r) = reference {
                    prop_assert!(
                        r == prefix || r.starts_with(&format!("{prefix}/")),
                        "{raw} -> {path} but the reference says {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_router_answers_as_the_naive_longest_prefix_matcher(
        prefixes in prefixes(),
        raw in path(),
    ) {
        let router = router_for(&prefixes);
        if let Ok(path) = normalize(&raw) {
            let ours = router.route_for(&path).map(|r| r.prefix().to_owned());
            let reference = reference_route(&prefixes, &path).map(str::to_owned);
            prop_assert_eq!(ours, reference, "{}", path);
        }
    }

    #[test]
    fn host_checks_never_accept_what_the_reference_refuses(
        value in prop_oneof![
            "[a-z0-9.:\\[\\]@,/ %_~-]{0,24}",
            any::<String>(),
        ],
    ) {
        prop_assert_eq!(is_valid_host(value.as_bytes()), reference_host(&value), "{:?}", value);
    }

    #[test]
    fn cookie_reading_never_panics_and_finds_only_exact_names(
        header in "[ -~]{0,64}",
        name in prop_oneof![Just("access_token_cookie"), Just("csrf_access_token"), Just("a")],
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&header) {
            headers.insert(http::header::COOKIE, v);
            if let Some(value) = request_cookie(&headers, name) {
                // The reference: some `;`-separated pair whose trimmed name is exactly `name`.
                let found = header.split(';').filter_map(|p| p.split_once('=')).any(|(n, v2)| {
                    n.trim() == name && v2.trim() == value
                });
                prop_assert!(found, "{header:?} -> {value:?}");
                prop_assert!(!value.is_empty());
            }
        }
    }

    #[test]
    fn bearer_reading_accepts_only_one_visible_ascii_credential(value in "[ -~\\t]{0,48}") {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(http::header::AUTHORIZATION, v);
            if let Ok(Some(token)) = bearer_token(&headers) {
                let trimmed = value.trim_matches(' ');
                let (scheme, rest) = trimmed.split_once(' ').unwrap();
                prop_assert!(scheme.eq_ignore_ascii_case("bearer"));
                prop_assert_eq!(rest.trim_start_matches(' '), token);
                prop_assert!(token.bytes().all(|b| b.is_ascii_graphic() && b != b','));
            }
        }
    }

    #[test]
    fn cors_origins_parse_only_as_browsers_send_them(text in prop_oneof![
        "(https?|ftp|HTTP)://[a-z0-9.\\-]{0,12}(:[0-9]{0,6})?(/|\\?|#|@[a-z]{1,3})?",
        any::<String>(),
    ]) {
        if let Some(origin) = Origin::parse(&text) {
            let shown = origin.to_string();
            prop_assert!(shown.starts_with("http://") || shown.starts_with("https://"));
            let rest = text.split_once("://").map_or("", |(_, r)| r);
            prop_assert!(!rest.contains(['/', '?', '#', '@', '\\']),
                "{text:?} has a path, query, fragment or userinfo");
            prop_assert_eq!(Origin::parse(&shown), Some(origin), "round trip of {}", shown);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn token_verification_never_panics_nor_accepts_a_token_it_did_not_sign(
        token in prop_oneof![
            "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,43}",
            any::<String>(),
        ],
    ) {
        let service = token_service();
        prop_assert!(service.verify(&token, TokenType::Access).is_err());
        prop_assert!(service.verify(&token, TokenType::Refresh).is_err());
    }
}
