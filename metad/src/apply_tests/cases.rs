//! Single cases of the apply rule, each a bug once reported or a corner
//! the property tests reach only by luck, on the same harness.

use super::*;
use crate::effects::Effects;

/// The reported bug: a `PutPart` applied twice reported its own segments as
/// replaced, and the gateway deleted the acknowledged part's data.
#[test]
fn put_part_applied_twice_does_not_release_its_own_segments() {
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    apply_checked(&sm, &b.build(&Op::CreateUpload { u: 0 }), &mut ever);
    let part = b.build(&Op::PutPart { u: 0, n: 1 });
    apply_checked(&sm, &part, &mut ever);
    let again = apply_checked(&sm, &part, &mut ever);
    assert_eq!(again.result, CommandResult::Released { segments: vec![] });
    assert_eq!(again.effects, Effects::default());
}

/// A part re-uploaded with the same ETag after the gateway read the upload:
/// the completed version must point at the new segments, not the released.
#[test]
fn complete_upload_uses_the_parts_metad_holds() {
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    apply_checked(&sm, &b.build(&Op::CreateUpload { u: 0 }), &mut ever);
    let first = b.build(&Op::PutPart { u: 0, n: 1 });
    apply_checked(&sm, &first, &mut ever);
    let Command::PutPart { part: old, .. } = &first else {
        unreachable!()
    };
    // The gateway reads the upload here, then the part is uploaded again.
    let redo = b.build(&Op::PutPart { u: 0, n: 1 });
    let released = apply_checked(&sm, &redo, &mut ever);
    assert_eq!(
        released.result.released_segments(),
        vec![old.segments[0].id]
    );
    let Command::PutPart { part: new, .. } = &redo else {
        unreachable!()
    };
    let mut complete = b.build(&Op::Complete { u: 0, parts: 1 });
    if let Command::CompleteUpload { version, .. } = &mut complete {
        version.segments = old.segments.clone(); // what the gateway had read
    }
    apply_checked(&sm, &complete, &mut ever);
    let current = sm.object("plain", "k1").unwrap().unwrap();
    assert_eq!(
        current.segments.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![new.segments[0].id]
    );
    assert_eq!(current.part_sizes, vec![PART_BYTES]);
}

/// Retention: records older than the retention behind the newest request
/// are pruned, a few per applied request, so the table stays bounded.
#[test]
fn request_records_expire_after_the_retention() {
    let (_dir, sm) = setup();
    let tags = |n: u128, at_ms: u64| Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT,
        actor: None,
        id: RequestId(n),
        at_ms,
        command: Box::new(Command::SetBucketTags {
            bucket: "plain".into(),
            tags: Default::default(),
        }),
    };
    for n in 0..20 {
        sm.apply_for_test(&tags(n, 1_000)).unwrap();
    }
    assert_eq!(sm.references_for_test().unwrap().2, 20);
    let later = 1_000 + weft_common::rpc::REQUEST_RETENTION_MS + 1;
    sm.apply_for_test(&tags(100, later)).unwrap();
    sm.apply_for_test(&tags(101, later)).unwrap();
    assert_eq!(
        sm.references_for_test().unwrap().2,
        2,
        "20 expired records pruned, 2 fresh kept"
    );
}

