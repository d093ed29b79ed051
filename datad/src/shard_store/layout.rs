//! Where shard files live and what the directory holds: opening the store
//! (fan-out directories, the temp directory emptied, used bytes summed) and
//! the inventory the garbage collector reconciles against metad.

use super::{blocking, file_len, Inner, ShardStore};
use crate::error::ShardError;
use crate::limits::NAME_LOCKS;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use weft_common::durable_file::{self as durable, FsError};
use weft_common::{SegmentId, ShardIndex};

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

    /// Every shard file whose last write is older than `min_age`, by name.
    /// Files are named for their segment and index, so no file is opened.
    pub async fn inventory(
        &self,
        min_age: std::time::Duration,
    ) -> Result<Vec<(SegmentId, ShardIndex)>, ShardError> {
        let inner = self.inner.clone();
        blocking(move || inner.inventory(min_age)).await
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

    pub(super) fn path_of(&self, segment: SegmentId, index: ShardIndex) -> PathBuf {
        let hex = segment.to_string();
        self.shards_dir
            .join(fan_out_name((segment.0 >> 120) as u8))
            .join(format!("{hex}.{}", index.0))
    }

    fn inventory(
        &self,
        min_age: std::time::Duration,
    ) -> Result<Vec<(SegmentId, ShardIndex)>, ShardError> {
        let now = weft_common::effects::now();
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
