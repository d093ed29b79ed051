//! The S3 API: s3s parses and authenticates, this module implements the
//! operations on top of [`Gateway`] and metad.

use bytes::Bytes;
use futures::StreamExt;
use s3s::auth::Credentials;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_stream::wrappers::ReceiverStream;
use weft_common::manifest::{
    BucketInfo, ContentHeaders, ObjectVersion, Segment, Upload, UploadPart,
};
use weft_common::rpc::{
    Command, CommandResult, ListMarker, ListRequest, Query, QueryResult, Refusal, WriteCondition,
};
use weft_common::VersionId;

use crate::auth::KeyStore;
use crate::checksums;
use crate::error::{to_s3, GatewayError};
use crate::release::ReadLease;
use crate::{Gateway, GatewayConfig};

pub use crate::limits::KEY_BYTES_MAX;
pub use crate::limits::LIST_KEYS_MAX;
pub use crate::limits::PARTS_MAX;
pub use crate::limits::PART_BYTES_MIN;
pub use crate::limits::PUT_BYTES_MAX;
pub use crate::limits::USER_METADATA_BYTES_MAX;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn timestamp_ms(t: Timestamp) -> u64 {
    let t = time::OffsetDateTime::from(t);
    (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// The `x-amz-checksum-*` values a PUT or UploadPart input carries.
macro_rules! claimed_checksums {
    ($input:expr) => {
        Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            ..Default::default()
        }
    };
}

/// The S3 trait implementation.
#[derive(Clone)]
pub struct WeftS3 {
    gw: Gateway,
}

/// Builds the s3s service with SigV4 against metad's keys and
/// virtual-hosted-style addressing for the configured domains.
pub fn build_service(
    gw: Gateway,
    keys: KeyStore,
    cfg: &GatewayConfig,
) -> Result<S3Service, crate::StartError> {
    let mut b = S3ServiceBuilder::new(WeftS3 { gw });
    b.set_auth(keys);
    b.set_access(crate::access::Gate);
    if !cfg.virtual_host_domains.is_empty() {
        for d in &cfg.virtual_host_domains {
            if d.is_empty() || d.contains(':') || d.starts_with('.') || d.ends_with('.') {
                return Err(crate::StartError::Domain(format!(
                    "{d:?} is not a domain (no port, no leading or trailing dot)"
                )));
            }
        }
        b.set_host(VirtualHosts {
            domains: cfg
                .virtual_host_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        });
    }
    Ok(b.build())
}

/// Virtual-hosted-style addressing: `bucket.DOMAIN[:port]` names a bucket
/// for each configured DOMAIN; every other host (an IP, `localhost:9000`, a
/// load balancer's name) is path-style. Unlike s3s's `MultiDomain`, an
/// unknown host is never taken for a bucket name.
struct VirtualHosts {
    domains: Vec<String>,
}

impl s3s::host::S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        // Strip a port; bracketed IPv6 literals are never virtual hosts.
        let name = if host.starts_with('[') {
            host
        } else {
            host.rsplit_once(':')
                .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .map(|(h, _)| h)
                .unwrap_or(host)
        };
        for d in &self.domains {
            if name.len() > d.len() + 1 && name.to_ascii_lowercase().ends_with(d.as_str()) {
                let cut = name.len() - d.len();
                if name.as_bytes()[cut - 1] == b'.' {
                    let bucket = &name[..cut - 1];
                    return Ok(s3s::host::VirtualHost::new(d.as_str())
                        .with_bucket(bucket.to_ascii_lowercase()));
                }
            }
        }
        Ok(s3s::host::VirtualHost::new(host))
    }
}

/// A part listed in CompleteMultipartUpload may carry the checksums the
/// client computed for it; each must equal what was stored when the part was
/// uploaded (S3 answers InvalidPart otherwise), never be ignored.
fn check_listed_part_checksums(upload: &Upload, p: &CompletedPart) -> S3Result<()> {
    let n = p.part_number.unwrap_or(0);
    let claimed = [
        (checksums::Alg::Crc32, p.checksum_crc32.as_ref()),
        (checksums::Alg::Crc32c, p.checksum_crc32c.as_ref()),
        (checksums::Alg::Crc64Nvme, p.checksum_crc64nvme.as_ref()),
        (checksums::Alg::Sha1, p.checksum_sha1.as_ref()),
        (checksums::Alg::Sha256, p.checksum_sha256.as_ref()),
    ];
    let stored = upload.part(n as u32).map(|part| &part.checksums);
    for (alg, value) in claimed {
        let Some(value) = value else { continue };
        if stored.and_then(|c| c.get(alg.name())) != Some(value) {
            return Err(s3_error!(
                InvalidPart,
                "part {n}: the {} checksum in the request ({value}) does not match the part as uploaded",
                alg.name()
            ));
        }
    }
    Ok(())
}

fn metad_err(e: weft_metad::MetadClientError) -> s3s::S3Error {
    to_s3(GatewayError::Metad(e))
}

fn unexpected(what: &str, got: impl std::fmt::Debug) -> s3s::S3Error {
    s3_error!(InternalError, "unexpected metad answer to {what}: {got:?}")
}

fn encode_token(m: &ListMarker) -> String {
    let raw = match m {
        ListMarker::Key(k) => format!("k{k}"),
        ListMarker::Prefix(p) => format!("p{p}"),
    };
    hex::encode(raw)
}

fn decode_token(t: &str) -> Option<ListMarker> {
    let raw = String::from_utf8(hex::decode(t).ok()?).ok()?;
    let (kind, rest) = raw.split_at(
        raw.char_indices()
            .nth(1)
            .map(|(i, _)| i)
            .unwrap_or(raw.len()),
    );
    match kind {
        "k" => Some(ListMarker::Key(rest.to_string())),
        "p" => Some(ListMarker::Prefix(rest.to_string())),
        _ => None,
    }
}

