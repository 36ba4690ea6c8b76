//! The module graph of `src/` stays acyclic, and the layers stay apart: the proxy and the
//! account endpoints never import each other, the server imports neither, and `auth`/`store`
//! import no HTTP layer above them.
//!
//! Edges come from `crate::`, `super::` and `self::` paths (in `use` lines, brace groups
//! expanded, and inline), each resolved to the deepest file of `src/` it names; code after a
//! `#[cfg(test)]` line is left out, as are line comments. `main.rs` is the binary, not part of
//! the library's graph.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;
type Graph = BTreeMap<Module, BTreeSet<Module>>;

/// `importer:imported` top-level modules that must never depend on each other this way.
const FORBIDDEN: &[(&str, &str)] = &[
    ("proxy", "routes"),
    ("routes", "proxy"),
    ("server", "routes"),
    ("server", "proxy"),
    ("server", "app"),
    ("auth", "proxy"),
    ("auth", "routes"),
    ("auth", "server"),
    ("store", "routes"),
    ("store", "proxy"),
    ("store", "server"),
];

#[test]
fn src_has_no_import_cycle_and_no_forbidden_edge() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    collect(&src, &src, &mut files);
    assert!(files.len() > 40, "found only {} files", files.len());
    let graph = graph(&files);
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(
        edges > 100,
        "found only {edges} edges: is the parser blind?"
    );
    let problems = [cycles(&graph), forbidden(&graph)].concat();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_through_a_brace_group_and_a_forbidden_edge() {
    let files = BTreeMap::from([
        (
            m("proxy"),
            "use crate::{auth::x, routes::{a, b}};".to_owned(),
        ),
        (m("routes"), "fn f() { super::proxy::g(); }".to_owned()),
        (
            m("auth"),
            "// crate::routes::h in a comment is no edge".to_owned(),
        ),
    ]);
    let graph = graph(&files);
    assert_eq!(cycles(&graph).len(), 1, "{graph:?}");
    assert_eq!(forbidden(&graph).len(), 2, "{graph:?}");
    assert!(graph[&m("auth")].is_empty());
}

fn m(path: &str) -> Module {
    path.split("::").map(str::to_owned).collect()
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".to_owned()
    } else {
        module.join("::")
    }
}

/// Every `.rs` file below `dir` by its module path, with its text up to `#[cfg(test)]`.
fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<Module, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
            continue;
        }
        let rel = path.strip_prefix(root).unwrap().with_extension("");
        let mut module: Module = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if path.extension().is_none_or(|e| e != "rs") || module == ["main"] {
            continue;
        }
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        files.insert(module, code.to_owned());
    }
}

/// Module → the modules it references.
fn graph(files: &BTreeMap<Module, String>) -> Graph {
    let mut graph = Graph::new();
    for (module, text) in files {
        let targets = graph.entry(module.clone()).or_default();
        for path in references(module, &strip_comments(text)) {
            // The deepest known module the path names (an item path ends in an item).
            if let Some(target) = (1..=path.len())
                .rev()
                .map(|k| path[..k].to_vec())
                .find(|p| files.contains_key(p))
            {
                if &target != module {
                    targets.insert(target);
                }
            }
        }
    }
    graph
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::`/`super::`/`self::` path in `text`, as absolute module paths.
fn references(here: &Module, text: &str) -> Vec<Module> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = find_root(rest) {
        let (root, after) = rest[at..].split_once("::").unwrap();
        let mut base = match root {
            "crate" => Vec::new(),
            "super" => here[..here.len().saturating_sub(1)].to_vec(),
            _ => here.clone(),
        };
        let (path, tail) = split_path(after);
        for segment in path.split("::").filter(|s| !s.is_empty()) {
            if segment == "super" {
                base.pop();
            } else {
                base.push(segment.to_owned());
            }
        }
        match tail.strip_prefix('{') {
            Some(group) => {
                let body = &group[..matching_brace(group)];
                expand(&base, body, &mut out);
                rest = &group[body.len()..];
            }
            None => {
                out.push(base);
                rest = tail;
            }
        }
    }
    out
}

/// Where the next `crate::`, `super::` or `self::` starts on an identifier boundary.
fn find_root(text: &str) -> Option<usize> {
    ["crate::", "super::", "self::"]
        .iter()
        .filter_map(|root| {
            text.match_indices(root)
                .map(|(i, _)| i)
                .find(|&i| !text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        })
        .min()
}

/// `a::b::c` up to the first character that is not part of a path; what follows it.
fn split_path(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    (text[..end].trim_end_matches(':'), &text[end..])
}

/// The length of a brace group's body (`text` starts just after its `{`).
fn matching_brace(text: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

/// The paths of a `use` brace group below `base`.
fn expand(base: &Module, body: &str, out: &mut Vec<Module>) {
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in body.char_indices().chain([(body.len(), ',')]) {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                expand_item(base, body[start..i].trim(), out);
                start = i + 1;
            }
            _ => {}
        }
    }
}

fn expand_item(base: &Module, item: &str, out: &mut Vec<Module>) {
    let (path, tail) = split_path(item);
    let mut full = base.clone();
    full.extend(
        path.split("::")
            .filter(|s| !s.is_empty() && *s != "self")
            .map(str::to_owned),
    );
    match tail.trim_start().strip_prefix('{') {
        Some(group) => expand(&full, &group[..matching_brace(group)], out),
        None => out.push(full),
    }
}

/// One line per cycle (a strongly connected group of more than one module).
fn cycles(graph: &Graph) -> Vec<String> {
    let nodes: Vec<&Module> = graph.keys().collect();
    let reach = |from: &Module| -> BTreeSet<Module> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&Module, BTreeSet<Module>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut groups = BTreeSet::new();
    for n in &nodes {
        let group: BTreeSet<String> = nodes
            .iter()
            .filter(|o| reachable[*n].contains(**o) && reachable[*o].contains(*n))
            .map(|o| name(o))
            .collect();
        if group.len() > 1 {
            groups.insert(group.into_iter().collect::<Vec<_>>().join(", "));
        }
    }
    groups.into_iter().map(|g| format!("cycle: {g}")).collect()
}

fn forbidden(graph: &Graph) -> Vec<String> {
    let top = |m: &Module| m.first().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (from, targets) in graph {
        for to in targets {
            if FORBIDDEN.contains(&(top(from).as_str(), top(to).as_str())) {
                out.push(format!("forbidden: {} -> {}", name(from), name(to)));
            }
        }
    }
    out
}