/// The first leader seeds the timers from its config; a later leader with a
/// different config seeds nothing, so an operator's change survives every
/// election; a change merges into the pair held; an unsafe pair is refused
/// whatever the flag; a lowered age stays protected in what is served; and
/// the record moves with a snapshot.
#[test]
fn upload_timers_seed_once_merge_refuse_unsafe_and_travel_in_snapshots() {
    let (_dir, sm) = setup();
    assert_eq!(sm.upload_timers().unwrap(), None);
    let pair = |age: u64, grace: u64| UploadTimers {
        upload_max_age_ms: age,
        gc_grace_ms: grace,
    };
    let set = |age: Option<u64>, grace: Option<u64>, seed: bool| Command::SetUploadTimers {
        upload_max_age_ms: age,
        gc_grace_ms: grace,
        seed,
        at_ms: 1_000,
    };
    let held =
        |sm: &crate::state_machine::StateMachine| sm.upload_timers().unwrap().map(|r| r.timers);
    sm.apply_for_test(&set(Some(4_000), Some(8_000), true))
        .unwrap();
    assert_eq!(held(&sm), Some(pair(4_000, 8_000)));
    sm.apply_for_test(&set(Some(5_000), Some(10_000), true))
        .unwrap();
    assert_eq!(
        held(&sm),
        Some(pair(4_000, 8_000)),
        "a second seed must not override"
    );
    sm.apply_for_test(&set(Some(3_000), None, false)).unwrap();
    assert_eq!(
        held(&sm),
        Some(pair(3_000, 8_000)),
        "the grace kept its value"
    );
    sm.apply_for_test(&set(None, Some(6_000), false)).unwrap();
    assert_eq!(held(&sm), Some(pair(3_000, 6_000)));
    let record = sm.upload_timers().unwrap().unwrap();
    assert_eq!(
        record.served(1_000).gc_grace_ms,
        8_000,
        "the age lowered from 4 s stays protected (twice it) for a while"
    );
    for seed in [false, true] {
        let r = sm
            .apply_for_test(&set(Some(3_000), Some(5_999), seed))
            .unwrap();
        match r {
            CommandResult::Refused {
                refusal: weft_common::rpc::Refusal::UnsafeTimers { message },
            } => assert!(message.contains("at least 6000"), "{message}"),
            other => panic!("unsafe pair applied: {other:?}"),
        }
    }
    assert_eq!(held(&sm), Some(pair(3_000, 6_000)));
    let other = tempfile::tempdir().unwrap();
    let copy = sm.snapshot_roundtrip_for_test(other.path()).unwrap();
    assert_eq!(copy.upload_timers().unwrap(), sm.upload_timers().unwrap());
    assert_eq!(copy.digest().unwrap().1, sm.digest().unwrap().1);
}

/// A version that keeps some segments of the one it replaces (a copy onto
/// itself): those stay referenced, so only the others are released, and the
/// effects say the same.
#[test]
fn segments_the_same_command_still_references_are_not_released() {
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    let first = b.build(&Op::Put { b: 0, k: 0 });
    apply_checked(&sm, &first, &mut ever);
    let Command::PutObject { version: old, .. } = &first else {
        unreachable!()
    };
    let mut segments = vec![old.segments[0].clone()];
    segments.extend(b.segments(1));
    let second = Command::PutObject {
        bucket: "plain".into(),
        key: "k1".into(),
        version: b.version(10, segments.clone()),
        condition: None,
    };
    let applied = apply_checked(&sm, &second, &mut ever);
    let CommandResult::Replaced {
        previous: Some(previous),
    } = &applied.result
    else {
        panic!("answered {:?}", applied.result)
    };
    assert_eq!(previous.segments, vec![old.segments[1].clone()]);
    assert_eq!(applied.effects.released, vec![old.segments[1].clone()]);
    assert_eq!(
        applied
            .effects
            .added
            .iter()
            .map(|(_, s)| s.id)
            .collect::<Vec<_>>(),
        segments.iter().map(|s| s.id).collect::<Vec<_>>()
    );

    // Every segment kept: nothing of the previous version is released.
    let Command::PutObject { version: kept, .. } = &second else {
        unreachable!()
    };
    let third = Command::PutObject {
        bucket: "plain".into(),
        key: "k1".into(),
        version: b.version(10, kept.segments.clone()),
        condition: None,
    };
    let applied = apply_checked(&sm, &third, &mut ever);
    assert_eq!(applied.result, CommandResult::Replaced { previous: None });
    assert!(applied.effects.released.is_empty());
}

/// A released segment is reported where its shards are now (the index's
/// placement after a move), not where the manifest first put them, in the
/// result and the effects alike.
#[test]
fn released_segments_carry_their_current_placement() {
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    let put = b.build(&Op::Put { b: 0, k: 0 });
    apply_checked(&sm, &put, &mut ever);
    let Command::PutObject { version, .. } = &put else {
        unreachable!()
    };
    let moved = version.segments[0].id;
    let r = apply_checked(
        &sm,
        &Command::MoveShard {
            segment: moved,
            index: 0,
            from: Some(NodeId(1)),
            to: NodeId(4),
        },
        &mut ever,
    );
    assert_eq!(r.result, CommandResult::Done);
    assert!(r.effects.is_empty(), "a move changes no reference");
    let delete = Command::DeleteObject {
        bucket: "plain".into(),
        key: "k1".into(),
        marker: None,
    };
    let applied = apply_checked(&sm, &delete, &mut ever);
    let shards = |segments: &[Segment]| -> Vec<Vec<Option<NodeId>>> {
        segments.iter().map(|s| s.shards.clone()).collect()
    };
    let now = vec![
        vec![Some(NodeId(4)), Some(NodeId(2)), Some(NodeId(3))],
        vec![Some(NodeId(1)), Some(NodeId(2)), Some(NodeId(3))],
    ];
    assert_eq!(shards(&applied.effects.released), now);
    assert_eq!(shards(&released_in(&applied.result)), now);
}

