//! `weft bench repair`: how fast lost shards are rebuilt, what that costs
//! the machine, and what repair at the default rate costs client GETs.
//! Reports figures; asserts nothing.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use weft_cli::admin_client::AdminClient;
use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};
use weft_common::repair::DurabilityStatus;

/// Header-signed requests with an unsigned payload, through the shared S3
/// signer (`weft_client::s3`).
pub(super) struct Signer {
    pub(super) http: reqwest::Client,
    pub(super) signer: weft_client::s3::Signer,
}

impl Signer {
    /// A signer for `c`'s first gateway with its root credentials.
    pub(super) fn for_cluster(c: &weft_cli::dev_cluster::DevCluster) -> Signer {
        let creds = c.credentials();
        Signer {
            http: reqwest::Client::new(),
            signer: weft_client::s3::Signer::new(
                &c.s3_endpoint(),
                &creds.access_key,
                &creds.secret_key,
                c.region(),
            ),
        }
    }

    pub(super) fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        range: Option<String>,
    ) -> reqwest::RequestBuilder {
        let range_header = range.as_deref().map(|r| [("range", r)]);
        self.signer
            .sign(
                &self.http,
                method.as_str(),
                path,
                &[],
                range_header.as_ref().map_or(&[], |h| h.as_slice()),
                "UNSIGNED-PAYLOAD",
            )
            .expect("a known method")
            .builder
    }
}

pub(super) fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn status(a: &AdminClient) -> Result<DurabilityStatus> {
    Ok(a.call(reqwest::Method::GET, "/v1/repair/status", None)
        .await?)
}

fn full(st: &DurabilityStatus) -> bool {
    st.healthy && st.backlog_bytes == 0 && st.tasks_in_flight == 0
}

pub(super) fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = after.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Ranged 1 MiB GETs from `clients` loops for `secs` (or until `until`
/// says stop); returns sorted latencies.
pub(super) async fn get_load(
    s: &std::sync::Arc<Signer>,
    objects: u64,
    size: u64,
    clients: usize,
    secs: u64,
    until: Option<&AdminClient>,
) -> Result<Vec<Duration>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = vec![];
    for c in 0..clients {
        let s = s.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            let mut n = c as u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let obj = (n >> 33) % objects;
                let off = ((n >> 13) % (size / (1 << 20))) << 20;
                let t = Instant::now();
                let r = s
                    .request(
                        reqwest::Method::GET,
                        &format!("/bench/o{obj}"),
                        Some(format!("bytes={off}-{}", off + (1 << 20) - 1)),
                    )
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    Ok(r) => eprintln!("GET failed: {}", r.status()),
                    Err(e) => eprintln!("GET failed: {e}"),
                }
            }
            lat
        }));
    }
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let done = match until {
            Some(a) => full(&status(a).await?) || start.elapsed() > Duration::from_secs(secs),
            None => start.elapsed() > Duration::from_secs(secs),
        };
        if done {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort();
    Ok(all)
}

pub(super) fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Writes `objects` objects of `size_mib` MiB to a 9-node cluster, kills a
/// node with repair unthrottled (throughput), then another at the default
/// rate while GETs run (foreground cost).
pub async fn repair(objects: u64, size_mib: u64, clients: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = DevClusterConfig::ephemeral(dir.path());
    cfg.datad_count = 9;
    cfg.metad.node_suspect_ms = 600;
    cfg.metad.node_grace_ms = 2_000;
    cfg.metad.durability_scan_ms = 200;
    cfg.datad.repair_poll_ms = 100;
    let mut c = DevCluster::start(cfg).await.context("start cluster")?;
    let signer = std::sync::Arc::new(Signer::for_cluster(&c));
    let admin = c.admin_client();
    let r = signer
        .request(reqwest::Method::PUT, "/bench", None)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("create bucket: {}", r.status());
    }
    let size = size_mib << 20;
    println!("writing {objects} objects of {size_mib} MiB (EC 4+2) to 9 nodes in 3 zones");
    let t = Instant::now();
    for i in 0..objects {
        let r = signer
            .request(reqwest::Method::PUT, &format!("/bench/o{i}"), None)
            .body(body(i, size as usize))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("PUT o{i}: {}", r.status());
        }
    }
    println!("  written in {:.1}s", t.elapsed().as_secs_f64());
    while !full(&status(&admin).await?) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let base = get_load(&signer, objects, size, clients, 10, None).await?;
    println!(
        "GET 1 MiB ranges, {clients} clients, no repair: {} GETs, p50 {:.1} ms, p99 {:.1} ms",
        base.len(),
        pct(&base, 0.5),
        pct(&base, 0.99)
    );

    // Unthrottled repair: throughput.
    let _: serde_json::Value = admin
        .call(
            reqwest::Method::POST,
            "/v1/repair/config",
            Some(serde_json::json!({"rate_bytes_per_sec": 8u64 << 30, "priority": "high"})),
        )
        .await?;
    c.stop_datad(0).await?;
    let mut backlog = 0u64;
    let (start, cpu0) = loop {
        let st = status(&admin).await?;
        backlog = backlog.max(st.backlog_bytes);
        if st.tasks_in_flight > 0 {
            break (Instant::now(), cpu_seconds());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        let st = status(&admin).await?;
        backlog = backlog.max(st.backlog_bytes);
        if full(&st) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "repair, unthrottled: {:.0} MiB rebuilt in {took:.1}s = {:.0} MiB/s; CPU {:.0}% of the 2 cores",
        backlog as f64 / 1048576.0,
        backlog as f64 / 1048576.0 / took,
        cpu / took / 2.0 * 100.0
    );

    // Default rate: the cost to foreground reads.
    let _: serde_json::Value = admin
        .call(
            reqwest::Method::POST,
            "/v1/repair/config",
            Some(serde_json::json!({"rate_bytes_per_sec": weft_common::repair::REPAIR_RATE_DEFAULT, "priority": "normal"})),
        )
        .await?;
    c.stop_datad(1).await?;
    loop {
        let st = status(&admin).await?;
        if st.tasks_in_flight > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    let during = get_load(&signer, objects, size, clients, 120, Some(&admin)).await?;
    println!(
        "GET 1 MiB ranges, {clients} clients, repair at the default {} MiB/s: {} GETs over {:.1}s, p50 {:.1} ms, p99 {:.1} ms",
        weft_common::repair::REPAIR_RATE_DEFAULT >> 20,
        during.len(),
        t.elapsed().as_secs_f64(),
        pct(&during, 0.5),
        pct(&during, 0.99)
    );

    // The disk's own limit: sequential write with one fsync per 4 MiB.
    let path = dir.path().join("disk-probe");
    let t = Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![7u8; 4 << 20];
        for _ in 0..64 {
            f.write_all(&chunk)?;
            f.sync_data()?;
        }
    }
    println!(
        "disk: sequential 256 MiB with fsync every 4 MiB: {:.0} MiB/s",
        256.0 / t.elapsed().as_secs_f64()
    );
    std::fs::remove_file(&path)?;
    c.shutdown().await;
    Ok(())
}
