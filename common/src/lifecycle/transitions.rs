//! Transition rules: S3's validity rules for `Transition` and
//! `NoncurrentVersionTransition`, and which class a version is due to move
//! to.
//!
//! Classes only move "down" S3's waterfall (STANDARD → STANDARD_IA →
//! INTELLIGENT_TIERING → ONEZONE_IA → GLACIER_IR → GLACIER → DEEP_ARCHIVE):
//! a rule never moves a version to a class ranked at or above its own, so
//! an object copied to GLACIER_IR by hand is not pulled back to
//! STANDARD_IA by an older stage of a rule. A class an operator defined
//! ranks between ONEZONE_IA and GLACIER_IR.

use super::{due_after, Current, LifecycleConfig, Rule, RuleError, TransitionAt};
use std::collections::BTreeMap;

/// Objects smaller than this are not transitioned unless the rule's filter
/// names a smaller `ObjectSizeGreaterThan` (AWS's default minimum,
/// `all_storage_classes_128K`): moving them costs more than it saves.
pub const TRANSITION_MIN_BYTES: u64 = 128 * 1024;

/// AWS's minimum age for a move into an infrequent-access class.
const IA_MIN_DAYS: u32 = 30;

/// Where `class` stands in S3's waterfall (0 is the hottest).
pub fn class_rank(class: &str) -> u8 {
    match class {
        "STANDARD" | "REDUCED_REDUNDANCY" => 0,
        "STANDARD_IA" => 1,
        "INTELLIGENT_TIERING" => 2,
        "ONEZONE_IA" => 3,
        "GLACIER_IR" => 5,
        "GLACIER" => 6,
        "DEEP_ARCHIVE" => 7,
        _ => 4,
    }
}

fn infrequent(class: &str) -> bool {
    matches!(class, "STANDARD_IA" | "ONEZONE_IA")
}

/// A noncurrent version as the transition rules see it: size, tags, when
/// it became noncurrent (ms) and its class.
pub type NoncurrentOf<'a> = (u64, &'a BTreeMap<String, String>, u64, &'a str);

/// Whether a rule's size filter lets an object of `size` transition.
fn big_enough(r: &Rule, size: u64) -> bool {
    r.filter.size_greater_than.is_some() || size >= TRANSITION_MIN_BYTES
}

