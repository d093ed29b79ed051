//! Loading daemon configuration: defaults, then a TOML file, then `WEFT_*`
//! environment variables and flags (applied by the caller).

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why the config file could not be used; the daemon does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this daemon's settings.
    #[error("parse config file {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Cause: the line, column and field at fault.
        source: toml::de::Error,
    },
}

/// Reads a TOML config file, or the defaults when `path` is `None`.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    match path {
        None => Ok(T::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: p.to_path_buf(),
                source,
            })
        }
    }
}
