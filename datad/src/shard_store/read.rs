//! The read path: every block read is checked against its crc32c before
//! any of its bytes leave the store, whether streamed ([`ShardStore::get`]),
//! read whole ([`ShardStore::get_verified`]) or only checked
//! ([`ShardStore::check_blocks`]).

use super::{blocking, file_len, join, Inner, ShardStore};
use crate::error::ShardError;
use crate::limits::{GET_BYTES_MAX, GET_QUEUE_BLOCKS, GET_VERIFIED_MAX};
use crate::shard_file::{ShardHeader, ShardReader};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};
use weft_common::damage::BlockDamage;
use weft_common::durable_file::FsError;
use weft_common::{SegmentId, ShardIndex};

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

impl ShardStore {
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
        let (tx, mut rx) = mpsc::channel(weft_common::effects::channel_capacity(GET_QUEUE_BLOCKS));
        let inner = self.inner.clone();
        let span = tracing::Span::current();
        let reader = weft_common::effects::spawn_blocking(move || {
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
}

fn task_gone() -> ShardError {
    ShardError::Task("shard read task ended early".into())
}

impl Inner {
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
            if weft_common::effects::blocking_send(&tx, item).is_err() || failed {
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
}
