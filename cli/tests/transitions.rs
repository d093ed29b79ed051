//! Lifecycle transitions (issue 14) on `weft dev`'s topology with one-second
//! days: 6 hot nodes in 3 zones and a cold zone `west` of 6 nodes.
//!
//! - On schedule: STANDARD → STANDARD_IA at 30 days (a relabel here: with
//!   no warm zone STANDARD_IA lives where STANDARD does, so no byte moves)
//!   → GLACIER_IR at 60 days (AWS keeps an object 30 days in an IA class;
//!   re-encoded onto west). Afterwards every shard
//!   is on a west node, the old shard files are gone, and the bytes, ETag,
//!   metadata, tags and version id are what they were; small objects and
//!   objects outside the rule's prefix stay.
//! - Clients never notice: GETs in a loop across the commits return exact
//!   bytes; an overwrite or a delete made while a transition runs wins
//!   (the move is superseded and its shards deleted); a noncurrent version
//!   moves under its own rule. At the end no shard file is left that the
//!   segment index does not name.
//!
//! Share of the normal run: about 100 s of the three tests together.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{data, TestCluster};
use weft_common::manifest::ObjectVersion;
use weft_common::{NodeId, SegmentId, ShardIndex};

const HOT_NODES: usize = 6;
const COLD_NODES: usize = 6;

async fn cluster() -> TestCluster {
    TestCluster::start_with(|c| {
        c.cold_nodes = COLD_NODES;
        c.metad.lifecycle_day_secs = 1;
        c.datad.repair_poll_ms = 100;
        c.datad.heartbeat_interval_ms = 200;
        // Released shards go half a second after their last read.
        c.datad.release_quiet_ms = 500;
        c.datad.release_hold_max_ms = 2_000;
        c.datad.gc_interval_ms = 3_600_000;
        c.metad.gc_grace_ms = 3_600_000;
    })
    .await
}

fn is_west(n: NodeId) -> bool {
    n.0 as usize > HOT_NODES
}

