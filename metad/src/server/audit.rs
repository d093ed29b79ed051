//! The audit chain's loops on a voter (docs/audit.md): the leader signs a
//! checkpoint of the chain's head now and then, and every voter sends the
//! refusals it saw to the chain, through the leader.

use std::sync::Arc;
use weft_common::audit::{parse_hash, Actor};
use weft_common::rpc::Command;

use super::{ensure_serving_leader, AppState};

/// A request wrapping `command`, proposed by this voter itself.
pub(super) fn own_request(s: &AppState, command: Command) -> Command {
    Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT,
        id: weft_common::RequestId::from_random(weft_common::effects::random()),
        at_ms: crate::server::now_ms(),
        command: Box::new(command),
        actor: Some(Actor {
            principal: None,
            via: format!("metad {}", s.id),
        }),
    }
}

/// While this voter leads and holds a master key: every interval, if the
/// chain grew since the newest checkpoint, signs its head and commits the
/// checkpoint. A checkpoint that loses a race with new entries is still
/// valid (it covers the entry it names); one whose entry no longer holds
/// the signed hash is refused by apply.
pub(crate) async fn audit_checkpoints(
    s: Arc<AppState>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let Some(sealer) = s.sealer.clone() else {
        tracing::warn!("no master key: the audit chain is linked but no checkpoint is signed");
        return;
    };
    let mut tick = tokio::time::interval(s.audit_checkpoint_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ensure_serving_leader(&s).is_err() {
            continue;
        }
        let sm = s.sm.clone();
        let info = match weft_common::effects::spawn_blocking(move || sm.audit_info()).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "audit checkpoint: reading the chain failed");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit checkpoint: the read task failed");
                continue;
            }
        };
        if info.head <= info.checkpointed_through {
            continue;
        }
        let Some(hash) = parse_hash(&info.head_hash) else {
            continue;
        };
        let checkpoint = sealer
            .checkpoint_signer()
            .sign(info.head, &hash, crate::server::now_ms());
        let cmd = own_request(&s, Command::AuditCheckpoint { checkpoint });
        if let Err(e) = s.writes.write(cmd).await {
            tracing::debug!(error = ?e, "audit checkpoint not committed; the next interval tries again");
        }
    }
}

/// Sends this voter's refusals to the chain: proposed directly while it
/// leads, forwarded to the leader otherwise.
pub(crate) async fn audit_reports(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let reporter = s.audit.clone();
    reporter
        .run(
            move |request| {
                let s = s.clone();
                async move { send(&s, request).await }
            },
            cancel,
        )
        .await
}

/// Records an administrative action that is not itself a command (a
/// membership change) once it is decided, through the leader (this voter
/// may just have stepped down), in the background: the caller's answer
/// does not wait for it. Every attempt sends the same request, so metad
/// records it once however often an answer is lost; after a minute of
/// failures it is given up, loudly.
pub(super) fn record_admin(
    s: &Arc<AppState>,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
) {
    let event = weft_common::audit::AuditEvent {
        at_ms: crate::server::now_ms(),
        kind: weft_common::audit::EventKind::Admin,
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        count: 1,
    };
    let request = Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT,
        id: weft_common::RequestId::from_random(weft_common::effects::random()),
        at_ms: crate::server::now_ms(),
        command: Box::new(Command::Audit {
            events: vec![event.clone()],
        }),
        actor: None,
    };
    let s = s.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut backoff = std::time::Duration::from_millis(200);
        loop {
            let attempt = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                send(&s, request.clone()),
            )
            .await;
            if matches!(attempt, Ok(Ok(()))) {
                return;
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                tracing::error!(action = %event.action, target = %event.target, actor = %event.actor, outcome = %event.outcome, "an administrative action could not be recorded in the audit chain within a minute");
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        }
    });
}

/// Proposes `command` (a request, or a bare command this wraps in one)
/// while this voter leads, or forwards it to the leader.
async fn send(s: &Arc<AppState>, command: Command) -> Result<(), String> {
    if ensure_serving_leader(s).is_ok() {
        let request = match command {
            Command::Request { id, command, .. } => Command::Request {
                format: weft_common::rpc::COMMAND_FORMAT,
                id,
                at_ms: crate::server::now_ms(),
                command,
                actor: Some(Actor {
                    principal: None,
                    via: format!("metad {}", s.id),
                }),
            },
            bare => own_request(s, bare),
        };
        return s
            .writes
            .write(request)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"));
    }
    let leader = {
        let m = s.raft.metrics().borrow().clone();
        m.current_leader
            .filter(|l| *l != s.id)
            .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
    };
    let Some(leader) = leader else {
        return Err("no leader known".into());
    };
    // The leader stamps this voter's certificate as the proposer.
    weft_client::MetadClient::with_transport(vec![leader.addr], s.peers.clone())
        .with_deadline(std::time::Duration::from_secs(10))
        .command(&command)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
