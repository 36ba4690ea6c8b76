//! Several replicas on one PostgreSQL database (docs/http-api.md §3, §6): revocations made on one
//! replica, or by the CLI, are refused on every other; a replica that restarts, loses its
//! connections or is cut off from the database never accepts a revoked token, and fails
//! closed (503) while it cannot confirm it is in sync; registration, rotation races and the
//! three failed-login tiers behave as on one process.
//!
//! Each test has a database of its own on the server `scripts/test` provides. Replicas are
//! gateways in this process (`TestApp`) sharing the database and the signing secret, or the
//! real binary where a process is killed and restarted. Waiting is polling an endpoint until
//! it answers what is expected, with a deadline — never a fixed sleep.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{
    assert_error, assert_limited, client, user_cli_async, Process, Setup, TestApp, Tokens, PASSWORD,
};
use crate::pg::TestDatabase;

/// §6: a revocation takes effect on every replica in sync within a second.
const IN_SYNC: Duration = Duration::from_secs(1);

/// Generous bound for what involves reconnecting or staleness (seconds by design).
const RECOVERY: Duration = Duration::from_secs(20);

/// A database and a signing secret shared by the replicas of one test.
pub(crate) struct Cluster {
    pub(crate) db: TestDatabase,
    secret: TempDir,
}

/// How one replica is set up.
#[derive(Clone, Default)]
pub(crate) struct ReplicaOptions {
    /// `[auth]` lines.
    pub(crate) auth: String,
    /// `[proxy]` lines.
    pub(crate) proxy: String,
    /// `max_staleness`, default 10 s.
    pub(crate) max_staleness: Option<&'static str>,
    /// Connect through this address instead of the server's (a proxy the test can cut).
    pub(crate) via: Option<SocketAddr>,
    /// PostgreSQL `application_name` of its connections, so a test can find them.
    pub(crate) name: Option<&'static str>,
}

impl Cluster {
    pub(crate) async fn new() -> Cluster {
        Cluster {
            db: TestDatabase::create().await,
            secret: tempfile::tempdir().unwrap(),
        }
    }

    fn secret_file(&self) -> PathBuf {
        self.secret.path().join("jwt-secret")
    }

    /// The `[store]` lines of a replica: the shared database, a small pool (parallel tests
    /// share the server's connection limit).
    fn store_lines(&self, options: &ReplicaOptions) -> String {
        let mut url = match options.via {
            Some(addr) => self.db.url_via(addr),
            None => self.db.url.clone(),
        };
        if let Some(name) = options.name {
            url.push_str(if url.contains('?') { "&" } else { "?" });
            url.push_str(&format!("application_name={name}"));
        }
        let mut lines = format!("url = \"{url}\"\npool_size = 4\n");
        if let Some(max) = options.max_staleness {
            lines.push_str(&format!("max_staleness = \"{max}\"\n"));
        }
        lines
    }

    /// A replica in this process. Start them one after the other: the first creates the
    /// shared secret file.
    pub(crate) async fn replica(&self, options: ReplicaOptions) -> TestApp {
        TestApp::spawn_with(Setup {
            auth: options.auth.clone(),
            proxy: options.proxy.clone(),
            store: Some(self.store_lines(&options)),
            secret_file: Some(self.secret_file()),
            ..Setup::default()
        })
        .await
    }

    /// Two replicas with the same options.
    async fn pair(&self, options: ReplicaOptions) -> (TestApp, TestApp) {
        let a = self.replica(options.clone()).await;
        let b = self.replica(options).await;
        (a, b)
    }

