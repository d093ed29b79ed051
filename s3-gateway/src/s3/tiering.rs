//! Put/Get/Delete/ListBucketIntelligentTieringConfiguration: a bucket's
//! opt-in archive tiers for its `INTELLIGENT_TIERING` objects, checked as
//! S3 checks them (`weft_common::lifecycle::tiering`). The fixed tiers (30
//! and 90 days unread) need no configuration; metad's leader moves objects
//! between tiers (docs/lifecycle.md, Intelligent-Tiering).

use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use weft_common::lifecycle::tiering::{TieringChange, TieringConfig};
use weft_common::lifecycle::Filter;
use weft_common::rpc::{Command, CommandResult, Refusal};

use super::lifecycle::{rule_error, tag};
use super::WeftS3;
use crate::error::{metad_err, refusal_to_s3, unexpected, Refused};

fn no_config(id: &str) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("NoSuchConfiguration".into()),
        format!("The bucket has no Intelligent-Tiering configuration {id}"),
    );
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

fn filter(f: Option<&IntelligentTieringFilter>) -> S3Result<Filter> {
    let Some(f) = f else {
        return Ok(Filter::default());
    };
    let set = [f.and.is_some(), f.prefix.is_some(), f.tag.is_some()];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(s3_error!(
            MalformedXML,
            "a Filter holds one condition; combine several with And"
        ));
    }
    let mut out = Filter {
        prefix: f.prefix.clone().unwrap_or_default(),
        ..Filter::default()
    };
    if let Some(t) = &f.tag {
        let (k, v) = tag(t)?;
        out.tags.insert(k, v);
    }
    if let Some(a) = &f.and {
        out.prefix = a.prefix.clone().unwrap_or_default();
        for t in a.tags.iter().flatten() {
            let (k, v) = tag(t)?;
            if out.tags.insert(k.clone(), v).is_some() {
                return Err(s3_error!(InvalidArgument, "tag {k} appears twice in And"));
            }
        }
    }
    Ok(out)
}

/// S3's configuration as Weft's, or why it is refused.
fn config(id: &str, c: &IntelligentTieringConfiguration) -> S3Result<TieringConfig> {
    if c.id != id {
        return Err(s3_error!(
            InvalidArgument,
            "the configuration's Id {} differs from the id {id} in the request",
            c.id
        ));
    }
    let enabled = match c.status.as_str() {
        IntelligentTieringStatus::ENABLED => true,
        IntelligentTieringStatus::DISABLED => false,
        other => {
            return Err(s3_error!(
                MalformedXML,
                "Status is Enabled or Disabled, not {other}"
            ))
        }
    };
    let mut out = TieringConfig {
        id: id.to_string(),
        enabled,
        filter: filter(c.filter.as_ref())?,
        archive_days: None,
        deep_archive_days: None,
    };
    for t in &c.tierings {
        let days = u32::try_from(t.days)
            .map_err(|_| s3_error!(InvalidArgument, "Tiering Days must be a positive integer"))?;
        let slot = match t.access_tier.as_str() {
            IntelligentTieringAccessTier::ARCHIVE_ACCESS => &mut out.archive_days,
            IntelligentTieringAccessTier::DEEP_ARCHIVE_ACCESS => &mut out.deep_archive_days,
            other => {
                return Err(s3_error!(
                    MalformedXML,
                    "AccessTier is ARCHIVE_ACCESS or DEEP_ARCHIVE_ACCESS, not {other}"
                ))
            }
        };
        if slot.replace(days).is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "access tier {} appears twice",
                t.access_tier.as_str()
            ));
        }
    }
    out.validate().map_err(rule_error)?;
    Ok(out)
}

