//! Running out of file descriptors is survivable: real `weft` processes whose
//! open-file limit is lowered (setrlimit in the child before exec) are driven
//! to EMFILE by holding TCP connections open to them. A datad answers "busy,
//! retry" and recovers once descriptors are released; a metad whose raft core
//! dies of it exits non-zero with a message instead of serving 503s forever.
//!
//! Exhaustion is deterministic: connections are opened one at a time until
//! /proc/<pid>/fd holds exactly the limit, so the next file the process opens
//! fails. Timeouts only turn hangs into failures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Outer deadline of every wait: a hang becomes a failure, nothing more.
const DEADLINE: Duration = Duration::from_secs(90);

/// A `weft` child with its stderr collected.
struct Proc {
    child: Child,
    /// Kept open: the daemon must never write to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    first_line: String,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `weft <args>` with RLIMIT_NOFILE set to `soft`/`hard`.
    fn spawn(args: &[&str], soft: u64, hard: u64) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("WEFT_LOG", "info,openraft=error")
            // Raw HTTP connections count descriptors here; TLS is tested
            // elsewhere (processes.rs, internal_tls.rs).
            .env("WEFT_INSECURE_INTERNAL", "true");
        // SAFETY: only setrlimit runs between fork and exec; it allocates
        // nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn weft");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = BufReader::new(child.stderr.take().expect("piped stderr"));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while pipe.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).expect("read first line");
        let p = Proc {
            child,
            _stdout: stdout,
            first_line,
            stderr,
        };
        assert!(
            !p.first_line.is_empty(),
            "weft {args:?} exited before printing its address; stderr:\n{}",
            p.stderr()
        );
        p
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn addr(&self) -> SocketAddr {
        let line = self.first_line.trim();
        let at = line.find("listening on ").expect("an address") + "listening on ".len();
        line[at..].parse().expect("a socket address")
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Open descriptors of the process numbered below `limit`. Inherited
    /// ones (a jobserver pipe of the test runner) may sit above it; they
    /// take no slot the process could open a file in.
    fn fds_below(&self, limit: usize) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("list /proc/<pid>/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|fd| *fd < limit)
            .count()
    }

    /// Sockets among [`Proc::fds_below`]: an accepted connection adds
    /// one, while a file the process opens and closes meanwhile (which
    /// would make a count of every descriptor miss the accept) does not.
    fn sockets_below(&self, limit: usize) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("list /proc/<pid>/fd")
            .filter_map(|e| {
                let e = e.ok()?;
                let fd = e.file_name().to_str()?.parse::<usize>().ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                (fd < limit && target.to_string_lossy().starts_with("socket:")).then_some(fd)
            })
            .count()
    }

