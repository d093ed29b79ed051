//! The upload age limit, which metad owns (beside the data nodes'
//! garbage-collection grace, so the two are checked together; see
//! `weft_common::upload_timers`). Fetched at start and refreshed, so a
//! change on metad reaches running gateways.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use weft_client::{MetadClient, MetadClientError};
use weft_common::rpc::{Query, QueryResult};
use weft_common::upload_timers::TimerError;

pub use crate::limits::UPLOAD_AGE_REFRESH as REFRESH_INTERVAL;

/// The current limit; cheap to clone.
#[derive(Clone, Debug)]
pub struct UploadAge(Arc<AtomicU64>);

impl UploadAge {
    /// A limit of `ms` milliseconds.
    pub fn new(ms: u64) -> Self {
        UploadAge(Arc::new(AtomicU64::new(ms)))
    }

    /// The limit now.
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// Why the limit could not be read from metad.
#[derive(Debug, Error)]
pub enum FetchError {
    /// metad could not be asked.
    #[error(transparent)]
    Metad(#[from] MetadClientError),
    /// metad's timers would let garbage collection remove uploads in flight.
    #[error("metad's upload timers are unsafe: {0}")]
    Unsafe(#[from] TimerError),
    /// metad answered something else.
    #[error("unexpected answer to UploadTimers: {0:?}")]
    Unexpected(Box<QueryResult>),
}

/// Asks metad for the limit, checking the pair it comes with.
pub async fn fetch(metad: &MetadClient) -> Result<u64, FetchError> {
    match metad.query(&Query::UploadTimers).await? {
        QueryResult::UploadTimers { timers } => {
            timers.validate()?;
            Ok(timers.upload_max_age_ms)
        }
        other => Err(FetchError::Unexpected(Box::new(other))),
    }
}

/// Re-reads the limit every [`REFRESH_INTERVAL`] until `cancel` fires; a
/// failed read keeps the last value.
pub fn spawn_refresher(age: UploadAge, metad: MetadClient, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
            let fetched = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = fetch(&metad) => r,
            };
            match fetched {
                // Only ever shorter while running: a longer age from one
                // voter could outlive the grace a data node got from
                // another (data nodes, for their part, keep the longest
                // grace). A longer age takes effect at the next restart.
                Ok(ms) => {
                    let old = age.0.fetch_min(ms, Ordering::Relaxed);
                    if ms < old {
                        tracing::info!(
                            old_ms = old,
                            new_ms = ms,
                            "upload_max_age_ms lowered on metad"
                        );
                    } else if ms > old {
                        tracing::debug!(
                            current_ms = old,
                            offered_ms = ms,
                            "metad names a longer upload age; it applies after a restart"
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not refresh upload_max_age_ms; keeping the last value")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_errors_read_as_the_start_error_quotes_them() {
        let unsafe_timers = FetchError::from(TimerError::ZeroUploadAge);
        assert_eq!(
            unsafe_timers.to_string(),
            format!(
                "metad's upload timers are unsafe: {}",
                TimerError::ZeroUploadAge
            )
        );
        let other = FetchError::Unexpected(Box::new(QueryResult::Buckets { buckets: vec![] }));
        assert_eq!(
            other.to_string(),
            "unexpected answer to UploadTimers: Buckets { buckets: [] }"
        );
        let metad = FetchError::from(MetadClientError::Protocol("x".into()));
        assert_eq!(metad.to_string(), "unexpected answer from metad: x");
    }
}
