//! Apply: how each command changes the tables, deterministically, in log
//! order, inside the caller's write transaction.
//!
//! The rule every arm keeps (docs/decisions.md, "Every command applies
//! once"): a command applied a second time — the client retried after an
//! unknown outcome, so the log holds it twice — changes nothing and releases
//! nothing. Client commands arrive wrapped in [`Command::Request`], whose id
//! [`crate::requests`] remembers; on top of that every arm is a no-op on an
//! immediate re-apply by comparing version and segment ids, so a command
//! that reaches apply without a request id cannot release its own data
//! either.
//!
//! The commands that change which segments are referenced (object writes
//! and deletes, parts, completions, aborts) report it as [`Effects`] where
//! they make the change, and the segment index is updated from those. A
//! segment is released only if nothing refers to it any more: one the same
//! command adds is never released ([`releasing`]).

use redb::{ReadableTable, WriteTransaction};
use weft_common::manifest::{AccessKey, BucketInfo, ObjectVersion, Segment, Upload, UploadPart};
use weft_common::rpc::{
    condition_refusal, Command, CommandResult, Refusal, WriteCondition, COMMAND_FORMAT,
};
use weft_common::topology::NodeAdmin;
use weft_common::upload_timers::TimersRecord;

use crate::effects::{Applied, Effects, Owner};
use crate::envelope::{item, sealed, SealedRead};
use crate::error::MetaError;
use crate::segment_index;
use crate::shard_moves;
use crate::tables::*;
use crate::versioning;

type Answer = Result<CommandResult, MetaError>;
type Outcome = Result<Applied, MetaError>;

fn refused<T: From<CommandResult>>(refusal: Refusal) -> Result<T, MetaError> {
    Ok(CommandResult::Refused { refusal }.into())
}

/// Applies one command (a batch or request applies its inner commands) and
/// keeps the segment index in step with its effects, command by command:
/// a later command of a batch sees the index as the earlier ones left it.
pub(crate) fn apply_command(tx: &WriteTransaction, cmd: &Command) -> Outcome {
    let applied = match cmd {
        Command::Request {
            id,
            at_ms,
            command,
            format,
            actor,
        } => {
            // Never apply what this binary cannot fully read (serde would
            // drop fields it does not know): the error stops the raft core,
            // and the voter waits, exited, for its upgrade.
            if *format > COMMAND_FORMAT {
                return Err(MetaError::NewerFormat {
                    format: *format,
                    supported: COMMAND_FORMAT,
                });
            }
            if matches!(**command, Command::PutPart { .. })
                && weft_common::failpoints::active(
                    weft_common::failpoints::Bug::SelfReleasingPutPart,
                )
            {
                return apply_command(tx, command);
            }
            return crate::requests::apply_once(tx, *id, *at_ms, |tx| {
                let applied = match &**command {
                    c @ (Command::Audit { .. }
                    | Command::AuditCheckpoint { .. }
                    | Command::SetAuditConfig { .. }
                    | Command::AuditPrune { .. }) => {
                        Applied::from(crate::audit::apply(tx, c, actor.as_ref())?)
                    }
                    c => apply_command(tx, c)?,
                };
                // Format 1 entries predate the chain: replaying them
                // records nothing, on every voter alike.
                if *format >= 2 {
                    crate::audit::record(tx, actor.as_ref(), *at_ms, command, &applied.result)?;
                }
                Ok(applied)
            });
        }
        Command::Batch { commands } => {
            let mut results = Vec::with_capacity(commands.len());
            let mut effects = Effects::default();
            for c in commands {
                let applied = apply_command(tx, c)?;
                results.push(applied.result);
                effects.extend(applied.effects);
            }
            return Ok(Applied {
                result: CommandResult::Batch { results },
                effects,
            });
        }
        Command::PutObject {
            bucket,
            key,
            version,
            condition,
        } => put_object(tx, bucket, key, version, condition.as_ref())?,
        Command::DeleteObject {
            bucket,
            key,
            marker,
        } => delete_object(tx, bucket, key, marker.as_ref())?,
        Command::DeleteObjectVersion {
            bucket,
            key,
            version_id,
        } => delete_object_version(tx, bucket, key, version_id)?,
        Command::Lifecycle {
            bucket,
            key,
            step,
            at_ms,
        } => lifecycle_step(tx, bucket, key, step, *at_ms)?,
        Command::TransitionVersion {
            bucket,
            key,
            version_id,
            from_class,
            to_class,
            segments,
            step,
            at_ms,
        } => crate::transition::apply(
            tx,
            bucket,
            key,
            *version_id,
            from_class,
            to_class,
            segments,
            step.as_ref(),
            *at_ms,
        )?,
        Command::PutPart { upload_id, part } => put_part(tx, upload_id, part)?,
        Command::CompleteUpload {
            upload_id,
            bucket,
            key,
            parts,
            version,
            condition,
        } => complete_upload(
            tx,
            upload_id,
            bucket,
            key,
            parts,
            version,
            condition.as_ref(),
        )?,
        Command::AbortUpload { upload_id } => abort_upload(tx, upload_id)?,
        c @ (Command::Audit { .. }
        | Command::AuditCheckpoint { .. }
        | Command::SetAuditConfig { .. }
        | Command::AuditPrune { .. }) => Applied::from(crate::audit::apply(tx, c, None)?),
        other => Applied::from(apply_keeping_references(tx, other)?),
    };
    segment_index::record(tx, &applied.effects)?;
    Ok(applied)
}

