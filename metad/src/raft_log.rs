//! The durable raft log, in its own redb database.
//!
//! Entries are keyed by index. Group commit: `append` only queues entries
//! (kept readable in memory meanwhile) for one log-writer thread, which
//! drains everything queued and writes it in one redb transaction and one
//! fsync, then reports each append flushed. openraft 0.9 appends one client
//! write at a time, so without this every write paid its own fsync. The vote
//! and the purge point live in a small meta table of the same database; a
//! vote is fsynced before it is answered.

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use crate::error::LogWriteError;
use crate::{RaftNodeId, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "last_purged";
const KEY_COMMITTED: &str = "committed";
const T_LOG: &str = "log";
const T_META: &str = "meta";

type SE = StorageError<RaftNodeId>;

fn read_err(e: impl std::error::Error + 'static) -> SE {
    StorageIOError::read_logs(&e).into()
}
/// Decodes a stored entry. A failure means the log on disk is damaged: the
/// voter must not guess, so it stops with instructions.
fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, SE> {
    crate::envelope::decode(T_LOG, &index.to_le_bytes(), bytes).map_err(|e| {
        read_err(std::io::Error::other(format!(
            "raft log entry {index} in raft-log.redb is corrupt ({}); this voter cannot start safely: \
             remove it from the group, wipe its data directory and add it again (weft cluster metad remove/add)",
            e.reason
        )))
    })
}

/// Seals, once, every entry and meta value written before the envelope.
fn seal_legacy(tx: &redb::WriteTransaction) -> Result<u64, redb::Error> {
    let corrupt = |e: crate::envelope::CorruptValue| redb::Error::Corrupted(e.to_string());
    let mut n = 0;
    {
        let mut t = tx.open_table(LOG)?;
        let mut redo = vec![];
        for it in t.iter()? {
            let (k, v) = it?;
            let sealed = crate::envelope::seal_legacy(T_LOG, &k.value().to_le_bytes(), v.value())
                .map_err(corrupt)?;
            if let Some(s) = sealed {
                redo.push((k.value(), s));
            }
        }
        for (k, v) in redo {
            t.insert(k, v.as_slice())?;
            n += 1;
        }
    }
    {
        let mut t = tx.open_table(META)?;
        let mut redo = vec![];
        for it in t.iter()? {
            let (k, v) = it?;
            let sealed = crate::envelope::seal_legacy(T_META, k.value().as_bytes(), v.value())
                .map_err(corrupt)?;
            if let Some(s) = sealed {
                redo.push((k.value().to_string(), s));
            }
        }
        for (k, v) in redo {
            t.insert(k.as_str(), v.as_slice())?;
            n += 1;
        }
        t.insert(
            crate::envelope::MIGRATED_KEY,
            crate::envelope::encode(crate::envelope::MIGRATED_KEY.as_bytes(), &1u32).as_slice(),
        )?;
    }
    Ok(n)
}

fn write_err(e: impl std::error::Error + 'static) -> SE {
    StorageIOError::write_logs(&e).into()
}

/// Work for the log-writer thread, in submission order.
enum Job {
    Append(Vec<Entry<TypeConfig>>, LogFlushed<TypeConfig>),
    Truncate(u64, Done),
    Purge(LogId<RaftNodeId>, Done),
}

/// Where the writer reports a truncate or purge done.
type Done = tokio::sync::oneshot::Sender<Result<(), LogWriteError>>;

/// Entries appended but not yet durable, readable meanwhile.
type Pending = Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>;

/// The writer thread's handle: dropping the last one stops the thread and
/// waits for it, so the database is closed when the store is gone.
struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The log store; cheap to clone (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    pending: Pending,
    writer: Arc<Writer>,
}

use crate::limits::GROUP_JOBS_MAX;

fn writer_loop(db: Arc<Database>, pending: Pending, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_JOBS_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        run_jobs(&db, &pending, jobs);
    }
}