impl WeftS3 {
    async fn upload(&self, upload_id: &str, bucket: &str, key: &str) -> S3Result<Upload> {
        let q = Query::Upload {
            upload_id: upload_id.to_string(),
        };
        match self.gw.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::Upload { upload: Some(u) } if u.bucket == bucket && u.key == key => Ok(u),
            QueryResult::Upload { .. } => Err(s3_error!(
                NoSuchUpload,
                "upload {upload_id} does not exist; it may have been completed or aborted"
            )),
            other => Err(unexpected("upload lookup", other)),
        }
    }

    /// Stores a request body as new segments and checks it against
    /// Content-MD5 and any `x-amz-checksum-*` value (header or trailer). On
    /// a mismatch the segments are deleted and nothing is committed.
    async fn store_body(
        &self,
        class: &weft_common::profile::StorageClassProfile,
        size: u64,
        body: Option<StreamingBlob>,
        spec: &checksums::Spec,
        content_md5: Option<&str>,
        trailers: Option<&s3s::TrailingHeaders>,
    ) -> S3Result<(crate::write_path::Written, BTreeMap<String, String>)> {
        let written = match body {
            Some(body) => self.gw.write_object(class, size, body, spec.hasher()).await,
            None => {
                self.gw
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
                self.gw.metrics.bytes_written.inc_by(size);
                Ok((written, stored))
            }
            Err(e) => {
                self.gw.release.unreferenced(written.segments);
                Err(e)
            }
        }
    }

    /// The object checksum of a completed upload, from its parts' checksums,
    /// checked against the value the client sent with the completion.
    fn multipart_checksum(
        &self,
        upload: &Upload,
        parts: &[(u32, String)],
        input: &CompleteMultipartUploadInput,
    ) -> S3Result<(BTreeMap<String, String>, Option<String>)> {
        let upload_alg = upload
            .checksum_algorithm
            .as_deref()
            .and_then(checksums::Alg::parse);
        // A value of another algorithm, or a type other than the upload's,
        // cannot be checked against the parts: refused, not ignored.
        let dto = Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            ..Default::default()
        };
        for a in checksums::ALL {
            if checksums::get(&dto, a).is_some() && upload_alg != Some(a) {
                return Err(s3_error!(
                    InvalidRequest,
                    "the upload was created with checksum algorithm {}, so a {} checksum cannot be checked; send none or the upload's",
                    upload_alg.map_or("none", |u| u.name()),
                    a.name()
                ));
            }
        }
        if let Some(t) = &input.checksum_type {
            if upload.checksum_type.as_deref() != Some(t.as_str()) {
                return Err(s3_error!(
                    InvalidRequest,
                    "x-amz-checksum-type {} differs from the upload's ({})",
                    t.as_str(),
                    upload.checksum_type.as_deref().unwrap_or("none")
                ));
            }
        }
        let Some(alg) = upload_alg else {
            return Ok((BTreeMap::new(), None));
        };
        let full = upload.checksum_type.as_deref() == Some(ChecksumType::FULL_OBJECT);
        let mut values = Vec::with_capacity(parts.len());
        for (n, _) in parts {
            let part = upload.part(*n).expect("parts were checked by the caller");
            let Some(v) = part.checksums.get(alg.name()) else {
                return Err(s3_error!(
                    InvalidRequest,
                    "part {n} was uploaded without its {} checksum",
                    alg.name()
                ));
            };
            values.push((v.clone(), part.size));
        }
        let combined = checksums::combine_parts(alg, full, &values)
            .ok_or_else(|| s3_error!(InvalidRequest, "a part checksum is malformed"))?;
        let sent = match alg {
            checksums::Alg::Crc32 => input.checksum_crc32.as_ref(),
            checksums::Alg::Crc32c => input.checksum_crc32c.as_ref(),
            checksums::Alg::Crc64Nvme => input.checksum_crc64nvme.as_ref(),
            checksums::Alg::Sha1 => input.checksum_sha1.as_ref(),
            checksums::Alg::Sha256 => input.checksum_sha256.as_ref(),
        };
        if let Some(sent) = sent {
            // Clients send the composite value with or without the `-N` suffix.
            let bare = combined.split('-').next().unwrap_or(&combined);
            if sent != &combined && sent.as_str() != bare {
                return Err(s3_error!(
                    BadDigest,
                    "the {} checksum you specified ({sent}) did not match the calculated one ({combined})",
                    alg.name()
                ));
            }
        }
        let kind = if full {
            ChecksumType::FULL_OBJECT
        } else {
            ChecksumType::COMPOSITE
        };
        Ok((
            BTreeMap::from([(alg.name().to_string(), combined)]),
            Some(kind.to_string()),
        ))
    }

    /// Deletes one key (or one version of it): `(version whose data is
    /// released, whether a delete marker was created or removed, the version
    /// id to report)`.
    async fn delete_one(
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
                marker: Some((VersionId::from_random(rand::random()), now_ms())),
            },
        };
        match self.gw.metad.command(&cmd).await.map_err(metad_err)? {
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
            CommandResult::Refused { refusal } => Err(refusal_error(refusal, bucket, key)),
            other => Err(unexpected("delete object", other)),
        }
    }

    async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: BTreeMap<String, String>,
    ) -> S3Result<()> {
        let cmd = Command::SetObjectTags {
            bucket: bucket.to_string(),
            key: key.to_string(),
            tags,
        };
        match self.gw.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(()),
            CommandResult::Refused { refusal } => Err(refusal_error(refusal, bucket, key)),
            other => Err(unexpected("set object tags", other)),
        }
    }

    async fn set_bucket_tags(&self, bucket: &str, tags: BTreeMap<String, String>) -> S3Result<()> {
        let cmd = Command::SetBucketTags {
            bucket: bucket.to_string(),
            tags,
        };
        match self.gw.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(()),
            CommandResult::Refused { refusal } => Err(refusal_error(refusal, bucket, "")),
            other => Err(unexpected("set bucket tags", other)),
        }
    }

    /// One page of a listing from metad.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<String>,
        after: Option<ListMarker>,
        max_keys: u32,
    ) -> S3Result<weft_common::rpc::ListPage> {
        let q = Query::List(ListRequest {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            delimiter,
            after,
            max_keys,
        });
        match self.gw.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::List { page: Some(p) } => Ok(p),
            QueryResult::List { page: None } => {
                Err(s3_error!(NoSuchBucket, "bucket {bucket} does not exist"))
            }
            other => Err(unexpected("list", other)),
        }
    }

    /// The upload a part is for, after checking the part number.
    async fn part_target(
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
    async fn commit_part(
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
                self.release(segments);
                Ok((etag, now))
            }
            CommandResult::Refused {
                refusal: Refusal::NoSuchUpload,
            } => {
                self.discard_unreferenced(segments, committed.after_unknown);
                Err(s3_error!(
                    NoSuchUpload,
                    "upload {upload_id} was completed or aborted meanwhile"
                ))
            }
            other => Err(unexpected("put part", other)),
        }
    }

    /// Commits `cmd`, which references `written`, shards this request wrote.
    /// A space-low refusal comes before metad proposes anything, and the
    /// client reports any failure after an unknown outcome as
    /// `OutcomeUnknown`, so a `DiskFull` rejection proves the shards
    /// unreferenced: they go at once instead of waiting for garbage
    /// collection. Every other failure leaves them to it.
    async fn commit_written(
        &self,
        cmd: &Command,
        written: &[Segment],
    ) -> Result<weft_client::Committed, weft_metad::MetadClientError> {
        let r = self.gw.metad.command_outcome(cmd).await;
        if let Err(weft_metad::MetadClientError::Rejected {
            code: weft_common::rpc::RpcErrorCode::DiskFull,
            ..
        }) = &r
        {
            self.gw.release.unreferenced(written.to_vec());
        }
        r
    }

    /// Deletes shards this request wrote for a command metad refused, at
    /// once, unless an earlier attempt's outcome was unknown: then a refusal
    /// cannot prove the first attempt did not commit them, and garbage
    /// collection (which asks metad) decides instead.
    fn discard_unreferenced(&self, segments: Vec<Segment>, after_unknown: bool) {
        if after_unknown {
            tracing::warn!(
                segments = segments.len(),
                "command refused after an unknown outcome; leaving its shards to garbage collection"
            );
            return;
        }
        self.gw.release.unreferenced(segments);
    }

    fn release(&self, segments: Vec<Segment>) {
        self.gw.release.replaced(segments);
    }

    async fn bucket(&self, creds: Option<&Credentials>, name: &str) -> S3Result<BucketInfo> {
        let q = Query::Bucket {
            name: name.to_string(),
        };
        match self.gw.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::Bucket { bucket: Some(b) } => {
                self.gw.keys.authorize(creds, &b).await?;
                Ok(b)
            }
            QueryResult::Bucket { bucket: None } => {
                Err(s3_error!(NoSuchBucket, "bucket {name} does not exist"))
            }
            other => Err(unexpected("bucket lookup", other)),
        }
    }

    /// One version by S3 version id: NoSuchVersion if unknown, 405
    /// MethodNotAllowed for a delete marker (as S3 answers).
    async fn version_of(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> S3Result<ObjectVersion> {
        if version_id != "null" && version_id.parse::<VersionId>().is_err() {
            return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
        }
        let q = Query::ObjectVersion {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.to_string(),
        };
        match self.gw.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::VersionRecord {
                bucket_exists: false,
                ..
            } => Err(s3_error!(NoSuchBucket, "bucket {bucket} does not exist")),
            QueryResult::VersionRecord { record: None, .. } => Err(s3_error!(
                NoSuchVersion,
                "version {version_id} of {key} does not exist"
            )),
            QueryResult::VersionRecord {
                record: Some(r), ..
            } => match r.version {
                Some(mut v) => {
                    v.version_label = Some(r.version_id);
                    Ok(v)
                }
                None => Err(s3_error!(
                    MethodNotAllowed,
                    "version {version_id} of {key} is a delete marker"
                )),
            },
            other => Err(unexpected("version lookup", other)),
        }
    }

    /// The current version, or the one `version_id` names.
    async fn version_or_current(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<ObjectVersion> {
        match version_id {
            Some(id) => self.version_of(bucket, key, id).await,
            None => self.current(bucket, key).await,
        }
    }

    async fn current_opt(&self, bucket: &str, key: &str) -> S3Result<Option<ObjectVersion>> {
        match self.current(bucket, key).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchKey => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The source of a copy, authorised for the caller, with the
    /// `x-amz-copy-source-if-*` conditions checked (any failure is 412), and
    /// the read lease that keeps its shards until the copy has read them.
    async fn copy_source(
        &self,
        creds: Option<&Credentials>,
        src: &CopySource,
        conditions: CopyConditions<'_>,
    ) -> S3Result<(ObjectVersion, ReadLease)> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = src
        else {
            return Err(s3_error!(
                NotImplemented,
                "access-point copy sources are not supported"
            ));
        };
        self.bucket(creds, bucket).await?;
        let lease = self.gw.release.leases().begin();
        let v = self
            .version_or_current(bucket, key, version_id.as_deref())
            .await?;
        lease.resolve(&v.segments);
        check_preconditions(&v, conditions.0, conditions.1, conditions.2, conditions.3).map_err(
            |e| {
                if *e.code() == s3s::S3ErrorCode::NotModified {
                    s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    )
                } else {
                    e
                }
            },
        )?;
        Ok((v, lease))
    }

    /// Streams `range` of `src` into new segments (server-side copy).
    async fn copy_data(
        &self,
        (src, lease): (&ObjectVersion, ReadLease),
        range: std::ops::Range<u64>,
        class: &weft_common::profile::StorageClassProfile,
        hasher: Option<s3s::checksum::ChecksumHasher>,
    ) -> S3Result<crate::write_path::Written> {
        let len = range.end - range.start;
        if len == 0 {
            return self
                .gw
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
            .gw
            .read_object(src, range, lease)
            .await
            .map_err(to_s3)?;
        let written = self
            .gw
            .write_object(class, len, ReceiverStream::new(rx), hasher)
            .await
            .map_err(to_s3)?;
        self.gw.metrics.bytes_written.inc_by(len);
        Ok(written)
    }

    async fn current(&self, bucket: &str, key: &str) -> S3Result<ObjectVersion> {
        let q = Query::Object {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        match self.gw.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::Object {
                version: Some(v), ..
            } => Ok(v),
            QueryResult::Object {
                bucket_exists: false,
                ..
            } => Err(s3_error!(NoSuchBucket, "bucket {bucket} does not exist")),
            QueryResult::Object { .. } => Err(s3_error!(NoSuchKey, "key {key} does not exist")),
            other => Err(unexpected("object lookup", other)),
        }
    }
}