    /// Opens connections until the process holds exactly `limit`
    /// descriptors; returns them (dropping them releases the descriptors).
    fn exhaust_descriptors(&self, limit: usize) -> Vec<TcpStream> {
        let deadline = Instant::now() + DEADLINE;
        let mut held = Vec::new();
        loop {
            if self.fds_below(limit) >= limit {
                return held;
            }
            let before = self.sockets_below(limit);
            held.push(TcpStream::connect(self.addr()).expect("connect"));
            // Accepted: one more socket (or the limit, by another path).
            while self.sockets_below(limit) <= before && self.fds_below(limit) < limit {
                assert!(
                    Instant::now() < deadline,
                    "the server did not accept connection {} ({} of {limit} descriptors, {} sockets)",
                    held.len(),
                    self.fds_below(limit),
                    self.sockets_below(limit)
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process is still running; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until its stderr contains `needle`.
    fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.stderr();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in stderr:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 keep-alive connection driven by hand, so every request is
/// known to use this connection and no other descriptor of the server.
struct Conn(BufReader<TcpStream>);

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        Conn(BufReader::new(s))
    }

    /// Sends a request; `Err` if the connection broke (the server closed it).
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: weft\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let s = self.0.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut line = String::new();
        if self.0.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let (mut len, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.0.read_line(&mut line)?;
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().expect("content-length");
            }
            if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                chunked = true;
            }
        }
        let mut out = Vec::new();
        if !chunked {
            out.resize(len, 0);
            self.0.read_exact(&mut out)?;
            return Ok((status, out));
        }
        loop {
            line.clear();
            self.0.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).expect("chunk size");
            let mut chunk = vec![0; n + 2];
            self.0.read_exact(&mut chunk)?;
            if n == 0 {
                return Ok((status, out));
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
}

/// (c) A daemon started with soft < hard raises soft to hard and logs both.
#[test]
fn daemons_raise_the_soft_open_file_limit_to_the_hard_one_and_log_both() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("datad").to_string_lossy().into_owned();
    let metad = dir.path().join("metad").to_string_lossy().into_owned();
    let datad_args = [
        "datad",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--id",
        "1",
        "--metad",
        "127.0.0.1:1",
    ];
    let metad_args = ["metad", "--listen", "127.0.0.1:0", "--data-dir", &metad];
    for args in [&datad_args[..], &metad_args[..]] {
        let p = Proc::spawn(args, 256, 1024);
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.pid())).unwrap();
        let row: Vec<&str> = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("a Max open files row")
            .split_whitespace()
            .collect();
        // "Max open files <soft> <hard> files"
        assert_eq!(&row[3..5], &["1024", "1024"], "{}: {limits}", args[0]);
        p.wait_stderr("open-file limit (RLIMIT_NOFILE): soft 256, hard 1024; soft now 1024");
    }
}

/// (b) A datad out of descriptors answers a shard PUT with a retryable 503
/// `Busy`, not a 500, and stores shards again once they are released,
/// without a restart.
#[test]
fn datad_out_of_descriptors_answers_busy_and_recovers_when_they_are_released() {
    const LIMIT: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    // No metad: nothing in the background opens files or sockets.
    let config = dir.path().join("datad.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\nzone = \"a\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nmetad = []\n",
            dir.path().join("datad").display()
        ),
    )
    .unwrap();
    let p = Proc::spawn(
        &["datad", "--config", config.to_str().unwrap()],
        LIMIT as u64,
        LIMIT as u64,
    );
    let at_start = p.fds_below(LIMIT);
    assert!(at_start < LIMIT - 8, "{at_start} descriptors at start");

    let mut conn = Conn::open(p.addr());
    let (status, _) = conn.request("GET", "/health", &[], b"").unwrap();
    assert_eq!(status, 200);
    let held = p.exhaust_descriptors(LIMIT);

    let shard = vec![7u8; 4096];
    let path = format!("/v1/shards/{:032x}/0", 0xabcdu128);
    let headers = [("x-weft-shard-len", shard.len().to_string())];
    let (status, body) = conn.request("PUT", &path, &headers, &shard).unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 503, "{text}");
    let err: weft_common::rpc::RpcErrorBody = serde_json::from_slice(&body).expect(&text);
    assert_eq!(err.code, weft_common::rpc::RpcErrorCode::Busy, "{text}");
    assert!(err.message.contains("out of file descriptors"), "{text}");
    assert!(err.message.contains("retry"), "{text}");

    // Released: the next PUTs succeed on the same connection (retried while
    // the server is still closing the released ones, each a 503 Busy).
    drop(held);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = conn.request("PUT", &path, &headers, &shard).unwrap();
        if status == 200 {
            break;
        }
        let err: weft_common::rpc::RpcErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, err.code),
            (503, weft_common::rpc::RpcErrorCode::Busy)
        );
        assert!(Instant::now() < deadline, "no recovery: {}", err.message);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, got) = conn
        .request(
            "GET",
            &format!("{path}?offset=0&len={}", shard.len()),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        got, shard,
        "the shard stored after recovery reads back whole"
    );
}

