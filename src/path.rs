//! Request-path rules with no dependencies: normalisation, the one canonical path that both
//! the routing decision and the forwarded request use (docs/http-api.md §4), and
//! [`under_prefix`], the one prefix test that the public service (auth prefix), the route
//! table and the configuration checks share.
//!
//! Steps, in this order:
//! 1. Check every raw byte: only RFC 3986 `pchar`s, `/` and `%` may appear. A raw `\` and
//!    anything hyper let through beyond that (space, `"`, non-ASCII, ...) is refused.
//! 2. Decode percent-escapes exactly once: unreserved octets (`A–Z a–z 0–9 - . _ ~`) become
//!    their character (so `%2e` is `.`), every other escape stays encoded with its hex
//!    upper-cased. An escape of `/`, `\` or NUL, a malformed escape and an overlong UTF-8
//!    lead byte are refused: an upstream that decodes them would see a different path.
//! 3. Collapse runs of `/` into one, THEN remove dot segments (RFC 3986 §5.2.4).
//!
//! Why collapse first: nginx's `merge_slashes` does the same, and it means an empty segment
//! can never absorb a `..`. With dot removal first, `/api//../admin/x` would become
//! `/api/admin/x` (the `..` eats the empty segment) — harmless for us, since we forward what
//! we matched, but an upstream that merges slashes itself would read `/api/../admin/x` as
//! `/admin/x`. Collapsing first gives `/admin/x` to both sides: the route decision matches the
//! interpretation any slash-merging server would make. Dot removal on a path without empty
//! segments cannot create new ones, so one collapse is enough.
//!
//! A trailing slash survives, and a final `.` or `..` segment leaves one (`/a/b/.` → `/a/b/`,
//! `/a/b/..` → `/a/`), as §5.2.4 does.

use thiserror::Error;

/// Why a request path was refused; [`PathError::reason`] is short enough for a 400 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path must start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in path")]
    MalformedEscape,
    /// `%2F`: an encoded `/` that an upstream might decode into a separator.
    #[error("encoded slash in path")]
    EncodedSlash,
    /// `%5C`: an encoded `\` that an upstream might treat as a separator.
    #[error("encoded backslash in path")]
    EncodedBackslash,
    /// A raw `\`.
    #[error("backslash in path")]
    Backslash,
    /// `%00`.
    #[error("encoded NUL in path")]
    EncodedNul,
    /// An escape that starts an overlong UTF-8 sequence (e.g. `%C0%AE`, a disguised `.`).
    #[error("overlong UTF-8 in path")]
    OverlongUtf8,
    /// A byte that is not allowed in a path (space, quote, control, non-ASCII, `#`, ...).
    #[error("invalid character in path")]
    InvalidCharacter,
    /// A `.` or `..` segment carrying `;` parameters, the `;` raw or encoded (`/api/..;/admin`,
    /// `/api/..%3B/admin`): servlet containers strip the parameters and then honour the dot
    /// segment, which would let a request authorised for one route reach another.
    #[error("dot segment with parameters in path")]
    DotSegmentParameters,
}

/// Normalises the path part (no query) of a request target; see the module docs for the steps.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(raw.as_bytes()) {
        return Ok(raw.to_owned());
    }
    let decoded = decode_unreserved(raw.as_bytes())?;
    remove_dot_segments_collapsed(&decoded)
}

/// True when the steps would give `raw` back unchanged, which a scan can tell without them:
/// an absolute path of allowed raw bytes with no escape, no empty segment but a final one
/// (a trailing `/`), and no segment starting with `.` (dot segments, with or without
/// parameters, and every other such segment go the long way). The usual request path: one
/// copy instead of three allocations and two rebuilds (1,200 instructions per request under
/// callgrind).
fn is_already_normal(raw: &[u8]) -> bool {
    let mut previous = b'/';
    for &b in raw.iter().skip(1) {
        let fine = match b {
            b'%' => false,
            b'/' | b'.' => previous != b'/',
            _ => check_raw_byte(b).is_ok(),
        };
        if !fine {
            return false;
        }
        previous = b;
    }
    raw.first() == Some(&b'/')
}

/// The part of `path` after `prefix` when `path` is `prefix` or lies below it on a segment
/// boundary: `""` when they are equal, otherwise a string starting with `/` (`/api` and
/// `/api/x` are under `/api`; `/apix` is not). Prefix `/` covers every path. The one
/// prefix test of the gateway: auth prefix, route table and config checks all use it.
pub fn under_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// What follows `prefix` in `path` for `strip_prefix` routes: `""` for the prefix itself
/// (the upstream gets its bare base path), `/...` below it, and the whole path otherwise.
pub(crate) fn remainder_after_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    under_prefix(path, prefix).unwrap_or(path)
}

/// Step 1 and 2 of the module docs. The output is pure ASCII.
fn decode_unreserved(raw: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let value = escape_at(raw, i)?;
            check_escaped_byte(raw, i, value)?;
            push_escaped(&mut out, value);
            i += 3;
        } else {
            check_raw_byte(b)?;
            out.push(char::from(b));
            i += 1;
        }
    }
    Ok(out)
}

