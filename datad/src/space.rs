//! How full this node is, and whether it takes a new shard.
//!
//! The state (ok, nearfull, full: see [`weft_common::space`]) combines the
//! shard bytes, read live from the store, with the data filesystem's used
//! fraction, read by `statvfs` every heartbeat interval by [`run`] (a
//! blocking call, so it stays off the request path). A shard PUT is refused
//! while the node is full, and also when the shard would take the shard
//! bytes past `capacity_bytes`. Both clear by themselves as deletes free
//! space: nothing latches, so the next heartbeat reports ok and placement
//! uses the node again.

use crate::shard_store::ShardStore;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_common::space::{FsStats, FsUsage, SpaceReport, SpaceState, SpaceThresholds};

/// Why [`SpaceMonitor::admit`] refused a shard. The message goes to the
/// writer in the 507 reply, so it says what would make room.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The filesystem is past the full mark.
    #[error(
        "node full: {reason}; it takes no new shards until deletes free space or capacity is added"
    )]
    Full {
        /// The space report's reason (how full, which mark).
        reason: String,
    },
    /// The shard would take the store past its configured capacity.
    #[error("node full: {used} of {capacity} bytes (capacity_bytes) used, shard needs {needed}")]
    OverCapacity {
        /// Bytes the store holds.
        used: u64,
        /// `capacity_bytes`.
        capacity: u64,
        /// The new file's length.
        needed: u64,
    },
}

/// Space state and its inputs for one datad. Shared by the server (to admit
/// PUTs), the heartbeat (to report) and [`run`] (to read the filesystem).
pub struct SpaceMonitor {
    store: Arc<ShardStore>,
    capacity_bytes: u64,
    thresholds: SpaceThresholds,
    data_dir: PathBuf,
    fs: Arc<dyn FsStats>,
    /// The last filesystem reading and the state last logged.
    last: Mutex<(Option<FsUsage>, SpaceState)>,
    state_gauge: Family<Vec<(String, String)>, Gauge>,
    fullness_gauge: Gauge<f64, AtomicU64>,
}

impl SpaceMonitor {
    /// A monitor of `store` (held in `data_dir`) against `capacity_bytes`,
    /// reading the filesystem through `fs`. Call [`SpaceMonitor::refresh`]
    /// before relying on the filesystem term.
    pub fn new(
        store: Arc<ShardStore>,
        capacity_bytes: u64,
        thresholds: SpaceThresholds,
        data_dir: PathBuf,
        fs: Arc<dyn FsStats>,
    ) -> SpaceMonitor {
        SpaceMonitor {
            store,
            capacity_bytes,
            thresholds,
            data_dir,
            fs,
            last: Mutex::new((None, SpaceState::Ok)),
            state_gauge: Family::default(),
            fullness_gauge: Gauge::default(),
        }
    }

