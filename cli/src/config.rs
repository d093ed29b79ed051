//! Loading daemon configuration: defaults, then a TOML file, then `WEFT_*`
//! environment variables and flags (applied by the caller).

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads a TOML config file, or the defaults when `path` is `None`.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    match path {
        None => Ok(T::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("read config file {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parse config file {}", p.display()))
        }
    }
}
