//! `weft lifecycle`: lifecycle rules at work (docs/lifecycle.md).

use super::admin_client;
use super::output::{human_bytes, ms_to_rfc3339, print_json};
use crate::args::{AdminArgs, LifecycleCmd};
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use weft_common::lifecycle::tiering::{AccessTier, UnreadRule};
use weft_common::lifecycle::{Passes, Step};
use weft_gateway::admin_lifecycle::{Preview, Status, UnreadRequest};

fn describe(step: &Step) -> String {
    match step {
        Step::ExpireCurrent { version_id, .. } => format!("expire current version {version_id}"),
        Step::RemoveNoncurrent { label, .. } => format!("remove noncurrent version {label}"),
        Step::RemoveLoneMarker { label, .. } => format!("remove lone delete marker {label}"),
        Step::AbortUpload { upload_id } => format!("abort upload {upload_id}"),
        Step::TransitionCurrent { version_id, class } => {
            format!("move current version {version_id} to {class}")
        }
        Step::TransitionNoncurrent { label, class, .. } => {
            format!("move noncurrent version {label} to {class}")
        }
        Step::Migrate { version_id, class } => {
            format!("re-place version {version_id} under {class}'s definition")
        }
        Step::Tier {
            version_id,
            from,
            to,
            ..
        } => {
            let name = |t: &Option<AccessTier>| t.map_or("FREQUENT_ACCESS", AccessTier::s3_name);
            format!(
                "move INTELLIGENT_TIERING version {version_id} from {} to {}",
                name(from),
                name(to)
            )
        }
    }
}

fn passes_text(p: &Passes) -> String {
    let when = |ms: Option<u64>| ms.map(ms_to_rfc3339).unwrap_or_else(|| "-".into());
    format!(
        "passes finished {}, last started {}, last finished {}",
        p.finished,
        when(p.started_ms),
        when(p.finished_ms)
    )
}

