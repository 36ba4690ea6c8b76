//! Memory held after password hashing is bounded: the real binary, started as a child with the
//! default argon2 cost (19 MiB, 2 passes), stays under 150 MB resident after 200 logins. Before
//! the hashing threads owned their argon2 block, every blocking thread and malloc arena kept
//! one ~19 MiB block, and the same run climbed past 500 MB.

use crate::helpers::{client, write_binary_config, Process, PASSWORD};

/// Resident memory of `pid` in KiB, from `/proc/PID/status`.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_memory_stays_under_150_mb_after_200_logins_at_the_default_argon2_cost() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing in [auth]: the default argon2 cost is the point of this test.
    let config = write_binary_config(dir.path(), "", "");
    let gateway = Process::start(&config, &[]);
    let pid = gateway.child.id();
    let base = format!("http://{}", gateway.addr);
    let http = client();
    let fresh = resident_kib(pid);

    let res = http
        .post(format!("{base}/auth/register"))
        .json(&serde_json::json!({"username": "memory", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());

    // Four clients at once, 50 logins each: the queue is exercised, not just one thread.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (http, base) = (http.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..50 {
                let res = http
                    .post(format!("{base}/auth/login"))
                    .json(&serde_json::json!({"username": "memory", "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let after = resident_kib(pid);
    eprintln!("resident memory: {fresh} KiB fresh, {after} KiB after 200 logins");
    assert!(
        after < 150 * 1000,
        "resident memory {after} KiB after 200 logins (fresh: {fresh} KiB)"
    );
}
