//! Restart recovery of a real single-voter metad: written through its API,
//! snapshotted and purged, then restarted on a crash image of its data
//! directory, it must serve every acknowledged write from the snapshot and
//! the log after it.

mod support;

use futures::stream::{self, StreamExt};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::RaftLogReader;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{create_bucket, put, version};
use tokio_util::sync::CancellationToken;
use weft_client::MetadClient;
use weft_common::rpc::{
    Command, CommandResult, ListMarker, ListRequest, Query, QueryResult, Refusal,
};
use weft_metad::raft_log::LogStore;
use weft_metad::state_machine::StateMachine;
use weft_metad::{MetadConfig, MetadHandle};

/// Objects written. More than metad's `max_in_snapshot_log_to_keep` (1000)
/// plus a few snapshot intervals, so the log is actually purged.
const PUTS: u64 = 1_150;
/// Every object whose number is a multiple of this is deleted again.
const DELETE_EVERY: u64 = 7;

fn bucket_of(i: u64) -> &'static str {
    if i % 3 == 0 {
        "beta"
    } else {
        "alpha"
    }
}

/// Keys with slashes (for delimiter listings), unicode, spaces and '+'.
fn key_of(i: u64) -> String {
    match i % 4 {
        0 => format!("dir{}/obj-{i:04}", i % 10),
        1 => format!("dir{}/sub/ü {i:04}", i % 10),
        2 => format!("top+{i:04}"),
        _ => format!("日本/{i:04}"),
    }
}

async fn start_metad(dir: &Path) -> (MetadHandle, CancellationToken, MetadClient) {
    let cancel = CancellationToken::new();
    let cfg = MetadConfig {
        insecure_internal: true,
        listen: "127.0.0.1:0".parse().expect("literal address"),
        data_dir: dir.to_path_buf(),
        snapshot_logs: 50,
        snapshot_logs_keep: 10,
        // The writes here carry fixed times (1 s after the epoch, ...).
        clock_skew_max_secs: u64::MAX / 1000,
        ..Default::default()
    };
    let handle = weft_metad::start(cfg, cancel.clone())
        .await
        .expect("metad starts");
    handle
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("the single voter becomes leader");
    let client =
        MetadClient::new(vec![handle.addr().to_string()]).with_deadline(Duration::from_secs(10));
    (handle, cancel, client)
}

async fn command(client: &MetadClient, cmd: Command) -> CommandResult {
    client.command(&cmd).await.expect("command commits")
}

async fn query(client: &MetadClient, q: Query) -> QueryResult {
    client.query(&q).await.expect("query answers")
}

