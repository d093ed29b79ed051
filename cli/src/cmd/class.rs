//! `weft class`: storage classes as the cluster defines them.

use super::admin_client;
use super::output::{human_bytes, print_json};
use crate::args::{AdminArgs, ClassCmd};
use anyhow::{anyhow, Context, Result};
use weft_common::storage_class::{self, Selector, Spread, StorageClass};
use weft_gateway::admin_classes::{ClassesReply, PutClassRequest};

/// Runs a `weft class` subcommand against the admin API.
pub async fn run(cmd: ClassCmd, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    let list = || async {
        c.call::<ClassesReply>(reqwest::Method::GET, "/v1/classes", None)
            .await
            .context("list storage classes")
    };
    match cmd {
        ClassCmd::List => {
            let reply = list().await?;
            if a.json {
                return print_json(&reply);
            }
            println!(
                "{:<20} {:<12} {:<9} {:<28} {:>9} {:>10} {:>10}  PLACEABLE",
                "CLASS", "LAYOUT", "SPREAD", "SELECT", "SEGMENTS", "BYTES", "STORED"
            );
            for v in &reply.classes {
                let select = if v.class.select.is_empty() {
                    "*".to_string()
                } else {
                    v.class
                        .select
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" | ")
                };
                println!(
                    "{:<20} {:<12} {:<9} {:<28} {:>9} {:>10} {:>10}  {}",
                    v.class.name,
                    v.class.layout_text(),
                    v.class.spread.as_str(),
                    select,
                    v.segments,
                    human_bytes(v.bytes),
                    human_bytes(v.stored_bytes),
                    v.unplaceable
                        .as_deref()
                        .map_or("yes".to_string(), |w| format!("no: {w}"))
                        + if v.migrating {
                            " (migrating its data to this definition)"
                        } else {
                            ""
                        },
                );
            }
        }
        ClassCmd::Set {
            name,
            layout,
            select,
            spread,
            small_bytes,
            small_copies,
            migrate,
        } => {
            let existing = list()
                .await?
                .classes
                .into_iter()
                .map(|v| v.class)
                .find(|c| c.name == name);
            let mut class = match existing {
                Some(c) => c,
                None => StorageClass {
                    name: name.clone(),
                    layout: layout
                        .as_deref()
                        .ok_or_else(|| anyhow!("{name} is a new class: give --layout"))
                        .and_then(|l| storage_class::parse_layout(l).map_err(|e| anyhow!(e)))?,
                    select: vec![],
                    spread: Spread::Zones,
                    small_object_bytes: storage_class::SMALL_OBJECT_BYTES_DEFAULT,
                    small_object_copies: 3,
                },
            };
            if let Some(l) = layout {
                class.layout = storage_class::parse_layout(&l).map_err(|e| anyhow!(e))?;
            }
            if !select.is_empty() {
                class.select = select
                    .iter()
                    .map(|s| Selector::parse(s).map_err(|e| anyhow!(e)))
                    .collect::<Result<_>>()?;
                // `*` alone means every node: no selector at all. As a
                // fallback after others it stays.
                if class.select.len() == 1 && class.select[0].0.is_empty() {
                    class.select.clear();
                }
            }
            if let Some(s) = spread {
                class.spread = Spread::parse(&s).map_err(|e| anyhow!(e))?;
            }
            if let Some(b) = small_bytes {
                class.small_object_bytes = b;
            }
            if let Some(n) = small_copies {
                class.small_object_copies = n;
            }
            let body = serde_json::to_value(PutClassRequest { class, migrate })?;
            let set: StorageClass = c
                .call(
                    reqwest::Method::PUT,
                    &format!("/v1/classes/{name}"),
                    Some(body),
                )
                .await
                .with_context(|| format!("set storage class {name}"))?;
            if a.json {
                return print_json(&set);
            }
            println!(
                "storage class {} is {} spread over {}; {}",
                set.name,
                set.layout_text(),
                set.spread.as_str(),
                if migrate {
                    "new writes use it, and the data already in the class is being moved to it (weft class list shows when that is done)"
                } else {
                    "new writes use it (--migrate moves the data already in it too)"
                }
            );
        }
        ClassCmd::Delete { name } => {
            let _: serde_json::Value = c
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/classes/{name}"),
                    None,
                )
                .await
                .with_context(|| format!("delete storage class {name}"))?;
            if a.json {
                return print_json(&serde_json::json!({ "deleted": name }));
            }
            println!("deleted storage class {name}");
        }
    }
    Ok(())
}
