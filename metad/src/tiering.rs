//! Tiering by access in the state machine: a bucket's Intelligent-Tiering
//! configurations and unread rules, and the reads gateways report.
//!
//! Reads arrive in batches (`RecordAccess`), each raising a version's last
//! access to the read's time if later; the leader's lifecycle scan judges
//! idle time from it ([`weft_common::lifecycle::tiering`]) and offers tier
//! moves to the transition queue, which commit by the same compare-and-set
//! as any transition, with the tier in the check.

use redb::WriteTransaction;
use weft_common::lifecycle::tiering::{Read, TieringChange, CONFIGS_MAX};
use weft_common::manifest::{BucketInfo, ObjectVersion};
use weft_common::rpc::{CommandResult, Refusal};

use crate::envelope::{sealed, SealedRead};
use crate::error::MetaError;
use crate::tables::*;

/// `SetBucketTiering`. An unread rule needs its target class: refused
/// otherwise, naming the class to define.
pub(crate) fn set(
    tx: &WriteTransaction,
    bucket: &str,
    change: &TieringChange,
) -> Result<CommandResult, MetaError> {
    let refuse = |message: String| {
        Ok(CommandResult::Refused {
            refusal: Refusal::ClassRefused { message },
        })
    };
    let mut needed: Vec<String> = vec![];
    match change {
        TieringChange::Config {
            config: Some(c), ..
        } => {
            if let Err(e) = c.validate() {
                return refuse(e.to_string());
            }
        }
        TieringChange::Config { config: None, .. } => {}
        TieringChange::Unread { rules } => {
            for r in rules {
                if let Err(e) = r.validate() {
                    return refuse(e.to_string());
                }
                needed.push(r.class.clone());
            }
        }
    }
    for class in needed {
        if crate::classes::undefined(tx, &class)?.is_some() {
            return refuse(format!(
                "storage class {class} is not defined on this cluster; define it first (`weft class set {class} ...`)"
            ));
        }
    }
    let mut t = tx.open_table(BUCKETS)?;
    let Some(mut b) = t.get_sealed::<BucketInfo>(T_BUCKETS, bucket)? else {
        return Ok(CommandResult::Refused {
            refusal: Refusal::NoSuchBucket,
        });
    };
    let before = b.tiering.take().unwrap_or_default();
    if let TieringChange::Config {
        id,
        config: Some(c),
    } = change
    {
        if &c.id != id {
            return refuse(format!("configuration {} is named {id}", c.id));
        }
        if !before.configs.contains_key(id) && before.configs.len() >= CONFIGS_MAX {
            return refuse(format!(
                "a bucket has at most {CONFIGS_MAX} Intelligent-Tiering configurations"
            ));
        }
    }
    // An unchanged rule keeps the time it was first set: reads have been
    // noted since then, so re-setting it must not restart idle time.
    let change = match change {
        TieringChange::Unread { rules } => TieringChange::Unread {
            rules: rules
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    if let Some(old) = before
                        .unread
                        .iter()
                        .find(|o| o.prefix == r.prefix && o.class == r.class)
                    {
                        r.since_ms = old.since_ms;
                    }
                    r
                })
                .collect(),
        },
        other => other.clone(),
    };
    let next = before.with(&change);
    b.tiering = (!next.is_empty()).then_some(next);
    t.insert(bucket, sealed::<&str, _>(bucket, &b).as_slice())?;
    Ok(CommandResult::Done)
}

