//! The on-disk shard store.
//!
//! Layout under the data directory:
//!
//! ```text
//! <data>/shards/<first 2 hex chars of segment>/<segment hex, 32 chars>.<index>
//! <data>/tmp/        files being written; emptied by `open`
//! ```
//!
//! `open` creates all 256 fan-out directories (`shards/00` … `shards/ff`) and
//! makes them durable, so a shard write only ever renames into a directory
//! that survives a crash: were the directory created by the write, a shard
//! could be acknowledged before its directory's entry was on disk.
//!
//! Writes stream through a bounded channel into a blocking writer thread, so
//! memory per PUT is bounded by [`PUT_QUEUE_CHUNKS`] chunks plus one block, and
//! become visible only once durable (see [`weft_common::durable_file`]). A PUT of an
//! existing shard replaces it atomically: PUTs are idempotent retries. Reads
//! verify every block they touch and stream block by block; a block that fails
//! its crc32c ends the stream with [`ShardError::Corrupt`], never with bad data.
//! [`ShardStore::get_verified`] reads a small range whole and names every bad
//! block in it; [`ShardStore::check_blocks`] verifies blocks without returning
//! them (scrub, repair); [`ShardStore::rewrite_blocks`] repairs bad blocks in
//! place, the only write that is not a whole-file replace.
//!
//! All file work runs in `spawn_blocking`; the async runtime never blocks.

use crate::error::{BoxError, ShardError};
use crate::shard_file::{self, ShardHeader, ShardReader, ShardWriter, DATA_LEN_MAX};
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use weft_common::damage::BlockDamage;
use weft_common::durable_file::{self as durable, Access, DurableFile, FsError};
use weft_common::rpc::ShardPutReply;
use weft_common::{SegmentId, ShardIndex};

pub use crate::limits::GET_BYTES_MAX;
pub use crate::limits::GET_QUEUE_BLOCKS;
pub use crate::limits::GET_VERIFIED_MAX;
use crate::limits::NAME_LOCKS;
pub use crate::limits::PUT_QUEUE_CHUNKS;

/// Shard files on one data directory. Cheap to clone.
#[derive(Clone)]
pub struct ShardStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards_dir: PathBuf,
    tmp_dir: PathBuf,
    used_bytes: AtomicU64,
    /// Held across stat + rename (or remove) of a name, so concurrent PUTs and
    /// DELETEs of the same shard keep `used_bytes` exact.
    name_locks: Vec<Mutex<()>>,
}

/// What [`ShardStore::check_blocks`] found.
#[derive(Clone, Debug)]
pub struct BlockCheck {
    /// The file's (verified) header.
    pub header: ShardHeader,
    /// Blocks asked about that failed their crc32c (or lie past the end of a
    /// truncated file), in order.
    pub bad: Vec<u32>,
    /// Whether the file has exactly the length its header implies.
    pub whole: bool,
}

/// A verified byte range of a shard, streamed block by block.
pub struct ShardRange {
    /// Bytes the stream yields in total (if no error occurs).
    pub len: u64,
    /// The data; an error item ends it.
    pub body: BoxStream<'static, Result<Bytes, ShardError>>,
}

enum PutMsg {
    Chunk(Bytes),
    /// All declared bytes were sent; without it the writer aborts.
    End,
}

