//! Durability and determinism of metad's stores: a real single-voter metad
//! restarted on its data directory, the state machine fed by hand-built log
//! entries, and snapshots checked against the index they claim to cover.

mod support;

use futures::stream::{self, StreamExt};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{create_bucket, entries, entry, log_id, put, version};
use tokio_util::sync::CancellationToken;
use weft_common::manifest::{AccessKey, Upload, UploadPart};
use weft_common::rpc::{
    Command, CommandResult, ListMarker, ListRequest, Query, QueryResult, Refusal,
};
use weft_common::topology::NodeInfo;
use weft_common::NodeId;
use weft_metad::raft_log::LogStore;
use weft_metad::state_machine::StateMachine;
use weft_metad::{MetadClient, MetadConfig, MetadHandle};

// ---------------------------------------------------------------------------
// a. restart recovery of a real metad
// ---------------------------------------------------------------------------

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
        listen: "127.0.0.1:0".parse().expect("literal address"),
        data_dir: dir.to_path_buf(),
        snapshot_logs: 50,
        snapshot_logs_keep: 10,
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

// ---------------------------------------------------------------------------
// b. deterministic apply
// ---------------------------------------------------------------------------

const BUCKETS: [&str; 3] = ["a", "b", "c"];
const KEYS: [&str; 6] = ["k", "k/1", "k/2", "x y", "x+y", "ü/é"];
const UPLOADS: [&str; 3] = ["u1", "u2", "u3"];

fn random_command(rng: &mut StdRng, n: u64) -> Command {
    let bucket = BUCKETS[rng.gen_range(0..BUCKETS.len())].to_string();
    let key = KEYS[rng.gen_range(0..KEYS.len())].to_string();
    let upload_id = UPLOADS[rng.gen_range(0..UPLOADS.len())].to_string();
    match rng.gen_range(0..10) {
        0 => create_bucket(&bucket, ["o1", "o2"][rng.gen_range(0..2)]),
        1 => Command::DeleteBucket { name: bucket },
        2 | 3 => put(&bucket, &key, n),
        4 => Command::DeleteObject {
            bucket,
            key,
            marker: None,
        },
        5 => {
            let i = rng.gen_range(0..3);
            Command::CreateKey {
                key: AccessKey {
                    access_key: format!("AK{}", rng.gen_range(0..3)),
                    secret_key: format!("secret{n}"),
                    name: format!("name{i}"),
                    root: i == 0,
                    created_ms: n,
                },
            }
        }
        6 => Command::DeleteKey {
            name: format!("name{}", rng.gen_range(0..3)),
        },
        7 => Command::RegisterNode {
            node: NodeInfo {
                id: NodeId(rng.gen_range(1..4)),
                zone: format!("z{}", n % 3),
                addr: format!("127.0.0.1:{}", 9000 + n),
                capacity_bytes: n,
            },
        },
        8 => Command::CreateUpload {
            upload: Upload {
                upload_id,
                bucket,
                key,
                initiated_ms: n,
                storage_class: "STANDARD".into(),
                user_metadata: BTreeMap::new(),
                content: Default::default(),
                checksum_algorithm: None,
                checksum_type: None,
                tags: Default::default(),
                parts: vec![],
            },
        },
        _ => {
            if rng.gen_bool(0.2) {
                Command::AbortUpload { upload_id }
            } else {
                Command::PutPart {
                    upload_id,
                    part: UploadPart {
                        part_number: rng.gen_range(1..4),
                        etag: format!("{n:032x}"),
                        size: n,
                        crc32c: 0,
                        last_modified_ms: n,
                        checksums: Default::default(),
                        segments: version(n).segments,
                    },
                }
            }
        }
    }
}

/// Everything the queries can see, for comparing two state machines.
#[derive(Debug, PartialEq)]
struct Observed {
    buckets: Vec<weft_common::manifest::BucketInfo>,
    keys: Vec<AccessKey>,
    nodes: Vec<NodeInfo>,
    uploads: Vec<Option<Upload>>,
    objects: Vec<Option<weft_common::manifest::ObjectVersion>>,
    listings: Vec<Option<weft_common::rpc::ListPage>>,
    applied: Option<openraft::LogId<u64>>,
}

