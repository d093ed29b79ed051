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
        let step = next_step(objects, table.objects.len(), next, LOCATE_OBJECTS_MAX);
        let keep = match &step {
            Step::Stop { keep, .. } => *keep,
            Step::After(_) => table.objects.len(),
        };
        table.objects.truncate(keep);
        objects += keep;
        f(&table);
        match step {
            Step::Stop { truncated, .. } => return Ok(truncated),
            Step::After(n) => after = Some(n),
        }
    }
}

/// What a walk does after a page.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Keep the page's first `keep` objects and stop; `truncated` when
    /// more matched.
    Stop { keep: usize, truncated: bool },
    /// Keep the whole page and resume after this key.
    After(String),
}

/// After `so_far` objects, a page of `len` with `next` (metad's sign that
/// at least one more object matched), under a limit of `max` objects.
fn next_step(so_far: usize, len: usize, next: Option<String>, max: usize) -> Step {
    let room = max.saturating_sub(so_far);
    if len > room {
        return Step::Stop {
            keep: room,
            truncated: true,
        };
    }
    match next {
        Some(_) if so_far + len == max => Step::Stop {
            keep: len,
            truncated: true,
        },
        Some(n) => Step::After(n),
        None => Step::Stop {
            keep: len,
            truncated: false,
        },
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

    trait WithShards {
        fn with_shards(self, nodes: [Option<u64>; 6]) -> Placement;
    }

    impl WithShards for Placement {
        fn with_shards(mut self, nodes: [Option<u64>; 6]) -> Placement {
            self.shards = nodes.iter().map(|n| n.map(NodeId)).collect();
            self
        }
    }

    fn object(key: &str, p: u32, shard_len: u64) -> TabledObject {
        TabledObject {
            key: key.into(),
            size: 4 * shard_len,
            segments: vec![TabledSegment(p, 4 * shard_len, shard_len)],
        }
    }

    /// Nodes 1–6, two in each of zones a, b and c; the zones.
    fn three_zones() -> (HashMap<NodeId, String>, Vec<String>) {
        let zone_of = (1..=6)
            .map(|n| (NodeId(n), ["a", "b", "c"][(n as usize - 1) / 2].to_string()))
            .collect();
        (zone_of, ["a", "b", "c"].map(String::from).to_vec())
    }

    fn summed(pages: &[PlacementTable]) -> Located {
        let (zone_of, wanted) = three_zones();
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
    fn a_walk_stops_at_the_limit_and_says_whether_more_matched() {
        let more = || Some("k".to_string());
        assert_eq!(next_step(0, 10, more(), 25), Step::After("k".into()));
        assert_eq!(
            next_step(20, 10, more(), 25),
            Step::Stop {
                keep: 5,
                truncated: true
            },
            "a page past the limit is cut"
        );
        assert_eq!(
            next_step(15, 10, more(), 25),
            Step::Stop {
                keep: 10,
                truncated: true
            },
            "exactly at the limit with more to come"
        );
        assert_eq!(
            next_step(15, 10, None, 25),
            Step::Stop {
                keep: 10,
                truncated: false
            },
            "exactly at the limit and nothing more"
        );
        assert_eq!(
            next_step(0, 3, None, 25),
            Step::Stop {
                keep: 3,
                truncated: false
            }
        );
    }

    /// The per-placement sums against the per-segment rules applied to
    /// every segment spelled out, as locate computed them before the
    /// table: cache copies, a node metad knows but no zone does, a
    /// missing shard, replicated and erasure-coded segments, and measured
    /// paths behind the estimates.
    #[test]
    fn placement_sums_equal_the_per_segment_rules() {
        use weft_common::netmap::{NetMap, NetPath};
        use weft_common::warm::CacheCopy;
        let ec = |nodes: [Option<u64>; 6], cache: Vec<CacheCopy>| {
            Placement {
                cache,
                ..placement([0; 6])
            }
            .with_shards(nodes)
        };
        let copy = CacheCopy {
            index: 0,
            node: NodeId(3),
            zone: "b".into(),
        };
        let page = PlacementTable {
            placements: vec![
                ec(
                    [Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)],
                    vec![],
                ),
                ec(
                    [Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)],
                    vec![copy],
                ),
                ec([Some(9), None, Some(3), Some(4), Some(5), Some(6)], vec![]),
                Placement {
                    layout: Layout::Replicated { copies: 2 },
                    shards: vec![Some(5), Some(9)]
                        .into_iter()
                        .map(|n| n.map(NodeId))
                        .collect(),
                    cache: vec![],
                },
            ],
            objects: vec![
                object("o0", 0, 100),
                object("o1", 1, 300),
                TabledObject {
                    key: "o2".into(),
                    size: 1000,
                    segments: vec![TabledSegment(2, 400, 100), TabledSegment(3, 600, 600)],
                },
            ],
        };
        let path = |from: &str, to: &str, rtt_us, bytes_per_s| NetPath {
            from: from.into(),
            to: to.into(),
            rtt_us,
            bytes_per_s,
            age_ms: 0,
            reporters: 1,
        };
        let netmap = NetMap {
            paths: vec![
                path("a", "b", 20_000, 1 << 20),
                path("a", "c", 40_000, 2 << 20),
                path("b", "a", 20_000, 1 << 20),
                path("b", "c", 30_000, 1 << 20),
                path("c", "a", 40_000, 4 << 20),
                path("c", "b", 30_000, 1 << 20),
            ],
        };
        let (zone_of, wanted) = three_zones();
        let order: Vec<Vec<String>> = wanted
            .iter()
            .map(|z| {
                let mut o: Vec<String> = wanted.iter().filter(|o| *o != z).cloned().collect();
                o.sort_by_key(|o| (netmap.path(z, o).map_or(u64::MAX, |p| p.rtt_us), o.clone()));
                o
            })
            .collect();
        let mut sum = Summer::new(&zone_of, &wanted, &order, true);
        sum.page(&page);
        let zones = wanted.iter().map(|z| (z.clone(), z.clone())).collect();
        let got = sum.finish(&LocateQuery::default(), &zones, &netmap);

        // The rules, segment by segment.
        let zone = |n: NodeId| zone_of.get(&n).map(String::as_str);
        let (mut zone_bytes, mut node_shards) = (BTreeMap::new(), BTreeMap::new());
        for o in &page.objects {
            for s in &o.segments {
                let seg = page.segment(s).unwrap();
                for n in seg.shards.iter().flatten() {
                    *zone_bytes
                        .entry(zone(*n).unwrap_or("unknown").to_string())
                        .or_insert(0u64) += seg.shard_len;
                    *node_shards.entry(n.to_string()).or_insert(0u64) += 1;
                }
            }
        }
        assert_eq!(got.zone_bytes, zone_bytes);
        assert_eq!(got.node_shards, node_shards);
        assert!(got.zone_bytes.contains_key("unknown"), "node 9 has no zone");
        for (w, z) in wanted.iter().enumerate() {
            let (mut local, mut cross) = (0, 0);
            let mut from: BTreeMap<String, u64> = BTreeMap::new();
            for o in &page.objects {
                for s in &o.segments {
                    let seg = page.segment(s).unwrap();
                    let (l, c) = weft_common::locality::read_cost(&seg, zone, z);
                    local += l;
                    cross += c;
                    for (src, b) in weft_common::locality::read_sources(&seg, zone, z, &order[w]) {
                        if src != *z {
                            *from.entry(src).or_default() += b;
                        }
                    }
                }
            }
            let estimated = from
                .iter()
                .map(|(src, b)| netmap.transfer_secs(src, z, *b))
                .try_fold(0.0f64, |worst, t| t.map(|t| worst.max(t)));
            let r = got.reads.iter().find(|r| r.zone == *z).unwrap();
            assert_eq!((r.local_bytes, r.cross_zone_bytes), (local, cross), "{z}");
            assert_eq!(r.estimated_secs, estimated, "{z}");
        }
        // The fixture exercises the copy: o1's segment read from b takes 3
        // units in b (2 placed, 1 copied) and 1 across.
        let o1 = page.segment(&page.objects[1].segments[0]).unwrap();
        assert_eq!(weft_common::locality::read_cost(&o1, zone, "b"), (900, 300));
        // Every path is measured, so every estimate is a number.
        assert!(got.reads.iter().all(|r| r.estimated_secs.is_some()));
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
