//! Running authgate as an operator does: signing keys rotated by SIGHUP on the real binary
//! (JWKS carries old and new keys, a removed key's tokens are refused at once, a bad key file
//! keeps the running keys), and what `/metrics` shows about it.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{client, header, Process, PASSWORD};

/// A fresh Ed25519 key pair in `dir`: (private PKCS#8 PEM path, public SPKI PEM path).
fn ed25519_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&private, pair.serialize_pem()).unwrap();
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    (private, public)
}

/// Writes the config of an EdDSA gateway signing with `private` and also accepting `verify`.
fn write_eddsa_config(dir: &Path, private: &Path, verify: &[&Path]) -> PathBuf {
    let path = dir.join("authgate.toml");
    let verify: Vec<String> = verify
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{d}/authgate.db"

[tokens]
algorithm = "EdDSA"
private_key_file = {private:?}
verify_keys = [{verify}]

[log]
format = "json"
level = "info"
"#,
        d = dir.display(),
        private = private.display().to_string(),
        verify = verify.join(", "),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends SIGHUP and waits for the reload's verdict in the log: true when applied.
fn reload(p: &Process) -> bool {
    p.signal("HUP");
    let line = p.next_json_line(|v| {
        let m = v["message"].as_str().unwrap_or("");
        m == "configuration reloaded" || m.starts_with("reload refused")
    });
    line["message"] == "configuration reloaded"
}

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let head = token.split('.').next().unwrap();
    let head: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap(),
    )
    .unwrap();
    head["kid"].as_str().unwrap().to_owned()
}

/// A small client of one running binary.
struct Gateway<'a> {
    p: &'a Process,
    c: reqwest::Client,
}

impl Gateway<'_> {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.p.addr)
    }

    async fn register_and_login(&self, name: &str) -> String {
        let body = serde_json::json!({ "username": name, "password": PASSWORD });
        let r = self
            .c
            .post(self.url("/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        self.login(name).await
    }

    async fn login(&self, name: &str) -> String {
        let body = serde_json::json!({ "username": name, "password": PASSWORD });
        let r = self
            .c
            .post(self.url("/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn me(&self, token: &str) -> (StatusCode, Value) {
        let r = self
            .c
            .get(self.url("/auth/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// The kids the JWK Set publishes, after checking its `Cache-Control`.
    async fn jwks_kids(&self) -> Vec<String> {
        let r = self
            .c
            .get(self.url("/auth/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(r.headers(), "cache-control"), "public, max-age=300");
        let set: Value = r.json().await.unwrap();
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn metrics(&self) -> String {
        let admin = self.p.admin.unwrap();
        let r = self
            .c
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rotates_signing_keys_and_a_removed_key_is_refused_right_after_the_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_pub) = ed25519_pair(dir.path(), "old");
    let (new, new_pub) = ed25519_pair(dir.path(), "new");
    let config = write_eddsa_config(dir.path(), &old, &[]);
    let p = Process::start(&config, &[]);
    let g = Gateway { p: &p, c: client() };

    let by_old = g.register_and_login("rotor").await;
    let old_kid = kid_of(&by_old);
    assert_eq!(g.jwks_kids().await, vec![old_kid.clone()]);
    assert!(g
        .metrics()
        .await
        .contains("authgate_token_key_generation 0"));

    // Step 1: sign with the new key, keep accepting the old one. JWKS carries both.
    write_eddsa_config(dir.path(), &new, &[&old_pub]);
    assert!(reload(&p));
    let by_new = g.login("rotor").await;
    let new_kid = kid_of(&by_new);
    assert_ne!(new_kid, old_kid);
    assert_eq!(g.jwks_kids().await, [new_kid.clone(), old_kid.clone()]);
    assert_eq!(g.me(&by_old).await.0, StatusCode::OK);
    assert_eq!(g.me(&by_new).await.0, StatusCode::OK);

    // Step 2: the old key is gone: its token is refused by the very next request.
    write_eddsa_config(dir.path(), &new, &[]);
    assert!(reload(&p));
    let (status, body) = g.me(&by_old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(g.me(&by_new).await.0, StatusCode::OK);
    assert_eq!(g.jwks_kids().await, vec![new_kid.clone()]);

    // A key file that does not parse: the reload is refused and the running keys stay.
    std::fs::write(&new_pub, "not a key").unwrap();
    write_eddsa_config(dir.path(), &new, &[&new_pub]);
    assert!(!reload(&p));
    assert_eq!(g.me(&by_new).await.0, StatusCode::OK);
    assert_eq!(g.jwks_kids().await, [new_kid]);
    let text = g.metrics().await;
    assert!(text.contains("authgate_token_key_generation 2"), "{text}");
    assert!(
        text.contains(r#"authgate_config_reloads_total{result="success"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"authgate_config_reloads_total{result="failure"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("authgate_config_last_reload_success_timestamp_seconds "),
        "{text}"
    );
}
