//! `weft bench internal-http`: the gateway's datad client against one data
//! node, over pooled HTTP/1.1 (what Weft uses) and over HTTP/2 with prior
//! knowledge (every request a stream on one connection). Issue 11 asked
//! whether HTTP/2 should carry internal streams; this measures it instead
//! of guessing. Each task PUTs a shard, GETs it back whole (checked), and
//! deletes it; PUT and GET are timed apart. Connections are the client
//! ends established to the node's port, sampled every 20 ms.

use crate::args::InternalHttpArgs;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};
use weft_client::{DatadClient, DatadClientLimits};
use weft_common::{SegmentId, ShardIndex};

/// One cell's result.
#[derive(serde::Serialize, Debug)]
pub struct Cell {
    /// `http1` or `http2`.
    pub protocol: &'static str,
    /// Shard bytes.
    pub size: u64,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Completed round trips (PUT + GET + DELETE).
    pub rounds: u64,
    /// PUTs per second.
    pub put_per_sec: f64,
    /// PUT payload MiB per second.
    pub put_mib_per_sec: f64,
    /// PUT latency percentiles, ms.
    pub put_p50_ms: f64,
    /// PUT p99, ms.
    pub put_p99_ms: f64,
    /// GETs per second.
    pub get_per_sec: f64,
    /// GET payload MiB per second.
    pub get_mib_per_sec: f64,
    /// GET p50, ms.
    pub get_p50_ms: f64,
    /// GET p99, ms.
    pub get_p99_ms: f64,
    /// Most client connections to the node seen at once.
    pub peak_connections: u64,
    /// Failed requests (any makes the bench exit non-zero).
    pub errors: u64,
}

/// Runs the bench; fails if any request failed or returned wrong bytes.
pub async fn internal_http(a: InternalHttpArgs) -> Result<()> {
    if a.seconds == 0 || a.concurrency.contains(&0) || a.sizes.contains(&0) {
        bail!("--seconds, --concurrency and --sizes must be positive");
    }
    let dir = tempfile::tempdir().context("temporary directory")?;
    // Plain HTTP by default: the shard protocol's framing alone; --tls adds
    // mutual TLS as every real cluster runs it.
    let mut cfg = DevClusterConfig::ephemeral(dir.path());
    cfg.insecure_internal = !a.tls;
    let cluster = DevCluster::start(cfg)
        .await
        .context("start a dev cluster")?;
    let tls = match cluster.pki() {
        Some(pki) if a.tls => Some(
            weft_client::internal_tls::InternalTls::load(pki.gateway.clone())
                .context("load the dev gateway's certificate")?,
        ),
        _ => None,
    };
    let addr = cluster
        .datad_addr(0)
        .context("data node 1 is not running")?;
    let mut cells = Vec::new();
    if !a.json {
        println!(
            "{:<9} {:>8} {:>5} | {:>8} {:>8} {:>7} {:>7} | {:>8} {:>8} {:>7} {:>7} | {:>5}",
            "proto",
            "size",
            "conc",
            "PUT/s",
            "MiB/s",
            "p50 ms",
            "p99 ms",
            "GET/s",
            "MiB/s",
            "p50 ms",
            "p99 ms",
            "conns"
        );
    }
    for &size in &a.sizes {
        for &conc in &a.concurrency {
            for http2 in [false, true] {
                let cell = run_cell(
                    &addr.to_string(),
                    addr.port(),
                    (http2, tls.as_ref()),
                    size,
                    conc,
                    Duration::from_secs(a.seconds),
                )
                .await;
                if a.json {
                    println!("{}", serde_json::to_string(&cell)?);
                } else {
                    println!(
                        "{:<9} {:>8} {:>5} | {:>8.0} {:>8.1} {:>7.2} {:>7.2} | {:>8.0} {:>8.1} {:>7.2} {:>7.2} | {:>5}",
                        cell.protocol, cell.size, cell.concurrency, cell.put_per_sec,
                        cell.put_mib_per_sec, cell.put_p50_ms, cell.put_p99_ms, cell.get_per_sec,
                        cell.get_mib_per_sec, cell.get_p50_ms, cell.get_p99_ms,
                        cell.peak_connections
                    );
                }
                cells.push(cell);
            }
        }
    }
    cluster.shutdown().await;
    let errors: u64 = cells.iter().map(|c| c.errors).sum();
    if errors > 0 {
        bail!("{errors} internal requests failed or returned wrong bytes");
    }
    Ok(())
}

