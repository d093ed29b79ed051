//! What a dev cluster makes on its first start and keeps in its data
//! directory: the root key, and the TLS certificate when `tls` is on.

use super::DevClusterError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use weft_common::durable_file::{self, Access, FsError};

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
pub fn self_signed_cert(dir: &Path) -> Result<(PathBuf, PathBuf), DevClusterError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    durable_file::create_dir_all(dir).map_err(files("create", dir))?;
    // Made once, when a dev cluster starts: temp files here are left by a
    // crashed earlier attempt.
    for target in [&key, &cert] {
        durable_file::remove_stale_temps(target).map_err(files("clean up beside", target))?;
    }
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(DevClusterError::Certificate)?;
    // Whole files or none (a torn pair would be reused above); the key first,
    // so a crash between the two leaves no certificate and both are made again.
    durable_file::write_file(
        &key,
        ck.key_pair.serialize_pem().as_bytes(),
        Access::OwnerOnly,
    )
    .map_err(files("write", &key))?;
    durable_file::write_file(&cert, ck.cert.pem().as_bytes(), Access::Default)
        .map_err(files("write", &cert))?;
    Ok((cert, key))
}

/// Root credentials: from `WEFT_ROOT_ACCESS_KEY`/`WEFT_ROOT_SECRET_KEY` when
/// set, else the ones kept in `data_dir/credentials.json`, else new ones
/// (then saved there, readable by the owner only).
pub fn root_credentials(data_dir: &Path) -> Result<Credentials, DevClusterError> {
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
            return serde_json::from_slice(&b)
                .map_err(|source| DevClusterError::ParseCredentials { path, source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(DevClusterError::ReadCredentials { path, source }),
    }
    let (access_key, secret_key) = weft_gateway::admin::generate_key_pair();
    let creds = Credentials {
        access_key,
        secret_key,
    };
    durable_file::create_dir_all(data_dir).map_err(files("create the data directory", data_dir))?;
    // Saved once, when a dev cluster starts: temp files here are left by a
    // crashed earlier attempt.
    durable_file::remove_stale_temps(&path).map_err(files("clean up beside", &path))?;
    durable_file::write_file(
        &path,
        &serde_json::to_vec_pretty(&creds).map_err(DevClusterError::EncodeCredentials)?,
        Access::OwnerOnly,
    )
    .map_err(files("save the root credentials to", &path))?;
    Ok(creds)
}

/// Wraps a file-system error with what was being done to `path`.
fn files<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(FsError) -> DevClusterError + 'a {
    move |source| DevClusterError::Files {
        action,
        path: path.to_path_buf(),
        source,
    }
}
