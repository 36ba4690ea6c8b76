//! The outside programs integration tests drive — nginx, Caddy, Chromium and chromedriver,
//! curl, PostgreSQL, the Python venv, hadolint, systemd-analyze — found through the `AUTHGATE_TEST_*` variables
//! `scripts/test` exports after installing or starting them. A tool that is not there fails the
//! test with a message naming `scripts/test`: nothing is skipped, and no test runs apt or pip.
//!
//! The tests at the bottom prove the script's set-up works, one cheap check per tool.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The value of `var`, or a panic telling how to get it.
fn var(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{what} is missing: ${var} is not set. Run the tests with `scripts/test` \
             (e.g. `scripts/test --test api NAME`): it installs or starts what the tests need \
             and exports ${var}"
        ),
    }
}

/// The program `var` names; it must exist.
fn program(var_name: &str, what: &str) -> PathBuf {
    let path = PathBuf::from(var(var_name, what));
    assert!(
        path.is_file(),
        "{what} is missing: ${var_name} = {} is not a file. Run the tests with `scripts/test`, \
         which installs it",
        path.display()
    );
    path
}

/// nginx (Debian's package), for the forward-auth tests.
pub fn nginx() -> PathBuf {
    program("AUTHGATE_TEST_NGINX", "nginx")
}

/// Caddy (Debian's package), for the `forward_auth` example.
pub fn caddy() -> PathBuf {
    program("AUTHGATE_TEST_CADDY", "Caddy")
}

/// Chromium (Debian's package), for the browser tests; run it headless.
pub fn chromium() -> PathBuf {
    program("AUTHGATE_TEST_CHROMIUM", "Chromium")
}

/// chromedriver, the WebDriver server of the same Chromium version.
pub fn chromedriver() -> PathBuf {
    program("AUTHGATE_TEST_CHROMEDRIVER", "chromedriver")
}

/// curl, which the demo walkthrough runs as printed.
pub fn curl() -> PathBuf {
    program("AUTHGATE_TEST_CURL", "curl")
}

/// Node.js (Debian's nodejs, 18 or later: global fetch), which runs examples/client.mjs.
pub fn node() -> PathBuf {
    program("AUTHGATE_TEST_NODE", "Node.js")
}

/// psql, PostgreSQL's client, for set-up a test does outside the gateway.
pub fn psql() -> PathBuf {
    program("AUTHGATE_TEST_PSQL", "psql")
}

/// A PostgreSQL URL (`postgres://ROLE@127.0.0.1:PORT/test`) whose role may create databases:
/// each test makes its own.
pub fn postgres_url() -> String {
    crate::pg::admin_url()
}

/// The python of the test venv, with the packages of `scripts/test-requirements.txt`.
pub fn python() -> PathBuf {
    program("AUTHGATE_TEST_PYTHON", "the Python test venv")
}

/// hadolint, the Dockerfile linter.
pub fn hadolint() -> PathBuf {
    program("AUTHGATE_TEST_HADOLINT", "hadolint")
}

/// systemd-analyze (Debian's systemd), which checks the example unit offline.
pub fn systemd_analyze() -> PathBuf {
    program("AUTHGATE_TEST_SYSTEMD_ANALYZE", "systemd-analyze")
}

/// Runs `program` with `args`, asserts that it succeeded, and returns its stdout and stderr
/// together (some programs print their version on stderr).
pub fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} could not start: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}): {text}",
        program.display(),
        out.status
    );
    text
}

/// The first number of the first word that starts with a digit: `Chromium 131.0.6778.204` → 131.
fn major_version(text: &str) -> Option<u32> {
    let word = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    word.split('.').next()?.parse().ok()
}

#[test]
fn nginx_checks_a_config_of_ours() {
    let nginx = nginx();
    assert!(run(&nginx, &["-v"]).contains("nginx version: nginx/"));
    // What the forward-auth tests will do: their own prefix and config, as a foreground process.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        "daemon off;\nerror_log stderr;\npid nginx.pid;\nevents {}\n\
         http {\n  access_log off;\n  client_body_temp_path body;\n  proxy_temp_path proxy;\n\
         server {\n    listen 127.0.0.1:8;\n    location / { auth_request /auth; return 204; }\n\
         location = /auth { internal; proxy_pass http://127.0.0.1:9; }\n  }\n}\n",
    )
    .unwrap();
    let prefix = format!("{}/", dir.path().display());
    let text = run(
        &nginx,
        &[
            "-t",
            "-p",
            &prefix,
            "-e",
            "stderr",
            "-c",
            conf.to_str().unwrap(),
        ],
    );
    assert!(text.contains("test is successful"), "{text}");
}

#[test]
fn caddy_reports_its_version() {
    // Debian's build prints `2.6.2`, upstream's `v2.x.y h1:...`.
    let text = run(&caddy(), &["version"]);
    assert_eq!(
        major_version(text.trim_start_matches('v')),
        Some(2),
        "{text}"
    );
}

#[test]
fn chromium_and_chromedriver_share_a_major_version() {
    let browser = run(&chromium(), &["--version"]);
    let driver = run(&chromedriver(), &["--version"]);
    assert!(browser.starts_with("Chromium "), "{browser}");
    assert!(driver.starts_with("ChromeDriver "), "{driver}");
    // WebDriver refuses a session when the driver's major version is not the browser's.
    let major = major_version(&browser);
    assert!(major.is_some(), "no version in {browser}");
    assert_eq!(major, major_version(&driver), "{browser} vs {driver}");
}

#[test]
fn curl_reports_its_version() {
    assert!(run(&curl(), &["--version"]).starts_with("curl "));
}

#[test]
fn postgres_answers_and_lets_tests_create_databases() {
    let url = postgres_url();
    let answer = run(
        &psql(),
        &[
            "-w",
            "-X",
            "-tA",
            &url,
            "-c",
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user",
        ],
    );
    assert_eq!(
        answer.trim(),
        "t",
        "{url}: the role may not create databases"
    );
}

#[test]
fn the_venv_imports_every_test_package() {
    let script = "import sys, flask, flask_jwt_extended, flask_bcrypt, werkzeug, requests, \
                  grpc, grpc_tools.protoc, schemathesis\n\
                  assert sys.version_info >= (3, 11), sys.version\n\
                  print('ok', grpc.__version__)";
    let text = run(&python(), &["-c", script]);
    assert!(text.starts_with("ok "), "{text}");
}

#[test]
fn hadolint_reports_its_version() {
    let text = run(&hadolint(), &["--version"]);
    assert!(text.contains("Haskell Dockerfile Linter"), "{text}");
}

#[test]
fn systemd_analyze_reports_its_version() {
    let text = run(&systemd_analyze(), &["--version"]);
    assert!(text.contains("systemd"), "{text}");
}
