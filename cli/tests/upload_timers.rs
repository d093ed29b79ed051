//! The upload timers are cluster state, not each voter's config: the first
//! leader seeds them, `weft cluster timers` changes them, every voter
//! serves the same pair, a lowered upload age stays protected in the grace
//! served, and a change survives a change of leader even though every
//! voter's config still names the old pair.

mod support;
use std::time::{Duration, Instant};
use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};
use weft_common::rpc::{Query, QueryResult};
use weft_common::upload_timers::UploadTimers;

/// Runs `weft <args> --json` against the cluster; (success, stdout, stderr).
async fn weft(c: &DevCluster, args: &[&str]) -> (bool, String, String) {
    let mut args = args.to_vec();
    args.push("--json");
    support::weft_cli(c, &args).await
}

/// Waits (up to 20 s) until every running voter answers `want`.
async fn wait_every_voter_serves(c: &DevCluster, want: UploadTimers) {
    let client = c.metad_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answers = client.query_each(&Query::UploadTimers).await;
        let served: Vec<Option<UploadTimers>> = answers
            .iter()
            .map(|(_, r)| match r {
                Ok(QueryResult::UploadTimers { timers }) => Some(*timers),
                _ => None,
            })
            .collect();
        if served.iter().all(|t| *t == Some(want)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "voters serve {served:?}, expected {want:?} on all"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_are_replicated_changed_by_the_cli_and_kept_across_leaders() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = DevClusterConfig::ephemeral(dir.path());
    cfg.metad_voters = 3;
    let configured = UploadTimers {
        upload_max_age_ms: 900_000,
        gc_grace_ms: 2_000_000,
    };
    cfg.metad.upload_max_age_ms = configured.upload_max_age_ms;
    cfg.metad.gc_grace_ms = configured.gc_grace_ms;
    let mut c = DevCluster::start(cfg).await.expect("start 3-voter cluster");

    // Seeded from the config by the first leader.
    wait_every_voter_serves(&c, configured).await;
    let (ok, out, err) = weft(&c, &["cluster", "timers"]).await;
    assert!(ok, "{err}");
    let shown: UploadTimers = serde_json::from_str(&out).unwrap();
    assert_eq!(shown, configured);

    // An unsafe pair is refused with the fix, and changes nothing.
    let (ok, _, err) = weft(&c, &["cluster", "timers", "--gc-grace-ms", "1000000"]).await;
    assert!(!ok, "an unsafe grace was accepted");
    assert!(
        err.contains("raise gc_grace_ms to at least 1800000"),
        "{err}"
    );
    wait_every_voter_serves(&c, configured).await;

    // A safe change reaches every voter. The age drops from 15 to 10 min,
    // so until uploads begun under 15 min are over, data nodes are served
    // a grace of twice that (30 min) rather than the new 20 min.
    let changed = UploadTimers {
        upload_max_age_ms: 600_000,
        gc_grace_ms: 1_800_000,
    };
    let (ok, out, err) = weft(
        &c,
        &[
            "cluster",
            "timers",
            "--upload-max-age-ms",
            "600000",
            "--gc-grace-ms",
            "1200000",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<UploadTimers>(&out).unwrap(), changed);
    wait_every_voter_serves(&c, changed).await;

    // A new leader, whose config still names the old pair, keeps the change;
    // so does a voter restarted from disk.
    let before = c.metad_leader().unwrap();
    let (ok, _, err) = weft(&c, &["cluster", "metad", "step-down"]).await;
    assert!(ok, "{err}");
    let after = c.wait_metad_leader(Duration::from_secs(10)).await.unwrap();
    assert_ne!(after as usize, before + 1, "leadership did not move");
    c.stop_metad(before).await.unwrap();
    c.start_metad(before).await.unwrap();
    wait_every_voter_serves(&c, changed).await;
    c.shutdown().await;
}
