//! The one configuration error type: file, key path, value and reason.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration mistake. Displays as
/// `config/authgate.toml: routes[2].upstream: "htp://x" is not an http(s) URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// Key path such as `routes[2].upstream`; empty for whole-file errors (unreadable, bad TOML).
    pub key: String,
    /// The offending value as written (already quoted for strings), if there is one.
    pub value: Option<String>,
    /// What is wrong, and where it helps, how to fix it.
    pub reason: String,
}

impl ConfigError {
    /// An error about `key` holding `value`.
    pub fn new(
        file: &Path,
        key: impl Into<String>,
        value: Option<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            key: key.into(),
            value,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        if let Some(value) = &self.value {
            write!(f, "{value} ")?;
        }
        write!(f, "{}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_key_value_and_reason() {
        let e = ConfigError::new(
            Path::new("config/authgate.toml"),
            "routes[2].upstream",
            Some("\"htp://x\"".into()),
            "is not an http(s) URL",
        );
        assert_eq!(
            e.to_string(),
            "config/authgate.toml: routes[2].upstream: \"htp://x\" is not an http(s) URL"
        );
    }
}
