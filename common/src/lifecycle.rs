//! Bucket lifecycle rules: the model metad stores, S3's validity rules, and
//! when each rule is due for an object.
//!
//! Times are in days of `day_ms` milliseconds (86,400,000 in production;
//! `lifecycle_day_secs` shortens it for tests and `weft dev
//! --lifecycle-day`). As S3 does, a rule's due time is rounded up to the
//! next day boundary ("midnight UTC"): an object written at 10:30 under
//! `Days = 3` expires at midnight starting the fourth day after.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

pub mod tiering;
mod transitions;
pub use transitions::{class_rank, NoncurrentOf, TRANSITION_MIN_BYTES};

/// Most rules one configuration holds (S3's limit).
pub const RULES_MAX: usize = 1000;

/// Most noncurrent versions a rule may keep (S3's limit).
pub const NEWER_NONCURRENT_MAX: u32 = 100;

/// Which objects a rule applies to; every field set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Key prefix ("" matches every key).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Tags the object must carry, each with this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Only objects larger than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_greater_than: Option<u64>,
    /// Only objects smaller than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_less_than: Option<u64>,
}

impl Filter {
    /// Whether an object with this key, size and tags is selected.
    pub fn matches(&self, key: &str, size: u64, tags: &BTreeMap<String, String>) -> bool {
        key.starts_with(&self.prefix)
            && self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
            && self.size_greater_than.is_none_or(|g| size > g)
            && self.size_less_than.is_none_or(|l| size < l)
    }
}

/// When current versions expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expiration {
    /// This many days after the version was written.
    Days(u32),
    /// At this time (ms since the epoch, a midnight UTC).
    Date(u64),
    /// Remove a delete marker that is the only version left of its key.
    ExpiredObjectDeleteMarker,
}

/// When noncurrent versions expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentExpiration {
    /// Days after the version became noncurrent.
    pub days: u32,
    /// Keep this many newest noncurrent versions whatever their age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<u32>,
}

/// When a current version moves to another storage class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionAt {
    /// This many days after the version was written.
    Days(u32),
    /// At this time (ms since the epoch, a midnight UTC).
    Date(u64),
}

/// A `Transition` action: current versions move to `class`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When.
    pub at: TransitionAt,
    /// The storage class they move to.
    pub class: String,
}

/// A `NoncurrentVersionTransition` action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentTransition {
    /// Days after the version became noncurrent.
    pub days: u32,
    /// Leave this many newest noncurrent versions where they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<u32>,
    /// The storage class they move to.
    pub class: String,
}

/// One rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's ID (S3 makes one up when none is given; so does Weft).
    pub id: String,
    /// `Status = Enabled`.
    pub enabled: bool,
    /// Which objects.
    #[serde(default)]
    pub filter: Filter,
    /// Expiration of current versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    /// Expiration of noncurrent versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_expiration: Option<NoncurrentExpiration>,
    /// Days after initiation an incomplete multipart upload is aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_days: Option<u32>,
    /// Moves of current versions to other classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// Moves of noncurrent versions to other classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noncurrent_transitions: Vec<NoncurrentTransition>,
}

/// A bucket's lifecycle configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleConfig {
    /// The rules, as given.
    pub rules: Vec<Rule>,
}

/// Why a configuration is invalid, as S3 says it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RuleError {
    /// The XML is well-formed but not a valid configuration (S3's
    /// `MalformedXML`).
    #[error("{0}")]
    Malformed(String),
    /// A value is out of range or contradicts another (S3's
    /// `InvalidArgument`).
    #[error("{0}")]
    InvalidArgument(String),
}

/// The next day boundary at or after `at_ms`.
pub fn day_boundary(at_ms: u64, day_ms: u64) -> u64 {
    let d = day_ms.max(1);
    at_ms.div_ceil(d).saturating_mul(d)
}

/// When something `days` days after `from_ms` is due, rounded up to a day
/// boundary.
pub fn due_after(from_ms: u64, days: u32, day_ms: u64) -> u64 {
    day_boundary(
        from_ms.saturating_add(u64::from(days).saturating_mul(day_ms)),
        day_ms,
    )
}

