//! The attack catalogue's J1: secrets never reach the log. The real binary at `debug` level
//! goes through a whole session — registration, a wrong password, login, refresh, a proxied
//! request with a token in its query string, a forged token, logout — and then every line it
//! wrote is searched for the passwords, the tokens and the signing secret.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::helpers::{client, write_binary_config_with_log, Process, PASSWORD};

#[tokio::test(flavor = "multi_thread")]
async fn j1_no_password_token_or_secret_in_any_log_line_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    let (echo_stop, echo) = {
        let stop = tokio_util::sync::CancellationToken::new();
        let addr = crate::echo::spawn(([127, 0, 0, 1], 0).into(), stop.clone())
            .await
            .unwrap();
        (stop, addr)
    };
    let config = write_binary_config_with_log(
        dir.path(),
        "",
        "format = \"json\"\nlevel = \"debug\"",
        &format!(
            "[auth]\nargon2 = {{ memory_kib = 1024, iterations = 1, parallelism = 1 }}\n\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"http://{echo}\"\nauth = \"token\"\n\n\
             [[routes]]\nprefix = \"/public\"\nupstream = \"http://{echo}\"\nauth = \"public\"\n"
        ),
    );
    let mut gateway = Process::start(&config, &[]);
    let base = format!("http://{}", gateway.addr);
    let http = client();
    let wrong = "Wr0ng-Secret-Passw0rd";
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();

    let res = post(
        "/auth/register",
        json!({"username": "logged", "password": PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let res = post(
        "/auth/login",
        json!({"username": "logged", "password": wrong}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 401);
    let tokens: Value = post(
        "/auth/login",
        json!({"username": "logged", "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refreshed: Value = http
        .post(format!("{base}/auth/refresh"))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access2 = refreshed["access_token"].as_str().unwrap().to_owned();
    let res = http
        .get(format!("{base}/public/x?token={access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let forged = format!("{access2}x");
    let res = http
        .get(format!("{base}/api/x"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .post(format!("{base}/auth/logout"))
        .bearer_auth(&access2)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    gateway.signal("TERM");
    assert_eq!(gateway.wait(), Some(0));
    // The log reader ends with the process.
    let lines: Vec<String> = gateway.lines.iter().collect();
    assert!(lines.len() > 10, "a debug log: {lines:?}");
    let secret = std::fs::read(dir.path().join("jwt-secret")).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret);
    let std_b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    // A token's signature is the part no one else can make; its payload alone is public.
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let needles = [
        PASSWORD.to_owned(),
        wrong.to_owned(),
        signature(&access),
        signature(&refresh),
        signature(&access2),
        b64[..24].to_owned(),
        std_b64[..24].to_owned(),
        hex[..32].to_owned(),
    ];
    for line in &lines {
        for needle in &needles {
            assert!(
                !line.contains(needle.as_str()),
                "a secret in the log: {line}"
            );
        }
    }
    echo_stop.cancel();
}