fn validate_bucket_name(name: &str) -> S3Result<()> {
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ok_ends = name
        .bytes()
        .next()
        .zip(name.bytes().last())
        .map(|(f, l)| f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric())
        .unwrap_or(false);
    let ok_dots = !name.contains("..") && name.parse::<std::net::Ipv4Addr>().is_err();
    // Prefixes and suffixes S3 reserves.
    let ok_reserved = !["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| name.starts_with(p))
        && !["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .any(|s| name.ends_with(s));
    if ok_len && ok_chars && ok_ends && ok_dots && ok_reserved {
        Ok(())
    } else {
        Err(s3_error!(InvalidBucketName, "the bucket name {name:?} is not valid: use 3-63 lowercase letters, digits, '-' and '.'"))
    }
}

#[async_trait::async_trait]
impl S3 for WeftS3 {
    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket))]
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let name = req.input.bucket.clone();
        validate_bucket_name(&name)?;
        crate::refusals::check_create_bucket(&req.input)?;
        let Some(creds) = req.credentials.as_ref() else {
            return Err(s3_error!(
                AccessDenied,
                "anonymous requests may not create buckets"
            ));
        };
        let cmd = Command::CreateBucket {
            bucket: BucketInfo {
                name: name.clone(),
                owner: creds.access_key.clone(),
                created_ms: now_ms(),
                tags: Default::default(),
                versioning: None,
            },
        };
        match self.gw.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{name}")),
            })),
            CommandResult::Refused {
                refusal: Refusal::BucketExists { owner },
            } if owner == creds.access_key => Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "you already own the bucket {name}"
            )),
            CommandResult::Refused {
                refusal: Refusal::BucketExists { .. },
            } => Err(s3_error!(
                BucketAlreadyExists,
                "the bucket {name} exists and belongs to someone else"
            )),
            other => Err(unexpected("create bucket", other)),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket))]
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket.clone();
        self.bucket(req.credentials.as_ref(), &name).await?;
        match self
            .gw
            .metad
            .command(&Command::DeleteBucket { name: name.clone() })
            .await
            .map_err(metad_err)?
        {
            CommandResult::Done => Ok(S3Response::new(DeleteBucketOutput {})),
            CommandResult::Refused {
                refusal: Refusal::BucketNotEmpty,
            } => Err(s3_error!(
                BucketNotEmpty,
                "the bucket {name} is not empty; delete its objects first"
            )),
            CommandResult::Refused {
                refusal: Refusal::NoSuchBucket,
            } => Err(s3_error!(NoSuchBucket, "bucket {name} does not exist")),
            other => Err(unexpected("delete bucket", other)),
        }
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let root = self.gw.keys.is_root(req.credentials.as_ref()).await?;
        let me = req.credentials.as_ref().map(|c| c.access_key.clone());
        let buckets = match self
            .gw
            .metad
            .query(&Query::Buckets)
            .await
            .map_err(metad_err)?
        {
            QueryResult::Buckets { buckets } => buckets,
            other => return Err(unexpected("list buckets", other)),
        };
        let list = buckets
            .into_iter()
            .filter(|b| root || Some(&b.owner) == me.as_ref())
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(list),
            owner: me.map(|id| Owner {
                display_name: Some(id.clone()),
                id: Some(id),
            }),
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn put_object(
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
                return Err(refusal_error(r, &input.bucket, &input.key));
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
        let Some(class) = self.gw.profiles.class(class_name.as_deref()).cloned() else {
            return Err(s3_error!(
                InvalidStorageClass,
                "storage class {class_name:?} is not offered by this cluster"
            ));
        };
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
            version_id: VersionId::from_random(rand::random()),
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
        };
        let segments = version.segments.clone();
        let version_label = version_label_for(&binfo, version.version_id);
        let cmd = Command::PutObject {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            version,
            condition,
        };
        let mut after_unknown = false;
        let result = if self.gw.fault_ack_before_commit {
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
                    self.gw.release.replaced(prev.segments);
                }
                let c = checksums::to_dto(&stored_checksums);
                Ok(S3Response::new(PutObjectOutput {
                    e_tag: Some(ETag::Strong(written.etag)),
                    version_id: version_label,
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
                Err(refusal_error(refusal, &input.bucket, &input.key))
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
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        // Before asking metad: a replace committed after this point waits
        // for this read before releasing the shards it reads.
        let lease = self.gw.release.leases().begin();
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
        let full = range.start == 0 && range.end == v.size;
        let len = range.end - range.start;
        let rx = self.gw.read_object(&v, range, lease).await.map_err(to_s3)?;
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

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
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
        Ok(S3Response::new(HeadObjectOutput {
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
    async fn delete_object(
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

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn create_multipart_upload(
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
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let user_metadata = user_metadata(input.metadata)?;
        let tags = parse_tagging_header(input.tagging.as_deref())?;
        let class_name = input.storage_class.as_ref().map(|c| c.as_str().to_string());
        let Some(class) = self.gw.profiles.class(class_name.as_deref()).cloned() else {
            return Err(s3_error!(
                InvalidStorageClass,
                "storage class {class_name:?} is not offered by this cluster"
            ));
        };
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
        let upload_id = hex::encode(rand::random::<[u8; 16]>());
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
            .gw
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
            CommandResult::Refused {
                refusal: Refusal::NoSuchBucket,
            } => Err(s3_error!(
                NoSuchBucket,
                "bucket {} does not exist",
                input.bucket
            )),
            other => Err(unexpected("create upload", other)),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number))]
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
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
        let Some(class) = self.gw.profiles.class(Some(&upload.storage_class)).cloned() else {
            return Err(s3_error!(
                InvalidStorageClass,
                "storage class {} is no longer offered",
                upload.storage_class
            ));
        };
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

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let mut input = req.input;
        let binfo = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let upload = self
            .upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
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
        let (stored_checksums, checksum_type) = self.multipart_checksum(&upload, &parts, &input)?;
        let version = ObjectVersion {
            version_id: VersionId::from_random(rand::random()),
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
        };
        let version_label = version_label_for(&binfo, version.version_id);
        let cmd = Command::CompleteUpload {
            upload_id: input.upload_id.clone(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            parts,
            version,
            condition: write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?,
        };
        let result = if self.gw.fault_ack_before_commit {
            CommandResult::Released { segments: vec![] }
        } else {
            self.gw.metad.command(&cmd).await.map_err(metad_err)?
        };
        match result {
            CommandResult::Released { segments } => {
                self.release(segments);
                let c = checksums::to_dto(&stored_checksums);
                Ok(S3Response::new(CompleteMultipartUploadOutput {
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
                }))
            }
            CommandResult::Refused {
                refusal: Refusal::NoSuchUpload,
            } => Err(s3_error!(
                NoSuchUpload,
                "upload {} was completed or aborted meanwhile",
                input.upload_id
            )),
            CommandResult::Refused {
                refusal: Refusal::InvalidPart { part_number },
            } => Err(s3_error!(
                InvalidPart,
                "part {part_number} changed while completing; retry"
            )),
            CommandResult::Refused {
                refusal: r @ (Refusal::PreconditionFailed | Refusal::NoSuchKey),
            } => Err(refusal_error(r, &input.bucket, &input.key)),
            CommandResult::Refused {
                refusal: Refusal::NoSuchBucket,
            } => Err(s3_error!(
                NoSuchBucket,
                "bucket {} does not exist",
                input.bucket
            )),
            other => Err(unexpected("complete upload", other)),
        }
    }

    async fn abort_multipart_upload(
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
        match self.gw.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Released { segments } => {
                self.gw.release.replaced(segments);
                Ok(S3Response::new(AbortMultipartUploadOutput::default()))
            }
            CommandResult::Refused {
                refusal: Refusal::NoSuchUpload,
            } => Err(s3_error!(
                NoSuchUpload,
                "upload {} does not exist",
                input.upload_id
            )),
            other => Err(unexpected("abort upload", other)),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn copy_object(
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
        let class_name = input
            .storage_class
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or(src.storage_class.clone());
        let Some(class) = self.gw.profiles.class(Some(&class_name)).cloned() else {
            return Err(s3_error!(
                InvalidStorageClass,
                "storage class {class_name:?} is not offered by this cluster"
            ));
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
            version_id: VersionId::from_random(rand::random()),
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
                Err(refusal_error(refusal, &input.bucket, &input.key))
            }
            other => Err(unexpected("copy object", other)),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket))]
    async fn delete_objects(
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

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let max_keys = input.max_keys.unwrap_or(LIST_KEYS_MAX);
        if max_keys < 0 {
            return Err(s3_error!(InvalidArgument, "max-keys must not be negative"));
        }
        let max_keys = max_keys.min(LIST_KEYS_MAX);
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        // A marker that is a common prefix (as NextMarker is when a page ends
        // on one) resumes after every key under it.
        let after = input
            .marker
            .as_ref()
            .filter(|m| !m.is_empty())
            .map(|m| match &delimiter {
                Some(d)
                    if m.starts_with(&prefix)
                        && m[prefix.len()..].ends_with(d.as_str())
                        && m[prefix.len()..].find(d.as_str()).map(|p| p + d.len())
                            == Some(m.len() - prefix.len()) =>
                {
                    ListMarker::Prefix(m.clone())
                }
                _ => ListMarker::Key(m.clone()),
            });
        let page = self
            .list_page(
                &input.bucket,
                &prefix,
                delimiter.clone(),
                after,
                max_keys as u32,
            )
            .await?;
        let next_marker = page.next.as_ref().map(|m| match m {
            ListMarker::Key(k) | ListMarker::Prefix(k) => k.clone(),
        });
        let url = is_url_encoding(input.encoding_type.as_ref())?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_list_value(&prefix, url)),
            delimiter: input.delimiter.map(|d| encode_list_value(&d, url)),
            marker: Some(encode_list_value(&input.marker.unwrap_or_default(), url)),
            max_keys: Some(max_keys),
            is_truncated: Some(page.next.is_some()),
            next_marker: next_marker.map(|m| encode_list_value(&m, url)),
            encoding_type: input.encoding_type,
            contents: Some(list_contents(page.entries, url)),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(encode_list_value(&p, url)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_parts(
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

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let uploads = match self
            .gw
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

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number))]
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
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
        let Some(class) = self.gw.profiles.class(Some(&upload.storage_class)).cloned() else {
            return Err(s3_error!(
                InvalidStorageClass,
                "storage class {} is no longer offered",
                upload.storage_class
            ));
        };
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

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let v = self.current(&input.bucket, &input.key).await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: to_tag_set(&v.tags),
            version_id: None,
        }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let tags = from_tag_set(&input.tagging.tag_set, TAGS_OBJECT_MAX)?;
        self.set_object_tags(&input.bucket, &input.key, tags)
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        self.set_object_tags(&input.bucket, &input.key, BTreeMap::new())
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let b = self
            .bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        if b.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        }
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: to_tag_set(&b.tags),
        }))
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let tags = from_tag_set(&input.tagging.tag_set, TAGS_BUCKET_MAX)?;
        self.set_bucket_tags(&input.bucket, tags).await?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        self.set_bucket_tags(&req.input.bucket, BTreeMap::new())
            .await?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        crate::refusals::check_put_bucket_versioning(&input.versioning_configuration)?;
        let status = match input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str())
        {
            Some(s @ ("Enabled" | "Suspended")) => s.to_string(),
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "versioning Status must be Enabled or Suspended"
                ))
            }
        };
        let cmd = Command::SetBucketVersioning {
            bucket: input.bucket.clone(),
            status,
        };
        match self.gw.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(S3Response::new(PutBucketVersioningOutput::default())),
            CommandResult::Refused { refusal } => Err(refusal_error(refusal, &input.bucket, "")),
            other => Err(unexpected("set versioning", other)),
        }
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let b = self
            .bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: b.versioning.map(BucketVersioningStatus::from),
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let max = input
            .max_keys
            .unwrap_or(LIST_KEYS_MAX)
            .clamp(0, LIST_KEYS_MAX);
        let prefix = input.prefix.clone().unwrap_or_default();
        let q = Query::Versions {
            bucket: input.bucket.clone(),
            prefix: prefix.clone(),
            key_marker: input.key_marker.clone().filter(|k| !k.is_empty()),
            version_marker: input.version_id_marker.clone().filter(|k| !k.is_empty()),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            max: max as u32,
        };
        let (entries, common_prefixes, next) =
            match self.gw.metad.query(&q).await.map_err(metad_err)? {
                QueryResult::Versions {
                    entries,
                    common_prefixes,
                    next,
                } => (entries, common_prefixes, next),
                other => return Err(unexpected("list versions", other)),
            };
        let url = is_url_encoding(input.encoding_type.as_ref())?;
        let truncated = next.is_some();
        let (next_key, next_version) = match next {
            Some((k, v)) => (Some(encode_list_value(&k, url)), v),
            None => (None, None),
        };
        let mut versions = vec![];
        let mut markers = vec![];
        for (key, r, latest) in entries {
            match r.version {
                Some(v) => versions.push(s3s::dto::ObjectVersion {
                    key: Some(encode_list_value(&key, url)),
                    version_id: Some(r.version_id),
                    is_latest: Some(latest),
                    e_tag: Some(ETag::Strong(v.etag)),
                    size: Some(v.size as i64),
                    last_modified: Some(timestamp(v.last_modified_ms)),
                    storage_class: Some(ObjectVersionStorageClass::from(v.storage_class)),
                    ..Default::default()
                }),
                None => markers.push(DeleteMarkerEntry {
                    key: Some(encode_list_value(&key, url)),
                    version_id: Some(r.version_id),
                    is_latest: Some(latest),
                    last_modified: Some(timestamp(r.last_modified_ms)),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_list_value(&prefix, url)),
            key_marker: input.key_marker,
            version_id_marker: input.version_id_marker,
            max_keys: Some(max),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(
                common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(encode_list_value(&p, url)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let bucket_owner = self
            .bucket(req.credentials.as_ref(), &input.bucket)
            .await?
            .owner;
        let max_keys = input.max_keys.unwrap_or(LIST_KEYS_MAX);
        if max_keys < 0 {
            return Err(s3_error!(InvalidArgument, "max-keys must not be negative"));
        }
        let max_keys = max_keys.min(LIST_KEYS_MAX);
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(t), _) => Some(decode_token(t).ok_or_else(|| {
                s3_error!(InvalidArgument, "the continuation token is not valid")
            })?),
            (None, Some(s)) if !s.is_empty() => Some(ListMarker::Key(s.clone())),
            _ => None,
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let q = Query::List(ListRequest {
            bucket: input.bucket.clone(),
            prefix: prefix.clone(),
            delimiter: input.delimiter.clone(),
            after,
            max_keys: max_keys as u32,
        });
        let page = match self.gw.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::List { page: Some(p) } => p,
            QueryResult::List { page: None } => {
                return Err(s3_error!(
                    NoSuchBucket,
                    "bucket {} does not exist",
                    input.bucket
                ))
            }
            other => return Err(unexpected("list", other)),
        };
        let key_count = (page.entries.len() + page.common_prefixes.len()) as i32;
        let url = is_url_encoding(input.encoding_type.as_ref())?;
        let owner = input.fetch_owner.unwrap_or(false).then(|| Owner {
            display_name: Some(bucket_owner.clone()),
            id: Some(bucket_owner.clone()),
        });
        let mut contents = list_contents(page.entries, url);
        if owner.is_some() {
            for c in &mut contents {
                c.owner = owner.clone();
            }
        }
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode_list_value(&p, url)),
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode_list_value(&prefix, url)),
            delimiter: input.delimiter.map(|d| encode_list_value(&d, url)),
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            is_truncated: Some(page.next.is_some()),
            next_continuation_token: page.next.as_ref().map(encode_token),
            continuation_token: input.continuation_token,
            start_after: input.start_after.map(|s| encode_list_value(&s, url)),
            encoding_type: input.encoding_type,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }
}

