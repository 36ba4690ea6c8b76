//! The client examples of `examples/` work against a real gateway in front of the echo
//! upstream, with the demo's routes (`/public`, `/api` token, `/admin` fresh): the curl
//! walkthrough with bash, the Python client with the test venv's requests, the JavaScript
//! client with Node's fetch. Each must exit 0 and print what a reader is told to expect.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::TestApp;
use crate::tools;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// Runs `command` off the reactor; fails the test with its output unless it exits 0.
async fn run_ok(mut command: Command) -> String {
    let out: Output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("example task")
        .expect("start the example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts `text` holds each of `wanted`, in order.
fn assert_in_order(text: &str, wanted: &[&str]) {
    let mut rest = text;
    for want in wanted {
        let at = rest
            .find(want)
            .unwrap_or_else(|| panic!("the output lacks {want:?} in order:\n{text}"));
        rest = &rest[at + want.len()..];
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_curl_walkthrough_script_runs_to_its_end() {
    let app = TestApp::spawn().await;
    // The script calls `curl` by name: put the one scripts/test found first on PATH.
    let curl = tools::curl();
    let path = std::env::join_paths(curl.parent().map(Path::to_path_buf).into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let mut command = Command::new("bash");
    command
        .arg(example("walkthrough.sh"))
        .env("PATH", path)
        .env("AUTHGATE_URL", &app.base)
        .env("AUTHGATE_ADMIN_URL", format!("http://{}", app.admin));
    let out = run_ok(command).await;
    assert_in_order(
        &out,
        &[
            "200 {\"status\":\"ready\"}",
            "401 {\"error\":\"missing_token\"",
            "201",
            "\"username\":\"alice\"",
            "[\"x-auth-username\",\"alice\"]",
            "401 {\"error\":\"fresh_token_required\"",
            "\"path\":\"/admin/settings\"",
            "200 {\"message\":\"Logged out.\"}",
            "401 {\"error\":\"token_revoked\"",
            "every step answered as expected",
        ],
    );
    app.stop().await;
}

const CLIENT_OUTPUT: &[&str] = &[
    "me: alice",
    "upstream saw user: alice",
    "fresh route reached: /admin/settings",
    "after logout: token_revoked",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_example_runs_to_its_end() {
    let app = TestApp::spawn().await;
    let mut command = Command::new(tools::python());
    command
        .arg(example("client.py"))
        .args(["--base", &app.base]);
    assert_in_order(&run_ok(command).await, CLIENT_OUTPUT);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_client_example_runs_to_its_end() {
    let app = TestApp::spawn().await;
    let mut command = Command::new(tools::node());
    command.arg(example("client.mjs")).arg(&app.base);
    assert_in_order(&run_ok(command).await, CLIENT_OUTPUT);
    app.stop().await;
}