/// Opens the log store of a stopped metad; the previous owner's background
/// tasks may still be releasing the database lock.
async fn open_log_when_released(path: &Path) -> LogStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match LogStore::open(path) {
            Ok(log) => return log,
            Err(redb::Error::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

async fn open_sm_when_released(dir: &Path) -> StateMachine {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match StateMachine::open(dir) {
            Ok(sm) => return sm,
            Err(weft_metad::error::MetaError::Store(redb::Error::DatabaseAlreadyOpen))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("open state machine in {}: {e}", dir.display()),
        }
    }
}

/// Every page of a listing, followed through its `next` markers.
async fn list_all(
    client: &MetadClient,
    bucket: &str,
    delimiter: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let mut keys = vec![];
    let mut prefixes = vec![];
    let mut after: Option<ListMarker> = None;
    for _ in 0..1_000 {
        let q = Query::List(ListRequest {
            bucket: bucket.into(),
            prefix: String::new(),
            delimiter: delimiter.map(str::to_string),
            after: after.clone(),
            max_keys: 97,
        });
        let QueryResult::List { page: Some(page) } = query(client, q).await else {
            panic!("bucket {bucket} lists");
        };
        assert!(
            page.entries.len() + page.common_prefixes.len() <= 97,
            "page exceeds max_keys"
        );
        keys.extend(page.entries.into_iter().map(|e| e.key));
        prefixes.extend(page.common_prefixes);
        match page.next {
            None => return (keys, prefixes),
            Some(m) => after = Some(m),
        }
    }
    panic!("listing of {bucket} did not finish in 1000 pages");
}

/// Objects put after the snapshot, one command (so one raft entry) each:
/// with the buckets and refusals around them, well under the 50 entries
/// after which metad would snapshot again.
const TAIL_PUTS: u64 = 20;

fn tail_key(j: u64) -> String {
    format!("tail/{j:02}")
}

/// Writes, snapshots explicitly, writes more, then restarts on a crash image
/// whose state machine is the one at the snapshot: the restarted metad must
/// rebuild everything from the snapshot's state and the log after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_every_write_from_snapshot_and_log() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (handle, cancel, client) = start_metad(dir.path()).await;

    // --- before the snapshot
    for (name, owner) in [("alpha", "AKALPHA"), ("beta", "AKBETA"), ("scratch", "AKX")] {
        assert_eq!(
            command(&client, create_bucket(name, owner)).await,
            CommandResult::Done
        );
    }
    let puts: Vec<(u64, CommandResult)> = stream::iter(0..PUTS)
        .map(|i| {
            let c = client.clone();
            async move { (i, command(&c, put(bucket_of(i), &key_of(i), i)).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (i, r) in puts {
        assert_eq!(
            r,
            CommandResult::Replaced { previous: None },
            "first put of object {i}"
        );
    }
    let deletes: Vec<(u64, CommandResult)> =
        stream::iter((0..PUTS).filter(|i| i % DELETE_EVERY == 0))
            .map(|i| {
                let c = client.clone();
                async move {
                    let cmd = Command::DeleteObject {
                        bucket: bucket_of(i).into(),
                        key: key_of(i),
                        marker: None,
                    };
                    (i, command(&c, cmd).await)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    for (i, r) in &deletes {
        assert_eq!(
            r,
            &CommandResult::Replaced {
                previous: Some(version(*i))
            },
            "delete of object {i}"
        );
    }

    // --- the snapshot, explicitly: the policy's own (one per 50 entries)
    // need not cover the last writes, since nothing triggers one after them.
    let applied_at_snapshot = handle
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .expect("entries were applied");
    // openraft drops a trigger that arrives while the policy's own snapshot
    // is being built, so trigger again until one covers the writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        handle
            .raft()
            .trigger()
            .snapshot()
            .await
            .expect("trigger a snapshot");
        let waited = handle
            .raft()
            .wait(Some(Duration::from_millis(500)))
            .metrics(
                |m| {
                    m.snapshot
                        .is_some_and(|s| s.index >= applied_at_snapshot.index)
                        && m.purged.is_some()
                },
                "a snapshot covers every write so far and the log is purged",
            )
            .await;
        match waited {
            Ok(m) => break m,
            Err(openraft::metrics::WaitError::Timeout(..)) if Instant::now() < deadline => {}
            Err(e) => panic!(
                "no snapshot covering index {}: {e}",
                applied_at_snapshot.index
            ),
        }
    };
    let snapshot = metrics.snapshot.expect("checked by the wait");
    assert_eq!(
        metrics.last_applied,
        Some(applied_at_snapshot),
        "nothing was written meanwhile"
    );
    let QueryResult::Status { status } = query(&client, Query::Status).await else {
        panic!("status answers with a status");
    };
    assert_eq!(status.snapshot_index, Some(snapshot.index));
    cancel.cancel();
    handle.stopped().await;

    // --- what is on disk: the snapshot, and the log purged behind it
    assert!(
        dir.path().join("snapshot.json").is_file(),
        "snapshot.json was written"
    );
    {
        let mut log = open_log_when_released(&dir.path().join("raft-log.redb")).await;
        let state = log.get_log_state().await.expect("log state");
        let purged = state.last_purged_log_id.expect("the log was purged");
        let last = state.last_log_id.expect("the log is not empty");
        assert_eq!(last, applied_at_snapshot, "every log entry was applied");
        let mut reader = log.get_log_reader().await;
        let kept = reader.try_get_log_entries(..).await.expect("read the log");
        assert!(
            (kept.len() as u64) < last.index,
            "only {} of {} entries should remain after purging",
            kept.len(),
            last.index
        );
        let indexes: Vec<u64> = kept.iter().map(|e| e.log_id.index).collect();
        let expected: Vec<u64> = (purged.index + 1..=last.index).collect();
        assert_eq!(
            indexes, expected,
            "the log is contiguous after the purge point"
        );

        let mut sm = open_sm_when_released(dir.path()).await;
        let (applied, membership) = sm.applied_state().await.expect("applied state");
        assert_eq!(applied, Some(applied_at_snapshot));
        assert_eq!(
            membership.membership().voter_ids().collect::<Vec<_>>(),
            vec![1]
        );
        let snap = sm
            .get_current_snapshot()
            .await
            .expect("read the snapshot")
            .expect("a snapshot exists");
        assert_eq!(snap.meta.last_log_id, Some(snapshot));
        assert!(
            snapshot.index > purged.index,
            "the snapshot covers the purged entries"
        );
    }
    // The state machine as it stood at the snapshot, to stand in later for
    // one whose applies since were lost in a crash (they are not fsynced).
    let state_at_snapshot = std::fs::read(dir.path().join("state.redb")).expect("read state.redb");

    // --- after the snapshot: only in the log
    let (handle, cancel, client) = start_metad(dir.path()).await;
    assert_eq!(
        command(&client, create_bucket("gamma", "AKGAMMA")).await,
        CommandResult::Done
    );
    for j in 0..TAIL_PUTS {
        assert_eq!(
            command(&client, put("gamma", &tail_key(j), 50_000 + j)).await,
            CommandResult::Replaced { previous: None },
            "tail put {j}"
        );
    }
    let scratch_gone = Command::DeleteBucket {
        name: "scratch".into(),
    };
    assert_eq!(command(&client, scratch_gone).await, CommandResult::Done);
    let alpha_busy = Command::DeleteBucket {
        name: "alpha".into(),
    };
    assert_eq!(
        command(&client, alpha_busy).await,
        CommandResult::Refused {
            refusal: Refusal::BucketNotEmpty
        }
    );
    let metrics = handle.raft().metrics().borrow().clone();
    let applied_last = metrics.last_applied.expect("entries were applied");
    assert!(applied_last.index > snapshot.index);
    assert_eq!(
        metrics.snapshot,
        Some(snapshot),
        "no newer snapshot covers the writes after it"
    );
    cancel.cancel();
    handle.stopped().await;

    // --- the crash image: state machine at the snapshot, log to the end.
    // Wait until the stopped metad has let go of state.redb before replacing it.
    drop(open_sm_when_released(dir.path()).await);
    std::fs::write(dir.path().join("state.redb"), &state_at_snapshot).expect("write state.redb");
    {
        let mut sm = open_sm_when_released(dir.path()).await;
        let (applied, _) = sm.applied_state().await.expect("applied state");
        assert_eq!(applied, Some(applied_at_snapshot));
        let mut log = open_log_when_released(&dir.path().join("raft-log.redb")).await;
        let state = log.get_log_state().await.expect("log state");
        assert_eq!(state.last_log_id, Some(applied_last));
    }

    // --- restart and check everything is back
    let (handle, cancel, client) = start_metad(dir.path()).await;
    let QueryResult::Buckets { buckets } = query(&client, Query::Buckets).await else {
        panic!("buckets answers with buckets");
    };
    let names: Vec<(String, String)> = buckets.into_iter().map(|b| (b.name, b.owner)).collect();
    assert_eq!(
        names,
        vec![
            ("alpha".to_string(), "AKALPHA".to_string()),
            ("beta".to_string(), "AKBETA".to_string()),
            ("gamma".to_string(), "AKGAMMA".to_string()),
        ]
    );
    let objects: Vec<(u64, QueryResult)> = stream::iter(0..PUTS)
        .map(|i| {
            let c = client.clone();
            async move {
                let q = Query::Object {
                    bucket: bucket_of(i).into(),
                    key: key_of(i),
                };
                (i, query(&c, q).await)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (i, r) in objects {
        let expected = (i % DELETE_EVERY != 0).then(|| version(i));
        assert_eq!(
            r,
            QueryResult::Object {
                bucket_exists: true,
                version: expected
            },
            "object {i} after restart"
        );
    }
    for j in 0..TAIL_PUTS {
        let q = Query::Object {
            bucket: "gamma".into(),
            key: tail_key(j),
        };
        assert_eq!(
            query(&client, q).await,
            QueryResult::Object {
                bucket_exists: true,
                version: Some(version(50_000 + j))
            },
            "tail object {j}, written after the snapshot, after restart"
        );
    }
    for bucket in ["alpha", "beta"] {
        let live: BTreeSet<String> = (0..PUTS)
            .filter(|i| bucket_of(*i) == bucket && i % DELETE_EVERY != 0)
            .map(key_of)
            .collect();
        let (keys, prefixes) = list_all(&client, bucket, None).await;
        assert!(prefixes.is_empty());
        assert_eq!(
            keys,
            live.iter().cloned().collect::<Vec<_>>(),
            "{bucket} listing"
        );
        let (top, prefixes) = list_all(&client, bucket, Some("/")).await;
        let expected_top: Vec<String> = live.iter().filter(|k| !k.contains('/')).cloned().collect();
        let expected_prefixes: Vec<String> = live
            .iter()
            .filter_map(|k| k.find('/').map(|p| k[..=p].to_string()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(top, expected_top, "{bucket} top-level keys");
        assert_eq!(prefixes, expected_prefixes, "{bucket} common prefixes");
    }
    let QueryResult::List { page } = query(
        &client,
        Query::List(ListRequest {
            bucket: "scratch".into(),
            prefix: String::new(),
            delimiter: None,
            after: None,
            max_keys: 10,
        }),
    )
    .await
    else {
        panic!("list answers with a page");
    };
    assert_eq!(page, None, "the deleted bucket stays deleted");
    let QueryResult::Status { status } = query(&client, Query::Status).await else {
        panic!("status answers with a status");
    };
    assert_eq!(
        status.snapshot_index,
        Some(snapshot.index),
        "the snapshot is known after restart"
    );
    assert!(status.last_log_index >= Some(applied_last.index));
    assert!(
        status.applied_index >= Some(applied_last.index),
        "the log after the snapshot was applied again"
    );

    // --- new writes still work, and see the recovered state
    assert_eq!(
        command(&client, put("alpha", "after/restart", 9_999)).await,
        CommandResult::Replaced { previous: None }
    );
    assert_eq!(
        command(&client, put("alpha", &key_of(1), 10_001)).await,
        CommandResult::Replaced {
            previous: Some(version(1))
        }
    );
    assert_eq!(
        command(&client, create_bucket("beta", "AKOTHER")).await,
        CommandResult::Refused {
            refusal: Refusal::BucketExists {
                owner: "AKBETA".into()
            }
        }
    );
    assert_eq!(
        query(
            &client,
            Query::Object {
                bucket: "alpha".into(),
                key: "after/restart".into()
            }
        )
        .await,
        QueryResult::Object {
            bucket_exists: true,
            version: Some(version(9_999))
        }
    );
    cancel.cancel();
    handle.stopped().await;
}
