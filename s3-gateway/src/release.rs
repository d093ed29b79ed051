//! Giving back the shards of replaced, deleted or never-committed versions.
//!
//! **When.** A shard a version no longer refers to may still be read: a GET
//! that began before the version was replaced resolved the old manifest and
//! goes on fetching its stripes. Every read holds a [`ReadLease`] from before
//! it asks metad for the version until its stream ends, and a released shard
//! waits while any lease that began before the release could be reading it
//! (a lease that has resolved its version pins exactly that version's
//! segments; one still resolving pins everything released after it began).
//! A lease stops pinning after `read_lease_max`, the deadline of a read: a
//! reader slower than that meets a missing shard and fails cleanly (never
//! wrong data). Reads through *other* gateways are covered on the data node,
//! which defers deleting a shard until it has not been read for a quiet
//! period (datad's `release` module).
//!
//! **How.** One bounded queue and one worker per data node; the worker sends
//! released shards in batches (`POST /v1/shards/release`), never one task and
//! one connection per object. A full queue drops what does not fit and counts
//! it: those files are unreferenced, and the data nodes' garbage collector
//! removes them after its grace period. Nothing here can delete a shard a
//! committed version still refers to: only shards of versions metad has
//! replaced, or of writes metad never committed, are ever queued.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_client::datad::DatadClient;
use weft_common::manifest::Segment;
use weft_common::rpc::ShardRef;
use weft_common::{NodeId, SegmentId};

use crate::cluster_map::ClusterMap;

/// Settings of the release queues.
#[derive(Clone, Copy, Debug)]
pub struct ReleaseLimits {
    /// Most shards queued per data node; beyond it they are left to GC.
    pub queue_max: usize,
    /// Most shards per release request.
    pub batch_max: usize,
    /// The longest a read pins the shards it reads.
    pub read_lease_max: Duration,
    /// Delay between attempts when a node cannot be reached.
    pub retry_delay: Duration,
    /// Attempts to send one batch before leaving it to GC.
    pub attempts_max: u32,
}

/// Metrics of the release queues.
#[derive(Clone, Default)]
pub struct ReleaseMetrics {
    /// Shards waiting in all queues.
    pub queued: Gauge,
    /// Shards the data nodes took (deleted, deferred for readers, absent).
    pub sent: Counter,
    /// Shards left to garbage collection: queue full, node gone or
    /// unreachable.
    pub dropped: Counter,
    /// Reads holding a lease.
    pub leases: Gauge,
}

// ---- read leases -------------------------------------------------------------

/// When a lease began and, once resolved, the segments it reads.
type LeaseEntry = (Instant, Option<Arc<BTreeSet<SegmentId>>>);

#[derive(Default)]
struct LeaseTable {
    next_id: u64,
    active: BTreeMap<u64, LeaseEntry>,
}

/// The reads in progress on this gateway. Cheap to clone.
#[derive(Clone, Default)]
pub struct ReadLeases {
    table: Arc<Mutex<LeaseTable>>,
    gauge: Gauge,
}

/// One read's hold on the shards it reads; released on drop.
pub struct ReadLease {
    table: Arc<Mutex<LeaseTable>>,
    gauge: Gauge,
    id: u64,
}

impl ReadLeases {
    /// Starts a lease. Take it *before* asking metad for the version.
    pub fn begin(&self) -> ReadLease {
        let mut t = self.table.lock().expect("lease table lock");
        let id = t.next_id;
        t.next_id += 1;
        t.active.insert(id, (Instant::now(), None));
        self.gauge.set(t.active.len() as i64);
        ReadLease {
            table: self.table.clone(),
            gauge: self.gauge.clone(),
            id,
        }
    }

    /// What the leases pin now: the segments of resolved leases that began
    /// before `max_changed` (with the earliest start per segment), and the
    /// start of the oldest unresolved lease. Leases older than `max_age` pin
    /// nothing.
    fn pins(&self, now: Instant, max_age: Duration) -> Pins {
        let t = self.table.lock().expect("lease table lock");
        // Taken under the lock, so every lease begun later started at or
        // after it.
        let mut pins = Pins {
            taken: Instant::now(),
            segments: BTreeMap::new(),
            unresolved_since: None,
        };
        for (started, segments) in t.active.values() {
            if now.duration_since(*started) >= max_age {
                continue;
            }
            match segments {
                None => {
                    pins.unresolved_since = Some(
                        pins.unresolved_since
                            .map_or(*started, |s: Instant| s.min(*started)),
                    )
                }
                Some(segs) => {
                    for s in segs.iter() {
                        let e = pins.segments.entry(*s).or_insert(*started);
                        *e = (*e).min(*started);
                    }
                }
            }
        }
        pins
    }
}

