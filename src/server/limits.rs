//! Limits on a request's head: the request-target (8 KiB, `414`) and the header section
//! (`[server] max_header_bytes` and `max_headers`, `431`), the same on HTTP/1.1 and HTTP/2.
//!
//! Two layers enforce them. The protocol layer (hyper's HTTP/1 parser, h2's HPACK decoder)
//! has hard caps that bound the memory a pending request head can hold; what it refuses it
//! answers itself, without a body or a request id. So those caps sit above the configured
//! limits ([`HeadLimits::http1_buffer`], [`HeadLimits::http1_fields`],
//! [`HeadLimits::http2_header_list`]), and the gateway checks the configured limits first on
//! every request that gets through ([`HeadLimits::check`]), answering with the §1 JSON body and
//! a request id. Only a head far over the limits meets the protocol layer's bare answer.

use http::Request;

use crate::error::ApiError;

/// Longest request-target answered normally: longer ones are `414 uri_too_long`.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// What each header field adds to its name and value in the byte count (RFC 9113 §6.5.2).
pub const FIELD_OVERHEAD: usize = 32;

/// hyper's HTTP/1 parser keeps room for this many fields on the stack; more costs a heap
/// allocation per request.
const HYPER_INLINE_FIELDS: usize = 100;

/// Room above the configured header bytes for the request line or pseudo-headers: a
/// request-target of up to 8 KiB plus as much again, so a head somewhat over the limits still
/// reaches the gateway's own check.
const PROTOCOL_SLACK: usize = 2 * MAX_TARGET_BYTES;

/// hyper refuses an HTTP/1 read buffer below this size (it panics).
const HYPER_MIN_BUFFER: usize = 8192;

/// The configured header limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest header section: names plus values plus [`FIELD_OVERHEAD`] a field.
    pub max_header_bytes: usize,
    /// Most header fields (pseudo-headers are not fields).
    pub max_headers: usize,
}

impl HeadLimits {
    /// `414` for a request-target over [`MAX_TARGET_BYTES`], `431` for a header section over
    /// the limits; checked before anything else looks at the request.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), ApiError> {
        if target_len(req) > MAX_TARGET_BYTES {
            return Err(ApiError::UriTooLong);
        }
        let headers = req.headers();
        if headers.len() > self.max_headers {
            return Err(ApiError::HeadersTooLarge(
                "The request has too many header fields.",
            ));
        }
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
            .sum();
        if bytes > self.max_header_bytes {
            return Err(ApiError::HeadersTooLarge(
                "The request header section is too large.",
            ));
        }
        Ok(())
    }

    /// hyper's HTTP/1 read buffer, which caps the raw bytes of a request head (request line
    /// included): the header bytes, the longest target and slack. A field's raw size (name,
    /// `": "`, value, CRLF) is below its counted size, so every head within the limits fits.
    pub fn http1_buffer(&self) -> usize {
        (self.max_header_bytes + PROTOCOL_SLACK).max(HYPER_MIN_BUFFER)
    }

    /// How many fields hyper's HTTP/1 parser accepts, when it must differ from its default of
    /// 100: twice the configured count, so a request somewhat over it reaches the gateway.
    pub fn http1_fields(&self) -> Option<usize> {
        let fields = self.max_headers.saturating_mul(2);
        (fields > HYPER_INLINE_FIELDS).then_some(fields)
    }

    /// The HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE` advertised and enforced by h2 (which counts
    /// pseudo-headers too).
    pub fn http2_header_list(&self) -> u32 {
        u32::try_from(self.max_header_bytes + PROTOCOL_SLACK).unwrap_or(u32::MAX)
    }
}

/// The length of the request-target as the client sent it: the origin-form path and query,
/// or the whole absolute-form target on HTTP/1; `:path` on HTTP/2 (whose `:scheme` and
/// `:authority` are separate fields).
fn target_len<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if req.version() >= http::Version::HTTP_2 {
        return path;
    }
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    scheme + authority + path
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_bytes: 1024,
        max_headers: 4,
    };

    fn request(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a valid request")
    }

    #[test]
    fn a_target_of_8_kib_passes_and_one_byte_more_is_414() {
        let at = format!("/{}", "a".repeat(MAX_TARGET_BYTES - 1));
        assert_eq!(LIMITS.check(&request(&at, &[])), Ok(()));
        let over = format!("{at}b");
        assert_eq!(
            LIMITS.check(&request(&over, &[])),
            Err(ApiError::UriTooLong)
        );
        let query = format!("/x?{}", "q".repeat(MAX_TARGET_BYTES));
        assert_eq!(
            LIMITS.check(&request(&query, &[])),
            Err(ApiError::UriTooLong)
        );
    }

    #[test]
    fn an_absolute_form_target_counts_scheme_and_authority_on_http1_only() {
        let path = format!("/{}", "a".repeat(MAX_TARGET_BYTES - 10));
        let absolute = format!("http://gw.example{path}");
        assert_eq!(
            LIMITS.check(&request(&absolute, &[])),
            Err(ApiError::UriTooLong)
        );
        let mut h2 = request(&absolute, &[]);
        *h2.version_mut() = http::Version::HTTP_2;
        assert_eq!(LIMITS.check(&h2), Ok(()));
    }

    #[test]
    fn header_bytes_count_names_values_and_32_a_field() {
        // One field: 1 + value + 32 bytes.
        let fits = "v".repeat(1024 - 1 - FIELD_OVERHEAD);
        assert_eq!(LIMITS.check(&request("/", &[("x", &fits)])), Ok(()));
        let over = format!("{fits}v");
        assert!(matches!(
            LIMITS.check(&request("/", &[("x", &over)])),
            Err(ApiError::HeadersTooLarge(_))
        ));
    }

    #[test]
    fn header_fields_are_counted_with_repeats() {
        let four = [("a", "1"), ("a", "2"), ("b", "3"), ("c", "4")];
        assert_eq!(LIMITS.check(&request("/", &four)), Ok(()));
        let five = [("a", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("a", "5")];
        assert!(matches!(
            LIMITS.check(&request("/", &five)),
            Err(ApiError::HeadersTooLarge(_))
        ));
    }

    #[test]
    fn protocol_caps_sit_above_the_configured_limits() {
        let defaults = HeadLimits {
            max_header_bytes: 65536,
            max_headers: 100,
        };
        assert_eq!(defaults.http1_buffer(), 65536 + 16384);
        assert_eq!(defaults.http1_fields(), Some(200));
        assert_eq!(defaults.http2_header_list(), 65536 + 16384);
        let small = HeadLimits {
            max_header_bytes: 1024,
            max_headers: 10,
        };
        // hyper's built-in room for 100 fields is kept: no allocation per request.
        assert_eq!(small.http1_buffer(), 1024 + 16384);
        assert_eq!(small.http1_fields(), None);
    }
}