/// Content-Encoding without the `aws-chunked` transfer coding, which
/// describes the request, not the object (S3 does not store it).
fn strip_aws_chunked(v: Option<String>) -> Option<String> {
    let kept: Vec<&str> = v
        .as_deref()?
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// The bytes a GET or HEAD asks for (a Range or a `partNumber`) and the
/// Content-Range to answer with; the whole object when neither is given.
fn requested_range(
    v: &ObjectVersion,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<(std::ops::Range<u64>, Option<String>)> {
    let content_range = |r: &std::ops::Range<u64>| {
        format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), v.size)
    };
    match (range, part_number) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        (Some(r), None) => {
            let rg = r.check(v.size).map_err(|_| {
                s3_error!(
                    InvalidRange,
                    "the requested range is not satisfiable for {} bytes",
                    v.size
                )
            })?;
            let cr = content_range(&rg);
            Ok((rg, Some(cr)))
        }
        (None, Some(n)) => {
            let sizes: Vec<u64> = if v.part_sizes.is_empty() {
                vec![v.size]
            } else {
                v.part_sizes.clone()
            };
            if n < 1 || n as usize > sizes.len() {
                return Err(s3_error!(
                    InvalidRange,
                    "part {n} does not exist: the object has {} parts",
                    sizes.len()
                ));
            }
            let start: u64 = sizes[..n as usize - 1].iter().sum();
            let rg = start..start + sizes[n as usize - 1];
            // A single-part object read as part 1 is the whole object: no Content-Range.
            let cr = (!v.part_sizes.is_empty()).then(|| content_range(&rg));
            Ok((rg, cr))
        }
        (None, None) => Ok((0..v.size, None)),
    }
}

