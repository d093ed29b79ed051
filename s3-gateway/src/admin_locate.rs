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

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use weft_common::placement_table::{Placement, PlacementTable, TabledSegment};
use weft_common::rpc::{Query, QueryResult};
use weft_common::topology::NodeView;
use weft_common::NodeId;

use crate::admin::{check_for, AdminError, AdminState};
use crate::admin_cert::AdminRequest;

/// Most objects one answer covers; a larger prefix is answered for its
/// first this many keys and marked truncated.
pub const LOCATE_OBJECTS_MAX: usize = 100_000;
/// Objects asked of metad per page (metad's most for a placement table).
const PAGE: u32 = 10_000;
/// The node label naming the Kubernetes zone (`topology.kubernetes.io/zone`)
/// a Weft zone corresponds to; without it the Weft zone's name is used.
pub const K8S_ZONE_LABEL: &str = "k8s-zone";

/// Query of `GET /v1/locate`.
#[derive(Deserialize, Serialize, Debug)]
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
    /// Each object's placement in the answer (default); `false` answers
    /// the totals and read costs only, which is what a scheduler needs
    /// and is cheaper to make, send and parse.
    #[serde(default = "yes")]
    pub objects: bool,
}

fn yes() -> bool {
    true
}

impl Default for LocateQuery {
    fn default() -> Self {
        LocateQuery {
            bucket: String::new(),
            prefix: String::new(),
            zone: None,
            objects: true,
        }
    }
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
    /// Objects covered (current versions; delete markers skipped); empty
    /// when the query asked `objects=false`.
    pub objects: Vec<ObjectPlacement>,
    /// How many objects the answer covers (with or without `objects`).
    #[serde(default)]
    pub object_count: u64,
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
    let zone_of: HashMap<NodeId, String> = nodes
        .iter()
        .map(|n| (n.info.id, n.info.zone.clone()))
        .collect();
    let wanted: Vec<String> = match &q.zone {
        Some(z) => vec![z.clone()],
        None => zones.keys().cloned().collect(),
    };
    // The other zones in the order a reader in each wanted zone ranks
    // them (measured round trip, then name).
    let zone_order: Vec<Vec<String>> = wanted
        .iter()
        .map(|z| {
            let mut others: Vec<String> = zones.keys().filter(|o| *o != z).cloned().collect();
            others.sort_by_key(|o| (netmap.path(z, o).map_or(u64::MAX, |p| p.rtt_us), o.clone()));
            others
        })
        .collect();
    let mut sum = Summer::new(&zone_of, &wanted, &zone_order, q.objects);
    let truncated = for_each_page(&s, &q.bucket, &q.prefix, |page| sum.page(page)).await?;
    let mut out = sum.finish(&q, &zones, &netmap);
    out.truncated = truncated;
    Ok(Json(out))
}

/// One placement's share of the answer, in units of its segments' shard
/// length (stored bytes) or read unit (shard length, or the whole segment
/// when replicated): costed once per page, multiplied per segment.
struct PlacementCost {
    /// Shards per zone (index into [`Summer::zone_names`]).
    zone_shards: Vec<(usize, u64)>,
    /// Shards per node (index into [`Summer::node_names`]).
    node_shards: Vec<(usize, u64)>,
    /// Per wanted zone.
    reads: Vec<ReadUnits>,
    /// Whether a read unit is the whole segment.
    replicated: bool,
}

/// What a reader in one zone takes of one placement: units from the
/// zone, units across zones, and units per source zone (index into
/// [`Summer::zone_names`]).
type ReadUnits = (u64, u64, Vec<(usize, u64)>);

/// Sums a locate answer page by page.
struct Summer<'a> {
    zone_of: &'a HashMap<NodeId, String>,
    wanted: &'a [String],
    zone_order: &'a [Vec<String>],
    with_objects: bool,
    zone_names: Vec<String>,
    zone_index: HashMap<String, usize>,
    node_names: Vec<String>,
    node_index: HashMap<NodeId, usize>,
    objects: Vec<ObjectPlacement>,
    object_count: u64,
    total_bytes: u64,
    /// Stored bytes per zone; `None` until an object has a shard there.
    zone_bytes: Vec<Option<u64>>,
    node_shards: Vec<u64>,
    /// Per wanted zone: bytes local, bytes across, bytes per source zone.
    reads: Vec<(u64, u64, Vec<u64>)>,
}

