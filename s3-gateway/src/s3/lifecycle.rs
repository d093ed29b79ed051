//! Put/Get/DeleteBucketLifecycleConfiguration: S3's rule XML (parsed by
//! s3s) to and from Weft's rule model (`weft_common::lifecycle`), checked
//! as S3 checks it. metad's leader applies the rules (docs/lifecycle.md).
//! Transitions between storage classes are refused with NotImplemented
//! until the transition engine exists: accepting them would be a promise
//! nothing keeps.

use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use std::collections::BTreeMap;
use weft_common::lifecycle::{
    Expiration, Filter, LifecycleConfig, NoncurrentExpiration, Rule, RuleError,
};
use weft_common::rpc::{Command, CommandResult};

use super::{timestamp, timestamp_ms, WeftS3};
use crate::error::{metad_err, refusal_to_s3, unexpected, Refused};

/// Dates are checked against real days whatever the cluster's day length:
/// S3 wants them at midnight UTC, which is also a boundary of any shorter
/// test day that divides 24 hours.
const REAL_DAY_MS: u64 = 86_400_000;

fn no_config() -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("NoSuchLifecycleConfiguration".into()),
        "The lifecycle configuration does not exist",
    );
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

fn days(v: i32, what: &str, rule: &str) -> S3Result<u32> {
    u32::try_from(v).ok().filter(|d| *d > 0).ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "rule {rule}: {what} must be a positive integer"
        )
    })
}

fn tag(t: &Tag) -> S3Result<(String, String)> {
    match (&t.key, &t.value) {
        (Some(k), Some(v)) => Ok((k.clone(), v.clone())),
        _ => Err(s3_error!(MalformedXML, "a Tag needs a Key and a Value")),
    }
}

fn size(v: Option<i64>) -> S3Result<Option<u64>> {
    v.map(|n| {
        u64::try_from(n).map_err(|_| s3_error!(InvalidArgument, "object sizes are not negative"))
    })
    .transpose()
}

fn filter(r: &LifecycleRule) -> S3Result<Filter> {
    match (&r.filter, &r.prefix) {
        (Some(_), Some(_)) => Err(s3_error!(
            MalformedXML,
            "a rule has either a Filter or the older top-level Prefix, not both"
        )),
        (None, None) => Err(s3_error!(
            MalformedXML,
            "a rule needs a Filter (or the older top-level Prefix); use <Filter><Prefix></Prefix></Filter> for every object"
        )),
        (None, Some(prefix)) => Ok(Filter {
            prefix: prefix.clone(),
            ..Filter::default()
        }),
        (Some(f), None) => {
            let set = [
                f.and.is_some(),
                f.prefix.is_some(),
                f.tag.is_some(),
                f.object_size_greater_than.is_some(),
                f.object_size_less_than.is_some(),
            ];
            if set.iter().filter(|s| **s).count() > 1 {
                return Err(s3_error!(
                    MalformedXML,
                    "a Filter holds one condition; combine several with And"
                ));
            }
            let mut out = Filter {
                prefix: f.prefix.clone().unwrap_or_default(),
                size_greater_than: size(f.object_size_greater_than)?,
                size_less_than: size(f.object_size_less_than)?,
                ..Filter::default()
            };
            if let Some(t) = &f.tag {
                let (k, v) = tag(t)?;
                out.tags.insert(k, v);
            }
            if let Some(a) = &f.and {
                out.prefix = a.prefix.clone().unwrap_or_default();
                out.size_greater_than = size(a.object_size_greater_than)?;
                out.size_less_than = size(a.object_size_less_than)?;
                for t in a.tags.iter().flatten() {
                    let (k, v) = tag(t)?;
                    if out.tags.insert(k.clone(), v).is_some() {
                        return Err(s3_error!(InvalidArgument, "tag {k} appears twice in And"));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// One S3 rule as Weft's model, or why it is refused.
fn rule(i: usize, r: &LifecycleRule) -> S3Result<Rule> {
    let id = r.id.clone().unwrap_or_else(|| format!("rule-{}", i + 1));
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(
            NotImplemented,
            "rule {id}: Transition and NoncurrentVersionTransition are not supported yet (expirations are); move objects with CopyObject and x-amz-storage-class"
        ));
    }
    let enabled = match r.status.as_str() {
        "Enabled" => true,
        "Disabled" => false,
        other => {
            return Err(s3_error!(
                MalformedXML,
                "rule {id}: Status {other:?} is neither Enabled nor Disabled"
            ))
        }
    };
    let expiration = match &r.expiration {
        None => None,
        Some(e) => match (e.days, &e.date, e.expired_object_delete_marker) {
            (Some(d), None, None | Some(false)) => {
                Some(Expiration::Days(days(d, "Expiration Days", &id)?))
            }
            (None, Some(t), None | Some(false)) => Some(Expiration::Date(timestamp_ms(t.clone()))),
            (None, None, Some(true)) => Some(Expiration::ExpiredObjectDeleteMarker),
            (None, None, Some(false)) => None,
            (None, None, None) => {
                return Err(s3_error!(
                    MalformedXML,
                    "rule {id}: Expiration needs Days, Date or ExpiredObjectDeleteMarker"
                ))
            }
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "rule {id}: Expiration takes one of Days, Date and ExpiredObjectDeleteMarker"
                ))
            }
        },
    };
    let noncurrent_expiration = match &r.noncurrent_version_expiration {
        None => None,
        Some(n) => Some(NoncurrentExpiration {
            days: days(
                n.noncurrent_days.ok_or_else(|| {
                    s3_error!(
                        MalformedXML,
                        "rule {id}: NoncurrentVersionExpiration needs NoncurrentDays"
                    )
                })?,
                "NoncurrentDays",
                &id,
            )?,
            newer_noncurrent_versions: n
                .newer_noncurrent_versions
                .map(|v| u32::try_from(v).unwrap_or(0)),
        }),
    };
    let abort_incomplete_days = r
        .abort_incomplete_multipart_upload
        .as_ref()
        .map(|a| {
            days(
                a.days_after_initiation.ok_or_else(|| {
                    s3_error!(
                        MalformedXML,
                        "rule {id}: AbortIncompleteMultipartUpload needs DaysAfterInitiation"
                    )
                })?,
                "DaysAfterInitiation",
                &id,
            )
        })
        .transpose()?;
    Ok(Rule {
        filter: filter(r)?,
        id,
        enabled,
        expiration,
        noncurrent_expiration,
        abort_incomplete_days,
    })
}

/// Weft's model back as S3's rule.
fn to_s3(r: &Rule) -> LifecycleRule {
    let f = &r.filter;
    let tags: Vec<Tag> = f
        .tags
        .iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect();
    let conditions = usize::from(!f.prefix.is_empty())
        + tags.len()
        + usize::from(f.size_greater_than.is_some())
        + usize::from(f.size_less_than.is_some());
    let to_i64 = |v: Option<u64>| v.map(|n| n as i64);
    let filter = if conditions > 1 {
        LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                prefix: (!f.prefix.is_empty()).then(|| f.prefix.clone()),
                tags: (!tags.is_empty()).then_some(tags),
                object_size_greater_than: to_i64(f.size_greater_than),
                object_size_less_than: to_i64(f.size_less_than),
            }),
            ..Default::default()
        }
    } else {
        LifecycleRuleFilter {
            prefix: Some(f.prefix.clone()).filter(|p| !p.is_empty() || conditions == 0),
            tag: tags.into_iter().next(),
            object_size_greater_than: to_i64(f.size_greater_than),
            object_size_less_than: to_i64(f.size_less_than),
            ..Default::default()
        }
    };
    LifecycleRule {
        id: Some(r.id.clone()),
        status: ExpirationStatus::from(if r.enabled { "Enabled" } else { "Disabled" }.to_string()),
        filter: Some(filter),
        expiration: r.expiration.map(|e| match e {
            Expiration::Days(d) => LifecycleExpiration {
                days: Some(d as i32),
                ..Default::default()
            },
            Expiration::Date(ms) => LifecycleExpiration {
                date: Some(timestamp(ms)),
                ..Default::default()
            },
            Expiration::ExpiredObjectDeleteMarker => LifecycleExpiration {
                expired_object_delete_marker: Some(true),
                ..Default::default()
            },
        }),
        noncurrent_version_expiration: r.noncurrent_expiration.map(|n| {
            NoncurrentVersionExpiration {
                noncurrent_days: Some(n.days as i32),
                newer_noncurrent_versions: n.newer_noncurrent_versions.map(|v| v as i32),
            }
        }),
        abort_incomplete_multipart_upload: r.abort_incomplete_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d as i32),
            }
        }),
        noncurrent_version_transitions: None,
        prefix: None,
        transitions: None,
    }
}

