//! Disk space: how full a data node is (Ceph's nearfull/full high-water
//! marks) and the filesystem reading behind it.
//!
//! A data node is as full as the fuller of two measures: its shard files
//! against its configured `capacity_bytes`, and its filesystem's used
//! fraction. The first is what the operator promised the node may hold; the
//! second catches a disk shared with other things (logs, another daemon)
//! filling up under it. Past `nearfull_ratio` a node is `nearfull`: placement
//! gives it fewer new shards and operators see a warning. Past `full_ratio`
//! it is `full`: it refuses new shards, and placement skips it.
//!
//! The filesystem reading ([`FsStats`]) lives here, beside the datad policy,
//! because metad needs the same reading for its own reserve (one `statvfs`
//! recipe, one fake for tests).

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Default `nearfull_ratio`: past it a node gets fewer new shards.
pub const NEARFULL_RATIO_DEFAULT: f64 = 0.85;
/// Default `full_ratio`: past it a node refuses new shards.
pub const FULL_RATIO_DEFAULT: f64 = 0.95;

/// A node's space state, reported in every heartbeat.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SpaceState {
    /// Below `nearfull_ratio`.
    #[default]
    Ok,
    /// At or past `nearfull_ratio`: fewer new shards.
    Nearfull,
    /// At or past `full_ratio`: no new shards.
    Full,
}

impl SpaceState {
    /// Lowercase name, as in metrics labels and `weft cluster status`.
    pub fn name(self) -> &'static str {
        match self {
            SpaceState::Ok => "ok",
            SpaceState::Nearfull => "nearfull",
            SpaceState::Full => "full",
        }
    }

    /// Every state, for metrics that export a gauge per state.
    pub const ALL: [SpaceState; 3] = [SpaceState::Ok, SpaceState::Nearfull, SpaceState::Full];
}

/// A node's space as it reported it: state, the numbers behind it, and a
/// sentence saying why when it is not ok.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceReport {
    /// The state.
    pub state: SpaceState,
    /// Fullness in parts per million: the larger of shard bytes over
    /// `capacity_bytes` and the filesystem's used fraction. Integer so that
    /// reports compare exactly.
    pub fullness_ppm: u32,
    /// Bytes used on the data filesystem (as `df` counts them), 0 if unknown.
    pub fs_used_bytes: u64,
    /// Bytes used plus bytes available to the daemon, 0 if unknown.
    pub fs_size_bytes: u64,
    /// Why the state is not ok; empty when it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// `df`-style usage of one filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes in use (total minus free).
    pub used_bytes: u64,
    /// Bytes an unprivileged writer may still use.
    pub avail_bytes: u64,
}

impl FsUsage {
    /// Used fraction as `df` shows it: used over used plus available, so the
    /// root-reserved blocks count as unusable rather than free.
    pub fn used_fraction(&self) -> f64 {
        let size = self.used_bytes.saturating_add(self.avail_bytes);
        if size == 0 {
            return 0.0;
        }
        self.used_bytes as f64 / size as f64
    }
}

/// Reads a filesystem's usage. A trait so tests can make a disk look full
/// without filling one.
pub trait FsStats: Send + Sync + 'static {
    /// Usage of the filesystem holding `path`.
    fn usage(&self, path: &Path) -> std::io::Result<FsUsage>;
}

/// A filesystem that never fills: 1 TiB available whatever is written. For
/// the simulator, whose runs must not depend on the machine's free space
/// (disk-full is tested with real processes and quotas).
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverFull;

impl FsStats for NeverFull {
    fn usage(&self, _path: &Path) -> std::io::Result<FsUsage> {
        Ok(FsUsage {
            used_bytes: 0,
            avail_bytes: 1 << 40,
        })
    }
}

/// The real reading, by `statvfs(3)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Statvfs;

