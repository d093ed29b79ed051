//! Lifecycle on the admin API (docs/lifecycle.md): what the rules would do
//! now (`weft lifecycle preview`), a pass started now (`weft lifecycle
//! run`), and each bucket's rules, pending actions and bytes per class
//! (`weft lifecycle status`).

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use weft_common::lifecycle::tiering::{Tiering, TieringChange, UnreadRule, IT_CLASS};
use weft_common::lifecycle::{LifecycleConfig, Passes, Step};
use weft_common::rpc::{ClassUsageRow, Command, Query, QueryResult};
use weft_common::transition::TransitionStats;

use crate::admin::{check, AdminError, AdminState};
use crate::admin_cert::AdminRequest;

/// Keys a status judges per bucket.
const STATUS_KEYS: u32 = 10_000;

/// Routes under `/v1/lifecycle`.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/lifecycle/status", get(status))
        .route("/v1/lifecycle/run", post(run))
        .route("/v1/lifecycle/{bucket}/preview", get(preview))
        .route("/v1/lifecycle/{bucket}/unread", put(set_unread))
}

/// Body of `PUT /v1/lifecycle/{bucket}/unread` (`weft lifecycle set`).
#[derive(Deserialize, Serialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct UnreadRequest {
    /// The bucket's unread rules, replacing any it had (empty removes them).
    pub rules: Vec<UnreadRule>,
}

/// Replaces a bucket's unread rules (Weft's extension beside the S3 rules:
/// current versions not read for N days move to a class).
async fn set_unread(
    State(s): State<AdminState>,
    Path(bucket): Path<String>,
    req: AdminRequest,
    body: axum::body::Bytes,
) -> Result<Json<UnreadRequest>, AdminError> {
    check(&s, &req, &body).await?;
    let r: UnreadRequest = serde_json::from_slice(&body)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))?;
    let mut r = r;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for rule in &mut r.rules {
        rule.validate()
            .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.to_string()))?;
        // Reads of this bucket are noted from now on.
        rule.since_ms = now;
    }
    let cmd = Command::SetBucketTiering {
        bucket: bucket.clone(),
        change: TieringChange::Unread {
            rules: r.rules.clone(),
        },
    };
    crate::admin::commit_bucket_setting(&s, &bucket, &cmd).await?;
    Ok(Json(r))
}

/// `?max_keys=N` of the preview.
#[derive(Deserialize, Serialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// Most keys to judge (default 100,000).
    #[serde(default)]
    pub max_keys: Option<u32>,
}

/// Answer of the preview.
#[derive(Deserialize, Serialize, Debug)]
pub struct Preview {
    /// The bucket.
    pub bucket: String,
    /// Actions due now: (key, step).
    pub actions: Vec<(String, Step)>,
    /// Keys judged.
    pub keys: u64,
    /// Whether every key was judged.
    pub complete: bool,
    /// Length of a lifecycle day, ms.
    pub day_ms: u64,
    /// The leader's passes.
    pub passes: Passes,
    /// The leader's transitions (every bucket's).
    #[serde(default)]
    pub transitions: TransitionStats,
    /// The last transition failure it saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_error: Option<String>,
}

/// One bucket in the status.
#[derive(Deserialize, Serialize, Debug)]
pub struct BucketStatus {
    /// The bucket.
    pub bucket: String,
    /// Its rules.
    pub rules: LifecycleConfig,
    /// Its tiering by access (Intelligent-Tiering configurations, unread
    /// rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiering: Option<Tiering>,
    /// Actions due now among its first keys.
    pub pending: u64,
    /// Whether `pending` covers every key.
    pub complete: bool,
    /// What each storage class holds in it.
    pub usage: Vec<ClassUsageRow>,
}

/// Answer of the status.
#[derive(Deserialize, Serialize, Debug)]
pub struct Status {
    /// Buckets with rules, tiering, or Intelligent-Tiering data.
    pub buckets: Vec<BucketStatus>,
    /// Length of a lifecycle day, ms.
    pub day_ms: u64,
    /// The leader's passes.
    pub passes: Passes,
    /// The leader's transitions (every bucket's).
    #[serde(default)]
    pub transitions: TransitionStats,
    /// The last transition failure it saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_error: Option<String>,
    /// Shard bytes by class and zone over every bucket (metad's last
    /// durability survey): where tiering has put the data.
    #[serde(default)]
    pub zones: Vec<ZoneBytes>,
}

