//! Determinism of the state machine, fed hand-built log entries: the same
//! commands give the same state however they are batched, refusals are
//! results rather than errors, and a snapshot holds exactly the state at its
//! `last_log_id`.

mod support;

use openraft::storage::RaftStateMachine;
use openraft::RaftSnapshotBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use support::{create_bucket, entries, entry, log_id, put, version};
use weft_common::manifest::{AccessKey, Upload, UploadPart};
use weft_common::rpc::{Command, CommandResult, ListRequest, Refusal};
use weft_common::topology::NodeInfo;
use weft_common::NodeId;
use weft_metad::state_machine::StateMachine;

// ---------------------------------------------------------------------------
// deterministic apply
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
                labels: Default::default(),
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
