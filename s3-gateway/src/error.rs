//! The gateway's errors and the one place they, metad's refusals and
//! metad's client errors become S3 errors, so every operation answers the
//! same failure the same way (tests in `error/tests.rs`).

use s3s::{s3_error, S3Error, S3ErrorCode};
use thiserror::Error;
use weft_common::rpc::{CommandResult, Refusal};
use weft_common::SegmentId;

/// Everything that can go wrong on the data path.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// metad could not be reached or refused.
    #[error("metadata service: {0}")]
    Metad(#[from] weft_client::MetadClientError),
    /// Not enough healthy nodes to place a segment.
    #[error("place segment: {0}")]
    Placement(#[from] weft_common::placement::PlacementError),
    /// The storage class cannot be placed on the nodes the cluster has.
    #[error("{0}")]
    Class(#[from] weft_common::storage_class::ClassError),
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
    pub fn note(&mut self, e: &weft_client::datad::DatadClientError) {
        use weft_common::rpc::RpcErrorCode;
        match e {
            weft_client::datad::DatadClientError::Failed {
                code: Some(RpcErrorCode::Busy),
                ..
            }
            | weft_client::datad::DatadClientError::Busy { .. } => self.busy += 1,
            weft_client::datad::DatadClientError::Failed {
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
            | GatewayError::Metad(weft_client::MetadClientError::Rejected {
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
            weft_client::MetadClientError::Unavailable { .. }
            | weft_client::MetadClientError::OutcomeUnknown { .. },
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
        | GatewayError::Class(_)
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

/// A metad client error as the S3 client sees it: the same answer as any
/// other failure of the data path.
pub fn metad_err(e: weft_client::MetadClientError) -> S3Error {
    to_s3(GatewayError::Metad(e))
}

/// An answer metad should never give to `what` (a bug on one side or the
/// other, or mismatched versions).
pub fn unexpected(what: &str, got: impl std::fmt::Debug) -> S3Error {
    s3_error!(InternalError, "unexpected metad answer to {what}: {got:?}")
}

/// An access key lookup metad could not answer, with no last known key to
/// fall back on: always worth a retry, whatever the failure.
pub fn key_lookup_failed(e: weft_client::MetadClientError) -> S3Error {
    s3_error!(ServiceUnavailable, "look up access key: {e}")
}

/// An answer metad should never give to an access key lookup.
pub fn unexpected_key_answer(got: impl std::fmt::Debug) -> S3Error {
    s3_error!(InternalError, "unexpected metad answer: {got:?}")
}

/// The command metad refused, with the names its S3 error message uses.
/// Most refusals read the same whatever was refused; the command matters
/// for the few whose meaning depends on it (an upload gone while a part was
/// written is not an upload that never existed).
#[derive(Clone, Copy, Debug)]
pub enum Refused<'a> {
    /// A change to an object or to a bucket's settings (PutObject, a copy,
    /// a delete, tags, versioning); `key` is empty for a bucket's.
    Object {
        /// The bucket.
        bucket: &'a str,
        /// The key, or "".
        key: &'a str,
    },
    /// CreateBucket by `caller` (an access key).
    CreateBucket {
        /// The bucket.
        bucket: &'a str,
        /// The caller's access key.
        caller: &'a str,
    },
    /// DeleteBucket.
    DeleteBucket {
        /// The bucket.
        bucket: &'a str,
    },
    /// CreateMultipartUpload.
    CreateUpload {
        /// The bucket.
        bucket: &'a str,
    },
    /// The commit of an uploaded (or copied) part.
    PutPart {
        /// The upload.
        upload_id: &'a str,
    },
    /// CompleteMultipartUpload.
    CompleteUpload {
        /// The bucket.
        bucket: &'a str,
        /// The key.
        key: &'a str,
        /// The upload.
        upload_id: &'a str,
    },
    /// AbortMultipartUpload.
    AbortUpload {
        /// The upload.
        upload_id: &'a str,
    },
}

impl Refused<'_> {
    /// The command as `unexpected` names it.
    fn what(&self) -> &'static str {
        match self {
            Refused::Object { .. } => "object command",
            Refused::CreateBucket { .. } => "create bucket",
            Refused::DeleteBucket { .. } => "delete bucket",
            Refused::CreateUpload { .. } => "create upload",
            Refused::PutPart { .. } => "put part",
            Refused::CompleteUpload { .. } => "complete upload",
            Refused::AbortUpload { .. } => "abort upload",
        }
    }
}

/// The S3 error for a refused command.
pub fn refusal_to_s3(cmd: Refused<'_>, r: Refusal) -> S3Error {
    match (cmd, r) {
        // A class deleted after this gateway read its map: the client's
        // choice is no longer offered.
        (_, Refusal::ClassRefused { message }) => s3_error!(InvalidStorageClass, "{message}"),
        (Refused::Object { bucket, key }, r) => object_refusal(r, bucket, key),
        (Refused::CreateBucket { bucket, caller }, Refusal::BucketExists { owner })
            if owner == caller =>
        {
            s3_error!(
                BucketAlreadyOwnedByYou,
                "you already own the bucket {bucket}"
            )
        }
        (Refused::CreateBucket { bucket, .. }, Refusal::BucketExists { .. }) => s3_error!(
            BucketAlreadyExists,
            "the bucket {bucket} exists and belongs to someone else"
        ),
        (Refused::DeleteBucket { bucket }, Refusal::BucketNotEmpty) => s3_error!(
            BucketNotEmpty,
            "the bucket {bucket} is not empty; delete its objects first"
        ),
        (
            Refused::DeleteBucket { bucket }
            | Refused::CreateUpload { bucket }
            | Refused::CompleteUpload { bucket, .. },
            Refusal::NoSuchBucket,
        ) => object_refusal(Refusal::NoSuchBucket, bucket, ""),
        (
            Refused::PutPart { upload_id } | Refused::CompleteUpload { upload_id, .. },
            Refusal::NoSuchUpload,
        ) => s3_error!(
            NoSuchUpload,
            "upload {upload_id} was completed or aborted meanwhile"
        ),
        (Refused::CompleteUpload { .. }, Refusal::InvalidPart { part_number }) => s3_error!(
            InvalidPart,
            "part {part_number} changed while completing; retry"
        ),
        (
            Refused::CompleteUpload { bucket, key, .. },
            r @ (Refusal::PreconditionFailed | Refusal::NoSuchKey),
        ) => object_refusal(r, bucket, key),
        (Refused::AbortUpload { upload_id }, Refusal::NoSuchUpload) => {
            s3_error!(NoSuchUpload, "upload {upload_id} does not exist")
        }
        (cmd, refusal) => unexpected(cmd.what(), CommandResult::Refused { refusal }),
    }
}

/// The refusals of object and bucket-setting commands.
fn object_refusal(r: Refusal, bucket: &str, key: &str) -> S3Error {
    match r {
        Refusal::NoSuchBucket => s3_error!(NoSuchBucket, "bucket {bucket} does not exist"),
        Refusal::NoSuchKey => s3_error!(NoSuchKey, "key {key} does not exist"),
        Refusal::PreconditionFailed => {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        }
        Refusal::NoSuchUpload => s3_error!(NoSuchUpload, "the upload does not exist"),
        other => s3_error!(InternalError, "unexpected refusal {other:?}"),
    }
}

#[cfg(test)]
mod tests;
