//! A `weft` binary built without the `failpoints` feature (every release
//! build) has no fault hooks: `WEFT_FAULT_*` variables change nothing and
//! are never mentioned. The chaos image is built with the feature
//! (scripts/chaos-image.sh); this file checks the default build.
#![cfg(not(feature = "failpoints"))]

mod support;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use support::*;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_default_binary_contains_no_fault_switch() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_weft")).expect("read the weft binary");
    let marker = b"WEFT_FAULT_";
    assert!(
        !binary.windows(marker.len()).any(|w| w == marker),
        "a WEFT_FAULT_ variable name is compiled into the default weft binary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_before_commit_variable_is_ignored_and_puts_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Kill(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--metad-listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .env("WEFT_FAULT_ACK_BEFORE_COMMIT", "1")
            .env("WEFT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn weft dev"),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().expect("piped stdout"));
    let (mut endpoint, mut access, mut secret) = (None, None, None);
    let mut banner = String::new();
    while secret.is_none() {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read weft dev output");
        assert!(
            n > 0,
            "weft dev exited before printing its endpoint:\n{banner}"
        );
        banner.push_str(&line);
        let value = |prefix: &str| {
            line.trim()
                .strip_prefix(prefix)
                .map(|v| v.trim().to_string())
        };
        endpoint = endpoint.or(value("S3 endpoint:"));
        access = access.or(value("Access key:"));
        secret = secret.or(value("Secret key:"));
    }
    let s3 = S3Client::new(
        &endpoint.unwrap(),
        &access.unwrap(),
        &secret.unwrap(),
        "us-east-1",
    );

    assert_eq!(s3.mb("nofault").await.status, 200);
    let body = data(9, 100_000);
    s3.must_put("nofault", "o", body.clone()).await;
    // Acknowledged means committed: it reads back and is listed.
    s3.must_get_equal("nofault", "o", &body).await;
    let r = s3.list("nofault", &[("list-type", "2")]).await;
    assert_eq!(xml_values(&r.text(), "Key"), vec!["o"]);

    drop(child);
    let mut logged = String::new();
    std::fs::File::open(&stderr_path)
        .unwrap()
        .read_to_string(&mut logged)
        .unwrap();
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    logged.push_str(&out);
    assert!(
        logged.contains("gateway listening"),
        "the log was captured:\n{logged}"
    );
    assert!(
        !logged.contains("WEFT_FAULT") && !logged.to_lowercase().contains("without committing"),
        "the binary must say nothing about faults:\n{logged}"
    );
}
