//! Warm and pin (issue 15) on `weft dev`'s topology — 6 data nodes in 3
//! zones, two each — with one gateway per zone and an emulated WAN of
//! 20 ms between zones. Bytes are counted where they are served: each data
//! node's `shard_served_bytes` by the reader's zone.
//!
//! - Before a warm, a full read of a dataset from zone-a crosses zones;
//!   `weft warm --zone zone-a` waits until zone-a holds k shards of every
//!   segment, after which a full read moves 0 bytes across zones and
//!   `weft locate --zone zone-a` counts 0 cross-zone bytes.
//! - An overwrite after the warm reads back the new bytes, and the warm
//!   takes in the new version too; a zone-a node holding copies stops and
//!   every object still reads back; `weft warm drop` leaves no copy
//!   counted, and dropping it again is refused.
//! - A warm into a zone the bucket's residency excludes is refused, and
//!   says why.
//! - Budget: a pin that does not fit evicts the least recently used
//!   unpinned warm (by reported reads, not request time), also when that
//!   warm was read after the pin was asked for; a pin that would not fit
//!   beside the pinned ones is refused; a warm with a TTL is made, lapses,
//!   and its copies go while the pin stays.
//!
//! Share of the normal run: about 60 s (two clusters).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::zones::{client_of, metrics_text, served_since, served_to};
use support::{data, TestCluster};
use weft_gateway::admin_warm::{WarmList, WarmStatus};

const MIB: usize = 1 << 20;
/// One full 4+2 stripe of 1 MiB units: shard files of 1 MiB.
const OBJECT: usize = 4 * MIB;
/// How long any wait here may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(90);

async fn start(budget: u64, data_nodes: usize) -> TestCluster {
    TestCluster::start_with(|c| {
        c.datad_count = data_nodes;
        c.gateway_per_zone = true;
        c.gateway.netmap_period_ms = 300;
        c.datad.repair_poll_ms = 300;
        c.metad.cache_budget_bytes = budget;
        c.wan = weft_client::wan::WanSettings {
            latency_ms: 20,
            bandwidth_bytes_per_s: 0,
        };
    })
    .await
}

fn status_path(bucket: &str, prefix: &str, zone: &str) -> String {
    format!("/v1/warm?bucket={bucket}&prefix={prefix}&zone={zone}")
}

async fn status(tc: &TestCluster, bucket: &str, prefix: &str, zone: &str) -> WarmStatus {
    tc.c()
        .admin_client()
        .call(
            reqwest::Method::GET,
            &status_path(bucket, prefix, zone),
            None,
        )
        .await
        .expect("warm status")
}

async fn list(tc: &TestCluster) -> WarmList {
    tc.c()
        .admin_client()
        .call(reqwest::Method::GET, "/v1/warms", None)
        .await
        .expect("list warms")
}

/// `data/key`'s current version, with placement and cache copies.
async fn current_version_of(tc: &TestCluster, key: &str) -> weft_common::manifest::ObjectVersion {
    support::current_version(tc, "data", key).await
}

