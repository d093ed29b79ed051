//! `SetBucketResidency` (see `weft_common::residency`).
//!
//! A change of where a bucket's bytes may be starts a migration of every
//! storage class: the migration walk (`server/migrations.rs`) judges each
//! segment against its class narrowed by its bucket's residency, so the
//! bucket's segments outside it are re-placed through the transition
//! queue, throttled like any move, and everything else already fits. The
//! migrations end as class migrations do, once a walk finds nothing left.

use redb::WriteTransaction;
use weft_common::manifest::BucketInfo;
use weft_common::residency::Residency;
use weft_common::rpc::{CommandResult, Refusal};

use crate::envelope::{sealed, SealedRead};
use crate::error::MetaError;
use crate::tables::*;

pub(crate) fn set(
    tx: &WriteTransaction,
    bucket: &str,
    residency: Option<&Residency>,
) -> Result<CommandResult, MetaError> {
    // Zones in order and once each, so the same set is the same residency
    // however it was written.
    let residency = residency.map(|r| Residency {
        zones: {
            let mut z = r.zones.clone();
            z.sort();
            z.dedup();
            z
        },
        ..r.clone()
    });
    let residency = residency.as_ref();
    if let Some(Err(e)) = residency.map(Residency::validate) {
        return Ok(CommandResult::Refused {
            refusal: Refusal::ClassRefused { message: e },
        });
    }
    let mut t = tx.open_table(BUCKETS)?;
    let Some(mut b) = t.get_sealed::<BucketInfo>(T_BUCKETS, bucket)? else {
        return Ok(CommandResult::Refused {
            refusal: Refusal::NoSuchBucket,
        });
    };
    if b.residency.as_ref() == residency {
        // The same again (a retry, or a re-apply): nothing moves.
        return Ok(CommandResult::Done);
    }
    b.residency = residency.cloned();
    t.insert(bucket, sealed::<&str, _>(bucket, &b).as_slice())?;
    drop(t);
    // Warms into zones the bucket may no longer use end now; the leader's
    // next warming pass drops their copies.
    crate::warm::drop_refused(tx, bucket, residency, false)?;
    let classes = crate::classes::read(&tx.open_table(META)?)?.unwrap_or_default();
    let mut m = crate::classes::migrations(&tx.open_table(META)?)?;
    for c in classes {
        // A migration already under way keeps its (newer) definition.
        m.entry(c.name.clone()).or_insert(c);
    }
    crate::classes::write_migrations(tx, &m)?;
    // Walks under way may already have passed this bucket's segments:
    // none of them may end a migration now.
    let epoch = crate::classes::residency_epoch(&tx.open_table(META)?)? + 1;
    tx.open_table(META)?.insert(
        KEY_RESIDENCY_EPOCH,
        sealed::<&str, _>(KEY_RESIDENCY_EPOCH, &epoch).as_slice(),
    )?;
    Ok(CommandResult::Done)
}

#[cfg(test)]
mod tests {
    use crate::state_machine::StateMachine;
    use weft_common::manifest::BucketInfo;
    use weft_common::residency::Residency;
    use weft_common::rpc::{Command, CommandResult, Refusal};

    fn setup() -> (tempfile::TempDir, StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        sm.apply_for_test(&Command::SeedStorageClasses {
            classes: weft_common::storage_class::default_classes(),
        })
        .unwrap();
        sm.apply_for_test(&Command::CreateBucket {
            bucket: BucketInfo {
                name: "b".into(),
                owner: "AK".into(),
                created_ms: 1,
                tags: Default::default(),
                versioning: None,
                lifecycle: None,
                tiering: None,
                residency: None,
            },
        })
        .unwrap();
        (dir, sm)
    }

    fn set(sm: &StateMachine, zones: &[&str]) -> CommandResult {
        sm.apply_for_test(&Command::SetBucketResidency {
            bucket: "b".into(),
            residency: Some(Residency {
                zones: zones.iter().map(|z| z.to_string()).collect(),
                ..Default::default()
            }),
        })
        .unwrap()
    }

    /// A change starts every class's migration and bumps the epoch once;
    /// the same residency again changes nothing; a walk's finish from
    /// before the change ends nothing, one after it does.
    #[test]
    fn a_change_starts_migrations_once_and_stale_walks_end_nothing() {
        let (_d, sm) = setup();
        assert_eq!(set(&sm, &["a", "b"]), CommandResult::Done);
        let classes = sm.class_migrations().unwrap();
        assert_eq!(
            classes.len(),
            weft_common::storage_class::default_classes().len()
        );
        assert_eq!(sm.residency_epoch().unwrap(), 1);
        assert_eq!(set(&sm, &["b", "a"]), CommandResult::Done);
        assert_eq!(sm.residency_epoch().unwrap(), 1, "the same again");
        assert_eq!(
            sm.bucket("b").unwrap().unwrap().residency.unwrap().zones,
            vec!["a", "b"]
        );
        let standard = classes["STANDARD"].clone();
        sm.apply_for_test(&Command::FinishClassMigration {
            class: standard.clone(),
            epoch: 0,
        })
        .unwrap();
        assert!(
            sm.class_migrations().unwrap().contains_key("STANDARD"),
            "a walk from before the change ends nothing"
        );
        sm.apply_for_test(&Command::FinishClassMigration {
            class: standard,
            epoch: 1,
        })
        .unwrap();
        assert!(!sm.class_migrations().unwrap().contains_key("STANDARD"));
    }

    #[test]
    fn a_missing_bucket_and_an_empty_residency_are_refused() {
        let (_d, sm) = setup();
        let r = sm
            .apply_for_test(&Command::SetBucketResidency {
                bucket: "nope".into(),
                residency: Some(Residency::zones(["a".to_string()])),
            })
            .unwrap();
        assert_eq!(
            r,
            CommandResult::Refused {
                refusal: Refusal::NoSuchBucket
            }
        );
        let r = sm
            .apply_for_test(&Command::SetBucketResidency {
                bucket: "b".into(),
                residency: Some(Residency::default()),
            })
            .unwrap();
        assert!(matches!(
            r,
            CommandResult::Refused {
                refusal: Refusal::ClassRefused { .. }
            }
        ));
    }
}
