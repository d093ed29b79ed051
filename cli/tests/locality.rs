//! Locality of reads (issue 15) on `weft dev`'s topology — 6 data nodes in
//! 3 zones, two each — with one gateway per zone and an emulated WAN of
//! 20 ms between zones. Bytes are counted where they are served: each data
//! node's `shard_served_bytes` by the reader's zone, never inferred from
//! the gateway's own view.
//!
//! - A 4+2 object whose layout puts 2 shards in the reader's zone, one of
//!   them parity: a full read moves exactly 2 of every 4 units across
//!   zones (the old data-shards-first read moved 3).
//! - A second read of the same object comes from the stripe cache: no
//!   shard bytes at all.
//! - A small range inside one remote unit reads that range directly, not a
//!   decode's worth of units.
//! - A data node slowed by 2 s: the read hedges to the next-cheapest
//!   shard, the hedged shard completes the stripes, and the bytes are
//!   right.
//! - A stopped data node costs only its replacement: the read fetches k
//!   units per stripe in all, not every survivor.
//! - `weft cluster netmap` shows zone-a's measured paths, at least 20 ms
//!   to the other zones, and `weft locate --zone` estimates seconds from
//!   them.
//! - Data nodes measure too: with the only gateway in zone-a, the map
//!   still gets zone-b's paths, from zone-b's data nodes' probes through
//!   their own emulated WAN (at least 20 ms to zone-c) and from the
//!   throughput of the shards they pulled across zones for a warm.
//!
//! Share of the normal run: about 25 s (four clusters).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::zones::{client_of, metrics_text, served_since, served_to, zone_of, ZONES};
use support::{current_version, data, S3Client, TestCluster};
use weft_common::manifest::ObjectVersion;

const MIB: usize = 1 << 20;
/// Two full 4+2 stripes of 1 MiB units.
const OBJECT: usize = 8 * MIB;

/// The cluster; with `hedging` off, every read fetches exactly the shards
/// it planned, so byte counts are exact.
async fn start(hedging: bool) -> TestCluster {
    TestCluster::start_with(|c| {
        c.gateway_per_zone = true;
        // Off in other tests' clusters (DevClusterConfig::ephemeral).
        c.gateway.stripe_cache_bytes = 64 << 20;
        c.gateway.read_hedging = hedging;
        c.gateway.netmap_period_ms = 300;
        c.wan = weft_client::wan::WanSettings {
            latency_ms: 20,
            bandwidth_bytes_per_s: 0,
        };
    })
    .await
}

/// A counter of gateway `i`'s `/metrics` (0 when absent).
async fn gateway_counter(tc: &TestCluster, i: usize, name: &str) -> u64 {
    let url = format!("{}/metrics", tc.c().admin_endpoint_of(i).expect("gateway"));
    metrics_text(tc, url)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.trim().parse().expect("metric value"))
}

fn shard_nodes(v: &ObjectVersion) -> Vec<Vec<Option<u64>>> {
    v.segments
        .iter()
        .map(|s| s.shards.iter().map(|n| n.map(|n| n.0)).collect())
        .collect()
}

