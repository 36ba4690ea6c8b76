//! Micro benchmarks of the request path: authentication (bearer header, token verification
//! and the revocation lookup) for a token seen before (the verified-token cache hits) and at
//! first sight (a full verification), HS256 and EdDSA; and route matching with 10 and 1,000
//! routes. `cargo bench` runs them.

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use authgate::auth::authenticator::{Accept, Authenticator};
use authgate::auth::claims::{new_jti, Claims, TokenType};
use authgate::auth::keys::{load_keys, KeyLoad};
use authgate::auth::revocation::RevocationIndex;
use authgate::auth::tokens::TokenService;
use authgate::config::{self, Config};
use authgate::path::normalize;
use authgate::proxy::router::Router;
use authgate::store::{Revocation, RevocationKind};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

fn config_with_routes(n: usize) -> Config {
    config_with(n, "")
}

/// A config with `n` routes and `tokens` as its `[tokens]` section's lines.
fn config_with(n: usize, tokens: &str) -> Config {
    let mut text = format!("[tokens]\n{tokens}\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[routes]]\nprefix = \"/svc{i}/v1\"\nupstream = \"http://127.0.0.1:9000\"\nauth = \"token\"\n"
        ));
    }
    config::parse(Path::new("bench.toml"), &text).expect("bench config")
}

fn token_service(cfg: &Config) -> TokenService {
    let secret = (cfg.tokens.private_key_file.is_none()).then(|| vec![42u8; 64]);
    let keys = load_keys(&cfg.tokens, &cfg.source, secret, KeyLoad::CheckOnly).expect("keys");
    TokenService::new(&cfg.tokens, keys).expect("token service")
}

fn access_claims(svc: &TokenService) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    Claims {
        iss: svc.issuer().to_owned(),
        aud: None,
        sub: "42".into(),
        username: Some("alice".into()),
        roles: Some(vec!["ops".into()]),
        r#type: TokenType::Access,
        jti: new_jti().expect("random"),
        sid: new_jti().expect("random"),
        iat: now,
        nbf: now,
        exp: now + 900,
        auth_time: now,
        fresh: Some(true),
        csrf: None,
    }
}

/// A revocation index holding `n` revoked sessions (none of them the benchmarked token's).
fn index_with(n: usize) -> RevocationIndex {
    let index = RevocationIndex::new();
    let entries: Vec<Revocation> = (0..n)
        .map(|i| Revocation {
            seq: i as i64 + 1,
            kind: RevocationKind::Session(format!("revoked-session-{i}")),
            covers_until: i64::MAX,
        })
        .collect();
    index.apply(&entries);
    index
}

fn bench_verify(c: &mut Criterion) {
    let ed25519 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys/ed25519.pem");
    let services = [
        ("HS256", config_with(0, "")),
        (
            "EdDSA",
            config_with(
                0,
                &format!(
                    "algorithm = \"EdDSA\"\nprivate_key_file = \"{}\"",
                    ed25519.display()
                ),
            ),
        ),
    ];
    for (alg, cfg) in services {
        let svc = Arc::new(token_service(&cfg));
        let token = svc.issue(&access_claims(&svc)).expect("token");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        for n in [0usize, 100_000] {
            let index = Arc::new(index_with(n));
            // Seen before: the first call fills the cache, every measured one hits it.
            let auth = Authenticator::new(svc.clone(), index.clone());
            auth.authenticate(&headers, &http::Method::GET, Accept::Access)
                .expect("valid");
            c.bench_function(
                &format!("authenticate {alg} access token seen before, {n} revocations"),
                |b| {
                    b.iter(|| {
                        auth.authenticate(black_box(&headers), &http::Method::GET, Accept::Access)
                            .expect("valid")
                    })
                },
            );
            // First sight: a new authenticator (an empty cache) per call, made outside the
            // measurement; the call verifies in full and fills the cache.
            c.bench_function(
                &format!("authenticate {alg} access token first sight, {n} revocations"),
                |b| {
                    b.iter_batched(
                        || Authenticator::new(svc.clone(), index.clone()),
                        |auth| {
                            let identity = auth
                                .authenticate(
                                    black_box(&headers),
                                    &http::Method::GET,
                                    Accept::Access,
                                )
                                .expect("valid");
                            // Dropped after the measurement, with the authenticator.
                            (auth, identity)
                        },
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
}

fn bench_routes(c: &mut Criterion) {
    for n in [10usize, 1_000] {
        let cfg = config_with_routes(n);
        let router = Router::new(&cfg.routes).expect("router");
        let path = format!("/svc{}/v1/orders/17/items", n / 2);
        c.bench_function(&format!("normalise + match, {n} routes"), |b| {
            b.iter(|| {
                let p = normalize(black_box(&path)).expect("path");
                black_box(router.route_for(&p).is_some())
            })
        });
        c.bench_function(&format!("match only, {n} routes"), |b| {
            b.iter(|| black_box(router.route_for(black_box(&path)).is_some()))
        });
    }
}

criterion_group!(benches, bench_verify, bench_routes);
criterion_main!(benches);
