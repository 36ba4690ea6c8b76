//! `docs/openapi.yaml` is a valid OpenAPI 3.1 document (checked against the OpenAPI 3.1
//! meta-schema that schemathesis bundles, so tools such as Postman import it), and it describes
//! what a real gateway answers: schemathesis (from the test venv) generates requests for every
//! operation and checks each answer — no 5xx, a documented status, the documented content type,
//! the documented headers and a body that fits the documented schema.
//!
//! The gateway signs with EdDSA (so `/auth/jwks.json` answers 200) and has forward-auth on (so
//! `/auth/verify` decides). Schemathesis runs three times so that the destructive operations
//! cannot hide the others' successful answers: first every operation that keeps the session
//! alive with an admin's fresh access token, then `refresh` with a refresh token, then logout,
//! password change and deletions.

use std::path::Path;
use std::process::Command;

use crate::helpers::{user_cli_async, Setup, TestApp, PASSWORD};
use crate::tools;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");

/// The checks that matter for a reference: nothing the document does not describe.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

#[test]
fn openapi_yaml_is_a_valid_openapi_3_1_document() {
    let script = r#"
import sys, yaml, jsonschema_rs
from schemathesis.specs.openapi.definitions import OPENAPI_31
doc = yaml.safe_load(open(sys.argv[1]))
assert doc["openapi"].startswith("3.1."), doc["openapi"]
errors = list(jsonschema_rs.validator_for(OPENAPI_31).iter_errors(doc))
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
"#;
    let out = Command::new(tools::python())
        .args(["-c", script, SPEC])
        .output()
        .expect("run the test venv's python");
    assert!(
        out.status.success(),
        "docs/openapi.yaml is not a valid OpenAPI 3.1 document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs schemathesis over the operations `filter` selects, with `token` as bearer credential;
/// returns its report.
async fn schemathesis(base: &str, token: &str, filter: &[&str]) -> String {
    let mut args: Vec<String> = [
        "-m",
        "schemathesis.cli",
        "run",
        SPEC,
        "--url",
        base,
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "25",
        "--workers",
        "1",
        "--header",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(format!("Authorization: Bearer {token}"));
    args.extend(filter.iter().map(|s| (*s).to_owned()));
    let python = tools::python();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(&args)
            // No colours or progress bars in the captured output.
            .env("NO_COLOR", "1")
            .current_dir(std::env::temp_dir())
            .output()
    })
    .await
    .expect("schemathesis task")
    .expect("run schemathesis from the test venv");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found answers docs/openapi.yaml does not describe ({filter:?}):\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(" passed") && !text.contains("No operations"),
        "schemathesis ran nothing ({filter:?}):\n{text}"
    );
    text.into_owned()
}

async fn login(app: &TestApp, name: &str) -> serde_json::Value {
    let r = app.login_raw(name, PASSWORD).await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("login answer")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_answers_as_openapi_yaml_describes() {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/ed25519.pem"
    );
    let app = TestApp::spawn_with(Setup {
        tokens: format!("algorithm = \"EdDSA\"\nprivate_key_file = \"{key}\""),
        forward_auth: "enabled = true".into(),
        // Fuzzed logins, step-ups and password changes all fail from 127.0.0.1, many for the
        // test's own user: the login limiter would soon refuse the test's logins.
        auth: "login_limit = { max_failures = 100000, user_max_failures = 100000, \
               address_max_failures = 100000 }"
            .into(),
        ..Setup::default()
    })
    .await;
    let config: &Path = &app.config_path;
    let added = user_cli_async(
        config,
        &["user", "add", "root-op", "--role", "admin"],
        Some(PASSWORD),
    )
    .await;
    assert!(added.status.success(), "{added:?}");

    let tokens = login(&app, "root-op").await;
    let access = tokens["access_token"].as_str().expect("access token");
    let refresh = tokens["refresh_token"].as_str().expect("refresh token");
    let destructive = [
        "logout",
        "deleteMe",
        "deleteUser",
        "changePassword",
        "refresh",
    ];
    let mut keep: Vec<&str> = Vec::new();
    for id in destructive {
        keep.extend(["--exclude-operation-id", id]);
    }
    let report = schemathesis(&app.base, access, &keep).await;
    // With a live admin session every kept operation must reach its successful answer at
    // least once (schemathesis warns about operations that only ever got 401/403), so the
    // success schemas are checked too, not only the errors'.
    assert!(
        !report.contains("Authentication failed"),
        "operations that never got past authentication:\n{report}"
    );
    schemathesis(&app.base, refresh, &["--include-operation-id", "refresh"]).await;

    let tokens = login(&app, "root-op").await;
    let access = tokens["access_token"].as_str().expect("access token");
    let mut last: Vec<&str> = Vec::new();
    for id in &destructive[..4] {
        last.extend(["--include-operation-id", id]);
    }
    schemathesis(&app.base, access, &last).await;
    app.stop().await;
}
