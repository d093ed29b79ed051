//! The audit chain in apply: recorded once per request, in log order, on
//! every voter alike; checkpoints and prunes as apply judges them; the
//! chain through a snapshot; and what apply wrote verifies.

use weft_common::audit::{
    parse_hash, verify, Actor, AuditEvent, AuditExport, CheckpointSigner, EventKind,
};
use weft_common::manifest::BucketInfo;
use weft_common::rpc::{Command, CommandResult, Refusal};
use weft_common::RequestId;

use crate::state_machine::StateMachine;

fn setup() -> (tempfile::TempDir, StateMachine) {
    let dir = tempfile::tempdir().unwrap();
    let sm = StateMachine::open(dir.path()).unwrap();
    (dir, sm)
}

fn request(id: u128, format: u32, command: Command) -> Command {
    Command::Request {
        id: RequestId(id),
        at_ms: 1_000 + id as u64,
        command: Box::new(command),
        format,
        actor: Some(Actor {
            principal: Some("key AK1".into()),
            via: "gateway at 10.0.0.2".into(),
        }),
    }
}

fn bucket(name: &str) -> Command {
    Command::CreateBucket {
        bucket: BucketInfo {
            name: name.into(),
            owner: "AK1".into(),
            created_ms: 1,
            tags: Default::default(),
            versioning: None,
            lifecycle: None,
            tiering: None,
            residency: None,
        },
    }
}

fn export(sm: &StateMachine) -> AuditExport {
    AuditExport {
        anchor: sm.audit_info().unwrap().anchor,
        entries: sm.audit_entries(0, u32::MAX).unwrap(),
        checkpoints: sm.audit_checkpoints(0, u32::MAX).unwrap(),
    }
}

#[test]
fn a_request_is_recorded_once_with_its_actor_and_outcome_even_when_retried() {
    let (_d, sm) = setup();
    let create = request(1, 2, bucket("b"));
    sm.apply_for_test(&create).unwrap();
    sm.apply_for_test(&create).unwrap();
    // The same name again, in a new request: refused, and recorded so.
    sm.apply_for_test(&request(2, 2, bucket("b"))).unwrap();
    let all = sm.audit_entries(0, 100).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].event.actor, "key AK1 via gateway at 10.0.0.2");
    assert_eq!(all[0].event.action, "create_bucket");
    assert_eq!(all[0].event.outcome, "ok");
    assert_eq!(all[1].event.outcome, "refused: bucket_exists");
    assert_eq!(verify(&export(&sm), &[]).unwrap().entries, 2);
}

#[test]
fn format_1_requests_from_before_the_chain_apply_unrecorded() {
    let (_d, sm) = setup();
    sm.apply_for_test(&request(1, 1, bucket("b"))).unwrap();
    assert!(sm.bucket("b").unwrap().is_some());
    assert!(sm.audit_entries(0, 100).unwrap().is_empty());
}

#[test]
fn a_group_commit_batch_records_each_request_in_order() {
    let (_d, sm) = setup();
    let batch = Command::Batch {
        commands: vec![
            request(1, 2, bucket("a")),
            request(
                2,
                2,
                Command::DeleteBucket {
                    name: "nope".into(),
                },
            ),
            request(3, 2, bucket("c")),
        ],
    };
    sm.apply_for_test(&batch).unwrap();
    let all = sm.audit_entries(0, 100).unwrap();
    let got: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e.event.target.as_str(), e.event.outcome.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("bucket a", "ok"),
            ("bucket nope", "refused: no_such_bucket"),
            ("bucket c", "ok"),
        ]
    );
}

#[test]
fn object_writes_are_recorded_only_while_data_plane_auditing_is_on() {
    let (_d, sm) = setup();
    sm.apply_for_test(&request(1, 2, bucket("b"))).unwrap();
    let tags = |id| {
        request(
            id,
            2,
            Command::SetObjectTags {
                bucket: "b".into(),
                key: "k".into(),
                tags: Default::default(),
            },
        )
    };
    sm.apply_for_test(&tags(2)).unwrap();
    sm.apply_for_test(&request(3, 2, Command::SetAuditConfig { data_plane: true }))
        .unwrap();
    sm.apply_for_test(&tags(4)).unwrap();
    let kinds: Vec<EventKind> = sm
        .audit_entries(0, 100)
        .unwrap()
        .iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![EventKind::Admin, EventKind::Admin, EventKind::Data]
    );
}