/// Polls `cond` every 200 ms until it holds; fails the test at
/// [`DEADLINE`] with `what`.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < until,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warmed_zone_reads_its_dataset_without_crossing_and_overwrites_read_new_bytes() {
    let mut tc = start(0, 6).await;
    tc.c()
        .wait_nodes_up(6, Duration::from_secs(30))
        .await
        .unwrap();
    let a = client_of(&tc, 0);
    assert_eq!(tc.c().gateway_zone(0).as_deref(), Some("zone-a"));
    assert_eq!(a.mb("data").await.status, 200);
    let mut bodies = BTreeMap::new();
    for i in 0..3u64 {
        let body = data(i, OBJECT);
        a.must_put("data", &format!("ds/{i}"), body.clone()).await;
        bodies.insert(format!("ds/{i}"), body);
    }
    // A small object (replicated, one copy per zone at most) and one
    // outside the prefix.
    let small = data(9, 10 << 10);
    a.must_put("data", "ds/small", small.clone()).await;
    bodies.insert("ds/small".to_string(), small);
    a.must_put("data", "other/x", data(10, OBJECT)).await;

    // Cold: zone-a holds 2 of 4 needed shards of each stripe.
    let before = served_to(&tc, "zone-a").await;
    for (k, b) in &bodies {
        a.must_get_equal("data", k, b).await;
    }
    let (_, cross) = served_since(&tc, "zone-a", &before).await;
    assert!(
        cross >= 3 * (OBJECT as u64) / 2,
        "a cold read crosses for half of each stripe: {cross}"
    );
    let cold = status(&tc, "data", "ds/", "zone-a").await;
    assert!(cold.warm.is_none() && !cold.ready);
    assert_eq!(cold.objects, 4);

    // Warm, through the CLI, which waits until zone-a holds it all.
    let (ok, out, err) = support::weft_cli(
        tc.c(),
        &[
            "warm",
            "s3://data/ds/",
            "--zone",
            "zone-a",
            "--wait-max",
            "90s",
        ],
    )
    .await;
    assert!(ok, "weft warm failed: {err}");
    assert!(out.contains("is warm in zone zone-a"), "{out}");
    let warm = status(&tc, "data", "ds/", "zone-a").await;
    assert!(warm.ready, "{warm:?}");
    assert_eq!(warm.held_bytes, warm.needed_bytes);
    assert!(warm.warm.is_some());

    // Every shard a read from zone-a needs is now in zone-a.
    let before = served_to(&tc, "zone-a").await;
    let gw_cross = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("weft_gateway_cross_zone_read_bytes_total "))
            .map_or(0u64, |v| v.trim().parse().expect("metric"))
    };
    let url = format!(
        "{}/metrics",
        tc.c().admin_endpoint_of(0).expect("gateway 0")
    );
    let gw_before = gw_cross(metrics_text(&tc, url.clone()).await);
    for (k, b) in &bodies {
        a.must_get_equal("data", k, b).await;
    }
    let (local, cross) = served_since(&tc, "zone-a", &before).await;
    assert_eq!(cross, 0, "a warmed read crosses no zone");
    assert!(
        local >= 3 * OBJECT as u64,
        "the bytes came from zone-a: {local}"
    );
    let text = metrics_text(&tc, url).await;
    assert_eq!(gw_cross(text.clone()), gw_before);
    let copies = text
        .lines()
        .find_map(|l| l.strip_prefix("weft_gateway_warm_copy_reads_total "))
        .map_or(0u64, |v| v.trim().parse().expect("metric"));
    assert!(copies > 0, "the gateway counts the warm copies it read");
    // Outside the prefix nothing was warmed.
    let other = status(&tc, "data", "other/", "zone-a").await;
    assert!(!other.ready);

    // locate agrees: reading the set from zone-a crosses nothing.
    let (ok, out, err) = support::weft_cli(
        tc.c(),
        &["locate", "s3://data/ds/", "--zone", "zone-a", "--json"],
    )
    .await;
    assert!(ok, "{err}");
    let l: weft_gateway::admin_locate::Located = serde_json::from_str(&out).unwrap();
    assert_eq!(l.reads[0].zone, "zone-a");
    assert_eq!(l.reads[0].cross_zone_bytes, 0, "{out}");

    // An overwrite reads back its own bytes at once (its segments are new,
    // and no cache copy names them), and the warm then covers it too.
    let new = data(99, OBJECT + MIB);
    a.must_put("data", "ds/1", new.clone()).await;
    a.must_get_equal("data", "ds/1", &new).await;
    for g in 1..3 {
        client_of(&tc, g).must_get_equal("data", "ds/1", &new).await;
    }
    eventually("the warm takes in the overwritten object", || async {
        status(&tc, "data", "ds/", "zone-a").await.ready
    })
    .await;
    bodies.insert("ds/1".to_string(), new);
    let before = served_to(&tc, "zone-a").await;
    for (k, b) in &bodies {
        a.must_get_equal("data", k, b).await;
    }
    let (_, cross) = served_since(&tc, "zone-a", &before).await;
    assert_eq!(cross, 0, "the overwritten object is warm too");

    // A zone-a node holding copies and placed shards stops: reads from
    // zone-a still return the right bytes (a copy that fails falls back to
    // its placed holder; the rest come from other shards).
    let holds_copies = current_version_of(&tc, "ds/0")
        .await
        .segments
        .iter()
        .flat_map(|s| s.cache.iter().map(|c| c.node.0))
        .next()
        .expect("ds/0 has copies in zone-a");
    tc.c_mut()
        .stop_datad(holds_copies as usize - 1)
        .await
        .expect("stop a node holding copies");
    for (k, b) in &bodies {
        a.must_get_equal("data", k, b).await;
    }

    // `weft warm drop` ends it, and the copies go: none is counted in
    // zone-a any more, and every object still reads back.
    let (ok, _, err) = support::weft_cli(
        tc.c(),
        &["warm", "drop", "s3://data/ds/", "--zone", "zone-a"],
    )
    .await;
    assert!(ok, "{err}");
    eventually("a dropped warm's copies are forgotten", || async {
        let s = status(&tc, "data", "ds/", "zone-a").await;
        let z = zone_cache(&tc, "zone-a").await;
        s.warm.is_none() && !s.ready && z.used_bytes == 0
    })
    .await;
    for (k, b) in &bodies {
        a.must_get_equal("data", k, b).await;
    }
    let (ok, _, err) = support::weft_cli(
        tc.c(),
        &["warm", "drop", "s3://data/ds/", "--zone", "zone-a"],
    )
    .await;
    assert!(!ok && err.contains("no warm"), "dropping it again: {err}");
    tc.shutdown().await;
}

