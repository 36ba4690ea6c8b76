//! The cargo-fuzz targets of `fuzz/` run on stable: the same bodies (`fuzz/targets.rs`) driven
//! by proptest with arbitrary bytes and with inputs built from the pieces attacks are made of.
//! `AUTHGATE_FUZZ_CASES` raises the count per target (default 2 000) for a longer run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/targets.rs"]
mod targets;

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("AUTHGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Arbitrary bytes, or text made of fragments that parsers of this kind trip over.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"%2e".to_vec()),
        Just(b"..".to_vec()),
        Just(b"/".to_vec()),
        Just(b";".to_vec()),
        Just(b"=".to_vec()),
        Just(b"&".to_vec()),
        Just(b".".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"eyJ".to_vec()),
        Just(b"%ff".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"username".to_vec()),
        Just(b"password".to_vec()),
        Just(b"access_token_cookie".to_vec()),
        Just(b"[[routes]]\nprefix = ".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        proptest::collection::vec(fragment, 0..24).prop_map(|v| v.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn token_decoding(data in input()) { targets::token_decoding(&data); }

    #[test]
    fn path_normalisation(data in input()) { targets::path_normalisation(&data); }

    #[test]
    fn config_parsing(data in input()) { targets::config_parsing(&data); }

    #[test]
    fn auth_bodies(data in input()) { targets::auth_bodies(&data); }

    #[test]
    fn cookies(data in input()) { targets::cookies(&data); }

    #[test]
    fn forward_auth_headers(data in input()) { targets::forward_auth_headers(&data); }
}
