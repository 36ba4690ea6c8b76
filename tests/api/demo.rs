//! The newcomer's first run: `authgate demo` prints a curl walkthrough that works exactly as
//! printed. This test starts the real binary and runs the printed commands with bash.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use authgate::cli::demo::{WALKTHROUGH_END, WALKTHROUGH_START};

use crate::helpers::binary;
use crate::tools;

#[test]
fn the_demo_walkthrough_works_as_printed() {
    // The printed commands call `curl` by name: put the one scripts/test found first on PATH.
    let curl = tools::curl();
    let path = std::env::join_paths(curl.parent().map(Path::to_path_buf).into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("demo-data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut script = String::new();
    let mut inside = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line == WALKTHROUGH_START {
            inside = true;
        } else if line == WALKTHROUGH_END {
            break;
        } else if inside {
            script.push_str(&line);
            script.push('\n');
        }
    }
    assert!(!script.is_empty(), "the demo printed a walkthrough");
    let out = Command::new("bash")
        .env("PATH", path)
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What a newcomer should see, in order.
    let expected = [
        r#"{"status":"ready"}"#,
        r#""path":"/public/hello""#,
        "HTTP/1.1 401",
        r#""username":"alice""#,
        r#""username":"alice""#,
        r#"["x-auth-username","alice"]"#,
        r#""error":"fresh_token_required""#,
        r#"["x-auth-fresh","true"]"#,
        r#""path":"/admin/settings""#,
        r#"{"message":"Logged out."}"#,
        r#""error":"token_revoked""#,
    ];
    let mut rest: &str = &text;
    for want in expected {
        let at = rest
            .find(want)
            .unwrap_or_else(|| panic!("walkthrough output lacks {want} in order:\n{text}"));
        rest = &rest[at + want.len()..];
    }
}