impl FsStats for Statvfs {
    fn usage(&self, path: &Path) -> std::io::Result<FsUsage> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `c_path` is a valid NUL-terminated string and `st` a
        // properly sized out-parameter that statvfs fills on success.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let frsize = st.f_frsize as u64;
        let blocks = st.f_blocks as u64;
        let free = st.f_bfree as u64;
        let avail = st.f_bavail as u64;
        Ok(FsUsage {
            used_bytes: blocks.saturating_sub(free).saturating_mul(frsize),
            avail_bytes: avail.saturating_mul(frsize),
        })
    }
}

/// Validated high-water marks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpaceThresholds {
    nearfull: f64,
    full: f64,
}

impl SpaceThresholds {
    /// Checks `0 < nearfull_ratio < full_ratio <= 1`; the error names the
    /// setting at fault and what it must be.
    pub fn new(nearfull_ratio: f64, full_ratio: f64) -> Result<SpaceThresholds, String> {
        if !(nearfull_ratio.is_finite() && nearfull_ratio > 0.0 && nearfull_ratio < 1.0) {
            return Err(format!(
                "nearfull_ratio is {nearfull_ratio}; it must be above 0 and below 1 (default {NEARFULL_RATIO_DEFAULT})"
            ));
        }
        if !(full_ratio.is_finite() && full_ratio > 0.0 && full_ratio <= 1.0) {
            return Err(format!(
                "full_ratio is {full_ratio}; it must be above 0 and at most 1 (default {FULL_RATIO_DEFAULT})"
            ));
        }
        if nearfull_ratio >= full_ratio {
            return Err(format!(
                "nearfull_ratio ({nearfull_ratio}) must be below full_ratio ({full_ratio})"
            ));
        }
        Ok(SpaceThresholds {
            nearfull: nearfull_ratio,
            full: full_ratio,
        })
    }

    /// `nearfull_ratio`.
    pub fn nearfull_ratio(&self) -> f64 {
        self.nearfull
    }

    /// `full_ratio`.
    pub fn full_ratio(&self) -> f64 {
        self.full
    }

    /// The state for shard files of `stored_bytes` against `capacity_bytes`
    /// on a filesystem with usage `fs` (`None` when it could not be read:
    /// the shard bytes alone decide). `data_dir` only names the disk in the
    /// reason.
    pub fn assess(
        &self,
        stored_bytes: u64,
        capacity_bytes: u64,
        fs: Option<FsUsage>,
        data_dir: &Path,
    ) -> SpaceReport {
        let by_capacity = if capacity_bytes == 0 {
            1.0
        } else {
            stored_bytes as f64 / capacity_bytes as f64
        };
        let by_fs = fs.map(|u| u.used_fraction()).unwrap_or(0.0);
        let fullness = by_capacity.max(by_fs);
        let state = if fullness >= self.full {
            SpaceState::Full
        } else if fullness >= self.nearfull {
            SpaceState::Nearfull
        } else {
            SpaceState::Ok
        };
        let reason = match state {
            SpaceState::Ok => String::new(),
            _ => {
                let (mark, setting) = match state {
                    SpaceState::Full => (self.full, "full_ratio"),
                    _ => (self.nearfull, "nearfull_ratio"),
                };
                if by_capacity >= by_fs {
                    format!(
                        "shard files use {:.1}% of capacity_bytes ({stored_bytes} of {capacity_bytes} bytes), at or past {setting} {:.0}%",
                        by_capacity * 100.0,
                        mark * 100.0
                    )
                } else {
                    format!(
                        "the filesystem of {} is {:.1}% used, at or past {setting} {:.0}%",
                        data_dir.display(),
                        by_fs * 100.0,
                        mark * 100.0
                    )
                }
            }
        };
        let fs = fs.unwrap_or_default();
        SpaceReport {
            state,
            fullness_ppm: (fullness.clamp(0.0, 4_000.0) * 1e6) as u32,
            fs_used_bytes: fs.used_bytes,
            fs_size_bytes: fs.used_bytes.saturating_add(fs.avail_bytes),
            reason,
        }
    }
}

impl Default for SpaceThresholds {
    fn default() -> Self {
        SpaceThresholds {
            nearfull: NEARFULL_RATIO_DEFAULT,
            full: FULL_RATIO_DEFAULT,
        }
    }
}