/// The length of a request body: Content-Length, or for aws-chunked bodies
/// `x-amz-decoded-content-length` (s3s does not always carry it over). A
/// body with neither is refused: the segment layout needs the size up front.
fn body_length(
    content_length: Option<i64>,
    headers: &http::HeaderMap,
    has_body: bool,
) -> S3Result<i64> {
    let decoded = headers
        .get("x-amz-decoded-content-length")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<i64>())
        .transpose()
        .map_err(|_| {
            s3_error!(
                InvalidArgument,
                "x-amz-decoded-content-length is not a number"
            )
        })?;
    let chunked = headers.contains_key(http::header::TRANSFER_ENCODING);
    let n = match (decoded, content_length) {
        (Some(d), _) => d,
        (None, Some(n)) => n,
        // s3s leaves content_length unset for an empty body.
        (None, None) if has_body && chunked => {
            return Err(s3_error!(
                MissingContentLength,
                "PUT needs a Content-Length (or x-amz-decoded-content-length)"
            ))
        }
        (None, None) => 0,
    };
    if n < 0 {
        return Err(s3_error!(InvalidArgument, "negative Content-Length"));
    }
    Ok(n)
}

/// The four `x-amz-copy-source-if-*` conditions.
type CopyConditions<'a> = (
    Option<&'a ETagCondition>,
    Option<&'a ETagCondition>,
    Option<&'a Timestamp>,
    Option<&'a Timestamp>,
);

