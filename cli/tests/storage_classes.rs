//! Storage classes as data (issue 14): metad holds the classes, `weft class`
//! lists, defines and deletes them (refusing what the cluster cannot place
//! and what is in use), and every class puts its shards only on the nodes
//! its labels select, spread as it says: on writes, on an in-place copy to
//! another class, and when repair rebuilds a lost shard.
//!
//! The cluster is `weft dev`'s topology: 6 hot nodes in 3 zones and a cold
//! zone `west` (labelled tier=cold), here of 7 nodes so a lost cold shard
//! has a cold node to be rebuilt on.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{data, TestCluster};
use weft_common::manifest::ObjectVersion;
use weft_common::NodeId;

const HOT_NODES: usize = 6;
const COLD_NODES: usize = 7;
/// Two stripes of a 4+2 layout with 1 MiB units: erasure-coded in every class.
const BIG: usize = 5 << 20;

async fn tiered(fast_repair: bool) -> TestCluster {
    TestCluster::start_with(|c| {
        c.cold_nodes = COLD_NODES;
        if fast_repair {
            c.metad.node_suspect_ms = 600;
            c.metad.node_grace_ms = 2_000;
            c.metad.durability_scan_ms = 200;
            c.datad.heartbeat_interval_ms = 200;
            c.datad.repair_poll_ms = 100;
        }
        c.datad.gc_interval_ms = 3_600_000;
        c.metad.gc_grace_ms = 3_600_000;
        for (zone, price) in [
            ("zone-a", 0.02),
            ("zone-b", 0.02),
            ("zone-c", 0.02),
            ("west", 0.004),
        ] {
            c.gateway.zone_prices.insert(zone.into(), price);
        }
    })
    .await
}

/// The zone of node `id` in this topology: hot nodes are dealt round-robin
/// over zone-a, zone-b, zone-c; the rest are in west.
fn zone_of(id: NodeId) -> &'static str {
    let i = id.0 as usize - 1;
    if i >= HOT_NODES {
        "west"
    } else {
        ["zone-a", "zone-b", "zone-c"][i % 3]
    }
}

/// Every node holding a shard of `v`, by zone.
fn zones(v: &ObjectVersion) -> Vec<(&'static str, NodeId)> {
    v.segments
        .iter()
        .flat_map(|s| s.shards.iter().map(|n| n.expect("every shard written")))
        .map(|n| (zone_of(n), n))
        .collect()
}

async fn put_class(tc: &TestCluster, key: &str, class: Option<&str>, body: Vec<u8>) {
    let headers: Vec<(&str, &str)> = class
        .map(|c| ("x-amz-storage-class", c))
        .into_iter()
        .collect();
    let r = tc
        .root_client()
        .request("PUT", &format!("/tiers/{key}"), &[], &headers, body)
        .await;
    assert_eq!(r.status, 200, "PUT {key} in {class:?}: {}", r.text());
}

async fn weft(tc: &TestCluster, args: &[&str]) -> (bool, String) {
    let (ok, out, err) = support::weft_cli(tc.c(), args).await;
    (ok, format!("{out}{err}"))
}