/// `RecordAccess`: each read raises its version's last access (current or
/// in the history) to its time; a version gone since is skipped.
pub(crate) fn record(tx: &WriteTransaction, reads: &[Read]) -> Result<CommandResult, MetaError> {
    for r in reads {
        let raise = |v: &mut ObjectVersion| {
            if v.version_id != r.version_id || v.last_access_ms.is_some_and(|a| a >= r.at_ms) {
                return false;
            }
            v.last_access_ms = Some(r.at_ms);
            true
        };
        let k = object_key(&r.bucket, &r.key);
        {
            let mut objects = tx.open_table(OBJECTS)?;
            let current: Option<ObjectVersion> = objects.get_sealed(T_OBJECTS, k.as_slice())?;
            if let Some(mut v) = current {
                if raise(&mut v) {
                    objects.insert(
                        k.as_slice(),
                        sealed::<&[u8], _>(k.as_slice(), &v).as_slice(),
                    )?;
                }
            }
        }
        // A versioned key keeps a copy in its history too: both agree.
        for (hk, mut rec) in crate::versioning::history(tx, &r.bucket, &r.key)? {
            if rec.version.as_mut().is_some_and(raise) {
                tx.open_table(VERSIONS)?.insert(
                    hk.as_slice(),
                    sealed::<&[u8], _>(hk.as_slice(), &rec).as_slice(),
                )?;
                break;
            }
        }
    }
    Ok(CommandResult::Done)
}

/// Whether tiering may have work in `b`: it has rules of its own, or holds
/// `INTELLIGENT_TIERING` data (judged from the class usage).
pub(crate) fn judged(b: &BucketInfo, it_buckets: &std::collections::BTreeSet<String>) -> bool {
    b.lifecycle.is_some() || b.tiering.is_some() || it_buckets.contains(&b.name)
}

#[cfg(test)]
mod tests {
    use crate::lifecycle::{plan_key, KeyState};
    use crate::state_machine::StateMachine;
    use weft_common::lifecycle::tiering::{AccessTier, Read, IT_CLASS};
    use weft_common::lifecycle::{LifecycleConfig, Step};
    use weft_common::manifest::{BucketInfo, ObjectVersion, Segment};
    use weft_common::profile::Layout;
    use weft_common::rpc::{Command, CommandResult, Refusal};
    use weft_common::{NodeId, SegmentId, VersionId};

    const DAY: u64 = 1_000;

    fn version() -> ObjectVersion {
        let layout = Layout::Erasure {
            k: 4,
            m: 2,
            unit_bytes: 1 << 20,
        };
        ObjectVersion {
            version_id: VersionId(9),
            size: 1 << 20,
            etag: "e".into(),
            crc32c: 0,
            last_modified_ms: 0,
            storage_class: IT_CLASS.into(),
            user_metadata: Default::default(),
            content: Default::default(),
            checksums: Default::default(),
            checksum_type: None,
            version_label: None,
            part_sizes: vec![],
            tags: Default::default(),
            segments: vec![Segment {
                id: SegmentId(77),
                offset: 0,
                len: 1 << 20,
                layout,
                shards: (1..=6).map(|n| Some(NodeId(n))).collect(),
                shard_len: 1 << 18,
                placement: None,
                cache: vec![],
            }],
            tier: None,
            last_access_ms: None,
        }
    }

    fn setup() -> (tempfile::TempDir, StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        let bucket = BucketInfo {
            name: "b".into(),
            owner: "AK".into(),
            created_ms: 1,
            tags: Default::default(),
            versioning: None,
            lifecycle: None,
            tiering: None,
            residency: None,
        };
        sm.apply_for_test(&Command::CreateBucket { bucket })
            .unwrap();
        sm.apply_for_test(&Command::SeedLifecycleDay { day_ms: DAY })
            .unwrap();
        sm.apply_for_test(&Command::PutObject {
            bucket: "b".into(),
            key: "k".into(),
            version: version(),
            condition: None,
        })
        .unwrap();
        (dir, sm)
    }

    fn steps(sm: &StateMachine, now_ms: u64) -> Vec<Step> {
        let k = KeyState {
            key: "k".into(),
            current: sm.object("b", "k").unwrap(),
            history: vec![],
        };
        plan_key(
            &LifecycleConfig::default(),
            None,
            &k,
            now_ms,
            DAY,
            VersionId(0),
        )
    }

