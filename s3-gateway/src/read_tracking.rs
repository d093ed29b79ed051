//! Reads noted for tiering by access (docs/lifecycle.md,
//! Intelligent-Tiering): a GET of an `INTELLIGENT_TIERING` object, or of
//! any object in a bucket with unread rules, is noted here and sent to
//! metad in batches (`Command::RecordAccess`), never one raft entry per
//! GET and never on the read's path.
//!
//! Idle time is judged in days, so a read matters to the day, not to the
//! millisecond: a version noted within the last [`resolution`] is not
//! noted again. The check is one lookup in a bounded cache keyed by a hash
//! (no allocation), which is all a hot object costs per GET. What is
//! pending is bounded too; when full, new reads are dropped and counted
//! (an object then looks idle a little early, never lost data).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use weft_common::lifecycle::tiering::{Read, READS_PER_COMMAND};
use weft_common::rpc::Command;
use weft_common::VersionId;

use crate::cluster_map::ClusterMap;
use weft_client::metad::MetadClient;

/// Reads waiting to be sent, at most.
pub const PENDING_MAX: usize = 100_000;
/// How long a read metad did not take is retried.
pub const RETRY_MAX_AGE: Duration = Duration::from_secs(600);
/// Versions remembered as sent recently, at most.
const SENT_MAX: u64 = 1_000_000;

/// How long a sent read covers later reads of the same version: a
/// sixteenth of a day, between 50 ms and an hour.
pub fn resolution(day_ms: u64) -> Duration {
    Duration::from_millis((day_ms / 16).clamp(50, 3_600_000))
}

/// How often pending reads are sent: an eighth of a day, between 100 ms
/// and 5 s.
pub fn flush_interval(day_ms: u64) -> Duration {
    Duration::from_millis((day_ms / 8).clamp(100, 5_000))
}

/// Counters of the tracking.
#[derive(Clone, Default)]
pub struct ReadTrackingMetrics {
    /// Reads queued to send.
    pub noted: Counter,
    /// Reads sent to metad.
    pub sent: Counter,
    /// Reads dropped: the pending map was full.
    pub dropped: Counter,
    /// Batches metad did not take (their reads are kept to retry).
    pub failed_batches: Counter,
}

/// Notes reads and sends them in batches.
#[derive(Clone)]
pub struct ReadTracker {
    inner: Arc<Inner>,
}

