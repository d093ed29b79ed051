//! Storage classes as replicated state, and what each class holds.
//!
//! The class list is one sealed value in the meta table (a few dozen
//! classes at most, read whole by every gateway with the cluster map).
//! What each class holds is counted per `(class, bucket)` in the
//! class-usage table, kept in step with the segment index in the same
//! transaction (see [`count`]), so deleting a class in use is refused by
//! one range read instead of a scan of every segment, and the counts are
//! what `weft class list` reports. The usage is derived: snapshots do not
//! carry it, an install recounts it from the segment index.

use redb::{ReadableTable, WriteTransaction};
use weft_common::repair::SegmentRecord;
use weft_common::rpc::{CommandResult, Refusal};
use weft_common::storage_class::{self, ClassUsage, StorageClass, DEFAULT_CLASS};

use crate::envelope::{item, sealed, SealedRead};
use crate::error::MetaError;
use crate::tables::{
    BUCKETS, CLASS_USAGE, KEY_CLASS_MIGRATIONS, KEY_RESIDENCY_EPOCH, KEY_STORAGE_CLASSES, META,
    SEGMENTS, T_BUCKETS, T_CLASS_USAGE, T_META, T_SEGMENTS,
};

/// Classes whose data is being moved to their current definition
/// (`weft class set --migrate`), each with the definition it moves to.
pub(crate) type Migrations = std::collections::BTreeMap<String, StorageClass>;

/// The migrations in progress.
pub(crate) fn migrations<T: ReadableTable<&'static str, &'static [u8]>>(
    meta: &T,
) -> Result<Migrations, MetaError> {
    Ok(meta
        .get_sealed(T_META, KEY_CLASS_MIGRATIONS)?
        .unwrap_or_default())
}

pub(crate) fn write_migrations(tx: &WriteTransaction, m: &Migrations) -> Result<(), MetaError> {
    let mut t = tx.open_table(META)?;
    if m.is_empty() {
        t.remove(KEY_CLASS_MIGRATIONS)?;
    } else {
        t.insert(
            KEY_CLASS_MIGRATIONS,
            sealed::<&str, _>(KEY_CLASS_MIGRATIONS, m).as_slice(),
        )?;
    }
    Ok(())
}

/// `FinishClassMigration`: ends the migration to `class`, unless the class
/// was changed (and is migrating to a newer definition) meanwhile.
pub(crate) fn finish(
    tx: &WriteTransaction,
    class: &StorageClass,
    epoch: u64,
) -> Result<CommandResult, MetaError> {
    let mut m = migrations(&tx.open_table(META)?)?;
    // A walk that ran across a residency change may have passed segments
    // the change put outside: it ends nothing.
    if epoch != residency_epoch(&tx.open_table(META)?)? {
        return Ok(CommandResult::Done);
    }
    if m.get(&class.name) == Some(class) {
        m.remove(&class.name);
        write_migrations(tx, &m)?;
    }
    Ok(CommandResult::Done)
}

/// How many residency changes were applied (0: none).
pub(crate) fn residency_epoch<T: ReadableTable<&'static str, &'static [u8]>>(
    meta: &T,
) -> Result<u64, MetaError> {
    Ok(meta
        .get_sealed(T_META, KEY_RESIDENCY_EPOCH)?
        .unwrap_or_default())
}

/// The class list, if seeded.
pub(crate) fn read<T: ReadableTable<&'static str, &'static [u8]>>(
    meta: &T,
) -> Result<Option<Vec<StorageClass>>, MetaError> {
    meta.get_sealed(T_META, KEY_STORAGE_CLASSES)
}

fn write(tx: &WriteTransaction, classes: &[StorageClass]) -> Result<(), MetaError> {
    tx.open_table(META)?.insert(
        KEY_STORAGE_CLASSES,
        sealed::<&str, _>(KEY_STORAGE_CLASSES, &classes.to_vec()).as_slice(),
    )?;
    Ok(())
}

fn usage_key(class: &str, bucket: &str) -> String {
    format!("{class}\0{bucket}")
}