pub(super) fn validate(r: &Rule, name: &str, day_ms: u64) -> Result<(), RuleError> {
    use RuleError::InvalidArgument as Arg;
    let mut seen: Vec<&str> = vec![];
    let (mut days, mut dates) = (false, false);
    for t in &r.transitions {
        if t.class.is_empty() || class_rank(&t.class) == 0 {
            return Err(Arg(format!(
                "{name}: a Transition needs a StorageClass other than STANDARD"
            )));
        }
        if seen.contains(&t.class.as_str()) {
            return Err(Arg(format!(
                "{name}: 'StorageClass' must be different for 'Transition' actions in the same rule ({} twice)",
                t.class
            )));
        }
        seen.push(&t.class);
        match t.at {
            TransitionAt::Days(d) => {
                days = true;
                if infrequent(&t.class) && d < IA_MIN_DAYS {
                    return Err(Arg(format!(
                        "{name}: 'Days' in Transition action must be greater than or equal to {IA_MIN_DAYS} for storageClass '{}'",
                        t.class
                    )));
                }
                if let Some(super::Expiration::Days(e)) = r.expiration {
                    if e <= d {
                        return Err(Arg(format!(
                            "{name}: 'Days' in the Expiration action must be greater than 'Days' in the Transition action to {}",
                            t.class
                        )));
                    }
                }
            }
            TransitionAt::Date(ms) => {
                dates = true;
                if ms % day_ms.max(1) != 0 {
                    return Err(Arg(format!(
                        "{name}: Transition Date must be at midnight UTC"
                    )));
                }
            }
        }
    }
    if days && dates {
        return Err(Arg(format!(
            "{name}: found mixed 'Date' and 'Days' based Transition actions"
        )));
    }
    match r.expiration {
        Some(super::Expiration::Date(_)) if days => {
            return Err(Arg(format!(
                "{name}: found mixed 'Date' and 'Days' based Expiration and Transition actions"
            )))
        }
        Some(super::Expiration::Days(_)) if dates => {
            return Err(Arg(format!(
                "{name}: found mixed 'Date' and 'Days' based Expiration and Transition actions"
            )))
        }
        Some(super::Expiration::Date(e)) => {
            if let Some(t) = r
                .transitions
                .iter()
                .find(|t| matches!(t.at, TransitionAt::Date(d) if d >= e))
            {
                return Err(Arg(format!(
                    "{name}: the Expiration Date must be later than the Transition Date to {}",
                    t.class
                )));
            }
        }
        _ => {}
    }
    // A colder class comes later: the stages must be in waterfall order.
    let mut stages: Vec<(u64, u8, &str)> = r
        .transitions
        .iter()
        .map(|t| {
            let at = match t.at {
                TransitionAt::Days(d) => u64::from(d),
                TransitionAt::Date(ms) => ms,
            };
            (at, class_rank(&t.class), t.class.as_str())
        })
        .collect();
    stages.sort();
    for w in stages.windows(2) {
        if w[0].0 == w[1].0 || w[0].1 >= w[1].1 {
            return Err(Arg(format!(
                "{name}: the Transition to {} must come later than the one to {}, and be to a colder class",
                w[1].2, w[0].2
            )));
        }
        // AWS keeps an object in an infrequent-access class 30 days.
        if days && infrequent(w[0].2) && w[1].0 < w[0].0 + u64::from(IA_MIN_DAYS) {
            return Err(Arg(format!(
                "{name}: 'Days' in the Transition action for StorageClass '{}' must be 30 days more than 'Days' in the Transition action for StorageClass '{}'",
                w[1].2, w[0].2
            )));
        }
    }
    let mut seen: Vec<&str> = vec![];
    for t in &r.noncurrent_transitions {
        if t.class.is_empty() || class_rank(&t.class) == 0 {
            return Err(Arg(format!(
                "{name}: a NoncurrentVersionTransition needs a StorageClass other than STANDARD"
            )));
        }
        if seen.contains(&t.class.as_str()) {
            return Err(Arg(format!(
                "{name}: 'StorageClass' must be different for 'NoncurrentVersionTransition' actions in the same rule ({} twice)",
                t.class
            )));
        }
        seen.push(&t.class);
        if infrequent(&t.class) && t.days < IA_MIN_DAYS {
            return Err(Arg(format!(
                "{name}: 'NoncurrentDays' in NoncurrentVersionTransition action must be greater than or equal to {IA_MIN_DAYS} for storageClass '{}'",
                t.class
            )));
        }
        if let Some(k) = t.newer_noncurrent_versions {
            if k == 0 || k > super::NEWER_NONCURRENT_MAX {
                return Err(Arg(format!(
                    "{name}: NewerNoncurrentVersions must be between 1 and {}",
                    super::NEWER_NONCURRENT_MAX
                )));
            }
        }
        if let Some(o) = r.noncurrent_transitions.iter().find(|o| {
            o.class != t.class && (o.days < t.days) != (class_rank(&o.class) < class_rank(&t.class))
        }) {
            return Err(Arg(format!(
                "{name}: the NoncurrentVersionTransition to the colder of {} and {} must come later",
                o.class, t.class
            )));
        }
        if r.noncurrent_transitions
            .iter()
            .any(|o| o.class != t.class && o.days == t.days)
        {
            return Err(Arg(format!(
                "{name}: two NoncurrentVersionTransition actions have NoncurrentDays {}",
                t.days
            )));
        }
        if let Some(e) = r.noncurrent_expiration {
            if e.days <= t.days {
                return Err(Arg(format!(
                    "{name}: 'NoncurrentDays' in the NoncurrentVersionExpiration action must be greater than 'NoncurrentDays' in the NoncurrentVersionTransition action to {}",
                    t.class
                )));
            }
        }
    }
    Ok(())
}

