//! Object and bucket tags.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use std::collections::BTreeMap;
use weft_common::rpc::{Command, CommandResult};

use crate::error::{metad_err, refusal_to_s3, unexpected, Refused};
use crate::limits::{TAGS_BUCKET_MAX, TAGS_OBJECT_MAX};

use super::WeftS3;

impl WeftS3 {
    pub(super) async fn get_object_tagging(
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

    pub(super) async fn put_object_tagging(
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

    pub(super) async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        self.set_object_tags(&input.bucket, &input.key, BTreeMap::new())
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    pub(super) async fn get_bucket_tagging(
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

    pub(super) async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let tags = from_tag_set(&input.tagging.tag_set, TAGS_BUCKET_MAX)?;
        self.set_bucket_tags(&input.bucket, tags).await?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    pub(super) async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        self.set_bucket_tags(&req.input.bucket, BTreeMap::new())
            .await?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }

    pub(super) async fn set_object_tags(
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
        match self.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(()),
            CommandResult::Refused { refusal } => {
                Err(refusal_to_s3(Refused::Object { bucket, key }, refusal))
            }
            other => Err(unexpected("set object tags", other)),
        }
    }

    pub(super) async fn set_bucket_tags(
        &self,
        bucket: &str,
        tags: BTreeMap<String, String>,
    ) -> S3Result<()> {
        let cmd = Command::SetBucketTags {
            bucket: bucket.to_string(),
            tags,
        };
        match self.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(()),
            CommandResult::Refused { refusal } => {
                Err(refusal_to_s3(Refused::Object { bucket, key: "" }, refusal))
            }
            other => Err(unexpected("set bucket tags", other)),
        }
    }
}

pub(super) fn check_tag(k: &str, v: &str) -> S3Result<()> {
    if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
        return Err(s3_error!(
            InvalidTag,
            "tag keys are 1-128 characters and values at most 256"
        ));
    }
    Ok(())
}

pub(super) fn from_tag_set(set: &[Tag], max: usize) -> S3Result<BTreeMap<String, String>> {
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

pub(super) fn to_tag_set(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}
