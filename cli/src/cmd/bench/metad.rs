//! `weft bench metad` and `weft bench list`: metad's commit rate and
//! leader failover on a real voter group, and listing on a large bucket.

use anyhow::{Context, Result};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use weft_client::MetadClient;
use weft_common::manifest::{BucketInfo, ContentHeaders, ObjectVersion, Segment};
use weft_common::profile::Layout;
use weft_common::rpc::{Command, ListMarker, ListRequest, Query};
use weft_common::{NodeId, SegmentId, VersionId};
use weft_metad::state_machine::StateMachine;
use weft_metad::{MetadConfig, MetadHandle, TypeConfig};

/// A realistic small manifest: one 4+2 segment.
fn version(n: u64) -> ObjectVersion {
    ObjectVersion {
        version_id: VersionId(u128::from(n) | (1 << 100)),
        size: 1 << 20,
        etag: format!("{n:032x}"),
        crc32c: n as u32,
        last_modified_ms: 1_700_000_000_000 + n,
        storage_class: "STANDARD".into(),
        user_metadata: Default::default(),
        content: ContentHeaders::default(),
        checksums: Default::default(),
        checksum_type: None,
        tags: Default::default(),
        part_sizes: Vec::new(),
        version_label: None,
        segments: vec![Segment {
            id: SegmentId(u128::from(n) << 16),
            offset: 0,
            len: 1 << 20,
            layout: Layout::Erasure {
                k: 4,
                m: 2,
                unit_bytes: 1 << 20,
            },
            shards: (1..=6).map(|i| Some(NodeId(i))).collect(),
            shard_len: 256 << 10,
            placement: None,
            cache: vec![],
        }],
        tier: None,
        last_access_ms: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Group {
    voters: Vec<Option<(MetadHandle, CancellationToken)>>,
    addrs: Vec<String>,
}

async fn start_group(dir: &std::path::Path, n: usize) -> Result<Group> {
    let mut voters = vec![];
    let mut addrs = vec![];
    for i in 0..n {
        let cancel = CancellationToken::new();
        let cfg = MetadConfig {
            insecure_internal: true,
            id: (i + 1) as u64,
            listen: "127.0.0.1:0".parse().expect("literal"),
            data_dir: dir.join(format!("metad-{}", i + 1)),
            bootstrap: n == 1,
            snapshot_logs: 100_000,
            ..Default::default()
        };
        let h = weft_metad::start(cfg, cancel.clone()).await?;
        addrs.push(h.addr().to_string());
        voters.push(Some((h, cancel)));
    }
    if n > 1 {
        let members: std::collections::BTreeMap<u64, String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| ((i + 1) as u64, a.clone()))
            .collect();
        reqwest::Client::new()
            .post(format!("http://{}/v1/init", addrs[0]))
            .json(&serde_json::json!({ "members": members }))
            .send()
            .await?
            .error_for_status()?;
    }
    voters[0]
        .as_ref()
        .expect("started")
        .0
        .wait_for_leader(Duration::from_secs(10))
        .await?;
    Ok(Group { voters, addrs })
}

/// Commits per second with `writers` concurrent clients for `secs` seconds.
async fn commit_rate(
    client: &MetadClient,
    writers: usize,
    secs: u64,
    base: u64,
) -> (f64, Duration, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(base));
    let mut tasks = vec![];
    for _ in 0..writers {
        let (client, stop, next) = (client.clone(), stop.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let cmd = Command::PutObject {
                    bucket: "bench".into(),
                    key: format!("w/{n:012}"),
                    version: version(n),
                    condition: None,
                };
                let t0 = Instant::now();
                if client.command(&cmd).await.is_ok() {
                    lat.push(t0.elapsed());
                }
            }
            lat
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = t0.elapsed().as_secs_f64();
    all.sort();
    (
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

/// `weft bench metad`: commit rate at several concurrencies and leader
/// failover time, on `voters` in-process voters over loopback HTTP.
pub async fn metad(voters: usize, secs: u64, writers: &[usize], failovers: usize) -> Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let mut g = start_group(dir.path(), voters).await?;
    let client = MetadClient::new(g.addrs.clone());
    client
        .command(&Command::CreateBucket {
            bucket: BucketInfo {
                name: "bench".into(),
                owner: "bench".into(),
                created_ms: 0,
                tags: Default::default(),
                versioning: None,
                lifecycle: None,
                tiering: None,
                residency: None,
            },
        })
        .await?;
    println!("metad commit rate: {voters} voters on loopback, each commit fsynced on a majority before it is acknowledged");
    println!(
        "{:>8} {:>12} {:>10} {:>10}",
        "writers", "commits/s", "p50", "p99"
    );
    let mut base = 0;
    for &w in writers {
        let (rate, p50, p99) = commit_rate(&client, w, secs, base).await;
        base += 10_000_000;
        println!("{w:>8} {rate:>12.0} {:>10.2?} {:>10.2?}", p50, p99);
    }
    // Listing through the leader over HTTP (read index + JSON), on the keys
    // the writers just committed.
    let mut lat = vec![];
    for s in 0..200u64 {
        let q = Query::List(ListRequest {
            bucket: "bench".into(),
            prefix: "w/".into(),
            delimiter: None,
            after: Some(ListMarker::Key(format!("w/{:012}", (s * 7919) % 1000))),
            max_keys: 1000,
        });
        let t = Instant::now();
        client.query(&q).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "\nListObjectsV2 page of 1000 through the leader over HTTP (read index + JSON): p50 {:.2?}, p99 {:.2?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    if voters > 1 && failovers > 0 {
        println!("\nleader failover: stop the leader, time until the next command commits");
        for round in 0..failovers {
            let leader = g
                .voters
                .iter()
                .flatten()
                .find_map(|(h, _)| h.raft().metrics().borrow().current_leader)
                .context("no leader")?;
            let idx = (leader - 1) as usize;
            let (h, cancel) = g.voters[idx].take().context("leader not running")?;
            let t0 = Instant::now();
            cancel.cancel();
            h.stopped().await;
            let stopped = t0.elapsed();
            let cmd = Command::PutObject {
                bucket: "bench".into(),
                key: format!("failover/{round}"),
                version: version(999_000_000 + round as u64),
                condition: None,
            };
            client
                .command(&cmd)
                .await
                .context("commit after failover")?;
            println!("  round {round}: voter {leader} stopped in {} ms; next commit {} ms after the stop began", stopped.as_millis(), t0.elapsed().as_millis());
            // Restart it so the next round has three voters again.
            let cancel = CancellationToken::new();
            let cfg = MetadConfig {
                insecure_internal: true,
                id: leader,
                listen: g.addrs[idx].parse()?,
                data_dir: dir.path().join(format!("metad-{leader}")),
                bootstrap: false,
                snapshot_logs: 100_000,
                ..Default::default()
            };
            let h = weft_metad::start(cfg, cancel.clone()).await?;
            g.voters[idx] = Some((h, cancel));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    for (h, c) in g.voters.into_iter().flatten() {
        c.cancel();
        h.stopped().await;
    }
    Ok(())
}

/// `weft bench list`: ListObjectsV2 pages on a bucket of `keys` keys laid
/// out as `p{i}/k{j}` with `per_prefix` keys per prefix, applied straight to
/// a state machine (the same code metad runs for a query, minus HTTP).
pub async fn list(keys: u64, per_prefix: u64, samples: usize) -> Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let mut sm = StateMachine::open(dir.path())?;
    let mut index = 1;
    let mut entry = |cmd: Command| {
        index += 1;
        Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    };
    let t0 = Instant::now();
    sm.apply([entry(Command::CreateBucket {
        bucket: BucketInfo {
            name: "big".into(),
            owner: "bench".into(),
            created_ms: 0,
            tags: Default::default(),
            versioning: None,
            lifecycle: None,
            tiering: None,
            residency: None,
        },
    })])
    .await?;
    let mut batch = Vec::with_capacity(10_000);
    for n in 0..keys {
        let key = format!("p{:06}/k{:06}", n / per_prefix, n % per_prefix);
        batch.push(entry(Command::PutObject {
            bucket: "big".into(),
            key,
            version: version(n),
            condition: None,
        }));
        if batch.len() == 10_000 {
            sm.apply(std::mem::take(&mut batch)).await?;
        }
    }
    sm.apply(batch).await?;
    println!(
        "loaded {keys} keys ({} prefixes of {per_prefix}) in {:.1?}",
        keys / per_prefix,
        t0.elapsed()
    );

    let prefixes = (keys / per_prefix).max(1);
    let mut flat = vec![];
    let mut delim = vec![];
    for s in 0..samples {
        let start = (s as u64 * 7919) % keys;
        let req = ListRequest {
            bucket: "big".into(),
            prefix: String::new(),
            delimiter: None,
            after: Some(ListMarker::Key(format!(
                "p{:06}/k{:06}",
                start / per_prefix,
                start % per_prefix
            ))),
            max_keys: 1000,
        };
        let t = Instant::now();
        let page = sm.list(&req)?.context("bucket exists")?;
        flat.push(t.elapsed());
        assert!(!page.entries.is_empty());
        let req = ListRequest {
            bucket: "big".into(),
            prefix: String::new(),
            delimiter: Some("/".into()),
            after: Some(ListMarker::Prefix(format!(
                "p{:06}/",
                (s as u64 * 31) % prefixes.saturating_sub(1).max(1)
            ))),
            max_keys: 1000,
        };
        let t = Instant::now();
        let page = sm.list(&req)?.context("bucket exists")?;
        delim.push(t.elapsed());
        assert!(page.entries.is_empty());
    }
    flat.sort();
    delim.sort();
    println!(
        "{:<44} {:>10} {:>10}",
        "state machine, page of 1000", "p50", "p99"
    );
    println!(
        "{:<44} {:>10.2?} {:>10.2?}",
        "flat listing (keys)",
        percentile(&flat, 0.5),
        percentile(&flat, 0.99)
    );
    println!(
        "{:<44} {:>10.2?} {:>10.2?}",
        "delimiter '/' listing (common prefixes)",
        percentile(&delim, 0.5),
        percentile(&delim, 0.99)
    );

    Ok(())
}
