//! Zone labels (issue 14, the ground storage classes stand on): each data
//! node carries its zone's labels from its config, metad keeps them with
//! the registration (also while the node is down), and `weft cluster
//! status` shows them per zone. A registration with malformed labels is
//! refused by metad as a config file is by datad.

mod support;

use support::TestCluster;
use weft_common::topology::{Labels, NodeView};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn nodes(tc: &TestCluster) -> Vec<NodeView> {
    let st: serde_json::Value = tc
        .c()
        .admin_client()
        .call(reqwest::Method::GET, "/v1/cluster/status", None)
        .await
        .expect("cluster status");
    serde_json::from_value(st["nodes"].clone()).expect("node views")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_carry_their_zones_labels_which_metad_keeps_and_status_shows() {
    let mut tc = TestCluster::start_with(|c| {
        c.datad.labels = labels(&[("site", "lab")]);
        c.zone_labels
            .insert("zone-a".into(), labels(&[("tier", "hot")]));
        c.zone_labels.insert(
            "zone-c".into(),
            labels(&[("tier", "cold"), ("region", "west")]),
        );
    })
    .await;
    let want = |zone: &str| match zone {
        "zone-a" => labels(&[("site", "lab"), ("tier", "hot")]),
        "zone-c" => labels(&[("site", "lab"), ("tier", "cold"), ("region", "west")]),
        _ => labels(&[("site", "lab")]),
    };
    let all = nodes(&tc).await;
    assert_eq!(all.len(), tc.c().datad_count());
    for n in &all {
        assert_eq!(n.info.labels, want(&n.info.zone), "node {}", n.info.id);
    }

    // The CLI shows them per zone.
    let (ok, text, err) = support::weft_cli(tc.c(), &["cluster", "status"]).await;
    assert!(ok, "{text}{err}");
    let zone_c = text
        .lines()
        .find(|l| l.starts_with("zone-c "))
        .unwrap_or_else(|| panic!("no zone-c row in:\n{text}"));
    assert!(
        zone_c.ends_with("region=west,site=lab,tier=cold"),
        "{zone_c}"
    );

    // metad keeps a stopped node's labels with its registration.
    let cold_id = all
        .iter()
        .find(|n| n.info.zone == "zone-c")
        .expect("a node in zone-c")
        .info
        .id;
    // Dev data node i has id i + 1.
    tc.c_mut().stop_datad(cold_id.0 as usize - 1).await.unwrap();
    let after = nodes(&tc).await;
    let stopped = after.iter().find(|n| n.info.id == cold_id).unwrap();
    assert_eq!(stopped.info.labels, want("zone-c"));

    // A registration with a malformed label is refused, and the node's
    // recorded labels stay as they were.
    let datad_files = tc.c().pki().expect("mutual TLS").datad(cold_id.0).unwrap();
    let tls = weft_client::internal_tls::InternalTls::load(datad_files).unwrap();
    let as_datad = reqwest::Client::builder()
        .use_preconfigured_tls(tls.client_config())
        .build()
        .unwrap();
    let mut bad = stopped.info.clone();
    bad.labels.insert("Tier".into(), "Cold".into());
    let cmd = weft_common::rpc::Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT,
        id: weft_common::RequestId(0x1abe1),
        at_ms: 0,
        command: Box::new(weft_common::rpc::Command::RegisterNode { node: bad }),
        actor: None,
    };
    let metad = tc.c().metad_addrs()[0].clone();
    let resp = as_datad
        .post(tc.c().internal_url(&metad, "/v1/command"))
        .json(&cmd)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(body.contains("Tier"), "{body}");
    let again = nodes(&tc).await;
    assert_eq!(
        again
            .iter()
            .find(|n| n.info.id == cold_id)
            .unwrap()
            .info
            .labels,
        want("zone-c")
    );

    // A data node's certificate speaks only for its own node: the stopped
    // node's certificate can neither re-register another node at its own
    // address nor keep another node alive with heartbeats.
    let other = again
        .iter()
        .find(|n| n.info.id != cold_id)
        .unwrap()
        .info
        .clone();
    let mut hijack = other.clone();
    hijack.addr = stopped.info.addr.clone();
    let cmd = weft_common::rpc::Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT,
        id: weft_common::RequestId(0x1abe2),
        at_ms: 0,
        command: Box::new(weft_common::rpc::Command::RegisterNode { node: hijack }),
        actor: None,
    };
    let resp = as_datad
        .post(tc.c().internal_url(&metad, "/v1/command"))
        .json(&cmd)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(&format!("does not name node {}", other.id.0)),
        "{body}"
    );
    let heartbeat = |node: weft_common::NodeId| {
        as_datad
            .post(tc.c().internal_url(&metad, "/v1/heartbeat"))
            .json(&serde_json::json!({ "node": node, "used_bytes": 0 }))
            .send()
    };
    assert_eq!(heartbeat(other.id).await.unwrap().status(), 403);
    // Its own node it may speak for.
    assert_eq!(heartbeat(cold_id).await.unwrap().status(), 204);
    let last = nodes(&tc).await;
    assert_eq!(
        last.iter()
            .find(|n| n.info.id == other.id)
            .unwrap()
            .info
            .addr,
        other.addr,
        "the refused registration changed nothing"
    );
    tc.shutdown().await;
}
