//! The attack catalogue's account cases (section H) not pinned elsewhere: bodies that try to
//! assign more than a username and password, duplicate keys, hostile JSON and form shapes,
//! and huge credentials — each refused (or ignored) before any password hash is spent.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{claims, Setup, TestApp, PASSWORD};

async fn post(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn h11_extra_fields_in_a_registration_assign_nothing() {
    let app = TestApp::spawn().await;
    app.user("first").await;
    let body = format!(
        r#"{{"username":"mass","password":"{PASSWORD}","role":"admin","roles":["admin"],"id":1,"is_admin":true}}"#
    );
    let res = post(
        &app,
        "/auth/register",
        "application/json",
        body.into_bytes(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["id"], 2, "the id is the store's, not the body's 1");
    let tokens = app.login("mass").await;
    assert_eq!(claims(&tokens.access)["roles"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn h7_h12_to_h14_hostile_bodies_are_400_or_413_without_a_hash() {
    let app = TestApp::spawn_with(Setup {
        server: "max_body = 2097152".into(),
        ..Setup::default()
    })
    .await;
    let before = app.state.hasher.hashes_started();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = "p".repeat(1024 * 1024);
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "H12 number",
            "application/json",
            br#"{"username":5,"password":"x"}"#.to_vec(),
        ),
        (
            "H12 array",
            "application/json",
            br#"{"username":["a"],"password":"x"}"#.to_vec(),
        ),
        (
            "H12 object",
            "application/json",
            br#"{"username":{},"password":"x"}"#.to_vec(),
        ),
        (
            "H12 password array",
            "application/json",
            br#"{"username":"a","password":["x"]}"#.to_vec(),
        ),
        (
            "H13 duplicate username",
            "application/json",
            format!(r#"{{"username":"alice","username":"admin","password":"{PASSWORD}"}}"#)
                .into_bytes(),
        ),
        (
            "H14 truncated",
            "application/json",
            br#"{"username":"a","pass"#.to_vec(),
        ),
        (
            "H14 trailing garbage",
            "application/json",
            format!(r#"{{"username":"a","password":"{PASSWORD}"}} x"#).into_bytes(),
        ),
        (
            "H14 BOM",
            "application/json",
            b"\xef\xbb\xbf{\"username\":\"a\",\"password\":\"b\"}".to_vec(),
        ),
        (
            "H14 invalid UTF-8",
            "application/json",
            b"{\"username\":\"\xff\",\"password\":\"b\"}".to_vec(),
        ),
        ("H14 deep nesting", "application/json", deep.into_bytes()),
        (
            "H14 form invalid UTF-8",
            "application/x-www-form-urlencoded",
            b"username=a&password=%FF%FE%FD%FC%FB%FA%F9%F8".to_vec(),
        ),
        (
            "H7 1 MiB password",
            "application/json",
            format!(r#"{{"username":"a","password":"{huge}"}}"#).into_bytes(),
        ),
        (
            "H7 1 MiB username",
            "application/json",
            format!(r#"{{"username":"{huge}","password":"{PASSWORD}"}}"#).into_bytes(),
        ),
    ];
    for (case, content_type, body) in cases {
        for path in ["/auth/register", "/auth/login"] {
            let res = post(&app, path, content_type, body.clone()).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{case} on {path}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["error"], "invalid_request", "{case}");
            // The message names where, never what: no password or value is echoed.
            let text = v.to_string();
            assert!(
                !text.contains(PASSWORD) && !text.contains("pppp"),
                "{case}: {text}"
            );
        }
    }
    assert_eq!(
        app.state.hasher.hashes_started(),
        before,
        "no hash was spent"
    );
}