impl ReadLease {
    /// Records the segments this read will fetch.
    pub fn resolve<'a>(&self, segments: impl IntoIterator<Item = &'a Segment>) {
        let set: BTreeSet<SegmentId> = segments.into_iter().map(|s| s.id).collect();
        let mut t = self.table.lock().expect("lease table lock");
        if let Some(entry) = t.active.get_mut(&self.id) {
            entry.1 = Some(Arc::new(set));
        }
    }
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        let mut t = self.table.lock().expect("lease table lock");
        t.active.remove(&self.id);
        self.gauge.set(t.active.len() as i64);
    }
}

/// The leases at one instant. Shared by every node's worker for a short
/// while (see [`PinsCache`]), which is safe because it decides only about
/// shards released before it was taken: a lease begun later pins nothing
/// released before it began.
struct Pins {
    taken: Instant,
    segments: BTreeMap<SegmentId, Instant>,
    unresolved_since: Option<Instant>,
}

impl Pins {
    /// Whether a shard of `segment` released at `released` may go now. A
    /// shard released at or after `taken` waits for a later snapshot.
    fn free(&self, segment: SegmentId, released: Instant) -> bool {
        if released >= self.taken {
            return false;
        }
        if self.unresolved_since.is_some_and(|s| s <= released) {
            return false;
        }
        self.segments.get(&segment).is_none_or(|s| *s > released)
    }
}

/// One snapshot of the leases for every node's worker: walking the lease
/// table costs one pass over every read in flight, so it is done at most
/// once per `reuse`, not once per worker per batch.
#[derive(Default)]
struct PinsCache {
    current: Mutex<Option<Arc<Pins>>>,
}

impl PinsCache {
    fn get(
        &self,
        leases: &ReadLeases,
        now: Instant,
        max_age: Duration,
        reuse: Duration,
    ) -> Arc<Pins> {
        let mut cur = self.current.lock().expect("pins cache lock");
        if let Some(p) = cur.as_ref() {
            if now.saturating_duration_since(p.taken) < reuse {
                return p.clone();
            }
        }
        let fresh = Arc::new(leases.pins(now, max_age));
        *cur = Some(fresh.clone());
        fresh
    }
}

// ---- release queues ----------------------------------------------------------

#[derive(Clone, Copy)]
struct Item {
    shard: ShardRef,
    released: Instant,
    /// Shards of a write never committed: no reader can know them.
    unreferenced: bool,
}

#[derive(Default)]
struct NodeQueue {
    items: VecDeque<Item>,
    notify: Arc<Notify>,
    worker: bool,
}

struct Inner {
    limits: ReleaseLimits,
    datad: DatadClient,
    cluster: ClusterMap,
    leases: ReadLeases,
    pins: PinsCache,
    nodes: Mutex<BTreeMap<NodeId, NodeQueue>>,
    metrics: ReleaseMetrics,
    cancel: CancellationToken,
}

/// The per-node release queues of a gateway. Cheap to clone.
#[derive(Clone)]
pub struct Releaser {
    inner: Arc<Inner>,
}

impl Releaser {
    /// Queues with `limits`, sending through `datad` to the nodes `cluster`
    /// locates, until `cancel` fires.
    pub fn new(
        limits: ReleaseLimits,
        datad: DatadClient,
        cluster: ClusterMap,
        metrics: ReleaseMetrics,
        cancel: CancellationToken,
    ) -> Releaser {
        let leases = ReadLeases {
            table: Arc::default(),
            gauge: metrics.leases.clone(),
        };
        Releaser {
            inner: Arc::new(Inner {
                limits,
                datad,
                cluster,
                leases,
                pins: PinsCache::default(),
                nodes: Mutex::default(),
                metrics,
                cancel,
            }),
        }
    }

    /// The leases reads take.
    pub fn leases(&self) -> &ReadLeases {
        &self.inner.leases
    }

    /// Releases the shards of segments a committed change replaced: each goes
    /// once no read that began before now can still be reading it.
    pub fn replaced(&self, segments: Vec<Segment>) {
        self.enqueue(segments, false);
    }

    /// Releases the shards of segments metad never committed (a failed or
    /// refused write): no reader knows them, so they go at once.
    pub fn unreferenced(&self, segments: Vec<Segment>) {
        self.enqueue(segments, true);
    }

