//! The chaos cluster's certificates: a cluster CA and one certificate per
//! container (its role, its container name as host), mounted read-only at
//! [`CONTAINER_DIR`], so every internal hop runs mutual TLS as in
//! production. [`ChaosPki::roll`] rolls the CA mid-run the way
//! docs/security.md tells an operator to: trust both, re-issue every
//! certificate from the new CA, then trust only the new one, waiting for
//! the daemons to reload after each step.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weft_client::internal_tls::{InternalTls, TlsFiles};
use weft_client::pki::{self, Issued, Role};

/// Where containers see the certificates.
pub const CONTAINER_DIR: &str = "/etc/weft/pki";

/// How often the daemons re-read their certificates in a chaos run
/// (`WEFT_TLS_RELOAD_MS`), so a roll fits in a scenario.
pub const RELOAD_MS: u64 = 1_000;

const CLUSTER: &str = "weft-chaos";

/// The certificates on the host, and the CA that issues them now.
pub struct ChaosPki {
    dir: PathBuf,
    ca: Issued,
    /// Container name, role and (data nodes) node id of every certificate
    /// holder.
    holders: Vec<(String, Role, Option<u64>)>,
    /// The harness's identity, reloaded at each step of a roll.
    admin: Option<Arc<InternalTls>>,
}

/// 32 random bytes as hex: what `weft cert master-key` writes.
fn random_master_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Replaces `path` with `bytes` whole: a daemon reloading meanwhile reads
/// the old file or the new one, never a torn one.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

impl ChaosPki {
    /// A new CA in `dir` and a certificate for each holder (container
    /// name, role), plus `admin` for the harness and `weft cluster init`.
    pub fn create(dir: &Path, holders: Vec<(String, Role, Option<u64>)>) -> Result<ChaosPki> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let ca = pki::new_ca(CLUSTER)?;
        let p = ChaosPki {
            dir: dir.to_path_buf(),
            ca,
            holders,
            admin: None,
        };
        replace(&p.dir.join("ca.pem"), p.ca.cert_pem.as_bytes())?;
        p.issue_all()?;
        // One master key for every voter (secrets sealed at rest).
        replace(&p.dir.join("master.key"), random_master_key().as_bytes())?;
        Ok(p)
    }

    fn issue_all(&self) -> Result<()> {
        let admin = ("admin".to_string(), Role::Admin, None);
        for (name, role, node) in self.holders.iter().chain(std::iter::once(&admin)) {
            let hosts: Vec<String> = if *role == Role::Admin {
                vec![]
            } else {
                vec![name.clone()]
            };
            let leaf = pki::issue_bound(CLUSTER, &self.ca.key_pem, *role, name, &hosts, *node, 30)?;
            // The key first: a reload between the two finds a pair that
            // does not match, refuses it and keeps the old one until the
            // next look.
            replace(
                &self.dir.join(format!("{name}.key")),
                leaf.key_pem.as_bytes(),
            )?;
            replace(
                &self.dir.join(format!("{name}.pem")),
                leaf.cert_pem.as_bytes(),
            )?;
        }
        Ok(())
    }

    /// The `tls` line of a daemon's config for container `name`.
    pub fn config_line(name: &str) -> String {
        format!(
            "tls = {{ cert = \"{CONTAINER_DIR}/{name}.pem\", key = \"{CONTAINER_DIR}/{name}.key\", ca = \"{CONTAINER_DIR}/ca.pem\" }}\n"
        )
    }

    /// The master-key line of a metad's config.
    pub fn master_key_line() -> String {
        format!("master_key_file = \"{CONTAINER_DIR}/master.key\"\n")
    }

    /// `weft cluster init`'s flags for the admin certificate.
    pub fn init_flags() -> Vec<String> {
        vec![
            "--tls-cert".into(),
            format!("{CONTAINER_DIR}/admin.pem"),
            "--tls-key".into(),
            format!("{CONTAINER_DIR}/admin.key"),
            "--tls-ca".into(),
            format!("{CONTAINER_DIR}/ca.pem"),
        ]
    }

    /// The host directory to mount.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The harness's own identity (admin); a roll reloads it.
    pub fn admin(&mut self) -> Result<Arc<InternalTls>> {
        if let Some(a) = &self.admin {
            return Ok(a.clone());
        }
        let a = InternalTls::load(TlsFiles {
            cert: self.dir.join("admin.pem"),
            key: self.dir.join("admin.key"),
            ca: self.dir.join("ca.pem"),
        })?;
        self.admin = Some(a.clone());
        Ok(a)
    }

    fn reload_admin(&self) -> Result<()> {
        if let Some(a) = &self.admin {
            a.reload()?;
        }
        Ok(())
    }

    /// Rolls to a new CA with no downtime: (1) every process trusts the
    /// old and the new CA; (2) every certificate is re-issued by the new
    /// CA; (3) only the new CA is trusted. Each step waits `settle` for
    /// the daemons to reload (a few reload intervals). `log` hears each
    /// step.
    pub async fn roll(&mut self, settle: Duration, mut log: impl FnMut(&str)) -> Result<()> {
        let new = pki::new_ca(CLUSTER)?;
        let both = format!("{}{}", self.ca.cert_pem, new.cert_pem);
        replace(&self.dir.join("ca.pem"), both.as_bytes())?;
        self.reload_admin()?;
        log("roll 1/3: old and new CA trusted");
        tokio::time::sleep(settle).await;
        self.ca = new;
        self.issue_all()?;
        self.reload_admin()?;
        log("roll 2/3: every certificate re-issued by the new CA");
        tokio::time::sleep(settle).await;
        replace(&self.dir.join("ca.pem"), self.ca.cert_pem.as_bytes())?;
        self.reload_admin()?;
        log("roll 3/3: only the new CA trusted");
        tokio::time::sleep(settle).await;
        Ok(())
    }
}
