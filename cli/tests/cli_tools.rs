//! Real S3 tools, unchanged, against an in-process cluster: aws-cli v2
//! (Debian's package), rclone and s3cmd. Each runs the same workflow: make a
//! bucket, upload a small and a multipart file, sync a tree of 200 files in
//! nested folders, list recursively, download and compare bytes, presign and
//! fetch, copy server-side, delete, remove the bucket. A missing tool fails
//! the test (./scripts/test.sh installs them).

mod support;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

struct Env {
    endpoint: String,
    ak: String,
    sk: String,
    region: String,
    work: PathBuf,
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run {:?} (is it installed? ./scripts/test.sh installs it): {e}",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 200 small files in nested folders, plus a small and a 12 MiB file.
fn make_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![];
    for i in 0..200u64 {
        let rel = format!("tree/d{}/e{}/f{i}.txt", i % 5, i % 7);
        let body = data(1000 + i, 100 + (i as usize * 37) % 3000);
        files.push((rel, body));
    }
    files.push(("small.txt".into(), b"hello weft".to_vec()));
    files.push(("big.bin".into(), data(77, 12 << 20)));
    for (rel, body) in &files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    files
}

fn compare_tree(files: &[(String, Vec<u8>)], root: &Path, only_tree: bool) {
    for (rel, body) in files {
        if only_tree && !rel.starts_with("tree/") {
            continue;
        }
        let got = std::fs::read(root.join(rel))
            .unwrap_or_else(|e| panic!("{rel} missing after download: {e}"));
        assert!(got == *body, "{rel}: bytes differ after the round trip");
    }
}

fn fetch(url: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "30", url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {url} failed");
    out.stdout
}

fn aws_v2(e: &Env, files: &[(String, Vec<u8>)]) {
    let bin = std::env::var("WEFT_TEST_AWS2").unwrap_or_else(|_| "/usr/bin/aws".into());
    let aws = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(["--endpoint-url", &e.endpoint])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &e.ak)
            .env("AWS_SECRET_ACCESS_KEY", &e.sk)
            .env("AWS_DEFAULT_REGION", &e.region)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_PAGER", "");
        c
    };
    let version = run(&mut aws(&["--version"]), "aws --version");
    assert!(
        version.starts_with("aws-cli/2."),
        "expected aws-cli v2, got {version}"
    );
    let src = e.work.join("src");
    let dst = e.work.join("aws2-down");
    run(&mut aws(&["s3", "mb", "s3://tool-aws2"]), "aws2 mb");
    run(
        &mut aws(&[
            "s3",
            "cp",
            "--no-progress",
            src.join("small.txt").to_str().unwrap(),
            "s3://tool-aws2/small.txt",
        ]),
        "aws2 cp small",
    );
    run(
        &mut aws(&[
            "s3",
            "cp",
            "--no-progress",
            src.join("big.bin").to_str().unwrap(),
            "s3://tool-aws2/big.bin",
        ]),
        "aws2 cp multipart",
    );
    run(
        &mut aws(&[
            "s3",
            "sync",
            "--no-progress",
            src.join("tree").to_str().unwrap(),
            "s3://tool-aws2/tree",
        ]),
        "aws2 sync up",
    );
    let ls = run(
        &mut aws(&["s3", "ls", "--recursive", "s3://tool-aws2/tree/"]),
        "aws2 ls",
    );
    assert_eq!(ls.lines().count(), 200, "{ls}");
    run(
        &mut aws(&[
            "s3",
            "sync",
            "--no-progress",
            "s3://tool-aws2",
            dst.to_str().unwrap(),
        ]),
        "aws2 sync down",
    );
    compare_tree(files, &dst, false);
    let url = run(
        &mut aws(&[
            "s3",
            "presign",
            "s3://tool-aws2/small.txt",
            "--expires-in",
            "300",
        ]),
        "aws2 presign",
    );
    assert_eq!(fetch(url.trim()), b"hello weft");
    run(
        &mut aws(&[
            "s3",
            "cp",
            "s3://tool-aws2/big.bin",
            "s3://tool-aws2/copy.bin",
        ]),
        "aws2 server-side copy",
    );
    run(
        &mut aws(&[
            "s3",
            "cp",
            "--no-progress",
            "s3://tool-aws2/copy.bin",
            dst.join("copy.bin").to_str().unwrap(),
        ]),
        "aws2 get copy",
    );
    assert!(std::fs::read(dst.join("copy.bin")).unwrap() == files.last().unwrap().1);
    run(
        &mut aws(&["s3", "rm", "--recursive", "s3://tool-aws2"]),
        "aws2 rm",
    );
    run(&mut aws(&["s3", "rb", "s3://tool-aws2"]), "aws2 rb");
}

