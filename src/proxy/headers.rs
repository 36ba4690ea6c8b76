//! Header rewriting between client and upstream (docs/http-api.md §4).
//!
//! Request side, in this order (the order is the security property):
//! 1. [`strip_hop_by_hop`]: fields named in `Connection`, then the standard hop-by-hop set
//!    (`Trailer` is end-to-end and stays; `TE: trailers` is put back by [`set_te_trailers`]);
//! 2. [`HeaderRewriter::strip_identity`]: every client copy of an identity header (configured
//!    and default names), any spelling, and every header under `strip_header_prefixes`;
//! 3. [`HeaderRewriter::add_identity`]: the gateway's own values (authenticated routes only);
//! 4. [`set_forwarding`], [`strip_routing_overrides`], [`append_via`], [`join_cookies`], the
//!    request id.
//!
//! Because removal by `Connection` happens in step 1, a client can never use it to delete a
//! header the gateway adds later. Response side: [`clean_response`] and [`append_via`]. All
//! names used here are static constants, never parsed per request.

use std::net::IpAddr;

use http::header::{CONNECTION, CONTENT_LENGTH, COOKIE, HOST, MAX_FORWARDS, TE, UPGRADE, VIA};
use http::{HeaderMap, HeaderName, HeaderValue, Version};
use thiserror::Error;

use crate::auth::identity::{HeaderValues, Identity, UnsendableField};
use crate::config::IdentityHeaders;
use crate::server::request_id::X_REQUEST_ID;

/// `Keep-Alive` (RFC 9112 hop-by-hop).
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection` (non-standard hop-by-hop still sent by old clients).
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Prefix`.
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// The standard hop-by-hop set removed in both directions. `Trailer` is not in it: it names
/// the trailer fields of this message end to end (docs/http-api.md §7.1), and hyper writes an
/// HTTP/1.1 message's trailers only when it is there. `TE` is, and only `TE: trailers` is put
/// back ([`set_te_trailers`]). `Keep-Alive` is RFC 9112's; `Proxy-Connection` is non-standard
/// and still sent by old clients.
///
/// These sets are `match`es on the lowercase name rather than lists of [`HeaderName`]s: a name
/// is compared by length first, where a list compared every name of it with every field of
/// the message (2,900 instructions per proxied request under callgrind).
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Fields a `Connection` header may not nominate: removing them would change the message's
/// framing (`Content-Length`) or lose the client's host before it reaches `X-Forwarded-Host`.
/// The gateway recomputes both toward the upstream anyway.
const NOT_NOMINATABLE: [HeaderName; 2] = [CONTENT_LENGTH, HOST];

/// Forwarding headers a client could spoof and that the gateway does not vouch for: dropped
/// so an upstream never believes a client-chosen address, port or path prefix.
fn is_rival_forwarding(name: &str) -> bool {
    matches!(
        name,
        "forwarded" | "x-real-ip" | "x-forwarded-port" | "x-forwarded-prefix" | "x-forwarded-uri"
    )
}

/// Headers some frameworks honour to override the method or path the gateway authorised.
fn is_routing_override(name: &str) -> bool {
    matches!(
        name,
        "x-original-url"
            | "x-rewrite-url"
            | "x-http-method-override"
            | "x-http-method"
            | "x-method-override"
    )
}

/// Removes the fields named in any `Connection` header (comma-separated, any case), then the
/// standard hop-by-hop set. `Content-Length` and `Host` cannot be nominated.
///
/// Run it after the auth step has read `Authorization`: a client may nominate that too.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_nominated(headers) {
        if !NOT_NOMINATABLE.contains(&name) {
            headers.remove(&name);
        }
    }
    // One hop-by-hop name removed per pass, at most eight passes: an upstream's answer always
    // carries `Connection`, and a collected list would be an allocation on every answer. (A
    // list on the stack cost more than the second pass: 340 instructions a request to set
    // up, move and drop, under callgrind.)
    while let Some(name) = headers.keys().find(|n| is_hop_by_hop(n.as_str())).cloned() {
        headers.remove(name);
    }
}

/// Whether a `Connection` token, in any case, is a name of the standard hop-by-hop set, which
/// [`strip_hop_by_hop`] removes anyway: such a token (an upstream's `keep-alive`, a client's
/// `upgrade`) needs no lookup among the fields present.
fn token_is_hop_by_hop(token: &[u8]) -> bool {
    // The longest name of the set is `proxy-authorization` (19 bytes).
    let mut lower = [0u8; 19];
    let Some(lower) = lower.get_mut(..token.len()) else {
        return false;
    };
    for (to, from) in lower.iter_mut().zip(token) {
        *to = from.to_ascii_lowercase();
    }
    std::str::from_utf8(lower).is_ok_and(is_hop_by_hop)
}

