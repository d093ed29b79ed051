//! Room for metad's own log on a filling disk: a reserve file and a
//! space-low mode.
//!
//! A metad whose disk fills cannot append to its raft log, and then nothing
//! works, not even the deletes that would free space. So metad keeps a
//! reserve file ([`RESERVE_FILE`], `reserved_bytes` of zeros) in its data
//! directory, and checks its filesystem every `space_check_ms`. When free
//! space (counted as if the reserve were in place) drops below
//! `space_low_free_bytes`, or a write fails for want of space, it deletes
//! the reserve and enters space-low mode: the leader refuses, before
//! proposing, every command that adds data ([`adds_data`]), while deletes,
//! aborts, repair bookkeeping and admin commands still commit into the room
//! the reserve left. Once free space is back above `space_ok_free_bytes`
//! it writes the reserve again and leaves the mode.
//!
//! The decision is taken at the leader's command endpoint, never in raft
//! apply: apply must do the same on every replica, and free space differs
//! per replica.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_common::rpc::Command;
use weft_common::space::{FsStats, MetadSpace};

/// Name of the reserve file in metad's data directory.
pub const RESERVE_FILE: &str = "space-reserve";

/// Settings of the reserve and the mode (from [`crate::node::MetadConfig`]).
#[derive(Clone, Debug)]
pub struct SpaceConfig {
    /// Size of the reserve file; 0 keeps none (the mode still works).
    pub reserved_bytes: u64,
    /// Below this much free space (as if the reserve were in place) the
    /// mode starts.
    pub low_free_bytes: u64,
    /// At or above this much free space (as if the reserve were in place)
    /// the mode ends.
    pub ok_free_bytes: u64,
    /// Time between checks.
    pub check_interval: Duration,
}

impl SpaceConfig {
    /// Checks that the marks make a band (else the mode would flap); the
    /// error names the settings.
    pub fn validate(&self) -> Result<(), SpaceConfigError> {
        if self.low_free_bytes >= self.ok_free_bytes {
            return Err(SpaceConfigError::NoBand {
                low: self.low_free_bytes,
                ok: self.ok_free_bytes,
            });
        }
        if self.check_interval.is_zero() {
            return Err(SpaceConfigError::NoInterval);
        }
        Ok(())
    }
}

/// Settings of the space-low mode that cannot work, by the config keys an
/// operator sets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceConfigError {
    /// The low mark is not below the ok mark: the mode would flap.
    #[error("space_low_free_bytes ({low}) must be below space_ok_free_bytes ({ok})")]
    NoBand {
        /// `space_low_free_bytes`.
        low: u64,
        /// `space_ok_free_bytes`.
        ok: u64,
    },
    /// Free space would never be checked.
    #[error("space_check_ms must be positive")]
    NoInterval,
}

#[derive(Default)]
struct State {
    low: bool,
    reason: String,
    free_bytes: u64,
    reserve_bytes: u64,
}

/// The reserve and the mode of one metad.
pub struct SpaceGuard {
    id: u64,
    dir: PathBuf,
    cfg: SpaceConfig,
    fs: Arc<dyn FsStats>,
    state: Mutex<State>,
    low_gauge: Gauge,
    free_gauge: Gauge,
    reserve_gauge: Gauge,
}

impl SpaceGuard {
    /// A guard of metad `id`'s `dir`. Blocking: it measures the reserve
    /// file left by an earlier run, if any; call [`SpaceGuard::check`] to
    /// make or release it.
    pub fn new(id: u64, dir: &Path, cfg: SpaceConfig, fs: Arc<dyn FsStats>) -> SpaceGuard {
        let reserve_bytes = std::fs::metadata(dir.join(RESERVE_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        SpaceGuard {
            id,
            dir: dir.to_path_buf(),
            cfg,
            fs,
            state: Mutex::new(State {
                reserve_bytes,
                ..State::default()
            }),
            low_gauge: Gauge::default(),
            free_gauge: Gauge::default(),
            reserve_gauge: Gauge::default(),
        }
    }

    /// Adds the gauges to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "space_low",
            "1 while this metad is in space-low mode (refusing commands that add data)",
            self.low_gauge.clone(),
        );
        registry.register(
            "fs_free_bytes",
            "Free bytes on this metad's data filesystem, as last checked",
            self.free_gauge.clone(),
        );
        registry.register(
            "space_reserve_bytes",
            "Bytes of this metad's reserve file now on disk",
            self.reserve_gauge.clone(),
        );
    }