/// The byte encoded by the `%XX` starting at `raw[i]`.
fn escape_at(raw: &[u8], i: usize) -> Result<u8, PathError> {
    let hi = raw.get(i + 1).and_then(|&c| hex_value(c));
    let lo = raw.get(i + 2).and_then(|&c| hex_value(c));
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathError::MalformedEscape),
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Refuses escapes whose decoding by an upstream would change the path's structure.
fn check_escaped_byte(raw: &[u8], i: usize, value: u8) -> Result<(), PathError> {
    match value {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        0 => Err(PathError::EncodedNul),
        _ if starts_overlong_utf8(value, next_escaped_byte(raw, i + 3)) => {
            Err(PathError::OverlongUtf8)
        }
        _ => Ok(()),
    }
}

/// The byte of the escape at `raw[j]`, if there is a well-formed one there.
fn next_escaped_byte(raw: &[u8], j: usize) -> Option<u8> {
    (raw.get(j) == Some(&b'%'))
        .then(|| escape_at(raw, j).ok())
        .flatten()
}

/// True for lead bytes that only ever begin an overlong (or never valid) UTF-8 sequence:
/// `C0`/`C1` (two-byte forms of ASCII, e.g. `%C0%AE` for `.`), `F5`–`FF`, and `E0`/`F0`
/// followed by a continuation byte too small for their length. A raw byte after a lead byte
/// cannot be a continuation byte (raw non-ASCII is refused), so only the next escape matters.
fn starts_overlong_utf8(lead: u8, next: Option<u8>) -> bool {
    match lead {
        0xC0 | 0xC1 | 0xF5..=0xFF => true,
        0xE0 => next.is_some_and(|n| (0x80..0xA0).contains(&n)),
        0xF0 => next.is_some_and(|n| (0x80..0x90).contains(&n)),
        _ => false,
    }
}

fn push_escaped(out: &mut String, value: u8) {
    if is_unreserved(value) {
        out.push(char::from(value));
    } else {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.push('%');
        out.push(char::from(HEX[usize::from(value >> 4)]));
        out.push(char::from(HEX[usize::from(value & 0x0F)]));
    }
}

/// RFC 3986 `pchar` minus `pct-encoded` (handled separately), plus the `/` separator.
fn check_raw_byte(b: u8) -> Result<(), PathError> {
    match b {
        b'\\' => Err(PathError::Backslash),
        _ if is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'/') => Ok(()),
        _ => Err(PathError::InvalidCharacter),
    }
}

/// Whether `b` is an RFC 3986 unreserved octet (`A–Z a–z 0–9 - . _ ~`), the characters of a
/// host name as well as of a path (the `Host` check uses it too). Read from a table: the class
/// is tested for every byte of every request's path and `Host`.
pub(crate) fn is_unreserved(b: u8) -> bool {
    UNRESERVED[usize::from(b)]
}