use crate::limits::TAGS_BUCKET_MAX;
use crate::limits::TAGS_OBJECT_MAX;

fn check_tag(k: &str, v: &str) -> S3Result<()> {
    if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
        return Err(s3_error!(
            InvalidTag,
            "tag keys are 1-128 characters and values at most 256"
        ));
    }
    Ok(())
}

fn from_tag_set(set: &[Tag], max: usize) -> S3Result<BTreeMap<String, String>> {
    if set.len() > max {
        return Err(s3_error!(InvalidTag, "at most {max} tags are allowed"));
    }
    let mut out = BTreeMap::new();
    for t in set {
        let k = t.key.clone().unwrap_or_default();
        let v = t.value.clone().unwrap_or_default();
        check_tag(&k, &v)?;
        if out.insert(k, v).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(out)
}

fn to_tag_set(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// `x-amz-tagging: k1=v1&k2=v2` (URL-encoded).
fn parse_tagging_header(h: Option<&str>) -> S3Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(h) = h.filter(|h| !h.is_empty()) else {
        return Ok(out);
    };
    for (k, v) in form_urlencoded::parse(h.as_bytes()) {
        check_tag(&k, &v)?;
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    if out.len() > TAGS_OBJECT_MAX {
        return Err(s3_error!(
            InvalidTag,
            "Object tags cannot be greater than {TAGS_OBJECT_MAX}"
        ));
    }
    Ok(out)
}

/// `If-None-Match: *` / `If-Match: <etag>` on a write.
fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match together are not supported"
        )),
        (Some(ETagCondition::ETag(e)), None) => {
            Ok(Some(WriteCondition::Match(e.value().to_string())))
        }
        (Some(ETagCondition::Any), None) => {
            Err(s3_error!(NotImplemented, "If-Match: * is not supported"))
        }
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::NoneMatchAny)),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on a write supports only *"
        )),
        (None, None) => Ok(None),
    }
}

