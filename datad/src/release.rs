//! Releasing shards no version refers to any more: `POST /v1/shards/release`.
//!
//! Gateways send released shards in batches (one request per node per batch,
//! never one connection per shard). Shards of a replaced version (`hold`)
//! are kept at least `release_quiet_ms` whether read or not: a GET through
//! another gateway may not have reached them yet. A shard read within the last
//! `release_quiet_ms` is not deleted at once: a read that began before the
//! version was replaced may still be fetching its stripes, possibly through
//! another gateway, which the releasing gateway cannot see. Every read renews
//! the shard's lease, so the file goes only once reads have stopped for the
//! quiet period, or once it has been held `release_hold_max_ms` (the longest
//! a reader may take; a reader slower than that fails cleanly on a missing
//! shard, never with wrong data).
//!
//! Both the recent-read table and the deferral queue are bounded. A shard
//! that finds the queue full is left on disk for garbage collection, which
//! removes unreferenced files after its grace period: nothing here can lose
//! a shard that is still referenced, and nothing can grow without bound.

use crate::shard_store::ShardStore;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_common::rpc::{ShardRef, ShardReleaseReply};
use weft_common::{SegmentId, ShardIndex};

/// Settings of the releaser (part of the datad config).
#[derive(Clone, Copy, Debug)]
pub struct ReleaseLimits {
    /// A shard read within this long is deferred rather than deleted.
    pub quiet: Duration,
    /// The longest a deferred shard is kept for its readers.
    pub hold_max: Duration,
    /// Most shards waiting in the deferral queue.
    pub deferred_max: usize,
    /// Most shards remembered as recently read; beyond it, reads are not
    /// tracked until the table is pruned (releases then wait `hold_max`
    /// only for shards already tracked).
    pub recent_max: usize,
}

/// Counters and gauges of the releaser, at `/metrics`.
#[derive(Clone, Default)]
struct ReleaseMetrics {
    deleted: Counter,
    deferred_depth: Gauge,
    dropped: Counter,
    recent: Gauge,
}

/// Tracks recent reads and deletes released shards once they are quiet.
pub struct Releaser {
    store: Arc<ShardStore>,
    limits: ReleaseLimits,
    recent: Mutex<BTreeMap<(SegmentId, u8), Instant>>,
    deferred: Mutex<VecDeque<Deferred>>,
    metrics: ReleaseMetrics,
}

struct Deferred {
    shard: ShardRef,
    since: Instant,
    /// Kept at least the quiet period, read or not (a replaced version's
    /// shard that a reader elsewhere may not have reached yet).
    hold: bool,
    /// Kept the longest hold, read or not (a transition's old shards).
    full: bool,
}

impl Releaser {
    /// A releaser over `store`.
    pub fn new(store: Arc<ShardStore>, limits: ReleaseLimits) -> Releaser {
        Releaser {
            store,
            limits,
            recent: Mutex::default(),
            deferred: Mutex::default(),
            metrics: ReleaseMetrics::default(),
        }
    }

