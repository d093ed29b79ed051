//! Proof that a power-cut run cut power: every metad and data node logs, at
//! each start on the power-cut disk, what it undid. A run whose daemons
//! never logged it ran on an image without the switch (or without the
//! variable) and would pass as a plain `restart-all`; it fails instead.

use serde::Serialize;

/// What the daemons' power-cut disks undid over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PowerCutStats {
    /// Daemon starts on the power-cut disk.
    pub starts: u64,
    /// Unsynced writes and truncations undone.
    pub writes_undone: u64,
    /// Unsynced creates, renames and removes undone.
    pub entries_undone: u64,
}

/// The line a daemon logs at each start on the power-cut disk.
const MARKER: &str = "treated as a power cut";

/// Adds what one daemon's log says; returns how many starts it logged.
pub fn tally(log: &str, stats: &mut PowerCutStats) -> u64 {
    let mut starts = 0;
    for line in log.lines().filter(|l| l.contains(MARKER)) {
        starts += 1;
        stats.writes_undone += field(line, "writes_undone=");
        stats.entries_undone += field(line, "entries_undone=");
    }
    stats.starts += starts;
    starts
}

fn field(line: &str, name: &str) -> u64 {
    line.split(name)
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_undone_changes_are_counted_from_the_log() {
        let log = "2026-12-01T00:27:40Z  WARN weft_cli::faults: WEFT_FAULT_POWER_CUT=1: this process's last stop was treated as a power cut (unsynced changes undone); a kill -9 of it is one too data_dir=/data writes_undone=33 entries_undone=1 skip_file_fsync=false\n\
                   2026-12-01T00:27:41Z  INFO weft_datad: listening\n\
                   2026-12-01T00:27:53Z  WARN weft_cli::faults: WEFT_FAULT_POWER_CUT=1: this process's last stop was treated as a power cut (unsynced changes undone); a kill -9 of it is one too data_dir=/data writes_undone=0 entries_undone=2 skip_file_fsync=false\n";
        let mut stats = PowerCutStats::default();
        assert_eq!(tally(log, &mut stats), 2);
        assert_eq!(
            stats,
            PowerCutStats {
                starts: 2,
                writes_undone: 33,
                entries_undone: 3
            }
        );
        assert_eq!(tally("INFO nothing here", &mut stats), 0);
    }
}
