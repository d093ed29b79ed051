//! What `weft bench soak` samples and how it decides that a series "keeps
//! growing": reading a process's fds, TCP connections and RSS from /proc,
//! scraping Prometheus gauges, and a growth test that a leak fails but warm-up,
//! sawtooth load and one-off spikes pass.

use anyhow::{Context, Result};
use std::collections::HashSet;

/// Open file descriptors of `pid` (every socket, file and pipe counts).
pub fn fd_count(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("read {dir}: is process {pid} running and ours to inspect?"))?
        .count() as u64)
}

/// TCP connections of `pid` in state ESTABLISHED: its socket inodes (from
/// /proc/PID/fd) matched against /proc/PID/net/tcp{,6}. Both ends count when
/// the process talks to itself, as `weft dev` does between gateway and data
/// nodes.
pub fn tcp_established(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
        // An fd closed between listing and reading is simply not counted.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            inodes.insert(inode);
        }
    }
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // No IPv6 in this kernel: nothing to count there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("read {path}")),
        };
        n += established_in(&text, &inodes);
    }
    Ok(n)
}

/// Rows of a /proc/net/tcp table in state 01 (ESTABLISHED) whose inode is
/// one of `inodes`.
fn established_in(table: &str, inodes: &HashSet<u64>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.get(3) == Some(&"01")
                && f.get(9)
                    .and_then(|i| i.parse::<u64>().ok())
                    .is_some_and(|i| inodes.contains(&i))
        })
        .count() as u64
}

/// Resident set size of `pid`, KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// The value of an unlabelled sample `name` in a Prometheus text page.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let v = rest.strip_prefix(' ')?;
        v.trim().parse().ok()
    })
}

/// How much a series may rise before it counts as growth: `abs` plus `rel`
/// times the middle third's maximum.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// In the series' own unit.
    pub abs: f64,
    /// Fraction of the level.
    pub rel: f64,
}

/// What [`growth`] concluded.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// No sustained rise beyond the tolerance.
    Steady,
    /// The last third peaks higher than the middle third and the trend
    /// rises: probably a leak.
    Grows {
        /// Highest value in the middle third after warm-up.
        middle_max: f64,
        /// Highest value in the last third.
        last_max: f64,
        /// Rise of the robust trend line across the judged window.
        trend_rise: f64,
    },
    /// Too few samples after warm-up to tell.
    TooShort {
        /// Samples after warm-up.
        samples: usize,
    },
}

/// Fewest samples after warm-up that [`growth`] judges.
pub const MIN_JUDGED: usize = 6;

/// Whether `points` (time, value) keep growing. The first `warmup` fraction
/// is ignored (caches, pools and queues fill then). What remains must show
/// both a higher peak in its last third than in its middle third *and* a
/// rising trend, each by more than `tol`: a sawtooth (delete bursts, pool
/// churn) has equal peaks and a flat trend, a single spike moves a peak but
/// not the trend, while a leak moves both. The trend is the Theil–Sen slope
/// (median of pairwise slopes) rather than least squares, so one outlier
/// cannot tilt it.
pub fn growth(points: &[(f64, f64)], warmup: f64, tol: Tolerance) -> Verdict {
    let skip = (points.len() as f64 * warmup).ceil() as usize;
    let judged = &points[skip.min(points.len())..];
    if judged.len() < MIN_JUDGED {
        return Verdict::TooShort {
            samples: judged.len(),
        };
    }
    let third = judged.len() / 3;
    let max = |s: &[(f64, f64)]| s.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let middle_max = max(&judged[third..2 * third]);
    let last_max = max(&judged[2 * third..]);
    let margin = tol.abs + tol.rel * middle_max.abs();
    let span = judged[judged.len() - 1].0 - judged[0].0;
    let trend_rise = theil_sen(judged) * span;
    if last_max > middle_max + margin && trend_rise > margin {
        Verdict::Grows {
            middle_max,
            last_max,
            trend_rise,
        }
    } else {
        Verdict::Steady
    }
}

