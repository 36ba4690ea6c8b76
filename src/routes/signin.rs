//! The browser side of the account endpoints (docs/http-api.md §7.4), present only with
//! `[auth.cookies] enabled`: the cookies that token answers set and logout answers clear, the
//! sign-in page, and the rules of a page post — where the browser may be sent back to (`rd`)
//! and which pages may post at all (login CSRF, by `Origin`).
//!
//! The page is one small server-rendered form: no JavaScript, no external assets, labelled
//! fields with `autocomplete`, and headers that forbid framing and every fetch but its own
//! form post (to this host or a configured redirect origin, which Chromium checks along the
//! `303`). A failed sign-in renders the same bytes whatever went wrong with the credentials:
//! the page never echoes the username.

use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, Response, StatusCode};
use percent_encoding::percent_decode_str;

use crate::auth::cookies::CookieWriter;
use crate::config::CookieConfig;
use crate::error::{ApiError, ErrorCode};
use crate::origin::Origin;
use crate::server::response::{full, Body};
use crate::sessions::Issued;

/// Everything the endpoints need for browsers; built once when cookies are enabled.
#[derive(Debug, Clone)]
pub struct Browser {
    writer: CookieWriter,
    tokens_in_body: bool,
    redirect_origins: Vec<Origin>,
    /// `{prefix}/login`, where the form posts.
    login_path: String,
    csp: HeaderValue,
}

impl Browser {
    /// The browser settings of `config` (`None` while cookies are disabled), under
    /// `auth_prefix`.
    pub fn new(config: &CookieConfig, auth_prefix: &str) -> Option<Browser> {
        if !config.enabled {
            return None;
        }
        let mut csp =
            String::from("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
        for origin in &config.redirect_origins {
            csp.push(' ');
            csp.push_str(&origin.to_string());
        }
        Some(Browser {
            writer: CookieWriter::new(config, auth_prefix),
            tokens_in_body: config.tokens_in_body,
            redirect_origins: config.redirect_origins.clone(),
            login_path: format!("{auth_prefix}/login"),
            // Origins are validated visible ASCII; the fallback only keeps this panic-free.
            csp: HeaderValue::from_str(&csp)
                .unwrap_or(HeaderValue::from_static("default-src 'none'")),
        })
    }

    /// Whether token answers carry the tokens in their JSON (`tokens_in_body`).
    pub fn tokens_in_body(&self) -> bool {
        self.tokens_in_body
    }

    /// Adds the `Set-Cookie` headers of `issued`: the access pair always, the refresh pair
    /// when a refresh token was handed out.
    pub fn set_cookies(&self, headers: &mut HeaderMap, issued: &Issued) {
        let csrf = issued.access_csrf.as_deref().unwrap_or_default();
        for value in self
            .writer
            .access(&issued.access_token, csrf, issued.expires_in)
        {
            headers.append(SET_COOKIE, value);
        }
        if let Some(refresh) = &issued.refresh_token {
            let csrf = issued.refresh_csrf.as_deref().unwrap_or_default();
            for value in self
                .writer
                .refresh(refresh, csrf, issued.refresh_expires_in)
            {
                headers.append(SET_COOKIE, value);
            }
        }
    }

    /// Adds the four clearing `Set-Cookie` headers (every logout answer).
    pub fn clear_cookies(&self, headers: &mut HeaderMap) {
        for value in self.writer.clear_all() {
            headers.append(SET_COOKIE, value);
        }
    }

    /// Login CSRF: a page post whose `Origin` is present must come from this host (`host`,
    /// scheme ignored) or a redirect origin.
    pub fn check_origin(
        &self,
        origin: Option<&HeaderValue>,
        host: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let parsed = origin.to_str().ok().and_then(Origin::parse);
        let allowed = parsed.is_some_and(|o| {
            host.is_some_and(|h| o.is_host(h)) || self.redirect_origins.contains(&o)
        });
        if allowed {
            Ok(())
        } else {
            tracing::warn!("sign-in post from a foreign origin refused");
            Err(ApiError::CsrfFailed)
        }
    }

    /// Where a successful page post sends the browser: `rd` when it is a path on this host
    /// or an absolute URL of a redirect origin, else `/`.
    pub fn redirect_target<'a>(&self, rd: &'a str) -> &'a str {
        if is_local_path(rd) || is_allowed_url(rd, &self.redirect_origins) {
            rd
        } else {
            "/"
        }
    }

    /// The `303` of a successful page post: to the checked `rd`, cookies set, no tokens.
    pub fn signed_in(&self, rd: &str, issued: &Issued) -> Response<Body> {
        let mut res = Response::new(full(bytes::Bytes::new()));
        *res.status_mut() = StatusCode::SEE_OTHER;
        let target = self.redirect_target(rd);
        let location = HeaderValue::from_str(target).unwrap_or(HeaderValue::from_static("/"));
        let headers = res.headers_mut();
        headers.insert(LOCATION, location);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.set_cookies(headers, issued);
        res
    }

    /// The sign-in page, with `error` above the form when a post failed (rendered with the
    /// error's status and headers, and counted as that error).
    pub fn page(&self, rd: &str, error: Option<&ApiError>) -> Response<Body> {
        let message = error.map(page_message);
        let html = render(&self.login_path, rd, message);
        let mut res = Response::new(full(html));
        *res.status_mut() = error.map_or(StatusCode::OK, ApiError::status);
        let headers = res.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // No `Referrer-Policy: no-referrer`: under it Chromium sends the form post with
        // `Origin: null`, which the login CSRF check must refuse.
        if let Some(e) = error {
            e.add_headers(headers);
            res.extensions_mut().insert(ErrorCode(e.code()));
        }
        res
    }
}

