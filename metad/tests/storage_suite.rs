//! openraft's own storage conformance suite, run against metad's redb log
//! store and state machine.

use openraft::storage::RaftLogStorage;
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{RaftLogReader, StorageError, Vote};
use tempfile::TempDir;
use weft_metad::raft_log::LogStore;
use weft_metad::state_machine::StateMachine;
use weft_metad::{RaftNodeId, TypeConfig};

/// Builds a fresh log store and state machine in their own temporary
/// directory; the directory (the guard) outlives both.
struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<RaftNodeId>> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let log = LogStore::open(&dir.path().join("raft-log.redb")).expect("open the log store");
        let sm = StateMachine::open(dir.path()).expect("open the state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    // The suite runs every case in its own runtime: this must not be a
    // tokio test.
    Suite::test_all(RedbBuilder).expect("storage suite passes");
}

/// Vote, committed id, purge point and entries survive closing and
/// reopening the log database (openraft's suite only checks one instance).
#[tokio::test]
async fn log_state_survives_reopen() {
    type S = Suite<TypeConfig, LogStore, StateMachine, RedbBuilder, TempDir>;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("raft-log.redb");
    let vote = Vote::new_committed(3, 2);
    let committed = Some(log_id(1, 0, 7));
    {
        let mut log = LogStore::open(&path).expect("open");
        // Entry 0 in term 0, entries 1..=10 in term 1, all by node 0.
        S::feed_10_logs_vote_self(&mut log).await.expect("append");
        log.save_vote(&vote).await.expect("save vote");
        log.save_committed(committed).await.expect("save committed");
        log.purge(log_id(1, 0, 3)).await.expect("purge");
        log.truncate(log_id(1, 0, 9)).await.expect("truncate");
    }
    let mut log = LogStore::open(&path).expect("reopen");
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    assert_eq!(log.read_committed().await.expect("committed"), committed);
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 0, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 0, 8)));
    let kept: Vec<u64> = log
        .try_get_log_entries(..)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(kept, (4..=8).collect::<Vec<_>>());

    // With every entry purged the purge point is the last log id.
    log.purge(log_id(1, 0, 8)).await.expect("purge all");
    drop(log);
    let mut log = LogStore::open(&path).expect("reopen");
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 0, 8)));
    assert_eq!(state.last_log_id, Some(log_id(1, 0, 8)));
    assert!(log.try_get_log_entries(..).await.expect("read").is_empty());
}