/// [`is_unreserved`] for every octet, built at compile time from its definition.
static UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    table
};

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Step 3 of the module docs on an already decoded absolute path: empty segments are skipped
/// (collapsing `//`), `.` is dropped, `..` pops the previous segment (never above the root).
fn remove_dot_segments_collapsed(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        if is_dot_with_parameters(segment) {
            return Err(PathError::DotSegmentParameters);
        }
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                kept.pop();
                trailing_slash = true;
            }
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// `.` or `..` followed by `;` parameters, the `;` raw or encoded (`%3B`, upper-cased by step
/// 2): servlet containers decode the segment, drop the parameters and honour the dot segment.
fn is_dot_with_parameters(segment: &str) -> bool {
    // Byte tests only: this runs on every segment of every request.
    let rest = match segment.as_bytes() {
        [b'.', b'.', rest @ ..] | [b'.', rest @ ..] => rest,
        _ => return false,
    };
    rest.first() == Some(&b';') || rest.starts_with(b"%3B")
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match normalize(raw) {
            Ok(p) => p,
            Err(e) => panic!("{raw:?} refused: {e}"),
        }
    }

    #[test]
    fn normalisation_table_gives_the_canonical_path() {
        let table = [
            ("/", "/"),
            ("/api", "/api"),
            ("/api/", "/api/"),
            ("/public/../api", "/api"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/%2E%2e/x", "/x"),
            ("/api/.%2e/x", "/x"),
            ("/api/../admin/x", "/admin/x"),
            ("/api/./../admin/x", "/admin/x"),
            ("//admin/x", "/admin/x"),
            ("/admin//x", "/admin/x"),
            ("/api//../admin/x", "/admin/x"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../..", "/"),
            ("/a/../../b", "/b"),
            ("/.", "/"),
            ("//", "/"),
            ("/a//", "/a/"),
            ("/a/.//", "/a/"),
            ("/%7e", "/~"),
            ("/%41", "/A"),
            ("/%252e%252e/", "/%252e%252e/"),
            ("/a%20b", "/a%20b"),
            ("/a%3bb", "/a%3Bb"),
            ("/a%e2%82%ac", "/a%E2%82%AC"),
            ("/..a/b", "/..a/b"),
            ("/a.../b", "/a.../b"),
            ("/admin;x/y", "/admin;x/y"),
            ("/admin%3Bx/y", "/admin%3Bx/y"),
            ("/...%3B/y", "/...%3B/y"),
            ("/a/..x%3B/y", "/a/..x%3B/y"),
            ("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
        ];
        for (raw, want) in table {
            assert_eq!(ok(raw), want, "normalising {raw:?}");
        }
    }

    #[test]
    fn ambiguous_or_invalid_paths_are_refused_with_their_reason() {
        use PathError::*;
        let table = [
            ("", NotAbsolute),
            ("api", NotAbsolute),
            ("*", NotAbsolute),
            ("/%2F", EncodedSlash),
            ("/a%2fb", EncodedSlash),
            ("/api%2f..%2fadmin/x", EncodedSlash),
            ("/a%5Cb", EncodedBackslash),
            ("/api/%5c../admin/x", EncodedBackslash),
            ("/a\\b", Backslash),
            ("/a%00", EncodedNul),
            ("/admin/x%00.json", EncodedNul),
            ("/%zz", MalformedEscape),
            ("/%", MalformedEscape),
            ("/%4", MalformedEscape),
            ("/%4g", MalformedEscape),
            ("/api/%c0%ae%c0%ae/admin/x", OverlongUtf8),
            ("/%C1%81", OverlongUtf8),
            ("/%e0%80%ae", OverlongUtf8),
            ("/%f0%80%80%ae", OverlongUtf8),
            ("/%ff", OverlongUtf8),
            ("/ä", InvalidCharacter),
            ("/a b", InvalidCharacter),
            ("/a\"b", InvalidCharacter),
            ("/a#b", InvalidCharacter),
            ("/a?b", InvalidCharacter),
            ("/a\u{7f}", InvalidCharacter),
            ("/a{b}", InvalidCharacter),
            ("/api/..;/admin/x", DotSegmentParameters),
            ("/api/.;x=1/admin", DotSegmentParameters),
            ("/api/%2e%2e;/admin", DotSegmentParameters),
            ("/public/..%3B/api/x", DotSegmentParameters),
            ("/public/..%3b/api/x", DotSegmentParameters),
            ("/public/%2e%2e%3b/api/x", DotSegmentParameters),
            ("/public/.%3Bx=1/api/x", DotSegmentParameters),
            ("/public/%2E%3bjsessionid=1/x", DotSegmentParameters),
        ];
        for (raw, want) in table {
            assert_eq!(normalize(raw), Err(want), "normalising {raw:?}");
        }
    }

    #[test]
    fn valid_multibyte_escapes_are_not_mistaken_for_overlong_ones() {
        assert_eq!(ok("/%E0%A4%85"), "/%E0%A4%85");
        assert_eq!(ok("/%F0%9F%98%80"), "/%F0%9F%98%80");
        assert_eq!(ok("/%C3%A4"), "/%C3%A4");
    }

    /// The scan that skips the steps must agree with them on every path it lets through,
    /// and let the plain ones through.
    #[test]
    fn the_already_normal_shortcut_agrees_with_the_full_steps() {
        let paths = [
            "/",
            "/api",
            "/api/",
            "/api/orders/1",
            "/a-b_c~d/e!f$g&h'i(j)k*l+m,n;o=p:q@r",
            "/api/x.json",
            "/api/a.b./c",
            "/api//x",
            "//",
            "/api/.",
            "/api/..",
            "/api/./x",
            "/.well-known/x",
            "/api/..;/admin",
            "/api/%2e%2e/admin",
            "/api/%41",
            "/api\\x",
            "/api/ x",
            "/api/\u{e9}",
            "/api/x/",
            "/api/x//",
        ];
        for raw in paths {
            let long_way = decode_unreserved(raw.as_bytes())
                .and_then(|decoded| remove_dot_segments_collapsed(&decoded));
            assert_eq!(normalize(raw), long_way, "{raw:?}");
            if is_already_normal(raw.as_bytes()) {
                assert_eq!(long_way.as_deref(), Ok(raw), "{raw:?} is not normal");
            }
        }
        for plain in ["/", "/api", "/api/", "/api/orders/1", "/api/x.json"] {
            assert!(is_already_normal(plain.as_bytes()), "{plain:?}");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in [
            "/api/%2e%2e/admin",
            "/%252e%252e/",
            "/a//./b/../c/",
            "/a%20b%7e",
        ] {
            let once = ok(raw);
            assert_eq!(ok(&once), once, "normalising {raw:?} twice");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries_only() {
        assert_eq!(under_prefix("/api/orders/1", "/api"), Some("/orders/1"));
        assert_eq!(under_prefix("/api", "/api"), Some(""));
        assert_eq!(under_prefix("/api/", "/api"), Some("/"));
        assert_eq!(under_prefix("/api/x", "/"), Some("/api/x"));
        assert_eq!(under_prefix("/apix", "/api"), None);
        assert_eq!(remainder_after_prefix("/apix", "/api"), "/apix");
    }
}
