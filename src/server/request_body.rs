//! Reading a request body: JSON or form-urlencoded, at most `max_body` bytes, into a typed
//! struct — with the §1 error for every way that fails. The account endpoints read theirs
//! here.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Which encoding a body uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
}

/// Reads and decodes a request body of at most `max_body` bytes.
///
/// 415 for any other media type (checked first, so a wrong type is not read at all), 413 when
/// `Content-Length` or the bytes received pass the limit, 400 for malformed content, type
/// confusion or duplicate fields (serde derive refuses them).
pub async fn read<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Incoming,
    max_body: usize,
) -> Result<T, ApiError> {
    let encoding = encoding(headers)?;
    if declared_length(headers).is_some_and(|n| n > max_body as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let bytes = collect(body, max_body).await?;
    decode(encoding, &bytes)
}

/// Whether the body is declared `application/x-www-form-urlencoded` (a sign-in page post).
pub fn is_form(headers: &HeaderMap) -> bool {
    matches!(encoding(headers), Ok(Encoding::Form))
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let value = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::UnsupportedMediaType)?;
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Encoding::Form)
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn collect(body: Incoming, max_body: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, max_body).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::InvalidRequest(
            "the request body could not be read".into(),
        )),
    }
}

fn decode<T: DeserializeOwned>(encoding: Encoding, bytes: &[u8]) -> Result<T, ApiError> {
    match encoding {
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::InvalidRequest(format!("malformed JSON body: {}", json_reason(&e)).into())
        }),
        Encoding::Form if !form_is_utf8(bytes) => Err(ApiError::InvalidRequest(
            "malformed form body: a value is not UTF-8".into(),
        )),
        Encoding::Form => serde_urlencoded::from_bytes(bytes)
            .map_err(|e| ApiError::InvalidRequest(format!("malformed form body: {e}").into())),
    }
}

/// Whether every name and value of a form decodes to UTF-8. The form decoder would replace
/// bad bytes with U+FFFD, so `%FF` and `%FE` would check as one password: refuse instead.
/// (`%XX` escapes are decoded; anything else, a stray `%` included, is kept as it is.)
fn form_is_utf8(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'&')
        .all(|pair| percent_decode(pair).decode_utf8().is_ok())
}

/// Where the body went wrong, never what it held: serde_json's own messages quote values
/// (`invalid type: integer `12345678``), and a value may be a password.
fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => format!(
            "a field is missing, duplicated or of the wrong type at line {} column {}",
            e.line(),
            e.column()
        ),
        Category::Syntax | Category::Eof => {
            format!("invalid JSON at line {} column {}", e.line(), e.column())
        }
        Category::Io => "unreadable".to_owned(),
    }
}

/// A required text field: "blank" (missing, `null` or empty) is a 400 naming the field.
pub fn required<'a>(value: &'a Option<String>, field: &'static str) -> Result<&'a str, ApiError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::InvalidRequest(
            format!("{field} is required").into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Creds {
        username: Option<String>,
        password: Option<String>,
    }

    #[test]
    fn json_and_form_decode_to_the_same_fields() {
        let j: Creds = decode(Encoding::Json, br#"{"username":"a","password":"b","x":1}"#)
            .unwrap_or(Creds {
                username: None,
                password: None,
            });
        let f: Creds = decode(Encoding::Form, b"username=a&password=b").unwrap_or(Creds {
            username: None,
            password: None,
        });
        assert_eq!(j.username.as_deref(), Some("a"));
        assert_eq!(f.password.as_deref(), Some("b"));
    }

    #[test]
    fn a_mistyped_password_is_not_echoed_in_the_message() {
        let e = decode::<Creds>(Encoding::Json, br#"{"username":"a","password":12345678}"#);
        match e {
            Err(ApiError::InvalidRequest(m)) => assert!(!m.contains("12345678"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_and_mistyped_fields_are_invalid_requests() {
        let dup = decode::<Creds>(Encoding::Json, br#"{"username":"a","username":"b"}"#);
        assert!(matches!(dup, Err(ApiError::InvalidRequest(_))));
        let typed = decode::<Creds>(Encoding::Json, br#"{"username":5}"#);
        assert!(matches!(typed, Err(ApiError::InvalidRequest(_))));
    }

    #[test]
    fn media_type_is_matched_case_insensitively_with_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(encoding(&h).ok(), Some(Encoding::Json));
        h.insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        assert!(encoding(&h).is_err());
    }

    #[test]
    fn form_values_that_are_not_utf8_are_refused_not_replaced() {
        let bad = decode::<Creds>(Encoding::Form, b"username=a&password=%FF%FE");
        assert!(matches!(bad, Err(ApiError::InvalidRequest(_))));
        let raw = decode::<Creds>(Encoding::Form, b"username=a&password=\xff");
        assert!(matches!(raw, Err(ApiError::InvalidRequest(_))));
        let ok: Option<Creds> =
            decode(Encoding::Form, b"username=a&password=%C3%A9t%C3%A9+100%").ok();
        assert_eq!(
            ok.and_then(|c| c.password).as_deref(),
            Some("\u{e9}t\u{e9} 100%")
        );
    }

    #[test]
    fn stray_percent_signs_are_kept_not_refused() {
        let ok: Option<Creds> = decode(Encoding::Form, b"username=a%zz&password=50%25%").ok();
        let creds = ok.expect("decodes");
        assert_eq!(creds.username.as_deref(), Some("a%zz"));
        assert_eq!(creds.password.as_deref(), Some("50%%"));
    }

    #[test]
    fn blank_means_missing_null_or_empty() {
        assert!(required(&None, "password").is_err());
        assert!(required(&Some(String::new()), "password").is_err());
        assert_eq!(required(&Some(" ".into()), "password").ok(), Some(" "));
    }
}
