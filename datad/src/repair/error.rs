//! [`RepairError`]: why a repair task failed.

use crate::error::ShardError;
use std::ops::Range;
use weft_client::DatadClientError;
use weft_client::MetadClientError;
use weft_common::damage::BlockDamage;
use weft_common::rpc::CommandResult;
use weft_common::stripe::StripeError;
use weft_common::NodeId;

/// Why a repair task failed. Its message is all metad learns (it travels as
/// the task outcome's `error` and shows in `weft cluster repair status`), so
/// each variant's message carries its cause's text itself instead of
/// leaving it to [`std::error::Error::source`], which nothing there reads.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// metad refused the new placement of a rewritten shard.
    #[error("metad did not take the new placement: {0:?}")]
    PlacementRefused(Box<CommandResult>),
    /// metad refused to clear repaired blocks.
    #[error("metad did not take the repair: {0:?}")]
    RepairRefused(Box<CommandResult>),
    /// No metad answered the commit.
    #[error("commit failed: {0}")]
    Commit(MetadClientError),
    /// The task names no source that holds a copy of this shard, and its
    /// layout cannot rebuild it.
    #[error("no source holds this shard")]
    NoSource,
    /// Reading the copy from another node failed.
    #[error("copy from node {node}: {cause}")]
    CopyFrom {
        /// The node copied from.
        node: NodeId,
        /// Why.
        cause: DatadClientError,
    },
    /// The local writer stopped taking chunks; its own error follows.
    #[error("local shard writer stopped")]
    WriterStopped,
    /// Storing the new shard file failed.
    #[error("store rebuilt shard: {0}")]
    Store(ShardError),
    /// The task's layout has no codec.
    #[error(transparent)]
    Codec(#[from] StripeError),
    /// A decoding task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// Decoding one stripe failed.
    #[error("stripe {stripe}: {cause}")]
    StripeDecode {
        /// Stripe number.
        stripe: u64,
        /// Why.
        cause: StripeError,
    },
    /// The segment's recorded shard length disagrees with its layout, so no
    /// stripe boundary can be trusted.
    #[error("geometry gives shard length {computed} but the segment records {recorded}")]
    Geometry {
        /// From the layout and the segment's length.
        computed: u64,
        /// In the segment.
        recorded: u64,
    },
    /// Fewer than `k` other shards to rebuild from.
    #[error("only {readable} other shards readable; need {k}")]
    TooFewSources {
        /// Other shards listed.
        readable: usize,
        /// Needed.
        k: usize,
    },
    /// A stripe lost a source and no spare could stand in.
    #[error("stripe {stripe}: too few readable shards ({cause})")]
    StripeUnreadable {
        /// Stripe number.
        stripe: u64,
        /// Why the last source failed.
        cause: DatadClientError,
    },
    /// A block repair task arrived without the blocks to repair.
    #[error("a block repair task without blocks")]
    NoBlocks,
    /// Telling metad that the shard file is missing failed.
    #[error("report the missing shard file: {0}")]
    ReportMissing(MetadClientError),
    /// The shard file was missing; metad was told, so it rebuilds the shard
    /// elsewhere.
    #[error("shard file missing here; released the slot for a rebuild")]
    MissingHere,
    /// The local file's blocks could not be checked.
    #[error("verify local blocks: {0}")]
    VerifyLocal(ShardError),
    /// Rewriting blocks in place failed.
    #[error("rewrite blocks: {0}")]
    Rewrite(ShardError),
    /// Reading back the rewritten blocks failed.
    #[error("verify rewritten blocks: {0}")]
    VerifyRewritten(ShardError),
    /// Rewritten blocks failed their crc32c on reading back.
    #[error("rewritten blocks {0:?} do not verify")]
    RewrittenBad(Vec<u32>),
    /// Some bad blocks are still bad; the others were repaired and reported.
    #[error("{count} of the bad blocks could not be rebuilt (too few good shards in their stripes): {blocks}")]
    Unrepaired {
        /// How many.
        count: usize,
        /// Which.
        blocks: BlockDamage,
    },
    /// Reading a range of another node's shard failed.
    #[error("shard {index} on node {node}: {cause}")]
    Source {
        /// Shard index read.
        index: u8,
        /// Node read from.
        node: NodeId,
        /// Why.
        cause: DatadClientError,
    },
    /// Fewer than `k` sources could be read for a range.
    #[error("only {have} of {k} shards readable in shard bytes {range:?}: {}", joined(.errors))]
    TooFewInRange {
        /// Sources read.
        have: usize,
        /// Needed.
        k: usize,
        /// The range of shard bytes.
        range: Range<u64>,
        /// Why each source that failed did.
        errors: Vec<RepairError>,
    },
}

/// The sources' errors of [`RepairError::TooFewInRange`], in one line.
fn joined(errors: &[RepairError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_causes_on_one_line() {
        assert_eq!(
            RepairError::TooFewSources { readable: 2, k: 4 }.to_string(),
            "only 2 other shards readable; need 4"
        );
        let blocks = BlockDamage::from_blocks(1 << 16, [1, 3]);
        assert_eq!(
            RepairError::Unrepaired {
                count: 2,
                blocks: blocks.clone()
            }
            .to_string(),
            format!("2 of the bad blocks could not be rebuilt (too few good shards in their stripes): {blocks}")
        );
        assert_eq!(
            RepairError::TooFewInRange {
                have: 1,
                k: 2,
                range: 0..10,
                errors: vec![RepairError::NoSource, RepairError::WriterStopped],
            }
            .to_string(),
            "only 1 of 2 shards readable in shard bytes 0..10: no source holds this shard; local shard writer stopped"
        );
        assert_eq!(
            RepairError::PlacementRefused(Box::new(CommandResult::Done)).to_string(),
            "metad did not take the new placement: Done"
        );
    }
}
