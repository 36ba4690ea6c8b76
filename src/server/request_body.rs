//! Reading a request body: JSON or form-urlencoded, at most `max_body` bytes, each piece
//! arriving within `body_timeout` of the last, into a typed struct — with the §1 error for
//! every way that fails. The account endpoints read theirs here.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;
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

/// How much of a body may be read, and how slowly.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Most bytes accepted (`413` beyond).
    pub max_body: usize,
    /// Longest wait for the next piece of the body (`408` beyond).
    pub timeout: Duration,
}

/// Reads and decodes a request body within `limits`.
///
/// 415 for any other media type (checked first, so a wrong type is not read at all), 413 when
/// `Content-Length` or the bytes received pass the limit, 408 when the body stops moving for
/// the timeout, 400 for malformed content, type confusion or duplicate fields (serde derive
/// refuses them).
pub async fn read<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Incoming,
    limits: BodyLimits,
) -> Result<T, ApiError> {
    let encoding = encoding(headers)?;
    if declared_length(headers).is_some_and(|n| n > limits.max_body as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let bytes = collect(body, limits).await?;
    decode(encoding, &bytes)
}

/// Decodes a body already read as `headers`' `Content-Type` says (JSON or form), with the
/// errors of [`read`] for its content; what [`read`] does after the bytes arrived, and what
/// the fuzz targets drive.
pub fn decode_body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    decode(encoding(headers)?, bytes)
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

/// The whole body may take this many timeouts: a body trickling a byte just within the
/// timeout would otherwise hold its connection for `max_body` timeouts.
const WHOLE_BODY_TIMEOUTS: u32 = 3;

/// The body's bytes, at most `max_body` of them, each frame arriving within the timeout of
/// the one before and all of them within [`WHOLE_BODY_TIMEOUTS`] timeouts; otherwise `408`.
/// (Trailers are read and dropped.)
async fn collect<B>(mut body: B, limits: BodyLimits) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes> + Unpin,
{
    let deadline = tokio::time::Instant::now() + limits.timeout * WHOLE_BODY_TIMEOUTS;
    let mut bytes = BytesMut::new();
    loop {
        let next = deadline.min(tokio::time::Instant::now() + limits.timeout);
        let frame = match tokio::time::timeout_at(next, body.frame()).await {
            Err(_) => return Err(ApiError::RequestTimeout),
            Ok(None) => return Ok(bytes.freeze()),
            Ok(Some(Err(_))) => {
                return Err(ApiError::InvalidRequest(
                    "the request body could not be read".into(),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limits.max_body {
                return Err(ApiError::PayloadTooLarge);
            }
            bytes.extend_from_slice(&data);
        }
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

    /// A body that yields its pieces and then never ends (nor wakes anyone).
    struct Stalling(std::collections::VecDeque<&'static [u8]>);

    impl Body for Stalling {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            match self.0.pop_front() {
                Some(piece) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(
                    Bytes::from_static(piece),
                )))),
                None => std::task::Poll::Pending,
            }
        }
    }

    fn stalling(pieces: &[&'static [u8]]) -> Stalling {
        Stalling(pieces.iter().copied().collect())
    }

    const LIMITS: BodyLimits = BodyLimits {
        max_body: 8,
        timeout: Duration::from_millis(20),
    };

    #[tokio::test]
    async fn a_body_that_stops_moving_is_a_request_timeout() {
        let res = collect(stalling(&[b"{", b"\"a"]), LIMITS).await;
        assert_eq!(res, Err(ApiError::RequestTimeout));
    }

    /// A body that yields a byte each time it is polled, waking itself after `every`.
    struct Trickling {
        every: Duration,
        timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }

    impl Body for Trickling {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            use std::future::Future as _;
            let every = self.every;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
            std::task::ready!(timer.as_mut().poll(cx));
            self.timer = None;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b" ")))))
        }
    }

    #[tokio::test]
    async fn a_body_that_keeps_trickling_is_cut_after_three_timeouts() {
        let limits = BodyLimits {
            max_body: 1 << 20,
            timeout: Duration::from_millis(40),
        };
        let body = Trickling {
            every: Duration::from_millis(5),
            timer: None,
        };
        assert_eq!(collect(body, limits).await, Err(ApiError::RequestTimeout));
    }

    #[tokio::test]
    async fn a_complete_body_is_read_and_an_oversized_one_is_refused() {
        let full = http_body_util::Full::new(Bytes::from_static(b"12345678"));
        assert_eq!(
            collect(full, LIMITS).await,
            Ok(Bytes::from_static(b"12345678"))
        );
        let over = collect(stalling(&[b"12345", b"6789"]), LIMITS).await;
        assert_eq!(over, Err(ApiError::PayloadTooLarge));
    }

    #[test]
    fn blank_means_missing_null_or_empty() {
        assert!(required(&None, "password").is_err());
        assert!(required(&Some(String::new()), "password").is_err());
        assert_eq!(required(&Some(" ".into()), "password").ok(), Some(" "));
    }
}
