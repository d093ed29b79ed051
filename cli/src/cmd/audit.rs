//! `weft audit`: read, export and verify the audit chain (docs/audit.md).

use super::admin_client;
use super::output::ms_to_rfc3339;
use crate::args::{AdminArgs, AuditCmd};
use anyhow::{bail, Context, Result};
use weft_cli::admin_client::AdminClient;
use weft_common::audit::{verify, AuditEntry, AuditExport, AuditInfo};
use weft_gateway::admin_audit::{CheckpointsReply, EntriesReply};

/// Entries or checkpoints asked per page.
const PAGE: u32 = 1_000;

/// Runs a `weft audit` subcommand against the admin API.
pub async fn run(cmd: AuditCmd, a: AdminArgs) -> Result<()> {
    match cmd {
        AuditCmd::Verify { file, public_keys } => verify_cmd(file, public_keys, &a).await,
        cmd => {
            let c = admin_client(&a)?;
            match cmd {
                AuditCmd::Tail { lines, follow } => tail(&c, lines, follow, a.json).await,
                AuditCmd::Export { file } => {
                    let x = export(&c).await?;
                    let bytes = serde_json::to_vec_pretty(&x)?;
                    weft_common::durable_file::write_file(
                        &file,
                        &bytes,
                        weft_common::durable_file::Access::Default,
                    )
                    .with_context(|| format!("write {}", file.display()))?;
                    println!(
                        "exported {} entries and {} checkpoints to {}",
                        x.entries.len(),
                        x.checkpoints.len(),
                        file.display()
                    );
                    Ok(())
                }
                AuditCmd::Checkpoints => {
                    let all = checkpoints(&c).await?;
                    if a.json {
                        return super::output::print_json(&all);
                    }
                    println!("{:>8} {:<25} {:<18} HASH", "ENTRY", "SIGNED", "KEY");
                    for cp in all {
                        println!(
                            "{:>8} {:<25} {:<18} {}",
                            cp.seq,
                            ms_to_rfc3339(cp.at_ms),
                            cp.public_key.chars().take(16).collect::<String>(),
                            cp.hash
                        );
                    }
                    Ok(())
                }
                AuditCmd::Info => {
                    let i = info(&c).await?;
                    if a.json {
                        return super::output::print_json(&i);
                    }
                    print_info(&i);
                    Ok(())
                }
                AuditCmd::DataPlane { state } => {
                    let i: AuditInfo = c
                        .call(
                            reqwest::Method::POST,
                            "/v1/audit/config",
                            Some(serde_json::json!({ "data_plane": state == "on" })),
                        )
                        .await
                        .context("set data-plane auditing")?;
                    println!(
                        "object writes and deletes are {} recorded",
                        if i.data_plane { "now" } else { "no longer" }
                    );
                    Ok(())
                }
                AuditCmd::Prune { through } => {
                    let i: AuditInfo = c
                        .call(
                            reqwest::Method::POST,
                            "/v1/audit/prune",
                            Some(serde_json::json!({ "through": through })),
                        )
                        .await
                        .with_context(|| {
                            format!("prune the audit chain through entry {through}")
                        })?;
                    println!(
                        "pruned through entry {}; {} entries remain",
                        i.anchor.as_ref().map_or(0, |a| a.0),
                        i.head - i.anchor.as_ref().map_or(0, |a| a.0)
                    );
                    Ok(())
                }
                AuditCmd::Verify { .. } => unreachable!("handled above"),
            }
        }
    }
}

async fn info(c: &AdminClient) -> Result<AuditInfo> {
    c.call(reqwest::Method::GET, "/v1/audit/info", None)
        .await
        .context("read the audit chain's state")
}

fn print_info(i: &AuditInfo) {
    println!(
        "entries:          {} (newest), hash {}",
        i.head, i.head_hash
    );
    match &i.anchor {
        Some((seq, _)) => println!("pruned through:   entry {seq}"),
        None => println!("pruned through:   nothing pruned"),
    }
    println!("signed through:   entry {}", i.checkpointed_through);
    println!(
        "data plane:       {}",
        if i.data_plane {
            "object writes and deletes recorded"
        } else {
            "off (administration, failures and denials only)"
        }
    );
    if i.public_keys.is_empty() {
        println!("public keys:      none (no master key: checkpoints are not signed)");
    }
    for (n, k) in i.public_keys.iter().enumerate() {
        let label = if n == 0 { "current" } else { "previous" };
        println!("public key:       {k} ({label})");
    }
}

async fn entries_after(c: &AdminClient, after: u64) -> Result<Vec<AuditEntry>> {
    let r: EntriesReply = c
        .call(
            reqwest::Method::GET,
            &format!("/v1/audit?after={after}&limit={PAGE}"),
            None,
        )
        .await
        .context("read audit entries")?;
    Ok(r.entries)
}

