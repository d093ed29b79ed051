//! metad's HTTP endpoints: raft RPC (`/raft/*`), the metadata API
//! (`/v1/command`, `/v1/query`, `/v1/heartbeat`, `/v1/init`), `/health`
//! (liveness), `/health/ready` (see [`crate::health`]) and `/metrics`.
//!
//! The handlers are split by who may call them and when: the metadata API
//! (`api`), membership administration (`members`), and the loops that
//! run only while this voter leads (`leader_loops`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::BasicNode;
use std::sync::Arc;
use weft_common::rpc::{MemberStatus, RaftStatus, RpcErrorBody, RpcErrorCode};

use crate::durability::Planner;
use crate::group_commit::GroupCommit;
use crate::liveness::Liveness;
use crate::state_machine::StateMachine;
use crate::{Raft, RaftNodeId, TypeConfig};

mod access;
mod api;
mod audit;
mod clock;
mod leader_loops;
mod lifecycle_scan;
mod members;
mod metrics;
mod migrations;
mod reseal;
mod transitions;
mod warming;

pub(crate) use audit::{audit_checkpoints, audit_reports};
pub(crate) use leader_loops::{leadership_watch, planner_loop};
pub(crate) use lifecycle_scan::lifecycle_loop;
pub use members::InitRequest;
pub use metrics::Metrics;
pub(crate) use migrations::migration_loop;
pub(crate) use reseal::reseal_loop;
pub use transitions::Transitions;
pub(crate) use warming::warming_loop;
pub use warming::Warming;

/// What every handler shares.
pub struct AppState {
    /// This voter's raft id.
    pub id: RaftNodeId,
    /// The raft handle.
    pub raft: Raft,
    /// Read side of the state machine.
    pub sm: StateMachine,
    /// Heartbeat tracker.
    pub liveness: Liveness,
    /// Reporters' network measurements (leader memory).
    pub netmap: crate::netmap::NetMapStore,
    /// Repair planning (active while leader).
    pub planner: Planner,
    /// Metrics.
    pub metrics: Metrics,
    /// The disk reserve and space-low mode.
    pub space: Arc<crate::space::SpaceGuard>,
    /// Batches concurrent commands into raft entries.
    pub writes: GroupCommit,
    /// Set while this leader steps down: it proposes nothing, so followers'
    /// election timers run out.
    pub stepping_down: std::sync::atomic::AtomicBool,
    /// Set when this voter started with a committed vote for itself: its
    /// reads must wait for a read index past its log at start (see
    /// [`ReadFloor`]).
    pub read_floor: Option<ReadFloor>,
    /// Set once the raft core has stopped for good.
    pub fatal: tokio::sync::watch::Receiver<Option<crate::RaftFatal>>,
    /// From this voter's config: what this voter seeds the cluster's timers
    /// with when it is the first leader (the replicated value is served).
    pub upload_timers: weft_common::upload_timers::UploadTimers,
    /// From this voter's config: the storage classes it seeds a new
    /// cluster with.
    pub storage_classes: Vec<weft_common::storage_class::StorageClass>,
    /// Length of a lifecycle day in ms (`lifecycle_day_secs`).
    pub lifecycle_day_ms: u64,
    /// Largest accepted clock distance of a stamped time, ms
    /// (`clock_skew_max_secs`).
    pub clock_skew_max_ms: u64,
    /// Data node certificates that name no node id are let through (with a
    /// warning) for an upgrade's window (`allow_unbound_datad_certs`).
    pub allow_unbound_datad_certs: bool,
    /// Where this voter's lifecycle passes stand (while it leads).
    pub lifecycle_passes: std::sync::Mutex<weft_common::lifecycle::Passes>,
    /// Wakes the lifecycle loop to start a pass now (`weft lifecycle run`).
    pub lifecycle_kick: tokio::sync::Notify,
    /// Moves between storage classes waiting for, or given to, data nodes
    /// (while this voter leads).
    pub transitions: Transitions,
    /// Seals access-key secrets at rest; `None` keeps them as given (a
    /// bench run without a master key).
    pub sealer: Option<Arc<crate::seal::Sealer>>,
    /// Refused callers, for the audit chain.
    pub audit: weft_client::audit_report::Reporter,
    /// Reaches the other voters: a follower forwards its audit reports to
    /// the leader through it.
    pub peers: weft_client::SharedTransport,
    /// How often the leader signs a checkpoint of the audit chain.
    pub audit_checkpoint_every: std::time::Duration,
    /// The leader's view of warms: cache use per zone, evictions, and when
    /// each warm's copies were last read (soft state from gateways).
    pub warming: Warming,
}

/// An error response with an [`RpcErrorBody`].
pub struct ApiError(StatusCode, RpcErrorBody);

impl ApiError {
    fn new(status: StatusCode, code: RpcErrorCode, message: impl Into<String>) -> Self {
        ApiError(
            status,
            RpcErrorBody {
                code,
                message: message.into(),
                leader_addr: None,
                damage: None,
            },
        )
    }

    fn not_leader(leader: Option<BasicNode>) -> Self {
        let mut e = Self::new(
            StatusCode::MISDIRECTED_REQUEST,
            RpcErrorCode::NotLeader,
            "this metad is not the raft leader; retry at the leader",
        );
        e.1.leader_addr = leader.map(|n| n.addr);
        e
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, RpcErrorCode::Unauthorized, message)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            RpcErrorCode::Internal,
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// What a voter restored as the leader of its old term must read past: a
/// read index of a later term, or one at or past the last entry its log
/// held at start (everything it may have acknowledged). Its saved commit
/// index is an unsynced hint and may be behind (`node::read_barrier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFloor {
    /// The restored term.
    pub term: u64,
    /// The index of the last entry in the log at start.
    pub index: u64,
}

