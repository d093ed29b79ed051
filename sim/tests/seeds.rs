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
    // Each run on a fresh thread: the seeded generator is per thread.
    std::thread::spawn(move || {
        weft_sim::run(&SimConfig {
            seed,
            steps: SimConfig::DEFAULT_STEPS,
            bug: None,
            data_plane: false,
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

/// Starts one data-plane seed in a process of its own (a replay is one);
/// it prints `trace-hash passed rotted unknown crashes`.
fn run_in_process(seed: u64) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_weft-sim-seed"))
        .args([seed.to_string().as_str(), "--data-plane"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start weft-sim-seed")
}

fn finish(child: std::process::Child) -> (Vec<String>, String) {
    let out = child.wait_with_output().expect("weft-sim-seed ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: String = stderr
        .lines()
        .filter(|l| l.starts_with("FAILED") || l.starts_with("trace:"))
        .collect::<Vec<_>>()
        .join("\n");
    (
        stdout.split_whitespace().map(str::to_string).collect(),
        report,
    )
}

#[test]
fn data_plane_ci_seeds_pass_every_check_and_replay_to_the_same_trace() {
    // Each seed in two processes at once (a replay is a fresh process; two
    // runs inside one process can still diverge, see docs/testing.md).
    let (mut rotted, mut unknown, mut crashes) = (0u64, 0u64, 0u64);
    for seed in DATA_PLANE_CI_SEEDS {
        let (a, b) = (run_in_process(seed), run_in_process(seed));
        let ((first, report), (second, _)) = (finish(a), finish(b));
        assert_eq!(first.len(), 5, "seed {seed}: no result line\n{report}");
        assert_eq!(first[1], "true", "data-plane seed {seed} failed:\n{report}");
        assert_eq!(
            first.first(),
            second.first(),
            "data-plane seed {seed} did not replay to the same trace in another process"
        );
        rotted += first[2].parse::<u64>().expect("rotted count");
        unknown += first[3].parse::<u64>().expect("unknown count");
        crashes += first[4].parse::<u64>().expect("crash count");
    }
    assert!(rotted > 0, "no shard rotted across the data-plane seeds");
    assert!(unknown > 0, "no S3 or metadata write ended unknown");
    assert!(crashes > 0, "nothing crashed");
}

#[test]
fn different_seeds_make_different_runs() {
    assert_ne!(run(101).trace_hash, run(102).trace_hash);
}
