//! Named fault scenarios and their seeded schedules. Pure: no I/O.
//!
//! A schedule is a list of timed [`Action`]s with concrete targets (node
//! ids, zone, number of files), a function of `(scenarios, seed, duration,
//! grace)` only, so the same seed always yields the same fault schedule
//! (`weft-chaos schedule` prints it). Targets that only exist at run time
//! (which metad is the leader) are named by role and resolved when the
//! action runs; the fault log records what they resolved to.
//!
//! Every scenario stays inside what the design claims to survive (as in
//! TigerBeetle's fault atlas): at most m = 2 data nodes lost at once, a
//! minority of metad voters, one zone, one node's disk corrupted or full,
//! or rot in m + 1 shards of one segment in different stripes (each stripe
//! then still has k good shards).
//! Combining scenarios (`kill-m-datad+bitrot`) can exceed that; the
//! combination is then the operator's claim to test, not the suite's.

use crate::content::mix64;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Duration;

/// A named scenario. The names are stable: scripts and reports use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// kill -9 one data node, restart it later; repeated.
    KillDatad,
    /// kill -9 m = 2 data nodes at once, restart them later; repeated.
    KillMDatad,
    /// kill -9 the metad leader, restart it later; repeated.
    KillMetadLeader,
    /// kill -9 a metad follower, restart it later; repeated.
    KillMetadFollower,
    /// docker pause a data node past the failure detector's grace, resume it.
    PauseDatad,
    /// Cut one zone off the backbone, then heal; repeated.
    PartitionZone,
    /// Restart every process in turn (SIGTERM), waiting for health between.
    RollingRestart,
    /// Corrupt random shard files on one data node's volume; repeated. Once
    /// per run, also rot m + 1 shards of one segment, each in another stripe.
    Bitrot,
    /// Fill one data node's disk, later free it.
    DiskFull,
    /// kill -9 every process at once, then start them all.
    RestartAll,
    /// `restart-all` on disks that drop what was not fsynced (the daemons'
    /// power-cut disk, `WEFT_FAULT_POWER_CUT=1`): every kill is a power cut
    /// of the whole cluster; repeated at random times.
    PowerCut,
    /// Roll the cluster CA mid-run (trust both, re-issue every certificate,
    /// trust only the new): not one client request may fail.
    CertRoll,
    /// Lifecycle rules at work under the workload on a cluster with a cold
    /// zone and one-second days: one worker's keys expire a day after
    /// each write, every other object of 128 KiB or more moves to
    /// GLACIER_IR on `west`, while data nodes (hot and cold) and the metad
    /// leader are killed. The checker lets the expiring keys vanish and
    /// nothing else.
    Lifecycle,
    /// Zones 20 ms apart (the daemons' emulated WAN) with the backbone
    /// shaped to 200 Mbit/s: a job container in zone-a reads a dataset
    /// cold and after a warm (0 bytes across zones), then the workload
    /// runs with the bucket warm in zone-a while data nodes are killed.
    Locality,
}

