//! Reporting authentication failures and denials to the audit chain
//! (docs/audit.md), batched and rate-limited.
//!
//! A refusal is cheap to cause, so a flood must not grow the chain or
//! slow raft by the flood's own rate: every refusal a process sees lands
//! in a window where identical ones (same kind, caller, action, target and
//! reason) only raise a count, at most [`DISTINCT_MAX`] distinct ones are
//! kept, and anything past that is counted in one `dropped` event. The
//! window is flushed as one raft command every [`FLUSH_EVERY`]: at most
//! `DISTINCT_MAX + 1` entries per process per flush, whatever the flood.
//! Reporting never waits: the lock is held for a map update only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_common::audit::{AuditEvent, EventKind};

/// Distinct events kept per window.
pub const DISTINCT_MAX: usize = 64;
/// How often a window is flushed.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Windows kept while metad cannot be reached, before the oldest is
/// dropped (counted): a lost metad must not grow a process's memory.
const PENDING_MAX: usize = 8;

type Key = (EventKind, String, String, String, String);

#[derive(Default)]
struct Window {
    events: HashMap<Key, AuditEvent>,
    order: Vec<Key>,
    dropped: u64,
    dropped_since_ms: u64,
}

#[derive(Default)]
struct Inner {
    window: Window,
    /// Batches taken but not yet committed (metad unreachable).
    pending: std::collections::VecDeque<Vec<AuditEvent>>,
    lost_batches: u64,
    /// Of those, how many the batch being sent reports.
    lost_in_flight: u64,
}

/// A process's audit reporter; clones share it.
#[derive(Clone, Default)]
pub struct Reporter {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

impl Reporter {
    /// A new, empty reporter.
    pub fn new() -> Reporter {
        Reporter::default()
    }

    /// Records one refusal.
    pub fn report(&self, kind: EventKind, actor: &str, action: &str, target: &str, outcome: &str) {
        let at_ms = weft_common::effects::now_ms();
        let key: Key = (
            kind,
            actor.to_string(),
            action.to_string(),
            target.to_string(),
            outcome.to_string(),
        );
        let mut inner = self.inner.lock().expect("audit reporter lock");
        let w = &mut inner.window;
        if let Some(e) = w.events.get_mut(&key) {
            e.count += 1;
            return;
        }
        if w.events.len() >= DISTINCT_MAX {
            if w.dropped == 0 {
                w.dropped_since_ms = at_ms;
            }
            w.dropped += 1;
            return;
        }
        w.order.push(key.clone());
        w.events.insert(
            key,
            AuditEvent {
                at_ms,
                kind,
                actor: actor.to_string(),
                action: action.to_string(),
                target: target.to_string(),
                outcome: outcome.to_string(),
                count: 1,
            },
        );
    }

    /// The oldest batch waiting to be sent (the current window is closed
    /// into one first), or `None` when there is nothing to send. Call
    /// [`sent`](Self::sent) once it is committed.
    pub fn next_batch(&self) -> Option<Vec<AuditEvent>> {
        let mut inner = self.inner.lock().expect("audit reporter lock");
        let w = std::mem::take(&mut inner.window);
        if !w.order.is_empty() || w.dropped > 0 {
            let mut events = w.events;
            let mut batch: Vec<AuditEvent> =
                w.order.iter().filter_map(|k| events.remove(k)).collect();
            if w.dropped > 0 {
                batch.push(AuditEvent {
                    at_ms: w.dropped_since_ms,
                    kind: EventKind::Dropped,
                    actor: "rate limit".into(),
                    action: "report".into(),
                    target: format!("{DISTINCT_MAX} distinct events per window"),
                    outcome: "dropped: more distinct refusals than a window keeps".into(),
                    count: w.dropped,
                });
            }
            if inner.pending.len() >= PENDING_MAX {
                inner.pending.pop_front();
                inner.lost_batches += 1;
            }
            inner.pending.push_back(batch);
        }
        if inner.pending.is_empty() && inner.lost_batches == 0 {
            return None;
        }
        let mut batch = inner.pending.front().cloned().unwrap_or_default();
        inner.lost_in_flight = inner.lost_batches;
        if inner.lost_batches > 0 {
            // Said in the chain itself, once metad answers again.
            batch.insert(
                0,
                AuditEvent {
                    at_ms: weft_common::effects::now_ms(),
                    kind: EventKind::Dropped,
                    actor: "rate limit".into(),
                    action: "report".into(),
                    target: "batches waiting for metad".into(),
                    outcome: "dropped: metad was unreachable for too long".into(),
                    count: inner.lost_batches,
                },
            );
        }
        Some(batch)
    }

