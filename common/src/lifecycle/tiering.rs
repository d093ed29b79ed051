//! Tiering by access: S3 Intelligent-Tiering for objects of the
//! `INTELLIGENT_TIERING` class, and Weft's "not read for N days → class X"
//! rule for any bucket.
//!
//! An `INTELLIGENT_TIERING` object keeps reporting that class while its
//! bytes sit in one of the access tiers below. Each tier is placed by the
//! definition of an ordinary class ([`AccessTier::placement_class`]), so
//! the operator shapes tiers with `weft class set` as any class. Idle time
//! is counted from the later of the last read a gateway reported and the
//! write; unlike rule days it is not rounded to a day boundary (S3 counts
//! "30 consecutive days without access").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{class_rank, Filter, RuleError, TRANSITION_MIN_BYTES};

/// The class whose objects move between tiers by access.
pub const IT_CLASS: &str = "INTELLIGENT_TIERING";

/// Days without a read before the infrequent tier (S3's fixed 30).
pub const INFREQUENT_DAYS: u32 = 30;
/// Days without a read before the archive instant tier (S3's fixed 90).
pub const ARCHIVE_INSTANT_DAYS: u32 = 90;

/// Reads one `RecordAccess` carries at most: a gateway sends more as more
/// commands.
pub const READS_PER_COMMAND: usize = 1_000;

/// Configurations per bucket, as S3 allows.
pub const CONFIGS_MAX: usize = 1000;

/// The tier an `INTELLIGENT_TIERING` object sits in, below the frequent
/// tier (which is the class's own definition: no tier recorded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessTier {
    /// After [`INFREQUENT_DAYS`] unread.
    InfrequentAccess,
    /// After [`ARCHIVE_INSTANT_DAYS`] unread.
    ArchiveInstantAccess,
    /// After a bucket configuration's `ARCHIVE_ACCESS` days.
    ArchiveAccess,
    /// After a bucket configuration's `DEEP_ARCHIVE_ACCESS` days.
    DeepArchiveAccess,
}

impl AccessTier {
    /// The classes whose definition may place this tier's bytes, the
    /// first one defined winning: the archive tiers use `GLACIER` and
    /// `DEEP_ARCHIVE` where an operator defined them (Weft defines neither
    /// by default, as it has no offline tier), else `GLACIER_IR`'s.
    pub fn placement_classes(self) -> &'static [&'static str] {
        match self {
            AccessTier::InfrequentAccess => &["STANDARD_IA"],
            AccessTier::ArchiveInstantAccess => &["GLACIER_IR"],
            AccessTier::ArchiveAccess => &["GLACIER", "GLACIER_IR"],
            AccessTier::DeepArchiveAccess => &["DEEP_ARCHIVE", "GLACIER", "GLACIER_IR"],
        }
    }

    /// The class that places this tier among those `defined`.
    pub fn placement_class(self, defined: impl Fn(&str) -> bool) -> &'static str {
        let all = self.placement_classes();
        all.iter()
            .copied()
            .find(|c| defined(c))
            .unwrap_or(all[all.len() - 1])
    }

    /// S3's name of the tier.
    pub fn s3_name(self) -> &'static str {
        match self {
            AccessTier::InfrequentAccess => "INFREQUENT_ACCESS",
            AccessTier::ArchiveInstantAccess => "ARCHIVE_INSTANT_ACCESS",
            AccessTier::ArchiveAccess => "ARCHIVE_ACCESS",
            AccessTier::DeepArchiveAccess => "DEEP_ARCHIVE_ACCESS",
        }
    }
}

/// The class whose definition places a tier among those `defined`
/// (`None`: the frequent tier, placed by `INTELLIGENT_TIERING` itself).
pub fn tier_class(tier: Option<AccessTier>, defined: impl Fn(&str) -> bool) -> &'static str {
    tier.map_or(IT_CLASS, |t| t.placement_class(defined))
}

/// One of a bucket's `IntelligentTieringConfiguration`s: the opt-in
/// archive tiers for the objects its filter selects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TieringConfig {
    /// Its id (the S3 `Id`).
    pub id: String,
    /// `Status` is `Enabled`.
    pub enabled: bool,
    /// Prefix and tags (no sizes: S3's filter has none).
    #[serde(default)]
    pub filter: Filter,
    /// Days unread before `ARCHIVE_ACCESS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_days: Option<u32>,
    /// Days unread before `DEEP_ARCHIVE_ACCESS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep_archive_days: Option<u32>,
}

