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
//!
//! Share of the normal run: about 20 s.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::{current_version, data, S3Client, TestCluster};
use weft_common::manifest::ObjectVersion;

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
const MIB: usize = 1 << 20;
/// Two full 4+2 stripes of 1 MiB units.
const OBJECT: usize = 8 * MIB;

/// The zone of data node `n` (1-based), as the dev cluster deals them.
fn zone_of(n: u64) -> &'static str {
    ZONES[(n as usize - 1) % ZONES.len()]
}

async fn start() -> TestCluster {
    TestCluster::start_with(|c| {
        c.gateway_per_zone = true;
        c.wan = weft_client::wan::WanSettings {
            latency_ms: 20,
            bandwidth_bytes_per_s: 0,
        };
    })
    .await
}

fn client_of(tc: &TestCluster, gateway: usize) -> S3Client {
    let c = tc.c();
    S3Client::new(
        &c.s3_endpoint_of(gateway).expect("gateway running"),
        &c.credentials().access_key,
        &c.credentials().secret_key,
        c.region(),
    )
}

async fn metrics_text(tc: &TestCluster, url: String) -> String {
    tc.c()
        .internal_http()
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

/// Shard bytes each running data node served to readers in `zone`, by
/// node id.
async fn served_to(tc: &TestCluster, zone: &str) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    let line = format!("weft_datad_shard_served_bytes_total{{zone=\"{zone}\"}} ");
    for i in 0..tc.c().datad_count() {
        let Some(addr) = tc.c().datad_addr(i) else {
            continue;
        };
        let text = metrics_text(tc, tc.c().internal_url(addr, "/metrics")).await;
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |v| v.trim().parse().expect("metric value"));
        out.insert(i as u64 + 1, v);
    }
    out
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

/// Bytes served to `zone` since `before`: (from nodes in it, from others).
async fn served_since(tc: &TestCluster, zone: &str, before: &BTreeMap<u64, u64>) -> (u64, u64) {
    let after = served_to(tc, zone).await;
    let mut local = 0;
    let mut cross = 0;
    for (n, v) in after {
        let d = v - before.get(&n).copied().unwrap_or(0);
        if zone_of(n) == zone {
            local += d;
        } else {
            cross += d;
        }
    }
    (local, cross)
}

fn shard_nodes(v: &ObjectVersion) -> Vec<Vec<Option<u64>>> {
    v.segments
        .iter()
        .map(|s| s.shards.iter().map(|n| n.map(|n| n.0)).collect())
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_take_the_cheapest_shards_hedge_slow_ones_and_replace_dead_ones() {
    let mut tc = start().await;
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

    // A slow node in zone-a holding a shard of a fresh object: the read
    // hedges to the next-cheapest shard instead of waiting 2 s a stripe.
    let (slow_key, slow_body) = put_with_parity_in_a(&tc, &s3, "data").await;
    let v = current_version(&tc, "data", &slow_key).await;
    let slow_node = v.segments[0]
        .shards
        .iter()
        .flatten()
        .find(|n| zone_of(n.0) == "zone-a")
        .expect("2 shards in zone-a")
        .0;
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

    // Stop a node in zone-a holding shards of a fresh object: the read
    // takes the cheapest k of the survivors, k units per stripe in all.
    let (dead_key, dead_body) = put_with_parity_in_a(&tc, &s3, "data").await;
    let v = current_version(&tc, "data", &dead_key).await;
    let dead = v.segments[0]
        .shards
        .iter()
        .flatten()
        .find(|n| zone_of(n.0) == "zone-a")
        .expect("2 shards in zone-a")
        .0;
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
    tc.shutdown().await;
}