/// An entry in a command format newer than this binary reads is not
/// applied: apply fails (which stops the raft core) and changes nothing.
#[test]
fn a_newer_command_format_is_not_applied() {
    let (_dir, sm) = setup();
    let before = sm.digest().unwrap();
    let newer = Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT + 1,
        actor: None,
        id: RequestId(7),
        at_ms: 1,
        command: Box::new(Command::SetBucketTags {
            bucket: "plain".into(),
            tags: [("k".to_string(), "v".to_string())].into(),
        }),
    };
    match sm.apply_for_test(&newer) {
        Err(crate::error::MetaError::NewerFormat { format, supported }) => {
            assert_eq!(
                (format, supported),
                (
                    weft_common::rpc::COMMAND_FORMAT + 1,
                    weft_common::rpc::COMMAND_FORMAT
                )
            );
        }
        other => panic!("a newer format was applied: {other:?}"),
    }
    assert_eq!(sm.digest().unwrap().1, before.1);
}

/// The `Segments` query pages through the index in id order, says when
/// more follow, and resumes strictly after the last id it gave.
#[test]
fn segment_index_pages_cover_every_segment_once() {
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    apply_checked(&sm, &b.build(&Op::CreateUpload { u: 0 }), &mut ever);
    for n in 1..=5 {
        apply_checked(&sm, &b.build(&Op::PutPart { u: 0, n }), &mut ever);
    }
    let mut all = Vec::new();
    sm.scan_segments(|id, _| all.push(id)).unwrap();
    assert_eq!(all.len(), 5, "one segment per part");
    let mut paged = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (page, more) = sm.segments_page(after, 2).unwrap();
        pages += 1;
        assert!(page.len() <= 2);
        after = page.last().map(|(id, _)| *id);
        paged.extend(page.into_iter().map(|(id, _)| id));
        if !more {
            break;
        }
    }
    assert_eq!(pages, 3, "2 + 2 + 1");
    assert_eq!(paged, all, "every segment once, in id order");
}

/// A transition's commit replaces exactly the segments it names and the
/// class, keeps everything else of the version, moves the class usage, and
/// loses to anything that changed the version first; applied again it is
/// refused and releases nothing.
#[test]
fn transitions_replace_segments_by_compare_and_set_and_keep_the_version() {
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    apply_checked(&sm, &b.build(&Op::Put { b: 1, k: 0 }), &mut ever);
    let before = sm.object("versioned", "k1").unwrap().unwrap();
    let moved = b.build(&Op::Transition {
        pick: 0,
        relabel: false,
    });
    let r = apply_checked(&sm, &moved, &mut ever);
    assert_eq!(
        r.result.released_segments(),
        before.segments.iter().map(|s| s.id).collect::<Vec<_>>()
    );
    let after = sm.object("versioned", "k1").unwrap().unwrap();
    assert_eq!(after.storage_class, "GLACIER_IR");
    assert_eq!(
        (
            after.version_id,
            &after.etag,
            after.size,
            after.last_modified_ms
        ),
        (
            before.version_id,
            &before.etag,
            before.size,
            before.last_modified_ms
        )
    );
    let Command::TransitionVersion { segments, .. } = &moved else {
        unreachable!()
    };
    assert_eq!(
        after.segments.iter().map(|s| s.id).collect::<Vec<_>>(),
        segments.iter().map(|(_, n)| n.id).collect::<Vec<_>>()
    );
    // The history entry moved with it (GET ?versionId reads that one).
    let label = after.version_label.clone().expect("versioned");
    let entry = sm
        .object_version("versioned", "k1", &label)
        .unwrap()
        .unwrap();
    assert_eq!(entry.version.unwrap().storage_class, "GLACIER_IR");
    let usage = sm.class_usage().unwrap();
    assert!(usage.iter().all(|u| u.class == "GLACIER_IR"), "{usage:?}");
    // Applied again: refused, nothing released.
    let again = apply_checked(&sm, &moved, &mut ever);
    assert_eq!(
        again.result,
        CommandResult::Refused {
            refusal: weft_common::rpc::Refusal::Stale
        }
    );

    // An overwrite before the commit wins: the move of the old version of
    // an unversioned key is refused and the new version stays as written.
    apply_checked(&sm, &b.build(&Op::Put { b: 0, k: 1 }), &mut ever);
    let late = b.build(&Op::Transition {
        pick: 1,
        relabel: false,
    });
    apply_checked(&sm, &b.build(&Op::Put { b: 0, k: 1 }), &mut ever);
    let r = apply_checked(&sm, &late, &mut ever);
    assert!(matches!(r.result, CommandResult::Refused { .. }), "{r:?}");
    assert_eq!(
        sm.object("plain", "k2").unwrap().unwrap().storage_class,
        "STANDARD"
    );

    // A relabel keeps the segments and moves their class.
    let relabel = b.build(&Op::Transition {
        pick: 2,
        relabel: true,
    });
    let r = apply_checked(&sm, &relabel, &mut ever);
    assert_eq!(r.result, CommandResult::Released { segments: vec![] });
    let v = sm.object("plain", "k2").unwrap().unwrap();
    assert_eq!(v.storage_class, "GLACIER_IR");
    let usage = sm.class_usage().unwrap();
    assert!(
        usage
            .iter()
            .any(|u| u.class == "GLACIER_IR" && u.bucket == "plain" && u.usage.segments == 2),
        "{usage:?}"
    );
    assert!(
        !usage
            .iter()
            .any(|u| u.class == "STANDARD" && u.bucket == "plain" && u.usage.segments > 0),
        "{usage:?}"
    );
}