/// Data nodes in the cold zone of a run that needs one.
pub const LIFECYCLE_COLD_NODES: usize = 6;
/// Keys of a lifecycle run under its expiration rule (worker 0's).
pub const EXPIRING_PREFIX: &str = "w0/";

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 14] = [
        Scenario::KillDatad,
        Scenario::KillMDatad,
        Scenario::KillMetadLeader,
        Scenario::KillMetadFollower,
        Scenario::PauseDatad,
        Scenario::PartitionZone,
        Scenario::RollingRestart,
        Scenario::Bitrot,
        Scenario::DiskFull,
        Scenario::RestartAll,
        Scenario::PowerCut,
        Scenario::CertRoll,
        Scenario::Lifecycle,
        Scenario::Locality,
    ];

    /// The CI smoke set: one data-node, one metadata and one disk fault,
    /// and lifecycle rules under faults. (CI runs `power-cut` on its own,
    /// long enough for several cuts.)
    pub const SMOKE: [Scenario; 4] = [
        Scenario::KillDatad,
        Scenario::KillMetadLeader,
        Scenario::Bitrot,
        Scenario::Lifecycle,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillDatad => "kill-datad",
            Scenario::KillMDatad => "kill-m-datad",
            Scenario::KillMetadLeader => "kill-metad-leader",
            Scenario::KillMetadFollower => "kill-metad-follower",
            Scenario::PauseDatad => "pause-datad",
            Scenario::PartitionZone => "partition-zone",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::Bitrot => "bitrot",
            Scenario::DiskFull => "disk-full",
            Scenario::RestartAll => "restart-all",
            Scenario::PowerCut => "power-cut",
            Scenario::CertRoll => "cert-roll",
            Scenario::Lifecycle => "lifecycle",
            Scenario::Locality => "locality",
        }
    }

    /// Whether the daemons' disks must drop unsynced writes at a kill.
    pub fn needs_power_cut_disk(self) -> bool {
        self == Scenario::PowerCut
    }

    /// Whether the run needs the cold zone and one-second lifecycle days.
    pub fn needs_lifecycle(self) -> bool {
        self == Scenario::Lifecycle
    }

    /// Whether the run needs zones that cost something to cross.
    pub fn needs_locality(self) -> bool {
        self == Scenario::Locality
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Parses `--scenario`: comma-separated runs, each a name or `a+b` (faults
/// of several scenarios injected together into one cluster); `all` and
/// `smoke` expand to their sets.
pub fn parse_selection(s: &str) -> Result<Vec<Vec<Scenario>>, String> {
    let mut runs = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "all" => runs.extend(Scenario::ALL.iter().map(|x| vec![*x])),
            "smoke" => runs.extend(Scenario::SMOKE.iter().map(|x| vec![*x])),
            combo => {
                let mut run = Vec::new();
                for name in combo.split('+') {
                    let sc = Scenario::parse(name).ok_or_else(|| {
                        format!(
                            "unknown scenario {name:?}; known: all, smoke, {}",
                            Scenario::ALL.map(Scenario::name).join(", ")
                        )
                    })?;
                    if !run.contains(&sc) {
                        run.push(sc);
                    }
                }
                runs.push(run);
            }
        }
    }
    if runs.is_empty() {
        return Err("no scenario given".into());
    }
    Ok(runs)
}

/// The display name of a run of combined scenarios.
pub fn combo_name(run: &[Scenario]) -> String {
    run.iter().map(|s| s.name()).collect::<Vec<_>>().join("+")
}

/// One fault action with concrete targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// SIGKILL these data nodes (one `docker kill`).
    KillDatad {
        /// Node ids.
        ids: Vec<u64>,
    },
    /// Start these data nodes again.
    StartDatad {
        /// Node ids.
        ids: Vec<u64>,
    },
    /// SIGKILL whichever voter leads.
    KillMetadLeader,
    /// SIGKILL a follower: `pick` modulo the followers, by id.
    KillMetadFollower {
        /// Index among followers.
        pick: u64,
    },
    /// Start every metad that is not running.
    StartMetad,
    /// Freeze a data node (cgroup freezer).
    PauseDatad {
        /// Node id.
        id: u64,
    },
    /// Thaw it.
    UnpauseDatad {
        /// Node id.
        id: u64,
    },
    /// Disconnect a zone's containers from the backbone.
    PartitionZone {
        /// Zone index.
        zone: usize,
    },
    /// Reconnect them.
    HealZone {
        /// Zone index.
        zone: usize,
    },
    /// Restart every process in turn.
    RollingRestart,
    /// Flip bytes in `files` random shard files of a data node.
    Bitrot {
        /// Node id.
        id: u64,
        /// Files to corrupt.
        files: u32,
        /// Seed for file and offset choice.
        seed: u64,
    },
    /// Flip a byte in `shards` shard files of one segment (on as many data
    /// nodes), shard `i` in a block of stripe `i`: more shards than parity
    /// covers, but never more than one bad shard in any stripe.
    RotSegment {
        /// Shard files to damage (m + 1).
        shards: u32,
        /// Seed for the segment, shard and offset choice.
        seed: u64,
    },
    /// Fill the node's (size-limited) volume.
    FillDisk {
        /// Node id.
        id: u64,
    },
    /// Remove the filler.
    FreeDisk {
        /// Node id.
        id: u64,
    },
    /// SIGKILL every process, then start them all.
    RestartAll,
    /// Roll the cluster CA (three steps, each waited out for reloads).
    RollCa,
}

