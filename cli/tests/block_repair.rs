//! Rot is repaired per block: one bad block in each of three shards of a
//! 4+2 segment, in three different stripes, is recoverable stripe by stripe.
//! Found by a scrub pass or by a GET, the blocks are rewritten in place by
//! their holders; no shard is dropped, the object reads back exact, and
//! every shard file verifies clean afterwards.

mod support;

use std::time::{Duration, Instant};
use support::{data, TestCluster};
use weft_cli::admin_client::AdminClient;
use weft_common::manifest::Segment;
use weft_common::profile::Layout;
use weft_common::repair::DurabilityStatus;
use weft_common::ShardIndex;

/// Data bytes per shard block, and bytes of each block's crc.
const BLOCK: u64 = 64 * 1024;
const CRC: u64 = 4;
const HEADER: u64 = 64;
/// 13 MiB: four stripes of a 4+2 layout with 1 MiB units (the last short).
const OBJECT_BYTES: usize = 13 << 20;

async fn nine_nodes(scrub: bool) -> TestCluster {
    TestCluster::start_with(|c| {
        c.datad_count = 9;
        c.metad.node_suspect_ms = 600;
        c.metad.node_grace_ms = 2_000;
        c.metad.durability_scan_ms = 200;
        c.metad.repair_task_lease_ms = 15_000;
        c.datad.heartbeat_interval_ms = 200;
        c.datad.repair_poll_ms = 100;
        c.datad.scrub_period_ms = if scrub { 500 } else { 3_600_000 };
        c.datad.scrub_rate_bytes_per_sec = 256 << 20;
        c.datad.gc_interval_ms = 3_600_000;
        c.metad.gc_grace_ms = 3_600_000;
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

fn full(st: &DurabilityStatus) -> bool {
    st.healthy
        && st.classes.iter().all(|c| c.full == c.segments)
        && st.backlog_bytes == 0
        && st.damaged_shards == 0
        && st.tasks_in_flight == 0
}

/// The object's one segment, with its current placement.
async fn segment_of(tc: &TestCluster, bucket: &str, key: &str) -> Segment {
    let v = support::current_version(tc, bucket, key).await;
    assert_eq!(v.segments.len(), 1);
    v.segments[0].clone()
}

/// Flips one byte of data block `block` of a shard file.
fn rot_block(path: &std::path::Path, block: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let at = HEADER + block * (BLOCK + CRC) + 1234;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0xa5;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

/// Writes the object, then rots one block in each of `slots` (shard
/// indexes), in stripes 0, 1 and 2. Returns the segment as placed and the
/// object's bytes.
async fn rot_three_shards(tc: &TestCluster, slots: [u8; 3]) -> (Segment, Vec<u8>) {
    let s3 = tc.root_client();
    assert_eq!(s3.mb("rot").await.status, 200);
    let body = data(7, OBJECT_BYTES);
    s3.must_put("rot", "obj", body.clone()).await;
    let a = admin(tc);
    let start = Instant::now();
    while !full(&status(&a).await) {
        assert!(start.elapsed() < Duration::from_secs(10), "never healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seg = segment_of(tc, "rot", "obj").await;
    assert_eq!(
        seg.layout,
        Layout::Erasure {
            k: 4,
            m: 2,
            unit_bytes: 1 << 20
        }
    );
    let unit_blocks = (1 << 20) / BLOCK;
    for (stripe, slot) in slots.into_iter().enumerate() {
        let node = seg.shards[usize::from(slot)].expect("placed");
        let store = tc.c().datad_store(node.0 as usize - 1).unwrap();
        let path = store.path_of(seg.id, ShardIndex(slot));
        // A block in the middle of this stripe's unit.
        rot_block(&path, stripe as u64 * unit_blocks + 5 + stripe as u64);
        assert!(
            store
                .get_bytes(seg.id, ShardIndex(slot), 0, None)
                .await
                .is_err(),
            "the rot is detected"
        );
    }
    (seg, body)
}

/// Waits until the cluster is at full redundancy with every shard file of
/// `seg` where it was and verifying clean: repaired in place, not moved.
async fn wait_repaired_in_place(tc: &TestCluster, seg: &Segment) {
    let a = admin(tc);
    let start = Instant::now();
    loop {
        let st = status(&a).await;
        assert_ne!(st.state, "unreadable", "{st:#?}");
        let mut clean = 0;
        for (i, node) in seg.shards.iter().enumerate() {
            let node = node.expect("placed");
            let store = tc.c().datad_store(node.0 as usize - 1).unwrap();
            if store
                .get_bytes(seg.id, ShardIndex(i as u8), 0, None)
                .await
                .is_ok()
            {
                clean += 1;
            }
        }
        if clean == seg.shards.len() && full(&st) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{clean} of {} shard files verify; status {st:#?}",
            seg.shards.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = segment_of(tc, "rot", "obj").await;
    assert_eq!(now.shards, seg.shards, "no shard was dropped or moved");
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
async fn scrub_repairs_rot_in_three_shards_block_by_block() {
    let tc = nine_nodes(true).await;
    // Two data shards and a parity shard: the scrubber reads them all.
    let (seg, body) = rot_three_shards(&tc, [0, 3, 5]).await;
    wait_repaired_in_place(&tc, &seg).await;
    assert_eq!(metric_sum(&tc, "weft_datad_scrub_corrupt").await, 3);
    assert_eq!(
        metric_sum(&tc, "weft_datad_repair_blocks").await,
        3,
        "only the bad blocks"
    );
    tc.root_client().must_get_equal("rot", "obj", &body).await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_reads_through_rot_in_three_shards_and_has_it_repaired() {
    // Scrub off: only the read can notice.
    let tc = nine_nodes(false).await;
    // Data shards, which every full read fetches on its fast path.
    let (seg, body) = rot_three_shards(&tc, [0, 1, 3]).await;
    let s3 = tc.root_client();
    s3.must_get_equal("rot", "obj", &body).await;
    wait_repaired_in_place(&tc, &seg).await;
    assert_eq!(
        metric_sum(&tc, "weft_datad_repair_blocks").await,
        3,
        "only the bad blocks"
    );
    // Reads after the repair need no parity: nothing more is reported.
    let before = metric_sum(&tc, "weft_datad_shard_corrupt_blocks").await;
    s3.must_get_equal("rot", "obj", &body).await;
    assert_eq!(
        metric_sum(&tc, "weft_datad_shard_corrupt_blocks").await,
        before
    );
    tc.shutdown().await;
}