    /// The batch [`next_batch`](Self::next_batch) returned was committed.
    pub fn sent(&self) {
        let mut inner = self.inner.lock().expect("audit reporter lock");
        inner.pending.pop_front();
        inner.lost_batches -= std::mem::take(&mut inner.lost_in_flight);
    }

    /// Sends batches with `send` every [`FLUSH_EVERY`] until `cancel`. A
    /// batch whose send fails stays first in line (a retry may append it
    /// twice: the chain then holds it twice, which overstates, never hides).
    pub async fn run<F, Fut>(self, send: F, cancel: tokio_util::sync::CancellationToken)
    where
        F: Fn(Vec<AuditEvent>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            while let Some(batch) = self.next_batch() {
                match send(batch).await {
                    Ok(()) => self.sent(),
                    Err(e) => {
                        tracing::debug!(error = %e, "audit report not sent; kept for the next flush");
                        break;
                    }
                }
            }
        }
    }
}

/// Who the current request acts for, once authenticated: a cell the
/// request's task carries, which the authentication step fills and the
/// metad client reads when it wraps a command, so every command a request
/// causes names its principal without threading it through every call.
#[derive(Clone, Debug, Default)]
pub struct PrincipalSlot(Arc<Mutex<Option<String>>>);

impl PrincipalSlot {
    /// An empty slot.
    pub fn new() -> PrincipalSlot {
        PrincipalSlot::default()
    }

    /// Who it holds, if anyone.
    pub fn get(&self) -> Option<String> {
        self.0.lock().expect("principal lock").clone()
    }
}

tokio::task_local! {
    static PRINCIPAL: PrincipalSlot;
}

/// The header a metad request names its principal in, for the calls that
/// are not commands (membership changes). metad records it as the caller's
/// word, beside what the caller's certificate proved.
pub const PRINCIPAL_HEADER: &str = "x-weft-principal";

/// Runs `f` with `slot` as its request's principal slot.
pub async fn acting_for<F: std::future::Future>(slot: PrincipalSlot, f: F) -> F::Output {
    PRINCIPAL.scope(slot, f).await
}

/// Names the current request's principal (no-op outside
/// [`acting_for`]).
pub fn set_principal(principal: String) {
    let _ = PRINCIPAL.try_with(|s| *s.0.lock().expect("principal lock") = Some(principal));
}

/// The current request's principal, if it has one.
pub fn principal() -> Option<String> {
    PRINCIPAL.try_with(|s| s.get()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_refusals_are_counted_not_repeated() {
        let r = Reporter::new();
        for _ in 0..1000 {
            r.report(
                EventKind::Denial,
                "datad at 1.2.3.4",
                "POST /v1/query",
                "keys",
                "denied",
            );
        }
        let batch = r.next_batch().unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].count, 1000);
    }

    #[test]
    fn a_flood_of_distinct_refusals_is_bounded_and_counted() {
        let r = Reporter::new();
        for i in 0..10_000 {
            r.report(
                EventKind::AuthFailure,
                &format!("caller {i}"),
                "GET",
                "/",
                "bad",
            );
        }
        let batch = r.next_batch().unwrap();
        assert_eq!(batch.len(), DISTINCT_MAX + 1);
        let dropped = batch.last().unwrap();
        assert_eq!(dropped.kind, EventKind::Dropped);
        assert_eq!(dropped.count, 10_000 - DISTINCT_MAX as u64);
        let counted: u64 = batch.iter().map(|e| e.count).sum();
        assert_eq!(counted, 10_000);
    }

    #[test]
    fn an_unsent_batch_is_offered_again_and_pending_batches_are_bounded() {
        let r = Reporter::new();
        r.report(EventKind::Denial, "a", "b", "c", "d");
        let first = r.next_batch().unwrap();
        // Not sent: offered again, and a new window queues behind it.
        r.report(EventKind::Denial, "e", "f", "g", "h");
        assert_eq!(r.next_batch().unwrap(), first);
        r.sent();
        assert_eq!(r.next_batch().unwrap()[0].actor, "e");
        r.sent();
        assert!(r.next_batch().is_none());
        for i in 0..(PENDING_MAX + 3) {
            r.report(EventKind::Denial, &format!("w{i}"), "b", "c", "d");
            r.next_batch();
        }
        let head = r.next_batch().unwrap();
        assert_eq!(head[0].kind, EventKind::Dropped);
        assert_eq!(head[0].count, 3);
    }
}
