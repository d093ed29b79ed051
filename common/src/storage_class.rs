//! Storage classes as data: what a class's name means (layout, which zones,
//! how spread), and the placement rule each new segment is written under.
//!
//! Classes live in metad's replicated state (seeded by the first leader,
//! changed with `weft class set`), so every gateway writes a class the same
//! way and a change needs no restart. A class says *where* data lives and
//! *what failure it survives*, as S3's classes do: with three zones no
//! zone-safe code costs less than 1.5×, so the cheaper classes give up
//! zone safety (`ONEZONE_IA`) or move to cheap zones (`GLACIER_IR`).
//!
//! A class resolves, per segment, into a [`PlacementRule`] that the segment
//! keeps for life (in its manifest and in metad's segment index): repair,
//! drain and rebalance follow the segment's own rule, so editing a class
//! changes new writes only and never strands data that was placed under the
//! old one.

use crate::profile::{Layout, UNIT_BYTES_DEFAULT};
use crate::topology::Labels;
use crate::SegmentId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// Objects at or below this size are stored as replicas by default.
pub const SMALL_OBJECT_BYTES_DEFAULT: u64 = 64 * 1024;

/// Largest small-object threshold a class may set: a small object is one
/// replicated segment per segment size, and beyond this replication costs
/// more than any code saves.
pub const SMALL_OBJECT_BYTES_MAX: u64 = 64 << 20;

/// Most classes a cluster defines.
pub const CLASSES_MAX: usize = 32;

/// Most requirements in one selector, and most selectors in one class.
pub const SELECTOR_TERMS_MAX: usize = 8;

/// The pseudo-label every node carries: its zone's name.
pub const ZONE_LABEL: &str = "zone";

/// One condition on a node's labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Requirement {
    /// The label is present with this value.
    Is {
        /// Label name (`zone` names the node's zone).
        key: String,
        /// Required value.
        value: String,
    },
    /// The label is absent or has another value.
    IsNot {
        /// Label name.
        key: String,
        /// Excluded value.
        value: String,
    },
    /// The label has one of these values (a bucket's residency zones).
    In {
        /// Label name.
        key: String,
        /// Allowed values.
        values: Vec<String>,
    },
}

impl Requirement {
    fn holds(&self, zone: &str, labels: &Labels) -> bool {
        let get = |k: &str| {
            if k == ZONE_LABEL {
                Some(zone)
            } else {
                labels.get(k).map(String::as_str)
            }
        };
        match self {
            Requirement::Is { key, value } => get(key) == Some(value.as_str()),
            Requirement::IsNot { key, value } => get(key) != Some(value.as_str()),
            Requirement::In { key, values } => {
                get(key).is_some_and(|v| values.iter().any(|x| x == v))
            }
        }
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requirement::Is { key, value } => write!(f, "{key}={value}"),
            Requirement::IsNot { key, value } => write!(f, "{key}!={value}"),
            Requirement::In { key, values } => write!(f, "{key} in ({})", values.join("|")),
        }
    }
}

/// Requirements that must all hold; empty selects every node.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    /// Whether a node of `zone` with `labels` is selected.
    pub fn matches(&self, zone: &str, labels: &Labels) -> bool {
        self.0.iter().all(|r| r.holds(zone, labels))
    }

    /// Parses `tier=cold,region!=east` (`*` or empty: every node).
    pub fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Ok(Selector::default());
        }
        let mut out = vec![];
        for term in text.split(',') {
            let term = term.trim();
            let (key, value, not) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, v, false)
            } else {
                return Err(format!(
                    "selector term {term:?}: write label=value or label!=value"
                ));
            };
            let (key, value) = (key.trim().to_string(), value.trim().to_string());
            let mut probe = Labels::new();
            probe.insert(key.clone(), value.clone());
            crate::topology::check_labels(&probe)
                .map_err(|e| format!("selector term {term:?}: {e}"))?;
            out.push(if not {
                Requirement::IsNot { key, value }
            } else {
                Requirement::Is { key, value }
            });
        }
        if out.len() > SELECTOR_TERMS_MAX {
            return Err(format!(
                "{} terms; a selector has at most {SELECTOR_TERMS_MAX}",
                out.len()
            ));
        }
        Ok(Selector(out))
    }
}

