//! What each command of [`crate::args`] does: one module per command group.
//! The admin commands (`key`, `bucket`, `cluster`, `node`) talk to a
//! gateway's admin API; `dev` and `daemon` run servers in this process;
//! `bench` measures.

use crate::args::AdminArgs;
use anyhow::{Context, Result};
use weft_cli::admin_client::AdminClient;

pub mod audit;
pub mod bench;
pub mod bucket;
pub mod cert;
pub mod class;
pub mod cluster;
pub mod daemon;
pub mod dev;
pub mod key;
pub mod lifecycle;
pub mod locate;
pub mod node;
mod output;
pub mod sim;
pub mod warm;

/// Log target of the messages about a server stopping: the binary's root,
/// where they were logged before the commands had modules of their own, so
/// log lines and `WEFT_LOG` filters written against them stay valid.
const LOG_TARGET: &str = "weft";

/// The admin API client of an admin command: the root key from the flags
/// (or their environment variables), else the one a `weft dev` cluster
/// saved in its data directory, so `weft key list` works beside `weft dev`
/// with no setup.
fn admin_client(a: &AdminArgs) -> Result<AdminClient> {
    let (ak, sk) = match (&a.access_key, &a.secret_key) {
        (Some(ak), Some(sk)) => (ak.clone(), sk.clone()),
        _ => {
            let path = a.data.join("credentials.json");
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "no root credentials: set WEFT_ROOT_ACCESS_KEY and WEFT_ROOT_SECRET_KEY, or point --data at a weft dev data directory (tried {})",
                    path.display()
                )
            })?;
            let c: weft_cli::dev_cluster::Credentials = serde_json::from_slice(&bytes)
                .with_context(|| format!("parse {}", path.display()))?;
            (c.access_key, c.secret_key)
        }
    };
    let tls = if a.admin.starts_with("https://") {
        let files = match (&a.admin_cert, &a.admin_key, &a.admin_ca) {
            (Some(cert), Some(key), Some(ca)) => weft_client::internal_tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            },
            _ => {
                let dir = a.data.join("pki");
                weft_client::internal_tls::TlsFiles {
                    cert: dir.join("admin.pem"),
                    key: dir.join("admin.key"),
                    ca: dir.join("ca.pem"),
                }
            }
        };
        Some(
            weft_client::internal_tls::InternalTls::load(files.clone()).with_context(|| {
                format!(
                    "load the admin certificate {} for {}: pass --admin-cert/--admin-key/--admin-ca \
                     (`weft cert issue --role admin`), point --data at a weft dev data directory, or use \
                     an http:// --admin for a cluster run with --insecure-internal",
                    files.cert.display(),
                    a.admin
                )
            })?,
        )
    } else {
        None
    };
    Ok(AdminClient::new(&a.admin, &ak, &sk).with_tls(tls.as_ref()))
}
