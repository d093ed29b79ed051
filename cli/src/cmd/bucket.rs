//! `weft bucket`: inspect buckets.

use super::admin_client;
use super::output::{ms_to_rfc3339, print_json};
use crate::args::{AdminArgs, BucketCmd, PlacementCmd};
use anyhow::{Context, Result};
use weft_common::residency::Residency;
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
        BucketCmd::Placement { command } => {
            let (method, bucket, body) = match command {
                PlacementCmd::Show { bucket } => (reqwest::Method::GET, bucket, None),
                PlacementCmd::Clear { bucket } => (reqwest::Method::DELETE, bucket, None),
                PlacementCmd::Set {
                    bucket,
                    zones,
                    labels,
                } => {
                    let r = Residency::zones(zones).with_labels(labels.into_iter().collect());
                    (
                        reqwest::Method::PUT,
                        bucket,
                        Some(serde_json::to_value(&r)?),
                    )
                }
            };
            let path = format!("/v1/buckets/{bucket}/residency");
            let r: Option<Residency> = c
                .call(method, &path, body)
                .await
                .with_context(|| format!("bucket {bucket} placement"))?;
            if a.json {
                return print_json(&r);
            }
            match r {
                Some(r) => println!("{bucket}: kept in {}", r.describe()),
                None => println!("{bucket}: anywhere its storage classes place it"),
            }
        }
    }
    Ok(())
}
