//! Group commit: concurrent commands share raft entries, and each caller
//! still gets its own command's result.

mod support;
use futures::stream::{self, StreamExt};
use std::time::Duration;
use support::*;
use tokio_util::sync::CancellationToken;
use weft_client::MetadClient;
use weft_common::rpc::{CommandResult, Refusal};
use weft_metad::MetadConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_share_entries_and_keep_their_own_results() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let cfg = MetadConfig {
        insecure_internal: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let h = weft_metad::start(cfg, cancel.clone()).await.unwrap();
    h.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let before = h.raft().metrics().borrow().last_log_index.unwrap_or(0);
    let client = MetadClient::new(vec![h.addr().to_string()]);

    // 400 commands from 64 concurrent callers: every bucket is created twice,
    // so exactly one of each pair must win, whichever entry carries it.
    let results: Vec<(u64, CommandResult)> = stream::iter(0..400u64)
        .map(|i| {
            let client = client.clone();
            async move {
                let name = format!("bucket-{}", i % 200);
                (
                    i % 200,
                    client
                        .command(&create_bucket(&name, &format!("owner-{i}")))
                        .await
                        .unwrap(),
                )
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut wins = vec![0u32; 200];
    for (b, r) in &results {
        match r {
            CommandResult::Done => wins[*b as usize] += 1,
            CommandResult::Refused {
                refusal: Refusal::BucketExists { .. },
            } => {}
            other => panic!("bucket-{b}: unexpected {other:?}"),
        }
    }
    assert!(
        wins.iter().all(|w| *w == 1),
        "each bucket created exactly once: {wins:?}"
    );
    let entries = h.raft().metrics().borrow().last_log_index.unwrap_or(0) - before;
    assert!(
        entries < 400,
        "400 concurrent commands took {entries} raft entries: no batching"
    );
    cancel.cancel();
    h.stopped().await;
}