/// Commands that leave every segment reference as it was.
fn apply_keeping_references(tx: &WriteTransaction, cmd: &Command) -> Answer {
    match cmd {
        Command::CreateBucket { bucket } => {
            let mut t = tx.open_table(BUCKETS)?;
            if let Some(existing) = t.get_sealed::<BucketInfo>(T_BUCKETS, bucket.name.as_str())? {
                return refused(Refusal::BucketExists {
                    owner: existing.owner,
                });
            }
            let v = sealed::<&str, _>(bucket.name.as_str(), bucket);
            t.insert(bucket.name.as_str(), v.as_slice())?;
            Ok(CommandResult::Done)
        }
        Command::DeleteBucket { name } => {
            let mut t = tx.open_table(BUCKETS)?;
            if t.get(name.as_str())?.is_none() {
                return refused(Refusal::NoSuchBucket);
            }
            let base = object_key(name, "");
            let end = prefix_end(&base);
            let occupied = tx
                .open_table(OBJECTS)?
                .range::<&[u8]>(base.as_slice()..end.as_slice())?
                .next()
                .is_some()
                || tx
                    .open_table(VERSIONS)?
                    .range::<&[u8]>(base.as_slice()..end.as_slice())?
                    .next()
                    .is_some();
            if occupied {
                return refused(Refusal::BucketNotEmpty);
            }
            t.remove(name.as_str())?;
            drop(t);
            crate::warm::drop_refused(tx, name, None, true)?;
            Ok(CommandResult::Done)
        }
        Command::SetBucketVersioning { bucket, status } => {
            if status != "Enabled" && status != "Suspended" {
                return refused(Refusal::PreconditionFailed);
            }
            update_bucket(tx, bucket, |b| b.versioning = Some(status.clone()))
        }
        Command::SetObjectTags { bucket, key, tags } => {
            if tx.open_table(BUCKETS)?.get(bucket.as_str())?.is_none() {
                return refused(Refusal::NoSuchBucket);
            }
            let mut t = tx.open_table(OBJECTS)?;
            let k = object_key(bucket, key);
            let Some(mut v) = t.get_sealed::<ObjectVersion>(T_OBJECTS, k.as_slice())? else {
                return refused(Refusal::NoSuchKey);
            };
            v.tags = tags.clone();
            t.insert(
                k.as_slice(),
                sealed::<&[u8], _>(k.as_slice(), &v).as_slice(),
            )?;
            Ok(CommandResult::Done)
        }
        Command::SetBucketTags { bucket, tags } => {
            update_bucket(tx, bucket, |b| b.tags = tags.clone())
        }
        Command::SetBucketLifecycle { bucket, config } => {
            update_bucket(tx, bucket, |b| b.lifecycle = config.clone())
        }
        Command::SetBucketTiering { bucket, change } => crate::tiering::set(tx, bucket, change),
        Command::SetBucketResidency { bucket, residency } => {
            crate::residency::set(tx, bucket, residency.as_ref())
        }
        Command::RecordAccess { reads } => crate::tiering::record(tx, reads),
        Command::SetLifecycleCursor { cursor } => {
            tx.open_table(META)?.insert(
                KEY_LIFECYCLE_CURSOR,
                sealed::<&str, _>(KEY_LIFECYCLE_CURSOR, cursor).as_slice(),
            )?;
            Ok(CommandResult::Done)
        }
        Command::SeedLifecycleDay { day_ms } => {
            let mut t = tx.open_table(META)?;
            if *day_ms > 0 && crate::lifecycle::day_ms(&t)?.is_none() {
                t.insert(
                    KEY_LIFECYCLE_DAY,
                    sealed::<&str, _>(KEY_LIFECYCLE_DAY, day_ms).as_slice(),
                )?;
            }
            Ok(CommandResult::Done)
        }
        Command::CreateUpload { upload } => {
            if tx
                .open_table(BUCKETS)?
                .get(upload.bucket.as_str())?
                .is_none()
            {
                return refused(Refusal::NoSuchBucket);
            }
            if let Some(r) = crate::classes::undefined(tx, &upload.storage_class)? {
                return refused(r);
            }
            let mut t = tx.open_table(UPLOADS)?;
            // Upload ids are random and never reused: one already present is
            // this very command applied again.
            if t.get(upload.upload_id.as_str())?.is_none() {
                let v = sealed::<&str, _>(upload.upload_id.as_str(), upload);
                t.insert(upload.upload_id.as_str(), v.as_slice())?;
            }
            Ok(CommandResult::Done)
        }
        Command::Request { .. }
        | Command::Batch { .. }
        | Command::PutObject { .. }
        | Command::Lifecycle { .. }
        | Command::TransitionVersion { .. }
        | Command::DeleteObject { .. }
        | Command::DeleteObjectVersion { .. }
        | Command::PutPart { .. }
        | Command::CompleteUpload { .. }
        | Command::AbortUpload { .. }
        | Command::Audit { .. }
        | Command::AuditCheckpoint { .. }
        | Command::SetAuditConfig { .. }
        | Command::AuditPrune { .. } => unreachable!("apply_command applies {cmd:?} itself"),
        Command::MoveShard {
            segment,
            index,
            from,
            to,
        } => shard_moves::move_shard(tx, *segment, *index, *from, *to),
        Command::DropShard {
            segment,
            index,
            node,
        } => match crate::warm::forget_bad_copy(tx, *segment, *index, *node)? {
            Some(done) => Ok(done),
            None => shard_moves::drop_shard(tx, *segment, *index, *node),
        },
        Command::ReportDamage {
            segment,
            index,
            node,
            ..
        } if crate::warm::forget_bad_copy(tx, *segment, *index, *node)?.is_some() => {
            Ok(CommandResult::Done)
        }
        cmd @ (Command::ReportDamage { .. } | Command::DamageRepaired { .. }) => {
            crate::damage::apply_command(tx, cmd)
        }
        Command::Warm { warm } => crate::warm::put(tx, warm),
        Command::DropWarm {
            zone,
            bucket,
            prefix,
            created_ms,
        } => crate::warm::drop_warm(tx, zone, bucket, prefix, *created_ms),
        Command::AddCacheCopy {
            segment,
            index,
            node,
        } => crate::warm::add_copy(tx, *segment, *index, *node),
        Command::DropCacheCopies { segment, copies } => {
            crate::warm::drop_copies(tx, *segment, copies)
        }
        Command::SetNodeAdmin { node, admin } => {
            if tx.open_table(NODES)?.get(node.0)?.is_none() {
                return refused(Refusal::NoSuchNode);
            }
            let mut t = tx.open_table(NODE_ADMIN)?;
            let current: NodeAdmin = t.get_sealed(T_NODE_ADMIN, node.0)?.unwrap_or_default();
            if current == NodeAdmin::Removed && *admin != NodeAdmin::Removed {
                return refused(Refusal::NodeRemoved);
            }
            t.insert(node.0, sealed::<u64, _>(node.0, admin).as_slice())?;
            Ok(CommandResult::Done)
        }
        Command::SeedStorageClasses { classes } => crate::classes::seed(tx, classes),
        Command::PutStorageClass { class, migrate } => crate::classes::put(tx, class, *migrate),
        Command::FinishClassMigration { class, epoch } => crate::classes::finish(tx, class, *epoch),
        Command::DeleteStorageClass { name } => crate::classes::delete(tx, name),
        Command::SetRepairConfig { config } => {
            tx.open_table(META)?.insert(
                KEY_REPAIR_CONFIG,
                sealed::<&str, _>(KEY_REPAIR_CONFIG, config).as_slice(),
            )?;
            Ok(CommandResult::Done)
        }
        Command::SetUploadTimers {
            upload_max_age_ms,
            gc_grace_ms,
            seed,
            at_ms,
        } => {
            let mut t = tx.open_table(META)?;
            let current: Option<TimersRecord> = t.get_sealed(T_META, KEY_UPLOAD_TIMERS)?;
            if *seed {
                // A seed names the whole pair; an unsafe one is refused
                // whether or not a pair is set already.
                if let Err(e) = TimersRecord::change(None, *upload_max_age_ms, *gc_grace_ms, *at_ms)
                {
                    return refused(Refusal::UnsafeTimers {
                        message: e.to_string(),
                    });
                }
                if current.is_some() {
                    return Ok(CommandResult::Done);
                }
            }
            // Merged and checked here, against the state the command
            // applies to: a value in the state is served to every gateway
            // and data node as it is.
            match TimersRecord::change(current.as_ref(), *upload_max_age_ms, *gc_grace_ms, *at_ms) {
                Ok(record) => {
                    t.insert(
                        KEY_UPLOAD_TIMERS,
                        sealed::<&str, _>(KEY_UPLOAD_TIMERS, &record).as_slice(),
                    )?;
                    Ok(CommandResult::Done)
                }
                Err(e) => refused(Refusal::UnsafeTimers {
                    message: e.to_string(),
                }),
            }
        }
        Command::RegisterNode { node } => {
            let admin: Option<NodeAdmin> = tx
                .open_table(NODE_ADMIN)?
                .get_sealed(T_NODE_ADMIN, node.id.0)?;
            if admin == Some(NodeAdmin::Removed) {
                return refused(Refusal::NodeRemoved);
            }
            tx.open_table(NODES)?
                .insert(node.id.0, sealed::<u64, _>(node.id.0, node).as_slice())?;
            Ok(CommandResult::Done)
        }
        Command::CreateKey { key } => {
            let mut t = tx.open_table(KEYS)?;
            let mut same = false;
            let mut taken = false;
            for it in t.iter()? {
                let (k, v) = it?;
                let existing: AccessKey = item(T_KEYS, &k, &v)?;
                if existing == *key {
                    same = true;
                } else if existing.name == key.name || existing.access_key == key.access_key {
                    taken = true;
                }
            }
            if same && !taken {
                return Ok(CommandResult::Done); // applied again
            }
            if taken || same {
                return refused(Refusal::KeyExists);
            }
            t.insert(
                key.access_key.as_str(),
                sealed::<&str, _>(key.access_key.as_str(), key).as_slice(),
            )?;
            Ok(CommandResult::Done)
        }
        Command::ResealKey {
            access_key,
            created_ms,
            from,
            sealed: new,
        } => {
            let mut t = tx.open_table(KEYS)?;
            let found: Option<AccessKey> = t.get_sealed(T_KEYS, access_key.as_str())?;
            let Some(mut key) = found else {
                return refused(Refusal::Stale);
            };
            if key.secret_key == *new {
                return Ok(CommandResult::Done); // applied again
            }
            let same = key.created_ms == *created_ms
                && match from {
                    Some(sealed) => key.secret_key == *sealed,
                    None => !crate::seal::is_sealed(&key.secret_key),
                };
            if !same {
                // Deleted and re-created, or resealed by an earlier leader.
                return refused(Refusal::Stale);
            }
            key.secret_key = new.clone();
            t.insert(
                key.access_key.as_str(),
                sealed::<&str, _>(key.access_key.as_str(), &key).as_slice(),
            )?;
            Ok(CommandResult::Done)
        }
        Command::DeleteKey { name } => {
            let mut t = tx.open_table(KEYS)?;
            let mut found: Option<AccessKey> = None;
            for it in t.iter()? {
                let (k, v) = it?;
                let existing: AccessKey = item(T_KEYS, &k, &v)?;
                if &existing.name == name {
                    found = Some(existing);
                }
            }
            match found {
                None => refused(Refusal::NoSuchKeyName),
                Some(k) if k.root => refused(Refusal::KeyIsRoot),
                Some(k) => {
                    t.remove(k.access_key.as_str())?;
                    Ok(CommandResult::Done)
                }
            }
        }
    }
}

