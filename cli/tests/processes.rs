//! A cluster of separate `weft` processes on loopback, configured by TOML
//! file, flags and environment, as docs/operations.md describes, with
//! mutual TLS on every internal hop from certificates `weft cert` made.
//! Data nodes are killed with SIGKILL, as a crash would.

mod support;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Starts `weft <args>` and returns it with its first stdout line.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("WEFT_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn weft");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read first line");
    assert!(
        !line.is_empty(),
        "weft {args:?} exited before printing its address"
    );
    (child, line.trim().to_string())
}

fn addr_after<'a>(line: &'a str, marker: &str) -> &'a str {
    let rest = &line[line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in {line:?}"))
        + marker.len()..];
    rest.split([' ', ',']).next().expect("address")
}

/// Runs `weft <args>` to completion; panics with its stderr on failure.
fn weft_ok(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("run weft");
    assert!(
        out.status.success(),
        "weft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    let mut procs = Procs(vec![]);
    let pki = d("pki");
    weft_ok(&["cert", "init", "--dir", &pki]);
    for role in ["metad", "gateway"] {
        weft_ok(&[
            "cert",
            "issue",
            "--dir",
            &pki,
            "--role",
            role,
            "--name",
            role,
            "--host",
            "127.0.0.1",
        ]);
    }
    // One per data node, bound to its node id.
    for i in 1..=6 {
        weft_ok(&[
            "cert",
            "issue",
            "--dir",
            &pki,
            "--role",
            "datad",
            "--name",
            &format!("datad-{i}"),
            "--node-id",
            &i.to_string(),
            "--host",
            "127.0.0.1",
        ]);
    }
    let tls_env = |role: &str| {
        [
            ("WEFT_TLS_CERT", format!("{pki}/{role}.pem")),
            ("WEFT_TLS_KEY", format!("{pki}/{role}.key")),
            ("WEFT_TLS_CA", format!("{pki}/ca.pem")),
        ]
    };
    let env_refs = |e: &[(&'static str, String); 3]| -> Vec<(&'static str, String)> { e.to_vec() };
    weft_ok(&["cert", "master-key", "--out", &format!("{pki}/master.key")]);
    let master_key = std::fs::read_to_string(format!("{pki}/master.key")).unwrap();
    let mut metad_env = env_refs(&tls_env("metad"));
    metad_env.push(("WEFT_MASTER_KEY", master_key.trim().to_string()));

    let (metad, line) = spawn(
        &[
            "metad",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d("metad"),
            "--id",
            "1",
        ],
        &pairs(&metad_env),
    );
    procs.0.push(metad);
    let metad_addr = addr_after(&line, "listening on ").to_string();

    // Node 1 from a TOML file (its certificate too), the others from
    // flags and the environment.
    let toml = format!(
        "node_id = 1\nzone = \"zone-a\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nmetad = [\"{}\"]\nheartbeat_interval_ms = 300\ntls = {{ cert = \"{pki}/datad-1.pem\", key = \"{pki}/datad-1.key\", ca = \"{pki}/ca.pem\" }}\n",
        d("datad-1"),
        metad_addr
    );
    std::fs::write(dir.path().join("datad-1.toml"), toml).unwrap();
    let (p, _) = spawn(&["datad", "--config", &d("datad-1.toml")], &[]);
    procs.0.push(p);
    for i in 2..=6 {
        let zone = ["zone-a", "zone-b", "zone-c"][(i - 1) % 3];
        let (p, _) = spawn(
            &[
                "datad",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &d(&format!("datad-{i}")),
                "--id",
                &i.to_string(),
                "--zone",
                zone,
                "--metad",
                &metad_addr,
            ],
            &pairs(&env_refs(&tls_env(&format!("datad-{i}")))),
        );
        procs.0.push(p);
    }
    let (ak, sk) = (
        "WEFTTESTROOTKEY00001",
        "weft-test-root-secret-0000000000000000000",
    );
    let (gw, line) = spawn(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--metad",
            &metad_addr,
        ],
        &[
            &[("WEFT_ROOT_ACCESS_KEY", ak), ("WEFT_ROOT_SECRET_KEY", sk)][..],
            &pairs(&env_refs(&tls_env("gateway"))),
        ]
        .concat(),
    );
    procs.0.push(gw);
    let s3_endpoint = format!("http://{}", addr_after(&line, "S3 on "));
    let admin_endpoint = format!("https://{}", addr_after(&line, "admin API on "));

    // Wait until metad sees six nodes up. Over HTTPS with the cluster CA,
    // presenting a certificate that is not an admin's: the root key's
    // signature is what authenticates these calls.
    let not_admin =
        weft_client::internal_tls::InternalTls::load(weft_client::internal_tls::TlsFiles {
            cert: format!("{pki}/datad-1.pem").into(),
            key: format!("{pki}/datad-1.key").into(),
            ca: format!("{pki}/ca.pem").into(),
        })
        .unwrap();
    let admin = weft_cli::admin_client::AdminClient::new(&admin_endpoint, ak, sk)
        .with_tls(Some(&not_admin));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st: Result<weft_gateway::admin::ClusterStatus, _> = admin
            .call(reqwest::Method::GET, "/v1/cluster/status", None)
            .await;
        let up = match &st {
            Ok(st) => st
                .nodes
                .iter()
                .filter(|n| n.state == weft_common::topology::NodeState::Up)
                .count(),
            Err(_) => 0,
        };
        if up == 6 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "six data nodes never came up: last answer {:?}",
            st.map(|s| s.nodes.len())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let s3 = S3Client::new(&s3_endpoint, ak, sk, "us-east-1");
    assert_eq!(s3.mb("procs").await.status, 200);
    let body = data(5, 5 << 20);
    // The gateway's cluster map refreshes every 500 ms; retry until it has placed the write.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s3.put("procs", "obj", body.clone()).await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PUT never succeeded: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s3.must_get_equal("procs", "obj", &body).await;

    // SIGKILL two data nodes: the object still reads back.
    for i in [1usize, 2] {
        procs.0[i].kill().unwrap();
        procs.0[i].wait().unwrap();
    }
    s3.must_get_equal("procs", "obj", &body).await;
}
