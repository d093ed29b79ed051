//! Warm and pin on the admin API (`weft warm`, docs/locality.md): keep a
//! dataset readable in one zone without crossing zones.
//!
//! - `PUT /v1/warm` asks for a warm (or asks again: a new TTL or pin),
//!   after checking that the zone exists, that the bucket's residency
//!   admits it, and that what the zone lacks fits its cache budget;
//! - `GET /v1/warm?bucket&prefix&zone` says how far it has got, computed
//!   from the manifests metad holds: a segment is ready when the zone holds
//!   k distinct shards of it, placed or cached;
//! - `DELETE /v1/warm?…` stops it; `GET /v1/warms` lists every warm with
//!   each zone's cache budget and use.
//!
//! Authorised like `weft locate`: the bucket's owner or an administrator;
//! pinning (which no eviction undoes) needs an administrator.

use axum::extract::{Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_common::rpc::{Command, CommandResult, Query, QueryResult, Refusal};
use weft_common::warm::{indices_in_zone, needed_in_zone, Warm, ZoneCache};
use weft_common::NodeId;

use crate::admin::{check, check_for, AdminError, AdminState};
use crate::admin_cert::AdminRequest;

/// How long a warm request waits for the leader's first count of the
/// zones' caches.
const ZONE_COUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(6);

/// Longest time-to-live a warm may ask for: a year.
pub const TTL_MAX_SECS: u64 = 365 * 86_400;

/// Names a warm: `?bucket=B&prefix=P&zone=Z`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct WarmTarget {
    /// Bucket.
    pub bucket: String,
    /// Key prefix (empty: the whole bucket).
    #[serde(default)]
    pub prefix: String,
    /// Zone.
    pub zone: String,
}

/// Body of `PUT /v1/warm`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct WarmRequest {
    /// What to warm, and where.
    #[serde(flatten)]
    pub target: WarmTarget,
    /// Lapses after this many seconds (`--ttl`); none: until dropped or
    /// evicted.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Never evicted (`--pin`).
    #[serde(default)]
    pub pinned: bool,
}

/// How far a warm has got.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct WarmStatus {
    /// The warm as metad holds it; `None`: not (or no longer) asked for:
    /// dropped, expired or evicted.
    pub warm: Option<Warm>,
    /// Current objects under the prefix.
    pub objects: u64,
    /// Their segments.
    pub segments: u64,
    /// Segments the zone can read without crossing zones.
    pub segments_ready: u64,
    /// Shard bytes the zone must hold to read every segment from itself.
    pub needed_bytes: u64,
    /// Of those, bytes it holds (placed shards and cache copies).
    pub held_bytes: u64,
    /// The dataset is larger than one walk covers; counts are of its start.
    pub truncated: bool,
    /// Every segment is ready (and the walk covered them all).
    pub ready: bool,
    /// The zone's cache budget and use.
    pub zone_cache: Option<ZoneCache>,
}

/// Answer of `GET /v1/warms`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
pub struct WarmList {
    /// Every warm.
    pub warms: Vec<Warm>,
    /// Each zone's cache budget and use.
    pub zones: Vec<ZoneCache>,
    /// When each warm (in `warms`' order) was last used, ms: its last
    /// reported read, or its request; eviction takes the smallest first.
    #[serde(default)]
    pub last_used_ms: Vec<u64>,
}

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/warm", get(status).put(put_warm).delete(drop_warm))
        .route("/v1/warms", get(list))
}

fn bad(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, msg.into())
}

/// Authorises a call on `bucket`'s warms: its owner or an administrator
/// (`admin_only`: an administrator alone). A missing bucket is refused
/// like one that is not the caller's, so non-owners learn nothing.
async fn authorise(
    s: &AdminState,
    req: &AdminRequest,
    body: &[u8],
    bucket: &str,
    admin_only: bool,
) -> Result<(), AdminError> {
    if admin_only {
        check(s, req, body).await?;
    }
    let found = match s
        .metad
        .query(&Query::Bucket {
            name: bucket.to_string(),
        })
        .await?
    {
        QueryResult::Bucket { bucket } => bucket,
        other => return Err(AdminError::unexpected(other)),
    };
    let owner = found.as_ref().map_or(String::new(), |b| b.owner.clone());
    check_for(s, req, body, Some(&owner)).await?;
    if found.is_none() {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no bucket {bucket:?}"),
        ));
    }
    Ok(())
}

async fn warms(s: &AdminState) -> Result<WarmList, AdminError> {
    match s.metad.query(&Query::Warms).await? {
        QueryResult::Warms {
            warms,
            zones,
            last_used_ms,
        } => Ok(WarmList {
            warms,
            zones,
            last_used_ms,
        }),
        other => Err(AdminError::unexpected(other)),
    }
}

