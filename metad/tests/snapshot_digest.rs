//! A voter that installs a snapshot holds exactly what the voters that
//! applied the log hold: the same digest (every table and setting the
//! digest covers, derived ones such as class usage included).

mod support;

use openraft::storage::RaftStateMachine;
use openraft::RaftSnapshotBuilder;
use support::{create_bucket, entry, put};
use weft_common::rpc::Command;
use weft_metad::state_machine::StateMachine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_snapshot_has_the_digest_of_the_applied_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    let mut a = StateMachine::open(&dir.path().join("a")).unwrap();
    let mut cmds = vec![
        Command::SeedLifecycleDay { day_ms: 1_000 },
        Command::SeedStorageClasses {
            classes: weft_common::storage_class::default_classes(),
        },
        // A class migration in progress and a saved lifecycle cursor are
        // replicated state too.
        Command::PutStorageClass {
            class: weft_common::storage_class::default_classes()
                .into_iter()
                .find(|c| c.name == "STANDARD_IA")
                .unwrap(),
            migrate: true,
        },
        Command::SetLifecycleCursor {
            cursor: weft_common::lifecycle::Cursor {
                pass_started_ms: 5,
                keys: [("c".to_string(), "k3".to_string())].into(),
                ..Default::default()
            },
        },
        create_bucket("b", "o"),
        create_bucket("c", "o"),
        Command::SetBucketLifecycle {
            bucket: "c".into(),
            config: Some(weft_common::lifecycle::LifecycleConfig {
                rules: vec![weft_common::lifecycle::Rule {
                    id: "r".into(),
                    enabled: true,
                    filter: Default::default(),
                    expiration: Some(weft_common::lifecycle::Expiration::Days(3)),
                    noncurrent_expiration: None,
                    abort_incomplete_days: Some(1),
                    ..Default::default()
                }],
            }),
        },
    ];
    for n in 1..40u64 {
        cmds.push(put(
            if n % 3 == 0 { "c" } else { "b" },
            &format!("k{}", n % 17),
            n,
        ));
    }
    cmds.push(Command::DeleteObject {
        bucket: "b".into(),
        key: "k1".into(),
        marker: None,
    });
    for (i, c) in cmds.into_iter().enumerate() {
        a.apply([entry(i as u64 + 1, c)]).await.unwrap();
    }
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut b = StateMachine::open(&dir.path().join("b")).unwrap();
    let mut rx = b.begin_receiving_snapshot().await.unwrap();
    *rx = std::io::Cursor::new(snap.snapshot.into_inner());
    b.install_snapshot(&snap.meta, rx).await.unwrap();
    let (da, db) = (a.digest().unwrap(), b.digest().unwrap());
    assert_eq!(
        da,
        db,
        "usage a {:?}\nusage b {:?}",
        a.class_usage().unwrap(),
        b.class_usage().unwrap()
    );
}
