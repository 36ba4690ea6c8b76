//! Property tests of the parsers every request goes through: whatever the input, they never
//! panic, and what they accept is canonical.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authgate::auth::bearer::bearer_token;
use authgate::path::{normalize, under_prefix};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

/// Paths built from the pieces path tricks are made of.
fn tricky_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5c".to_owned()),
        Just("%00".to_owned()),
        Just("%25".to_owned()),
        Just(";".to_owned()),
        Just("%3b".to_owned()),
        Just("%3B".to_owned()),
        Just("%".to_owned()),
        Just("%c0%ae".to_owned()),
        "[a-zA-Z0-9_~-]{1,4}",
        "%[0-9a-fA-F]{2}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalised_paths_are_canonical_and_stable(raw in tricky_path()) {
        if let Ok(path) = normalize(&raw) {
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.contains("//"), "{path}");
            for segment in path.split('/') {
                prop_assert!(segment != "." && segment != "..", "{path}");
                prop_assert!(!segment.starts_with(".;") && !segment.starts_with("..;"), "{path}");
                prop_assert!(!segment.starts_with(".%3B") && !segment.starts_with("..%3B"), "{path}");
            }
            let lower = path.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%00"));
            prop_assert!(!lower.contains("%2e"), "unreserved escapes are decoded: {path}");
            let again = normalize(&path);
            prop_assert_eq!(again.as_deref(), Ok(path.as_str()), "normalising twice");
        }
    }

    #[test]
    fn normalize_never_panics_on_any_string(raw in any::<String>()) {
        let _ = normalize(&raw);
    }

    #[test]
    fn a_normalised_path_under_a_prefix_stays_under_it(rest in tricky_path()) {
        let raw = format!("/api{rest}");
        if let Ok(path) = normalize(&raw) {
            // Dot segments may climb out of /api; then the path must not claim to be under it
            // unless it really is.
            if let Some(after) = under_prefix(&path, "/api") {
                prop_assert!(after.is_empty() || after.starts_with('/'));
                prop_assert!(path == "/api" || path.starts_with("/api/"));
            }
        }
    }

    #[test]
    fn bearer_parsing_never_panics_and_never_returns_junk(value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert(http::header::AUTHORIZATION, v);
            if let Ok(Some(token)) = bearer_token(&headers) {
                prop_assert!(!token.is_empty());
                prop_assert!(!token.contains(' ') && !token.contains(','));
            }
        }
    }
}
