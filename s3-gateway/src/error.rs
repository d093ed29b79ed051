//! The gateway's errors and their one mapping to S3 error codes.

use s3s::{S3Error, S3ErrorCode};
use thiserror::Error;
use weft_common::SegmentId;

/// Everything that can go wrong on the data path.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// metad could not be reached or refused.
    #[error("metadata service: {0}")]
    Metad(#[from] weft_metad::MetadClientError),
    /// Not enough healthy nodes to place a segment.
    #[error("place segment: {0}")]
    Placement(#[from] weft_common::placement::PlacementError),
    /// Fewer shards than the write quorum became durable.
    #[error("write segment {segment}: only {written} of {needed} shards durable: {detail}")]
    WriteQuorum {
        /// The segment.
        segment: SegmentId,
        /// Shards written.
        written: usize,
        /// Quorum.
        needed: usize,
        /// Why the others failed.
        detail: String,
        /// What the failures had in common, which decides the S3 answer.
        shortfall: Shortfall,
    },
    /// Fewer than k shards of a stripe could be read.
    #[error("read segment {segment}: {detail}")]
    Unreadable {
        /// The segment.
        segment: SegmentId,
        /// What failed.
        detail: String,
    },
    /// The client's body ended early or ran long.
    #[error("request body: {0}")]
    Body(String),
    /// A chunk of a signed aws-chunked body failed its signature.
    #[error("request body: a chunk signature does not match: {0}")]
    BodySignature(String),
    /// The upload took longer than the gateway may take to commit it (the
    /// data nodes' garbage collector could have reclaimed its first shards).
    #[error("the upload took {took:?}, longer than the {max:?} a single request may take; use a multipart upload with smaller parts or a faster link")]
    TooSlow {
        /// Time taken.
        took: std::time::Duration,
        /// The limit.
        max: std::time::Duration,
    },
    /// The client sent no body bytes for the idle deadline.
    #[error("the client sent nothing for {0:?} in the middle of the body; send the whole body without pausing")]
    ClientIdle(std::time::Duration),
    /// A bug or an unexpected condition.
    #[error("internal: {0}")]
    Internal(String),
}

/// Why a write lost the shards that cost it its quorum, as far as it changes
/// what the client should do next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shortfall {
    /// Mixed or other causes (unreachable nodes, failed requests).
    #[default]
    Other,
    /// The data nodes were out of file descriptors (some may also have been
    /// full): a passing overload, so the client should back off and retry.
    Busy,
    /// Every failed data node was out of space: retrying will not help
    /// until space is freed or added.
    Full,
}

/// Counts the causes of a write's failed shards, for [`Shortfall`].
#[derive(Debug, Default)]
pub struct ShortfallTally {
    busy: usize,
    full: usize,
    other: usize,
}

impl ShortfallTally {
    /// Counts one shard's failure.
    pub fn note(&mut self, e: &weft_datad::client::DatadClientError) {
        use weft_common::rpc::RpcErrorCode;
        match e {
            weft_datad::client::DatadClientError::Failed {
                code: Some(RpcErrorCode::Busy),
                ..
            }
            | weft_datad::client::DatadClientError::Busy { .. } => self.busy += 1,
            weft_datad::client::DatadClientError::Failed {
                code: Some(RpcErrorCode::DiskFull),
                ..
            } => self.full += 1,
            _ => self.other += 1,
        }
    }

    /// Counts a shard lost for a reason with no datad answer (a stalled or
    /// failed writer task).
    pub fn note_other(&mut self) {
        self.other += 1;
    }

    /// The verdict: a single clear cause, or `Other`.
    pub fn verdict(&self) -> Shortfall {
        match (self.busy, self.full, self.other) {
            (0, 0, _) | (_, _, 1..) => Shortfall::Other,
            (0, _, 0) => Shortfall::Full,
            _ => Shortfall::Busy,
        }
    }
}

