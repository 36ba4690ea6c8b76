//! Moving a Flask + flask-jwt-extended service behind authgate (docs/http-api.md §7.5), against
//! the real app of `examples/migrate-from-flask/app.py` run by the test venv's Python: tokens
//! it minted (access, fresh, not fresh, float `fresh`, refresh exchanged) are accepted, until
//! `accept_until` and only for users that exist; users it stored (flask-bcrypt, werkzeug
//! scrypt and pbkdf2) log in after `authgate user import` and are argon2id afterwards; the app
//! behind authgate keeps checking tokens itself; the migration script runs end to end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{
    assert_error, claims, client, header, user_cli_async, Process, Setup, TestApp, DEFAULT_ROUTES,
};
use crate::protocols::KillOnDrop;
use crate::proxy::echo_header;
use crate::tools::python;

/// The example directory: the app, the export script, the migration script and config.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/migrate-from-flask");

/// The password every Flask user gets here.
const OLD_PASSWORD: &str = "flask password 1";

/// A secret both the Flask app (`JWT_SECRET_KEY`) and authgate (`[tokens]`, and
/// `[compat.flask_jwt_extended]`) read: 48 bytes, no newline.
const SECRET: &str = "flask-and-authgate-share-this-48-byte-secret-ok!";

/// The Flask app of the example, on a port of its own; killed on drop.
struct FlaskApp {
    port: u16,
    client: Client,
    _child: KillOnDrop,
}

/// What an old client holds: the tokens the Flask app gave it at login.
struct OldTokens {
    access: String,
    refresh: String,
}