impl<'a> Summer<'a> {
    fn new(
        zone_of: &'a HashMap<NodeId, String>,
        wanted: &'a [String],
        zone_order: &'a [Vec<String>],
        with_objects: bool,
    ) -> Self {
        Summer {
            zone_of,
            wanted,
            zone_order,
            with_objects,
            zone_names: vec![],
            zone_index: HashMap::new(),
            node_names: vec![],
            node_index: HashMap::new(),
            objects: vec![],
            object_count: 0,
            total_bytes: 0,
            zone_bytes: vec![],
            node_shards: vec![],
            reads: wanted.iter().map(|_| (0, 0, vec![])).collect(),
        }
    }

    fn zone(&mut self, name: &str) -> usize {
        if let Some(i) = self.zone_index.get(name) {
            return *i;
        }
        let i = self.zone_names.len();
        self.zone_names.push(name.to_string());
        self.zone_index.insert(name.to_string(), i);
        self.zone_bytes.push(None);
        i
    }

    fn node(&mut self, n: NodeId) -> usize {
        if let Some(i) = self.node_index.get(&n) {
            return *i;
        }
        let i = self.node_names.len();
        self.node_names.push(n.to_string());
        self.node_index.insert(n, i);
        self.node_shards.push(0);
        i
    }

    /// Costs one placement with the per-segment rules of
    /// [`weft_common::locality`], on a segment of unit lengths.
    fn cost(&mut self, p: &Placement) -> PlacementCost {
        let zone_of = self.zone_of;
        let unit = TabledSegment(0, 1, 1);
        let seg = PlacementTable {
            placements: vec![p.clone()],
            objects: vec![],
        }
        .segment(&unit)
        .expect("index 0 of a one-placement table");
        let mut zone_shards: Vec<(usize, u64)> = vec![];
        let mut node_shards: Vec<(usize, u64)> = vec![];
        for n in seg.shards.iter().flatten() {
            let z = self.zone(zone_of.get(n).map_or("unknown", String::as_str));
            match zone_shards.iter_mut().find(|(i, _)| *i == z) {
                Some((_, c)) => *c += 1,
                None => zone_shards.push((z, 1)),
            }
            let ni = self.node(*n);
            match node_shards.iter_mut().find(|(i, _)| *i == ni) {
                Some((_, c)) => *c += 1,
                None => node_shards.push((ni, 1)),
            }
        }
        let mut reads = vec![];
        for (w, zone) in self.wanted.iter().enumerate() {
            let (local, cross) = weft_common::locality::read_cost(
                &seg,
                |n| zone_of.get(&n).map(String::as_str),
                zone,
            );
            let from = weft_common::locality::read_sources(
                &seg,
                |n| zone_of.get(&n).map(String::as_str),
                zone,
                &self.zone_order[w],
            );
            let sources = from
                .into_iter()
                .filter(|(z, _)| z != zone)
                .map(|(z, units)| (self.zone(&z), units))
                .collect();
            reads.push((local, cross, sources));
        }
        PlacementCost {
            zone_shards,
            node_shards,
            reads,
            replicated: matches!(seg.layout, weft_common::profile::Layout::Replicated { .. }),
        }
    }

    fn page(&mut self, page: &PlacementTable) {
        let costs: Vec<PlacementCost> = page.placements.iter().map(|p| self.cost(p)).collect();
        for o in &page.objects {
            self.object_count += 1;
            self.total_bytes += o.size;
            let mut zone_bytes: BTreeMap<String, u64> = BTreeMap::new();
            let mut node_shards: BTreeMap<String, u64> = BTreeMap::new();
            for s in &o.segments {
                let c = &costs[s.placement()];
                for (z, n) in &c.zone_shards {
                    *self.zone_bytes[*z].get_or_insert(0) += n * s.shard_len();
                    if self.with_objects {
                        *zone_bytes.entry(self.zone_names[*z].clone()).or_default() +=
                            n * s.shard_len();
                    }
                }
                for (i, n) in &c.node_shards {
                    self.node_shards[*i] += n;
                    if self.with_objects {
                        *node_shards.entry(self.node_names[*i].clone()).or_default() += n;
                    }
                }
                let unit = if c.replicated { s.len() } else { s.shard_len() };
                for (acc, (local, cross, sources)) in self.reads.iter_mut().zip(&c.reads) {
                    acc.0 += local * unit;
                    acc.1 += cross * unit;
                    for (z, units) in sources {
                        if acc.2.len() <= *z {
                            acc.2.resize(*z + 1, 0);
                        }
                        acc.2[*z] += units * unit;
                    }
                }
            }
            if self.with_objects {
                self.objects.push(ObjectPlacement {
                    key: o.key.clone(),
                    size: o.size,
                    zone_bytes,
                    node_shards,
                });
            }
        }
    }