impl TieringConfig {
    /// Checks it as S3 does (`InvalidArgument` naming what is wrong).
    pub fn validate(&self) -> Result<(), RuleError> {
        use RuleError::{InvalidArgument as Arg, Malformed};
        if self.id.is_empty() || self.id.len() > 64 {
            return Err(Arg(
                "an IntelligentTieringConfiguration Id must be 1 to 64 characters".into(),
            ));
        }
        if self.filter.size_greater_than.is_some() || self.filter.size_less_than.is_some() {
            return Err(Malformed(
                "an Intelligent-Tiering filter has only Prefix and Tag".into(),
            ));
        }
        if self.archive_days.is_none() && self.deep_archive_days.is_none() {
            return Err(Malformed(format!(
                "configuration {}: at least one Tiering (ARCHIVE_ACCESS or DEEP_ARCHIVE_ACCESS) is required",
                self.id
            )));
        }
        if let Some(d) = self.archive_days {
            if !(90..=730).contains(&d) {
                return Err(Arg(format!(
                    "configuration {}: ARCHIVE_ACCESS Days must be between 90 and 730, not {d}",
                    self.id
                )));
            }
        }
        if let Some(d) = self.deep_archive_days {
            if !(180..=730).contains(&d) {
                return Err(Arg(format!(
                    "configuration {}: DEEP_ARCHIVE_ACCESS Days must be between 180 and 730, not {d}",
                    self.id
                )));
            }
            if self.archive_days.is_some_and(|a| a >= d) {
                return Err(Arg(format!(
                    "configuration {}: DEEP_ARCHIVE_ACCESS Days must be more than ARCHIVE_ACCESS Days",
                    self.id
                )));
            }
        }
        Ok(())
    }
}

/// Weft's extension beside the S3 rules: current versions of keys under
/// `prefix` not read for `days` move to `class` (one way, as a lifecycle
/// transition; a later read does not bring them back).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadRule {
    /// Keys it covers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Days without a read.
    pub days: u32,
    /// Where they go.
    pub class: String,
    /// When the rule was set, ms (gateway-stamped): reads were not noted
    /// before, so idle time counts from here at the earliest.
    #[serde(default)]
    pub since_ms: u64,
}

impl UnreadRule {
    /// Checks it (the class's existence is checked where classes are known).
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.days == 0 {
            return Err(RuleError::InvalidArgument(
                "--unread-days must be at least 1".into(),
            ));
        }
        if self.class == IT_CLASS {
            return Err(RuleError::InvalidArgument(format!(
                "{IT_CLASS} tiers objects by access itself; an unread rule moves to a fixed class"
            )));
        }
        if class_rank(&self.class) == 0 {
            return Err(RuleError::InvalidArgument(format!(
                "{} is the top of S3's waterfall: an unread rule only moves objects down it (to STANDARD_IA, ONEZONE_IA, GLACIER_IR, ...)",
                self.class
            )));
        }
        Ok(())
    }
}

/// A bucket's tiering by access: S3 configurations and unread rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiering {
    /// `IntelligentTieringConfiguration`s by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, TieringConfig>,
    /// Unread rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<UnreadRule>,
}

impl Tiering {
    /// Whether it says nothing (the bucket then stores none).
    pub fn is_empty(&self) -> bool {
        self.configs.is_empty() && self.unread.is_empty()
    }
}

/// One change to a bucket's [`Tiering`] (`Command::SetBucketTiering`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieringChange {
    /// Put (`Some`) or delete configuration `id`.
    Config {
        /// The id.
        id: String,
        /// The configuration; `None` deletes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<TieringConfig>,
    },
    /// Replace the unread rules (empty removes them).
    Unread {
        /// The rules.
        rules: Vec<UnreadRule>,
    },
}

impl Tiering {
    /// `self` with `change` made.
    pub fn with(mut self, change: &TieringChange) -> Tiering {
        match change {
            TieringChange::Config { id, config: None } => {
                self.configs.remove(id);
            }
            TieringChange::Config {
                id,
                config: Some(c),
            } => {
                self.configs.insert(id.clone(), c.clone());
            }
            TieringChange::Unread { rules } => self.unread = rules.clone(),
        }
        self
    }
}

