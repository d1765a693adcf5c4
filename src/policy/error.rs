//! Errors of loading policy and directory files: each names the file, the entry and the field.

use std::fmt;
use std::path::PathBuf;

/// A policy or directory file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has fields of the wrong type or unknown fields.
    #[error("{}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The TOML parser's message (with line and column).
        message: String,
    },
    /// A value is well-formed TOML but wrong.
    #[error("{0}")]
    Invalid(#[from] Invalid),
}

/// One invalid value: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// The file.
    pub file: PathBuf,
    /// The entry ("resources.prod-db-admin", "principals.engineer").
    pub entry: String,
    /// The field within the entry ("stages[1].approvers[0]"); empty for the entry itself.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.entry)?;
        if !self.field.is_empty() {
            write!(f, ".{}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Builds [`Invalid`] errors for one entry of one file.
pub(crate) struct At<'a> {
    pub file: &'a std::path::Path,
    pub entry: String,
}

impl At<'_> {
    pub fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            file: self.file.to_path_buf(),
            entry: self.entry.clone(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads a policy or directory file.
pub(crate) fn read(file: &std::path::Path) -> Result<String, LoadError> {
    std::fs::read_to_string(file).map_err(|source| LoadError::Read {
        file: file.to_path_buf(),
        source,
    })
}

/// Parses TOML text of `file`, with the parser's location in the error.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &std::path::Path,
) -> Result<T, LoadError> {
    toml::from_str(text).map_err(|error| LoadError::Syntax {
        file: file.to_path_buf(),
        message: error.to_string(),
    })
}
