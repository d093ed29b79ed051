//! The audit chain in the state machine (docs/audit.md): entries appended
//! by apply, in log order, so every voter holds the same chain with the
//! same hashes; checkpoints the leader signed; pruning behind a checkpoint.
//!
//! What is recorded: every administrative command a request carries (with
//! the actor metad stamped on the request), its outcome included, since a
//! refused attempt is as telling as a successful one; object writes and
//! deletes when data-plane auditing is on, in the write's own raft entry;
//! and the batches of authentication failures and denials processes report
//! (`Command::Audit`). Only format-2 requests are recorded, so replaying a
//! log written before the chain existed records nothing on any voter.
//!
//! Every voter renders the record of a command itself, at apply, so the
//! text is part of command format 2: `describe` and `outcome` use only
//! encodings the golden files pin (serde names, numbers), never `Debug`,
//! and changing what they write needs a new command format, as any change
//! of what apply does (docs/decisions.md, "Formats and rolling upgrades").
//!
//! Cost: one entry insert and one head update per recorded command; reads
//! page by sequence number. A snapshot holds the whole chain (and the
//! digest reads it): `weft audit prune` is what bounds it.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use weft_common::audit::{
    parse_hash, Actor, AuditCheckpoint, AuditEntry, AuditEvent, AuditInfo, EventKind, GENESIS,
};
use weft_common::rpc::{Command, CommandResult, Refusal, AUDIT_PRUNE_MAX};

use crate::envelope::{item, sealed, SealedRead};
use crate::error::MetaError;
use crate::tables::*;

/// The newest entry: its sequence number and hash.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Head {
    seq: u64,
    hash: [u8; 32],
}

/// Settings of the chain (`Command::SetAuditConfig`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Config {
    data_plane: bool,
}

fn head(tx: &WriteTransaction) -> Result<Head, MetaError> {
    Ok(tx
        .open_table(META)?
        .get_sealed(T_META, KEY_AUDIT_HEAD)?
        .unwrap_or(Head {
            seq: 0,
            hash: GENESIS,
        }))
}

/// Appends one event to the chain.
fn append(tx: &WriteTransaction, event: AuditEvent) -> Result<(), MetaError> {
    let h = head(tx)?;
    let seq = h.seq + 1;
    let entry = AuditEntry::chain(seq, &h.hash, event);
    let hash = parse_hash(&entry.hash).expect("a hash this module made");
    tx.open_table(AUDIT)?
        .insert(seq, sealed::<u64, _>(seq, &entry).as_slice())?;
    tx.open_table(META)?.insert(
        KEY_AUDIT_HEAD,
        sealed::<&str, _>(KEY_AUDIT_HEAD, &Head { seq, hash }).as_slice(),
    )?;
    Ok(())
}

fn config(tx: &WriteTransaction) -> Result<Config, MetaError> {
    Ok(tx
        .open_table(META)?
        .get_sealed(T_META, KEY_AUDIT_CONFIG)?
        .unwrap_or_default())
}

