//! Reading the `Accept` header (RFC 9110 §12.5.1) for the one question the gateway asks of
//! it: is this a browser asking for a page? The sign-in page (`GET /auth/login`) and the
//! `login_redirect` of routes both answer HTML-wanting requests differently from API calls.

use http::header::ACCEPT;
use http::HeaderMap;

/// Whether `Accept` lists `text/html` itself (not through a wildcard) with a quality above 0
/// and at least the quality `application/json` gets (from its own entry, else `application/*`,
/// else `*/*`). A browser's navigation (`text/html,...,*/*;q=0.8`) passes; an API client's
/// `application/json`, `*/*` or no `Accept` at all does not.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let mut html: Option<u16> = None;
    // (specificity, quality) of the most specific range matching application/json.
    let mut json: Option<(u8, u16)> = None;
    for (range, q) in entries(headers) {
        let (kind, sub) = range.split_once('/').unwrap_or((range, ""));
        if kind.eq_ignore_ascii_case("text") && sub.eq_ignore_ascii_case("html") {
            html = Some(html.map_or(q, |h| h.max(q)));
        }
        let specificity = match (kind, sub) {
            ("*", "*") => 1,
            (k, "*") if k.eq_ignore_ascii_case("application") => 2,
            (k, s) if k.eq_ignore_ascii_case("application") && s.eq_ignore_ascii_case("json") => 3,
            _ => continue,
        };
        if json.is_none_or(|(best, _)| specificity > best) {
            json = Some((specificity, q));
        }
    }
    let json_q = json.map_or(0, |(_, q)| q);
    html.is_some_and(|h| h > 0 && h >= json_q)
}

/// Every media range of every `Accept` field with its quality in thousandths (1000 when no
/// `q` is given; an unreadable `q` counts as 0).
fn entries(headers: &HeaderMap) -> impl Iterator<Item = (&str, u16)> {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let range = parts.next().filter(|r| !r.is_empty())?;
            let q = parts
                .find_map(|p| {
                    let (name, value) = p.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| quality(value.trim()))
                })
                .unwrap_or(1000);
            Some((range, q))
        })
}

/// `1`, `0.8`, `0.125` → thousandths; anything else 0.
fn quality(text: &str) -> u16 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let digits = format!("{fraction:0<3}");
    match (whole, digits.parse::<u16>()) {
        ("1", Ok(0)) => 1000,
        ("0", Ok(f)) => f,
        _ => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn accept(value: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        wants_html(&h)
    }

    #[test]
    fn browsers_want_html_and_api_clients_do_not() {
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(accept("text/html"));
        assert!(accept("application/json, text/html"), "equal quality");
        assert!(accept("application/json;q=0.5, text/html;q=0.6"));
        assert!(!accept("application/json"));
        assert!(!accept("*/*"));
        assert!(!accept("text/*"));
        assert!(!accept("text/html;q=0.5, application/json"));
        assert!(!accept("text/html;q=0.5, application/*;q=0.9"));
        assert!(!accept("text/html;q=0, */*"));
        assert!(!accept("text/html;q=0"));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn the_most_specific_range_gives_json_its_quality() {
        assert!(accept("text/html;q=0.5, application/json;q=0.4, */*"));
        assert!(!accept("text/html;q=0.5, application/*;q=0.6, */*;q=0.1"));
    }

    #[test]
    fn qualities_parse_to_thousandths() {
        assert_eq!(quality("1"), 1000);
        assert_eq!(quality("1.000"), 1000);
        assert_eq!(quality("0.8"), 800);
        assert_eq!(quality("0.125"), 125);
        assert_eq!(quality("0"), 0);
        assert_eq!(quality("2"), 0);
        assert_eq!(quality("0.1234"), 0);
        assert_eq!(quality("x"), 0);
    }
}
