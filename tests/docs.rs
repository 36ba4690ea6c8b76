//! The configuration reference (`docs/configuration.md`) cannot drift from the code: every key
//! the loader accepts is documented and every documented key is accepted (or marked pending),
//! each default written as a TOML value is the loader's default, and `config/authgate.toml`
//! mentions every key and sets none to anything but its documented default.
//!
//! The loader's keys are read from the loader itself, not from a list kept here: a file with an
//! unknown key in a table is refused with the keys allowed there, and a table nested in a table
//! answers a probe key with another such refusal, where a plain value answers with a type
//! error. So a key added to the loader fails this test until it is documented.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use authgate::config::{parse, Config};

const DOC: &str = include_str!("../docs/configuration.md");
const EXAMPLE: &str = include_str!("../config/authgate.toml");
const PROBE: &str = "zz_probe_key";
/// Marks a documented key this build does not accept yet.
const PENDING: &str = "<!-- pending -->";
/// The smallest valid route; route keys are checked on top of it.
const ROUTE: &str = "prefix = \"/x\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"token\"\n";

/// One row of a key table in the reference.
#[derive(Debug)]
struct DocKey {
    /// The default cell when it is a single code span: a TOML value to check.
    default: Option<String>,
    pending: bool,
}

/// Rows of the tables of the reference's "Keys" part whose first cell is a key in backticks,
/// by key path (`server.listen`, `routes[].prefix`).
fn documented() -> BTreeMap<String, DocKey> {
    let (_, part) = DOC.split_once("\n## Keys\n").expect("a \"## Keys\" part");
    let part = part.split("\n## ").next().unwrap_or(part);
    let mut keys = BTreeMap::new();
    for line in part.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        let key = cells[0].trim_end_matches('`').to_owned();
        let cell = cells.get(1).map_or("", |c| c.trim());
        let default =
            (cell.starts_with('`') && cell.ends_with('`') && cell.matches('`').count() == 2)
                .then(|| cell.trim_matches('`').to_owned());
        let pending = line.contains(PENDING);
        let before = keys.insert(key.clone(), DocKey { default, pending });
        assert!(before.is_none(), "{key} is documented twice");
    }
    assert!(
        keys.len() > 50,
        "the key tables were not found: {}",
        keys.len()
    );
    keys
}

fn refusal(text: &str) -> authgate::config::ConfigError {
    parse(Path::new("probe.toml"), text).expect_err("the probe should be refused")
}

/// The keys allowed where `text` put an unknown key, or `None` when the refusal is another one
/// (a value of the wrong type: the place probed is a plain value, not a table).
fn allowed_keys(text: &str) -> Option<Vec<String>> {
    let e = refusal(text);
    if !e.key.ends_with(PROBE) {
        return None;
    }
    let (_, list) = e.reason.split_once("allowed keys here:")?;
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// Every key path the loader accepts, found by probing each table it knows.
fn loader_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let top = allowed_keys(&format!("{PROBE} = 1\n")).expect("top-level keys");
    for section in top {
        if section == "routes" {
            let fields =
                allowed_keys(&format!("[[routes]]\n{ROUTE}{PROBE} = 1\n")).expect("route keys");
            keys.extend(fields.iter().map(|f| format!("routes[].{f}")));
            continue;
        }
        walk(&section, &mut keys);
    }
    keys
}

/// Adds the leaves under the table at `path` (`auth`, `auth.cookies`), or `path` itself when it
/// is a plain value.
fn walk(path: &str, keys: &mut BTreeSet<String>) {
    match allowed_keys(&format!("[{path}]\n{PROBE} = 1\n")) {
        None => {
            keys.insert(path.to_owned());
        }
        Some(fields) => {
            for f in fields {
                walk(&format!("{path}.{f}"), keys);
            }
        }
    }
}

#[test]
fn every_key_the_loader_accepts_is_documented_and_every_documented_key_is_accepted() {
    let doc = documented();
    let loader = loader_keys();
    let undocumented: Vec<&String> = loader.iter().filter(|k| !doc.contains_key(*k)).collect();
    assert!(
        undocumented.is_empty(),
        "keys the loader accepts but docs/configuration.md does not document: {undocumented:?}"
    );
    for (key, row) in &doc {
        match (loader.contains(key), row.pending) {
            (true, true) => panic!(
                "{key} is accepted by the loader now: remove its {PENDING} mark in \
                 docs/configuration.md and check its row"
            ),
            (false, false) => panic!(
                "docs/configuration.md documents {key}, which the loader refuses; remove the row \
                 or mark it {PENDING}"
            ),
            _ => {}
        }
    }
}