fn rclone(e: &Env, files: &[(String, Vec<u8>)]) {
    let rc = |args: &[&str]| {
        let mut c = Command::new("rclone");
        c.args(args)
            .args([
                "--s3-upload-cutoff",
                "5M",
                "--s3-chunk-size",
                "5M",
                "--retries",
                "1",
            ])
            .env("RCLONE_CONFIG", "/dev/null")
            // A CA bundle meant for other tools breaks rclone's plain-HTTP transport.
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_WEFT_TYPE", "s3")
            .env("RCLONE_CONFIG_WEFT_PROVIDER", "Other")
            .env("RCLONE_CONFIG_WEFT_ACCESS_KEY_ID", &e.ak)
            .env("RCLONE_CONFIG_WEFT_SECRET_ACCESS_KEY", &e.sk)
            .env("RCLONE_CONFIG_WEFT_ENDPOINT", &e.endpoint)
            .env("RCLONE_CONFIG_WEFT_REGION", &e.region)
            .env("RCLONE_CONFIG_WEFT_FORCE_PATH_STYLE", "true");
        c
    };
    let src = e.work.join("src");
    let dst = e.work.join("rclone-down");
    run(&mut rc(&["mkdir", "weft:tool-rclone"]), "rclone mkdir");
    run(
        &mut rc(&["copy", src.to_str().unwrap(), "weft:tool-rclone"]),
        "rclone copy up (incl. multipart)",
    );
    let ls = run(
        &mut rc(&["lsf", "-R", "--files-only", "weft:tool-rclone/tree"]),
        "rclone lsf",
    );
    assert_eq!(ls.lines().count(), 200, "{ls}");
    run(
        &mut rc(&["check", src.to_str().unwrap(), "weft:tool-rclone"]),
        "rclone check",
    );
    run(
        &mut rc(&["copy", "weft:tool-rclone", dst.to_str().unwrap()]),
        "rclone copy down",
    );
    compare_tree(files, &dst, false);
    run(
        &mut rc(&[
            "copyto",
            "weft:tool-rclone/small.txt",
            "weft:tool-rclone/copied.txt",
        ]),
        "rclone server-side copy",
    );
    let got = run(
        &mut rc(&["cat", "weft:tool-rclone/copied.txt"]),
        "rclone cat",
    );
    assert_eq!(got, "hello weft");
    let link = run(
        &mut rc(&["link", "weft:tool-rclone/small.txt"]),
        "rclone link (presign)",
    );
    assert_eq!(fetch(link.trim()), b"hello weft");
    run(&mut rc(&["purge", "weft:tool-rclone"]), "rclone purge");
}

fn s3cmd(e: &Env, files: &[(String, Vec<u8>)]) {
    let hostport = e.endpoint.trim_start_matches("http://");
    let cfg = e.work.join("s3cfg");
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {}\nsecret_key = {}\nhost_base = {hostport}\nhost_bucket = {hostport}\nuse_https = False\nbucket_location = {}\nsignature_v2 = False\nmultipart_chunk_size_mb = 5\n",
            e.ak, e.sk, e.region
        ),
    )
    .unwrap();
    let s = |args: &[&str]| {
        let mut c = Command::new("s3cmd");
        c.arg("-c").arg(&cfg).arg("--no-progress").args(args);
        c
    };
    let src = e.work.join("src");
    let dst = e.work.join("s3cmd-down");
    std::fs::create_dir_all(&dst).unwrap();
    run(&mut s(&["mb", "s3://tool-s3cmd"]), "s3cmd mb");
    run(
        &mut s(&[
            "put",
            src.join("small.txt").to_str().unwrap(),
            "s3://tool-s3cmd/small.txt",
        ]),
        "s3cmd put",
    );
    run(
        &mut s(&[
            "put",
            src.join("big.bin").to_str().unwrap(),
            "s3://tool-s3cmd/big.bin",
        ]),
        "s3cmd put multipart",
    );
    run(
        &mut s(&[
            "sync",
            &format!("{}/", src.join("tree").display()),
            "s3://tool-s3cmd/tree/",
        ]),
        "s3cmd sync up",
    );
    let ls = run(
        &mut s(&["ls", "-r", "s3://tool-s3cmd/tree/"]),
        "s3cmd ls -r",
    );
    assert_eq!(ls.lines().count(), 200, "{ls}");
    run(
        &mut s(&["sync", "s3://tool-s3cmd/", &format!("{}/", dst.display())]),
        "s3cmd sync down",
    );
    compare_tree(files, &dst, false);
    let url = run(
        &mut s(&["signurl", "s3://tool-s3cmd/small.txt", "+300"]),
        "s3cmd signurl",
    );
    assert_eq!(fetch(url.trim()), b"hello weft");
    run(
        &mut s(&[
            "cp",
            "s3://tool-s3cmd/small.txt",
            "s3://tool-s3cmd/copied.txt",
        ]),
        "s3cmd cp",
    );
    run(
        &mut s(&[
            "get",
            "--force",
            "s3://tool-s3cmd/copied.txt",
            dst.join("copied.txt").to_str().unwrap(),
        ]),
        "s3cmd get",
    );
    assert_eq!(
        std::fs::read(dst.join("copied.txt")).unwrap(),
        b"hello weft"
    );
    run(
        &mut s(&["del", "--recursive", "--force", "s3://tool-s3cmd/"]),
        "s3cmd del",
    );
    run(&mut s(&["rb", "s3://tool-s3cmd"]), "s3cmd rb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_v2_rclone_and_s3cmd_workflows() {
    let tc = TestCluster::start().await;
    let work = tempfile::tempdir().unwrap();
    let files = make_tree(&work.path().join("src"));
    let c = tc.c();
    let e = Env {
        endpoint: c.s3_endpoint(),
        ak: c.credentials().access_key.clone(),
        sk: c.credentials().secret_key.clone(),
        region: c.region().to_string(),
        work: work.path().to_path_buf(),
    };
    tokio::task::spawn_blocking(move || {
        aws_v2(&e, &files);
        rclone(&e, &files);
        s3cmd(&e, &files);
    })
    .await
    .unwrap();
    tc.shutdown().await;
}
