//! The CI seed budget of `weft sim`, for the metadata group alone and for
//! the whole cluster: every seed passes every check, and replays to the
//! same trace.

use weft_sim::{SimConfig, SimOutcome};

/// Seeds run in the normal test tier; `weft sim --seeds A..B` sweeps more.
const CI_SEEDS: std::ops::RangeInclusive<u64> = 1..=16;

/// Seeds of the whole cluster (data nodes, gateway, S3 clients) in the
/// normal tier: each run is several times a metadata run's cost.
const DATA_PLANE_CI_SEEDS: std::ops::RangeInclusive<u64> = 1..=3;

fn run(seed: u64) -> SimOutcome {
    run_with(seed, false)
}

fn run_with(seed: u64, data_plane: bool) -> SimOutcome {
    // Each run on a fresh thread: the seeded generator is per thread.
    std::thread::spawn(move || {
        weft_sim::run(&SimConfig {
            seed,
            steps: SimConfig::DEFAULT_STEPS,
            bug: None,
            data_plane,
        })
    })
    .join()
    .expect("simulation thread")
}

#[test]
fn ci_seeds_pass_every_check_and_replay_to_the_same_trace() {
    let mut faults_seen = (0u64, 0u64, 0u32, 0u32);
    for seed in CI_SEEDS {
        let first = run(seed);
        assert!(
            first.passed(),
            "seed {seed} failed: {:#?}\ntrace tail:\n{}",
            first.failures,
            first.tail.join("\n")
        );
        let second = run(seed);
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed} did not replay to the same trace"
        );
        faults_seen.0 += first.net.responses_lost;
        faults_seen.1 += first.unknown;
        faults_seen.2 += first.crashes;
        faults_seen.3 += first.power_cuts.cuts;
    }
    // The budget must actually exercise the faults it claims to.
    assert!(
        faults_seen.0 > 0,
        "no response was lost across the CI seeds"
    );
    assert!(faults_seen.1 > 0, "no write ended with an unknown outcome");
    assert!(faults_seen.2 > 0, "no voter crashed");
    assert!(faults_seen.3 > 0, "no power cut");
}

#[test]
fn data_plane_ci_seeds_pass_every_check_and_replay_to_the_same_trace() {
    let (mut rotted, mut unknown, mut crashes) = (0, 0, 0);
    for seed in DATA_PLANE_CI_SEEDS {
        let first = run_with(seed, true);
        assert!(
            first.passed(),
            "data-plane seed {seed} failed: {:#?}\ntrace tail:\n{}",
            first.failures,
            first.tail.join("\n")
        );
        let second = run_with(seed, true);
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "data-plane seed {seed} did not replay to the same trace"
        );
        rotted += first.rotted;
        unknown += first.unknown;
        crashes += first.crashes;
    }
    assert!(rotted > 0, "no shard rotted across the data-plane seeds");
    assert!(unknown > 0, "no S3 or metadata write ended unknown");
    assert!(crashes > 0, "nothing crashed");
}

#[test]
fn different_seeds_make_different_runs() {
    assert_ne!(run(101).trace_hash, run(102).trace_hash);
}
