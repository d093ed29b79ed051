//! Membership administration: initialising a group, adding and removing
//! voters, and a leader stepping down. openraft 0.9 trips on a leader that
//! removes itself, so removing the leader steps it down first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_common::rpc::{AddMember, RaftStatus, RemoveMember, RpcErrorCode};

use super::{ensure_serving_leader, status, ApiError, AppState};
use crate::RaftNodeId;
use weft_client::peer::Peer;

/// Body of `/v1/init`: the first voters of a new group.
#[derive(serde::Deserialize)]
pub struct InitRequest {
    /// Raft id → address.
    pub members: BTreeMap<RaftNodeId, String>,
}

pub(super) async fn init(
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

/// Who asked for a membership change, for the audit chain: the principal
/// the caller names, and what its certificate proved.
pub(super) struct Asker {
    caller: Option<Peer>,
    principal: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Asker {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Asker {
            caller: parts
                .extensions
                .get::<axum::extract::ConnectInfo<Peer>>()
                .map(|c| c.0.clone()),
            principal: parts
                .headers
                .get(weft_client::audit_report::PRINCIPAL_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(256).collect()),
        })
    }
}

/// Records a membership change and its outcome in the audit chain.
fn record<T>(
    s: &Arc<AppState>,
    asker: Asker,
    action: &str,
    target: String,
    result: &Result<T, ApiError>,
) {
    let actor = weft_common::audit::Actor {
        // Only a gateway vouches for a user (as for commands).
        principal: super::access::vouched_principal(asker.principal, asker.caller.as_ref()),
        via: weft_client::peer::describe_host(asker.caller.as_ref()),
    };
    let outcome = match result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("refused: {}", e.1.message),
    };
    super::audit::record_admin(s, &actor.to_string(), action, &target, &outcome);
}

/// Adds a voter: first as a learner, waiting until it has caught up (by log
/// or snapshot), then promoted through a joint configuration.
pub(super) async fn add_member(
    State(s): State<Arc<AppState>>,
    asker: Asker,
    Json(req): Json<AddMember>,
) -> Result<Json<RaftStatus>, ApiError> {
    let target = format!("metad {} at {}", req.id, req.addr);
    let result = add(&s, req).await;
    record(&s, asker, "add_metad_voter", target, &result);
    result
}

async fn add(s: &Arc<AppState>, req: AddMember) -> Result<Json<RaftStatus>, ApiError> {
    ensure_serving_leader(s)?;
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
    Ok(Json(status(s)))
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

pub(super) async fn leader_step_down(
    State(s): State<Arc<AppState>>,
    asker: Asker,
) -> Result<Json<RaftStatus>, ApiError> {
    let result = match ensure_serving_leader(&s) {
        Ok(()) => step_down(&s).await.map(|_| Json(status(&s))),
        Err(e) => Err(e),
    };
    record(
        &s,
        asker,
        "metad_step_down",
        format!("metad {}", s.id),
        &result,
    );
    result
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
pub(super) async fn remove_member(
    State(s): State<Arc<AppState>>,
    asker: Asker,
    Json(req): Json<RemoveMember>,
) -> Result<Json<RaftStatus>, ApiError> {
    let target = format!("metad {}", req.id);
    let result = remove(&s, req).await;
    // A leader removing itself steps down and redirects the caller, who
    // asks the new leader: that attempt is the one recorded as done.
    record(&s, asker, "remove_metad_voter", target, &result);
    result
}

async fn remove(s: &Arc<AppState>, req: RemoveMember) -> Result<Json<RaftStatus>, ApiError> {
    ensure_serving_leader(s)?;
    remove_member_self_check(s, req.id).await?;
    tracing::info!(id = req.id, "removing metad voter");
    let ids: std::collections::BTreeSet<u64> = [req.id].into();
    s.raft
        .change_membership(ChangeMembers::RemoveVoters(ids), false)
        .await
        .map_err(membership_error)?;
    Ok(Json(status(s)))
}
