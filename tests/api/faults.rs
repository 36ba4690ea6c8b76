//! Fault tests: the store refusing writes during logouts (its write lock held by another
//! process, its files unable to grow), the gateway killed in the middle of 500 logouts,
//! PostgreSQL connections killed during logouts, and an upstream dying mid-response. The rule
//! throughout: a logout answered `200` is durable — it holds after any of these — and one that
//! could not be made durable is an error, never a `200`; meanwhile `/readyz` says `503`.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{binary, client, write_binary_config, Process, TestApp, PASSWORD};
use crate::proxy::{raw_upstream, recording_upstream};
use crate::replicas::{Cluster, ReplicaOptions};

/// `GET /readyz` on `admin`: its status.
async fn readyz(admin: SocketAddr) -> StatusCode {
    client()
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_while_another_process_holds_the_write_lock_is_an_error_and_not_ready() {
    let app = TestApp::spawn().await;
    let tokens = app.user("locked").await;
    assert_eq!(readyz(app.admin).await, StatusCode::OK);

    // Another process's writer (an operator's sqlite3 shell, a backup tool) takes the lock.
    let db = app.dir.path().join("authgate.db");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let res = app.logout(&tokens.access).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(readyz(app.admin).await, StatusCode::SERVICE_UNAVAILABLE);
    // Not revoked, so not claimed: the token still works, and the logout can be retried.
    assert_eq!(app.get("/api/x", Some(&tokens.access)).await.status(), 200);

    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let res = app.logout(&tokens.access).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(readyz(app.admin).await, StatusCode::OK, "a write succeeded");
    let res = app.get("/api/x", Some(&tokens.access)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// A config for the real binary in `dir`: cheap argon2 (these tests are about the store) and
/// `/api` (token) to a recording upstream.
async fn binary_config(dir: &std::path::Path) -> std::path::PathBuf {
    let (rec, _seen) = recording_upstream().await;
    write_binary_config(
        dir,
        "",
        &format!(
            "[auth]\nargon2 = {{ memory_kib = 1024, iterations = 1, parallelism = 1 }}\n\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"http://{rec}\"\nauth = \"token\"\n"
        ),
    )
}

/// Registers `name` on the gateway at `base` and logs in `count` times: the access tokens.
async fn sessions(http: &reqwest::Client, base: &str, name: &str, count: usize) -> Vec<String> {
    let creds = json!({"username": name, "password": PASSWORD});
    let res = http
        .post(format!("{base}/auth/register"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mut tokens = Vec::new();
    for _ in 0..count {
        let v: serde_json::Value = http
            .post(format!("{base}/auth/login"))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(v["access_token"].as_str().unwrap().to_owned());
    }
    tokens
}

/// The real binary started through `sh` with `SIGXFSZ` ignored (inherited across `exec`), so a
/// file-size limit set later makes its writes fail with `EFBIG` — the file cannot grow, as on
/// a full disk — instead of killing it.
fn start_ignoring_sigxfsz(config: &std::path::Path) -> Process {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; exec \"$0\" --config \"$1\"")
        .arg(binary())
        .arg(config)
        .env_remove("RUST_LOG");
    Process::start_command(cmd)
}

/// Sets the soft file-size limit of `pid` (`prlimit`, util-linux; no privilege needed for a
/// process of one's own user).
fn set_file_size_limit(pid: u32, soft: &str) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={soft}:unlimited"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={soft}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_when_the_store_files_cannot_grow_is_an_error_and_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(dir.path()).await;
    let gateway = start_ignoring_sigxfsz(&config);
    let admin = gateway.admin.expect("admin listener");
    let base = format!("http://{}", gateway.addr);
    let http = client();
    let access = sessions(&http, &base, "full", 1).await.remove(0);

    // From here no write may reach a file offset past one byte: the WAL cannot take a frame.
    set_file_size_limit(gateway.child.id(), "1");
    let logout = || {
        http.post(format!("{base}/auth/logout"))
            .bearer_auth(&access)
            .send()
    };
    let res = logout().await.unwrap();
    assert!(
        res.status().is_server_error(),
        "a logout that was not stored: {}",
        res.status()
    );
    assert_eq!(readyz(admin).await, StatusCode::SERVICE_UNAVAILABLE);

    set_file_size_limit(gateway.child.id(), "unlimited");
    assert_eq!(logout().await.unwrap().status(), StatusCode::OK);
    assert_eq!(readyz(admin).await, StatusCode::OK);
    let res = http
        .get(format!("{base}/api/x"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_logout_answered_200_before_a_sigkill_holds_after_restart() {
    const SESSIONS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(dir.path()).await;
    let mut gateway = Process::start(&config, &[]);
    let base = format!("http://{}", gateway.addr);
    let http = client();
    let tokens = sessions(&http, &base, "crash", SESSIONS).await;

    // All 500 logouts at once; the process is killed once a fifth of them have their 200.
    let answered = Arc::new(AtomicUsize::new(0));
    let (enough_tx, enough_rx) = tokio::sync::oneshot::channel::<()>();
    let enough_tx = Arc::new(std::sync::Mutex::new(Some(enough_tx)));
    let mut calls = Vec::new();
    for token in tokens.clone() {
        let (http, base) = (http.clone(), base.clone());
        let (answered, enough_tx) = (answered.clone(), enough_tx.clone());
        calls.push(tokio::spawn(async move {
            let res = http
                .post(format!("{base}/auth/logout"))
                .bearer_auth(&token)
                .send()
                .await;
            let status = res.ok().map(|r| r.status());
            if status == Some(StatusCode::OK)
                && answered.fetch_add(1, Ordering::SeqCst) + 1 == SESSIONS / 5
            {
                if let Some(tx) = enough_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
            (token, status)
        }));
    }
    enough_rx.await.unwrap();
    gateway.signal("KILL");
    gateway.wait();
    let mut confirmed = Vec::new();
    let mut lost = 0;
    for call in calls {
        match call.await.unwrap() {
            (token, Some(StatusCode::OK)) => confirmed.push(token),
            (_, Some(other)) => panic!("a logout answered {other}"),
            (_, None) => lost += 1,
        }
    }
    assert!(confirmed.len() >= SESSIONS / 5);
    eprintln!(
        "logouts: {} answered 200 before SIGKILL, {lost} cut off",
        confirmed.len()
    );

    let gateway = Process::start(&config, &[]);
    let base = format!("http://{}", gateway.addr);
    for token in &confirmed {
        let res = http
            .get(format!("{base}/api/x"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "a logout answered 200 was lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_connections_killed_during_logouts_never_lose_a_200() {
    let cluster = Cluster::new().await;
    let a = cluster
        .replica(ReplicaOptions {
            name: Some("authgate_faults_a"),
            ..ReplicaOptions::default()
        })
        .await;
    let first = a.user("pgfault").await;
    let mut sessions = vec![first];
    for _ in 0..59 {
        sessions.push(a.login("pgfault").await);
    }

    let mut calls = Vec::new();
    for tokens in &sessions {
        let (http, url, access) = (
            a.client.clone(),
            a.url("/auth/logout"),
            tokens.access.clone(),
        );
        calls.push(tokio::spawn(async move {
            let res = http.post(url).bearer_auth(&access).send().await.unwrap();
            (access, res.status())
        }));
    }
    // The server ends every connection of the replica, three times while logouts run.
    for _ in 0..3 {
        cluster.db.terminate("authgate_faults_a").await;
        tokio::task::yield_now().await;
    }
    let mut confirmed = Vec::new();
    for call in calls {
        let (access, status) = call.await.unwrap();
        match status {
            StatusCode::OK => confirmed.push(access),
            s => assert!(s.is_server_error(), "a logout answered {s}"),
        }
    }
    // A replica started now reads only what the database holds.
    let b = cluster.replica(ReplicaOptions::default()).await;
    for access in &confirmed {
        let res = b.get("/api/x", Some(access)).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "a 200 logout was lost"
        );
    }
    eprintln!(
        "{} of {} logouts answered 200",
        confirmed.len(),
        sessions.len()
    );
}

/// An upstream that answers a head promising 100 000 bytes, sends 1 000, then closes.
async fn dying_upstream() -> SocketAddr {
    let mut reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    reply.extend_from_slice(&[b'x'; 1000]);
    raw_upstream(reply.leak(), false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_dying_mid_response_cuts_the_client_off_rather_than_ending_cleanly() {
    let upstream = dying_upstream().await;
    let app = TestApp::spawn_with(crate::helpers::Setup {
        routes: Some(format!(
            "[[routes]]\nprefix = \"/dies\"\nupstream = \"http://{upstream}\"\nauth = \"public\"\n\n\
             [[routes]]\nprefix = \"/public\"\nupstream = \"http://{{echo}}\"\nauth = \"public\"\n"
        )),
        ..crate::helpers::Setup::default()
    })
    .await;
    let res = app.get("/dies/x", None).await;
    assert_eq!(res.status(), StatusCode::OK, "the head had been passed on");
    let body = res.bytes().await;
    assert!(
        body.is_err(),
        "a truncated body must not look complete: {:?}",
        body.map(|b| b.len())
    );
    // The gateway carries on.
    assert_eq!(app.get("/public/x", None).await.status(), StatusCode::OK);
}