/// Sets `key` (a documented path) to `value` in `table`.
fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    let (parents, leaf) = match key.strip_prefix("routes[].") {
        Some(field) => {
            let routes = table
                .get_mut("routes")
                .and_then(toml::Value::as_array_mut)
                .expect("a base with one route");
            let route = routes[0].as_table_mut().expect("a route table");
            route.insert(field.to_owned(), value);
            return;
        }
        None => key.rsplit_once('.').expect("a section and a key"),
    };
    let mut here = table;
    for part in parents.split('.') {
        here = here
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table");
    }
    here.insert(leaf.to_owned(), value);
}

fn toml_value(text: &str) -> toml::Value {
    let table: toml::Table = toml::from_str(&format!("v = {text}"))
        .unwrap_or_else(|e| panic!("{text} is not a TOML value: {e}"));
    table["v"].clone()
}

fn config_of(table: &toml::Table) -> Config {
    let text = toml::to_string(table).expect("serialise");
    parse(Path::new("f.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn every_default_in_the_reference_is_the_loaders_default() {
    let mut checked = 0;
    for (key, row) in documented() {
        let (Some(default), false) = (&row.default, row.pending) else {
            continue;
        };
        // The minimal file the key is valid in: PostgreSQL-only keys need a PostgreSQL URL.
        let base = if key.starts_with("routes[].") {
            format!("[[routes]]\n{ROUTE}")
        } else if key == "store.max_staleness" || key == "store.pool_size" {
            "[store]\nurl = \"postgres://authgate@127.0.0.1/authgate\"\n".to_owned()
        } else {
            String::new()
        };
        let base: toml::Table = toml::from_str(&base).expect("base");
        let mut with_default = base.clone();
        set(&mut with_default, &key, toml_value(default));
        assert_eq!(
            format!("{:?}", config_of(&with_default)),
            format!("{:?}", config_of(&base)),
            "docs/configuration.md gives {key} the default {default}, which is not the loader's"
        );
        checked += 1;
    }
    assert!(checked > 40, "only {checked} defaults checked");
}

/// The keys `config/authgate.toml` sets outside `[[routes]]`, inline tables flattened, with
/// their values.
fn example_values() -> BTreeMap<String, toml::Value> {
    fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => flatten(&path, t, out),
                _ if path == "routes" => {}
                _ => {
                    out.insert(path, v.clone());
                }
            }
        }
    }
    let table: toml::Table = toml::from_str(EXAMPLE).expect("config/authgate.toml is TOML");
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out);
    out
}

/// Every key `config/authgate.toml` mentions: set, or in a comment line `# key = ...` under its
/// section header; route keys as `routes[].key`.
fn example_mentions() -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = example_values().into_keys().collect();
    let mut section = String::new();
    for line in EXAMPLE.lines() {
        let line = line.trim();
        if line.starts_with("[[routes]]") {
            section = "routes[]".into();
            continue;
        }
        // A section header, or one commented out (`# [compat.flask_jwt_extended]`) with its
        // keys shown as comments below it.
        let header = line.trim_start_matches('#').trim_start();
        if let Some(name) = header.strip_prefix('[').filter(|_| !header.contains(" = ")) {
            section = name.split(']').next().unwrap_or("").to_owned();
            continue;
        }
        let assignment = line.trim_start_matches('#').trim_start();
        let Some((name, _)) = assignment.split_once(" = ") else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        keys.insert(format!("{section}.{name}"));
    }
    // Inline tables (`argon2 = { ... }`) mention their fields through example_values().
    keys
}

#[test]
fn the_example_file_mentions_every_key_and_sets_only_documented_defaults() {
    let doc = documented();
    let loader = loader_keys();
    let mentions = example_mentions();
    let missing: Vec<&String> = loader.iter().filter(|k| !mentions.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "keys config/authgate.toml neither sets nor mentions in a comment: {missing:?}"
    );
    for key in &mentions {
        let known = doc.contains_key(key) || doc.keys().any(|d| d.starts_with(&format!("{key}.")));
        assert!(
            known,
            "config/authgate.toml mentions {key}, which is not documented"
        );
    }
    for (key, value) in example_values() {
        let row = doc
            .get(&key)
            .unwrap_or_else(|| panic!("config/authgate.toml sets {key}, which is not documented"));
        let default = row.default.as_deref().unwrap_or_else(|| {
            panic!("{key} is set in config/authgate.toml but documented without a default value")
        });
        assert_eq!(
            value,
            toml_value(default),
            "config/authgate.toml sets {key} to another value than its documented default"
        );
    }
}

