//! Real clients against a running cluster: aws-cli and the `weft` admin CLI.
//! aws-cli comes from the test command's venv (WEFT_TEST_AWS) or PATH; if it
//! is missing the test fails rather than skipping.

mod support;
use std::path::Path;
use std::process::Command;
use support::*;

fn aws_bin() -> String {
    std::env::var("WEFT_TEST_AWS").unwrap_or_else(|_| "aws".into())
}

fn aws(tc: &TestCluster, args: &[&str]) -> std::process::Output {
    let c = tc.c();
    let out = Command::new(aws_bin())
        .args(["--endpoint-url", &c.s3_endpoint()])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &c.credentials().access_key)
        .env("AWS_SECRET_ACCESS_KEY", &c.credentials().secret_key)
        .env("AWS_DEFAULT_REGION", c.region())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (install aws-cli or set WEFT_TEST_AWS): {e}",
                aws_bin()
            )
        });
    out
}

fn must(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_random(path: &Path, len: usize, seed: u64) {
    std::fs::write(path, data(seed, len)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_round_trip_100_mib() {
    let tc = TestCluster::start().await;
    let work = tempfile::tempdir().unwrap();
    let up = work.path().join("up.bin");
    let down = work.path().join("down.bin");
    write_random(&up, 100 << 20, 9);
    // aws-cli is synchronous: run it off the runtime that serves the cluster.
    let tc = std::sync::Arc::new(tc);
    let t = tc.clone();
    let (up2, down2) = (up.clone(), down.clone());
    let listing = tokio::task::spawn_blocking(move || {
        must(aws(&t, &["s3", "mb", "s3://awsbucket"]), "aws s3 mb");
        must(
            aws(
                &t,
                &[
                    "s3",
                    "cp",
                    "--no-progress",
                    up2.to_str().unwrap(),
                    "s3://awsbucket/data/up.bin",
                ],
            ),
            "aws s3 cp up",
        );
        must(
            aws(
                &t,
                &[
                    "s3",
                    "cp",
                    "--no-progress",
                    "s3://awsbucket/data/up.bin",
                    down2.to_str().unwrap(),
                ],
            ),
            "aws s3 cp down",
        );
        let ls = must(
            aws(&t, &["s3", "ls", "--recursive", "s3://awsbucket"]),
            "aws s3 ls",
        );
        let lsb = must(aws(&t, &["s3", "ls"]), "aws s3 ls buckets");
        must(
            aws(&t, &["s3", "rm", "s3://awsbucket/data/up.bin"]),
            "aws s3 rm",
        );
        let ls_after = must(
            aws(&t, &["s3", "ls", "--recursive", "s3://awsbucket"]),
            "aws s3 ls after rm",
        );
        must(aws(&t, &["s3", "rb", "s3://awsbucket"]), "aws s3 rb");
        let rb_again = aws(&t, &["s3", "rb", "s3://awsbucket"]);
        (ls, lsb, ls_after, rb_again)
    })
    .await
    .unwrap();
    let (ls, lsb, ls_after, rb_again) = listing;
    assert!(
        ls.contains("data/up.bin") && ls.contains(&(100u64 << 20).to_string()),
        "ls: {ls}"
    );
    assert!(lsb.contains("awsbucket"), "bucket list: {lsb}");
    assert!(!ls_after.contains("up.bin"), "ls after rm: {ls_after}");
    assert!(!rb_again.status.success());
    assert!(String::from_utf8_lossy(&rb_again.stderr).contains("NoSuchBucket"));
    let a = std::fs::read(&up).unwrap();
    let b = std::fs::read(&down).unwrap();
    assert_eq!(a.len(), b.len());
    assert!(a == b, "downloaded bytes differ");
    std::sync::Arc::try_unwrap(tc)
        .ok()
        .expect("sole owner")
        .shutdown()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_admin_cli() {
    let tc = TestCluster::start().await;
    let c = tc.c();
    let weft = env!("CARGO_BIN_EXE_weft");
    let admin = c.admin_endpoint();
    let creds = c.credentials().clone();
    // The CLI finds the cluster CA and its admin certificate there.
    let data = c.config().data_dir.clone();
    let run = move |args: &[&str]| {
        let out = Command::new(weft)
            .args(args)
            .args(["--admin", &admin, "--json"])
            .env("WEFT_DATA", &data)
            .env("WEFT_ROOT_ACCESS_KEY", &creds.access_key)
            .env("WEFT_ROOT_SECRET_KEY", &creds.secret_key)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run2 = run.clone();
    let (created, listed, dup, deleted, listed_after, status, buckets, bad) =
        tokio::task::spawn_blocking(move || {
            let created = run2(&["key", "create", "ci"]);
            let listed = run2(&["key", "list"]);
            let dup = run2(&["key", "create", "ci"]);
            let deleted = run2(&["key", "delete", "ci"]);
            let listed_after = run2(&["key", "list"]);
            let status = run2(&["cluster", "status"]);
            let buckets = run2(&["bucket", "list"]);
            let bad = {
                let out = Command::new(weft)
                    .args([
                        "key",
                        "list",
                        "--admin",
                        "http://127.0.0.1:1",
                        "--access-key",
                        "x",
                        "--secret-key",
                        "y",
                    ])
                    .output()
                    .unwrap();
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            };
            (
                created,
                listed,
                dup,
                deleted,
                listed_after,
                status,
                buckets,
                bad,
            )
        })
        .await
        .unwrap();
    assert!(created.0, "{created:?}");
    let key: serde_json::Value = serde_json::from_str(&created.1).unwrap();
    assert_eq!(key["name"], "ci");
    assert_eq!(key["secret_key"].as_str().map(|s| s.len()), Some(40));
    assert!(
        listed.0 && listed.1.contains("\"ci\"") && !listed.1.contains("secret_key"),
        "{listed:?}"
    );
    assert!(!dup.0 && dup.2.contains("already exists"), "{dup:?}");
    assert!(deleted.0, "{deleted:?}");
    assert!(!listed_after.1.contains("\"ci\""));
    assert!(status.0, "{status:?}");
    let st: serde_json::Value = serde_json::from_str(&status.1).unwrap();
    assert_eq!(st["metad"]["role"], "Leader");
    assert_eq!(st["nodes"].as_array().unwrap().len(), 6);
    assert!(st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["state"] == "up"));
    let zones: std::collections::BTreeSet<String> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["info"]["zone"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(zones.len(), 3);
    assert!(buckets.0, "{buckets:?}");
    assert!(!bad.0 && bad.1.contains("admin API"), "{bad:?}");

    // A wrong secret is refused.
    let out = Command::new(weft)
        .args([
            "key",
            "list",
            "--admin",
            &c.admin_endpoint(),
            "--access-key",
            &c.credentials().access_key,
            "--secret-key",
            "nope",
            // Only the CA from there: with the admin certificate the
            // wrong secret would not matter.
            "--admin-ca",
            &c.pki().unwrap().ca.display().to_string(),
            "--admin-cert",
            &c.pki().unwrap().gateway.cert.display().to_string(),
            "--admin-key",
            &c.pki().unwrap().gateway.key.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // Repair settings and status, and node drain / activate / remove.
    let (set, repair, drain, removed, activate, bad_rate) =
        tokio::task::spawn_blocking(move || {
            (
                run(&[
                    "cluster",
                    "repair",
                    "--rate",
                    "100MiB/s",
                    "--priority",
                    "low",
                ]),
                run(&["cluster", "repair", "status"]),
                run(&["node", "drain", "2"]),
                run(&["node", "remove", "3"]),
                run(&["node", "activate", "2"]),
                run(&["cluster", "repair", "--rate", "fast"]),
            )
        })
        .await
        .unwrap();
    assert!(set.0, "{set:?}");
    let cfg: serde_json::Value = serde_json::from_str(&set.1).unwrap();
    assert_eq!(cfg["rate_bytes_per_sec"], 100u64 << 20);
    assert_eq!(cfg["priority"], "low");
    assert!(repair.0, "{repair:?}");
    let st: serde_json::Value = serde_json::from_str(&repair.1).unwrap();
    assert_eq!(st["state"], "healthy", "{st}");
    assert_eq!(st["config"]["rate_bytes_per_sec"], 100u64 << 20);
    assert_eq!(st["nodes"].as_array().unwrap().len(), 6);
    assert!(drain.0, "{drain:?}");
    let d: serde_json::Value = serde_json::from_str(&drain.1).unwrap();
    assert_eq!(d["admin"], "draining");
    // An empty cluster: node 3 holds nothing, so removal is allowed.
    assert!(removed.0, "{removed:?}");
    assert!(removed.1.contains("\"removed\""), "{removed:?}");
    assert!(activate.0, "{activate:?}");
    assert!(
        !bad_rate.0 && bad_rate.2.contains("not a rate"),
        "{bad_rate:?}"
    );
    tc.shutdown().await;
}