    fn tier_move(from: Option<AccessTier>, to: Option<AccessTier>, at_ms: u64) -> Command {
        let v = version();
        Command::TransitionVersion {
            bucket: "b".into(),
            key: "k".into(),
            version_id: v.version_id,
            from_class: IT_CLASS.into(),
            to_class: IT_CLASS.into(),
            // A relabel: the shards stay (no warm zone in this test).
            segments: vec![(v.segments[0].id, v.segments[0].clone())],
            step: Some(Step::Tier {
                version_id: v.version_id,
                from,
                to,
            }),
            at_ms,
        }
    }

    fn read(at_ms: u64) -> Command {
        Command::RecordAccess {
            reads: vec![Read {
                bucket: "b".into(),
                key: "k".into(),
                version_id: VersionId(9),
                at_ms,
            }],
        }
    }

    const STALE: CommandResult = CommandResult::Refused {
        refusal: Refusal::Stale,
    };

    /// An unread version demotes after 30 days; the move commits only from
    /// the tier the step found and only while due; a read brings it back
    /// (and a stale or repeated read changes nothing).
    #[test]
    fn idle_versions_demote_reads_promote_and_each_move_commits_once() {
        let (_d, sm) = setup();
        let infrequent = Some(AccessTier::InfrequentAccess);
        assert!(steps(&sm, 29 * DAY).is_empty());
        let due = Step::Tier {
            version_id: VersionId(9),
            from: None,
            to: infrequent,
        };
        assert_eq!(steps(&sm, 30 * DAY + 1), vec![due]);
        // Not yet due at the time it names: refused.
        assert_eq!(
            sm.apply_for_test(&tier_move(None, infrequent, 29 * DAY))
                .unwrap(),
            STALE
        );
        // From a tier the version is not in: refused.
        assert_eq!(
            sm.apply_for_test(&tier_move(infrequent, None, 31 * DAY))
                .unwrap(),
            STALE
        );
        assert!(matches!(
            sm.apply_for_test(&tier_move(None, infrequent, 31 * DAY))
                .unwrap(),
            CommandResult::Released { .. }
        ));
        let v = sm.object("b", "k").unwrap().unwrap();
        assert_eq!((v.storage_class.as_str(), v.tier), (IT_CLASS, infrequent));
        assert_eq!(v.etag, "e");
        // Applied again: the tier differs now.
        assert_eq!(
            sm.apply_for_test(&tier_move(None, infrequent, 31 * DAY))
                .unwrap(),
            STALE
        );
        // A read at day 32: the last access rises, never falls, and the
        // version is due back in the frequent tier.
        sm.apply_for_test(&read(32 * DAY)).unwrap();
        sm.apply_for_test(&read(31 * DAY)).unwrap();
        sm.apply_for_test(&read(32 * DAY)).unwrap();
        let v = sm.object("b", "k").unwrap().unwrap();
        assert_eq!(v.last_access_ms, Some(32 * DAY));
        assert_eq!(
            steps(&sm, 33 * DAY),
            vec![Step::Tier {
                version_id: VersionId(9),
                from: infrequent,
                to: None,
            }]
        );
        assert!(matches!(
            sm.apply_for_test(&tier_move(infrequent, None, 33 * DAY))
                .unwrap(),
            CommandResult::Released { .. }
        ));
        assert_eq!(sm.object("b", "k").unwrap().unwrap().tier, None);
        // Unread again for 90 days: the archive instant tier.
        assert_eq!(
            steps(&sm, 122 * DAY + 1),
            vec![Step::Tier {
                version_id: VersionId(9),
                from: None,
                to: Some(AccessTier::ArchiveInstantAccess),
            }]
        );
    }