impl LifecycleConfig {
    /// Checks the configuration as S3 does; `day_ms` only for dates, which
    /// must fall on a day boundary.
    pub fn validate(&self, day_ms: u64) -> Result<(), RuleError> {
        use RuleError::{InvalidArgument as Arg, Malformed};
        if self.rules.is_empty() {
            return Err(Malformed(
                "a lifecycle configuration needs at least one rule".into(),
            ));
        }
        if self.rules.len() > RULES_MAX {
            return Err(Arg(format!(
                "at most {RULES_MAX} rules; this has {}",
                self.rules.len()
            )));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let name = if r.id.is_empty() {
                format!("rule {}", i + 1)
            } else {
                format!("rule {}", r.id)
            };
            if r.id.len() > 255 {
                return Err(Arg(format!("{name}: an ID is at most 255 characters")));
            }
            if self.rules[..i].iter().any(|o| o.id == r.id) {
                return Err(Arg(format!("{name}: rule IDs must be unique")));
            }
            if r.expiration.is_none()
                && r.noncurrent_expiration.is_none()
                && r.abort_incomplete_days.is_none()
                && r.transitions.is_empty()
                && r.noncurrent_transitions.is_empty()
            {
                return Err(Malformed(format!(
                    "{name}: a rule needs at least one action"
                )));
            }
            match r.expiration {
                Some(Expiration::Days(0)) => {
                    return Err(Arg(format!(
                        "{name}: Expiration Days must be a positive integer"
                    )))
                }
                Some(Expiration::Date(ms)) if ms % day_ms.max(1) != 0 => {
                    return Err(Arg(format!(
                        "{name}: Expiration Date must be at midnight UTC"
                    )))
                }
                Some(Expiration::ExpiredObjectDeleteMarker) if !r.filter.tags.is_empty() => {
                    return Err(Arg(format!(
                        "{name}: ExpiredObjectDeleteMarker cannot be combined with a tag filter"
                    )))
                }
                _ => {}
            }
            if let Some(n) = r.noncurrent_expiration {
                if n.days == 0 {
                    return Err(Arg(format!(
                        "{name}: NoncurrentDays must be a positive integer"
                    )));
                }
                if let Some(k) = n.newer_noncurrent_versions {
                    if k == 0 || k > NEWER_NONCURRENT_MAX {
                        return Err(Arg(format!(
                            "{name}: NewerNoncurrentVersions must be between 1 and {NEWER_NONCURRENT_MAX}"
                        )));
                    }
                }
            }
            if let Some(d) = r.abort_incomplete_days {
                if d == 0 {
                    return Err(Arg(format!(
                        "{name}: DaysAfterInitiation must be a positive integer"
                    )));
                }
                if !r.filter.tags.is_empty()
                    || r.filter.size_greater_than.is_some()
                    || r.filter.size_less_than.is_some()
                {
                    return Err(Arg(format!(
                        "{name}: AbortIncompleteMultipartUpload cannot be combined with a tag or size filter"
                    )));
                }
            }
            transitions::validate(r, &name, day_ms)?;
            if let (Some(g), Some(l)) = (r.filter.size_greater_than, r.filter.size_less_than) {
                if g >= l {
                    return Err(Arg(format!(
                        "{name}: ObjectSizeGreaterThan must be less than ObjectSizeLessThan"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// One lifecycle action, as the scan proposes it and apply re-checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Expire the current version `version_id` (in a versioned or
    /// suspended bucket by writing a delete marker with `marker_id`).
    ExpireCurrent {
        /// The version judged.
        version_id: crate::VersionId,
        /// Id of the delete marker it leaves in a versioned bucket.
        marker_id: crate::VersionId,
    },
    /// Remove a noncurrent version or delete marker, identified by its S3
    /// id and write time (a `null` id is reused by later writes).
    RemoveNoncurrent {
        /// S3 version id.
        label: String,
        /// When the entry was written, ms.
        modified_ms: u64,
    },
    /// Remove the delete marker that is all that is left of its key.
    RemoveLoneMarker {
        /// S3 version id.
        label: String,
        /// When the marker was written, ms.
        modified_ms: u64,
    },
    /// Abort an incomplete multipart upload.
    AbortUpload {
        /// The upload.
        upload_id: String,
    },
    /// Move the current version `version_id` to `class` (a transition
    /// task: its bytes are re-encoded by a data node, then committed).
    TransitionCurrent {
        /// The version judged.
        version_id: crate::VersionId,
        /// Where it goes.
        class: String,
    },
    /// Re-place version `version_id` (current or not) under its class's
    /// current definition (`weft class set --migrate`).
    Migrate {
        /// The version.
        version_id: crate::VersionId,
        /// Its class.
        class: String,
    },
    /// Move an `INTELLIGENT_TIERING` version (current or not) from access
    /// tier `from` to `to` (`None`: the frequent tier); it keeps its class.
    Tier {
        /// The version.
        version_id: crate::VersionId,
        /// Its tier now.
        from: Option<tiering::AccessTier>,
        /// Its tier after.
        to: Option<tiering::AccessTier>,
    },
    /// Move a noncurrent version to `class`.
    TransitionNoncurrent {
        /// S3 version id.
        label: String,
        /// When the entry was written, ms.
        modified_ms: u64,
        /// Where it goes.
        class: String,
    },
}

impl Step {
    /// Whether this step moves bytes (a transition task) rather than
    /// being one raft command.
    pub fn is_transition(&self) -> bool {
        matches!(
            self,
            Step::TransitionCurrent { .. }
                | Step::TransitionNoncurrent { .. }
                | Step::Migrate { .. }
                | Step::Tier { .. }
        )
    }
}

/// Where the leader's current lifecycle pass stands, replicated
/// (`Command::SetLifecycleCursor`) so a new leader resumes the pass where
/// the old one left it instead of reading every key again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// When the pass began, ms since the epoch.
    pub pass_started_ms: u64,
    /// Last key fully handled, per bucket still being walked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
    /// Buckets whose walk this pass has finished.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub done: std::collections::BTreeSet<String>,
    /// Last upload id handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// Whether the uploads' walk ended.
    #[serde(default)]
    pub uploads_done: bool,
}

/// Where the metad leader's lifecycle passes stand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passes {
    /// Passes finished since this leader was elected.
    pub finished: u64,
    /// When the current or last pass started, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// When the last pass finished, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

/// A rule that expires a current version now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The rule's ID.
    pub rule: String,
}

/// The current version of a key as the engine sees it.
#[derive(Clone, Debug)]
pub struct Current<'a> {
    /// Key.
    pub key: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// Tags.
    pub tags: &'a BTreeMap<String, String>,
    /// When written, ms.
    pub modified_ms: u64,
}

impl LifecycleConfig {
    /// The first enabled rule that expires `v` at `now_ms`, and when the
    /// earliest enabled rule will (for `x-amz-expiration`).
    pub fn expiry(&self, v: &Current<'_>, day_ms: u64) -> Option<(u64, &str)> {
        self.rules
            .iter()
            .filter(|r| r.enabled && r.filter.matches(v.key, v.size, v.tags))
            .filter_map(|r| {
                let at = match r.expiration? {
                    Expiration::Days(d) => due_after(v.modified_ms, d, day_ms),
                    Expiration::Date(ms) => ms,
                    Expiration::ExpiredObjectDeleteMarker => return None,
                };
                Some((at, r.id.as_str()))
            })
            .min()
    }

    /// Whether the current version `v` is due for expiration at `now_ms`.
    pub fn current_due(&self, v: &Current<'_>, now_ms: u64, day_ms: u64) -> Option<Due> {
        let (at, rule) = self.expiry(v, day_ms)?;
        (at <= now_ms).then(|| Due {
            rule: rule.to_string(),
        })
    }

    /// Whether a delete marker written at `marker_ms` that is the only
    /// entry left of `key` should be removed now: under a rule with
    /// `ExpiredObjectDeleteMarker`, or (as S3 does) under a `Days` rule once
    /// the marker is that old.
    pub fn lone_marker_due(&self, key: &str, marker_ms: u64, now_ms: u64, day_ms: u64) -> bool {
        let none = BTreeMap::new();
        self.rules.iter().any(|r| {
            r.enabled
                && r.filter.matches(key, 0, &none)
                && match r.expiration {
                    Some(Expiration::ExpiredObjectDeleteMarker) => true,
                    Some(Expiration::Days(d)) => due_after(marker_ms, d, day_ms) <= now_ms,
                    _ => false,
                }
        })
    }

    /// Which of a key's noncurrent versions expire now. `noncurrent` is
    /// newest first: (size, tags, when it became noncurrent, ms). A rule
    /// keeps the `NewerNoncurrentVersions` newest of the versions it
    /// selects. Linear in versions times rules.
    pub fn noncurrent_due(
        &self,
        key: &str,
        noncurrent: &[(u64, &BTreeMap<String, String>, u64)],
        now_ms: u64,
        day_ms: u64,
    ) -> Vec<usize> {
        let mut due = std::collections::BTreeSet::new();
        for r in self.rules.iter().filter(|r| r.enabled) {
            let Some(n) = r.noncurrent_expiration else {
                continue;
            };
            let keep = n.newer_noncurrent_versions.unwrap_or(0) as usize;
            let mut newer = 0usize;
            for (i, (size, tags, since)) in noncurrent.iter().enumerate() {
                if !r.filter.matches(key, *size, tags) {
                    continue;
                }
                if newer >= keep && due_after(*since, n.days, day_ms) <= now_ms {
                    due.insert(i);
                }
                newer += 1;
            }
        }
        due.into_iter().collect()
    }

    /// Whether an upload of `key` initiated at `initiated_ms` is due for
    /// abort now, and by which rule.
    pub fn abort_due(
        &self,
        key: &str,
        initiated_ms: u64,
        now_ms: u64,
        day_ms: u64,
    ) -> Option<&str> {
        self.rules
            .iter()
            .filter(|r| r.enabled && key.starts_with(&r.filter.prefix))
            .find(|r| {
                r.abort_incomplete_days
                    .is_some_and(|d| due_after(initiated_ms, d, day_ms) <= now_ms)
            })
            .map(|r| r.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    fn rule(id: &str) -> Rule {
        Rule {
            id: id.into(),
            enabled: true,
            filter: Filter::default(),
            expiration: None,
            noncurrent_expiration: None,
            abort_incomplete_days: None,
            ..Rule::default()
        }
    }

    #[test]
    fn due_times_round_up_to_the_next_day_boundary_as_s3_does() {
        // 2014-01-15 10:30 UTC + 3 days → 2014-01-19 00:00 UTC.
        let jan15_1030 = 1_389_781_800_000;
        let jan19 = 1_390_089_600_000;
        assert_eq!(due_after(jan15_1030, 3, DAY), jan19);
        // A time on a boundary stays there.
        assert_eq!(day_boundary(jan19, DAY), jan19);
        // One-second days in tests.
        assert_eq!(due_after(1_500, 2, 1_000), 4_000);
    }

    #[test]
    fn filters_select_by_prefix_tags_and_size() {
        let f = Filter {
            prefix: "logs/".into(),
            tags: [("t".to_string(), "1".to_string())].into(),
            size_greater_than: Some(10),
            size_less_than: Some(100),
        };
        let tags: BTreeMap<String, String> = [("t".to_string(), "1".to_string())].into();
        assert!(f.matches("logs/a", 50, &tags));
        assert!(!f.matches("img/a", 50, &tags));
        assert!(!f.matches("logs/a", 10, &tags));
        assert!(!f.matches("logs/a", 100, &tags));
        assert!(!f.matches("logs/a", 50, &BTreeMap::new()));
    }

    #[test]
    fn current_versions_expire_by_days_or_date_under_enabled_rules_only() {
        let mut r = rule("r1");
        r.expiration = Some(Expiration::Days(1));
        let mut off = rule("off");
        off.enabled = false;
        off.expiration = Some(Expiration::Date(0));
        let c = LifecycleConfig {
            rules: vec![r, off],
        };
        let tags = BTreeMap::new();
        let v = Current {
            key: "k",
            size: 1,
            tags: &tags,
            modified_ms: 1_500,
        };
        assert_eq!(c.current_due(&v, 2_999, 1_000), None);
        assert_eq!(
            c.current_due(&v, 3_000, 1_000),
            Some(Due { rule: "r1".into() })
        );
        assert_eq!(c.expiry(&v, 1_000), Some((3_000, "r1")));
    }

    #[test]
    fn noncurrent_versions_expire_after_their_days_keeping_the_newest() {
        let mut r = rule("nc");
        r.noncurrent_expiration = Some(NoncurrentExpiration {
            days: 1,
            newer_noncurrent_versions: Some(1),
        });
        let c = LifecycleConfig { rules: vec![r] };
        let t = BTreeMap::new();
        // Newest first: became noncurrent at 5 s, 3 s, 1 s.
        let versions = [(1, &t, 5_000), (1, &t, 3_000), (1, &t, 1_000)];
        // At 4.5 s: 1 s + 1 day (→ 2 s) and 3 s + 1 day (→ 4 s) are due,
        // but the newest noncurrent one is kept.
        assert_eq!(c.noncurrent_due("k", &versions, 4_500, 1_000), vec![1, 2]);
        assert_eq!(
            c.noncurrent_due("k", &versions, 1_500, 1_000),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn invalid_configurations_are_refused_with_s3s_codes() {
        let ok = |r: Rule| LifecycleConfig { rules: vec![r] }.validate(DAY);
        assert!(matches!(
            ok(rule("no-action")),
            Err(RuleError::Malformed(_))
        ));
        let mut r = rule("zero");
        r.expiration = Some(Expiration::Days(0));
        assert!(matches!(ok(r), Err(RuleError::InvalidArgument(m)) if m.contains("rule zero")));
        let mut r = rule("date");
        r.expiration = Some(Expiration::Date(DAY + 1));
        assert!(matches!(ok(r), Err(RuleError::InvalidArgument(m)) if m.contains("midnight")));
        let mut r = rule("abort-tag");
        r.abort_incomplete_days = Some(1);
        r.filter.tags.insert("a".into(), "b".into());
        assert!(matches!(ok(r), Err(RuleError::InvalidArgument(_))));
        let mut r = rule("sizes");
        r.expiration = Some(Expiration::Days(1));
        r.filter.size_greater_than = Some(10);
        r.filter.size_less_than = Some(10);
        assert!(matches!(ok(r), Err(RuleError::InvalidArgument(_))));
        let mut a = rule("same");
        a.expiration = Some(Expiration::Days(1));
        let twice = LifecycleConfig {
            rules: vec![a.clone(), a],
        };
        assert!(
            matches!(twice.validate(DAY), Err(RuleError::InvalidArgument(m)) if m.contains("unique"))
        );
        assert!(matches!(
            LifecycleConfig::default().validate(DAY),
            Err(RuleError::Malformed(_))
        ));
    }

    #[test]
    fn incomplete_uploads_are_aborted_by_prefix_after_their_days() {
        let mut r = rule("mpu");
        r.filter.prefix = "tmp/".into();
        r.abort_incomplete_days = Some(2);
        let c = LifecycleConfig { rules: vec![r] };
        assert_eq!(c.abort_due("tmp/x", 500, 2_999, 1_000), None);
        assert_eq!(c.abort_due("tmp/x", 500, 3_000, 1_000), Some("mpu"));
        assert_eq!(c.abort_due("keep/x", 500, 9_000, 1_000), None);
    }
}

#[cfg(test)]
mod marker_tests {
    use super::*;

    #[test]
    fn lone_markers_go_under_expired_marker_rules_at_once_and_under_days_rules_when_old() {
        let rule = |expiration| Rule {
            id: "r".into(),
            enabled: true,
            filter: Filter {
                prefix: "m/".into(),
                ..Filter::default()
            },
            expiration: Some(expiration),
            noncurrent_expiration: None,
            abort_incomplete_days: None,
            ..Rule::default()
        };
        let flag = LifecycleConfig {
            rules: vec![rule(Expiration::ExpiredObjectDeleteMarker)],
        };
        assert!(flag.lone_marker_due("m/x", 1_500, 1_500, 1_000));
        assert!(!flag.lone_marker_due("other/x", 1_500, 9_000, 1_000));
        let days = LifecycleConfig {
            rules: vec![rule(Expiration::Days(2))],
        };
        assert!(!days.lone_marker_due("m/x", 1_500, 3_999, 1_000));
        assert!(days.lone_marker_due("m/x", 1_500, 4_000, 1_000));
        let date = LifecycleConfig {
            rules: vec![rule(Expiration::Date(0))],
        };
        assert!(!date.lone_marker_due("m/x", 1_500, 9_000, 1_000));
    }
}
