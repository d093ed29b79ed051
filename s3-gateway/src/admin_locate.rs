//! `GET /v1/locate`: where a dataset's bytes are, and what reading it from
//! each zone would cost — what a scheduler asks before placing a job
//! (`weft locate`, docs/locality.md) — and `GET /v1/cluster/netmap`, the
//! measured network costs those estimates use.
//!
//! The answer is computed from the manifests metad holds, not from a
//! cache: bytes per zone are shard bytes on that zone's nodes, and a
//! zone's read cost is what the read path would pull from other zones for
//! each stripe (k units, as many from the zone as it holds distinct shards
//! of). Authorised like ListObjects: a root key, an admin certificate, or
//! the bucket owner's key, so a scheduler needs no admin rights.

use std::collections::BTreeMap;

use axum::extract::{Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use weft_common::rpc::{Query, QueryResult};
use weft_common::topology::NodeView;
use weft_common::NodeId;

use crate::admin::{check_for, AdminError, AdminState};
use crate::admin_cert::AdminRequest;

/// Most objects one answer covers; a larger prefix is answered for its
/// first this many keys and marked truncated.
pub const LOCATE_OBJECTS_MAX: usize = 100_000;
/// Objects asked of metad per page.
const PAGE: u32 = 5_000;
/// The node label naming the Kubernetes zone (`topology.kubernetes.io/zone`)
/// a Weft zone corresponds to; without it the Weft zone's name is used.
pub const K8S_ZONE_LABEL: &str = "k8s-zone";

/// Query of `GET /v1/locate`.
#[derive(Deserialize, Serialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct LocateQuery {
    /// Bucket.
    pub bucket: String,
    /// Key prefix (empty: the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// Only this zone's read cost (default: every zone's).
    #[serde(default)]
    pub zone: Option<String>,
}

/// One object's placement.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ObjectPlacement {
    /// Key.
    pub key: String,
    /// Object bytes.
    pub size: u64,
    /// Shard bytes per zone.
    pub zone_bytes: BTreeMap<String, u64>,
    /// Shards per node (`n3`).
    pub node_shards: BTreeMap<String, u64>,
}

/// What reading the whole set from one zone costs.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct ZoneRead {
    /// The zone a job would run in.
    pub zone: String,
    /// The Kubernetes zone it corresponds to.
    pub k8s_zone: String,
    /// Bytes the read takes from the zone's own nodes.
    pub local_bytes: u64,
    /// Bytes the read pulls from other zones.
    pub cross_zone_bytes: u64,
    /// Seconds the cross-zone part would take by the measured network
    /// map (sources read in parallel; the slowest decides); `None` while a
    /// path it needs has no measured throughput.
    #[serde(default)]
    pub estimated_secs: Option<f64>,
}

/// Answer of `GET /v1/locate`.
#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct Located {
    /// Bucket.
    pub bucket: String,
    /// Prefix.
    pub prefix: String,
    /// Objects covered (current versions; delete markers skipped).
    pub objects: Vec<ObjectPlacement>,
    /// More objects match than [`LOCATE_OBJECTS_MAX`].
    pub truncated: bool,
    /// Object bytes in all.
    pub total_bytes: u64,
    /// Shard bytes per zone in all.
    pub zone_bytes: BTreeMap<String, u64>,
    /// Shards per node in all.
    pub node_shards: BTreeMap<String, u64>,
    /// Read cost per zone, cheapest first.
    pub reads: Vec<ZoneRead>,
    /// The zone that reads the set with the fewest cross-zone bytes.
    pub best_zone: Option<String>,
}

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/locate", get(locate))
        .route("/v1/cluster/netmap", get(netmap))
}

/// `GET /v1/cluster/netmap` (`weft cluster netmap`): the zone × zone
/// matrix the metad leader folded from reporters' measurements.
async fn netmap(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<weft_common::netmap::NetMap>, AdminError> {
    crate::admin::check(&s, &req, b"").await?;
    match s.metad.query(&Query::Nodes).await? {
        QueryResult::Nodes { netmap, .. } => Ok(Json(netmap)),
        other => Err(AdminError::unexpected(other)),
    }
}

fn bad(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, msg.into())
}