impl FlaskApp {
    /// Starts `app.py` with its secret in `secret_file` and its users in `db`.
    fn start(secret_file: &Path, db: &Path) -> FlaskApp {
        let mut child = KillOnDrop(
            Command::new(python())
                .arg("-u")
                .arg(format!("{EXAMPLE}/app.py"))
                .env("JWT_SECRET_FILE", secret_file)
                .env("FLASK_DB", db)
                // Cheaper than the default 12: the tests log in a lot, each check counts.
                .env("BCRYPT_LOG_ROUNDS", "10")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("the Flask app starts"),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the Flask app prints its port");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the Flask app said {line:?}"));
        FlaskApp {
            port,
            client: client(),
            _child: child,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("Flask request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// UserRegister with werkzeug's `scrypt` or `pbkdf2`, or flask-bcrypt's `bcrypt`.
    async fn register(&self, username: &str, hasher: &str, roles: &str) {
        let body = json!({"username": username, "password": OLD_PASSWORD, "hasher": hasher, "roles": roles});
        let (status, v) = self.post("/register", body, None).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }

    /// `path` is `/login` (fresh) or `/auth/login` (fresh for five minutes, a float).
    async fn login(&self, path: &str, username: &str) -> OldTokens {
        let body = json!({"username": username, "password": OLD_PASSWORD});
        let (status, v) = self.post(path, body, None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        OldTokens {
            access: v["access_token"].as_str().expect("access").to_owned(),
            refresh: v["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// A cookie-mode login: the cookies it sets, by name.
    async fn cookie_login(&self, username: &str) -> std::collections::HashMap<String, String> {
        let body = json!({"username": username, "password": OLD_PASSWORD});
        let r = self
            .client
            .post(self.url("/cookie-login"))
            .json(&body)
            .send()
            .await
            .expect("Flask request");
        assert_eq!(r.status(), StatusCode::OK);
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| {
                let c = cookie::Cookie::parse(v.to_str().ok()?.to_owned()).ok()?;
                Some((c.name().to_owned(), c.value().to_owned()))
            })
            .collect()
    }

    /// TokenRefresh: a new access token, not fresh.
    async fn refresh(&self, refresh: &str) -> String {
        let (status, v) = self.post("/refresh", json!({}), Some(refresh)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["access_token"].as_str().expect("access").to_owned()
    }
}

/// A Flask app with users alice (werkzeug scrypt), bob (flask-bcrypt, role `ops` in the old
/// app) and carol (werkzeug pbkdf2), exported and imported into an authgate database in
/// `dir`, and the tokens each got from the Flask app before the move.
struct Migrated {
    flask: FlaskApp,
    secret_file: PathBuf,
    alice: OldTokens,
    bob: OldTokens,
    carol: OldTokens,
}

async fn migrated() -> (Migrated, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("legacy-secret");
    std::fs::write(&secret_file, SECRET).expect("secret");
    let flask = FlaskApp::start(&secret_file, &dir.path().join("flask.db"));
    flask.register("alice", "scrypt", "").await;
    flask.register("bob", "bcrypt", "ops").await;
    // werkzeug 3.1 would write 1,000,000 iterations: the tests log in a lot.
    flask.register("carol", "pbkdf2:sha256:50000", "").await;
    let alice = flask.login("/login", "alice").await;
    let bob = flask.login("/login", "bob").await;
    let carol = flask.login("/auth/login", "carol").await;

    // Export with the example's script, import with the CLI (nothing running yet).
    let export = Command::new(python())
        .arg(format!("{EXAMPLE}/export_users.py"))
        .arg(dir.path().join("flask.db"))
        .output()
        .expect("export runs");
    assert!(export.status.success(), "{export:?}");
    let users = dir.path().join("users.jsonl");
    std::fs::write(&users, &export.stdout).expect("users file");
    let cli_config = dir.path().join("cli.toml");
    std::fs::write(
        &cli_config,
        format!(
            "[store]\nurl = \"sqlite://{}/authgate.db\"\n",
            dir.path().display()
        ),
    )
    .expect("cli config");
    let out = user_cli_async(&cli_config, &["user", "import", path_str(&users)], None).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("imported 3 user(s)"), "{said}");
    let m = Migrated {
        flask,
        secret_file,
        alice,
        bob,
        carol,
    };
    (m, dir)
}

/// The user `name` as the gateway's store holds it.
async fn stored(app: &TestApp, name: &str) -> authgate::store::UserWithHash {
    app.state.store.user_by_name(name).await.unwrap().unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The setup of a gateway accepting the Flask app's tokens until `accept_until`, signing
/// with the same secret, with `/flask` routed to the app (which checks tokens itself).
fn legacy_setup(m: &Migrated, accept_until: &str, compat: &str) -> Setup {
    Setup {
        secret_file: Some(m.secret_file.clone()),
        compat: format!(
            "{compat}\n[compat.flask_jwt_extended]\nsecret_file = \"{}\"\naccept_until = \"{accept_until}\"\n",
            m.secret_file.display()
        ),
        routes: Some(format!(
            "{DEFAULT_ROUTES}\n[[routes]]\nprefix = \"/flask\"\nupstream = \"http://127.0.0.1:{}\"\n\
             auth = \"token\"\nstrip_prefix = true\nforward_authorization = true\n",
            m.flask.port
        )),
        ..Setup::default()
    }
}

/// The gateway of `m`, on the data folder `dir` the users were imported into, accepting
/// legacy tokens until 2099; `compat` adds `[compat]` lines.
async fn gateway(m: &Migrated, dir: TempDir, compat: &str) -> TestApp {
    TestApp::spawn_in(legacy_setup(m, "2099-01-01T00:00:00Z", compat), dir).await
}

/// Polls `check` until it holds; revocations written by another process take effect
/// within a second (docs/http-api.md §6).
async fn within_a_second<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{what}: not within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- legacy tokens

#[tokio::test(flavor = "multi_thread")]
async fn tokens_the_flask_app_minted_work_on_proxied_routes_without_roles_or_session() {
    let (m, dir) = migrated().await;
    let app = gateway(&m, dir, "").await;

    // A fresh access token from UserLogin: the user it names, no roles, no session.
    let r = app.get("/api/x", Some(&m.alice.access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let echo: Value = r.json().await.unwrap();
    let alice = stored(&app, "alice").await;
    assert_eq!(
        echo_header(&echo, "x-auth-user-id"),
        alice.user.id.to_string()
    );
    assert_eq!(echo_header(&echo, "x-auth-username"), "alice");
    assert_eq!(echo_header(&echo, "x-auth-roles"), "");
    assert_eq!(echo_header(&echo, "x-auth-session-id"), "");
    assert_eq!(echo_header(&echo, "x-auth-fresh"), "true");
    // Fresh, so a fresh route takes it (`iat` stands in for `auth_time`: within 5 minutes).
    assert_eq!(
        app.get("/admin/x", Some(&m.alice.access)).await.status(),
        StatusCode::OK
    );
    // AuthApi's token is fresh for five minutes: a float `fresh`.
    assert!(claims(&m.carol.access)["fresh"].is_f64());
    assert_eq!(
        app.get("/admin/x", Some(&m.carol.access)).await.status(),
        StatusCode::OK
    );
    // TokenRefresh's token is not fresh.
    let not_fresh = m.flask.refresh(&m.alice.refresh).await;
    assert_eq!(
        app.get("/api/x", Some(&not_fresh)).await.status(),
        StatusCode::OK
    );
    let r = app.get("/admin/x", Some(&not_fresh)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    // Roles come only from authgate tokens: bob had `ops` in the old app, not here.
    let r = app.get("/ops/x", Some(&m.bob.access)).await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    // A refresh token is no access token.
    let r = app.get("/api/x", Some(&m.alice.refresh)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // A user the old app has and authgate does not: never imported.
    m.flask.register("dave", "scrypt", "").await;
    let dave = m.flask.login("/login", "dave").await;
    let r = app.get("/api/x", Some(&dave.access)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Signed with another secret: refused.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(&m.alice.access),
        &jsonwebtoken::EncodingKey::from_secret(b"not the flask secret"),
    )
    .unwrap();
    let r = app.get("/api/x", Some(&forged)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Behind authgate the unchanged app still checks the token itself (forwarded).
    let r = app.get("/flask/whoami", Some(&m.alice.access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"identity": "alice", "gateway_user": "alice"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_legacy_refresh_token_opens_one_session_and_is_answered_again() {
    let (m, dir) = migrated().await;
    let app = gateway(&m, dir, "").await;
    let first: Value = app.refresh(&m.alice.refresh).await.json().await.unwrap();
    let second: Value = app.refresh(&m.alice.refresh).await.json().await.unwrap();
    let access = first["access_token"].as_str().expect("access token");
    let again = second["access_token"].as_str().expect("access token again");
    // One session per legacy jti; rotation is on, and reuse of the legacy token is no attack.
    assert_eq!(claims(access)["sid"], claims(again)["sid"]);
    assert_eq!(first["refresh_token"], second["refresh_token"]);
    assert_eq!(claims(access)["fresh"], false);
    // It ends no later than the legacy refresh token would have.
    let legacy_exp = claims(&m.alice.refresh)["exp"].as_u64().unwrap();
    let refresh = first["refresh_token"].as_str().expect("refresh token");
    assert!(claims(refresh)["exp"].as_u64().unwrap() <= legacy_exp);
    // authgate's token works here, and at the app, which checks it with the shared secret.
    assert_eq!(
        app.get("/api/x", Some(access)).await.status(),
        StatusCode::OK
    );
    let v: Value = app
        .get("/flask/whoami", Some(access))
        .await
        .json()
        .await
        .unwrap();
    let alice = stored(&app, "alice").await;
    assert_eq!(v["identity"], alice.user.id.to_string());
    assert_eq!(v["gateway_user"], "alice");

    // Logging out of the exchanged session revokes the legacy refresh token too.
    assert_eq!(app.logout(again).await.status(), StatusCode::OK);
    let r = app.refresh(&m.alice.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let r = app.logout(&m.alice.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;

    // The other way round: logging out with the legacy refresh token ends its session too.
    let bob: Value = app.refresh(&m.bob.refresh).await.json().await.unwrap();
    let access = bob["access_token"].as_str().expect("access token");
    assert_eq!(app.logout(&m.bob.refresh).await.status(), StatusCode::OK);
    let r = app.get("/api/x", Some(access)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let r = app.refresh(&m.bob.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_logout_all_password_change_and_deletion_revoke_legacy_tokens() {
    let (m, dir) = migrated().await;
    let app = gateway(&m, dir, "").await;
    // Logout with a legacy token revokes its jti, and only it.
    let other = m.flask.refresh(&m.alice.refresh).await;
    assert_eq!(app.logout(&m.alice.access).await.status(), StatusCode::OK);
    let r = app.get("/api/x", Some(&m.alice.access)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let r = app.logout(&m.alice.access).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    assert_eq!(
        app.get("/api/x", Some(&other)).await.status(),
        StatusCode::OK
    );

    // `user logout-all` in another process: every legacy token of bob, within a second.
    let out = user_cli_async(&app.config_path, &["user", "logout-all", "bob"], None).await;
    assert!(out.status.success(), "{out:?}");
    within_a_second("bob's legacy token revoked", || async {
        app.get("/api/x", Some(&m.bob.access)).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    let r = app.get("/api/x", Some(&m.bob.access)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let r = app.refresh(&m.bob.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;

    // A password change (with carol's legacy fresh token) cuts off her legacy tokens.
    let r = app
        .request(
            reqwest::Method::PUT,
            "/auth/password",
            Some(&m.carol.access),
        )
        .json(&json!({"current_password": OLD_PASSWORD, "new_password": "a new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.refresh(&m.carol.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;

    // Deleted: token_revoked, not invalid_token, and still so after a restart.
    let alice = app.login_raw("alice", OLD_PASSWORD).await;
    let alice: Value = alice.json().await.unwrap();
    let r = app
        .request(
            reqwest::Method::DELETE,
            "/auth/me",
            alice["access_token"].as_str(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get("/api/x", Some(&other)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let setup = app.setup.clone();
    let app = TestApp::spawn_in(setup, app.stop().await).await;
    let r = app.get("/api/x", Some(&other)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn past_accept_until_legacy_tokens_are_invalid_and_the_gateway_still_starts() {
    let (m, dir) = migrated().await;
    let app = TestApp::spawn_in(legacy_setup(&m, "2020-01-01T00:00:00Z", ""), dir).await;
    let r = app.get("/api/x", Some(&m.alice.access)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let r = app.refresh(&m.alice.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Logging in works as ever.
    assert_eq!(
        app.login_raw("bob", OLD_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn users_imported_while_the_gateway_runs_have_their_legacy_tokens_accepted() {
    let (m, dir) = migrated().await;
    let app = gateway(&m, dir, "").await;
    m.flask.register("erin", "bcrypt", "").await;
    let erin = m.flask.login("/login", "erin").await;
    let r = app.get("/api/x", Some(&erin.access)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let hash = bcrypt::hash(OLD_PASSWORD, 4).unwrap();
    let file = app.dir.path().join("erin.csv");
    std::fs::write(
        &file,
        format!("username,password_hash,roles\nerin,{hash},\n"),
    )
    .unwrap();
    let out = user_cli_async(&app.config_path, &["user", "import", path_str(&file)], None).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    within_a_second("erin known", || async {
        app.get("/api/x", Some(&erin.access)).await.status() == StatusCode::OK
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_tokens_in_flask_jwt_extended_cookies_pass_the_same_csrf_check() {
    let (m, dir) = migrated().await;
    let setup = Setup {
        cookies: "enabled = true".into(),
        ..legacy_setup(&m, "2099-01-01T00:00:00Z", "")
    };
    let app = TestApp::spawn_in(setup, dir).await;
    let jar = m.flask.cookie_login("alice").await;
    let cookie = format!("access_token_cookie={}", jar["access_token_cookie"]);
    let send = |method: reqwest::Method, csrf: Option<&str>| {
        let mut req = app
            .request(method, "/api/x", None)
            .header("cookie", &cookie);
        if let Some(value) = csrf {
            req = req.header("x-csrf-token", value);
        }
        req.send()
    };
    assert_eq!(
        send(reqwest::Method::GET, None).await.unwrap().status(),
        StatusCode::OK
    );
    let r = send(reqwest::Method::POST, None).await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let r = send(reqwest::Method::POST, Some("not-the-value"))
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let csrf = jar["csrf_access_token"].as_str();
    let r = send(reqwest::Method::POST, Some(csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

// ---------------------------------------------------------------- error format

#[tokio::test(flavor = "multi_thread")]
async fn the_flask_error_format_answers_msg_with_its_401s_and_422s() {
    let (m, dir) = migrated().await;
    let app = gateway(&m, dir, "error_format = \"flask-jwt-extended\"").await;
    let cases = [
        (None, 401),
        (Some("not.a.token"), 422),
        (Some(m.alice.refresh.as_str()), 422),
    ];
    for (token, status) in cases {
        let r = app.get("/api/x", token).await;
        assert_eq!(r.status().as_u16(), status, "{token:?}");
        assert_eq!(
            !header(r.headers(), "www-authenticate").is_empty(),
            status == 401
        );
        let v: Value = r.json().await.unwrap();
        assert!(v["msg"].is_string() && v.get("error").is_none(), "{v}");
    }
    let not_fresh = m.flask.refresh(&m.alice.refresh).await;
    let r = app.get("/admin/x", Some(&not_fresh)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"msg": "Fresh token required"}));
    // The auth endpoints too; other errors keep authgate's shape.
    let r = app.refresh(&m.alice.access).await;
    assert_eq!(r.status().as_u16(), 422);
    let r = app.get("/nowhere", None).await;
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.login_raw("alice", "wrong").await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

// ---------------------------------------------------------------- imported passwords

#[tokio::test(flavor = "multi_thread")]
async fn users_the_flask_app_stored_log_in_after_import_and_are_argon2id_afterwards() {
    let (m, dir) = migrated().await;
    let app = gateway(&m, dir, "").await;
    for (name, old) in [
        ("alice", "scrypt:"),
        ("bob", "$2b$"),
        ("carol", "pbkdf2:sha256:"),
    ] {
        let before = stored(&app, name).await;
        assert!(before.password_hash.starts_with(old), "{name}");
        let r = app.login_raw(name, "not the password").await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        assert_eq!(
            app.login_raw(name, OLD_PASSWORD).await.status(),
            StatusCode::OK
        );
        let after = stored(&app, name).await;
        assert!(after.password_hash.starts_with("$argon2id$"), "{name}");
        assert_eq!(
            app.login_raw(name, OLD_PASSWORD).await.status(),
            StatusCode::OK
        );
    }
    // bob's role came over from the old app's column.
    let bob = stored(&app, "bob").await;
    assert_eq!(bob.user.roles, ["ops"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_users_of_a_cheap_scheme_cannot_be_told_apart_by_timing() {
    // One user whose werkzeug hash costs well under a millisecond, one whose bcrypt hash
    // costs more than argon2: every failed check must take as long as the slowest.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = authgate::store::SqliteStore::open(&dir.path().join("authgate.db"))
            .await
            .unwrap();
        let mut key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(OLD_PASSWORD.as_bytes(), b"salt", 1000, &mut key);
        let cheap = format!("pbkdf2:sha256:1000$salt${}", hex::encode(key));
        let slow = bcrypt::hash(OLD_PASSWORD, 10).unwrap();
        for (name, hash) in [("cheap", cheap), ("slow", slow)] {
            use authgate::store::Store as _;
            store.create_user(name, &hash, vec![], 0).await.unwrap();
        }
    }
    let setup = Setup {
        auth: "login_limit = { max_failures = 1000, user_max_failures = 1000, \
               address_max_failures = 1000, window = \"15m\" }"
            .into(),
        ..Setup::default()
    };
    let app = TestApp::spawn_in(setup, dir).await;
    app.login_raw("nobody", "x").await;
    app.login_raw("cheap", "x").await;
    // Two shared cores make one round noisy; without the floor the cheap user answers some
    // 30 times faster than an unknown one in every round.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (ratio, a, b) =
            crate::sessions::failed_login_time_ratio_of(&app, "nobody", "cheap").await;
        println!("failed-login medians: unknown {a:?}, cheap scheme {b:?}, ratio {ratio:.2}");
        if ratio <= 1.5 {
            // And it still logs in (faster: success is not padded).
            assert_eq!(
                app.login_raw("cheap", OLD_PASSWORD).await.status(),
                StatusCode::OK
            );
            return;
        }
        rounds.push(format!("{a:?} / {b:?} = {ratio:.2}"));
    }
    panic!("median times differ by more than 1.5x in every round: {rounds:?}");
}

// ---------------------------------------------------------------- the migration script

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_script_moves_the_flask_app_behind_authgate_without_logging_anyone_out() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("legacy");
    std::fs::create_dir_all(&legacy).unwrap();
    let secret_file = legacy.join("jwt-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let flask_db = dir.path().join("app.db");
    let flask = FlaskApp::start(&secret_file, &flask_db);
    flask.register("alice@example.com", "scrypt", "").await;
    flask.register("bob", "bcrypt", "admin").await;
    // An old client logged in before the move, and keeps its tokens.
    let client_tokens = flask.login("/login", "alice@example.com").await;

    // The example config, with this test's folder and the Flask app's port.
    let example = std::fs::read_to_string(format!("{EXAMPLE}/authgate.toml")).unwrap();
    let config_text = example
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:5000", &format!("127.0.0.1:{}", flask.port))
        .replace("\"legacy/", &format!("\"{}/", legacy.display()))
        .replace(
            "sqlite://data/",
            &format!("sqlite://{}/", dir.path().display()),
        )
        + "\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n";
    let config = dir.path().join("authgate.toml");
    std::fs::write(&config, config_text).unwrap();

    let script = Command::new(format!("{EXAMPLE}/migrate.sh"))
        .env("FLASK_DB", &flask_db)
        .env("AUTHGATE_CONFIG", &config)
        .env("AUTHGATE", crate::helpers::binary())
        .env("PYTHON", python())
        .env("WORK", dir.path())
        .output()
        .expect("migrate.sh runs");
    let said = String::from_utf8_lossy(&script.stdout);
    assert!(
        script.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&script.stderr)
    );
    assert!(said.contains("imported 2 user(s)"), "{said}");

    // The app put behind authgate (the real binary).
    let gateway = Process::start(&config, &[]);
    let base = format!("http://{}", gateway.addr);
    let http = client();
    let send = |method: reqwest::Method, path: &str, token: &str| {
        let req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The old client's access token still works, through authgate and at the app.
    let (status, v) = send(reqwest::Method::GET, "/whoami", &client_tokens.access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["identity"], "alice@example.com");
    // A fresh-only endpoint takes its fresh token.
    let (status, _) = send(reqwest::Method::POST, "/orders", &client_tokens.access).await;
    assert_eq!(status, StatusCode::CREATED);
    // Its refresh token, kept and used again and again (rotation off for old clients).
    for _ in 0..2 {
        let (status, v) = send(
            reqwest::Method::POST,
            "/auth/refresh",
            &client_tokens.refresh,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let access = v["access_token"].as_str().expect("access token");
        assert!(v.get("refresh_token").is_none(), "{v}");
        // The app accepts authgate's token too: same secret, forwarded.
        let (status, v) = send(reqwest::Method::GET, "/whoami", access).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["gateway_user"], "alice@example.com");
    }
    // Errors in the shape the old clients read.
    let r = http.get(format!("{base}/whoami")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"msg": "Missing Authorization Header"})
    );
    // And the users log in at authgate with the passwords they had.
    for name in ["alice@example.com", "bob"] {
        let r = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"username": name, "password": OLD_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
}

// ---------------------------------------------------------------- the import command

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_line_stops_the_import_with_nothing_changed_unless_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/authgate.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let hash = bcrypt::hash(OLD_PASSWORD, 4).unwrap();
    let file = dir.path().join("users.csv");
    std::fs::write(
        &file,
        format!(
            "username,password_hash,roles\nann,{hash},ops;admin\nnot a name,{hash},\n\
             ben,md5$nope,\ncid,{hash},\n"
        ),
    )
    .unwrap();
    let list = || async {
        let out = user_cli_async(&config, &["user", "list"], None).await;
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = user_cli_async(&config, &["user", "import", path_str(&file)], None).await;
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("line 3") && said.contains("line 4"), "{said}");
    assert!(!list().await.contains("ann"), "nothing imported");

    let args = ["user", "import", "--skip-bad", path_str(&file)];
    let out = user_cli_async(&config, &args, None).await;
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let users = list().await;
    assert!(users.contains("ann") && users.contains("cid"), "{users}");
    assert!(users.contains("admin,ops"), "{users}");

    // Everything again, plaintext this time: duplicates are skipped and reported, exit 0.
    let plain = dir.path().join("again.jsonl");
    std::fs::write(
        &plain,
        "{\"username\":\"ANN\",\"password\":\"x\"}\n{\"username\":\"dee\",\"password\":\"p, w\"}\n",
    )
    .unwrap();
    let out = user_cli_async(&config, &["user", "import", path_str(&plain)], None).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("imported 1 user(s); skipped 1 duplicate(s)"),
        "{said}"
    );
}
