//! `weft key`: create, list and delete S3 access keys.

use super::admin_client;
use super::output::{ms_to_rfc3339, print_json};
use crate::args::{AdminArgs, KeyCmd};
use anyhow::{Context, Result};
use weft_gateway::admin::KeyView;

/// Runs a `weft key` subcommand against the admin API.
pub async fn run(cmd: KeyCmd, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    match cmd {
        KeyCmd::Create { name } => {
            let k: KeyView = c
                .call(
                    reqwest::Method::POST,
                    "/v1/keys",
                    Some(serde_json::json!({ "name": name })),
                )
                .await
                .with_context(|| format!("create key {name}"))?;
            if a.json {
                return print_json(&k);
            }
            println!("Key name:   {}", k.name);
            println!("Access key: {}", k.access_key);
            println!("Secret key: {}", k.secret_key.unwrap_or_default());
            println!("(the secret is shown only once)");
        }
        KeyCmd::List => {
            let keys: Vec<KeyView> = c
                .call(reqwest::Method::GET, "/v1/keys", None)
                .await
                .context("list keys")?;
            if a.json {
                return print_json(&keys);
            }
            println!("{:<24} {:<24} {:<5} CREATED", "NAME", "ACCESS KEY", "ROOT");
            for k in keys {
                println!(
                    "{:<24} {:<24} {:<5} {}",
                    k.name,
                    k.access_key,
                    k.root,
                    ms_to_rfc3339(k.created_ms)
                );
            }
        }
        KeyCmd::Delete { name } => {
            let _: serde_json::Value = c
                .call(reqwest::Method::DELETE, &format!("/v1/keys/{name}"), None)
                .await
                .with_context(|| format!("delete key {name}"))?;
            if a.json {
                return print_json(&serde_json::json!({ "deleted": name }));
            }
            println!("deleted key {name}");
        }
    }
    Ok(())
}
