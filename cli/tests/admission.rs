//! Admission control on a real gateway: past its caps it answers 503
//! SlowDown at once, everything it admits completes correctly, and its
//! gauges never pass the caps and return to zero.

mod support;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// The value of an unlabelled metric (or the sum over a labelled family).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(http: &reqwest::Client, admin: &str) -> String {
    http.get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("reach the admin API")
        .text()
        .await
        .expect("metrics body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_gets_slowdown_and_admitted_requests_succeed_within_the_caps() {
    const CLIENTS: usize = 200;
    const SIZE: usize = 96 << 10; // above the small-object size: erasure-coded
    let limits = weft_gateway::Limits {
        max_connections: 150,
        max_requests: 8,
        max_inflight_bytes: 512 << 10,
    };
    let tc = TestCluster::start_with(|c| c.gateway.limits = limits).await;
    let admin = tc.c().admin_endpoint();
    let http = tc.c().internal_http();
    {
        let root = tc.root_client();
        assert_eq!(root.mb("load").await.status, 200);
    }

    // Every client its own connection, all released at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = tc.root_client();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let body = data(i as u64, SIZE);
            barrier.wait().await;
            let r = client
                .put_body("load", &format!("k{i}"), SIZE, reqwest::Body::from(body))
                .await;
            (i, r.status, r.error_code(), r.text())
        }));
    }
    let deadline = Duration::from_secs(120);
    let mut stored = Vec::new();
    let mut slow_down = 0usize;
    let mut other = Vec::new();
    for t in tasks {
        let (i, status, code, text) = tokio::time::timeout(deadline, t)
            .await
            .expect("a client hung")
            .expect("client task");
        match (status, code.as_deref()) {
            (200, _) => stored.push(i),
            (503, Some("SlowDown")) => {
                assert!(
                    text.contains("retry with exponential backoff"),
                    "the SlowDown message says what to do: {text}"
                );
                slow_down += 1;
            }
            _ => other.push((i, status, text)),
        }
    }
    eprintln!(
        "{} stored, {slow_down} refused with SlowDown, {} other",
        stored.len(),
        other.len()
    );
    assert!(
        other.is_empty(),
        "every request either succeeds or gets SlowDown: {other:?}"
    );
    assert!(
        slow_down > 0,
        "200 clients against 8 request slots: some refused"
    );
    assert!(!stored.is_empty(), "admitted requests succeed");

    let reader = tc.root_client();
    for i in &stored {
        reader
            .must_get_equal("load", &format!("k{i}"), &data(*i as u64, SIZE))
            .await;
    }
    drop(reader);

    // Every client (and its pooled connection) is gone: the gauges drain.
    let start = Instant::now();
    let text = loop {
        let text = metrics(&http, &admin).await;
        let idle = metric(&text, "weft_gateway_connections") == 0.0
            && metric(&text, "weft_gateway_requests_in_flight") == 0.0
            && metric(&text, "weft_gateway_inflight_bytes") == 0.0;
        if idle {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gauges did not return to 0:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains("high_water") || l.contains("rejected"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let high = |name: &str| metric(&text, &format!("weft_gateway_{name}_high_water"));
    assert!(high("connections") <= limits.max_connections as f64);
    assert!(high("requests_in_flight") <= limits.max_requests as f64);
    assert!(high("inflight_bytes") <= limits.max_inflight_bytes as f64);
    assert!(high("requests_in_flight") >= 1.0);
    assert!(
        metric(&text, "weft_gateway_admission_rejected_total") >= slow_down as f64,
        "every SlowDown is counted:\n{text}"
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_slowdown_and_are_closed() {
    let limits = weft_gateway::Limits {
        max_connections: 2,
        ..weft_gateway::Limits::default()
    };
    let tc = TestCluster::start_with(|c| c.gateway.limits = limits).await;
    // Two idle keep-alive connections hold both slots.
    let a = tc.root_client();
    let b = tc.root_client();
    assert_eq!(a.mb("conns").await.status, 200);
    assert_eq!(b.head("conns", "none").await.status, 404);
    let c = tc.root_client();
    let r = c.head("conns", "none").await;
    assert_eq!(r.status, 503, "a third connection is refused");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    // Freeing a slot admits the next connection.
    drop(a);
    let start = Instant::now();
    loop {
        let r = tc.root_client().head("conns", "none").await;
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a freed connection slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((b, c));
    tc.shutdown().await;
}