/// Shard bytes of one class in one zone.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ZoneBytes {
    /// The class.
    pub class: String,
    /// The zone.
    pub zone: String,
    /// Shard bytes stored there.
    pub bytes: u64,
}

async fn preview_of(s: &AdminState, bucket: &str, max_keys: u32) -> Result<Preview, AdminError> {
    match s
        .metad
        .query(&Query::LifecyclePreview {
            bucket: bucket.to_string(),
            max_keys,
        })
        .await?
    {
        QueryResult::LifecyclePreview {
            actions,
            keys,
            complete,
            day_ms,
            passes,
            transitions,
            transition_error,
        } => Ok(Preview {
            bucket: bucket.to_string(),
            actions,
            keys,
            complete,
            day_ms,
            passes,
            transitions,
            transition_error,
        }),
        other => Err(AdminError::unexpected(other)),
    }
}

async fn preview(
    State(s): State<AdminState>,
    Path(bucket): Path<String>,
    UrlQuery(q): UrlQuery<PreviewQuery>,
    req: AdminRequest,
) -> Result<Json<Preview>, AdminError> {
    check(&s, &req, b"").await?;
    let buckets = match s
        .metad
        .query(&Query::Bucket {
            name: bucket.clone(),
        })
        .await?
    {
        QueryResult::Bucket { bucket } => bucket,
        other => return Err(AdminError::unexpected(other)),
    };
    if buckets.is_none() {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no bucket {bucket}"),
        ));
    }
    Ok(Json(
        preview_of(&s, &bucket, q.max_keys.unwrap_or(100_000)).await?,
    ))
}

async fn run(State(s): State<AdminState>, req: AdminRequest) -> Result<Json<Passes>, AdminError> {
    check(&s, &req, b"").await?;
    let passes: Passes = s
        .metad
        .call("/v1/lifecycle/run", &serde_json::json!({}))
        .await?;
    Ok(Json(passes))
}

async fn status(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<Status>, AdminError> {
    check(&s, &req, b"").await?;
    let buckets = match s.metad.query(&Query::Buckets).await? {
        QueryResult::Buckets { buckets } => buckets,
        other => return Err(AdminError::unexpected(other)),
    };
    let usage = match s.metad.query(&Query::StorageClasses).await? {
        QueryResult::StorageClasses { usage, .. } => usage,
        other => return Err(AdminError::unexpected(other)),
    };
    let mut out = vec![];
    let (mut day_ms, mut passes) = (0, Passes::default());
    let (mut transitions, mut transition_error) = (TransitionStats::default(), None);
    for b in buckets {
        let tiered = usage
            .iter()
            .any(|u| u.bucket == b.name && u.class == IT_CLASS);
        if b.lifecycle.is_none() && b.tiering.is_none() && !tiered {
            continue;
        }
        let rules = b.lifecycle.clone().unwrap_or_default();
        let p = preview_of(&s, &b.name, STATUS_KEYS).await?;
        (day_ms, passes) = (p.day_ms, p.passes);
        (transitions, transition_error) = (p.transitions, p.transition_error);
        out.push(BucketStatus {
            usage: usage
                .iter()
                .filter(|u| u.bucket == b.name)
                .cloned()
                .collect(),
            bucket: b.name,
            rules,
            tiering: b.tiering,
            pending: p.actions.len() as u64,
            complete: p.complete,
        });
    }
    if out.is_empty() {
        // The day and the passes still come from the leader.
        let p = preview_of(&s, "", 1).await?;
        (day_ms, passes) = (p.day_ms, p.passes);
        (transitions, transition_error) = (p.transitions, p.transition_error);
    }
    let survey = match s.metad.query(&Query::Durability).await? {
        QueryResult::Durability { status } => status,
        other => return Err(AdminError::unexpected(other)),
    };
    let mut zones: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for c in &survey.classes {
        for (zone, b) in &c.zone_bytes {
            *zones.entry((c.class.clone(), zone.clone())).or_default() += b;
        }
    }
    Ok(Json(Status {
        zones: zones
            .into_iter()
            .map(|((class, zone), bytes)| ZoneBytes { class, zone, bytes })
            .collect(),
        buckets: out,
        day_ms,
        passes,
        transitions,
        transition_error,
    }))
}