fn update_bucket(tx: &WriteTransaction, bucket: &str, f: impl FnOnce(&mut BucketInfo)) -> Answer {
    let mut t = tx.open_table(BUCKETS)?;
    let Some(mut b) = t.get_sealed::<BucketInfo>(T_BUCKETS, bucket)? else {
        return refused(Refusal::NoSuchBucket);
    };
    f(&mut b);
    t.insert(bucket, sealed::<&str, _>(bucket, &b).as_slice())?;
    Ok(CommandResult::Done)
}

fn put_object(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    condition: Option<&WriteCondition>,
) -> Outcome {
    let Some(versioning) = bucket_versioning(tx, bucket)? else {
        return refused(Refusal::NoSuchBucket);
    };
    let mut t = tx.open_table(OBJECTS)?;
    let k = object_key(bucket, key);
    let current: Option<ObjectVersion> = t.get_sealed(T_OBJECTS, k.as_slice())?;
    // Applied again: its own version is current (or, versioned, in the
    // history), so reporting anything as replaced would free its own data.
    if current.as_ref().map(|c| c.version_id) == Some(version.version_id)
        || versioning::holds_version(tx, bucket, key, version.version_id)?
    {
        return Ok(CommandResult::Replaced { previous: None }.into());
    }
    if let Some(r) = crate::classes::undefined(tx, &version.storage_class)? {
        return refused(r);
    }
    if let Some(r) = condition_refusal(condition, current.as_ref()) {
        return refused(r);
    }
    let replaced = match versioning {
        None => {
            t.insert(
                k.as_slice(),
                sealed::<&[u8], _>(k.as_slice(), version).as_slice(),
            )?;
            current
        }
        Some(status) => {
            let mut v = version.clone();
            let released = versioning::put(
                tx,
                bucket,
                key,
                status == "Enabled",
                &mut v,
                current.as_ref(),
            )?;
            t.insert(
                k.as_slice(),
                sealed::<&[u8], _>(k.as_slice(), &v).as_slice(),
            )?;
            released
        }
    };
    let mut effects = Effects::default();
    let previous = releasing_version(tx, replaced, &version.segments, &mut effects)?;
    effects.add(
        &Owner::new(bucket, key, &version.storage_class),
        &version.segments,
    );
    Ok(Applied {
        result: CommandResult::Replaced { previous },
        effects,
    })
}