/// Runs a group of jobs in order, merging consecutive appends into one
/// transaction.
fn run_jobs(db: &Database, pending: &Pending, jobs: Vec<Job>) {
    {
        let mut jobs = jobs.into_iter().peekable();
        while let Some(job) = jobs.next() {
            match job {
                Job::Append(entries, cb) => {
                    // Merge every consecutive append into one transaction.
                    let mut batch = vec![(entries, cb)];
                    while matches!(jobs.peek(), Some(Job::Append(..))) {
                        if let Some(Job::Append(e, c)) = jobs.next() {
                            batch.push((e, c));
                        }
                    }
                    let written: Result<Vec<LogId<RaftNodeId>>, LogWriteError> = (|| {
                        let tx = db.begin_write()?;
                        let mut ids = vec![];
                        {
                            let mut t = tx.open_table(LOG)?;
                            for (entries, _) in &batch {
                                for e in entries {
                                    let bytes =
                                        crate::envelope::encode(&e.log_id.index.to_le_bytes(), e);
                                    t.insert(e.log_id.index, bytes.as_slice())?;
                                    ids.push(e.log_id);
                                }
                            }
                        }
                        tx.commit()?;
                        Ok(ids)
                    })(
                    );
                    match written {
                        Ok(ids) => {
                            let mut p = pending.lock().expect("pending lock");
                            for id in ids {
                                if p.get(&id.index).map(|e| e.log_id) == Some(id) {
                                    p.remove(&id.index);
                                }
                            }
                            drop(p);
                            for (_, cb) in batch {
                                cb.log_io_completed(Ok(()));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "raft log write failed");
                            // Every append of the batch failed with it.
                            let e = Arc::new(e);
                            for (_, cb) in batch {
                                cb.log_io_completed(Err(std::io::Error::other(e.clone())));
                            }
                        }
                    }
                }
                Job::Truncate(from, done) => {
                    let r = (|| {
                        let tx = db.begin_write()?;
                        {
                            let mut t = tx.open_table(LOG)?;
                            t.retain_in(from.., |_, _| false)?;
                        }
                        Ok(tx.commit()?)
                    })();
                    let _ = done.send(r);
                }
                Job::Purge(upto, done) => {
                    let r = (|| {
                        let bytes = crate::envelope::encode(KEY_PURGED.as_bytes(), &upto);
                        let tx = db.begin_write()?;
                        {
                            let mut m = tx.open_table(META)?;
                            m.insert(KEY_PURGED, bytes.as_slice())?;
                            let mut t = tx.open_table(LOG)?;
                            t.retain_in(..=upto.index, |_, _| false)?;
                        }
                        Ok(tx.commit()?)
                    })();
                    let _ = done.send(r);
                }
            }
        }
    }
}

