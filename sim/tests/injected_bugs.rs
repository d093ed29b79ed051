//! The simulator bites: each re-introduced bug makes some seed of the CI
//! budget fail. Needs the `failpoints` feature (scripts/test.sh runs it in
//! the failpoints build beside the chaos image's).
#![cfg(feature = "failpoints")]

use weft_common::failpoints::Bug;
use weft_sim::{SimConfig, SimOutcome};

/// The same budget as the seeds test: a bug must be caught within it.
const CI_SEEDS: std::ops::RangeInclusive<u64> = 1..=16;

/// The whole cluster's budget (tests/seeds.rs runs the same seeds green).
const DATA_PLANE_SEEDS: std::ops::RangeInclusive<u64> = 1..=3;

fn run(seed: u64, bug: Bug, data_plane: bool) -> SimOutcome {
    std::thread::spawn(move || {
        weft_sim::run(&SimConfig {
            seed,
            steps: SimConfig::DEFAULT_STEPS,
            bug: Some(bug),
            data_plane,
        })
    })
    .join()
    .expect("simulation thread")
}

fn first_failing_seed(bug: Bug) -> Option<(u64, Vec<String>)> {
    CI_SEEDS.into_iter().find_map(|seed| {
        let o = run(seed, bug, false);
        (!o.passed()).then_some((seed, o.failures))
    })
}

fn first_failing_data_plane_seed(bug: Bug) -> Option<(u64, Vec<String>)> {
    DATA_PLANE_SEEDS.into_iter().find_map(|seed| {
        let o = run(seed, bug, true);
        (!o.passed()).then_some((seed, o.failures))
    })
}

#[test]
fn acknowledging_before_commit_is_caught_within_the_ci_seeds() {
    let (seed, failures) = first_failing_seed(Bug::AckBeforeCommit)
        .expect("no CI seed caught metad acknowledging writes before commit");
    // Caught by the model (a read missing an acknowledged write), not by
    // something unrelated.
    assert!(
        failures.iter().any(|f| f.contains("may only hold")),
        "seed {seed}: {failures:#?}"
    );
}

#[test]
fn treating_a_lost_response_as_not_applied_is_caught_within_the_ci_seeds() {
    let (seed, failures) = first_failing_seed(Bug::UnknownAsNotApplied)
        .expect("no CI seed caught the client treating lost responses as not applied");
    assert!(
        failures.iter().any(|f| f.contains("may only hold")),
        "seed {seed}: {failures:#?}"
    );
}

#[test]
fn a_missing_fsync_is_caught_by_the_power_cuts_within_the_ci_seeds() {
    let (seed, failures) =
        first_failing_seed(Bug::SkipFsync).expect("no CI seed caught file fsyncs doing nothing");
    // Acknowledged writes are gone after a cut: a read answers an older
    // value, the group lost so much it cannot serve at all, or a database
    // torn by the cut makes its reader panic.
    assert!(
        failures.iter().any(|f| f.contains("may only hold")
            || f.contains("did not converge")
            || f.contains("panicked")),
        "seed {seed}: {failures:#?}"
    );
}

#[test]
fn a_put_part_that_releases_its_own_segments_when_applied_again_is_caught_within_the_ci_seeds() {
    let (seed, failures) = first_failing_seed(Bug::SelfReleasingPutPart)
        .expect("no CI seed caught a re-applied PutPart releasing its own segments");
    // Caught by the release contract the gateway relies on, not by
    // something unrelated.
    assert!(
        failures
            .iter()
            .any(|f| f.contains("which the part it put refers to")),
        "seed {seed}: {failures:#?}"
    );
}

#[test]
fn a_scrubber_that_drops_whole_shard_files_is_caught_within_the_ci_seeds() {
    let (seed, failures) = first_failing_data_plane_seed(Bug::WholeFileScrubDrop)
        .expect("no data-plane seed caught the scrubber dropping rotten shard files whole");
    assert!(
        failures.iter().any(|f| f.contains("final GET")
            || f.contains("may only hold")
            || f.contains("fewer than k")),
        "seed {seed}: {failures:#?}"
    );
}