/// The same check metad makes, to fail before storing data.
fn condition_refusal(
    condition: Option<&WriteCondition>,
    current: Option<&ObjectVersion>,
) -> Option<Refusal> {
    match (condition?, current) {
        (WriteCondition::NoneMatchAny, Some(_)) => Some(Refusal::PreconditionFailed),
        (WriteCondition::Match(_), None) => Some(Refusal::NoSuchKey),
        (WriteCondition::Match(e), Some(v)) if &v.etag != e => Some(Refusal::PreconditionFailed),
        _ => None,
    }
}

/// The S3 error for a refused command.
fn refusal_error(r: Refusal, bucket: &str, key: &str) -> s3s::S3Error {
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

fn is_url_encoding(e: Option<&EncodingType>) -> S3Result<bool> {
    match e {
        None => Ok(false),
        Some(e) if e.as_str() == EncodingType::URL => Ok(true),
        Some(e) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request: {}",
            e.as_str()
        )),
    }
}

/// Values in listings with `encoding-type=url` are percent-encoded as S3
/// does (unreserved characters and '/' kept).
fn encode_list_value(v: &str, url: bool) -> String {
    if !url {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn list_contents(entries: Vec<weft_common::rpc::ListEntry>, url: bool) -> Vec<Object> {
    entries
        .into_iter()
        .map(|e| Object {
            key: Some(encode_list_value(&e.key, url)),
            size: Some(e.size as i64),
            e_tag: Some(ETag::Strong(e.etag)),
            last_modified: Some(timestamp(e.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from(e.storage_class)),
            ..Default::default()
        })
        .collect()
}

/// The version id S3 reports for a new version in this bucket.
fn version_label_for(b: &BucketInfo, id: VersionId) -> Option<String> {
    match b.versioning.as_deref() {
        Some("Enabled") => Some(id.to_string()),
        Some(_) => Some("null".to_string()),
        None => None,
    }
}

fn checksum_mode_enabled(m: Option<&ChecksumMode>) -> bool {
    m.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
}

/// The part count S3 reports for a multipart object (its ETag ends `-N`).
fn multipart_parts(etag: &str) -> Option<i32> {
    etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

fn etag_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

/// S3's conditional-request rules for GET and HEAD: If-Match and
/// If-Unmodified-Since fail with 412; If-None-Match and If-Modified-Since
/// answer 304. When If-Match holds, If-Unmodified-Since is ignored; when
/// If-None-Match is present, If-Modified-Since is ignored.
fn check_preconditions(
    v: &ObjectVersion,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    // HTTP dates have second precision.
    let modified_secs = (v.last_modified_ms / 1000) as i64;
    let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
    match if_match {
        Some(c) if !etag_matches(c, &v.etag) => {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ))
        }
        Some(_) => {}
        None => {
            if let Some(t) = if_unmodified_since {
                if modified_secs > secs(t) {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ));
                }
            }
        }
    }
    match if_none_match {
        Some(c) if etag_matches(c, &v.etag) => return Err(s3_error!(NotModified)),
        Some(_) => {}
        None => {
            if let Some(t) = if_modified_since {
                if modified_secs <= secs(t) {
                    return Err(s3_error!(NotModified));
                }
            }
        }
    }
    Ok(())
}

