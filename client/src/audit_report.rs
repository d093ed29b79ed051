//! Reporting authentication failures and denials to the audit chain
//! (docs/audit.md), batched and rate-limited.
//!
//! A refusal is cheap to cause, so a flood must not grow the chain or
//! slow raft by the flood's own rate: every refusal a process sees lands
//! in a window where identical ones (same kind, caller, action, target and
//! reason) only raise a count, at most [`DISTINCT_MAX`] distinct ones of
//! each kind are kept, and anything past that is counted in one `dropped`
//! event. The window is closed every [`FLUSH_EVERY`] and sent as one raft
//! command: at most `2 * DISTINCT_MAX + 2` entries per process per window,
//! whatever the flood (windows kept while metad was unreachable are sent
//! when it answers again, at most [`PENDING_MAX`] of them).
//! Reporting never waits: the lock is held for a map update only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_common::audit::{AuditEvent, EventKind};

/// Distinct events kept per window.
pub const DISTINCT_MAX: usize = 64;
/// How often a window is flushed.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Characters kept of each field of a reported event (metad refuses
/// fields longer than 512 bytes; 128 characters of UTF-8 stay below).
const FIELD_MAX: usize = 128;
/// Windows kept while metad cannot be reached, before the oldest is
/// dropped (counted): a lost metad must not grow a process's memory.
pub const PENDING_MAX: usize = 8;

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
    /// Windows closed but not yet committed (metad unreachable).
    pending: std::collections::VecDeque<Batch>,
    /// Batches dropped since the last window closed.
    lost_batches: u64,
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
        // Paths, keys and reasons come from callers: bounded, so a report
        // stays small and metad accepts it (it refuses longer fields).
        let bounded = |t: &str| t.chars().take(FIELD_MAX).collect::<String>();
        let (actor, action, target, outcome) = (
            bounded(actor),
            bounded(action),
            bounded(target),
            bounded(outcome),
        );
        let key: Key = (
            kind,
            actor.clone(),
            action.clone(),
            target.clone(),
            outcome.clone(),
        );
        let mut inner = self.inner.lock().expect("audit reporter lock");
        let w = &mut inner.window;
        if let Some(e) = w.events.get_mut(&key) {
            e.count += 1;
            return;
        }
        // Each kind has its own budget: a flood of failed authentications
        // (whose claimed keys and paths an attacker picks) cannot push a
        // proven caller's denial out of the window.
        if w.events.keys().filter(|k| k.0 == kind).count() >= DISTINCT_MAX {
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
                actor,
                action,
                target,
                outcome,
                count: 1,
            },
        );
    }

    /// Closes the current window into a batch waiting to be sent (with an
    /// id of its own, which every attempt to send it reuses, so metad
    /// applies it once however often the answer is lost).
    pub fn close_window(&self) {
        let mut inner = self.inner.lock().expect("audit reporter lock");
        let w = std::mem::take(&mut inner.window);
        if w.order.is_empty() && w.dropped == 0 && inner.lost_batches == 0 {
            return;
        }
        let mut events_by_key = w.events;
        let mut events: Vec<AuditEvent> = w
            .order
            .iter()
            .filter_map(|k| events_by_key.remove(k))
            .collect();
        if w.dropped > 0 {
            events.push(AuditEvent {
                at_ms: w.dropped_since_ms,
                kind: EventKind::Dropped,
                actor: "rate limit".into(),
                action: "report".into(),
                target: format!("{DISTINCT_MAX} distinct events per window"),
                outcome: "dropped: more distinct refusals than a window keeps".into(),
                count: w.dropped,
            });
        }
        let carries_lost = std::mem::take(&mut inner.lost_batches);
        if carries_lost > 0 {
            // Said in the chain itself, once metad answers again.
            events.insert(
                0,
                AuditEvent {
                    at_ms: weft_common::effects::now_ms(),
                    kind: EventKind::Dropped,
                    actor: "rate limit".into(),
                    action: "report".into(),
                    target: "batches waiting for metad".into(),
                    outcome: "dropped: metad was unreachable for too long".into(),
                    count: carries_lost,
                },
            );
        }
        if inner.pending.len() >= PENDING_MAX {
            if let Some(lost) = inner.pending.pop_front() {
                inner.lost_batches += 1 + lost.carries_lost;
            }
        }
        inner.pending.push_back(Batch {
            id: weft_common::RequestId::from_random(weft_common::effects::random()),
            events,
            carries_lost,
        });
    }

    /// The oldest batch waiting, as the request that sends it.
    pub fn next_request(&self) -> Option<(weft_common::RequestId, weft_common::rpc::Command)> {
        let inner = self.inner.lock().expect("audit reporter lock");
        let b = inner.pending.front()?;
        Some((
            b.id,
            weft_common::rpc::Command::Request {
                format: weft_common::rpc::COMMAND_FORMAT,
                id: b.id,
                at_ms: weft_common::effects::now_ms(),
                command: Box::new(weft_common::rpc::Command::Audit {
                    events: b.events.clone(),
                }),
                // metad stamps the reporter from its certificate.
                actor: None,
            },
        ))
    }

    /// The batch with this id was committed.
    pub fn sent(&self, id: weft_common::RequestId) {
        let mut inner = self.inner.lock().expect("audit reporter lock");
        if inner.pending.front().is_some_and(|b| b.id == id) {
            inner.pending.pop_front();
        }
    }

    /// Every [`FLUSH_EVERY`] until `cancel`: closes the window and sends the
    /// batches waiting, oldest first, with `send` (which proposes the
    /// request it is given). A batch whose send fails stays first in line,
    /// under the same request id.
    pub async fn run<F, Fut>(self, send: F, cancel: tokio_util::sync::CancellationToken)
    where
        F: Fn(weft_common::rpc::Command) -> Fut,
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
            // One window per tick, whatever arrives meanwhile: the rate
            // the chain grows at is bounded by the tick, not by the flood.
            self.close_window();
            while let Some((id, request)) = self.next_request() {
                match send(request).await {
                    Ok(()) => self.sent(id),
                    Err(e) => {
                        tracing::debug!(error = %e, "audit report not sent; kept for the next flush");
                        break;
                    }
                }
            }
        }
    }
}