impl ShardStore {
    /// Opens (creating if needed) the store in `data_dir`: empties `tmp/` and
    /// sums the sizes of existing shard files.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<ShardStore, ShardError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        blocking(move || Inner::open(&data_dir))
            .await
            .map(|inner| ShardStore {
                inner: Arc::new(inner),
            })
    }

    /// Where the file of `segment`/`index` lives (present or not).
    pub fn path_of(&self, segment: SegmentId, index: ShardIndex) -> PathBuf {
        self.inner.path_of(segment, index)
    }

    /// Bytes of all shard files (headers and crcs included).
    pub fn used_bytes(&self) -> u64 {
        self.inner.used_bytes.load(Ordering::Relaxed)
    }

    /// Stores a shard of `len` data bytes from `body`, replacing any previous
    /// file of the same shard once the new one is durable. Fails with
    /// [`ShardError::LengthMismatch`] if the body has more or fewer bytes; then
    /// nothing is stored and a previous file is untouched.
    pub async fn put<S, E>(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        len: u64,
        body: S,
    ) -> Result<ShardPutReply, ShardError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<BoxError>,
    {
        if len > DATA_LEN_MAX {
            return Err(ShardError::TooLarge {
                len,
                max: DATA_LEN_MAX,
            });
        }
        let (tx, rx) = mpsc::channel(PUT_QUEUE_CHUNKS);
        let inner = self.inner.clone();
        let span = tracing::Span::current();
        let writer = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            inner.write_shard(segment, index, len, rx)
        });
        let fed = feed(body, len, &tx).await;
        match fed {
            Ok(()) => {
                // The writer may have stopped already (its error wins below).
                let _ = tx.send(PutMsg::End).await;
                drop(tx);
                join(writer).await?
            }
            Err(e) => {
                // Closing the channel without `End` makes the writer abort.
                drop(tx);
                match join(writer).await? {
                    // The writer failed first; that is the cause.
                    Err(writer_error) if !matches!(writer_error, ShardError::Body(_)) => {
                        Err(writer_error)
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Streams the verified range `[offset, offset + len)` of a shard (`len`
    /// absent: to the end). Checks the header and the first block touched
    /// before returning, so those failures are errors of this call; a later
    /// corrupt block is an error item in the stream.
    pub async fn get(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ShardRange, ShardError> {
        let (opened_tx, opened_rx) = oneshot::channel();
        let (tx, mut rx) = mpsc::channel(GET_QUEUE_BLOCKS);
        let inner = self.inner.clone();
        let span = tracing::Span::current();
        let reader = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            inner.read_shard(segment, index, offset, len, opened_tx, tx)
        });
        let len = match opened_rx.await {
            Ok(opened) => opened?,
            // The task ended without answering: it panicked.
            Err(_) => return Err(join(reader).await.err().unwrap_or(task_gone())),
        };
        let first = if len == 0 {
            None
        } else {
            match rx.recv().await {
                Some(Ok(first)) => Some(first),
                Some(Err(e)) => return Err(e),
                None => return Err(task_gone()),
            }
        };
        let remaining = len - first.as_ref().map_or(0, |b| b.len() as u64);
        let rest = futures::stream::unfold((rx, remaining), |(mut rx, remaining)| async move {
            if remaining == 0 {
                return None;
            }
            match rx.recv().await {
                Some(Ok(chunk)) => {
                    let remaining = remaining - chunk.len() as u64;
                    Some((Ok(chunk), (rx, remaining)))
                }
                // An error ends the stream: zero remaining stops the unfold.
                Some(Err(e)) => Some((Err(e), (rx, 0))),
                None => Some((Err(task_gone()), (rx, 0))),
            }
        });
        let body = futures::stream::iter(first.map(Ok)).chain(rest).boxed();
        Ok(ShardRange { len, body })
    }

    /// Reads a range into one buffer (ranges up to [`GET_BYTES_MAX`]).
    pub async fn get_bytes(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Bytes, ShardError> {
        let mut range = self.get(segment, index, offset, len).await?;
        if range.len > GET_BYTES_MAX {
            return Err(ShardError::OutOfRange {
                offset,
                len: range.len,
                data_len: GET_BYTES_MAX,
            });
        }
        let mut out = Vec::with_capacity(range.len as usize);
        while let Some(chunk) = range.body.next().await {
            out.extend_from_slice(&chunk?);
        }
        assert_eq!(out.len() as u64, range.len);
        Ok(out.into())
    }

    /// Reads `[offset, offset + len)` whole (at most [`GET_VERIFIED_MAX`]
    /// bytes), verifying every block; if any fail, returns
    /// [`ShardError::Damaged`] naming all of them and no data.
    pub async fn get_verified(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, ShardError> {
        if len > GET_VERIFIED_MAX {
            return Err(ShardError::OutOfRange {
                offset,
                len,
                data_len: GET_VERIFIED_MAX,
            });
        }
        let inner = self.inner.clone();
        blocking(move || inner.read_verified(segment, index, offset, len)).await
    }

    /// Verifies the listed blocks of a shard file (those past its end are
    /// skipped) and returns which failed. A bad header is
    /// [`ShardError::CorruptHeader`]; a missing file [`ShardError::NotFound`].
    pub async fn check_blocks(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        blocks: impl IntoIterator<Item = u32> + Send + 'static,
    ) -> Result<BlockCheck, ShardError> {
        let inner = self.inner.clone();
        blocking(move || inner.check_blocks(segment, index, blocks)).await
    }

    /// Rewrites blocks of an existing shard file in place, each with its
    /// crc32c, then fsyncs the file. The file must be intact apart from bad
    /// blocks: a valid header naming this shard with `data_len` bytes and
    /// the length that implies (otherwise [`ShardError::CorruptHeader`], and
    /// the caller rewrites the whole file instead). Each block's data must
    /// be the block's full length.
    pub async fn rewrite_blocks(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        data_len: u64,
        blocks: Vec<(u32, Bytes)>,
    ) -> Result<(), ShardError> {
        let inner = self.inner.clone();
        blocking(move || inner.rewrite_blocks(segment, index, data_len, blocks)).await
    }

    /// Removes a shard durably unless its file was written at or after
    /// `since`: for the garbage collector and the scrubber, which decide on
    /// a file they looked at earlier and must not remove a newer one that a
    /// repair put in its place.
    pub async fn delete_unless_newer(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        since: std::time::SystemTime,
    ) -> Result<bool, ShardError> {
        let inner = self.inner.clone();
        blocking(move || inner.delete_unless_newer(segment, index, Some(since))).await
    }

    /// Every shard file whose last write is older than `min_age`, by name.
    /// Files are named for their segment and index, so no file is opened.
    pub async fn inventory(
        &self,
        min_age: std::time::Duration,
    ) -> Result<Vec<(SegmentId, ShardIndex)>, ShardError> {
        let inner = self.inner.clone();
        blocking(move || inner.inventory(min_age)).await
    }

    /// Removes a shard durably. Returns whether it existed.
    pub async fn delete(&self, segment: SegmentId, index: ShardIndex) -> Result<bool, ShardError> {
        let inner = self.inner.clone();
        blocking(move || inner.delete(segment, index)).await
    }
}

/// Sends the body's chunks to the writer, checking the declared length.
async fn feed<S, E>(body: S, len: u64, tx: &mpsc::Sender<PutMsg>) -> Result<(), ShardError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ShardError::Body(e.into()))?;
        received += chunk.len() as u64;
        if received > len {
            return Err(ShardError::LengthMismatch {
                declared: len,
                received,
            });
        }
        if chunk.is_empty() {
            continue;
        }
        if tx.send(PutMsg::Chunk(chunk)).await.is_err() {
            // The writer stopped; the caller reports its error.
            return Err(ShardError::Body("shard writer stopped".into()));
        }
    }
    if received != len {
        return Err(ShardError::LengthMismatch {
            declared: len,
            received,
        });
    }
    Ok(())
}

fn task_gone() -> ShardError {
    ShardError::Task("shard read task ended early".into())
}

async fn join<T>(handle: tokio::task::JoinHandle<T>) -> Result<T, ShardError> {
    handle.await.map_err(|e| ShardError::Task(e.to_string()))
}

/// Runs blocking file work off the runtime, inside the caller's span.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ShardError> + Send + 'static,
) -> Result<T, ShardError> {
    let span = tracing::Span::current();
    join(tokio::task::spawn_blocking(move || span.in_scope(f))).await?
}

fn file_len(path: &Path) -> Result<u64, FsError> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(FsError::new("stat shard file", path, e)),
    }
}