impl StorageClass {
    /// This class with every one of its selectors (or, with none, the
    /// whole cluster) narrowed by `terms`: a bucket's residency, so
    /// whatever places the class's shards for that bucket stays inside it.
    pub fn within(&self, terms: &[Requirement]) -> StorageClass {
        if terms.is_empty() {
            return self.clone();
        }
        let mut out = self.clone();
        if out.select.is_empty() {
            out.select.push(Selector::default());
        }
        for s in &mut out.select {
            s.0.extend(terms.iter().cloned());
        }
        out
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "*");
        }
        let terms: Vec<String> = self.0.iter().map(|r| r.to_string()).collect();
        write!(f, "{}", terms.join(","))
    }
}

/// How a class spreads one segment's shards over the nodes it selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// At most ⌈width/zones⌉ shards per selected zone: losing one zone
    /// loses at most that many (zone-safe when that is ≤ m).
    Zones,
    /// Distinct nodes anywhere in the selected zones, with no zone cap:
    /// survives node losses, not necessarily a zone's.
    Nodes,
    /// Every shard inside one selected zone (chosen per segment), on
    /// distinct nodes: S3's One Zone classes.
    OneZone,
}

impl Spread {
    /// The name `weft class set --spread` takes.
    pub fn as_str(&self) -> &'static str {
        match self {
            Spread::Zones => "zones",
            Spread::Nodes => "nodes",
            Spread::OneZone => "one_zone",
        }
    }

    /// Parses `zones`, `nodes` or `one_zone`.
    pub fn parse(text: &str) -> Result<Spread, String> {
        match text {
            "zones" => Ok(Spread::Zones),
            "nodes" => Ok(Spread::Nodes),
            "one_zone" | "one-zone" => Ok(Spread::OneZone),
            other => Err(format!("spread {other:?}: use zones, nodes or one_zone")),
        }
    }
}

/// Where one segment's shards may go, fixed when it is written: the nodes
/// `select` matches, spread by `zones` (a zone cap) or not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRule {
    /// Nodes that may hold a shard.
    pub select: Selector,
    /// Whether the zone cap applies among the selected zones.
    pub spread_zones: bool,
}

impl PlacementRule {
    /// Whether a node of `zone` with `labels` may hold a shard.
    pub fn admits(&self, zone: &str, labels: &Labels) -> bool {
        self.select.matches(zone, labels)
    }
}

/// A storage class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageClass {
    /// S3 name, e.g. `STANDARD`.
    pub name: String,
    /// Layout of objects above `small_object_bytes`.
    pub layout: Layout,
    /// Selectors tried in order: the first whose nodes can place the
    /// layout picks the zones (`tier=warm` then `tier!=cold`: the warm
    /// zones when there are enough of them). Empty: every node.
    #[serde(default)]
    pub select: Vec<Selector>,
    /// How shards spread over the selected nodes.
    pub spread: Spread,
    /// Objects at or below this size are stored as `small_object_copies`
    /// replicas, spread over the selected zones.
    pub small_object_bytes: u64,
    /// Copies of a small object.
    pub small_object_copies: u8,
}

/// A node as class resolution sees it: registered and not removed, in any
/// liveness state (a class's zones must not change because a node is down
/// for a minute).
#[derive(Clone, Copy, Debug)]
pub struct KnownNode<'a> {
    /// Its zone.
    pub zone: &'a str,
    /// Its labels.
    pub labels: &'a Labels,
}

