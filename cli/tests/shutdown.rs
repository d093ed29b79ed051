//! Graceful shutdown of real `weft` processes: on SIGTERM a gateway stops
//! accepting, lets requests in flight finish within its grace, cuts what
//! outlives it, and exits 0 either way; `weft dev`'s cluster drains its
//! gateway before stopping the data nodes that requests in flight need.

mod support;
use bytes::Bytes;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const AK: &str = "WEFTTESTROOTKEY00001";
const SK: &str = "weft-test-root-secret-0000000000000000000";
/// One piece of the slow PUT's body; three make a small (replicated) object.
const PIECE: usize = 16 << 10;

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `weft <args>`, returning it and its first stdout line; stderr is
/// collected by a thread and returned when the process exits.
fn spawn(args: &[&str]) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("WEFT_LOG", "info,s3s=off,openraft=warn")
        .env("NO_COLOR", "1")
        // What shutdown does is the same over TLS; processes.rs runs a
        // cluster of processes with it.
        .env("WEFT_INSECURE_INTERNAL", "true")
        .env("WEFT_ROOT_ACCESS_KEY", AK)
        .env("WEFT_ROOT_SECRET_KEY", SK)
        .spawn()
        .expect("spawn weft");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read first line");
    assert!(
        !line.is_empty(),
        "weft {args:?} exited before printing its address"
    );
    (child, line.trim().to_string(), log)
}

fn addr_after(line: &str, marker: &str) -> String {
    let at = line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in {line:?}"));
    let rest = &line[at + marker.len()..];
    rest.split([' ', ',']).next().expect("address").to_string()
}

struct Cluster {
    procs: Procs,
    gateway: Child,
    gateway_log: std::thread::JoinHandle<String>,
    s3: String,
    s3_addr: std::net::SocketAddr,
    admin: String,
    _dir: tempfile::TempDir,
}

/// metad, three data nodes (enough for small replicated objects) and a
/// gateway with `shutdown_grace_ms`, each its own process; returns once a
/// PUT succeeds.
async fn cluster(grace_ms: u64) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_string_lossy().into_owned();
    let mut procs = Procs(vec![]);
    let (metad, line, _) = spawn(&[
        "metad",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &d("metad"),
        "--id",
        "1",
    ]);
    procs.0.push(metad);
    let metad_addr = addr_after(&line, "listening on ");
    for i in 1..=3 {
        let (p, _, _) = spawn(&[
            "datad",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d(&format!("datad-{i}")),
            "--id",
            &i.to_string(),
            "--zone",
            ["zone-a", "zone-b", "zone-c"][i - 1],
            "--metad",
            &metad_addr,
        ]);
        procs.0.push(p);
    }
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmetad = [\"{metad_addr}\"]\nshutdown_grace_ms = {grace_ms}\n"
    );
    std::fs::write(dir.path().join("gateway.toml"), toml).unwrap();
    let (gateway, line, gateway_log) = spawn(&["gateway", "--config", &d("gateway.toml")]);
    let s3_addr: std::net::SocketAddr = addr_after(&line, "S3 on ").parse().unwrap();
    let c = Cluster {
        procs,
        gateway,
        gateway_log,
        s3: format!("http://{s3_addr}"),
        s3_addr,
        admin: format!("http://{}", addr_after(&line, "admin API on ")),
        _dir: dir,
    };
    let s3 = c.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = s3.mb("drain").await;
        let r = s3.put("drain", "ready", b"ready".to_vec()).await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PUT never succeeded: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c
}

impl Cluster {
    fn client(&self) -> S3Client {
        S3Client::new(&self.s3, AK, SK, "us-east-1")
    }

    fn sigterm_gateway(&self) {
        let pid = self.gateway.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid this test spawned and still owns.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "send SIGTERM");
    }

    /// Waits (up to 60 s) for the gateway to exit; returns its status and log.
    fn wait_gateway(self) -> (std::process::ExitStatus, String) {
        let Cluster {
            mut gateway,
            gateway_log,
            procs,
            ..
        } = self;
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = gateway.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = gateway.kill();
                panic!("the gateway did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(procs);
        (status, gateway_log.join().expect("log thread"))
    }
}

