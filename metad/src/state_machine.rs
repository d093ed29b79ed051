//! The replicated state machine proper: the redb database that holds
//! buckets, object versions, nodes and keys, mutated only by
//! `apply` in log order, and the openraft storage traits
//! over it.
//!
//! The tables are in `tables`, the read side in `queries`
//! and snapshots in `snapshot`; this module opens the database
//! (migrating older layouts), applies entries and builds and installs
//! snapshots for openraft.
//!
//! `last_applied` and the membership are written in the same transaction as
//! the data they describe, so a crash never leaves them out of step.

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use weft_common::rpc::CommandResult;

use crate::apply;
use crate::envelope::{self, sealed};
use crate::error::{sm_read_err, sm_write_err, MetaError};
use crate::segment_index;
use crate::snapshot::{self, Membership, SnapshotFile};
use crate::tables::*;
use crate::{RaftNodeId, TypeConfig};

pub use crate::snapshot::SNAPSHOT_FORMAT;

type SE = StorageError<RaftNodeId>;

/// The state machine; clones share the database.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    snapshots: Arc<SnapshotFile>,
}

impl StateMachine {
    /// Opens or creates the state machine under `dir`, with redb's default
    /// cache (tests and tools).
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        Self::open_with_cache(dir, crate::limits::DEFAULT_TOOL_CACHE_BYTES)
    }

    /// Opens or creates the state machine under `dir`, its page cache at
    /// most `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Self, MetaError> {
        let mut builder = Database::builder();
        builder.set_cache_size(cache_bytes);
        let db = crate::disk_backend::create(&builder, &dir.join("state.redb"))?;
        let tx = db.begin_write()?;
        {
            tx.open_table(BUCKETS)?;
            tx.open_table(OBJECTS)?;
            tx.open_table(NODES)?;
            tx.open_table(KEYS)?;
            tx.open_table(UPLOADS)?;
            tx.open_table(VERSIONS)?;
            tx.open_table(META)?;
            tx.open_table(NODE_ADMIN)?;
            tx.open_table(SEGMENTS)?;
            tx.open_table(REQUESTS)?;
            tx.open_table(REQUEST_AGES)?;
            tx.open_table(AUDIT)?;
            tx.open_table(AUDIT_CHECKPOINTS)?;
            tx.open_table(WARMS)?;
            let sealed_already = tx.open_table(META)?.get(envelope::MIGRATED_KEY)?.is_some();
            if !sealed_already {
                let n = seal_legacy_values(&tx)?;
                if n > 0 {
                    tracing::info!(
                        values = n,
                        "sealed metadata written before the checksum envelope"
                    );
                }
                tx.open_table(META)?.insert(
                    envelope::MIGRATED_KEY,
                    sealed::<&str, _>(envelope::MIGRATED_KEY, &1u32).as_slice(),
                )?;
            }
            let indexed = tx.open_table(META)?.get(KEY_SEGMENT_INDEX)?.is_some();
            if !indexed {
                let n = segment_index::rebuild(&tx)?;
                if n > 0 {
                    tracing::info!(segments = n, "built the segment index from the manifests");
                }
                tx.open_table(META)?.insert(
                    KEY_SEGMENT_INDEX,
                    sealed::<&str, _>(KEY_SEGMENT_INDEX, &1u32).as_slice(),
                )?;
            }
            // Databases from before class usage was counted: count what
            // the index holds now, on every voter alike (the index is the
            // same on all), before any command adds or releases a segment.
            if tx.open_table(META)?.get(KEY_CLASS_USAGE)?.is_none() {
                crate::classes::recount(&tx)?;
                tx.open_table(META)?.insert(
                    KEY_CLASS_USAGE,
                    sealed::<&str, _>(KEY_CLASS_USAGE, &1u32).as_slice(),
                )?;
            }
        }
        tx.commit()?;
        // After the database: its lock makes this process the snapshot's
        // only writer.
        let snapshots = SnapshotFile::open(dir)?;
        Ok(StateMachine {
            db: Arc::new(db),
            snapshots: Arc::new(snapshots),
        })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SE> {
        let tx = self.db.begin_read().map_err(sm_read_err)?;
        let t = tx.open_table(META).map_err(sm_read_err)?;
        match t.get(key).map_err(sm_read_err)? {
            None => Ok(None),
            Some(v) => envelope::decode(T_META, key.as_bytes(), v.value())
                .map(Some)
                .map_err(sm_read_err),
        }
    }

    /// A read transaction: one consistent view for a query.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, MetaError> {
        Ok(self.db.begin_read()?)
    }

    /// Fsyncs every commit made so far (apply commits are not fsynced).
    pub fn flush(&self) -> Result<(), MetaError> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    /// Applies one command in its own transaction, outside raft: for tests
    /// of apply itself.
    #[cfg(test)]
    pub(crate) fn apply_for_test(
        &self,
        cmd: &weft_common::rpc::Command,
    ) -> Result<CommandResult, MetaError> {
        Ok(self.apply_with_effects_for_test(cmd)?.result)
    }

    /// [`apply_for_test`](Self::apply_for_test), with the effects apply
    /// reported: for tests that they match the index change.
    #[cfg(test)]
    pub(crate) fn apply_with_effects_for_test(
        &self,
        cmd: &weft_common::rpc::Command,
    ) -> Result<crate::effects::Applied, MetaError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None)?;
        let applied = apply::apply_command(&tx, cmd)?;
        tx.commit()?;
        Ok(applied)
    }

    /// This state, dumped as a snapshot and installed into a fresh state
    /// machine under `dir`: for tests that a snapshot carries everything
    /// apply depends on.
    #[cfg(test)]
    pub(crate) fn snapshot_roundtrip_for_test(
        &self,
        dir: &Path,
    ) -> Result<StateMachine, MetaError> {
        let (doc, applied, membership) = snapshot::dump(&self.db)?;
        let doc: snapshot::SnapshotDoc =
            serde_json::from_slice(&serde_json::to_vec(&doc).expect("serializes"))
                .expect("deserializes");
        let other = StateMachine::open(dir)?;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: "test".into(),
        };
        snapshot::load(&other.db, &doc, &meta)?;
        Ok(other)
    }

    /// `(segments referenced by any version or upload part, segments in the
    /// index, requests remembered)`: for invariant checks in tests.
    #[cfg(test)]
    pub(crate) fn references_for_test(
        &self,
    ) -> Result<
        (
            std::collections::BTreeSet<weft_common::SegmentId>,
            std::collections::BTreeSet<weft_common::SegmentId>,
            u64,
        ),
        MetaError,
    > {
        let (doc, _, _) = snapshot::dump(&self.db)?;
        let mut referenced = std::collections::BTreeSet::new();
        for (_, _, v) in &doc.objects {
            referenced.extend(v.segments.iter().map(|s| s.id));
        }
        for (_, r) in &doc.versions {
            referenced.extend(
                r.version
                    .iter()
                    .flat_map(|v| v.segments.iter().map(|s| s.id)),
            );
        }
        for u in &doc.uploads {
            referenced.extend(u.parts.iter().flat_map(|p| p.segments.iter().map(|s| s.id)));
        }
        let indexed = doc.segments.iter().flatten().map(|(id, _)| *id).collect();
        let requests = crate::requests::count(&self.db.begin_read()?)?;
        Ok((referenced, indexed, requests))
    }
}