/// A commit naming a new segment the index already holds is refused: two
/// references to one record would let releasing one free the other.
#[test]
fn a_transition_reusing_an_indexed_segment_id_is_refused() {
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    apply_checked(&sm, &b.build(&Op::Put { b: 0, k: 0 }), &mut ever);
    apply_checked(&sm, &b.build(&Op::Put { b: 0, k: 1 }), &mut ever);
    let other = sm.object("plain", "k2").unwrap().unwrap();
    let mut cmd = b.build(&Op::Transition {
        pick: 0,
        relabel: false,
    });
    if let Command::TransitionVersion { segments, .. } = &mut cmd {
        segments[0].1.id = other.segments[0].id;
    }
    let r = apply_checked(&sm, &cmd, &mut ever);
    assert_eq!(
        r.result,
        CommandResult::Refused {
            refusal: weft_common::rpc::Refusal::Stale
        }
    );
    assert_eq!(
        sm.object("plain", "k1").unwrap().unwrap().storage_class,
        "STANDARD"
    );
}

/// A move within a class (`from == to`) commits only as a `Migrate` step
/// while that class's migration lasts, and only under the definition it
/// migrates to.
#[test]
fn a_migrate_commit_needs_its_migration() {
    use weft_common::lifecycle::Step;
    use weft_common::storage_class::default_classes;
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    sm.apply_for_test(&Command::SeedStorageClasses {
        classes: default_classes(),
    })
    .unwrap();
    apply_checked(&sm, &b.build(&Op::Put { b: 0, k: 0 }), &mut ever);
    let v = sm.object("plain", "k1").unwrap().unwrap();
    // Replicated test segments fit any definition; a relabel of them is
    // what a migration commits for small objects.
    let relabel =
        |placement: weft_common::storage_class::PlacementRule| Command::TransitionVersion {
            bucket: "plain".into(),
            key: "k1".into(),
            version_id: v.version_id,
            from_class: "STANDARD".into(),
            to_class: "STANDARD".into(),
            segments: v
                .segments
                .iter()
                .map(|s| {
                    let mut n = s.clone();
                    n.placement = Some(placement.clone());
                    (s.id, n)
                })
                .collect(),
            step: Some(Step::Migrate {
                version_id: v.version_id,
                class: "STANDARD".into(),
            }),
            at_ms: 1,
        };
    let rule = weft_common::storage_class::PlacementRule::default();
    let stale = CommandResult::Refused {
        refusal: weft_common::rpc::Refusal::Stale,
    };
    // No migration: refused.
    assert_eq!(
        apply_checked(&sm, &relabel(rule.clone()), &mut ever).result,
        stale
    );
    let standard = default_classes()
        .into_iter()
        .find(|c| c.name == "STANDARD")
        .unwrap();
    sm.apply_for_test(&Command::PutStorageClass {
        class: standard.clone(),
        migrate: true,
    })
    .unwrap();
    assert_eq!(sm.class_migrations().unwrap().len(), 1);
    let cmd = relabel(rule.clone());
    assert_eq!(
        apply_checked(&sm, &cmd, &mut ever).result,
        CommandResult::Released { segments: vec![] }
    );
    apply_again(&sm, &cmd, &mut ever);
    // A finish naming another definition leaves the migration; the right
    // one ends it, and a migrate commit is refused again.
    let mut other = standard.clone();
    other.small_object_copies = 2;
    sm.apply_for_test(&Command::FinishClassMigration {
        class: other,
        epoch: 0,
    })
    .unwrap();
    assert_eq!(sm.class_migrations().unwrap().len(), 1);
    sm.apply_for_test(&Command::FinishClassMigration {
        class: standard,
        epoch: 0,
    })
    .unwrap();
    assert!(sm.class_migrations().unwrap().is_empty());
    assert_eq!(apply_checked(&sm, &relabel(rule), &mut ever).result, stale);
}

