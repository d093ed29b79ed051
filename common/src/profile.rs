//! Layouts (how a segment is cut into shards) and the gateway's size rules.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most shards one segment may have: shard indexes are one byte.
pub const SHARDS_MAX: usize = 256;

/// How one segment's bytes are spread over shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// The gateway's size rules. Storage classes (layouts, zones, the
/// small-object threshold) are cluster state in metad since classes became
/// data ([`crate::storage_class`]); the old per-gateway settings are still
/// read, only to refuse them with a message that says where they went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    /// Largest segment; bigger objects are cut into several segments.
    pub segment_bytes_max: u64,
    /// Refused: classes live in metad.
    #[serde(default, skip_serializing)]
    pub classes: Option<serde::de::IgnoredAny>,
    /// Refused: a class setting now.
    #[serde(default, skip_serializing)]
    pub small_object_bytes_max: Option<serde::de::IgnoredAny>,
    /// Refused: a class setting now.
    #[serde(default, skip_serializing)]
    pub small_object_copies: Option<serde::de::IgnoredAny>,
}

/// Default unit: 1 MiB per shard per stripe.
pub const UNIT_BYTES_DEFAULT: u32 = 1 << 20;

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            segment_bytes_max: 64 << 20,
            classes: None,
            small_object_bytes_max: None,
            small_object_copies: None,
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
    /// Checks the size rules, and refuses the class settings that moved to
    /// metad (a gateway that silently ignored them would write objects in
    /// a layout its operator did not choose).
    pub fn validate(&self) -> Result<(), ProfileError> {
        for (set, name) in [
            (self.classes.is_some(), "classes"),
            (
                self.small_object_bytes_max.is_some(),
                "small_object_bytes_max",
            ),
            (self.small_object_copies.is_some(), "small_object_copies"),
        ] {
            if set {
                return Err(bad(
                    name,
                    "moved to metad: storage classes are cluster state now and are not read from here (a gateway's old classes are not imported: set them in metad's `storage_classes` or with `weft class set`); remove it here",
                ));
            }
        }
        if self.segment_bytes_max == 0 {
            return Err(bad(
                "segment_bytes_max",
                "0; use a positive segment size, e.g. 67108864 (64 MiB)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_of_the_default_layouts() {
        let standard = crate::storage_class::default_classes()
            .into_iter()
            .find(|c| c.name == crate::storage_class::DEFAULT_CLASS)
            .unwrap();
        let l = standard.layout;
        assert_eq!(l.width(), 6);
        assert_eq!(l.read_quorum(), 4);
        assert_eq!(l.write_quorum(), 5);
        let small = standard.layout_for(standard.small_object_bytes);
        assert_eq!(small, Layout::Replicated { copies: 3 });
        assert_eq!(small.write_quorum(), 2);
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Profiles::default().validate(), Ok(()));
    }

    #[test]
    fn too_many_shards_are_refused_with_the_limit() {
        let e = Layout::Erasure {
            k: 200,
            m: 100,
            unit_bytes: 1024,
        }
        .validate("classes.STANDARD")
        .unwrap_err();
        assert_eq!(e.problem, "k+m = 300 exceeds 256; use at most 256 shards");
        let ok = Layout::Erasure {
            k: 200,
            m: 56,
            unit_bytes: 1024,
        };
        assert_eq!(ok.validate("x"), Ok(()));
    }

    #[test]
    fn zero_data_shards_zero_unit_and_zero_copies_are_refused() {
        let k0 = Layout::Erasure {
            k: 0,
            m: 2,
            unit_bytes: 1024,
        };
        assert!(k0.validate("x").unwrap_err().problem.starts_with("k = 0"));
        let unit0 = Layout::Erasure {
            k: 4,
            m: 2,
            unit_bytes: 0,
        };
        assert!(unit0
            .validate("x")
            .unwrap_err()
            .problem
            .starts_with("unit_bytes = 0"));
        let copies0 = Layout::Replicated { copies: 0 };
        assert!(copies0
            .validate("x")
            .unwrap_err()
            .problem
            .starts_with("copies = 0"));
    }

    #[test]
    fn class_settings_here_are_refused_saying_they_moved_to_metad() {
        let p: Profiles = serde_json::from_str(
            r#"{"segment_bytes_max": 1024, "classes": [{"name": "STANDARD"}]}"#,
        )
        .unwrap();
        let e = p.validate().unwrap_err();
        assert_eq!(e.setting, "classes");
        assert!(e.problem.starts_with("moved to metad"), "{}", e.problem);
        let p = Profiles {
            segment_bytes_max: 0,
            ..Profiles::default()
        };
        assert_eq!(p.validate().unwrap_err().setting, "segment_bytes_max");
    }
}