    /// Shards waiting in every queue.
    pub fn queued(&self) -> usize {
        let nodes = self.inner.nodes.lock().expect("release queues lock");
        nodes.values().map(|q| q.items.len()).sum()
    }

    fn enqueue(&self, segments: Vec<Segment>, unreferenced: bool) {
        if segments.is_empty() {
            return;
        }
        let released = Instant::now();
        let mut dropped = 0u64;
        let mut queued = 0i64;
        let mut start = Vec::new();
        {
            let mut nodes = self.inner.nodes.lock().expect("release queues lock");
            for seg in &segments {
                // Placed shards and warm cache copies alike (a copy is the
                // same file name on another node).
                let files = seg
                    .shards
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| n.map(|n| (i, n)))
                    .chain(seg.cache.iter().map(|c| (usize::from(c.index), c.node)));
                for (i, node) in files {
                    let q = nodes.entry(node).or_default();
                    if q.items.len() >= self.inner.limits.queue_max {
                        dropped += 1;
                        continue;
                    }
                    q.items.push_back(Item {
                        shard: ShardRef {
                            segment: seg.id,
                            index: i as u8,
                        },
                        released,
                        unreferenced,
                    });
                    queued += 1;
                    if !q.worker {
                        q.worker = true;
                        start.push((node, q.notify.clone()));
                    }
                    q.notify.notify_one();
                }
            }
        }
        self.inner.metrics.queued.inc_by(queued);
        if dropped > 0 {
            self.inner.metrics.dropped.inc_by(dropped);
            tracing::warn!(
                dropped,
                "release queue full; leaving shards to garbage collection"
            );
        }
        for (node, notify) in start {
            let this = self.clone();
            tokio::spawn(async move { this.worker(node, notify).await });
        }
    }

    /// Takes up to a batch of shards that may go now, oldest first, all of
    /// one kind (replaced or unreferenced: the datad holds the first kind
    /// for readers elsewhere). Returns the batch, whether it is of
    /// unreferenced shards, and whether pinned shards are waiting.
    fn take_batch(&self, node: NodeId) -> (Vec<ShardRef>, bool, bool) {
        let now = Instant::now();
        let pins = self.inner.pins.get(
            &self.inner.leases,
            now,
            self.inner.limits.read_lease_max,
            crate::limits::RELEASE_PINS_REUSE,
        );
        let mut nodes = self.inner.nodes.lock().expect("release queues lock");
        let Some(q) = nodes.get_mut(&node) else {
            return (Vec::new(), false, false);
        };
        let mut batch = Vec::new();
        let mut kind: Option<bool> = None;
        let mut kept = VecDeque::new();
        let mut waiting = false;
        while let Some(item) = q.items.pop_front() {
            if batch.len() >= self.inner.limits.batch_max {
                q.items.push_front(item);
                break;
            }
            let free = item.unreferenced || pins.free(item.shard.segment, item.released);
            if !free {
                waiting = true;
                kept.push_back(item);
            } else if kind.is_none_or(|k| k == item.unreferenced) {
                kind = Some(item.unreferenced);
                batch.push(item.shard);
            } else {
                // The other kind: next batch.
                kept.push_back(item);
            }
        }
        // Pinned items go back in front, in their order.
        while let Some(item) = kept.pop_back() {
            q.items.push_front(item);
        }
        self.inner.metrics.queued.dec_by(batch.len() as i64);
        (batch, kind.unwrap_or(false), waiting)
    }

    async fn worker(self, node: NodeId, notify: Arc<Notify>) {
        loop {
            let (batch, unreferenced, waiting) = self.take_batch(node);
            if batch.is_empty() {
                if waiting {
                    // Pinned shards wait for readers (or for a newer lease
                    // snapshot): look again after the recheck interval, not
                    // at every enqueue, which during a burst would rescan
                    // the queue under its lock for each released object.
                    tokio::select! {
                        biased;
                        _ = self.inner.cancel.cancelled() => return,
                        _ = tokio::time::sleep(crate::limits::RELEASE_PINNED_RECHECK) => {}
                    }
                } else {
                    // Idle: nothing queued; a new item notifies.
                    tokio::select! {
                        biased;
                        _ = self.inner.cancel.cancelled() => return,
                        _ = notify.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                }
                continue;
            }
            self.send(node, batch, !unreferenced).await;
        }
    }

    async fn send(&self, node: NodeId, batch: Vec<ShardRef>, hold: bool) {
        let n = batch.len() as u64;
        for attempt in 1..=self.inner.limits.attempts_max {
            let Some((addr, _)) = self.inner.cluster.locate(node) else {
                break; // removed from the cluster: nothing to delete there
            };
            match self
                .inner
                .datad
                .release_shards(&addr, batch.clone(), hold)
                .await
            {
                Ok(reply) => {
                    self.inner.metrics.sent.inc_by(n);
                    tracing::debug!(%node, ?reply, "released shards");
                    return;
                }
                Err(e) => {
                    tracing::debug!(%node, attempt, error = %e, "release batch failed");
                    tokio::select! {
                        biased;
                        _ = self.inner.cancel.cancelled() => break,
                        _ = tokio::time::sleep(self.inner.limits.retry_delay) => {}
                    }
                }
            }
        }
        self.inner.metrics.dropped.inc_by(n);
        tracing::warn!(%node, shards = n, "could not release shards; left for garbage collection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot taken strictly after `t`, so a test never depends on two
    /// readings of the clock differing.
    fn pins_after(leases: &ReadLeases, t: Instant, max_age: Duration) -> Pins {
        while Instant::now() <= t {
            std::hint::spin_loop();
        }
        leases.pins(Instant::now(), max_age)
    }

    fn seg(id: u8) -> Segment {
        Segment {
            id: SegmentId::from_random([id; 16]),
            offset: 0,
            len: 1,
            layout: weft_common::profile::Layout::Replicated { copies: 1 },
            shards: vec![Some(NodeId(1))],
            shard_len: 1,
            placement: None,
            cache: vec![],
        }
    }

    #[test]
    fn a_resolved_lease_pins_only_its_segments_and_only_for_releases_after_it_began() {
        let leases = ReadLeases::default();
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let lease = leases.begin();
        let (a, b) = (seg(1), seg(2));
        lease.resolve([&a]);
        let after = Instant::now();
        let pins = pins_after(&leases, after, Duration::from_secs(600));
        assert!(!pins.free(a.id, after), "released after the read began");
        assert!(pins.free(b.id, after), "not read");
        assert!(pins.free(a.id, before), "released before the read began");
        drop(lease);
        let pins = pins_after(&leases, after, Duration::from_secs(600));
        assert!(pins.free(a.id, after), "the read finished");
    }

    #[test]
    fn an_unresolved_lease_pins_everything_released_after_it_began() {
        let leases = ReadLeases::default();
        let lease = leases.begin();
        let released = Instant::now();
        let pins = pins_after(&leases, released, Duration::from_secs(600));
        assert!(!pins.free(seg(9).id, released));
        drop(lease);
        let pins = pins_after(&leases, released, Duration::from_secs(600));
        assert!(pins.free(seg(9).id, released), "the read finished");
    }

    #[test]
    fn a_lease_past_its_deadline_pins_nothing() {
        let leases = ReadLeases::default();
        let lease = leases.begin();
        lease.resolve([&seg(1)]);
        std::thread::sleep(Duration::from_millis(5));
        let released = Instant::now();
        let pins = pins_after(&leases, released, Duration::from_millis(1));
        assert!(pins.free(seg(1).id, released));
        drop(lease);
    }

    /// A shared snapshot must not free a shard released after it was
    /// taken: a read that began in between is not in it.
    #[test]
    fn a_snapshot_frees_nothing_released_after_it_was_taken() {
        let leases = ReadLeases::default();
        let pins = leases.pins(Instant::now(), Duration::from_secs(600));
        let lease = leases.begin();
        lease.resolve([&seg(1)]);
        let released = Instant::now();
        assert!(!pins.free(seg(1).id, released), "the old snapshot freed it");
        assert!(
            !pins.free(seg(2).id, released),
            "unknown to the old snapshot"
        );
        let fresh = pins_after(&leases, released, Duration::from_secs(600));
        assert!(!fresh.free(seg(1).id, released), "the read pins it");
        assert!(fresh.free(seg(2).id, released));
        drop(lease);
    }

    #[test]
    fn workers_share_one_snapshot_until_it_is_older_than_the_reuse_time() {
        let leases = ReadLeases::default();
        let cache = PinsCache::default();
        let (max, reuse) = (Duration::from_secs(600), Duration::from_secs(3600));
        let first = cache.get(&leases, Instant::now(), max, reuse);
        let again = cache.get(&leases, Instant::now(), max, reuse);
        assert!(
            Arc::ptr_eq(&first, &again),
            "recomputed within the reuse time"
        );
        let later = first.taken + reuse;
        let next = cache.get(&leases, later, max, reuse);
        assert!(!Arc::ptr_eq(&first, &next), "kept past the reuse time");
    }
}
