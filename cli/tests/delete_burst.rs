//! A burst of DELETEs must not take the process's file descriptors with it
//! (issue 11). The shortest reproducer was 20,000 small objects deleted from
//! 32 clients: every DELETE spawned a task that later opened one connection
//! per shard, and `weft dev` reached its open-file limit. Here the cluster
//! runs inside the test process, so /proc/self/fd counts the gateway's
//! connections to the data nodes at both ends.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{data, S3Client, TestCluster};

const OBJECTS: usize = 3_000;
const CLIENTS: usize = 32;
const SIZE: usize = 4 << 10;
/// Connection slots per data node (the gateway's `datad_connections_max`
/// default).
const SLOTS: u64 = 64;
/// For sockets the S3 clients, metad and background work may add.
const MARGIN: u64 = 256;

fn fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count() as u64
}

/// Scrapes with a client that reaches both the gateway's plain admin port
/// and the data nodes' mutual-TLS ports (`DevCluster::internal_http`).
async fn metric(scraper: &reqwest::Client, url: &str, name: &str) -> f64 {
    let page = scraper
        .get(url)
        .send()
        .await
        .expect("scrape metrics")
        .text()
        .await
        .expect("metrics body");
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} at {url}"))
}

/// Shard files on every data node, as their stores list them.
async fn shard_files(tc: &TestCluster) -> usize {
    let mut n = 0;
    for i in 0..tc.c().datad_count() {
        let store = tc.c().datad_store(i).expect("data node running");
        n += store
            .inventory(Duration::ZERO)
            .await
            .expect("inventory")
            .len();
    }
    n
}

/// Where and as whom the clients connect.
struct Endpoint {
    url: String,
    access_key: String,
    secret_key: String,
    region: String,
}