/// The fields present that the `Connection` header lines nominate (`Content-Length` and `Host`
/// included: [`strip_hop_by_hop`] sorts those out). Tokens of the standard hop-by-hop set
/// (`keep-alive`, `upgrade`, ...) are skipped: the standard pass removes those fields anyway.
/// Any other token is looked up as it stands and only a field found is parsed into a name, so
/// the usual message's tokens (`close`, ...), which name no field present, cost no
/// allocation; tokens that are not header names name nothing.
fn connection_nominated(headers: &HeaderMap) -> Vec<HeaderName> {
    connection_tokens(headers)
        .filter(|token| !token.is_empty() && !token_is_hop_by_hop(token))
        .filter(|token| std::str::from_utf8(token).is_ok_and(|name| headers.contains_key(name)))
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect()
}

/// Removes every field whose name is in the set `listed` tests. One pass over the names
/// present (a request carries a handful) instead of a hashed lookup for each listed name,
/// nearly all of them absent on nearly every request: 4,500 fewer instructions per proxied
/// request under callgrind.
fn remove_present(headers: &mut HeaderMap, listed: fn(&str) -> bool) {
    remove_where(headers, |name| listed(name.as_str()));
}

/// Removes every field whose name `doomed` picks, walking the names present once. Collected
/// rather than removed a pass at a time: a client may send many fields one predicate picks
/// (a `strip_header_prefixes` family), and a pass per field would be quadratic.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    // Empty unless a name is picked: no allocation on the usual request.
    let mut picked = Vec::new();
    for name in headers.keys() {
        if doomed(name) {
            picked.push(name.clone());
        }
    }
    for name in picked {
        headers.remove(name);
    }
}

/// Removes client headers that claim a method or path other than the request's own
/// (`X-Original-URL`, `X-Rewrite-URL`, `X-HTTP-Method-Override`, `X-HTTP-Method`,
/// `X-Method-Override`).
pub fn strip_routing_overrides(headers: &mut HeaderMap) {
    remove_present(headers, is_routing_override);
}

/// An identity value that cannot be sent as a header; the request must fail (500), never be
/// forwarded without identity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("identity value for {header} cannot be sent as a header value")]
pub struct IdentityValueError {
    /// The identity header whose value was refused (the value itself is not kept).
    pub header: HeaderName,
}

/// The default identity header names: still stripped from clients after a rename, since an
/// upstream written against the defaults may read them.
const DEFAULT_IDENTITY_NAMES: [&str; 5] = [
    "x-auth-user-id",
    "x-auth-username",
    "x-auth-roles",
    "x-auth-session-id",
    "x-auth-fresh",
];

/// Identity-header handling compiled once from `[proxy] identity_headers` and
/// `strip_header_prefixes`.
#[derive(Debug, Clone)]
pub struct HeaderRewriter {
    names: IdentityHeaders,
    /// The configured and default names lowercased with `_` turned into `-`, compared against
    /// client names folded the same way.
    folded: Vec<String>,
    /// `strip_header_prefixes`, folded the same way.
    prefixes: Vec<String>,
}

impl HeaderRewriter {
    /// Precomputes the folded spellings of the configured and default identity names and of
    /// the prefixes whose headers never reach upstreams.
    pub fn new(names: &IdentityHeaders, prefixes: &[String]) -> HeaderRewriter {
        let fold_all = |name: &str| -> String { name.bytes().map(fold).map(char::from).collect() };
        let mut folded: Vec<String> = names
            .names()
            .iter()
            .map(|n| n.as_str())
            .chain(DEFAULT_IDENTITY_NAMES)
            .map(fold_all)
            .collect();
        folded.sort();
        folded.dedup();
        HeaderRewriter {
            names: names.clone(),
            folded,
            prefixes: prefixes.iter().map(|p| fold_all(p)).collect(),
        }
    }

    /// Removes every header whose name, lowercased with `_` read as `-`, is an identity name
    /// (`X_Auth_User_Id`, `x-auth_user-id`, `X-AUTH-USER-ID` all go) or starts with one of
    /// `strip_header_prefixes`. Run on every route.
    pub fn strip_identity(&self, headers: &mut HeaderMap) {
        remove_where(headers, |name| self.is_identity(name.as_str()));
    }