impl Inner {
    fn open(data_dir: &Path) -> Result<Inner, ShardError> {
        let shards_dir = data_dir.join("shards");
        let tmp_dir = data_dir.join("tmp");
        durable::create_dir_all(&shards_dir).map_err(ShardError::from_fs)?;
        durable::create_dir_all(&tmp_dir).map_err(ShardError::from_fs)?;
        let fan_out_created = durable::create_subdirs(&shards_dir, (0..=u8::MAX).map(fan_out_name))
            .map_err(ShardError::from_fs)?;
        let mut removed = 0usize;
        for entry in read_dir(&tmp_dir)? {
            durable::remove_file(&entry).map_err(ShardError::from_fs)?;
            removed += 1;
        }
        let mut used_bytes = 0u64;
        let mut files = 0u64;
        for sub in read_dir(&shards_dir)? {
            if !sub.is_dir() {
                continue;
            }
            for file in read_dir(&sub)? {
                used_bytes += file_len(&file).map_err(ShardError::from_fs)?;
                files += 1;
            }
        }
        tracing::info!(
            dir = %data_dir.display(),
            shard_files = files,
            used_bytes,
            temp_files_removed = removed,
            fan_out_created,
            "opened shard store"
        );
        Ok(Inner {
            shards_dir,
            tmp_dir,
            used_bytes: AtomicU64::new(used_bytes),
            name_locks: (0..NAME_LOCKS).map(|_| Mutex::new(())).collect(),
        })
    }

