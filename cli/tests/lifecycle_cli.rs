//! `weft lifecycle preview|run|status` on a cluster with real (24-hour)
//! days: a rule whose Date has passed is due at once, and nothing acts on
//! it until `weft lifecycle run` starts a pass (the next scheduled one is a
//! quarter day away), so each command is checked against a known state.

mod support;

use std::time::{Duration, Instant};
use support::TestCluster;

const RULES: &str = r#"<LifecycleConfiguration>
  <Rule><ID>old</ID><Status>Enabled</Status><Filter><Prefix>old/</Prefix></Filter>
    <Expiration><Date>2020-01-01T00:00:00Z</Date></Expiration></Rule>
  <Rule><ID>later</ID><Status>Enabled</Status><Filter><Prefix>new/</Prefix></Filter>
    <Expiration><Days>30</Days></Expiration></Rule>
</LifecycleConfiguration>"#;

async fn weft_json(tc: &TestCluster, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = support::weft_cli(tc.c(), &all).await;
    assert!(ok, "weft {args:?}: {out}{err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("weft {args:?} printed no JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_due_actions_run_applies_them_and_status_counts_them() {
    let tc = TestCluster::start().await;
    // The leader's first pass (over no rules) is over before any rule exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = weft_json(&tc, &["lifecycle", "status"]).await;
        if st["passes"]["finished"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(st["day_ms"], 86_400_000);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no lifecycle pass finished: {st}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s3 = tc.root_client();
    assert_eq!(s3.mb("lcy").await.status, 200);
    let r = s3
        .request(
            "PUT",
            "/lcy",
            &[("lifecycle", "")],
            &[],
            RULES.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for key in ["old/a", "old/b", "new/c", "other/d"] {
        s3.must_put("lcy", key, vec![7; 100]).await;
    }

    // Preview: the two old/ objects, nothing else; nothing done yet.
    let p = weft_json(&tc, &["lifecycle", "preview", "lcy"]).await;
    let keys: Vec<&str> = p["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[0].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["old/a", "old/b"], "{p}");
    assert_eq!(p["actions"][0][1]["step"], "expire_current");
    assert_eq!(p["complete"], true);
    assert_eq!(
        s3.head("lcy", "old/a").await.status,
        200,
        "preview changed nothing"
    );

    let st = weft_json(&tc, &["lifecycle", "status", "lcy"]).await;
    assert_eq!(st["buckets"][0]["pending"], 2, "{st}");
    assert_eq!(
        st["buckets"][0]["rules"]["rules"].as_array().unwrap().len(),
        2
    );
    let usage = &st["buckets"][0]["usage"][0];
    assert_eq!(usage["class"], "STANDARD");
    assert_eq!(usage["usage"]["bytes"], 400, "{st}");

    // Run: applied, exit 0; exactly the previewed objects are gone.
    let ran = weft_json(&tc, &["lifecycle", "run", "lcy", "--timeout", "60"]).await;
    assert_eq!(ran["applied"], 2, "{ran}");
    assert_eq!(s3.head("lcy", "old/a").await.status, 404);
    assert_eq!(s3.head("lcy", "old/b").await.status, 404);
    assert_eq!(s3.head("lcy", "new/c").await.status, 200);
    assert_eq!(s3.head("lcy", "other/d").await.status, 200);
    let st = weft_json(&tc, &["lifecycle", "status"]).await;
    assert_eq!(st["buckets"][0]["pending"], 0, "{st}");
    assert_eq!(st["buckets"][0]["usage"][0]["usage"]["bytes"], 200, "{st}");

    // A bucket without rules is refused by name.
    assert_eq!(s3.mb("plain").await.status, 200);
    let (ok, out, err) = support::weft_cli(tc.c(), &["lifecycle", "status", "plain"]).await;
    assert!(!ok && format!("{out}{err}").contains("bucket plain has no lifecycle rules"));
    tc.shutdown().await;
}

/// The pass's position is replicated: a new leader takes up the pass its
/// predecessor saved (same start time) rather than starting one of its own
/// (here the saved pass had finished, so it has nothing left to walk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_up_the_lifecycle_pass_its_predecessor_saved() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = weft_cli::dev_cluster::DevClusterConfig::ephemeral(dir.path());
    cfg.metad_voters = 3;
    let mut c = weft_cli::dev_cluster::DevCluster::start(cfg)
        .await
        .expect("start a 3-voter cluster");
    // A bucket with rules, walked by a pass started now.
    let creds = c.credentials().clone();
    let s3 = support::S3Client::new(
        &c.s3_endpoint(),
        &creds.access_key,
        &creds.secret_key,
        c.region(),
    );
    assert_eq!(s3.mb("lcy").await.status, 200);
    let r = s3
        .request(
            "PUT",
            "/lcy",
            &[("lifecycle", "")],
            &[],
            RULES.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s3.must_put("lcy", "new/a", vec![1; 10]).await;
    let before_run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (ok, out, err) =
        support::weft_cli(&c, &["lifecycle", "run", "lcy", "--timeout", "60"]).await;
    assert!(ok, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let st = status_of(&c).await;
        let started = st["passes"]["started_ms"].as_u64().unwrap_or(0);
        let finished = st["passes"]["finished_ms"].as_u64().unwrap_or(0);
        if started >= before_run && finished >= started {
            break started;
        }
        assert!(Instant::now() < deadline, "the pass did not finish: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Let the cursor of the finished pass reach every voter.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leader = c.metad_leader().expect("a leader");
    c.stop_metad(leader).await.unwrap();
    c.wait_metad_leader(Duration::from_secs(15)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status_of(&c).await;
        if st["passes"]["finished"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(
                st["passes"]["started_ms"].as_u64(),
                Some(started),
                "the new leader started a pass of its own: {st}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new leader counts no pass: {st}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.start_metad(leader).await.unwrap();
    c.shutdown().await;
}

async fn status_of(c: &weft_cli::dev_cluster::DevCluster) -> serde_json::Value {
    let (ok, out, err) = support::weft_cli(c, &["lifecycle", "status", "--json"]).await;
    assert!(ok, "{out}{err}");
    serde_json::from_str(&out).expect("status JSON")
}
