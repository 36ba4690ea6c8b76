//! The hardening gaps found by the black-box attack run (issue 13), each closed and pinned
//! here against the real server: registration limited per address and behind the hashing
//! queue, reserved usernames, the `X-Auth-` header family stripped, the SQLite files 0600,
//! malformed `Host` values, upstream answers framed twice, `access_token` in the query, an
//! over-long target or header, a token from the future, and a deleted user's token. Where a
//! request must be refused, a recording upstream proves it never arrived.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, header, raw_request, user_cli_async, write_binary_config, Process, Setup,
    TestApp, PASSWORD,
};
use crate::proxy::{echo_headers, echo_json, raw_upstream, recording_upstream, Seen};

/// Routes to the recording upstream `rec`: `/pub` (public), `/tok` (token), `/fresh`.
fn recorder_routes(rec: SocketAddr) -> String {
    format!(
        "[[routes]]\nprefix = \"/pub\"\nupstream = \"http://{rec}\"\nauth = \"public\"\n\n\
         [[routes]]\nprefix = \"/tok\"\nupstream = \"http://{rec}\"\nauth = \"token\"\n\n\
         [[routes]]\nprefix = \"/fresh\"\nupstream = \"http://{rec}\"\nauth = \"fresh\"\n"
    )
}

/// A gateway whose routes all lead to a fresh recording upstream.
async fn recorded(setup: Setup) -> (TestApp, Seen) {
    let (rec, seen) = recording_upstream().await;
    let app = TestApp::spawn_with(Setup {
        routes: Some(recorder_routes(rec)),
        ..setup
    })
    .await;
    (app, seen)
}

fn untouched(seen: &Seen) {
    let got = seen.lock().unwrap();
    assert!(got.is_empty(), "the upstream saw {got:?}");
}

// ---------------------------------------------------------------- registration

