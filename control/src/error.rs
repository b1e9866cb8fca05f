//! Configuration errors that say where and what: file, key path, message.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error. Displays as `FILE: KEY: MESSAGE` (or `FILE:LINE:COL: ...` for syntax).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// Dotted key path (`profiles.web.src_limit.pps`), empty when not known.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error at `key` of `file`.
    pub fn new(file: &Path, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { file: file.to_path_buf(), key: key.to_string(), message: message.into() }
    }

    /// Converts a TOML parse error, locating it by line and column.
    pub fn from_toml(file: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
        let location = err.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line} column {col}")
        });
        let message = err.message().trim().to_string();
        ConfigError { file: file.to_path_buf(), key: location.unwrap_or_default(), message }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}
