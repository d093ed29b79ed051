//! metad as a 3-voter group under load: leader and follower kills, a
//! whole-group restart, and growing to five voters then shrinking. Every
//! acknowledged write must survive and every voter must end identical.

mod support;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};
use weft_common::rpc::{AddMember, Query, QueryResult, RaftStatus, RemoveMember};

/// What a key may hold: every value whose write was acknowledged last, or
/// that was in flight when a request failed (its outcome is unknown).
type Model = Arc<Mutex<HashMap<String, Vec<Option<Vec<u8>>>>>>;

async fn ha_cluster(dir: &std::path::Path, gateways: usize) -> DevCluster {
    let mut cfg = DevClusterConfig::ephemeral(dir);
    cfg.metad_voters = 3;
    cfg.gateways = gateways;
    DevCluster::start(cfg).await.expect("start 3-voter cluster")
}

fn client(c: &DevCluster, gw: usize) -> S3Client {
    let creds = c.credentials();
    S3Client::new(
        &c.s3_endpoint_of(gw).unwrap(),
        &creds.access_key,
        &creds.secret_key,
        c.region(),
    )
}

/// Writers: each owns its keys and alternates PUT and DELETE on them until
/// `stop`, recording what every key may now hold.
fn spawn_writers(
    clients: Vec<S3Client>,
    model: Model,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, u64)>> {
    clients
        .into_iter()
        .enumerate()
        .map(|(w, s3)| {
            let model = model.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}/k{}", n % 8);
                    let delete = n % 5 == 4;
                    let value = data(w as u64 * 1_000_000 + n, 512 + (n as usize % 7) * 100);
                    let r = if delete {
                        s3.delete("ha-test", &key).await
                    } else {
                        s3.put("ha-test", &key, value.clone()).await
                    };
                    let new_state = if delete { None } else { Some(value) };
                    let mut m = model.lock().unwrap();
                    let states = m.entry(key).or_insert_with(|| vec![None]);
                    if r.status == 200 || r.status == 204 {
                        *states = vec![new_state];
                        ok += 1;
                    } else {
                        states.push(new_state);
                        failed += 1;
                    }
                    n += 1;
                }
                (ok, failed)
            })
        })
        .collect()
}

