//! Version history for buckets with versioning (S3 semantics), kept beside
//! the current-version table the listing reads.
//!
//! `objects[bucket \0 key]` stays the current version (absent when the newest
//! history entry is a delete marker), so ListObjects never reads history.
//! `versions[bucket \0 key \0 !seq]` holds every version and delete marker of
//! a key, newest first (`seq` is a counter bumped in apply, so the order is
//! the log's). An object written before versioning was enabled has no
//! history entry until it is next touched; it is then adopted as the `null`
//! version, as S3 does.

use redb::{ReadableTable, WriteTransaction};
use weft_common::manifest::{ObjectVersion, VersionRecord};

use crate::envelope::{item, sealed, SealedRead};
use crate::error::MetaError;
use crate::tables::{
    history_prefix, KEY_VERSION_SEQ, LEGACY_SEQ, META, T_META, T_VERSIONS, VERSIONS,
};

/// The counter in a write transaction: the sealed value, else the one a
/// database from before the envelope kept in its own bare table.
fn current_seq(tx: &WriteTransaction) -> Result<u64, MetaError> {
    let sealed: Option<u64> = tx.open_table(META)?.get_sealed(T_META, KEY_VERSION_SEQ)?;
    match sealed {
        Some(n) => Ok(n),
        None => match tx.open_table(LEGACY_SEQ) {
            Ok(t) => Ok(t.get("seq")?.map(|v| v.value()).unwrap_or(0)),
            Err(e) => Err(e.into()),
        },
    }
}

fn next_seq(tx: &WriteTransaction) -> Result<u64, MetaError> {
    let n = current_seq(tx)? + 1;
    set_seq(tx, n)?;
    Ok(n)
}