async fn observe(sm: &mut StateMachine) -> Observed {
    let mut objects = vec![];
    let mut listings = vec![];
    for b in BUCKETS {
        for k in KEYS {
            objects.push(sm.object(b, k).expect("object"));
        }
        for delimiter in [None, Some("/".to_string())] {
            listings.push(
                sm.list(&ListRequest {
                    bucket: b.into(),
                    prefix: String::new(),
                    delimiter,
                    after: None,
                    max_keys: 1_000,
                })
                .expect("list"),
            );
        }
    }
    Observed {
        buckets: sm.buckets().expect("buckets"),
        keys: sm.keys().expect("keys"),
        nodes: sm.nodes().expect("nodes"),
        uploads: UPLOADS
            .iter()
            .map(|u| sm.upload(u).expect("upload"))
            .collect(),
        objects,
        listings,
        applied: sm.applied_state().await.expect("applied state").0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_commands_give_same_state_whatever_the_batching() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let cmds: Vec<Command> = (1..=400).map(|n| random_command(&mut rng, n)).collect();
    let dir1 = tempfile::tempdir().expect("temporary directory");
    let dir2 = tempfile::tempdir().expect("temporary directory");
    let mut sm1 = StateMachine::open(dir1.path()).expect("open");
    let mut sm2 = StateMachine::open(dir2.path()).expect("open");

    // One batch on the first, uneven batches on the second.
    let all = entries(1, cmds.clone());
    let results1 = sm1.apply(all.clone()).await.expect("apply");
    let mut results2 = vec![];
    let mut rest = all;
    while !rest.is_empty() {
        let n = rng.gen_range(1..=17).min(rest.len());
        let batch: Vec<_> = rest.drain(..n).collect();
        results2.extend(sm2.apply(batch).await.expect("apply"));
    }
    assert_eq!(results1.len(), cmds.len(), "one result per entry");
    assert_eq!(results1, results2, "same results");

    // The workload exercised both outcomes, so the comparison means something.
    let refused = results1
        .iter()
        .filter(|r| matches!(r, CommandResult::Refused { .. }))
        .count();
    assert!(refused > 20 && refused < 380, "{refused} refusals");

    let o1 = observe(&mut sm1).await;
    let o2 = observe(&mut sm2).await;
    assert_eq!(o1.applied, Some(log_id(400)));
    assert!(o1.objects.iter().any(Option::is_some), "some objects exist");
    assert_eq!(o1, o2, "same observable state");

    let s1 = sm1
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    let s2 = sm2
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    assert_eq!(s1.meta, s2.meta);
    assert_eq!(
        s1.snapshot.into_inner(),
        s2.snapshot.into_inner(),
        "byte-identical snapshots"
    );
}

#[tokio::test]
async fn refusals_are_results_not_errors() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut sm = StateMachine::open(dir.path()).expect("open");
    let results = sm
        .apply(entries(
            1,
            [
                create_bucket("a", "owner1"),
                put("a", "k", 1),
                create_bucket("a", "owner2"),
                Command::DeleteBucket { name: "a".into() },
            ],
        ))
        .await
        .expect("refusals do not fail apply");
    assert_eq!(
        results,
        vec![
            CommandResult::Done,
            CommandResult::Replaced { previous: None },
            CommandResult::Refused {
                refusal: Refusal::BucketExists {
                    owner: "owner1".into()
                }
            },
            CommandResult::Refused {
                refusal: Refusal::BucketNotEmpty
            },
        ]
    );
    // Refused entries still count as applied, and changed nothing.
    assert_eq!(
        sm.applied_state().await.expect("applied").0,
        Some(log_id(4))
    );
    assert_eq!(
        sm.bucket("a").expect("bucket").map(|b| b.owner),
        Some("owner1".into())
    );
    assert_eq!(sm.object("a", "k").expect("object"), Some(version(1)));

    let results = sm
        .apply(entries(
            5,
            [
                Command::DeleteObject {
                    bucket: "a".into(),
                    key: "k".into(),
                    marker: None,
                },
                Command::DeleteBucket { name: "a".into() },
                Command::DeleteBucket { name: "a".into() },
                put("a", "k", 2),
            ],
        ))
        .await
        .expect("apply");
    assert_eq!(
        results,
        vec![
            CommandResult::Replaced {
                previous: Some(version(1))
            },
            CommandResult::Done,
            CommandResult::Refused {
                refusal: Refusal::NoSuchBucket
            },
            CommandResult::Refused {
                refusal: Refusal::NoSuchBucket
            },
        ]
    );
    assert_eq!(
        sm.applied_state().await.expect("applied").0,
        Some(log_id(8))
    );
    assert_eq!(sm.bucket("a").expect("bucket"), None);
}

