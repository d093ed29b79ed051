//! `weft bucket`: inspect buckets.

use super::admin_client;
use super::output::{ms_to_rfc3339, print_json};
use crate::args::{AdminArgs, BucketCmd};
use anyhow::{Context, Result};
use weft_gateway::admin::BucketView;

/// Runs a `weft bucket` subcommand against the admin API.
pub async fn run(cmd: BucketCmd, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    match cmd {
        BucketCmd::List => {
            let buckets: Vec<BucketView> = c
                .call(reqwest::Method::GET, "/v1/buckets", None)
                .await
                .context("list buckets")?;
            if a.json {
                return print_json(&buckets);
            }
            println!("{:<40} {:<24} CREATED", "BUCKET", "OWNER");
            for b in buckets {
                println!(
                    "{:<40} {:<24} {}",
                    b.name,
                    b.owner,
                    ms_to_rfc3339(b.created_ms)
                );
            }
        }
    }
    Ok(())
}
