//! Deadlines on every wait: a data node that accepts a request and then goes
//! silent mid-body (a proxy in front of it stops forwarding) must not hang a
//! GET or a PUT. The GET moves to other shards and decodes; the PUT commits
//! once its write quorum is durable and the straggler's grace has passed,
//! leaving the straggler's slot empty for repair.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};
use support::stall_proxy::{Mode, StallProxy};
use support::{data, gateway_metric, TestCluster};
use weft_common::NodeId;

/// Turns a hang into a failure; generous, since the property is "finishes".
const HANG: Duration = Duration::from_secs(120);
/// 4 MiB: one full 4+2 stripe of 1 MiB units, so each shard read or write is
/// 1 MiB and a stall after a few KiB is mid-body.
const OBJECT: usize = 4 << 20;

async fn finishes<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {HANG:?}: it hangs"))
}

async fn cluster() -> TestCluster {
    TestCluster::start_with(|c| {
        c.gateway.datad_idle_timeout_ms = 1_000;
        c.gateway.datad_request_timeout_ms = 10_000;
        c.gateway.put_straggler_grace_ms = 500;
    })
    .await
}

/// Node 1 (index 0) from now on advertises a stall proxy in front of it.
async fn put_proxy_in_front_of_node_1(tc: &mut TestCluster) -> StallProxy {
    let c = tc.c_mut();
    let real = c.datad_addr(0).expect("node 1 running");
    c.stop_datad(0).await.expect("stop node 1");
    let proxy = StallProxy::start(real).await;
    c.set_datad_advertise(0, Some(proxy.addr().to_string()));
    c.start_datad(0).await.expect("restart node 1");
    proxy
}

/// The node of every shard slot of `bucket/key`'s first segment.
async fn slots(tc: &TestCluster, bucket: &str, key: &str) -> Vec<Option<NodeId>> {
    let v = support::current_version(tc, bucket, key).await;
    v.segments[0].shards.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_moves_to_other_shards_when_a_node_stalls() {
    let mut tc = cluster().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("stall").await.status, 200);
    // Objects until one has a *data* shard on node 1, so a plain read must
    // ask node 1 (a parity shard there would never be read).
    let mut chosen = None;
    for i in 0..20u64 {
        let key = format!("o{i}");
        let body = data(i, OBJECT);
        s3.must_put("stall", &key, body.clone()).await;
        let s = slots(&tc, "stall", &key).await;
        if s[..4].contains(&Some(NodeId(1))) {
            chosen = Some((key, body));
            break;
        }
    }
    let (key, body) = chosen.expect("one of 20 objects has a data shard on node 1");
    let proxy = put_proxy_in_front_of_node_1(&mut tc).await;

    // Until the gateway's cluster map has the proxy, reads go elsewhere or
    // fail over; wait (bounded) until one passes through it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.accepted() == 0 {
        assert!(Instant::now() < deadline, "gateway never used the proxy");
        s3.must_get_equal("stall", &key, &body).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (mode, what) in [
        (Mode::StallResponses { after: 4096 }, "stalled mid-body"),
        (Mode::StallResponses { after: 0 }, "silent after accepting"),
    ] {
        proxy.set_mode(mode);
        let stalled = proxy.stalled();
        let degraded = gateway_metric(&tc, "weft_gateway_degraded_reads_total").await;
        let r = finishes(&format!("GET with node 1 {what}"), s3.get("stall", &key)).await;
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        assert!(r.body == body, "{what}: the GET returned different bytes");
        assert!(
            proxy.stalled() > stalled,
            "{what}: the read never reached the stall"
        );
        assert!(
            gateway_metric(&tc, "weft_gateway_degraded_reads_total").await > degraded,
            "{what}: the stripe was not decoded from other shards"
        );
    }
    // Close the stalled connections before stopping the nodes.
    drop(proxy);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_commits_on_quorum_when_a_node_stalls_mid_body() {
    let mut tc = cluster().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("stall").await.status, 200);
    let proxy = put_proxy_in_front_of_node_1(&mut tc).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0u64;
    while proxy.accepted() == 0 {
        assert!(Instant::now() < deadline, "gateway never used the proxy");
        s3.must_put("stall", &format!("warm{n}"), data(n, 1024))
            .await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every 4+2 segment has a shard on each of the 6 nodes, so node 1 gets
    // one of this PUT's shards and never finishes it.
    proxy.set_mode(Mode::StallRequests { after: 64 * 1024 });
    let stragglers = gateway_metric(&tc, "weft_gateway_put_stragglers_total").await;
    let body = data(99, OBJECT);
    let r = finishes(
        "PUT with node 1 stalled",
        s3.put("stall", "big", body.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(proxy.stalled() >= 1, "the write never reached the stall");
    assert!(
        gateway_metric(&tc, "weft_gateway_put_stragglers_total").await > stragglers,
        "the stalled shard write was not counted as a straggler"
    );
    let s = slots(&tc, "stall", "big").await;
    assert_eq!(
        s.iter().flatten().count(),
        5,
        "committed with the quorum, the straggler's slot empty for repair: {s:?}"
    );
    assert!(!s.contains(&Some(NodeId(1))), "{s:?}");
    let got = finishes("GET after the PUT", s3.get("stall", "big")).await;
    assert_eq!(got.status, 200);
    assert!(
        got.body == body,
        "the committed object reads back different"
    );
    // Close the stalled connections before stopping the nodes.
    drop(proxy);
    tc.shutdown().await;
}