struct Inner {
    pending: Mutex<HashMap<(String, String, VersionId), u64>>,
    /// Hash of (bucket, key, version) → when it was last queued, ms.
    recent: moka::sync::Cache<u64, u64>,
    hasher: std::collections::hash_map::RandomState,
    cluster: ClusterMap,
    metrics: ReadTrackingMetrics,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ReadTracker {
    /// A tracker judging resolution by `cluster`'s day.
    pub fn new(cluster: ClusterMap, metrics: ReadTrackingMetrics) -> ReadTracker {
        ReadTracker {
            inner: Arc::new(Inner {
                pending: Mutex::new(HashMap::new()),
                recent: moka::sync::Cache::builder()
                    .max_capacity(SENT_MAX)
                    .time_to_live(Duration::from_secs(3_600))
                    .build(),
                hasher: Default::default(),
                cluster,
                metrics,
            }),
        }
    }

    /// Notes a read of `bucket/key` version `version`, now.
    pub fn note(&self, bucket: &str, key: &str, version: VersionId) {
        let i = &self.inner;
        let now = now_ms();
        let id = i.hasher.hash_one((bucket, key, version.0));
        let res = resolution(i.cluster.lifecycle_day_ms()).as_millis() as u64;
        if i.recent
            .get(&id)
            .is_some_and(|t| now.saturating_sub(t) < res)
        {
            return;
        }
        {
            let mut p = i.pending.lock().expect("pending reads lock");
            if p.len() >= PENDING_MAX {
                // Not remembered as noted: a later read tries again.
                i.metrics.dropped.inc();
                return;
            }
            p.insert((bucket.to_string(), key.to_string(), version), now);
        }
        i.recent.insert(id, now);
        i.metrics.noted.inc();
    }

    /// Reads waiting to be sent.
    pub fn pending(&self) -> usize {
        self.inner.pending.lock().expect("pending reads lock").len()
    }

    /// Sends what is pending, a command per [`READS_PER_COMMAND`]; a batch
    /// metad did not take goes back to pending (space permitting).
    pub async fn flush(&self, metad: &MetadClient) {
        let taken: Vec<Read> = {
            let mut p = self.inner.pending.lock().expect("pending reads lock");
            p.drain()
                .map(|((bucket, key, version_id), at_ms)| Read {
                    bucket,
                    key,
                    version_id,
                    at_ms,
                })
                .collect()
        };
        for chunk in taken.chunks(READS_PER_COMMAND) {
            let cmd = Command::RecordAccess {
                reads: chunk.to_vec(),
            };
            match metad.command(&cmd).await {
                Ok(_) => {
                    self.inner.metrics.sent.inc_by(chunk.len() as u64);
                }
                Err(e) => {
                    self.inner.metrics.failed_batches.inc();
                    tracing::warn!(error = %e, reads = chunk.len(), "reads not recorded; kept to retry for a while");
                    self.requeue(chunk, now_ms());
                }
            }
        }
    }

    /// Puts reads metad did not take back into pending, space permitting,
    /// except those older than [`RETRY_MAX_AGE`]: a batch that keeps failing
    /// is dropped (and counted) rather than retried for ever.
    fn requeue(&self, reads: &[Read], now_ms: u64) {
        let mut p = self.inner.pending.lock().expect("pending reads lock");
        for r in reads {
            // Too old to matter, or stamped ahead of this clock (it was
            // stepped back): a batch holding it may be refused again.
            let stale = now_ms.saturating_sub(r.at_ms) > RETRY_MAX_AGE.as_millis() as u64
                || r.at_ms > now_ms.saturating_add(60_000);
            if stale || p.len() >= PENDING_MAX {
                self.inner.metrics.dropped.inc();
                continue;
            }
            p.entry((r.bucket.clone(), r.key.clone(), r.version_id))
                .and_modify(|t| *t = (*t).max(r.at_ms))
                .or_insert(r.at_ms);
        }
    }

    /// Sends pending reads every [`flush_interval`] until `stop`, then once
    /// more.
    pub fn spawn_flusher(&self, metad: MetadClient, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let every = flush_interval(me.inner.cluster.lifecycle_day_ms());
                tokio::select! {
                    _ = stop.cancelled() => {
                        me.flush(&metad).await;
                        return;
                    }
                    _ = tokio::time::sleep(every) => me.flush(&metad).await,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hot_version_is_queued_once_per_resolution() {
        let t = ReadTracker::new(ClusterMap::default(), ReadTrackingMetrics::default());
        for _ in 0..1_000 {
            t.note("b", "k", VersionId(7));
        }
        t.note("b", "other", VersionId(7));
        t.note("b", "k", VersionId(8));
        assert_eq!(t.pending(), 3);
        assert_eq!(t.inner.metrics.noted.get(), 3);
    }

    #[test]
    fn reads_metad_refused_are_retried_until_they_are_too_old() {
        let t = ReadTracker::new(ClusterMap::default(), ReadTrackingMetrics::default());
        let now = 10_000_000;
        let read = |key: &str, at_ms| Read {
            bucket: "b".into(),
            key: key.into(),
            version_id: VersionId(1),
            at_ms,
        };
        t.requeue(
            &[
                read("fresh", now - 1_000),
                read("old", now - RETRY_MAX_AGE.as_millis() as u64 - 1),
                read("ahead", now + 3_600_000),
            ],
            now,
        );
        assert_eq!(t.pending(), 1);
        assert_eq!(t.inner.metrics.dropped.get(), 2);
        let p = t.inner.pending.lock().unwrap();
        assert!(p.contains_key(&("b".to_string(), "fresh".to_string(), VersionId(1))));
    }

    #[test]
    fn resolution_and_flushes_scale_with_the_day() {
        assert_eq!(resolution(86_400_000), Duration::from_secs(3_600));
        assert_eq!(resolution(1_000), Duration::from_millis(62));
        assert_eq!(flush_interval(86_400_000), Duration::from_secs(5));
        assert_eq!(flush_interval(1_000), Duration::from_millis(125));
    }
}