    /// A lifecycle move into Intelligent-Tiering starts the idle clock at
    /// the move (as S3 starts such objects in the frequent tier), so an
    /// old object does not drop to a lower tier on the next pass.
    #[test]
    fn a_move_into_intelligent_tiering_restarts_the_idle_clock() {
        let (_d, sm) = setup();
        let mut v = version();
        v.version_id = VersionId(10);
        v.storage_class = "STANDARD".into();
        v.segments[0].id = SegmentId(78);
        sm.apply_for_test(&Command::PutObject {
            bucket: "b".into(),
            key: "s".into(),
            version: v.clone(),
            condition: None,
        })
        .unwrap();
        let at = 200 * DAY;
        let r = sm
            .apply_for_test(&Command::TransitionVersion {
                bucket: "b".into(),
                key: "s".into(),
                version_id: v.version_id,
                from_class: "STANDARD".into(),
                to_class: IT_CLASS.into(),
                segments: vec![(v.segments[0].id, v.segments[0].clone())],
                step: None,
                at_ms: at,
            })
            .unwrap();
        assert!(matches!(r, CommandResult::Released { .. }), "{r:?}");
        let moved = sm.object("b", "s").unwrap().unwrap();
        assert_eq!((moved.storage_class.as_str(), moved.tier), (IT_CLASS, None));
        assert_eq!(moved.last_access_ms, Some(at));
    }

    /// While the cluster holds Intelligent-Tiering data, the classes that
    /// place its lower tiers cannot be deleted.
    #[test]
    fn classes_placing_tiers_are_kept_while_tiered_data_exists() {
        let (_d, sm) = setup();
        sm.apply_for_test(&Command::SeedStorageClasses {
            classes: weft_common::storage_class::default_classes(),
        })
        .unwrap();
        for name in ["STANDARD_IA", "GLACIER_IR"] {
            let r = sm
                .apply_for_test(&Command::DeleteStorageClass { name: name.into() })
                .unwrap();
            assert!(
                matches!(&r, CommandResult::Refused { refusal: Refusal::ClassRefused { message } } if message.contains("INTELLIGENT_TIERING")),
                "{name}: {r:?}"
            );
        }
        // ONEZONE_IA places no tier.
        assert_eq!(
            sm.apply_for_test(&Command::DeleteStorageClass {
                name: "ONEZONE_IA".into()
            })
            .unwrap(),
            CommandResult::Done
        );
    }

    /// Re-setting an unchanged unread rule keeps the time it was first set
    /// (idle time does not restart); a changed one takes the new time.
    #[test]
    fn an_unchanged_unread_rule_keeps_its_start() {
        let (_d, sm) = setup();
        let set = |class: &str, since_ms| {
            sm.apply_for_test(&Command::SetBucketTiering {
                bucket: "b".into(),
                change: weft_common::lifecycle::tiering::TieringChange::Unread {
                    rules: vec![weft_common::lifecycle::tiering::UnreadRule {
                        prefix: "logs/".into(),
                        days: 7,
                        class: class.into(),
                        since_ms,
                    }],
                },
            })
            .unwrap()
        };
        let since = || sm.bucket("b").unwrap().unwrap().tiering.unwrap().unread[0].since_ms;
        assert_eq!(set("GLACIER_IR", 5), CommandResult::Done);
        assert_eq!(set("GLACIER_IR", 9), CommandResult::Done);
        assert_eq!(since(), 5);
        assert_eq!(set("STANDARD_IA", 11), CommandResult::Done);
        assert_eq!(since(), 11);
    }

    /// A read of a version that is gone, or of another version id, changes
    /// nothing.
    #[test]
    fn reads_of_other_versions_change_nothing() {
        let (_d, sm) = setup();
        let before = sm.object("b", "k").unwrap().unwrap();
        sm.apply_for_test(&Command::RecordAccess {
            reads: vec![
                Read {
                    bucket: "b".into(),
                    key: "k".into(),
                    version_id: VersionId(10),
                    at_ms: 5 * DAY,
                },
                Read {
                    bucket: "b".into(),
                    key: "gone".into(),
                    version_id: VersionId(9),
                    at_ms: 5 * DAY,
                },
            ],
        })
        .unwrap();
        assert_eq!(sm.object("b", "k").unwrap().unwrap(), before);
    }
}
