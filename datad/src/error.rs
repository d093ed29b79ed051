//! [`ShardError`]: the error of the shard file format and the shard store.

use weft_common::damage::BlockDamage;
use weft_common::durable_file::FsError;
use weft_common::{SegmentId, ShardIndex};

/// Boxed error of a request body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a shard operation failed. Variants are the cases a caller acts on;
/// the server maps each to one HTTP status (see `server.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// No shard file for this segment and index.
    #[error("segment {segment} shard {index}: not found")]
    NotFound {
        /// Segment asked for.
        segment: SegmentId,
        /// Shard asked for.
        index: ShardIndex,
    },
    /// A data block failed its crc32c (or is missing from a truncated file).
    /// The block's bytes were not returned.
    #[error("segment {segment} shard {index}: crc32c mismatch in block {block}")]
    Corrupt {
        /// Segment.
        segment: SegmentId,
        /// Shard.
        index: ShardIndex,
        /// Block number within the shard file.
        block: u32,
        /// Data bytes per block of the file.
        block_bytes: u32,
    },
    /// Blocks of a verified read failed their crc32c: every bad block in the
    /// range asked for, so the caller can report them all at once. None of
    /// the range's bytes were returned.
    #[error("segment {segment} shard {index}: crc32c mismatch in {damage}")]
    Damaged {
        /// Segment.
        segment: SegmentId,
        /// Shard.
        index: ShardIndex,
        /// The bad blocks.
        damage: BlockDamage,
    },
    /// The shard file's header is damaged or names another shard: nothing in
    /// the file can be trusted.
    #[error("segment {segment} shard {index}: bad header: {reason}")]
    CorruptHeader {
        /// Segment asked for.
        segment: SegmentId,
        /// Shard asked for.
        index: ShardIndex,
        /// What is wrong with it.
        reason: String,
    },
    /// A PUT body was longer or shorter than its declared length.
    #[error("shard body length mismatch: {declared} bytes declared, {received} received")]
    LengthMismatch {
        /// Declared by the `x-weft-shard-len` header.
        declared: u64,
        /// Received (for a too-long body: received when the excess was seen).
        received: u64,
    },
    /// A shard longer than [`crate::shard_file::DATA_LEN_MAX`].
    #[error("shard length {len} exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A read range that does not lie within the shard's data.
    #[error("range {offset}+{len} is outside the shard's {data_len} bytes")]
    OutOfRange {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The shard's data length.
        data_len: u64,
    },
    /// The PUT body stream failed (client went away).
    #[error("read shard body")]
    Body(#[source] BoxError),
    /// The disk or a quota is full.
    #[error("disk full")]
    DiskFull(#[source] FsError),
    /// No file descriptor was free (EMFILE/ENFILE): a passing overload, not
    /// a broken store; the request may be retried once some are released.
    #[error("out of file descriptors")]
    Busy(#[source] FsError),
    /// Any other file-system failure.
    #[error("shard store i/o")]
    Io(#[source] FsError),
    /// A blocking task of the store panicked or was cancelled.
    #[error("shard store task failed: {0}")]
    Task(String),
}

impl ShardError {
    /// Classifies a file-system error: disk full, out of descriptors, or
    /// other.
    pub fn from_fs(error: FsError) -> Self {
        if error.is_disk_full() {
            ShardError::DiskFull(error)
        } else if error.is_out_of_descriptors() {
            ShardError::Busy(error)
        } else {
            ShardError::Io(error)
        }
    }

    /// Whether the stored data failed verification (block or header).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            ShardError::Corrupt { .. }
                | ShardError::CorruptHeader { .. }
                | ShardError::Damaged { .. }
        )
    }

    /// For a verification failure: the blocks it makes bad (every block for
    /// a bad header, whose file cannot be trusted at all).
    pub fn damage(&self) -> Option<BlockDamage> {
        match self {
            ShardError::Corrupt {
                block, block_bytes, ..
            } => Some(BlockDamage::from_blocks(*block_bytes, [*block])),
            ShardError::CorruptHeader { .. } => {
                Some(BlockDamage::whole(crate::shard_file::SHARD_BLOCK_BYTES))
            }
            ShardError::Damaged { damage, .. } => Some(damage.clone()),
            _ => None,
        }
    }
}

/// `error: cause: cause`, for messages that must carry the whole story.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