/// Which failures of a page post are shown on the page (the rest stay §1 JSON).
pub fn shown_on_page(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::InvalidCredentials | ApiError::RateLimited { .. } | ApiError::InvalidRequest(_)
    )
}

fn page_message(e: &ApiError) -> &'static str {
    match e {
        ApiError::RateLimited { .. } => "Too many failed attempts. Try again later.",
        ApiError::InvalidRequest(_) => "Enter your username and password.",
        _ => "Invalid username or password.",
    }
}

/// A path on this host, and nothing a browser (or a server behind it that decodes once
/// more) could read as another host: plain visible ASCII without `\`, starting with one `/`;
/// and every percent-decoding of it (`/%2F%2Fevil.example`, `/%09/evil.example`) still starts
/// with one `/` not followed by `\`, and holds no control character.
fn is_local_path(rd: &str) -> bool {
    if !rd.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return false;
    }
    let mut text = std::borrow::Cow::Borrowed(rd);
    // Each round decodes once more; a few rounds see through any encoding worth trying.
    for _ in 0..4 {
        let bytes = text.as_bytes();
        let local = bytes.first() == Some(&b'/')
            && !matches!(bytes.get(1), Some(b'/' | b'\\'))
            && !bytes.iter().any(u8::is_ascii_control);
        if !local {
            return false;
        }
        let Ok(decoded) = percent_decode_str(&text).decode_utf8() else {
            return false;
        };
        if decoded == text {
            return true;
        }
        text = std::borrow::Cow::Owned(decoded.into_owned());
    }
    false
}

/// An absolute `http(s)` URL whose origin is listed (checked on the URL as sent, which must
/// be plain visible ASCII without `\`).
fn is_allowed_url(rd: &str, origins: &[Origin]) -> bool {
    if !rd.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return false;
    }
    Origin::of_url(rd).is_some_and(|o| origins.contains(&o))
}

