//! Admission control for the S3 listener: caps on open connections,
//! requests in flight and body bytes in flight.
//!
//! Past a cap the gateway answers `503 SlowDown` at once rather than
//! queueing: SDKs retry SlowDown with exponential backoff, so overload
//! spreads out in time instead of piling up as memory, open files and
//! timeouts for every client. Each cap is a counter that is only ever raised
//! by a compare-and-swap that checks the cap, so it never exceeds it; the
//! permits handed out lower it again when dropped, whatever way a request
//! ends (finished, failed, client gone, connection cut at shutdown).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use s3s::S3ErrorCode;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::config::Limits;

/// Which cap turned a client away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `max_connections`.
    Connections,
    /// `max_requests`.
    Requests,
    /// `max_inflight_bytes`.
    Bytes,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Connections => "connections",
            Reason::Requests => "requests",
            Reason::Bytes => "bytes",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Reason::Connections => "max_connections",
            Reason::Requests => "max_requests",
            Reason::Bytes => "max_inflight_bytes",
        }
    }
}

/// Label of the rejection counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// One capped quantity: its current value, its high-water mark, and the
/// gauges that show both.
struct Capped {
    cap: u64,
    now: AtomicU64,
    high: AtomicU64,
    gauge: Gauge,
    high_gauge: Gauge,
}

impl Capped {
    fn new(cap: u64) -> Self {
        Capped {
            cap,
            now: AtomicU64::new(0),
            high: AtomicU64::new(0),
            gauge: Gauge::default(),
            high_gauge: Gauge::default(),
        }
    }

    /// Adds `n` unless that would pass the cap.
    fn try_add(&self, n: u64) -> bool {
        let added = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(n).filter(|next| *next <= self.cap)
            });
        match added {
            Ok(prev) => {
                // inc/dec, never set: a set from a value read before another
                // thread's update could leave the gauge off for good.
                self.gauge.inc_by(n as i64);
                let now = prev + n;
                let before = self.high.fetch_max(now, Ordering::AcqRel);
                if now > before {
                    // The high-water gauge only ever grows, by the amount
                    // this update raised the mark.
                    self.high_gauge.inc_by((now - before) as i64);
                }
                true
            }
            Err(_) => false,
        }
    }

    fn sub(&self, n: u64) {
        if n == 0 {
            return;
        }
        let prev = self.now.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(prev >= n, "admission counter went below zero");
        self.gauge.dec_by(n as i64);
    }
}

struct Inner {
    connections: Capped,
    requests: Capped,
    bytes: Capped,
    /// Most bytes one request is charged: see [`Admission::charge`].
    charge_max: u64,
    /// Connections being answered 503 after the connection cap was hit.
    rejecting: Capped,
    rejected: Family<ReasonLabel, Counter>,
}

/// The gateway's admission state; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

impl Admission {
    /// Caps from `limits`; a single request is charged at most
    /// `charge_max` bytes (the gateway's segment size) and at most the
    /// whole budget.
    pub fn new(limits: Limits, charge_max: u64) -> Self {
        Admission {
            inner: Arc::new(Inner {
                connections: Capped::new(limits.max_connections),
                requests: Capped::new(limits.max_requests),
                bytes: Capped::new(limits.max_inflight_bytes),
                // Capped by the budget too, so a body larger than all of it
                // still runs (alone) instead of being refused forever.
                charge_max: charge_max.min(limits.max_inflight_bytes).max(1),
                // Answering a refused connection costs a task and a socket
                // for up to a few seconds; beyond this many at once (a
                // flood) they are closed unanswered.
                rejecting: Capped::new(limits.max_connections / 4 + 64),
                rejected: Family::default(),
            }),
        }
    }

    /// Registers the gauges and the rejection counter.
    pub fn register(&self, registry: &mut Registry) {
        let i = &self.inner;
        for (name, help, c) in [
            ("connections", "Open S3 client connections", &i.connections),
            (
                "requests_in_flight",
                "S3 requests being served",
                &i.requests,
            ),
            (
                "inflight_bytes",
                "Request and response body bytes in flight, as charged by admission control",
                &i.bytes,
            ),
        ] {
            registry.register(name, help, c.gauge.clone());
            registry.register(
                format!("{name}_high_water"),
                format!("Highest value of {name} since start (never above its cap)"),
                c.high_gauge.clone(),
            );
        }
        registry.register(
            "admission_rejected",
            "Requests and connections answered 503 SlowDown, by the cap that was reached",
            i.rejected.clone(),
        );
    }

