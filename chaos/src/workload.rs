//! The workload: concurrent S3 clients doing PUT, multipart PUT, GET, ranged
//! GET, DELETE and LIST, every operation recorded in the history.
//!
//! Keys are owned: worker `w` is the only writer of `w{w}/k{i}`, so writes to
//! a key never race each other and every PUT's content is known; *reads* go
//! to any worker's keys through either gateway, which is what exercises
//! read-after-write across gateways. Each PUT writes a fresh version number
//! and content derived from `(run seed, version)` (see `content`), and tags
//! the object with `x-amz-meta-chaos-version` so a read names what it got.
//!
//! Bounded: every worker stops at the deadline or after `ops_max`
//! operations, whichever comes first; each request has its own timeout.

use crate::content;
use crate::history::{Op, OpKind, Outcome, Recorder};
use crate::s3_client::{xml_values, ClientError, Response, S3Client};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The metadata header carrying the version number.
pub const VERSION_META: &str = "x-amz-meta-chaos-version";
/// Smallest multipart part S3 allows (except the last).
pub const PART_BYTES: u64 = 5 << 20;

/// Workload shape.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Bucket all keys live in.
    pub bucket: String,
    /// Seed for content and op choice.
    pub seed: u64,
    /// Concurrent clients.
    pub workers: u32,
    /// Keys each worker owns and keeps rewriting and deleting.
    pub keys_per_worker: u32,
    /// Keys each worker writes once at the start and then only reads: cold
    /// data, whose shard files live long enough for bitrot, kills and
    /// restarts to hit them (hot keys are replaced every few seconds).
    pub cold_keys_per_worker: u32,
    /// Largest object, bytes (multipart above `PART_BYTES`).
    pub object_bytes_max: u64,
    /// Operations per worker, at most.
    pub ops_max: u64,
}

/// State shared by the workers.
pub struct Shared {
    /// Where operations go.
    pub recorder: Arc<Recorder>,
    /// One client per gateway (refreshed by the cluster).
    pub gateways: Arc<RwLock<Vec<S3Client>>>,
    next_version: AtomicU64,
    /// Last acknowledged size per key, to aim ranged reads inside objects.
    sizes: Mutex<HashMap<String, u64>>,
}

impl Shared {
    /// New shared state.
    pub fn new(recorder: Arc<Recorder>, gateways: Arc<RwLock<Vec<S3Client>>>) -> Shared {
        Shared {
            recorder,
            gateways,
            next_version: AtomicU64::new(1),
            sizes: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, i: usize) -> S3Client {
        let g = self.gateways.read().expect("gateways lock");
        g[i % g.len()].clone()
    }

    fn gateway_count(&self) -> usize {
        self.gateways.read().expect("gateways lock").len().max(1)
    }
}

/// The key `i` of worker `w`.
pub fn key_name(w: u32, i: u32) -> String {
    format!("w{w}/k{i:03}")
}

/// The cold key `i` of worker `w`.
pub fn cold_key_name(w: u32, i: u32) -> String {
    format!("w{w}/c{i:03}")
}

/// Every key the workload may touch.
pub fn all_keys(cfg: &WorkloadConfig) -> Vec<String> {
    (0..cfg.workers)
        .flat_map(|w| {
            (0..cfg.cold_keys_per_worker)
                .map(move |i| cold_key_name(w, i))
                .chain((0..cfg.keys_per_worker).map(move |i| key_name(w, i)))
        })
        .collect()
}

/// Object sizes from 1 KiB to `max`: mostly small (replicated, the common
/// case), some medium (one or a few EC stripes), a few large (multipart).
pub fn sample_size(rng: &mut StdRng, max: u64) -> u64 {
    let max = max.max(1024);
    let roll = rng.gen_range(0..100);
    let (lo, hi) = match roll {
        0..=44 => (1 << 10, 64 << 10),
        45..=79 => (64 << 10, 4 << 20),
        80..=94 => (4 << 20, 16 << 20),
        _ => (16 << 20, 64 << 20),
    };
    let hi = hi.min(max);
    let lo = lo.min(hi);
    rng.gen_range(lo..=hi)
}

fn outcome_of(r: &Result<Response, ClientError>) -> Outcome {
    match r {
        Ok(resp) if resp.is_success() => Outcome::Ok,
        Ok(resp) if resp.status == 404 && resp.error_code().as_deref() != Some("NoSuchBucket") => {
            Outcome::NotFound
        }
        Ok(resp) => Outcome::Error {
            kind: resp.error_kind(),
            detail: String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)]).into_owned(),
        },
        Err(e) => Outcome::Error {
            kind: e.kind().into(),
            detail: e.to_string(),
        },
    }
}

/// Runs every worker until `deadline`; returns when all have stopped.
pub async fn run(cfg: WorkloadConfig, shared: Arc<Shared>, deadline: Instant) {
    let mut tasks = Vec::new();
    for w in 0..cfg.workers {
        let cfg = cfg.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            worker(cfg, shared, w, deadline).await
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "workload worker panicked");
        }
    }
}

