//! The audit chain end to end (issue 13): administrative actions, S3 and
//! internal authentication failures and denials, and (when switched on)
//! object writes land in metad's chain with who did them; the leader signs
//! checkpoints; `weft audit verify` passes on the live chain and on an
//! export, and fails, naming the entry, on an export with one entry edited,
//! deleted or moved, or with a forged checkpoint.

mod support;

use std::time::{Duration, Instant};
use support::TestCluster;
use weft_client::internal_tls::InternalTls;
use weft_common::audit::{AuditEntry, AuditExport, AuditInfo, EventKind};
use weft_gateway::admin_audit::EntriesReply;

/// Runs the `weft` binary against the cluster's admin API.
async fn weft(tc: &TestCluster, args: &[&str]) -> (bool, String, String) {
    support::weft_cli(tc.c(), args).await
}

/// `weft audit tail --follow --json` running beside the test, its lines
/// read by a thread; killed when dropped.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Follower {
    /// Whether a line matching `want` arrives within 30 s.
    fn wait_for(&mut self, want: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn follow_tail(tc: &TestCluster) -> Follower {
    use std::io::BufRead;
    let c = tc.c();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["audit", "tail", "-n", "1", "--follow", "--json"])
        .args(["--admin", &c.admin_endpoint()])
        .env("WEFT_DATA", &c.config().data_dir)
        .env("WEFT_ROOT_ACCESS_KEY", &c.credentials().access_key)
        .env("WEFT_ROOT_SECRET_KEY", &c.credentials().secret_key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn weft audit tail --follow");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Follower { child, lines }
}

async fn entries(tc: &TestCluster) -> Vec<AuditEntry> {
    let r: EntriesReply = tc
        .c()
        .admin_client()
        .call(reqwest::Method::GET, "/v1/audit?after=0&limit=1000", None)
        .await
        .expect("read the audit chain");
    r.entries
}

/// Waits (up to 30 s: reports are flushed every 2 s) until an entry
/// matching `want` is in the chain.
async fn wait_for(tc: &TestCluster, what: &str, want: impl Fn(&AuditEntry) -> bool) -> AuditEntry {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = entries(tc).await;
        if let Some(e) = all.iter().find(|e| want(e)) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no audit entry for {what} after 30 s; the chain holds:\n{}",
            all.iter()
                .map(|e| format!("{:?}", e.event))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_and_refusals_are_chained_and_verify_detects_tampering() {
    let tc = TestCluster::start_with(|c| c.metad.audit_checkpoint_ms = 300).await;
    let c = tc.c();
    let admin = c.admin_client();
    let s3 = tc.root_client();

    // Administration, through the admin API and S3.
    let key: serde_json::Value = admin
        .call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(serde_json::json!({ "name": "reader" })),
        )
        .await
        .unwrap();
    let reader_ak = key["access_key"].as_str().unwrap().to_string();
    let reader_sk = key["secret_key"].as_str().unwrap().to_string();
    assert_eq!(s3.mb("ledger").await.status, 200);

    // Refusals: a bad S3 signature, a key reading another's bucket, a data
    // node's certificate asking metad for keys, a wrong admin signature.
    assert_eq!(
        s3.with_secret("wrong-secret")
            .list("ledger", &[])
            .await
            .status,
        403
    );
    let reader = support::S3Client::new(&c.s3_endpoint(), &reader_ak, &reader_sk, c.region());
    assert_eq!(reader.list("ledger", &[]).await.status, 403);
    let datad_tls = InternalTls::load(c.pki().unwrap().datad(1).unwrap()).unwrap();
    let as_datad = reqwest::Client::builder()
        .use_preconfigured_tls(datad_tls.client_config())
        .build()
        .unwrap();
    let metad_addr = c.metad_addrs()[0].clone();
    let refused = as_datad
        .post(c.internal_url(&metad_addr, "/v1/query"))
        .json(&serde_json::json!({ "q": "keys" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let wrong_admin =
        weft_cli::admin_client::AdminClient::new(&c.admin_endpoint(), &reader_ak, "nope")
            .with_tls(Some(&datad_tls));
    assert!(wrong_admin
        .call::<serde_json::Value>(reqwest::Method::GET, "/v1/keys", None)
        .await
        .is_err());
    let not_root =
        weft_cli::admin_client::AdminClient::new(&c.admin_endpoint(), &reader_ak, &reader_sk)
            .with_tls(Some(&datad_tls));
    assert!(not_root
        .call::<serde_json::Value>(reqwest::Method::GET, "/v1/buckets", None)
        .await
        .is_err());

    // Plain HTTP at metad's TLS port, as a port scan sends: refused in
    // the handshake, before any request exists.
    assert!(reqwest::Client::new()
        .get(format!("http://{metad_addr}/v1/query"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .is_err());

    // Each is in the chain, with who did it.
    let root_ak = c.credentials().access_key.clone();
    let created = wait_for(&tc, "key creation", |e| {
        e.event.action == "create_key" && e.event.target.starts_with("key reader ")
    })
    .await;
    assert_eq!(created.event.kind, EventKind::Admin);
    // The dev cluster's admin client presents the admin certificate.
    assert!(
        created
            .event
            .actor
            .starts_with("admin certificate at 127.0.0.1 via gateway"),
        "{:?}",
        created.event
    );
    assert!(
        created.event.target.contains(&reader_ak),
        "{:?}",
        created.event
    );
    let bucket = wait_for(&tc, "bucket creation", |e| {
        e.event.action == "create_bucket"
    })
    .await;
    assert!(
        bucket.event.actor.contains(&format!("key {root_ak}")),
        "{:?}",
        bucket.event
    );
    assert!(
        bucket.event.actor.contains("via gateway"),
        "{:?}",
        bucket.event
    );
    wait_for(&tc, "a bad S3 signature", |e| {
        e.event.kind == EventKind::AuthFailure
            && e.event.actor.contains(&format!("claimed key {root_ak}"))
            && e.event.outcome.contains("SignatureDoesNotMatch")
    })
    .await;
    wait_for(&tc, "a key reading another's bucket", |e| {
        e.event.kind == EventKind::Denial
            && e.event.actor.contains(&format!("key {reader_ak}"))
            && e.event.target.contains("ledger")
    })
    .await;
    let internal = wait_for(&tc, "a data node asking for keys", |e| {
        e.event.kind == EventKind::Denial
            && e.event.actor.starts_with("datad at 127.0.0.1")
            && e.event.target == "keys"
    })
    .await;
    assert!(
        internal.event.actor.contains("reported by metad"),
        "{:?}",
        internal.event
    );
    wait_for(&tc, "a wrong admin signature", |e| {
        e.event.kind == EventKind::AuthFailure
            && e.event.action == "admin GET"
            && e.event.target == "/v1/keys"
    })
    .await;
    wait_for(&tc, "a key that is not root on the admin API", |e| {
        e.event.kind == EventKind::Denial
            && e.event.actor.starts_with(&format!("key {reader_ak} at "))
            && e.event.target == "/v1/buckets"
            && e.event.outcome.contains("only root keys")
    })
    .await;

    wait_for(&tc, "a refused TLS handshake", |e| {
        e.event.kind == EventKind::AuthFailure
            && e.event.action == "TLS handshake"
            && e.event.target == format!("internal port {metad_addr}")
            && e.event.actor.starts_with("TLS caller at 127.0.0.1")
    })
    .await;

    // A membership change (removing a voter the group does not have, which
    // openraft takes as done) names who asked, though it is not a command.
    let _: serde_json::Value = admin
        .call(
            reqwest::Method::POST,
            "/v1/metad/remove",
            Some(serde_json::json!({ "id": 99 })),
        )
        .await
        .unwrap();
    let removal = wait_for(&tc, "a membership change", |e| {
        e.event.action == "remove_metad_voter" && e.event.target == "metad 99"
    })
    .await;
    assert_eq!(removal.event.kind, EventKind::Admin);
    assert!(
        removal
            .event
            .actor
            .starts_with("admin certificate at 127.0.0.1"),
        "{:?}",
        removal.event
    );
    assert_eq!(removal.event.outcome, "ok", "{:?}", removal.event);

    // A certificate issued offline, recorded on request.
    let (ok, out, err) = weft(
        &tc,
        &[
            "cert", "issue", "--role", "admin", "--name", "auditor", "--record",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let issued = wait_for(&tc, "a certificate issue", |e| {
        e.event.action == "issue_certificate" && e.event.target.contains("\"auditor\"")
    })
    .await;
    assert!(
        issued.event.target.starts_with("admin certificate"),
        "{:?}",
        issued.event
    );
    assert!(
        issued
            .event
            .actor
            .starts_with("admin certificate at 127.0.0.1"),
        "{:?}",
        issued.event
    );

    // Data-plane records only once switched on, naming the writer's key.
    assert_eq!(s3.put("ledger", "before", b"x".to_vec()).await.status, 200);
    let (ok, out, err) = weft(&tc, &["audit", "data-plane", "on"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(s3.put("ledger", "after", b"y".to_vec()).await.status, 200);
    let put = wait_for(&tc, "an object write", |e| e.event.kind == EventKind::Data).await;
    assert!(
        put.event.target.starts_with("ledger/after "),
        "{:?}",
        put.event
    );
    assert!(
        put.event.actor.contains(&format!("key {root_ak}")),
        "{:?}",
        put.event
    );
    assert!(
        !entries(&tc)
            .await
            .iter()
            .any(|e| e.event.target.starts_with("ledger/before ")),
        "a write made before data-plane auditing was on is in the chain"
    );

    // The leader signs the head; verify passes on the live chain.
    let head = entries(&tc).await.last().unwrap().seq;
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let info: AuditInfo = admin
            .call(reqwest::Method::GET, "/v1/audit/info", None)
            .await
            .unwrap();
        if info.checkpointed_through >= head {
            break info;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers entry {head}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(info.public_keys.len(), 1);
    let (ok, out, err) = weft(&tc, &["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("audit chain intact"), "{out}");

    // tail: the newest entries, as JSON lines that are the chain's own.
    let (ok, out, err) = weft(&tc, &["audit", "tail", "-n", "3", "--json"]).await;
    assert!(ok, "{out}{err}");
    let tailed: Vec<AuditEntry> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a tail line is an entry"))
        .collect();
    assert_eq!(tailed.len(), 3, "{out}");
    let all = entries(&tc).await;
    for t in &tailed {
        assert_eq!(Some(t), all.iter().find(|e| e.seq == t.seq));
    }
    assert!(
        tailed.last().is_some_and(|e| e.seq >= head),
        "tail did not end at the newest entry ({head}): {tailed:?}"
    );
    assert!(tailed.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // tail --follow prints an entry committed after it started (it prints
    // the newest entry first: once that is seen, it is following).
    let mut follower = follow_tail(&tc);
    assert!(
        follower.wait_for(|line| serde_json::from_str::<AuditEntry>(line).is_ok()),
        "tail --follow printed no entry within 30 s"
    );
    let _: serde_json::Value = admin
        .call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(serde_json::json!({ "name": "followed" })),
        )
        .await
        .unwrap();
    let seen = follower.wait_for(|line| {
        serde_json::from_str::<AuditEntry>(line).is_ok_and(|e| {
            e.event.action == "create_key" && e.event.target.starts_with("key followed ")
        })
    });
    assert!(
        seen,
        "tail --follow did not print the new key's entry within 30 s"
    );
    drop(follower);

    // An export verifies offline with the key given; the secret is not in it.
    let file = tc.dir.path().join("audit.json");
    let (ok, out, err) = weft(&tc, &["audit", "export", file.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&reader_sk),
        "a key's secret is in the audit export"
    );
    let export: AuditExport = serde_json::from_str(&text).unwrap();
    let key_arg = info.public_keys[0].clone();
    let tcr = &tc;
    let check = |x: &AuditExport, name: &str| {
        let path = tcr.dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(x).unwrap()).unwrap();
        let key_arg = key_arg.clone();
        let path = path.to_str().unwrap().to_string();
        async move { weft(tcr, &["audit", "verify", &path, "--public-key", &key_arg]).await }
    };
    let (ok, out, err) = check(&export, "intact.json").await;
    assert!(ok && out.contains("audit chain intact"), "{out}{err}");

    // Tampering is caught, and the entry named.
    let n = 3;
    let mut edited = export.clone();
    edited.entries[n].event.outcome = "ok".into();
    edited.entries[n].event.actor = "nobody".into();
    let (ok, _, err) = check(&edited, "edited.json").await;
    assert!(!ok, "an edited entry verified");
    assert!(
        err.contains(&format!("entry {} (position {})", n + 1, n + 1)) && err.contains("altered"),
        "{err}"
    );

    let mut deleted = export.clone();
    deleted.entries.remove(n);
    let (ok, _, err) = check(&deleted, "deleted.json").await;
    assert!(!ok, "a chain with an entry deleted verified");
    assert!(
        err.contains(&format!("entry {} is missing", n + 1)),
        "{err}"
    );

    let mut moved = export.clone();
    moved.entries.swap(n, n + 1);
    let (ok, _, err) = check(&moved, "moved.json").await;
    assert!(!ok, "a reordered chain verified");
    assert!(
        err.contains("out of order") && err.contains(&format!("entry {}", n + 2)),
        "{err}"
    );

    let mut forged = export.clone();
    let last = forged.checkpoints.len() - 1;
    forged.checkpoints[last].at_ms += 1;
    let (ok, _, err) = check(&forged, "forged.json").await;
    assert!(!ok, "a forged checkpoint verified");
    assert!(err.contains("forged"), "{err}");

    // Pruning to a signed checkpoint keeps the rest provable. (That a
    // prune to an unsigned entry is refused is checked in metad's
    // src/audit_tests.rs, where no checkpoint timing is involved.)
    let signed = info.checkpointed_through;
    let (ok, out, err) = weft(tcr, &["audit", "prune", "--through", &signed.to_string()]).await;
    assert!(ok, "{out}{err}");
    let left = entries(tcr).await;
    assert!(
        left.iter().all(|e| e.seq > signed),
        "entries at or before {signed} remain: {:?}",
        left.first()
    );
    let (ok, out, err) = weft(tcr, &["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("entries 1..{signed} were pruned")),
        "{out}"
    );
    tc.shutdown().await;
}

/// A flood of identical refused requests becomes a few counted entries
/// (one per 2 s report window), not one entry per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refusals_is_counted_not_chained_one_by_one() {
    let tc = TestCluster::start().await;
    let c = tc.c();
    let bad = tc.root_client().with_secret("wrong-secret");
    let before = entries(&tc).await.len();
    let t0 = Instant::now();
    const FLOOD: u64 = 300;
    for i in 0..FLOOD {
        // The query varies; the refusal is the same one.
        let r = bad
            .list("nothing-here", &[("prefix", &format!("p{i}"))])
            .await;
        assert_eq!(r.status, 403);
    }
    let root_ak = c.credentials().access_key.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = entries(&tc).await;
        let added = &all[before..];
        let flood: Vec<_> = added
            .iter()
            .filter(|e| {
                e.event.kind == EventKind::AuthFailure
                    && e.event.actor.contains(&format!("claimed key {root_ak}"))
            })
            .collect();
        let counted: u64 = flood.iter().map(|e| e.event.count).sum();
        if counted >= FLOOD {
            assert_eq!(counted, FLOOD, "more refusals counted than were made");
            // One entry per window the flood spanned (and one more for a
            // window boundary): far below one per request on any machine
            // that sends 300 requests in less than ten minutes.
            let windows = t0.elapsed().as_secs() / 2 + 2;
            assert!(
                flood.len() as u64 <= windows,
                "{FLOOD} identical refusals became {} entries over {windows} report windows",
                flood.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {counted} of {FLOOD} refusals are in the chain after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tc.shutdown().await;
}