impl ReadFloor {
    /// Whether a read at `read` sees everything this voter may have
    /// acknowledged before it restarted.
    pub fn allows(&self, read: Option<&openraft::LogId<crate::RaftNodeId>>) -> bool {
        match read {
            Some(r) => r.leader_id.term > self.term || r.index >= self.index,
            None => false,
        }
    }
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let audit = state.audit.clone();
    // Raft messages carry batches of entries (and snapshots): allow them far
    // more than axum's 2 MiB default; API requests stay small.
    let raft = Router::new()
        .route("/raft/append", post(raft_append))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(RAFT_BODY_BYTES_MAX));
    let api = Router::new()
        .route("/v1/command", post(api::command))
        .route("/v1/query", post(api::query))
        .route("/v1/heartbeat", post(api::heartbeat))
        .route("/v1/netmap", post(api::netmap_report))
        .route("/v1/repair/poll", post(api::repair_poll))
        .route("/v1/transition/poll", post(transitions::transition_poll))
        .route("/v1/init", post(members::init))
        .route("/v1/members/add", post(members::add_member))
        .route("/v1/members/remove", post(members::remove_member))
        .route("/v1/leader/step-down", post(members::leader_step_down))
        .route("/v1/lifecycle/run", post(lifecycle_scan::run_now))
        .route("/health", get(|| async { "ok" }))
        .route("/health/ready", get(crate::health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/master-keys", get(reseal::master_keys))
        .layer(axum::extract::DefaultBodyLimit::max(API_BODY_BYTES_MAX));
    raft.merge(api)
        .layer(axum::middleware::from_fn(check_format))
        // Outermost: a caller is identified before anything else runs.
        .layer(axum::middleware::from_fn(move |req, next| {
            weft_client::peer::guard(access::path_roles, audit.clone(), req, next)
        }))
        .with_state(state)
}

/// Refuses a request whose body is in a format this metad cannot read
/// (`weft_common::rpc::FORMAT_HEADER`), before anything reads the body.
async fn check_format(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let checked = weft_common::rpc::check_rpc_format(
        req.headers()
            .get(weft_common::rpc::FORMAT_HEADER)
            .map(|v| v.to_str().unwrap_or("(not text)")),
    );
    if let Err(e) = checked {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            RpcErrorCode::BadRequest,
            e.to_string(),
        )
        .into_response();
    }
    next.run(req).await
}

pub use crate::limits::API_BODY_BYTES_MAX;
pub use crate::limits::RAFT_BODY_BYTES_MAX;

async fn raft_append(
    State(s): State<Arc<AppState>>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    Json(s.raft.append_entries(req).await).into_response()
}

async fn raft_vote(
    State(s): State<Arc<AppState>>,
    Json(req): Json<VoteRequest<RaftNodeId>>,
) -> Response {
    Json(s.raft.vote(req).await).into_response()
}

async fn raft_snapshot(
    State(s): State<Arc<AppState>>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    Json(s.raft.install_snapshot(req).await).into_response()
}

/// Refuses writes unless this voter is leader in fact, not only by vote: a
/// leader that removed itself from the membership keeps its vote but must
/// not propose (openraft 0.9 asserts on it).
fn ensure_serving_leader(s: &AppState) -> Result<(), ApiError> {
    let m = s.raft.metrics().borrow().clone();
    if let Err(e) = &m.running_state {
        // Not "not leader": no leader will ever be named from here.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcErrorCode::Unavailable,
            format!("the raft core of this metad has stopped ({e}); use another voter until it is restarted"),
        ));
    }
    let stepping_down = s.stepping_down.load(std::sync::atomic::Ordering::SeqCst);
    if !stepping_down && m.state == openraft::ServerState::Leader && m.current_leader == Some(s.id)
    {
        return Ok(());
    }
    let leader = m
        .current_leader
        .filter(|l| *l != s.id)
        .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
    Err(ApiError::not_leader(leader))
}

fn status(s: &AppState) -> RaftStatus {
    let m = s.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| MemberStatus {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
            matched_index: m
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map(|l| l.index)
                .or(if *id == s.id { m.last_log_index } else { None }),
        })
        .collect();
    RaftStatus {
        members,
        node_id: s.id,
        role: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_log_index: m.last_log_index,
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        voters: m.membership_config.membership().voter_ids().collect(),
        space: Some(s.space.status()),
    }
}

/// Wall time in ms since the epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    weft_common::effects::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod read_floor_tests {
    use super::ReadFloor;
    use openraft::{CommittedLeaderId, LogId};

    fn at(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn a_restored_leader_reads_only_past_its_log_or_in_a_later_term() {
        let floor = ReadFloor { term: 7, index: 40 };
        assert!(!floor.allows(Some(&at(7, 39))), "the stale commit hint");
        assert!(floor.allows(Some(&at(7, 40))));
        assert!(floor.allows(Some(&at(7, 41))));
        assert!(floor.allows(Some(&at(8, 12))), "a later term's first entry");
        assert!(!floor.allows(None));
    }
}