impl LogStore {
    /// Opens or creates the log at `path` and starts its writer thread (which
    /// ends when the last clone of the store is dropped).
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        Self::open_with_cache(path, crate::limits::DEFAULT_TOOL_CACHE_BYTES)
    }

    /// As [`open`](Self::open), its page cache at most `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, redb::Error> {
        let mut builder = Database::builder();
        builder.set_cache_size(cache_bytes);
        let db = crate::disk_backend::create(&builder, path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(LOG)?;
            let sealed = tx
                .open_table(META)?
                .get(crate::envelope::MIGRATED_KEY)?
                .is_some();
            if !sealed {
                let n = seal_legacy(&tx)?;
                if n > 0 {
                    tracing::info!(
                        values = n,
                        "sealed raft log entries written before the checksum envelope"
                    );
                }
            }
        }
        tx.commit()?;
        let db = Arc::new(db);
        let pending: Pending = Arc::default();
        // Under simulation the log is written inline, in the caller's
        // task: a writer thread's completion would arrive at a moment no
        // seed decides, and the paused clock would run on while it worked.
        let writer = if weft_common::effects::simulated() {
            Writer {
                jobs: None,
                thread: None,
            }
        } else {
            let (jobs, rx) = mpsc::channel();
            let (wdb, wpending) = (db.clone(), pending.clone());
            let thread = std::thread::Builder::new()
                .name("raft-log-writer".into())
                .spawn(move || writer_loop(wdb, wpending, rx))
                .map_err(redb::Error::Io)?;
            Writer {
                jobs: Some(jobs),
                thread: Some(thread),
            }
        };
        Ok(LogStore {
            db,
            pending,
            writer: Arc::new(writer),
        })
    }

    fn send(&self, job: Job) -> Result<(), SE> {
        match self.writer.jobs.as_ref() {
            Some(jobs) => jobs
                .send(job)
                .map_err(|_| write_err(std::io::Error::other("raft log writer stopped"))),
            None => {
                run_jobs(&self.db, &self.pending, vec![job]);
                Ok(())
            }
        }
    }

    async fn submit(&self, make: impl FnOnce(Done) -> Job) -> Result<(), SE> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(make(tx))?;
        rx.await
            .map_err(|_| write_err(std::io::Error::other("raft log writer stopped")))?
            .map_err(|e| write_err(std::io::Error::other(e)))
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SE> {
        let db = self.db.clone();
        let tx = db.begin_read().map_err(read_err)?;
        let t = tx.open_table(META).map_err(read_err)?;
        match t.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(v) => crate::envelope::decode(T_META, key.as_bytes(), v.value())
                .map(Some)
                .map_err(read_err),
        }
    }

    /// Writes one meta value off the async runtime. `durable` fsyncs before
    /// returning (votes); otherwise the write rides on the next fsynced
    /// commit (hints such as the committed index, which raft can rebuild).
    async fn put_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durable: bool,
    ) -> Result<(), SE> {
        let bytes = crate::envelope::encode(key.as_bytes(), value);
        let db = self.db.clone();
        weft_common::effects::spawn_blocking(move || -> Result<(), SE> {
            let mut tx = db.begin_write().map_err(write_err)?;
            if !durable {
                tx.set_durability(Durability::None).map_err(write_err)?;
            }
            {
                let mut t = tx.open_table(META).map_err(write_err)?;
                t.insert(key, bytes.as_slice()).map_err(write_err)?;
            }
            tx.commit().map_err(write_err)
        })
        .await
        .map_err(write_err)?
    }

    fn last_entry_id(&self) -> Result<Option<LogId<RaftNodeId>>, SE> {
        if let Some((_, e)) = self.pending.lock().expect("pending lock").last_key_value() {
            return Ok(Some(e.log_id));
        }
        let tx = self.db.begin_read().map_err(read_err)?;
        let t = tx.open_table(LOG).map_err(read_err)?;
        let last = t.last().map_err(read_err)?;
        match last {
            None => Ok(None),
            Some((k, v)) => Ok(Some(decode_entry(k.value(), v.value())?.log_id)),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SE> {
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
        // Snapshot the queued entries first: an entry leaves `pending` only
        // after it is in the database, so nothing falls between the two reads.
        let queued: Vec<Entry<TypeConfig>> = self
            .pending
            .lock()
            .expect("pending lock")
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect();
        let mut out: BTreeMap<u64, Entry<TypeConfig>> = BTreeMap::new();
        {
            let tx = self.db.begin_read().map_err(read_err)?;
            let t = tx.open_table(LOG).map_err(read_err)?;
            for item in t.range::<u64>((start, end)).map_err(read_err)? {
                let (k, v) = item.map_err(read_err)?;
                out.insert(k.value(), decode_entry(k.value(), v.value())?);
            }
        }
        for e in queued {
            out.insert(e.log_id.index, e);
        }
        Ok(out.into_values().collect())
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
        self.put_meta(KEY_VOTE, vote, true).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, SE> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> Result<(), SE> {
        self.put_meta(KEY_COMMITTED, &committed, false).await
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
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        {
            let mut p = self.pending.lock().expect("pending lock");
            for e in &entries {
                p.insert(e.log_id.index, e.clone());
            }
        }
        self.send(Job::Append(entries, callback))
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), SE> {
        self.pending
            .lock()
            .expect("pending lock")
            .retain(|i, _| *i < log_id.index);
        self.submit(|done| Job::Truncate(log_id.index, done)).await
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), SE> {
        self.submit(|done| Job::Purge(log_id, done)).await
    }
}