#[test]
fn reports_name_their_reporter() {
    let (_d, sm) = setup();
    let event = AuditEvent {
        at_ms: 5,
        kind: EventKind::Denial,
        actor: "datad at 10.0.0.7".into(),
        action: "POST /v1/query".into(),
        target: "keys".into(),
        outcome: "denied".into(),
        count: 4,
    };
    sm.apply_for_test(&request(
        1,
        2,
        Command::Audit {
            events: vec![event],
        },
    ))
    .unwrap();
    let e = &sm.audit_entries(0, 10).unwrap()[0];
    assert_eq!(
        e.event.actor,
        "datad at 10.0.0.7 (reported by gateway at 10.0.0.2)"
    );
    assert_eq!(e.event.count, 4);
}

#[test]
fn checkpoints_and_prunes_hold_only_for_the_chain_as_it_is() {
    let (dir, sm) = setup();
    for i in 1..=6 {
        sm.apply_for_test(&request(i, 2, bucket(&format!("b{i}"))))
            .unwrap();
    }
    let signer = CheckpointSigner::from_master_key(&[3; 32]);
    let entries = sm.audit_entries(0, 100).unwrap();
    let at = |seq: u64| parse_hash(&entries[seq as usize - 1].hash).unwrap();
    // A checkpoint of a hash the chain does not hold is refused.
    let wrong = signer.sign(4, &at(3), 9);
    assert_eq!(
        sm.apply_for_test(&request(
            10,
            2,
            Command::AuditCheckpoint { checkpoint: wrong }
        ))
        .unwrap(),
        CommandResult::Refused {
            refusal: Refusal::Stale
        }
    );
    let cp4 = signer.sign(4, &at(4), 9);
    sm.apply_for_test(&request(
        11,
        2,
        Command::AuditCheckpoint {
            checkpoint: cp4.clone(),
        },
    ))
    .unwrap();
    // An older one than the newest changes nothing.
    sm.apply_for_test(&request(
        12,
        2,
        Command::AuditCheckpoint {
            checkpoint: signer.sign(2, &at(2), 9),
        },
    ))
    .unwrap();
    assert_eq!(sm.audit_checkpoints(0, 10).unwrap(), vec![cp4]);
    // Prunes only to a signed entry.
    assert_eq!(
        sm.apply_for_test(&request(13, 2, Command::AuditPrune { through: 3 }))
            .unwrap(),
        CommandResult::Refused {
            refusal: Refusal::Stale
        }
    );
    sm.apply_for_test(&request(14, 2, Command::AuditPrune { through: 4 }))
        .unwrap();
    let left = sm.audit_entries(0, 100).unwrap();
    assert_eq!(left.first().map(|e| e.seq), Some(5));
    let info = sm.audit_info().unwrap();
    assert_eq!(info.anchor, Some((4, entries[3].hash.clone())));
    let v = verify(&export(&sm), &[signer.public_key_hex()]).unwrap();
    assert_eq!((v.first, v.checkpointed_through), (5, 4));
    // The chain, its checkpoints and its anchor survive a snapshot.
    let next = dir.path().join("restored");
    std::fs::create_dir(&next).unwrap();
    let before = export(&sm);
    let restored = sm.snapshot_roundtrip_for_test(&next).unwrap();
    assert_eq!(export(&restored), before);
    // And the restored voter appends where the chain left off.
    restored
        .apply_for_test(&request(20, 2, bucket("after")))
        .unwrap();
    let v = verify(&export(&restored), &[signer.public_key_hex()]).unwrap();
    assert_eq!(v.last, info.head + 1);
}

/// Two voters applying the same log hold the same chain, byte for byte
/// (the same hashes, so one leader's checkpoint holds on every voter).
#[test]
fn two_voters_applying_one_log_hold_the_same_chain() {
    let log = vec![
        request(1, 2, bucket("a")),
        request(2, 2, Command::SetAuditConfig { data_plane: true }),
        Command::Batch {
            commands: vec![
                request(3, 2, bucket("b")),
                request(4, 2, Command::DeleteBucket { name: "zz".into() }),
            ],
        },
        request(
            5,
            2,
            Command::SetRepairConfig {
                config: Default::default(),
            },
        ),
        request(
            6,
            2,
            Command::SetNodeAdmin {
                node: weft_common::NodeId(9),
                admin: weft_common::topology::NodeAdmin::Draining,
            },
        ),
        request(1, 2, bucket("a")),
    ];
    let (_d1, one) = setup();
    let (_d2, two) = setup();
    for cmd in &log {
        one.apply_for_test(cmd).unwrap();
        two.apply_for_test(cmd).unwrap();
    }
    assert_eq!(export(&one), export(&two));
    assert_eq!(one.digest().unwrap(), two.digest().unwrap());
    assert_eq!(one.audit_entries(0, 100).unwrap().len(), 6);
}