/// An action at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Milliseconds after the workload starts.
    pub at_ms: u64,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
}

/// Timing knobs that scale with the scenario's duration.
struct Window {
    begin_ms: u64,
    end_ms: u64,
}

fn cycles(
    rng: &mut StdRng,
    w: &Window,
    hold_ms: (u64, u64),
    gap_ms: (u64, u64),
    mut make: impl FnMut(&mut StdRng) -> (Action, Action),
    steps: &mut Vec<Step>,
) {
    let mut t = w.begin_ms;
    let mut n = 0;
    loop {
        let hold = rng.gen_range(hold_ms.0..=hold_ms.1);
        let (inject, heal) = make(rng);
        if t + hold > w.end_ms {
            if n == 0 {
                // Too short for a full hold: one shortened cycle, so every
                // scenario injects its fault at least once.
                let hold = w.end_ms.saturating_sub(t).max(1000);
                steps.push(Step {
                    at_ms: t,
                    action: inject,
                });
                steps.push(Step {
                    at_ms: t + hold,
                    action: heal,
                });
            }
            return;
        }
        steps.push(Step {
            at_ms: t,
            action: inject,
        });
        steps.push(Step {
            at_ms: t + hold,
            action: heal,
        });
        t += hold + rng.gen_range(gap_ms.0..=gap_ms.1);
        n += 1;
    }
}

fn scenario_seed(seed: u64, s: Scenario) -> u64 {
    s.name()
        .bytes()
        .fold(mix64(seed), |h, b| mix64(h ^ u64::from(b)))
}

/// The data node a disk-full scenario fills (known before the cluster
/// starts, because its volume must be size-limited from the start).
pub fn disk_full_target(run: &[Scenario], seed: u64) -> Option<u64> {
    run.contains(&Scenario::DiskFull)
        .then(|| scenario_seed(seed, Scenario::DiskFull) % crate::cluster::DATAD_COUNT as u64 + 1)
}