/// Why a class cannot be used or defined.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClassError {
    /// The definition itself is invalid.
    #[error("storage class {name}: {problem}")]
    Invalid {
        /// The class.
        name: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// No selector picks nodes enough for the layout.
    #[error("storage class {name} cannot be placed on this cluster: {why}")]
    Unplaceable {
        /// The class.
        name: String,
        /// What is missing.
        why: String,
    },
}

fn invalid(name: &str, problem: impl Into<String>) -> ClassError {
    ClassError::Invalid {
        name: name.to_string(),
        problem: problem.into(),
    }
}

fn ec(k: u8, m: u8) -> Layout {
    Layout::Erasure {
        k,
        m,
        unit_bytes: UNIT_BYTES_DEFAULT,
    }
}

fn sel(text: &str) -> Selector {
    Selector::parse(text).expect("built-in selector")
}

/// The classes a new cluster starts with.
///
/// `STANDARD` is EC 4+2 across the hot zones (zones not labelled
/// `tier=cold`), as before classes were data. `STANDARD_IA` has the same
/// zone-safe durability on `tier=warm` zones when they can hold it, else
/// on the hot ones. `INTELLIGENT_TIERING` is placed as `STANDARD` in
/// its frequent tier (its other tiers by `STANDARD_IA` and `GLACIER_IR`).
/// `ONEZONE_IA` is EC 4+1 (1.25×) inside one zone, hot
/// if one is big enough, else any: it survives a node, not a zone.
/// `GLACIER_IR` is EC 4+2 over the nodes of the `tier=cold` zones; a
/// bigger cold zone should widen it (`weft class set GLACIER_IR --layout
/// ec:10+4`).
pub fn default_classes() -> Vec<StorageClass> {
    let small = |name: &str, layout, select: Vec<Selector>, spread| StorageClass {
        name: name.to_string(),
        layout,
        select,
        spread,
        small_object_bytes: SMALL_OBJECT_BYTES_DEFAULT,
        small_object_copies: 3,
    };
    vec![
        small("STANDARD", ec(4, 2), vec![sel("tier!=cold")], Spread::Zones),
        // The frequent tier of Intelligent-Tiering; its lower tiers are
        // placed by STANDARD_IA and GLACIER_IR.
        small(
            "INTELLIGENT_TIERING",
            ec(4, 2),
            vec![sel("tier!=cold")],
            Spread::Zones,
        ),
        small(
            "STANDARD_IA",
            ec(4, 2),
            vec![sel("tier=warm"), sel("tier!=cold")],
            Spread::Zones,
        ),
        small(
            "ONEZONE_IA",
            ec(4, 1),
            vec![sel("tier!=cold"), Selector::default()],
            Spread::OneZone,
        ),
        small(
            "GLACIER_IR",
            ec(4, 2),
            vec![sel("tier=cold")],
            Spread::Nodes,
        ),
    ]
}

/// The class objects get when a request names none.
pub const DEFAULT_CLASS: &str = "STANDARD";

/// S3 class names Weft may define: a request naming anything else is
/// refused before any lookup, and `weft class set` refuses to define it.
pub const S3_CLASS_NAMES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
    "EXPRESS_ONEZONE",
];

