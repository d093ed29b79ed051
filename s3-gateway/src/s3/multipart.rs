//! Multipart uploads: create, upload a part (or copy one), complete, abort,
//! and list parts and uploads.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use std::collections::BTreeMap;
use weft_common::manifest::{ContentHeaders, ObjectVersion, Upload, UploadPart};
use weft_common::rpc::{Command, CommandResult, Query, QueryResult, Refusal};
use weft_common::VersionId;

use crate::checksums;
use crate::error::{metad_err, refusal_to_s3, unexpected, Refused};

use super::conditions::write_condition;
use super::part_checksums::{check_listed_part_checksums, multipart_checksum};
use super::request::{
    body_length, claimed_checksums, parse_tagging_header, strip_aws_chunked, user_metadata,
};
use super::store::version_label_for;
use super::{
    now_ms, timestamp, timestamp_ms, WeftS3, KEY_BYTES_MAX, PARTS_MAX, PART_BYTES_MIN,
    PUT_BYTES_MAX,
};

impl WeftS3 {
    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    pub(super) async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        if input.key.len() > KEY_BYTES_MAX {
            return Err(s3_error!(
                KeyTooLongError,
                "keys are at most {KEY_BYTES_MAX} bytes"
            ));
        }
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let user_metadata = user_metadata(input.metadata)?;
        let tags = parse_tagging_header(input.tagging.as_deref())?;
        let class_name = input.storage_class.as_ref().map(|c| c.as_str().to_string());
        let class = self.storage_class(class_name.as_deref(), &binfo)?;
        let checksum_algorithm = match &input.checksum_algorithm {
            None => None,
            Some(a) => Some(checksums::Alg::parse(a.as_str()).ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "unknown checksum algorithm {:?}",
                    a.as_str()
                )
            })?),
        };
        let checksum_type = match (
            &checksum_algorithm,
            input.checksum_type.as_ref().map(|t| t.as_str()),
        ) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "x-amz-checksum-type needs x-amz-checksum-algorithm"
                ))
            }
            (Some(_), None | Some(ChecksumType::COMPOSITE)) => {
                Some(ChecksumType::COMPOSITE.to_string())
            }
            (Some(a), Some(ChecksumType::FULL_OBJECT)) if checksums::supports_full_object(*a) => {
                Some(ChecksumType::FULL_OBJECT.to_string())
            }
            (Some(a), Some(t)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "checksum type {t} is not supported with {}",
                    a.name()
                ))
            }
        };
        let upload_id = hex::encode(weft_common::effects::random::<[u8; 16]>());
        let upload = Upload {
            upload_id: upload_id.clone(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated_ms: now_ms(),
            storage_class: class.name,
            user_metadata,
            content: ContentHeaders {
                content_type: input.content_type.map(|c| c.to_string()),
                content_encoding: strip_aws_chunked(input.content_encoding),
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                expires_ms: input.expires.map(timestamp_ms),
            },
            checksum_algorithm: checksum_algorithm.map(|a| a.name().to_string()),
            checksum_type: checksum_type.clone(),
            tags,
            parts: Vec::new(),
        };
        match self
            .metad
            .command(&Command::CreateUpload { upload })
            .await
            .map_err(metad_err)?
        {
            CommandResult::Done => Ok(S3Response::new(CreateMultipartUploadOutput {
                bucket: Some(input.bucket),
                key: Some(input.key),
                upload_id: Some(upload_id),
                checksum_algorithm: checksum_algorithm
                    .map(|a| ChecksumAlgorithm::from(a.name().to_string())),
                checksum_type: checksum_type.map(ChecksumType::from),
                ..Default::default()
            })),
            CommandResult::Refused { refusal } => Err(refusal_to_s3(
                Refused::CreateUpload {
                    bucket: &input.bucket,
                },
                refusal,
            )),
            other => Err(unexpected("create upload", other)),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number))]
    pub(super) async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let upload = self
            .part_target(
                &input.upload_id,
                &input.bucket,
                &input.key,
                input.part_number,
            )
            .await?;
        let size = body_length(input.content_length, &req.headers, input.body.is_some())?;
        if size > PUT_BYTES_MAX {
            return Err(s3_error!(EntityTooLarge, "a part is at most 5 GiB"));
        }
        let class = self.storage_class(Some(&upload.storage_class), &binfo)?;
        let size = size as u64;
        let spec = checksums::Spec::from_request(
            &claimed_checksums!(input),
            &req.headers,
            input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str())
                .or(upload.checksum_algorithm.as_deref()),
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
        let (etag, _) = self
            .commit_part(
                &input.upload_id,
                input.part_number,
                size,
                written,
                stored_checksums.clone(),
            )
            .await?;
        let c = checksums::to_dto(&stored_checksums);
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number))]
    pub(super) async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let upload = self
            .part_target(
                &input.upload_id,
                &input.bucket,
                &input.key,
                input.part_number,
            )
            .await?;
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
        let range = match &input.copy_source_range {
            None => 0..src.size,
            Some(r) => {
                let parsed = Range::parse(r).map_err(|_| {
                    s3_error!(
                        InvalidArgument,
                        "x-amz-copy-source-range must be bytes=first-last"
                    )
                })?;
                match parsed {
                    Range::Int {
                        first,
                        last: Some(last),
                    } if first <= last && last < src.size => first..last + 1,
                    _ => {
                        return Err(s3_error!(
                            InvalidRange,
                            "the copy source range is not satisfiable for {} bytes",
                            src.size
                        ))
                    }
                }
            }
        };
        let class = self.storage_class(Some(&upload.storage_class), &binfo)?;
        let spec = checksums::Spec {
            algs: upload
                .checksum_algorithm
                .as_deref()
                .and_then(checksums::Alg::parse)
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let size = range.end - range.start;
        let written = self
            .copy_data((&src, lease), range, &class, spec.hasher())
            .await?;
        let stored = spec.verify(&written.checksum, None)?;
        let (etag, now) = self
            .commit_part(&input.upload_id, input.part_number, size, written, stored)
            .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(now)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    pub(super) async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let mut input = req.input;
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let listed = input
            .multipart_upload
            .take()
            .and_then(|m| m.parts)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                s3_error!(
                    MalformedXML,
                    "CompleteMultipartUpload needs at least one part"
                )
            })?;
        let mut parts: Vec<(u32, String)> = Vec::with_capacity(listed.len());
        for p in &listed {
            let n = p
                .part_number
                .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
            let etag = p
                .e_tag
                .as_ref()
                .map(|e| e.value().trim_matches('"').to_string())
                .ok_or_else(|| s3_error!(MalformedXML, "part {n} has no ETag"))?;
            if let Some((last, _)) = parts.last() {
                if n as u32 <= *last {
                    return Err(s3_error!(
                        InvalidPartOrder,
                        "parts must be listed in ascending order"
                    ));
                }
            }
            parts.push((n as u32, etag));
        }
        let upload = match self
            .upload(&input.upload_id, &input.bucket, &input.key)
            .await
        {
            Ok(u) => u,
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchUpload => {
                return match self.completed_already(&binfo, &input, &parts).await? {
                    Some(done) => Ok(S3Response::new(done)),
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        for p in &listed {
            check_listed_part_checksums(&upload, p)?;
        }
        let mut md5s = Vec::with_capacity(parts.len() * 16);
        let mut size = 0u64;
        let mut crc = 0u32;
        let mut part_sizes = Vec::with_capacity(parts.len());
        for (i, (n, etag)) in parts.iter().enumerate() {
            let Some(part) = upload.part(*n).filter(|p| &p.etag == etag) else {
                return Err(s3_error!(
                    InvalidPart,
                    "part {n} was not uploaded or its ETag does not match"
                ));
            };
            if i + 1 < parts.len() && part.size < PART_BYTES_MIN {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {n} is {} bytes; all parts but the last must be at least 5 MiB",
                    part.size
                ));
            }
            md5s.extend(hex::decode(&part.etag).unwrap_or_default());
            part_sizes.push(part.size);
            crc = if size == 0 {
                part.crc32c
            } else {
                crc32c::crc32c_combine(crc, part.crc32c, part.size as usize)
            };
            size += part.size;
        }
        let etag = format!("{}-{}", weft_common::checksum::md5_hex(&md5s), parts.len());
        let (stored_checksums, checksum_type) = multipart_checksum(&upload, &parts, &input)?;
        let version = ObjectVersion {
            version_id: VersionId::from_random(weft_common::effects::random()),
            size,
            etag: etag.clone(),
            crc32c: crc,
            last_modified_ms: now_ms(),
            storage_class: upload.storage_class.clone(),
            user_metadata: upload.user_metadata.clone(),
            content: upload.content.clone(),
            checksums: stored_checksums.clone(),
            checksum_type: checksum_type.clone(),
            tags: upload.tags.clone(),
            part_sizes,
            version_label: None,
            // metad builds the manifest from the parts it holds at commit:
            // a part re-uploaded since this gateway read the upload has new
            // segments, and the ones read here may already be released.
            segments: Vec::new(),
            tier: None,
            last_access_ms: None,
        };
        let version_label = version_label_for(&binfo, version.version_id);
        let cmd_parts = parts.clone();
        let cmd = Command::CompleteUpload {
            upload_id: input.upload_id.clone(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            parts,
            version,
            condition: write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?,
        };
        let result = if self.fault_ack_before_commit {
            CommandResult::Released { segments: vec![] }
        } else {
            self.metad.command(&cmd).await.map_err(metad_err)?
        };
        match result {
            CommandResult::Released { segments } => {
                self.release(segments);
                Ok(S3Response::new(completion(
                    &input,
                    etag,
                    version_label,
                    &stored_checksums,
                    checksum_type,
                )))
            }
            CommandResult::Refused {
                refusal: refusal @ Refusal::NoSuchUpload,
            } => match self.completed_already(&binfo, &input, &cmd_parts).await? {
                Some(done) => Ok(S3Response::new(done)),
                None => Err(refusal_to_s3(
                    Refused::CompleteUpload {
                        bucket: &input.bucket,
                        key: &input.key,
                        upload_id: &input.upload_id,
                    },
                    refusal,
                )),
            },
            CommandResult::Refused { refusal } => Err(refusal_to_s3(
                Refused::CompleteUpload {
                    bucket: &input.bucket,
                    key: &input.key,
                    upload_id: &input.upload_id,
                },
                refusal,
            )),
            other => Err(unexpected("complete upload", other)),
        }
    }

    /// A Complete of an upload that no longer exists: if the key's current
    /// version is the object these parts make (the same multipart ETag, the
    /// MD5 of the listed parts' MD5s and their count, and as many parts),
    /// the upload was completed, most likely by an earlier attempt of this
    /// very request whose answer was lost (SDKs retry a Complete after a
    /// timeout or a 5xx), and this answers as that attempt would have, as
    /// S3 does. Only bytes equal to what the parts hold can match, so a
    /// success here never claims an object the caller did not make.
    async fn completed_already(
        &self,
        binfo: &weft_common::manifest::BucketInfo,
        input: &CompleteMultipartUploadInput,
        parts: &[(u32, String)],
    ) -> S3Result<Option<CompleteMultipartUploadOutput>> {
        let mut md5s = Vec::with_capacity(parts.len() * 16);
        for (_, etag) in parts {
            match hex::decode(etag) {
                Ok(md5) if md5.len() == 16 => md5s.extend(md5),
                _ => return Ok(None),
            }
        }
        let etag = format!("{}-{}", weft_common::checksum::md5_hex(&md5s), parts.len());
        let Some(v) = self.current_opt(&input.bucket, &input.key).await? else {
            return Ok(None);
        };
        if v.etag != etag || v.part_sizes.len() != parts.len() {
            return Ok(None);
        }
        tracing::info!(upload_id = %input.upload_id, bucket = %input.bucket, key = %input.key, "CompleteMultipartUpload of an upload already completed; answering as its completion did");
        Ok(Some(completion(
            input,
            etag,
            version_label_for(binfo, v.version_id),
            &v.checksums,
            v.checksum_type,
        )))
    }

    pub(super) async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        self.upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let cmd = Command::AbortUpload {
            upload_id: input.upload_id.clone(),
        };
        match self.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Released { segments } => {
                self.releaser.replaced(segments);
                Ok(S3Response::new(AbortMultipartUploadOutput::default()))
            }
            CommandResult::Refused { refusal } => Err(refusal_to_s3(
                Refused::AbortUpload {
                    upload_id: &input.upload_id,
                },
                refusal,
            )),
            other => Err(unexpected("abort upload", other)),
        }
    }

    pub(super) async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let upload = self
            .upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let after: Vec<&UploadPart> = upload
            .parts
            .iter()
            .filter(|p| p.part_number > marker)
            .collect();
        let truncated = after.len() > max;
        let page: Vec<&UploadPart> = after.into_iter().take(max).collect();
        let next = if truncated {
            page.last().map(|p| p.part_number as i32)
        } else {
            None
        };
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            storage_class: Some(StorageClass::from(upload.storage_class.clone())),
            parts: Some(
                page.into_iter()
                    .map(|p| {
                        let c = checksums::to_dto(&p.checksums);
                        Part {
                            part_number: Some(p.part_number as i32),
                            e_tag: Some(ETag::Strong(p.etag.clone())),
                            size: Some(p.size as i64),
                            last_modified: Some(timestamp(p.last_modified_ms)),
                            checksum_crc32: c.checksum_crc32,
                            checksum_crc32c: c.checksum_crc32c,
                            checksum_crc64nvme: c.checksum_crc64nvme,
                            checksum_sha1: c.checksum_sha1,
                            checksum_sha256: c.checksum_sha256,
                        }
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let uploads = match self
            .metad
            .query(&Query::Uploads {
                bucket: input.bucket.clone(),
                prefix: prefix.clone(),
            })
            .await
            .map_err(metad_err)?
        {
            QueryResult::Uploads { uploads } => uploads,
            other => return Err(unexpected("list uploads", other)),
        };
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let mut out_uploads = vec![];
        let mut prefixes: Vec<String> = vec![];
        let mut truncated = false;
        let mut last: Option<(String, Option<String>)> = None;
        for u in uploads {
            // After (key-marker, upload-id-marker): keys past the marker, or
            // the marker's key with a later upload.
            let after = match &id_marker {
                Some(id) if !key_marker.is_empty() => {
                    u.key > key_marker || (u.key == key_marker && u.upload_id > *id)
                }
                _ => key_marker.is_empty() || u.key > key_marker,
            };
            if !after {
                continue;
            }
            let cp = delimiter.as_ref().and_then(|d| {
                u.key[prefix.len()..].find(d.as_str()).map(|p| {
                    format!(
                        "{prefix}{}",
                        &u.key[prefix.len()..prefix.len() + p + d.len()]
                    )
                })
            });
            if let Some(cp) = &cp {
                if prefixes.last() == Some(cp) {
                    continue;
                }
            }
            if out_uploads.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            match cp {
                Some(cp) => {
                    last = Some((cp.clone(), None));
                    prefixes.push(cp);
                }
                None => {
                    last = Some((u.key.clone(), Some(u.upload_id.clone())));
                    out_uploads.push(MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.initiated_ms)),
                        storage_class: Some(StorageClass::from(u.storage_class)),
                        ..Default::default()
                    });
                }
            }
        }
        let (next_key, next_id) = match (truncated, last) {
            (true, Some((k, id))) => (Some(k), id),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(prefix),
            delimiter: input.delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            encoding_type: input.encoding_type,
            uploads: Some(out_uploads),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    /// The upload a part is for, after checking the part number.
    pub(super) async fn part_target(
        &self,
        upload_id: &str,
        bucket: &str,
        key: &str,
        part_number: i32,
    ) -> S3Result<Upload> {
        if !(1..=PARTS_MAX).contains(&part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers are 1 to {PARTS_MAX}"
            ));
        }
        self.upload(upload_id, bucket, key).await
    }

    /// Commits a written part to its upload: `(etag, time)`. If the upload
    /// is gone meanwhile, the part's shards are deleted.
    pub(super) async fn commit_part(
        &self,
        upload_id: &str,
        part_number: i32,
        size: u64,
        written: crate::write_path::Written,
        checksums: BTreeMap<String, String>,
    ) -> S3Result<(String, u64)> {
        let now = now_ms();
        let etag = written.etag.clone();
        let segments = written.segments.clone();
        let cmd = Command::PutPart {
            upload_id: upload_id.to_string(),
            part: UploadPart {
                part_number: part_number as u32,
                etag: written.etag,
                size,
                crc32c: written.crc32c,
                last_modified_ms: now,
                checksums,
                segments: written.segments,
            },
        };
        let committed = self
            .commit_written(&cmd, &segments)
            .await
            .map_err(metad_err)?;
        match committed.result {
            CommandResult::Released { segments } => {
                if !segments.is_empty() {
                    tracing::debug!(%upload_id, part_number, released = segments.len(), after_unknown = committed.after_unknown, "part replaced; releasing the old part's segments");
                }
                self.release(segments);
                Ok((etag, now))
            }
            CommandResult::Refused {
                refusal: refusal @ Refusal::NoSuchUpload,
            } => {
                self.discard_unreferenced(segments, committed.after_unknown);
                Err(refusal_to_s3(Refused::PutPart { upload_id }, refusal))
            }
            CommandResult::Refused { refusal } => {
                Err(refusal_to_s3(Refused::PutPart { upload_id }, refusal))
            }
            other => Err(unexpected("put part", other)),
        }
    }
}

/// The answer to a completed multipart upload.
fn completion(
    input: &CompleteMultipartUploadInput,
    etag: String,
    version_label: Option<String>,
    stored_checksums: &BTreeMap<String, String>,
    checksum_type: Option<String>,
) -> CompleteMultipartUploadOutput {
    let c = checksums::to_dto(stored_checksums);
    CompleteMultipartUploadOutput {
        checksum_crc32: c.checksum_crc32,
        checksum_crc32c: c.checksum_crc32c,
        checksum_crc64nvme: c.checksum_crc64nvme,
        checksum_sha1: c.checksum_sha1,
        checksum_sha256: c.checksum_sha256,
        checksum_type: checksum_type.map(ChecksumType::from),
        version_id: version_label,
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        ..Default::default()
    }
}
