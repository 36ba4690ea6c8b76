//! Web origins (RFC 6454) as the browser-facing rules compare them: the CORS allow-list, the
//! sign-in page's `redirect_origins` and `rd` check, login CSRF, and the WebSocket `Origin`
//! check. No dependencies beyond `http`, so configuration, the account endpoints and the proxy
//! all use the one parser.
//!
//! An [`Origin`] is `http` or `https`, a host (lowercased) and a port (the scheme's default when
//! none is written); two origins are equal when all three are. "This host" ([`Origin::is_host`])
//! ignores the scheme, so a gateway behind a TLS-terminating load balancer still recognises
//! pages served through it.

use std::fmt;
use std::str::FromStr;

use http::uri::{Authority, Scheme};
use http::{HeaderMap, Uri};

use crate::path::is_unreserved;

/// A serialised origin: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses an origin exactly as browsers send it in `Origin`: `http` or `https`, a host and
    /// an optional port, nothing else (no userinfo, path, query or fragment). `None` otherwise,
    /// `"null"` included.
    pub fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\']) {
            return None;
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let https = match scheme {
            s if s.eq_ignore_ascii_case("https") => true,
            s if s.eq_ignore_ascii_case("http") => false,
            _ => return None,
        };
        let authority = Authority::from_str(rest).ok()?;
        Self::from_parts(https, &authority)
    }

    /// The origin of an absolute `http(s)://` URL (its path, query and fragment ignored), or
    /// `None` for anything else, a URL with userinfo included.
    pub fn of_url(url: &str) -> Option<Origin> {
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let uri = Uri::from_str(url).ok()?;
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let https = match uri.scheme()? {
            s if *s == Scheme::HTTPS => true,
            s if *s == Scheme::HTTP => false,
            _ => return None,
        };
        Self::from_parts(https, authority)
    }

    fn from_parts(https: bool, authority: &Authority) -> Option<Origin> {
        let host = authority.host();
        if host.is_empty() {
            return None;
        }
        // Anything after the host is a port, which must be a number that fits (`:` alone or
        // `:99999` is no origin).
        let has_port = authority.as_str().len() > host.len();
        let port = match authority.port_u16() {
            Some(p) => p,
            None if has_port => return None,
            None => default_port(https),
        };
        Some(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether this origin names the host a request was sent to: host and port equal to
    /// `host` (a `Host` header or `:authority` value), scheme ignored. A `host` without a port
    /// matches an origin on port 80 or 443, the ports browsers leave out.
    pub fn is_host(&self, host: &str) -> bool {
        let Ok(authority) = Authority::from_str(host) else {
            return false;
        };
        if authority.as_str().contains('@') || !authority.host().eq_ignore_ascii_case(&self.host) {
            return false;
        }
        match authority.port_u16() {
            Some(port) => port == self.port,
            None if authority.as_str().len() > authority.host().len() => false,
            None => self.port == 80 || self.port == 443,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host)?;
        if self.port != default_port(self.https) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

fn default_port(https: bool) -> u16 {
    if https {
        443
    } else {
        80
    }
}

/// Whether `value` is a valid `Host` (or `:authority`): `host[:port]`, where host is a DNS
/// name or IPv4 address (letters, digits, `-`, `.`, `_`, `~`) or a bracketed IPv6 address, and
/// port is 1–5 digits up to 65535. Refused: user information, lists (`gw, evil`), paths
/// (`gw/../x`), percent-encoding, spaces, an empty port. Empty is valid (RFC 9112 §3.2: a
/// target without authority sends an empty `Host`).
pub fn is_valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let (ip, after) = (&rest[..end], &rest[end + 1..]);
        let ipv6 = std::str::from_utf8(ip)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok());
        if ipv6.is_none() {
            return false;
        }
        match after {
            [] => return true,
            [b':', port @ ..] => (ip, Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    // A host name or IPv4 address is unreserved octets (a table lookup each: the host is
    // checked on every request); the port is read digit by digit, without a `str` parse.
    let name_ok =
        !host.is_empty() && host.iter().all(|&b| is_unreserved(b)) || value.starts_with(b"[");
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.iter()
                .try_fold(0u32, |n, &d| {
                    d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
                })
                .is_some_and(|n| n <= u32::from(u16::MAX))
    });
    name_ok && port_ok
}

/// The host a request was sent to: `:authority` (HTTP/2, absolute-form) or else the one
/// `Host` header, as text.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some(authority) = uri.authority() {
        return Some(authority.as_str());
    }
    headers.get(http::header::HOST)?.to_str().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_an_authority_without_user_information_lists_or_paths() {
        for good in [
            "gw",
            "gw.example.com",
            "GW.Example.com:8080",
            "127.0.0.1",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:443",
            "under_score.local",
            "",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "gw, evil", "gw,evil", "gw/../x", "gw/x", "user@gw", "gw:", "gw:65536", "gw:80:80",
            "gw:8o", "[::1", "[not-ip]", "[::1]x", "gw%2fx", "g w", ":80", "gw\\x", "gw?x", "gw#x",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn origins_parse_as_browsers_send_them_and_nothing_else() {
        let o = Origin::parse("https://App.Example.com").unwrap();
        assert_eq!(o.to_string(), "https://app.example.com");
        assert_eq!(
            Origin::parse("https://app.example.com:443").unwrap(),
            o,
            "a default port is the same origin"
        );
        assert_eq!(
            Origin::parse("http://127.0.0.1:8080").unwrap().to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            Origin::parse("http://[::1]:3000").unwrap().to_string(),
            "http://[::1]:3000"
        );
        for bad in [
            "null",
            "*",
            "",
            "app.example.com",
            "https://",
            "https://app.example.com/",
            "https://app.example.com/x",
            "https://u@app.example.com",
            "https://app.example.com?x",
            "ftp://app.example.com",
            "https://app.example.com:",
            "https://app.example.com:99999",
            "https://app .example.com",
            "https://app.example.com\\",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_origin_of_a_url_ignores_its_path_and_refuses_userinfo() {
        let o = Origin::of_url("https://app.example.com/x?y#z").unwrap();
        assert_eq!(o, Origin::parse("https://app.example.com").unwrap());
        assert_eq!(
            Origin::of_url("https://app.example.com@evil.example/"),
            None
        );
        assert_eq!(Origin::of_url("/path"), None);
        assert_eq!(Origin::of_url("https:evil.example"), None);
        assert_eq!(Origin::of_url("javascript://app.example.com"), None);
    }

    #[test]
    fn this_host_compares_host_and_port_and_ignores_the_scheme() {
        let https = Origin::parse("https://gw.example").unwrap();
        let http = Origin::parse("http://gw.example").unwrap();
        let dev = Origin::parse("http://localhost:8080").unwrap();
        assert!(https.is_host("gw.example"));
        assert!(https.is_host("GW.example:443"));
        assert!(
            http.is_host("gw.example"),
            "behind a TLS-terminating balancer"
        );
        assert!(!https.is_host("gw.example:8443"));
        assert!(!https.is_host("evil.example"));
        assert!(!https.is_host("gw.example.evil.example"));
        assert!(dev.is_host("localhost:8080"));
        assert!(!dev.is_host("localhost"));
        assert!(!dev.is_host("localhost:8081"));
        assert!(!dev.is_host("u@localhost:8080"));
        assert!(!dev.is_host(""));
    }
}
