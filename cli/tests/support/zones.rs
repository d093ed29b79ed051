//! The dev cluster's zones as the locality tests read them: which zone a
//! data node is in, a client of each zone's gateway, and the shard bytes
//! data nodes served to each zone's readers (counted where they are
//! served, never inferred from the gateway's own view).

use super::{S3Client, TestCluster};
use std::collections::BTreeMap;

/// The dev cluster's zones, in the order data nodes are dealt to them.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// The zone of data node `n` (1-based), as the dev cluster deals them.
pub fn zone_of(n: u64) -> &'static str {
    ZONES[(n as usize - 1) % ZONES.len()]
}

/// A root client of gateway `gateway` (one per zone with
/// `gateway_per_zone`).
pub fn client_of(tc: &TestCluster, gateway: usize) -> S3Client {
    let c = tc.c();
    S3Client::new(
        &c.s3_endpoint_of(gateway).expect("gateway running"),
        &c.credentials().access_key,
        &c.credentials().secret_key,
        c.region(),
    )
}

/// The text of a `/metrics` page.
pub async fn metrics_text(tc: &TestCluster, url: String) -> String {
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
pub async fn served_to(tc: &TestCluster, zone: &str) -> BTreeMap<u64, u64> {
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

/// Bytes served to `zone` since `before`: (from nodes in it, from others).
pub async fn served_since(tc: &TestCluster, zone: &str, before: &BTreeMap<u64, u64>) -> (u64, u64) {
    let mut local = 0;
    let mut cross = 0;
    for (n, v) in served_to(tc, zone).await {
        let d = v - before.get(&n).copied().unwrap_or(0);
        if zone_of(n) == zone {
            local += d;
        } else {
            cross += d;
        }
    }
    (local, cross)
}