/// (a) A metad whose snapshot write fails with EMFILE loses its raft core
/// for good; it must not linger answering 503: `/health/ready` says why
/// while it is still up, and the process exits 75 with a message saying
/// what failed, that the data is intact and that it should be restarted.
#[test]
fn metad_whose_raft_core_dies_of_emfile_exits_75_saying_to_restart_it() {
    const LIMIT: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metad.toml");
    // A snapshot every few entries: the first one after exhaustion opens a
    // file, fails, and openraft stops the core.
    std::fs::write(
        &config,
        format!(
            // Space marks at 0: a small /tmp must not put metad in
            // space-low mode, which would refuse the commands that drive
            // it to a snapshot.
            "id = 1\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nsnapshot_logs = 4\nreserved_bytes = 0\nspace_low_free_bytes = 0\nspace_ok_free_bytes = 1\n",
            dir.path().join("metad").display()
        ),
    )
    .unwrap();
    let mut p = Proc::spawn(
        &["metad", "--config", config.to_str().unwrap()],
        LIMIT as u64,
        LIMIT as u64,
    );
    let at_start = p.fds_below(LIMIT);
    assert!(at_start < LIMIT - 8, "{at_start} descriptors at start");

    let mut conn = Conn::open(p.addr());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = conn.request("GET", "/health/ready", &[], b"").unwrap();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _held = p.exhaust_descriptors(LIMIT);

    let mut failed = None;
    for n in 0..200u64 {
        let cmd = weft_common::rpc::Command::Request {
            format: weft_common::rpc::COMMAND_FORMAT,
            actor: None,
            id: weft_common::RequestId(u128::from(n) + 1),
            at_ms: 0,
            command: Box::new(weft_common::rpc::Command::CreateBucket {
                bucket: weft_common::manifest::BucketInfo {
                    name: format!("b{n}"),
                    owner: "o".into(),
                    created_ms: 0,
                    tags: Default::default(),
                    versioning: None,
                    lifecycle: None,
                    tiering: None,
                    residency: None,
                },
            }),
        };
        let body = serde_json::to_vec(&cmd).unwrap();
        let headers = [("content-type", "application/json".to_string())];
        match conn.request("POST", "/v1/command", &headers, &body) {
            Ok((200, _)) => continue,
            Ok((status, body)) => {
                failed = Some(format!("{status} {}", String::from_utf8_lossy(&body)));
                break;
            }
            Err(e) => {
                failed = Some(format!("connection closed: {e}"));
                break;
            }
        }
    }
    let failed = failed.expect("200 commands succeeded: no snapshot failed");

    // Still up for a moment? Then it is not ready, and says why.
    if let Ok((status, body)) = conn.request("GET", "/health/ready", &[], b"") {
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 503, "ready after {failed}: {text}");
        assert!(text.contains("stopped on a fatal error"), "{text}");
    }

    let status = p.wait_exit();
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(75), "after {failed}; stderr:\n{stderr}");
    let message = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in stderr:\n{stderr}"));
    for needle in [
        "the raft core of metad 1 stopped on a fatal error",
        "Too many open files",
        "is intact",
        "restart this metad",
        "LimitNOFILE",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

/// `weft dev` exits when any of its metads goes fatal: the cluster reports
/// which one (here voter 2 of 3, its raft core stopped unasked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_reports_which_metad_went_fatal() {
    use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = DevClusterConfig::ephemeral(dir.path());
    cfg.metad_voters = 3;
    let cluster = DevCluster::start(cfg).await.expect("start cluster");
    let fatal = cluster.metad_fatal();
    cluster.metad_raft(1).unwrap().shutdown().await.unwrap();
    let fatal = tokio::time::timeout(DEADLINE, fatal)
        .await
        .expect("metad_fatal resolves once a voter's raft core has stopped");
    assert_eq!(fatal.id, 2, "{fatal}");
    tokio::time::timeout(DEADLINE, cluster.shutdown())
        .await
        .expect("the cluster stops with a dead voter");
}
