//! `weft cert`: the cluster CA and the role certificates it issues
//! (`weft_cli::pki_files`).

use crate::args::CertCmd;
use anyhow::Result;
use weft_cli::pki_files::{self, IssueRequest};
use weft_client::pki::Role;

pub fn run(command: CertCmd) -> Result<()> {
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
            days,
            out,
            force,
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
                    days,
                    force,
                },
            )?;
            println!(
                "issued a {role} certificate to {name:?} for {days} days: {} and {}",
                cert.display(),
                key.display()
            );
            Ok(())
        }
    }
}