impl StorageClass {
    /// Checks the definition (not whether this cluster can place it).
    pub fn validate(&self) -> Result<(), ClassError> {
        let name = self.name.as_str();
        if !S3_CLASS_NAMES.contains(&name) {
            return Err(invalid(
                name,
                format!(
                    "not an S3 storage class name; clients can only name {}",
                    S3_CLASS_NAMES.join(", ")
                ),
            ));
        }
        self.layout
            .validate(&format!("classes.{name}"))
            .map_err(|e| invalid(name, e.problem))?;
        if let Layout::Erasure { k, m, .. } = self.layout {
            if m == 0 && k > 1 {
                return Err(invalid(
                    name,
                    "EC with m = 0 loses data with any one node; use m ≥ 1",
                ));
            }
        }
        if self.small_object_copies == 0 {
            return Err(invalid(name, "small_object_copies = 0; use at least 1"));
        }
        if self.small_object_bytes > SMALL_OBJECT_BYTES_MAX {
            return Err(invalid(
                name,
                format!(
                    "small_object_bytes = {} exceeds {SMALL_OBJECT_BYTES_MAX}",
                    self.small_object_bytes
                ),
            ));
        }
        if self.select.len() > SELECTOR_TERMS_MAX
            || self.select.iter().any(|s| s.0.len() > SELECTOR_TERMS_MAX)
        {
            return Err(invalid(
                name,
                format!("at most {SELECTOR_TERMS_MAX} selectors of {SELECTOR_TERMS_MAX} terms"),
            ));
        }
        Ok(())
    }

    /// The layout an object of `object_bytes` bytes gets.
    pub fn layout_for(&self, object_bytes: u64) -> Layout {
        if object_bytes <= self.small_object_bytes {
            Layout::Replicated {
                copies: self.small_object_copies,
            }
        } else {
            self.layout
        }
    }

    /// `ec:4+2 @1MiB` or `replicas:3`, for listings.
    pub fn layout_text(&self) -> String {
        layout_text(&self.layout)
    }