/// Adds (`sign` = 1) or removes (-1) one segment to its class's count.
pub(crate) fn count(tx: &WriteTransaction, rec: &SegmentRecord, sign: i8) -> Result<(), MetaError> {
    let mut t = tx.open_table(CLASS_USAGE)?;
    let k = usage_key(&rec.class, &rec.bucket);
    let mut u: ClassUsage = t.get_sealed(T_CLASS_USAGE, k.as_str())?.unwrap_or_default();
    let stored = rec.shard_len.saturating_mul(rec.layout.width() as u64);
    if sign > 0 {
        u.segments += 1;
        u.bytes += rec.len;
        u.stored_bytes += stored;
    } else {
        u.segments = u.segments.saturating_sub(1);
        u.bytes = u.bytes.saturating_sub(rec.len);
        u.stored_bytes = u.stored_bytes.saturating_sub(stored);
    }
    if u.segments == 0 {
        t.remove(k.as_str())?;
    } else {
        t.insert(k.as_str(), sealed::<&str, _>(k.as_str(), &u).as_slice())?;
    }
    Ok(())
}

/// Recounts every class's usage from the segment index.
pub(crate) fn recount(tx: &WriteTransaction) -> Result<(), MetaError> {
    tx.open_table(CLASS_USAGE)?.retain(|_, _| false)?;
    let mut recs = vec![];
    for it in tx.open_table(SEGMENTS)?.iter()? {
        let (k, v) = it?;
        let rec: SegmentRecord = item(T_SEGMENTS, &k, &v)?;
        recs.push(rec);
        // Flush in batches so a huge index is not held twice.
        if recs.len() == 4096 {
            for r in recs.drain(..) {
                count(tx, &r, 1)?;
            }
        }
    }
    for r in recs {
        count(tx, &r, 1)?;
    }
    Ok(())
}

impl crate::state_machine::StateMachine {
    /// Whether `bucket` holds segments of `class`.
    pub fn holds_class(&self, bucket: &str, class: &str) -> Result<bool, MetaError> {
        let tx = self.begin_read()?;
        let k = usage_key(class, bucket);
        Ok(tx.open_table(CLASS_USAGE)?.get(k.as_str())?.is_some())
    }

    /// The buckets holding segments of `class`.
    pub fn buckets_holding(
        &self,
        class: &str,
    ) -> Result<std::collections::BTreeSet<String>, MetaError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(CLASS_USAGE)?;
        let lo = usage_key(class, "");
        let hi = format!("{class}\u{1}");
        let mut out = std::collections::BTreeSet::new();
        for it in t.range(lo.as_str()..hi.as_str())? {
            let (k, _) = it?;
            if let Some((_, b)) = k.value().split_once('\0') {
                out.insert(b.to_string());
            }
        }
        Ok(out)
    }
}

/// Usage by class, then by bucket.
pub(crate) fn usage<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
) -> Result<Vec<(String, String, ClassUsage)>, MetaError> {
    let mut out = vec![];
    for it in t.iter()? {
        let (k, v) = it?;
        let u: ClassUsage = item(T_CLASS_USAGE, &k, &v)?;
        let (class, bucket) = k.value().split_once('\0').unwrap_or((k.value(), ""));
        out.push((class.to_string(), bucket.to_string(), u));
    }
    Ok(out)
}

/// Why a write naming `class` must be refused: the cluster has classes
/// and this is not one of them (deleted after the gateway read its map).
/// Before the first leader seeds classes every name passes, as before
/// classes were data.
pub(crate) fn undefined(tx: &WriteTransaction, class: &str) -> Result<Option<Refusal>, MetaError> {
    let Some(classes) = read(&tx.open_table(META)?)? else {
        return Ok(None);
    };
    if classes.iter().any(|c| c.name == class) {
        return Ok(None);
    }
    Ok(Some(Refusal::ClassRefused {
        message: format!(
            "storage class {class} is not defined on this cluster (deleted since the write began?); `weft class list` shows those that are"
        ),
    }))
}

fn refusal(message: String) -> Result<CommandResult, MetaError> {
    Ok(CommandResult::Refused {
        refusal: Refusal::ClassRefused { message },
    })
}

/// `SeedStorageClasses`: installs the list only while none is set.
pub(crate) fn seed(
    tx: &WriteTransaction,
    classes: &[StorageClass],
) -> Result<CommandResult, MetaError> {
    if let Err(e) = storage_class::validate_all(classes) {
        return refusal(e.to_string());
    }
    if read(&tx.open_table(META)?)?.is_none() {
        write(tx, classes)?;
    }
    Ok(CommandResult::Done)
}