    /// What the status shows.
    pub fn status(&self) -> MetadSpace {
        let st = self.state.lock().expect("space lock poisoned");
        MetadSpace {
            low: st.low,
            free_bytes: st.free_bytes,
            reserve_bytes: st.reserve_bytes,
            reason: st.reason.clone(),
        }
    }

    /// Why `cmd` must not be proposed now, if it must not: it adds data
    /// while this metad is in space-low mode.
    pub fn refusal(&self, cmd: &Command) -> Option<String> {
        if !adds_data(cmd) {
            return None;
        }
        self.low_reason()
    }

    /// In space-low mode: the message every refused command gets.
    pub fn low_reason(&self) -> Option<String> {
        let st = self.state.lock().expect("space lock poisoned");
        if !st.low {
            return None;
        }
        Some(format!(
            "metad {} is low on disk space ({}): it takes no new objects, uploads or buckets until space is freed; deletes and admin commands still work. Delete data or free space on the metad disk",
            self.id, st.reason
        ))
    }

    /// Measures free space and moves in or out of space-low mode. Blocking.
    pub fn check(&self) {
        let usage = match self.fs.usage(&self.dir) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "cannot read free space of the metad disk; keeping the space mode as it is");
                return;
            }
        };
        let mut st = self.state.lock().expect("space lock poisoned");
        let missing = self.cfg.reserved_bytes.saturating_sub(st.reserve_bytes);
        // Free space as if the reserve were in place, so that making or
        // releasing it does not move the measure across a mark.
        let free = usage.avail_bytes.saturating_sub(missing);
        st.free_bytes = usage.avail_bytes;
        if !st.low && free < self.cfg.low_free_bytes {
            let reason = format!(
                "{free} bytes free in {} with the reserve counted, below space_low_free_bytes {}",
                self.dir.display(),
                self.cfg.low_free_bytes
            );
            self.enter(&mut st, reason);
        } else if st.low && free >= self.cfg.ok_free_bytes {
            if self.make_reserve(&mut st) {
                st.low = false;
                st.reason.clear();
                tracing::info!(
                    free,
                    "metad disk has room again: space-low mode ends, reserve restored"
                );
            }
        } else if !st.low && missing > 0 {
            // At start, or after a failed attempt: there is room for it.
            self.make_reserve(&mut st);
        }
        self.export(&st);
    }

    /// A write failed for want of space: release the reserve now, so the
    /// deletes that free space have room, and refuse new data until a check
    /// finds room again.
    pub fn write_failed_no_space(&self) {
        let mut st = self.state.lock().expect("space lock poisoned");
        if !st.low {
            self.enter(
                &mut st,
                "a write failed: no space left on the device".into(),
            );
            self.export(&st);
        }
    }

    fn enter(&self, st: &mut State, reason: String) {
        let path = self.dir.join(RESERVE_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot release the space reserve")
            }
        }
        st.reserve_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        st.low = true;
        tracing::warn!(%reason, "metad disk low on space: reserve released, refusing commands that add data");
        st.reason = reason;
    }

    /// Writes the reserve file whole (zeros, not a sparse file, so the
    /// blocks are really held). Returns whether it is in place.
    fn make_reserve(&self, st: &mut State) -> bool {
        let path = self.dir.join(RESERVE_FILE);
        match write_zeros(&path, self.cfg.reserved_bytes) {
            Ok(()) => {
                st.reserve_bytes = self.cfg.reserved_bytes;
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                st.reserve_bytes = 0;
                tracing::warn!(error = %e, path = %path.display(), bytes = self.cfg.reserved_bytes, "cannot write the space reserve; will try again");
                false
            }
        }
    }

    fn export(&self, st: &State) {
        self.low_gauge.set(i64::from(st.low));
        self.free_gauge
            .set(i64::try_from(st.free_bytes).unwrap_or(i64::MAX));
        self.reserve_gauge
            .set(i64::try_from(st.reserve_bytes).unwrap_or(i64::MAX));
    }
}