/// Waits until every running voter has applied the same index with the same
/// state digest.
async fn wait_replicas_identical(c: &DevCluster) {
    let metad = c.metad_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answers = metad.query_each(&Query::Digest).await;
        let digests: Vec<(Option<u64>, String)> = answers
            .iter()
            .filter_map(|(_, r)| match r {
                Ok(QueryResult::Digest {
                    applied_index,
                    digest,
                }) => Some((*applied_index, digest.clone())),
                _ => None,
            })
            .collect();
        if digests.len() >= 3 && digests.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas never converged: {digests:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn check_model(s3: &S3Client, model: &Model) {
    let entries: Vec<(String, Vec<Option<Vec<u8>>>)> = model
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(!entries.is_empty());
    for (key, possible) in entries {
        let r = s3.get("ha-test", &key).await;
        let got = match r.status {
            200 => Some(r.body.clone()),
            404 => None,
            s => panic!("GET {key}: status {s}: {}", r.text()),
        };
        assert!(
            possible.contains(&got),
            "{key}: read {:?} bytes, not an acknowledged or in-flight state",
            got.map(|g| g.len())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_leaders_and_followers_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ha_cluster(dir.path(), 2).await;
    let s3 = client(&c, 0);
    assert_eq!(s3.mb("ha-test").await.status, 200);

    let model: Model = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = (0..4).map(|w| client(&c, w % 2)).collect();
    let writers = spawn_writers(clients, model.clone(), stop.clone());

    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let leader = c.metad_leader().expect("a leader");
        c.stop_metad(leader).await.unwrap();
        let t0 = Instant::now();
        let new_leader = c.wait_metad_leader(Duration::from_secs(10)).await.unwrap();
        assert_ne!(
            new_leader as usize,
            leader + 1,
            "round {round}: the stopped voter is still leader"
        );
        eprintln!(
            "round {round}: voter {} killed, voter {new_leader} leads after {:?}",
            leader + 1,
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.start_metad(leader).await.unwrap();
    }
    // And a follower.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leader = c.metad_leader().expect("a leader");
    let follower = (leader + 1) % 3;
    c.stop_metad(follower).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    c.start_metad(follower).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::Relaxed);
    let mut ok = 0;
    for w in writers {
        let (o, f) = w.await.unwrap();
        eprintln!("writer: {o} acknowledged, {f} failed");
        ok += o;
    }
    assert!(
        ok > 50,
        "the workload barely ran: {ok} acknowledged operations"
    );
    wait_replicas_identical(&c).await;
    check_model(&client(&c, 1), &model).await;
    check_model(&s3, &model).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_voter_at_once_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let c = ha_cluster(dir.path(), 1).await;
    let s3 = client(&c, 0);
    assert_eq!(s3.mb("ha-test").await.status, 200);
    let mut objs = vec![];
    for i in 0..30 {
        let body = data(i, 1000 + i as usize);
        s3.must_put("ha-test", &format!("k{i}"), body.clone()).await;
        objs.push(body);
    }
    let c = c.restart().await.unwrap();
    let s3 = client(&c, 0);
    for (i, body) in objs.iter().enumerate() {
        s3.must_get_equal("ha-test", &format!("k{i}"), body).await;
    }
    wait_replicas_identical(&c).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn growing_to_five_voters_and_removing_two_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ha_cluster(dir.path(), 1).await;
    let s3 = client(&c, 0);
    assert_eq!(s3.mb("ha-test").await.status, 200);
    let model: Model = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(
        vec![client(&c, 0), client(&c, 0)],
        model.clone(),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let metad = c.metad_client();
    for _ in 0..2 {
        let slot = c.spawn_extra_metad().await.unwrap();
        let addr = c.metad_addrs()[slot].clone();
        let st: RaftStatus = metad
            .call(
                "/v1/members/add",
                &AddMember {
                    id: slot as u64 + 1,
                    addr,
                },
            )
            .await
            .expect("add voter");
        assert!(st.voters.contains(&(slot as u64 + 1)), "{st:?}");
    }
    for id in [1u64, 2] {
        let st: RaftStatus = metad
            .call("/v1/members/remove", &RemoveMember { id })
            .await
            .expect("remove voter");
        assert!(!st.voters.contains(&id), "{st:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for w in writers {
        failed += w.await.unwrap().1;
    }
    // Membership changes go through joint consensus: clients see no errors.
    assert_eq!(failed, 0, "requests failed during membership changes");

    // The removed voters can go; the three left hold everything.
    c.stop_metad(0).await.unwrap();
    c.stop_metad(1).await.unwrap();
    let status = match metad.query(&Query::Status).await.unwrap() {
        QueryResult::Status { status } => status,
        other => panic!("{other:?}"),
    };
    assert_eq!(status.voters, vec![3, 4, 5]);
    check_model(&s3, &model).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_cluster_metad_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ha_cluster(dir.path(), 1).await;
    let admin = c.admin_endpoint();
    let creds = c.credentials().clone();
    let data = c.config().data_dir.clone();
    let weft = move |args: Vec<String>| {
        let (admin, creds, data) = (admin.clone(), creds.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
                .args(&args)
                .args(["--admin", &admin, "--json"])
                .env("WEFT_DATA", &data)
                .env("WEFT_ROOT_ACCESS_KEY", &creds.access_key)
                .env("WEFT_ROOT_SECRET_KEY", &creds.secret_key)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "weft {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let list = weft(s(&["cluster", "metad", "list"])).await.unwrap();
    let roles: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["status"]["role"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "Leader").count(),
        1,
        "{roles:?}"
    );
    assert_eq!(roles.len(), 3);

    let before = c.metad_leader().unwrap();
    weft(s(&["cluster", "metad", "step-down"])).await.unwrap();
    let after = c.wait_metad_leader(Duration::from_secs(10)).await.unwrap();
    assert_ne!(after as usize, before + 1, "leadership did not move");

    let slot = c.spawn_extra_metad().await.unwrap();
    let addr = c.metad_addrs()[slot].clone();
    let st = weft(vec![
        "cluster".into(),
        "metad".into(),
        "add".into(),
        "4".into(),
        addr,
    ])
    .await
    .unwrap();
    assert_eq!(st["voters"], serde_json::json!([1, 2, 3, 4]));
    let st = weft(s(&["cluster", "metad", "remove", "4"])).await.unwrap();
    assert_eq!(st["voters"], serde_json::json!([1, 2, 3]));
    let status = weft(s(&["cluster", "status"])).await.unwrap();
    assert_eq!(status["metad"]["role"], "Leader");
    assert!(status["voters"].as_array().unwrap().len() >= 3);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_down_for_long_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = DevClusterConfig::ephemeral(dir.path());
    cfg.metad_voters = 3;
    cfg.metad.snapshot_logs = 50;
    cfg.metad.snapshot_logs_keep = 10;
    let mut c = DevCluster::start(cfg).await.unwrap();
    let s3 = client(&c, 0);
    assert_eq!(s3.mb("ha-test").await.status, 200);
    let leader = c.metad_leader().unwrap();
    let lagging = (leader + 1) % 3;
    c.stop_metad(lagging).await.unwrap();
    for i in 0..150 {
        s3.must_put("ha-test", &format!("k{i}"), data(i, 300)).await;
    }
    // The leader has snapshotted and purged past what the stopped voter has.
    let leader_raft = c.metad_raft(c.metad_leader().unwrap()).unwrap().clone();
    let m = leader_raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.map(|p| p.index).unwrap_or(0) > 100,
            "leader purged its log past index 100",
        )
        .await
        .unwrap();
    let purged = m.purged.unwrap().index;
    c.start_metad(lagging).await.unwrap();
    let raft = c.metad_raft(lagging).unwrap().clone();
    // Entries up to `purged` no longer exist anywhere as log: only a
    // snapshot can bring the lagging voter past them.
    let m = raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.snapshot.map(|s| s.index).unwrap_or(0) >= purged && m.last_applied >= m.snapshot,
            "lagging voter installed a snapshot covering the purged log",
        )
        .await
        .expect("the lagging voter caught up by snapshot");
    eprintln!(
        "leader purged up to {purged}; lagging voter snapshot {:?}, applied {:?}",
        m.snapshot, m.last_applied
    );
    wait_replicas_identical(&c).await;
    c.shutdown().await;
}
