//! A datad in-process over real HTTP: put, ranged gets, corruption on disk,
//! a short body, delete, health and metrics.

use bytes::Bytes;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;
use weft_client::{DatadClient, DatadClientError};
use weft_common::damage::BlockDamage;
use weft_common::{SegmentId, ShardIndex};
use weft_datad::shard_file::{ShardHeader, SHARD_BLOCK_BYTES};
use weft_datad::DatadConfig;

const B: u64 = SHARD_BLOCK_BYTES as u64;

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ (i >> 11) as u8)
        .collect()
}

/// `d` cut into chunks of odd, varying sizes.
fn odd_chunks(d: &[u8]) -> Vec<Result<Bytes, std::io::Error>> {
    let sizes = [1usize, 4095, 65_537, 3, 200_003, 77_777];
    let mut out = Vec::new();
    let mut rest = d;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        out.push(Ok(Bytes::copy_from_slice(&rest[..n])));
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// A port nothing listens on (bound, then released).
fn unused_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datad_serves_verified_shards_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let cfg = DatadConfig {
        node_id: 7,
        zone: "west".into(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().to_path_buf(),
        metad: vec![unused_addr()],
        heartbeat_interval_ms: 100,
        insecure_internal: true,
        ..DatadConfig::default()
    };
    let handle = weft_datad::start(cfg, cancel.clone()).await.unwrap();
    let addr = handle.addr().to_string();
    let client = DatadClient::new();
    let (segment, index) = (
        SegmentId(0xfeed_0000_0000_0000_0000_0000_0000_beef),
        ShardIndex(4),
    );

    // A request in a newer internal format is refused, naming the upgrade.
    let newer = reqwest::Client::new()
        .post(format!("http://{addr}/v1/shards/release"))
        .header(
            weft_common::rpc::FORMAT_HEADER,
            weft_common::rpc::RPC_FORMAT + 1,
        )
        .json(&weft_common::rpc::ShardReleaseBatch {
            shards: vec![],
            hold: false,
            hold_full: false,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(newer.status().as_u16(), 400);
    let body = newer.text().await.unwrap();
    assert!(body.contains("newer than this process reads"), "{body}");

    // PUT 5 MiB from odd-sized chunks.
    let d = data(5 * 1024 * 1024);
    let len = d.len() as u64;
    let reply = client
        .put_shard(
            &addr,
            segment,
            index,
            len,
            futures::stream::iter(odd_chunks(&d)),
        )
        .await
        .unwrap();
    assert_eq!(reply.bytes, len);
    assert_eq!(reply.crc32c, crc32c::crc32c(&d));
    assert_eq!(
        handle.store().used_bytes(),
        ShardHeader::new(segment, index, len).file_len()
    );

    // Ranged GETs, byte-exact.
    for (offset, n) in [
        (0, 1),
        (0, len),
        (B - 1, 2),
        (3 * B + 17, 5 * B + 3),
        (len - 1, 1),
        (len, 0),
        (1_000_000, 1_234_567),
    ] {
        let got = client
            .get_shard(&addr, segment, index, offset, n)
            .await
            .unwrap();
        assert_eq!(
            &got[..],
            &d[offset as usize..(offset + n) as usize],
            "{offset}+{n}"
        );
    }
    let err = client
        .get_shard(&addr, segment, index, len, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatadClientError::Failed { status: 416, .. }),
        "{err}"
    );

    // Flip one byte of block 10 on disk.
    let path = handle.store().path_of(segment, index);
    let mut file = std::fs::read(&path).unwrap();
    let header = ShardHeader::new(segment, index, len);
    file[header.block_file_offset(10) as usize + 123] ^= 0x01;
    std::fs::write(&path, &file).unwrap();

    // A range starting in the bad block: refused before streaming.
    let err = client
        .get_shard(&addr, segment, index, 10 * B + 5, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, DatadClientError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("block 10"), "{err}");
    // A range reaching the bad block later: also refused before any byte
    // is sent (ranges up to 16 MiB are verified whole), naming the block.
    let err = client
        .get_shard(&addr, segment, index, 8 * B, 3 * B)
        .await
        .unwrap_err();
    let ten = BlockDamage::from_blocks(SHARD_BLOCK_BYTES, [10]);
    assert!(
        matches!(&err, DatadClientError::Corrupt { damage: Some(d), .. } if *d == ten),
        "{err}"
    );
    // Without a length the range streams: the body breaks off at the block.
    let resp = reqwest::get(format!(
        "http://{addr}/v1/shards/{segment}/{}?offset={}",
        index.0,
        8 * B
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the body must break off");
    // Ranges not touching it are still served.
    let got = client
        .get_shard(&addr, segment, index, 0, 10 * B)
        .await
        .unwrap();
    assert_eq!(&got[..], &d[..10 * B as usize]);
    let got = client
        .get_shard(&addr, segment, index, 11 * B, 2 * B)
        .await
        .unwrap();
    assert_eq!(&got[..], &d[11 * B as usize..13 * B as usize]);

    // A body shorter than declared is rejected and leaves no file.
    let other = ShardIndex(5);
    let short = futures::stream::iter(odd_chunks(&d[..1000]));
    let err = client
        .put_shard(&addr, segment, other, 1001, short)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatadClientError::Failed { status: 400, .. }),
        "{err}"
    );
    assert!(!handle.store().path_of(segment, other).exists());
    // So is one longer than declared.
    let long = futures::stream::iter(odd_chunks(&d[..300_000]));
    let err = client
        .put_shard(&addr, segment, other, 1000, long)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatadClientError::Failed { status: 400, .. }),
        "{err}"
    );
    assert!(!handle.store().path_of(segment, other).exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );

    // Metrics and health.
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("shard_put_bytes_total {len}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("shard_corrupt_blocks_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("shard_get_bytes_total"), "{metrics}");
    assert!(metrics.contains("used_bytes "), "{metrics}");

    // DELETE, twice; then the shard is gone.
    client.delete_shard(&addr, segment, index).await.unwrap();
    client.delete_shard(&addr, segment, index).await.unwrap();
    assert!(!path.exists());
    assert_eq!(handle.store().used_bytes(), 0);
    let err = client
        .get_shard(&addr, segment, index, 0, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, DatadClientError::NotFound { .. }), "{err}");

    // Bad ids are refused.
    let err = http
        .get(format!("http://{addr}/v1/shards/xyz/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(err.status(), 400);

    // Shutdown is prompt even though metad never answered.
    cancel.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), handle.stopped())
        .await
        .expect("datad stops promptly");
}

#[tokio::test]
async fn unreachable_datad_is_reported_as_such() {
    let client = DatadClient::new();
    let addr = unused_addr();
    let err = client
        .get_shard(&addr, SegmentId(1), ShardIndex(0), 0, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, DatadClientError::Unreachable { .. }), "{err}");
    assert!(err.to_string().starts_with("get shard on datad"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_node_refuses_puts_with_disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let cfg = DatadConfig {
        node_id: 8,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().to_path_buf(),
        capacity_bytes: 1024 * 1024,
        metad: vec![],
        insecure_internal: true,
        ..DatadConfig::default()
    };
    let handle = weft_datad::start(cfg, cancel.clone()).await.unwrap();
    let addr = handle.addr().to_string();
    let client = DatadClient::new();
    let d = data(4 * 1024 * 1024);
    for _ in 0..3 {
        let err = client
            .put_shard(
                &addr,
                SegmentId(2),
                ShardIndex(0),
                d.len() as u64,
                futures::stream::iter(odd_chunks(&d)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                DatadClientError::Failed {
                    status: 507,
                    code: Some(weft_common::rpc::RpcErrorCode::DiskFull),
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(handle.store().used_bytes(), 0);
    cancel.cancel();
    handle.stopped().await;
}
