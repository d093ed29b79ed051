//! metad's HTTP endpoints: raft RPC (`/raft/*`), the metadata API
//! (`/v1/command`, `/v1/query`, `/v1/heartbeat`, `/v1/init`), `/health`
//! (liveness), `/health/ready` (see [`crate::health`]) and `/metrics`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::BasicNode;
use openraft::ChangeMembers;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use weft_common::rpc::{
    AddMember, Command, CommandResult, Heartbeat, MemberStatus, Query, QueryResult, RaftStatus,
    RemoveMember, RpcErrorBody, RpcErrorCode,
};

use crate::durability::Planner;
use crate::group_commit::{GroupCommit, WriteError};
use crate::liveness::Liveness;
use crate::state_machine::StateMachine;
use crate::{Raft, RaftNodeId, TypeConfig};

/// Counters and histograms this metad exports.
pub struct Metrics {
    registry: Registry,
    commands: Counter,
    command_seconds: Histogram,
    queries: Counter,
    /// Segments by class, layout and redundancy state.
    segments: Family<Vec<(String, String)>, Gauge>,
    /// Nodes by state.
    nodes: Family<Vec<(String, String)>, Gauge>,
    /// Data nodes by space state (ok, nearfull, full).
    node_space: Family<Vec<(String, String)>, Gauge>,
    repair_backlog_bytes: Gauge,
    repair_tasks_in_flight: Gauge,
    repair_finished: Counter,
    /// Commands waiting for the group-commit batcher (bounded queue).
    commands_queued: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weft_metad");
        let commands = Counter::default();
        let command_seconds = Histogram::new(exponential_buckets(0.0002, 2.0, 16));
        let queries = Counter::default();
        registry.register("commands", "Metadata commands committed", commands.clone());
        registry.register(
            "command_seconds",
            "Time to commit a command",
            command_seconds.clone(),
        );
        registry.register("queries", "Metadata queries answered", queries.clone());
        let segments = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "segments",
            "Segments by storage class, layout and redundancy (leader only)",
            segments.clone(),
        );
        let nodes = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register("nodes", "Data nodes by state (leader only)", nodes.clone());
        let node_space = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "node_space",
            "Data nodes by space state: ok, nearfull, full (leader only)",
            node_space.clone(),
        );
        let repair_backlog_bytes = Gauge::default();
        registry.register(
            "repair_backlog_bytes",
            "Shard bytes repair must write to reach full redundancy",
            repair_backlog_bytes.clone(),
        );
        let repair_tasks_in_flight = Gauge::default();
        registry.register(
            "repair_tasks_in_flight",
            "Repair, drain and rebalance tasks handed out or queued",
            repair_tasks_in_flight.clone(),
        );
        let repair_finished = Counter::default();
        registry.register(
            "repair_tasks_finished",
            "Repair tasks reported finished by data nodes",
            repair_finished.clone(),
        );
        let commands_queued = Gauge::default();
        registry.register(
            "commands_queued",
            "Commands waiting for the group-commit batcher (bounded queue)",
            commands_queued.clone(),
        );
        Metrics {
            registry,
            commands_queued,
            commands,
            command_seconds,
            queries,
            segments,
            nodes,
            node_space,
            repair_backlog_bytes,
            repair_tasks_in_flight,
            repair_finished,
        }
    }
}

impl Metrics {
    /// The registry, for parts that export their own gauges (the space guard).
    pub(crate) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

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
    /// Set once the raft core has stopped for good.
    pub fatal: tokio::sync::watch::Receiver<Option<crate::RaftFatal>>,
    /// From this voter's config: what this voter seeds the cluster's timers
    /// with when it is the first leader (the replicated value is served).
    pub upload_timers: weft_common::upload_timers::UploadTimers,
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

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    // Raft messages carry batches of entries (and snapshots): allow them far
    // more than axum's 2 MiB default; API requests stay small.
    let raft = Router::new()
        .route("/raft/append", post(raft_append))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(RAFT_BODY_BYTES_MAX));
    let api = Router::new()
        .route("/v1/command", post(command))
        .route("/v1/query", post(query))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/repair/poll", post(repair_poll))
        .route("/v1/init", post(init))
        .route("/v1/members/add", post(add_member))
        .route("/v1/members/remove", post(remove_member))
        .route("/v1/leader/step-down", post(leader_step_down))
        .route("/health", get(|| async { "ok" }))
        .route("/health/ready", get(crate::health::ready))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(API_BODY_BYTES_MAX));
    raft.merge(api).with_state(state)
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

