//! boto3 and aws-cli against an in-process cluster: runs the pytest suite in
//! `tests/python` (test_boto3.py, test_boto3_pending.py, test_awscli.py).
//! Python comes from the test command's venv (WEFT_TEST_PYTHON) or PATH, and
//! must have boto3 and pytest; aws-cli from WEFT_TEST_AWS or PATH. If any is
//! missing the test fails rather than skipping. WEFT_PYTEST_K selects tests
//! (pytest -k, e.g. `WEFT_PYTEST_K="test_boto3_pending and copy"`) and
//! WEFT_PYTEST_ARGS adds whitespace-separated pytest arguments.

mod support;
use std::path::PathBuf;
use std::process::Command;
use support::*;

fn python_bin() -> String {
    std::env::var("WEFT_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Run apart, on a cluster whose lifecycle day is one second.
const LIFECYCLE: &str = "test_lifecycle.py";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_boto3_and_awscli() {
    run_suite(false, &[]).await;
}

/// Lifecycle rules through boto3 and aws-cli, and their effects on a
/// schedule of one-second days (with `weft dev`'s cold zone, for
/// transitions to GLACIER_IR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lifecycle_rules_with_one_second_days() {
    let tc = TestCluster::start_with(|cfg| {
        cfg.metad.lifecycle_day_secs = 1;
        cfg.cold_nodes = 6;
        cfg.datad.repair_poll_ms = 200;
    })
    .await;
    run_on(tc, &[LIFECYCLE]).await;
}

/// boto3 over HTTPS: the newest boto3 sends aws-chunked bodies with trailing
/// CRC32 checksums only over HTTPS, so this run covers the trailer path
/// with the SDK's own encoder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_boto3_over_https() {
    run_suite(true, &["test_boto3.py", "test_boto3_pending.py"]).await;
}

async fn run_suite(tls: bool, files: &[&str]) {
    let tc = TestCluster::start_with(|cfg| cfg.tls = tls).await;
    run_on(tc, files).await;
}

/// Runs the pytest `files` (every file but the lifecycle one when empty)
/// against `tc`.
async fn run_on(tc: TestCluster, files: &[&str]) {
    let suite: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "tests", "python"]
        .iter()
        .collect();
    assert!(
        suite.join("conftest.py").is_file(),
        "pytest suite missing at {}",
        suite.display()
    );
    let python = python_bin();
    // Fail early and clearly if the interpreter or its packages are missing.
    let probe = Command::new(&python)
        .args(["-c", "import boto3, pytest"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {python} (install python3 with boto3 and pytest, or set WEFT_TEST_PYTHON; \
                 ./scripts/test.sh prepares a venv): {e}"
            )
        });
    assert!(
        probe.status.success(),
        "{python} lacks boto3 or pytest (pip install boto3 pytest awscli, or set \
         WEFT_TEST_PYTHON to a venv's python; ./scripts/test.sh prepares one):\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let c = tc.c();
    let mut envs: Vec<(&str, String)> = vec![
        ("WEFT_S3_ENDPOINT", c.s3_endpoint()),
        ("WEFT_ACCESS_KEY", c.credentials().access_key.clone()),
        ("WEFT_SECRET_KEY", c.credentials().secret_key.clone()),
        ("WEFT_REGION", c.region().to_string()),
        ("WEFT_ADMIN_ENDPOINT", c.admin_endpoint()),
    ];
    if let Some(ca) = c.ca_cert() {
        // Trust the cluster's self-signed certificate in botocore, urllib and curl.
        for var in [
            "AWS_CA_BUNDLE",
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
        ] {
            envs.push((var, ca.display().to_string()));
        }
    }
    let targets: Vec<PathBuf> = if files.is_empty() {
        vec![suite.clone()]
    } else {
        files.iter().map(|f| suite.join(f)).collect()
    };
    // Extra pytest arguments (whitespace-separated), and a -k expression.
    let mut extra: Vec<String> = std::env::var("WEFT_PYTEST_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if let Ok(k) = std::env::var("WEFT_PYTEST_K") {
        extra.extend(["-k".to_string(), k]);
    }
    if files.is_empty() {
        extra.push(format!("--ignore={}", suite.join(LIFECYCLE).display()));
    }
    // pytest's tmp_path directories (tens of MiB) go away with the test.
    let work = tempfile::tempdir().expect("tempdir");
    extra.push(format!(
        "--basetemp={}",
        work.path().join("pytest").display()
    ));
    let suite2 = suite.clone();
    // pytest is synchronous: run it off the runtime that serves the cluster.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args([
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                "--durations=5",
            ])
            .args(extra)
            .args(&targets)
            .current_dir(&suite2)
            .envs(envs)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Keep the user's AWS configuration out of the clients.
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .output()
            .unwrap_or_else(|e| panic!("run {python} -m pytest: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit code 5 (no tests collected) is a failure too: only 0 passes.
    assert!(
        out.status.code() == Some(0),
        "pytest {} failed ({:?}):\n{stdout}\n{stderr}",
        suite.display(),
        out.status
    );
    assert!(
        stdout.contains("passed"),
        "pytest ran no tests:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    tc.shutdown().await;
}
