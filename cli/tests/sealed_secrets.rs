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
        let k: weft_gateway::admin::KeyView = admin
            .call(
                reqwest::Method::POST,
                "/v1/keys",
                Some(serde_json::json!({ "name": name })),
            )
            .await
            .unwrap();
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
    let pki = c.pki().expect("mutual TLS");
    let gateway_id = InternalTls::load(pki.gateway.clone()).unwrap();
    let as_gateway = weft_client::MetadClient::with_tls(c.metad_addrs(), Some(&gateway_id));
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