/// Seals, in place, every value written before the envelope existed.
fn seal_legacy_values(tx: &redb::WriteTransaction) -> Result<u64, MetaError> {
    let mut n = 0u64;
    macro_rules! seal_table {
        ($def:expr, $name:expr, $key:ty, $owned:ty, $conv:ident) => {{
            let mut t = tx.open_table($def)?;
            let mut redo: Vec<($owned, Vec<u8>)> = vec![];
            for it in t.iter()? {
                let (k, v) = it?;
                let key = k.value();
                let kb = envelope::key_bytes::<$key>(&key);
                if let Some(sealed) = envelope::seal_legacy($name, &kb, v.value())? {
                    redo.push((key.to_owned(), sealed));
                }
            }
            for (k, v) in redo {
                t.insert(k.$conv(), v.as_slice())?;
                n += 1;
            }
        }};
    }
    seal_table!(BUCKETS, T_BUCKETS, &str, String, as_str);
    seal_table!(OBJECTS, T_OBJECTS, &[u8], Vec<u8>, as_slice);
    seal_table!(NODES, T_NODES, u64, u64, clone);
    seal_table!(KEYS, T_KEYS, &str, String, as_str);
    seal_table!(UPLOADS, T_UPLOADS, &str, String, as_str);
    seal_table!(META, T_META, &str, String, as_str);
    seal_table!(NODE_ADMIN, T_NODE_ADMIN, u64, u64, clone);
    seal_table!(VERSIONS, T_VERSIONS, &[u8], Vec<u8>, as_slice);
    seal_table!(SEGMENTS, T_SEGMENTS, &[u8], Vec<u8>, as_slice);
    Ok(n)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SE> {
        let this = self.clone();
        weft_common::effects::spawn_blocking(move || {
            // Make every applied entry durable first: once this snapshot
            // exists the log before it may be purged.
            this.flush().map_err(sm_write_err)?;
            snapshot::build(&this.db, &this.snapshots)
        })
        .await
        .map_err(sm_read_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<RaftNodeId>>, Membership), SE> {
        let applied = self
            .meta::<Option<LogId<RaftNodeId>>>(KEY_APPLIED)?
            .flatten();
        let membership = self.meta(KEY_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, SE>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let db = self.db.clone();
        weft_common::effects::spawn_blocking(move || -> Result<Vec<CommandResult>, MetaError> {
            // Not fsynced: the raft log already holds these entries durably
            // and is replayed from the last durable `last_applied` after a
            // crash. `build_snapshot` makes everything durable before the log
            // behind a snapshot can be purged.
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::None)?;
            let mut results = Vec::with_capacity(entries.len());
            let mut last: Option<LogId<RaftNodeId>> = None;
            let mut membership: Option<Membership> = None;
            for e in &entries {
                last = Some(e.log_id);
                match &e.payload {
                    EntryPayload::Blank => results.push(CommandResult::Done),
                    EntryPayload::Normal(cmd) => {
                        results.push(apply::apply_command(&tx, cmd)?.result)
                    }
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                        results.push(CommandResult::Done);
                    }
                }
            }
            {
                let mut m = tx.open_table(META)?;
                if let Some(l) = last {
                    m.insert(
                        KEY_APPLIED,
                        sealed::<&str, _>(KEY_APPLIED, &Some(l)).as_slice(),
                    )?;
                }
                if let Some(mem) = membership {
                    m.insert(
                        KEY_MEMBERSHIP,
                        sealed::<&str, _>(KEY_MEMBERSHIP, &mem).as_slice(),
                    )?;
                }
            }
            tx.commit()?;
            Ok(results)
        })
        .await
        .map_err(sm_write_err)?
        .map_err(sm_write_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SE> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SE> {
        let data = snapshot.into_inner();
        let doc = snapshot::decode(meta, &data)?;
        let this = self.clone();
        let meta = meta.clone();
        weft_common::effects::spawn_blocking(move || {
            snapshot::install(&this.db, &this.snapshots, &doc, meta, data)
        })
        .await
        .map_err(sm_write_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SE> {
        snapshot::current(&self.snapshots)
    }
}