/// S3 has no error code for a store out of room; `InsufficientStorage` with
/// HTTP 507 is what other S3 stores (MinIO, Ceph RGW) answer, and SDKs
/// treat an unknown 5xx code as a server error, not a client mistake.
pub const INSUFFICIENT_STORAGE: &str = "InsufficientStorage";

/// Whether the error means the cluster has no room for new data: data
/// nodes full, or metad in space-low mode.
fn is_out_of_space(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::Placement(weft_common::placement::PlacementError::NodesFull { .. })
            | GatewayError::Metad(weft_metad::MetadClientError::Rejected {
                code: weft_common::rpc::RpcErrorCode::DiskFull,
                ..
            })
    )
}

/// Maps a gateway error to what the S3 client sees. One function, so every
/// path answers the same way; see the tests below for each mapping.
pub fn to_s3(e: GatewayError) -> S3Error {
    if is_out_of_space(&e) {
        tracing::warn!(error = %e, "request refused: out of space");
        let mut err = S3Error::with_message(
            S3ErrorCode::Custom(INSUFFICIENT_STORAGE.into()),
            e.to_string(),
        );
        err.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
        return err;
    }
    let code = match &e {
        // Both are worth a client retry; an unknown outcome released nothing.
        GatewayError::Metad(
            weft_metad::MetadClientError::Unavailable { .. }
            | weft_metad::MetadClientError::OutcomeUnknown { .. },
        ) => S3ErrorCode::ServiceUnavailable,
        GatewayError::Metad(_) => S3ErrorCode::InternalError,
        GatewayError::WriteQuorum {
            shortfall: Shortfall::Busy,
            ..
        } => S3ErrorCode::SlowDown,
        GatewayError::WriteQuorum {
            shortfall: Shortfall::Full,
            ..
        } => S3ErrorCode::Custom(INSUFFICIENT_STORAGE.into()),
        GatewayError::Placement(_)
        | GatewayError::WriteQuorum { .. }
        | GatewayError::Unreadable { .. } => S3ErrorCode::ServiceUnavailable,
        GatewayError::Body(_) => S3ErrorCode::IncompleteBody,
        GatewayError::TooSlow { .. } | GatewayError::ClientIdle(_) => S3ErrorCode::RequestTimeout,
        GatewayError::BodySignature(_) => S3ErrorCode::SignatureDoesNotMatch,
        GatewayError::Internal(_) => S3ErrorCode::InternalError,
    };
    match code {
        S3ErrorCode::InternalError => tracing::error!(error = %e, "request failed"),
        _ => tracing::warn!(error = %e, "request failed"),
    }
    let advice = match &e {
        GatewayError::WriteQuorum {
            shortfall: Shortfall::Busy,
            ..
        } => "; the data nodes are out of file descriptors: slow down and retry with backoff",
        GatewayError::WriteQuorum {
            shortfall: Shortfall::Full,
            ..
        } => "; the data nodes are out of space: delete objects or add capacity, then retry",
        _ => "",
    };
    let mut err = S3Error::with_message(code, format!("{e}{advice}"));
    if matches!(
        &e,
        GatewayError::WriteQuorum {
            shortfall: Shortfall::Full,
            ..
        }
    ) {
        // A custom code has no status of its own in s3s.
        err.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings() {
        let unreadable = to_s3(GatewayError::Unreadable {
            segment: SegmentId(1),
            detail: "x".into(),
        });
        assert_eq!(*unreadable.code(), S3ErrorCode::ServiceUnavailable);
        assert_eq!(
            *to_s3(GatewayError::Body("short".into())).code(),
            S3ErrorCode::IncompleteBody
        );
        assert_eq!(
            *to_s3(GatewayError::Metad(
                weft_metad::MetadClientError::Unavailable {
                    attempts: 1,
                    last: "x".into()
                }
            ))
            .code(),
            S3ErrorCode::ServiceUnavailable
        );
        assert_eq!(
            *to_s3(GatewayError::Metad(
                weft_metad::MetadClientError::OutcomeUnknown {
                    attempts: 3,
                    last: "timeout".into()
                }
            ))
            .code(),
            S3ErrorCode::ServiceUnavailable
        );
        assert_eq!(
            *to_s3(GatewayError::BodySignature("chunk 3".into())).code(),
            S3ErrorCode::SignatureDoesNotMatch
        );
        assert_eq!(
            *to_s3(GatewayError::Internal("bug".into())).code(),
            S3ErrorCode::InternalError
        );
    }

    fn failed(code: weft_common::rpc::RpcErrorCode) -> weft_datad::client::DatadClientError {
        weft_datad::client::DatadClientError::Failed {
            op: "put shard",
            addr: "127.0.0.1:1".into(),
            status: 503,
            code: Some(code),
            message: "x".into(),
        }
    }

    fn quorum(shortfall: Shortfall) -> GatewayError {
        GatewayError::WriteQuorum {
            segment: SegmentId(1),
            written: 3,
            needed: 5,
            detail: "x".into(),
            shortfall,
        }
    }

    #[test]
    fn a_write_short_of_descriptors_is_slow_down_and_one_short_of_space_is_507() {
        use weft_common::rpc::RpcErrorCode as C;
        let busy = to_s3(quorum(Shortfall::Busy));
        assert_eq!(*busy.code(), S3ErrorCode::SlowDown);
        assert!(busy.message().unwrap().contains("retry with backoff"));
        let full = to_s3(quorum(Shortfall::Full));
        assert_eq!(full.code().as_str(), INSUFFICIENT_STORAGE);
        assert_eq!(
            full.status_code(),
            Some(http::StatusCode::INSUFFICIENT_STORAGE)
        );
        assert!(full.message().unwrap().contains("add capacity"));
        assert_eq!(
            *to_s3(quorum(Shortfall::Other)).code(),
            S3ErrorCode::ServiceUnavailable
        );

        let tally = |codes: &[Option<C>]| {
            let mut t = ShortfallTally::default();
            for c in codes {
                match c {
                    Some(c) => t.note(&failed(*c)),
                    None => t.note_other(),
                }
            }
            t.verdict()
        };
        assert_eq!(tally(&[Some(C::Busy), Some(C::Busy)]), Shortfall::Busy);
        assert_eq!(tally(&[Some(C::Busy), Some(C::DiskFull)]), Shortfall::Busy);
        assert_eq!(
            tally(&[Some(C::DiskFull), Some(C::DiskFull)]),
            Shortfall::Full
        );
        // An unreachable node or an internal error makes the cause unclear.
        assert_eq!(tally(&[Some(C::DiskFull), None]), Shortfall::Other);
        assert_eq!(tally(&[Some(C::Busy), Some(C::Internal)]), Shortfall::Other);
        assert_eq!(tally(&[]), Shortfall::Other);
    }

    #[test]
    fn out_of_space_is_507_insufficient_storage() {
        use weft_common::placement::PlacementError;
        let full = to_s3(GatewayError::Placement(PlacementError::NodesFull {
            available: 1,
            needed: 3,
            quorum: 2,
            full: vec![weft_common::NodeId(4)],
        }));
        assert_eq!(full.code().as_str(), INSUFFICIENT_STORAGE);
        assert_eq!(
            full.status_code(),
            Some(http::StatusCode::INSUFFICIENT_STORAGE)
        );
        assert!(full.message().unwrap().contains("data nodes n4 are full"));
        let low = to_s3(GatewayError::Metad(
            weft_metad::MetadClientError::Rejected {
                code: weft_common::rpc::RpcErrorCode::DiskFull,
                message: "metad is low on space".into(),
            },
        ));
        assert_eq!(low.code().as_str(), INSUFFICIENT_STORAGE);
        assert_eq!(
            low.status_code(),
            Some(http::StatusCode::INSUFFICIENT_STORAGE)
        );
        // Too few nodes for another reason stays a retryable 503.
        let down = to_s3(GatewayError::Placement(PlacementError::NotEnoughNodes {
            available: 1,
            needed: 3,
            quorum: 2,
        }));
        assert_eq!(*down.code(), S3ErrorCode::ServiceUnavailable);
    }
}
