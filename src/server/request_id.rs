//! The request id: kept from the client when it is a sane one, made up otherwise; returned to
//! the client, sent upstream and written to the access line.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::{StdRng, SysRng};
use rand::{Rng, SeedableRng};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's `X-Request-Id` when it sent exactly one of 1–128 visible ASCII characters
/// (0x21–0x7E); otherwise a new one from [`new_request_id`].
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut lines = headers.get_all(X_REQUEST_ID).iter();
    match (lines.next(), lines.next()) {
        (Some(id), None) if is_acceptable_request_id(id) => id.clone(),
        _ => new_request_id(),
    }
}

fn is_acceptable_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7E).contains(b))
}

thread_local! {
    /// Each thread's generator of request ids, seeded once from the OS (a system call per
    /// request cost about 2 % of a proxied request's CPU). `None` when seeding failed.
    static IDS: RefCell<Option<StdRng>> = RefCell::new(StdRng::try_from_rng(&mut SysRng).ok());
}

/// A fresh request id: 16 random bytes (the thread's ChaCha generator, seeded from the OS) as
/// 32 lowercase hex digits. Should the OS random source have failed, a process-unique id from
/// the clock and a counter is used instead — a request id correlates logs, it guards nothing.
pub fn new_request_id() -> HeaderValue {
    let mut bytes = [0u8; 16];
    let filled = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        ids.as_mut().map(|rng| rng.fill_bytes(&mut bytes)).is_some()
    });
    if !filled {
        bytes = fallback_id_bytes();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        hex[2 * i] = HEX[usize::from(b >> 4)];
        hex[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    // Owned by its Bytes: the id is cloned into the upstream request and the answer, and
    // clones of a value copied from a slice would allocate again to share it.
    HeaderValue::from_maybe_shared(Bytes::from_owner(hex))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn fallback_id_bytes() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&nanos.to_be_bytes());
    bytes[8..].copy_from_slice(&count.to_be_bytes());
    bytes
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn acceptable_client_request_id_is_kept() {
        let id = "a".repeat(128);
        assert_eq!(request_id(&map(&[("x-request-id", &id)])), id.as_str());
        assert_eq!(request_id(&map(&[("x-request-id", "!~")])), "!~");
    }

    #[test]
    fn unacceptable_client_request_ids_are_replaced() {
        let too_long = "a".repeat(129);
        let cases = [
            map(&[("x-request-id", &too_long)]),
            map(&[("x-request-id", "has space")]),
            map(&[("x-request-id", "")]),
            map(&[("x-request-id", "one"), ("x-request-id", "two")]),
            HeaderMap::new(),
        ];
        for headers in cases {
            let id = request_id(&headers);
            assert_eq!(id.len(), 32, "{headers:?}");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
        let mut non_ascii = HeaderMap::new();
        non_ascii.insert(
            X_REQUEST_ID,
            HeaderValue::from_bytes(b"id-\xc3\xa4").unwrap(),
        );
        assert_eq!(request_id(&non_ascii).len(), 32);
    }

    #[test]
    fn generated_request_ids_differ() {
        assert_ne!(new_request_id(), new_request_id());
    }
}