/// The seq counter (for snapshots and digests).
pub(crate) fn seq(tx: &redb::ReadTransaction) -> Result<u64, MetaError> {
    let sealed: Option<u64> = tx.open_table(META)?.get_sealed(T_META, KEY_VERSION_SEQ)?;
    if let Some(n) = sealed {
        return Ok(n);
    }
    match tx.open_table(LEGACY_SEQ) {
        Ok(t) => Ok(t.get("seq")?.map(|v| v.value()).unwrap_or(0)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Restores the seq counter (snapshot install).
pub(crate) fn set_seq(tx: &WriteTransaction, n: u64) -> Result<(), MetaError> {
    tx.open_table(META)?.insert(
        KEY_VERSION_SEQ,
        sealed::<&str, _>(KEY_VERSION_SEQ, &n).as_slice(),
    )?;
    Ok(())
}

/// Whether the history of `bucket/key` holds version `id` or a delete
/// marker with that id: how apply recognises a command applied again.
pub(crate) fn holds_version(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    id: weft_common::VersionId,
) -> Result<bool, MetaError> {
    let label = id.to_string();
    Ok(history(tx, bucket, key)?.iter().any(|(_, r)| {
        r.version_id == label
            || r.origin_id == Some(id)
            || r.version.as_ref().map(|v| v.version_id) == Some(id)
    }))
}

/// History of one key, newest first, with table keys.
pub(crate) fn history(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
) -> Result<Vec<(Vec<u8>, VersionRecord)>, MetaError> {
    let t = tx.open_table(VERSIONS)?;
    let p = history_prefix(bucket, key);
    // Entries are the prefix plus an 8-byte sequence: the last one possible
    // is the prefix plus eight 0xFF.
    let mut end = p.clone();
    end.extend_from_slice(&[0xFF; 8]);
    let mut out = vec![];
    for it in t.range::<&[u8]>(p.as_slice()..=end.as_slice())? {
        let (k, v) = it?;
        // Only this key: the next 8 bytes are the seq, nothing more.
        if k.value().len() == p.len() + 8 {
            out.push((k.value().to_vec(), item(T_VERSIONS, &k, &v)?));
        }
    }
    Ok(out)
}

fn insert(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    r: &VersionRecord,
) -> Result<(), MetaError> {
    let n = next_seq(tx)?;
    let mut k = history_prefix(bucket, key);
    k.extend_from_slice(&(u64::MAX - n).to_be_bytes());
    let mut t = tx.open_table(VERSIONS)?;
    if t.get(k.as_slice())?.is_some() {
        // Sequence numbers only grow: a taken key means the counter is
        // damaged, and writing would overwrite a version for good.
        return Err(crate::envelope::CorruptValue {
            table: T_META,
            key: KEY_VERSION_SEQ.to_string(),
            reason: format!("history counter {n} is already used"),
        }
        .into());
    }
    t.insert(k.as_slice(), sealed::<&[u8], _>(k.as_slice(), r).as_slice())?;
    Ok(())
}

/// Records `current` as the `null` version if it predates versioning (has
/// no history entry of its own).
fn adopt(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    current: Option<&ObjectVersion>,
) -> Result<(), MetaError> {
    let Some(cur) = current else { return Ok(()) };
    let known = history(tx, bucket, key)?
        .iter()
        .any(|(_, r)| r.version.as_ref().map(|v| v.version_id) == Some(cur.version_id));
    if !known {
        let mut v = cur.clone();
        v.version_label = Some("null".into());
        insert(
            tx,
            bucket,
            key,
            &VersionRecord {
                origin_id: None,
                version_id: "null".into(),
                last_modified_ms: v.last_modified_ms,
                version: Some(v),
            },
        )?;
    }
    Ok(())
}

/// Removes the `null` entry of a key, returning its version (whose data is
/// then unreferenced).
fn remove_null(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectVersion>, MetaError> {
    for (k, r) in history(tx, bucket, key)? {
        if r.version_id == "null" {
            tx.open_table(VERSIONS)?.remove(k.as_slice())?;
            return Ok(r.version);
        }
    }
    Ok(None)
}

/// A new current version in a versioned bucket. `enabled` is the bucket's
/// state (else suspended). Returns a version whose data is released.
pub(crate) fn put(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    enabled: bool,
    version: &mut ObjectVersion,
    current: Option<&ObjectVersion>,
) -> Result<Option<ObjectVersion>, MetaError> {
    adopt(tx, bucket, key, current)?;
    let (id, released) = if enabled {
        (version.version_id.to_string(), None)
    } else {
        ("null".to_string(), remove_null(tx, bucket, key)?)
    };
    version.version_label = Some(id.clone());
    insert(
        tx,
        bucket,
        key,
        &VersionRecord {
            origin_id: None,
            version_id: id,
            last_modified_ms: version.last_modified_ms,
            version: Some(version.clone()),
        },
    )?;
    Ok(released)
}

/// A delete without a version id: a delete marker. Returns (released
/// version, marker id).
pub(crate) fn delete(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    enabled: bool,
    marker: (weft_common::VersionId, u64),
    current: Option<&ObjectVersion>,
) -> Result<(Option<ObjectVersion>, String), MetaError> {
    adopt(tx, bucket, key, current)?;
    let (id, released) = if enabled {
        (marker.0.to_string(), None)
    } else {
        ("null".to_string(), remove_null(tx, bucket, key)?)
    };
    insert(
        tx,
        bucket,
        key,
        &VersionRecord {
            version_id: id.clone(),
            version: None,
            last_modified_ms: marker.1,
            origin_id: Some(marker.0),
        },
    )?;
    Ok((released, id))
}

/// Removes one entry for good. Returns (removed record, the new current
/// version) or `None` if there is no such entry.
pub(crate) fn delete_version(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    version_id: &str,
    current: Option<&ObjectVersion>,
) -> Result<Option<(VersionRecord, Option<ObjectVersion>)>, MetaError> {
    // Only the `null` version can be the unrecorded current one; adopting it
    // for any other id would leave a stray record behind.
    if version_id == "null" {
        adopt(tx, bucket, key, current)?;
    }
    let hist = history(tx, bucket, key)?;
    let Some(pos) = hist.iter().position(|(_, r)| r.version_id == version_id) else {
        return Ok(None);
    };
    let (k, removed) = hist[pos].clone();
    tx.open_table(VERSIONS)?.remove(k.as_slice())?;
    let newest = hist
        .iter()
        .enumerate()
        .find(|(i, _)| *i != pos)
        .map(|(_, (_, r))| r.clone());
    Ok(Some((removed, newest.and_then(|r| r.version))))
}