/// A metad's disk as it reports it in its status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadSpace {
    /// In space-low mode: the leader refuses commands that add data.
    pub low: bool,
    /// Bytes free on its filesystem (available to it), as last read.
    pub free_bytes: u64,
    /// Bytes of its reserve file now on disk (0 while released).
    pub reserve_bytes: u64,
    /// Why it is in space-low mode; empty when it is not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(used: u64, avail: u64) -> Option<FsUsage> {
        Some(FsUsage {
            used_bytes: used,
            avail_bytes: avail,
        })
    }

    #[test]
    fn thresholds_are_validated_and_name_the_setting() {
        assert!(SpaceThresholds::new(0.85, 0.95).is_ok());
        assert!(SpaceThresholds::new(0.5, 1.0).is_ok());
        let e = SpaceThresholds::new(0.0, 0.95).unwrap_err();
        assert!(e.contains("nearfull_ratio"), "{e}");
        let e = SpaceThresholds::new(0.9, 1.5).unwrap_err();
        assert!(e.contains("full_ratio"), "{e}");
        let e = SpaceThresholds::new(0.95, 0.95).unwrap_err();
        assert!(e.contains("must be below full_ratio"), "{e}");
        assert!(SpaceThresholds::new(f64::NAN, 0.95).is_err());
        assert!(SpaceThresholds::new(0.9, 0.8).is_err());
    }

    #[test]
    fn stored_bytes_against_capacity_set_the_state() {
        let t = SpaceThresholds::default();
        let dir = Path::new("/data");
        let r = t.assess(84, 100, fs(0, 100), dir);
        assert_eq!(r.state, SpaceState::Ok);
        assert!(r.reason.is_empty());
        let r = t.assess(85, 100, fs(0, 100), dir);
        assert_eq!(r.state, SpaceState::Nearfull);
        assert!(r.reason.contains("capacity_bytes"), "{}", r.reason);
        assert!(r.reason.contains("nearfull_ratio"), "{}", r.reason);
        let r = t.assess(95, 100, fs(0, 100), dir);
        assert_eq!(r.state, SpaceState::Full);
        assert!(r.reason.contains("full_ratio 95%"), "{}", r.reason);
        assert_eq!(r.fullness_ppm, 950_000);
        // No capacity at all is full.
        assert_eq!(t.assess(0, 0, None, dir).state, SpaceState::Full);
    }

    #[test]
    fn the_fuller_of_capacity_and_filesystem_wins() {
        let t = SpaceThresholds::new(0.8, 0.9).unwrap();
        let dir = Path::new("/srv/datad");
        // Few shard bytes, but the disk is shared and nearly full.
        let r = t.assess(10, 100, fs(91, 9), dir);
        assert_eq!(r.state, SpaceState::Full);
        assert!(r.reason.contains("/srv/datad"), "{}", r.reason);
        assert!(r.reason.contains("91.0% used"), "{}", r.reason);
        assert_eq!((r.fs_used_bytes, r.fs_size_bytes), (91, 100));
        // The disk has room, the capacity does not.
        let r = t.assess(82, 100, fs(10, 90), dir);
        assert_eq!(r.state, SpaceState::Nearfull);
        assert!(r.reason.contains("capacity_bytes"), "{}", r.reason);
        // An unreadable filesystem leaves the capacity to decide.
        assert_eq!(t.assess(10, 100, None, dir).state, SpaceState::Ok);
    }

    #[test]
    fn used_fraction_counts_reserved_blocks_as_unusable() {
        let u = FsUsage {
            used_bytes: 12,
            avail_bytes: 36,
        };
        assert!((u.used_fraction() - 0.25).abs() < 1e-12);
        assert_eq!(FsUsage::default().used_fraction(), 0.0);
    }

    #[test]
    fn statvfs_reads_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let u = Statvfs.usage(dir.path()).unwrap();
        assert!(u.used_bytes + u.avail_bytes > 0);
        assert!(Statvfs.usage(&dir.path().join("missing")).is_err());
    }
}
