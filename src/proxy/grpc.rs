//! Recognising a gRPC call (docs/http-api.md §7.1): the requests whose refusals by the gateway are
//! answered the gRPC way (`ApiError::into_grpc_response`) instead of with §1 JSON.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Version};

/// True for an HTTP/2 request whose `Content-Type` is `application/grpc` or
/// `application/grpc+…` (`+proto`, `+json`, with or without parameters). gRPC-Web
/// (`application/grpc-web…`), which browsers speak over HTTP/1.1 too, is not gRPC here: its
/// clients read HTTP statuses.
pub fn is_grpc_request(version: Version, headers: &HeaderMap) -> bool {
    if version != Version::HTTP_2 {
        return false;
    }
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    const GRPC: &[u8] = b"application/grpc";
    let Some(head) = value.get(..GRPC.len()) else {
        return false;
    };
    head.eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';' | b' '))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers
    }

    #[test]
    fn grpc_is_http2_with_a_grpc_content_type_and_not_grpc_web() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "Application/GRPC",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc_request(Version::HTTP_2, &with(ct)), "{ct}");
            assert!(
                !is_grpc_request(Version::HTTP_11, &with(ct)),
                "{ct} over 1.1"
            );
        }
        for ct in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/json",
            "application/grpcx",
            "application/grp",
        ] {
            assert!(!is_grpc_request(Version::HTTP_2, &with(ct)), "{ct}");
        }
        assert!(!is_grpc_request(Version::HTTP_2, &HeaderMap::new()));
    }
}
