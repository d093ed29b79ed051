//! `weft bench tiering`: what noting reads for Intelligent-Tiering costs a
//! GET. The same small objects are read from a STANDARD bucket (not
//! tracked) and an INTELLIGENT_TIERING one (every GET goes through the
//! read tracker), in alternating rounds so drift on a busy machine falls
//! on both; and the tracker's own cost per GET, in process. Reports
//! figures; asserts nothing.

use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};

use super::repair::{body, Signer};

async fn put(s: &Signer, path: &str, data: Vec<u8>, class: Option<&str>) -> Result<()> {
    let headers: Vec<(&str, &str)> = class
        .map(|c| ("x-amz-storage-class", c))
        .into_iter()
        .collect();
    let signed = s
        .signer
        .sign(&s.http, "PUT", path, &[], &headers, "UNSIGNED-PAYLOAD")
        .expect("a known method");
    let r = signed.builder.body(data).send().await?;
    if !r.status().is_success() {
        bail!("PUT {path}: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

/// GETs per second of random objects of `bucket` over `secs` seconds.
async fn round(s: &Arc<Signer>, bucket: &str, objects: u64, clients: usize, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for c in 0..clients {
        let (s, stop, done) = (s.clone(), stop.clone(), done.clone());
        let bucket = bucket.to_string();
        tasks.push(tokio::spawn(async move {
            let mut n = c as u64 + 1;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let obj = (n >> 33) % objects;
                match s
                    .request(reqwest::Method::GET, &format!("/{bucket}/o{obj}"), None)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => eprintln!("GET failed: {}", r.status()),
                    Err(e) => eprintln!("GET failed: {e}"),
                }
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `rounds` alternating rounds of `secs` seconds each on both buckets.
pub async fn tiering(
    objects: u64,
    size_kib: usize,
    clients: usize,
    rounds: usize,
    secs: u64,
) -> Result<()> {
    // The tracker alone: a version already noted (every GET of a hot
    // object after its first in a sixteenth of a day), and first notes.
    let tracker = weft_gateway::read_tracking::ReadTracker::new(
        weft_gateway::cluster_map::ClusterMap::default(),
        Default::default(),
    );
    let n = 1_000_000u32;
    tracker.note("bench", "hot", weft_common::VersionId(1));
    let t = Instant::now();
    for _ in 0..n {
        tracker.note("bench", "hot", weft_common::VersionId(1));
    }
    let hot_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let firsts = 100_000u32;
    let keys: Vec<String> = (0..firsts).map(|i| format!("k{i}")).collect();
    let t = Instant::now();
    for k in &keys {
        tracker.note("bench", k, weft_common::VersionId(1));
    }
    let first_ns = t.elapsed().as_nanos() as f64 / f64::from(firsts);
    println!(
        "read tracker in process: {hot_ns:.0} ns per GET of a version already noted, {first_ns:.0} ns for a first note"
    );

    let dir = tempfile::tempdir()?;
    let cfg = DevClusterConfig::ephemeral(dir.path());
    let c = DevCluster::start(cfg).await.context("start cluster")?;
    let signer = Arc::new(Signer::for_cluster(&c));
    put(&signer, "/plain", vec![], None).await?;
    put(&signer, "/tiered", vec![], None).await?;
    println!(
        "writing {objects} objects of {size_kib} KiB to a STANDARD bucket and to an INTELLIGENT_TIERING one"
    );
    for i in 0..objects {
        let data = body(i, size_kib << 10);
        put(&signer, &format!("/plain/o{i}"), data.clone(), None).await?;
        put(
            &signer,
            &format!("/tiered/o{i}"),
            data,
            Some("INTELLIGENT_TIERING"),
        )
        .await?;
    }
    // Warm both (connections, caches) before measuring.
    round(&signer, "plain", objects, clients, 2).await;
    round(&signer, "tiered", objects, clients, 2).await;
    let (mut plain, mut tiered) = (vec![], vec![]);
    for i in 0..rounds {
        // Alternate which goes first.
        let order = if i % 2 == 0 {
            ["plain", "tiered"]
        } else {
            ["tiered", "plain"]
        };
        for b in order {
            let r = round(&signer, b, objects, clients, secs).await;
            if b == "plain" {
                plain.push(r);
            } else {
                tiered.push(r);
            }
        }
    }
    let (p, t) = (median(plain.clone()), median(tiered.clone()));
    println!(
        "GET {size_kib} KiB, {clients} clients, {rounds} rounds of {secs} s each: STANDARD {p:.0}/s, INTELLIGENT_TIERING {t:.0}/s (medians; {:+.1}%)",
        (t - p) / p * 100.0
    );
    println!("  rounds STANDARD {plain:.0?}, INTELLIGENT_TIERING {tiered:.0?}");
    let text = c
        .internal_http()
        .get(format!("{}/metrics", c.admin_endpoint()))
        .send()
        .await?
        .text()
        .await?;
    for l in text
        .lines()
        .filter(|l| l.starts_with("weft_gateway_tiering_reads"))
    {
        println!("  {l}");
    }
    c.shutdown().await;
    Ok(())
}