    fn count_rejection(&self, reason: Reason) {
        self.inner
            .rejected
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    /// A slot for a new connection, or `None` at `max_connections`.
    pub fn connection(&self) -> Option<ConnectionPermit> {
        if self.inner.connections.try_add(1) {
            Some(ConnectionPermit {
                inner: self.inner.clone(),
            })
        } else {
            self.count_rejection(Reason::Connections);
            None
        }
    }

    /// A slot to answer a refused connection with 503, or `None` when too
    /// many are being answered already (then the connection is just closed).
    pub fn rejecting_connection(&self) -> Option<RejectingPermit> {
        self.inner.rejecting.try_add(1).then(|| RejectingPermit {
            inner: self.inner.clone(),
        })
    }

    /// Bytes a body of `declared` bytes is charged: at most one segment,
    /// since the data paths stream a request segment by segment and never
    /// hold more of it at once. Charging a 5 GiB PUT in full would let one
    /// large upload lock out every other client while holding far less.
    pub fn charge(&self, declared: u64) -> u64 {
        declared.min(self.inner.charge_max)
    }

    /// Admits a request whose body declares `body_bytes`, or says which cap
    /// refused it.
    pub fn request(&self, body_bytes: u64) -> Result<Ticket, Reason> {
        if !self.inner.requests.try_add(1) {
            self.count_rejection(Reason::Requests);
            return Err(Reason::Requests);
        }
        let charge = self.charge(body_bytes);
        if !self.inner.bytes.try_add(charge) {
            self.inner.requests.sub(1);
            self.count_rejection(Reason::Bytes);
            return Err(Reason::Bytes);
        }
        Ok(Ticket {
            inner: self.inner.clone(),
            bytes: charge,
        })
    }

    /// Requests in flight now.
    pub fn requests_in_flight(&self) -> u64 {
        self.inner.requests.now.load(Ordering::Acquire)
    }

    /// Counts a response refused for its body size (see [`Ticket::add_bytes`]).
    pub fn refused_response(&self) {
        self.count_rejection(Reason::Bytes);
    }
}

/// An open connection; dropping it frees the slot.
pub struct ConnectionPermit {
    inner: Arc<Inner>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.inner.connections.sub(1);
    }
}

/// A refused connection being answered.
pub struct RejectingPermit {
    inner: Arc<Inner>,
}

impl Drop for RejectingPermit {
    fn drop(&mut self) {
        self.inner.rejecting.sub(1);
    }
}

/// One admitted request: its request slot and the bytes it is charged.
/// Travels with the response body, so the request counts until its last
/// byte is sent.
pub struct Ticket {
    inner: Arc<Inner>,
    bytes: u64,
}

impl Ticket {
    /// Returns the bytes charged for the request body (once it is read).
    pub fn release_bytes(&mut self) {
        self.inner.bytes.sub(self.bytes);
        self.bytes = 0;
    }

    /// Charges a response body of `declared` bytes; `false` (nothing
    /// charged) when that would pass `max_inflight_bytes`.
    pub fn add_bytes(&mut self, declared: u64) -> bool {
        let charge = declared.min(self.inner.charge_max);
        if self.inner.bytes.try_add(charge) {
            self.bytes += charge;
            true
        } else {
            false
        }
    }

    /// Returns `n` of the charged bytes (as the body is sent).
    fn release_some(&mut self, n: u64) {
        let n = n.min(self.bytes);
        self.inner.bytes.sub(n);
        self.bytes -= n;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.inner.bytes.sub(self.bytes);
        self.inner.requests.sub(1);
    }
}

/// The S3 error a refused client gets: what happened and what to do.
pub fn slow_down(reason: Reason) -> s3s::HttpResponse {
    let message = format!(
        "the gateway is at its limit of {} ({}); retry with exponential backoff",
        reason.label(),
        reason.setting()
    );
    crate::integrity::error_response(&S3ErrorCode::SlowDown, &message)
}

