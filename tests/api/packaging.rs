//! What ships beside the binary, checked as an operator would meet it: the Dockerfile (hadolint,
//! a numeric non-root user, a HEALTHCHECK through `authgate healthcheck`, a dependency layer,
//! the image's config a file in the repository), `authgate healthcheck` against a running
//! gateway, the compose examples (parsed, their ports, paths and service names matched to the
//! configurations they mount), the systemd unit (systemd-analyze), and the licence files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::helpers::{binary, run, write_binary_config, Process};
use crate::tools;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `authgate check-config` on `path` (with a JWT secret in the environment): must pass.
fn assert_config_valid(path: &Path) {
    let (code, stderr) = run(
        &["check-config", "--config", path.to_str().unwrap()],
        &[("AUTHGATE_JWT_SECRET", "0123456789abcdef0123456789abcdef")],
    );
    assert_eq!(code, Some(0), "{}: {stderr}", path.display());
}

// ---------------------------------------------------------------------------------------------
// Dockerfile and `authgate healthcheck`
// ---------------------------------------------------------------------------------------------

#[test]
fn the_dockerfile_passes_hadolint_and_runs_as_a_numeric_user_with_a_healthcheck() {
    let out = Command::new(tools::hadolint())
        .arg(repo("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let text = read("Dockerfile");
    // Instructions with their continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let runtime: Vec<&str> = lines
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("FROM gcr.io/distroless"))
        .collect();
    assert!(!runtime.is_empty(), "a distroless runtime stage");
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    for part in user.split(':') {
        let id: u32 = part
            .parse()
            .unwrap_or_else(|_| panic!("USER {user} is not numeric"));
        assert_ne!(id, 0, "USER {user} is root");
    }
    let health = runtime
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    assert!(health.contains(r#""/usr/local/bin/authgate""#) && health.contains(r#""healthcheck""#));
    assert!(!text.contains("sed "), "no config built by sed");
    // The dependency layer: manifests copied and built before the sources arrive.
    let manifests = lines
        .iter()
        .position(|l| l.starts_with("COPY Cargo.toml Cargo.lock"))
        .expect("COPY Cargo.toml Cargo.lock");
    let sources = lines
        .iter()
        .position(|l| l.starts_with("COPY src "))
        .expect("COPY src");
    assert!(
        lines[manifests..sources]
            .iter()
            .any(|l| l.starts_with("RUN ") && l.contains("cargo build --release --locked")),
        "dependencies are built before COPY src"
    );
    // The image's configuration is a file of the repository, and a valid one.
    let copied = runtime
        .iter()
        .find_map(|l| {
            l.strip_prefix("COPY ")?
                .strip_suffix(" /etc/authgate/authgate.toml")
        })
        .expect("COPY ... /etc/authgate/authgate.toml");
    assert_config_valid(&repo(copied));
    assert!(
        read(copied).contains("listen = \"0.0.0.0:9090\""),
        "HEALTHCHECK needs the admin port"
    );
}

#[test]
fn healthcheck_exits_0_while_the_gateway_answers_and_1_once_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_binary_config(dir.path(), "", "");
    let mut p = Process::start(&config, &[]);
    let url = format!("http://{}/healthz", p.admin.unwrap());
    let probe = |url: &str| {
        Command::new(binary())
            .args(["healthcheck", "--url", url])
            .output()
            .unwrap()
    };
    assert_eq!(probe(&url).status.code(), Some(0));
    // /readyz answers 200 too, but the public port's 404 is not healthy.
    assert_eq!(
        probe(&format!("http://{}/nope", p.addr)).status.code(),
        Some(1)
    );
    p.signal("TERM");
    assert_eq!(p.wait(), Some(0));
    let gone = probe(&url);
    assert_eq!(gone.status.code(), Some(1));
    assert!(!gone.stderr.is_empty());

    // Without --url the address comes from [admin] listen; none configured is a config error.
    let off = dir.path().join("off.toml");
    std::fs::write(&off, "[admin]\nlisten = \"\"\n").unwrap();
    let (code, stderr) = run(&["healthcheck", "--config", off.to_str().unwrap()], &[]);
    assert_eq!(code, Some(64), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Compose examples
// ---------------------------------------------------------------------------------------------

/// A YAML file as JSON, parsed by PyYAML from the test venv (anchors and merges resolved).
fn yaml(path: &str) -> Value {
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let text = tools::run(
        &tools::python(),
        &["-c", script, repo(path).to_str().unwrap()],
    );
    serde_json::from_str(&text).unwrap()
}

/// The container path `host` (relative to examples/) is mounted at, in `service`.
fn mount_of<'a>(service: &'a Value, host: &str) -> Option<&'a str> {
    service["volumes"].as_array()?.iter().find_map(|v| {
        let mut parts = v.as_str()?.split(':');
        (parts.next()? == host).then(|| parts.next()).flatten()
    })
}

/// The container ports `service` publishes (the part after the last `:`).
fn published(service: &Value) -> Vec<u16> {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.as_str()?.rsplit(':').next()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The port `service` listens on, from its `--port N` command (traefik/whoami).
fn command_port(service: &Value) -> u16 {
    let args: Vec<&str> = service["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--port").unwrap();
    args[at + 1].parse().unwrap()
}

/// The mounted gateway config of `service`: checked valid, then loaded.
fn gateway_config(service: &Value) -> authgate::config::Config {
    let host = service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|v| v.ends_with(":/etc/authgate/authgate.toml:ro"))
        .and_then(|v| v.split(':').next())
        .expect("a config mounted at /etc/authgate/authgate.toml");
    let path = repo("examples").join(host);
    assert_config_valid(&path);
    authgate::config::load(&path).unwrap()
}

/// Every route upstream of `config` is a service of `compose` listening on that port.
fn assert_upstreams_are_services(compose: &Value, config: &authgate::config::Config) {
    assert!(!config.routes.is_empty());
    for route in &config.routes {
        let upstream = route.upstream.as_ref().unwrap();
        let host = upstream.host().unwrap();
        let service = &compose["services"][host];
        assert!(
            service.is_object(),
            "route {} goes to {host}, not a service",
            route.prefix
        );
        assert_eq!(
            upstream.port_u16(),
            Some(command_port(service)),
            "route {}",
            route.prefix
        );
    }
}

#[test]
fn the_compose_example_publishes_the_configured_ports_and_routes_to_its_upstream_service() {
    let compose = yaml("examples/compose.yaml");
    let gateway = &compose["services"]["authgate"];
    let config = gateway_config(gateway);
    let ports = published(gateway);
    assert!(ports.contains(&config.server.listen.port()), "{ports:?}");
    assert!(
        ports.contains(&config.admin.listen.unwrap().port()),
        "{ports:?}"
    );
    assert!(
        !config.server.listen.ip().is_loopback(),
        "a container must listen on all interfaces"
    );
    assert_eq!(gateway["build"]["context"], "..");
    assert!(repo("Dockerfile").is_file());
    // The SQLite file and secret live in the data volume.
    assert_eq!(mount_of(gateway, "authgate-data"), Some("/data"));
    assert!(
        config.store.url.to_string().contains("/data/"),
        "{}",
        config.store.url
    );
    assert!(config.tokens.secret_file.starts_with("/data"));
    assert_upstreams_are_services(&compose, &config);
}

#[test]
fn the_postgres_compose_example_runs_two_replicas_on_one_database_behind_nginx() {
    let compose = yaml("examples/compose-postgres.yaml");
    let services = compose["services"].as_object().unwrap();
    let replicas: Vec<&String> = services
        .keys()
        .filter(|k| k.starts_with("authgate-"))
        .collect();
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    let pg = &compose["services"]["postgres"]["environment"];
    let mut listen = None;
    for name in &replicas {
        let service = &compose["services"][name.as_str()];
        let config = gateway_config(service);
        // One database for both, the one the postgres service creates.
        let url = config.store.url.to_string();
        let expected = format!(
            "postgres://{}:{}@postgres:5432/{}",
            pg["POSTGRES_USER"].as_str().unwrap(),
            pg["POSTGRES_PASSWORD"].as_str().unwrap(),
            pg["POSTGRES_DB"].as_str().unwrap()
        );
        assert!(url.starts_with("postgres://"), "{url}");
        assert_eq!(
            authgate::config::load(&repo("examples/compose/authgate-postgres.toml"))
                .unwrap()
                .store
                .url,
            config.store.url
        );
        assert!(
            read("examples/compose/authgate-postgres.toml").contains(&expected),
            "{expected}"
        );
        // Both sign alike: the secret comes from the environment, the same for both.
        assert!(service["environment"]["AUTHGATE_JWT_SECRET"]
            .as_str()
            .unwrap()
            .starts_with("${AUTHGATE_JWT_SECRET:?"));
        // nginx's address is believed for X-Forwarded-For: the compose network's subnet.
        let subnet: ipnet::IpNet = compose["networks"]["gateway"]["ipam"]["config"][0]["subnet"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(config.proxy.trusted_proxies.contains(&subnet));
        assert_upstreams_are_services(&compose, &config);
        listen = Some(config.server.listen);
    }
    let listen: SocketAddr = listen.unwrap();

    // nginx spreads over exactly those replicas at their listen port, and publishes its own.
    let nginx = &compose["services"]["nginx"];
    let conf_path = mount_of(nginx, "./compose/nginx.conf").map(|_| "examples/compose/nginx.conf");
    let conf = read(conf_path.expect("nginx.conf mounted"));
    let servers: Vec<String> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = replicas
        .iter()
        .map(|r| format!("{r}:{}", listen.port()))
        .collect();
    assert_eq!(servers, expected);
    let nginx_listen: u16 = conf
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("listen ")?
                .strip_suffix(';')?
                .parse()
                .ok()
        })
        .unwrap();
    assert_eq!(published(nginx), [nginx_listen]);
    assert!(conf.contains("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"));
}

// ---------------------------------------------------------------------------------------------
// systemd unit, licences
// ---------------------------------------------------------------------------------------------

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit = read("examples/authgate.service");
    // Verified against this build's binary (the unit names /usr/local/bin).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/authgate", binary())).unwrap();
    let out = Command::new(tools::systemd_analyze())
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // systemd's own exposure score, at most 2.0 of 10 (`--threshold` counts tenths).
    let out = Command::new(tools::systemd_analyze())
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for line in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "StateDirectory=authgate",
        "WorkingDirectory=/var/lib/authgate",
        "RestartPreventExitStatus=64",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
    // Stopping waits longer than the default drain.
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec=")?.parse().ok())
        .unwrap();
    assert!(stop > 30);
}

#[test]
fn the_licence_files_are_those_cargo_toml_declares() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains(r#"license = "MIT OR Apache-2.0""#));
    assert!(read("LICENSE-MIT").contains("Permission is hereby granted, free of charge"));
    let apache = read("LICENSE-APACHE");
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
}