/// `PutStorageClass`: adds or replaces one class. Whether the cluster can
/// place it is checked before proposing (it depends on nodes, which come
/// and go); here only the definition, against the list it joins.
pub(crate) fn put(
    tx: &WriteTransaction,
    class: &StorageClass,
    migrate: bool,
) -> Result<CommandResult, MetaError> {
    let Some(mut classes) = read(&tx.open_table(META)?)? else {
        return refusal("this cluster has no storage classes yet: its first leader seeds them just after it is elected; retry in a moment".into());
    };
    match classes.iter_mut().find(|c| c.name == class.name) {
        Some(c) => *c = class.clone(),
        None => classes.push(class.clone()),
    }
    if let Err(e) = storage_class::validate_all(&classes) {
        return refusal(e.to_string());
    }
    write(tx, &classes)?;
    // A migration under way goes on towards the newest definition.
    let mut m = migrations(&tx.open_table(META)?)?;
    if migrate || m.contains_key(&class.name) {
        m.insert(class.name.clone(), class.clone());
        write_migrations(tx, &m)?;
    }
    Ok(CommandResult::Done)
}

/// `DeleteStorageClass`: refused for the default class and for a class
/// that still holds segments, naming the buckets that hold them.
pub(crate) fn delete(tx: &WriteTransaction, name: &str) -> Result<CommandResult, MetaError> {
    let Some(mut classes) = read(&tx.open_table(META)?)? else {
        return refusal(format!("no storage class {name}"));
    };
    if !classes.iter().any(|c| c.name == name) {
        // Deleted already (a retry) or never there: nothing to do either way.
        return Ok(CommandResult::Done);
    }
    if name == DEFAULT_CLASS {
        return refusal(format!(
            "{DEFAULT_CLASS} is the class of every request that names none; it can be changed, not deleted"
        ));
    }
    let t = tx.open_table(CLASS_USAGE)?;
    let lo = usage_key(name, "");
    let hi = format!("{name}\u{1}");
    let mut users = vec![];
    let mut segments = 0u64;
    for it in t.range(lo.as_str()..hi.as_str())? {
        let (k, v) = it?;
        let u: ClassUsage = item(T_CLASS_USAGE, &k, &v)?;
        segments += u.segments;
        if users.len() < 5 {
            let bucket = k.value().split_once('\0').map(|(_, b)| b).unwrap_or("");
            users.push(format!("{bucket} ({} segments)", u.segments));
        }
    }
    drop(t);
    if segments > 0 {
        return refusal(format!(
            "storage class {name} holds {segments} segments of objects or uploads, in buckets {}; move them to another class (CopyObject with x-amz-storage-class) or delete them first",
            users.join(", ")
        ));
    }
    // Intelligent-Tiering places its lower tiers with STANDARD_IA's and
    // GLACIER_IR's definitions (GLACIER and DEEP_ARCHIVE fall back to
    // GLACIER_IR): those stay while it holds data.
    if matches!(name, "STANDARD_IA" | "GLACIER_IR") {
        let it = weft_common::lifecycle::tiering::IT_CLASS;
        let lo = usage_key(it, "");
        let hi = format!("{it}\u{1}");
        if tx
            .open_table(CLASS_USAGE)?
            .range(lo.as_str()..hi.as_str())?
            .next()
            .is_some()
        {
            return refusal(format!(
                "{it} places objects unread for a while with {name}'s definition, and this cluster holds {it} data; redefine {name} instead of deleting it"
            ));
        }
    }
    // Unread rules that would move data into it.
    let mut rulers = vec![];
    for it in tx.open_table(BUCKETS)?.iter()? {
        let (k, v) = it?;
        let b: weft_common::manifest::BucketInfo = item(T_BUCKETS, &k, &v)?;
        let t = b.tiering.unwrap_or_default();
        if t.unread.iter().any(|r| r.class == name) {
            rulers.push(b.name);
        }
    }
    if !rulers.is_empty() {
        return refusal(format!(
            "storage class {name} is named by the tiering of buckets {}; remove those rules first (`weft lifecycle set BUCKET --clear-unread`)",
            rulers.join(", ")
        ));
    }
    classes.retain(|c| c.name != name);
    write(tx, &classes)?;
    let mut m = migrations(&tx.open_table(META)?)?;
    if m.remove(name).is_some() {
        write_migrations(tx, &m)?;
    }
    Ok(CommandResult::Done)
}
