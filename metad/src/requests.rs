//! Requests already applied, so a retry is answered and not applied again.
//!
//! A client that sent a command and lost the answer (a timeout, a dropped
//! connection, a leader that stepped down after proposing) cannot know
//! whether it committed; it sends the same [`Command::Request`] again. The
//! second copy finds the id here and gets the first outcome back with its
//! releases stripped ([`CommandResult::without_releases`]), so a retry can
//! neither apply twice nor free data. Records are kept for
//! [`REQUEST_RETENTION_MS`] of leader time — the leader that proposes a
//! request stamps `at_ms` itself (`server::api::command`), so no client clock can
//! age records — and pruned a few at a time as requests apply, so the table
//! stays bounded by the request rate times the retention. Everything here is
//! a function of the log: every replica keeps and prunes the same records.
//!
//! [`Command::Request`]: weft_common::rpc::Command::Request

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use weft_common::rpc::{CommandResult, REQUEST_RETENTION_MS};
use weft_common::RequestId;

use crate::effects::Applied;
use crate::envelope::{sealed, SealedRead};
use crate::error::MetaError;
use crate::tables::*;

use crate::limits::PRUNE_PER_APPLY;

use crate::limits::CLOCK_JUMP_WARN_MS;

/// What a retry is answered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Proposer time of the first attempt.
    pub at_ms: u64,
    /// The first outcome, releases stripped.
    pub result: CommandResult,
}

fn age_key(at_ms: u64, id: RequestId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..].copy_from_slice(&id.0.to_be_bytes());
    k
}

/// Applies `apply` unless request `id` already was; then answers as the
/// first time, releasing nothing.
pub(crate) fn apply_once(
    tx: &WriteTransaction,
    id: RequestId,
    at_ms: u64,
    apply: impl FnOnce(&WriteTransaction) -> Result<Applied, MetaError>,
) -> Result<Applied, MetaError> {
    let key = id.0.to_be_bytes();
    let seen: Option<Record> = tx
        .open_table(REQUESTS)?
        .get_sealed(T_REQUESTS, key.as_slice())?;
    if let Some(r) = seen {
        // A retry: answered, with no effects.
        return Ok(r.result.into());
    }
    let applied = apply(tx)?;
    let record = Record {
        at_ms,
        result: applied.result.without_releases(),
    };
    tx.open_table(REQUESTS)?.insert(
        key.as_slice(),
        sealed::<&[u8], _>(key.as_slice(), &record).as_slice(),
    )?;
    let age = age_key(at_ms, id);
    tx.open_table(REQUEST_AGES)?.insert(
        age.as_slice(),
        sealed::<&[u8], _>(age.as_slice(), &()).as_slice(),
    )?;
    prune(tx, at_ms)?;
    Ok(applied)
}

/// Advances the request clock to `at_ms` and, when it moved, drops a few
/// records older than the retention behind it.
fn prune(tx: &WriteTransaction, at_ms: u64) -> Result<(), MetaError> {
    let mut meta = tx.open_table(META)?;
    let before: u64 = meta.get_sealed(T_META, KEY_REQUEST_CLOCK)?.unwrap_or(0);
    if before > 0 && at_ms > before.saturating_add(CLOCK_JUMP_WARN_MS) {
        // A leader whose clock runs far ahead shortens every record's life.
        tracing::warn!(
            jump_ms = at_ms - before,
            "request clock jumped forward; check the metad voters' clocks (NTP): \
             records of requests in flight may expire early"
        );
    }
    if at_ms <= before {
        // The clock did not move (requests in one millisecond, or one
        // batch): the horizon is where it was, and the last advance already
        // pruned up to it.
        return Ok(());
    }
    let clock = at_ms;
    meta.insert(
        KEY_REQUEST_CLOCK,
        sealed::<&str, _>(KEY_REQUEST_CLOCK, &clock).as_slice(),
    )?;
    let horizon = clock.saturating_sub(REQUEST_RETENTION_MS);
    let mut ages = tx.open_table(REQUEST_AGES)?;
    let end = horizon.to_be_bytes();
    let mut expired: Vec<Vec<u8>> = Vec::with_capacity(PRUNE_PER_APPLY);
    for it in ages.range::<&[u8]>(..end.as_slice())?.take(PRUNE_PER_APPLY) {
        let (k, v) = it?;
        // The key decides which record goes: check it before acting on it.
        crate::envelope::open(T_REQUEST_AGES, k.value(), v.value())?;
        if k.value().len() != 24 {
            return Err(crate::envelope::CorruptValue {
                table: T_REQUEST_AGES,
                key: crate::envelope::printable(k.value()),
                reason: "request age key is not 24 bytes".into(),
            }
            .into());
        }
        expired.push(k.value().to_vec());
    }
    let mut requests = tx.open_table(REQUESTS)?;
    for k in expired {
        ages.remove(k.as_slice())?;
        requests.remove(&k[8..])?;
    }
    Ok(())
}

/// Number of remembered requests.
#[cfg(test)]
pub(crate) fn count(tx: &redb::ReadTransaction) -> Result<u64, MetaError> {
    use redb::ReadableTableMetadata;
    Ok(tx.open_table(REQUESTS)?.len()?)
}