/// A response body that holds its request's [`Ticket`]: charged bytes are
/// returned as frames go out, and the request slot when the body ends or
/// is dropped (client gone, connection cut).
pub struct AdmittedBody {
    inner: s3s::Body,
    ticket: Option<Ticket>,
}

impl AdmittedBody {
    /// `body`, releasing `ticket` as it is sent.
    pub fn new(inner: s3s::Body, ticket: Option<Ticket>) -> Self {
        AdmittedBody { inner, ticket }
    }
}

impl Body for AdmittedBody {
    type Data = Bytes;
    type Error = <s3s::Body as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(t)) = (frame.data_ref(), this.ticket.as_mut()) {
                    t.release_some(data.len() as u64);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.ticket = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(conns: u64, reqs: u64, bytes: u64) -> Admission {
        Admission::new(
            Limits {
                max_connections: conns,
                max_requests: reqs,
                max_inflight_bytes: bytes,
            },
            1 << 20,
        )
    }

    #[test]
    fn requests_beyond_the_cap_are_refused_and_slots_come_back() {
        let a = admission(10, 2, 1 << 30);
        let t1 = a.request(0).unwrap();
        let t2 = a.request(0).unwrap();
        assert_eq!(a.request(0).err(), Some(Reason::Requests));
        drop(t1);
        let t3 = a.request(0).unwrap();
        drop((t2, t3));
        assert_eq!(a.requests_in_flight(), 0);
        assert_eq!(a.inner.requests.high.load(Ordering::Acquire), 2);
    }

    #[test]
    fn bytes_beyond_the_cap_refuse_and_free_the_request_slot() {
        let a = admission(10, 10, 1000);
        let t = a.request(600).unwrap();
        assert_eq!(a.request(600).err(), Some(Reason::Bytes));
        assert_eq!(a.requests_in_flight(), 1, "refused request holds no slot");
        drop(t);
        assert_eq!(a.inner.bytes.now.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_body_larger_than_a_segment_is_charged_one_segment() {
        let a = admission(10, 10, 3 << 20);
        let t1 = a.request(5 << 30).unwrap();
        let t2 = a.request(5 << 30).unwrap();
        assert_eq!(a.inner.bytes.now.load(Ordering::Acquire), 2 << 20);
        drop((t1, t2));
    }

    #[test]
    fn a_body_larger_than_the_whole_budget_still_runs_alone() {
        let a = admission(10, 10, 1000);
        let t = a.request(5000).unwrap();
        assert_eq!(a.request(1).err(), Some(Reason::Bytes));
        drop(t);
        assert!(a.request(1).is_ok());
    }

    #[test]
    fn response_bytes_are_charged_and_released_as_sent() {
        let a = admission(10, 10, 1000);
        let mut t = a.request(100).unwrap();
        t.release_bytes();
        assert!(t.add_bytes(800));
        assert!(!t.add_bytes(300), "would pass the cap");
        t.release_some(500);
        assert_eq!(a.inner.bytes.now.load(Ordering::Acquire), 300);
        drop(t);
        assert_eq!(a.inner.bytes.now.load(Ordering::Acquire), 0);
        assert_eq!(a.requests_in_flight(), 0);
    }

    #[test]
    fn connections_beyond_the_cap_are_refused() {
        let a = admission(1, 10, 10);
        let c = a.connection().unwrap();
        assert!(a.connection().is_none());
        drop(c);
        assert!(a.connection().is_some());
    }

    #[test]
    fn the_counter_never_passes_the_cap_under_contention() {
        let a = admission(10, 5, 1 << 30);
        std::thread::scope(|s| {
            for _ in 0..8 {
                let a = a.clone();
                s.spawn(move || {
                    for _ in 0..2000 {
                        if let Ok(t) = a.request(0) {
                            assert!(a.requests_in_flight() <= 5);
                            drop(t);
                        }
                    }
                });
            }
        });
        assert_eq!(a.requests_in_flight(), 0);
        assert!(a.inner.requests.high.load(Ordering::Acquire) <= 5);
    }
}
