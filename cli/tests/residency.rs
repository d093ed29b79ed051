//! Data residency (issue 15): a bucket kept in zones {zone-a, zone-b,
//! west} on 12 hot nodes (4 in each of zone-a, zone-b, zone-c) and a cold
//! zone `west` of 6. zone-c is where the classes would otherwise put a
//! third of every segment, so a shard there is a residency breach.
//!
//! - Objects written before the residency are moved out of zone-c by the
//!   migration the change starts.
//! - New writes, a repair after a node is stopped, a drain and a lifecycle
//!   transition to GLACIER_IR (onto west) all keep every shard inside.
//! - A bucket created with `LocationConstraint=eu` (zones labelled
//!   region=eu) is kept on those nodes, and GetBucketLocation answers
//!   `eu`; a constraint no node carries is refused.
//!
//! Share of the normal run: about 40 s.

mod support;

use std::time::{Duration, Instant};
use support::{current_version, data, TestCluster};
use weft_common::manifest::ObjectVersion;
use weft_common::NodeId;

const HOT: usize = 12;
const MIB: usize = 1 << 20;

/// The zone of node `n` (1-based): hot nodes round-robin over three
/// zones, then west.
fn zone_of(n: NodeId) -> &'static str {
    let i = n.0 as usize;
    if i > HOT {
        "west"
    } else {
        ["zone-a", "zone-b", "zone-c"][(i - 1) % 3]
    }
}

fn nodes_of(v: &ObjectVersion) -> Vec<NodeId> {
    v.segments
        .iter()
        .flat_map(|s| s.shards.iter().flatten().copied())
        .collect()
}

fn outside(v: &ObjectVersion, allowed: &[&str]) -> Vec<NodeId> {
    nodes_of(v)
        .into_iter()
        .filter(|n| !allowed.contains(&zone_of(*n)))
        .collect()
}

