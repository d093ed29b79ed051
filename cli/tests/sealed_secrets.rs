//! Access-key secrets sealed at rest: after keys are created and used,
//! no file under metad's data directory (raft log, state, snapshots)
//! holds a secret in clear; a listing shows no secret to anyone; a key
//! record shows its secret to a gateway only (which checks signatures with
//! it), and the new keys sign requests that succeed.

mod support;
use support::{S3Client, TestCluster};
use weft_client::internal_tls::InternalTls;
use weft_common::rpc::{Query, QueryResult};

/// Every file under `dir`, recursively, that contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // Files may come and go (temp files) while the walk runs.
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

/// A new access key named `name`, with its one-time secret.
async fn create_key(
    admin: &weft_cli::admin_client::AdminClient,
    name: &str,
) -> weft_gateway::admin::KeyView {
    admin
        .call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(serde_json::json!({ "name": name })),
        )
        .await
        .unwrap()
}

/// A metad client presenting the dev cluster's gateway certificate, the
/// one role shown secrets.
fn metad_as_gateway(c: &weft_cli::dev_cluster::DevCluster) -> weft_client::MetadClient {
    let pki = c.pki().expect("mutual TLS");
    let gateway_id = InternalTls::load(pki.gateway.clone()).unwrap();
    weft_client::MetadClient::with_tls(c.metad_addrs(), Some(&gateway_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_kept_in_clear_and_only_a_gateway_reads_one() {
    // Snapshots every few entries, so snapshot files hold the keys too.
    let mut tc = TestCluster::start_with(|c| {
        c.metad.snapshot_logs = 4;
        c.metad.snapshot_logs_keep = 2;
    })
    .await;
    let c = tc.c();
    let admin = c.admin_client();
    let mut secrets = vec![c.credentials().secret_key.clone()];
    let mut keys = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let k = create_key(&admin, name).await;
        let secret = k
            .secret_key
            .clone()
            .expect("the create answer has the secret");
        let s3 = S3Client::new(&c.s3_endpoint(), &k.access_key, &secret, c.region());
        assert_eq!(s3.mb(&format!("{name}-bucket")).await.status, 200);
        s3.must_put(&format!("{name}-bucket"), "o", b"x".to_vec())
            .await;
        secrets.push(secret);
        keys.push(k.access_key);
    }
    // The listing carries no secret.
    let listed: Vec<weft_gateway::admin::KeyView> = admin
        .call(reqwest::Method::GET, "/v1/keys", None)
        .await
        .unwrap();
    assert!(listed.len() >= 4);
    assert!(listed.iter().all(|k| k.secret_key.is_none()));
    // metad shows a key record's secret to a gateway, not to an admin.
    let as_admin = c.metad_client();
    let as_gateway = metad_as_gateway(c);
    let q = Query::AccessKey {
        access_key: keys[0].clone(),
    };
    match as_admin.query(&q).await.unwrap() {
        QueryResult::AccessKey { key: Some(k) } => assert!(k.secret_key.is_empty()),
        other => panic!("{other:?}"),
    }
    match as_gateway.query(&q).await.unwrap() {
        QueryResult::AccessKey { key: Some(k) } => assert_eq!(k.secret_key, secrets[1]),
        other => panic!("{other:?}"),
    }
    for client in [&as_admin, &as_gateway] {
        match client.query(&Query::Keys).await.unwrap() {
            QueryResult::Keys { keys } => assert!(keys.iter().all(|k| k.secret_key.is_empty())),
            other => panic!("{other:?}"),
        }
    }
    // A restart reads them back sealed and still serves them.
    tc.restart().await;
    let c = tc.c();
    let s3 = S3Client::new(&c.s3_endpoint(), &keys[1], &secrets[2], c.region());
    assert_eq!(s3.get("bob-bucket", "o").await.status, 200);
    let data = tc.dir.path().to_path_buf();
    // Stopped, with the directory kept (it goes with `tc`).
    tc.cluster.take().expect("running").shutdown().await;
    for secret in &secrets {
        let found = files_containing(&data.join("metad"), secret.as_bytes());
        assert!(found.is_empty(), "a secret in clear in {found:?}");
    }
    // The check can fail: the files do hold the (public) access key ids.
    assert!(!files_containing(&data.join("metad"), keys[0].as_bytes()).is_empty());
}

/// `weft_metad_secrets{sealing=HOW}` on the first voter's `/metrics` (None
/// while it has not counted yet).
async fn secrets_metric(tc: &TestCluster, how: &str) -> Option<u64> {
    metric_of(tc, 0, &format!("weft_metad_secrets{{sealing=\"{how}\"}}")).await
}

/// A gauge on voter `i`'s `/metrics` (None when absent).
async fn metric_of(tc: &TestCluster, i: usize, name: &str) -> Option<u64> {
    let c = tc.c();
    let addr = c.metad_addrs().into_iter().nth(i).expect("a voter");
    let text = c
        .internal_http()
        .get(c.internal_url(addr, "/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Master key rotation end to end: after the new key becomes current with
/// the old one as previous, the leader reseals every secret under the new
/// key, so metad then starts with the new key alone and still opens every
/// secret. Without the reseal the last lookups fail (the old key is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_secrets_are_resealed_and_the_old_key_can_go() {
    let mut tc = TestCluster::start().await;
    let admin = tc.c().admin_client();
    let mut made = Vec::new();
    for name in ["dora", "eve"] {
        let k = create_key(&admin, name).await;
        made.push((k.access_key.clone(), k.secret_key.clone().expect("secret")));
    }
    let data = tc.dir.path().to_path_buf();
    let current = data.join("master.key");
    let old = data.join("old-master.key");
    // Rotation, step 2 of docs/security.md: the new key current, the old
    // one previous (one voter here, so step 1 is the same restart).
    {
        let c = tc.cluster.as_mut().expect("running");
        c.stop_metad(0).await.unwrap();
        std::fs::copy(&current, &old).unwrap();
        std::fs::write(&current, weft_metad::seal::new_master_key()).unwrap();
        c.config_mut().metad.previous_master_key_files = vec![old.clone()];
        c.start_metad(0).await.unwrap();
        c.wait_metad_leader(std::time::Duration::from_secs(30))
            .await
            .unwrap();
    }
    // The leader reseals: nothing left under the previous key or in clear.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let previous = secrets_metric(&tc, "previous").await;
        let clear = secrets_metric(&tc, "clear").await;
        let now = secrets_metric(&tc, "current").await;
        if previous == Some(0) && clear == Some(0) && now.unwrap_or(0) >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "secrets not resealed within 60 s: previous {previous:?}, clear {clear:?}, current {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Retire the old key: metad restarts with the new key alone.
    {
        let c = tc.cluster.as_mut().expect("running");
        c.stop_metad(0).await.unwrap();
        c.config_mut().metad.previous_master_key_files.clear();
        std::fs::remove_file(&old).unwrap();
        c.start_metad(0).await.unwrap();
        c.wait_metad_leader(std::time::Duration::from_secs(30))
            .await
            .unwrap();
    }
    let c = tc.c();
    let as_gateway = metad_as_gateway(c);
    for (access_key, secret) in &made {
        let q = Query::AccessKey {
            access_key: access_key.clone(),
        };
        match as_gateway.query(&q).await {
            Ok(QueryResult::AccessKey { key: Some(k) }) => assert_eq!(&k.secret_key, secret),
            other => panic!("{access_key} after the old key was retired: {other:?}"),
        }
    }
    // Still nothing in clear on disk, the reseal commands included.
    tc.cluster.take().expect("running").shutdown().await;
    for (_, secret) in &made {
        let found = files_containing(&data.join("metad"), secret.as_bytes());
        assert!(found.is_empty(), "a secret in clear in {found:?}");
    }
}

/// A rotation done out of order — one voter made the new key current while
/// the others do not hold it — holds resealing back: the leader with the
/// new key sees secrets to reseal, asks the voters, and waits, so no secret
/// moves under a key another voter cannot open. Once every voter seals
/// under the new key, the secrets are resealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resealing_waits_until_every_voter_seals_under_the_leaders_key() {
    let mut tc = TestCluster::start_with(|c| c.metad_voters = 3).await;
    let admin = tc.c().admin_client();
    let k = create_key(&admin, "fay").await;
    let secret = k.secret_key.clone().expect("secret");
    let data = tc.dir.path().to_path_buf();
    let current = data.join("master.key");
    let old = data.join("old-master.key");
    let timeout = std::time::Duration::from_secs(30);
    // Voter 1 alone moves to the new key; voters 2 and 3 keep running on
    // the old one (read at their start) and do not hold the new key.
    {
        let c = tc.cluster.as_mut().expect("running");
        c.stop_metad(0).await.unwrap();
        std::fs::copy(&current, &old).unwrap();
        std::fs::write(&current, weft_metad::seal::new_master_key()).unwrap();
        c.config_mut().metad.previous_master_key_files = vec![old.clone()];
        c.start_metad(0).await.unwrap();
        c.wait_metad_leader(timeout).await.unwrap();
    }
    // Make voter 1 the leader: only it has secrets to reseal.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while tc.c().metad_leader() != Some(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "voter 1 never became the leader"
        );
        let _ = admin
            .call::<serde_json::Value>(reqwest::Method::POST, "/v1/metad/step-down", None)
            .await;
        let _ = tc.c().wait_metad_leader(timeout).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // It waits, and has resealed nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if tc.c().metad_leader() == Some(0)
            && metric_of(&tc, 0, "weft_metad_reseal_waiting").await == Some(1)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "voter 1 never reported waiting for the other voters"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let previous = secrets_metric(&tc, "previous").await.unwrap_or(0);
    assert!(
        previous >= 2,
        "secrets were resealed under a key voters 2 and 3 lack ({previous} left under the old key)"
    );
    // The other voters finish the rotation; the secrets are then resealed.
    {
        let c = tc.cluster.as_mut().expect("running");
        for i in 1..3 {
            c.stop_metad(i).await.unwrap();
            c.start_metad(i).await.unwrap();
            c.wait_metad_leader(timeout).await.unwrap();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let leader = tc.c().metad_leader();
        if let Some(l) = leader {
            let previous = metric_of(&tc, l, "weft_metad_secrets{sealing=\"previous\"}").await;
            let clear = metric_of(&tc, l, "weft_metad_secrets{sealing=\"clear\"}").await;
            let current = metric_of(&tc, l, "weft_metad_secrets{sealing=\"current\"}").await;
            if previous == Some(0) && clear == Some(0) && current.unwrap_or(0) >= 2 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "secrets not resealed after every voter moved to the new key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The key still signs requests.
    let c = tc.c();
    let s3 = S3Client::new(&c.s3_endpoint(), &k.access_key, &secret, c.region());
    assert_eq!(s3.mb("fay-bucket").await.status, 200);
    tc.cluster.take().expect("running").shutdown().await;
}
