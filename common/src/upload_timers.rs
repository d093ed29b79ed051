//! The two timers that protect uploads in flight from garbage collection.
//!
//! A gateway writes an upload's shards before it commits the manifest; until
//! then no metadata references them, and datad's collector would remove them
//! as garbage once they are older than `gc_grace_ms`. The gateway therefore
//! refuses to commit an upload that has been writing for longer than
//! `upload_max_age_ms`, and the two must satisfy
//! `gc_grace_ms >= 2 * upload_max_age_ms` (the factor two absorbs clock
//! skew between file mtimes and the gateway's timer, and slow fsyncs).
//!
//! The rule spans two kinds of process, so it used to be a comment in two
//! config files. Now both are one piece of replicated metad state
//! ([`crate::rpc::Command::SetUploadTimers`], seeded from the first
//! leader's config and checked in apply), and gateways and data nodes ask
//! metad for it ([`crate::rpc::Query::UploadTimers`]), so the pair cannot
//! disagree between processes or between voters.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The timers as metad serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadTimers {
    /// Longest time one request may spend writing data before it commits.
    pub upload_max_age_ms: u64,
    /// Shard files younger than this are never garbage-collected.
    pub gc_grace_ms: u64,
}

impl Default for UploadTimers {
    fn default() -> Self {
        UploadTimers {
            upload_max_age_ms: 30 * 60 * 1000,
            gc_grace_ms: 3600 * 1000,
        }
    }
}

/// After a change, how long past the previous upload age its protection
/// lasts: covers the gateways' refresh (30 s), a lagging voter and clock
/// skew between the proposer and the voters that serve the pair.
pub const PROTECT_SLACK_MS: u64 = 5 * 60 * 1000;

/// The replicated state: the pair in force, and for a while after a change
/// the upload age the previous pair allowed. Gateways learn a shorter age
/// only at their next refresh, and an upload that began under the old age
/// may still commit until that age has passed; until then every data node,
/// including one that never saw the old pair, must keep files for twice the
/// old age. [`TimersRecord::served`] applies that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimersRecord {
    /// The pair set.
    pub timers: UploadTimers,
    /// Upload age still protected (0: none).
    #[serde(default)]
    pub protect_age_ms: u64,
    /// Wall time (ms since the epoch) until which it is.
    #[serde(default)]
    pub protect_until_ms: u64,
}

impl TimersRecord {
    /// The state after a change proposed at `at_ms` (proposer time, in the
    /// command, so every replica computes the same): fields left out keep
    /// their value. Refused if the result is unsafe, or if nothing is set
    /// yet and a field is missing.
    pub fn change(
        current: Option<&TimersRecord>,
        upload_max_age_ms: Option<u64>,
        gc_grace_ms: Option<u64>,
        at_ms: u64,
    ) -> Result<TimersRecord, TimerError> {
        let base = current.map(|c| c.timers);
        let timers = UploadTimers {
            upload_max_age_ms: upload_max_age_ms
                .or(base.map(|b| b.upload_max_age_ms))
                .ok_or(TimerError::Incomplete)?,
            gc_grace_ms: gc_grace_ms
                .or(base.map(|b| b.gc_grace_ms))
                .ok_or(TimerError::Incomplete)?,
        };
        timers.validate()?;
        if let Some(c) = current.filter(|c| c.timers == timers) {
            // Nothing changes (a re-applied command, or the pair set
            // again): the protection already running stays as it is.
            return Ok(*c);
        }
        let Some(current) = current else {
            return Ok(TimersRecord {
                timers,
                protect_age_ms: 0,
                protect_until_ms: 0,
            });
        };
        let mut protect = current.timers.upload_max_age_ms;
        if current.protect_until_ms > at_ms {
            protect = protect.max(current.protect_age_ms);
        }
        Ok(TimersRecord {
            timers,
            protect_age_ms: protect,
            protect_until_ms: at_ms
                .saturating_add(protect)
                .saturating_add(PROTECT_SLACK_MS),
        })
    }

    /// The pair processes should use at wall time `now_ms`: the grace
    /// raised to twice the protected age while the protection lasts.
    pub fn served(&self, now_ms: u64) -> UploadTimers {
        let mut t = self.timers;
        if now_ms < self.protect_until_ms {
            t.gc_grace_ms = t.gc_grace_ms.max(self.protect_age_ms.saturating_mul(2));
        }
        t
    }
}

/// Why a pair of timers is unsafe.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TimerError {
    /// A first setting must name both timers.
    #[error("no upload timers are set yet: give both upload_max_age_ms and gc_grace_ms")]
    Incomplete,
    /// A zero upload age would refuse every write.
    #[error("upload_max_age_ms = 0 refuses every upload; use at least a few minutes, e.g. 1800000 (30 min)")]
    ZeroUploadAge,
    /// The grace does not cover two upload ages.
    #[error("gc_grace_ms = {gc_grace_ms} is less than twice upload_max_age_ms = {upload_max_age_ms}: the garbage collector could remove shards of uploads still in flight; raise gc_grace_ms to at least {} or lower upload_max_age_ms to at most {}", upload_max_age_ms.saturating_mul(2), gc_grace_ms / 2)]
    GraceTooShort {
        /// Configured upload age.
        upload_max_age_ms: u64,
        /// Configured grace.
        gc_grace_ms: u64,
    },
}

