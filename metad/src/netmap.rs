//! The network cost map's reports, kept in the leader's memory (see
//! `weft_common::netmap`): like heartbeats, they change every few seconds
//! and lose nothing when forgotten, so they are never raft entries.

use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::time::Instant;
use weft_common::netmap::{fold, NetMap, NetReport, REPORTERS_MAX, SAMPLES_MAX};

/// Each reporter's latest report and when it arrived.
#[derive(Default)]
pub struct NetMapStore {
    reports: Mutex<BTreeMap<String, (Instant, NetReport)>>,
}

impl NetMapStore {
    /// Keeps `report` in place of its reporter's last one. A report of too
    /// many paths is cut to [`SAMPLES_MAX`]; beyond [`REPORTERS_MAX`]
    /// reporters, the one heard from longest ago is forgotten.
    ///
    /// Names longer than a zone's (63) or a reporter's (255) are cut, so
    /// a report costs the leader a bounded amount of memory.
    pub fn record(&self, mut report: NetReport) {
        report.samples.truncate(SAMPLES_MAX);
        cut(&mut report.reporter, 255);
        for s in &mut report.samples {
            cut(&mut s.from, 63);
            cut(&mut s.to, 63);
        }
        let mut reports = self.reports.lock().expect("netmap lock");
        if !reports.contains_key(&report.reporter) && reports.len() >= REPORTERS_MAX {
            if let Some(oldest) = reports
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                reports.remove(&oldest);
            }
        }
        reports.insert(report.reporter.clone(), (Instant::now(), report));
    }

    /// The matrix from every report young enough to count.
    pub fn map(&self) -> NetMap {
        let reports = self.reports.lock().expect("netmap lock");
        let now = Instant::now();
        fold(
            reports
                .values()
                .map(|(at, r)| (r, now.duration_since(*at).as_millis() as u64)),
        )
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::netmap::PathSample;

    #[test]
    fn long_names_are_cut_on_character_boundaries() {
        let store = NetMapStore::default();
        store.record(NetReport {
            reporter: "é".repeat(300),
            samples: vec![PathSample {
                from: "ü".repeat(40),
                to: "b".into(),
                rtt_us: 1,
                bytes_per_s: 0,
            }],
            cache_reads: vec![],
            zone: String::new(),
        });
        let map = store.map();
        assert!(map.paths[0].from.len() <= 63);
    }

    #[test]
    fn a_later_report_replaces_its_reporters_last_one() {
        let store = NetMapStore::default();
        let report = |rtt_us| NetReport {
            reporter: "g".into(),
            samples: vec![PathSample {
                from: "a".into(),
                to: "b".into(),
                rtt_us,
                bytes_per_s: 0,
            }],
            cache_reads: vec![],
            zone: String::new(),
        };
        store.record(report(10));
        store.record(report(30));
        let map = store.map();
        assert_eq!(map.path("a", "b").unwrap().rtt_us, 30);
        assert_eq!(map.path("a", "b").unwrap().reporters, 1);
    }
}
