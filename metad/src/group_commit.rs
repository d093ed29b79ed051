//! Group commit: concurrent commands share raft entries.
//!
//! openraft 0.9 appends, flushes and applies one entry at a time, so one
//! command per entry caps the commit rate at one fsync-and-apply round per
//! command however many clients wait. The batcher takes every command that
//! arrived while the previous entries were in flight and proposes them as one
//! `Command::Batch`, so the commit rate grows with concurrency while a lone
//! writer still pays one round. At most `INFLIGHT_ENTRIES_MAX` entries are in
//! flight; the queue in front of the batcher is bounded, so callers wait
//! rather than pile up.

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};
use weft_common::rpc::{Command, CommandResult};

use crate::Raft;

use crate::limits::BATCH_COMMANDS_MAX;
use crate::limits::COMMAND_QUEUE_MAX as QUEUE_MAX;
use crate::limits::INFLIGHT_ENTRIES_MAX;

/// Why a command was not committed.
#[derive(Clone, Debug)]
pub enum WriteError {
    /// Not proposed: metad is shutting down.
    Unavailable(String),
    /// Proposed (or handed to raft), but raft answered with an error: the
    /// entry may still commit under this or a later leader. openraft reports
    /// a lost leadership as `ForwardToLeader` even for entries it had
    /// already appended, so that too is an unknown outcome here.
    Unknown {
        /// What raft said.
        message: String,
        /// The leader, if raft named one.
        leader: Option<BasicNode>,
    },
}

type Reply = oneshot::Sender<Result<CommandResult, WriteError>>;

/// Handle to the batcher; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<(Command, Reply)>,
}

impl GroupCommit {
    /// Starts the batcher for `raft`; it stops when every handle is dropped.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(run(raft, rx));
        GroupCommit { tx }
    }

    /// Commands waiting in the queue now (at most its bound).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Commits `cmd` (in some batch) and returns its own result.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .await
            .map_err(|_| WriteError::Unavailable("metad is shutting down".into()))?;
        rx.await.map_err(|_| WriteError::Unknown {
            message: "metad stopped while the command was queued or in flight".into(),
            leader: None,
        })?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<(Command, Reply)>) {
    let inflight = Arc::new(Semaphore::new(INFLIGHT_ENTRIES_MAX));
    while let Some(first) = rx.recv().await {
        // Wait for room first: commands keep arriving meanwhile and join this batch.
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (cmds, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
            let single = cmds.len() == 1;
            let entry = if single {
                cmds.into_iter().next().expect("one command")
            } else {
                Command::Batch { commands: cmds }
            };
            if weft_common::failpoints::active(weft_common::failpoints::Bug::AckBeforeCommit) {
                for reply in replies {
                    let _ = reply.send(Ok(CommandResult::Done));
                }
                let _ = raft.client_write(entry).await;
                drop(permit);
                return;
            }
            let outcome = raft.client_write(entry).await;
            drop(permit);
            match outcome {
                Ok(resp) => match resp.data {
                    CommandResult::Batch { results } if !single => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    r => {
                        for reply in replies {
                            let _ = reply.send(Ok(r.clone()));
                        }
                    }
                },
                Err(e) => {
                    let err = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            WriteError::Unknown {
                                message: "leadership changed while the command was proposed".into(),
                                leader: f.leader_node,
                            }
                        }
                        e => WriteError::Unknown {
                            message: format!("commit failed after proposal: {e}"),
                            leader: None,
                        },
                    };
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}