/// The warm `t` names, if there is one.
async fn existing(s: &AdminState, t: &WarmTarget) -> Result<Option<Warm>, AdminError> {
    Ok(warms(s)
        .await?
        .warms
        .into_iter()
        .find(|w| w.zone == t.zone && w.bucket == t.bucket && w.prefix == t.prefix))
}

/// Walks the dataset and counts what the zone holds of it.
async fn measure(s: &AdminState, t: &WarmTarget) -> Result<WarmStatus, AdminError> {
    let nodes = match s.metad.query(&Query::Nodes).await? {
        QueryResult::Nodes { nodes, .. } => nodes,
        other => return Err(AdminError::unexpected(other)),
    };
    let zones = crate::admin_locate::zones(&nodes);
    if !zones.contains_key(&t.zone) {
        return Err(bad(format!(
            "no zone {:?}: the cluster's zones are {}",
            t.zone,
            zones.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    // Registered nodes, down ones included: what the leader plans by and
    // apply records by, so "ready" here is what they call done (a down
    // node's shards are still its zone's; reads cross for them until it
    // returns).
    let registered: BTreeMap<NodeId, String> = nodes
        .iter()
        .filter(|n| n.admin != weft_common::topology::NodeAdmin::Removed)
        .map(|n| (n.info.id, n.info.zone.clone()))
        .collect();
    let list = warms(s).await?;
    let mut out = WarmStatus {
        warm: list
            .warms
            .into_iter()
            .find(|w| w.zone == t.zone && w.bucket == t.bucket && w.prefix == t.prefix),
        objects: 0,
        segments: 0,
        segments_ready: 0,
        needed_bytes: 0,
        held_bytes: 0,
        truncated: false,
        ready: false,
        zone_cache: list.zones.into_iter().find(|z| z.zone == t.zone),
    };
    out.truncated = crate::admin_locate::for_each_page(s, &t.bucket, &t.prefix, |page| {
        // Per placement: shard indexes the zone must hold, how many of
        // them it holds, and whether a unit is the whole segment.
        let per: Vec<(u64, u64, bool)> = page
            .placements
            .iter()
            .map(|p| {
                let held = indices_in_zone(
                    &p.shards,
                    &p.cache,
                    |n| registered.get(&n).map(String::as_str),
                    &t.zone,
                )
                .len() as u64;
                let replicated =
                    matches!(p.layout, weft_common::profile::Layout::Replicated { .. });
                (needed_in_zone(p.layout) as u64, held, replicated)
            })
            .collect();
        for o in &page.objects {
            out.objects += 1;
            for seg in &o.segments {
                let (need, held, replicated) = per[seg.placement()];
                let unit = if replicated {
                    seg.len()
                } else {
                    seg.shard_len()
                };
                out.segments += 1;
                out.needed_bytes += need * unit;
                out.held_bytes += held.min(need) * unit;
                if held >= need {
                    out.segments_ready += 1;
                }
            }
        }
    })
    .await?;
    out.ready = !out.truncated && out.segments_ready == out.segments;
    Ok(out)
}

/// `GET /v1/warm`: how far a warm has got.
async fn status(
    State(s): State<AdminState>,
    req: AdminRequest,
    UrlQuery(t): UrlQuery<WarmTarget>,
) -> Result<Json<WarmStatus>, AdminError> {
    authorise(&s, &req, b"", &t.bucket, false).await?;
    Ok(Json(measure(&s, &t).await?))
}

/// `GET /v1/warms`: every warm, and each zone's cache.
async fn list(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<WarmList>, AdminError> {
    check(&s, &req, b"").await?;
    Ok(Json(warms(&s).await?))
}

/// `PUT /v1/warm`: asks for a warm.
async fn put_warm(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: axum::body::Bytes,
) -> Result<Json<WarmStatus>, AdminError> {
    let r: WarmRequest = crate::admin::json_body(&body)?;
    authorise(&s, &req, &body, &r.target.bucket, r.pinned).await?;
    let old = existing(&s, &r.target).await?;
    // Replacing a pin (unpinning it, or changing its TTL) is as much an
    // administrator's call as making one.
    if !r.pinned && old.as_ref().is_some_and(|w| w.pinned) {
        check(&s, &req, &body).await?;
    }
    if r.ttl_secs == Some(0) || r.ttl_secs.is_some_and(|t| t > TTL_MAX_SECS) {
        return Err(bad(format!(
            "--ttl must be between 1 second and {TTL_MAX_SECS} seconds (a year)"
        )));
    }
    let now = weft_common::effects::now_ms();
    let warm = Warm {
        zone: r.target.zone.clone(),
        bucket: r.target.bucket.clone(),
        prefix: r.target.prefix.clone(),
        pinned: r.pinned,
        created_ms: now,
        expires_ms: r.ttl_secs.map(|t| now + t * 1000),
    };
    warm.validate().map_err(bad)?;
    let mut before = measure(&s, &r.target).await?;
    // A new leader counts the zones' caches on its first pass (every 2 s):
    // wait for it, a bounded while, rather than refuse a fresh cluster.
    let counted_by = tokio::time::Instant::now() + ZONE_COUNT_WAIT;
    while before.zone_cache.is_none() && tokio::time::Instant::now() < counted_by {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        before = measure(&s, &r.target).await?;
    }
    // What the zone still lacks must fit its budget beside the pinned
    // warms, which are never evicted, and what they still lack (room
    // already promised); older unpinned warms are evicted to make room.
    // Asking again for a warm with the same pin is a refresh, not
    // judged again.
    let refresh = old.as_ref().is_some_and(|w| w.pinned == r.pinned);
    let Some(z) = &before.zone_cache else {
        return Err(AdminError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the metad leader has not counted zone {}'s cache yet (a leader counts every 2 s); retry",
                r.target.zone
            ),
        ));
    };
    if r.pinned && before.truncated {
        return Err(AdminError(
            StatusCode::CONFLICT,
            format!(
                "cannot pin {}: it holds more objects than one walk counts, so its size against the budget is unknown; pin a smaller prefix",
                warm.describe()
            ),
        ));
    }
    let lacks = before.needed_bytes - before.held_bytes;
    let promised = z.pinned_bytes + z.pinned_pending_bytes;
    if !refresh && z.budget_bytes > 0 && lacks + promised > z.budget_bytes {
        return Err(AdminError(
            StatusCode::CONFLICT,
            format!(
                "cannot warm {}: zone {} lacks {lacks} bytes of it, but its cache budget is {} bytes{}; warm a smaller prefix, or raise cache_budget_bytes on the metad voters",
                warm.describe(),
                z.zone,
                z.budget_bytes,
                if promised > 0 {
                    format!(
                        " of which pinned warms hold {} and still lack {}",
                        z.pinned_bytes, z.pinned_pending_bytes
                    )
                } else {
                    String::new()
                }
            ),
        ));
    }
    match s.metad.command(&Command::Warm { warm }).await? {
        CommandResult::Done => {}
        CommandResult::Refused {
            refusal: Refusal::WarmRefused { message },
        } => return Err(AdminError(StatusCode::CONFLICT, message)),
        CommandResult::Refused {
            refusal: Refusal::NoSuchBucket,
        } => {
            return Err(AdminError(
                StatusCode::NOT_FOUND,
                format!("no bucket {:?}", r.target.bucket),
            ))
        }
        other => return Err(AdminError::unexpected(other)),
    }
    Ok(Json(measure(&s, &r.target).await?))
}

/// `DELETE /v1/warm`: stops a warm; the leader's next pass drops its copies.
async fn drop_warm(
    State(s): State<AdminState>,
    req: AdminRequest,
    UrlQuery(t): UrlQuery<WarmTarget>,
) -> Result<StatusCode, AdminError> {
    authorise(&s, &req, b"", &t.bucket, false).await?;
    let created_ms = match existing(&s, &t).await? {
        None => {
            return Err(AdminError(
                StatusCode::NOT_FOUND,
                format!(
                    "no warm of s3://{}/{} in zone {} (weft warm status lists them)",
                    t.bucket, t.prefix, t.zone
                ),
            ))
        }
        Some(w) => {
            if w.pinned {
                check(&s, &req, b"").await?;
            }
            w.created_ms
        }
    };
    // Only the warm judged here: one asked for again meanwhile (perhaps
    // pinned by an administrator) is left alone.
    let cmd = Command::DropWarm {
        zone: t.zone,
        bucket: t.bucket,
        prefix: t.prefix,
        created_ms: Some(created_ms),
    };
    match s.metad.command(&cmd).await? {
        CommandResult::Done => Ok(StatusCode::NO_CONTENT),
        CommandResult::Refused {
            refusal: Refusal::Stale,
        } => Err(AdminError(
            StatusCode::CONFLICT,
            "the warm was asked for again while this drop was judged; look again (weft warm status) and retry".into(),
        )),
        other => Err(AdminError::unexpected(other)),
    }
}
