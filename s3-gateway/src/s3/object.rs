//! Object operations: put, get, head, delete (one or many) and copy.

use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use tokio_stream::wrappers::ReceiverStream;
use weft_common::manifest::{ContentHeaders, ObjectVersion};
use weft_common::rpc::{Command, CommandResult};
use weft_common::VersionId;

use crate::checksums;
use crate::error::{metad_err, refusal_to_s3, to_s3, unexpected, GatewayError, Refused};

use super::conditions::{check_preconditions, condition_refusal, write_condition};
use super::request::{
    body_length, claimed_checksums, parse_tagging_header, requested_range, strip_aws_chunked,
    user_metadata,
};
use super::store::version_label_for;
use super::{now_ms, timestamp, timestamp_ms, WeftS3, KEY_BYTES_MAX, PUT_BYTES_MAX};

impl WeftS3 {
    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    pub(super) async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        if input.key.len() > KEY_BYTES_MAX {
            return Err(s3_error!(
                KeyTooLongError,
                "keys are at most {KEY_BYTES_MAX} bytes"
            ));
        }
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        if condition.is_some() {
            // Fail fast before storing data; the commit re-checks atomically.
            let current = self.current_opt(&input.bucket, &input.key).await?;
            if let Some(r) = condition_refusal(condition.as_ref(), current.as_ref()) {
                return Err(refusal_to_s3(
                    Refused::Object {
                        bucket: &input.bucket,
                        key: &input.key,
                    },
                    r,
                ));
            }
        }
        let tags = parse_tagging_header(input.tagging.as_deref())?;
        let size = body_length(input.content_length, &req.headers, input.body.is_some())?;
        if size > PUT_BYTES_MAX {
            return Err(s3_error!(
                EntityTooLarge,
                "a single PUT is at most 5 GiB; use multipart upload"
            ));
        }
        let user_metadata = user_metadata(input.metadata)?;
        let class_name = input.storage_class.as_ref().map(|c| c.as_str().to_string());
        let class = self.storage_class(class_name.as_deref(), &binfo)?;
        let size = size as u64;
        let spec = checksums::Spec::from_request(
            &claimed_checksums!(input),
            &req.headers,
            input.checksum_algorithm.as_ref().map(|a| a.as_str()),
        )?;
        let (written, stored_checksums) = self
            .store_body(
                &class,
                size,
                input.body,
                &spec,
                input.content_md5.as_deref(),
                req.trailing_headers.as_ref(),
            )
            .await?;
        let version = ObjectVersion {
            version_id: VersionId::from_random(weft_common::effects::random()),
            size,
            etag: written.etag.clone(),
            crc32c: written.crc32c,
            last_modified_ms: now_ms(),
            storage_class: class.name.clone(),
            user_metadata,
            content: ContentHeaders {
                content_type: input.content_type.map(|c| c.to_string()),
                content_encoding: strip_aws_chunked(input.content_encoding),
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                expires_ms: input.expires.map(timestamp_ms),
            },
            checksum_type: (!stored_checksums.is_empty()).then(|| "FULL_OBJECT".to_string()),
            checksums: stored_checksums.clone(),
            tags,
            part_sizes: Vec::new(),
            version_label: None,
            segments: written.segments,
            tier: None,
            last_access_ms: None,
        };
        let segments = version.segments.clone();
        let version_label = version_label_for(&binfo, version.version_id);
        let expiration = self.expiration(&binfo, &input.key, &version);
        let cmd = Command::PutObject {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            version,
            condition,
        };
        let mut after_unknown = false;
        let result = if self.fault_ack_before_commit {
            Ok(CommandResult::Replaced { previous: None })
        } else {
            self.commit_written(&cmd, &segments).await.map(|c| {
                after_unknown = c.after_unknown;
                c.result
            })
        };
        match result {
            Ok(CommandResult::Replaced { previous }) => {
                if let Some(prev) = previous {
                    self.releaser.replaced(prev.segments);
                }
                let c = checksums::to_dto(&stored_checksums);
                Ok(S3Response::new(PutObjectOutput {
                    e_tag: Some(ETag::Strong(written.etag)),
                    version_id: version_label,
                    expiration,
                    checksum_crc32: c.checksum_crc32,
                    checksum_crc32c: c.checksum_crc32c,
                    checksum_crc64nvme: c.checksum_crc64nvme,
                    checksum_sha1: c.checksum_sha1,
                    checksum_sha256: c.checksum_sha256,
                    checksum_type: (!stored_checksums.is_empty())
                        .then(|| ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
                    ..Default::default()
                }))
            }
            Ok(CommandResult::Refused { refusal }) => {
                self.discard_unreferenced(segments, after_unknown);
                Err(refusal_to_s3(
                    Refused::Object {
                        bucket: &input.bucket,
                        key: &input.key,
                    },
                    refusal,
                ))
            }
            Ok(other) => Err(unexpected("put object", other)),
            // The commit may or may not have happened: keep the shards (GC
            // will reclaim them if it did not) and report the failure. (A
            // space-low refusal, which proves it did not, has released
            // them already.)
            Err(e) => Err(metad_err(e)),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    pub(super) async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        // Before asking metad: a replace committed after this point waits
        // for this read before releasing the shards it reads.
        let lease = self.releaser.leases().begin();
        let v = self
            .version_or_current(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        lease.resolve(&v.segments);
        check_preconditions(
            &v,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (range, content_range) = requested_range(&v, input.range.as_ref(), input.part_number)?;
        self.note_read(&binfo, &input.key, &v);
        let full = range.start == 0 && range.end == v.size;
        let len = range.end - range.start;
        let rx = self
            .reader
            .read_object(&v, range, lease)
            .await
            .map_err(to_s3)?;
        let expected_crc = v.crc32c;
        // On a full read, check the whole-object crc32c end to end: a
        // mismatch aborts the body rather than completing it with bad bytes.
        let stream = ReceiverStream::new(rx).scan((0u32, 0u64), move |(crc, seen), piece| {
            let out = match piece {
                Ok(b) => {
                    *crc = weft_common::checksum::crc32c_append(*crc, &b);
                    *seen += b.len() as u64;
                    if full && *seen == len && *crc != expected_crc {
                        Err(GatewayError::Internal(
                            "object crc32c mismatch after decode".into(),
                        ))
                    } else {
                        Ok(b)
                    }
                }
                Err(e) => Err(e),
            };
            futures::future::ready(Some(out))
        });
        let mut out = GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            ..object_headers(&v)
        };
        if !v.tags.is_empty() {
            out.tag_count = Some(v.tags.len() as i32);
        }
        if input.part_number.is_some() {
            out.parts_count = Some(v.part_sizes.len().max(1) as i32);
        }
        if full && checksum_mode_enabled(input.checksum_mode.as_ref()) {
            let c = checksums::to_dto(&v.checksums);
            out.checksum_crc32 = c.checksum_crc32;
            out.checksum_crc32c = c.checksum_crc32c;
            out.checksum_crc64nvme = c.checksum_crc64nvme;
            out.checksum_sha1 = c.checksum_sha1;
            out.checksum_sha256 = c.checksum_sha256;
            out.checksum_type = v.checksum_type.clone().map(ChecksumType::from);
        }
        if input.version_id.is_none() {
            out.expiration = self.expiration(&binfo, &input.key, &v);
        }
        // Response header overrides (presigned URLs use these).
        if let Some(x) = input.response_content_type {
            out.content_type = x.parse().ok();
        }
        if let Some(x) = input.response_content_disposition {
            out.content_disposition = Some(x);
        }
        if let Some(x) = input.response_content_encoding {
            out.content_encoding = Some(x);
        }
        if let Some(x) = input.response_content_language {
            out.content_language = Some(x);
        }
        if let Some(x) = input.response_cache_control {
            out.cache_control = Some(x);
        }
        if let Some(x) = input.response_expires {
            out.expires = Some(x);
        }
        Ok(S3Response::new(out))
    }

    pub(super) async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let v = self
            .version_or_current(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        check_preconditions(
            &v,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let g = object_headers(&v);
        let (rg, content_range) = requested_range(&v, input.range.as_ref(), input.part_number)?;
        let content_length = rg.end - rg.start;
        let c = if checksum_mode_enabled(input.checksum_mode.as_ref()) && content_range.is_none() {
            checksums::to_dto(&v.checksums)
        } else {
            Checksum::default()
        };
        let expiration = input
            .version_id
            .is_none()
            .then(|| self.expiration(&binfo, &input.key, &v))
            .flatten();
        Ok(S3Response::new(HeadObjectOutput {
            expiration,
            content_length: Some(content_length as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: g.e_tag,
            last_modified: g.last_modified,
            content_type: g.content_type,
            content_encoding: g.content_encoding,
            content_disposition: g.content_disposition,
            content_language: g.content_language,
            cache_control: g.cache_control,
            expires: g.expires,
            metadata: g.metadata,
            storage_class: g.storage_class,
            parts_count: multipart_parts(&v.etag),
            version_id: v.version_label.clone(),
            checksum_type: if c.checksum_crc32.is_some()
                || c.checksum_crc32c.is_some()
                || c.checksum_crc64nvme.is_some()
                || c.checksum_sha1.is_some()
                || c.checksum_sha256.is_some()
            {
                v.checksum_type.clone().map(ChecksumType::from)
            } else {
                None
            },
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    pub(super) async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let (released, marker, version_id) = self
            .delete_one(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        if let Some(prev) = released {
            self.release(prev.segments);
        }
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: marker.then_some(true),
            version_id,
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket))]
    pub(super) async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        crate::refusals::check_delete_objects(&input.delete.objects)?;
        let objects = input.delete.objects;
        if objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "a DeleteObjects request names at most 1000 keys"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket.clone();
        type Outcome = Result<(Option<ObjectVersion>, bool, Option<String>), (String, String)>;
        let results: Vec<(String, Option<String>, Outcome)> = futures::stream::iter(objects)
            .map(|o| {
                let bucket = bucket.clone();
                async move {
                    let r = self
                        .delete_one(&bucket, &o.key, o.version_id.as_deref())
                        .await
                        .map_err(|e| {
                            (
                                e.code().as_str().to_string(),
                                e.message().unwrap_or("").to_string(),
                            )
                        });
                    (o.key, o.version_id, r)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut deleted = vec![];
        let mut errors = vec![];
        for (key, asked_version, r) in results {
            match r {
                Ok((released, marker, version_id)) => {
                    if let Some(prev) = released {
                        self.release(prev.segments);
                    }
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(key),
                            version_id: asked_version,
                            delete_marker: marker.then_some(true),
                            delete_marker_version_id: if marker { version_id } else { None },
                        });
                    }
                }
                Err((code, message)) => errors.push(s3s::dto::Error {
                    key: Some(key),
                    code: Some(code),
                    message: Some(message),
                    version_id: asked_version,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    pub(super) async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        if input.key.len() > KEY_BYTES_MAX {
            return Err(s3_error!(
                KeyTooLongError,
                "keys are at most {KEY_BYTES_MAX} bytes"
            ));
        }
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let (src, lease) = self
            .copy_source(
                req.credentials.as_ref(),
                &input.copy_source,
                (
                    input.copy_source_if_match.as_ref(),
                    input.copy_source_if_none_match.as_ref(),
                    input.copy_source_if_modified_since.as_ref(),
                    input.copy_source_if_unmodified_since.as_ref(),
                ),
            )
            .await?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str().eq_ignore_ascii_case(MetadataDirective::REPLACE));
        if let CopySource::Bucket { bucket, key, .. } = &input.copy_source {
            if **bucket == *input.bucket
                && **key == *input.key
                && !replace
                && input.storage_class.is_none()
            {
                return Err(s3_error!(
                    InvalidRequest,
                    "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
                ));
            }
        }
        let class = match &input.storage_class {
            Some(c) => self.storage_class(Some(c.as_str()), &binfo)?,
            None => self.storage_class(Some(&src.storage_class), &binfo).map_err(|_| {
                s3_error!(
                    InvalidStorageClass,
                    "the source object's storage class {} is no longer defined on this cluster; name one with x-amz-storage-class",
                    src.storage_class
                )
            })?,
        };
        let (user_metadata, content) = if replace {
            (
                user_metadata(input.metadata)?,
                ContentHeaders {
                    content_type: input.content_type.map(|c| c.to_string()),
                    content_encoding: strip_aws_chunked(input.content_encoding),
                    content_disposition: input.content_disposition,
                    content_language: input.content_language,
                    cache_control: input.cache_control,
                    expires_ms: input.expires.map(timestamp_ms),
                },
            )
        } else {
            (src.user_metadata.clone(), src.content.clone())
        };
        let tags = match input
            .tagging_directive
            .as_ref()
            .map(|d| d.as_str().to_ascii_uppercase())
        {
            Some(d) if d == "REPLACE" => parse_tagging_header(input.tagging.as_deref())?,
            _ => src.tags.clone(),
        };
        let written = self
            .copy_data((&src, lease), 0..src.size, &class, None)
            .await?;
        let now = now_ms();
        let version = ObjectVersion {
            version_id: VersionId::from_random(weft_common::effects::random()),
            size: src.size,
            etag: written.etag.clone(),
            crc32c: written.crc32c,
            last_modified_ms: now,
            storage_class: class.name.clone(),
            user_metadata,
            content,
            // Same bytes, so the source's whole-object checksums still hold;
            // a composite (multipart) checksum does not describe a single PUT.
            checksums: if src.checksum_type.as_deref() == Some(ChecksumType::COMPOSITE) {
                Default::default()
            } else {
                src.checksums.clone()
            },
            checksum_type: if src.checksum_type.as_deref() == Some(ChecksumType::COMPOSITE) {
                None
            } else {
                src.checksum_type.clone()
            },
            tags,
            part_sizes: Vec::new(),
            version_label: None,
            segments: written.segments,
            tier: None,
            last_access_ms: None,
        };
        let segments = version.segments.clone();
        let version_label = version_label_for(&binfo, version.version_id);
        let cmd = Command::PutObject {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            version,
            condition: None,
        };
        let committed = self
            .commit_written(&cmd, &segments)
            .await
            .map_err(metad_err)?;
        match committed.result {
            CommandResult::Replaced { previous } => {
                if let Some(prev) = previous {
                    self.release(prev.segments);
                }
                Ok(S3Response::new(CopyObjectOutput {
                    version_id: version_label,
                    copy_object_result: Some(CopyObjectResult {
                        e_tag: Some(ETag::Strong(written.etag)),
                        last_modified: Some(timestamp(now)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }))
            }
            CommandResult::Refused { refusal } => {
                self.discard_unreferenced(segments, committed.after_unknown);
                Err(refusal_to_s3(
                    Refused::Object {
                        bucket: &input.bucket,
                        key: &input.key,
                    },
                    refusal,
                ))
            }
            other => Err(unexpected("copy object", other)),
        }
    }

    /// Deletes one key (or one version of it): `(version whose data is
    /// released, whether a delete marker was created or removed, the version
    /// id to report)`.
    pub(super) async fn delete_one(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<(Option<ObjectVersion>, bool, Option<String>)> {
        let cmd = match version_id {
            Some(v) => {
                if v != "null" && v.parse::<VersionId>().is_err() {
                    return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
                }
                Command::DeleteObjectVersion {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    version_id: v.to_string(),
                }
            }
            None => Command::DeleteObject {
                bucket: bucket.to_string(),
                key: key.to_string(),
                marker: Some((
                    VersionId::from_random(weft_common::effects::random()),
                    now_ms(),
                )),
            },
        };
        match self.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Replaced { previous } => Ok((previous, false, None)),
            CommandResult::VersionDeleted {
                released,
                delete_marker,
            } => {
                let marker = delete_marker.is_some();
                Ok((
                    released,
                    marker,
                    version_id.map(str::to_string).or(delete_marker),
                ))
            }
            CommandResult::Refused { refusal } => {
                Err(refusal_to_s3(Refused::Object { bucket, key }, refusal))
            }
            other => Err(unexpected("delete object", other)),
        }
    }
}

pub(super) fn checksum_mode_enabled(m: Option<&ChecksumMode>) -> bool {
    m.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

/// The part count S3 reports for a multipart object (its ETag ends `-N`).
pub(super) fn multipart_parts(etag: &str) -> Option<i32> {
    etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

pub(super) fn object_headers(v: &ObjectVersion) -> GetObjectOutput {
    GetObjectOutput {
        e_tag: Some(ETag::Strong(v.etag.clone())),
        last_modified: Some(timestamp(v.last_modified_ms)),
        // S3's default when the writer named none.
        content_type: v
            .content
            .content_type
            .as_deref()
            .unwrap_or("binary/octet-stream")
            .parse()
            .ok(),
        content_encoding: v.content.content_encoding.clone(),
        content_disposition: v.content.content_disposition.clone(),
        content_language: v.content.content_language.clone(),
        cache_control: v.content.cache_control.clone(),
        expires: v.content.expires_ms.map(timestamp),
        version_id: v.version_label.clone(),
        metadata: if v.user_metadata.is_empty() {
            None
        } else {
            Some(v.user_metadata.clone().into_iter().collect())
        },
        // S3 sends the header for every class but STANDARD.
        storage_class: (v.storage_class != weft_common::storage_class::DEFAULT_CLASS)
            .then(|| StorageClass::from(v.storage_class.clone())),
        ..Default::default()
    }
}