async fn locate(
    State(s): State<AdminState>,
    req: AdminRequest,
    UrlQuery(q): UrlQuery<LocateQuery>,
) -> Result<Json<Located>, AdminError> {
    let bucket = match s
        .metad
        .query(&Query::Bucket {
            name: q.bucket.clone(),
        })
        .await?
    {
        QueryResult::Bucket { bucket } => bucket,
        other => return Err(AdminError::unexpected(other)),
    };
    // Authenticate before saying whether the bucket exists: a missing
    // bucket has an owner no key matches, so a non-root key gets the same
    // refusal for "missing" as for "not yours".
    let owner = bucket.as_ref().map_or(String::new(), |b| b.owner.clone());
    check_for(&s, &req, b"", Some(&owner)).await?;
    if bucket.is_none() {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no bucket {:?}", q.bucket),
        ));
    }
    let (nodes, netmap) = match s.metad.query(&Query::Nodes).await? {
        QueryResult::Nodes { nodes, netmap, .. } => (nodes, netmap),
        other => return Err(AdminError::unexpected(other)),
    };
    let zones = zones(&nodes);
    if let Some(z) = &q.zone {
        if !zones.contains_key(z) {
            return Err(bad(format!(
                "no zone {z:?}: the cluster's zones are {}",
                zones.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let zone_of: BTreeMap<NodeId, String> = nodes
        .iter()
        .map(|n| (n.info.id, n.info.zone.clone()))
        .collect();
    let mut out = Located {
        bucket: q.bucket.clone(),
        prefix: q.prefix.clone(),
        objects: Vec::new(),
        truncated: false,
        total_bytes: 0,
        zone_bytes: BTreeMap::new(),
        node_shards: BTreeMap::new(),
        reads: Vec::new(),
        best_zone: None,
    };
    let wanted: Vec<&String> = match &q.zone {
        Some(z) => vec![z],
        None => zones.keys().collect(),
    };
    let mut reads: BTreeMap<&String, (u64, u64)> = wanted.iter().map(|z| (*z, (0, 0))).collect();
    // Bytes each reading zone would pull from each other zone, and the
    // other zones in the order a reader there ranks them (measured round
    // trip, then name).
    let mut sources: BTreeMap<&String, BTreeMap<String, u64>> = BTreeMap::new();
    let zone_order: BTreeMap<&String, Vec<String>> = wanted
        .iter()
        .map(|z| {
            let mut others: Vec<String> = zones.keys().filter(|o| o != z).cloned().collect();
            others.sort_by_key(|o| (netmap.path(z, o).map_or(u64::MAX, |p| p.rtt_us), o.clone()));
            (*z, others)
        })
        .collect();
    let mut objects = Vec::new();
    out.truncated = for_each_current(&s, &q.bucket, &q.prefix, |key, size, segments| {
        objects.push((key, size, segments));
    })
    .await?;
    for (key, size, segments) in objects {
        let mut o = ObjectPlacement {
            key,
            size,
            zone_bytes: BTreeMap::new(),
            node_shards: BTreeMap::new(),
        };
        for seg in &segments {
            for node in seg.shards.iter().flatten() {
                let zone = zone_of
                    .get(node)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into());
                *o.zone_bytes.entry(zone).or_default() += seg.shard_len;
                *o.node_shards.entry(node.to_string()).or_default() += 1;
            }
            for (zone, acc) in reads.iter_mut() {
                let (local, cross) = weft_common::locality::read_cost(
                    seg,
                    |n| zone_of.get(&n).map(String::as_str),
                    zone,
                );
                acc.0 += local;
                acc.1 += cross;
                let from = weft_common::locality::read_sources(
                    seg,
                    |n| zone_of.get(&n).map(String::as_str),
                    zone,
                    &zone_order[zone],
                );
                let into = sources.entry(zone).or_default();
                for (z, b) in from.into_iter().filter(|(z, _)| z != *zone) {
                    *into.entry(z).or_default() += b;
                }
            }
        }
        out.total_bytes += o.size;
        for (z, b) in &o.zone_bytes {
            *out.zone_bytes.entry(z.clone()).or_default() += b;
        }
        for (n, c) in &o.node_shards {
            *out.node_shards.entry(n.clone()).or_default() += c;
        }
        out.objects.push(o);
    }
    out.reads = reads
        .into_iter()
        .map(|(zone, (local, cross))| {
            let from = sources.remove(zone).unwrap_or_default();
            let estimated_secs = from
                .iter()
                .map(|(src, bytes)| netmap.transfer_secs(src, zone, *bytes))
                .try_fold(0.0f64, |worst, t| t.map(|t| worst.max(t)));
            ZoneRead {
                zone: zone.clone(),
                k8s_zone: zones.get(zone).cloned().unwrap_or_else(|| zone.clone()),
                local_bytes: local,
                cross_zone_bytes: cross,
                estimated_secs,
            }
        })
        .collect();
    // Fewest bytes across zones, then most from the zone, then by name.
    out.reads.sort_by(|a, b| {
        (
            a.cross_zone_bytes,
            std::cmp::Reverse(a.local_bytes),
            &a.zone,
        )
            .cmp(&(
                b.cross_zone_bytes,
                std::cmp::Reverse(b.local_bytes),
                &b.zone,
            ))
    });
    out.best_zone = out.reads.first().map(|r| r.zone.clone());
    Ok(Json(out))
}

/// Calls `f` with each current object under `bucket/prefix` (key, size,
/// segments with current placement and cache copies), in key order, at
/// most [`LOCATE_OBJECTS_MAX`] of them; returns whether more matched.
pub(crate) async fn for_each_current(
    s: &AdminState,
    bucket: &str,
    prefix: &str,
    mut f: impl FnMut(String, u64, Vec<weft_common::manifest::Segment>),
) -> Result<bool, AdminError> {
    let mut after: Option<String> = None;
    let mut objects = 0usize;
    loop {
        let page = s
            .metad
            .query(&Query::Placements {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                after: after.clone(),
                max: PAGE,
            })
            .await?;
        let QueryResult::Placements {
            objects: found,
            next,
        } = page
        else {
            return Err(AdminError::unexpected(page));
        };
        for o in found {
            if objects == LOCATE_OBJECTS_MAX {
                return Ok(true);
            }
            objects += 1;
            f(o.key, o.size, o.segments);
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok(false),
        }
    }
}

/// Every zone with a node not removed, and the Kubernetes zone it
/// corresponds to (its nodes' [`K8S_ZONE_LABEL`], else its own name).
pub(crate) fn zones(nodes: &[NodeView]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in nodes
        .iter()
        .filter(|n| n.admin != weft_common::topology::NodeAdmin::Removed)
    {
        let k8s = n
            .info
            .labels
            .get(K8S_ZONE_LABEL)
            .cloned()
            .unwrap_or_else(|| n.info.zone.clone());
        out.entry(n.info.zone.clone()).or_insert(k8s);
    }
    out
}

/// A Kubernetes `affinity` stanza preferring the zones that read the set
/// with the fewest cross-zone bytes: weight 100 for the best, and for each
/// other zone in proportion to the share of the set it reads locally
/// (zones that read nothing locally are left out).
pub fn k8s_affinity(located: &Located) -> String {
    let mut out = String::from(
        "affinity:\n  nodeAffinity:\n    preferredDuringSchedulingIgnoredDuringExecution:\n",
    );
    for (i, r) in located.reads.iter().enumerate() {
        let total = r.local_bytes + r.cross_zone_bytes;
        let weight = if i == 0 {
            100
        } else if total == 0 || r.local_bytes == 0 {
            continue;
        } else {
            ((r.local_bytes * 99) / total).max(1)
        };
        out.push_str(&format!(
            "    - weight: {weight}\n      preference:\n        matchExpressions:\n        - key: topology.kubernetes.io/zone\n          operator: In\n          values:\n          - {}\n",
            // A JSON string is a YAML string, escapes and all.
            serde_json::to_string(&r.k8s_zone).expect("a string serializes")
        ));
    }
    out
}
