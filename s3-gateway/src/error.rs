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
    /// A bug or an unexpected condition.
    #[error("internal: {0}")]
    Internal(String),
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
        GatewayError::Placement(_)
        | GatewayError::WriteQuorum { .. }
        | GatewayError::Unreadable { .. } => S3ErrorCode::ServiceUnavailable,
        GatewayError::Body(_) => S3ErrorCode::IncompleteBody,
        GatewayError::TooSlow { .. } => S3ErrorCode::RequestTimeout,
        GatewayError::BodySignature(_) => S3ErrorCode::SignatureDoesNotMatch,
        GatewayError::Internal(_) => S3ErrorCode::InternalError,
    };
    match code {
        S3ErrorCode::InternalError => tracing::error!(error = %e, "request failed"),
        _ => tracing::warn!(error = %e, "request failed"),
    }
    S3Error::with_message(code, e.to_string())
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