/// A lifecycle action, if it is still due as the state is now.
fn lifecycle_step(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    step: &weft_common::lifecycle::Step,
    at_ms: u64,
) -> Outcome {
    use weft_common::lifecycle::Step;
    let Some(info) = tx
        .open_table(BUCKETS)?
        .get_sealed::<BucketInfo>(T_BUCKETS, bucket)?
    else {
        return refused(Refusal::NoSuchBucket);
    };
    if !crate::lifecycle::still_due(tx, &info, key, step, at_ms)? {
        return refused(Refusal::Stale);
    }
    match step {
        Step::ExpireCurrent { marker_id, .. } => {
            // The marker is used in a versioned or suspended bucket only.
            delete_object(tx, bucket, key, Some(&(*marker_id, at_ms)))
        }
        Step::RemoveNoncurrent { label, .. } | Step::RemoveLoneMarker { label, .. } => {
            delete_object_version(tx, bucket, key, label)
        }
        Step::AbortUpload { upload_id } => abort_upload(tx, upload_id),
        // Moves are committed by `TransitionVersion` once the bytes moved.
        Step::TransitionCurrent { .. }
        | Step::TransitionNoncurrent { .. }
        | Step::Migrate { .. }
        | Step::Tier { .. } => refused(Refusal::Stale),
    }
}