/// Runs a `weft lifecycle` subcommand against the admin API.
pub async fn run(cmd: LifecycleCmd, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    let preview = |bucket: String, max_keys: u32| {
        let c = c.clone();
        async move {
            c.call::<Preview>(
                reqwest::Method::GET,
                &format!("/v1/lifecycle/{bucket}/preview?max_keys={max_keys}"),
                None,
            )
            .await
            .with_context(|| format!("preview the lifecycle of {bucket}"))
        }
    };
    match cmd {
        LifecycleCmd::Preview { bucket, max_keys } => {
            let p = preview(bucket, max_keys).await?;
            if a.json {
                return print_json(&p);
            }
            for (key, step) in &p.actions {
                println!("{key}\t{}", describe(step));
            }
            println!(
                "{} actions due in {} ({} keys judged{}); a day is {} s",
                p.actions.len(),
                p.bucket,
                p.keys,
                if p.complete {
                    ", all"
                } else {
                    ", not all: raise --max-keys"
                },
                p.day_ms / 1000
            );
        }
        LifecycleCmd::Run { bucket, timeout } => {
            let first = preview(bucket.clone(), 100_000).await?.actions.len();
            let before: Passes = c
                .call(
                    reqwest::Method::POST,
                    "/v1/lifecycle/run",
                    Some(serde_json::json!({})),
                )
                .await
                .context("start a lifecycle pass")?;
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                let p = preview(bucket.clone(), 100_000).await?;
                if p.actions.is_empty() && !p.complete {
                    bail!(
                        "{bucket}: nothing due among its first {} keys, but it has more; the pass goes on (see `weft lifecycle status`)",
                        p.keys
                    );
                }
                if p.actions.is_empty() {
                    if a.json {
                        return print_json(&serde_json::json!({
                            "bucket": bucket, "applied": first, "passes": p.passes
                        }));
                    }
                    println!("{bucket}: nothing due now ({first} actions were due when the pass started)");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{bucket}: {} actions still due after {timeout} s ({}); see `weft lifecycle status` and metad's weft_metad_lifecycle_failed",
                        p.actions.len(),
                        passes_text(&before)
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        LifecycleCmd::Set {
            bucket,
            unread_days,
            to,
            prefix,
            clear_unread,
        } => {
            let rules = match (clear_unread, unread_days, to) {
                (true, ..) => vec![],
                (false, Some(days), Some(class)) => vec![UnreadRule {
                    prefix,
                    days,
                    class,
                    since_ms: 0,
                }],
                _ => bail!("give --unread-days N --to CLASS, or --clear-unread"),
            };
            let set: UnreadRequest = c
                .call(
                    reqwest::Method::PUT,
                    &format!("/v1/lifecycle/{bucket}/unread"),
                    Some(serde_json::to_value(UnreadRequest { rules })?),
                )
                .await
                .with_context(|| format!("set the unread rules of {bucket}"))?;
            if a.json {
                return print_json(&set);
            }
            match set.rules.first() {
                None => println!("{bucket}: unread rules removed"),
                Some(r) => println!(
                    "{bucket}: current versions{} not read for {} days move to {}",
                    if r.prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" under {}", r.prefix)
                    },
                    r.days,
                    r.class
                ),
            }
        }
        LifecycleCmd::Status { bucket } => {
            let mut st: Status = c
                .call(reqwest::Method::GET, "/v1/lifecycle/status", None)
                .await
                .context("get lifecycle status")?;
            if let Some(b) = &bucket {
                st.buckets.retain(|x| &x.bucket == b);
                if st.buckets.is_empty() {
                    bail!("bucket {b} has no lifecycle rules, tiering or Intelligent-Tiering data (or does not exist)");
                }
            }
            if a.json {
                return print_json(&st);
            }
            println!(
                "a day is {} s; {}",
                st.day_ms / 1000,
                passes_text(&st.passes)
            );
            let t = &st.transitions;
            println!(
                "transitions: {} queued, {} running, {} done ({} moved), {} relabeled in place, {} superseded, {} failed",
                t.queued,
                t.running,
                t.done,
                human_bytes(t.bytes),
                t.relabeled,
                t.superseded,
                t.failed
            );
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let secs = now_ms.saturating_sub(t.since_ms) as f64 / 1000.0;
            if t.bytes > 0 && secs > 0.0 {
                println!(
                    "  {} moved since this leader was elected, {:.1} MiB/s on average",
                    human_bytes(t.bytes),
                    t.bytes as f64 / 1048576.0 / secs
                );
            }
            if let Some(e) = &st.transition_error {
                println!("last transition failure: {e}");
            }
            if !st.zones.is_empty() {
                println!("shard bytes by class and zone (every bucket, last durability survey):");
                for z in &st.zones {
                    println!(
                        "  {:<20} {:<12} {:>10}",
                        z.class,
                        z.zone,
                        human_bytes(z.bytes)
                    );
                }
            }
            for b in &st.buckets {
                let enabled = b.rules.rules.iter().filter(|r| r.enabled).count();
                println!(
                    "\n{}: {} rules ({} enabled), {} actions due now{}",
                    b.bucket,
                    b.rules.rules.len(),
                    enabled,
                    b.pending,
                    if b.complete {
                        ""
                    } else {
                        " among its first 10,000 keys"
                    }
                );
                for r in b.tiering.iter().flat_map(|t| &t.unread) {
                    println!(
                        "  unread rule: {}not read for {} days → {}",
                        if r.prefix.is_empty() {
                            String::new()
                        } else {
                            format!("{} ", r.prefix)
                        },
                        r.days,
                        r.class
                    );
                }
                for c in b.tiering.iter().flat_map(|t| t.configs.values()) {
                    println!(
                        "  intelligent-tiering {} ({}): archive after {} days, deep archive after {} days",
                        c.id,
                        if c.enabled { "enabled" } else { "disabled" },
                        c.archive_days.map_or("-".into(), |d| d.to_string()),
                        c.deep_archive_days.map_or("-".into(), |d| d.to_string())
                    );
                }
                for u in &b.usage {
                    println!(
                        "  {:<20} {:>9} segments {:>10} data {:>10} stored",
                        u.class,
                        u.usage.segments,
                        human_bytes(u.usage.bytes),
                        human_bytes(u.usage.stored_bytes)
                    );
                }
            }
        }
    }
    Ok(())
}
