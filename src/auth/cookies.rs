//! The cookie transport of tokens (docs/http-api.md §7.4), with flask-jwt-extended's cookie names:
//! reading a credential cookie from a request, writing the four cookies on login, refresh and
//! step-up and clearing them on logout ([`CookieWriter`], built with the `cookie` crate), and
//! taking the gateway's cookies out of what an upstream receives.
//!
//! Invariants: the token cookies are `HttpOnly`, the CSRF cookies readable by scripts and on
//! Path `/` (so a page anywhere can echo them); the refresh cookie's Path is the auth prefix,
//! so it only ever travels to the account endpoints. When a name appears more than once the
//! first occurrence counts: browsers send the cookie with the longest path first.

use cookie::time::Duration as CookieDuration;
use cookie::{Cookie, SameSite as CookieSameSite};
use http::header::COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{CookieConfig, SameSite};

/// The access token (`HttpOnly`, Path `/`).
pub const ACCESS_COOKIE: &str = "access_token_cookie";
/// The refresh token (`HttpOnly`, Path = the auth prefix).
pub const REFRESH_COOKIE: &str = "refresh_token_cookie";
/// The access token's `csrf` claim, for scripts to echo (Path `/`).
pub const CSRF_ACCESS_COOKIE: &str = "csrf_access_token";
/// The refresh token's `csrf` claim, for scripts to echo (Path `/`).
pub const CSRF_REFRESH_COOKIE: &str = "csrf_refresh_token";
/// Every cookie the gateway sets.
pub const GATEWAY_COOKIES: [&str; 4] = [
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    CSRF_ACCESS_COOKIE,
    CSRF_REFRESH_COOKIE,
];
/// The header a cookie-authenticated unsafe request echoes its token's `csrf` claim in.
pub const X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");

/// The `name=value` pairs of every `Cookie` header, in order (HTTP/2 may split them over
/// several fields). Pairs without `=` and headers that are not text are passed over.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

/// The value of the first cookie called `name` (names are case-sensitive, RFC 6265); an
/// empty value counts as no cookie.
pub fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    pairs(headers)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Removes the gateway's four cookies from the `Cookie` headers, keeping every other cookie in
/// its order; a header left empty is dropped.
pub fn strip_gateway_cookies(headers: &mut HeaderMap) {
    if !pairs(headers).any(|(n, _)| GATEWAY_COOKIES.contains(&n)) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|line| {
            let text = line.to_str().ok()?;
            let rest: Vec<&str> = text
                .split(';')
                .map(str::trim)
                .filter(|pair| {
                    let name = pair.split_once('=').map_or(*pair, |(n, _)| n.trim());
                    !pair.is_empty() && !GATEWAY_COOKIES.contains(&name)
                })
                .collect();
            HeaderValue::from_str(&rest.join("; "))
                .ok()
                .filter(|v| !v.is_empty())
        })
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        headers.append(COOKIE, value);
    }
}

/// Writes the gateway's `Set-Cookie` values as `[auth.cookies]` configures them.
#[derive(Debug, Clone)]
pub struct CookieWriter {
    secure: bool,
    same_site: CookieSameSite,
    domain: Option<String>,
    refresh_path: String,
}

impl CookieWriter {
    /// The writer for `config`, whose refresh cookie is scoped to `auth_prefix`.
    pub fn new(config: &CookieConfig, auth_prefix: &str) -> Self {
        Self {
            secure: config.secure,
            same_site: match config.same_site {
                SameSite::Strict => CookieSameSite::Strict,
                SameSite::Lax => CookieSameSite::Lax,
                SameSite::None => CookieSameSite::None,
            },
            domain: config.domain.clone(),
            refresh_path: auth_prefix.to_owned(),
        }
    }

    /// The access cookie and its CSRF cookie, living `max_age` seconds.
    pub fn access(&self, token: &str, csrf: &str, max_age: u64) -> [HeaderValue; 2] {
        [
            self.set(ACCESS_COOKIE, token, "/", true, Some(max_age)),
            self.set(CSRF_ACCESS_COOKIE, csrf, "/", false, Some(max_age)),
        ]
    }

