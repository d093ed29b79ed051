//! The durability engine on a 9-node, 3-zone in-process cluster: repair after
//! node loss, scrub of bit rot, drain and removal, rebalance onto new nodes,
//! garbage collection, and a status that tells the truth throughout.

mod support;

use futures::StreamExt;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::{data, S3Client, TestCluster};
use weft_cli::admin_client::AdminClient;
use weft_common::repair::DurabilityStatus;
use weft_common::rpc::{Query, QueryResult};
use weft_common::NodeId;

/// Short timers so failures are detected and repaired in seconds.
async fn nine_nodes(
    tweak: impl FnOnce(&mut weft_cli::dev_cluster::DevClusterConfig),
) -> TestCluster {
    TestCluster::start_with(|c| {
        c.datad_count = 9;
        c.metad.node_suspect_ms = 600;
        c.metad.node_grace_ms = 2_000;
        c.metad.durability_scan_ms = 200;
        c.metad.repair_task_lease_ms = 15_000;
        c.datad.heartbeat_interval_ms = 200;
        c.datad.repair_poll_ms = 100;
        // Off unless a test turns them on.
        c.datad.scrub_period_ms = 3_600_000;
        c.datad.gc_interval_ms = 3_600_000;
        c.metad.gc_grace_ms = 3_600_000;
        tweak(c);
    })
    .await
}

fn admin(tc: &TestCluster) -> AdminClient {
    let c = tc.c();
    c.admin_client()
}

async fn status(a: &AdminClient) -> DurabilityStatus {
    a.call(reqwest::Method::GET, "/v1/repair/status", None)
        .await
        .expect("repair status")
}

