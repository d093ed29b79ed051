//! The leader's transition queue (see `crate::transition`): the lifecycle
//! scan offers the moves it finds due, data nodes take them as tasks when
//! they poll (`POST /v1/transition/poll`), and their outcomes come back
//! with the next poll.
//!
//! The queue is the leader's memory, bounded at [`QUEUE_MAX`]: a new
//! leader starts empty, and its lifecycle passes find the same moves due
//! again (nothing committed is lost, and a commit re-checks everything).
//! As a new leader resumes its predecessor's pass (the cursor is
//! replicated), moves offered before the cursor wait for the next pass, a
//! quarter day at most; class migrations' walks start over at once. A task handed out and not reported within its lease is
//! forgotten; if its worker still commits, the compare-and-set decides,
//! and a later pass re-offers it otherwise. Planning happens when a task is
//! handed out, so it sees the nodes and the placement as they are then.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use tokio::time::Instant;
use weft_common::lifecycle::Step;
use weft_common::rpc::{CommandResult, Refusal};
use weft_common::transition::{
    TransitionAssignment, TransitionOutcome, TransitionPoll, TransitionStats,
};
use weft_common::NodeId;

use super::{ensure_serving_leader, ApiError, AppState};
use crate::transition::Planned;

/// Most moves waiting for a data node.
pub const QUEUE_MAX: usize = 10_000;
/// Most tasks one poll hands out.
const TASKS_PER_POLL: u32 = 4;
/// The shortest lease of a task.
const LEASE_MIN: Duration = Duration::from_secs(120);

/// One move the scan found due.
#[derive(Clone, Debug)]
struct Queued {
    bucket: String,
    key: String,
    step: Step,
    at_ms: u64,
}

impl Queued {
    /// Names the version moved, so it is queued once.
    fn ident(&self) -> (String, String, String) {
        let v = match &self.step {
            Step::TransitionCurrent { version_id, .. } => version_id.to_string(),
            Step::TransitionNoncurrent { label, .. } => label.clone(),
            Step::Migrate { version_id, .. } => version_id.to_string(),
            other => format!("{other:?}"),
        };
        (self.bucket.clone(), self.key.clone(), v)
    }
}

struct Running {
    queued: Queued,
    node: NodeId,
    deadline: Instant,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Queued>,
    known: BTreeSet<(String, String, String)>,
    running: BTreeMap<u64, Running>,
    next_id: u64,
    stats: TransitionStats,
    last_error: Option<String>,
}

/// The queue and its counters.
pub struct Transitions {
    inner: Mutex<Inner>,
}

impl Default for Transitions {
    fn default() -> Self {
        let t = Transitions {
            inner: Mutex::default(),
        };
        t.reset();
        t
    }
}

impl Transitions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("transitions lock")
    }

    /// Queues a move; false when it is queued or running already, or the
    /// queue is full (a later pass offers it again).
    pub fn offer(&self, bucket: &str, key: &str, step: Step, at_ms: u64) -> bool {
        let q = Queued {
            bucket: bucket.to_string(),
            key: key.to_string(),
            step,
            at_ms,
        };
        let mut g = self.lock();
        if g.queue.len() >= QUEUE_MAX || !g.known.insert(q.ident()) {
            return false;
        }
        g.queue.push_back(q);
        true
    }

    /// Whether a move to (or within) `class` is queued or running.
    pub fn has_class(&self, class: &str) -> bool {
        let of = |q: &Queued| match &q.step {
            Step::TransitionCurrent { class: c, .. }
            | Step::TransitionNoncurrent { class: c, .. }
            | Step::Migrate { class: c, .. } => c == class,
            // A tier move is placed by its tier's class (or IT's own).
            Step::Tier { to, .. } => match to {
                None => class == weft_common::lifecycle::tiering::IT_CLASS,
                Some(t) => t.placement_classes().contains(&class),
            },
            _ => false,
        };
        let g = self.lock();
        g.queue.iter().any(of) || g.running.values().any(|r| of(&r.queued))
    }

    /// Forgets everything: this voter stopped leading. Task ids go on from
    /// a random point, so a late outcome of a task from an earlier term
    /// cannot settle a new task that happens to share its number.
    pub fn reset(&self) {
        *self.lock() = Inner {
            next_id: weft_common::effects::random::<u64>() >> 16,
            stats: TransitionStats {
                since_ms: crate::server::now_ms(),
                ..TransitionStats::default()
            },
            ..Inner::default()
        };
    }

    /// The counters, with the queue's and the running tasks' sizes.
    pub fn stats(&self) -> (TransitionStats, Option<String>) {
        let g = self.lock();
        let mut s = g.stats;
        s.queued = g.queue.len() as u64;
        s.running = g.running.len() as u64;
        (s, g.last_error.clone())
    }

    fn finish(&self, node: NodeId, outcomes: &[TransitionOutcome]) {
        let mut g = self.lock();
        for o in outcomes {
            // Only the node that holds the task reports it.
            if g.running.get(&o.id).is_none_or(|r| r.node != node) {
                continue;
            }
            let r = g.running.remove(&o.id).expect("checked");
            g.known.remove(&r.queued.ident());
            if o.ok {
                g.stats.done += 1;
                g.stats.bytes += o.bytes;
            } else if o.superseded {
                g.stats.superseded += 1;
            } else {
                g.stats.failed += 1;
                g.last_error = o.error.clone();
            }
        }
        let now = Instant::now();
        let expired: Vec<u64> = g
            .running
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let r = g.running.remove(&id).expect("listed");
            g.known.remove(&r.queued.ident());
            g.stats.failed += 1;
            g.last_error = Some(format!(
                "a transition of {}/{} given to node {} was not reported within its lease",
                r.queued.bucket, r.queued.key, r.node
            ));
        }
    }

    fn take(&self, n: u32) -> Vec<(u64, Queued)> {
        let mut g = self.lock();
        let mut out = vec![];
        while out.len() < n as usize {
            let Some(q) = g.queue.pop_front() else { break };
            g.next_id += 1;
            out.push((g.next_id, q));
        }
        out
    }

    fn start(&self, id: u64, queued: Queued, node: NodeId, lease: Duration) {
        self.lock().running.insert(
            id,
            Running {
                queued,
                node,
                deadline: Instant::now() + lease,
            },
        );
    }

    /// Settles a running task by id (a relabel committed by the leader).
    fn settle_running(&self, id: u64, f: impl FnOnce(&mut TransitionStats), error: Option<String>) {
        let mut g = self.lock();
        if let Some(r) = g.running.remove(&id) {
            g.known.remove(&r.queued.ident());
        }
        f(&mut g.stats);
        if error.is_some() {
            g.last_error = error;
        }
    }

    fn settle(&self, queued: &Queued, f: impl FnOnce(&mut TransitionStats), error: Option<String>) {
        let mut g = self.lock();
        g.known.remove(&queued.ident());
        f(&mut g.stats);
        if error.is_some() {
            g.last_error = error;
        }
    }
}