    fn inventory(
        &self,
        min_age: std::time::Duration,
    ) -> Result<Vec<(SegmentId, ShardIndex)>, ShardError> {
        let now = std::time::SystemTime::now();
        let mut out = vec![];
        for sub in read_dir(&self.shards_dir)? {
            if !sub.is_dir() {
                continue;
            }
            for file in read_dir(&sub)? {
                let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some((hex, idx)) = name.split_once('.') else {
                    continue;
                };
                let (Ok(segment), Ok(index)) = (hex.parse::<SegmentId>(), idx.parse::<u8>()) else {
                    continue;
                };
                let old_enough = fs::metadata(&file)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= min_age);
                if old_enough {
                    out.push((segment, ShardIndex(index)));
                }
            }
        }
        Ok(out)
    }

    fn path_of(&self, segment: SegmentId, index: ShardIndex) -> PathBuf {
        let hex = segment.to_string();
        self.shards_dir
            .join(fan_out_name((segment.0 >> 120) as u8))
            .join(format!("{hex}.{}", index.0))
    }

    fn name_lock(&self, segment: SegmentId, index: ShardIndex) -> std::sync::MutexGuard<'_, ()> {
        let slot = (segment.0 as usize ^ usize::from(index.0)) % NAME_LOCKS;
        // A poisoned lock guards no data (it is `()`), so carry on.
        self.name_locks[slot]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_shard(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        len: u64,
        mut rx: mpsc::Receiver<PutMsg>,
    ) -> Result<ShardPutReply, ShardError> {
        let header = ShardHeader::new(segment, index, len);
        let mut file =
            DurableFile::create(&self.tmp_dir, Access::Default).map_err(ShardError::from_fs)?;
        let temp_path = file.temp_path().to_path_buf();
        let mut writer = ShardWriter::new(file.file_mut(), &temp_path, header)?;
        loop {
            match rx.blocking_recv() {
                Some(PutMsg::Chunk(chunk)) => writer.write(&chunk)?,
                Some(PutMsg::End) => break,
                None => return Err(ShardError::Body("shard body ended early".into())),
            }
        }
        let (_, summary) = writer.finish()?;
        file.sync().map_err(ShardError::from_fs)?;
        // Its fan-out directory exists and is durable since `open`.
        let target = self.path_of(segment, index);
        let new_len = header.file_len();
        {
            let _name = self.name_lock(segment, index);
            let old_len = file_len(&target).map_err(ShardError::from_fs)?;
            file.commit(&target).map_err(ShardError::from_fs)?;
            self.used_bytes.fetch_add(new_len, Ordering::Relaxed);
            self.used_bytes.fetch_sub(old_len, Ordering::Relaxed);
        }
        tracing::debug!(bytes = summary.bytes, path = %target.display(), "stored shard");
        Ok(ShardPutReply {
            bytes: summary.bytes,
            crc32c: summary.crc32c,
        })
    }

    /// Blocking half of `get`: answers `opened` with the range length (or the
    /// error opening), then sends verified chunks until done, an error, or the
    /// receiver goes away.
    fn read_shard(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        offset: u64,
        len: Option<u64>,
        opened: oneshot::Sender<Result<u64, ShardError>>,
        tx: mpsc::Sender<Result<Bytes, ShardError>>,
    ) {
        let open = || -> Result<_, ShardError> {
            let (reader, path) = self.open_reader(segment, index)?;
            let range = reader.header().resolve_range(offset, len)?;
            Ok((reader, range, path))
        };
        let (mut reader, range, path) = match open() {
            Ok(opened_ok) => opened_ok,
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        };
        if opened.send(Ok(range.end - range.start)).is_err() {
            return;
        }
        for (block, part) in reader.header().blocks_touching(range) {
            let item = match reader.read_block(block) {
                Ok(data) => Ok(Bytes::copy_from_slice(&data[part])),
                Err(e) => {
                    self.log_corrupt(&e, &path);
                    Err(e)
                }
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    }

    fn open_reader(
        &self,
        segment: SegmentId,
        index: ShardIndex,
    ) -> Result<(ShardReader<File>, PathBuf), ShardError> {
        let path = self.path_of(segment, index);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ShardError::NotFound { segment, index })
            }
            Err(e) => {
                return Err(ShardError::from_fs(FsError::new(
                    "open shard file",
                    &path,
                    e,
                )))
            }
        };
        let reader = ShardReader::open(file, &path, segment, index)
            .inspect_err(|e| self.log_corrupt(e, &path))?;
        Ok((reader, path))
    }

    fn read_verified(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, ShardError> {
        let (mut reader, path) = self.open_reader(segment, index)?;
        let header = *reader.header();
        let range = header.resolve_range(offset, Some(len))?;
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut bad = vec![];
        for (block, part) in header.blocks_touching(range) {
            match reader.read_block(block) {
                Ok(data) if bad.is_empty() => out.extend_from_slice(&data[part]),
                Ok(_) => {}
                Err(ShardError::Corrupt { .. }) => bad.push(block),
                Err(e) => return Err(e),
            }
        }
        if bad.is_empty() {
            return Ok(out.into());
        }
        let error = ShardError::Damaged {
            segment,
            index,
            damage: BlockDamage::from_blocks(header.block_bytes, bad),
        };
        self.log_corrupt(&error, &path);
        Err(error)
    }

    fn check_blocks(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        blocks: impl IntoIterator<Item = u32>,
    ) -> Result<BlockCheck, ShardError> {
        let (mut reader, path) = self.open_reader(segment, index)?;
        let header = *reader.header();
        let count = header.block_count();
        let mut bad = vec![];
        for block in blocks {
            if u64::from(block) >= count {
                continue;
            }
            match reader.read_block(block) {
                Ok(_) => {}
                Err(ShardError::Corrupt { .. }) => bad.push(block),
                Err(e) => return Err(e),
            }
        }
        let whole = file_len(&path).map_err(ShardError::from_fs)? == header.file_len();
        Ok(BlockCheck { header, bad, whole })
    }

    fn rewrite_blocks(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        data_len: u64,
        blocks: Vec<(u32, Bytes)>,
    ) -> Result<(), ShardError> {
        use std::os::unix::fs::FileExt;
        let path = self.path_of(segment, index);
        // Held so a concurrent replace or delete of the name cannot slip in
        // between the checks below and the writes.
        let _name = self.name_lock(segment, index);
        let file = match fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ShardError::NotFound { segment, index })
            }
            Err(e) => {
                return Err(ShardError::from_fs(FsError::new(
                    "open shard file for repair",
                    &path,
                    e,
                )))
            }
        };
        let header = *ShardReader::open(&file, &path, segment, index)?.header();
        let len = file
            .metadata()
            .map_err(|e| ShardError::from_fs(FsError::new("stat shard file", &path, e)))?
            .len();
        if header.data_len != data_len || len != header.file_len() {
            return Err(ShardError::CorruptHeader {
                segment,
                index,
                reason: format!(
                    "{len} bytes holding {} data bytes; expected {} data bytes in {} bytes",
                    header.data_len,
                    data_len,
                    header.file_len()
                ),
            });
        }
        for (block, data) in &blocks {
            if u64::from(*block) >= header.block_count() {
                return Err(ShardError::OutOfRange {
                    offset: u64::from(*block) * u64::from(header.block_bytes),
                    len: data.len() as u64,
                    data_len,
                });
            }
            let want = header.block_data(*block);
            if data.len() as u64 != want.end - want.start {
                return Err(ShardError::LengthMismatch {
                    declared: want.end - want.start,
                    received: data.len() as u64,
                });
            }
            file.write_all_at(
                &shard_file::encode_block(data),
                header.block_file_offset(*block),
            )
            .map_err(|e| ShardError::from_fs(FsError::new("rewrite shard block", &path, e)))?;
        }
        file.sync_data()
            .map_err(|e| ShardError::from_fs(FsError::new("fsync shard file", &path, e)))?;
        tracing::info!(
            %segment, %index, blocks = blocks.len(), path = %path.display(),
            "rewrote bad shard blocks in place"
        );
        Ok(())
    }

    fn log_corrupt(&self, error: &ShardError, path: &Path) {
        match error {
            ShardError::Damaged {
                segment,
                index,
                damage,
            } => tracing::warn!(
                %segment, %index, %damage, path = %path.display(),
                "shard blocks failed crc32c"
            ),
            ShardError::Corrupt {
                segment,
                index,
                block,
                ..
            } => tracing::warn!(
                %segment, %index, block, path = %path.display(),
                "shard block failed crc32c"
            ),
            ShardError::CorruptHeader {
                segment,
                index,
                reason,
            } => tracing::warn!(
                %segment, %index, path = %path.display(), reason,
                "shard file header is bad"
            ),
            _ => {}
        }
    }

    fn delete(&self, segment: SegmentId, index: ShardIndex) -> Result<bool, ShardError> {
        self.delete_unless_newer(segment, index, None)
    }

    fn delete_unless_newer(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        since: Option<std::time::SystemTime>,
    ) -> Result<bool, ShardError> {
        let path = self.path_of(segment, index);
        let _name = self.name_lock(segment, index);
        if let Some(since) = since {
            // Checked under the name lock, which a writer holds across its
            // rename: a shard rewritten meanwhile is never removed.
            let modified = fs::metadata(&path).and_then(|m| m.modified());
            match modified {
                Ok(t) if t >= since => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => {
                    return Err(ShardError::from_fs(FsError::new(
                        "stat shard file",
                        &path,
                        e,
                    )))
                }
            }
        }
        let len = file_len(&path).map_err(ShardError::from_fs)?;
        let existed = durable::remove_file(&path).map_err(ShardError::from_fs)?;
        if existed {
            self.used_bytes.fetch_sub(len, Ordering::Relaxed);
        }
        Ok(existed)
    }
}