/// Polls the status until `done` holds; returns every report seen.
async fn wait_status(
    a: &AdminClient,
    timeout: Duration,
    what: &str,
    done: impl Fn(&DurabilityStatus) -> bool,
) -> Vec<DurabilityStatus> {
    let start = Instant::now();
    let mut seen = vec![];
    loop {
        let st = status(a).await;
        let ok = done(&st);
        seen.push(st);
        if ok {
            return seen;
        }
        assert!(
            start.elapsed() < timeout,
            "waited {timeout:?} for {what}; last status: {:#?}",
            seen.last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(key, seed, len)` for `n` small objects (replicated) and `big` erasure
/// coded ones of 100 KiB to 3 MiB.
fn objects(n: usize, big: usize) -> Vec<(String, u64, usize)> {
    let mut out: Vec<(String, u64, usize)> = (0..n)
        .map(|i| (format!("small/{i:05}"), i as u64, 1024 + (i * 97) % 7000))
        .collect();
    out.extend((0..big).map(|i| {
        (
            format!("big/{i:03}"),
            100_000 + i as u64,
            100_000 + (i * 377_777) % 3_000_000,
        )
    }));
    out
}

async fn put_all(s3: &S3Client, bucket: &str, objs: &[(String, u64, usize)]) {
    futures::stream::iter(objs.iter())
        .for_each_concurrent(16, |(k, seed, len)| async move {
            s3.must_put(bucket, k, data(*seed, *len)).await;
        })
        .await;
}

async fn verify_all(s3: &S3Client, bucket: &str, objs: &[(String, u64, usize)]) {
    futures::stream::iter(objs.iter())
        .for_each_concurrent(16, |(k, seed, len)| async move {
            s3.must_get_equal(bucket, k, &data(*seed, *len)).await;
        })
        .await;
}

/// Every object's manifest (with current placement) from metad: asserts
/// each segment has all its shards on distinct nodes, none in `gone`.
async fn assert_full_placement(
    tc: &TestCluster,
    bucket: &str,
    objs: &[(String, u64, usize)],
    gone: &[u64],
) {
    let metad = tc.c().metad_client();
    for (k, _, _) in objs {
        let q = Query::Object {
            bucket: bucket.into(),
            key: k.clone(),
        };
        let Ok(QueryResult::Object {
            version: Some(v), ..
        }) = metad.query(&q).await
        else {
            panic!("{k} has no current version");
        };
        for seg in &v.segments {
            let nodes: Vec<NodeId> = seg
                .shards
                .iter()
                .map(|s| s.expect("every shard placed"))
                .collect();
            assert_eq!(nodes.len(), seg.layout.width(), "{k}");
            let distinct: HashSet<_> = nodes.iter().collect();
            assert_eq!(
                distinct.len(),
                nodes.len(),
                "{k}: two shards on one node: {nodes:?}"
            );
            for g in gone {
                assert!(
                    !nodes.contains(&NodeId(*g)),
                    "{k} still has a shard on node {g}"
                );
            }
        }
    }
}

fn full(st: &DurabilityStatus) -> bool {
    st.healthy && st.classes.iter().all(|c| c.full == c.segments) && st.backlog_bytes == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_repaired_and_the_status_tells_the_truth() {
    let mut tc = nine_nodes(|_| {}).await;
    let s3 = tc.root_client();
    let a = admin(&tc);
    assert_eq!(s3.mb("dur").await.status, 200);
    let objs = objects(2_000, 40);
    put_all(&s3, "dur", &objs).await;
    let before = wait_status(&a, Duration::from_secs(10), "healthy after writes", full).await;
    let total: u64 = before
        .last()
        .unwrap()
        .classes
        .iter()
        .map(|c| c.segments)
        .sum();
    assert_eq!(total, objs.len() as u64, "one segment per object");
    let on_node_1 = before
        .last()
        .unwrap()
        .nodes
        .iter()
        .find(|n| n.node == NodeId(1))
        .unwrap()
        .shards;
    assert!(on_node_1 > 100, "node 1 holds shards: {on_node_1}");

    tc.c_mut().stop_datad(0).await.unwrap();
    // Degraded first (suspect, then down and repairing), never healthy
    // while node 1's shards are not yet rebuilt.
    let seen = wait_status(&a, Duration::from_secs(10), "degraded", |st| {
        st.state == "degraded"
    })
    .await;
    assert!(seen.iter().all(|st| st.state != "unreadable"));
    let degraded = seen.last().unwrap();
    assert!(!degraded.healthy);
    assert!(degraded.backlog_bytes > 0);
    let seen = wait_status(&a, Duration::from_secs(120), "repaired", full).await;
    for st in &seen {
        assert_ne!(st.state, "unreadable", "{st:#?}");
        if st.healthy {
            assert_eq!(st.backlog_bytes, 0, "healthy with a backlog: {st:#?}");
        }
    }
    let after = seen.last().unwrap();
    let dead = after.nodes.iter().find(|n| n.node == NodeId(1)).unwrap();
    assert_eq!(dead.state, "down");
    assert_eq!(dead.shards, 0, "every shard moved off the dead node");
    assert_full_placement(&tc, "dur", &objs, &[1]).await;
    verify_all(&s3, "dur", &objs).await;

    // With metad gone the status still answers, from the last report, flagged.
    tc.c_mut().stop_metad(0).await.unwrap();
    let stale = status(&a).await;
    assert!(stale.stale, "{stale:#?}");
    assert!(stale.stale_reason.is_some());
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_m_nodes_twice_loses_nothing() {
    let mut tc = nine_nodes(|_| {}).await;
    let s3 = tc.root_client();
    let a = admin(&tc);
    assert_eq!(s3.mb("twice").await.status, 200);
    let objs = objects(400, 30);
    put_all(&s3, "twice", &objs).await;
    wait_status(&a, Duration::from_secs(10), "healthy", full).await;
    // Nodes are dealt round-robin over zones: 1,4,7 in zone-a, 2,5,8 in
    // zone-b, 3,6,9 in zone-c. Kill two at once, in different zones.
    tc.c_mut().stop_datad(0).await.unwrap();
    tc.c_mut().stop_datad(1).await.unwrap();
    let down = |st: &DurabilityStatus, n: usize| {
        st.nodes.iter().filter(|x| x.state == "down").count() == n
    };
    wait_status(
        &a,
        Duration::from_secs(120),
        "repaired after two losses",
        |st| down(st, 2) && full(st),
    )
    .await;
    assert_full_placement(&tc, "twice", &objs, &[1, 2]).await;
    verify_all(&s3, "twice", &objs).await;
    // Two more: five nodes are left, too few for 4+2 on distinct nodes, so
    // full redundancy is impossible, but nothing may be lost.
    tc.c_mut().stop_datad(3).await.unwrap();
    tc.c_mut().stop_datad(4).await.unwrap();
    let seen = wait_status(
        &a,
        Duration::from_secs(60),
        "losses noticed and repaired as far as possible",
        |st| st.nodes.iter().filter(|n| n.state == "down").count() == 4 && st.tasks_in_flight == 0,
    )
    .await;
    let last = seen.last().unwrap();
    assert_ne!(last.state, "unreadable", "{last:#?}");
    assert!(!last.healthy, "five nodes cannot hold 4+2 fully: {last:#?}");
    verify_all(&s3, "twice", &objs).await;
    tc.shutdown().await;
}

/// Flips one byte in a data block of the shard file.
fn flip(path: &std::path::Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x5a;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

async fn metric_sum(tc: &TestCluster, name: &str) -> u64 {
    let mut sum = 0;
    for i in 0..tc.c().datad_count() {
        let Some(addr) = tc.c().datad_addr(i) else {
            continue;
        };
        let text = tc
            .c()
            .internal_http()
            .get(tc.c().internal_url(addr, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix(&format!("{name}_total ")) {
                sum += v.trim().parse::<u64>().unwrap();
            }
        }
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_finds_every_flipped_bit_and_repair_fixes_it() {
    let tc = nine_nodes(|c| {
        c.datad.scrub_period_ms = 1_000;
        c.datad.scrub_rate_bytes_per_sec = 256 << 20;
    })
    .await;
    let s3 = tc.root_client();
    let a = admin(&tc);
    assert_eq!(s3.mb("rot").await.status, 200);
    let objs = objects(200, 20);
    put_all(&s3, "rot", &objs).await;
    wait_status(&a, Duration::from_secs(10), "healthy", full).await;
    let baseline = metric_sum(&tc, "weft_datad_scrub_corrupt").await;
    assert_eq!(baseline, 0);

    // Flip a byte in a random block of 12 random shard files, one per segment.
    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut flipped = vec![];
    let mut segments_hit = HashSet::new();
    while flipped.len() < 12 {
        let node = (next() % 9) as usize;
        let store = tc.c().datad_store(node).unwrap();
        let files = store.inventory(Duration::ZERO).await.unwrap();
        let (seg, idx) = files[(next() % files.len() as u64) as usize];
        if !segments_hit.insert(seg) {
            continue;
        }
        let path = store.path_of(seg, idx);
        let len = std::fs::metadata(&path).unwrap().len();
        // Past the 64-byte header, anywhere in the blocks.
        let at = 64 + next() % (len - 64);
        flip(&path, at);
        flipped.push((node, seg, idx, path));
    }
    // The scrubber finds each one (no reads run meanwhile, so it is the
    // only detector), and repair brings the cluster back to full.
    let start = Instant::now();
    while metric_sum(&tc, "weft_datad_scrub_corrupt").await < flipped.len() as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "scrub found {} of {}",
            metric_sum(&tc, "weft_datad_scrub_corrupt").await,
            flipped.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric_sum(&tc, "weft_datad_scrub_corrupt").await,
        flipped.len() as u64
    );
    wait_status(&a, Duration::from_secs(60), "repaired after rot", full).await;
    // Each damaged file is gone or was rewritten whole by repair.
    for (node, seg, idx, path) in &flipped {
        if path.exists() {
            let store = tc.c().datad_store(*node).unwrap();
            store
                .get_bytes(*seg, *idx, 0, None)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "damaged shard {seg}.{idx} on node {} still bad: {e}",
                        node + 1
                    )
                });
        }
    }
    assert_full_placement(&tc, "rot", &objs, &[]).await;
    verify_all(&s3, "rot", &objs).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drained_under_load_ends_empty_and_can_be_removed() {
    let tc = nine_nodes(|_| {}).await;
    let s3 = tc.root_client();
    let a = admin(&tc);
    assert_eq!(s3.mb("drain").await.status, 200);
    let objs = objects(300, 20);
    put_all(&s3, "drain", &objs).await;
    wait_status(&a, Duration::from_secs(10), "healthy", full).await;

    // Removing a node that still holds shards is refused.
    let refused: anyhow::Result<serde_json::Value> = a
        .call(
            reqwest::Method::POST,
            "/v1/nodes/5/remove",
            Some(serde_json::json!({})),
        )
        .await
        .map_err(anyhow::Error::from);
    let msg = format!("{:#}", refused.unwrap_err());
    assert!(msg.contains("drain it first"), "{msg}");

    // Load: writes and reads of fresh keys, all the while.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let s3 = s3.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut failures = vec![];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 5_000 {
                let key = format!("load/{n}");
                let body = data(1_000_000 + n, if n % 5 == 0 { 300_000 } else { 5_000 });
                let r = s3.put("drain", &key, body.clone()).await;
                if r.status != 200 {
                    failures.push(format!("PUT {key}: {}", r.status));
                }
                let g = s3.get("drain", &key).await;
                if g.status != 200 || g.body != body {
                    failures.push(format!("GET {key}: {}", g.status));
                }
                n += 1;
            }
            (n, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _: serde_json::Value = a
        .call(
            reqwest::Method::POST,
            "/v1/nodes/5/drain",
            Some(serde_json::json!({})),
        )
        .await
        .unwrap();
    wait_status(&a, Duration::from_secs(120), "node 5 drained", |st| {
        st.nodes
            .iter()
            .any(|n| n.node == NodeId(5) && n.shards == 0 && n.state == "draining")
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ops, failures) = load.await.unwrap();
    assert!(ops > 3, "the load ran: {ops} rounds");
    assert!(
        failures.is_empty(),
        "requests failed during the drain: {failures:?}"
    );
    // Its files are gone too (old copies are deleted once moved).
    let left = tc
        .c()
        .datad_store(4)
        .unwrap()
        .inventory(Duration::ZERO)
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "node 5 still has {} shard files",
        left.len()
    );

    let r: serde_json::Value = a
        .call(
            reqwest::Method::POST,
            "/v1/nodes/5/remove",
            Some(serde_json::json!({})),
        )
        .await
        .unwrap();
    assert_eq!(r["admin"], "removed");
    let st = wait_status(&a, Duration::from_secs(10), "healthy without node 5", full).await;
    assert_eq!(
        st.last()
            .unwrap()
            .nodes
            .iter()
            .find(|n| n.node == NodeId(5))
            .unwrap()
            .state,
        "removed"
    );
    verify_all(&s3, "drain", &objs).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_nodes_fill_until_usage_is_even() {
    let mut tc = nine_nodes(|c| {
        c.datad_capacity_bytes = 16 << 20;
    })
    .await;
    let s3 = tc.root_client();
    let a = admin(&tc);
    assert_eq!(s3.mb("fill").await.status, 200);
    // About 55% full: 48 objects of 1 MiB at 1.5x, over 144 MiB.
    let objs: Vec<(String, u64, usize)> = (0..48)
        .map(|i| (format!("f/{i:02}"), 7_000 + i, 1 << 20))
        .collect();
    put_all(&s3, "fill", &objs).await;
    wait_status(&a, Duration::from_secs(10), "healthy", full).await;
    for zone in ["zone-a", "zone-b", "zone-c"] {
        tc.c_mut().add_datad(zone).await.unwrap();
    }
    let spread = |st: &DurabilityStatus| {
        let utils: Vec<f64> = st
            .nodes
            .iter()
            .map(|n| n.stored_bytes as f64 / n.capacity_bytes as f64)
            .collect();
        let mean = utils.iter().sum::<f64>() / utils.len() as f64;
        let max = utils.iter().cloned().fold(f64::MIN, f64::max);
        let min = utils.iter().cloned().fold(f64::MAX, f64::min);
        (max - min) / mean
    };
    let seen = wait_status(
        &a,
        Duration::from_secs(120),
        "usage within 10% across 12 nodes",
        |st| st.nodes.len() == 12 && st.tasks_in_flight == 0 && spread(st) <= 0.10,
    )
    .await;
    let last = seen.last().unwrap();
    assert!(last.healthy, "{last:#?}");
    for n in &last.nodes {
        assert!(n.shards > 0, "node {} got nothing", n.node);
    }
    assert_full_placement(&tc, "fill", &objs, &[]).await;
    verify_all(&s3, "fill", &objs).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_collected_after_the_grace_period() {
    let tc = nine_nodes(|c| {
        c.datad.gc_interval_ms = 300;
        c.metad.gc_grace_ms = 3_000;
        c.metad.upload_max_age_ms = 1_500;
        // The gateway's release queues take nothing: only the collector
        // can give this space back.
        c.gateway.release_queue_max = 0;
    })
    .await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("gcb").await.status, 200);
    let used = |tc: &TestCluster| -> u64 {
        (0..tc.c().datad_count())
            .filter_map(|i| tc.c().datad_store(i))
            .map(|s| s.used_bytes())
            .sum()
    };
    assert_eq!(used(&tc), 0);

    // Kept objects, the baseline (once nothing is moving).
    let kept = objects(20, 3);
    put_all(&s3, "gcb", &kept).await;
    let a = admin(&tc);
    wait_status(&a, Duration::from_secs(10), "settled", |st| {
        full(st) && st.tasks_in_flight == 0
    })
    .await;
    let baseline = used(&tc);
    assert!(baseline > 0);

    // Deleted objects.
    let doomed = vec![
        ("del/a".to_string(), 1u64, 900_000usize),
        ("del/b".to_string(), 2, 20_000),
    ];
    put_all(&s3, "gcb", &doomed).await;
    for (k, _, _) in &doomed {
        assert_eq!(s3.delete("gcb", k).await.status, 204);
    }
    // An aborted multipart upload with two parts.
    let r = s3
        .request("POST", "/gcb/mp", &[("uploads", "")], &[], vec![])
        .await;
    let upload_id = support::xml_values(&r.text(), "UploadId").remove(0);
    for part in ["1", "2"] {
        let r = s3
            .request(
                "PUT",
                "/gcb/mp",
                &[("partNumber", part), ("uploadId", &upload_id)],
                &[],
                data(9, 700_000),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        s3.request(
            "DELETE",
            "/gcb/mp",
            &[("uploadId", &upload_id)],
            &[],
            vec![]
        )
        .await
        .status,
        204
    );
    // A PUT whose client disconnects midway (the gateway may already have
    // written the first shards).
    let r = s3
        .put_aborted("gcb", "cut", 3 << 20, data(3, 1_500_000))
        .await;
    assert_ne!(r.status, 200);
    assert_eq!(s3.head("gcb", "cut").await.status, 404);
    // Shards of an upload that never committed: what a gateway that
    // crashed mid-PUT leaves behind.
    let orphan = weft_common::SegmentId(0xdead_beef);
    let addr = tc.c().datad_addr(2).unwrap();
    tc.c()
        .datad_client()
        .unwrap()
        .put_shard(
            &addr.to_string(),
            orphan,
            weft_common::ShardIndex(0),
            100_000,
            futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
                vec![1u8; 100_000],
            ))]),
        )
        .await
        .unwrap();
    assert!(used(&tc) > baseline);

    let start = Instant::now();
    while used(&tc) != baseline {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "usage {} did not return to the baseline {baseline}",
            used(&tc)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What was kept is intact, at full redundancy.
    let st = status(&a).await;
    assert!(full(&st), "{st:#?}");
    assert_full_placement(&tc, "gcb", &kept, &[]).await;
    verify_all(&s3, "gcb", &kept).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_meets_a_bad_shard_queues_it_for_repair() {
    // Scrub is off: only the read can notice.
    let tc = nine_nodes(|_| {}).await;
    let s3 = tc.root_client();
    let a = admin(&tc);
    assert_eq!(s3.mb("readrot").await.status, 200);
    let body = data(42, 2_000_000);
    s3.must_put("readrot", "obj", body.clone()).await;
    wait_status(&a, Duration::from_secs(10), "healthy", |st| {
        full(st) && st.tasks_in_flight == 0
    })
    .await;
    let repairs_before = metric_sum(&tc, "weft_datad_repair_tasks_ok").await;
    // Damage data shard 0, which every full read needs.
    let index = weft_common::ShardIndex(0);
    let (segment, holder) = support::shard_placement(&tc, "readrot", "obj", index).await;
    let holder = holder.expect("shard 0 is placed after the PUT");
    let store = tc.c().datad_store(holder.0 as usize - 1).unwrap();
    let shard = store.get_bytes(segment, index, 0, None).await.unwrap();
    flip(&store.path_of(segment, index), 64 + 10);
    assert!(
        store.get_bytes(segment, index, 0, None).await.is_err(),
        "the flipped byte fails its crc32c"
    );
    // The read is still correct (parity), and reports the shard.
    s3.must_get_equal("readrot", "obj", &body).await;
    // Repair rebuilds it: moved to another node or rewritten in place,
    // shard 0 verifies again and holds its original bytes.
    let deadline = Instant::now() + Duration::from_secs(30);
    support::wait_shard_restored(
        &tc,
        "readrot",
        "obj",
        index,
        &shard,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await;
    // The repair worker writes the shard and commits the move before it
    // counts the task: the shard can verify a moment before the counter
    // moves, so poll it under the same deadline.
    loop {
        let repairs_after = metric_sum(&tc, "weft_datad_repair_tasks_ok").await;
        if repairs_after > repairs_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no repair task committed ({repairs_before} before, {repairs_after} after)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_status(&a, Duration::from_secs(30), "full redundancy again", |st| {
        full(st) && st.tasks_in_flight == 0
    })
    .await;
    let gw_metrics = tc
        .c()
        .internal_http()
        .get(format!("{}/metrics", tc.c().admin_endpoint()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        gw_metrics.contains("weft_gateway_bad_shards_reported_total 1"),
        "{gw_metrics}"
    );
    s3.must_get_equal("readrot", "obj", &body).await;
    tc.shutdown().await;
}
