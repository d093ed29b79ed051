//! The cluster CA and role certificates as files (`weft cert`, and the CA
//! `weft dev` makes for itself): written durably, keys at mode 0600.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use weft_client::internal_tls::TlsFiles;
use weft_client::pki::{self, Role};
use weft_common::durable_file::{self, Access};

/// `ca.json`: what issuing needs besides the key.
#[derive(Serialize, Deserialize)]
struct CaInfo {
    /// The cluster name the CA's subject carries (leaves name it as their
    /// issuer, so it must be rebuilt exactly).
    cluster: String,
}

/// The CA's files: `init` writes them, and replaces none of them (the key
/// may be offline while the certificate is still the cluster's trust).
const CA_FILES: [&str; 3] = ["ca.pem", "ca.key", "ca.json"];

/// Whether `dir` holds any of a CA's files.
pub fn ca_exists(dir: &Path) -> bool {
    CA_FILES.iter().any(|f| dir.join(f).exists())
}

/// Makes a new cluster CA in `dir`; refuses if any of its files exist.
pub fn init(dir: &Path, cluster: &str) -> Result<()> {
    if let Some(found) = CA_FILES.iter().find(|f| dir.join(f).exists()) {
        bail!(
            "a cluster CA already exists in {} ({found}): issue certificates with `weft cert issue`, or choose another --dir",
            dir.display()
        );
    }
    durable_file::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let ca = pki::new_ca(cluster)?;
    let info = serde_json::to_vec_pretty(&CaInfo {
        cluster: cluster.to_string(),
    })?;
    // The key last: its presence marks a complete CA.
    durable_file::write_file(&dir.join("ca.json"), &info, Access::Default)?;
    durable_file::write_file(&dir.join("ca.pem"), ca.cert_pem.as_bytes(), Access::Default)?;
    durable_file::write_file(
        &dir.join("ca.key"),
        ca.key_pem.as_bytes(),
        Access::OwnerOnly,
    )?;
    Ok(())
}

/// What to issue.
pub struct IssueRequest<'a> {
    /// The role the certificate names.
    pub role: Role,
    /// File name (`NAME.pem`, `NAME.key`).
    pub name: &'a str,
    /// Names its holder serves on.
    pub hosts: &'a [String],
    /// The node id a data node certificate is bound to.
    pub node: Option<u64>,
    /// Validity.
    pub days: i64,
    /// Replace an existing certificate of that name.
    pub force: bool,
}

/// Issues a certificate with the CA in `dir`, written to `out`: the paths
/// of the certificate and its key.
pub fn issue(dir: &Path, out: &Path, req: &IssueRequest<'_>) -> Result<(PathBuf, PathBuf)> {
    let name = req.name;
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("--name {name:?} must be a plain file name (no slashes, not starting with a dot)");
    }
    if name == "ca" {
        bail!("--name ca would overwrite the CA's own files: choose another name");
    }
    let key_path = dir.join("ca.key");
    let ca_key = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "read the CA key {}: create a CA first with `weft cert init` (or point --dir or --data at it)",
            key_path.display()
        )
    })?;
    let info_path = dir.join("ca.json");
    let info: CaInfo = serde_json::from_slice(
        &std::fs::read(&info_path).with_context(|| format!("read {}", info_path.display()))?,
    )
    .with_context(|| format!("parse {}", info_path.display()))?;
    let cert_path = out.join(format!("{name}.pem"));
    let leaf_key_path = out.join(format!("{name}.key"));
    if !req.force && (cert_path.exists() || leaf_key_path.exists()) {
        bail!(
            "{} already exists: pass --force to re-issue (the old certificate stays valid until it expires)",
            cert_path.display()
        );
    }
    if req.role == Role::Datad && req.node.is_none() {
        bail!("a data node certificate names the node id it runs as: pass --node-id N (the `node_id` in its config); metad refuses a data node that speaks for another node");
    }
    let issued = pki::issue_bound(
        &info.cluster,
        &ca_key,
        req.role,
        name,
        req.hosts,
        req.node,
        req.days,
    )?;
    // What every endpoint will check: the new certificate chains to the
    // CA certificate the cluster trusts (a ca.key, ca.pem and ca.json of
    // different CAs would otherwise issue certificates nobody accepts).
    let ca_pem_path = dir.join("ca.pem");
    let ca_pem = std::fs::read_to_string(&ca_pem_path)
        .with_context(|| format!("read {}", ca_pem_path.display()))?;
    let trusted = pki::certs_from_pem(&ca_pem, "ca.pem")?;
    let leaf = pki::certs_from_pem(&issued.cert_pem, "the new certificate")?;
    pki::verify_client(&leaf[0], &trusted).with_context(|| {
        format!(
            "the new certificate does not chain to {}: ca.pem, ca.key and ca.json in {} are not one CA",
            ca_pem_path.display(),
            dir.display()
        )
    })?;
    durable_file::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    // The key first: a crash between the two leaves no certificate, and a
    // certificate is never paired with another's key.
    durable_file::write_file(&leaf_key_path, issued.key_pem.as_bytes(), Access::OwnerOnly)?;
    durable_file::write_file(&cert_path, issued.cert_pem.as_bytes(), Access::Default)?;
    Ok((cert_path, leaf_key_path))
}

