//! Bucket operations: create, delete, head, location, list, versioning.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use weft_common::manifest::BucketInfo;
use weft_common::rpc::{Command, CommandResult, Query, QueryResult};

use crate::error::{metad_err, refusal_to_s3, unexpected, Refused};

use super::{now_ms, timestamp, WeftS3};

/// Most buckets one ListBuckets page may ask for (S3's bound).
const LIST_BUCKETS_MAX: i32 = 10_000;

impl WeftS3 {
    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket))]
    pub(super) async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let name = req.input.bucket.clone();
        validate_bucket_name(&name)?;
        crate::refusals::check_create_bucket(&req.input)?;
        let constraint = req
            .input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            .map(|c| c.as_str().to_string());
        // `EU` is S3's old name for eu-west-1, which clients still send.
        let names_region = |c: &str| c == self.region || (c == "EU" && self.region == "eu-west-1");
        // Another region is a zone group of this cluster: the data nodes
        // labelled region=<constraint> (docs/locality.md, "Residency").
        let residency = match constraint.filter(|c| !c.is_empty() && !names_region(c)) {
            None => None,
            Some(c) => {
                let r = weft_common::residency::Residency::location(&c);
                let regions: std::collections::BTreeSet<String> = self
                    .writer
                    .cluster
                    .snapshot()
                    .values()
                    .filter_map(|n| {
                        n.info
                            .labels
                            .get(weft_common::residency::REGION_LABEL)
                            .cloned()
                    })
                    .collect();
                if !regions.contains(&c) {
                    return Err(s3_error!(
                        IllegalLocationConstraintException,
                        "no data nodes are labelled region={c}, so a bucket cannot be kept there; name one of this cluster's regions ({}), or leave out the LocationConstraint for {}",
                        if regions.is_empty() {
                            "none are labelled".to_string()
                        } else {
                            regions.into_iter().collect::<Vec<_>>().join(", ")
                        },
                        self.region
                    ));
                }
                Some(r)
            }
        };
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
                lifecycle: None,
                tiering: None,
                residency,
            },
        };
        match self.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{name}")),
            })),
            CommandResult::Refused { refusal } => Err(refusal_to_s3(
                Refused::CreateBucket {
                    bucket: &name,
                    caller: &creds.access_key,
                },
                refusal,
            )),
            other => Err(unexpected("create bucket", other)),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(bucket = %req.input.bucket))]
    pub(super) async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket.clone();
        self.bucket(req.credentials.as_ref(), &name).await?;
        match self
            .metad
            .command(&Command::DeleteBucket { name: name.clone() })
            .await
            .map_err(metad_err)?
        {
            CommandResult::Done => Ok(S3Response::new(DeleteBucketOutput {})),
            CommandResult::Refused { refusal } => Err(refusal_to_s3(
                Refused::DeleteBucket { bucket: &name },
                refusal,
            )),
            other => Err(unexpected("delete bucket", other)),
        }
    }

    pub(super) async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(super) async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let b = self
            .bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        // A bucket created in a zone group names it; S3 names us-east-1 by
        // leaving the constraint out.
        let location_constraint = match b.residency.and_then(|r| r.location) {
            Some(l) => Some(BucketLocationConstraint::from(l)),
            None => (self.region != "us-east-1")
                .then(|| BucketLocationConstraint::from(self.region.clone())),
        };
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    pub(super) async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let root = self.keys.is_root(req.credentials.as_ref()).await?;
        let me = req.credentials.as_ref().map(|c| c.access_key.clone());
        let input = req.input;
        // S3 pages by 10,000 once any paging parameter is given; without
        // one it answers every bucket.
        let paging = input.prefix.is_some()
            || input.continuation_token.is_some()
            || input.bucket_region.is_some();
        let max = match input.max_buckets {
            None if paging => LIST_BUCKETS_MAX as usize,
            None => usize::MAX,
            Some(n) if (1..=LIST_BUCKETS_MAX).contains(&n) => n as usize,
            Some(n) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-buckets must be between 1 and {LIST_BUCKETS_MAX}, not {n}"
                ))
            }
        };
        // The token is the last name of the previous page, hex-encoded.
        let after = match input.continuation_token.as_deref() {
            None | Some("") => None,
            Some(t) => Some(
                hex::decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "the continuation-token is not one this endpoint gave"
                        )
                    })?,
            ),
        };
        let prefix = input.prefix.unwrap_or_default();
        let other_region = input
            .bucket_region
            .as_ref()
            .is_some_and(|r| *r != self.region);
        let buckets = match self.metad.query(&Query::Buckets).await.map_err(metad_err)? {
            QueryResult::Buckets { buckets } => buckets,
            other => return Err(unexpected("list buckets", other)),
        };
        let mut mine: Vec<_> = buckets
            .into_iter()
            .filter(|b| root || Some(&b.owner) == me.as_ref())
            .filter(|b| b.name.starts_with(&prefix))
            .filter(|b| after.as_ref().is_none_or(|a| b.name > *a))
            .filter(|_| !other_region)
            .collect();
        mine.sort_by(|a, b| a.name.cmp(&b.name));
        let more = mine.len() > max;
        mine.truncate(max);
        let continuation_token = if more {
            mine.last().map(|b| hex::encode(b.name.as_bytes()))
        } else {
            None
        };
        let list = mine
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(self.region.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(list),
            owner: me.map(|id| Owner {
                display_name: Some(id.clone()),
                id: Some(id),
            }),
            continuation_token,
            prefix: (!prefix.is_empty()).then_some(prefix),
        }))
    }

    pub(super) async fn put_bucket_versioning(
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
        match self.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(S3Response::new(PutBucketVersioningOutput::default())),
            CommandResult::Refused { refusal } => Err(refusal_to_s3(
                Refused::Object {
                    bucket: &input.bucket,
                    key: "",
                },
                refusal,
            )),
            other => Err(unexpected("set versioning", other)),
        }
    }

    pub(super) async fn get_bucket_versioning(
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
}

pub(super) fn validate_bucket_name(name: &str) -> S3Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