    /// The selector whose nodes can hold `need` shards of `layout`, with
    /// its zones' sizes, or why none can. `nodes` is every registered, not
    /// removed node.
    fn pick(
        &self,
        layout: Layout,
        need: usize,
        nodes: &[KnownNode<'_>],
    ) -> Result<(Selector, BTreeMap<String, usize>), ClassError> {
        let every = Selector::default();
        let tried: Vec<&Selector> = if self.select.is_empty() {
            vec![&every]
        } else {
            self.select.iter().collect()
        };
        let width = layout.width();
        let mut why = vec![];
        for s in tried {
            let mut zones: BTreeMap<String, usize> = BTreeMap::new();
            for n in nodes.iter().filter(|n| s.matches(n.zone, n.labels)) {
                *zones.entry(n.zone.to_string()).or_default() += 1;
            }
            let total: usize = zones.values().sum();
            let fits = match self.spread {
                Spread::Nodes => total >= need,
                Spread::OneZone => zones.values().any(|&n| n >= need),
                Spread::Zones => {
                    let cap = crate::placement::zone_cap(width, zones.len());
                    zones.values().map(|&n| n.min(cap)).sum::<usize>() >= need
                }
            };
            if fits {
                return Ok((s.clone(), zones));
            }
            let largest = zones.values().max().copied().unwrap_or(0);
            why.push(match self.spread {
                Spread::OneZone => format!(
                    "{s} selects {} zone(s), the largest with {largest} node(s); {} wants {width} nodes in one zone",
                    zones.len(),
                    layout_text(&layout)
                ),
                _ => format!(
                    "{s} selects {total} node(s) in {} zone(s); {} spread over {} wants {width}",
                    zones.len(),
                    layout_text(&layout),
                    self.spread.as_str()
                ),
            });
        }
        Err(ClassError::Unplaceable {
            name: self.name.clone(),
            why: format!(
                "{}; add nodes with matching labels or change the class",
                why.join("; ")
            ),
        })
    }

    /// Whether this cluster can place both of the class's layouts at full
    /// width.
    pub fn check_placeable(&self, nodes: &[KnownNode<'_>]) -> Result<(), ClassError> {
        let small = Layout::Replicated {
            copies: self.small_object_copies,
        };
        for layout in [self.layout, small] {
            self.pick(layout, layout.width(), nodes)?;
        }
        Ok(())
    }

    /// The rule segment `segment` (of `layout`) is written under: the first
    /// selector whose nodes hold the whole layout, else the first that
    /// holds the write quorum, as placement accepts (the write is then
    /// short of full width until nodes come back). A
    /// one-zone class picks the zone by hash among the selected zones big
    /// enough for the whole layout (else for the quorum), so segments
    /// spread over them evenly.
    pub fn resolve(
        &self,
        segment: SegmentId,
        layout: Layout,
        nodes: &[KnownNode<'_>],
    ) -> Result<PlacementRule, ClassError> {
        // Every selector at full width first: a fallback that can hold
        // the whole layout beats an earlier choice that holds only the
        // quorum, whose segments repair could never complete.
        let (select, zones) = match self.pick(layout, layout.width(), nodes) {
            Ok(found) => found,
            Err(_) => self.pick(layout, layout.write_quorum(), nodes)?,
        };
        let replicated = matches!(layout, Layout::Replicated { .. });
        match self.spread {
            // Copies of a small object spread over zones whatever the
            // class, as before classes were data: three copies in one
            // zone would survive less than the class's code does.
            Spread::Zones | Spread::Nodes => Ok(PlacementRule {
                select,
                spread_zones: replicated || self.spread == Spread::Zones,
            }),
            Spread::OneZone => {
                let width = layout.width();
                let big = |need: usize| {
                    zones
                        .iter()
                        .filter(|(_, &n)| n >= need)
                        .max_by_key(|(z, _)| zone_score(segment, z))
                        .map(|(z, _)| z.clone())
                };
                let zone = big(width)
                    .or_else(|| big(layout.write_quorum()))
                    .expect("pick found a zone big enough");
                let mut terms = select.0;
                terms.push(Requirement::Is {
                    key: ZONE_LABEL.into(),
                    value: zone,
                });
                Ok(PlacementRule {
                    select: Selector(terms),
                    spread_zones: false,
                })
            }
        }
    }
}

fn zone_score(segment: SegmentId, zone: &str) -> u32 {
    let mut bytes = segment.0.to_le_bytes().to_vec();
    bytes.extend_from_slice(zone.as_bytes());
    crc32c::crc32c(&bytes)
}

/// `ec:4+2` (with `@UNIT` when not 1 MiB) or `replicas:3`.
pub fn layout_text(layout: &Layout) -> String {
    match *layout {
        Layout::Replicated { copies } => format!("replicas:{copies}"),
        Layout::Erasure { k, m, unit_bytes } if unit_bytes == UNIT_BYTES_DEFAULT => {
            format!("ec:{k}+{m}")
        }
        Layout::Erasure { k, m, unit_bytes } => format!("ec:{k}+{m}@{unit_bytes}"),
    }
}

/// Parses what [`layout_text`] prints.
pub fn parse_layout(text: &str) -> Result<Layout, String> {
    let bad = || format!("layout {text:?}: write ec:K+M (optionally @UNIT_BYTES) or replicas:N");
    if let Some(n) = text.strip_prefix("replicas:") {
        let copies = n.parse().map_err(|_| bad())?;
        return Ok(Layout::Replicated { copies });
    }
    let rest = text.strip_prefix("ec:").ok_or_else(bad)?;
    let (km, unit) = match rest.split_once('@') {
        Some((km, u)) => (km, u.parse().map_err(|_| bad())?),
        None => (rest, UNIT_BYTES_DEFAULT),
    };
    let (k, m) = km.split_once('+').ok_or_else(bad)?;
    Ok(Layout::Erasure {
        k: k.parse().map_err(|_| bad())?,
        m: m.parse().map_err(|_| bad())?,
        unit_bytes: unit,
    })
}

/// Checks a whole class list: each valid, names distinct, STANDARD present.
pub fn validate_all(classes: &[StorageClass]) -> Result<(), ClassError> {
    if classes.len() > CLASSES_MAX {
        return Err(invalid(
            "*",
            format!(
                "{} classes; a cluster defines at most {CLASSES_MAX}",
                classes.len()
            ),
        ));
    }
    for (i, c) in classes.iter().enumerate() {
        c.validate()?;
        if classes[..i].iter().any(|o| o.name == c.name) {
            return Err(invalid(&c.name, "defined twice"));
        }
    }
    if !classes.iter().any(|c| c.name == DEFAULT_CLASS) {
        return Err(invalid(
            DEFAULT_CLASS,
            "missing: it is the class of every request that names none",
        ));
    }
    Ok(())
}

/// Segments and bytes one class holds, as metad counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassUsage {
    /// Segments (of object versions and upload parts).
    pub segments: u64,
    /// Bytes of object data.
    pub bytes: u64,
    /// Bytes of shard files (data and parity or copies).
    pub stored_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    struct Topo(Vec<(String, Labels)>);

    /// A zone: name, node count, labels.
    type ZoneSpec<'a> = (&'a str, usize, &'a [(&'a str, &'a str)]);

    impl Topo {
        /// `zones`: (name, nodes, labels).
        fn new(zones: &[ZoneSpec<'_>]) -> Topo {
            let mut out = vec![];
            for (z, n, l) in zones {
                for _ in 0..*n {
                    out.push((z.to_string(), labels(l)));
                }
            }
            Topo(out)
        }
        fn known(&self) -> Vec<KnownNode<'_>> {
            self.0
                .iter()
                .map(|(z, l)| KnownNode { zone: z, labels: l })
                .collect()
        }
    }

    fn class(name: &str) -> StorageClass {
        default_classes()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    fn dev() -> Topo {
        Topo::new(&[
            ("zone-a", 2, &[]),
            ("zone-b", 2, &[]),
            ("zone-c", 2, &[]),
            ("west", 6, &[("tier", "cold"), ("region", "west")]),
        ])
    }

    #[test]
    fn selectors_parse_print_and_match_labels_and_the_zone() {
        let s = Selector::parse("tier=cold, region!=east").unwrap();
        assert_eq!(s.to_string(), "tier=cold,region!=east");
        assert!(s.matches("w", &labels(&[("tier", "cold")])));
        assert!(!s.matches("w", &labels(&[("tier", "cold"), ("region", "east")])));
        assert!(!s.matches("w", &labels(&[])));
        let z = Selector::parse("zone=west").unwrap();
        assert!(z.matches("west", &labels(&[])));
        assert!(!z.matches("east", &labels(&[("zone", "west")])));
        assert_eq!(Selector::parse("*").unwrap(), Selector::default());
        assert!(Selector::parse("tier").is_err());
        assert!(Selector::parse("Tier=cold").is_err());
    }

    #[test]
    fn every_default_class_resolves_to_its_zones_on_the_dev_topology() {
        let t = dev();
        let nodes = t.known();
        for c in default_classes() {
            c.validate().unwrap();
            c.check_placeable(&nodes).unwrap();
        }
        let std = class("STANDARD")
            .resolve(SegmentId(1), ec(4, 2), &nodes)
            .unwrap();
        assert!(std.spread_zones);
        assert!(!std.admits("west", &labels(&[("tier", "cold")])));
        assert!(std.admits("zone-a", &labels(&[])));
        let glacier = class("GLACIER_IR")
            .resolve(SegmentId(1), ec(4, 2), &nodes)
            .unwrap();
        assert!(!glacier.spread_zones);
        assert!(glacier.admits("west", &labels(&[("tier", "cold")])));
        assert!(!glacier.admits("zone-a", &labels(&[])));
        // No hot zone holds 5 nodes: one-zone IA falls back to any zone
        // big enough, which is west.
        let one = class("ONEZONE_IA")
            .resolve(SegmentId(1), ec(4, 1), &nodes)
            .unwrap();
        assert!(one.admits("west", &labels(&[("tier", "cold")])));
        assert!(!one.admits("zone-a", &labels(&[])));
        // Its small objects (3 copies) too: a 2-node hot zone holds their
        // write quorum but never all three copies.
        let small = class("ONEZONE_IA")
            .resolve(SegmentId(1), Layout::Replicated { copies: 3 }, &nodes)
            .unwrap();
        assert!(small.admits("west", &labels(&[("tier", "cold")])));
        assert!(!small.admits("zone-a", &labels(&[])));
    }

    #[test]
    fn a_warm_zone_takes_infrequent_access_data_when_it_can_hold_it() {
        let hot_only = Topo::new(&[("a", 2, &[]), ("b", 2, &[]), ("c", 2, &[])]);
        let ia = class("STANDARD_IA");
        let r = ia
            .resolve(SegmentId(9), ec(4, 2), &hot_only.known())
            .unwrap();
        assert_eq!(r.select.to_string(), "tier!=cold");
        let warm = Topo::new(&[
            ("a", 2, &[]),
            ("b", 2, &[]),
            ("c", 2, &[]),
            ("w1", 3, &[("tier", "warm")]),
            ("w2", 3, &[("tier", "warm")]),
        ]);
        let r = ia.resolve(SegmentId(9), ec(4, 2), &warm.known()).unwrap();
        assert_eq!(r.select.to_string(), "tier=warm");
    }

    #[test]
    fn one_zone_segments_each_pick_one_big_enough_zone_and_spread_over_them() {
        let t = Topo::new(&[("a", 5, &[]), ("b", 5, &[]), ("c", 2, &[])]);
        let one = class("ONEZONE_IA");
        let mut seen = std::collections::BTreeSet::new();
        for seg in 0..64u128 {
            let r = one
                .resolve(SegmentId(seg * 7919), ec(4, 1), &t.known())
                .unwrap();
            let zone = match r.select.0.last().unwrap() {
                Requirement::Is { key, value } if key == ZONE_LABEL => value.clone(),
                other => panic!("no zone term: {other:?}"),
            };
            assert_ne!(zone, "c", "zone c has too few nodes");
            seen.insert(zone);
        }
        assert_eq!(seen.len(), 2, "segments use both big zones");
    }

    #[test]
    fn an_unplaceable_class_says_what_is_missing() {
        let hot_only = Topo::new(&[("a", 2, &[]), ("b", 2, &[]), ("c", 2, &[])]);
        let e = class("GLACIER_IR")
            .check_placeable(&hot_only.known())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "storage class GLACIER_IR cannot be placed on this cluster: tier=cold selects 0 node(s) in 0 zone(s); ec:4+2 spread over nodes wants 6; add nodes with matching labels or change the class"
        );
        // Two zones of 2 cannot hold 6 shards at most 3 per zone.
        let two = Topo::new(&[("a", 2, &[]), ("b", 2, &[])]);
        assert!(class("STANDARD").check_placeable(&two.known()).is_err());
    }

    #[test]
    fn definitions_are_checked() {
        let mut c = class("STANDARD");
        c.name = "GOLD".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not an S3 storage class name"));
        let mut c = class("STANDARD");
        c.layout = ec(6, 0);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("m = 0 loses data"));
        let mut without_standard = default_classes();
        without_standard.retain(|c| c.name != "STANDARD");
        assert!(validate_all(&without_standard).is_err());
        let mut twice = default_classes();
        twice.push(class("GLACIER_IR"));
        assert!(validate_all(&twice).is_err());
        assert_eq!(validate_all(&default_classes()), Ok(()));
    }

    #[test]
    fn layouts_print_and_parse_back() {
        for l in [
            ec(4, 2),
            ec(10, 4),
            Layout::Replicated { copies: 3 },
            Layout::Erasure {
                k: 2,
                m: 1,
                unit_bytes: 4096,
            },
        ] {
            assert_eq!(parse_layout(&layout_text(&l)), Ok(l));
        }
        assert!(parse_layout("ec:4").is_err());
        assert!(parse_layout("raid5").is_err());
    }
}
