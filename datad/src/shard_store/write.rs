//! The write path: a PUT streamed into a temp file and renamed into place
//! once durable, blocks rewritten in place by repair, and deletes. Every
//! change of a name happens under its name lock, so `used_bytes` stays
//! exact with concurrent PUTs and DELETEs of one shard.

use super::{blocking, file_len, join, Inner, ShardStore};
use crate::error::{BoxError, ShardError};
use crate::limits::PUT_QUEUE_CHUNKS;
use crate::shard_file::{self, ShardHeader, ShardReader, ShardWriter, DATA_LEN_MAX};
use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use std::fs;
use std::io;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use weft_common::disk;
use weft_common::durable_file::{self as durable, Access, DurableFile, FsError};
use weft_common::rpc::ShardPutReply;
use weft_common::{SegmentId, ShardIndex};

enum PutMsg {
    Chunk(Bytes),
    /// All declared bytes were sent; without it the writer aborts.
    End,
}

impl ShardStore {
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
        let (tx, rx) = mpsc::channel(weft_common::effects::channel_capacity(PUT_QUEUE_CHUNKS));
        let inner = self.inner.clone();
        let span = tracing::Span::current();
        let start_writer = move || {
            weft_common::effects::spawn_blocking(move || {
                let _entered = span.enter();
                inner.write_shard(segment, index, len, rx)
            })
        };
        // Under simulation the writer runs on the runtime's thread and cannot
        // wait for chunks: the whole body first, then the writer.
        let (fed, writer) = if weft_common::effects::simulated() {
            let fed = feed(body, len, &tx).await;
            if fed.is_ok() {
                let _ = tx.send(PutMsg::End).await;
            }
            (fed, start_writer())
        } else {
            let writer = start_writer();
            (feed(body, len, &tx).await, writer)
        };
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

    /// Removes a shard durably. Returns whether it existed.
    pub async fn delete(&self, segment: SegmentId, index: ShardIndex) -> Result<bool, ShardError> {
        let inner = self.inner.clone();
        blocking(move || inner.delete(segment, index)).await
    }

    /// Removes released shards, all in one blocking task and without
    /// syncing their directories. Only for shards no committed version
    /// refers to (the release path): if a crash undoes a removal, the file
    /// is unreferenced garbage that the collector removes after its grace,
    /// so the directory fsync each durable delete pays (the cost that let
    /// release queues outgrow a busy node's deletes, docs/performance.md)
    /// buys nothing here. A shard that fails to go is counted and left to
    /// the collector too.
    pub async fn remove_released(&self, shards: Vec<(SegmentId, ShardIndex)>) -> Removed {
        let inner = self.inner.clone();
        match weft_common::effects::spawn_blocking(move || inner.remove_released(&shards)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "release removal task failed; left for GC");
                Removed::default()
            }
        }
    }
}

/// What [`ShardStore::remove_released`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Files removed.
    pub deleted: u32,
    /// Files that were not there.
    pub absent: u32,
    /// Files that could not be removed (left for garbage collection).
    pub failed: u32,
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

impl Inner {
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
        let mut writer = ShardWriter::new(file.writer(), &temp_path, header)?;
        loop {
            match weft_common::effects::blocking_recv(&mut rx) {
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

    fn rewrite_blocks(
        &self,
        segment: SegmentId,
        index: ShardIndex,
        data_len: u64,
        blocks: Vec<(u32, Bytes)>,
    ) -> Result<(), ShardError> {
        let path = self.path_of(segment, index);
        let disk = disk::current();
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
            disk.write_at(
                &file,
                header.block_file_offset(*block),
                &shard_file::encode_block(data),
            )
            .map_err(|e| ShardError::from_fs(FsError::new("rewrite shard block", &path, e)))?;
        }
        disk.sync_data(&file)
            .map_err(|e| ShardError::from_fs(FsError::new("fsync shard file", &path, e)))?;
        tracing::info!(
            %segment, %index, blocks = blocks.len(), path = %path.display(),
            "rewrote bad shard blocks in place"
        );
        Ok(())
    }

    fn delete(&self, segment: SegmentId, index: ShardIndex) -> Result<bool, ShardError> {
        self.delete_unless_newer(segment, index, None)
    }

    fn remove_released(&self, shards: &[(SegmentId, ShardIndex)]) -> Removed {
        let mut out = Removed::default();
        for &(segment, index) in shards {
            let path = self.path_of(segment, index);
            let _name = self.name_lock(segment, index);
            let len = match file_len(&path) {
                Ok(len) => len,
                Err(e) => {
                    tracing::warn!(error = %e, %segment, index = index.0, "released shard not removed; left for GC");
                    out.failed += 1;
                    continue;
                }
            };
            match disk::current().remove_file(&path) {
                Ok(()) => {
                    self.used_bytes.fetch_sub(len, Ordering::Relaxed);
                    out.deleted += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => out.absent += 1,
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "released shard not removed; left for GC");
                    out.failed += 1;
                }
            }
        }
        out
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