    /// Adds the releaser's metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "release_deleted",
            "Released shards deleted",
            self.metrics.deleted.clone(),
        );
        registry.register(
            "release_deferred_depth",
            "Released shards waiting for their readers to finish",
            self.metrics.deferred_depth.clone(),
        );
        registry.register(
            "release_dropped",
            "Released shards left to garbage collection because the deferral queue was full",
            self.metrics.dropped.clone(),
        );
        registry.register(
            "release_recent_reads",
            "Shards remembered as recently read",
            self.metrics.recent.clone(),
        );
    }

    /// Renews the lease of a shard that is being read.
    pub fn note_read(&self, segment: SegmentId, index: ShardIndex) {
        let mut recent = self.recent.lock().expect("recent reads lock");
        let len = recent.len();
        match recent.get_mut(&(segment, index.0)) {
            Some(at) => *at = Instant::now(),
            None if len < self.limits.recent_max => {
                recent.insert((segment, index.0), Instant::now());
            }
            None => {}
        }
    }

    /// Whether a shard is waiting here for its readers, or was read
    /// within the quiet period: the garbage collector leaves it alone, so
    /// a released shard goes only when its hold says so.
    pub fn holds(&self, segment: SegmentId, index: ShardIndex) -> bool {
        let shard = ShardRef {
            segment,
            index: index.0,
        };
        self.read_recently(shard, Instant::now())
            || self
                .deferred
                .lock()
                .expect("deferred lock")
                .iter()
                .any(|d| d.shard == shard)
    }

    fn read_recently(&self, shard: ShardRef, now: Instant) -> bool {
        let recent = self.recent.lock().expect("recent reads lock");
        recent
            .get(&(shard.segment, shard.index))
            .is_some_and(|at| now.duration_since(*at) < self.limits.quiet)
    }

    /// Deletes the quiet shards of a batch and defers the others; with
    /// `hold`, defers them all for at least the quiet period.
    pub async fn release(
        &self,
        shards: Vec<ShardRef>,
        hold: bool,
    ) -> Result<ShardReleaseReply, crate::error::ShardError> {
        self.release_held(shards, hold, false).await
    }

    /// As [`Releaser::release`]; with `full`, keeps them the longest hold
    /// whether read or not.
    pub async fn release_held(
        &self,
        shards: Vec<ShardRef>,
        hold: bool,
        full: bool,
    ) -> Result<ShardReleaseReply, crate::error::ShardError> {
        let hold = hold || full;
        let now = Instant::now();
        let mut reply = ShardReleaseReply::default();
        let mut now_list = Vec::with_capacity(shards.len());
        {
            let mut deferred = self.deferred.lock().expect("deferred lock");
            for shard in shards {
                if !hold && !self.read_recently(shard, now) {
                    now_list.push(shard);
                } else if deferred.len() < self.limits.deferred_max {
                    deferred.push_back(Deferred {
                        shard,
                        since: now,
                        hold,
                        full,
                    });
                    reply.deferred += 1;
                } else {
                    reply.dropped += 1;
                }
            }
            self.metrics.deferred_depth.set(deferred.len() as i64);
        }
        self.metrics.dropped.inc_by(u64::from(reply.dropped));
        if !now_list.is_empty() {
            let removed = self
                .store
                .remove_released(
                    now_list
                        .iter()
                        .map(|s| (s.segment, ShardIndex(s.index)))
                        .collect(),
                )
                .await;
            reply.deleted += removed.deleted;
            reply.absent += removed.absent;
            // Not removed: garbage collection will, as for a dropped one.
            reply.dropped += removed.failed;
            self.metrics.deleted.inc_by(u64::from(removed.deleted));
            self.metrics.dropped.inc_by(u64::from(removed.failed));
        }
        Ok(reply)
    }

    /// One pass of the deferral worker: deletes the deferred shards whose
    /// readers are done (or whose hold is over) and forgets old reads.
    /// Returns how many were deleted.
    pub async fn sweep(&self) -> usize {
        let now = Instant::now();
        let due: Vec<ShardRef> = {
            let mut deferred = self.deferred.lock().expect("deferred lock");
            let mut due = Vec::new();
            deferred.retain(|d| {
                let age = now.duration_since(d.since);
                let go = age >= self.limits.hold_max
                    || (!d.full
                        && (!d.hold || age >= self.limits.quiet)
                        && !self.read_recently(d.shard, now));
                if go {
                    due.push(d.shard);
                }
                !go
            });
            self.metrics.deferred_depth.set(deferred.len() as i64);
            due
        };
        {
            let mut recent = self.recent.lock().expect("recent reads lock");
            recent.retain(|_, at| now.duration_since(*at) < self.limits.quiet);
            self.metrics.recent.set(recent.len() as i64);
        }
        if due.is_empty() {
            return 0;
        }
        tracing::debug!(
            shards = due.len(),
            "deleting released shards whose hold ended"
        );
        // Failures are logged by the store and left for garbage collection.
        let removed = self
            .store
            .remove_released(
                due.iter()
                    .map(|s| (s.segment, ShardIndex(s.index)))
                    .collect(),
            )
            .await;
        self.metrics.deleted.inc_by(u64::from(removed.deleted));
        self.metrics.dropped.inc_by(u64::from(removed.failed));
        removed.deleted as usize
    }

    /// Runs [`Releaser::sweep`] every quarter of the quiet period until
    /// `cancel` fires.
    pub fn spawn_worker(self: Arc<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let every = (self.limits.quiet / 4).max(Duration::from_millis(50));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                self.sweep().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_held_shard_waits_the_quiet_period_even_unread() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seg) = store_with(dir.path(), 1).await;
        let r = Releaser::new(store.clone(), limits(3_600_000, 7_200_000, 10));
        let one = || {
            vec![ShardRef {
                segment: seg,
                index: 0,
            }]
        };
        let reply = r.release(one(), true).await.unwrap();
        assert_eq!((reply.deleted, reply.deferred), (0, 1));
        assert_eq!(r.sweep().await, 0, "within the quiet period: kept");
        assert!(store
            .get_bytes(seg, ShardIndex(0), 0, Some(4))
            .await
            .is_ok());
        // The same shard released without hold (never read) goes at once.
        let reply = r.release(one(), false).await.unwrap();
        assert_eq!(reply.deleted, 1);
    }

    use super::*;

    fn limits(quiet_ms: u64, hold_ms: u64, deferred_max: usize) -> ReleaseLimits {
        ReleaseLimits {
            quiet: Duration::from_millis(quiet_ms),
            hold_max: Duration::from_millis(hold_ms),
            deferred_max,
            recent_max: 1000,
        }
    }

    async fn store_with(dir: &std::path::Path, n: u8) -> (Arc<ShardStore>, SegmentId) {
        let store = Arc::new(ShardStore::open(dir).await.unwrap());
        let seg = SegmentId::from_random([7; 16]);
        for i in 0..n {
            let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                b"abcd",
            ))]);
            store.put(seg, ShardIndex(i), 4, body).await.unwrap();
        }
        (store, seg)
    }

    /// A transition's old shards: kept past the quiet period until the
    /// longest hold, read or not, and the garbage collector is told so.
    #[tokio::test]
    async fn a_fully_held_shard_outlives_the_quiet_period_until_the_longest_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seg) = store_with(dir.path(), 1).await;
        let r = Releaser::new(store.clone(), limits(1, 400, 10));
        let one = vec![ShardRef {
            segment: seg,
            index: 0,
        }];
        let reply = r.release_held(one, true, true).await.unwrap();
        assert_eq!((reply.deleted, reply.deferred), (0, 1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            r.sweep().await,
            0,
            "past the quiet period, within the hold: kept"
        );
        assert!(r.holds(seg, ShardIndex(0)), "the collector must leave it");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(r.sweep().await, 1, "the hold is over");
        assert!(!r.holds(seg, ShardIndex(0)));
        assert!(store
            .get_bytes(seg, ShardIndex(0), 0, Some(4))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn unread_shards_are_deleted_at_once_and_read_ones_wait_for_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seg) = store_with(dir.path(), 3).await;
        // An hour of quiet: the read shard cannot become quiet during the test.
        let r = Releaser::new(store.clone(), limits(3_600_000, 7_200_000, 10));
        r.note_read(seg, ShardIndex(1));
        let reply = r
            .release(
                (0..4)
                    .map(|index| ShardRef {
                        segment: seg,
                        index,
                    })
                    .collect(),
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            reply,
            ShardReleaseReply {
                deleted: 2,
                absent: 1,
                deferred: 1,
                dropped: 0
            }
        );
        assert!(store
            .get_bytes(seg, ShardIndex(1), 0, Some(4))
            .await
            .is_ok());
        assert!(store
            .get_bytes(seg, ShardIndex(0), 0, Some(4))
            .await
            .is_err());
        assert_eq!(r.sweep().await, 0, "still being read: kept");
        assert!(store
            .get_bytes(seg, ShardIndex(1), 0, Some(4))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn deferred_shard_goes_once_its_reads_are_older_than_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seg) = store_with(dir.path(), 1).await;
        let r = Releaser::new(store.clone(), limits(1, 3_600_000, 10));
        r.note_read(seg, ShardIndex(0));
        // Deferred only if the release came within 1 ms of the read; either
        // way the shard must be gone after a sweep that follows the quiet.
        r.release(
            vec![ShardRef {
                segment: seg,
                index: 0,
            }],
            false,
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        r.sweep().await;
        assert!(store
            .get_bytes(seg, ShardIndex(0), 0, Some(4))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_full_deferral_queue_drops_to_gc_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seg) = store_with(dir.path(), 2).await;
        let r = Releaser::new(store.clone(), limits(3_600_000, 7_200_000, 1));
        r.note_read(seg, ShardIndex(0));
        r.note_read(seg, ShardIndex(1));
        let reply = r
            .release(
                (0..2)
                    .map(|index| ShardRef {
                        segment: seg,
                        index,
                    })
                    .collect(),
                false,
            )
            .await
            .unwrap();
        assert_eq!((reply.deferred, reply.dropped), (1, 1));
        assert!(store
            .get_bytes(seg, ShardIndex(1), 0, Some(4))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_hold_past_its_maximum_is_deleted_even_while_read() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seg) = store_with(dir.path(), 1).await;
        let r = Releaser::new(store.clone(), limits(3_600_000, 1, 10));
        r.note_read(seg, ShardIndex(0));
        let reply = r
            .release(
                vec![ShardRef {
                    segment: seg,
                    index: 0,
                }],
                false,
            )
            .await
            .unwrap();
        assert_eq!(reply.deferred, 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        r.note_read(seg, ShardIndex(0));
        assert_eq!(r.sweep().await, 1);
    }
}
