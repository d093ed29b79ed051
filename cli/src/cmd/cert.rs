//! `weft cert`: the cluster CA and the role certificates it issues
//! (`weft_cli::pki_files`).

use crate::args::CertCmd;
use anyhow::{Context, Result};
use sha2::Digest;
use weft_cli::pki_files::{self, IssueRequest};
use weft_client::pki::Role;

pub async fn run(command: CertCmd) -> Result<()> {
    match command {
        CertCmd::MasterKey { out } => {
            pki_files::write_master_key(&out)?;
            println!(
                "master key in {} (mode 0600): set master_key_file to it on every metad voter, and keep a copy offline; without it sealed secrets cannot be read",
                out.display()
            );
            Ok(())
        }
        CertCmd::Init { pki, cluster } => {
            let dir = pki.path();
            pki_files::init(&dir, &cluster)?;
            println!(
                "cluster CA for {cluster:?} in {}: ca.pem (give it to every process), ca.key (keep it secret; mode 0600)",
                dir.display()
            );
            Ok(())
        }
        CertCmd::Issue {
            pki,
            role,
            name,
            hosts,
            node_id,
            days,
            out,
            force,
            record,
            admin,
        } => {
            let dir = pki.path();
            let out = out.unwrap_or_else(|| dir.clone());
            let role = Role::parse(&role)?;
            let (cert, key) = pki_files::issue(
                &dir,
                &out,
                &IssueRequest {
                    role,
                    name: &name,
                    hosts: &hosts,
                    node: node_id,
                    days,
                    force,
                },
            )?;
            println!(
                "issued a {role} certificate to {name:?} for {days} days: {} and {}",
                cert.display(),
                key.display()
            );
            if record {
                let pem = std::fs::read(&cert)?;
                let args = crate::args::AdminArgs {
                    admin,
                    admin_cert: None,
                    admin_key: None,
                    admin_ca: None,
                    access_key: std::env::var("WEFT_ROOT_ACCESS_KEY").ok(),
                    secret_key: std::env::var("WEFT_ROOT_SECRET_KEY").ok(),
                    data: pki.data.clone(),
                    json: false,
                };
                let c = super::admin_client(&args)?;
                let _: serde_json::Value = c
                    .call(
                        reqwest::Method::POST,
                        "/v1/audit/certificate",
                        Some(serde_json::json!({
                            "role": role.name(),
                            "name": name,
                            "hosts": hosts,
                            "days": days,
                            "pem_sha256": hex::encode(sha2::Sha256::digest(&pem)),
                        })),
                    )
                    .await
                    .context("the certificate was issued, but recording it in the audit chain failed; run the same command with --force --record to re-issue and record it")?;
                println!("recorded in the audit chain");
            }
            Ok(())
        }
    }
}
