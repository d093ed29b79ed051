//! What a dev cluster makes on its first start and keeps in its data
//! directory: the root key, and the TLS certificate when `tls` is on.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use weft_common::durable_file::{self, Access};

/// Root credentials of a dev cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

/// A self-signed certificate for localhost and 127.0.0.1 in `dir`, made
/// once and reused: `(cert.pem, key.pem)`.
pub fn self_signed_cert(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    durable_file::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    // Made once, when a dev cluster starts: temp files here are left by a
    // crashed earlier attempt.
    for target in [&key, &cert] {
        durable_file::remove_stale_temps(target)
            .with_context(|| format!("clean up beside {}", target.display()))?;
    }
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .context("generate a self-signed certificate")?;
    // Whole files or none (a torn pair would be reused above); the key first,
    // so a crash between the two leaves no certificate and both are made again.
    durable_file::write_file(
        &key,
        ck.key_pair.serialize_pem().as_bytes(),
        Access::OwnerOnly,
    )
    .with_context(|| format!("write {}", key.display()))?;
    durable_file::write_file(&cert, ck.cert.pem().as_bytes(), Access::Default)
        .with_context(|| format!("write {}", cert.display()))?;
    Ok((cert, key))
}

/// Root credentials: from `WEFT_ROOT_ACCESS_KEY`/`WEFT_ROOT_SECRET_KEY` when
/// set, else the ones kept in `data_dir/credentials.json`, else new ones
/// (then saved there, readable by the owner only).
pub fn root_credentials(data_dir: &Path) -> Result<Credentials> {
    if let (Ok(a), Ok(s)) = (
        std::env::var("WEFT_ROOT_ACCESS_KEY"),
        std::env::var("WEFT_ROOT_SECRET_KEY"),
    ) {
        if !a.is_empty() && !s.is_empty() {
            return Ok(Credentials {
                access_key: a,
                secret_key: s,
            });
        }
    }
    let path = data_dir.join("credentials.json");
    match std::fs::read(&path) {
        Ok(b) => {
            return serde_json::from_slice(&b).with_context(|| format!("parse {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    }
    let (access_key, secret_key) = weft_gateway::admin::generate_key_pair();
    let creds = Credentials {
        access_key,
        secret_key,
    };
    durable_file::create_dir_all(data_dir)
        .with_context(|| format!("create the data directory {}", data_dir.display()))?;
    // Saved once, when a dev cluster starts: temp files here are left by a
    // crashed earlier attempt.
    durable_file::remove_stale_temps(&path)
        .with_context(|| format!("clean up beside {}", path.display()))?;
    durable_file::write_file(
        &path,
        &serde_json::to_vec_pretty(&creds)?,
        Access::OwnerOnly,
    )
    .with_context(|| format!("save the root credentials to {}", path.display()))?;
    Ok(creds)
}
