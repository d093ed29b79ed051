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

/// Why a pair of timers is unsafe.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TimerError {
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