/// Every checkpoint, oldest first.
async fn checkpoints(c: &AdminClient) -> Result<Vec<weft_common::audit::AuditCheckpoint>> {
    let mut all: Vec<weft_common::audit::AuditCheckpoint> = vec![];
    loop {
        let after = all.last().map_or(0, |cp| cp.seq);
        let r: CheckpointsReply = c
            .call(
                reqwest::Method::GET,
                &format!("/v1/audit/checkpoints?after={after}&limit={PAGE}"),
                None,
            )
            .await
            .context("read audit checkpoints")?;
        if r.checkpoints.is_empty() {
            return Ok(all);
        }
        all.extend(r.checkpoints);
    }
}

/// The whole chain. Checkpoints are read before entries: entries only
/// grow, so every checkpoint read covers an entry the export then holds.
async fn export(c: &AdminClient) -> Result<AuditExport> {
    let i = info(c).await?;
    let checkpoints = checkpoints(c).await?;
    let mut entries: Vec<AuditEntry> = vec![];
    let mut after = i.anchor.as_ref().map_or(0, |a| a.0);
    loop {
        let page = entries_after(c, after).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        entries.extend(page);
    }
    Ok(AuditExport {
        anchor: i.anchor,
        entries,
        checkpoints,
    })
}

fn print_entry(e: &AuditEntry, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let ev = &e.event;
    let times = if ev.count > 1 {
        format!(" (x{})", ev.count)
    } else {
        String::new()
    };
    println!(
        "{:>6} {} {:<12} {} | {} {} | {}{times}",
        e.seq,
        ms_to_rfc3339(ev.at_ms),
        ev.kind.name(),
        ev.actor,
        ev.action,
        ev.target,
        ev.outcome
    );
    Ok(())
}

async fn tail(c: &AdminClient, lines: u64, follow: bool, json: bool) -> Result<()> {
    let i = info(c).await?;
    let floor = i.anchor.as_ref().map_or(0, |a| a.0);
    let mut after = i.head.saturating_sub(lines).max(floor);
    loop {
        let page = entries_after(c, after).await?;
        for e in &page {
            print_entry(e, json)?;
            after = e.seq;
        }
        if page.len() as u32 >= PAGE {
            continue;
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn verify_cmd(
    file: Option<std::path::PathBuf>,
    given: Vec<String>,
    a: &AdminArgs,
) -> Result<()> {
    // The cluster's view, when it answers: its keys (unless given) and
    // where its chain starts and is signed to, to compare an export with.
    let cluster = match admin_client(a) {
        Ok(c) => info(&c).await.ok().map(|i| (c, i)),
        Err(_) => None,
    };
    let export = match &file {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            serde_json::from_slice::<AuditExport>(&bytes).with_context(|| {
                format!(
                    "{} is not an audit export (or holds a field no entry has: an addition the hashes do not cover)",
                    path.display()
                )
            })?
        }
        None => match &cluster {
            Some((c, _)) => export(c).await?,
            None => bail!("the admin API did not answer; give an export FILE to verify offline"),
        },
    };
    let trusted = if !given.is_empty() {
        given
    } else if let Some((_, i)) = &cluster {
        i.public_keys.clone()
    } else {
        bail!("no --public-key given and the cluster's keys could not be read: give the keys `weft audit info` printed");
    };
    let source = file
        .as_ref()
        .map_or("the live chain".to_string(), |p| p.display().to_string());
    let v = verify(&export, &trusted)
        .map_err(|e| anyhow::anyhow!("audit chain NOT intact in {source}: {e}"))?;
    println!(
        "audit chain intact: entries {}..{} ({}) in {source}",
        v.first, v.last, v.entries
    );
    if trusted.is_empty() {
        println!(
            "  no public key to check checkpoints against (the cluster has no master key): links and hashes only"
        );
    } else if v.checkpointed_through > 0 {
        println!(
            "  signed through entry {} by a trusted key",
            v.checkpointed_through
        );
    } else {
        println!("  no signed checkpoint covers these entries yet");
    }
    if v.unsigned_tail > 0 {
        println!(
            "  {} newer entries are linked but not yet signed (the leader signs one checkpoint per interval)",
            v.unsigned_tail
        );
    }
    if let (Some(_), Some((_, i))) = (&file, &cluster) {
        let cluster_first = i.anchor.as_ref().map_or(1, |a| a.0 + 1);
        println!(
            "  the cluster's chain now: entries {cluster_first}..{}, signed through entry {}",
            i.head, i.checkpointed_through
        );
        if v.first > cluster_first {
            println!(
                "  NOTE: this export starts at entry {} though the cluster still holds entries from {cluster_first}",
                v.first
            );
        }
    }
    if v.first > 1 {
        let anchor = v.first - 1;
        if file.is_some() {
            println!(
                "  this file starts after entry {anchor}, whose hash a signed checkpoint vouches for; \
                 whether entries 1..{anchor} were pruned or left out of the file, only the cluster \
                 or an earlier export can tell"
            );
        } else {
            println!(
                "  entries 1..{anchor} were pruned; a signed checkpoint vouches for where the chain starts"
            );
        }
    }
    Ok(())
}