fn delete_object(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    marker: Option<&(weft_common::VersionId, u64)>,
) -> Outcome {
    let Some(versioning) = bucket_versioning(tx, bucket)? else {
        return refused(Refusal::NoSuchBucket);
    };
    if let (Some(_), Some((id, _))) = (&versioning, marker) {
        // Applied again: the marker this command creates is already there.
        if versioning::holds_version(tx, bucket, key, *id)? {
            return Ok(CommandResult::VersionDeleted {
                released: None,
                delete_marker: Some(id.to_string()),
            }
            .into());
        }
    }
    let mut t = tx.open_table(OBJECTS)?;
    let k = object_key(bucket, key);
    let previous: Option<ObjectVersion> = match t.remove(k.as_slice())? {
        None => None,
        Some(v) => Some(crate::envelope::decode(T_OBJECTS, &k, v.value())?),
    };
    let mut effects = Effects::default();
    let result = match (versioning, marker) {
        (Some(status), Some(marker)) => {
            let (released, id) = versioning::delete(
                tx,
                bucket,
                key,
                status == "Enabled",
                *marker,
                previous.as_ref(),
            )?;
            CommandResult::VersionDeleted {
                released: releasing_version(tx, released, &[], &mut effects)?,
                delete_marker: Some(id),
            }
        }
        _ => CommandResult::Replaced {
            previous: releasing_version(tx, previous, &[], &mut effects)?,
        },
    };
    Ok(Applied { result, effects })
}