async fn worker(cfg: WorkloadConfig, shared: Arc<Shared>, w: u32, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(content::mix64(cfg.seed ^ (u64::from(w) << 32)));
    let mut n = 0;
    for i in 0..cfg.cold_keys_per_worker {
        if Instant::now() >= deadline {
            return;
        }
        let gw = rng.gen_range(0..shared.gateway_count());
        put(&cfg, &shared, &mut rng, w, gw, &cold_key_name(w, i), false).await;
        n += 1;
    }
    while Instant::now() < deadline && n < cfg.ops_max {
        n += 1;
        let gw = rng.gen_range(0..shared.gateway_count());
        let own_key = key_name(w, rng.gen_range(0..cfg.keys_per_worker));
        let any_key = if cfg.cold_keys_per_worker > 0 && rng.gen_ratio(1, 3) {
            cold_key_name(
                rng.gen_range(0..cfg.workers),
                rng.gen_range(0..cfg.cold_keys_per_worker),
            )
        } else {
            key_name(
                rng.gen_range(0..cfg.workers),
                rng.gen_range(0..cfg.keys_per_worker),
            )
        };
        let op = match rng.gen_range(0..100) {
            0..=29 => put(&cfg, &shared, &mut rng, w, gw, &own_key, false).await,
            30..=33 => put(&cfg, &shared, &mut rng, w, gw, &own_key, true).await,
            34..=63 => get(&cfg, &shared, &mut rng, w, gw, &any_key, false).await,
            64..=78 => get(&cfg, &shared, &mut rng, w, gw, &any_key, true).await,
            79..=87 => delete(&cfg, &shared, w, gw, &own_key).await,
            _ => {
                let prefix = if rng.gen_bool(0.5) {
                    format!("w{}/", rng.gen_range(0..cfg.workers))
                } else {
                    String::new()
                };
                list(&cfg, &shared, w, gw, &prefix, OpKind::List).await
            }
        };
        // A failing cluster answers fast; do not spin on it.
        if !op.is_ok() {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..250))).await;
        }
    }
}

fn begin(shared: &Shared, kind: OpKind, key: &str, w: u32, gw: usize) -> Op {
    let mut op = Op::new(kind, key);
    op.worker = w;
    op.gateway = gw as u8;
    op.start_us = shared.recorder.now_us();
    op
}

fn finish(shared: &Shared, mut op: Op, outcome: Outcome) -> Op {
    op.end_us = shared.recorder.now_us();
    op.outcome = outcome;
    shared.recorder.record(op.clone());
    op
}

async fn put(
    cfg: &WorkloadConfig,
    shared: &Shared,
    rng: &mut StdRng,
    w: u32,
    gw: usize,
    key: &str,
    multipart: bool,
) -> Op {
    let version = shared.next_version.fetch_add(1, Ordering::Relaxed);
    let seed = content::version_seed(cfg.seed, version);
    let size = if multipart {
        let lo = (PART_BYTES + 1).min(cfg.object_bytes_max.max(PART_BYTES + 1));
        rng.gen_range(lo..=cfg.object_bytes_max.max(lo))
    } else {
        sample_size(rng, cfg.object_bytes_max)
    };
    let data = Bytes::from(content::generate(seed, size));
    let digest = content::digest(&data);
    let kind = if multipart {
        OpKind::MultipartPut
    } else {
        OpKind::Put
    };
    let mut op = begin(shared, kind, key, w, gw);
    op.version = Some(version);
    op.seed = Some(seed);
    op.size = Some(size);
    op.digest = Some(digest);
    let vs = version.to_string();
    let meta = [(VERSION_META, vs.as_str())];
    let client = shared.client(gw);
    let outcome = if multipart {
        multipart_put(&client, &cfg.bucket, key, &meta, data).await
    } else {
        outcome_of(&client.put_object(&cfg.bucket, key, &meta, data).await)
    };
    let op = finish(shared, op, outcome);
    if op.is_ok() {
        shared
            .sizes
            .lock()
            .expect("sizes lock")
            .insert(key.to_string(), size);
    }
    op
}

async fn multipart_put(
    client: &S3Client,
    bucket: &str,
    key: &str,
    meta: &[(&str, &str)],
    data: Bytes,
) -> Outcome {
    let created = client.create_multipart(bucket, key, meta).await;
    let upload_id = match &created {
        Ok(r) if r.is_success() => match xml_values(&String::from_utf8_lossy(&r.body), "UploadId")
            .into_iter()
            .next()
        {
            Some(id) => id,
            None => {
                return Outcome::Error {
                    kind: "bad-response".into(),
                    detail: "CreateMultipartUpload without an UploadId".into(),
                }
            }
        },
        _ => return outcome_of(&created),
    };
    let mut parts = Vec::new();
    let mut offset = 0usize;
    let mut number = 1u32;
    while offset < data.len() {
        let end = (offset + PART_BYTES as usize).min(data.len());
        let r = client
            .upload_part(bucket, key, &upload_id, number, data.slice(offset..end))
            .await;
        match &r {
            Ok(resp) if resp.is_success() => {
                let etag = resp.header("etag").unwrap_or_default().to_string();
                parts.push((number, etag));
            }
            _ => {
                // Never completed: the object cannot have changed. Abort is
                // best-effort; the gateway's lifecycle would clean up too.
                let _ = client.abort_multipart(bucket, key, &upload_id).await;
                return outcome_of(&r);
            }
        }
        offset = end;
        number += 1;
    }
    outcome_of(
        &client
            .complete_multipart(bucket, key, &upload_id, &parts)
            .await,
    )
}

