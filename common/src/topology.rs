//! Zones and nodes as every process sees them.

use crate::NodeId;
use serde::{Deserialize, Serialize};

/// What a datad tells metad about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Never reused.
    pub id: NodeId,
    /// Failure domain and network locality.
    pub zone: String,
    /// `host:port` of the node's internal RPC endpoint.
    pub addr: String,
    /// Bytes the node may fill.
    pub capacity_bytes: u64,
    /// What the node's zone is (`tier = "cold"`, `region = "west"`): what
    /// storage classes select zones by. Absent in registrations from
    /// before labels, which carry none.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// A node's labels, by name.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Most labels one node carries.
pub const LABELS_MAX: usize = 16;

/// Checks labels as every process reads them: at most [`LABELS_MAX`];
/// names of 1 to 63 characters and values of up to 63, each of lowercase
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or
/// digit (a subset of Kubernetes label values, so a zone's labels can be
/// mirrored there).
pub fn check_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > LABELS_MAX {
        return Err(format!(
            "{} labels; a node carries at most {LABELS_MAX}",
            labels.len()
        ));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let well_formed = |t: &str, may_be_empty: bool| {
        (t.is_empty() && may_be_empty)
            || (t.len() <= 63
                && t.starts_with(alnum)
                && t.ends_with(alnum)
                && t.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.')))
    };
    for (k, v) in labels {
        if !well_formed(k, false) {
            return Err(format!(
                "label name {k:?}: use 1 to 63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ));
        }
        if !well_formed(v, true) {
            return Err(format!(
                "label {k} = {v:?}: use up to 63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// `tier=cold,region=west`: labels as `weft cluster status` prints them.
pub fn labels_text(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Liveness as judged by metad from heartbeats.
///
/// `Suspect` sits between the two so that one late heartbeat does not start
/// moving terabytes: a suspect node gets no new shards, and its shards count as
/// at risk in the status, but repair starts only once it is `Down`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeat seen recently.
    Up,
    /// Heartbeats missed for longer than the suspect interval.
    Suspect,
    /// No heartbeat within the down grace period (or none since this metad
    /// became leader and the grace passed).
    Down,
}

/// What the operator wants of a node, committed through raft.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeAdmin {
    /// In service.
    #[default]
    Active,
    /// Readable, but gets no new shards and has its shards moved away.
    Draining,
    /// Out of the cluster: nothing is read from or placed on it.
    Removed,
}

/// A node with its current liveness and usage: the gateway's cluster map entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Registration data.
    pub info: NodeInfo,
    /// Liveness.
    pub state: NodeState,
    /// Operator's intent.
    #[serde(default)]
    pub admin: NodeAdmin,
    /// Bytes used, from the last heartbeat (0 if none).
    pub used_bytes: u64,
    /// Milliseconds since the last heartbeat, if one was seen.
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Space state from the last heartbeat (ok if none).
    #[serde(default)]
    pub space: crate::space::SpaceReport,
}

impl NodeView {
    /// The state an operator sees: `removed` or `draining` when set, else the
    /// liveness (`up`, `suspect`, `down`).
    pub fn state_name(&self) -> &'static str {
        match (self.admin, self.state) {
            (NodeAdmin::Removed, _) => "removed",
            (NodeAdmin::Draining, _) => "draining",
            (NodeAdmin::Active, NodeState::Up) => "up",
            (NodeAdmin::Active, NodeState::Suspect) => "suspect",
            (NodeAdmin::Active, NodeState::Down) => "down",
        }
    }

    /// Whether new shards may go to this node as far as liveness and the
    /// operator go. A full node passes too: placement skips it, so that it
    /// can name it when too few nodes remain (see [`crate::placement`]).
    pub fn accepts_writes(&self) -> bool {
        self.admin == NodeAdmin::Active && self.state == NodeState::Up
    }

    /// Whether its shards count as present for redundancy: it is not removed
    /// and not known to be down. Suspect nodes do count for reads, but see
    /// [`NodeView::holds_safely`].
    pub fn readable(&self) -> bool {
        self.admin != NodeAdmin::Removed && self.state != NodeState::Down
    }

    /// Whether its shards count towards full redundancy: up, and not draining
    /// or removed.
    pub fn holds_safely(&self) -> bool {
        self.admin == NodeAdmin::Active && self.state == NodeState::Up
    }

    /// Free bytes, never negative.
    pub fn free_bytes(&self) -> u64 {
        self.info.capacity_bytes.saturating_sub(self.used_bytes)
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn well_formed_labels_pass_and_malformed_ones_are_named() {
        assert!(check_labels(&labels(&[
            ("tier", "cold"),
            ("region", "west-1"),
            ("x", "")
        ]))
        .is_ok());
        for (k, v) in [
            ("Tier", "cold"),
            ("tier", "Cold"),
            ("", "x"),
            ("-a", "b"),
            ("a b", "c"),
        ] {
            let e = check_labels(&labels(&[(k, v)])).unwrap_err();
            assert!(
                e.contains(&format!("{k:?}")) || e.contains(&format!("{v:?}")),
                "{e}"
            );
        }
        let long = "a".repeat(64);
        assert!(check_labels(&labels(&[(long.as_str(), "x")])).is_err());
        let many: Labels = (0..=LABELS_MAX)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert!(check_labels(&many).unwrap_err().contains("at most"));
        assert_eq!(
            labels_text(&labels(&[("tier", "cold"), ("region", "west")])),
            "region=west,tier=cold"
        );
    }
}
