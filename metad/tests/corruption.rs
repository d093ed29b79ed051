//! A voter whose log is damaged on disk must recover or refuse to start with
//! a clear message, and never serve wrong data.

mod support;
use std::time::Duration;
use support::*;
use tokio_util::sync::CancellationToken;
use weft_client::MetadClient;
use weft_common::rpc::{Query, QueryResult};
use weft_metad::MetadConfig;

async fn write_some(dir: &std::path::Path, n: u64) {
    let cancel = CancellationToken::new();
    let cfg = MetadConfig {
        insecure_internal: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        // The writes here carry fixed times (1 s after the epoch, ...).
        clock_skew_max_secs: u64::MAX / 1000,
        ..Default::default()
    };
    let h = weft_metad::start(cfg, cancel.clone()).await.unwrap();
    h.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    let c = MetadClient::new(vec![h.addr().to_string()]);
    c.command(&create_bucket("b", "owner")).await.unwrap();
    for i in 0..n {
        c.command(&put("b", &format!("k{i}"), i)).await.unwrap();
    }
    cancel.cancel();
    h.stopped().await;
}

/// Starts on `dir` and checks that whatever is served is what was written.
async fn restart_and_check(dir: &std::path::Path, n: u64) -> Result<u64, String> {
    let cancel = CancellationToken::new();
    let cfg = MetadConfig {
        insecure_internal: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        bootstrap: false,
        // The writes here carry fixed times (1 s after the epoch, ...).
        clock_skew_max_secs: u64::MAX / 1000,
        ..Default::default()
    };
    let h = match weft_metad::start(cfg, cancel.clone()).await {
        Ok(h) => h,
        Err(e) => return Err(e.to_string()),
    };
    if let Err(e) = h.wait_for_leader(Duration::from_secs(5)).await {
        cancel.cancel();
        h.stopped().await;
        return Err(e.to_string());
    }
    let c = MetadClient::new(vec![h.addr().to_string()]).with_deadline(Duration::from_secs(3));
    let mut present = 0;
    for i in 0..n {
        match c
            .query(&Query::Object {
                bucket: "b".into(),
                key: format!("k{i}"),
            })
            .await
        {
            Ok(QueryResult::Object {
                version: Some(v), ..
            }) => {
                assert_eq!(
                    v,
                    version(i),
                    "k{i}: served a version that was never written there"
                );
                present += 1;
            }
            Ok(QueryResult::Object { version: None, .. }) => {}
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                cancel.cancel();
                h.stopped().await;
                return Err(e.to_string());
            }
        }
    }
    cancel.cancel();
    h.stopped().await;
    Ok(present)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_log_file_recovers_or_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    write_some(dir.path(), 40).await;
    let log = dir.path().join("raft-log.redb");
    let len = std::fs::metadata(&log).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(len - len / 3).unwrap();
    drop(f);
    match restart_and_check(dir.path(), 40).await {
        // All 40 writes were acknowledged, so durable (the log fsyncs every
        // commit and the clean stop flushed the state machine): recovering
        // means serving every one of them, not whatever happens to be left.
        Ok(present) => assert_eq!(
            present, 40,
            "started and served only {present} of 40 acknowledged objects"
        ),
        Err(msg) => {
            eprintln!("refused: {msg}");
            assert!(
                msg.contains("damaged") && msg.contains("weft cluster metad"),
                "unclear refusal: {msg}"
            );
        }
    }
}

/// Rot in the last log entry (the entry was applied before the stop) is
/// caught by its envelope when the voter reads its log state at start: it
/// refuses to start, with instructions, instead of guessing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_last_log_entry_refuses_start_with_instructions() {
    let dir = tempfile::tempdir().unwrap();
    write_some(dir.path(), 20).await;
    // Overwrite the last entry's payload with bytes that are not an entry,
    // as rot would leave it.
    {
        let db = redb::Database::create(dir.path().join("raft-log.redb")).unwrap();
        let def: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(def).unwrap();
            let last = {
                use redb::ReadableTable;
                let (k, _) = t.last().unwrap().unwrap();
                k.value()
            };
            t.insert(last, &b"{\"log_id\": garbage"[..]).unwrap();
        }
        tx.commit().unwrap();
    }
    match restart_and_check(dir.path(), 20).await {
        Ok(present) => panic!("started on a damaged log, serving {present} of 20 objects"),
        Err(msg) => assert!(
            msg.contains("raft log entry ")
                && msg.contains("corrupt")
                && msg.contains("weft cluster metad"),
            "unclear refusal: {msg}"
        ),
    }
}