impl UploadTimers {
    /// Checks `gc_grace_ms >= 2 * upload_max_age_ms` and a nonzero age.
    pub fn validate(&self) -> Result<(), TimerError> {
        if self.upload_max_age_ms == 0 {
            return Err(TimerError::ZeroUploadAge);
        }
        if self.gc_grace_ms < self.upload_max_age_ms.saturating_mul(2) {
            return Err(TimerError::GraceTooShort {
                upload_max_age_ms: self.upload_max_age_ms,
                gc_grace_ms: self.gc_grace_ms,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(UploadTimers::default().validate(), Ok(()));
    }

    #[test]
    fn grace_of_exactly_twice_the_age_is_accepted() {
        let t = UploadTimers {
            upload_max_age_ms: 1_000,
            gc_grace_ms: 2_000,
        };
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn grace_below_twice_the_age_is_refused_with_both_fixes() {
        let t = UploadTimers {
            upload_max_age_ms: 1_000,
            gc_grace_ms: 1_999,
        };
        let e = t.validate().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("raise gc_grace_ms to at least 2000"), "{msg}");
        assert!(
            msg.contains("lower upload_max_age_ms to at most 999"),
            "{msg}"
        );
    }

    fn pair(age: u64, grace: u64) -> UploadTimers {
        UploadTimers {
            upload_max_age_ms: age,
            gc_grace_ms: grace,
        }
    }

    #[test]
    fn a_first_setting_needs_both_and_protects_nothing() {
        assert_eq!(
            TimersRecord::change(None, Some(1_000), None, 0),
            Err(TimerError::Incomplete)
        );
        let r = TimersRecord::change(None, Some(1_000), Some(2_000), 0).unwrap();
        assert_eq!(r.served(0), pair(1_000, 2_000));
    }

    /// Lowering the pair from (60 min, 120 min) to (10 min, 20 min): until
    /// the old age plus the slack has passed, data nodes keep files for
    /// twice the old age, then for the new grace.
    #[test]
    fn a_lowered_age_keeps_the_old_grace_until_uploads_under_it_are_over() {
        let (min, t0) = (60_000, 1_000_000);
        let old = TimersRecord::change(None, Some(60 * min), Some(120 * min), 0).unwrap();
        let new = TimersRecord::change(Some(&old), Some(10 * min), Some(20 * min), t0).unwrap();
        assert_eq!(new.timers, pair(10 * min, 20 * min));
        assert_eq!(new.served(t0), pair(10 * min, 120 * min));
        let end = t0 + 60 * min + PROTECT_SLACK_MS;
        assert_eq!(new.served(end - 1), pair(10 * min, 120 * min));
        assert_eq!(new.served(end), pair(10 * min, 20 * min));
    }

    /// Two quick changes keep the longest age either protected.
    #[test]
    fn a_second_change_keeps_the_protection_of_the_first() {
        let min = 60_000;
        let a = TimersRecord::change(None, Some(60 * min), Some(120 * min), 0).unwrap();
        let b = TimersRecord::change(Some(&a), Some(30 * min), None, 1_000).unwrap();
        let c = TimersRecord::change(Some(&b), Some(10 * min), Some(20 * min), 2_000).unwrap();
        assert_eq!(c.protect_age_ms, 60 * min);
        assert_eq!(c.served(2_000).gc_grace_ms, 120 * min);
    }

    /// Applying the same change again (a retried command) changes nothing,
    /// whatever time it carries.
    #[test]
    fn setting_the_pair_it_holds_changes_nothing() {
        let a = TimersRecord::change(None, Some(60_000), Some(120_000), 0).unwrap();
        let b = TimersRecord::change(Some(&a), Some(30_000), None, 1_000).unwrap();
        assert_eq!(
            TimersRecord::change(Some(&b), Some(30_000), None, 1_000),
            Ok(b)
        );
        assert_eq!(
            TimersRecord::change(Some(&b), Some(30_000), Some(120_000), 9_000),
            Ok(b)
        );
    }

    #[test]
    fn fields_left_out_keep_their_value_and_the_result_is_checked() {
        let a = TimersRecord::change(None, Some(1_000), Some(4_000), 0).unwrap();
        let b = TimersRecord::change(Some(&a), None, Some(3_000), 0).unwrap();
        assert_eq!(b.timers, pair(1_000, 3_000));
        assert!(matches!(
            TimersRecord::change(Some(&b), Some(2_000), None, 0),
            Err(TimerError::GraceTooShort { .. })
        ));
    }

    #[test]
    fn zero_upload_age_is_refused() {
        let t = UploadTimers {
            upload_max_age_ms: 0,
            gc_grace_ms: 10,
        };
        assert_eq!(t.validate(), Err(TimerError::ZeroUploadAge));
    }

    #[test]
    fn huge_age_does_not_overflow_into_acceptance() {
        let t = UploadTimers {
            upload_max_age_ms: u64::MAX,
            gc_grace_ms: u64::MAX - 1,
        };
        assert!(t.validate().is_err());
    }
}
