//! The durable raft log, in its own redb database.
//!
//! Entries are keyed by index. `append` writes a whole batch in one redb
//! transaction and one fsync before reporting it flushed: openraft hands us
//! batches, so concurrent writers share fsyncs (group commit). The vote and
//! the purge point live in a small meta table of the same database, so a vote
//! is durable before it is answered.

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use crate::{RaftNodeId, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "last_purged";
const KEY_COMMITTED: &str = "committed";

type SE = StorageError<RaftNodeId>;

fn read_err(e: impl std::error::Error + 'static) -> SE {
    StorageIOError::read_logs(&e).into()
}
/// Decodes a stored entry. A failure means the log on disk is damaged: the
/// voter must not guess, so it stops with instructions.
fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, SE> {
    serde_json::from_slice(bytes).map_err(|e| {
        read_err(std::io::Error::other(format!(
            "raft log entry {index} in raft-log.redb is corrupt ({e}); this voter cannot start safely: \
             remove it from the group, wipe its data directory and add it again (weft cluster metad remove/add)"
        )))
    })
}

fn write_err(e: impl std::error::Error + 'static) -> SE {
    StorageIOError::write_logs(&e).into()
}

/// The log store; cheap to clone (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Opens or creates the log at `path`.
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(LOG)?;
            tx.open_table(META)?;
        }
        tx.commit()?;
        Ok(LogStore { db: Arc::new(db) })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SE> {
        let db = self.db.clone();
        let tx = db.begin_read().map_err(read_err)?;
        let t = tx.open_table(META).map_err(read_err)?;
        match t.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(read_err),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), SE> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        let tx = self.db.begin_write().map_err(write_err)?;
        {
            let mut t = tx.open_table(META).map_err(write_err)?;
            t.insert(key, bytes.as_slice()).map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }

    fn last_entry_id(&self) -> Result<Option<LogId<RaftNodeId>>, SE> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let t = tx.open_table(LOG).map_err(read_err)?;
        let last = t.last().map_err(read_err)?;
        match last {
            None => Ok(None),
            Some((k, v)) => {
                let e = decode_entry(k.value(), v.value())?;
                Ok(Some(e.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SE> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let t = tx.open_table(LOG).map_err(read_err)?;
        let start = match range.start_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in t.range::<u64>((start, end)).map_err(read_err)? {
            let (k, v) = item.map_err(read_err)?;
            out.push(decode_entry(k.value(), v.value())?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SE> {
        let last_purged_log_id: Option<LogId<RaftNodeId>> = self.get_meta(KEY_PURGED)?;
        let last = self.last_entry_id()?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> Result<(), SE> {
        self.put_meta(KEY_VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, SE> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> Result<(), SE> {
        self.put_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<RaftNodeId>>, SE> {
        Ok(self
            .get_meta::<Option<LogId<RaftNodeId>>>(KEY_COMMITTED)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SE>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| serde_json::to_vec(&e).map(|b| (e.log_id.index, b)))
            .collect::<Result<_, _>>()
            .map_err(write_err)?;
        let db = self.db.clone();
        // One transaction, one fsync, for the whole batch.
        let result = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    t.insert(*index, bytes.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(write_err)?;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), SE> {
        let tx = self.db.begin_write().map_err(write_err)?;
        {
            let mut t = tx.open_table(LOG).map_err(write_err)?;
            t.retain_in(log_id.index.., |_, _| false)
                .map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), SE> {
        let bytes = serde_json::to_vec(&log_id).map_err(write_err)?;
        let tx = self.db.begin_write().map_err(write_err)?;
        {
            let mut m = tx.open_table(META).map_err(write_err)?;
            m.insert(KEY_PURGED, bytes.as_slice()).map_err(write_err)?;
            let mut t = tx.open_table(LOG).map_err(write_err)?;
            t.retain_in(..=log_id.index, |_, _| false)
                .map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }
}