async fn register_from(app: &TestApp, name: &str, addr: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/auth/register"))
        .json(&json!({ "username": name, "password": PASSWORD }));
    if let Some(addr) = addr {
        req = req.header("X-Forwarded-For", addr);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_are_limited_per_address_whatever_their_answer_and_before_the_body() {
    let app = TestApp::spawn_with(Setup {
        auth: "register_limit = { max = 3, window = \"1h\" }\n".into(),
        proxy: "trusted_proxies = [\"127.0.0.1/32\"]\n".into(),
        ..Setup::default()
    })
    .await;
    let from = Some("192.0.2.10");
    // Three answers of three kinds; each counts.
    assert_eq!(register_from(&app, "alice", from).await.status(), 201);
    assert_eq!(register_from(&app, "alice", from).await.status(), 409);
    assert_eq!(register_from(&app, "not valid!", from).await.status(), 400);

    let hashes = app.state.hasher.hashes_started();
    let res = register_from(&app, "bob", from).await;
    let retry: u64 = header(res.headers(), "retry-after").parse().unwrap();
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(app.state.hasher.hashes_started(), hashes, "no hash spent");

    // Refused before the body is read: a declared body that never comes gets its 429 at
    // once, not a 408 after body_timeout.
    let res = raw_request(
        app.addr,
        "POST",
        "/auth/register",
        &[
            ("X-Forwarded-For", "192.0.2.10"),
            ("Content-Type", "application/json"),
            ("Content-Length", "100"),
        ],
    )
    .await;
    assert_eq!(res.status, 429, "{}", res.text());
    assert_eq!(res.error_code(), "rate_limited");

    // Another address has its own budget; bob was never created by the refused attempt.
    assert_eq!(
        register_from(&app, "bob", Some("192.0.2.11"))
            .await
            .status(),
        201
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_register_limit_is_ten_an_hour_per_address() {
    let dir = tempfile::tempdir().unwrap();
    // The real binary with nothing about registration in its file: the default applies.
    let config = write_binary_config(
        dir.path(),
        "",
        "[auth]\nargon2 = { memory_kib = 1024, iterations = 1, parallelism = 1 }\n",
    );
    let gateway = Process::start(&config, &[]);
    let http = crate::helpers::client();
    let base = format!("http://{}", gateway.addr);
    for i in 0..10 {
        let res = http
            .post(format!("{base}/auth/register"))
            .json(&json!({ "username": format!("user{i}"), "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "registration {i}");
    }
    let res = http
        .post(format!("{base}/auth/register"))
        .json(&json!({ "username": "user10", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_usernames_look_taken_at_registration_and_the_cli_may_create_them() {
    let app = TestApp::spawn().await;
    for name in ["root", "Admin", "SYSTEM", "administrator"] {
        let res = app.register(name, PASSWORD).await;
        assert_error(res, StatusCode::CONFLICT, "username_taken").await;
    }
    let out = user_cli_async(
        &app.config_path,
        &["user", "add", "root"],
        Some("root password 1\n"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = app.login_raw("ROOT", "root password 1").await;
    assert_eq!(res.status(), 200);

    // A list of one's own replaces the default.
    let app = TestApp::spawn_with(Setup {
        auth: "reserved_usernames = [\"Ops\"]\n".into(),
        ..Setup::default()
    })
    .await;
    assert_eq!(app.register("root", PASSWORD).await.status(), 201);
    let res = app.register("oPS", PASSWORD).await;
    assert_error(res, StatusCode::CONFLICT, "username_taken").await;
}

// ---------------------------------------------------------------- identity headers

#[tokio::test(flavor = "multi_thread")]
async fn every_client_header_of_the_x_auth_family_is_stripped_in_any_spelling() {
    let app = TestApp::spawn().await;
    let tokens = app.user("hedwig").await;
    let res = raw_request(
        app.addr,
        "GET",
        "/api/x",
        &[
            ("Authorization", &format!("Bearer {}", tokens.access)),
            ("X-Auth-Token", "client's own"),
            ("X_Auth_Anything", "spoof"),
            ("x-auth-user-id", "999"),
            ("X-Authx", "kept"),
        ],
    )
    .await;
    let echo = crate::proxy::echoed(&res);
    assert!(echo_headers(&echo, "x-auth-token").is_empty());
    assert!(echo_headers(&echo, "x_auth_anything").is_empty());
    let user_id = claims_of(&tokens.access)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(echo_headers(&echo, "x-auth-user-id"), [user_id]);
    assert_eq!(echo_headers(&echo, "x-authx"), ["kept"]);

    // Public routes too: the family never reaches an upstream unless the operator says so.
    let res = raw_request(app.addr, "GET", "/public/x", &[("X-Auth-Token", "t")]).await;
    assert!(echo_headers(&crate::proxy::echoed(&res), "x-auth-token").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_prefixes_a_client_x_auth_token_passes_and_default_identity_names_still_go() {
    let app = TestApp::spawn_with(Setup {
        proxy: "strip_header_prefixes = []\n\
                identity_headers = { user_id = \"X-Uid\", username = \"X-Uname\", roles = \"X-Roles\", session_id = \"X-Sid\", fresh = \"X-Fresh\" }\n"
            .into(),
        ..Setup::default()
    })
    .await;
    let tokens = app.user("ignatius").await;
    let res = app
        .client
        .get(app.url("/api/x"))
        .bearer_auth(&tokens.access)
        .header("X-Auth-Token", "client's own")
        .header("X-Auth-User-Id", "999")
        .header("X-Auth-Roles", "admin")
        .header("X-Uid", "999")
        .send()
        .await
        .unwrap();
    let echo = echo_json(res).await;
    assert_eq!(echo_headers(&echo, "x-auth-token"), ["client's own"]);
    assert!(echo_headers(&echo, "x-auth-user-id").is_empty());
    assert!(echo_headers(&echo, "x-auth-roles").is_empty());
    let user_id = claims_of(&tokens.access)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(echo_headers(&echo, "x-uid"), [user_id]);
}

// ---------------------------------------------------------------- files

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_creates_its_database_wal_shm_and_secret_readable_by_the_owner_only() {
    let app = TestApp::spawn().await;
    app.user("filemode").await;
    let dir = app.dir.path();
    for name in [
        "authgate.db",
        "authgate.db-wal",
        "authgate.db-shm",
        "jwt-secret",
    ] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

// ---------------------------------------------------------------- framing and targets

#[tokio::test(flavor = "multi_thread")]
async fn host_values_that_are_not_one_authority_are_refused() {
    let (app, seen) = recorded(Setup::default()).await;
    for host in [
        "gw, evil", "gw/../x", "user@gw", "gw:99999", "gw:", "gw x", "gw%2fx",
    ] {
        let res = raw_request(app.addr, "GET", "/pub/x", &[("Host", host)]).await;
        assert_eq!(res.status, 400, "{host:?}: {}", res.text());
        assert_eq!(res.error_code(), "invalid_request", "{host:?}");
    }
    // Absolute-form targets carry the authority themselves.
    for target in ["http://user@gw/pub/x", "http://gw,evil/pub/x"] {
        let res = raw_request(app.addr, "GET", target, &[("Host", "gw")]).await;
        assert_eq!(res.status, 400, "{target}: {}", res.text());
    }
    untouched(&seen);
    // A plain host with a port passes.
    let res = raw_request(app.addr, "GET", "/pub/x", &[("Host", "gw.example:8443")]).await;
    assert_eq!(res.status, 200, "{}", res.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_answer_with_both_content_length_and_transfer_encoding_is_a_502() {
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
        false,
    )
    .await;
    let app = TestApp::spawn_with(Setup {
        routes: Some(format!(
            "[[routes]]\nprefix = \"/twice\"\nupstream = \"http://{upstream}\"\nauth = \"public\"\n"
        )),
        ..Setup::default()
    })
    .await;
    let res = raw_request(app.addr, "GET", "/twice/x", &[]).await;
    assert_eq!(res.status, 502, "{}", res.text());
    assert_eq!(res.error_code(), "bad_gateway");
    assert!(!res.text().contains("smuggled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_query_parameter_never_reaches_a_non_public_upstream() {
    let (app, seen) = recorded(Setup::default()).await;
    let tokens = app.user("quill").await;
    let auth = format!("Bearer {}", tokens.access);
    for target in [
        "/tok/x?access_token=abc",
        "/tok/x?a=1&access_token=abc",
        "/tok/x?access%5ftoken=abc",
        "/fresh/x?access_token=abc",
    ] {
        let res = raw_request(app.addr, "GET", target, &[("Authorization", &auth)]).await;
        assert_eq!(res.status, 400, "{target}: {}", res.text());
        assert_eq!(res.error_code(), "invalid_request");
    }
    // Refused without a token too: the check comes before authentication.
    let res = raw_request(app.addr, "GET", "/tok/x?access_token=abc", &[]).await;
    assert_eq!(res.status, 400, "{}", res.text());
    untouched(&seen);
    let res = raw_request(
        app.addr,
        "GET",
        "/tok/x?token=abc",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(*seen.lock().unwrap(), ["/tok/x?token=abc"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_long_target_is_414_and_one_over_long_header_is_431() {
    let (app, seen) = recorded(Setup::default()).await;
    let target = format!("/pub/{}", "a".repeat(8 * 1024));
    let res = raw_request(app.addr, "GET", &target, &[]).await;
    assert_eq!(res.status, 414, "{}", res.text());
    assert_eq!(res.error_code(), "uri_too_long");
    // One header alone over the default max_header_bytes (64 KiB).
    let big = "b".repeat(64 * 1024 + 1);
    let res = raw_request(app.addr, "GET", "/pub/x", &[("X-Big", &big)]).await;
    assert_eq!(res.status, 431, "{}", res.text());
    assert_eq!(res.error_code(), "headers_too_large");
    untouched(&seen);
    // Just under both limits is served.
    let target = format!("/pub/{}", "a".repeat(8 * 1024 - 5));
    assert_eq!(raw_request(app.addr, "GET", &target, &[]).await.status, 200);
}

// ---------------------------------------------------------------- tokens

/// The claims of `token`, unverified.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `claims` signed with the gateway's own HS256 secret under its `kid`.
fn sign(app: &TestApp, claims: &Value) -> String {
    let secret = std::fs::read(app.dir.path().join("jwt-secret")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(app.state.tokens.signing_kid().to_owned());
    let key = jsonwebtoken::EncodingKey::from_secret(&secret);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_token_whose_auth_time_is_in_the_future_is_refused() {
    let (app, seen) = recorded(Setup::default()).await;
    let tokens = app.user("cassandra").await;
    let mut claims = claims_of(&tokens.access);
    let now = claims["iat"].as_u64().unwrap();
    // Within the leeway (5 s) is clock skew; an hour ahead is a forgery or a broken clock.
    claims["auth_time"] = json!(now + 3);
    let skewed = sign(&app, &claims);
    let res = app.get("/fresh/x", Some(&skewed)).await;
    assert_eq!(res.status(), 200);
    seen.lock().unwrap().clear();
    claims["auth_time"] = json!(now + 3600);
    let future = sign(&app, &claims);
    for path in ["/tok/x", "/fresh/x", "/auth/me"] {
        let res = app.get(path, Some(&future)).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    untouched(&seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_a_user_deleted_while_the_gateway_was_down_is_refused_after_restart() {
    let (rec, seen) = recording_upstream().await;
    let setup = Setup {
        routes: Some(recorder_routes(rec)),
        ..Setup::default()
    };
    let app = TestApp::spawn_with(setup.clone()).await;
    let tokens = app.user("departed").await;
    assert_eq!(app.get("/tok/x", Some(&tokens.access)).await.status(), 200);
    let config = app.config_path.clone();
    let dir = app.stop().await;
    seen.lock().unwrap().clear();

    // Deleted by the operator while no gateway ran: the index that starts next has never
    // seen the deletion happen, only the store's record of it.
    let out = user_cli_async(&config, &["user", "delete", "departed"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let app = TestApp::spawn_in(setup, dir).await;
    let res = app.get("/tok/x", Some(&tokens.access)).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let res = app.refresh(&tokens.refresh).await;
    assert_eq!(res.status(), 401);
    untouched(&seen);
}
