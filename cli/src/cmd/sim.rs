//! `weft sim`: seeded, deterministic simulation runs of the metadata group
//! (see the `weft-sim` crate and docs/testing.md). Exit 0 when every run
//! passed its checks (and, with `--check-determinism`, replayed to the same
//! trace); otherwise the first failure and the one command that replays it.

use anyhow::{bail, Context, Result};
use weft_common::failpoints::Bug;
use weft_sim::{SimConfig, SimOutcome};

use crate::args::SimArgs;

/// Parses `A..B` (B exclusive) or `A..=B`.
fn seed_range(s: &str) -> Result<std::ops::Range<u64>> {
    let (a, b, inclusive) = if let Some((a, b)) = s.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = s.split_once("..") {
        (a, b, false)
    } else {
        bail!("--seeds takes a range such as 1..20 or 1..=20, not {s:?}");
    };
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("--seeds: {a:?} is not a seed"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("--seeds: {b:?} is not a seed"))?;
    let end = if inclusive { b.saturating_add(1) } else { b };
    if end <= a {
        bail!("--seeds {s}: the range is empty");
    }
    Ok(a..end)
}

/// One run, on a thread of its own: the simulation makes its own
/// current-thread runtime, and its seeded generator is per thread.
fn run_one(cfg: SimConfig) -> SimOutcome {
    std::thread::spawn(move || weft_sim::run(&cfg))
        .join()
        .unwrap_or_else(|_| panic!("the simulation thread panicked"))
}

fn summary(o: &SimOutcome) -> String {
    format!(
        "seed {}: {} steps, {} acked, {} unknown, {} reads, {} crashes, {} power cuts and {} of one process ({} writes undone), {} segments rotted, net {:?}, {:.1} s simulated, trace {}",
        o.seed,
        o.steps,
        o.acked,
        o.unknown,
        o.reads,
        o.crashes,
        o.power_cuts.cuts,
        o.power_cuts.node_cuts,
        o.power_cuts.writes_undone,
        o.rotted,
        o.net,
        o.simulated.as_secs_f64(),
        o.trace_hash
    )
}

/// The shortest step count (halving) at which `seed` still fails.
fn shrink(seed: u64, steps: u32, bug: Option<Bug>, data_plane: bool) -> u32 {
    let mut best = steps;
    let mut try_steps = steps / 2;
    while try_steps >= 6 {
        if run_one(SimConfig {
            seed,
            steps: try_steps,
            bug,
            data_plane,
        })
        .passed()
        {
            break;
        }
        best = try_steps;
        try_steps /= 2;
    }
    best
}

/// The bug `--bug` names (builds with the `failpoints` feature only).
#[cfg(feature = "failpoints")]
fn bug(a: &SimArgs) -> Result<Option<Bug>> {
    match &a.bug {
        None => Ok(None),
        Some(name) => Bug::from_name(name).map(Some).ok_or_else(|| {
            let names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            anyhow::anyhow!("--bug {name:?}: no such bug; known: {}", names.join(", "))
        }),
    }
}

#[cfg(not(feature = "failpoints"))]
fn bug(_: &SimArgs) -> Result<Option<Bug>> {
    Ok(None)
}

pub fn run(a: SimArgs) -> Result<()> {
    let bug = bug(&a)?;
    let seeds = match &a.seeds {
        Some(r) => seed_range(r)?,
        None => a.seed..a.seed + 1,
    };
    let mut flags = bug
        .map(|b| format!(" --bug {}", b.name()))
        .unwrap_or_default();
    if a.data_plane {
        flags.push_str(" --data-plane");
    }
    for seed in seeds {
        let cfg = SimConfig {
            seed,
            steps: a.steps,
            bug,
            data_plane: a.data_plane,
        };
        let first = run_one(cfg.clone());
        println!("{}", summary(&first));
        if let Some(path) = &a.trace {
            std::fs::write(path, first.trace.join("\n") + "\n")
                .with_context(|| format!("writing the trace to {}", path.display()))?;
        }
        if !first.passed() {
            for line in &first.tail {
                eprintln!("  trace: {line}");
            }
            for f in &first.failures {
                eprintln!("  FAILED: {f}");
            }
            let steps = shrink(seed, a.steps, bug, a.data_plane);
            bail!(
                "seed {seed} failed {} check(s); replay: weft sim --seed {seed} --steps {steps}{flags}",
                first.failures.len()
            );
        }
        if a.check_determinism {
            let second = run_one(cfg);
            if second.trace_hash != first.trace_hash {
                bail!(
                    "seed {seed} is not deterministic: trace {} then {}; replay: weft sim --seed {seed} --steps {}{flags} --check-determinism",
                    first.trace_hash,
                    second.trace_hash,
                    a.steps
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_exclusive_and_inclusive_and_refuse_empty_ones() {
        assert_eq!(seed_range("1..4").unwrap(), 1..4);
        assert_eq!(seed_range("1..=4").unwrap(), 1..5);
        assert!(seed_range("4..4").is_err());
        assert!(seed_range("x..4").is_err());
        assert!(seed_range("7").is_err());
    }
}
