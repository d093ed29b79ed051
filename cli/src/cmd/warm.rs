//! `weft warm`: keep a dataset readable in one zone without crossing zones
//! (docs/locality.md, "Warm a dataset into a zone").

use super::admin_client;
use super::locate::parse_target;
use super::output::{human_bytes, print_json};
use crate::args::{AdminArgs, WarmArgs, WarmCmd};
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use weft_gateway::admin_warm::{WarmList, WarmRequest, WarmStatus, WarmTarget};

/// How often a waiting `weft warm` asks how far it has got.
const POLL: Duration = Duration::from_millis(500);

fn status_path(t: &WarmTarget) -> String {
    let mut url = reqwest::Url::parse("http://x/v1/warm").expect("literal");
    url.query_pairs_mut()
        .append_pair("bucket", &t.bucket)
        .append_pair("prefix", &t.prefix)
        .append_pair("zone", &t.zone);
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

fn target(text: &str, zone: Option<String>) -> Result<WarmTarget> {
    let (bucket, prefix) = parse_target(text)?;
    let Some(zone) = zone else {
        bail!("name the zone: --zone Z");
    };
    Ok(WarmTarget {
        bucket,
        prefix,
        zone,
    })
}

/// One line of progress: bytes held of bytes needed, and the time left at
/// the rate seen since `started`.
fn progress_line(s: &WarmStatus, first_held: u64, started: Instant) -> String {
    let pct = if s.needed_bytes == 0 {
        100.0
    } else {
        s.held_bytes as f64 * 100.0 / s.needed_bytes as f64
    };
    let width = 30usize;
    let filled = ((pct / 100.0) * width as f64).round() as usize;
    let bar: String = "#".repeat(filled.min(width)) + &"-".repeat(width - filled.min(width));
    let gained = s.held_bytes.saturating_sub(first_held);
    let secs = started.elapsed().as_secs_f64();
    let eta = if gained > 0 && secs > 0.0 {
        let rate = gained as f64 / secs;
        let left = s.needed_bytes.saturating_sub(s.held_bytes) as f64 / rate;
        format!("ETA {left:.0}s")
    } else {
        "ETA -".to_string()
    };
    format!(
        "[{bar}] {pct:5.1}% {} of {} in zone, {}/{} segments, {eta}",
        human_bytes(s.held_bytes),
        human_bytes(s.needed_bytes),
        s.segments_ready,
        s.segments
    )
}

fn print_status(t: &WarmTarget, s: &WarmStatus) {
    let state = match (&s.warm, s.ready) {
        (None, true) => "not warmed (already local)",
        (None, false) => "not warmed",
        (Some(_), true) => "ready",
        (Some(_), false) => "warming",
    };
    println!("s3://{}/{} in zone {}: {state}", t.bucket, t.prefix, t.zone);
    if let Some(w) = &s.warm {
        println!(
            "  pinned: {}, expires: {}",
            w.pinned,
            w.expires_ms
                .map_or("never".to_string(), |e| format!("{e} ms since the epoch"))
        );
    }
    println!(
        "  {} objects, {}/{} segments ready, {} of {} shard bytes in zone{}",
        s.objects,
        s.segments_ready,
        s.segments,
        human_bytes(s.held_bytes),
        human_bytes(s.needed_bytes),
        if s.truncated { " (truncated)" } else { "" }
    );
    if let Some(z) = &s.zone_cache {
        println!(
            "  zone cache: {} used of {} budget ({} pinned), {} evictions",
            human_bytes(z.used_bytes),
            human_bytes(z.budget_bytes),
            human_bytes(z.pinned_bytes),
            z.evictions
        );
    }
}

/// Runs `weft warm`.
pub async fn run(command: Option<WarmCmd>, w: WarmArgs, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    match command {
        Some(WarmCmd::Status { target: None, zone }) => {
            let mut l: WarmList = c
                .call(reqwest::Method::GET, "/v1/warms", None)
                .await
                .context("list warms")?;
            // `--zone` without a dataset narrows the list to that zone.
            if let Some(z) = &zone {
                let used = std::mem::take(&mut l.last_used_ms);
                let kept: Vec<_> = std::mem::take(&mut l.warms)
                    .into_iter()
                    .enumerate()
                    .filter(|(_, w)| w.zone == *z)
                    .collect();
                l.last_used_ms = kept
                    .iter()
                    .filter_map(|(i, _)| used.get(*i).copied())
                    .collect();
                l.warms = kept.into_iter().map(|(_, w)| w).collect();
                l.zones.retain(|c| c.zone == *z);
            }
            if a.json {
                return print_json(&l);
            }
            println!(
                "{:<12} {:<40} {:>6} {:>20}",
                "ZONE", "DATASET", "PINNED", "EXPIRES (ms)"
            );
            for w in &l.warms {
                println!(
                    "{:<12} {:<40} {:>6} {:>20}",
                    w.zone,
                    format!("s3://{}/{}", w.bucket, w.prefix),
                    w.pinned,
                    w.expires_ms.map_or("never".to_string(), |e| e.to_string())
                );
            }
            println!(
                "\n{:<12} {:>12} {:>12} {:>12} {:>10}",
                "ZONE", "BUDGET", "USED", "PINNED", "EVICTIONS"
            );
            for z in &l.zones {
                println!(
                    "{:<12} {:>12} {:>12} {:>12} {:>10}",
                    z.zone,
                    human_bytes(z.budget_bytes),
                    human_bytes(z.used_bytes),
                    human_bytes(z.pinned_bytes),
                    z.evictions
                );
            }
            Ok(())
        }
        Some(WarmCmd::Status {
            target: Some(text),
            zone,
        }) => {
            let t = target(&text, zone)?;
            let s: WarmStatus = c
                .call(reqwest::Method::GET, &status_path(&t), None)
                .await
                .with_context(|| format!("status of warm {text}"))?;
            if a.json {
                return print_json(&s);
            }
            print_status(&t, &s);
            Ok(())
        }
        Some(WarmCmd::Drop { target: text, zone }) => {
            let t = target(&text, Some(zone))?;
            let _: serde_json::Value = c
                .call(reqwest::Method::DELETE, &status_path(&t), None)
                .await
                .with_context(|| format!("drop warm {text}"))?;
            if !a.json {
                println!(
                    "no longer warm in zone {}: s3://{}/{} (its cache copies are dropped within seconds)",
                    t.zone, t.bucket, t.prefix
                );
            }
            Ok(())
        }
        None => {
            let Some(text) = w.target.as_deref() else {
                bail!("name the dataset: weft warm s3://BUCKET[/PREFIX] --zone Z (or weft warm status, weft warm drop)");
            };
            let t = target(text, w.zone.clone())?;
            let req = WarmRequest {
                target: t.clone(),
                ttl_secs: w.ttl,
                pinned: w.pin,
            };
            let body = serde_json::to_value(&req).context("encode the request")?;
            let first: WarmStatus = c
                .call(reqwest::Method::PUT, "/v1/warm", Some(body))
                .await
                .with_context(|| format!("warm {text} into zone {}", t.zone))?;
            if w.no_wait {
                if a.json {
                    return print_json(&first);
                }
                print_status(&t, &first);
                return Ok(());
            }
            wait(&c, &t, first, Duration::from_secs(w.wait_max), a.json).await
        }
    }
}

/// Waits until the zone holds every segment; exit 0 only then.
async fn wait(
    c: &weft_cli::admin_client::AdminClient,
    t: &WarmTarget,
    first: WarmStatus,
    max: Duration,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    let first_held = first.held_bytes;
    let mut s = first;
    loop {
        if !json {
            eprint!("\r{}", progress_line(&s, first_held, started));
        }
        if s.warm.is_none() {
            if !json {
                eprintln!();
            }
            bail!(
                "the warm of s3://{}/{} in zone {} ended before it was ready: dropped, expired, or evicted to keep the zone within its cache budget (weft warm status)",
                t.bucket,
                t.prefix,
                t.zone
            );
        }
        if s.ready {
            if !json {
                eprintln!();
            }
            return match json {
                true => print_json(&s),
                false => {
                    println!(
                        "s3://{}/{} is warm in zone {}: {} objects, {} segments read without crossing zones",
                        t.bucket, t.prefix, t.zone, s.objects, s.segments
                    );
                    Ok(())
                }
            };
        }
        if s.truncated {
            bail!("the dataset is larger than one status walk covers; follow it with weft warm status");
        }
        if started.elapsed() > max {
            if !json {
                eprintln!();
            }
            bail!(
                "not ready after {}s ({} of {} shard bytes in zone); the warm goes on: follow it with weft warm status",
                max.as_secs(),
                s.held_bytes,
                s.needed_bytes
            );
        }
        tokio::time::sleep(POLL).await;
        s = c
            .call(reqwest::Method::GET, &status_path(t), None)
            .await
            .context("status of the warm")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_bytes_segments_and_eta() {
        let s = WarmStatus {
            warm: None,
            objects: 2,
            segments: 4,
            segments_ready: 1,
            needed_bytes: 4 << 20,
            held_bytes: 2 << 20,
            truncated: false,
            ready: false,
            zone_cache: None,
        };
        let line = progress_line(&s, 2 << 20, Instant::now());
        assert!(line.contains(" 50.0%"), "{line}");
        assert!(line.contains("1/4 segments"), "{line}");
        assert!(line.contains("ETA -"), "{line}");
        assert!(target("s3://b/p", None).is_err());
        assert_eq!(target("s3://b/p", Some("a".into())).unwrap().prefix, "p");
    }
}