/// `POST /v1/transition/poll`: a data node reports finished tasks and
/// takes new ones.
pub(crate) async fn transition_poll(
    State(s): State<Arc<AppState>>,
    caller: Option<axum::Extension<axum::extract::ConnectInfo<weft_client::peer::Peer>>>,
    Json(poll): Json<TransitionPoll>,
) -> Result<Json<TransitionAssignment>, ApiError> {
    super::api::check_node(&s, &caller, poll.node, "POST /v1/transition/poll")?;
    ensure_serving_leader(&s)?;
    s.transitions.finish(poll.node, &poll.finished);
    let sm = s.sm.clone();
    let config = weft_common::effects::spawn_blocking(move || sm.repair_config())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let views = super::api::node_views(&s).await?;
    // Transitions get half the repair rate, shared by the data nodes
    // running one (each node runs one at a time; a node learns its share
    // again at every poll).
    // At most as many moves at once as leave each 6 MiB/s (1 MiB/s per
    // shard stream of a 4+2 segment: what a shard PUT's deadline needs).
    let budget = config.rate_bytes_per_sec / 2;
    let cap = (budget / (6 << 20)).max(1);
    let running = s.transitions.stats().0.running;
    let busy = (running + 1).min(cap);
    let rate = (budget / busy).max(1 << 20);
    let slots =
        u64::from(poll.free_slots.min(TASKS_PER_POLL)).min(cap.saturating_sub(running)) as u32;
    let mut tasks = vec![];
    let views = Arc::new(views);
    // One at a time: a move taken from the queue is always settled or
    // started, whatever fails after it was taken.
    for _ in 0..slots {
        let Some((id, q)) = s.transitions.take(1).pop() else {
            break;
        };
        let (sm, v, q2) = (s.sm.clone(), views.clone(), q.clone());
        let planned = weft_common::effects::spawn_blocking(move || {
            crate::transition::plan(
                &sm,
                &v,
                &q2.bucket,
                &q2.key,
                &q2.step,
                q2.at_ms,
                id,
                weft_common::effects::random,
            )
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        match planned {
            Ok(Planned::Task(task)) => {
                // Twice the time the bytes take at this node's rate.
                let shard_bytes = task.size.saturating_mul(2);
                let lease = LEASE_MIN + Duration::from_secs(shard_bytes / rate * 2);
                s.transitions.start(id, q, poll.node, lease);
                tasks.push(*task);
            }
            Ok(Planned::Relabel(cmd)) => {
                // Committed on its own task (a poll that times out must not
                // leave the move neither settled nor queued), and running
                // until it settles, so a class migration waits for it.
                let what = format!("relabel of {}/{}", q.bucket, q.key);
                s.transitions.start(id, q, poll.node, LEASE_MIN);
                let s = s.clone();
                tokio::spawn(async move {
                    let result = s.writes.write(super::audit::own_request(&s, *cmd)).await;
                    let t = &s.transitions;
                    match result {
                        Ok(CommandResult::Released { .. }) => {
                            t.settle_running(id, |st| st.relabeled += 1, None)
                        }
                        Ok(CommandResult::Refused {
                            refusal: Refusal::Stale,
                        }) => t.settle_running(id, |st| st.superseded += 1, None),
                        other => t.settle_running(
                            id,
                            |st| st.failed += 1,
                            Some(format!("{what}: {other:?}")),
                        ),
                    }
                });
            }
            Ok(Planned::Gone) => s.transitions.settle(&q, |st| st.superseded += 1, None),
            Ok(Planned::Unplaceable(why)) => s.transitions.settle(
                &q,
                |st| st.failed += 1,
                Some(format!("{}/{}: {why}", q.bucket, q.key)),
            ),
            Err(e) => s.transitions.settle(
                &q,
                |st| st.failed += 1,
                Some(format!("planning {}/{}: {e}", q.bucket, q.key)),
            ),
        }
    }
    Ok(Json(TransitionAssignment {
        tasks,
        rate_bytes_per_sec: rate,
    }))
}