    fn finish(
        self,
        q: &LocateQuery,
        zones: &BTreeMap<String, String>,
        netmap: &weft_common::netmap::NetMap,
    ) -> Located {
        let zone_bytes = self
            .zone_names
            .iter()
            .zip(&self.zone_bytes)
            .filter_map(|(n, v)| v.map(|v| (n.clone(), v)))
            .collect();
        let node_shards = self
            .node_names
            .iter()
            .cloned()
            .zip(self.node_shards.iter().copied())
            // A node only a truncated page's dropped objects used.
            .filter(|(_, c)| *c > 0)
            .collect();
        let mut reads: Vec<ZoneRead> = self
            .wanted
            .iter()
            .zip(&self.reads)
            .map(|(zone, (local, cross, from))| {
                let estimated_secs = from
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b > 0)
                    .map(|(z, bytes)| netmap.transfer_secs(&self.zone_names[z], zone, *bytes))
                    .try_fold(0.0f64, |worst, t| t.map(|t| worst.max(t)));
                ZoneRead {
                    zone: zone.clone(),
                    k8s_zone: zones.get(zone).cloned().unwrap_or_else(|| zone.clone()),
                    local_bytes: *local,
                    cross_zone_bytes: *cross,
                    estimated_secs,
                }
            })
            .collect();
        // Fewest bytes across zones, then most from the zone, then by name.
        reads.sort_by(|a, b| {
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
        Located {
            bucket: q.bucket.clone(),
            prefix: q.prefix.clone(),
            objects: self.objects,
            object_count: self.object_count,
            truncated: false,
            total_bytes: self.total_bytes,
            zone_bytes,
            node_shards,
            best_zone: reads.first().map(|r| r.zone.clone()),
            reads,
        }
    }
}

/// Calls `f` with each page of the current objects under `bucket/prefix`
/// (key order; each page's segments index its own placement table), at
/// most [`LOCATE_OBJECTS_MAX`] objects in all; returns whether more
/// matched.
pub(crate) async fn for_each_page(
    s: &AdminState,
    bucket: &str,
    prefix: &str,
    mut f: impl FnMut(&PlacementTable),
) -> Result<bool, AdminError> {
    let mut after: Option<String> = None;
    let mut objects = 0usize;
    loop {
        let (mut table, next) = s
            .metad
            .placement_table(bucket, prefix, after.take(), PAGE)
            .await?;
        if !table.is_consistent() {
            return Err(AdminError(
                StatusCode::BAD_GATEWAY,
                "metad answered a placement page whose segments index past its table; retry, and report it if it persists".into(),
            ));
        }
        let room = LOCATE_OBJECTS_MAX - objects;
        if table.objects.len() > room {
            table.objects.truncate(room);
            f(&table);
            return Ok(true);
        }
        objects += table.objects.len();
        f(&table);
        match next {
            // `next` means metad saw at least one more object.
            Some(_) if objects == LOCATE_OBJECTS_MAX => return Ok(true),
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

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::placement_table::TabledObject;
    use weft_common::profile::Layout;

    fn placement(nodes: [u64; 6]) -> Placement {
        Placement {
            layout: Layout::Erasure {
                k: 4,
                m: 2,
                unit_bytes: 1 << 20,
            },
            shards: nodes.iter().map(|n| Some(NodeId(*n))).collect(),
            cache: vec![],
        }
    }

    fn object(key: &str, p: u32, shard_len: u64) -> TabledObject {
        TabledObject {
            key: key.into(),
            size: 4 * shard_len,
            segments: vec![TabledSegment(p, 4 * shard_len, shard_len)],
        }
    }

    fn summed(pages: &[PlacementTable]) -> Located {
        let zone_of: HashMap<NodeId, String> = (1..=6)
            .map(|n| (NodeId(n), ["a", "b", "c"][(n as usize - 1) / 2].to_string()))
            .collect();
        let wanted: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let order: Vec<Vec<String>> = wanted
            .iter()
            .map(|z| wanted.iter().filter(|o| *o != z).cloned().collect())
            .collect();
        let mut sum = Summer::new(&zone_of, &wanted, &order, true);
        for p in pages {
            sum.page(p);
        }
        let zones = wanted.iter().map(|z| (z.clone(), z.clone())).collect();
        sum.finish(
            &LocateQuery::default(),
            &zones,
            &weft_common::netmap::NetMap::default(),
        )
    }

    /// Each page numbers its own placements: sums over two pages that
    /// number the same placements differently equal the sums over one,
    /// and equal the per-segment rules worked by hand.
    #[test]
    fn pages_with_their_own_tables_sum_like_one_page() {
        let p1 = placement([1, 2, 3, 4, 5, 6]);
        let p2 = placement([3, 4, 5, 6, 1, 2]);
        let one = PlacementTable {
            placements: vec![p1.clone(), p2.clone()],
            objects: vec![
                object("o1", 0, 100),
                object("o2", 1, 200),
                object("o3", 1, 100),
                object("o4", 0, 100),
            ],
        };
        let two = [
            PlacementTable {
                placements: vec![p1.clone(), p2.clone()],
                objects: vec![object("o1", 0, 100), object("o2", 1, 200)],
            },
            PlacementTable {
                placements: vec![p2, p1],
                objects: vec![object("o3", 0, 100), object("o4", 1, 100)],
            },
        ];
        let (a, b) = (summed(&[one]), summed(&two));
        assert_eq!(a.objects, b.objects);
        assert_eq!(
            (&a.zone_bytes, &a.node_shards),
            (&b.zone_bytes, &b.node_shards)
        );
        assert_eq!(a.reads, b.reads);
        assert_eq!((a.object_count, a.total_bytes), (4, 2000));
        // Every zone holds 2 of 6 shards of each segment: 500 shard bytes
        // each stored, and each reader takes 2 units of each segment from
        // its zone and 2 across.
        for z in ["a", "b", "c"] {
            assert_eq!(a.zone_bytes[z], 1000);
        }
        assert_eq!(a.node_shards.len(), 6);
        assert!(a.node_shards.values().all(|c| *c == 4));
        for r in &a.reads {
            assert_eq!((r.local_bytes, r.cross_zone_bytes), (1000, 1000), "{r:?}");
        }
        let o2 = a.objects.iter().find(|o| o.key == "o2").unwrap();
        assert_eq!(o2.zone_bytes["a"], 400);
        assert_eq!(o2.node_shards["n3"], 1);
    }

    #[test]
    fn replicated_segments_cost_their_whole_length_once() {
        let p = Placement {
            layout: Layout::Replicated { copies: 3 },
            shards: vec![Some(NodeId(1)), Some(NodeId(3)), Some(NodeId(4))],
            cache: vec![],
        };
        let page = PlacementTable {
            placements: vec![p],
            objects: vec![TabledObject {
                key: "small".into(),
                size: 900,
                segments: vec![TabledSegment(0, 900, 900)],
            }],
        };
        let l = summed(&[page]);
        let by_zone: BTreeMap<&str, (u64, u64)> = l
            .reads
            .iter()
            .map(|r| (r.zone.as_str(), (r.local_bytes, r.cross_zone_bytes)))
            .collect();
        assert_eq!(by_zone["a"], (900, 0));
        assert_eq!(by_zone["b"], (900, 0));
        assert_eq!(
            by_zone["c"],
            (0, 900),
            "no copy in c: the whole segment crosses"
        );
        assert_eq!(l.zone_bytes["b"], 1800, "two copies stored in b");
        assert!(!l.zone_bytes.contains_key("c"));
        assert_eq!(l.best_zone.as_deref(), Some("a"));
    }
}
