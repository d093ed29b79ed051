//! The network cost map: what crossing from one zone to another costs, as
//! measured by the processes that cross.
//!
//! Measurements are soft state. A reporter (a gateway today) keeps moving
//! averages of round trips (from probes) and throughput (from real
//! transfers) to each zone and sends its latest figures to the metad
//! leader every few seconds; the leader keeps each reporter's last report
//! in memory, never in a raft entry, and folds them into one zone × zone
//! matrix that every gateway receives with the cluster map. A leader
//! change forgets the map, and the next reports rebuild it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One reporter's figures for one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathSample {
    /// The zone the reporter is in.
    pub from: String,
    /// The zone it reached.
    pub to: String,
    /// Moving average of round trips, µs.
    pub rtt_us: u64,
    /// Moving average of transfer throughput, bytes/s (0: no transfer big
    /// enough to tell yet).
    #[serde(default)]
    pub bytes_per_s: u64,
}

/// Body of `POST /v1/netmap` (metad): a reporter's latest figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetReport {
    /// Who reports (a gateway's S3 address): a later report replaces it.
    pub reporter: String,
    /// At most [`SAMPLES_MAX`] paths.
    pub samples: Vec<PathSample>,
    /// The reporter's zone (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    /// Segments the reporter read from cache copies in its zone since its
    /// last report (at most [`CACHE_READS_MAX`]): what tells the leader
    /// which warms are in use (`weft warm`'s least-recently-used eviction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_reads: Vec<crate::SegmentId>,
}

/// Most segments one report names as read from cache copies.
pub const CACHE_READS_MAX: usize = 1024;

/// Most paths one report carries (zones are few; this bounds what a
/// misbehaving reporter can make the leader hold).
pub const SAMPLES_MAX: usize = 1024;
/// Most reporters the leader keeps; the oldest is forgotten beyond it.
pub const REPORTERS_MAX: usize = 1024;
/// A report older than this no longer counts, ms.
pub const REPORT_MAX_AGE_MS: u64 = 5 * 60 * 1000;

/// One cell of the matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPath {
    /// From this zone.
    pub from: String,
    /// To this zone.
    pub to: String,
    /// Median over reporters of their round-trip averages, µs.
    pub rtt_us: u64,
    /// Median over the reporters that measured it, bytes/s (0: none did).
    pub bytes_per_s: u64,
    /// Age of the newest report that measured it, ms.
    pub age_ms: u64,
    /// Reporters that measured it.
    pub reporters: u32,
}

/// The zone × zone matrix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetMap {
    /// Measured paths, by (from, to).
    pub paths: Vec<NetPath>,
}

impl NetMap {
    /// Whether nothing is measured.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The measured path from `from` to `to`.
    pub fn path(&self, from: &str, to: &str) -> Option<&NetPath> {
        self.paths.iter().find(|p| p.from == from && p.to == to)
    }

    /// Seconds a reader in `to` would take to pull `bytes` from `from`:
    /// one round trip plus the bytes at the measured throughput. `None`
    /// without a measured throughput.
    pub fn transfer_secs(&self, from: &str, to: &str, bytes: u64) -> Option<f64> {
        // Reads pull bytes from `from` to `to`; a reader in `to` measured
        // the path it reads over, `to` → `from`.
        let p = self.path(to, from)?;
        (p.bytes_per_s > 0).then(|| p.rtt_us as f64 / 1e6 + bytes as f64 / p.bytes_per_s as f64)
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

/// Folds reporters' latest reports (each with its age, ms) into the
/// matrix; reports older than [`REPORT_MAX_AGE_MS`] are left out.
pub fn fold<'a>(reports: impl IntoIterator<Item = (&'a NetReport, u64)>) -> NetMap {
    // (from, to) → (round trips, throughputs, youngest age).
    type Cell = (Vec<u64>, Vec<u64>, u64);
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    for (report, age) in reports {
        if age > REPORT_MAX_AGE_MS {
            continue;
        }
        for s in report.samples.iter().take(SAMPLES_MAX) {
            let cell = cells
                .entry((s.from.clone(), s.to.clone()))
                .or_insert_with(|| (Vec::new(), Vec::new(), u64::MAX));
            cell.0.push(s.rtt_us);
            if s.bytes_per_s > 0 {
                cell.1.push(s.bytes_per_s);
            }
            cell.2 = cell.2.min(age);
        }
    }
    NetMap {
        paths: cells
            .into_iter()
            .map(|((from, to), (rtts, rates, age))| NetPath {
                reporters: rtts.len() as u32,
                from,
                to,
                rtt_us: median(rtts),
                bytes_per_s: median(rates),
                age_ms: age,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(from: &str, to: &str, rtt_us: u64, bytes_per_s: u64) -> PathSample {
        PathSample {
            from: from.into(),
            to: to.into(),
            rtt_us,
            bytes_per_s,
        }
    }

    #[test]
    fn reporters_fold_into_medians_with_the_newest_age_and_stale_ones_drop() {
        let r1 = NetReport {
            reporter: "g1".into(),
            samples: vec![sample("a", "b", 20_000, 100), sample("a", "a", 300, 0)],
            cache_reads: vec![],
            zone: String::new(),
        };
        let r2 = NetReport {
            reporter: "g2".into(),
            samples: vec![sample("a", "b", 22_000, 0)],
            cache_reads: vec![],
            zone: String::new(),
        };
        let r3 = NetReport {
            reporter: "g3".into(),
            samples: vec![sample("a", "b", 90_000, 900)],
            cache_reads: vec![],
            zone: String::new(),
        };
        let stale = NetReport {
            reporter: "old".into(),
            samples: vec![sample("c", "a", 1, 1)],
            cache_reads: vec![],
            zone: String::new(),
        };
        let map = fold([
            (&r1, 4_000),
            (&r2, 1_000),
            (&r3, 2_000),
            (&stale, REPORT_MAX_AGE_MS + 1),
        ]);
        let ab = map.path("a", "b").unwrap();
        assert_eq!(ab.rtt_us, 22_000, "median of three");
        assert_eq!(ab.bytes_per_s, 900, "median of those that measured it");
        assert_eq!(ab.age_ms, 1_000);
        assert_eq!(ab.reporters, 3);
        assert_eq!(map.path("a", "a").unwrap().bytes_per_s, 0);
        assert!(map.path("c", "a").is_none(), "stale reports are dropped");
        // A reader in a pulling 1000 bytes from b: one round trip plus
        // 1000 bytes at 900 B/s.
        let secs = map.transfer_secs("b", "a", 1000).unwrap();
        assert!((secs - (0.022 + 1000.0 / 900.0)).abs() < 1e-9);
        assert_eq!(
            map.transfer_secs("a", "a", 1),
            None,
            "no throughput measured"
        );
    }
}