/// `weft cluster netmap --json`, asked until `done` holds of it (at most
/// 60 s).
async fn netmap_until(
    tc: &TestCluster,
    what: &str,
    done: impl Fn(&weft_common::netmap::NetMap) -> bool,
) -> weft_common::netmap::NetMap {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, err) = support::weft_cli(tc.c(), &["cluster", "netmap", "--json"]).await;
        assert!(ok, "{err}");
        let map: weft_common::netmap::NetMap = serde_json::from_str(&out).expect("netmap json");
        if done(&map) {
            return map;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not {what} within 60 s: {map:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes objects until one is laid out with exactly 2 shards in zone-a,
/// one of them parity (placement spreads 6 shards over 3 zones, so which
/// shards land in a zone is the placer's choice): the layout where reading
/// data shards first would cross more than it must.
async fn put_with_parity_in_a(tc: &TestCluster, s3: &S3Client, bucket: &str) -> (String, Vec<u8>) {
    for attempt in 0..40 {
        let key = format!("layout-{attempt}");
        let body = data(attempt, OBJECT);
        s3.must_put(bucket, &key, body.clone()).await;
        let v = current_version(tc, bucket, &key).await;
        let fits = shard_nodes(&v).iter().all(|shards| {
            let in_a: Vec<usize> = (0..shards.len())
                .filter(|i| shards[*i].is_some_and(|n| zone_of(n) == "zone-a"))
                .collect();
            in_a.len() == 2 && in_a.iter().any(|i| *i >= 4)
        });
        if fits {
            return (key, body);
        }
    }
    panic!("40 objects and none had a parity shard among its 2 in zone-a");
}

/// A node of zone-a holding a shard of `data/key`'s first segment.
async fn a_node_in_zone_a(tc: &TestCluster, key: &str) -> u64 {
    let v = current_version(tc, "data", key).await;
    v.segments[0]
        .shards
        .iter()
        .flatten()
        .find(|n| zone_of(n.0) == "zone-a")
        .expect("2 shards in zone-a")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_take_the_cheapest_shards_and_replace_dead_ones() {
    let mut tc = start(false).await;
    tc.c()
        .wait_nodes_up(6, Duration::from_secs(30))
        .await
        .unwrap();
    let s3 = client_of(&tc, 0);
    assert_eq!(tc.c().gateway_zone(0).as_deref(), Some("zone-a"));
    assert_eq!(s3.mb("data").await.status, 200);

    // A full read from zone-a crosses for the 2 units per stripe zone-a
    // lacks, no more: its parity shard stands in for a remote data shard.
    let (key, body) = put_with_parity_in_a(&tc, &s3, "data").await;
    let before = served_to(&tc, "zone-a").await;
    let gw_cross = gateway_counter(&tc, 0, "weft_gateway_cross_zone_read_bytes_total").await;
    s3.must_get_equal("data", &key, &body).await;
    let (local, cross) = served_since(&tc, "zone-a", &before).await;
    assert_eq!(
        local,
        (OBJECT / 2) as u64,
        "2 of 4 units per stripe from zone-a"
    );
    assert_eq!(
        cross,
        (OBJECT / 2) as u64,
        "2 of 4 units per stripe across zones"
    );
    assert_eq!(
        gateway_counter(&tc, 0, "weft_gateway_cross_zone_read_bytes_total").await - gw_cross,
        cross,
        "the gateway counts what the nodes served across zones"
    );

    // The same object again: every stripe from the cache.
    let hits = gateway_counter(&tc, 0, "weft_gateway_stripe_cache_hits_total").await;
    let before = served_to(&tc, "zone-a").await;
    s3.must_get_equal("data", &key, &body).await;
    assert_eq!(served_since(&tc, "zone-a", &before).await, (0, 0));
    assert_eq!(
        gateway_counter(&tc, 0, "weft_gateway_stripe_cache_hits_total").await - hits,
        2
    );

    // 1000 bytes inside one remote data unit, read from zone-a on a fresh
    // object (not cached): exactly those bytes cross.
    let small_key = "ranged";
    let small = data(99, OBJECT);
    s3.must_put("data", small_key, small.clone()).await;
    let v = current_version(&tc, "data", small_key).await;
    let remote_unit = v.segments[0].shards[..4]
        .iter()
        .position(|n| n.is_some_and(|n| zone_of(n.0) != "zone-a"))
        .expect("4 data shards cannot all be in zone-a");
    let start = remote_unit * MIB + 100;
    let before = served_to(&tc, "zone-a").await;
    let r = s3
        .get_range(
            "data",
            small_key,
            &format!("bytes={}-{}", start, start + 999),
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &small[start..start + 1000]);
    assert_eq!(served_since(&tc, "zone-a", &before).await, (0, 1000));

    // Stop a node in zone-a holding shards of a fresh object: the read
    // takes the cheapest k of the survivors, k units per stripe in all.
    let (dead_key, dead_body) = put_with_parity_in_a(&tc, &s3, "data").await;
    let dead = a_node_in_zone_a(&tc, &dead_key).await;
    tc.c_mut().stop_datad(dead as usize - 1).await.unwrap();
    let before = served_to(&tc, "zone-a").await;
    s3.must_get_equal("data", &dead_key, &dead_body).await;
    let (local, cross) = served_since(&tc, "zone-a", &before).await;
    assert_eq!(
        local + cross,
        OBJECT as u64,
        "k units per stripe fetched ({local} from zone-a, {cross} across)"
    );
    assert_eq!(
        local,
        (OBJECT / 4) as u64,
        "the surviving zone-a shard is used"
    );

    // The network map: zone-a's gateway probed every zone through the
    // emulated WAN (so at least 20 ms to the others) and measured
    // throughput from the reads above; `weft locate` turns it into an
    // estimate for zone-a.
    let map = netmap_until(&tc, "zone-a's paths all measured", |map| {
        ZONES.iter().all(|z| {
            map.path("zone-a", z)
                .is_some_and(|p| *z == "zone-a" || p.bytes_per_s > 0)
        })
    })
    .await;
    for z in ["zone-b", "zone-c"] {
        let p = map.path("zone-a", z).unwrap();
        assert!(
            p.rtt_us >= 20_000,
            "zone-a → {z} under the 20 ms WAN: {p:?}"
        );
    }
    let (ok, out, err) = support::weft_cli(
        tc.c(),
        &["locate", "s3://data/layout-", "--zone", "zone-a", "--json"],
    )
    .await;
    assert!(ok, "{err}");
    let l: weft_gateway::admin_locate::Located = serde_json::from_str(&out).unwrap();
    assert_eq!(l.reads.len(), 1);
    let est = l.reads[0]
        .estimated_secs
        .expect("an estimate from measured paths");
    assert!(
        est > 0.0,
        "zone-a reads part of the set across zones: {est}"
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_is_hedged_around() {
    let tc = start(true).await;
    tc.c()
        .wait_nodes_up(6, Duration::from_secs(30))
        .await
        .unwrap();
    let s3 = client_of(&tc, 0);
    assert_eq!(s3.mb("data").await.status, 200);
    // A slow node in zone-a holding a shard of a fresh object: the read
    // hedges to the next-cheapest shard instead of waiting 2 s a stripe.
    let (slow_key, slow_body) = put_with_parity_in_a(&tc, &s3, "data").await;
    let slow_node = a_node_in_zone_a(&tc, &slow_key).await;
    let slow_addr = tc
        .c()
        .datad_addr(slow_node as usize - 1)
        .unwrap()
        .to_string();
    let wan = tc.c().gateway_wan(0).expect("gateway 0").clone();
    // 2 s, well past any p95 on a loaded machine, so a hedge must go.
    wan.slow_down(&slow_addr, Duration::from_secs(2));
    let hedges = gateway_counter(&tc, 0, "weft_gateway_read_hedges_total").await;
    let wins = gateway_counter(&tc, 0, "weft_gateway_read_hedge_wins_total").await;
    s3.must_get_equal("data", &slow_key, &slow_body).await;
    wan.slow_down(&slow_addr, Duration::ZERO);
    let hedged = gateway_counter(&tc, 0, "weft_gateway_read_hedges_total").await - hedges;
    let won = gateway_counter(&tc, 0, "weft_gateway_read_hedge_wins_total").await - wins;
    assert!(
        hedged >= 2,
        "each of 2 stripes waited on the slow node: {hedged} hedges"
    );
    assert!(won >= 2, "hedged shards completed {won} of 2 stripes");

    tc.shutdown().await;
}

/// `weft locate` and its admin endpoint, checked against metad's own
/// placement of a few hundred objects: bytes per zone, shards per node,
/// each zone's read cost (computed here from the shards, independently of
/// the gateway's code), and the k8s-affinity output parsed as YAML. A
/// scheduler's key — the bucket's owner, not root — is enough; another
/// key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_reports_the_real_placement_and_zone_read_costs() {
    use weft_cli::admin_client::AdminClient;
    use weft_gateway::admin_locate::Located;
    let tc = TestCluster::start_with(|c| c.insecure_internal = true).await;
    tc.c()
        .wait_nodes_up(6, Duration::from_secs(30))
        .await
        .unwrap();
    let root = tc.c().admin_client();
    let key = |name: &'static str| {
        let root = root.clone();
        async move {
            let k: serde_json::Value = root
                .call(
                    reqwest::Method::POST,
                    "/v1/keys",
                    Some(serde_json::json!({ "name": name })),
                )
                .await
                .expect("create key");
            (
                k["access_key"].as_str().expect("access key").to_string(),
                k["secret_key"].as_str().expect("secret key").to_string(),
            )
        }
    };
    let (sched_ak, sched_sk) = key("scheduler").await;
    let (other_ak, other_sk) = key("other").await;
    let c = tc.c();
    let s3 = S3Client::new(&c.s3_endpoint(), &sched_ak, &sched_sk, c.region());
    assert_eq!(s3.mb("dataset").await.status, 200);
    const N: u64 = 200;
    for i in 0..N {
        // 100 KiB: erasure coded (above the small-object threshold).
        s3.must_put("dataset", &format!("train/{i:04}"), data(i, 100 << 10))
            .await;
    }
    s3.must_put("dataset", "other/x", data(7, 100 << 10)).await;

    // Expected, from metad's manifests.
    let mut zone_bytes: BTreeMap<String, u64> = BTreeMap::new();
    let mut node_shards: BTreeMap<String, u64> = BTreeMap::new();
    let mut cross: BTreeMap<&str, u64> = BTreeMap::new();
    for i in 0..N {
        let v = current_version(&tc, "dataset", &format!("train/{i:04}")).await;
        for seg in &v.segments {
            let weft_common::profile::Layout::Erasure { k, .. } = seg.layout else {
                panic!("100 KiB objects are erasure coded");
            };
            for n in seg.shards.iter().flatten() {
                *zone_bytes.entry(zone_of(n.0).to_string()).or_default() += seg.shard_len;
                *node_shards.entry(n.to_string()).or_default() += 1;
            }
            for z in ZONES {
                let here = seg
                    .shards
                    .iter()
                    .flatten()
                    .filter(|n| zone_of(n.0) == z)
                    .count() as u64;
                *cross.entry(z).or_default() += u64::from(k).saturating_sub(here) * seg.shard_len;
            }
        }
    }

    let sched = AdminClient::new(&c.admin_endpoint(), &sched_ak, &sched_sk);
    let l: Located = sched
        .call(
            reqwest::Method::GET,
            "/v1/locate?bucket=dataset&prefix=train/",
            None,
        )
        .await
        .expect("the bucket owner may locate its data");
    assert_eq!(l.objects.len(), N as usize, "only the prefix");
    assert!(!l.truncated);
    assert_eq!(l.total_bytes, N * (100 << 10));
    assert_eq!(l.zone_bytes, zone_bytes);
    assert_eq!(l.node_shards, node_shards);
    assert_eq!(l.reads.len(), 3);
    for r in &l.reads {
        assert_eq!(
            r.cross_zone_bytes,
            cross[r.zone.as_str()],
            "zone {}",
            r.zone
        );
    }
    let best = cross.values().min().unwrap();
    assert_eq!(cross[l.best_zone.as_deref().unwrap()], *best);
    assert_eq!(l.object_count, N);
    // Each object's own entry, for a few of them.
    for i in [0, N / 2, N - 1] {
        let key = format!("train/{i:04}");
        let v = current_version(&tc, "dataset", &key).await;
        let (mut zb, mut ns) = (BTreeMap::new(), BTreeMap::new());
        for seg in &v.segments {
            for n in seg.shards.iter().flatten() {
                *zb.entry(zone_of(n.0).to_string()).or_default() += seg.shard_len;
                *ns.entry(n.to_string()).or_default() += 1u64;
            }
        }
        let o = l.objects.iter().find(|o| o.key == key).expect("listed");
        assert_eq!(
            (o.size, &o.zone_bytes, &o.node_shards),
            (100 << 10, &zb, &ns)
        );
    }
    // Totals only: the same sums and costs, no per-object entries.
    let totals: Located = sched
        .call(
            reqwest::Method::GET,
            "/v1/locate?bucket=dataset&prefix=train/&objects=false",
            None,
        )
        .await
        .expect("totals only");
    assert!(totals.objects.is_empty());
    assert_eq!(totals.object_count, N);
    assert_eq!(
        (&totals.zone_bytes, &totals.node_shards, totals.total_bytes),
        (&l.zone_bytes, &l.node_shards, l.total_bytes)
    );
    assert_eq!(totals.reads, l.reads);
    assert_eq!(totals.best_zone, l.best_zone);

    let other = AdminClient::new(&c.admin_endpoint(), &other_ak, &other_sk);
    let refused = other
        .call::<Located>(
            reqwest::Method::GET,
            "/v1/locate?bucket=dataset&prefix=",
            None,
        )
        .await
        .expect_err("another key may not locate this bucket");
    assert!(refused.to_string().contains("403"), "{refused}");
    let unknown = sched
        .call::<Located>(
            reqwest::Method::GET,
            "/v1/locate?bucket=dataset&zone=mars",
            None,
        )
        .await
        .expect_err("an unknown zone is refused");
    assert!(unknown.to_string().contains("no zone"), "{unknown}");

    // The CLI: JSON equals the endpoint's answer; k8s-affinity is YAML
    // whose first preference is the best zone.
    let (ok, out, err) = support::weft_cli(c, &["locate", "s3://dataset/train/", "--json"]).await;
    assert!(ok, "{err}");
    let cli: Located = serde_json::from_str(&out).expect("locate --json");
    assert_eq!(cli.zone_bytes, l.zone_bytes);
    assert_eq!(cli.best_zone, l.best_zone);
    let (ok, yaml, err) = support::weft_cli(
        c,
        &["locate", "s3://dataset/train/", "--format", "k8s-affinity"],
    )
    .await;
    assert!(ok, "{err}");
    let python = std::env::var("WEFT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let parsed = std::process::Command::new(python)
        .args([
            "-c",
            "import sys, yaml, json; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            use std::io::Write;
            p.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            p.wait_with_output()
        })
        .expect("run python with PyYAML (installed with aws-cli)");
    assert!(parsed.status.success(), "not YAML:\n{yaml}");
    let v: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let prefs = &v["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(prefs[0]["weight"], 100);
    let first = &prefs[0]["preference"]["matchExpressions"][0];
    assert_eq!(first["key"], "topology.kubernetes.io/zone");
    assert_eq!(first["values"][0], l.best_zone.clone().unwrap());
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_nodes_measure_their_paths_through_the_wan_and_report_them() {
    let tc = TestCluster::start_with(|c| {
        // One gateway, in zone-a: whatever the map says of zone-b comes
        // from zone-b's data nodes.
        c.gateway.netmap_period_ms = 300;
        c.datad.netmap_period_ms = 300;
        c.datad.repair_poll_ms = 300;
        c.wan = weft_client::wan::WanSettings {
            latency_ms: 20,
            bandwidth_bytes_per_s: 0,
        };
    })
    .await;
    tc.c()
        .wait_nodes_up(6, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(tc.c().gateway_count(), 1);
    assert_eq!(tc.c().gateway_zone(0).as_deref(), Some("zone-a"));
    let s3 = client_of(&tc, 0);
    assert_eq!(s3.mb("data").await.status, 200);
    let body = data(7, OBJECT);
    s3.must_put("data", "ds/one", body.clone()).await;
    // zone-b's nodes pull the shards zone-b lacks, some from other zones.
    let (ok, out, err) = support::weft_cli(
        tc.c(),
        &[
            "warm",
            "s3://data/ds/",
            "--zone",
            "zone-b",
            "--wait-max",
            "90s",
        ],
    )
    .await;
    assert!(ok, "weft warm failed: {err}");
    assert!(out.contains("is warm in zone zone-b"), "{out}");

    let map = netmap_until(&tc, "zone-b's paths measured by its data nodes", |map| {
        let others = ["zone-a", "zone-c"];
        others.iter().all(|z| map.path("zone-b", z).is_some())
            && others
                .iter()
                .any(|z| map.path("zone-b", z).is_some_and(|p| p.bytes_per_s > 0))
    })
    .await;
    for z in ["zone-a", "zone-c"] {
        let p = map.path("zone-b", z).unwrap();
        assert!(
            p.rtt_us >= 20_000,
            "zone-b → {z} through the data nodes' 20 ms WAN: {p:?}"
        );
    }
    // The warm copies are right: zone-a's gateway reads the object whole.
    s3.must_get_equal("data", "ds/one", &body).await;
    tc.shutdown().await;
}
