//! What an operation reads from metad before acting: the bucket (authorised
//! for the caller), an object version, an upload, the source of a copy.

use s3s::auth::Credentials;
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use weft_common::manifest::{BucketInfo, ObjectVersion, Upload};
use weft_common::rpc::{Query, QueryResult};
use weft_common::VersionId;

use crate::error::{metad_err, unexpected};
use crate::release::ReadLease;

use super::conditions::{check_copy_preconditions, CopyConditions};
use super::WeftS3;

impl WeftS3 {
    pub(super) async fn bucket(
        &self,
        creds: Option<&Credentials>,
        name: &str,
    ) -> S3Result<BucketInfo> {
        let q = Query::Bucket {
            name: name.to_string(),
        };
        match self.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::Bucket { bucket: Some(b) } => {
                self.keys.authorize(creds, &b).await?;
                Ok(b)
            }
            QueryResult::Bucket { bucket: None } => {
                Err(s3_error!(NoSuchBucket, "bucket {name} does not exist"))
            }
            other => Err(unexpected("bucket lookup", other)),
        }
    }

    pub(super) async fn current(&self, bucket: &str, key: &str) -> S3Result<ObjectVersion> {
        let q = Query::Object {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        match self.metad.query(&q).await.map_err(metad_err)? {
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

    pub(super) async fn current_opt(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<Option<ObjectVersion>> {
        match self.current(bucket, key).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchKey => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One version by S3 version id: NoSuchVersion if unknown, 405
    /// MethodNotAllowed for a delete marker (as S3 answers).
    pub(super) async fn version_of(
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
        match self.metad.query(&q).await.map_err(metad_err)? {
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
    pub(super) async fn version_or_current(
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

    pub(super) async fn upload(
        &self,
        upload_id: &str,
        bucket: &str,
        key: &str,
    ) -> S3Result<Upload> {
        let q = Query::Upload {
            upload_id: upload_id.to_string(),
        };
        match self.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::Upload { upload: Some(u) } if u.bucket == bucket && u.key == key => Ok(u),
            QueryResult::Upload { .. } => Err(s3_error!(
                NoSuchUpload,
                "upload {upload_id} does not exist; it may have been completed or aborted"
            )),
            other => Err(unexpected("upload lookup", other)),
        }
    }

    /// The source of a copy, authorised for the caller, with the
    /// `x-amz-copy-source-if-*` conditions checked (any failure is 412), and
    /// the read lease that keeps its shards until the copy has read them.
    pub(super) async fn copy_source(
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
        let binfo = self.bucket(creds, bucket).await?;
        let lease = self.releaser.leases().begin();
        let v = self
            .version_or_current(bucket, key, version_id.as_deref())
            .await?;
        lease.resolve(&v.segments);
        check_copy_preconditions(&v, conditions)?;
        // A copy reads its source: S3 counts it as an access.
        self.note_read(&binfo, key, &v);
        Ok((v, lease))
    }
}
