//! `weft bench read`: a compute job's read of a dataset through one
//! gateway — every object under a prefix, GET whole, timed — printing
//! what was read (with each object's CRC32C, so whoever wrote the dataset
//! can check the bytes) as one JSON document. The docker locality run
//! starts it as the job container in a zone; it is as useful by hand
//! against any S3 endpoint.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weft_client::s3::{xml_values, S3Client};

/// What one read of the dataset found.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ReadReport {
    /// Objects read, per round.
    pub objects: u64,
    /// Bytes read, all rounds.
    pub bytes: u64,
    /// Wall time of all rounds, s.
    pub secs: f64,
    /// GET latency percentiles, ms.
    pub get_ms_p50: f64,
    /// 99th percentile.
    pub get_ms_p99: f64,
    /// CRC32C of each object's body (the last round's).
    pub crc32c: BTreeMap<String, u32>,
}

/// Lists `s3://bucket/prefix` at `endpoint` and reads it `rounds` times.
pub async fn read(
    target: &str,
    endpoint: &str,
    region: &str,
    (access_key, secret_key): (&str, &str),
    rounds: usize,
) -> Result<()> {
    if rounds == 0 {
        bail!("--rounds 0 reads nothing; give at least 1");
    }
    let (bucket, prefix) = crate::cmd::locate::parse_target(target)?;
    let s3 = S3Client::new(
        endpoint,
        access_key,
        secret_key,
        region,
        Duration::from_secs(300),
    );
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_page(&bucket, &prefix, token.as_deref())
            .await
            .with_context(|| format!("list s3://{bucket}/{prefix} at {endpoint}"))?;
        if !page.is_success() {
            bail!(
                "list s3://{bucket}/{prefix}: {} {}",
                page.status,
                page.error_kind()
            );
        }
        let body = String::from_utf8_lossy(&page.body);
        keys.extend(xml_values(&body, "Key"));
        token = xml_values(&body, "NextContinuationToken")
            .into_iter()
            .next();
        if token.is_none() {
            break;
        }
    }
    if keys.is_empty() {
        bail!("s3://{bucket}/{prefix} holds no objects");
    }
    let started = Instant::now();
    let mut times = Vec::with_capacity(keys.len() * rounds);
    let mut bytes = 0u64;
    let mut crc32c = BTreeMap::new();
    for _ in 0..rounds {
        for key in &keys {
            let t = Instant::now();
            let r = s3
                .get_object(&bucket, key, None)
                .await
                .with_context(|| format!("GET s3://{bucket}/{key}"))?;
            if !r.is_success() {
                bail!("GET s3://{bucket}/{key}: {} {}", r.status, r.error_kind());
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
            bytes += r.body.len() as u64;
            crc32c.insert(key.clone(), crc32c::crc32c(&r.body));
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: usize| times[((times.len() * p).div_ceil(100)).max(1) - 1];
    let report = ReadReport {
        objects: keys.len() as u64,
        bytes,
        secs: started.elapsed().as_secs_f64(),
        get_ms_p50: pct(50),
        get_ms_p99: pct(99),
        crc32c,
    };
    eprintln!(
        "read {} objects x {} rounds, {:.1} MiB in {:.2} s; GET p50 {:.1} ms, p99 {:.1} ms",
        report.objects,
        rounds,
        report.bytes as f64 / (1u64 << 20) as f64,
        report.secs,
        report.get_ms_p50,
        report.get_ms_p99
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