    /// A config file for the real binary (JSON logs, ports 0) in `dir`, routing `/api` to
    /// `echo` with token auth.
    fn binary_config(&self, dir: &Path, echo: SocketAddr) -> PathBuf {
        let path = dir.join("authgate.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [store]\n{store}\n[tokens]\nsecret_file = \"{secret}\"\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"http://{echo}\"\nauth = \"token\"\n",
            store = self.store_lines(&ReplicaOptions::default()),
            secret = self.secret_file().display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The status of `GET path` with `token`.
async fn status(app: &TestApp, path: &str, token: &str) -> StatusCode {
    app.get(path, Some(token)).await.status()
}

/// Polls `GET path` with `token` on `app` until it answers `want`; fails after `within`.
/// Returns the last response.
async fn until_status(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    want: StatusCode,
    within: Duration,
) -> Response {
    let start = Instant::now();
    loop {
        let r = app.get(path, token).await;
        if r.status() == want {
            return r;
        }
        let got = r.status();
        assert!(
            start.elapsed() < within,
            "{path} on {} still answers {got} after {:?}, not {want}",
            app.base,
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `token` is refused as revoked on `app` (and was accepted until then).
async fn until_revoked(app: &TestApp, token: &str, within: Duration) {
    let r = until_status(app, "/api/x", Some(token), StatusCode::UNAUTHORIZED, within).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

/// `GET path` on `app`'s admin listener.
async fn admin_get(app: &TestApp, path: &str) -> Response {
    app.client
        .get(format!("http://{}{path}", app.admin))
        .send()
        .await
        .unwrap()
}

async fn refresh_on(app: &TestApp, refresh: &str) -> Response {
    app.refresh(refresh).await
}

async fn json_of(r: Response) -> Value {
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

// ---------------------------------------------------------------- revocation everywhere

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_on_one_replica_is_refused_on_the_other_within_a_second() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster.pair(ReplicaOptions::default()).await;
    let t = a.user("ann").await;
    let other = b.login("ann").await;
    assert_eq!(status(&b, "/api/x", &t.access).await, StatusCode::OK);
    assert_eq!(status(&b, "/auth/me", &t.access).await, StatusCode::OK);

    assert_eq!(a.logout(&t.access).await.status(), StatusCode::OK);
    until_revoked(&b, &t.access, IN_SYNC).await;
    let r = refresh_on(&b, &t.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let r = b.logout(&t.access).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    // The session logged in on B is another session: untouched, on both.
    assert_eq!(status(&a, "/api/x", &other.access).await, StatusCode::OK);
    assert_eq!(status(&b, "/api/x", &other.access).await, StatusCode::OK);
    // And the other way round.
    assert_eq!(b.logout(&other.access).await.status(), StatusCode::OK);
    until_revoked(&a, &other.access, IN_SYNC).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_logout_all_from_the_cli_is_refused_on_both_replicas() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster.pair(ReplicaOptions::default()).await;
    let one = a.user("Bert").await;
    let two = b.login("bert").await;
    let bystander = b.user("carl").await;
    for app in [&a, &b] {
        for t in [&one, &two] {
            assert_eq!(status(app, "/api/x", &t.access).await, StatusCode::OK);
        }
    }
    let out = user_cli_async(&a.config_path, &["user", "logout-all", "BERT"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 session(s)"));
    for app in [&a, &b] {
        for t in [&one, &two] {
            until_revoked(app, &t.access, IN_SYNC).await;
            let r = refresh_on(app, &t.refresh).await;
            assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
        }
        assert_eq!(
            status(app, "/api/x", &bystander.access).await,
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_users_in_postgres_beside_running_replicas() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster.pair(ReplicaOptions::default()).await;
    let cli = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let config = a.config_path.clone();
        async move {
            let out = user_cli_async(&config, args, stdin).await;
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{args:?}: {stderr}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let added = cli(
        &["user", "add", "Dora", "--role", "ops"],
        Some("dora's password\n"),
    )
    .await;
    assert!(added.contains("created user Dora"), "{added}");
    let r = b.login_raw("dora", "dora's password").await;
    let t: Value = json_of(r).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(status(&a, "/ops/x", &access).await, StatusCode::OK);
    assert!(cli(&["user", "list"], None).await.contains("Dora"));
    assert!(cli(&["user", "grant", "dora", "admin"], None)
        .await
        .contains("granted"));
    let me: Value = json_of(a.get("/auth/me", Some(&access)).await).await;
    assert_eq!(me["roles"], json!(["admin", "ops"]));
    assert!(cli(&["user", "revoke", "dora", "admin"], None)
        .await
        .contains("revoked"));

    let deleted = cli(&["user", "delete", "DORA"], None).await;
    assert!(deleted.contains("deleted user Dora"), "{deleted}");
    for app in [&a, &b] {
        until_revoked(app, &access, IN_SYNC).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_replica_refuses_what_was_revoked_while_it_was_down() {
    let cluster = Cluster::new().await;
    let echo_stop = tokio_util::sync::CancellationToken::new();
    let echo = crate::echo::spawn(([127, 0, 0, 1], 0).into(), echo_stop.clone())
        .await
        .unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config_a = cluster.binary_config(dir_a.path(), echo);
    let config_b = cluster.binary_config(dir_b.path(), echo);
    let a = Process::start(&config_a, &[]);
    let mut b = Process::start(&config_b, &[]);
    let (base_a, c) = (format!("http://{}", a.addr), client());
    let post = |url: String, token: Option<String>, body: Value| {
        let c = c.clone();
        async move {
            let mut req = c.post(url).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap()
        }
    };
    let creds = json!({ "username": "eve", "password": PASSWORD });
    let r = post(format!("{base_a}/auth/register"), None, creds.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let v: Value =
            json_of(post(format!("{base_a}/auth/login"), None, creds.clone()).await).await;
        sessions.push(v["access_token"].as_str().unwrap().to_owned());
    }
    let get_b = |base: String, token: String| {
        let c = c.clone();
        async move {
            c.get(format!("{base}/api/x"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let base_b = format!("http://{}", b.addr);
    assert_eq!(
        get_b(base_b.clone(), sessions[0].clone()).await.status(),
        StatusCode::OK
    );

    // B dies; A revokes two sessions meanwhile (and one while B is starting again).
    b.signal("KILL");
    let _ = tokio::task::spawn_blocking(move || b.wait()).await;
    for token in &sessions[..2] {
        let r = post(
            format!("{base_a}/auth/logout"),
            Some(token.clone()),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let b = Process::start(&config_b, &[]);
    let base_b = format!("http://{}", b.addr);
    // At once, no waiting: B starts from the revocations in force.
    for token in &sessions[..2] {
        let r = get_b(base_b.clone(), token.clone()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "token_revoked");
    }
    assert_eq!(
        get_b(base_b.clone(), sessions[2].clone()).await.status(),
        StatusCode::OK
    );
    drop((a, b));
    echo_stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_connections_are_killed_recovers_without_losing_a_revocation() {
    let cluster = Cluster::new().await;
    let a = cluster.replica(ReplicaOptions::default()).await;
    let b = cluster
        .replica(ReplicaOptions {
            name: Some("authgate_replica_b"),
            ..ReplicaOptions::default()
        })
        .await;
    let first = a.user("fay").await;
    let second = a.login("fay").await;
    let keep = a.login("fay").await;
    assert_eq!(status(&b, "/api/x", &first.access).await, StatusCode::OK);

    for (round, token) in [&first, &second].into_iter().enumerate() {
        // The server ends every connection of B — its pool and its LISTEN connection — and
        // A revokes at once, while B is reconnecting: the announcement may be lost, the
        // revocation may not.
        let killed = cluster.db.terminate("authgate_replica_b").await;
        assert!(killed >= 1, "round {round}: no connection of B found");
        assert_eq!(a.logout(&token.access).await.status(), StatusCode::OK);
        until_revoked(&b, &token.access, RECOVERY).await;
    }
    // B's own store calls work again.
    assert_eq!(status(&b, "/auth/me", &keep.access).await, StatusCode::OK);
    let r = refresh_on(&b, &keep.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(b.logout(&keep.access).await.status(), StatusCode::OK);
    until_revoked(&a, &keep.access, IN_SYNC).await;
}

/// A TCP proxy in front of PostgreSQL that the test can cut (every connection closed, new
/// ones closed at once) and restore.
struct CutProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl CutProxy {
    async fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *cut_rx.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        CutProxy { addr, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_cut_off_longer_than_max_staleness_fails_closed_then_recovers() {
    let cluster = Cluster::new().await;
    let proxy = CutProxy::start(cluster.db.server_addr()).await;
    let a = cluster.replica(ReplicaOptions::default()).await;
    let b = cluster
        .replica(ReplicaOptions {
            max_staleness: Some("2s"),
            via: Some(proxy.addr),
            ..ReplicaOptions::default()
        })
        .await;
    let revoked = a.user("gus").await;
    let valid = a.login("gus").await;
    assert_eq!(status(&b, "/api/x", &valid.access).await, StatusCode::OK);
    let ready = admin_get(&b, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);

    proxy.set_cut(true);
    // A revokes while B cannot hear of it.
    assert_eq!(a.logout(&revoked.access).await.status(), StatusCode::OK);
    let r = until_status(
        &b,
        "/api/x",
        Some(&valid.access),
        StatusCode::SERVICE_UNAVAILABLE,
        RECOVERY,
    )
    .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    // Fails closed for every token route and token endpoint, revoked token or not...
    for path in ["/api/x", "/auth/me", "/admin/x"] {
        for token in [&valid.access, &revoked.access] {
            let r = b.get(path, Some(token)).await;
            assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
        }
    }
    // ...while public routes and token-less refusals work, and /readyz takes B out.
    assert_eq!(b.get("/public/x", None).await.status(), StatusCode::OK);
    assert_error(
        b.get("/api/x", None).await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    )
    .await;
    let ready = admin_get(&b, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = admin_get(&b, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("authgate_revocations_stale 1"),
        "{metrics}"
    );
    // Logins need the store: 503, not a wrong answer.
    let r = b.login_raw("gus", PASSWORD).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    proxy.set_cut(false);
    until_status(&b, "/api/x", Some(&valid.access), StatusCode::OK, RECOVERY).await;
    // Back in sync: what was revoked while cut off is refused, nothing was lost.
    let r = b.get("/api/x", Some(&revoked.access)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    // Changes: readiness also needs the store to have accepted a write since the failed
    // ones (the background probe's, within 2 s, or a real one): the login is that write.
    assert_eq!(b.login_raw("gus", PASSWORD).await.status(), StatusCode::OK);
    let ready = admin_get(&b, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = admin_get(&b, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("authgate_revocations_stale 0"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------- one answer, two replicas

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_registrations_of_one_name_on_two_replicas_make_one_user() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster.pair(ReplicaOptions::default()).await;
    let apps = Arc::new([a, b]);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let apps = Arc::clone(&apps);
            tokio::spawn(async move {
                let name = if i % 2 == 0 { "Hugo" } else { "HUGO" };
                apps[i % 2].register(name, PASSWORD).await.status()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::CREATED => created += 1,
            other => assert_eq!(other, StatusCode::CONFLICT),
        }
    }
    assert_eq!(created, 1);
}

/// Refreshes `refresh` on A and B at once; both answers.
async fn refresh_on_both(a: &TestApp, b: &TestApp, refresh: &str) -> [Response; 2] {
    let (ra, rb) = tokio::join!(refresh_on(a, refresh), refresh_on(b, refresh));
    [ra, rb]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_race_across_replicas_inside_the_grace_gives_both_the_same_refresh_token() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster.pair(ReplicaOptions::default()).await;
    let t = a.user("ivy").await;
    let mut jtis = Vec::new();
    for r in refresh_on_both(&a, &b, &t.refresh).await {
        let v = json_of(r).await;
        let refresh = v["refresh_token"].as_str().unwrap().to_owned();
        jtis.push(crate::helpers::claims(&refresh)["jti"].clone());
        assert_eq!(
            status(&b, "/api/x", v["access_token"].as_str().unwrap()).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        jtis[0], jtis[1],
        "one rotation; the other answer re-signs its result"
    );
    assert_ne!(jtis[0], crate::helpers::claims(&t.refresh)["jti"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_race_across_replicas_outside_the_grace_is_reuse_and_ends_the_session() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster
        .pair(ReplicaOptions {
            auth: "refresh_reuse_grace = \"0s\"".into(),
            ..ReplicaOptions::default()
        })
        .await;
    let t = a.user("jay").await;
    let [ra, rb] = refresh_on_both(&a, &b, &t.refresh).await;
    let mut statuses = [ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
    let (won, lost) = if ra.status() == StatusCode::OK {
        (ra, rb)
    } else {
        (rb, ra)
    };
    assert_error(lost, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let v = json_of(won).await;
    // Reuse detected: the whole session is gone, the winner's new tokens too, everywhere.
    let new_access = v["access_token"].as_str().unwrap().to_owned();
    let new_refresh = v["refresh_token"].as_str().unwrap().to_owned();
    for app in [&a, &b] {
        until_revoked(app, &new_access, IN_SYNC).await;
        until_revoked(app, &t.access, IN_SYNC).await;
        let r = refresh_on(app, &new_refresh).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
}

// ---------------------------------------------------------------- failed-login limits

async fn assert_wrong(r: Response) {
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

const TIERS: &str = "login_limit = { max_failures = 2, user_max_failures = 3, \
                     address_max_failures = 4, window = \"15m\" }";

fn limited_options() -> ReplicaOptions {
    ReplicaOptions {
        auth: TIERS.into(),
        proxy: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..ReplicaOptions::default()
    }
}

/// The three tiers, with attempts alternating between `a` and `b` (the same app twice for
/// one process): each closes at its own count, wherever the failures happened.
async fn three_tiers(a: &TestApp, b: &TestApp) {
    a.register("kai", PASSWORD).await;
    a.register("lea", PASSWORD).await;
    // Pair (2): one failure on each replica closes kai at .1, on both...
    assert_wrong(a.login_from("kai", "203.0.113.1", "wrong").await).await;
    assert_wrong(b.login_from("kai", "203.0.113.1", "wrong").await).await;
    assert_limited(a.login_from("kai", "203.0.113.1", PASSWORD).await).await;
    assert_limited(b.login_from("kai", "203.0.113.1", PASSWORD).await).await;
    // ...not kai elsewhere, which succeeds and clears kai's counts, pair included.
    assert_eq!(
        b.login_from("kai", "203.0.113.2", PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        a.login_from("kai", "203.0.113.1", PASSWORD).await.status(),
        StatusCode::OK
    );
    // User (3): failures from three addresses over both replicas close kai everywhere.
    for (app, ip) in [(a, "203.0.113.3"), (b, "203.0.113.4"), (a, "203.0.113.5")] {
        assert_wrong(app.login_from("kai", ip, "wrong").await).await;
    }
    assert_limited(b.login_from("kai", "203.0.113.6", PASSWORD).await).await;
    // Address (4): .9 tries four names once each over both replicas...
    for (i, name) in ["n1", "n2", "n3", "n4"].into_iter().enumerate() {
        let app = if i % 2 == 0 { a } else { b };
        assert_wrong(app.login_from(name, "203.0.113.9", "wrong").await).await;
    }
    // ...and is closed for every name there, lea with her password too; lea elsewhere is not.
    assert_limited(a.login_from("lea", "203.0.113.9", PASSWORD).await).await;
    assert_limited(b.login_from("lea", "203.0.113.9", PASSWORD).await).await;
    assert_eq!(
        b.login_from("lea", "203.0.113.10", PASSWORD).await.status(),
        StatusCode::OK
    );
    // `user unlock` from the CLI opens kai again on both replicas.
    let out = user_cli_async(&a.config_path, &["user", "unlock", "KAI"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        a.login_from("kai", "203.0.113.6", PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        b.login_from("kai", "203.0.113.7", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_login_limit_tiers_on_one_postgres_replica() {
    let cluster = Cluster::new().await;
    let a = cluster.replica(limited_options()).await;
    three_tiers(&a, &a).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_login_limit_tiers_are_shared_by_two_replicas() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster.pair(limited_options()).await;
    three_tiers(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_wrong_logins_over_two_replicas_gets_no_more_than_max_failures_checks() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster
        .pair(ReplicaOptions {
            auth: "login_limit = { max_failures = 3, window = \"15m\" }".into(),
            ..ReplicaOptions::default()
        })
        .await;
    a.register("max", PASSWORD).await;
    let started = a.state.hasher.hashes_started() + b.state.hasher.hashes_started();
    let apps = Arc::new([a, b]);
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let apps = Arc::clone(&apps);
            tokio::spawn(async move {
                apps[i % 2]
                    .login_raw("max", "not the password")
                    .await
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in burst {
        statuses.push(task.await.unwrap());
    }
    let count = |s: StatusCode| statuses.iter().filter(|x| **x == s).count();
    assert_eq!(count(StatusCode::UNAUTHORIZED), 3, "{statuses:?}");
    assert_eq!(count(StatusCode::TOO_MANY_REQUESTS), 17, "{statuses:?}");
    let [a, b] = &*apps;
    let hashed = a.state.hasher.hashes_started() + b.state.hasher.hashes_started() - started;
    assert_eq!(hashed, 3, "three passwords tried over both replicas");
    assert_limited(b.login_raw("max", PASSWORD).await).await;
    assert_limited(a.login_raw("max", PASSWORD).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_issued_by_one_replica_work_on_the_other() {
    let cluster = Cluster::new().await;
    let (a, b) = cluster.pair(ReplicaOptions::default()).await;
    let t: Tokens = a.user("nia").await;
    let v = json_of(refresh_on(&b, &t.refresh).await).await;
    let access = v["access_token"].as_str().unwrap();
    assert_eq!(status(&a, "/api/x", access).await, StatusCode::OK);
    let fresh = b.fresh(&t.access, PASSWORD).await;
    assert_eq!(fresh.status(), StatusCode::OK);
}
