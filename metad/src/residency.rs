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
    let classes = crate::classes::read(&tx.open_table(META)?)?.unwrap_or_default();
    let mut m = crate::classes::migrations(&tx.open_table(META)?)?;
    for c in classes {
        // A migration already under way keeps its (newer) definition.
        m.entry(c.name.clone()).or_insert(c);
    }
    crate::classes::write_migrations(tx, &m)?;
    Ok(CommandResult::Done)
}
