//! Tiering by access (issue 14) on `weft dev`'s topology — 6 hot nodes in 3
//! zones and a cold zone `west` of 6 — with 300 ms days, so Intelligent-
//! Tiering's 30 and 90 days take 9 and 27 seconds (the margin a read
//! object has before it would look idle: 9 s, against reads every 250 ms;
//! 12 s for the 40-day unread rule).
//!
//! - INTELLIGENT_TIERING: an object read every quarter second stays in the
//!   frequent tier on hot nodes; an unread one goes to the infrequent tier
//!   and then to archive instant access, its shards re-encoded onto west,
//!   while S3 still reports INTELLIGENT_TIERING and the bytes, ETag and
//!   version are unchanged; reading it again brings it back to the
//!   frequent tier on hot nodes. An object below 128 KiB (but above the
//!   64 KiB replica threshold, so erasure coded) is not monitored.
//! - The unread rule (`weft lifecycle set --unread-days N --to CLASS`) on a
//!   STANDARD bucket: the unread object moves to GLACIER_IR on west, the
//!   read one stays; a rule naming an undefined class is refused.
//!
//! Share of the normal run: about 40 s.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{data, S3Client, TestCluster};
use weft_common::lifecycle::tiering::AccessTier;
use weft_common::manifest::ObjectVersion;
use weft_common::NodeId;

const HOT_NODES: usize = 6;

fn is_west(n: NodeId) -> bool {
    n.0 as usize > HOT_NODES
}

fn shards(v: &ObjectVersion) -> Vec<NodeId> {
    v.segments
        .iter()
        .flat_map(|s| s.shards.iter().flatten().copied())
        .collect()
}