/// A reseal replaces a secret only while the record still holds the value
/// it was computed from (or, in clear, is still the same key in clear),
/// and applying it again changes nothing.
#[test]
fn a_reseal_is_a_compare_and_set_and_applies_once() {
    use weft_common::rpc::Refusal;
    let (_dir, sm) = setup();
    let key = weft_common::manifest::AccessKey {
        access_key: "AKRESEAL".into(),
        secret_key: "clear-secret".into(),
        name: "reseal".into(),
        root: false,
        created_ms: 1,
    };
    sm.apply_for_test(&Command::CreateKey { key: key.clone() })
        .unwrap();
    let reseal = |created_ms: u64, from: Option<&str>, sealed: &str| Command::ResealKey {
        access_key: key.access_key.clone(),
        created_ms,
        from: from.map(String::from),
        sealed: sealed.into(),
    };
    let stored = |sm: &crate::state_machine::StateMachine| {
        sm.access_key("AKRESEAL").unwrap().unwrap().secret_key
    };
    let stale = CommandResult::Refused {
        refusal: Refusal::Stale,
    };
    // Another record (created at another time), or a sealed value that is
    // not there: refused, nothing changes.
    let first = "weft-sealed:v1:a:b";
    assert_eq!(sm.apply_for_test(&reseal(2, None, first)).unwrap(), stale);
    assert_eq!(
        sm.apply_for_test(&reseal(1, Some("weft-sealed:v1:x:y"), first))
            .unwrap(),
        stale
    );
    assert_eq!(stored(&sm), "clear-secret");
    // In clear, the same record: sealed; again: nothing more.
    let cmd = reseal(1, None, first);
    assert_eq!(sm.apply_for_test(&cmd).unwrap(), CommandResult::Done);
    assert_eq!(stored(&sm), first);
    assert_eq!(sm.apply_for_test(&cmd).unwrap(), CommandResult::Done);
    assert_eq!(stored(&sm), first);
    // A second "in clear" reseal now finds it sealed: stale.
    assert_eq!(
        sm.apply_for_test(&reseal(1, None, "weft-sealed:v1:c:d"))
            .unwrap(),
        stale
    );
    // From the sealed value: resealed.
    let second = "weft-sealed:v1:e:f";
    assert_eq!(
        sm.apply_for_test(&reseal(1, Some(first), second)).unwrap(),
        CommandResult::Done
    );
    assert_eq!(stored(&sm), second);
    // A deleted key is not brought back.
    sm.apply_for_test(&Command::DeleteKey {
        name: "reseal".into(),
    })
    .unwrap();
    assert_eq!(
        sm.apply_for_test(&reseal(1, Some(second), "weft-sealed:v1:g:h"))
            .unwrap(),
        stale
    );
    assert!(sm.access_key("AKRESEAL").unwrap().is_none());
}

