//! `weft bench locality`: what reading from a zone costs on an emulated
//! WAN. The same objects are written to two clusters of 6 data nodes —
//! one spread over 3 zones with one gateway per zone and an emulated
//! delay (and bandwidth) between zones, one with every node in one zone —
//! and read from the first gateway (zone-a) of each. Reports cross-zone
//! bytes per GiB read (from the data nodes' own served-bytes counters),
//! GET p50/p99 of both, the same reads after `weft warm` put the set in
//! zone-a, and `locate` latency on a prefix of many objects.
//! The stripe cache is off so every GET reads shards. Asserts nothing.

use anyhow::{bail, Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};

use super::repair::{body, Signer};

/// What one cluster's reads measured.
struct Reads {
    /// GET latencies, sorted.
    latencies: Vec<Duration>,
    /// Object bytes read.
    bytes: u64,
    /// Shard bytes served to zone-a readers by nodes in zone-a, and by
    /// nodes elsewhere.
    local: u64,
    cross: u64,
}

/// Shard bytes served to `zone`'s readers, per data node (with its zone).
async fn served(c: &DevCluster, zone: &str) -> Result<Vec<(String, u64)>> {
    let line = format!("weft_datad_shard_served_bytes_total{{zone=\"{zone}\"}} ");
    let mut out = vec![];
    for i in 0..c.datad_count() {
        let Some(addr) = c.datad_addr(i) else {
            continue;
        };
        let text = c
            .internal_http()
            .get(c.internal_url(addr, "/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(Ok(0), |v| v.trim().parse::<u64>())?;
        out.push((c.config().zones[i % c.config().zones.len()].clone(), v));
    }
    Ok(out)
}

fn signer_of(c: &DevCluster, gateway: usize) -> Result<Signer> {
    let creds = c.credentials();
    Ok(Signer {
        http: reqwest::Client::new(),
        signer: weft_client::s3::Signer::new(
            &c.s3_endpoint_of(gateway).context("gateway running")?,
            &creds.access_key,
            &creds.secret_key,
            c.region(),
        ),
    })
}

async fn put(s: &Signer, path: &str, data: Vec<u8>) -> Result<()> {
    let signed = s
        .signer
        .sign(&s.http, "PUT", path, &[], &[], "UNSIGNED-PAYLOAD")
        .expect("a known method");
    let r = signed.builder.body(data).send().await?;
    if !r.status().is_success() {
        bail!("PUT {path}: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

/// PUTs `n` objects `prefix{i}` of `size` bytes, `concurrency` at a time.
async fn fill(s: &Arc<Signer>, prefix: &str, n: u64, size: usize, concurrency: u64) -> Result<()> {
    let mut tasks = vec![];
    for w in 0..concurrency {
        let (s, prefix) = (s.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                put(&s, &format!("{prefix}{i}"), body(i, size)).await?;
                i += concurrency;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Writes `objects` objects through gateway 0 and reads them all `rounds`
/// times through it, one GET at a time.
async fn measure(c: &DevCluster, objects: u64, size: usize, rounds: usize) -> Result<Reads> {
    let s = Arc::new(signer_of(c, 0)?);
    put(&s, "/bench", vec![]).await?;
    fill(&s, "/bench/o", objects, size, 4).await?;
    read_all(c, objects, size, rounds).await
}

/// Reads the objects [`measure`] wrote `rounds` times through gateway 0,
/// one GET at a time.
async fn read_all(c: &DevCluster, objects: u64, size: usize, rounds: usize) -> Result<Reads> {
    let s = Arc::new(signer_of(c, 0)?);
    let reader_zone = c
        .gateway_zone(0)
        .or_else(|| c.config().gateway.zone.clone())
        .unwrap_or_else(|| "zone-a".into());
    let before = served(c, &reader_zone).await?;
    let mut latencies = vec![];
    let mut bytes = 0u64;
    for _ in 0..rounds {
        for i in 0..objects {
            let t = Instant::now();
            let r = s
                .request(reqwest::Method::GET, &format!("/bench/o{i}"), None)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("GET o{i}: {}", r.status());
            }
            let got = r.bytes().await?;
            latencies.push(t.elapsed());
            if got.len() != size {
                bail!("GET o{i}: {} bytes, wrote {size}", got.len());
            }
            bytes += got.len() as u64;
        }
    }
    let after = served(c, &reader_zone).await?;
    let (mut local, mut cross) = (0, 0);
    for ((zone, a), (_, b)) in after.iter().zip(&before) {
        if *zone == reader_zone {
            local += a - b;
        } else {
            cross += a - b;
        }
    }
    latencies.sort();
    Ok(Reads {
        latencies,
        bytes,
        local,
        cross,
    })
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn report(name: &str, r: &Reads) {
    let gib = r.bytes as f64 / f64::from(1u32 << 30);
    println!(
        "{name}: {} GETs, p50 {:.1} ms, p99 {:.1} ms; shard bytes served to zone-a: {:.1} MiB from zone-a, {:.1} MiB across zones ({:.0} MiB per GiB read)",
        r.latencies.len(),
        pct(&r.latencies, 0.50),
        pct(&r.latencies, 0.99),
        r.local as f64 / f64::from(1u32 << 20),
        r.cross as f64 / f64::from(1u32 << 20),
        r.cross as f64 / f64::from(1u32 << 20) / gib
    );
}

fn zoned(dir: &std::path::Path, latency_ms: u64, bandwidth: u64) -> DevClusterConfig {
    let mut cfg = DevClusterConfig::ephemeral(dir);
    cfg.gateway_per_zone = true;
    cfg.gateway.read_hedging = true;
    cfg.wan = weft_client::wan::WanSettings {
        latency_ms,
        bandwidth_bytes_per_s: bandwidth,
    };
    cfg
}

/// What to run.
pub struct Settings {
    /// Objects to read.
    pub objects: u64,
    /// Size of each, MiB.
    pub size_mib: usize,
    /// Times each object is read.
    pub rounds: usize,
    /// Emulated delay between zones, ms.
    pub latency_ms: u64,
    /// Emulated bandwidth between zones, bytes/s (0: no limit).
    pub bandwidth: u64,
    /// Objects under the prefix `locate` is timed on.
    pub locate_objects: u64,
    /// Timed `locate` calls of each kind.
    pub locate_samples: usize,
    /// Time `locate` only (no reads, no warm, no one-zone cluster).
    pub locate_only: bool,
}

/// Runs the bench.
pub async fn locality(set: Settings) -> Result<()> {
    let Settings {
        objects,
        size_mib,
        rounds,
        latency_ms,
        bandwidth,
        locate_objects,
        locate_samples,
        locate_only,
    } = set;
    let size = size_mib << 20;
    let dir = tempfile::tempdir()?;
    let c = DevCluster::start(zoned(dir.path(), latency_ms, bandwidth))
        .await
        .context("start the 3-zone cluster")?;
    if locate_only {
        time_locate(&c, locate_objects, locate_samples).await?;
        c.shutdown().await;
        return Ok(());
    }
    println!(
        "{objects} objects of {size_mib} MiB, read {rounds} times each from zone-a's gateway; WAN {latency_ms} ms, {} between zones; stripe cache off, hedging on",
        if bandwidth == 0 {
            "no bandwidth limit".to_string()
        } else {
            format!("{} MiB/s", bandwidth >> 20)
        }
    );
    let three = measure(&c, objects, size, rounds).await?;
    report("3 zones", &three);

    // Warm the set into zone-a and read it again.
    let admin = c.admin_client();
    let t = Instant::now();
    let _: weft_gateway::admin_warm::WarmStatus = admin
        .call(
            reqwest::Method::PUT,
            "/v1/warm",
            Some(serde_json::json!({"bucket": "bench", "prefix": "", "zone": "zone-a"})),
        )
        .await?;
    loop {
        let st: weft_gateway::admin_warm::WarmStatus = admin
            .call(
                reqwest::Method::GET,
                "/v1/warm?bucket=bench&prefix=&zone=zone-a",
                None,
            )
            .await?;
        if st.ready {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the warm was not ready in 10 minutes: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("warmed into zone-a in {:.1} s", t.elapsed().as_secs_f64());
    let warm = read_all(&c, objects, size, rounds).await?;
    report("3 zones, warm in zone-a", &warm);

    // Locate on a prefix of many small objects, in the same cluster.
    time_locate(&c, locate_objects, locate_samples).await?;
    c.shutdown().await;

    let dir = tempfile::tempdir()?;
    let mut cfg = DevClusterConfig::ephemeral(dir.path());
    cfg.zones = vec!["zone-a".into()];
    cfg.gateway.zone = Some("zone-a".into());
    cfg.gateway.read_hedging = true;
    let c = DevCluster::start(cfg)
        .await
        .context("start the one-zone cluster")?;
    let one = measure(&c, objects, size, rounds).await?;
    report("1 zone ", &one);
    c.shutdown().await;
    for (name, r) in [("3 zones", &three), ("3 zones, warm", &warm)] {
        println!(
            "{name} against 1: p50 {:.2}x, p99 {:.2}x",
            pct(&r.latencies, 0.5) / pct(&one.latencies, 0.5),
            pct(&r.latencies, 0.99) / pct(&one.latencies, 0.99)
        );
    }
    Ok(())
}

/// Writes `n` objects of 1 KiB under `many/d/` and times `locate` on
/// them through the admin API, with each object's placement in the answer
/// and with the totals only.
async fn time_locate(c: &DevCluster, n: u64, samples: usize) -> Result<()> {
    let admin = c.admin_client();
    let s = Arc::new(signer_of(c, 0)?);
    put(&s, "/many", vec![]).await?;
    let t = Instant::now();
    fill(&s, "/many/d/", n, 1024, 32).await?;
    println!(
        "wrote {n} objects of 1 KiB for locate in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for (what, query) in [("with each object", ""), ("totals only", "&objects=false")] {
        let mut times = vec![];
        let mut found = 0;
        for _ in 0..samples {
            let t = Instant::now();
            let located: weft_gateway::admin_locate::Located = admin
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/locate?bucket=many&prefix=d/{query}"),
                    None,
                )
                .await?;
            times.push(t.elapsed());
            found = located.object_count;
            if located.truncated {
                bail!("locate truncated its answer at {found} objects");
            }
        }
        times.sort();
        println!(
            "locate of {found} objects through the admin API, {what}: p50 {:.1} ms, p99 {:.1} ms over {samples} calls",
            pct(&times, 0.50),
            pct(&times, 0.99)
        );
    }
    Ok(())
}