fn to_s3(c: &TieringConfig) -> IntelligentTieringConfiguration {
    let tags: Vec<Tag> = c
        .filter
        .tags
        .iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect();
    let filter = match (c.filter.prefix.is_empty(), tags.len()) {
        (true, 0) => None,
        (false, 0) => Some(IntelligentTieringFilter {
            prefix: Some(c.filter.prefix.clone()),
            ..Default::default()
        }),
        (true, 1) => Some(IntelligentTieringFilter {
            tag: tags.into_iter().next(),
            ..Default::default()
        }),
        _ => Some(IntelligentTieringFilter {
            and: Some(IntelligentTieringAndOperator {
                prefix: (!c.filter.prefix.is_empty()).then(|| c.filter.prefix.clone()),
                tags: Some(tags),
            }),
            ..Default::default()
        }),
    };
    let mut tierings = vec![];
    if let Some(d) = c.archive_days {
        tierings.push(s3s::dto::Tiering {
            access_tier: IntelligentTieringAccessTier::from_static(
                IntelligentTieringAccessTier::ARCHIVE_ACCESS,
            ),
            days: d as i32,
        });
    }
    if let Some(d) = c.deep_archive_days {
        tierings.push(s3s::dto::Tiering {
            access_tier: IntelligentTieringAccessTier::from_static(
                IntelligentTieringAccessTier::DEEP_ARCHIVE_ACCESS,
            ),
            days: d as i32,
        });
    }
    IntelligentTieringConfiguration {
        filter,
        id: c.id.clone(),
        status: IntelligentTieringStatus::from_static(if c.enabled {
            IntelligentTieringStatus::ENABLED
        } else {
            IntelligentTieringStatus::DISABLED
        }),
        tierings,
    }
}

impl WeftS3 {
    pub(super) async fn put_bucket_intelligent_tiering_configuration(
        &self,
        req: S3Request<PutBucketIntelligentTieringConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketIntelligentTieringConfigurationOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let c = config(&input.id, &input.intelligent_tiering_configuration)?;
        let existing = self
            .bucket(req.credentials.as_ref(), &input.bucket)
            .await?
            .tiering
            .map_or(0, |t| {
                t.configs.len() - usize::from(t.configs.contains_key(&input.id))
            });
        if existing >= weft_common::lifecycle::tiering::CONFIGS_MAX {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("TooManyConfigurations".into()),
                format!(
                    "a bucket has at most {} Intelligent-Tiering configurations",
                    weft_common::lifecycle::tiering::CONFIGS_MAX
                ),
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            return Err(e);
        }
        self.set_tiering(
            &input.bucket,
            TieringChange::Config {
                id: input.id.clone(),
                config: Some(c),
            },
        )
        .await?;
        Ok(S3Response::new(
            PutBucketIntelligentTieringConfigurationOutput::default(),
        ))
    }

