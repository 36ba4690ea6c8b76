//! The grammar of `[log] level` (and of `RUST_LOG`, which replaces it when set): a level
//! (`trace`, `debug`, `info`, `warn`, `error`) or a comma-separated list whose entries are such
//! a level or `target=level`, like `info,authgate::proxy=debug`.
//!
//! tracing-subscriber's `EnvFilter` accepts far more, and reads a word it does not know as a
//! target: `warning` would enable only a target named "warning" and silence every line of the
//! gateway. So the text is checked here first, strictly, and only then handed to the filter.

/// The levels an entry may name, most verbose first.
const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Checks `text` against the grammar and returns it with the blanks around entries removed
/// (`"info, authgate=debug"` → `"info,authgate=debug"`), ready for the filter; the error is a
/// reason to show after the value.
pub fn check_log_level(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(format!("is empty; use a level ({})", LEVELS.join(", ")));
    }
    let entries: Vec<&str> = text.split(',').map(str::trim).collect();
    for entry in &entries {
        if let Err(reason) = check_entry(entry) {
            return Err(if entries.len() == 1 {
                reason
            } else {
                format!("has the entry {entry:?}, which {reason}")
            });
        }
    }
    Ok(entries.join(","))
}

/// One entry: a level, or `target=level`. The error says what is wrong with the entry.
fn check_entry(entry: &str) -> Result<(), String> {
    if entry.is_empty() {
        return Err("is empty (two commas, or one at an end)".into());
    }
    let Some((target, level)) = entry.split_once('=') else {
        if is_level(entry) {
            return Ok(());
        }
        return Err(format!(
            "is not a level{}; use one of {}, or a list of levels and target=level entries \
             like \"info,authgate::proxy=debug\"",
            hint(entry),
            LEVELS.join(", ")
        ));
    };
    if !is_target(target) {
        return Err(format!(
            "has the target {target:?}, which is not a module path like \"authgate::proxy\""
        ));
    }
    if !is_level(level) {
        return Err(format!(
            "has the level {level:?}, which is not a level{}; use one of {}",
            hint(level),
            LEVELS.join(", ")
        ));
    }
    Ok(())
}

fn is_level(word: &str) -> bool {
    LEVELS.contains(&word)
}

/// A target as tracing names them: a module path (`authgate::proxy`), or a crate name with
/// dashes. Brackets and braces (EnvFilter's span filters) are not part of the grammar.
fn is_target(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.'))
}

/// " (did you mean \"warn\"?)" for a near miss such as `warning`, `infos` or `INFO`.
fn hint(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    LEVELS
        .iter()
        .find(|level| lower.starts_with(*level) || level.starts_with(lower.as_str()))
        .filter(|_| !lower.is_empty())
        .map(|level| format!(" (did you mean {level:?}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::check_log_level;

    #[test]
    fn levels_and_target_lists_are_accepted() {
        for text in [
            "trace",
            "debug",
            "info",
            "warn",
            "error",
            "info,authgate::proxy=debug",
            "authgate=debug,info",
            "warn,authgate::access=info,hyper_util=error",
            "authgate::proxy=trace",
        ] {
            assert_eq!(check_log_level(text).as_deref(), Ok(text), "{text}");
            // What passes here, the filter takes as it is.
            tracing_subscriber::EnvFilter::builder()
                .parse(text)
                .expect("the filter parses it");
        }
        assert_eq!(
            check_log_level(" info , authgate::proxy=debug ").as_deref(),
            Ok("info,authgate::proxy=debug")
        );
    }

    #[test]
    fn near_misses_bare_targets_and_filter_syntax_are_refused() {
        let refused = |text: &str, want: &str| {
            let e = check_log_level(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        };
        refused("warning", "did you mean \"warn\"?");
        refused("infos", "did you mean \"info\"?");
        refused("INFO", "did you mean \"info\"?");
        refused("authgate", "is not a level; use one of");
        refused(
            "info,authgate",
            "the entry \"authgate\", which is not a level",
        );
        refused("authgate=loud", "the level \"loud\", which is not a level");
        refused("authgate=warning", "did you mean \"warn\"?");
        refused("=info", "the target \"\"");
        refused("authgate[span]=info", "not a module path");
        refused("a=b=info", "the level \"b=info\"");
        refused("off", "is not a level");
        refused("3", "is not a level");
        refused("info,,debug", "the entry \"\", which is empty");
        refused("info,", "which is empty");
        refused("", "is empty");
        refused("  ", "is empty");
    }
}
