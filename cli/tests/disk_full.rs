//! Full disks: a data node past `full_ratio` refuses shards and placement
//! goes around it until deletes free space; a metad low on disk space
//! refuses new data with 507 InsufficientStorage while deletes and admin
//! commands still work, and accepts data again once space returns. Both
//! recover without a restart.

mod support;

use std::time::{Duration, Instant};
use support::{data, TestCluster};
use weft_cli::admin_client::AdminClient;
use weft_client::DatadClientError;
use weft_client::MetadClient;
use weft_common::rpc::{Query, QueryResult, RpcErrorCode};
use weft_common::space::SpaceState;
use weft_common::topology::NodeView;
use weft_common::{NodeId, SegmentId, ShardIndex};

/// Turns a hang into a failure; never a measure of speed.
const DEADLINE: Duration = Duration::from_secs(120);
/// Node 1 (index 0) holds this much; the others 100 GiB.
const SMALL_CAPACITY: u64 = 512 * 1024;
/// Objects this small are stored as 3 copies, one per zone.
const OBJECT_BYTES: usize = 8 * 1024;

async fn node_view(metad: &MetadClient, node: u64) -> NodeView {
    match metad.query(&Query::Nodes).await {
        Ok(QueryResult::Nodes { nodes, .. }) => nodes
            .into_iter()
            .find(|n| n.info.id == NodeId(node))
            .expect("node registered"),
        other => panic!("nodes query: {other:?}"),
    }
}

/// The nodes holding the (one) segment of `bucket/key`.
async fn holders(metad: &MetadClient, bucket: &str, key: &str) -> Vec<NodeId> {
    match metad
        .query(&Query::Object {
            bucket: bucket.into(),
            key: key.into(),
        })
        .await
    {
        Ok(QueryResult::Object {
            version: Some(v), ..
        }) => v
            .segments
            .iter()
            .flat_map(|s| s.shards.iter().flatten().copied())
            .collect(),
        other => panic!("{bucket}/{key}: {other:?}"),
    }
}

