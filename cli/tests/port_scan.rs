//! Issue 13's "done when": a port scan of a running `weft dev` finds no
//! endpoint that serves a request without a valid certificate (or, on
//! the S3 and admin ports, a signature). The dev cluster runs as its own
//! process; every port it listens on is found from the kernel's socket
//! table, not from its banner, and each is asked for keys, shards, raft
//! votes, commands and membership changes, in plain HTTP and over TLS
//! without a client certificate. Health and metrics may answer.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TCP ports process `pid` listens on: its socket inodes (from its fds)
/// matched against the listening rows of the kernel's tables.
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(n.to_string());
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            if *state == "0A" && inodes.contains(*inode) {
                if let Some(p) = local
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.insert(p);
                }
            }
        }
    }
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_port_of_weft_dev_serves_a_caller_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Kill(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--metad-listen",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn weft dev"),
    );
    // Ready once it prints the credentials (after every part started).
    let mut stdout = BufReader::new(child.0.stdout.take().expect("piped stdout"));
    let mut banner = String::new();
    let (mut s3_port, mut admin_port) = (None, None);
    let port_of = |url: &str| -> Option<u16> { url.trim().rsplit(':').next()?.parse().ok() };
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read weft dev output");
        assert!(n > 0, "weft dev exited before it was ready:\n{banner}");
        banner.push_str(&line);
        let l = line.trim();
        if let Some(url) = l.strip_prefix("S3 endpoint:") {
            s3_port = port_of(url);
        }
        if let Some(url) = l.strip_prefix("Admin API:") {
            admin_port = port_of(url);
        }
        if l.starts_with("Secret key:") {
            break;
        }
    }
    let s3_port = s3_port.unwrap_or_else(|| panic!("no S3 endpoint in:\n{banner}"));
    let admin_port = admin_port.unwrap_or_else(|| panic!("no admin API in:\n{banner}"));
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stdout.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });

    let ports = listening_ports(child.0.id());
    // S3, admin, one metad and six data nodes at least.
    assert!(ports.len() >= 9, "weft dev listens on only {ports:?}");

    let plain = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let ca = std::fs::read_to_string(data.join("pki").join("ca.pem")).unwrap();
    for c in weft_client::pki::certs_from_pem(&ca, "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let anonymous_tls = reqwest::Client::builder()
        .use_preconfigured_tls(
            tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();

    let asks: &[(&str, &str, &str)] = &[
        ("POST", "/v1/query", r#"{"q":"keys"}"#),
        (
            "POST",
            "/v1/command",
            r#"{"op":"delete_key","name":"root"}"#,
        ),
        ("POST", "/raft/vote", "{}"),
        ("POST", "/raft/append", "{}"),
        ("GET", "/v1/shards/1/0", ""),
        ("DELETE", "/v1/shards/1/0", ""),
        ("POST", "/v1/shards/release", "{}"),
        ("POST", "/v1/heartbeat", "{}"),
        (
            "POST",
            "/v1/members/add",
            r#"{"id":9,"addr":"127.0.0.1:1"}"#,
        ),
        ("GET", "/v1/keys", ""),
        ("GET", "/v1/cluster/status", ""),
        ("GET", "/v1/audit", ""),
        ("GET", "/", ""),
    ];
    // What each port may answer a caller with no certificate and no
    // signature: the internal ports refuse every path before routing
    // (401); the admin API refuses every call it serves (401) and knows no
    // other path (404, 405); the S3 port answers with S3 errors, never a
    // success. A connection refused in the TLS handshake (plain HTTP to a
    // TLS port, TLS to the plain S3 port) is a refusal too.
    let allowed = |port: u16, status: u16| -> bool {
        if port == s3_port {
            status >= 400
        } else if port == admin_port {
            matches!(status, 401 | 404 | 405)
        } else {
            status == 401
        }
    };
    let mut answered: BTreeSet<u16> = BTreeSet::new();
    let mut wrong = vec![];
    for port in &ports {
        for (scheme, client) in [("http", &plain), ("https", &anonymous_tls)] {
            for (method, path, body) in asks {
                let url = format!("{scheme}://127.0.0.1:{port}{path}");
                let req = client
                    .request(method.parse().unwrap(), &url)
                    .header("content-type", "application/json")
                    .body(body.to_string());
                let Ok(resp) = req.send().await else {
                    continue; // refused in the handshake, or not this protocol
                };
                answered.insert(*port);
                let status = resp.status().as_u16();
                if !allowed(*port, status) {
                    wrong.push(format!("{method} {url} -> {status}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "answered other than with a refusal, without a certificate or signature:\n{}",
        wrong.join("\n")
    );
    // Every port answered one of the two callers, so the scan reached each
    // of them (not merely failed to connect).
    let silent: Vec<_> = ports.difference(&answered).collect();
    assert!(silent.is_empty(), "ports that answered nothing: {silent:?}");
    assert!(answered.contains(&s3_port) && answered.contains(&admin_port));
}