async fn put_rules(tc: &TestCluster, bucket: &str, xml: &str) {
    let r = tc
        .root_client()
        .request(
            "PUT",
            &format!("/{bucket}"),
            &[("lifecycle", "")],
            &[],
            xml.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn class_of(tc: &TestCluster, bucket: &str, key: &str) -> String {
    support::current_version(tc, bucket, key)
        .await
        .storage_class
}

/// Waits until `bucket/key` is in `class` (per metad), at most `within`.
async fn wait_class(
    tc: &TestCluster,
    bucket: &str,
    key: &str,
    class: &str,
    within: Duration,
) -> ObjectVersion {
    let deadline = Instant::now() + within;
    loop {
        let v = support::current_version(tc, bucket, key).await;
        if v.storage_class == class {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{bucket}/{key} still {} after {within:?}; lifecycle status: {}",
            v.storage_class,
            status(tc).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn status(tc: &TestCluster) -> serde_json::Value {
    let (ok, out, err) = support::weft_cli(tc.c(), &["lifecycle", "status", "--json"]).await;
    assert!(ok, "weft lifecycle status: {out}{err}");
    serde_json::from_str(&out).expect("status JSON")
}

/// Whether any running node still has a file of shard `index` of `segment`.
async fn file_exists(tc: &TestCluster, segment: SegmentId, index: u8) -> bool {
    for i in 0..tc.c().datad_count() {
        if let Some(store) = tc.c().datad_store(i) {
            if store
                .get_bytes(segment, ShardIndex(index), 0, None)
                .await
                .is_ok()
            {
                return true;
            }
        }
    }
    false
}

/// Waits until no node holds a file of any shard of `segments`.
async fn wait_files_gone(tc: &TestCluster, segments: &[SegmentId], width: u8) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for s in segments {
        for i in 0..width {
            while file_exists(tc, *s, i).await {
                assert!(
                    Instant::now() < deadline,
                    "shard {i} of replaced segment {s} still on disk"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn multipart(tc: &TestCluster, bucket: &str, key: &str, parts: &[Vec<u8>]) {
    let s3 = tc.root_client();
    let path = format!("/{bucket}/{key}");
    let r = s3
        .request(
            "POST",
            &path,
            &[("uploads", "")],
            &[("x-amz-meta-kind", "multipart")],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upload_id = support::xml_values(&r.text(), "UploadId").remove(0);
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, p) in parts.iter().enumerate() {
        let n = (i + 1).to_string();
        let r = s3
            .request(
                "PUT",
                &path,
                &[("partNumber", &n), ("uploadId", &upload_id)],
                &[],
                p.clone(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let etag = r.header("etag").expect("part etag");
        xml.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let r = s3
        .request(
            "POST",
            &path,
            &[("uploadId", &upload_id)],
            &[],
            xml.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

const SCHEDULE: &str = r#"<LifecycleConfiguration><Rule><ID>tier</ID><Status>Enabled</Status>
  <Filter><Prefix>data/</Prefix></Filter>
  <Transition><Days>30</Days><StorageClass>STANDARD_IA</StorageClass></Transition>
  <Transition><Days>60</Days><StorageClass>GLACIER_IR</StorageClass></Transition>
</Rule></LifecycleConfiguration>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_move_to_ia_then_glacier_ir_on_schedule_keeping_bytes_and_identity() {
    let tc = cluster().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("sched").await.status, 200);
    put_rules(&tc, "sched", SCHEDULE).await;
    let big = data(1, (5 << 20) + 17);
    let r = s3
        .request(
            "PUT",
            "/sched/data/big",
            &[],
            &[
                ("x-amz-meta-owner", "ana"),
                ("x-amz-tagging", "team=ml"),
                ("content-type", "application/x-weft"),
            ],
            big.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (p1, p2) = (data(2, 5 << 20), data(3, 1 << 20));
    multipart(&tc, "sched", "data/mp", &[p1.clone(), p2.clone()]).await;
    let mp: Vec<u8> = [p1, p2].concat();
    // Erasure coded (above the 64 KiB replica threshold) but below the
    // 128 KiB transition minimum.
    s3.must_put("sched", "data/small", data(4, 100 << 10)).await;
    s3.must_put("sched", "keep/big", data(5, 1 << 20)).await;
    let before_big = support::current_version(&tc, "sched", "data/big").await;
    let before_mp = support::current_version(&tc, "sched", "data/mp").await;
    assert_eq!(before_mp.segments.len(), 2, "one segment per part");
    let head_before = s3.head("sched", "data/big").await;

    // Day 30: STANDARD_IA, the same shards (a relabel).
    let ia = wait_class(
        &tc,
        "sched",
        "data/big",
        "STANDARD_IA",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        ia.segments.iter().map(|s| s.id).collect::<Vec<_>>(),
        before_big.segments.iter().map(|s| s.id).collect::<Vec<_>>(),
        "STANDARD_IA lives where STANDARD does here: nothing to move"
    );
    let head = s3.head("sched", "data/big").await;
    assert_eq!(
        head.header("x-amz-storage-class").as_deref(),
        Some("STANDARD_IA")
    );

    // Day 60: GLACIER_IR, re-encoded onto the cold zone.
    for (key, before) in [("data/big", &before_big), ("data/mp", &before_mp)] {
        let after = wait_class(&tc, "sched", key, "GLACIER_IR", Duration::from_secs(60)).await;
        assert_eq!(after.version_id, before.version_id);
        assert_eq!(after.etag, before.etag);
        assert_eq!(after.crc32c, before.crc32c);
        assert_eq!(after.user_metadata, before.user_metadata);
        assert_eq!(after.tags, before.tags);
        assert_eq!(after.part_sizes, before.part_sizes);
        assert_eq!(after.segments.len(), before.segments.len());
        for (a, b) in after.segments.iter().zip(&before.segments) {
            assert_ne!(a.id, b.id, "{key}: re-encoded into a new segment");
            assert_eq!((a.offset, a.len), (b.offset, b.len));
            for n in &a.shards {
                let n = n.expect("every new shard written");
                assert!(is_west(n), "{key}: a GLACIER_IR shard on hot node {n}");
            }
        }
        let old: Vec<SegmentId> = before.segments.iter().map(|s| s.id).collect();
        wait_files_gone(&tc, &old, 6).await;
    }
    s3.must_get_equal("sched", "data/big", &big).await;
    s3.must_get_equal("sched", "data/mp", &mp).await;
    let head = s3.head("sched", "data/big").await;
    assert_eq!(
        head.header("x-amz-storage-class").as_deref(),
        Some("GLACIER_IR")
    );
    for h in [
        "etag",
        "x-amz-meta-owner",
        "content-type",
        "content-length",
        "last-modified",
    ] {
        assert_eq!(head.header(h), head_before.header(h), "{h} changed");
    }
    let r = s3
        .request("GET", "/sched/data/big", &[("tagging", "")], &[], vec![])
        .await;
    assert!(r.text().contains("<Value>ml</Value>"), "{}", r.text());
    // Listings report the class too.
    let list = s3.list("sched", &[("list-type", "2")]).await.text();
    assert_eq!(
        support::xml_values(&list, "StorageClass"),
        ["GLACIER_IR", "GLACIER_IR", "STANDARD", "STANDARD"],
        "{list}"
    );
    // Below the transition minimum, and outside the prefix: untouched.
    assert_eq!(class_of(&tc, "sched", "data/small").await, "STANDARD");
    assert_eq!(class_of(&tc, "sched", "keep/big").await, "STANDARD");
    let st = status(&tc).await;
    let t = &st["transitions"];
    assert!(t["done"].as_u64().unwrap() >= 2, "{st}");
    assert!(t["relabeled"].as_u64().unwrap() >= 2, "{st}");
    assert_eq!(t["failed"], 0, "{st}");
    tc.shutdown().await;
}

/// Waits until the leader reports a transition running.
async fn wait_running(tc: &TestCluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(tc).await;
        if st["transitions"]["running"].as_u64().unwrap_or(0) >= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "no transition started: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every shard file on every node belongs to a segment the index names.
async fn no_stray_files(tc: &TestCluster) -> Result<(), String> {
    match index_and_strays(tc.c()).await.1.first() {
        None => Ok(()),
        Some((node, seg, idx)) => Err(format!("node {node} holds shard {idx} of unindexed {seg}")),
    }
}

const HOT: &str = r#"<LifecycleConfiguration><Rule><ID>cold</ID><Status>Enabled</Status>
  <Filter><Prefix>hot/</Prefix></Filter>
  <Transition><Days>0</Days><StorageClass>GLACIER_IR</StorageClass></Transition>
  <NoncurrentVersionTransition><NoncurrentDays>5</NoncurrentDays><StorageClass>GLACIER_IR</StorageClass></NoncurrentVersionTransition>
</Rule></LifecycleConfiguration>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_across_transitions_are_exact_and_overwrites_and_deletes_win() {
    let tc = cluster().await;
    let s3 = tc.root_client();
    // Transitions write at half the repair rate, at least 1 MiB/s per
    // shard stream (6 MiB/s for 4+2): a 24 MiB object (36 MiB of shards)
    // takes about six seconds to move, long enough to act while it moves.
    let (ok, out, err) =
        support::weft_cli(tc.c(), &["cluster", "repair", "--rate", "2MiB/s"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(s3.mb("hot").await.status, 200);
    let r = s3
        .request(
            "PUT",
            "/hot",
            &[("versioning", "")],
            &[],
            b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>".to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = data(10, 24 << 20);

    // An overwrite while the first version moves: the new version is
    // current and STANDARD; the old one is noncurrent and moves later
    // under its own rule; bytes exact throughout.
    s3.must_put("hot", "hot/over", body.clone()).await;
    let first = support::current_version(&tc, "hot", "hot/over").await;
    put_rules(&tc, "hot", HOT).await;
    wait_running(&tc).await;
    let newer = data(11, 24 << 20);
    s3.must_put("hot", "hot/over", newer.clone()).await;
    // The running move was of the version now noncurrent: its commit is
    // refused, nothing moved, and that version stays STANDARD until its
    // noncurrent rule (5 days) is due.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(&tc).await;
        let t = &st["transitions"];
        if t["superseded"].as_u64().unwrap() >= 1 {
            assert_eq!(t["done"], 0, "{st}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the move was not superseded: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = s3
        .request(
            "HEAD",
            "/hot/hot/over",
            &[("versionId", first.version_label.as_deref().unwrap())],
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.header("x-amz-storage-class"), None, "still STANDARD");
    // Reads in a loop until both versions have moved.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (s3, stop) = (s3.clone(), stop.clone());
        let (newer, old_label) = (newer.clone(), first.version_label.clone().unwrap());
        let old = body.clone();
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s3.must_get_equal("hot", "hot/over", &newer).await;
                let r = s3
                    .request(
                        "GET",
                        "/hot/hot/over",
                        &[("versionId", &old_label)],
                        &[],
                        vec![],
                    )
                    .await;
                assert_eq!(r.status, 200, "{}", r.text());
                assert!(r.body == old, "the old version read wrong bytes");
                reads += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            reads
        })
    };
    wait_class(
        &tc,
        "hot",
        "hot/over",
        "GLACIER_IR",
        Duration::from_secs(90),
    )
    .await;
    // The old version: noncurrent for a day, then moved.
    let deadline = Instant::now() + Duration::from_secs(90);
    let label = first.version_label.clone().unwrap();
    loop {
        let r = s3
            .request(
                "HEAD",
                "/hot/hot/over",
                &[("versionId", &label)],
                &[],
                vec![],
            )
            .await;
        if r.header("x-amz-storage-class").as_deref() == Some("GLACIER_IR") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "noncurrent version never moved: {}",
            status(&tc).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.expect("reader");
    assert!(reads > 0);
    s3.must_get_equal("hot", "hot/over", &newer).await;

    // A delete while a transition runs: the key is gone, the move's
    // shards too.
    s3.must_put("hot", "hot/gone", data(12, 24 << 20)).await;
    wait_running(&tc).await;
    assert_eq!(s3.delete("hot", "hot/gone").await.status, 204);
    assert_eq!(s3.get("hot", "hot/gone").await.status, 404);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status(&tc).await;
        let t = &st["transitions"];
        if t["superseded"].as_u64().unwrap() >= 2 && t["running"] == 0 && t["queued"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "moves not superseded: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The delete marker's version moves too (noncurrent); wait for quiet,
    // then no file is outside the index (the superseded moves deleted
    // theirs, the committed ones released the old).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match no_stray_files(&tc).await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tc.shutdown().await;
}

const ALL_COLD: &str = r#"<LifecycleConfiguration><Rule><ID>cold</ID><Status>Enabled</Status>
  <Filter><Prefix>m/</Prefix></Filter>
  <Transition><Days>0</Days><StorageClass>GLACIER_IR</StorageClass></Transition>
</Rule></LifecycleConfiguration>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_metad_leader_and_a_data_node_mid_transition_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = weft_cli::dev_cluster::DevClusterConfig::ephemeral(dir.path());
    cfg.metad_voters = 3;
    cfg.cold_nodes = COLD_NODES;
    cfg.metad.lifecycle_day_secs = 1;
    cfg.datad.repair_poll_ms = 100;
    cfg.datad.heartbeat_interval_ms = 200;
    cfg.datad.release_quiet_ms = 500;
    cfg.datad.release_hold_max_ms = 2_000;
    // Garbage collection runs every second and takes unreferenced files
    // ten seconds old: whatever an interrupted move leaves is collected
    // within the test.
    cfg.metad.upload_max_age_ms = 5_000;
    cfg.metad.gc_grace_ms = 10_000;
    cfg.datad.gc_interval_ms = 1_000;
    let mut c = weft_cli::dev_cluster::DevCluster::start(cfg)
        .await
        .expect("start a 3-voter tiered cluster");
    let creds = c.credentials().clone();
    let s3 = support::S3Client::new(
        &c.s3_endpoint(),
        &creds.access_key,
        &creds.secret_key,
        c.region(),
    );
    assert_eq!(s3.mb("fault").await.status, 200);
    let objects: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            (
                format!("m/{i}"),
                data(100 + i, (2 << 20) + i as usize * 300_000),
            )
        })
        .collect();
    for (k, body) in &objects {
        s3.must_put("fault", k, body.clone()).await;
    }
    let r = s3
        .request(
            "PUT",
            "/fault",
            &[("lifecycle", "")],
            &[],
            ALL_COLD.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Mid-move: the leader and a cold node (a target of the new shards).
    let deadline = Instant::now() + Duration::from_secs(30);
    let metad = c.metad_client();
    loop {
        use weft_common::rpc::{Query, QueryResult};
        let q = Query::LifecyclePreview {
            bucket: "fault".into(),
            max_keys: 1,
        };
        if let Ok(QueryResult::LifecyclePreview { transitions, .. }) = metad.query(&q).await {
            if transitions.running > 0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no transition started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = c.metad_leader().expect("a leader");
    c.stop_metad(leader).await.unwrap();
    let cold = HOT_NODES + 2;
    c.stop_datad(cold).await.unwrap();
    c.wait_metad_leader(Duration::from_secs(15)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.start_metad(leader).await.unwrap();
    c.start_datad(cold).await.unwrap();

    // Every object ends in GLACIER_IR, exactly once, with its bytes.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (k, body) in &objects {
        loop {
            let v = object(&c, "fault", k).await;
            if v.storage_class == "GLACIER_IR" {
                for n in v.segments.iter().flat_map(|s| s.shards.iter()).flatten() {
                    assert!(is_west(*n), "{k}: a GLACIER_IR shard on hot node {n}");
                }
                break;
            }
            assert!(Instant::now() < deadline, "{k} still {}", v.storage_class);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        s3.must_get_equal("fault", k, body).await;
    }
    // The index knows each segment once, under GLACIER_IR, and after
    // garbage collection no node holds a file outside it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (indexed, stray) = index_and_strays(&c).await;
        let hot: Vec<_> = indexed
            .iter()
            .filter(|(_, r)| r.bucket == "fault" && r.class != "GLACIER_IR")
            .collect();
        assert!(hot.is_empty(), "segments left outside GLACIER_IR: {hot:?}");
        assert_eq!(
            indexed.iter().filter(|(_, r)| r.bucket == "fault").count(),
            objects.len()
        );
        if stray.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "files outside the index: {stray:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    c.shutdown().await;
}

async fn object(c: &weft_cli::dev_cluster::DevCluster, bucket: &str, key: &str) -> ObjectVersion {
    use weft_common::rpc::{Query, QueryResult};
    let q = Query::Object {
        bucket: bucket.into(),
        key: key.into(),
    };
    let mut tries = 0;
    loop {
        match c.metad_client().query(&q).await {
            Ok(QueryResult::Object {
                version: Some(v), ..
            }) => return v,
            // A leader change in progress: the client retries, and so do we.
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("{bucket}/{key}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => panic!("{bucket}/{key}: {other:?}"),
        }
    }
}

/// The segment index, and the shard files no index entry names.
async fn index_and_strays(
    c: &weft_cli::dev_cluster::DevCluster,
) -> (
    Vec<(SegmentId, weft_common::repair::SegmentRecord)>,
    Vec<(usize, SegmentId, ShardIndex)>,
) {
    use weft_common::rpc::{Query, QueryResult};
    let mut all = vec![];
    let mut after = None;
    loop {
        let QueryResult::Segments { segments, more } = c
            .metad_client()
            .query(&Query::Segments { after, max: 1000 })
            .await
            .expect("segments")
        else {
            panic!("not segments")
        };
        after = segments.last().map(|(id, _)| *id);
        all.extend(segments);
        if !more {
            break;
        }
    }
    let known: BTreeSet<SegmentId> = all.iter().map(|(id, _)| *id).collect();
    let mut stray = vec![];
    for i in 0..c.datad_count() {
        let Some(store) = c.datad_store(i) else {
            continue;
        };
        for (seg, idx) in store.inventory(Duration::ZERO).await.expect("inventory") {
            if !known.contains(&seg) {
                stray.push((i + 1, seg, idx));
            }
        }
    }
    (all, stray)
}
