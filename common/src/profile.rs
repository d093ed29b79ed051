//! Storage classes and the layouts they name.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most shards one segment may have: shard indexes are one byte.
pub const SHARDS_MAX: usize = 256;

/// How one segment's bytes are spread over shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Layout {
    /// `copies` full copies of the segment.
    Replicated {
        /// Number of full copies.
        copies: u8,
    },
    /// Reed-Solomon: `k` data shards and `m` parity shards, built stripe by
    /// stripe with `unit_bytes` per shard per stripe.
    Erasure {
        /// Data shards.
        k: u8,
        /// Parity shards.
        m: u8,
        /// Bytes of one shard in one full stripe.
        unit_bytes: u32,
    },
}

impl Layout {
    /// Number of shards (files) a segment of this layout has.
    pub fn width(&self) -> usize {
        match *self {
            Layout::Replicated { copies } => usize::from(copies),
            Layout::Erasure { k, m, .. } => usize::from(k) + usize::from(m),
        }
    }

    /// Shards that must hold a readable copy for the segment to be readable.
    pub fn read_quorum(&self) -> usize {
        match *self {
            Layout::Replicated { .. } => 1,
            Layout::Erasure { k, .. } => usize::from(k),
        }
    }

    /// Shards that must be durable before a write is acknowledged: one more
    /// than the read quorum, so that one further loss still leaves it readable
    /// (capped at the width).
    pub fn write_quorum(&self) -> usize {
        match *self {
            Layout::Replicated { copies } => usize::from(copies).min(2),
            Layout::Erasure { k, m, .. } => {
                (usize::from(k) + 1).min(usize::from(k) + usize::from(m))
            }
        }
    }
}

/// A storage class profile: the layout for large objects and whether shards
/// must be spread across zones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageClassProfile {
    /// S3 name, e.g. `STANDARD`.
    pub name: String,
    /// Layout of segments larger than the small-object threshold.
    pub layout: Layout,
    /// At most ⌈width/zones⌉ shards in any zone, so one zone's loss costs at
    /// most `m` shards.
    pub spread_zones: bool,
}

/// The storage classes a cluster offers plus the size rules that pick layouts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiles {
    /// Known classes; the first is the default.
    pub classes: Vec<StorageClassProfile>,
    /// Objects at or below this size are stored as replicas, not EC.
    pub small_object_bytes_max: u64,
    /// Copies for small objects.
    pub small_object_copies: u8,
    /// Largest segment; bigger objects are cut into several segments.
    pub segment_bytes_max: u64,
}

/// Default unit: 1 MiB per shard per stripe.
pub const UNIT_BYTES_DEFAULT: u32 = 1 << 20;

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            classes: vec![StorageClassProfile {
                name: "STANDARD".into(),
                layout: Layout::Erasure {
                    k: 4,
                    m: 2,
                    unit_bytes: UNIT_BYTES_DEFAULT,
                },
                spread_zones: true,
            }],
            small_object_bytes_max: 64 * 1024,
            small_object_copies: 3,
            segment_bytes_max: 64 << 20,
        }
    }
}

impl Profiles {
    /// Finds a class by S3 name; `None` means the default class.
    pub fn class(&self, name: Option<&str>) -> Option<&StorageClassProfile> {
        match name {
            None => self.classes.first(),
            Some(n) => self.classes.iter().find(|c| c.name == n),
        }
    }

    /// The layout a segment of `segment_bytes` bytes of an object of
    /// `object_bytes` bytes gets in `class`.
    pub fn layout_for(&self, class: &StorageClassProfile, object_bytes: u64) -> Layout {
        if object_bytes <= self.small_object_bytes_max {
            Layout::Replicated {
                copies: self.small_object_copies,
            }
        } else {
            class.layout
        }
    }
}

/// A profile setting that cannot work, found when a gateway starts rather
/// than at the first PUT that needs it. The message names the setting (as
/// written in the gateway's TOML) and the fix.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("profiles.{setting}: {problem}")]
pub struct ProfileError {
    /// Path of the offending setting under `profiles`, e.g. `classes.STANDARD`.
    pub setting: String,
    /// What is wrong and what to do.
    pub problem: String,
}

fn bad(setting: impl Into<String>, problem: impl Into<String>) -> ProfileError {
    ProfileError {
        setting: setting.into(),
        problem: problem.into(),
    }
}