/// What a command is, for the chain: its kind, its name and what it acts
/// on; `None` for the commands not recorded (shard moves, damage reports
/// and part uploads are the system's own bookkeeping, checkpoints live in
/// their own table, and reports are recorded as the events they carry).
fn describe(cmd: &Command) -> Option<(EventKind, &'static str, String)> {
    use Command as C;
    let admin = EventKind::Admin;
    let data = EventKind::Data;
    Some(match cmd {
        C::CreateBucket { bucket } => (admin, "create_bucket", format!("bucket {}", bucket.name)),
        C::DeleteBucket { name } => (admin, "delete_bucket", format!("bucket {name}")),
        C::SetBucketVersioning { bucket, status } => (
            admin,
            "set_bucket_versioning",
            format!("bucket {bucket} to {status}"),
        ),
        C::SetBucketTags { bucket, tags } => (
            admin,
            "set_bucket_tags",
            format!("bucket {bucket} ({} tags)", tags.len()),
        ),
        C::RegisterNode { node } => (
            admin,
            "register_node",
            if node.labels.is_empty() {
                format!("node {} in zone {} at {}", node.id, node.zone, node.addr)
            } else {
                format!(
                    "node {} in zone {} ({}) at {}",
                    node.id,
                    node.zone,
                    weft_common::topology::labels_text(&node.labels),
                    node.addr
                )
            },
        ),
        // The access key id and name; never the secret.
        C::CreateKey { key } => (
            admin,
            "create_key",
            format!("key {} ({})", key.name, key.access_key),
        ),
        C::DeleteKey { name } => (admin, "delete_key", format!("key {name}")),
        // The access key id only: the sealed value is not the chain's.
        C::ResealKey { access_key, .. } => (admin, "reseal_key", format!("key {access_key}")),
        C::SetNodeAdmin { node, admin: state } => (
            admin,
            "set_node_admin",
            format!("node {node} to {}", json(state)),
        ),
        C::SetRepairConfig { config } => (admin, "set_repair_config", json(config)),
        C::SetUploadTimers {
            upload_max_age_ms,
            gc_grace_ms,
            seed,
            ..
        } => (
            admin,
            if *seed {
                "seed_upload_timers"
            } else {
                "set_upload_timers"
            },
            format!(
                "upload_max_age_ms {}, gc_grace_ms {}",
                json(upload_max_age_ms),
                json(gc_grace_ms)
            ),
        ),
        C::SetBucketLifecycle { bucket, config } => (
            admin,
            "set_bucket_lifecycle",
            match config {
                Some(c) => format!("bucket {bucket} ({} rules)", c.rules.len()),
                None => format!("bucket {bucket} (removed)"),
            },
        ),
        C::SetBucketTiering { bucket, change } => (
            admin,
            "set_bucket_tiering",
            match change {
                weft_common::lifecycle::tiering::TieringChange::Config { id, config } => format!(
                    "bucket {bucket} intelligent-tiering configuration {id} ({})",
                    if config.is_some() { "set" } else { "removed" }
                ),
                weft_common::lifecycle::tiering::TieringChange::Unread { rules } => {
                    format!("bucket {bucket} ({} unread rules)", rules.len())
                }
            },
        ),
        C::SetBucketResidency { bucket, residency } => (
            admin,
            "set_bucket_residency",
            match residency {
                Some(r) => format!("bucket {bucket} kept in {}", r.describe()),
                None => format!("bucket {bucket} (residency removed)"),
            },
        ),
        C::SeedStorageClasses { classes } => (
            admin,
            "seed_storage_classes",
            classes
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        C::PutStorageClass { class, migrate } => (
            admin,
            "put_storage_class",
            if *migrate {
                format!("{} (migrating data)", json(class))
            } else {
                json(class)
            },
        ),
        C::FinishClassMigration { class, .. } => (
            admin,
            "finish_class_migration",
            format!("{} now holds only data that fits it", class.name),
        ),
        C::DeleteStorageClass { name } => (admin, "delete_storage_class", format!("class {name}")),
        C::SetAuditConfig { data_plane } => (
            admin,
            "set_audit_config",
            format!("data_plane {data_plane}"),
        ),
        C::AuditPrune { through } => (admin, "audit_prune", format!("entries through {through}")),
        C::PutObject {
            bucket,
            key,
            version,
            ..
        } => (
            data,
            "put_object",
            format!(
                "{bucket}/{key} version {} ({} bytes)",
                version.version_id, version.size
            ),
        ),
        C::CompleteUpload {
            bucket,
            key,
            version,
            ..
        } => (
            data,
            "complete_upload",
            format!(
                "{bucket}/{key} version {} ({} bytes)",
                version.version_id, version.size
            ),
        ),
        C::DeleteObject { bucket, key, .. } => (data, "delete_object", format!("{bucket}/{key}")),
        // Deletions the cluster makes on its own are always recorded.
        C::Lifecycle {
            bucket, key, step, ..
        } => (
            admin,
            "lifecycle",
            format!("{bucket}/{key}: {}", json(step)),
        ),
        C::TransitionVersion {
            bucket,
            key,
            version_id,
            from_class,
            to_class,
            ..
        } => (
            admin,
            "transition",
            format!("{bucket}/{key} version {version_id}: {from_class} to {to_class}"),
        ),
        C::SeedLifecycleDay { day_ms } => (admin, "seed_lifecycle_day", format!("{day_ms} ms")),
        C::DeleteObjectVersion {
            bucket,
            key,
            version_id,
        } => (
            data,
            "delete_object_version",
            format!("{bucket}/{key} version {version_id}"),
        ),
        C::SetObjectTags { bucket, key, tags } => (
            data,
            "set_object_tags",
            format!("{bucket}/{key} ({} tags)", tags.len()),
        ),
        C::CreateUpload { upload } => (
            data,
            "create_upload",
            format!(
                "{}/{} upload {}",
                upload.bucket, upload.key, upload.upload_id
            ),
        ),
        C::AbortUpload { upload_id } => (data, "abort_upload", format!("upload {upload_id}")),
        C::Warm { warm } => (
            admin,
            "warm",
            format!(
                "{}{}{}",
                warm.describe(),
                if warm.pinned { " pinned" } else { "" },
                warm.expires_ms
                    .map(|e| format!(" until {e} ms"))
                    .unwrap_or_default()
            ),
        ),
        C::DropWarm {
            zone,
            bucket,
            prefix,
            created_ms,
        } => (
            admin,
            "drop_warm",
            format!(
                "{zone}: s3://{bucket}/{prefix}{}",
                if created_ms.is_some() {
                    " (expired or evicted)"
                } else {
                    ""
                }
            ),
        ),
        C::PutPart { .. }
        | C::AddCacheCopy { .. }
        | C::DropCacheCopies { .. }
        | C::MoveShard { .. }
        | C::DropShard { .. }
        | C::ReportDamage { .. }
        | C::DamageRepaired { .. }
        | C::Audit { .. }
        | C::AuditCheckpoint { .. }
        | C::SetLifecycleCursor { .. }
        | C::RecordAccess { .. }
        | C::Batch { .. }
        | C::Request { .. } => return None,
    })
}

/// A value as its serde JSON: the encoding the golden files pin, never
/// `Debug`, which may change with any release.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `ok`, or the refusal in words.
fn outcome(result: &CommandResult) -> String {
    match result {
        CommandResult::Refused { refusal } => {
            let reason = serde_json::to_value(refusal)
                .ok()
                .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(String::from))
                .unwrap_or_else(|| json(refusal));
            format!("refused: {reason}")
        }
        _ => "ok".to_string(),
    }
}