/// User metadata with lowercase names, within S3's size limit.
fn user_metadata(m: Option<Metadata>) -> S3Result<BTreeMap<String, String>> {
    let user_metadata: BTreeMap<String, String> = m
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let meta_bytes: usize = user_metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if meta_bytes > USER_METADATA_BYTES_MAX {
        return Err(s3_error!(
            MetadataTooLarge,
            "user metadata is {meta_bytes} bytes; the limit is {USER_METADATA_BYTES_MAX}"
        ));
    }
    Ok(user_metadata)
}

fn object_headers(v: &ObjectVersion) -> GetObjectOutput {
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
        storage_class: Some(StorageClass::from(v.storage_class.clone())),
        ..Default::default()
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_only_under_configured_domains() {
        use s3s::host::S3Host;
        let vh = VirtualHosts {
            domains: vec!["localhost".into(), "s3.example.com".into()],
        };
        let bucket = |h: &str| {
            vh.parse_host_header(h)
                .unwrap()
                .bucket()
                .map(str::to_string)
        };
        assert_eq!(bucket("photos.localhost:9000"), Some("photos".into()));
        assert_eq!(
            bucket("my.dotted.bucket.s3.example.com"),
            Some("my.dotted.bucket".into())
        );
        assert_eq!(bucket("localhost:9000"), None);
        assert_eq!(bucket("127.0.0.1:9000"), None);
        assert_eq!(bucket("[::1]:9000"), None);
        assert_eq!(bucket("gateway.internal:9000"), None);
        assert_eq!(bucket("xlocalhost"), None);
    }

    #[test]
    fn tokens_round_trip() {
        for m in [
            ListMarker::Key("a/ü b+c".into()),
            ListMarker::Prefix("x/".into()),
            ListMarker::Key(String::new()),
        ] {
            assert_eq!(decode_token(&encode_token(&m)), Some(m));
        }
        assert_eq!(decode_token("zz"), None);
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.1", "a".repeat(63).as_str()] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            "192.168.1.1",
            "under_score",
            &"a".repeat(64),
            "xn--bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64() {
        assert_eq!(
            base64_decode("1B2M2Y8AsgTpgAmY7PhCfg==").unwrap(),
            hex::decode("d41d8cd98f00b204e9800998ecf8427e").unwrap()
        );
        assert!(base64_decode("!!").is_none());
    }
}
