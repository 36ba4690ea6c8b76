//! Checks of a routed request made before its credential is read (docs/http-api.md §6, §7.1): the
//! shapes the gateway refuses whatever the token (`Transfer-Encoding` other than one
//! `chunked`, an `access_token` query parameter on a non-public route), and the `OPTIONS`
//! with `Max-Forwards: 0` the gateway answers itself.

use http::header::{ALLOW, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use percent_encoding::percent_decode;

use super::headers::max_forwards;
use super::router::Route;
use crate::error::ApiError;
use crate::server::response::{full, Body};

/// `Transfer-Encoding` absent, or exactly one `chunked` (any case). hyper decodes the chunked
/// framing of `gzip, chunked` and would leave the gzip coding unsaid once the header is
/// dropped as hop-by-hop, so any other coding, a repeated `chunked`, or a second line is 400.
pub fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut lines = headers.get_all(TRANSFER_ENCODING).iter();
    match (lines.next(), lines.next()) {
        (None, _) => Ok(()),
        (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(ApiError::InvalidRequest(
            "Transfer-Encoding must be absent or exactly \"chunked\"".into(),
        )),
    }
}

/// An `access_token` query parameter (RFC 6750 §2.3, which authgate does not accept) on a
/// non-public route is 400, so a token never reaches an upstream's logs. The name is compared
/// after percent-decoding (`access%5Ftoken` is the same parameter to every framework); `&` and
/// `;` both separate parameters. Other names, `token` included, pass.
pub fn check_query(route: &Route, query: Option<&str>) -> Result<(), ApiError> {
    let Some(query) = query else {
        return Ok(());
    };
    if !route.policy().reads_credentials() {
        return Ok(());
    }
    let named_access_token = query.split(['&', ';']).any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        percent_decode(name.as_bytes()).eq(b"access_token".iter().copied())
    });
    if named_access_token {
        return Err(ApiError::InvalidRequest(
            "send the token in the Authorization header, not in an access_token query parameter"
                .into(),
        ));
    }
    Ok(())
}

/// The gateway's own answer to `OPTIONS` with `Max-Forwards: 0` (RFC 9110 §7.6.2): `204` with
/// the route's `Allow`, no token needed. `None` for every other request.
pub fn options_for_the_gateway<B>(route: &Route, req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::OPTIONS || max_forwards(req.headers()) != Some(0) {
        return None;
    }
    let mut res = Response::new(full(bytes::Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    res.headers_mut()
        .insert(ALLOW, route.policy().allow_header());
    Some(res)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::config::{RouteAuth, RouteConfig};
    use crate::proxy::router::Router;

    fn router() -> Router {
        let text = "[[routes]]\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"token\"\n\
                    [[routes]]\nprefix = \"/open\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"public\"\n\
                    [[routes]]\nprefix = \"/maybe\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"optional\"\nmethods = [\"GET\", \"OPTIONS\"]\n";
        let config = crate::config::parse(std::path::Path::new("t.toml"), text).unwrap();
        let routes: Vec<RouteConfig> = config.routes;
        assert_eq!(routes[2].auth, RouteAuth::Optional);
        Router::new(&routes).unwrap()
    }

    fn te(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(TRANSFER_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn only_a_single_chunked_transfer_coding_passes() {
        for ok in [&[][..], &["chunked"], &["Chunked"], &[" CHUNKED "]] {
            assert!(check_transfer_encoding(&te(ok)).is_ok(), "{ok:?}");
        }
        for bad in [
            &["gzip, chunked"][..],
            &["chunked, chunked"],
            &["gzip"],
            &["chunked", "chunked"],
            &["identity"],
            &[""],
        ] {
            assert!(check_transfer_encoding(&te(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_access_token_parameter_is_refused_on_non_public_routes_only() {
        let r = router();
        let api = r.route_for("/api/x").unwrap();
        let open = r.route_for("/open/x").unwrap();
        let maybe = r.route_for("/maybe/x").unwrap();
        for q in [
            "access_token=abc",
            "a=1&access_token=abc",
            "access_token",
            "x=1;access_token=2",
            "access%5Ftoken=abc",
            "%61ccess_token=",
        ] {
            assert!(check_query(api, Some(q)).is_err(), "{q}");
            assert!(check_query(maybe, Some(q)).is_err(), "{q}");
            assert!(check_query(open, Some(q)).is_ok(), "{q}");
        }
        for q in [
            "token=abc",
            "access_token_x=1",
            "my_access_token=1",
            "q=access_token",
            "",
        ] {
            assert!(check_query(api, Some(q)).is_ok(), "{q}");
        }
        assert!(check_query(api, None).is_ok());
    }

    #[test]
    fn options_with_max_forwards_zero_is_answered_with_the_allow_list() {
        let r = router();
        let req = |method: Method, mf: Option<&str>| {
            let mut b = Request::builder().method(method).uri("/x");
            if let Some(mf) = mf {
                b = b.header("max-forwards", mf);
            }
            b.body(()).unwrap()
        };
        let api = r.route_for("/api").unwrap();
        let res = options_for_the_gateway(api, &req(Method::OPTIONS, Some("0"))).unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            res.headers()[ALLOW],
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        );
        let maybe = r.route_for("/maybe").unwrap();
        let res = options_for_the_gateway(maybe, &req(Method::OPTIONS, Some("0"))).unwrap();
        assert_eq!(res.headers()[ALLOW], "GET, OPTIONS");
        assert!(options_for_the_gateway(api, &req(Method::OPTIONS, Some("1"))).is_none());
        assert!(options_for_the_gateway(api, &req(Method::OPTIONS, None)).is_none());
        assert!(options_for_the_gateway(api, &req(Method::GET, Some("0"))).is_none());
    }
}