/// The fault schedule of one run (possibly several scenarios combined).
/// Faults begin after a warm-up (15% of the duration, at least 5 s) and are
/// healed before a cool-down of the same length, so the workload sees the
/// cluster before, during and after.
pub fn schedule(run: &[Scenario], seed: u64, duration: Duration, grace_ms: u64) -> Vec<Step> {
    let total_ms = duration.as_millis() as u64;
    let margin = (total_ms * 15 / 100).max(5_000);
    let w = Window {
        begin_ms: margin.min(total_ms / 2),
        end_ms: total_ms
            .saturating_sub(margin)
            .max(margin.min(total_ms / 2) + 1000),
    };
    let datad = crate::cluster::DATAD_COUNT as u64;
    let zones = crate::cluster::ZONES.len();
    let mut steps = Vec::new();
    for &s in run {
        let mut rng = StdRng::seed_from_u64(scenario_seed(seed, s));
        // Past the grace, so metad marks the node down and placement and
        // repair react; not so long that a short run is all outage.
        let down_hold = (grace_ms + 2_000, grace_ms + 8_000);
        match s {
            Scenario::KillDatad | Scenario::Locality => cycles(
                &mut rng,
                &w,
                down_hold,
                (3_000, 8_000),
                |r| {
                    let id = r.gen_range(1..=datad);
                    (
                        Action::KillDatad { ids: vec![id] },
                        Action::StartDatad { ids: vec![id] },
                    )
                },
                &mut steps,
            ),
            Scenario::KillMDatad => cycles(
                &mut rng,
                &w,
                down_hold,
                (5_000, 10_000),
                |r| {
                    let a = r.gen_range(1..=datad);
                    let b = (a + r.gen_range(1..datad) - 1) % datad + 1;
                    let mut ids = vec![a, b];
                    ids.sort();
                    (
                        Action::KillDatad { ids: ids.clone() },
                        Action::StartDatad { ids },
                    )
                },
                &mut steps,
            ),
            Scenario::KillMetadLeader => cycles(
                &mut rng,
                &w,
                (3_000, 10_000),
                (5_000, 10_000),
                |_| (Action::KillMetadLeader, Action::StartMetad),
                &mut steps,
            ),
            Scenario::KillMetadFollower => cycles(
                &mut rng,
                &w,
                (3_000, 10_000),
                (5_000, 10_000),
                |r| {
                    (
                        Action::KillMetadFollower {
                            pick: r.gen_range(0..2),
                        },
                        Action::StartMetad,
                    )
                },
                &mut steps,
            ),
            Scenario::PauseDatad => cycles(
                &mut rng,
                &w,
                (grace_ms + 2_000, grace_ms + 5_000),
                (3_000, 8_000),
                |r| {
                    let id = r.gen_range(1..=datad);
                    (Action::PauseDatad { id }, Action::UnpauseDatad { id })
                },
                &mut steps,
            ),
            Scenario::PartitionZone => cycles(
                &mut rng,
                &w,
                (8_000, 20_000),
                (5_000, 10_000),
                |r| {
                    let zone = r.gen_range(0..zones);
                    (Action::PartitionZone { zone }, Action::HealZone { zone })
                },
                &mut steps,
            ),
            Scenario::RollingRestart => steps.push(Step {
                at_ms: w.begin_ms,
                action: Action::RollingRestart,
            }),
            Scenario::CertRoll => steps.push(Step {
                at_ms: w.begin_ms,
                action: Action::RollCa,
            }),
            Scenario::Lifecycle => {
                // Any data node, the cold ones included, and the metad
                // leader, each on its own rhythm (they may overlap: one
                // node and one voter down is within the design).
                let all = datad + LIFECYCLE_COLD_NODES as u64;
                cycles(
                    &mut rng,
                    &w,
                    down_hold,
                    (5_000, 12_000),
                    |r| {
                        let id = r.gen_range(1..=all);
                        (
                            Action::KillDatad { ids: vec![id] },
                            Action::StartDatad { ids: vec![id] },
                        )
                    },
                    &mut steps,
                );
                cycles(
                    &mut rng,
                    &w,
                    (3_000, 8_000),
                    (8_000, 15_000),
                    |_| (Action::KillMetadLeader, Action::StartMetad),
                    &mut steps,
                );
            }
            Scenario::Bitrot => {
                let id = rng.gen_range(1..=datad);
                let mut t = w.begin_ms;
                loop {
                    steps.push(Step {
                        at_ms: t,
                        action: Action::Bitrot {
                            id,
                            files: rng.gen_range(3..=12),
                            seed: rng.gen(),
                        },
                    });
                    t += rng.gen_range(8_000..=20_000);
                    if t > w.end_ms {
                        break;
                    }
                }
                // Shard rot across nodes, once: a second round could pick
                // the same segment and stack two bad shards in one stripe.
                steps.push(Step {
                    at_ms: w.begin_ms + (w.end_ms - w.begin_ms) / 3,
                    action: Action::RotSegment {
                        shards: 3,
                        seed: rng.gen(),
                    },
                });
            }
            Scenario::DiskFull => {
                let id = disk_full_target(run, seed).expect("disk-full is in the run");
                steps.push(Step {
                    at_ms: w.begin_ms,
                    action: Action::FillDisk { id },
                });
                steps.push(Step {
                    at_ms: w.end_ms,
                    action: Action::FreeDisk { id },
                });
            }
            Scenario::RestartAll | Scenario::PowerCut => {
                // Kill and start are one action; no heal step needed. Power
                // cuts come more often, and at random points of the load, so
                // some land right after acknowledgements.
                let gap = if s == Scenario::PowerCut {
                    12_000..=25_000
                } else {
                    20_000..=40_000
                };
                let mut t = w.begin_ms;
                loop {
                    steps.push(Step {
                        at_ms: t,
                        action: Action::RestartAll,
                    });
                    t += rng.gen_range(gap.clone());
                    if t > w.end_ms {
                        break;
                    }
                }
            }
        }
    }
    steps.sort_by_key(|s| s.at_ms);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_selections_expand() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
        assert_eq!(parse_selection("all").unwrap().len(), Scenario::ALL.len());
        assert_eq!(parse_selection("smoke").unwrap().len(), 4);
        assert_eq!(
            parse_selection("kill-datad+bitrot,restart-all").unwrap(),
            vec![
                vec![Scenario::KillDatad, Scenario::Bitrot],
                vec![Scenario::RestartAll]
            ]
        );
        assert!(parse_selection("kill-everything").is_err());
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        for s in Scenario::ALL {
            let a = schedule(&[s], 7, Duration::from_secs(180), 3000);
            let b = schedule(&[s], 7, Duration::from_secs(180), 3000);
            assert_eq!(a, b, "{}", s.name());
            assert!(!a.is_empty(), "{} injects something", s.name());
            assert!(a.iter().all(|st| st.at_ms <= 180_000));
        }
        assert_ne!(
            schedule(&[Scenario::KillDatad], 7, Duration::from_secs(180), 3000),
            schedule(&[Scenario::KillDatad], 8, Duration::from_secs(180), 3000)
        );
    }

    #[test]
    fn faults_stay_survivable() {
        for seed in 0..200 {
            for st in schedule(
                &[Scenario::KillMDatad],
                seed,
                Duration::from_secs(300),
                3000,
            ) {
                if let Action::KillDatad { ids } = st.action {
                    assert_eq!(ids.len(), 2);
                    assert_ne!(ids[0], ids[1], "two distinct nodes");
                    assert!(ids.iter().all(|&i| (1..=9).contains(&i)));
                }
            }
            let bitrot_nodes: std::collections::BTreeSet<u64> =
                schedule(&[Scenario::Bitrot], seed, Duration::from_secs(300), 3000)
                    .into_iter()
                    .filter_map(|st| match st.action {
                        Action::Bitrot { id, .. } => Some(id),
                        _ => None,
                    })
                    .collect();
            assert_eq!(bitrot_nodes.len(), 1, "bitrot corrupts one node only");
            let segment_rots: Vec<u32> =
                schedule(&[Scenario::Bitrot], seed, Duration::from_secs(300), 3000)
                    .into_iter()
                    .filter_map(|st| match st.action {
                        Action::RotSegment { shards, .. } => Some(shards),
                        _ => None,
                    })
                    .collect();
            // m + 1 = 3 shards of one segment (one per stripe), once.
            assert_eq!(segment_rots, vec![3]);
        }
    }

    #[test]
    fn short_runs_still_inject_and_heal() {
        let s = schedule(&[Scenario::PartitionZone], 1, Duration::from_secs(20), 3000);
        assert_eq!(s.len(), 2);
        assert!(matches!(s[0].action, Action::PartitionZone { .. }));
        assert!(matches!(s[1].action, Action::HealZone { .. }));
    }
}