async fn wait_gateway_sees(tc: &TestCluster, node: u64, state: SpaceState) {
    let t0 = Instant::now();
    while tc.c().gateway_node_space(node) != Some(state) {
        assert!(
            t0.elapsed() < DEADLINE,
            "the gateway never saw node {node} {state:?}: it sees {:?}",
            tc.c().gateway_node_space(node)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_is_skipped_and_used_again_once_deletes_free_it() {
    let tc = TestCluster::start_with(|c| {
        c.datad_capacity_of.insert(0, SMALL_CAPACITY);
        c.datad.heartbeat_interval_ms = 200;
        c.datad.gc_interval_ms = 3_600_000;
        c.metad.gc_grace_ms = 3_600_000;
    })
    .await;
    tc.c()
        .wait_nodes_up(6, Duration::from_secs(60))
        .await
        .unwrap();
    let s3 = tc.root_client();
    let metad = tc.c().metad_client();
    let store = tc.c().datad_store(0).expect("node 1 running");
    assert_eq!(s3.mb("fill").await.status, 200);

    // Fill until metad hears node 1 is full. Writes keep succeeding: once
    // the node refuses shards the other two copies make the quorum, and
    // once the gateway knows, it places elsewhere.
    let mut keys = vec![];
    let t0 = Instant::now();
    loop {
        let key = format!("k{}", keys.len());
        s3.must_put("fill", &key, data(keys.len() as u64, OBJECT_BYTES))
            .await;
        keys.push(key);
        let view = node_view(&metad, 1).await;
        if view.space.state == SpaceState::Full {
            assert!(
                view.space.reason.contains("capacity_bytes"),
                "{:?}",
                view.space
            );
            assert!(view.space.fullness_ppm >= 950_000, "{:?}", view.space);
            break;
        }
        assert!(
            keys.len() < 2_000 && t0.elapsed() < DEADLINE,
            "node 1 never became full: {view:?}"
        );
    }
    assert!(store.used_bytes() * 100 >= SMALL_CAPACITY * 95);

    // The node itself refuses a new shard, saying why.
    let addr = tc.c().datad_addr(0).unwrap().to_string();
    let shard = data(1, 1024);
    let err = tc
        .c()
        .datad_client()
        .unwrap()
        .put_shard(
            &addr,
            SegmentId(0xf011),
            ShardIndex(0),
            shard.len() as u64,
            futures::stream::iter([Ok(bytes::Bytes::from(shard))]),
        )
        .await
        .unwrap_err();
    match &err {
        DatadClientError::Failed {
            status: 507,
            code: Some(RpcErrorCode::DiskFull),
            message,
            ..
        } => assert!(
            message.contains("node full") && message.contains("full_ratio"),
            "{message}"
        ),
        other => panic!("expected 507 DiskFull, got {other}"),
    }

    // Once the gateway knows, every new object goes to other nodes.
    wait_gateway_sees(&tc, 1, SpaceState::Full).await;
    let used = store.used_bytes();
    for i in 0..20 {
        let key = format!("after-full-{i}");
        s3.must_put("fill", &key, data(10_000 + i, OBJECT_BYTES))
            .await;
        let on = holders(&metad, "fill", &key).await;
        assert_eq!(on.len(), 3, "{key} on {on:?}");
        assert!(
            !on.contains(&NodeId(1)),
            "{key} was placed on the full node: {on:?}"
        );
        keys.push(key);
    }
    // (Rebalancing may move shards off it meanwhile, never onto it.)
    assert!(
        store.used_bytes() <= used,
        "the full node took shards: {} bytes, was {used}",
        store.used_bytes()
    );

    // Deleting the objects frees the node: it reports ok again and gets
    // shards again, without a restart.
    for key in &keys {
        assert_eq!(s3.delete("fill", key).await.status, 204, "DELETE {key}");
    }
    let t0 = Instant::now();
    while node_view(&metad, 1).await.space.state != SpaceState::Ok {
        assert!(
            t0.elapsed() < DEADLINE,
            "node 1 stayed {:?} after the deletes (used {} bytes)",
            node_view(&metad, 1).await.space,
            store.used_bytes()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_gateway_sees(&tc, 1, SpaceState::Ok).await;
    let mut landed = false;
    for i in 0..100 {
        let key = format!("after-free-{i}");
        s3.must_put("fill", &key, data(20_000 + i, OBJECT_BYTES))
            .await;
        if holders(&metad, "fill", &key).await.contains(&NodeId(1)) {
            landed = true;
            break;
        }
    }
    assert!(
        landed,
        "no new object was placed on node 1 after it was freed"
    );
    assert!(store.used_bytes() > 0);
    tc.shutdown().await;
}

/// A tmpfs mounted for the test's lifetime: a real small disk to fill.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root, or no
    /// CAP_SYS_ADMIN in the container).
    fn mount(path: &std::path::Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Where a machine cannot mount a tmpfs (not root): metad's disk is its
/// directory with a size limit, free space being the limit minus the bytes
/// of every file in it. The same files fill it as fill the tmpfs.
struct DirQuota {
    dir: std::path::PathBuf,
    size: u64,
}

impl DirQuota {
    fn used(dir: &std::path::Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => Self::used(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
}

impl weft_common::space::FsStats for DirQuota {
    fn usage(&self, _path: &std::path::Path) -> std::io::Result<weft_common::space::FsUsage> {
        let used = Self::used(&self.dir);
        Ok(weft_common::space::FsUsage {
            used_bytes: used,
            avail_bytes: self.size.saturating_sub(used),
        })
    }
}

/// Data bytes every data node has accepted in shard PUTs (their
/// `weft_datad_shard_put_bytes` counters).
async fn shard_put_bytes(tc: &TestCluster) -> u64 {
    let mut total = 0u64;
    for i in 0..tc.c().datad_count() {
        let url = tc
            .c()
            .internal_url(tc.c().datad_addr(i).expect("node running"), "/metrics");
        let page = tc
            .c()
            .internal_http()
            .get(&url)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics body");
        total += page
            .lines()
            .find_map(|l| {
                l.strip_prefix("weft_datad_shard_put_bytes_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("shard put counter");
    }
    total
}

/// Bytes of shard files on every data node.
fn shard_bytes(tc: &TestCluster) -> u64 {
    (0..tc.c().datad_count())
        .map(|i| tc.c().datad_store(i).expect("node running").used_bytes())
        .sum()
}

async fn metad_space_low(admin: &AdminClient) -> bool {
    let st: weft_gateway::admin::ClusterStatus = admin
        .call(reqwest::Method::GET, "/v1/cluster/status", None)
        .await
        .expect("cluster status");
    st.metad.space.expect("metad reports its disk").low
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metad_low_on_disk_refuses_new_data_but_deletes_and_admin_work() {
    const MIB: u64 = 1 << 20;
    // metad's data directory on a 160 MiB disk of its own.
    let dir = tempfile::tempdir().unwrap();
    let metad_dir = dir.path().join("cluster").join("metad");
    let disk = Tmpfs::mount(&metad_dir, 160 * MIB);
    let fs: std::sync::Arc<dyn weft_common::space::FsStats> = match &disk {
        Some(_) => std::sync::Arc::new(weft_common::space::Statvfs),
        None => {
            eprintln!(
                "no tmpfs here (needs root): metad's disk is its directory limited to 160 MiB"
            );
            std::fs::create_dir_all(&metad_dir).unwrap();
            std::sync::Arc::new(DirQuota {
                dir: metad_dir.clone(),
                size: 160 * MIB,
            })
        }
    };
    let free_bytes = {
        let fs = fs.clone();
        move |p: &std::path::Path| fs.usage(p).unwrap().avail_bytes
    };
    let cluster_dir = dir.path().join("cluster");
    let mut cfg = weft_cli::dev_cluster::DevClusterConfig::ephemeral(&cluster_dir);
    cfg.metad_fs = Some(weft_cli::dev_cluster::MetadFs(fs.clone()));
    cfg.metad.reserved_bytes = 16 * MIB;
    cfg.metad.space_low_free_bytes = 48 * MIB;
    cfg.metad.space_ok_free_bytes = 96 * MIB;
    cfg.metad.space_check_ms = 100;
    let tc = TestCluster {
        cluster: Some(
            weft_cli::dev_cluster::DevCluster::start(cfg)
                .await
                .expect("start cluster"),
        ),
        dir,
    };
    tc.c()
        .wait_nodes_up(6, Duration::from_secs(60))
        .await
        .unwrap();
    let s3 = tc.root_client();
    let c = tc.c();
    let admin = c.admin_client();
    assert!(
        metad_dir.join("space-reserve").exists(),
        "reserve made at start"
    );
    assert_eq!(s3.mb("low-space").await.status, 200);
    s3.must_put("low-space", "old", data(1, 100_000)).await;
    assert!(!metad_space_low(&admin).await);

    // Fill metad's disk to 32 MiB free, below the 48 MiB low mark.
    let filler = metad_dir.join("filler");
    let fill = free_bytes(&metad_dir).saturating_sub(32 * MIB);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; MIB as usize];
        let mut left = fill;
        while left > 0 {
            let n = left.min(MIB) as usize;
            f.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
    }
    let t0 = Instant::now();
    while !metad_space_low(&admin).await {
        assert!(
            t0.elapsed() < DEADLINE,
            "metad never entered space-low mode"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !metad_dir.join("space-reserve").exists(),
        "reserve released"
    );

    // Once the gateway's cluster map shows the mode, new data is refused
    // with 507 InsufficientStorage before any shard is written: no data
    // node receives a byte.
    let t0 = Instant::now();
    while !tc.c().gateway_sees_metad_space_low() {
        assert!(
            t0.elapsed() < DEADLINE,
            "the gateway's cluster map never showed metad's space-low mode"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = shard_put_bytes(&tc).await;
    let shard_bytes_before = shard_bytes(&tc);
    let r = s3.put("low-space", "new", data(2, 100_000)).await;
    assert_eq!(r.status, 507, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("InsufficientStorage"));
    assert!(r.text().contains("low on disk space"), "{}", r.text());
    assert_eq!(
        shard_put_bytes(&tc).await,
        before,
        "a PUT refused for metad's space wrote shards to the data nodes"
    );
    assert_eq!(shard_bytes(&tc), shard_bytes_before, "shard files changed");
    let r = s3.mb("another-bucket").await;
    assert_eq!(r.status, 507, "{}", r.text());
    // ...while deletes and admin commands go through.
    assert_eq!(s3.delete("low-space", "old").await.status, 204);
    assert_eq!(s3.get("low-space", "old").await.status, 404);
    let created: serde_json::Value = admin
        .call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(serde_json::json!({ "name": "ops" })),
        )
        .await
        .expect("create a key in space-low mode");
    assert_eq!(created["name"], "ops", "{created}");

    // Space returns: the reserve comes back and data is accepted again.
    std::fs::remove_file(&filler).unwrap();
    let t0 = Instant::now();
    while metad_space_low(&admin).await {
        assert!(t0.elapsed() < DEADLINE, "metad never left space-low mode");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metad_dir.join("space-reserve").exists(), "reserve restored");
    // The gateway learns it with its next cluster map (every 500 ms).
    while tc.c().gateway_sees_metad_space_low() {
        assert!(
            t0.elapsed() < DEADLINE,
            "the gateway never saw the mode end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s3.must_put("low-space", "new", data(2, 100_000)).await;
    s3.must_get_equal("low-space", "new", &data(2, 100_000))
        .await;
    tc.shutdown().await;
}