async fn run_cell(
    addr: &str,
    port: u16,
    (http2, tls): (bool, Option<&Arc<weft_client::internal_tls::InternalTls>>),
    size: u64,
    conc: usize,
    length: Duration,
) -> Cell {
    let client = DatadClient::with_limits_tls(
        DatadClientLimits {
            http2,
            ..DatadClientLimits::default()
        },
        tls,
    );
    let payload = Bytes::from(
        (0..size)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let puts = Arc::new(Mutex::new(Vec::<f64>::new()));
    let gets = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(weft_cli::proc_net::established_to(port), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let deadline = started + length;
    let tasks: Vec<_> = (0..conc)
        .map(|t| {
            let (client, payload, addr) = (client.clone(), payload.clone(), addr.to_string());
            let (puts, gets, errors) = (puts.clone(), gets.clone(), errors.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let segment = SegmentId(((t as u128) << 64) | n as u128 | (1 << 127));
                    n += 1;
                    if !round(&client, &addr, segment, &payload, &puts, &gets).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let mut puts = std::mem::take(&mut *puts.lock().expect("latency lock"));
    let mut gets = std::mem::take(&mut *gets.lock().expect("latency lock"));
    puts.sort_by(f64::total_cmp);
    gets.sort_by(f64::total_cmp);
    let mib = size as f64 / (1 << 20) as f64;
    Cell {
        protocol: match (http2, tls.is_some()) {
            (false, false) => "http1",
            (true, false) => "http2",
            (false, true) => "http1+tls",
            (true, true) => "http2+tls",
        },
        size,
        concurrency: conc,
        rounds: gets.len() as u64,
        put_per_sec: puts.len() as f64 / elapsed,
        put_mib_per_sec: puts.len() as f64 * mib / elapsed,
        put_p50_ms: percentile(&puts, 0.50),
        put_p99_ms: percentile(&puts, 0.99),
        get_per_sec: gets.len() as f64 / elapsed,
        get_mib_per_sec: gets.len() as f64 * mib / elapsed,
        get_p50_ms: percentile(&gets, 0.50),
        get_p99_ms: percentile(&gets, 0.99),
        peak_connections: peak.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
    }
}

/// PUT, GET (checked) and DELETE of one shard; false on any failure.
async fn round(
    client: &DatadClient,
    addr: &str,
    segment: SegmentId,
    payload: &Bytes,
    puts: &Mutex<Vec<f64>>,
    gets: &Mutex<Vec<f64>>,
) -> bool {
    const CHUNK: usize = 256 * 1024;
    let index = ShardIndex(0);
    let len = payload.len() as u64;
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..payload.len())
        .step_by(CHUNK)
        .map(|at| Ok(payload.slice(at..(at + CHUNK).min(payload.len()))))
        .collect();
    let t0 = Instant::now();
    if let Err(e) = client
        .put_shard(addr, segment, index, len, futures::stream::iter(chunks))
        .await
    {
        tracing::warn!(error = %e, "bench PUT failed");
        return false;
    }
    puts.lock()
        .expect("latency lock")
        .push(t0.elapsed().as_secs_f64() * 1e3);
    let t0 = Instant::now();
    match client.get_shard(addr, segment, index, 0, len).await {
        Ok(b) if b == *payload => {}
        Ok(_) => {
            tracing::warn!("bench GET returned other bytes");
            return false;
        }
        Err(e) => {
            tracing::warn!(error = %e, "bench GET failed");
            return false;
        }
    }
    gets.lock()
        .expect("latency lock")
        .push(t0.elapsed().as_secs_f64() * 1e3);
    if let Err(e) = client.delete_shard(addr, segment, index).await {
        tracing::warn!(error = %e, "bench DELETE failed");
        return false;
    }
    true
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