impl Reporter {
    /// [`run`](Self::run) with `metad` proposing each batch: how gateways
    /// and data nodes report.
    pub async fn run_to_metad(
        self,
        metad: crate::MetadClient,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        self.run(
            move |request| {
                let metad = metad.clone();
                async move {
                    metad
                        .command(&request)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
            cancel,
        )
        .await
    }
}

/// A closed window waiting to be sent.
struct Batch {
    id: weft_common::RequestId,
    events: Vec<AuditEvent>,
    /// Batches dropped before this one that it reports.
    carries_lost: u64,
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
    use weft_common::rpc::Command;

    fn events_of(r: &Reporter) -> Vec<AuditEvent> {
        match r.next_request().map(|(_, c)| c) {
            Some(Command::Request { command, .. }) => match *command {
                Command::Audit { events } => events,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

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
        r.close_window();
        let batch = events_of(&r);
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
        r.close_window();
        let batch = events_of(&r);
        assert_eq!(batch.len(), DISTINCT_MAX + 1);
        let dropped = batch.last().unwrap();
        assert_eq!(dropped.kind, EventKind::Dropped);
        assert_eq!(dropped.count, 10_000 - DISTINCT_MAX as u64);
        let counted: u64 = batch.iter().map(|e| e.count).sum();
        assert_eq!(counted, 10_000);
    }

    #[test]
    fn a_flood_of_failed_authentications_leaves_room_for_denials() {
        let r = Reporter::new();
        for i in 0..1_000 {
            r.report(
                EventKind::AuthFailure,
                &format!("claimed key K{i}"),
                "GET",
                "/b",
                "bad",
            );
        }
        r.report(EventKind::Denial, "key AK1", "GET", "/secret", "denied");
        r.close_window();
        let batch = events_of(&r);
        assert!(
            batch
                .iter()
                .any(|e| e.kind == EventKind::Denial && e.actor == "key AK1"),
            "the denial was pushed out by the flood"
        );
        assert_eq!(batch.len(), DISTINCT_MAX + 2);
    }

    #[test]
    fn long_fields_are_cut() {
        let r = Reporter::new();
        r.report(
            EventKind::Denial,
            &"a".repeat(10_000),
            "b",
            &"c".repeat(10_000),
            "d",
        );
        r.close_window();
        let e = &events_of(&r)[0];
        assert_eq!(e.actor.chars().count(), FIELD_MAX);
        assert_eq!(e.target.chars().count(), FIELD_MAX);
    }

    #[test]
    fn an_unsent_batch_is_offered_again_under_its_id_and_lost_batches_are_counted() {
        let r = Reporter::new();
        r.report(EventKind::Denial, "a", "b", "c", "d");
        r.close_window();
        let (first, _) = r.next_request().unwrap();
        // Not sent: offered again with the same id, and a new window
        // queues behind it.
        r.report(EventKind::Denial, "e", "f", "g", "h");
        r.close_window();
        assert_eq!(r.next_request().unwrap().0, first);
        r.sent(first);
        assert_eq!(events_of(&r)[0].actor, "e");
        let (second, _) = r.next_request().unwrap();
        r.sent(second);
        assert!(r.next_request().is_none());
        // More windows than are kept: the oldest go, and the next window
        // says how many.
        for i in 0..(PENDING_MAX + 3) {
            r.report(EventKind::Denial, &format!("w{i}"), "b", "c", "d");
            r.close_window();
        }
        let mut lost = 0;
        while let Some((id, _)) = r.next_request() {
            lost += events_of(&r)
                .iter()
                .filter(|e| e.kind == EventKind::Dropped)
                .map(|e| e.count)
                .sum::<u64>();
            r.sent(id);
        }
        r.close_window();
        if let Some((_, _)) = r.next_request() {
            lost += events_of(&r)
                .iter()
                .filter(|e| e.kind == EventKind::Dropped)
                .map(|e| e.count)
                .sum::<u64>();
        }
        assert_eq!(lost, 3);
    }
}