/// Sends `method` for every key from `CLIENTS` clients, each with its own
/// connection pool as separate programs would have; returns the keys whose
/// status was not `want`.
async fn fan_out(
    ep: &Endpoint,
    keys: Arc<Vec<String>>,
    method: &'static str,
    want: u16,
) -> Vec<(String, u16)> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for _ in 0..CLIENTS {
        // A new client per task: clones of one S3Client share a pool.
        let c = S3Client::new(&ep.url, &ep.access_key, &ep.secret_key, &ep.region);
        let (keys, next) = (keys.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut bad = vec![];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(key) = keys.get(i) else { break };
                let r = match method {
                    "PUT" => c.put("burst", key, data(i as u64, SIZE)).await,
                    _ => c.delete("burst", key).await,
                };
                if r.status != want {
                    bad.push((key.clone(), r.status));
                }
            }
            bad
        }));
    }
    let mut bad = vec![];
    for t in tasks {
        bad.extend(t.await.expect("client task"));
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_burst_keeps_fds_bounded_and_frees_every_committed_shard() {
    let tc = TestCluster::start().await;
    let scraper = tc.c().internal_http();
    let s3 = tc.root_client();
    assert_eq!(s3.mb("burst").await.status, 200);
    let ep = Endpoint {
        url: tc.c().s3_endpoint(),
        access_key: tc.c().credentials().access_key.clone(),
        secret_key: tc.c().credentials().secret_key.clone(),
        region: tc.c().region().to_string(),
    };
    let metrics = format!("{}/metrics", tc.c().admin_endpoint());
    let files_empty = shard_files(&tc).await;

    let keys: Arc<Vec<String>> = Arc::new((0..OBJECTS).map(|i| format!("o{i:05}")).collect());
    let bad = fan_out(&ep, keys.clone(), "PUT", 200).await;
    assert!(
        bad.is_empty(),
        "PUTs failed: {:?}",
        &bad[..bad.len().min(10)]
    );
    let files_full = shard_files(&tc).await;
    assert!(
        files_full >= files_empty + OBJECTS,
        "{OBJECTS} objects written but only {} shard files appeared",
        files_full - files_empty
    );

    // Sample the fd count from a side task through the burst and until the
    // released shards are gone, since releases happen after the DELETEs.
    let baseline = fds();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(fds(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let bad = fan_out(&ep, keys.clone(), "DELETE", 204).await;
    assert!(
        bad.is_empty(),
        "{} of {OBJECTS} DELETEs did not answer 204: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );

    // Generous: only a hang fails here, never a slow machine. A shard
    // write the gateway abandoned after the write quorum was durable (a
    // straggler) may still land later; it belongs to no committed segment,
    // so no release names it and the garbage collector removes it after its
    // grace (`garbage_is_collected_after_the_grace_period` in
    // tests/durability.rs). Those, and only those, may remain: the gateway
    // counts every one it abandons.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queued = metric(&scraper, &metrics, "weft_gateway_release_queued").await;
        let stragglers = metric(&scraper, &metrics, "weft_gateway_put_stragglers_total").await;
        let files = shard_files(&tc).await;
        if queued == 0.0 && files <= files_empty + stragglers as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "60 s after the burst: {queued} shards still queued for release, {} shard files left of {} ({stragglers} abandoned straggler writes may remain)",
            files - files_empty,
            files_full - files_empty
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");

    let nodes = tc.c().datad_count() as u64;
    let bound = baseline + nodes * SLOTS * 2 + MARGIN;
    let peak = peak.load(Ordering::Relaxed);
    println!("open fds: {baseline} before the burst, peak {peak}, bound {bound}");
    assert!(
        peak <= bound,
        "open fds reached {peak} during the burst (baseline {baseline}, bound {bound}): connections to the data nodes are not bounded per node"
    );
    assert_eq!(
        metric(&scraper, &metrics, "weft_gateway_release_dropped_total").await,
        0.0,
        "released shards were dropped (left to GC) instead of sent"
    );
    for i in 0..tc.c().datad_count() {
        let url = tc
            .c()
            .internal_url(tc.c().datad_addr(i).expect("running"), "/metrics");
        assert_eq!(
            metric(&scraper, &url, "weft_datad_release_deferred_depth").await,
            0.0,
            "node {i}"
        );
        assert_eq!(
            metric(&scraper, &url, "weft_datad_release_dropped_total").await,
            0.0,
            "node {i}"
        );
    }
    tc.shutdown().await;
}

/// 32 clients writing at once through a gateway with 4 slots per data node
/// reuse pooled connections: each connection a data node accepts carries
/// many shard requests, not one (before the slot limit and pooling, every
/// request opened its own). Counted by the nodes themselves
/// (`connections_accepted`), so no sampling can miss a short-lived
/// connection. The peak of open connections is printed, not asserted: a
/// connection past the pool's idle limit closes whenever its task next
/// runs, which on a busy machine can be after a new one opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_reuse_pooled_connections_to_the_data_nodes() {
    const FEW_SLOTS: usize = 4;
    let tc = TestCluster::start_with(|c| c.gateway.datad_connections_max = FEW_SLOTS).await;
    let scraper = tc.c().internal_http();
    let c = tc.c();
    let ports: Vec<u16> = (0..c.datad_count())
        .filter_map(|i| c.datad_addr(i))
        .map(|a| a.port())
        .collect();
    let urls: Vec<String> = (0..c.datad_count())
        .map(|i| c.internal_url(c.datad_addr(i).expect("running"), "/metrics"))
        .collect();
    let s3 = tc.root_client();
    assert_eq!(s3.mb("burst").await.status, 200);
    let ep = Endpoint {
        url: c.s3_endpoint(),
        access_key: c.credentials().access_key.clone(),
        secret_key: c.credentials().secret_key.clone(),
        region: c.region().to_string(),
    };
    let mut accepted_before = 0.0;
    for u in &urls {
        accepted_before += metric(&scraper, u, "weft_datad_connections_accepted_total").await;
    }
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak, ports) = (done.clone(), peak.clone(), ports.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                for p in &ports {
                    peak.fetch_max(weft_cli::proc_net::established_to(*p), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let keys: Arc<Vec<String>> = Arc::new((0..600).map(|i| format!("k{i}")).collect());
    let bad = fan_out(&ep, keys, "PUT", 200).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    assert!(
        bad.is_empty(),
        "PUTs failed: {:?}",
        &bad[..bad.len().min(5)]
    );
    let (mut accepted, mut shard_bytes) = (-accepted_before, 0.0);
    for u in &urls {
        accepted += metric(&scraper, u, "weft_datad_connections_accepted_total").await;
        shard_bytes += metric(&scraper, u, "weft_datad_shard_put_bytes_total").await;
    }
    // Objects of SIZE bytes are stored as whole copies: one shard PUT per
    // SIZE bytes stored.
    let shard_puts = shard_bytes / SIZE as f64;
    println!(
        "{shard_puts} shard PUTs over {accepted} new connections; peak open to one node: {} (slots {FEW_SLOTS})",
        peak.load(Ordering::Relaxed)
    );
    assert!(
        shard_puts >= 600.0,
        "fewer shard PUTs ({shard_puts}) than objects: the count is wrong"
    );
    assert!(
        accepted * 4.0 <= shard_puts,
        "{accepted} connections accepted for {shard_puts} shard PUTs: connections are not reused"
    );
    tc.shutdown().await;
}