/// The fan-out directory of segments whose id starts with byte `first`: its
/// two hex digits, as the segment's own name spells them.
fn fan_out_name(first: u8) -> String {
    format!("{first:02x}")
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, ShardError> {
    let entries = fs::read_dir(dir)
        .map_err(|e| ShardError::from_fs(FsError::new("list directory", dir, e)))?;
    entries
        .map(|entry| {
            entry
                .map(|e| e.path())
                .map_err(|e| ShardError::from_fs(FsError::new("list directory", dir, e)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard_file::SHARD_BLOCK_BYTES;
    use std::convert::Infallible;

    const B: u64 = SHARD_BLOCK_BYTES as u64;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 977) as u8).collect()
    }

    fn chunks(d: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
        let parts: Vec<_> = d
            .chunks(size.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(parts)
    }

    #[tokio::test]
    async fn put_get_delete_and_accounting() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShardStore::open(dir.path()).await.unwrap();
        let (seg, idx) = (SegmentId(0xabcdef), ShardIndex(2));
        let d = data(3 * B as usize + 5);
        let reply = store
            .put(seg, idx, d.len() as u64, chunks(&d, 10_001))
            .await
            .unwrap();
        assert_eq!(reply.bytes, d.len() as u64);
        assert_eq!(reply.crc32c, crc32c::crc32c(&d));
        let path = store.path_of(seg, idx);
        assert!(path.ends_with("shards/00/00000000000000000000000000abcdef.2"));
        let file_len = fs::metadata(&path).unwrap().len();
        assert_eq!(store.used_bytes(), file_len);

        let got = store.get_bytes(seg, idx, 5, Some(B + 3)).await.unwrap();
        assert_eq!(&got[..], &d[5..5 + B as usize + 3]);
        let all = store.get_bytes(seg, idx, 0, None).await.unwrap();
        assert_eq!(&all[..], &d[..]);
        assert!(store
            .get_bytes(seg, idx, d.len() as u64, None)
            .await
            .unwrap()
            .is_empty());

        // Idempotent retry replaces, accounting stays exact.
        store
            .put(seg, idx, d.len() as u64, chunks(&d, 4096))
            .await
            .unwrap();
        assert_eq!(store.used_bytes(), file_len);

        // Reopen scans the same total.
        let reopened = ShardStore::open(dir.path()).await.unwrap();
        assert_eq!(reopened.used_bytes(), file_len);

        assert!(store.delete(seg, idx).await.unwrap());
        assert!(!store.delete(seg, idx).await.unwrap());
        assert_eq!(store.used_bytes(), 0);
        assert!(matches!(
            store.get(seg, idx, 0, None).await,
            Err(ShardError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn bad_lengths_store_nothing_and_keep_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShardStore::open(dir.path()).await.unwrap();
        let (seg, idx) = (SegmentId(7), ShardIndex(0));
        let d = data(1000);
        for declared in [999u64, 1001, 5000] {
            let err = store
                .put(seg, idx, declared, chunks(&d, 300))
                .await
                .unwrap_err();
            assert!(
                matches!(err, ShardError::LengthMismatch { .. }),
                "{declared}: {err:?}"
            );
            assert!(!store.path_of(seg, idx).exists());
        }
        store.put(seg, idx, 1000, chunks(&d, 300)).await.unwrap();
        let before = fs::read(store.path_of(seg, idx)).unwrap();
        assert!(store.put(seg, idx, 1001, chunks(&d, 300)).await.is_err());
        assert_eq!(fs::read(store.path_of(seg, idx)).unwrap(), before);
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::other("client went away")),
        ]);
        assert!(matches!(
            store.put(seg, idx, 1000, failing).await,
            Err(ShardError::Body(_))
        ));
        assert_eq!(fs::read(store.path_of(seg, idx)).unwrap(), before);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.used_bytes(), before.len() as u64);
    }

    #[tokio::test]
    async fn corruption_mid_stream_is_an_error_item() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShardStore::open(dir.path()).await.unwrap();
        let (seg, idx) = (SegmentId(9), ShardIndex(1));
        let d = data(4 * B as usize);
        store
            .put(seg, idx, d.len() as u64, chunks(&d, 65_537))
            .await
            .unwrap();
        let path = store.path_of(seg, idx);
        let mut file = fs::read(&path).unwrap();
        let header = ShardHeader::new(seg, idx, d.len() as u64);
        file[header.block_file_offset(2) as usize + 10] ^= 0x40;
        fs::write(&path, file).unwrap();

        // The first block touched is bad: the call itself fails.
        assert!(matches!(
            store.get(seg, idx, 2 * B, Some(10)).await,
            Err(ShardError::Corrupt { block: 2, .. })
        ));
        // A later block is bad: good blocks, then the error, then the end.
        let mut range = store.get(seg, idx, 0, None).await.unwrap();
        let mut good = Vec::new();
        let mut error = None;
        while let Some(item) = range.body.next().await {
            match item {
                Ok(chunk) => good.extend_from_slice(&chunk),
                Err(e) => error = Some(e),
            }
        }
        assert_eq!(&good[..], &d[..2 * B as usize]);
        assert!(matches!(error, Some(ShardError::Corrupt { block: 2, .. })));
        // Ranges avoiding the block still work.
        let tail = store.get_bytes(seg, idx, 3 * B, None).await.unwrap();
        assert_eq!(&tail[..], &d[3 * B as usize..]);
    }

    #[tokio::test]
    async fn bad_blocks_are_named_checked_and_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShardStore::open(dir.path()).await.unwrap();
        let (seg, idx) = (SegmentId(11), ShardIndex(3));
        let d = data(5 * B as usize + 7);
        let len = d.len() as u64;
        store.put(seg, idx, len, chunks(&d, 70_001)).await.unwrap();
        let path = store.path_of(seg, idx);
        let header = ShardHeader::new(seg, idx, len);
        let mut file = fs::read(&path).unwrap();
        file[header.block_file_offset(1) as usize + 3] ^= 1;
        // The crc of the short last block.
        file[header.block_file_offset(5) as usize + 7] ^= 1;
        file[header.block_file_offset(3) as usize] ^= 1;
        fs::write(&path, &file).unwrap();
        let used = store.used_bytes();

        // A verified read names every bad block in its range, returns nothing.
        let err = store.get_verified(seg, idx, 0, len).await.unwrap_err();
        let want = BlockDamage::from_blocks(SHARD_BLOCK_BYTES, [1, 3, 5]);
        assert!(
            matches!(&err, ShardError::Damaged { damage, .. } if *damage == want),
            "{err:?}"
        );
        assert_eq!(err.damage(), Some(want));
        let err = store
            .get_verified(seg, idx, B + 1, 2 * B)
            .await
            .unwrap_err();
        assert_eq!(
            err.damage(),
            Some(BlockDamage::from_blocks(SHARD_BLOCK_BYTES, [1, 3]))
        );
        assert_eq!(
            &store.get_verified(seg, idx, 2 * B, B).await.unwrap()[..],
            &d[2 * B as usize..3 * B as usize]
        );

        // Checking lists the bad ones among those asked (past the end: none).
        let check = store.check_blocks(seg, idx, 0..100).await.unwrap();
        assert_eq!(check.bad, vec![1, 3, 5]);
        assert!(check.whole);
        assert_eq!(check.header, header);
        assert!(store
            .check_blocks(seg, idx, [0, 2, 4])
            .await
            .unwrap()
            .bad
            .is_empty());

        // Rewriting in place repairs them; the file is otherwise the same.
        let block =
            |b: u64| Bytes::copy_from_slice(&d[(b * B) as usize..((b + 1) * B).min(len) as usize]);
        assert!(matches!(
            store
                .rewrite_blocks(seg, idx, len, vec![(1, block(2))])
                .await,
            Ok(())
        ));
        assert_eq!(
            store.check_blocks(seg, idx, [1]).await.unwrap().bad,
            Vec::<u32>::new()
        );
        assert!(matches!(
            store
                .rewrite_blocks(seg, idx, len, vec![(5, block(4))])
                .await,
            Err(ShardError::LengthMismatch { .. })
        ));
        store
            .rewrite_blocks(
                seg,
                idx,
                len,
                vec![(1, block(1)), (3, block(3)), (5, block(5))],
            )
            .await
            .unwrap();
        assert_eq!(
            &store.get_bytes(seg, idx, 0, None).await.unwrap()[..],
            &d[..]
        );
        assert_eq!(store.used_bytes(), used);
        assert_eq!(fs::metadata(&path).unwrap().len(), header.file_len());

        // A file of the wrong length is not patched; a missing one is absent.
        assert!(matches!(
            store.rewrite_blocks(seg, idx, len + 1, vec![]).await,
            Err(ShardError::CorruptHeader { .. })
        ));
        let mut file = fs::read(&path).unwrap();
        file.truncate(file.len() - 10);
        fs::write(&path, &file).unwrap();
        let check = store.check_blocks(seg, idx, 0..10).await.unwrap();
        assert_eq!(check.bad, vec![5], "the cut block is bad");
        assert!(!check.whole);
        assert!(matches!(
            store
                .rewrite_blocks(seg, idx, len, vec![(5, block(5))])
                .await,
            Err(ShardError::CorruptHeader { .. })
        ));
        store.delete(seg, idx).await.unwrap();
        assert!(matches!(
            store.check_blocks(seg, idx, [0]).await,
            Err(ShardError::NotFound { .. })
        ));
        assert!(matches!(
            store.rewrite_blocks(seg, idx, len, vec![]).await,
            Err(ShardError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn open_cleans_tmp() {
        let dir = tempfile::tempdir().unwrap();
        drop(ShardStore::open(dir.path()).await.unwrap());
        fs::write(dir.path().join("tmp/leftover.tmp"), b"x").unwrap();
        drop(ShardStore::open(dir.path()).await.unwrap());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    fn fan_out_dirs(data_dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(data_dir.join("shards"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn open_creates_every_fan_out_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShardStore::open(dir.path()).await.unwrap();
        let expected: Vec<String> = (0..=255u32).map(|b| format!("{b:02x}")).collect();
        assert_eq!(fan_out_dirs(dir.path()), expected);
        // Every segment's file goes into one of them, whatever its first byte.
        for first in 0..=255u128 {
            let seg = SegmentId(first << 120 | 0x0123_4567_89ab);
            let path = store.path_of(seg, ShardIndex(3));
            let parent = path.parent().unwrap();
            assert!(parent.is_dir(), "{} missing", parent.display());
            assert_eq!(
                parent.file_name().unwrap().to_str().unwrap(),
                &seg.to_string()[..2]
            );
        }
    }

    #[tokio::test]
    async fn open_recreates_a_missing_fan_out_directory() {
        let dir = tempfile::tempdir().unwrap();
        drop(ShardStore::open(dir.path()).await.unwrap());
        fs::remove_dir(dir.path().join("shards/7f")).unwrap();
        assert_eq!(fan_out_dirs(dir.path()).len(), 255);
        let store = ShardStore::open(dir.path()).await.unwrap();
        assert_eq!(fan_out_dirs(dir.path()).len(), 256);
        let seg = SegmentId(0x7f << 120);
        let d = data(100);
        store
            .put(seg, ShardIndex(0), d.len() as u64, chunks(&d, 64))
            .await
            .unwrap();
        assert_eq!(
            &store.get_bytes(seg, ShardIndex(0), 0, None).await.unwrap()[..],
            &d[..]
        );
    }
}
