//! Storing new data and committing it: request bodies and copies become
//! segments, and the shards of a refused or failed commit are released.

use bytes::Bytes;
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use std::collections::BTreeMap;
use tokio_stream::wrappers::ReceiverStream;
use weft_common::manifest::{BucketInfo, ObjectVersion, Segment};
use weft_common::rpc::Command;
use weft_common::VersionId;

use crate::checksums;
use crate::error::to_s3;
use crate::release::ReadLease;

use super::request::base64_decode;
use super::WeftS3;

impl WeftS3 {
    /// Stores a request body as new segments and checks it against
    /// Content-MD5 and any `x-amz-checksum-*` value (header or trailer). On
    /// a mismatch the segments are deleted and nothing is committed.
    pub(super) async fn store_body(
        &self,
        class: &weft_common::storage_class::StorageClass,
        size: u64,
        body: Option<StreamingBlob>,
        spec: &checksums::Spec,
        content_md5: Option<&str>,
        trailers: Option<&s3s::TrailingHeaders>,
    ) -> S3Result<(crate::write_path::Written, BTreeMap<String, String>)> {
        let written = match body {
            Some(body) => {
                self.writer
                    .write_object(class, size, body, spec.hasher())
                    .await
            }
            None => {
                self.writer
                    .write_object(
                        class,
                        size,
                        futures::stream::empty::<Result<Bytes, std::io::Error>>(),
                        spec.hasher(),
                    )
                    .await
            }
        }
        .map_err(to_s3)?;
        let checked: S3Result<BTreeMap<String, String>> = (|| {
            if let Some(md5_b64) = content_md5 {
                let claimed = base64_decode(md5_b64)
                    .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not valid base64"))?;
                if claimed != hex::decode(&written.etag).unwrap_or_default() {
                    return Err(s3_error!(
                        BadDigest,
                        "the Content-MD5 you specified did not match what we received"
                    ));
                }
            }
            let trailers = trailers.and_then(|t| t.take());
            spec.verify(&written.checksum, trailers.as_ref())
        })();
        match checked {
            Ok(stored) => {
                self.bytes_written.inc_by(size);
                Ok((written, stored))
            }
            Err(e) => {
                self.releaser.unreferenced(written.segments);
                Err(e)
            }
        }
    }

    /// Streams `range` of `src` into new segments (server-side copy).
    pub(super) async fn copy_data(
        &self,
        (src, lease): (&ObjectVersion, ReadLease),
        range: std::ops::Range<u64>,
        class: &weft_common::storage_class::StorageClass,
        hasher: Option<s3s::checksum::ChecksumHasher>,
    ) -> S3Result<crate::write_path::Written> {
        let len = range.end - range.start;
        if len == 0 {
            return self
                .writer
                .write_object(
                    class,
                    0,
                    futures::stream::empty::<Result<Bytes, std::io::Error>>(),
                    hasher,
                )
                .await
                .map_err(to_s3);
        }
        let rx = self
            .reader
            .read_object(src, range, lease)
            .await
            .map_err(to_s3)?;
        // The writer sees the source as a request body, and would call a
        // source that cannot be read a broken body (the client's 400
        // IncompleteBody); the source's own error is the answer instead
        // (unreadable data is 503, as for a GET).
        let source_error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = source_error.clone();
        let body = futures::StreamExt::map(ReceiverStream::new(rx), move |piece| {
            piece.map_err(|e| {
                let text = e.to_string();
                *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                crate::error::GatewayError::Internal(text)
            })
        });
        let written = match self.writer.write_object(class, len, body, hasher).await {
            Ok(w) => w,
            Err(e) => {
                let source = source_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                return Err(to_s3(source.unwrap_or(e)));
            }
        };
        self.bytes_written.inc_by(len);
        Ok(written)
    }

    /// Commits `cmd`, which references `written`, shards this request wrote.
    /// A space-low refusal comes before metad proposes anything, and the
    /// client reports any failure after an unknown outcome as
    /// `OutcomeUnknown`, so a `DiskFull` rejection proves the shards
    /// unreferenced: they go at once instead of waiting for garbage
    /// collection. Every other failure leaves them to it.
    pub(super) async fn commit_written(
        &self,
        cmd: &Command,
        written: &[Segment],
    ) -> Result<weft_client::metad::Committed, weft_client::MetadClientError> {
        let r = self.metad.command_outcome(cmd).await;
        if let Err(weft_client::MetadClientError::Rejected {
            code: weft_common::rpc::RpcErrorCode::DiskFull,
            ..
        }) = &r
        {
            self.releaser.unreferenced(written.to_vec());
        }
        r
    }

    /// Deletes shards this request wrote for a command metad refused, at
    /// once, unless an earlier attempt's outcome was unknown: then a refusal
    /// cannot prove the first attempt did not commit them, and garbage
    /// collection (which asks metad) decides instead.
    pub(super) fn discard_unreferenced(&self, segments: Vec<Segment>, after_unknown: bool) {
        if after_unknown {
            tracing::warn!(
                segments = segments.len(),
                "command refused after an unknown outcome; leaving its shards to garbage collection"
            );
            return;
        }
        self.releaser.unreferenced(segments);
    }

    pub(super) fn release(&self, segments: Vec<Segment>) {
        self.releaser.replaced(segments);
    }
}

/// The version id S3 reports for a new version in this bucket.
pub(super) fn version_label_for(b: &BucketInfo, id: VersionId) -> Option<String> {
    match b.versioning.as_deref() {
        Some("Enabled") => Some(id.to_string()),
        Some(_) => Some("null".to_string()),
        None => None,
    }
}