async fn put_it(s3: &S3Client, bucket: &str, key: &str, body: Vec<u8>) {
    let r = s3
        .request(
            "PUT",
            &format!("/{bucket}/{key}"),
            &[],
            &[("x-amz-storage-class", "INTELLIGENT_TIERING")],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Reads `key` every quarter second, checking its bytes, until stopped;
/// counts the reads.
fn keep_reading(
    s3: S3Client,
    bucket: &'static str,
    key: &'static str,
    body: Vec<u8>,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            s3.must_get_equal(bucket, key, &body).await;
            reads.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// Polls metad until `want` accepts `bucket/key`'s current version.
async fn wait_for(
    tc: &TestCluster,
    bucket: &str,
    key: &str,
    what: &str,
    within: Duration,
    want: impl Fn(&ObjectVersion) -> bool,
) -> ObjectVersion {
    let deadline = Instant::now() + within;
    loop {
        let v = support::current_version(tc, bucket, key).await;
        if want(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{bucket}/{key} not {what} after {within:?}: class {} tier {:?} last access {:?}",
            v.storage_class,
            v.tier,
            v.last_access_ms
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_objects_demote_to_cold_read_ones_stay_and_a_read_promotes() {
    let tc = TestCluster::start_with(|c| {
        c.cold_nodes = 6;
        c.metad.lifecycle_day_ms = 300;
        c.datad.repair_poll_ms = 100;
        c.datad.heartbeat_interval_ms = 200;
        c.datad.release_quiet_ms = 500;
        c.datad.release_hold_max_ms = 2_000;
    })
    .await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("tiered").await.status, 200);
    assert_eq!(s3.mb("plain").await.status, 200);
    let (hot, cold, small) = (data(1, 1 << 20), data(2, 3 << 20), data(3, 100 << 10));
    put_it(&s3, "tiered", "hot", hot.clone()).await;
    put_it(&s3, "tiered", "cold", cold.clone()).await;
    put_it(&s3, "tiered", "small", small.clone()).await;
    let (plain_read, plain_idle) = (data(4, 1 << 20), data(5, 1 << 20));
    s3.must_put("plain", "read", plain_read.clone()).await;
    s3.must_put("plain", "idle", plain_idle.clone()).await;
    let before = support::current_version(&tc, "tiered", "cold").await;

    // The unread rule: an undefined class is refused, naming it.
    let (ok, out, err) = support::weft_cli(
        tc.c(),
        &[
            "lifecycle",
            "set",
            "plain",
            "--unread-days",
            "40",
            "--to",
            "GLACIER",
        ],
    )
    .await;
    assert!(!ok, "a rule to an undefined class was accepted: {out}");
    assert!(err.contains("GLACIER is not defined"), "{err}");
    let (ok, out, err) = support::weft_cli(
        tc.c(),
        &[
            "lifecycle",
            "set",
            "plain",
            "--unread-days",
            "40",
            "--to",
            "GLACIER_IR",
        ],
    )
    .await;
    assert!(ok, "weft lifecycle set: {out}{err}");

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers = [
        keep_reading(
            s3.clone(),
            "tiered",
            "hot",
            hot.clone(),
            stop.clone(),
            reads.clone(),
        ),
        keep_reading(
            s3.clone(),
            "plain",
            "read",
            plain_read.clone(),
            stop.clone(),
            reads.clone(),
        ),
    ];

    // 30 unread days: the infrequent tier (placed as STANDARD_IA, which
    // without a warm zone is where STANDARD is: a relabel); 90: archive
    // instant access, on west.
    wait_for(
        &tc,
        "tiered",
        "cold",
        "infrequent",
        Duration::from_secs(60),
        |v| v.tier.is_some(),
    )
    .await;
    let archived = wait_for(
        &tc,
        "tiered",
        "cold",
        "in archive instant access",
        Duration::from_secs(90),
        |v| v.tier == Some(AccessTier::ArchiveInstantAccess),
    )
    .await;
    assert_eq!(archived.storage_class, "INTELLIGENT_TIERING");
    assert!(
        shards(&archived).iter().all(|n| is_west(*n)),
        "archived shards off west: {:?}",
        shards(&archived)
    );
    assert_ne!(
        archived.segments[0].id, before.segments[0].id,
        "re-encoded into new segments"
    );
    assert_eq!(
        (archived.version_id, &archived.etag, archived.size),
        (before.version_id, &before.etag, before.size)
    );
    // The status shows Intelligent-Tiering bytes in west.
    let (ok, out, err) = support::weft_cli(tc.c(), &["lifecycle", "status", "--json"]).await;
    assert!(ok, "{out}{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert!(
        st["zones"].as_array().expect("zones").iter().any(|z| {
            z["class"] == "INTELLIGENT_TIERING"
                && z["zone"] == "west"
                && z["bytes"].as_u64() > Some(0)
        }),
        "no INTELLIGENT_TIERING bytes in west: {}",
        st["zones"]
    );
    let head = s3.head("tiered", "cold").await;
    assert_eq!(
        head.header("x-amz-storage-class").as_deref(),
        Some("INTELLIGENT_TIERING"),
        "S3 reports the class, not the tier"
    );

    // The unread STANDARD object moved under its rule; the read one and the
    // read IT object stayed hot; the small one is not monitored.
    let idle = wait_for(
        &tc,
        "plain",
        "idle",
        "in GLACIER_IR",
        Duration::from_secs(30),
        |v| v.storage_class == "GLACIER_IR",
    )
    .await;
    assert!(shards(&idle).iter().all(|n| is_west(*n)));
    for (bucket, key, class) in [
        ("tiered", "hot", "INTELLIGENT_TIERING"),
        ("plain", "read", "STANDARD"),
        ("tiered", "small", "INTELLIGENT_TIERING"),
    ] {
        let v = support::current_version(&tc, bucket, key).await;
        assert_eq!(
            (v.storage_class.as_str(), v.tier),
            (class, None),
            "{bucket}/{key}"
        );
        assert!(
            shards(&v).iter().all(|n| !is_west(*n)),
            "{bucket}/{key} has shards on west"
        );
    }
    let hot_v = support::current_version(&tc, "tiered", "hot").await;
    assert!(
        hot_v.last_access_ms.is_some(),
        "reads of it/hot were recorded"
    );
    assert!(support::gateway_metric(&tc, "weft_gateway_tiering_reads_sent_total").await > 0);

    // Read the archived object: it comes back to the frequent tier on hot
    // nodes, with the same bytes.
    let promoted = Arc::new(AtomicBool::new(false));
    let promote_reads = Arc::new(AtomicU64::new(0));
    let reader = keep_reading(
        s3.clone(),
        "tiered",
        "cold",
        cold.clone(),
        promoted.clone(),
        promote_reads.clone(),
    );
    let back = wait_for(
        &tc,
        "tiered",
        "cold",
        "back in the frequent tier",
        Duration::from_secs(60),
        |v| v.tier.is_none(),
    )
    .await;
    promoted.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(
        shards(&back).iter().all(|n| !is_west(*n)),
        "promoted shards still on west: {:?}",
        shards(&back)
    );
    assert_eq!(
        (back.version_id, &back.etag),
        (before.version_id, &before.etag)
    );
    s3.must_get_equal("tiered", "cold", &cold).await;
    s3.must_get_equal("plain", "idle", &plain_idle).await;

    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    // The status shows the rule.
    let (ok, out, err) = support::weft_cli(tc.c(), &["lifecycle", "status", "plain"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("not read for 40 days → GLACIER_IR"), "{out}");
    tc.shutdown().await;
}
