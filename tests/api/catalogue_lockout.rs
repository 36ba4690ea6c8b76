//! Lockout as a weapon (issue 13): with the default tiers (`max_failures = 5` per username and
//! address, `user_max_failures = 20`, `address_max_failures = 20`, 15 minutes), neither one
//! address nor one address trying many usernames can keep the owner out from another address.
//! The residual risk — twenty failures spread over four or more addresses lock a username
//! everywhere for the window — is pinned too, with `authgate user unlock` as the way out.

use reqwest::StatusCode;

use crate::helpers::{assert_limited, user_cli_async, Setup, TestApp, PASSWORD};

const OWNER_ADDR: &str = "198.51.100.7";
const ATTACKER: &str = "203.0.113.66";

/// Default login limits; the test peer may speak for other addresses.
async fn app() -> TestApp {
    TestApp::spawn_with(Setup {
        proxy: "trusted_proxies = [\"127.0.0.1/32\"]\n".into(),
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_hammering_the_owners_name_locks_only_itself_out() {
    let app = app().await;
    app.user("owner").await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let res = app.login_from("owner", ATTACKER, "wrong password").await;
        statuses.push(res.status().as_u16());
    }
    // Five failures count; every later attempt is refused without a password check.
    assert_eq!(&statuses[..5], [401; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let res = app.login_from("owner", ATTACKER, PASSWORD).await;
    assert_limited(res).await;

    let res = app.login_from("owner", OWNER_ADDR, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK, "the owner elsewhere gets in");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_spraying_many_usernames_locks_only_itself_out() {
    let app = app().await;
    app.user("owner").await;
    // Five on the owner's name (the pair's budget), then new names until the address's own
    // tier (20 failures over all names) refuses it.
    for _ in 0..5 {
        let _ = app.login_from("owner", ATTACKER, "wrong password").await;
    }
    for i in 0..15 {
        let res = app
            .login_from(&format!("guess{i}"), ATTACKER, "wrong password")
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let res = app.login_from("someone", ATTACKER, "wrong password").await;
    assert_limited(res).await;
    let res = app.login_from("owner", OWNER_ADDR, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn residual_risk_four_addresses_lock_a_username_everywhere_until_unlocked() {
    let app = app().await;
    app.user("owner").await;
    for a in 1..=4 {
        for _ in 0..5 {
            let res = app
                .login_from("owner", &format!("203.0.113.{a}"), "wrong password")
                .await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
    }
    let res = app.login_from("owner", OWNER_ADDR, PASSWORD).await;
    assert_limited(res).await;
    let out = user_cli_async(&app.config_path, &["user", "unlock", "owner"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = app.login_from("owner", OWNER_ADDR, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
}