    /// The refresh cookie and its CSRF cookie, living `max_age` seconds.
    pub fn refresh(&self, token: &str, csrf: &str, max_age: u64) -> [HeaderValue; 2] {
        [
            self.set(
                REFRESH_COOKIE,
                token,
                &self.refresh_path,
                true,
                Some(max_age),
            ),
            self.set(CSRF_REFRESH_COOKIE, csrf, "/", false, Some(max_age)),
        ]
    }

    /// All four cookies cleared (`Max-Age=0`, same Path and Domain as when they were set).
    pub fn clear_all(&self) -> [HeaderValue; 4] {
        [
            self.set(ACCESS_COOKIE, "", "/", true, None),
            self.set(REFRESH_COOKIE, "", &self.refresh_path, true, None),
            self.set(CSRF_ACCESS_COOKIE, "", "/", false, None),
            self.set(CSRF_REFRESH_COOKIE, "", "/", false, None),
        ]
    }

    /// One `Set-Cookie` value; `max_age: None` makes it a removal.
    fn set(
        &self,
        name: &'static str,
        value: &str,
        path: &str,
        http_only: bool,
        max_age: Option<u64>,
    ) -> HeaderValue {
        let mut builder = Cookie::build((name, value.to_owned()))
            .path(path.to_owned())
            .http_only(http_only)
            .secure(self.secure)
            .same_site(self.same_site);
        if let Some(domain) = &self.domain {
            builder = builder.domain(domain.clone());
        }
        builder = match max_age {
            Some(secs) => builder.max_age(CookieDuration::seconds(
                i64::try_from(secs).unwrap_or(i64::MAX),
            )),
            None => builder.removal(),
        };
        // Names are constants, values base64url tokens, paths and domains validated config:
        // always a valid header value. The fallback only keeps this panic-free.
        HeaderValue::from_str(&builder.build().to_string()).unwrap_or(HeaderValue::from_static(""))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn cookies(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(COOKIE, HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn the_first_of_duplicate_names_counts_across_headers() {
        let h = cookies(&[
            "theme=dark; access_token_cookie=first",
            "access_token_cookie=second",
        ]);
        assert_eq!(request_cookie(&h, ACCESS_COOKIE), Some("first"));
        assert_eq!(request_cookie(&h, "theme"), Some("dark"));
        assert_eq!(request_cookie(&h, REFRESH_COOKIE), None);
        let empty = cookies(&["access_token_cookie=; x=1"]);
        assert_eq!(request_cookie(&empty, ACCESS_COOKIE), None);
        let case = cookies(&["Access_Token_Cookie=x"]);
        assert_eq!(request_cookie(&case, ACCESS_COOKIE), None);
    }

    #[test]
    fn stripping_keeps_other_cookies_in_order() {
        let mut h = cookies(&[
            "a=1; access_token_cookie=t; b=2;csrf_access_token=c",
            "refresh_token_cookie=r; csrf_refresh_token=d",
            "c=3",
        ]);
        strip_gateway_cookies(&mut h);
        let lines: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(lines, ["a=1; b=2", "c=3"]);
        let mut only = cookies(&["access_token_cookie=t"]);
        strip_gateway_cookies(&mut only);
        assert!(only.get(COOKIE).is_none());
    }

    #[test]
    fn set_cookies_carry_the_configured_attributes() {
        let config = CookieConfig {
            enabled: true,
            secure: true,
            same_site: SameSite::Strict,
            domain: Some("example.com".into()),
            redirect_origins: Vec::new(),
            tokens_in_body: true,
        };
        let w = CookieWriter::new(&config, "/auth");
        let [access, csrf] = w.refresh("tok", "c", 60);
        let c = Cookie::parse(access.to_str().unwrap()).unwrap();
        assert_eq!((c.name(), c.value()), (REFRESH_COOKIE, "tok"));
        assert_eq!(c.path(), Some("/auth"));
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.secure(), Some(true));
        assert_eq!(c.same_site(), Some(CookieSameSite::Strict));
        assert_eq!(c.domain(), Some("example.com"));
        assert_eq!(c.max_age(), Some(CookieDuration::seconds(60)));
        let c = Cookie::parse(csrf.to_str().unwrap()).unwrap();
        assert_eq!(c.path(), Some("/"));
        assert_eq!(c.http_only(), None);
        for cleared in w.clear_all() {
            let c = Cookie::parse(cleared.to_str().unwrap()).unwrap();
            assert_eq!(c.value(), "");
            assert_eq!(c.max_age(), Some(CookieDuration::ZERO));
        }
    }
}