async fn command(
    State(s): State<Arc<AppState>>,
    Json(cmd): Json<Command>,
) -> Result<Json<CommandResult>, ApiError> {
    ensure_serving_leader(&s)?;
    // Only requests: a bare command could not be recognised when retried,
    // and is not applied once (docs/decisions.md, "Every command applies
    // once"). The leader stamps the time records expire by, so no client
    // clock, slow, fast or hostile, can expire another's record early.
    let cmd = match cmd {
        Command::Request { id, command, .. } if !matches!(*command, Command::Request { .. } | Command::Batch { .. }) => {
            Command::Request {
                id,
                at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                command,
            }
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                RpcErrorCode::BadRequest,
                "commands must be sent as one Request with an id its retries share (use the metad client)",
            ))
        }
    };
    // In space-low mode only commands that free space or run the cluster
    // are proposed; decided here, not in apply, which must not depend on
    // this replica's disk.
    if let Some(message) = s.space.refusal(&cmd) {
        tracing::warn!(%message, "refused a command: metad low on disk space");
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            RpcErrorCode::DiskFull,
            message,
        ));
    }
    let t0 = Instant::now();
    let result = s.writes.write(cmd).await;
    if let Err(WriteError::Unavailable(msg) | WriteError::Unknown { message: msg, .. }) = &result {
        if crate::space::mentions_no_space(msg) {
            s.space.write_failed_no_space();
        }
    }
    match result {
        Ok(result) => {
            s.metrics.commands.inc();
            s.metrics
                .command_seconds
                .observe(t0.elapsed().as_secs_f64());
            Ok(Json(result))
        }
        Err(WriteError::Unavailable(msg)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcErrorCode::Unavailable,
            msg,
        )),
        Err(WriteError::Unknown { message, leader }) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RpcErrorCode::OutcomeUnknown,
                message,
            );
            e.1.leader_addr = leader.map(|n| n.addr);
            Err(e)
        }
    }
}

async fn ensure_leader_read(s: &AppState) -> Result<(), ApiError> {
    if s.stepping_down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::not_leader(None));
    }
    match s.raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(ApiError::not_leader(f.leader_node))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcErrorCode::Unavailable,
            format!("cannot confirm leadership for a consistent read: {e}"),
        )),
    }
}