/// Waits until the gateway's cluster map has every node (it refreshes
/// every 500 ms; the cold zone registers last).
async fn wait_gateway_sees_cold_zone(tc: &TestCluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = tc
            .root_client()
            .request(
                "PUT",
                "/tiers/probe",
                &[],
                &[("x-amz-storage-class", "GLACIER_IR")],
                vec![1],
            )
            .await;
        if r.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GLACIER_IR never placeable: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_class_places_shards_only_in_its_zones_and_the_cli_guards_the_definitions() {
    let tc = tiered(false).await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("tiers").await.status, 200);
    wait_gateway_sees_cold_zone(&tc).await;

    // The defaults, each placeable on this topology.
    let (ok, out) = weft(&tc, &["class", "list", "--json"]).await;
    assert!(ok, "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let names: Vec<&str> = listed["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "STANDARD",
            "INTELLIGENT_TIERING",
            "STANDARD_IA",
            "ONEZONE_IA",
            "GLACIER_IR"
        ]
    );
    for c in listed["classes"].as_array().unwrap() {
        assert!(c.get("unplaceable").is_none(), "{c}");
    }

    // Each class, written: shards only where its labels point.
    let bodies: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("standard", None, data(1, BIG)),
        ("ia", Some("STANDARD_IA"), data(2, BIG)),
        ("onezone", Some("ONEZONE_IA"), data(3, BIG)),
        ("onezone-small", Some("ONEZONE_IA"), data(7, 1000)),
        ("glacier", Some("GLACIER_IR"), data(4, BIG)),
        ("glacier-small", Some("GLACIER_IR"), data(5, 1000)),
    ];
    for (key, class, body) in &bodies {
        put_class(&tc, key, *class, body.clone()).await;
    }
    for key in ["standard", "ia"] {
        let v = support::current_version(&tc, "tiers", key).await;
        let placed = zones(&v);
        assert_eq!(placed.len(), 6, "{key}: 4+2");
        for zone in ["zone-a", "zone-b", "zone-c"] {
            let n = placed.iter().filter(|(z, _)| *z == zone).count();
            assert_eq!(n, 2, "{key}: two shards in each hot zone: {placed:?}");
        }
    }
    let onezone = support::current_version(&tc, "tiers", "onezone").await;
    let placed = zones(&onezone);
    assert_eq!(placed.len(), 5, "ONEZONE_IA is 4+1");
    // No hot zone has 5 nodes: the one zone is west.
    assert!(placed.iter().all(|(z, _)| *z == "west"), "{placed:?}");
    // Its small objects too: a hot zone of 2 holds their write quorum but
    // never all three copies.
    let small = support::current_version(&tc, "tiers", "onezone-small").await;
    let placed = zones(&small);
    assert_eq!(placed.len(), 3, "{placed:?}");
    assert!(placed.iter().all(|(z, _)| *z == "west"), "{placed:?}");
    for key in ["glacier", "glacier-small"] {
        let v = support::current_version(&tc, "tiers", key).await;
        let placed = zones(&v);
        assert!(
            placed.iter().all(|(z, _)| *z == "west"),
            "{key}: {placed:?}"
        );
        let distinct: BTreeSet<NodeId> = placed.iter().map(|(_, n)| *n).collect();
        assert_eq!(distinct.len(), placed.len(), "{key}: one shard per node");
        assert_eq!(v.storage_class, "GLACIER_IR");
    }

    // Reads return the bytes; HEAD and listings name the class.
    for (key, class, body) in &bodies {
        s3.must_get_equal("tiers", key, body).await;
        let head = s3.head("tiers", key).await;
        // S3 leaves the header out for STANDARD.
        assert_eq!(
            head.header("x-amz-storage-class").as_deref(),
            *class,
            "{key}"
        );
    }
    let list = s3.list("tiers", &[("list-type", "2")]).await;
    let classes = support::xml_values(&list.text(), "StorageClass");
    let keys = support::xml_values(&list.text(), "Key");
    let of = |k: &str| classes[keys.iter().position(|x| x == k).unwrap()].clone();
    assert_eq!(of("glacier"), "GLACIER_IR");
    assert_eq!(of("onezone"), "ONEZONE_IA");
    assert_eq!(of("standard"), "STANDARD");

    // A class the cluster does not define, and one that is no S3 class.
    for bad in ["DEEP_ARCHIVE", "GOLD"] {
        let r = s3
            .request(
                "PUT",
                "/tiers/bad",
                &[],
                &[("x-amz-storage-class", bad)],
                vec![1; 10],
            )
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(
            r.error_code().as_deref(),
            Some("InvalidStorageClass"),
            "{bad}"
        );
    }

    // The manual transition: an in-place copy with a new class moves the
    // bytes to the cold zone and keeps ETag and content.
    let before = support::current_version(&tc, "tiers", "standard").await;
    let r = s3
        .request(
            "PUT",
            "/tiers/standard",
            &[],
            &[
                ("x-amz-copy-source", "/tiers/standard"),
                ("x-amz-storage-class", "GLACIER_IR"),
            ],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = support::current_version(&tc, "tiers", "standard").await;
    assert_eq!(after.storage_class, "GLACIER_IR");
    assert_eq!(after.etag, before.etag);
    assert!(zones(&after).iter().all(|(z, _)| *z == "west"));
    s3.must_get_equal("tiers", "standard", &bodies[0].2).await;

    // The CLI refuses what cannot be: a code wider than the cold zone,
    // deleting a class in use (naming the bucket), deleting STANDARD.
    let (ok, out) = weft(&tc, &["class", "set", "GLACIER_IR", "--layout", "ec:10+4"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("GLACIER_IR cannot be placed") && out.contains("tier=cold selects 7 node(s)"),
        "{out}"
    );
    let (ok, out) = weft(&tc, &["class", "delete", "GLACIER_IR"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("in buckets tiers"), "{out}");
    let (ok, out) = weft(&tc, &["class", "delete", "STANDARD"]).await;
    assert!(!ok && out.contains("can be changed, not deleted"), "{out}");
    let (ok, out) = weft(&tc, &["class", "set", "GOLD", "--layout", "ec:4+2"]).await;
    assert!(!ok && out.contains("not an S3 storage class name"), "{out}");

    // A new class, written to, emptied and deleted.
    let (ok, out) = weft(
        &tc,
        &[
            "class",
            "set",
            "REDUCED_REDUNDANCY",
            "--layout",
            "replicas:2",
            "--select",
            "zone=zone-a",
            "--spread",
            "nodes",
            "--small-bytes",
            "0",
            "--small-copies",
            "2",
        ],
    )
    .await;
    assert!(ok, "{out}");
    // The gateway learns it with its next map refresh. Probed with an
    // empty body: a refusal sent before a big body is read closes the
    // connection under the client's feet.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s3
            .request(
                "PUT",
                "/tiers/rr",
                &[],
                &[("x-amz-storage-class", "REDUCED_REDUNDANCY")],
                vec![],
            )
            .await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = s3
        .request(
            "PUT",
            "/tiers/rr",
            &[],
            &[("x-amz-storage-class", "REDUCED_REDUNDANCY")],
            data(6, BIG),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rr = support::current_version(&tc, "tiers", "rr").await;
    let placed = zones(&rr);
    assert_eq!(placed.len(), 2, "{placed:?}");
    assert!(placed.iter().all(|(z, _)| *z == "zone-a"), "{placed:?}");
    let (ok, out) = weft(&tc, &["class", "delete", "REDUCED_REDUNDANCY"]).await;
    assert!(!ok, "in use: {out}");
    assert_eq!(s3.delete("tiers", "rr").await.status, 204);
    let (ok, out) = weft(&tc, &["class", "delete", "REDUCED_REDUNDANCY"]).await;
    assert!(ok, "{out}");
    let (ok, out) = weft(&tc, &["class", "list"]).await;
    assert!(ok && !out.contains("REDUCED_REDUNDANCY"), "{out}");

    // Usage: each class's bytes in its zones, priced by zone.
    let (ok, out) = weft(&tc, &["cluster", "usage", "--json"]).await;
    assert!(ok, "{out}");
    let u: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let mut cost = 0.0;
    for z in u["zones"].as_array().unwrap() {
        let (class, zone) = (z["class"].as_str().unwrap(), z["zone"].as_str().unwrap());
        match class {
            "GLACIER_IR" | "ONEZONE_IA" => assert_eq!(zone, "west", "{z}"),
            _ => assert_ne!(zone, "west", "{z}"),
        }
        let price = if zone == "west" { 0.004 } else { 0.02 };
        let stored = z["stored_bytes"].as_u64().unwrap() as f64;
        cost += stored / (1u64 << 30) as f64 * price;
    }
    let reported = u["monthly_cost"].as_f64().unwrap();
    assert!((reported - cost).abs() < 1e-9, "{reported} vs {cost}");
    // Cold classes cost less than the same bytes as STANDARD would.
    assert!(u["monthly_saving"].as_f64().unwrap() > 0.0, "{u}");
    assert_eq!(u["unpriced_zones"].as_array().unwrap().len(), 0);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_rebuilds_a_lost_cold_shard_inside_the_cold_zone() {
    let mut tc = tiered(true).await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("tiers").await.status, 200);
    wait_gateway_sees_cold_zone(&tc).await;
    let body = data(9, BIG);
    put_class(&tc, "cold", Some("GLACIER_IR"), body.clone()).await;
    let v = support::current_version(&tc, "tiers", "cold").await;
    let seg = &v.segments[0];
    let lost = seg.shards[0].expect("placed");
    assert_eq!(zone_of(lost), "west");
    tc.c_mut().stop_datad(lost.0 as usize - 1).await.unwrap();

    // Hot nodes have room and hold no shard of it; repair must still pick
    // the one cold node left without a shard.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rebuilt = loop {
        let now = support::current_version(&tc, "tiers", "cold").await;
        if let Some(n) = now.segments[0].shards[0].filter(|n| *n != lost) {
            break n;
        }
        assert!(Instant::now() < deadline, "shard 0 never rebuilt");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(zone_of(rebuilt), "west", "rebuilt on node {rebuilt}");
    let now = support::current_version(&tc, "tiers", "cold").await;
    assert!(
        zones(&now).iter().all(|(z, _)| *z == "west"),
        "{:?}",
        zones(&now)
    );
    s3.must_get_equal("tiers", "cold", &body).await;
    tc.shutdown().await;
}

/// `weft class set --migrate`: the data already in a changed class moves to
/// the new definition (re-encoded onto the nodes it now selects), keeping
/// its bytes, ETag and class; small objects kept as replicas stay; the
/// class reports the migration until it is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_the_data_already_in_a_changed_class_to_its_new_nodes() {
    let tc = TestCluster::start_with(|c| {
        c.cold_nodes = COLD_NODES;
        c.datad.repair_poll_ms = 100;
        // A migration ends no sooner than an upload age after it began.
        c.metad.upload_max_age_ms = 1_000;
        c.metad.gc_grace_ms = 3_600_000;
        c.datad.gc_interval_ms = 3_600_000;
        // Replaced shards go two seconds after the move.
        c.datad.release_quiet_ms = 500;
        c.datad.release_hold_max_ms = 2_000;
    })
    .await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("tiers").await.status, 200);
    wait_gateway_sees_cold_zone(&tc).await;
    // STANDARD_IA lives on the hot zones here (there is no warm zone).
    let body = data(21, BIG);
    put_class(&tc, "ia", Some("STANDARD_IA"), body.clone()).await;
    put_class(&tc, "ia-small", Some("STANDARD_IA"), data(22, 1000)).await;
    let before = support::current_version(&tc, "tiers", "ia").await;
    assert!(zones(&before).iter().all(|(z, _)| *z != "west"));
    let small_before = support::current_version(&tc, "tiers", "ia-small").await;

    let (ok, out) = weft(
        &tc,
        &[
            "class",
            "set",
            "STANDARD_IA",
            "--select",
            "tier=cold",
            "--spread",
            "nodes",
            "--migrate",
        ],
    )
    .await;
    assert!(ok && out.contains("being moved"), "{out}");
    let migrating = |out: &str| {
        let list: serde_json::Value = serde_json::from_str(out).unwrap();
        list["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["class"]["name"] == "STANDARD_IA")
            .cloned()
            .unwrap()
    };
    let (ok, out) = weft(&tc, &["class", "list", "--json"]).await;
    assert!(ok, "{out}");
    assert_eq!(migrating(&out)["migrating"], true, "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let v = support::current_version(&tc, "tiers", "ia").await;
        if v.segments[0].id != before.segments[0].id {
            break v;
        }
        assert!(Instant::now() < deadline, "STANDARD_IA data never moved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(after.storage_class, "STANDARD_IA");
    assert_eq!(after.etag, before.etag);
    assert_eq!(after.version_id, before.version_id);
    assert!(
        zones(&after).iter().all(|(z, _)| *z == "west"),
        "{:?}",
        zones(&after)
    );
    s3.must_get_equal("tiers", "ia", &body).await;
    // The replaced shards go once their hold is over.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, n) in before.segments[0].shards.iter().enumerate() {
        let n = n.expect("written");
        let store = tc.c().datad_store(n.0 as usize - 1).expect("running");
        while store
            .get_bytes(
                before.segments[0].id,
                weft_common::ShardIndex(i as u8),
                0,
                None,
            )
            .await
            .is_ok()
        {
            assert!(Instant::now() < deadline, "old shard {i} still on node {n}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let small = support::current_version(&tc, "tiers", "ia-small").await;
    assert_eq!(
        small.segments[0].id, small_before.segments[0].id,
        "replicas stay"
    );
    // The walk that finds nothing left ends the migration.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = weft(&tc, &["class", "list", "--json"]).await;
        assert!(ok, "{out}");
        let ia = migrating(&out);
        if ia["migrating"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "the migration never ended: {ia}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tc.shutdown().await;
}