/// The Markdown files of the repository that readers follow links in.
fn markdown_files() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_points_to_a_file_and_heading_that_exist() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read markdown");
        let dir = file.parent().expect("a folder");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !linked.exists() {
                broken.push(format!("{}: {target} (no such file)", file.display()));
                continue;
            }
            if !fragment.is_empty() && linked.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&std::fs::read_to_string(&linked).expect("read linked"));
                if !heads.contains(fragment) {
                    broken.push(format!("{}: {target} (no such heading)", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn nothing_in_the_repository_points_to_contract_files_outside_it() {
    // Spelt in pieces so that this file does not match itself.
    let outside = [
        concat!("HTTP-API", ".md"),
        concat!("CONFIG", ".md"),
        concat!("../", "shared"),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut hits = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = [
        "src", "tests", "docs", "config", "examples", "scripts", "benches",
    ]
    .iter()
    .map(|d| root.join(d))
    .chain(
        ["README.md", "Cargo.toml", "Dockerfile"]
            .iter()
            .map(|f| root.join(f)),
    )
    .collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read folder") {
                stack.push(entry.expect("entry").path());
            }
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // binary files (keys are text; images are not)
        };
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o)) {
                hits.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "point these to docs/http-api.md or docs/configuration.md instead:\n{}",
        hits.join("\n")
    );
}

/// One of each error the gateway answers itself.
fn every_error() -> Vec<authgate::error::ApiError> {
    use authgate::error::ApiError as E;
    let all = vec![
        E::InvalidRequest("x".into()),
        E::MissingToken,
        E::TokenExpired,
        E::InvalidToken("x"),
        E::TokenRevoked,
        E::FreshTokenRequired { max_age: None },
        E::InvalidCredentials,
        E::Forbidden,
        E::RegistrationDisabled,
        E::CsrfFailed,
        E::CorsForbidden,
        E::PeerNotAllowed,
        E::AsForbidden(Box::new(E::InvalidRequest("x".into()))),
        E::NotFound,
        E::MethodNotAllowed {
            allow: http::HeaderValue::from_static("GET"),
        },
        E::RequestTimeout,
        E::UsernameTaken,
        E::PayloadTooLarge,
        E::UriTooLong,
        E::HeadersTooLarge("x"),
        E::UnsupportedMediaType,
        E::RateLimited { retry_after: 1 },
        E::BadGateway,
        E::Unavailable {
            retry_after: 1,
            close: false,
        },
        E::GatewayTimeout,
        E::Internal,
    ];
    // A new variant fails to compile here until it is added to the list above.
    for e in &all {
        match e {
            E::InvalidRequest(_)
            | E::MissingToken
            | E::TokenExpired
            | E::InvalidToken(_)
            | E::TokenRevoked
            | E::FreshTokenRequired { .. }
            | E::InvalidCredentials
            | E::Forbidden
            | E::RegistrationDisabled
            | E::CsrfFailed
            | E::CorsForbidden
            | E::PeerNotAllowed
            | E::AsForbidden(_)
            | E::NotFound
            | E::MethodNotAllowed { .. }
            | E::RequestTimeout
            | E::UsernameTaken
            | E::PayloadTooLarge
            | E::UriTooLong
            | E::HeadersTooLarge(_)
            | E::UnsupportedMediaType
            | E::RateLimited { .. }
            | E::BadGateway
            | E::Unavailable { .. }
            | E::GatewayTimeout
            | E::Internal => {}
        }
    }
    all
}

#[test]
fn every_error_code_is_in_the_http_reference_with_its_status_and_in_openapi_yaml() {
    const API: &str = include_str!("../docs/http-api.md");
    const OPENAPI: &str = include_str!("../docs/openapi.yaml");
    let table: BTreeSet<(String, String)> = API
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.strip_prefix("| ")?.split(" | ").collect();
            let status = cells.first()?.trim();
            let code = cells.get(1)?.trim().strip_prefix('`')?.strip_suffix('`')?;
            (status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (status.to_owned(), code.to_owned()))
        })
        .collect();
    for e in every_error() {
        // The forward-auth 403 that keeps another refusal's code is documented with §7.3.
        if matches!(e, authgate::error::ApiError::AsForbidden(_)) {
            continue;
        }
        let row = (e.status().as_u16().to_string(), e.code().to_owned());
        assert!(
            table.contains(&row),
            "docs/http-api.md §1 lacks the row {row:?}; its table: {table:?}"
        );
        assert!(
            OPENAPI.contains(&format!("            - {}\n", e.code())),
            "docs/openapi.yaml's Error enum lacks {}",
            e.code()
        );
    }
}