/// A PUT whose body the test feeds piece by piece.
struct SlowPut {
    tx: futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
    task: tokio::task::JoinHandle<Resp>,
}

fn slow_put(client: S3Client, key: &str, pieces: usize) -> SlowPut {
    let (tx, rx) = futures::channel::mpsc::channel(4);
    let key = key.to_string();
    let task = tokio::spawn(async move {
        client
            .put_body(
                "drain",
                &key,
                pieces * PIECE,
                reqwest::Body::wrap_stream(rx),
            )
            .await
    });
    SlowPut { tx, task }
}

impl SlowPut {
    async fn send(&mut self, seed: u64) {
        use futures::SinkExt;
        self.tx
            .send(Ok(Bytes::from(data(seed, PIECE))))
            .await
            .expect("the request is still open");
    }
}

/// Waits until the gateway reports `n` requests in flight.
async fn wait_in_flight(http: &reqwest::Client, admin: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = http
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .expect("admin API")
            .text()
            .await
            .unwrap();
        if text
            .lines()
            .any(|l| l == format!("weft_gateway_requests_in_flight {n}"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} requests in flight:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until connecting to `addr` is refused (the listener closed).
async fn wait_refused(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            // A connection the kernel half-opened as the listener closed is
            // reset: the listener is closing, not yet closed. Try again.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect failed other than refused: {e}"),
            Ok(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "new connections still accepted after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_connections_finishes_the_put_in_flight_and_exits_0() {
    let c = cluster(60_000).await;
    let mut put = slow_put(c.client(), "slow", 3);
    put.send(1).await;
    wait_in_flight(&reqwest::Client::new(), &c.admin, 1).await;
    c.sigterm_gateway();
    wait_refused(c.s3_addr).await;
    put.send(2).await;
    put.send(3).await;
    drop(put.tx);
    let r = tokio::time::timeout(Duration::from_secs(60), put.task)
        .await
        .expect("the PUT in flight hung")
        .unwrap();
    assert_eq!(r.status, 200, "the PUT in flight completes: {}", r.text());
    let (status, log) = c.wait_gateway();
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(log.contains("S3 requests drained"), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_outliving_the_grace_is_cut_and_the_exit_is_still_clean() {
    let c = cluster(500).await;
    let mut put = slow_put(c.client(), "stuck", 3);
    put.send(1).await;
    wait_in_flight(&reqwest::Client::new(), &c.admin, 1).await;
    c.sigterm_gateway();
    // The rest of the body never comes.
    let (status, log) = c.wait_gateway();
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(
        log.contains("shutdown grace ended") && log.contains("requests=1"),
        "the cut is logged with its count:\n{log}"
    );
    let r = tokio::time::timeout(Duration::from_secs(60), put.task)
        .await
        .expect("the cut PUT hung")
        .unwrap();
    assert_ne!(r.status, 200, "a cut PUT is never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_shutdown_drains_its_gateway_before_the_data_nodes() {
    let tc = TestCluster::start_with(|c| c.gateway.shutdown_grace_ms = 60_000).await;
    let client = tc.root_client();
    assert_eq!(client.mb("drain").await.status, 200);
    let admin = tc.c().admin_endpoint();
    let http = tc.c().internal_http();
    let mut put = slow_put(client, "dev", 3);
    put.send(1).await;
    wait_in_flight(&http, &admin, 1).await;
    let TestCluster { cluster, dir } = tc;
    let stopping = tokio::spawn(cluster.expect("running").shutdown());
    // The data nodes stay up while the gateway drains: the PUT commits.
    put.send(2).await;
    put.send(3).await;
    drop(put.tx);
    let r = tokio::time::timeout(Duration::from_secs(60), put.task)
        .await
        .expect("the PUT in flight hung")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .expect("shutdown hung")
        .unwrap();
    drop(dir);
}
