//! End to end in a real headless Chromium (driven over WebDriver by `webdriver.rs`): sign in on
//! the sign-in page, land on a page served through the gateway, `fetch` with and without the
//! CSRF header, cross-origin pages on other ports allowed or refused by CORS, and a WebSocket
//! from the page that the gateway closes on logout. The test also saves a screenshot of the
//! sign-in page to `target/tmp/sign-in.png` (copied by hand to `docs/sign-in.png`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::helpers::{Setup, TestApp, ECHO, PASSWORD};
use crate::proxy::ws_echo_upstream;
use crate::webdriver::Browser;

/// A web server answering every path with a small HTML page naming the path.
async fn pages() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let html = format!(
                        "<!doctype html><html lang=\"en\"><title>page</title>\
                         <h1 id=\"where\">{}</h1></html>",
                        req.uri().path()
                    );
                    let mut res = hyper::Response::new(Full::new(Bytes::from(html)));
                    res.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(res)
                });
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `fetch(url, {method, credentials: "include"})`, with `X-CSRF-TOKEN` set from the
/// `csrf_access_token` cookie when asked; answers `{status, body}` or `{error}`.
const FETCH: &str = r#"
const [url, method, withCsrf, done] = arguments;
const csrf = document.cookie.split("; ").find(c => c.startsWith("csrf_access_token="));
const headers = withCsrf ? { "X-CSRF-TOKEN": csrf ? csrf.split("=")[1] : "" } : {};
fetch(url, { method, headers, credentials: "include" })
  .then(async r => done({ status: r.status, body: await r.text() }))
  .catch(e => done({ error: String(e) }));
"#;

/// Opens a WebSocket to `url`, sends "hello", and on the echo logs out through `fetch` with
/// the CSRF header; answers when the socket closes.
// Reports once both the close and the logout's answer are in: they travel on two connections,
// and the close the logout causes may reach the page before the logout's own answer.
const WEBSOCKET: &str = r#"
const [url, done] = arguments;
const seen = {};
let closed = null;
const finish = () => { if (closed && "logout" in seen) done({ ...seen, ...closed }); };
const ws = new WebSocket(url);
ws.onopen = () => { seen.opened = true; ws.send("hello"); };
ws.onmessage = async m => {
  seen.echo = m.data;
  const csrf = document.cookie.split("; ").find(c => c.startsWith("csrf_access_token="));
  const r = await fetch("/auth/logout", { method: "POST", headers: { "X-CSRF-TOKEN": csrf.split("=")[1] } });
  seen.logout = r.status;
  finish();
};
ws.onerror = () => { seen.error = true; };
ws.onclose = e => {
  closed = { code: e.code, reason: e.reason, clean: e.wasClean };
  if (!seen.echo) { seen.logout = null; }
  finish();
};
"#;

async fn fetch(browser: &Browser, url: &str, method: &str, csrf: bool) -> Value {
    browser.run_async(FETCH, json!([url, method, csrf])).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_signs_in_and_uses_the_api_cors_and_a_websocket_through_the_gateway() {
    let app_pages = pages().await;
    let allowed = pages().await;
    let foreign = pages().await;
    let ws = ws_echo_upstream().await;
    let routes = format!(
        r#"[[routes]]
prefix = "/app"
upstream = "http://{app_pages}"
auth = "token"

[[routes]]
prefix = "/api"
upstream = "http://{ECHO}"
auth = "token"

[[routes]]
prefix = "/ws"
upstream = "http://{ws}"
auth = "token"
"#
    );
    let app = TestApp::spawn_with(Setup {
        cookies: "enabled = true\nsecure = false".into(),
        cors: format!("allowed_origins = [\"http://{allowed}\"]\nallow_credentials = true"),
        routes: Some(routes),
        ..Setup::default()
    })
    .await;
    assert_eq!(app.register("browser.user", PASSWORD).await.status(), 201);
    let gw = app.base.clone();
    let browser = Browser::start().await;

    // The sign-in page, photographed for the README.
    browser.goto(&format!("{gw}/auth/login?rd=/app/home")).await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sign-in.png");
    std::fs::write(&shot, &png).unwrap();

    // Sign in by typing and clicking: the 303 lands on a page served through the gateway.
    let user = browser.find("#username").await;
    browser.type_into(&user, "browser.user").await;
    let password = browser.find("#password").await;
    browser.type_into(&password, PASSWORD).await;
    let submit = browser.find("button[type=submit]").await;
    browser.click(&submit).await;
    // The landing page's heading appears once the navigation the click started is done.
    browser.find("#where").await;
    assert_eq!(browser.url().await, format!("{gw}/app/home"));
    let heading = browser
        .run_async(
            "arguments[0](document.getElementById('where').textContent)",
            json!([]),
        )
        .await;
    assert_eq!(heading, "/app/home");

    // fetch from the page: with the CSRF header it passes, without it it is refused.
    let ok = fetch(&browser, "/api/x", "POST", true).await;
    assert_eq!(ok["status"], 200, "{ok}");
    let echo: Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["method"], "POST");
    let refused = fetch(&browser, "/api/x", "POST", false).await;
    assert_eq!(refused["status"], 403, "{refused}");
    assert!(refused["body"].as_str().unwrap().contains("csrf_failed"));

    // A page of an allowed origin on another port may read the API with the cookie; a page
    // of another origin may not (the browser blocks the answer).
    let api = format!("{gw}/api/x");
    browser.goto(&format!("http://{allowed}/spa")).await;
    let read = fetch(&browser, &api, "GET", false).await;
    assert_eq!(read["status"], 200, "{read}");
    let preflighted = fetch(&browser, &api, "PUT", true).await;
    assert_eq!(preflighted["status"], 200, "{preflighted}");
    browser.goto(&format!("http://{foreign}/spa")).await;
    let blocked = fetch(&browser, &api, "GET", false).await;
    assert!(
        blocked["error"]
            .as_str()
            .unwrap()
            .contains("Failed to fetch"),
        "{blocked}"
    );
    let blocked = fetch(&browser, &api, "PUT", true).await;
    assert!(blocked["error"].is_string(), "{blocked}");

    // A WebSocket from the gateway's page: it opens with the cookie, echoes, and is closed by
    // the gateway when the session logs out.
    browser.goto(&format!("{gw}/app/home")).await;
    let ws_url = format!("ws://{}/ws/", app.addr);
    let closed = browser.run_async(WEBSOCKET, json!([ws_url])).await;
    assert_eq!(closed["opened"], true, "{closed}");
    assert_eq!(closed["echo"], "hello", "{closed}");
    assert_eq!(closed["logout"], 200, "{closed}");
    assert_eq!(closed["code"], 1008, "{closed}");
    assert_eq!(closed["reason"], "token revoked", "{closed}");
    assert!(closed.get("error").is_none(), "{closed}");

    browser.quit().await;
}
