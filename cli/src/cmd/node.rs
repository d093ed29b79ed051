//! `weft node`: drain, reactivate or remove a data node.

use super::admin_client;
use super::output::print_json;
use crate::args::{AdminArgs, NodeCmd};
use anyhow::{Context, Result};

/// Runs a `weft node` subcommand: one admin API call that changes the
/// node's admin state, then what it changed to.
pub async fn run(cmd: NodeCmd, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    let (id, path) = match cmd {
        NodeCmd::Drain { id } => (id, format!("/v1/nodes/{id}/drain")),
        NodeCmd::Activate { id } => (id, format!("/v1/nodes/{id}/activate")),
        NodeCmd::Remove { id, force } => (
            id,
            format!(
                "/v1/nodes/{id}/remove{}",
                if force { "?force=true" } else { "" }
            ),
        ),
    };
    let r: weft_gateway::admin::NodeActionReply = c
        .call(reqwest::Method::POST, &path, Some(serde_json::json!({})))
        .await
        .with_context(|| format!("change node {id}"))?;
    if a.json {
        return print_json(&r);
    }
    println!(
        "node {} is now {:?} ({} shards placed on it{})",
        r.node,
        r.admin,
        r.shards,
        if r.admin == weft_common::topology::NodeAdmin::Draining {
            "; watch `weft cluster repair status` until it holds none"
        } else {
            ""
        }
    );
    Ok(())
}