async fn query(
    State(s): State<Arc<AppState>>,
    Json(q): Json<Query>,
) -> Result<Json<QueryResult>, ApiError> {
    s.metrics.queries.inc();
    if q != Query::Status && q != Query::Digest && q != Query::UploadTimers {
        ensure_leader_read(&s).await?;
    }
    let sm = s.sm.clone();
    let result = match q {
        Query::Status => QueryResult::Status { status: status(&s) },
        // From this replica's state, not a leader read: gateways and data
        // nodes ask any voter, and tolerate a lagging one (a gateway keeps
        // the shortest age it has seen, a data node the longest grace).
        Query::UploadTimers => {
            let timers = tokio::task::spawn_blocking(move || sm.upload_timers())
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            match timers {
                Some(timers) => QueryResult::UploadTimers { timers },
                None => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        RpcErrorCode::Unavailable,
                        "this metad has no upload timers yet: a new cluster's leader sets them from its config just after it is elected; retry in a moment",
                    ))
                }
            }
        }
        Query::Digest => {
            let (applied_index, digest) = tokio::task::spawn_blocking(move || sm.digest())
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            QueryResult::Digest {
                applied_index,
                digest,
            }
        }
        Query::Nodes => QueryResult::Nodes {
            nodes: node_views(&s).await?,
            metad_space_low: s.space.low_reason(),
        },
        Query::Durability => {
            // A cached report is reused only if nothing it depends on moved:
            // no command applied since, and every node in the same state.
            // Otherwise scan now, so "healthy" is never an old answer.
            let applied = s.raft.metrics().borrow().last_applied.map(|l| l.index);
            let views = node_views(&s).await?;
            let fresh = s.planner.last_status().filter(|(at, st, at_index)| {
                at.elapsed() <= s.planner.config().status_max_age
                    && *at_index == applied
                    && st.nodes.len() == views.len()
                    && views.iter().all(|v| {
                        st.nodes
                            .iter()
                            .any(|n| n.node == v.info.id && n.state == v.state_name())
                    })
            });
            let status = match fresh {
                Some((_, status, _)) => status,
                None => durability_scan(s.clone()).await?,
            };
            QueryResult::Durability { status }
        }
        q => {
            tokio::task::spawn_blocking(move || -> Result<QueryResult, crate::error::MetaError> {
                Ok(match q {
                    Query::Bucket { name } => QueryResult::Bucket {
                        bucket: sm.bucket(&name)?,
                    },
                    Query::Buckets => QueryResult::Buckets {
                        buckets: sm.buckets()?,
                    },
                    Query::Object { bucket, key } => QueryResult::Object {
                        bucket_exists: sm.bucket(&bucket)?.is_some(),
                        version: sm.object(&bucket, &key)?,
                    },
                    Query::List(req) => QueryResult::List {
                        page: sm.list(&req)?,
                    },
                    Query::AccessKey { access_key } => QueryResult::AccessKey {
                        key: sm.access_key(&access_key)?,
                    },
                    Query::Keys => QueryResult::Keys { keys: sm.keys()? },
                    Query::ObjectVersion {
                        bucket,
                        key,
                        version_id,
                    } => QueryResult::VersionRecord {
                        bucket_exists: sm.bucket(&bucket)?.is_some(),
                        record: sm.object_version(&bucket, &key, &version_id)?,
                    },
                    Query::Versions {
                        bucket,
                        prefix,
                        key_marker,
                        version_marker,
                        delimiter,
                        max,
                    } => {
                        let page = sm.versions(
                            &bucket,
                            &prefix,
                            key_marker.as_deref(),
                            version_marker.as_deref(),
                            delimiter.as_deref(),
                            max,
                        )?;
                        QueryResult::Versions {
                            entries: page.entries,
                            common_prefixes: page.common_prefixes,
                            next: page.next,
                        }
                    }
                    Query::Uploads { bucket, prefix } => QueryResult::Uploads {
                        uploads: sm.uploads(&bucket, &prefix)?,
                    },
                    Query::Upload { upload_id } => QueryResult::Upload {
                        upload: sm.upload(&upload_id)?,
                    },
                    Query::ShardsHeld { node, shards } => QueryResult::ShardsHeld {
                        held: sm.shards_held(node, &shards)?,
                    },
                    Query::Nodes
                    | Query::Status
                    | Query::Digest
                    | Query::Durability
                    | Query::UploadTimers => {
                        unreachable!("handled above")
                    }
                })
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?
        }
    };
    Ok(Json(result))
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

/// Registered nodes joined with liveness and operator states.
pub(crate) async fn node_views(
    s: &AppState,
) -> Result<Vec<weft_common::topology::NodeView>, ApiError> {
    let sm = s.sm.clone();
    let (nodes, admin) =
        tokio::task::spawn_blocking(move || -> Result<_, crate::error::MetaError> {
            Ok((sm.nodes()?, sm.node_admin()?))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(s.liveness.view(nodes, &admin))
}

/// Scans the segment index now (waiting for a scan already running) and
/// refreshes the status, the task queue and the metrics.
pub(crate) async fn durability_scan(
    s: Arc<AppState>,
) -> Result<weft_common::repair::DurabilityStatus, ApiError> {
    let _scan = s.planner.lock_scan().await;
    s.planner
        .scan_begins_at(s.raft.metrics().borrow().last_applied.map(|l| l.index));
    let views = node_views(&s).await?;
    s.metrics.node_space.clear();
    for state in weft_common::space::SpaceState::ALL {
        let count = views.iter().filter(|v| v.space.state == state).count();
        s.metrics
            .node_space
            .get_or_create(&vec![("state".to_string(), state.name().to_string())])
            .set(count as i64);
    }
    let s2 = s.clone();
    let status = tokio::task::spawn_blocking(move || -> Result<_, crate::error::MetaError> {
        let config = s2.sm.repair_config()?;
        let mut failed = None;
        let status = s2.planner.scan(&views, config, |visit| {
            if let Err(e) = s2.sm.scan_segments(visit) {
                failed = Some(e);
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(status),
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    s.metrics.segments.clear();
    for c in &status.classes {
        let labels = |state: &str| {
            vec![
                ("class".to_string(), c.class.clone()),
                ("layout".to_string(), c.layout.clone()),
                ("state".to_string(), state.to_string()),
            ]
        };
        s.metrics
            .segments
            .get_or_create(&labels("full"))
            .set(c.full as i64);
        let degraded: u64 = c.degraded.iter().sum();
        s.metrics
            .segments
            .get_or_create(&labels("degraded"))
            .set(degraded as i64);
        s.metrics
            .segments
            .get_or_create(&labels("unreadable"))
            .set(c.unreadable as i64);
    }
    s.metrics.nodes.clear();
    for n in &status.nodes {
        s.metrics
            .nodes
            .get_or_create(&vec![("state".to_string(), n.state.clone())])
            .inc();
    }
    s.metrics
        .repair_backlog_bytes
        .set(status.backlog_bytes as i64);
    s.metrics
        .repair_tasks_in_flight
        .set(status.tasks_in_flight as i64);
    Ok(status)
}

async fn repair_poll(
    State(s): State<Arc<AppState>>,
    Json(poll): Json<weft_common::repair::RepairPoll>,
) -> Result<Json<weft_common::repair::RepairAssignment>, ApiError> {
    // Tasks are planned by the leader; a follower redirects.
    ensure_serving_leader(&s)?;
    let sm = s.sm.clone();
    let config = tokio::task::spawn_blocking(move || sm.repair_config())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let writers = node_views(&s)
        .await?
        .iter()
        .filter(|v| v.accepts_writes())
        .count();
    s.metrics.repair_finished.inc_by(poll.finished.len() as u64);
    Ok(Json(s.planner.poll(&poll, config, writers)))
}

/// Resets liveness and planning the moment leadership changes hands: a new
/// leader has heard no heartbeats (they went to the old one), so it must
/// count silence from now, not from when it started.
pub(crate) async fn leadership_watch(
    s: Arc<AppState>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut rx = s.raft.metrics();
    let mut leading = false;
    loop {
        let now_leading = {
            let m = rx.borrow_and_update();
            m.state == openraft::ServerState::Leader && m.current_leader == Some(s.id)
        };
        if now_leading != leading {
            leading = now_leading;
            s.planner.reset();
            if leading {
                s.liveness.reset_epoch();
                tracing::info!("leading: liveness reset, durability planner active");
                tokio::spawn(seed_upload_timers(s.clone(), cancel.clone()));
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// Installs this voter's configured upload timers as the cluster's if none
/// are set (a new cluster, or one upgraded from when each voter served its
/// own), retrying while this voter leads. If the cluster already has
/// different ones, says so: the replicated pair is what every process uses,
/// and `weft cluster timers` changes it.
async fn seed_upload_timers(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let mine = s.upload_timers;
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        if ensure_serving_leader(&s).is_err() {
            return;
        }
        let cmd = Command::Request {
            id: weft_common::RequestId::from_random(rand::random()),
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            command: Box::new(Command::SetUploadTimers {
                timers: mine,
                seed: true,
            }),
        };
        match s.writes.write(cmd).await {
            Ok(_) => break,
            Err(e) => tracing::debug!(error = ?e, "seeding the upload timers failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
    let sm = s.sm.clone();
    if let Ok(Ok(Some(cluster))) = tokio::task::spawn_blocking(move || sm.upload_timers()).await {
        if cluster != mine {
            tracing::warn!(
                cluster_upload_max_age_ms = cluster.upload_max_age_ms,
                cluster_gc_grace_ms = cluster.gc_grace_ms,
                config_upload_max_age_ms = mine.upload_max_age_ms,
                config_gc_grace_ms = mine.gc_grace_ms,
                "this metad's configured upload timers differ from the cluster's, which stay in effect; change them with `weft cluster timers --upload-max-age-ms N --gc-grace-ms N`"
            );
        }
    }
}

/// Runs the planner while this metad leads: a scan every interval.
pub(crate) async fn planner_loop(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(s.planner.config().scan_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ensure_serving_leader(&s).is_ok() {
            if let Err(e) = durability_scan(s.clone()).await {
                tracing::warn!(error = %e.1.message, "durability scan failed");
            }
        }
    }
}

async fn heartbeat(
    State(s): State<Arc<AppState>>,
    Json(hb): Json<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    // Liveness lives on the leader, which answers node queries and plans
    // repair: a voter that removed itself or is stepping down must send
    // heartbeats on, or the real leader would think the nodes silent.
    ensure_serving_leader(&s)?;
    s.liveness.record(&hb);
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `/v1/init`: the first voters of a new group.
#[derive(serde::Deserialize)]
pub struct InitRequest {
    /// Raft id → address.
    pub members: BTreeMap<RaftNodeId, String>,
}

async fn init(
    State(s): State<Arc<AppState>>,
    Json(req): Json<InitRequest>,
) -> Result<StatusCode, ApiError> {
    let members: BTreeMap<RaftNodeId, BasicNode> = req
        .members
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    s.raft.initialize(members).await.map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            RpcErrorCode::BadRequest,
            format!("cannot initialize: {e}"),
        )
    })?;
    Ok(StatusCode::NO_CONTENT)
}

fn membership_error(e: RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>) -> ApiError {
    match e {
        // openraft answers a lost leadership this way even after the change
        // was proposed: the outcome is unknown, not "not applied".
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RpcErrorCode::OutcomeUnknown,
                "leadership changed during the membership change; check `weft cluster metad list` before retrying",
            );
            e.1.leader_addr = f.leader_node.map(|n| n.addr);
            e
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ApiError::new(
            StatusCode::CONFLICT,
            RpcErrorCode::BadRequest,
            format!("membership change refused: {e}"),
        ),
        e => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcErrorCode::OutcomeUnknown,
            format!("membership change failed after it was proposed ({e}); check `weft cluster metad list` before retrying"),
        ),
    }
}

/// Adds a voter: first as a learner, waiting until it has caught up (by log
/// or snapshot), then promoted through a joint configuration.
async fn add_member(
    State(s): State<Arc<AppState>>,
    Json(req): Json<AddMember>,
) -> Result<Json<RaftStatus>, ApiError> {
    ensure_serving_leader(&s)?;
    tracing::info!(id = req.id, addr = %req.addr, "adding metad voter");
    s.raft
        .add_learner(
            req.id,
            BasicNode {
                addr: req.addr.clone(),
            },
            true,
        )
        .await
        .map_err(membership_error)?;
    let ids: std::collections::BTreeSet<u64> = [req.id].into();
    s.raft
        .change_membership(ChangeMembers::AddVoterIds(ids), false)
        .await
        .map_err(membership_error)?;
    Ok(Json(status(&s)))
}

/// Makes this leader give up leadership: it stops sending heartbeats and
/// stops campaigning until another voter has been elected (after one election
/// timeout), then resumes as a follower. openraft 0.9 has no targeted leader
/// transfer; this is the step-down half of one.
async fn step_down(s: &AppState) -> Result<Option<BasicNode>, ApiError> {
    use std::sync::atomic::Ordering;
    if s.stepping_down.swap(true, Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcErrorCode::Unavailable,
            "already stepping down",
        ));
    }
    let rc = s.raft.runtime_config();
    rc.heartbeat(false);
    rc.elect(false);
    let id = s.id;
    let waited = s
        .raft
        .wait(Some(std::time::Duration::from_secs(10)))
        .metrics(
            |m| m.current_leader.is_some() && m.current_leader != Some(id),
            "another voter is elected",
        )
        .await;
    rc.heartbeat(true);
    rc.elect(true);
    s.stepping_down.store(false, Ordering::SeqCst);
    let m = waited.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RpcErrorCode::Unavailable,
            format!("no other voter took over leadership: {e}"),
        )
    })?;
    let leader = m
        .current_leader
        .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
    tracing::info!(new_leader = ?m.current_leader, "stepped down as metad leader");
    Ok(leader)
}

async fn leader_step_down(State(s): State<Arc<AppState>>) -> Result<Json<RaftStatus>, ApiError> {
    ensure_serving_leader(&s)?;
    step_down(&s).await?;
    Ok(Json(status(&s)))
}

/// Removes a voter (it stops receiving the log once the change commits). To
/// remove the leader itself, it first steps down and redirects the caller to
/// the new leader, which then removes it: a leader that removes itself trips
/// openraft 0.9.
async fn remove_member_self_check(s: &AppState, id: u64) -> Result<(), ApiError> {
    if id == s.id {
        let leader = step_down(s).await?;
        return Err(ApiError::not_leader(leader));
    }
    Ok(())
}

/// Removes a voter (it stops receiving the log once the change commits).
async fn remove_member(
    State(s): State<Arc<AppState>>,
    Json(req): Json<RemoveMember>,
) -> Result<Json<RaftStatus>, ApiError> {
    ensure_serving_leader(&s)?;
    remove_member_self_check(&s, req.id).await?;
    tracing::info!(id = req.id, "removing metad voter");
    let ids: std::collections::BTreeSet<u64> = [req.id].into();
    s.raft
        .change_membership(ChangeMembers::RemoveVoters(ids), false)
        .await
        .map_err(membership_error)?;
    Ok(Json(status(&s)))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Result<String, ApiError> {
    s.metrics
        .commands_queued
        .set(i64::try_from(s.writes.queued()).unwrap_or(i64::MAX));
    let mut out = String::new();
    encode(&mut out, &s.metrics.registry).map_err(ApiError::internal)?;
    Ok(out)
}