/// `DeleteObjectVersion`: removes one entry of a key's history for good.
fn delete_object_version(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Outcome {
    if bucket_versioning(tx, bucket)?.is_none() {
        return refused(Refusal::NoSuchBucket);
    }
    let mut t = tx.open_table(OBJECTS)?;
    let k = object_key(bucket, key);
    let current: Option<ObjectVersion> = t.get_sealed(T_OBJECTS, k.as_slice())?;
    match versioning::delete_version(tx, bucket, key, version_id, current.as_ref())? {
        // Deleting a version that does not exist succeeds (S3), and
        // so does deleting it again.
        None => Ok(CommandResult::VersionDeleted {
            released: None,
            delete_marker: None,
        }
        .into()),
        Some((removed, new_current)) => {
            match new_current {
                Some(v) => {
                    t.insert(
                        k.as_slice(),
                        sealed::<&[u8], _>(k.as_slice(), &v).as_slice(),
                    )?;
                }
                None => {
                    t.remove(k.as_slice())?;
                }
            }
            let marker = removed
                .is_delete_marker()
                .then(|| removed.version_id.clone());
            let mut effects = Effects::default();
            let released = releasing_version(tx, removed.version, &[], &mut effects)?;
            Ok(Applied {
                result: CommandResult::VersionDeleted {
                    released,
                    delete_marker: marker,
                },
                effects,
            })
        }
    }
}

/// `PutPart`: a part uploaded again replaces the earlier one, whose
/// segments are released.
fn put_part(tx: &WriteTransaction, upload_id: &str, part: &UploadPart) -> Outcome {
    let mut t = tx.open_table(UPLOADS)?;
    let Some(mut upload) = t.get_sealed::<Upload>(T_UPLOADS, upload_id)? else {
        return refused(Refusal::NoSuchUpload);
    };
    let same = upload.part(part.part_number).is_some_and(|p| {
        p.segments
            .iter()
            .map(|s| s.id)
            .eq(part.segments.iter().map(|s| s.id))
    });
    let bug = weft_common::failpoints::active(weft_common::failpoints::Bug::SelfReleasingPutPart);
    if same && !bug {
        // Applied again: the part already points at these segments.
        return Ok(CommandResult::Released { segments: vec![] }.into());
    }
    if same {
        tracing::warn!(
            upload_id,
            part = part.part_number,
            "PutPart applied again releases its own segments (re-introduced bug)"
        );
    }
    if let Some(r) = crate::classes::undefined(tx, &upload.storage_class)? {
        return refused(r);
    }
    let old = upload.put_part(part.clone());
    let v = sealed::<&str, _>(upload_id, &upload);
    t.insert(upload_id, v.as_slice())?;
    let mut effects = Effects::default();
    let keep: &[Segment] = if bug { &[] } else { &part.segments };
    let segments = releasing(
        tx,
        old.map(|p| p.segments).unwrap_or_default(),
        keep,
        &mut effects,
    )?;
    effects.add(
        &Owner::new(&upload.bucket, &upload.key, &upload.storage_class),
        &part.segments,
    );
    Ok(Applied {
        result: CommandResult::Released { segments },
        effects,
    })
}

/// `AbortUpload`: every part's segments are released.
fn abort_upload(tx: &WriteTransaction, upload_id: &str) -> Outcome {
    let mut t = tx.open_table(UPLOADS)?;
    let removed = t.remove(upload_id)?;
    let upload: Option<Upload> = match removed {
        None => None,
        Some(v) => Some(crate::envelope::decode(
            T_UPLOADS,
            upload_id.as_bytes(),
            v.value(),
        )?),
    };
    match upload {
        None => refused(Refusal::NoSuchUpload),
        Some(u) => {
            let mut effects = Effects::default();
            let segments = releasing(
                tx,
                u.parts.into_iter().flat_map(|p| p.segments).collect(),
                &[],
                &mut effects,
            )?;
            Ok(Applied {
                result: CommandResult::Released { segments },
                effects,
            })
        }
    }
}

/// `CompleteUpload`. The new version's segments and part sizes come from
/// the parts metad holds now, never from the proposer's copy: a part
/// re-uploaded with the same ETag after the gateway read the upload has new
/// segments, and the old ones are already released.
fn complete_upload(
    tx: &WriteTransaction,
    upload_id: &str,
    bucket: &str,
    key: &str,
    parts: &[(u32, String)],
    version: &ObjectVersion,
    condition: Option<&WriteCondition>,
) -> Outcome {
    let mut t = tx.open_table(UPLOADS)?;
    let Some(mut upload) = t.get_sealed::<Upload>(T_UPLOADS, upload_id)? else {
        // Applied again: its version is current or in the history, so
        // succeed and free nothing.
        let current: Option<ObjectVersion> = tx
            .open_table(OBJECTS)?
            .get_sealed(T_OBJECTS, object_key(bucket, key).as_slice())?;
        if current.map(|c| c.version_id) == Some(version.version_id)
            || versioning::holds_version(tx, bucket, key, version.version_id)?
        {
            return Ok(CommandResult::Released { segments: vec![] }.into());
        }
        return refused(Refusal::NoSuchUpload);
    };
    if upload.bucket != bucket || upload.key != key {
        // The repeat check and the index both go by the command's names:
        // they must be the upload's.
        return refused(Refusal::NoSuchUpload);
    }
    if let Some(r) = crate::classes::undefined(tx, &version.storage_class)? {
        return refused(r);
    }
    let mut segments: Vec<Segment> = Vec::new();
    let mut part_sizes = Vec::with_capacity(parts.len());
    let mut size = 0u64;
    for (n, etag) in parts {
        let Some(p) = upload.part(*n).filter(|p| &p.etag == etag) else {
            return refused(Refusal::InvalidPart { part_number: *n });
        };
        for s in &p.segments {
            let mut s = s.clone();
            s.offset += size;
            segments.push(s);
        }
        part_sizes.push(p.size);
        size += p.size;
    }
    if size != version.size {
        // Same ETags but other sizes: the proposer read parts that have
        // since changed in a way an ETag cannot show. Let it retry.
        return refused(Refusal::InvalidPart {
            part_number: parts.first().map(|p| p.0).unwrap_or(0),
        });
    }
    if tx
        .open_table(BUCKETS)?
        .get(upload.bucket.as_str())?
        .is_none()
    {
        return refused(Refusal::NoSuchBucket);
    }
    let k = object_key(&upload.bucket, &upload.key);
    let current: Option<ObjectVersion> = tx
        .open_table(OBJECTS)?
        .get_sealed(T_OBJECTS, k.as_slice())?;
    if let Some(r) = condition_refusal(condition, current.as_ref()) {
        return refused(r);
    }
    t.remove(upload_id)?;
    upload
        .parts
        .retain(|p| !parts.iter().any(|(n, _)| *n == p.part_number));
    let mut released: Vec<_> = upload.parts.into_iter().flat_map(|p| p.segments).collect();
    let mut v = version.clone();
    v.segments = segments;
    v.part_sizes = part_sizes;
    let mut objects = tx.open_table(OBJECTS)?;
    match bucket_versioning(tx, &upload.bucket)?.flatten() {
        None => {
            if let Some(prev) = current {
                released.extend(prev.segments);
            }
        }
        Some(status) => {
            if let Some(prev) = versioning::put(
                tx,
                &upload.bucket,
                &upload.key,
                status == "Enabled",
                &mut v,
                current.as_ref(),
            )? {
                released.extend(prev.segments);
            }
        }
    }
    objects.insert(
        k.as_slice(),
        sealed::<&[u8], _>(k.as_slice(), &v).as_slice(),
    )?;
    // The version takes over its parts' segments: they stay referenced.
    let mut effects = Effects::default();
    let segments = releasing(tx, released, &v.segments, &mut effects)?;
    effects.add(
        &Owner::new(bucket, key, &version.storage_class),
        &v.segments,
    );
    Ok(Applied {
        result: CommandResult::Released { segments },
        effects,
    })
}

/// `segments` as released, recorded in `effects`: less those in `keep`
/// (what the same command references: never released, whatever it
/// replaced), with the placement the index holds now, so whoever deletes
/// their shards deletes them where they are.
pub(crate) fn releasing(
    tx: &WriteTransaction,
    mut segments: Vec<Segment>,
    keep: &[Segment],
    effects: &mut Effects,
) -> Result<Vec<Segment>, MetaError> {
    segments.retain(|s| !keep.iter().any(|k| k.id == s.id));
    segment_index::overlay(&tx.open_table(SEGMENTS)?, &mut segments)?;
    effects.released.extend(segments.iter().cloned());
    Ok(segments)
}

/// A whole version as released ([`releasing`]); `None` if the command
/// still references every segment it had, so nothing of it is released.
fn releasing_version(
    tx: &WriteTransaction,
    version: Option<ObjectVersion>,
    keep: &[Segment],
    effects: &mut Effects,
) -> Result<Option<ObjectVersion>, MetaError> {
    let Some(mut v) = version else {
        return Ok(None);
    };
    let had = v.segments.len();
    v.segments = releasing(tx, std::mem::take(&mut v.segments), keep, effects)?;
    if had > 0 && v.segments.is_empty() {
        return Ok(None);
    }
    Ok(Some(v))
}

/// `None` if the bucket does not exist, else its versioning state.
fn bucket_versioning(
    tx: &WriteTransaction,
    bucket: &str,
) -> Result<Option<Option<String>>, MetaError> {
    Ok(tx
        .open_table(BUCKETS)?
        .get_sealed::<BucketInfo>(T_BUCKETS, bucket)?
        .map(|b| b.versioning))
}