    /// Adds the space gauges to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "space_state",
            "1 for this node's current space state (ok, nearfull, full), 0 for the others",
            self.state_gauge.clone(),
        );
        registry.register(
            "space_fullness_ratio",
            "The larger of shard bytes over capacity_bytes and the data filesystem's used fraction",
            self.fullness_gauge.clone(),
        );
        self.export(&self.report());
    }

    /// Reads the filesystem (blocking: call from a blocking context), logs a
    /// change of state and updates the gauges.
    pub fn refresh(&self) -> SpaceReport {
        let usage = match self.fs.usage(&self.data_dir) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.data_dir.display(), "cannot read free space; judging fullness by capacity_bytes alone");
                None
            }
        };
        let report = {
            let mut last = self.last.lock().expect("space lock poisoned");
            last.0 = usage;
            let report = self.assess(usage);
            if report.state != last.1 {
                match report.state {
                    SpaceState::Ok => tracing::info!(
                        from = last.1.name(),
                        "space state ok again: new shards are accepted"
                    ),
                    SpaceState::Nearfull => tracing::warn!(
                        reason = %report.reason,
                        "space state nearfull: placement gives this node fewer shards"
                    ),
                    SpaceState::Full => tracing::warn!(
                        reason = %report.reason,
                        "space state full: refusing new shards until space is freed"
                    ),
                }
                last.1 = report.state;
            }
            report
        };
        self.export(&report);
        report
    }

    /// The state now: live shard bytes, the last filesystem reading.
    pub fn report(&self) -> SpaceReport {
        let usage = self.last.lock().expect("space lock poisoned").0;
        self.assess(usage)
    }

    fn assess(&self, usage: Option<FsUsage>) -> SpaceReport {
        self.thresholds.assess(
            self.store.used_bytes(),
            self.capacity_bytes,
            usage,
            &self.data_dir,
        )
    }

    fn export(&self, report: &SpaceReport) {
        for state in SpaceState::ALL {
            self.state_gauge
                .get_or_create(&vec![("state".to_string(), state.name().to_string())])
                .set(i64::from(state == report.state));
        }
        self.fullness_gauge
            .set(f64::from(report.fullness_ppm) / 1_000_000.0);
    }

    /// Whether a new shard file of `file_len` bytes may be stored; the error
    /// says why not and what would make room.
    pub fn admit(&self, file_len: u64) -> Result<(), AdmitError> {
        let report = self.report();
        if report.state == SpaceState::Full {
            return Err(AdmitError::Full {
                reason: report.reason,
            });
        }
        let used = self.store.used_bytes();
        if used.saturating_add(file_len) > self.capacity_bytes {
            return Err(AdmitError::OverCapacity {
                used,
                capacity: self.capacity_bytes,
                needed: file_len,
            });
        }
        Ok(())
    }

    /// The store's shard bytes (for the heartbeat).
    pub fn used_bytes(&self) -> u64 {
        self.store.used_bytes()
    }
}

/// Reads the filesystem every `interval` until `cancel` fires.
pub async fn run(monitor: Arc<SpaceMonitor>, interval: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let m = monitor.clone();
        if let Err(e) = weft_common::effects::spawn_blocking(move || m.refresh()).await {
            tracing::error!(error = %e, "space check task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A filesystem whose used fraction the test sets, in percent.
    struct FakeFs(std::sync::atomic::AtomicU64);

    impl FsStats for FakeFs {
        fn usage(&self, _: &std::path::Path) -> std::io::Result<FsUsage> {
            let used = self.0.load(Ordering::SeqCst);
            Ok(FsUsage {
                used_bytes: used,
                avail_bytes: 100 - used,
            })
        }
    }

    async fn monitor(
        capacity: u64,
        fs_used_pct: u64,
    ) -> (tempfile::TempDir, Arc<FakeFs>, SpaceMonitor) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ShardStore::open(dir.path()).await.unwrap());
        let fs = Arc::new(FakeFs(fs_used_pct.into()));
        let m = SpaceMonitor::new(
            store,
            capacity,
            SpaceThresholds::default(),
            dir.path().to_path_buf(),
            fs.clone(),
        );
        (dir, fs, m)
    }

    #[tokio::test]
    async fn a_full_filesystem_refuses_shards_until_it_has_room_again() {
        let (_dir, fs, m) = monitor(1 << 30, 10).await;
        assert_eq!(m.refresh().state, SpaceState::Ok);
        assert!(m.admit(1 << 20).is_ok());
        fs.0.store(96, Ordering::SeqCst);
        // Not read yet: the cached reading decides until the next refresh.
        assert_eq!(m.report().state, SpaceState::Ok);
        let r = m.refresh();
        assert_eq!(r.state, SpaceState::Full);
        let why = m.admit(1).unwrap_err().to_string();
        assert!(
            why.contains("node full") && why.contains("96.0% used"),
            "{why}"
        );
        fs.0.store(88, Ordering::SeqCst);
        assert_eq!(m.refresh().state, SpaceState::Nearfull);
        assert!(m.admit(1).is_ok(), "nearfull still takes shards");
        fs.0.store(20, Ordering::SeqCst);
        assert_eq!(m.refresh().state, SpaceState::Ok);
    }

    #[tokio::test]
    async fn capacity_is_a_hard_limit_below_the_full_mark() {
        let (_dir, _fs, m) = monitor(1000, 0).await;
        m.refresh();
        assert!(m.admit(1000).is_ok());
        let why = m.admit(1001).unwrap_err().to_string();
        assert!(why.contains("capacity_bytes"), "{why}");
    }
}