fn write_zeros(path: &Path, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

/// Whether an error message says the device is out of space (`ENOSPC`,
/// which reaches the command endpoint only as text through raft's errors).
pub fn mentions_no_space(message: &str) -> bool {
    message.contains("No space left on device") || message.contains("os error 28")
}

/// Whether `cmd` adds data: new objects, versions, uploads, parts, buckets
/// or tags. Everything else (deletes, aborts, keys, node and repair admin,
/// shard bookkeeping) frees space or is needed to run the cluster, and goes
/// through in space-low mode.
pub fn adds_data(cmd: &Command) -> bool {
    match cmd {
        Command::CreateBucket { .. }
        | Command::PutObject { .. }
        | Command::CreateUpload { .. }
        | Command::PutPart { .. }
        | Command::CompleteUpload { .. }
        | Command::SetObjectTags { .. }
        | Command::SetBucketTags { .. }
        | Command::SetBucketLifecycle { .. }
        | Command::SetBucketTiering { .. } => true,
        // Moves bytes, adds none.
        Command::SetBucketResidency { .. } => false,
        Command::Request { command, .. } => adds_data(command),
        Command::Batch { commands } => commands.iter().any(adds_data),
        Command::DeleteBucket { .. }
        | Command::DeleteObject { .. }
        | Command::DeleteObjectVersion { .. }
        | Command::SetBucketVersioning { .. }
        | Command::AbortUpload { .. }
        | Command::RegisterNode { .. }
        | Command::CreateKey { .. }
        | Command::DeleteKey { .. }
        | Command::ResealKey { .. }
        | Command::MoveShard { .. }
        | Command::DropShard { .. }
        | Command::SetNodeAdmin { .. }
        | Command::SetRepairConfig { .. }
        | Command::SetUploadTimers { .. }
        | Command::SeedStorageClasses { .. }
        | Command::SeedLifecycleDay { .. }
        | Command::SetLifecycleCursor { .. }
        | Command::FinishClassMigration { .. }
        | Command::Lifecycle { .. }
        | Command::RecordAccess { .. }
        | Command::TransitionVersion { .. }
        | Command::PutStorageClass { .. }
        | Command::DeleteStorageClass { .. }
        | Command::ReportDamage { .. }
        | Command::DropWarm { .. }
        | Command::DropCacheCopies { .. }
        | Command::DamageRepaired { .. } => false,
        // A warm and its copies take data node space, not metad's, but
        // each copy adds an index entry's worth.
        Command::Warm { .. } | Command::AddCacheCopy { .. } => true,
        // Reports of refusals are refused while metad's disk is low (an
        // attacker could otherwise fill it; reporters keep 8 windows and
        // then count what they drop). Administrative commands are still
        // recorded inline; checkpoints, settings and prunes go through.
        Command::Audit { .. } => true,
        Command::AuditCheckpoint { .. }
        | Command::SetAuditConfig { .. }
        | Command::AuditPrune { .. } => false,
    }
}

/// Checks every `check_interval` until `cancel` fires.
pub async fn run(guard: Arc<SpaceGuard>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(guard.cfg.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let g = guard.clone();
        if let Err(e) = weft_common::effects::spawn_blocking(move || g.check()).await {
            tracing::error!(error = %e, "metad space check failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use weft_common::space::FsUsage;

    /// A disk of `total` bytes whose other contents the test sets; the
    /// reserve file's real size counts against it.
    struct FakeDisk {
        dir: PathBuf,
        total: u64,
        other: AtomicU64,
    }

    impl FsStats for FakeDisk {
        fn usage(&self, _: &Path) -> std::io::Result<FsUsage> {
            let reserve = std::fs::metadata(self.dir.join(RESERVE_FILE))
                .map(|m| m.len())
                .unwrap_or(0);
            let used = self.other.load(Ordering::SeqCst) + reserve;
            Ok(FsUsage {
                used_bytes: used,
                avail_bytes: self.total.saturating_sub(used),
            })
        }
    }

    const KIB: u64 = 1024;

    fn guard(dir: &Path) -> (Arc<FakeDisk>, SpaceGuard) {
        let disk = Arc::new(FakeDisk {
            dir: dir.to_path_buf(),
            total: 1000 * KIB,
            other: AtomicU64::new(0),
        });
        let cfg = SpaceConfig {
            reserved_bytes: 64 * KIB,
            low_free_bytes: 200 * KIB,
            ok_free_bytes: 400 * KIB,
            check_interval: Duration::from_secs(1),
        };
        cfg.validate().unwrap();
        (disk.clone(), SpaceGuard::new(7, dir, cfg, disk))
    }

    fn put() -> Command {
        Command::Request {
            format: weft_common::rpc::COMMAND_FORMAT,
            actor: None,
            id: weft_common::RequestId::from_random([1; 16]),
            at_ms: 0,
            command: Box::new(Command::CreateBucket {
                bucket: serde_json::from_value(serde_json::json!({
                    "name": "b", "owner": "k", "created_ms": 0
                }))
                .unwrap(),
            }),
        }
    }

    fn delete() -> Command {
        Command::Request {
            format: weft_common::rpc::COMMAND_FORMAT,
            actor: None,
            id: weft_common::RequestId::from_random([2; 16]),
            at_ms: 0,
            command: Box::new(Command::DeleteObject {
                bucket: "b".into(),
                key: "k".into(),
                marker: None,
            }),
        }
    }

    #[test]
    fn low_space_releases_the_reserve_and_refuses_only_new_data() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, g) = guard(dir.path());
        let reserve = dir.path().join(RESERVE_FILE);
        g.check();
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 64 * KIB);
        assert!(!g.status().low);
        assert_eq!(g.refusal(&put()), None);

        // Fill to 150 KiB free with the reserve in place: below the low mark.
        disk.other
            .store(1000 * KIB - 64 * KIB - 150 * KIB, Ordering::SeqCst);
        g.check();
        let st = g.status();
        assert!(st.low, "{st:?}");
        assert_eq!(st.reserve_bytes, 0);
        assert!(!reserve.exists(), "the reserve is released");
        assert_eq!(st.free_bytes, 150 * KIB, "as read before the release");
        let why = g.refusal(&put()).expect("new data refused");
        assert!(why.contains("metad 7 is low on disk space"), "{why}");
        assert!(why.contains("space_low_free_bytes"), "{why}");
        assert_eq!(g.refusal(&delete()), None, "deletes go through");

        // Some room back, but not past the ok mark: still low (no flapping
        // at the low mark).
        disk.other
            .store(1000 * KIB - 64 * KIB - 300 * KIB, Ordering::SeqCst);
        g.check();
        assert!(g.status().low);

        // Past the ok mark: the reserve is written again and data accepted.
        disk.other
            .store(1000 * KIB - 64 * KIB - 450 * KIB, Ordering::SeqCst);
        g.check();
        let st = g.status();
        assert!(!st.low, "{st:?}");
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 64 * KIB);
        assert_eq!(g.refusal(&put()), None);
    }

    #[test]
    fn a_failed_write_enters_the_mode_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_disk, g) = guard(dir.path());
        g.check();
        g.write_failed_no_space();
        assert!(g.status().low);
        assert!(!dir.path().join(RESERVE_FILE).exists());
        assert!(g.refusal(&put()).is_some());
        // The disk has room after all: the next check ends the mode.
        g.check();
        assert!(!g.status().low);
        assert!(mentions_no_space(
            "append: No space left on device (os error 28)"
        ));
        assert!(!mentions_no_space("connection refused"));
    }

    #[test]
    fn marks_must_make_a_band() {
        let cfg = SpaceConfig {
            reserved_bytes: 0,
            low_free_bytes: 10,
            ok_free_bytes: 10,
            check_interval: Duration::from_secs(1),
        };
        let e = cfg.validate().unwrap_err();
        assert_eq!(e, SpaceConfigError::NoBand { low: 10, ok: 10 });
        let e = e.to_string();
        assert!(
            e.contains("space_low_free_bytes") && e.contains("space_ok_free_bytes"),
            "{e}"
        );
        let never = SpaceConfig {
            ok_free_bytes: 20,
            check_interval: Duration::ZERO,
            ..cfg
        };
        assert_eq!(never.validate(), Err(SpaceConfigError::NoInterval));
    }

    #[test]
    fn batches_and_requests_are_judged_by_what_they_hold() {
        assert!(adds_data(&put()));
        assert!(!adds_data(&delete()));
        assert!(adds_data(&Command::Batch {
            commands: vec![delete(), put()]
        }));
        assert!(!adds_data(&Command::AbortUpload {
            upload_id: "u".into()
        }));
        assert!(!adds_data(&Command::DeleteKey { name: "k".into() }));
    }
}