/// The page: a heading, the error if any, and the form.
fn render(action: &str, rd: &str, error: Option<&str>) -> String {
    let error = error
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(m)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f5f7; color: #1d1d1f; margin: 0; }}
main {{ max-width: 22rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
h1 {{ font-size: 1.5rem; margin: 0 0 1.5rem; }}
label {{ display: block; font-weight: 600; margin: 1rem 0 .25rem; }}
input {{ box-sizing: border-box; width: 100%; padding: .6rem; font-size: 1rem; border: 1px solid #8a8f98; border-radius: 4px; }}
input:focus, button:focus {{ outline: 3px solid #2563eb; outline-offset: 1px; }}
button {{ margin-top: 1.5rem; width: 100%; padding: .7rem; font-size: 1rem; font-weight: 600; color: #fff; background: #1d4ed8; border: 0; border-radius: 4px; cursor: pointer; }}
.error {{ color: #991b1b; background: #fee2e2; padding: .6rem; border-radius: 4px; }}
</style>
</head>
<body>
<main>
<h1>Sign in</h1>
{error}<form method="post" action="{action}">
<input type="hidden" name="rd" value="{rd}">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" maxlength="64" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
"#,
        action = escape(action),
        rd = escape(rd),
    )
}

/// HTML text and attribute escaping.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::SameSite;

    fn browser() -> Browser {
        let config = CookieConfig {
            enabled: true,
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            redirect_origins: vec![Origin::parse("https://app.example.com").unwrap()],
            tokens_in_body: true,
        };
        Browser::new(&config, "/auth").unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The reference: at every depth of decoding, a local target is a path on this host
        /// — one leading `/` not followed by `/` or `\\` (which browsers read as `/`, making
        /// `//host` or `/\\host` a network path) — with no control character.
        #[test]
        fn a_local_redirect_target_never_leaves_this_host(
            rd in proptest::prelude::prop_oneof![
                "(/|//|/\\\\|%2[fF]|%5[cC]|%25|[a-z.:@]|%0[0-9a-fA-F]){0,8}",
                proptest::prelude::any::<String>(),
            ],
        ) {
            if is_local_path(&rd) {
                let mut text = rd.clone();
                loop {
                    proptest::prop_assert!(text.starts_with('/'), "{rd:?}");
                    proptest::prop_assert!(!text.starts_with("//") && !text.starts_with("/\\"), "{rd:?}");
                    proptest::prop_assert!(!text.bytes().any(|b| b.is_ascii_control()), "{rd:?}");
                    let next = percent_decode_str(&text).decode_utf8_lossy().into_owned();
                    if next == text {
                        break;
                    }
                    text = next;
                }
            }
        }
    }

    #[test]
    fn rd_goes_to_local_paths_and_redirect_origins_only() {
        let b = browser();
        for ok in [
            "/",
            "/app",
            "/app/x?y=1&z=%2F#frag",
            "/a%20b",
            "https://app.example.com/",
            "https://app.example.com",
            "https://APP.example.com:443/x?y",
        ] {
            assert_eq!(b.redirect_target(ok), ok, "{ok:?}");
        }
        for bad in [
            "",
            "//evil.example",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https:/evil.example",
            "http://evil.example",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://app.example.com@evil.example/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "/%2F%2Fevil.example",
            "/%2f%2fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "\t//evil.example",
            " /app",
            "/%09/evil.example",
            "/%0a/evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/caf\u{e9}",
            "/%ff",
        ] {
            assert_eq!(b.redirect_target(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn origins_of_this_host_and_redirect_origins_may_post() {
        let b = browser();
        let origin = |o: &str| HeaderValue::from_str(o).unwrap();
        let host = Some("gw.example:8080");
        assert!(b.check_origin(None, host).is_ok());
        assert!(b
            .check_origin(Some(&origin("http://gw.example:8080")), host)
            .is_ok());
        assert!(b
            .check_origin(Some(&origin("https://gw.example:8080")), host)
            .is_ok());
        assert!(b
            .check_origin(Some(&origin("https://app.example.com")), host)
            .is_ok());
        for bad in [
            "https://evil.example",
            "null",
            "http://gw.example:8081",
            "garbage",
        ] {
            assert_eq!(
                b.check_origin(Some(&origin(bad)), host),
                Err(ApiError::CsrfFailed),
                "{bad}"
            );
        }
        assert!(b
            .check_origin(Some(&origin("http://gw.example:8080")), None)
            .is_err());
    }

    #[test]
    fn rd_is_escaped_in_the_page() {
        let html = render("/auth/login", "/x\"><script>alert(1)</script>", None);
        assert!(html.contains("value=\"/x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(!html.contains("<script>"));
    }
}
