//! Errors of metad's stores.

use crate::envelope::CorruptValue;
use crate::RaftNodeId;
use openraft::{StorageError, StorageIOError};
use thiserror::Error;

/// A state-machine read or write failed.
#[derive(Debug, Error)]
pub enum MetaError {
    /// The database engine failed (I/O, a damaged file redb itself caught).
    #[error("metadata store: {0}")]
    Store(#[from] redb::Error),
    /// A raft entry in a command format newer than this binary reads.
    #[error("a raft entry has command format {format}, newer than this metad reads ({supported}): upgrade this voter's binary and restart it (docs/decisions.md, \"Formats and rolling upgrades\")")]
    NewerFormat {
        /// The entry's format.
        format: u32,
        /// The newest this binary reads.
        supported: u32,
    },
    /// A stored value failed its envelope check: never serve or apply it.
    #[error(transparent)]
    Corrupt(#[from] CorruptValue),
}

/// A write of the raft log failed. Each cause reads as redb's own error,
/// which is what the log and openraft's storage error carry.
#[derive(Debug, Error)]
pub enum LogWriteError {
    /// A write transaction could not begin.
    #[error(transparent)]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error(transparent)]
    Table(#[from] redb::TableError),
    /// Reading or writing the file failed.
    #[error(transparent)]
    Storage(#[from] redb::StorageError),
    /// The commit (and its fsync) failed.
    #[error(transparent)]
    Commit(#[from] redb::CommitError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self {
                MetaError::Store(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

/// openraft's error for a failed state-machine read: what its storage
/// traits must return, whatever the cause.
pub(crate) fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError<RaftNodeId> {
    StorageIOError::read_state_machine(&e).into()
}

/// openraft's error for a failed state-machine write.
pub(crate) fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError<RaftNodeId> {
    StorageIOError::write_state_machine(&e).into()
}