// ---------------------------------------------------------------------------
// snapshots describe exactly the state they hold
// ---------------------------------------------------------------------------

/// A snapshot built while entries are being applied must hold exactly the
/// state at its `last_log_id`: a follower installing it replays from there.
///
/// Snapshots are built back to back while a writer applies entries. Every
/// `EVERY` entries the writer pauses until a snapshot that started after its
/// last apply has finished, so that one must claim exactly that entry (a stale
/// or cached `last_log_id` fails the check below); the others land wherever
/// scheduling puts them. Then every snapshot is installed on a follower and
/// must hold exactly as many objects as its `last_log_id` implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_built_during_apply_matches_its_last_log_id() {
    const LAST: u64 = 300;
    const EVERY: u64 = 50;
    let dir = tempfile::tempdir().expect("temporary directory");
    let leader_dir = dir.path().join("leader");
    let follower_dir = dir.path().join("follower");
    std::fs::create_dir(&leader_dir).expect("mkdir");
    std::fs::create_dir(&follower_dir).expect("mkdir");
    let mut sm = StateMachine::open(&leader_dir).expect("open");
    sm.apply([entry(1, create_bucket("b", "o"))])
        .await
        .expect("apply");

    // Entry i (i >= 2) puts one new key, so a state holds i - 1 objects.
    // `built` counts finished snapshots. When the writer pauses it reads n:
    // snapshot n + 1 may have started before its last apply, but snapshot
    // n + 2 starts after n + 1 finished, so while the writer still waits.
    let (built_tx, mut built_rx) = tokio::sync::watch::channel(0u64);
    let mut writer_sm = sm.clone();
    let writer = tokio::spawn(async move {
        for i in 2..=LAST {
            if i % EVERY == 0 {
                let n = *built_rx.borrow_and_update();
                built_rx
                    .wait_for(|built| *built >= n + 2)
                    .await
                    .expect("snapshot loop alive");
            }
            writer_sm
                .apply([entry(i, put("b", &format!("k{i:05}"), i))])
                .await
                .expect("apply");
        }
    });
    let mut snapshots = vec![];
    while !writer.is_finished() {
        let s = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        snapshots.push((s.meta, s.snapshot.into_inner()));
        built_tx.send_replace(snapshots.len() as u64);
    }
    writer.await.expect("writer");
    let claimed: std::collections::BTreeSet<u64> = snapshots
        .iter()
        .filter_map(|(meta, _)| meta.last_log_id.map(|id| id.index))
        .collect();
    for pause in (EVERY..=LAST).step_by(EVERY as usize) {
        assert!(
            claimed.contains(&(pause - 1)),
            "no snapshot claims entry {} although one was built while the writer \
             waited after applying it; claimed: {claimed:?}",
            pause - 1
        );
    }

    let mut follower = StateMachine::open(&follower_dir).expect("open");
    for (meta, data) in snapshots {
        let index = meta.last_log_id.expect("covers the bucket entry").index;
        let mut b = follower.begin_receiving_snapshot().await.expect("receive");
        *b = std::io::Cursor::new(data);
        follower.install_snapshot(&meta, b).await.expect("install");
        assert_eq!(
            follower.applied_state().await.expect("applied").0,
            meta.last_log_id
        );
        let page = follower
            .list(&ListRequest {
                bucket: "b".into(),
                prefix: String::new(),
                delimiter: None,
                after: None,
                max_keys: 10_000,
            })
            .expect("list")
            .expect("bucket exists");
        assert_eq!(
            page.entries.len() as u64,
            index - 1,
            "snapshot {} claims index {index}",
            meta.snapshot_id
        );
    }
}