impl LifecycleConfig {
    /// The class the current version `v` (now in `class`) is due to move
    /// to at `now_ms`: of every stage of every enabled rule that selects it
    /// and is due, the coldest, if colder than where it is.
    pub fn transition_due(
        &self,
        v: &Current<'_>,
        class: &str,
        now_ms: u64,
        day_ms: u64,
    ) -> Option<&str> {
        self.rules
            .iter()
            .filter(|r| r.enabled && r.filter.matches(v.key, v.size, v.tags))
            .filter(|r| big_enough(r, v.size))
            .flat_map(|r| r.transitions.iter())
            .filter(|t| {
                let at = match t.at {
                    TransitionAt::Days(d) => due_after(v.modified_ms, d, day_ms),
                    TransitionAt::Date(ms) => ms,
                };
                at <= now_ms
            })
            .map(|t| t.class.as_str())
            .filter(|c| class_rank(c) > class_rank(class))
            .max_by_key(|c| class_rank(c))
    }

    /// Which of a key's noncurrent versions (newest first) are due to move,
    /// and where: per version, the coldest due stage of any rule that
    /// selects it, if colder than its class. A rule leaves its
    /// `NewerNoncurrentVersions` newest selected versions alone.
    pub fn noncurrent_transitions_due(
        &self,
        key: &str,
        noncurrent: &[NoncurrentOf<'_>],
        now_ms: u64,
        day_ms: u64,
    ) -> Vec<(usize, String)> {
        let mut best: BTreeMap<usize, &str> = BTreeMap::new();
        for r in self.rules.iter().filter(|r| r.enabled) {
            for t in &r.noncurrent_transitions {
                let keep = t.newer_noncurrent_versions.unwrap_or(0) as usize;
                let mut newer = 0usize;
                for (i, (size, tags, since, class)) in noncurrent.iter().enumerate() {
                    if !r.filter.matches(key, *size, tags) || !big_enough(r, *size) {
                        continue;
                    }
                    if newer >= keep
                        && due_after(*since, t.days, day_ms) <= now_ms
                        && class_rank(&t.class) > class_rank(class)
                        && best
                            .get(&i)
                            .is_none_or(|b| class_rank(b) < class_rank(&t.class))
                    {
                        best.insert(i, &t.class);
                    }
                    newer += 1;
                }
            }
        }
        best.into_iter().map(|(i, c)| (i, c.to_string())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Expiration, NoncurrentTransition, Transition};
    use super::*;

    const DAY: u64 = 86_400_000;

    fn to(class: &str, days: u32) -> Transition {
        Transition {
            at: TransitionAt::Days(days),
            class: class.into(),
        }
    }

    fn rule(transitions: Vec<Transition>) -> Rule {
        Rule {
            id: "t".into(),
            enabled: true,
            transitions,
            ..Rule::default()
        }
    }

    fn check(r: Rule) -> Result<(), RuleError> {
        LifecycleConfig { rules: vec![r] }.validate(DAY)
    }

    #[test]
    fn transition_rules_are_refused_as_s3_refuses_them() {
        let bad = |r: Rule, needle: &str| match check(r) {
            Err(RuleError::InvalidArgument(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("{needle}: {other:?}"),
        };
        bad(
            rule(vec![to("STANDARD_IA", 29)]),
            "greater than or equal to 30",
        );
        bad(
            rule(vec![to("ONEZONE_IA", 1)]),
            "greater than or equal to 30",
        );
        bad(rule(vec![to("STANDARD", 40)]), "other than STANDARD");
        bad(
            rule(vec![to("GLACIER_IR", 40), to("GLACIER_IR", 50)]),
            "different",
        );
        bad(
            rule(vec![to("GLACIER_IR", 30), to("STANDARD_IA", 60)]),
            "colder",
        );
        bad(
            rule(vec![
                to("STANDARD_IA", 30),
                Transition {
                    at: TransitionAt::Date(DAY * 100),
                    class: "GLACIER_IR".into(),
                },
            ]),
            "mixed",
        );
        let mut r = rule(vec![to("GLACIER_IR", 10)]);
        r.expiration = Some(Expiration::Days(10));
        bad(r, "Expiration");
        let mut r = rule(vec![]);
        r.noncurrent_transitions = vec![NoncurrentTransition {
            days: 5,
            newer_noncurrent_versions: None,
            class: "STANDARD_IA".into(),
        }];
        bad(r, "NoncurrentDays");
        bad(
            rule(vec![to("STANDARD_IA", 30), to("GLACIER_IR", 59)]),
            "30 days more",
        );
        let mut r = rule(vec![to("GLACIER_IR", 10)]);
        r.expiration = Some(Expiration::Date(DAY * 100));
        bad(r, "mixed");
        let mut r = rule(vec![]);
        r.noncurrent_transitions = vec![
            NoncurrentTransition {
                days: 60,
                newer_noncurrent_versions: None,
                class: "STANDARD_IA".into(),
            },
            NoncurrentTransition {
                days: 40,
                newer_noncurrent_versions: None,
                class: "GLACIER_IR".into(),
            },
        ];
        bad(r, "must come later");
        // Accepted: GLACIER_IR needs no minimum, IA at 30, 30 days in IA.
        check(rule(vec![to("STANDARD_IA", 30), to("GLACIER_IR", 60)])).unwrap();
        check(rule(vec![to("GLACIER_IR", 0)])).unwrap();
    }

    #[test]
    fn the_coldest_due_stage_wins_and_classes_never_move_up() {
        let c = LifecycleConfig {
            rules: vec![rule(vec![to("STANDARD_IA", 30), to("GLACIER_IR", 60)])],
        };
        let tags = BTreeMap::new();
        let v = Current {
            key: "k",
            size: TRANSITION_MIN_BYTES,
            tags: &tags,
            modified_ms: 500,
        };
        let at = |now| c.transition_due(&v, "STANDARD", now, 1_000);
        assert_eq!(at(30_999), None);
        assert_eq!(at(31_000), Some("STANDARD_IA"));
        assert_eq!(at(60_999), Some("STANDARD_IA"));
        assert_eq!(at(61_000), Some("GLACIER_IR"));
        assert_eq!(c.transition_due(&v, "STANDARD_IA", 31_000, 1_000), None);
        assert_eq!(c.transition_due(&v, "GLACIER_IR", 99_000, 1_000), None);
        // Small objects stay put unless the filter says otherwise.
        let small = Current { size: 1_000, ..v };
        assert_eq!(c.transition_due(&small, "STANDARD", 99_000, 1_000), None);
        let mut r = rule(vec![to("GLACIER_IR", 1)]);
        r.filter.size_greater_than = Some(10);
        let c = LifecycleConfig { rules: vec![r] };
        assert_eq!(
            c.transition_due(&small, "STANDARD", 99_000, 1_000),
            Some("GLACIER_IR")
        );
    }

    #[test]
    fn noncurrent_versions_move_after_their_days_keeping_the_newest() {
        let mut r = rule(vec![]);
        r.noncurrent_transitions = vec![NoncurrentTransition {
            days: 1,
            newer_noncurrent_versions: Some(1),
            class: "GLACIER_IR".into(),
        }];
        let c = LifecycleConfig { rules: vec![r] };
        let t = BTreeMap::new();
        let big = TRANSITION_MIN_BYTES;
        let versions = [
            (big, &t, 5_000, "STANDARD"),
            (big, &t, 3_000, "STANDARD"),
            (big, &t, 1_000, "GLACIER_IR"),
        ];
        assert_eq!(
            c.noncurrent_transitions_due("k", &versions, 9_000, 1_000),
            vec![(1, "GLACIER_IR".to_string())]
        );
    }
}
