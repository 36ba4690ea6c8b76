//! Logs as an operator meets them, from the real binary: `[log] level` checked by
//! check-config, `RUST_LOG` in its place when set.

use crate::helpers::run;

/// `check-config` on a file whose `[log]` section is `log`: (exit code, stderr).
fn check_log(log: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    std::fs::write(&path, format!("[log]\n{log}\n")).unwrap();
    run(&["check-config", "--config", path.to_str().unwrap()], env)
}

#[test]
fn check_config_refuses_a_log_level_outside_the_grammar_with_exit_64() {
    for level in [
        "warning",
        "infos",
        "authgate",
        "info,authgate",
        "authgate=loud",
    ] {
        let (code, stderr) = check_log(&format!("level = \"{level}\""), &[]);
        assert_eq!(code, Some(64), "{level}: {stderr}");
        assert!(stderr.contains("log.level"), "{level}: {stderr}");
        assert!(stderr.contains(&format!("{level:?}")), "{level}: {stderr}");
    }
    let (_, stderr) = check_log("level = \"warning\"", &[]);
    assert!(stderr.contains("did you mean \"warn\""), "{stderr}");
}

#[test]
fn check_config_accepts_levels_and_lists_of_levels_and_targets() {
    for level in [
        "trace",
        "debug",
        "info",
        "warn",
        "error",
        "info,authgate::proxy=debug",
        "authgate=debug,warn",
        "warn, authgate::access=info",
    ] {
        let (code, stderr) = check_log(&format!("level = \"{level}\""), &[]);
        assert_eq!(code, Some(0), "{level}: {stderr}");
    }
}

#[test]
fn rust_log_is_held_to_the_same_grammar_and_named_when_refused() {
    // The file is valid; RUST_LOG, which would replace its level, is not.
    for (args, what) in [(&["check-config"][..], "check-config"), (&[][..], "serve")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.toml");
        std::fs::write(
            &path,
            "[admin]\nlisten = \"\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let mut argv = args.to_vec();
        argv.extend(["--config", path.to_str().unwrap()]);
        // A too-short secret stops a start that got past RUST_LOG, rather than letting it serve.
        let env = [("RUST_LOG", "warning"), ("AUTHGATE_JWT_SECRET", "short")];
        let (code, stderr) = run(&argv, &env);
        assert_eq!(code, Some(64), "{what}: {stderr}");
        assert!(stderr.contains("RUST_LOG"), "{what}: {stderr}");
        assert!(stderr.contains("did you mean \"warn\""), "{what}: {stderr}");
    }
    // An empty RUST_LOG counts as unset.
    let (code, stderr) = check_log("level = \"info\"", &[("RUST_LOG", "")]);
    assert_eq!(code, Some(0), "{stderr}");
}