/// Listing versions page by page gives exactly what one page holding
/// everything gives, with and without a delimiter, for any page size,
/// although a page now reads only from its marker and only the keys it
/// can need.
#[test]
fn version_pages_cover_the_prefix_exactly_once_whatever_their_size() {
    let (_dir, sm) = setup();
    let mut b = Builder::default();
    // The placement a repair moved, which every listing must show.
    let mut moved = None;
    for bucket in ["plain", "versioned", "suspended"] {
        let mut live = std::collections::BTreeSet::new();
        for i in 0..60u32 {
            let key = match i {
                // A key holding NUL, extending another key: listed like any
                // other (the listing reads such prefixes whole).
                7 => "k005\0x".to_string(),
                i if i % 3 == 0 => format!("d{}/k{i:03}", i % 4),
                i => format!("k{i:03}"),
            };
            live.insert(key.clone());
            // Some keys get several versions, some a delete on top.
            for _ in 0..(1 + i % 3) {
                let segs = b.segments(1);
                if moved.is_none() && bucket == "versioned" {
                    moved = Some(segs[0].id);
                }
                let version = b.version(10, segs);
                sm.apply_for_test(&Command::PutObject {
                    bucket: bucket.into(),
                    key: key.clone(),
                    version,
                    condition: None,
                })
                .unwrap();
            }
            if i % 5 == 0 {
                sm.apply_for_test(&Command::DeleteObject {
                    bucket: bucket.into(),
                    key: key.clone(),
                    marker: Some((VersionId(b.fresh()), 2_000)),
                })
                .unwrap();
                if bucket == "plain" {
                    live.remove(&key);
                }
            }
        }
        if bucket == "versioned" {
            let segment = moved.expect("a segment written");
            sm.apply_for_test(&Command::MoveShard {
                segment,
                index: 0,
                from: Some(NodeId(1)),
                to: NodeId(4),
            })
            .unwrap();
        }
        // Every key written (and, unversioned, not deleted) is listed.
        let all = sm
            .versions(bucket, "", None, None, None, 1_000_000)
            .unwrap();
        let listed: std::collections::BTreeSet<String> =
            all.entries.iter().map(|(k, _, _)| k.clone()).collect();
        if bucket != "suspended" {
            assert_eq!(listed, live, "{bucket}");
        }
        // A marker past the prefix: nothing.
        let past = sm.versions(bucket, "d1", Some("e"), None, None, 5).unwrap();
        assert!(past.entries.is_empty() && past.next.is_none());
        for (prefix, delimiter) in [("", None), ("", Some("/")), ("d1", None), ("k0", Some("/"))] {
            let whole = sm
                .versions(bucket, prefix, None, None, delimiter, 1_000_000)
                .unwrap();
            assert!(whole.next.is_none());
            let want: Vec<(String, String)> = whole
                .entries
                .iter()
                .map(|(k, r, _)| (k.clone(), r.version_id.clone()))
                .collect();
            assert!(!want.is_empty() || !whole.common_prefixes.is_empty());
            for max in [1u32, 2, 3, 7, 50] {
                let (mut got, mut prefixes) = (vec![], vec![]);
                let mut marker: Option<(String, Option<String>)> = None;
                for _ in 0..10_000 {
                    let page = sm
                        .versions(
                            bucket,
                            prefix,
                            marker.as_ref().map(|m| m.0.as_str()),
                            marker.as_ref().and_then(|m| m.1.as_deref()),
                            delimiter,
                            max,
                        )
                        .unwrap();
                    assert!(page.entries.len() + page.common_prefixes.len() <= max as usize);
                    got.extend(
                        page.entries
                            .iter()
                            .map(|(k, r, _)| (k.clone(), r.version_id.clone())),
                    );
                    prefixes.extend(page.common_prefixes);
                    match page.next {
                        Some(n) => marker = Some(n),
                        None => break,
                    }
                }
                assert_eq!(got, want, "{bucket} {prefix:?} {delimiter:?} max {max}");
                if bucket == "versioned" && prefix.is_empty() && delimiter.is_none() && max == 3 {
                    // The moved shard shows where it is now.
                    let segment = moved.expect("a segment written");
                    let shown = whole
                        .entries
                        .iter()
                        .filter_map(|(_, r, _)| r.version.as_ref())
                        .flat_map(|v| &v.segments)
                        .find(|s| s.id == segment)
                        .expect("the moved segment is listed");
                    assert_eq!(shown.shards[0], Some(NodeId(4)));
                }
                assert_eq!(
                    prefixes, whole.common_prefixes,
                    "{bucket} {prefix:?} {delimiter:?} max {max}"
                );
            }
        }
        // Placements (locate's and warm's walk): the current versions, each
        // once, whatever the page size, with current placement.
        for prefix in ["", "d1", "k0"] {
            let whole = sm
                .versions(bucket, prefix, None, None, None, 1_000_000)
                .unwrap();
            let want: Vec<(String, Vec<Vec<Option<NodeId>>>)> = whole
                .entries
                .iter()
                .filter(|(_, _, latest)| *latest)
                .filter_map(|(k, r, _)| r.version.as_ref().map(|v| (k, v)))
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.segments.iter().map(|s| s.shards.clone()).collect(),
                    )
                })
                .collect();
            for max in [1u32, 2, 7, 1000] {
                let mut got = vec![];
                let mut after: Option<String> = None;
                for _ in 0..10_000 {
                    let (page, next) = sm
                        .placements(bucket, prefix, after.as_deref(), max)
                        .unwrap();
                    assert!(page.len() <= max as usize);
                    got.extend(
                        page.into_iter().map(|o| {
                            (o.key, o.segments.iter().map(|s| s.shards.clone()).collect())
                        }),
                    );
                    match next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                assert_eq!(got, want, "placements {bucket} {prefix:?} max {max}");
                // The table form answers the same pages: the same keys and
                // resume points, each segment spelled out from its table
                // entry equal to the full form's but for the id, offset
                // and placement rule it leaves out.
                let mut after: Option<String> = None;
                for _ in 0..10_000 {
                    let (full, next) = sm
                        .placements(bucket, prefix, after.as_deref(), max)
                        .unwrap();
                    let (table, tnext) = sm
                        .placement_table(bucket, prefix, after.as_deref(), max)
                        .unwrap();
                    assert_eq!(tnext, next, "table {bucket} {prefix:?} max {max}");
                    // Decoded by several threads: the same page.
                    let split = sm
                        .placement_walk(bucket, prefix, after.as_deref(), max, 2)
                        .unwrap();
                    assert_eq!(split, (table.clone(), tnext.clone()), "split {max}");
                    assert!(table.is_consistent());
                    assert_eq!(table.objects.len(), full.len());
                    for (t, f) in table.objects.iter().zip(&full) {
                        assert_eq!((&t.key, t.size), (&f.key, f.size));
                        assert_eq!(t.segments.len(), f.segments.len());
                        for (ts, fs) in t.segments.iter().zip(&f.segments) {
                            let spelled = table.segment(ts).unwrap();
                            assert_eq!(
                                (spelled.layout, &spelled.shards, &spelled.cache),
                                (fs.layout, &fs.shards, &fs.cache)
                            );
                            assert_eq!((spelled.len, spelled.shard_len), (fs.len, fs.shard_len));
                        }
                    }
                    match next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
            }
        }
    }
}

