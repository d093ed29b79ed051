//! Put/Get/DeleteBucketLifecycleConfiguration: S3's rule XML (parsed by
//! s3s) to and from Weft's rule model (`weft_common::lifecycle`), checked
//! as S3 checks it. metad's leader applies the rules (docs/lifecycle.md).
//! Transitions name classes the cluster defines (`weft class list`);
//! data nodes move the bytes (metad's `transition` module).

use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use std::collections::BTreeMap;
use weft_common::lifecycle::{
    Expiration, Filter, LifecycleConfig, NoncurrentExpiration, NoncurrentTransition, Rule,
    RuleError, Transition, TransitionAt,
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

/// A filter's tag as (key, value); both are required.
pub(super) fn tag(t: &Tag) -> S3Result<(String, String)> {
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

/// A configuration check's refusal as S3's error.
pub(super) fn rule_error(e: RuleError) -> S3Error {
    match e {
        RuleError::Malformed(m) => s3_error!(MalformedXML, "{m}"),
        RuleError::InvalidArgument(m) => s3_error!(InvalidArgument, "{m}"),
    }
}

/// One S3 rule as Weft's model, or why it is refused.
fn rule(i: usize, r: &LifecycleRule) -> S3Result<Rule> {
    let id = r.id.clone().unwrap_or_else(|| format!("rule-{}", i + 1));
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
    let transitions = r
        .transitions
        .iter()
        .flatten()
        .map(|t| {
            let class = target(t.storage_class.as_ref(), "Transition", &id)?;
            let at = match (t.days, &t.date) {
                (Some(d), None) => TransitionAt::Days(non_negative(d, "Transition Days", &id)?),
                (None, Some(d)) => TransitionAt::Date(timestamp_ms(d.clone())),
                _ => {
                    return Err(s3_error!(
                        MalformedXML,
                        "rule {id}: a Transition takes exactly one of Days and Date"
                    ))
                }
            };
            Ok(Transition { at, class })
        })
        .collect::<S3Result<Vec<_>>>()?;
    let noncurrent_transitions = r
        .noncurrent_version_transitions
        .iter()
        .flatten()
        .map(|t| {
            let class = target(t.storage_class.as_ref(), "NoncurrentVersionTransition", &id)?;
            let days = t.noncurrent_days.ok_or_else(|| {
                s3_error!(
                    MalformedXML,
                    "rule {id}: NoncurrentVersionTransition needs NoncurrentDays"
                )
            })?;
            Ok(NoncurrentTransition {
                days: non_negative(days, "NoncurrentDays", &id)?,
                newer_noncurrent_versions: t
                    .newer_noncurrent_versions
                    .map(|v| u32::try_from(v).unwrap_or(0)),
                class,
            })
        })
        .collect::<S3Result<Vec<_>>>()?;
    Ok(Rule {
        filter: filter(r)?,
        id,
        enabled,
        expiration,
        noncurrent_expiration,
        abort_incomplete_days,
        transitions,
        noncurrent_transitions,
    })
}

/// A transition's day count: zero is allowed (move at the next midnight).
fn non_negative(v: i32, what: &str, rule: &str) -> S3Result<u32> {
    u32::try_from(v)
        .map_err(|_| s3_error!(InvalidArgument, "rule {rule}: {what} must not be negative"))
}

fn target(class: Option<&TransitionStorageClass>, what: &str, rule: &str) -> S3Result<String> {
    class
        .map(|c| c.as_str().to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| s3_error!(MalformedXML, "rule {rule}: a {what} needs a StorageClass"))
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
        noncurrent_version_transitions: (!r.noncurrent_transitions.is_empty()).then(|| {
            r.noncurrent_transitions
                .iter()
                .map(|t| NoncurrentVersionTransition {
                    noncurrent_days: Some(t.days as i32),
                    newer_noncurrent_versions: t.newer_noncurrent_versions.map(|v| v as i32),
                    storage_class: Some(TransitionStorageClass::from(t.class.clone())),
                })
                .collect()
        }),
        prefix: None,
        transitions: (!r.transitions.is_empty()).then(|| {
            r.transitions
                .iter()
                .map(|t| s3s::dto::Transition {
                    days: match t.at {
                        TransitionAt::Days(d) => Some(d as i32),
                        TransitionAt::Date(_) => None,
                    },
                    date: match t.at {
                        TransitionAt::Date(ms) => Some(timestamp(ms)),
                        TransitionAt::Days(_) => None,
                    },
                    storage_class: Some(TransitionStorageClass::from(t.class.clone())),
                })
                .collect()
        }),
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
        config.validate(REAL_DAY_MS).map_err(rule_error)?;
        self.check_targets(&config)?;
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

    /// Every class a transition names must be one the cluster defines.
    fn check_targets(&self, config: &LifecycleConfig) -> S3Result<()> {
        for r in &config.rules {
            let targets = r
                .transitions
                .iter()
                .map(|t| &t.class)
                .chain(r.noncurrent_transitions.iter().map(|t| &t.class));
            for class in targets {
                match self.writer.cluster.class(Some(class)) {
                    Ok(_) => {}
                    Err(crate::cluster_map::ClassLookup::Unknown(_)) => {
                        return Err(s3_error!(
                            InvalidArgument,
                            "rule {}: storage class {class} is not defined in this cluster (weft class list shows those that are)",
                            r.id
                        ))
                    }
                    Err(crate::cluster_map::ClassLookup::NotYetKnown) => {
                        return Err(s3_error!(
                            ServiceUnavailable,
                            "this gateway does not know the storage classes yet; retry in a moment"
                        ))
                    }
                }
            }
        }
        Ok(())
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
