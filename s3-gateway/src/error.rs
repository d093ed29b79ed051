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

/// Maps a gateway error to what the S3 client sees. One function, so every
/// path answers the same way; see the tests below for each mapping.
pub fn to_s3(e: GatewayError) -> S3Error {
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
}
