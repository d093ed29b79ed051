//! Whether this metad can do its job: the fatal-state watch and
//! `/health/ready`.
//!
//! openraft's core task quits for good on a storage error (a snapshot or log
//! write that failed, e.g. with EMFILE); the process would stay up answering
//! 503 to everything while `/health` still says "ok". The watch turns that
//! into a signal the owner acts on ([`crate::MetadHandle::fatal`]): `weft
//! metad` exits so a supervisor restarts it from its intact files, rather
//! than restarting raft in-process (docs/decisions.md, "A fatal raft error
//! ends the metad process").

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::server::AppState;
use crate::Raft;

/// The raft core of this metad stopped and will not run again in this
/// process. Committed data on disk is intact: the log is fsynced at every
/// commit and the state machine replays from it on the next start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the raft core of metad {id} stopped on a fatal error: {cause}")]
pub struct RaftFatal {
    /// The raft id of the voter.
    pub id: u64,
    /// What openraft reported (e.g. the storage error and its OS error).
    pub cause: String,
}

/// Watches `raft` and publishes the first fatal state it reaches. A stop
/// after `cancel` fired is a requested shutdown, not a fatal state.
pub(crate) fn watch_fatal(
    id: u64,
    raft: Raft,
    cancel: CancellationToken,
) -> watch::Receiver<Option<RaftFatal>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        loop {
            let running = metrics.borrow_and_update().running_state.clone();
            if let Err(fatal) = running {
                if !(cancel.is_cancelled() && matches!(fatal, openraft::error::Fatal::Stopped)) {
                    let f = RaftFatal {
                        id,
                        cause: fatal.to_string(),
                    };
                    tracing::error!(error = %f, "metad can no longer serve; its owner should restart it");
                    let _ = tx.send(Some(f));
                }
                return;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                changed = metrics.changed() => if changed.is_err() {
                    // The sender lives in the core task: it ended without
                    // saying why (a panic).
                    if !cancel.is_cancelled() {
                        let _ = tx.send(Some(RaftFatal {
                            id,
                            cause: "the raft core task ended unexpectedly".into(),
                        }));
                    }
                    return;
                },
            }
        }
    });
    rx
}

/// Waits until `rx` reports a fatal state. Pending forever if the watcher
/// ended without one (a requested shutdown).
pub(crate) async fn wait_fatal(mut rx: watch::Receiver<Option<RaftFatal>>) -> RaftFatal {
    let found = rx.wait_for(Option::is_some).await.map(|f| f.clone());
    match found {
        Ok(Some(f)) => f,
        _ => std::future::pending().await,
    }
}

/// Body of `/health/ready`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Readiness {
    /// Whether this voter can take part in serving: its raft core runs and
    /// it knows a leader.
    pub ready: bool,
    /// Raft role (Leader, Follower, Candidate, Learner, Shutdown).
    pub role: String,
    /// The leader it knows, if any.
    pub leader: Option<u64>,
    /// Why it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `GET /health/ready`: 200 when the raft core runs and a leader is known,
/// else 503 naming the cause. `/health` stays plain liveness (the process
/// answers), so a supervisor can tell "restart me" from "wait for quorum".
pub(crate) async fn ready(State(s): State<Arc<AppState>>) -> Response {
    let m = s.raft.metrics().borrow().clone();
    let fatal = s.fatal.borrow().clone();
    let cause = match (&fatal, &m.running_state, m.current_leader) {
        (Some(f), _, _) => Some(format!(
            "{f}; committed data on disk is intact: restart this metad"
        )),
        (None, Err(openraft::error::Fatal::Stopped), _) => {
            Some("the raft core is shutting down".to_string())
        }
        // Dead, and the watch has not caught up yet.
        (None, Err(e), _) => Some(format!(
            "{}; committed data on disk is intact: restart this metad",
            RaftFatal {
                id: s.id,
                cause: e.to_string()
            }
        )),
        (None, Ok(()), None) => Some(
            "no raft leader is known (an election is under way, or too few voters are up for a quorum)"
                .to_string(),
        ),
        (None, Ok(()), Some(_)) => None,
    };
    let status = if cause.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Readiness {
        ready: cause.is_none(),
        role: format!("{:?}", m.state),
        leader: m.current_leader,
        cause,
    };
    (status, Json(body)).into_response()
}
