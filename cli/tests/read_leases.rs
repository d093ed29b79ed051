//! A read that began before its version was replaced reads the old bytes to
//! the end: the gateway's read lease keeps the replaced shards from being
//! released until the read is over, and then they go.

mod support;

use std::time::{Duration, Instant};
use support::{data, gateway_metric, TestCluster};
use weft_common::{SegmentId, ShardIndex};

/// 64 MiB: sixteen 4 MiB stripes, far more than the gateway buffers ahead
/// of a paused reader, so most stripes are fetched after the overwrite.
const OBJECT: usize = 64 << 20;

async fn segments(tc: &TestCluster, bucket: &str, key: &str) -> Vec<SegmentId> {
    let v = support::current_version(tc, bucket, key).await;
    v.segments.iter().map(|s| s.id).collect()
}

/// Whether any running data node still holds a shard of `segments`.
async fn any_shard_left(tc: &TestCluster, segments: &[SegmentId]) -> bool {
    for i in 0..tc.c().datad_count() {
        let Some(store) = tc.c().datad_store(i) else {
            continue;
        };
        for seg in segments {
            for index in 0..6u8 {
                if store
                    .get_bytes(*seg, ShardIndex(index), 0, Some(1))
                    .await
                    .is_ok()
                {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_begun_before_an_overwrite_reads_the_old_bytes_to_the_end() {
    let tc = TestCluster::start_with(|c| {
        // The data nodes' own use-renewed lease made negligible: only the
        // gateway's read lease can keep the replaced shards.
        c.datad.release_quiet_ms = 1;
    })
    .await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("lease").await.status, 200);
    let old = data(1, OBJECT);
    s3.must_put("lease", "obj", old.clone()).await;
    let old_segments = segments(&tc, "lease", "obj").await;

    let mut resp = s3.get_streaming("lease", "obj").await;
    assert_eq!(resp.status(), 200);
    let mut got = Vec::with_capacity(OBJECT);
    while got.len() < 1 << 20 {
        let chunk = resp.chunk().await.expect("body").expect("more body");
        got.extend_from_slice(&chunk);
    }

    // Replace the object while the read is paused with most of it unread.
    s3.must_put("lease", "obj", data(2, 1024)).await;
    assert!(
        gateway_metric(&tc, "weft_gateway_release_queued").await > 0,
        "the replaced shards should wait in the release queue for the read"
    );
    // Give a release that ignored the lease time to happen (the queue
    // worker looks every 200 ms, the data nodes sweep every few ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        any_shard_left(&tc, &old_segments).await,
        "the replaced version's shards are gone while a read is using them"
    );

    while let Some(chunk) = resp.chunk().await.expect("the rest of the body") {
        got.extend_from_slice(&chunk);
    }
    assert!(
        got == old,
        "the read did not return the old version's bytes"
    );
    drop(resp);

    // The read is over: the shards are released and deleted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while any_shard_left(&tc, &old_segments).await {
        assert!(
            Instant::now() < deadline,
            "the replaced shards were never deleted after the read ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gateway_metric(&tc, "weft_gateway_release_queued").await, 0);
    assert_eq!(
        gateway_metric(&tc, "weft_gateway_release_dropped_total").await,
        0
    );
    tc.shutdown().await;
}