/// Records a request's command after it applied (called once per request:
/// a retry answered from the request table records nothing).
pub(crate) fn record(
    tx: &WriteTransaction,
    actor: Option<&Actor>,
    at_ms: u64,
    cmd: &Command,
    result: &CommandResult,
) -> Result<(), MetaError> {
    if let Command::Batch { commands } = cmd {
        let results = match result {
            CommandResult::Batch { results } => results.as_slice(),
            _ => &[],
        };
        for (c, r) in commands.iter().zip(results) {
            record(tx, actor, at_ms, c, r)?;
        }
        return Ok(());
    }
    let Some((kind, action, target)) = describe(cmd) else {
        return Ok(());
    };
    if kind == EventKind::Data && !config(tx)?.data_plane {
        return Ok(());
    }
    append(
        tx,
        AuditEvent {
            at_ms,
            kind,
            actor: actor.map_or_else(|| "unknown".to_string(), Actor::to_string),
            action: action.to_string(),
            target,
            outcome: outcome(result),
            count: 1,
        },
    )
}

/// Applies the chain's own commands. `actor` is the wrapping request's
/// (`None` for a bare command, as tests send).
pub(crate) fn apply(
    tx: &WriteTransaction,
    cmd: &Command,
    actor: Option<&Actor>,
) -> Result<CommandResult, MetaError> {
    match cmd {
        Command::Audit { events } => {
            let reporter = actor.map(|a| a.via.as_str()).filter(|v| !v.is_empty());
            for e in events {
                let mut e = e.clone();
                // The reporter is part of the record: a process can report
                // what it saw, never pass it off as another's.
                if let Some(r) = reporter {
                    e.actor = format!("{} (reported by {r})", e.actor);
                }
                append(tx, e)?;
            }
            Ok(CommandResult::Done)
        }
        Command::AuditCheckpoint { checkpoint } => apply_checkpoint(tx, checkpoint),
        Command::SetAuditConfig { data_plane } => {
            tx.open_table(META)?.insert(
                KEY_AUDIT_CONFIG,
                sealed::<&str, _>(
                    KEY_AUDIT_CONFIG,
                    &Config {
                        data_plane: *data_plane,
                    },
                )
                .as_slice(),
            )?;
            Ok(CommandResult::Done)
        }
        Command::AuditPrune { through } => prune(tx, *through),
        other => unreachable!("audit::apply called with {other:?}"),
    }
}

