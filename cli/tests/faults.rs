//! Faults the design tolerates: lost data nodes, a corrupted shard block, a
//! whole-cluster restart. Acknowledged objects must read back byte-identical,
//! and what cannot be read must fail with a clean S3 error, never wrong bytes.

mod support;
use std::time::Duration;
use support::*;

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

    // A third node down: any EC object has lost more than m shards somewhere,
    // so reads must fail with an S3 error, never return wrong bytes.
    tc.c_mut().stop_datad(1).await.unwrap();
    let mut clean_failures = 0;
    for (k, v) in &objs {
        let r = s3.get("set", k).await;
        if r.status == 200 {
            assert!(r.body == *v, "{k}: a 200 with wrong bytes");
        } else {
            assert!(
                r.status == 503 || r.status == 500,
                "{k}: status {}",
                r.status
            );
            assert!(
                r.error_code().is_some(),
                "{k}: error without an XML body: {}",
                r.text()
            );
            clean_failures += 1;
        }
    }
    assert!(
        clean_failures > 0,
        "with 3 of 6 nodes down some object must be unreadable"
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

fn shard_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(shard_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_block_is_repaired_from_parity_on_read() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("rot").await.status, 200);
    let body = data(42, 3 << 20);
    s3.must_put("rot", "k", body.clone()).await;

    // Shard 0 (a data shard) of the single segment: flip one byte in the
    // middle of its first data block.
    let mut target = None;
    for i in 0..6 {
        for f in shard_files(&tc.c().datad_dir(i).join("shards")) {
            if f.extension().and_then(|e| e.to_str()) == Some("0") {
                target = Some(f);
            }
        }
    }
    let target = target.expect("shard 0 file exists on some node");
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[64 + 1000] ^= 0x40;
    std::fs::write(&target, &bytes).unwrap();

    s3.must_get_equal("rot", "k", &body).await;
    let r = s3.get_range("rot", "k", "bytes=500-1500").await;
    assert_eq!(r.status, 206);
    assert!(r.body == body[500..=1500]);
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
