//! `weft bench lifecycle`: how fast lifecycle transitions move bytes to the
//! cold zone, what that costs in CPU, and what transitions at the default
//! rate cost client GETs. Reports figures; asserts nothing.

use anyhow::{bail, Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_cli::admin_client::AdminClient;
use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};
use weft_common::transition::TransitionStats;

use super::repair::{body, cpu_seconds, get_load, pct, Signer};

async fn stats(a: &AdminClient) -> Result<TransitionStats> {
    let st: serde_json::Value = a
        .call(reqwest::Method::GET, "/v1/lifecycle/status", None)
        .await?;
    Ok(serde_json::from_value(st["transitions"].clone())?)
}

async fn put(s: &Signer, path: &str, body: Vec<u8>, query: &[(&str, &str)]) -> Result<()> {
    let signed = s
        .signer
        .sign(&s.http, "PUT", path, query, &[], "UNSIGNED-PAYLOAD")
        .expect("a known method");
    let r = signed.builder.body(body).send().await?;
    if !r.status().is_success() {
        bail!("PUT {path}: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

fn rule(prefix: &str) -> Vec<u8> {
    format!(
        "<LifecycleConfiguration><Rule><ID>cold</ID><Status>Enabled</Status>\
         <Filter><Prefix>{prefix}</Prefix></Filter>\
         <Transition><Days>0</Days><StorageClass>GLACIER_IR</StorageClass></Transition>\
         </Rule></LifecycleConfiguration>"
    )
    .into_bytes()
}

/// Waits until `want` more moves than `before` are done; returns the
/// bytes they wrote, the seconds from the first to the last, and the CPU
/// seconds this process spent meanwhile.
async fn measure(a: &AdminClient, before: TransitionStats, want: u64) -> Result<(u64, f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    let (start, cpu0) = loop {
        let st = stats(a).await?;
        if st.running > 0 || st.done > before.done {
            break (Instant::now(), cpu_seconds());
        }
        if Instant::now() > deadline {
            bail!("no transition started");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        let st = stats(a).await?;
        if st.failed > before.failed {
            eprintln!("transitions failed: {st:?}");
        }
        if st.done >= before.done + want {
            return Ok((
                st.bytes - before.bytes,
                start.elapsed().as_secs_f64(),
                cpu_seconds() - cpu0,
            ));
        }
        if Instant::now() > deadline {
            bail!("transitions did not finish: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `objects` objects of `size_mib` MiB twice over (one set moved at
/// the default rate under GET load, one unthrottled) to `weft dev`'s
/// topology with one-second days, and moves each set to GLACIER_IR.
pub async fn lifecycle(objects: u64, size_mib: u64, clients: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = DevClusterConfig::ephemeral(dir.path());
    cfg.cold_nodes = 6;
    cfg.metad.lifecycle_day_secs = 1;
    cfg.datad.repair_poll_ms = 100;
    let c = DevCluster::start(cfg).await.context("start cluster")?;
    let signer = Arc::new(Signer::for_cluster(&c));
    let admin = c.admin_client();
    put(&signer, "/bench", vec![], &[]).await?;
    let size = size_mib << 20;
    println!(
        "writing 2 × {objects} objects of {size_mib} MiB (STANDARD, EC 4+2 over 6 hot nodes; 6 cold nodes in west)"
    );
    for i in 0..objects {
        put(
            &signer,
            &format!("/bench/o{i}"),
            body(i, size as usize),
            &[],
        )
        .await?;
        put(
            &signer,
            &format!("/bench/u{i}"),
            body(i + 1_000, size as usize),
            &[],
        )
        .await?;
    }
    let base = get_load(&signer, objects, size, clients, 10, None).await?;
    println!(
        "GET 1 MiB ranges, {clients} clients, no transitions: {} GETs, p50 {:.1} ms, p99 {:.1} ms",
        base.len(),
        pct(&base, 0.5),
        pct(&base, 0.99)
    );

    // The default rate, under GET load.
    let before = stats(&admin).await?;
    put(&signer, "/bench", rule("o"), &[("lifecycle", "")]).await?;
    let load = {
        let s = signer.clone();
        tokio::spawn(async move { get_load(&s, objects, size, clients, 20, None).await })
    };
    let (bytes, secs, cpu) = measure(&admin, before, objects).await?;
    let during = load.await??;
    println!(
        "transitions at the default rate ({} MiB/s cluster-wide): {:.0} MiB of shards in {secs:.1}s = {:.1} MiB/s; CPU {:.1} s per GiB moved",
        weft_common::repair::REPAIR_RATE_DEFAULT >> 21,
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / secs,
        cpu / (bytes as f64 / (1u64 << 30) as f64)
    );
    println!(
        "GET 1 MiB ranges, {clients} clients, during those transitions (first 20 s): {} GETs, p50 {:.1} ms, p99 {:.1} ms",
        during.len(),
        pct(&during, 0.5),
        pct(&during, 0.99)
    );

    // Unthrottled: throughput.
    let _: serde_json::Value = admin
        .call(
            reqwest::Method::POST,
            "/v1/repair/config",
            Some(serde_json::json!({"rate_bytes_per_sec": 16u64 << 30, "priority": "normal"})),
        )
        .await?;
    let before = stats(&admin).await?;
    put(&signer, "/bench", rule("u"), &[("lifecycle", "")]).await?;
    let (bytes, secs, cpu) = measure(&admin, before, objects).await?;
    println!(
        "transitions, unthrottled: {:.0} MiB of shards in {secs:.1}s = {:.1} MiB/s; CPU {:.0}% of the 2 cores, {:.1} s per GiB moved",
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / secs,
        cpu / secs / 2.0 * 100.0,
        cpu / (bytes as f64 / (1u64 << 30) as f64)
    );
    c.shutdown().await;
    Ok(())
}
