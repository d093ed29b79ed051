//! `weft cert`: the cluster CA and the role certificates it issues
//! (`weft_client::pki`). Files are written durably; keys at mode 0600.

use crate::args::CertCmd;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use weft_client::pki::{self, Role};
use weft_common::durable_file::{self, Access};

/// `ca.json`: what issuing needs besides the key.
#[derive(Serialize, Deserialize)]
struct CaInfo {
    /// The cluster name the CA's subject carries (leaves name it as their
    /// issuer, so it must be rebuilt exactly).
    cluster: String,
}

pub fn run(command: CertCmd) -> Result<()> {
    match command {
        CertCmd::Init { pki, cluster } => init(&pki.path(), &cluster),
        CertCmd::Issue {
            pki,
            role,
            name,
            hosts,
            days,
            out,
            force,
        } => {
            let dir = pki.path();
            let out = out.unwrap_or_else(|| dir.clone());
            issue(&dir, &out, &role, &name, &hosts, days, force)
        }
    }
}

/// The CA's files: `init` writes them, and replaces none of them (the key
/// may be offline while the certificate is still the cluster's trust).
const CA_FILES: [&str; 3] = ["ca.pem", "ca.key", "ca.json"];

fn init(dir: &Path, cluster: &str) -> Result<()> {
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
    println!(
        "cluster CA for {cluster:?} in {}: ca.pem (give it to every process), ca.key (keep it secret; mode 0600)",
        dir.display()
    );
    Ok(())
}

fn issue(
    dir: &Path,
    out: &Path,
    role: &str,
    name: &str,
    hosts: &[String],
    days: i64,
    force: bool,
) -> Result<()> {
    let role = Role::parse(role)?;
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
    if !force && (cert_path.exists() || leaf_key_path.exists()) {
        bail!(
            "{} already exists: pass --force to re-issue (the old certificate stays valid until it expires)",
            cert_path.display()
        );
    }
    let issued = pki::issue(&info.cluster, &ca_key, role, name, hosts, days)?;
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
    durable_file::write_file(&leaf_key_path, issued.key_pem.as_bytes(), Access::OwnerOnly)?;
    durable_file::write_file(&cert_path, issued.cert_pem.as_bytes(), Access::Default)?;
    println!(
        "issued a {role} certificate to {name:?} for {days} days: {} and {}",
        cert_path.display(),
        leaf_key_path.display()
    );
    Ok(())
}