    fn is_identity(&self, name: &str) -> bool {
        let starts = |folded: &String| {
            folded.len() <= name.len()
                && folded
                    .bytes()
                    .zip(name.bytes())
                    .all(|(want, got)| want == fold(got))
        };
        self.prefixes.iter().any(starts)
            || self
                .folded
                .iter()
                .any(|folded| folded.len() == name.len() && starts(folded))
    }

    /// Sets the five identity headers of `identity` (replacing any value present). Nothing is
    /// inserted unless every value is valid: visible ASCII or inner spaces, and no `,` inside a
    /// role. The values come from the verified-token cache's slot when the identity came from
    /// there (worked out once per token).
    pub fn add_identity(
        &self,
        headers: &mut HeaderMap,
        identity: &Identity,
    ) -> Result<(), IdentityValueError> {
        let values = identity
            .header_values()
            .map_err(|field| self.unsendable(field))?;
        self.insert_identity(headers, &values, identity.fresh);
        Ok(())
    }

    fn insert_identity(&self, headers: &mut HeaderMap, values: &HeaderValues, fresh: bool) {
        let names = &self.names;
        let fresh = HeaderValue::from_static(if fresh { "true" } else { "false" });
        headers.insert(names.user_id.clone(), values.user_id.clone());
        headers.insert(names.username.clone(), values.username.clone());
        headers.insert(names.roles.clone(), values.roles.clone());
        headers.insert(names.session_id.clone(), values.session_id.clone());
        headers.insert(names.fresh.clone(), fresh);
    }

    /// The error naming the configured header of `field`.
    fn unsendable(&self, field: UnsendableField) -> IdentityValueError {
        let header = match field {
            UnsendableField::Username => &self.names.username,
            UnsendableField::Roles => &self.names.roles,
            UnsendableField::SessionId => &self.names.session_id,
        };
        IdentityValueError {
            header: header.clone(),
        }
    }
}

fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// What the gateway vouches for in the forwarding headers of one request.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// `http` or `https`: how the client reached the gateway.
    pub proto: &'static str,
    /// The host the client asked for (see [`client_host`]), if any.
    pub host: Option<&'a HeaderValue>,
    /// The route prefix removed by `strip_prefix`, if any.
    pub prefix: Option<&'a HeaderValue>,
}

/// Appends the peer to `X-Forwarded-For` (every existing line kept, joined in order into one
/// comma list), sets `X-Forwarded-Proto`, sets `X-Forwarded-Host` to the client's host or
/// removes a client-sent one when there is none, drops rival forwarding headers the gateway
/// does not vouch for (`Forwarded`, `X-Real-IP`, `X-Forwarded-Port`, `X-Forwarded-Prefix`,
/// `X-Forwarded-Uri`), then sets `X-Forwarded-Prefix` to the stripped prefix, if any.
pub fn set_forwarding(headers: &mut HeaderMap, fwd: &Forwarding<'_>) {
    let forwarded_for = appended_forwarded_for(headers, fwd.peer.to_canonical());
    headers.insert(X_FORWARDED_FOR, forwarded_for);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(fwd.proto));
    match fwd.host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
    remove_present(headers, is_rival_forwarding);
    if let Some(prefix) = fwd.prefix {
        headers.insert(X_FORWARDED_PREFIX, prefix.clone());
    }
}

/// The host the client asked for (docs/http-api.md §7.1): the absolute-form request-target's
/// authority (HTTP/1.1), else `:authority` (HTTP/2 — hyper puts both in the URI), else `Host`.
/// User information in an authority is never part of it.
pub fn client_host(uri: &http::Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    if let Some(authority) = uri.authority() {
        let full = authority.as_str();
        let host = full.rsplit_once('@').map_or(full, |(_, host)| host);
        return HeaderValue::from_str(host).ok();
    }
    headers.get(HOST).cloned()
}

/// Whether the client's `TE` lists `trailers` (read before [`strip_hop_by_hop`] removes it).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(|token| token.split(|&b| b == b';').next().unwrap_or_default())
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"trailers"))
}

/// Puts back `TE: trailers`, the one `TE` value forwarded (gRPC servers require it).
pub fn set_te_trailers(headers: &mut HeaderMap) {
    headers.insert(TE, HeaderValue::from_static("trailers"));
}