impl Layout {
    /// Checks the geometry; `at` names the setting in messages.
    pub fn validate(&self, at: &str) -> Result<(), ProfileError> {
        match *self {
            Layout::Replicated { copies } => {
                if copies == 0 {
                    return Err(bad(at, "copies = 0; use at least 1 copy"));
                }
            }
            Layout::Erasure { k, m, unit_bytes } => {
                if k == 0 {
                    return Err(bad(at, "k = 0; use at least 1 data shard"));
                }
                let width = usize::from(k) + usize::from(m);
                if width > SHARDS_MAX {
                    return Err(bad(
                        at,
                        format!(
                            "k+m = {width} exceeds {SHARDS_MAX}; use at most {SHARDS_MAX} shards"
                        ),
                    ));
                }
                if unit_bytes == 0 {
                    return Err(bad(
                        at,
                        format!("unit_bytes = 0; use a positive unit, e.g. {UNIT_BYTES_DEFAULT}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Profiles {
    /// Checks every class and the size rules, so a bad profile stops the
    /// gateway at start instead of failing PUTs (or writing segments no
    /// reader can decode) later.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.classes.is_empty() {
            return Err(bad(
                "classes",
                "no storage class; define at least one (the first is the default)",
            ));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.name.is_empty() {
                return Err(bad(
                    format!("classes[{i}].name"),
                    "empty; give the class its S3 name, e.g. STANDARD",
                ));
            }
            if self.classes[..i].iter().any(|o| o.name == c.name) {
                return Err(bad(
                    format!("classes.{}", c.name),
                    "defined twice; give each class a distinct name",
                ));
            }
            c.layout.validate(&format!("classes.{}", c.name))?;
        }
        if self.small_object_copies == 0 {
            return Err(bad(
                "small_object_copies",
                "0 copies; use at least 1 (3 is usual)",
            ));
        }
        if self.segment_bytes_max == 0 {
            return Err(bad(
                "segment_bytes_max",
                "0; use a positive segment size, e.g. 67108864 (64 MiB)",
            ));
        }
        if self.small_object_bytes_max > self.segment_bytes_max {
            return Err(bad(
                "small_object_bytes_max",
                format!(
                    "{} exceeds segment_bytes_max ({}); a small object is one replicated segment, so keep it at most segment_bytes_max",
                    self.small_object_bytes_max, self.segment_bytes_max
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_of_defaults() {
        let p = Profiles::default();
        let std = p.class(None).unwrap();
        assert_eq!(std.name, "STANDARD");
        let l = p.layout_for(std, 1 << 20);
        assert_eq!(l.width(), 6);
        assert_eq!(l.read_quorum(), 4);
        assert_eq!(l.write_quorum(), 5);
        let small = p.layout_for(std, 64 * 1024);
        assert_eq!(small, Layout::Replicated { copies: 3 });
        assert_eq!(small.write_quorum(), 2);
        assert!(p.class(Some("GLACIER")).is_none());
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Profiles::default().validate(), Ok(()));
    }

    fn with_layout(layout: Layout) -> Profiles {
        let mut p = Profiles::default();
        p.classes[0].layout = layout;
        p
    }

    #[test]
    fn too_many_shards_are_refused_with_the_limit() {
        let e = with_layout(Layout::Erasure {
            k: 200,
            m: 100,
            unit_bytes: 1024,
        })
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "profiles.classes.STANDARD: k+m = 300 exceeds 256; use at most 256 shards"
        );
        // 256 exactly is fine.
        let ok = with_layout(Layout::Erasure {
            k: 200,
            m: 56,
            unit_bytes: 1024,
        });
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn zero_data_shards_zero_unit_and_zero_copies_are_refused() {
        let k0 = with_layout(Layout::Erasure {
            k: 0,
            m: 2,
            unit_bytes: 1024,
        });
        assert!(k0.validate().unwrap_err().problem.starts_with("k = 0"));
        let unit0 = with_layout(Layout::Erasure {
            k: 4,
            m: 2,
            unit_bytes: 0,
        });
        assert!(unit0
            .validate()
            .unwrap_err()
            .problem
            .starts_with("unit_bytes = 0"));
        let copies0 = with_layout(Layout::Replicated { copies: 0 });
        assert!(copies0
            .validate()
            .unwrap_err()
            .problem
            .starts_with("copies = 0"));
        let small0 = Profiles {
            small_object_copies: 0,
            ..Profiles::default()
        };
        assert_eq!(
            small0.validate().unwrap_err().setting,
            "small_object_copies"
        );
    }

    #[test]
    fn inconsistent_thresholds_and_class_lists_are_refused() {
        let mut p = Profiles::default();
        p.small_object_bytes_max = p.segment_bytes_max + 1;
        assert_eq!(p.validate().unwrap_err().setting, "small_object_bytes_max");
        let p = Profiles {
            segment_bytes_max: 0,
            small_object_bytes_max: 0,
            ..Profiles::default()
        };
        assert_eq!(p.validate().unwrap_err().setting, "segment_bytes_max");
        let mut p = Profiles::default();
        p.classes.clear();
        assert_eq!(p.validate().unwrap_err().setting, "classes");
        let mut p = Profiles::default();
        p.classes.push(p.classes[0].clone());
        assert_eq!(p.validate().unwrap_err().setting, "classes.STANDARD");
    }
}