/// A checkpoint is kept only if the entry it signs still holds the signed
/// hash (a leader that signed a head it then lost to a new term's log
/// cannot vouch for another chain). One already kept for that entry, or
/// for a later one, makes it a no-op.
fn apply_checkpoint(
    tx: &WriteTransaction,
    cp: &AuditCheckpoint,
) -> Result<CommandResult, MetaError> {
    let entry: Option<AuditEntry> = tx.open_table(AUDIT)?.get_sealed(T_AUDIT, cp.seq)?;
    match entry {
        Some(e) if e.hash == cp.hash => {}
        _ => {
            return Ok(CommandResult::Refused {
                refusal: Refusal::Stale,
            })
        }
    }
    let mut t = tx.open_table(AUDIT_CHECKPOINTS)?;
    let newest = t.last()?.map(|(k, _)| k.value());
    if newest.is_some_and(|n| n >= cp.seq) {
        return Ok(CommandResult::Done);
    }
    t.insert(cp.seq, sealed::<u64, _>(cp.seq, cp).as_slice())?;
    Ok(CommandResult::Done)
}

/// Drops entries through `through`, which must be an entry a checkpoint
/// signs (refused as stale otherwise): that checkpoint, kept like every
/// other, is what proves the anchor `(through, its hash)` the remaining
/// chain starts from. At most [`AUDIT_PRUNE_MAX`] entries go per command;
/// the caller repeats it until none at or before `through` are left.
fn prune(tx: &WriteTransaction, through: u64) -> Result<CommandResult, MetaError> {
    let cp: Option<AuditCheckpoint> = tx
        .open_table(AUDIT_CHECKPOINTS)?
        .get_sealed(T_AUDIT_CHECKPOINTS, through)?;
    let Some(cp) = cp else {
        return Ok(CommandResult::Refused {
            refusal: Refusal::Stale,
        });
    };
    let mut meta = tx.open_table(META)?;
    let anchor: Option<(u64, String)> = meta.get_sealed(T_META, KEY_AUDIT_ANCHOR)?;
    if anchor.as_ref().is_none_or(|(seq, _)| *seq < through) {
        meta.insert(
            KEY_AUDIT_ANCHOR,
            sealed::<&str, _>(KEY_AUDIT_ANCHOR, &(through, cp.hash)).as_slice(),
        )?;
    }
    let mut t = tx.open_table(AUDIT)?;
    let doomed: Vec<u64> = t
        .range(..=through)?
        .take(AUDIT_PRUNE_MAX as usize)
        .map(|it| it.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    for seq in doomed {
        t.remove(seq)?;
    }
    Ok(CommandResult::Done)
}

/// Entries after `after`, at most `max`.
pub(crate) fn entries(
    rtx: &ReadTransaction,
    after: u64,
    max: u32,
) -> Result<Vec<AuditEntry>, MetaError> {
    page(rtx, AUDIT, T_AUDIT, after, max)
}

/// Checkpoints covering entries after `after`, at most `max`.
pub(crate) fn checkpoints(
    rtx: &ReadTransaction,
    after: u64,
    max: u32,
) -> Result<Vec<AuditCheckpoint>, MetaError> {
    page(rtx, AUDIT_CHECKPOINTS, T_AUDIT_CHECKPOINTS, after, max)
}

/// Up to `max` values of a table keyed by sequence number, after `after`
/// (none when the table does not exist yet).
fn page<T: serde::de::DeserializeOwned>(
    rtx: &ReadTransaction,
    def: redb::TableDefinition<u64, &[u8]>,
    name: &'static str,
    after: u64,
    max: u32,
) -> Result<Vec<T>, MetaError> {
    let t = match rtx.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
        Err(e) => return Err(e.into()),
    };
    t.range(after.saturating_add(1)..)?
        .take(max as usize)
        .map(|it| {
            let (k, v) = it?;
            item(name, &k, &v)
        })
        .collect()
}