/// Joins several `Cookie` fields (HTTP/2 clients send one per cookie) into one, separated by
/// `; ` (RFC 9113 §8.2.3): an HTTP/1.1 upstream reading several `Cookie` lines would join them
/// with `, ` and misread the values.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut lines = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (lines.next(), lines.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for line in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(line.as_bytes());
    }
    // Valid values joined by `; ` are a valid value; the check only keeps this panic-free.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// Appends the gateway's `Via` entry (`1.0 authgate`, `1.1 authgate`, `2 authgate`: the
/// version the message was received in) after any entries already present.
pub fn append_via(headers: &mut HeaderMap, received_in: Version) {
    let entry: &'static str = match received_in {
        Version::HTTP_09 => "0.9 authgate",
        Version::HTTP_10 => "1.0 authgate",
        Version::HTTP_2 => "2 authgate",
        Version::HTTP_3 => "3 authgate",
        _ => "1.1 authgate",
    };
    headers.append(VIA, HeaderValue::from_static(entry));
}

/// `Max-Forwards` as a number; `None` when absent, repeated or not a decimal integer.
pub fn max_forwards(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(MAX_FORWARDS).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|v| v.trim().parse().ok()),
        _ => None,
    }
}

/// Decrements a `Max-Forwards` above zero (an `OPTIONS` the gateway forwards).
pub fn decrement_max_forwards(headers: &mut HeaderMap) {
    if let Some(n) = max_forwards(headers).filter(|&n| n > 0) {
        headers.insert(MAX_FORWARDS, HeaderValue::from(n - 1));
    }
}

/// The existing `X-Forwarded-For` lines joined with `, `, then `peer`. Blank lines are dropped.
fn appended_forwarded_for(headers: &HeaderMap, peer: IpAddr) -> HeaderValue {
    let mut joined: Vec<u8> = Vec::with_capacity(64);
    for line in headers.get_all(X_FORWARDED_FOR) {
        let line = line.as_bytes().trim_ascii();
        if !line.is_empty() {
            joined.extend_from_slice(line);
            joined.extend_from_slice(b", ");
        }
    }
    let start = joined.len();
    push_ip(&mut joined, peer);
    // Existing lines were valid values and `, ` and an address are too; the fallback is
    // only there so no branch can panic.
    HeaderValue::from_bytes(&joined)
        .or_else(|_| HeaderValue::from_bytes(&joined[start..]))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Appends `ip` as text, as its `Display` writes it. IPv4 (the usual peer) is written digit by
/// digit: the formatting machinery cost 1,500 instructions per proxied request under callgrind.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
    }
}