/// Cache copies (`weft warm`): recorded once, only while a warm of their
/// zone covers the object and only where the zone lacks the index;
/// answered as held to garbage collection but never part of the placement
/// the durability survey reads; forgotten when their node reports them
/// missing or damaged, when the shard is placed on their node, and when
/// their segment is released. Warms are refused where they cannot be
/// kept, and an expiry judged against an older request leaves a newer one
/// alone.
#[test]
fn cache_copies_are_held_but_never_placed_and_go_with_their_segment() {
    use weft_common::rpc::Refusal;
    use weft_common::warm::{CacheCopy, Warm};
    let (_dir, sm) = setup();
    // Node 5 in zone y; the placed shards are on nodes 1..3 in zone z.
    sm.apply_for_test(&Command::RegisterNode {
        node: NodeInfo {
            labels: Default::default(),
            id: NodeId(5),
            zone: "y".into(),
            addr: "127.0.0.1:5".into(),
            capacity_bytes: 1 << 30,
        },
    })
    .unwrap();
    let mut b = Builder::default();
    let mut ever = BTreeSet::new();
    let put = b.build(&Op::Put { b: 0, k: 0 });
    apply_checked(&sm, &put, &mut ever);
    let Command::PutObject { version, .. } = &put else {
        unreachable!()
    };
    let seg = version.segments[0].id;
    let placed = version.segments[0].shards.clone();
    let stale = CommandResult::Refused {
        refusal: Refusal::Stale,
    };
    let add = |node: u64| Command::AddCacheCopy {
        segment: seg,
        index: 0,
        node: NodeId(node),
    };
    assert_eq!(
        apply_checked(&sm, &add(5), &mut ever).result,
        stale,
        "no warm covers it: the file is garbage"
    );
    let warm = Warm {
        zone: "y".into(),
        bucket: "plain".into(),
        prefix: String::new(),
        pinned: false,
        created_ms: 5,
        expires_ms: None,
    };
    let r = sm
        .apply_for_test(&Command::Warm { warm: warm.clone() })
        .unwrap();
    assert_eq!(r, CommandResult::Done);
    sm.apply_for_test(&Command::Warm {
        warm: Warm {
            zone: "z".into(),
            ..warm.clone()
        },
    })
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            apply_checked(&sm, &add(5), &mut ever).result,
            CommandResult::Done
        );
    }
    assert_eq!(
        apply_checked(&sm, &add(9), &mut ever).result,
        stale,
        "unknown node"
    );
    // Zone z holds index 0 placed: a copy there is refused (its file is
    // garbage), and nothing is recorded.
    assert_eq!(apply_checked(&sm, &add(4), &mut ever).result, stale);
    let copy = CacheCopy {
        index: 0,
        node: NodeId(5),
        zone: "y".into(),
    };
    let current = sm.object("plain", "k1").unwrap().unwrap();
    assert_eq!(current.segments[0].cache, vec![copy.clone()]);
    assert_eq!(current.segments[0].shards, placed, "placement unchanged");
    // Locate's and warm status's walk sees the copy beside the placement.
    let (table, _) = sm.placement_table("plain", "", None, 10).unwrap();
    let tabled = &table
        .objects
        .iter()
        .find(|o| o.key == "k1")
        .unwrap()
        .segments[0];
    let spelled = table.segment(tabled).unwrap();
    assert_eq!(
        (spelled.shards, spelled.cache),
        (placed.clone(), vec![copy.clone()])
    );
    let mut records = vec![];
    sm.scan_segments(|id, r| records.push((id, r))).unwrap();
    let rec = &records.iter().find(|(id, _)| *id == seg).unwrap().1;
    assert_eq!(rec.shards, placed, "the survey's placement has no copy");
    assert_eq!(
        sm.shards_held(NodeId(5), &[(seg, 0), (seg, 1)]).unwrap(),
        vec![true, false],
        "garbage collection keeps the copy, and only it"
    );

    let cache_now = |sm: &StateMachine| {
        sm.object("plain", "k1").unwrap().unwrap().segments[0]
            .cache
            .clone()
    };
    // Reported missing, or damaged: the copy is forgotten, the placed
    // shard stays.
    let missing = Command::DropShard {
        segment: seg,
        index: 0,
        node: NodeId(5),
    };
    assert_eq!(
        apply_checked(&sm, &missing, &mut ever).result,
        CommandResult::Done
    );
    assert!(cache_now(&sm).is_empty());
    apply_checked(&sm, &add(5), &mut ever);
    let damaged = Command::ReportDamage {
        segment: seg,
        index: 0,
        node: NodeId(5),
        damage: weft_common::damage::BlockDamage::from_blocks(4096, [0]),
    };
    assert_eq!(
        apply_checked(&sm, &damaged, &mut ever).result,
        CommandResult::Done
    );
    assert!(cache_now(&sm).is_empty());
    assert_eq!(
        sm.object("plain", "k1").unwrap().unwrap().segments[0].shards,
        placed
    );

    // The shard placed on the copy's node: the file is the placed one now,
    // and no copy is remembered to outlive a later move.
    apply_checked(&sm, &add(5), &mut ever);
    let r = apply_checked(
        &sm,
        &Command::MoveShard {
            segment: seg,
            index: 0,
            from: placed[0],
            to: NodeId(5),
        },
        &mut ever,
    );
    assert_eq!(r.result, CommandResult::Done);
    assert!(cache_now(&sm).is_empty());

    // Released with its segment.
    apply_checked(
        &sm,
        &Command::MoveShard {
            segment: seg,
            index: 1,
            from: placed[1],
            to: NodeId(4),
        },
        &mut ever,
    );
    let add1 = Command::AddCacheCopy {
        segment: seg,
        index: 1,
        node: NodeId(5),
    };
    assert_eq!(
        apply_checked(&sm, &add1, &mut ever).result,
        CommandResult::Done
    );
    assert_eq!(cache_now(&sm).len(), 1);
    apply_checked(
        &sm,
        &Command::DeleteObject {
            bucket: "plain".into(),
            key: "k1".into(),
            marker: None,
        },
        &mut ever,
    );
    assert_eq!(sm.shards_held(NodeId(5), &[(seg, 1)]).unwrap(), vec![false]);
    assert_eq!(
        apply_checked(&sm, &add1, &mut ever).result,
        stale,
        "a copy of a released segment is garbage"
    );

    // Refusals, and expiry by compare-and-set.
    let nowhere = sm
        .apply_for_test(&Command::Warm {
            warm: Warm {
                zone: "nowhere".into(),
                ..warm.clone()
            },
        })
        .unwrap();
    assert!(matches!(
        nowhere,
        CommandResult::Refused {
            refusal: Refusal::WarmRefused { .. }
        }
    ));
    let missing = sm
        .apply_for_test(&Command::Warm {
            warm: Warm {
                bucket: "missing".into(),
                ..warm.clone()
            },
        })
        .unwrap();
    assert_eq!(
        missing,
        CommandResult::Refused {
            refusal: Refusal::NoSuchBucket
        }
    );
    let drop = |created_ms| Command::DropWarm {
        zone: "y".into(),
        bucket: "plain".into(),
        prefix: String::new(),
        created_ms,
    };
    assert_eq!(sm.apply_for_test(&drop(Some(4))).unwrap(), stale);
    assert!(sm.warms().unwrap().contains(&warm));
    assert_eq!(
        sm.apply_for_test(&drop(Some(5))).unwrap(),
        CommandResult::Done
    );
    assert!(!sm.warms().unwrap().contains(&warm));
    assert_eq!(sm.apply_for_test(&drop(None)).unwrap(), CommandResult::Done);
}