    pub(super) async fn get_bucket_intelligent_tiering_configuration(
        &self,
        req: S3Request<GetBucketIntelligentTieringConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketIntelligentTieringConfigurationOutput>> {
        let b = self
            .bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        let c = b
            .tiering
            .and_then(|t| t.configs.get(&req.input.id).cloned())
            .ok_or_else(|| no_config(&req.input.id))?;
        Ok(S3Response::new(
            GetBucketIntelligentTieringConfigurationOutput {
                intelligent_tiering_configuration: Some(to_s3(&c)),
            },
        ))
    }

    pub(super) async fn list_bucket_intelligent_tiering_configurations(
        &self,
        req: S3Request<ListBucketIntelligentTieringConfigurationsInput>,
    ) -> S3Result<S3Response<ListBucketIntelligentTieringConfigurationsOutput>> {
        let b = self
            .bucket(req.credentials.as_ref(), &req.input.bucket)
            .await?;
        // Pages of 100 ids, as S3; the token is the last id returned.
        const PAGE: usize = 100;
        let after = req.input.continuation_token.clone();
        let all: Vec<TieringConfig> = b
            .tiering
            .map(|t| t.configs.into_values().collect())
            .unwrap_or_default();
        let page: Vec<&TieringConfig> = all
            .iter()
            .filter(|c| after.as_ref().is_none_or(|a| c.id.as_str() > a.as_str()))
            .take(PAGE + 1)
            .collect();
        let truncated = page.len() > PAGE;
        let page = &page[..page.len().min(PAGE)];
        Ok(S3Response::new(
            ListBucketIntelligentTieringConfigurationsOutput {
                continuation_token: after,
                intelligent_tiering_configuration_list: Some(
                    page.iter().map(|c| to_s3(c)).collect(),
                ),
                is_truncated: Some(truncated),
                next_continuation_token: truncated
                    .then(|| page.last().map(|c| c.id.clone()))
                    .flatten(),
            },
        ))
    }

    pub(super) async fn delete_bucket_intelligent_tiering_configuration(
        &self,
        req: S3Request<DeleteBucketIntelligentTieringConfigurationInput>,
    ) -> S3Result<S3Response<DeleteBucketIntelligentTieringConfigurationOutput>> {
        let input = req.input;
        let b = self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        if !b.tiering.is_some_and(|t| t.configs.contains_key(&input.id)) {
            return Err(no_config(&input.id));
        }
        self.set_tiering(
            &input.bucket,
            TieringChange::Config {
                id: input.id.clone(),
                config: None,
            },
        )
        .await?;
        Ok(S3Response::new(
            DeleteBucketIntelligentTieringConfigurationOutput::default(),
        ))
    }

    /// Notes a read of `v` when tiering by access judges it: an
    /// `INTELLIGENT_TIERING` version, or any in a bucket with unread rules.
    pub(crate) fn note_read(
        &self,
        bucket: &weft_common::manifest::BucketInfo,
        key: &str,
        v: &weft_common::manifest::ObjectVersion,
    ) {
        let judged = v.storage_class == weft_common::lifecycle::tiering::IT_CLASS
            || bucket
                .tiering
                .as_ref()
                .is_some_and(|t| !t.unread.is_empty());
        if judged {
            self.reads.note(&bucket.name, key, v.version_id);
        }
    }

    /// Proposes one change to a bucket's tiering.
    pub(crate) async fn set_tiering(&self, bucket: &str, change: TieringChange) -> S3Result<()> {
        let cmd = Command::SetBucketTiering {
            bucket: bucket.to_string(),
            change,
        };
        match self.metad.command(&cmd).await.map_err(metad_err)? {
            CommandResult::Done => Ok(()),
            // A class deleted since this gateway's map said it was there.
            CommandResult::Refused {
                refusal: Refusal::ClassRefused { message },
            } => Err(s3_error!(InvalidArgument, "{message}")),
            CommandResult::Refused { refusal } => {
                Err(refusal_to_s3(Refused::Object { bucket, key: "" }, refusal))
            }
            other => Err(unexpected("set bucket tiering", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(tiers: &[(&'static str, i32)]) -> IntelligentTieringConfiguration {
        IntelligentTieringConfiguration {
            filter: Some(IntelligentTieringFilter {
                and: Some(IntelligentTieringAndOperator {
                    prefix: Some("data/".into()),
                    tags: Some(vec![Tag {
                        key: Some("team".into()),
                        value: Some("ml".into()),
                    }]),
                }),
                ..Default::default()
            }),
            id: "c1".into(),
            status: IntelligentTieringStatus::from_static(IntelligentTieringStatus::ENABLED),
            tierings: tiers
                .iter()
                .map(|(t, d)| s3s::dto::Tiering {
                    access_tier: IntelligentTieringAccessTier::from_static(t),
                    days: *d,
                })
                .collect(),
        }
    }

    #[test]
    fn a_configuration_round_trips_through_the_model() {
        let s3 = given(&[("ARCHIVE_ACCESS", 90), ("DEEP_ARCHIVE_ACCESS", 180)]);
        let c = config("c1", &s3).unwrap();
        assert_eq!(c.archive_days, Some(90));
        assert_eq!(c.deep_archive_days, Some(180));
        assert_eq!(c.filter.prefix, "data/");
        assert_eq!(to_s3(&c), s3);
    }

    #[test]
    fn invalid_configurations_get_s3_codes() {
        let code = |r: S3Result<TieringConfig>| r.unwrap_err().code().as_str().to_string();
        assert_eq!(
            code(config("c1", &given(&[("ARCHIVE_ACCESS", 30)]))),
            "InvalidArgument"
        );
        assert_eq!(code(config("c1", &given(&[]))), "MalformedXML");
        assert_eq!(
            code(config(
                "c1",
                &given(&[("ARCHIVE_ACCESS", 90), ("ARCHIVE_ACCESS", 100)])
            )),
            "InvalidArgument"
        );
        assert_eq!(
            code(config("other", &given(&[("ARCHIVE_ACCESS", 90)]))),
            "InvalidArgument"
        );
        assert_eq!(
            code(config("c1", &given(&[("FREQUENT", 90)]))),
            "MalformedXML"
        );
    }
}
