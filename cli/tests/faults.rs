//! Faults the design tolerates: lost data nodes, a corrupted shard block, a
//! whole-cluster restart. Acknowledged objects must read back byte-identical,
//! and what cannot be read must fail with a clean S3 error, never wrong bytes.

mod support;
use std::time::Duration;
use support::*;
use weft_common::ShardIndex;

async fn put_set(s3: &S3Client) -> Vec<(String, Vec<u8>)> {
    assert_eq!(s3.mb("set").await.status, 200);
    let mut objs = vec![];
    for (i, len) in [
        0usize,
        1,
        4096,
        64 * 1024,
        64 * 1024 + 1,
        1 << 20,
        (9 << 20) + 7,
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("obj-{i}");
        let body = data(100 + i as u64, len);
        s3.must_put("set", &key, body.clone()).await;
        objs.push((key, body));
    }
    objs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_down_still_reads_three_down_fails_cleanly() {
    let mut tc = TestCluster::start().await;
    let s3 = tc.root_client();
    let objs = put_set(&s3).await;

    tc.c_mut().stop_datad(0).await.unwrap();
    tc.c_mut().stop_datad(3).await.unwrap();
    for (k, v) in &objs {
        s3.must_get_equal("set", k, v).await;
    }
    // Ranged reads through parity too.
    let (_, big) = &objs[6];
    let r = s3.get_range("set", "obj-6", "bytes=1000000-5000000").await;
    assert_eq!(r.status, 206);
    assert!(r.body == big[1000000..=5000000]);

    // A third node down: every EC object (4+2 over all six nodes) has lost
    // three shards, one more than parity covers, so its read must fail with
    // 503 ServiceUnavailable (the data may come back with the nodes; a 500
    // would claim a bug). A replicated object reads if a copy survived.
    tc.c_mut().stop_datad(1).await.unwrap();
    let small_max = weft_common::storage_class::SMALL_OBJECT_BYTES_DEFAULT;
    let mut unreadable = vec![];
    for (k, v) in &objs {
        let erasure_coded = v.len() as u64 > small_max;
        let r = s3.get("set", k).await;
        if r.status == 200 {
            assert!(
                !erasure_coded,
                "{k}: an EC object read with 3 of 6 shards gone"
            );
            assert!(r.body == *v, "{k}: a 200 with wrong bytes");
        } else {
            assert_eq!(
                (r.status, r.error_code().as_deref()),
                (503, Some("ServiceUnavailable")),
                "{k}: {}",
                r.text()
            );
            unreadable.push(k.as_str());
        }
    }
    let erasure_coded = objs.iter().filter(|(_, v)| v.len() as u64 > small_max);
    assert_eq!(
        erasure_coded.count(),
        3,
        "the set has EC objects to fail; unreadable: {unreadable:?}"
    );

    // Bring them back: everything reads again.
    for i in [0, 1, 3] {
        tc.c_mut().start_datad(i).await.unwrap();
    }
    tc.c()
        .wait_nodes_up(6, Duration::from_secs(30))
        .await
        .unwrap();
    for (k, v) in &objs {
        s3.must_get_equal("set", k, v).await;
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_with_a_node_down_stay_readable() {
    let mut tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("bkt").await.status, 200);
    tc.c_mut().stop_datad(2).await.unwrap();
    tc.c()
        .wait_nodes_up(5, Duration::from_secs(30))
        .await
        .unwrap();
    let body = data(7, 6 << 20);
    s3.must_put("bkt", "k", body.clone()).await;
    s3.must_get_equal("bkt", "k", &body).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_source_cannot_be_read_is_503_not_a_broken_body() {
    // Every node up (so the copy's write could succeed), but the source's
    // second stripe has lost three of six shards to rot: one more than
    // parity covers. (The second, so the failure comes while the copy
    // streams, after the first stripe was read and written.)
    let tc = TestCluster::start_with(|c| {
        c.datad.scrub_period_ms = 3_600_000;
    })
    .await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("rotcopy").await.status, 200);
    s3.must_put("rotcopy", "src", data(43, 9 << 20)).await;
    // Stripe 1 starts 1 MiB (one unit, 16 blocks of 64 KiB) into each
    // shard; each block is followed by its 4-byte crc.
    let offset = 64 + 16 * (64 * 1024 + 4) + 1000;
    for i in 0..3u8 {
        let index = ShardIndex(i);
        let (segment, holder) = shard_placement(&tc, "rotcopy", "src", index).await;
        let holder = holder.expect("every shard is placed after the PUT");
        let store = tc.c().datad_store(holder.0 as usize - 1).unwrap();
        let path = store.path_of(segment, index);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offset] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
    }
    let r = s3
        .request(
            "PUT",
            "/rotcopy/dst",
            &[],
            &[("x-amz-copy-source", "/rotcopy/src")],
            vec![],
        )
        .await;
    // The source is the server's problem (503, retry later), not the
    // client's body (400 IncompleteBody, which the copy path once answered
    // because it streams the source into the writer as a request body).
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (503, Some("ServiceUnavailable")),
        "copy of an unreadable source: {}",
        r.text()
    );
    assert_eq!(
        s3.get("rotcopy", "dst").await.status,
        404,
        "nothing was copied"
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_block_is_repaired_from_parity_on_read() {
    // Scrub off, so only the read can find the damage; repair timers short.
    let tc = TestCluster::start_with(|c| {
        c.datad.scrub_period_ms = 3_600_000;
        c.metad.durability_scan_ms = 200;
        c.datad.repair_poll_ms = 100;
    })
    .await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("rot").await.status, 200);
    let body = data(42, 3 << 20);
    s3.must_put("rot", "k", body.clone()).await;

    // Shard 0 (a data shard, which every full read needs) of the single
    // segment: flip one byte in the middle of its first data block.
    let index = ShardIndex(0);
    let (segment, holder) = shard_placement(&tc, "rot", "k", index).await;
    let holder = holder.expect("shard 0 is placed after the PUT");
    let store = tc.c().datad_store(holder.0 as usize - 1).unwrap();
    let shard = store.get_bytes(segment, index, 0, None).await.unwrap();
    let path = store.path_of(segment, index);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[64 + 1000] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(
        store.get_bytes(segment, index, 0, None).await.is_err(),
        "the flipped byte fails its crc32c"
    );

    // Reads decode around it from parity...
    s3.must_get_equal("rot", "k", &body).await;
    let r = s3.get_range("rot", "k", "bytes=500-1500").await;
    assert_eq!(r.status, 206);
    assert!(r.body == body[500..=1500]);
    // ...and report it, so repair rebuilds shard 0: wherever metad now
    // places it, it verifies and holds the original bytes.
    let now = wait_shard_restored(&tc, "rot", "k", index, &shard, Duration::from_secs(60)).await;
    eprintln!("shard 0 was on node {holder}, rebuilt on node {now}");
    s3.must_get_equal("rot", "k", &body).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_everything() {
    let mut tc = TestCluster::start().await;
    let s3 = tc.root_client();
    let objs = put_set(&s3).await;
    let creds = tc.c().credentials().clone();
    tc.restart().await;
    assert_eq!(tc.c().credentials(), &creds);
    let s3 = tc.root_client();
    for (k, v) in &objs {
        s3.must_get_equal("set", k, v).await;
    }
    let body = s3.list("set", &[]).await.text();
    assert_eq!(xml_values(&body, "Key").len(), objs.len());
    // And it still takes writes.
    s3.must_put("set", "after", b"restart".to_vec()).await;
    s3.must_get_equal("set", "after", b"restart").await;
    tc.shutdown().await;
}