/// Polls until every shard of `bucket/key`'s current version is placed on
/// a node in `allowed` (and every shard is placed), at most `within`.
async fn wait_inside(
    tc: &TestCluster,
    bucket: &str,
    key: &str,
    allowed: &[&str],
    within: Duration,
) -> ObjectVersion {
    let deadline = Instant::now() + within;
    loop {
        let v = current_version(tc, bucket, key).await;
        let placed = v
            .segments
            .iter()
            .all(|s| s.shards.iter().all(Option::is_some));
        if placed && outside(&v, allowed).is_empty() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{bucket}/{key} still has shards outside {allowed:?} after {within:?}: {:?}",
            v.segments.iter().map(|s| &s.shards).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const KEPT: [&str; 3] = ["zone-a", "zone-b", "west"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_bucket_keeps_every_shard_in_its_zones() {
    let mut tc = TestCluster::start_with(|c| {
        c.datad_count = HOT;
        c.cold_nodes = 6;
        c.metad.lifecycle_day_secs = 1;
        c.metad.node_suspect_ms = 600;
        c.metad.node_grace_ms = 2_000;
        c.metad.durability_scan_ms = 200;
        c.datad.heartbeat_interval_ms = 200;
        c.datad.repair_poll_ms = 100;
        c.datad.gc_interval_ms = 3_600_000;
        c.metad.gc_grace_ms = 3_600_000;
    })
    .await;
    tc.c()
        .wait_nodes_up(HOT + 6, Duration::from_secs(30))
        .await
        .unwrap();
    let s3 = tc.root_client();
    assert_eq!(s3.mb("kept").await.status, 200);

    // Written before the residency: spread over all three hot zones.
    let old = data(1, 4 * MIB);
    s3.must_put("kept", "old", old.clone()).await;
    let v = current_version(&tc, "kept", "old").await;
    assert!(
        !outside(&v, &KEPT).is_empty(),
        "4+2 over three hot zones puts shards in zone-c"
    );

    let (ok, out, err) = support::weft_cli(
        tc.c(),
        &[
            "bucket",
            "placement",
            "set",
            "kept",
            "--zones",
            "zone-a,zone-b,west",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("zones west,zone-a,zone-b"), "{out}");
    // A zone the cluster lacks is refused, naming it.
    let (ok, _, err) = support::weft_cli(
        tc.c(),
        &["bucket", "placement", "set", "kept", "--zones", "mars"],
    )
    .await;
    assert!(!ok && err.contains("mars"), "{err}");

    // The migration the change started moves the old object inside.
    wait_inside(&tc, "kept", "old", &KEPT, Duration::from_secs(60)).await;
    s3.must_get_equal("kept", "old", &old).await;

    // New writes land inside.
    let mut bodies = vec![];
    for i in 0..4 {
        let body = data(10 + i, 2 * MIB);
        s3.must_put("kept", &format!("new-{i}"), body.clone()).await;
        let v = current_version(&tc, "kept", &format!("new-{i}")).await;
        assert_eq!(outside(&v, &KEPT), vec![], "new-{i} written outside");
        bodies.push(body);
    }

    // A stopped node's shards are rebuilt inside (zone-c has four nodes
    // the class alone would allow).
    let v = current_version(&tc, "kept", "new-0").await;
    let victim = *nodes_of(&v)
        .iter()
        .find(|n| zone_of(**n) == "zone-a")
        .expect("a shard in zone-a");
    tc.c_mut().stop_datad(victim.0 as usize - 1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = current_version(&tc, "kept", "new-0").await;
        let rebuilt = !nodes_of(&v).contains(&victim)
            && v.segments
                .iter()
                .all(|s| s.shards.iter().all(Option::is_some));
        if rebuilt {
            assert_eq!(outside(&v, &KEPT), vec![], "repaired outside");
            break;
        }
        assert!(Instant::now() < deadline, "new-0 not repaired off {victim}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A drained zone-b node's shards move inside.
    let v = current_version(&tc, "kept", "new-1").await;
    let drained = *nodes_of(&v)
        .iter()
        .find(|n| zone_of(**n) == "zone-b")
        .expect("a shard in zone-b");
    let (ok, out, err) =
        support::weft_cli(tc.c(), &["node", "drain", &drained.0.to_string()]).await;
    assert!(ok, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = current_version(&tc, "kept", "new-1").await;
        if !nodes_of(&v).contains(&drained) {
            assert_eq!(outside(&v, &KEPT), vec![], "drained outside");
            break;
        }
        assert!(Instant::now() < deadline, "new-1 not drained off {drained}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A lifecycle transition to GLACIER_IR (tier=cold: west) stays inside.
    let rules = r#"<LifecycleConfiguration><Rule><ID>cold</ID><Status>Enabled</Status>
  <Filter><Prefix>new-3</Prefix></Filter>
  <Transition><Days>0</Days><StorageClass>GLACIER_IR</StorageClass></Transition>
</Rule></LifecycleConfiguration>"#;
    let r = s3
        .request(
            "PUT",
            "/kept",
            &[("lifecycle", "")],
            &[],
            rules.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = current_version(&tc, "kept", "new-3").await;
        if v.storage_class == "GLACIER_IR" {
            assert!(
                nodes_of(&v).iter().all(|n| zone_of(*n) == "west"),
                "GLACIER_IR inside the residency is west: {:?}",
                nodes_of(&v)
            );
            break;
        }
        assert!(Instant::now() < deadline, "new-3 never moved to GLACIER_IR");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, body) in bodies.iter().enumerate() {
        s3.must_get_equal("kept", &format!("new-{i}"), body).await;
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_constraint_keeps_a_bucket_on_its_region_and_is_answered() {
    let tc = TestCluster::start_with(|c| {
        c.datad_count = HOT;
        for z in ["zone-a", "zone-b"] {
            c.zone_labels.insert(
                z.into(),
                [("region".to_string(), "eu".to_string())]
                    .into_iter()
                    .collect(),
            );
        }
    })
    .await;
    tc.c()
        .wait_nodes_up(HOT, Duration::from_secs(30))
        .await
        .unwrap();
    let s3 = tc.root_client();
    let config = |region: &str| {
        format!(
            "<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        )
        .into_bytes()
    };
    let r = s3.request("PUT", "/eu-data", &[], &[], config("eu")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s3
        .request("GET", "/eu-data", &[("location", "")], &[], vec![])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // `<LocationConstraint xmlns="...">eu</LocationConstraint>`.
    assert!(
        r.text().contains(">eu</LocationConstraint>"),
        "{}",
        r.text()
    );
    for i in 0..4 {
        s3.must_put("eu-data", &format!("o{i}"), data(i, 2 * MIB))
            .await;
        let v = current_version(&tc, "eu-data", &format!("o{i}")).await;
        assert_eq!(
            outside(&v, &["zone-a", "zone-b"]),
            vec![],
            "o{i} outside region eu"
        );
    }
    // A region no node is labelled with is refused.
    let r = s3
        .request("PUT", "/mars-data", &[], &[], config("mars-1"))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.error_code().as_deref(),
        Some("IllegalLocationConstraintException")
    );
    assert!(
        r.text().contains("regions (eu)"),
        "names the regions there are: {}",
        r.text()
    );
    tc.shutdown().await;
}
