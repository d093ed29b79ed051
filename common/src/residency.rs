//! Data residency: a bucket's bytes stay inside the zones it names.
//!
//! A bucket's residency narrows every storage class it is written under
//! ([`StorageClass::within`]): the placement rule resolved for each new
//! segment then carries the residency's terms, and repair, drain and
//! rebalance, which only ever place a shard where a segment's rule admits,
//! inherit it with nothing to remember. Transitions and class migrations
//! narrow the target class the same way. A segment written before the
//! residency is re-placed by the migration the change starts.

use serde::{Deserialize, Serialize};

use crate::storage_class::{Requirement, StorageClass, ZONE_LABEL};
use crate::topology::Labels;

/// Where a bucket's bytes may be.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Residency {
    /// Zones allowed (empty: any zone the labels allow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Labels every node holding the bucket's bytes carries
    /// (`region=eu`).
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// The S3 `LocationConstraint` the bucket was created with, answered
    /// by GetBucketLocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Most zones one residency names.
pub const ZONES_MAX: usize = 64;

/// The label a `LocationConstraint` selects: a bucket created with
/// `LocationConstraint=eu-west-1` stays on nodes labelled
/// `region=eu-west-1`.
pub const REGION_LABEL: &str = "region";

impl Residency {
    /// Zones `zones`, sorted and without repeats.
    pub fn zones(zones: impl IntoIterator<Item = String>) -> Residency {
        let mut zones: Vec<String> = zones.into_iter().collect();
        zones.sort();
        zones.dedup();
        Residency {
            zones,
            ..Default::default()
        }
    }

    /// The same with `labels` required too.
    pub fn with_labels(mut self, labels: Labels) -> Residency {
        self.labels = labels;
        self
    }

    /// The residency S3's `LocationConstraint` asks for: nodes labelled
    /// `region=<constraint>`.
    pub fn location(constraint: &str) -> Residency {
        let mut labels = Labels::new();
        labels.insert(REGION_LABEL.into(), constraint.to_string());
        Residency {
            zones: vec![],
            labels,
            location: Some(constraint.to_string()),
        }
    }

    /// Refuses a residency that names nothing or cannot be a label match.
    pub fn validate(&self) -> Result<(), String> {
        if self.zones.is_empty() && self.labels.is_empty() {
            return Err("a placement policy names zones, labels or both".into());
        }
        if self.zones.len() > ZONES_MAX {
            return Err(format!(
                "{} zones; name at most {ZONES_MAX}",
                self.zones.len()
            ));
        }
        if let Some(z) = self.zones.iter().find(|z| z.is_empty() || z.len() > 63) {
            return Err(format!("zone name {z:?}: use 1 to 63 characters"));
        }
        if self.labels.contains_key(ZONE_LABEL) {
            return Err(format!(
                "{ZONE_LABEL:?} names a node's zone, not a label; list zones with --zones"
            ));
        }
        crate::topology::check_labels(&self.labels)
    }

    /// The terms a placement rule must add.
    pub fn terms(&self) -> Vec<Requirement> {
        let mut out = vec![];
        if !self.zones.is_empty() {
            out.push(Requirement::In {
                key: ZONE_LABEL.into(),
                values: self.zones.clone(),
            });
        }
        for (k, v) in &self.labels {
            out.push(Requirement::Is {
                key: k.clone(),
                value: v.clone(),
            });
        }
        out
    }

    /// Whether a node of `zone` with `labels` may hold the bucket's bytes.
    ///
    /// Judged by the same terms placement rules carry, so apply and the
    /// planner can never disagree about a node.
    pub fn admits(&self, zone: &str, labels: &Labels) -> bool {
        crate::storage_class::Selector(self.terms()).matches(zone, labels)
    }

    /// `zones a,b; region=eu`.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if !self.zones.is_empty() {
            parts.push(format!("zones {}", self.zones.join(",")));
        }
        if !self.labels.is_empty() {
            parts.push(crate::topology::labels_text(&self.labels));
        }
        parts.join("; ")
    }
}

/// `class` as a bucket with `residency` places it.
pub fn narrow(class: &StorageClass, residency: Option<&Residency>) -> StorageClass {
    match residency {
        Some(r) => class.within(&r.terms()),
        None => class.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Layout;
    use crate::storage_class::KnownNode;
    use crate::SegmentId;

    #[test]
    fn a_narrowed_class_resolves_to_a_rule_that_admits_only_the_bucket_zones() {
        let classes = crate::storage_class::default_classes();
        let standard = classes.iter().find(|c| c.name == "STANDARD").unwrap();
        let r = Residency::zones(["b".to_string(), "a".to_string(), "a".to_string()]);
        assert_eq!(r.zones, vec!["a", "b"]);
        r.validate().unwrap();
        let labels = Labels::new();
        let zones = ["a", "a", "a", "b", "b", "b", "c", "c", "c"];
        let known: Vec<KnownNode<'_>> = zones
            .iter()
            .map(|z| KnownNode {
                zone: z,
                labels: &labels,
            })
            .collect();
        let layout = Layout::Erasure {
            k: 4,
            m: 2,
            unit_bytes: 1 << 20,
        };
        let rule = narrow(standard, Some(&r))
            .resolve(SegmentId(7), layout, &known)
            .unwrap();
        assert!(rule.admits("a", &labels) && rule.admits("b", &labels));
        assert!(!rule.admits("c", &labels));
        assert_eq!(narrow(standard, None), *standard);
    }

    #[test]
    fn location_constraints_select_the_region_label_and_empty_policies_are_refused() {
        let r = Residency::location("eu-west-1");
        let mut eu = Labels::new();
        eu.insert("region".into(), "eu-west-1".into());
        assert!(r.admits("z", &eu));
        assert!(!r.admits("z", &Labels::new()));
        assert_eq!(r.describe(), "region=eu-west-1");
        assert!(Residency::default().validate().is_err());
        let zone_label = Residency::default().with_labels(
            [("zone".to_string(), "a".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(zone_label.validate().unwrap_err().contains("--zones"));
    }
}