/// Writes a new master key to `path`, which must not exist.
pub fn write_master_key(path: &Path) -> Result<()> {
    if path.exists() {
        bail!(
            "{} exists: a master key is never replaced (sealed secrets need it); choose another file",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        durable_file::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    durable_file::write_file(
        path,
        weft_metad::seal::new_master_key().as_bytes(),
        Access::OwnerOnly,
    )
    .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// The certificates a dev cluster runs with: one per role, for the
/// loopback names, from a CA made in `DATA/pki` on first start.
#[derive(Clone, Debug)]
pub struct DevPki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The directory holding the CA, for certificates issued later
    /// ([`datad`](Self::datad)).
    pub dir: PathBuf,
    /// metad voters'.
    pub metad: TlsFiles,
    /// Gateways'.
    pub gateway: TlsFiles,
    /// The CLI's, and the dev cluster's own calls (init, waits).
    pub admin: TlsFiles,
    /// The master key metad seals access-key secrets under
    /// (`DATA/master.key`).
    pub master_key: PathBuf,
}

/// Loopback names every dev certificate serves on.
const DEV_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

impl DevPki {
    /// Makes (first start) or reuses the dev CA and certificates in `dir`.
    pub fn prepare(dir: &Path) -> Result<DevPki> {
        if !dir.join("ca.key").exists() {
            if ca_exists(dir) {
                bail!(
                    "{} holds part of a CA (no ca.key): remove it, or run the cluster with certificates of your own",
                    dir.display()
                );
            }
            init(dir, "weft-dev")?;
        }
        let ca = dir.join("ca.pem");
        let master_key = dir.parent().unwrap_or(Path::new(".")).join("master.key");
        if !master_key.exists() {
            write_master_key(&master_key)?;
        }
        Ok(DevPki {
            master_key,
            metad: dev_files(dir, Role::Metad, None)?,
            gateway: dev_files(dir, Role::Gateway, None)?,
            admin: dev_files(dir, Role::Admin, None)?,
            dir: dir.to_path_buf(),
            ca,
        })
    }

    /// Data node `node`'s certificate (`datad-N`), bound to its node id;
    /// issued on first use.
    pub fn datad(&self, node: u64) -> Result<TlsFiles> {
        dev_files(&self.dir, Role::Datad, Some(node))
    }
}

/// A dev certificate for `role` (and data node `node`) in `dir`, issued
/// for the loopback names if it is not there yet.
fn dev_files(dir: &Path, role: Role, node: Option<u64>) -> Result<TlsFiles> {
    let name = match node {
        Some(n) => format!("{}-{n}", role.name()),
        None => role.name().to_string(),
    };
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    if !(cert.is_file() && key.is_file()) {
        let loopback: Vec<String> = DEV_HOSTS.iter().map(|h| h.to_string()).collect();
        let hosts: &[String] = if role == Role::Admin { &[] } else { &loopback };
        issue(
            dir,
            dir,
            &IssueRequest {
                role,
                name: &name,
                hosts,
                node,
                days: 365,
                force: true,
            },
        )?;
    }
    Ok(TlsFiles {
        cert,
        key,
        ca: dir.join("ca.pem"),
    })
}
