//! The upload age limit, which metad owns (beside the data nodes'
//! garbage-collection grace, so the two are checked together; see
//! `weft_common::upload_timers`). Fetched at start and refreshed, so a
//! change on metad reaches running gateways.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_common::rpc::{Query, QueryResult};
use weft_metad::MetadClient;

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

/// Asks metad for the limit, checking the pair it comes with.
pub async fn fetch(metad: &MetadClient) -> Result<u64, String> {
    match metad.query(&Query::UploadTimers).await {
        Ok(QueryResult::UploadTimers { timers }) => {
            timers
                .validate()
                .map_err(|e| format!("metad's upload timers are unsafe: {e}"))?;
            Ok(timers.upload_max_age_ms)
        }
        Ok(other) => Err(format!("unexpected answer to UploadTimers: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Re-reads the limit every [`REFRESH_INTERVAL`] until `cancel` fires; a
/// failed read keeps the last value.
pub fn spawn_refresher(age: UploadAge, metad: MetadClient, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
            let fetched = tokio::select! {
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
