//! Reading a bearer token from the `Authorization` header (RFC 6750 §2.1, docs/http-api.md §1, §6).
//!
//! Owns the one parser every token-checking path uses, so the gateway and any upstream can never
//! disagree about which credential a request carried. Invariants: exactly one `Authorization`
//! header holding exactly one credential, or none at all; the scheme matches `Bearer` in any
//! case; anything that is not visible ASCII is refused rather than treated as "no token".

use http::header::AUTHORIZATION;
use http::HeaderMap;

/// Why an `Authorization` header is a bad request (400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Two `Authorization` headers, or two credentials (or trailing junk) in one.
    #[error("more than one credential in Authorization")]
    MultipleCredentials,
    /// The header value holds bytes other than visible ASCII and spaces.
    #[error("Authorization is not visible ASCII")]
    Malformed,
}

/// The bearer token of a request.
///
/// `Ok(None)` (401 `missing_token`): no `Authorization` header, a scheme other than `Bearer`,
/// or `Bearer` with nothing after it. One or more spaces may follow the scheme; trailing spaces
/// are ignored. The returned token is not checked further: `TokenService::verify` does that.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(BearerError::MultipleCredentials);
    }
    // Visible ASCII and space only: tabs, obs-text and control bytes are malformed. A fold
    // without early exit, so the compiler scans many bytes per instruction (SIMD); then the
    // bytes are known ASCII and `from_utf8`'s ASCII fast path is all the conversion costs.
    let bytes = value.as_bytes();
    // One subtraction and compare per byte (0x20..=0x7e maps to 0..=0x5e), OR-ed together.
    let outside = bytes
        .iter()
        .fold(0u8, |acc, &b| acc | u8::from(b.wrapping_sub(0x20) > 0x5e));
    if outside != 0 {
        return Err(BearerError::Malformed);
    }
    let value = std::str::from_utf8(bytes).map_err(|_| BearerError::Malformed)?;
    let value = value.trim_matches(' ');
    // The space is found in the bytes: `split_once` with a `char` pattern cost 150
    // instructions on every authenticated request under callgrind.
    let (scheme, rest) = match value.bytes().position(|b| b == b' ') {
        Some(space) => (
            value.get(..space).unwrap_or(value),
            value.get(space + 1..).unwrap_or(""),
        ),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Ok(None);
    }
    let credential = rest.trim_start_matches(' ');
    if credential.is_empty() {
        return Ok(None);
    }
    // A byte scan without early exit (SIMD, as above): a `char` pattern costs several times as
    // much on every authenticated request.
    let separators = credential.bytes().fold(0u8, |acc, b| {
        acc | u8::from(b == b' ') | u8::from(b == b',')
    });
    if separators != 0 {
        return Err(BearerError::MultipleCredentials);
    }
    Ok(Some(credential))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        headers
    }

    fn parse(value: &str) -> Result<Option<String>, BearerError> {
        let headers = with(&[value.as_bytes()]);
        bearer_token(&headers).map(|t| t.map(str::to_owned))
    }

    #[test]
    fn bearer_scheme_is_matched_case_insensitively() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "BeArEr abc"] {
            assert_eq!(parse(v), Ok(Some("abc".into())), "{v}");
        }
    }

    #[test]
    fn several_spaces_after_the_scheme_and_trailing_spaces_are_allowed() {
        assert_eq!(parse("Bearer   a.b.c"), Ok(Some("a.b.c".into())));
        assert_eq!(parse("Bearer a.b.c   "), Ok(Some("a.b.c".into())));
    }

    #[test]
    fn no_header_is_no_token() {
        assert_eq!(bearer_token(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn other_schemes_are_no_token() {
        for v in [
            "Basic dXNlcjpwYXNz",
            "Token abc",
            "JWT abc",
            "Bearerabc",
            "",
            "Bearer_x y",
        ] {
            assert_eq!(parse(v), Ok(None), "{v}");
        }
    }

    #[test]
    fn bearer_with_nothing_after_it_is_no_token() {
        for v in ["Bearer", "Bearer ", "Bearer   ", "bearer"] {
            assert_eq!(parse(v), Ok(None), "{v:?}");
        }
    }

    #[test]
    fn two_authorization_headers_are_multiple_credentials() {
        let headers = with(&[b"Bearer a", b"Bearer a"]);
        assert_eq!(
            bearer_token(&headers),
            Err(BearerError::MultipleCredentials)
        );
        let headers = with(&[b"Basic x", b"Bearer a"]);
        assert_eq!(
            bearer_token(&headers),
            Err(BearerError::MultipleCredentials)
        );
    }

    #[test]
    fn two_credentials_or_trailing_junk_in_one_header_are_multiple_credentials() {
        for v in [
            "Bearer a, Bearer b",
            "Bearer a b",
            "Bearer a,b",
            "Bearer a .xyz",
            "Bearer ,",
        ] {
            assert_eq!(parse(v), Err(BearerError::MultipleCredentials), "{v}");
        }
    }

    #[test]
    fn non_ascii_tab_and_control_bytes_are_malformed() {
        let cases: [&[u8]; 5] = [
            b"Bearer \xff\xfe",
            "B\u{435}arer abc".as_bytes(),
            "Bearer\u{a0}abc".as_bytes(),
            b"Bearer\tabc",
            b"Bearer a\x80",
        ];
        for v in cases {
            assert_eq!(
                bearer_token(&with(&[v])),
                Err(BearerError::Malformed),
                "{v:?}"
            );
        }
    }
}
