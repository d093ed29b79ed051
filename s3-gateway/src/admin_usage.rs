//! `GET /v1/cluster/usage`: bytes per storage class and zone, and, with
//! `zone_prices` in the gateway's config, what they cost a month and what
//! the classes saved against keeping every byte as `STANDARD`.
//!
//! Shard bytes per class and zone come from metad's durability survey (the
//! nodes metad places shards on); object bytes per class from its class
//! usage. The saving compares the cost with the cost of the same object
//! bytes at STANDARD's overhead (shard bytes per object byte) and the
//! average price of the zones STANDARD's bytes sit in.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_common::rpc::{Query, QueryResult};
use weft_common::storage_class::DEFAULT_CLASS;

use crate::admin::{check, AdminError, AdminState};
use crate::admin_cert::AdminRequest;

const GIB: f64 = (1u64 << 30) as f64;

/// One class in one zone.
#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct ZoneUsage {
    /// Storage class.
    pub class: String,
    /// Zone.
    pub zone: String,
    /// Shard bytes stored.
    pub stored_bytes: u64,
    /// Their cost a month, if the zone has a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cost: Option<f64>,
}

/// One class in all.
#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct ClassTotal {
    /// Storage class.
    pub class: String,
    /// Object bytes.
    pub bytes: u64,
    /// Shard bytes (data and parity or copies).
    pub stored_bytes: u64,
}

/// Answer of `GET /v1/cluster/usage`.
#[derive(Deserialize, Serialize, Debug)]
pub struct Usage {
    /// Shard bytes by class and zone.
    pub zones: Vec<ZoneUsage>,
    /// Object and shard bytes by class.
    pub classes: Vec<ClassTotal>,
    /// Prices per GiB-month by zone, as configured.
    pub prices: BTreeMap<String, f64>,
    /// Cost a month of every priced byte (None without prices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cost: Option<f64>,
    /// The same object bytes kept as STANDARD, minus `monthly_cost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_saving: Option<f64>,
    /// Zones holding bytes that have no price (their bytes are not in the cost).
    pub unpriced_zones: Vec<String>,
}

/// Builds the usage view from the survey's per-class zone bytes and the
/// class usage, at `prices`.
pub fn usage_view(
    zone_bytes: &[(String, String, u64)],
    classes: &[(String, u64, u64)],
    prices: &BTreeMap<String, f64>,
) -> Usage {
    let zones: Vec<ZoneUsage> = zone_bytes
        .iter()
        .map(|(class, zone, b)| ZoneUsage {
            class: class.clone(),
            zone: zone.clone(),
            stored_bytes: *b,
            monthly_cost: prices.get(zone).map(|p| *b as f64 / GIB * p),
        })
        .collect();
    let mut unpriced: Vec<String> = zones
        .iter()
        .filter(|z| z.monthly_cost.is_none() && z.stored_bytes > 0)
        .map(|z| z.zone.clone())
        .collect();
    unpriced.sort();
    unpriced.dedup();
    let (monthly_cost, monthly_saving) = if prices.is_empty() {
        (None, None)
    } else {
        let cost: f64 = zones.iter().filter_map(|z| z.monthly_cost).sum();
        // STANDARD's shard bytes per object byte and average price.
        let std_total = classes.iter().find(|c| c.0 == DEFAULT_CLASS);
        let overhead = std_total
            .filter(|c| c.1 > 0)
            .map(|c| c.2 as f64 / c.1 as f64)
            .unwrap_or(1.5);
        let std_zones: Vec<&ZoneUsage> = zones
            .iter()
            .filter(|z| z.class == DEFAULT_CLASS && z.monthly_cost.is_some())
            .collect();
        let std_stored: u64 = std_zones.iter().map(|z| z.stored_bytes).sum();
        let std_price = if std_stored > 0 {
            std_zones.iter().filter_map(|z| z.monthly_cost).sum::<f64>() / (std_stored as f64 / GIB)
        } else {
            prices.values().cloned().fold(0.0, f64::max)
        };
        let data: u64 = classes.iter().map(|c| c.1).sum();
        let baseline = data as f64 * overhead / GIB * std_price;
        (Some(cost), Some(baseline - cost))
    };
    Usage {
        zones,
        classes: classes
            .iter()
            .map(|(class, bytes, stored)| ClassTotal {
                class: class.clone(),
                bytes: *bytes,
                stored_bytes: *stored,
            })
            .collect(),
        prices: prices.clone(),
        monthly_cost,
        monthly_saving,
        unpriced_zones: unpriced,
    }
}

pub(crate) async fn usage(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<Usage>, AdminError> {
    check(&s, &req, b"").await?;
    let status = match s.metad.query(&Query::Durability).await? {
        QueryResult::Durability { status } => status,
        other => return Err(AdminError::unexpected(other)),
    };
    let class_usage = match s.metad.query(&Query::StorageClasses).await? {
        QueryResult::StorageClasses { usage, .. } => usage,
        other => return Err(AdminError::unexpected(other)),
    };
    let mut by_zone: BTreeMap<(String, String), u64> = BTreeMap::new();
    for c in &status.classes {
        for (zone, b) in &c.zone_bytes {
            *by_zone.entry((c.class.clone(), zone.clone())).or_default() += b;
        }
    }
    let mut by_class: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &class_usage {
        let e = by_class.entry(r.class.clone()).or_default();
        e.0 += r.usage.bytes;
        e.1 += r.usage.stored_bytes;
    }
    let zone_bytes: Vec<(String, String, u64)> =
        by_zone.into_iter().map(|((c, z), b)| (c, z, b)).collect();
    let classes: Vec<(String, u64, u64)> =
        by_class.into_iter().map(|(c, (b, s))| (c, b, s)).collect();
    Ok(Json(usage_view(&zone_bytes, &classes, &s.zone_prices)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_and_saving_follow_the_prices_of_the_zones_bytes_sit_in() {
        let g = 1u64 << 30;
        // 4 GiB of STANDARD objects as 6 GiB of shards in hot zone a; 4 GiB
        // of GLACIER_IR objects as 6 GiB of shards in cold zone west.
        let zones = vec![
            ("STANDARD".to_string(), "a".to_string(), 6 * g),
            ("GLACIER_IR".to_string(), "west".to_string(), 6 * g),
        ];
        let classes = vec![
            ("GLACIER_IR".to_string(), 4 * g, 6 * g),
            ("STANDARD".to_string(), 4 * g, 6 * g),
        ];
        let prices: BTreeMap<String, f64> =
            [("a".to_string(), 0.02), ("west".to_string(), 0.005)].into();
        let u = usage_view(&zones, &classes, &prices);
        let cost = u.monthly_cost.unwrap();
        assert!((cost - (6.0 * 0.02 + 6.0 * 0.005)).abs() < 1e-9, "{cost}");
        // As STANDARD: 8 GiB of objects at 1.5x in zone a = 12 GiB x 0.02.
        let saving = u.monthly_saving.unwrap();
        assert!((saving - (12.0 * 0.02 - cost)).abs() < 1e-9, "{saving}");
        assert!(u.unpriced_zones.is_empty());
        // Without a price for west, its bytes are named, not costed.
        let only_a: BTreeMap<String, f64> = [("a".to_string(), 0.02)].into();
        let u = usage_view(&zones, &classes, &only_a);
        assert_eq!(u.unpriced_zones, ["west"]);
        assert!((u.monthly_cost.unwrap() - 0.12).abs() < 1e-9);
        // Without prices: bytes only.
        let u = usage_view(&zones, &classes, &BTreeMap::new());
        assert!(u.monthly_cost.is_none() && u.monthly_saving.is_none());
    }
}