/// The chain's state, without the public keys (those come from the
/// voter's master keys, not from the state).
pub(crate) fn info(rtx: &ReadTransaction) -> Result<AuditInfo, MetaError> {
    let meta = rtx.open_table(META)?;
    let head: Head = meta.get_sealed(T_META, KEY_AUDIT_HEAD)?.unwrap_or(Head {
        seq: 0,
        hash: GENESIS,
    });
    let anchor: Option<(u64, String)> = meta.get_sealed(T_META, KEY_AUDIT_ANCHOR)?;
    let config: Config = meta
        .get_sealed(T_META, KEY_AUDIT_CONFIG)?
        .unwrap_or_default();
    let checkpointed_through = match rtx.open_table(AUDIT_CHECKPOINTS) {
        Ok(t) => t.last()?.map(|(k, _)| k.value()).unwrap_or(0),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(AuditInfo {
        head: head.seq,
        head_hash: hex::encode(head.hash),
        anchor,
        checkpointed_through,
        data_plane: config.data_plane,
        public_keys: vec![],
    })
}

/// The chain in a snapshot.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ChainDoc {
    entries: Vec<AuditEntry>,
    checkpoints: Vec<AuditCheckpoint>,
    head: Option<Head>,
    anchor: Option<(u64, String)>,
    config: Option<Config>,
}

/// The whole chain, for a snapshot.
pub(crate) fn dump(rtx: &ReadTransaction) -> Result<ChainDoc, MetaError> {
    let meta = rtx.open_table(META)?;
    Ok(ChainDoc {
        entries: entries(rtx, 0, u32::MAX)?,
        checkpoints: checkpoints(rtx, 0, u32::MAX)?,
        head: meta.get_sealed(T_META, KEY_AUDIT_HEAD)?,
        anchor: meta.get_sealed(T_META, KEY_AUDIT_ANCHOR)?,
        config: meta.get_sealed(T_META, KEY_AUDIT_CONFIG)?,
    })
}

/// Replaces the chain with a snapshot's (an empty one when the snapshot
/// predates the chain). The caller has cleared `META`.
pub(crate) fn load(tx: &WriteTransaction, doc: Option<&ChainDoc>) -> Result<(), MetaError> {
    let mut t = tx.open_table(AUDIT)?;
    t.retain(|_, _| false)?;
    let mut c = tx.open_table(AUDIT_CHECKPOINTS)?;
    c.retain(|_, _| false)?;
    let Some(doc) = doc else { return Ok(()) };
    for e in &doc.entries {
        t.insert(e.seq, sealed::<u64, _>(e.seq, e).as_slice())?;
    }
    for cp in &doc.checkpoints {
        c.insert(cp.seq, sealed::<u64, _>(cp.seq, cp).as_slice())?;
    }
    let mut m = tx.open_table(META)?;
    if let Some(h) = &doc.head {
        m.insert(
            KEY_AUDIT_HEAD,
            sealed::<&str, _>(KEY_AUDIT_HEAD, h).as_slice(),
        )?;
    }
    if let Some(a) = &doc.anchor {
        m.insert(
            KEY_AUDIT_ANCHOR,
            sealed::<&str, _>(KEY_AUDIT_ANCHOR, a).as_slice(),
        )?;
    }
    if let Some(cfg) = &doc.config {
        m.insert(
            KEY_AUDIT_CONFIG,
            sealed::<&str, _>(KEY_AUDIT_CONFIG, cfg).as_slice(),
        )?;
    }
    Ok(())
}