/// The zone cache of `zone` as the leader last counted it.
async fn zone_cache(tc: &TestCluster, zone: &str) -> weft_common::warm::ZoneCache {
    list(tc)
        .await
        .zones
        .into_iter()
        .find(|z| z.zone == zone)
        .unwrap_or_default()
}

/// When the warm of `prefix` in zone-a was last used, by the leader.
async fn last_used(tc: &TestCluster, prefix: &str) -> Option<u64> {
    let l = list(tc).await;
    l.warms
        .iter()
        .position(|w| w.prefix == prefix && w.zone == "zone-a")
        .map(|i| l.last_used_ms[i])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warms_keep_to_residency_and_budget_evicting_the_least_recently_used() {
    // Each 4 MiB object lacks 2 MiB in zone-a; each dataset of 2, 4 MiB.
    const LACKS: u64 = 2 * 2 * MIB as u64;
    // Three data nodes a zone, so a residency of two zones can still
    // place 4+2; room for two and a half datasets' copies a zone.
    let tc = start(2 * LACKS + LACKS / 2, 9).await;
    tc.c()
        .wait_nodes_up(9, Duration::from_secs(30))
        .await
        .unwrap();
    let a = client_of(&tc, 0);
    assert_eq!(a.mb("data").await.status, 200);
    let mut bodies = BTreeMap::new();
    for (set, n) in [("a", 2), ("b", 2), ("c", 2), ("e", 1), ("big", 4)] {
        for i in 0..n {
            let key = format!("{set}/{i}");
            let body = data(i + 100 * set.len() as u64, OBJECT);
            a.must_put("data", &key, body.clone()).await;
            bodies.insert(key, body);
        }
    }
    let root = tc.c().admin_client();
    let put_in = |bucket: &'static str,
                  prefix: &'static str,
                  zone: &'static str,
                  pinned: bool,
                  ttl: Option<u64>| {
        let root = root.clone();
        async move {
            root.call::<WarmStatus>(
                reqwest::Method::PUT,
                "/v1/warm",
                Some(serde_json::json!({
                    "bucket": bucket, "prefix": prefix, "zone": zone,
                    "pinned": pinned, "ttl_secs": ttl,
                })),
            )
            .await
        }
    };
    let ready = |prefix: &'static str| {
        let tc = &tc;
        async move { status(tc, "data", prefix, "zone-a").await.ready }
    };

    // Residency: a warm into zone-c, then a residency of zones a and b:
    // the warm ends and its copies go; a new warm into c is refused.
    assert_eq!(a.mb("resident").await.status, 200);
    a.must_put("resident", "x", data(5, OBJECT)).await;
    put_in("resident", "", "zone-c", false, None)
        .await
        .expect("warm into c before the residency");
    eventually("resident is warm in zone-c", || async {
        status(&tc, "resident", "", "zone-c").await.ready
    })
    .await;
    eventually("zone-c counts the copies", || async {
        zone_cache(&tc, "zone-c").await.used_bytes > 0
    })
    .await;
    let (ok, _, err) = support::weft_cli(
        tc.c(),
        &[
            "bucket",
            "placement",
            "set",
            "resident",
            "--zones",
            "zone-a,zone-b",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        !list(&tc).await.warms.iter().any(|w| w.bucket == "resident"),
        "the residency change ended the warm into zone-c"
    );
    eventually("the copies in zone-c are dropped", || async {
        zone_cache(&tc, "zone-c").await.used_bytes == 0
    })
    .await;
    let (ok, _, err) = support::weft_cli(
        tc.c(),
        &["warm", "s3://resident/", "--zone", "zone-c", "--no-wait"],
    )
    .await;
    assert!(!ok, "a warm outside the residency is refused");
    assert!(err.contains("residency") && err.contains("zone-c"), "{err}");
    let refused = put_in("data", "", "mars", false, None)
        .await
        .expect_err("an unknown zone is refused");
    assert!(refused.to_string().contains("no zone"), "{refused}");

    // a and b fit together; a is then read (from zone-a's gateway, which
    // reports reads of copies), so b is the least recently used.
    put_in("data", "a/", "zone-a", false, None)
        .await
        .expect("warm a");
    eventually("a is warm", || ready("a/")).await;
    put_in("data", "b/", "zone-a", false, None)
        .await
        .expect("warm b");
    eventually("b is warm", || ready("b/")).await;
    for i in 0..2 {
        let key = format!("a/{i}");
        a.must_get_equal("data", &key, &bodies[&key]).await;
    }
    eventually("the read of a is reported", || async {
        last_used(&tc, "a/").await > last_used(&tc, "b/").await
    })
    .await;

    // A pin that needs room evicts b, not a (made earlier, read later).
    put_in("data", "c/", "zone-a", true, None)
        .await
        .expect("pin c");
    eventually("c is warm", || ready("c/")).await;
    let l = list(&tc).await;
    let prefixes: Vec<&str> = l.warms.iter().map(|w| w.prefix.as_str()).collect();
    assert!(
        prefixes.contains(&"a/") && !prefixes.contains(&"b/"),
        "{prefixes:?}"
    );
    eventually(
        "b's copies are dropped and c's counted as pinned",
        || async {
            let z = zone_cache(&tc, "zone-a").await;
            z.used_bytes == 2 * LACKS && z.pinned_bytes == LACKS && z.evictions >= 1
        },
    )
    .await;
    assert!(!ready("b/").await);
    assert!(ready("a/").await);

    // A pin that would not fit beside c's is refused, with the reason.
    let (ok, _, err) = support::weft_cli(
        tc.c(),
        &[
            "warm",
            "s3://data/big/",
            "--zone",
            "zone-a",
            "--pin",
            "--no-wait",
        ],
    )
    .await;
    assert!(!ok, "a pin past the budget is refused");
    assert!(err.contains("budget"), "{err}");

    // The pin grows (two more objects) while a is read again, so a is
    // used more recently than the pin was asked for: the pin still gets
    // its room, by evicting a.
    for i in 0..2 {
        let key = format!("a/{i}");
        a.must_get_equal("data", &key, &bodies[&key]).await;
    }
    eventually("the new read of a is reported", || async {
        last_used(&tc, "a/").await > last_used(&tc, "c/").await
    })
    .await;
    for i in 2..4u64 {
        a.must_put("data", &format!("c/{i}"), data(i + 300, OBJECT))
            .await;
    }
    eventually(
        "the grown pin is warm, and a was evicted for it",
        || async { ready("c/").await && !list(&tc).await.warms.iter().any(|w| w.prefix == "a/") },
    )
    .await;

    eventually("the leader counts the grown pin's copies", || async {
        let z = zone_cache(&tc, "zone-a").await;
        z.pinned_bytes == 2 * LACKS && z.pinned_pending_bytes == 0
    })
    .await;

    // A warm with a TTL, fitting beside the pin, is made, then lapses and
    // its copies go; the pin outlives it.
    put_in("data", "e/", "zone-a", false, Some(15))
        .await
        .expect("warm e for 15 s");
    eventually("e is warm before it lapses", || ready("e/")).await;
    eventually("e lapses and only c's copies stay", || async {
        let gone = !list(&tc).await.warms.iter().any(|w| w.prefix == "e/");
        let z = zone_cache(&tc, "zone-a").await;
        gone && z.used_bytes == 2 * LACKS && z.pinned_bytes == 2 * LACKS
    })
    .await;
    assert!(!ready("e/").await);
    assert!(ready("c/").await);
    tc.shutdown().await;
}