/// True when the client asks for a WebSocket upgrade: `Upgrade: websocket` (any case) with
/// `upgrade` among the `Connection` tokens. Ask before [`strip_hop_by_hop`], which removes
/// both; any other protocol (`h2c`, ...) is never tunnelled.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let websocket = match (upgrades.next(), upgrades.next()) {
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    };
    websocket && connection_tokens(headers).any(|token| token.eq_ignore_ascii_case(b"upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Puts back `Connection: upgrade` and `Upgrade: websocket` on a request that
/// [`is_websocket_upgrade`] accepted, after [`strip_hop_by_hop`] removed them.
pub fn set_websocket_upgrade(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// Prepares an upstream response for the client: hop-by-hop headers out (for a `101` that
/// the gateway tunnels, `Upgrade` is kept and `Connection: upgrade` set), `X-Request-Id` set.
pub fn clean_response(headers: &mut HeaderMap, request_id: &HeaderValue, upgrade: bool) {
    let kept_upgrade: Vec<HeaderValue> = if upgrade {
        headers.get_all(UPGRADE).iter().cloned().collect()
    } else {
        Vec::new()
    };
    strip_hop_by_hop(headers);
    if upgrade {
        for value in kept_upgrade {
            headers.append(UPGRADE, value);
        }
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::claims::TokenType;
    use crate::auth::identity::{Presentation, SharedHeaderValues};

    #[test]
    fn push_ip_writes_what_display_writes() {
        let addresses = [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.199.200",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ];
        for text in addresses {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = b"x, ".to_vec();
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x, {ip}").into_bytes(), "{text}");
        }
    }

    #[test]
    fn each_name_set_holds_its_names_and_no_other() {
        type NameSet = (fn(&str) -> bool, &'static [&'static str]);
        let sets: [NameSet; 3] = [
            (
                is_hop_by_hop,
                &[
                    "connection",
                    "keep-alive",
                    "proxy-connection",
                    "proxy-authenticate",
                    "proxy-authorization",
                    "te",
                    "transfer-encoding",
                    "upgrade",
                ],
            ),
            (
                is_rival_forwarding,
                &[
                    "forwarded",
                    "x-real-ip",
                    "x-forwarded-port",
                    "x-forwarded-prefix",
                    "x-forwarded-uri",
                ],
            ),
            (
                is_routing_override,
                &[
                    "x-original-url",
                    "x-rewrite-url",
                    "x-http-method-override",
                    "x-http-method",
                    "x-method-override",
                ],
            ),
        ];
        let others = [
            "host",
            "trailer",
            "authorization",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "via",
            "content-length",
            "tE",
            "t",
            "",
        ];
        for (i, (set, names)) in sets.iter().enumerate() {
            for name in sets.iter().flat_map(|(_, n)| n.iter()).chain(&others) {
                assert_eq!(set(name), names.contains(name), "set {i}: {name:?}");
            }
        }
    }

    #[test]
    fn remove_present_drops_every_line_of_each_listed_name_and_nothing_else() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("keep-alive", "a"),
            ("Keep-Alive", "b"),
            ("x-original-url", "/admin"),
            ("accept", "*/*"),
            ("x-custom", "1"),
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        remove_present(&mut headers, is_hop_by_hop);
        remove_present(&mut headers, is_routing_override);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-custom"]);
        // Nothing listed present: nothing changes.
        remove_present(&mut headers, is_rival_forwarding);
        assert_eq!(headers.len(), 2);
    }

    fn identity_names() -> IdentityHeaders {
        IdentityHeaders {
            user_id: HeaderName::from_static("x-auth-user-id"),
            username: HeaderName::from_static("x-auth-username"),
            roles: HeaderName::from_static("x-auth-roles"),
            session_id: HeaderName::from_static("x-auth-session-id"),
            fresh: HeaderName::from_static("x-auth-fresh"),
        }
    }

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

    fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    /// Sorted: removal reorders a `HeaderMap`.
    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    fn roles(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| (*r).to_owned()).collect()
    }

    fn identity(roles: &[String]) -> Identity {
        Identity {
            user_id: 1,
            username: "alice".into(),
            roles: roles.to_vec(),
            session_id: "s-42".into(),
            token_id: "j-1".into(),
            auth_time: 0,
            fresh: false,
            expires_at: 900,
            token_type: TokenType::Access,
            presentation: Presentation::BearerHeader,
            legacy: false,
            header_values: SharedHeaderValues::default(),
        }
    }

    /// Every field a `Connection` token names goes, in any case and whatever the order of the
    /// lines, even when a token names `Connection` itself; the common tokens name nothing.
    #[test]
    fn every_connection_nominated_field_goes_even_when_connection_names_itself() {
        let mut headers = map(&[
            ("connection", "Connection, X-A"),
            ("x-a", "1"),
            ("connection", ",, x-b ,keep-alive, content-length, host"),
            ("x-b", "2"),
            ("content-length", "0"),
            ("host", "gw"),
            ("x-c", "kept"),
        ]);
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "host", "x-c"]);
        let mut plain = map(&[("connection", "keep-alive"), ("x-c", "kept")]);
        assert!(connection_nominated(&plain).is_empty());
        strip_hop_by_hop(&mut plain);
        assert_eq!(
            plain.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-c"]
        );
    }

    /// Hop-by-hop tokens are recognised in any case and only whole; their fields still go,
    /// with the standard set, in every spelling the client used.
    #[test]
    fn hop_by_hop_tokens_are_known_in_any_case_and_their_fields_still_go() {
        for token in [
            "keep-alive",
            "Keep-Alive",
            "UPGRADE",
            "te",
            "Proxy-Authorization",
        ] {
            assert!(token_is_hop_by_hop(token.as_bytes()), "{token}");
        }
        for token in [
            "close",
            "keep-alive2",
            "x-te",
            "",
            "proxy-authorization-and-more",
        ] {
            assert!(!token_is_hop_by_hop(token.as_bytes()), "{token}");
        }
        let mut headers = map(&[
            ("connection", "Keep-Alive, TE, X-A"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("x-a", "1"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eA=="),
            ("x-c", "kept"),
        ]);
        assert_eq!(
            connection_nominated(&headers),
            [HeaderName::from_static("x-a")]
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(
            headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-c"]
        );
    }

    #[test]
    fn connection_nominated_identity_is_replaced_not_lost() {
        let rewriter = HeaderRewriter::new(&identity_names(), &[]);
        let mut headers = map(&[
            ("connection", "close, X-Auth-User-Id"),
            ("x-auth-user-id", "u2"),
            ("x-other", "kept"),
        ]);
        strip_hop_by_hop(&mut headers);
        rewriter.strip_identity(&mut headers);
        let roles = roles(&["admin", "ops"]);
        rewriter
            .add_identity(&mut headers, &identity(&roles))
            .unwrap();
        assert_eq!(values(&headers, "x-auth-user-id"), ["1"]);
        assert_eq!(values(&headers, "x-auth-username"), ["alice"]);
        assert_eq!(values(&headers, "x-auth-roles"), ["admin,ops"]);
        assert_eq!(values(&headers, "x-auth-session-id"), ["s-42"]);
        assert_eq!(values(&headers, "x-auth-fresh"), ["false"]);
        assert_eq!(values(&headers, "x-other"), ["kept"]);
        assert!(headers.get(CONNECTION).is_none());
    }

    #[test]
    fn connection_nominations_in_any_case_and_line_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Custom"),
            ("connection", " x-second ,,"),
            ("x-custom", "1"),
            ("x-second", "2"),
            ("x-third", "3"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert!(headers.get("x-custom").is_none());
        assert!(headers.get("x-second").is_none());
        assert_eq!(values(&headers, "x-third"), ["3"]);
    }

    #[test]
    fn standard_hop_by_hop_headers_are_removed_and_trailer_is_kept() {
        // Changed by docs/http-api.md §7.1: Trailer is end-to-end; TE goes here and only
        // `TE: trailers` is put back by the forwarding step.
        let mut headers = map(&[
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-authenticate", "Basic"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2, "left: {headers:?}");
        assert_eq!(values(&headers, "accept"), ["*/*"]);
        assert_eq!(values(&headers, "trailer"), ["x-sum"]);
    }

    #[test]
    fn te_trailers_is_recognised_among_other_codings_and_parameters() {
        for te in [
            "trailers",
            "Trailers",
            "gzip, trailers",
            "deflate;q=0.5, TRAILERS;q=1",
        ] {
            assert!(accepts_trailers(&map(&[("te", te)])), "{te}");
        }
        for te in ["gzip", "trailersx", ""] {
            assert!(!accepts_trailers(&map(&[("te", te)])), "{te}");
        }
        assert!(!accepts_trailers(&HeaderMap::new()));
    }

    #[test]
    fn several_cookie_fields_become_one_joined_with_semicolons() {
        let mut headers = map(&[("cookie", "session=abc"), ("cookie", "theme=dark; lang=en")]);
        join_cookies(&mut headers);
        assert_eq!(
            values(&headers, "cookie"),
            ["session=abc; theme=dark; lang=en"]
        );
        let mut one = map(&[("cookie", "a=1")]);
        join_cookies(&mut one);
        assert_eq!(values(&one, "cookie"), ["a=1"]);
    }

    #[test]
    fn via_is_appended_after_existing_entries_with_the_received_version() {
        let mut headers = map(&[("via", "1.1 edge")]);
        append_via(&mut headers, Version::HTTP_2);
        assert_eq!(values(&headers, "via"), ["1.1 edge", "2 authgate"]);
        for (version, entry) in [
            (Version::HTTP_10, "1.0 authgate"),
            (Version::HTTP_11, "1.1 authgate"),
        ] {
            let mut headers = HeaderMap::new();
            append_via(&mut headers, version);
            assert_eq!(values(&headers, "via"), [entry]);
        }
    }

    #[test]
    fn max_forwards_is_read_strictly_and_decremented_above_zero() {
        assert_eq!(max_forwards(&map(&[("max-forwards", "0")])), Some(0));
        assert_eq!(max_forwards(&map(&[("max-forwards", " 7 ")])), Some(7));
        assert_eq!(max_forwards(&map(&[("max-forwards", "-1")])), None);
        assert_eq!(max_forwards(&map(&[("max-forwards", "x")])), None);
        assert_eq!(
            max_forwards(&map(&[("max-forwards", "1"), ("max-forwards", "0")])),
            None
        );
        let mut headers = map(&[("max-forwards", "3")]);
        decrement_max_forwards(&mut headers);
        assert_eq!(values(&headers, "max-forwards"), ["2"]);
    }

    #[test]
    fn the_client_host_is_the_absolute_target_then_authority_then_host() {
        let headers = map(&[("host", "host.example")]);
        let absolute: http::Uri = "http://user@target.example:81/x".parse().unwrap();
        assert_eq!(
            client_host(&absolute, &headers).unwrap(),
            "target.example:81"
        );
        let origin: http::Uri = "/x".parse().unwrap();
        assert_eq!(client_host(&origin, &headers).unwrap(), "host.example");
        assert!(client_host(&origin, &HeaderMap::new()).is_none());
    }

    #[test]
    fn connection_cannot_nominate_framing_or_host() {
        let mut headers = map(&[
            ("connection", "Content-Length, Host"),
            ("content-length", "5"),
            ("host", "gw.example"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(values(&headers, "content-length"), ["5"]);
        assert_eq!(values(&headers, "host"), ["gw.example"]);
    }

    #[test]
    fn identity_spellings_differing_by_case_or_underscore_are_stripped() {
        let rewriter = HeaderRewriter::new(&identity_names(), &[]);
        let mut headers = map(&[
            ("X_Auth_User_Id", "u2"),
            ("x-auth_user-id", "u3"),
            ("X-AUTH-USER-ID", "u4"),
            ("x-auth-user-id", "u5, u6"),
            ("x_auth_roles", "admin"),
            ("X-Auth-Fresh", "true"),
            ("x-auth-session-id", "s"),
            ("x-auth-username", "root"),
            ("x-auth-user-idx", "kept"),
            ("x-auth-user", "kept"),
        ]);
        rewriter.strip_identity(&mut headers);
        assert_eq!(names(&headers), ["x-auth-user", "x-auth-user-idx"]);
    }

    #[test]
    fn a_prefix_strips_its_whole_family_in_any_spelling_and_defaults_survive_a_rename() {
        let mut custom = identity_names();
        custom.user_id = HeaderName::from_static("x-uid");
        let rewriter = HeaderRewriter::new(&custom, &["x-auth-".into(), "x-internal-".into()]);
        let mut headers = map(&[
            ("X-Auth-Token", "t"),
            ("x_auth_anything", "a"),
            ("X-Internal-Role", "r"),
            ("x-uid", "u"),
            ("x-authx", "kept"),
            ("x-auth", "kept"),
        ]);
        rewriter.strip_identity(&mut headers);
        assert_eq!(names(&headers), ["x-auth", "x-authx"]);

        // No prefixes: a client's own X-Auth-Token passes, the default names still go.
        let rewriter = HeaderRewriter::new(&custom, &[]);
        let mut headers = map(&[
            ("X-Auth-Token", "t"),
            ("X-Auth-User-Id", "spoof"),
            ("x_uid", "spoof"),
        ]);
        rewriter.strip_identity(&mut headers);
        assert_eq!(names(&headers), ["x-auth-token"]);
    }

    #[test]
    fn configured_names_with_underscores_match_dashed_spellings() {
        let mut names = identity_names();
        names.user_id = HeaderName::from_static("x_uid");
        let rewriter = HeaderRewriter::new(&names, &[]);
        let mut headers = map(&[("x-uid", "u2"), ("X_UID", "u3")]);
        rewriter.strip_identity(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn no_roles_give_an_empty_roles_header_and_fresh_is_true() {
        let rewriter = HeaderRewriter::new(&identity_names(), &[]);
        let mut headers = HeaderMap::new();
        let id = Identity {
            fresh: true,
            ..identity(&[])
        };
        rewriter.add_identity(&mut headers, &id).unwrap();
        assert_eq!(values(&headers, "x-auth-roles"), [""]);
        assert_eq!(values(&headers, "x-auth-fresh"), ["true"]);
    }

    #[test]
    fn unrepresentable_identity_values_fail_closed_without_partial_headers() {
        let rewriter = HeaderRewriter::new(&identity_names(), &[]);
        let no_roles: Vec<String> = Vec::new();
        let comma = roles(&["a,admin"]);
        let cases = [
            Identity {
                username: "zoë".into(),
                ..identity(&no_roles)
            },
            Identity {
                session_id: " s".into(),
                ..identity(&no_roles)
            },
            identity(&comma),
        ];
        for id in cases {
            let mut headers = HeaderMap::new();
            assert!(rewriter.add_identity(&mut headers, &id).is_err(), "{id:?}");
            assert!(headers.is_empty(), "{id:?} left {headers:?}");
        }
    }

    #[test]
    fn forwarded_for_is_appended_across_existing_lines() {
        let mut headers = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
        ]);
        let host = HeaderValue::from_static("gw.example:8443");
        set_forwarding(
            &mut headers,
            &Forwarding {
                peer: "192.0.2.9".parse().unwrap(),
                proto: "https",
                host: Some(&host),
                prefix: None,
            },
        );
        assert_eq!(
            values(&headers, "x-forwarded-for"),
            ["203.0.113.7, 10.0.0.1, 10.0.0.2, 192.0.2.9"]
        );
        assert_eq!(values(&headers, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&headers, "x-forwarded-host"), ["gw.example:8443"]);
    }

    #[test]
    fn forwarding_replaces_client_proto_and_host_and_drops_rivals() {
        let mut headers = map(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=127.0.0.1"),
            ("x-real-ip", "127.0.0.1"),
            ("x-forwarded-uri", "/public"),
            ("x-forwarded-prefix", "/evil"),
        ]);
        set_forwarding(
            &mut headers,
            &Forwarding {
                peer: "::ffff:192.0.2.1".parse().unwrap(),
                proto: "http",
                host: None,
                prefix: None,
            },
        );
        assert_eq!(values(&headers, "x-forwarded-for"), ["192.0.2.1"]);
        assert_eq!(values(&headers, "x-forwarded-proto"), ["http"]);
        assert!(headers.get("x-forwarded-host").is_none());
        assert!(headers.get("forwarded").is_none());
        assert!(headers.get("x-real-ip").is_none());
        assert!(headers.get("x-forwarded-uri").is_none());
        assert!(headers.get("x-forwarded-prefix").is_none());
        let prefix = HeaderValue::from_static("/api");
        let mut headers = map(&[("x-forwarded-prefix", "/evil")]);
        set_forwarding(
            &mut headers,
            &Forwarding {
                peer: "192.0.2.1".parse().unwrap(),
                proto: "http",
                host: None,
                prefix: Some(&prefix),
            },
        );
        assert_eq!(values(&headers, "x-forwarded-prefix"), ["/api"]);
    }

    #[test]
    fn ipv6_peer_is_written_without_brackets() {
        let mut headers = HeaderMap::new();
        let fwd = Forwarding {
            peer: "2001:db8::1".parse().unwrap(),
            proto: "http",
            host: None,
            prefix: None,
        };
        set_forwarding(&mut headers, &fwd);
        assert_eq!(values(&headers, "x-forwarded-for"), ["2001:db8::1"]);
    }

    #[test]
    fn routing_override_headers_are_removed() {
        let mut headers = map(&[
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-http-method", "DELETE"),
            ("x-method-override", "DELETE"),
        ]);
        strip_routing_overrides(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn websocket_upgrade_is_recognised_and_h2c_is_not() {
        let ws = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(is_websocket_upgrade(&ws));
        let h2c = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(!is_websocket_upgrade(&h2c));
        let no_connection = map(&[("upgrade", "websocket")]);
        assert!(!is_websocket_upgrade(&no_connection));
        let mut stripped = ws.clone();
        strip_hop_by_hop(&mut stripped);
        set_websocket_upgrade(&mut stripped);
        assert_eq!(values(&stripped, "connection"), ["upgrade"]);
        assert_eq!(values(&stripped, "upgrade"), ["websocket"]);
    }

    #[test]
    fn clean_response_removes_hop_by_hop_and_sets_request_id() {
        let mut headers = map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-request-id", "upstream-chose-this"),
            ("content-type", "text/plain"),
        ]);
        let id = HeaderValue::from_static("req-1");
        clean_response(&mut headers, &id, false);
        assert_eq!(names(&headers), ["content-type", "x-request-id"]);
        assert_eq!(values(&headers, "x-request-id"), ["req-1"]);
    }

    #[test]
    fn clean_response_for_an_upgrade_keeps_upgrade_and_sets_connection() {
        let mut headers = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("keep-alive", "timeout=5"),
        ]);
        let id = HeaderValue::from_static("req-2");
        clean_response(&mut headers, &id, true);
        assert_eq!(values(&headers, "upgrade"), ["websocket"]);
        assert_eq!(values(&headers, "connection"), ["upgrade"]);
        assert!(headers.get("keep-alive").is_none());
        assert_eq!(headers.len(), 4);
    }
}