/// Median of the slopes between every pair of points with distinct times.
fn theil_sen(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    slopes.sort_by(f64::total_cmp);
    let m = slopes.len() / 2;
    if slopes.len() % 2 == 1 {
        slopes[m]
    } else {
        (slopes[m - 1] + slopes[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance {
        abs: 32.0,
        rel: 0.10,
    };

    /// Samples every 10 s, as the soak takes them.
    fn series(n: usize, f: impl Fn(usize) -> f64) -> Vec<(f64, f64)> {
        (0..n).map(|i| (i as f64 * 10.0, f(i))).collect()
    }

    /// Deterministic jitter in [-1, 1).
    fn jitter(i: usize) -> f64 {
        ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64 * 2.0
            - 1.0
    }

    #[test]
    fn flat_noisy_series_is_steady() {
        let s = series(180, |i| 500.0 + 20.0 * jitter(i));
        assert_eq!(growth(&s, 0.2, TOL), Verdict::Steady);
    }

    #[test]
    fn warm_up_ramp_then_plateau_is_steady() {
        // Pools fill during the first minutes, then stay put.
        let s = series(60, |i| {
            if i < 10 {
                100.0 + 40.0 * i as f64
            } else {
                500.0
            }
        });
        assert_eq!(growth(&s, 0.2, TOL), Verdict::Steady);
    }

    #[test]
    fn sawtooth_of_delete_bursts_is_steady() {
        // A queue that fills to thousands every sixth sample and drains.
        let s = series(180, |i| [0.0, 9000.0, 4000.0, 800.0, 0.0, 0.0][i % 6]);
        let tol = Tolerance {
            abs: 1000.0,
            rel: 0.25,
        };
        assert_eq!(growth(&s, 0.2, tol), Verdict::Steady);
    }

    #[test]
    fn sawtooth_that_misses_its_peaks_in_the_middle_third_is_steady() {
        // Sampling caught no burst in the middle third and one in the last:
        // the peaks differ, the trend does not.
        let s = series(30, |i| if i == 27 || i == 5 { 9000.0 } else { 0.0 });
        let tol = Tolerance {
            abs: 1000.0,
            rel: 0.25,
        };
        assert_eq!(growth(&s, 0.2, tol), Verdict::Steady);
    }

    #[test]
    fn steadily_growing_series_grows() {
        let s = series(60, |i| 100.0 + 5.0 * i as f64 + 3.0 * jitter(i));
        match growth(&s, 0.2, TOL) {
            Verdict::Grows {
                middle_max,
                last_max,
                trend_rise,
            } => {
                assert!(last_max > middle_max + 50.0, "{middle_max} → {last_max}");
                assert!(trend_rise > 150.0, "trend rise {trend_rise}");
            }
            v => panic!("a leak of 5 per sample passed as {v:?}"),
        }
    }

    #[test]
    fn sawtooth_on_a_rising_floor_grows() {
        // Bursts drain, but not completely: the floor creeps up.
        let s = series(120, |i| 20.0 * i as f64 + [0.0, 900.0, 300.0][i % 3]);
        assert!(matches!(growth(&s, 0.2, TOL), Verdict::Grows { .. }));
    }

    #[test]
    fn one_spike_at_the_end_is_steady() {
        let mut s = series(60, |i| 500.0 + 10.0 * jitter(i));
        s[59].1 = 5000.0;
        assert_eq!(growth(&s, 0.2, TOL), Verdict::Steady);
    }

    #[test]
    fn slow_rise_within_tolerance_is_steady() {
        // +20 over the whole run, against a margin of 32 + 10%.
        let s = series(60, |i| 300.0 + 20.0 * i as f64 / 60.0);
        assert_eq!(growth(&s, 0.2, TOL), Verdict::Steady);
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        let s = series(6, |i| i as f64 * 1000.0);
        assert_eq!(growth(&s, 0.2, TOL), Verdict::TooShort { samples: 4 });
    }

    #[test]
    fn established_rows_are_matched_by_inode_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:2328 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 0100007F:A1B2 0100007F:2328 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1
   3: 0100007F:A1B3 0100007F:2328 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 30 10 -1
";
        let ours: HashSet<u64> = [111, 222, 444].into_iter().collect();
        // 111 is listening, 333 is someone else's, 0 is TIME_WAIT.
        assert_eq!(established_in(table, &ours), 1);
    }

    #[test]
    fn this_process_is_measured() {
        let pid = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let before = tcp_established(pid).unwrap();
        let fds_before = fd_count(pid).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // Other tests in this binary may open sockets too: at least ours.
        assert!(tcp_established(pid).unwrap() >= before + 2);
        assert!(fd_count(pid).unwrap() >= fds_before + 2);
        assert!(rss_kib(pid).unwrap() > 0);
        drop((client, server));
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let page = "# HELP weft_gateway_release_queued x\nweft_gateway_release_queued 12\nweft_gateway_release_queued_max 99\nrelease_dropped_total 3\n";
        assert_eq!(metric(page, "weft_gateway_release_queued"), Some(12.0));
        assert_eq!(metric(page, "release_dropped_total"), Some(3.0));
        assert_eq!(metric(page, "release_deferred_depth"), None);
    }
}
