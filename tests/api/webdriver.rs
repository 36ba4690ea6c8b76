//! A minimal W3C WebDriver client over the `reqwest` the tests already use, driving Debian's
//! chromedriver and headless Chromium: start the driver, open a session with a fresh profile,
//! navigate, find elements, type, click, run scripts, take a screenshot.
//!
//! Why not fantoccini: these tests need eight WebDriver commands, and fantoccini 0.22 with
//! `rustls-tls` adds 28 crates to the test build (`cargo tree`), among them aws-lc-sys (a C
//! build of minutes on two cores, and a second rustls crypto provider next to our ring), the
//! `webdriver` crate with http 0.2 and cookie 0.16, and ICU segmentation data. A hundred lines
//! over the existing reqwest dev-dependency do the same.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::client;
use crate::tools::{chromedriver, chromium};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session on it; both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port (it reports the port it took) and opens a headless
    /// Chromium session with a fresh `--user-data-dir`.
    pub async fn start() -> Browser {
        let mut driver = Command::new(chromedriver())
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = driver.stdout.take().expect("chromedriver stdout");
        let port = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let port = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|l| {
                    l.strip_prefix("ChromeDriver was started successfully on port ")
                        .and_then(|p| p.trim_end_matches('.').parse::<u16>().ok())
                })
                .expect("chromedriver reports its port");
            // Keep draining its output so it never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            port
        })
        .await
        .expect("chromedriver reader");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: client(),
            _profile: profile,
        };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=900,760",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        // Finding an element waits up to 15 s for it to appear (WebDriver's implicit wait):
        // how a test waits for a navigation a click started, without polling of its own.
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "timeouts": { "implicit": 15000 },
            "goog:chromeOptions": { "binary": chromium(), "args": args },
        }}});
        let session = browser.call("POST", "/session", Some(caps)).await;
        let id = session["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    /// One WebDriver command; panics on a WebDriver error. Returns its `value`.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, &url)
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("webdriver request");
        let status = res.status();
        let v: Value = res.json().await.expect("webdriver json");
        assert!(status.is_success(), "{url}: {status} {v}");
        v["value"].clone()
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The current page's URL.
    pub async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element `css` selects, waiting for it to appear (it must, within 15 s).
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT].as_str().expect("element id").to_owned()
    }

    /// Types `text` into element `id`.
    pub async fn type_into(&self, id: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks element `id` (waiting for a navigation it starts).
    pub async fn click(&self, id: &str) {
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    /// Runs `script` (an async function body whose last argument is the callback) with `args`
    /// and returns what it passes to the callback.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 png"))
            .expect("png")
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let url = self.base.clone();
        let _ = self.http.delete(&url).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
