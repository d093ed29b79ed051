//! `/health/ready` and the fatal-state watch: a metad whose raft core has
//! stopped for good says so (503 with the cause, `MetadHandle::fatal`
//! resolves) instead of passing for healthy while it answers 503 to all.

mod support;
use std::time::Duration;
use support::*;
use weft_metad::health::Readiness;

async fn get(addr: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metad_whose_raft_core_stopped_unasked_is_not_ready_and_reports_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _cancel) = start_voter(dir.path(), true).await;
    let addr = h.addr().to_string();

    let (status, body) = get(&addr, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    let ready: Readiness = serde_json::from_str(&body).unwrap();
    assert!(ready.ready && ready.leader == Some(1) && ready.cause.is_none());
    assert_eq!(h.fatal_now(), None);

    // The core stops without the owner asking (as after a storage error).
    h.raft().shutdown().await.unwrap();
    let fatal = tokio::time::timeout(Duration::from_secs(60), h.fatal())
        .await
        .expect("fatal() resolves once the core has stopped");
    assert_eq!(fatal.id, 1);
    assert_eq!(h.fatal_now(), Some(fatal.clone()));

    let (status, body) = get(&addr, "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    let ready: Readiness = serde_json::from_str(&body).unwrap();
    assert!(!ready.ready);
    let cause = ready.cause.unwrap();
    assert!(cause.contains("stopped on a fatal error"), "{cause}");
    assert!(cause.contains("restart this metad"), "{cause}");
    // Liveness is only "the process answers".
    assert_eq!(get(&addr, "/health").await, (200, "ok".to_string()));

    // Commands fail rather than hang.
    let c = weft_client::MetadClient::new(vec![addr]).with_deadline(Duration::from_secs(3));
    assert!(c.command(&create_bucket("b", "o")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_shutdown_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (h, cancel) = start_voter(dir.path(), true).await;
    let fatal = h.fatal();
    cancel.cancel();
    h.stopped().await;
    // The watch ends without a verdict, so fatal() never resolves; a wrong
    // verdict would arrive at once, as in the test above.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), fatal)
            .await
            .is_err(),
        "a requested shutdown was reported as fatal"
    );
}