/// A read a gateway noted (`Command::RecordAccess`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The version read (internal id).
    pub version_id: crate::VersionId,
    /// When, gateway time, ms.
    pub at_ms: u64,
}

/// What the tiering of one version is judged on.
pub struct Accessed<'a> {
    /// Its key.
    pub key: &'a str,
    /// Its size.
    pub size: u64,
    /// Its tags.
    pub tags: &'a BTreeMap<String, String>,
    /// The later of its write and its last reported read, ms.
    pub touched_ms: u64,
}

impl Accessed<'_> {
    fn idle_days(&self, now_ms: u64, day_ms: u64) -> u64 {
        now_ms.saturating_sub(self.touched_ms) / day_ms.max(1)
    }
}

/// The tier an `INTELLIGENT_TIERING` version belongs in now (`None`: the
/// frequent tier). Objects below the transition minimum are not monitored
/// and stay frequent, as in S3.
pub fn tier_due(
    tiering: Option<&Tiering>,
    v: &Accessed<'_>,
    now_ms: u64,
    day_ms: u64,
) -> Option<AccessTier> {
    if v.size < TRANSITION_MIN_BYTES {
        return None;
    }
    let idle = v.idle_days(now_ms, day_ms);
    let mut archive = None::<u32>;
    let mut deep = None::<u32>;
    for c in tiering
        .into_iter()
        .flat_map(|t| t.configs.values())
        .filter(|c| c.enabled && c.filter.matches(v.key, v.size, v.tags))
    {
        let min = |a: Option<u32>, b: Option<u32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        archive = min(archive, c.archive_days);
        deep = min(deep, c.deep_archive_days);
    }
    let past = |d: Option<u32>| d.is_some_and(|d| idle >= u64::from(d));
    if past(deep) {
        Some(AccessTier::DeepArchiveAccess)
    } else if past(archive) {
        Some(AccessTier::ArchiveAccess)
    } else if idle >= u64::from(ARCHIVE_INSTANT_DAYS) {
        Some(AccessTier::ArchiveInstantAccess)
    } else if idle >= u64::from(INFREQUENT_DAYS) {
        Some(AccessTier::InfrequentAccess)
    } else {
        None
    }
}

