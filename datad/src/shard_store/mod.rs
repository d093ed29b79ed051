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
//!
//! The code is split by what it does: `layout` places files and lists
//! them (open, inventory), `write` changes them (put, in-place block
//! repair, delete), `read` verifies and returns them.

use crate::error::ShardError;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use weft_common::durable_file::FsError;
use weft_common::{SegmentId, ShardIndex};

pub use crate::limits::GET_BYTES_MAX;
pub use crate::limits::GET_QUEUE_BLOCKS;
pub use crate::limits::GET_VERIFIED_MAX;
use crate::limits::NAME_LOCKS;
pub use crate::limits::PUT_QUEUE_CHUNKS;

mod layout;
mod read;
#[cfg(test)]
mod tests;
mod write;

pub use read::{BlockCheck, ShardRange};
pub use write::Removed;

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

impl ShardStore {
    /// Bytes of all shard files (headers and crcs included).
    pub fn used_bytes(&self) -> u64 {
        self.inner.used_bytes.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn name_lock(&self, segment: SegmentId, index: ShardIndex) -> std::sync::MutexGuard<'_, ()> {
        let slot = (segment.0 as usize ^ usize::from(index.0)) % NAME_LOCKS;
        // A poisoned lock guards no data (it is `()`), so carry on.
        self.name_locks[slot]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Awaits a task of the store; a panic in it becomes [`ShardError::Task`]
/// instead of unwinding into the request.
async fn join<T>(handle: tokio::task::JoinHandle<T>) -> Result<T, ShardError> {
    handle.await.map_err(|e| ShardError::Task(e.to_string()))
}

/// Runs blocking file work off the runtime, inside the caller's span.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ShardError> + Send + 'static,
) -> Result<T, ShardError> {
    let span = tracing::Span::current();
    join(weft_common::effects::spawn_blocking(move || {
        span.in_scope(f)
    }))
    .await?
}

/// A file's length, 0 if it is absent: what replacing or removing it takes
/// off `used_bytes`.
fn file_len(path: &Path) -> Result<u64, FsError> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(FsError::new("stat shard file", path, e)),
    }
}