impl WeftS3 {
    pub(super) async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let Some(given) = input.lifecycle_configuration else {
            return Err(s3_error!(
                MalformedXML,
                "the request has no LifecycleConfiguration"
            ));
        };
        let rules = given
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(i, r))
            .collect::<S3Result<Vec<_>>>()?;
        let config = LifecycleConfig { rules };
        config.validate(REAL_DAY_MS).map_err(|e| match e {
            RuleError::Malformed(m) => s3_error!(MalformedXML, "{m}"),
            RuleError::InvalidArgument(m) => s3_error!(InvalidArgument, "{m}"),
        })?;
        self.set_lifecycle(&input.bucket, Some(config)).await?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(super) async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let b = self
            .bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        let config = b.lifecycle.ok_or_else(no_config)?;
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(config.rules.iter().map(to_s3).collect()),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        self.set_lifecycle(&req.input.bucket, None).await?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
    }

    /// The `x-amz-expiration` of the current version `v` of `key`, if a
    /// rule of `bucket` expires it.
    pub(super) fn expiration(
        &self,
        bucket: &weft_common::manifest::BucketInfo,
        key: &str,
        v: &weft_common::manifest::ObjectVersion,
    ) -> Option<String> {
        expiration_header(
            bucket.lifecycle.as_ref()?,
            key,
            v.size,
            &v.tags,
            v.last_modified_ms,
            self.writer.cluster.lifecycle_day_ms(),
        )
    }

    async fn set_lifecycle(&self, bucket: &str, config: Option<LifecycleConfig>) -> S3Result<()> {
        let cmd = Command::SetBucketLifecycle {
            bucket: bucket.to_string(),
            config,
        };
        match self.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(()),
            CommandResult::Refused { refusal } => {
                Err(refusal_to_s3(Refused::Object { bucket, key: "" }, refusal))
            }
            other => Err(unexpected("set bucket lifecycle", other)),
        }
    }
}

/// The `x-amz-expiration` value S3 sends for an object under an expiration
/// rule: `expiry-date="Fri, 23 Dec 2012 00:00:00 GMT", rule-id="r"`.
fn expiration_header(
    config: &LifecycleConfig,
    key: &str,
    size: u64,
    tags: &BTreeMap<String, String>,
    modified_ms: u64,
    day_ms: u64,
) -> Option<String> {
    let (at, rule) = config.expiry(
        &weft_common::lifecycle::Current {
            key,
            size,
            tags,
            modified_ms,
        },
        day_ms,
    )?;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000).ok()?;
    let date = t
        .format(&time::format_description::well_known::Rfc2822)
        .ok()?
        .replace("+0000", "GMT");
    Some(format!("expiry-date=\"{date}\", rule-id=\"{rule}\""))
}