/// The class an unread rule moves a current version of `class` to now:
/// the coldest due, and only further down S3's waterfall.
pub fn unread_due<'t>(
    tiering: Option<&'t Tiering>,
    v: &Accessed<'_>,
    class: &str,
    now_ms: u64,
    day_ms: u64,
) -> Option<&'t str> {
    if class == IT_CLASS || v.size < TRANSITION_MIN_BYTES {
        return None;
    }
    tiering?
        .unread
        .iter()
        .filter(|r| {
            let idle = now_ms.saturating_sub(v.touched_ms.max(r.since_ms)) / day_ms.max(1);
            v.key.starts_with(&r.prefix) && idle >= u64::from(r.days)
        })
        .filter(|r| class_rank(&r.class) > class_rank(class))
        .max_by_key(|r| class_rank(&r.class))
        .map(|r| r.class.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 1_000;

    fn at(touched_days: u64, size: u64) -> (BTreeMap<String, String>, u64, u64) {
        (BTreeMap::new(), size, touched_days * DAY)
    }

    fn due(t: Option<&Tiering>, idle_days: u64) -> Option<AccessTier> {
        let (tags, size, _) = at(0, 1 << 20);
        let v = Accessed {
            key: "data/x",
            size,
            tags: &tags,
            touched_ms: 5 * DAY,
        };
        tier_due(t, &v, (5 + idle_days) * DAY + 1, DAY)
    }

    #[test]
    fn idle_days_walk_down_the_fixed_tiers() {
        assert_eq!(due(None, 29), None);
        assert_eq!(due(None, 30), Some(AccessTier::InfrequentAccess));
        assert_eq!(due(None, 89), Some(AccessTier::InfrequentAccess));
        assert_eq!(due(None, 90), Some(AccessTier::ArchiveInstantAccess));
        assert_eq!(due(None, 10_000), Some(AccessTier::ArchiveInstantAccess));
    }

    #[test]
    fn configured_archive_tiers_apply_to_matching_keys_only() {
        let mut t = Tiering::default();
        t.configs.insert(
            "a".into(),
            TieringConfig {
                id: "a".into(),
                enabled: true,
                filter: Filter {
                    prefix: "data/".into(),
                    ..Filter::default()
                },
                archive_days: Some(120),
                deep_archive_days: Some(200),
            },
        );
        assert_eq!(due(Some(&t), 119), Some(AccessTier::ArchiveInstantAccess));
        assert_eq!(due(Some(&t), 120), Some(AccessTier::ArchiveAccess));
        assert_eq!(due(Some(&t), 200), Some(AccessTier::DeepArchiveAccess));
        t.configs.get_mut("a").unwrap().filter.prefix = "logs/".into();
        assert_eq!(due(Some(&t), 200), Some(AccessTier::ArchiveInstantAccess));
        t.configs.get_mut("a").unwrap().filter.prefix = "data/".into();
        t.configs.get_mut("a").unwrap().enabled = false;
        assert_eq!(due(Some(&t), 200), Some(AccessTier::ArchiveInstantAccess));
    }

    #[test]
    fn small_objects_are_not_monitored() {
        let tags = BTreeMap::new();
        let v = Accessed {
            key: "k",
            size: TRANSITION_MIN_BYTES - 1,
            tags: &tags,
            touched_ms: 0,
        };
        assert_eq!(tier_due(None, &v, 1_000 * DAY, DAY), None);
    }

    #[test]
    fn configurations_are_checked_as_s3_checks_them() {
        let c = |a, d| TieringConfig {
            id: "c".into(),
            enabled: true,
            filter: Filter::default(),
            archive_days: a,
            deep_archive_days: d,
        };
        assert!(c(Some(90), None).validate().is_ok());
        assert!(c(None, Some(180)).validate().is_ok());
        assert!(matches!(
            c(None, None).validate(),
            Err(RuleError::Malformed(_))
        ));
        assert!(c(Some(89), None).validate().is_err());
        assert!(c(Some(731), None).validate().is_err());
        assert!(c(None, Some(179)).validate().is_err());
        let e = c(Some(200), Some(200)).validate().unwrap_err().to_string();
        assert!(e.contains("more than ARCHIVE_ACCESS"), "{e}");
        let mut long = c(Some(90), None);
        long.id = "x".repeat(65);
        assert!(long.validate().is_err());
    }

    #[test]
    fn unread_rules_move_only_down_the_waterfall_to_the_coldest_due() {
        let t = Tiering {
            configs: BTreeMap::new(),
            unread: vec![
                UnreadRule {
                    prefix: String::new(),
                    days: 10,
                    class: "STANDARD_IA".into(),
                    since_ms: 0,
                },
                UnreadRule {
                    prefix: String::new(),
                    days: 20,
                    class: "GLACIER_IR".into(),
                    since_ms: 0,
                },
            ],
        };
        let tags = BTreeMap::new();
        let v = Accessed {
            key: "k",
            size: 1 << 20,
            tags: &tags,
            touched_ms: 0,
        };
        assert_eq!(unread_due(Some(&t), &v, "STANDARD", 9 * DAY, DAY), None);
        assert_eq!(
            unread_due(Some(&t), &v, "STANDARD", 10 * DAY, DAY),
            Some("STANDARD_IA")
        );
        assert_eq!(
            unread_due(Some(&t), &v, "STANDARD", 25 * DAY, DAY),
            Some("GLACIER_IR")
        );
        assert_eq!(unread_due(Some(&t), &v, "GLACIER_IR", 25 * DAY, DAY), None);
        assert_eq!(unread_due(Some(&t), &v, IT_CLASS, 25 * DAY, DAY), None);
        // Idle time counts from when a rule was set at the earliest: reads
        // were not noted before it.
        let mut late = t.clone();
        late.unread[1].since_ms = 20 * DAY;
        assert_eq!(
            unread_due(Some(&late), &v, "STANDARD", 25 * DAY, DAY),
            Some("STANDARD_IA")
        );
        assert_eq!(
            unread_due(Some(&late), &v, "STANDARD", 40 * DAY, DAY),
            Some("GLACIER_IR")
        );
        let top = UnreadRule {
            prefix: String::new(),
            days: 5,
            class: "STANDARD".into(),
            since_ms: 0,
        };
        assert!(top.validate().is_err());
    }
}