async fn get(
    cfg: &WorkloadConfig,
    shared: &Shared,
    rng: &mut StdRng,
    w: u32,
    gw: usize,
    key: &str,
    ranged: bool,
) -> Op {
    let kind = if ranged {
        OpKind::GetRange
    } else {
        OpKind::Get
    };
    // Begun before the size is read: a write that changes the size after
    // that read overlaps this operation in the history.
    let mut op = begin(shared, kind, key, w, gw);
    let range = if ranged {
        let size = shared
            .sizes
            .lock()
            .expect("sizes lock")
            .get(key)
            .copied()
            .unwrap_or(4096)
            .max(1);
        let off = rng.gen_range(0..size);
        let len = rng.gen_range(1..=(256 << 10)).min(size - off);
        Some((off, len))
    } else {
        None
    };
    // Kept whatever the outcome, so a 416 can be judged against the writes
    // it raced.
    op.range_offset = range.map(|(o, _)| o);
    let header = range.map(|(off, len)| format!("bytes={off}-{}", off + len - 1));
    let r = shared
        .client(gw)
        .get_object(&cfg.bucket, key, header.as_deref())
        .await;
    fill_read(&mut op, &r, range.map(|(o, _)| o));
    let outcome = outcome_of(&r);
    finish(shared, op, outcome)
}

/// Records what a GET returned: size, digest, claimed version.
pub fn fill_read(op: &mut Op, r: &Result<Response, ClientError>, range_offset: Option<u64>) {
    if let Ok(resp) = r {
        if resp.is_success() {
            op.size = Some(resp.body.len() as u64);
            op.digest = Some(content::digest(&resp.body));
            op.version = resp.header(VERSION_META).and_then(|v| v.parse().ok());
            op.range_offset = range_offset;
        }
    }
}

async fn delete(cfg: &WorkloadConfig, shared: &Shared, w: u32, gw: usize, key: &str) -> Op {
    let op = begin(shared, OpKind::Delete, key, w, gw);
    let r = shared.client(gw).delete_object(&cfg.bucket, key).await;
    let outcome = match outcome_of(&r) {
        // S3 answers 204 for absent keys; a 404 would be NoSuchBucket.
        Outcome::NotFound => Outcome::Ok,
        o => o,
    };
    let op = finish(shared, op, outcome);
    if op.is_ok() {
        shared.sizes.lock().expect("sizes lock").remove(key);
    }
    op
}

/// Lists every key under `prefix` (all pages, at most 50).
pub async fn list(
    cfg: &WorkloadConfig,
    shared: &Shared,
    w: u32,
    gw: usize,
    prefix: &str,
    kind: OpKind,
) -> Op {
    let mut op = begin(shared, kind, prefix, w, gw);
    let client = shared.client(gw);
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    for _page in 0..50 {
        let r = client
            .list_page(&cfg.bucket, prefix, token.as_deref())
            .await;
        match &r {
            Ok(resp) if resp.is_success() => {
                let text = String::from_utf8_lossy(&resp.body);
                keys.extend(xml_values(&text, "Key"));
                let truncated = xml_values(&text, "IsTruncated")
                    .first()
                    .map(|s| s == "true")
                    .unwrap_or(false);
                token = xml_values(&text, "NextContinuationToken")
                    .into_iter()
                    .next();
                if !truncated || token.is_none() {
                    op.listed = Some(keys);
                    return finish(shared, op, Outcome::Ok);
                }
            }
            _ => return finish(shared, op, outcome_of(&r)),
        }
    }
    finish(
        shared,
        op,
        Outcome::Error {
            kind: "list-too-long".into(),
            detail: "more than 50 pages".into(),
        },
    )
}

/// Reads back every key after the cluster healed, retrying errors for up to
/// `patience`, then lists the whole bucket. These are the checker's
/// `FinalGet`/`FinalList` operations.
pub async fn final_read_back(cfg: &WorkloadConfig, shared: &Shared, patience: Duration) {
    let keys = all_keys(cfg);
    let began = Instant::now();
    let gws = shared.gateway_count();
    for (i, key) in keys.iter().enumerate() {
        let mut attempt = 0usize;
        loop {
            let gw = (i + attempt) % gws;
            let mut op = begin(shared, OpKind::FinalGet, key, u32::MAX, gw);
            let r = shared.client(gw).get_object(&cfg.bucket, key, None).await;
            fill_read(&mut op, &r, None);
            let outcome = outcome_of(&r);
            let failed = matches!(outcome, Outcome::Error { .. });
            if failed && began.elapsed() < patience {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            finish(shared, op, outcome);
            break;
        }
    }
    for attempt in 0..10 {
        let op = list(cfg, shared, u32::MAX, attempt % gws, "", OpKind::FinalList).await;
        if op.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
