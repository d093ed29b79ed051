//! Data residency on the admin API (`weft bucket placement`,
//! docs/locality.md): where a bucket's bytes may be.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use axum::{Json, Router};
use weft_common::residency::Residency;
use weft_common::rpc::{Command, Query, QueryResult};
use weft_common::storage_class::KnownNode;

use crate::admin::{check, AdminError, AdminState};
use crate::admin_cert::AdminRequest;

pub(crate) fn routes() -> Router<AdminState> {
    Router::new().route(
        "/v1/buckets/{bucket}/residency",
        put(set_residency)
            .get(get_residency)
            .delete(clear_residency),
    )
}

/// The bucket's residency (`null`: none).
async fn get_residency(
    State(s): State<AdminState>,
    Path(bucket): Path<String>,
    req: AdminRequest,
) -> Result<Json<Option<Residency>>, AdminError> {
    check(&s, &req, b"").await?;
    match s
        .metad
        .query(&Query::Bucket {
            name: bucket.clone(),
        })
        .await?
    {
        QueryResult::Bucket { bucket: Some(b) } => Ok(Json(b.residency)),
        QueryResult::Bucket { bucket: None } => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no bucket {bucket}"),
        )),
        other => Err(AdminError::unexpected(other)),
    }
}

/// Sets the residency, after checking that every storage class the
/// cluster can place can still be placed inside it.
async fn set_residency(
    State(s): State<AdminState>,
    Path(bucket): Path<String>,
    req: AdminRequest,
    body: axum::body::Bytes,
) -> Result<Json<Option<Residency>>, AdminError> {
    check(&s, &req, &body).await?;
    let r: Residency = crate::admin::json_body(&body)?;
    if r.location.is_some() {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "location is set only by CreateBucket's LocationConstraint; give zones or labels"
                .into(),
        ));
    }
    let r = Residency {
        location: None,
        ..Residency::zones(r.zones)
    }
    .with_labels(r.labels);
    r.validate()
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e))?;
    let (nodes, classes) = match s.metad.query(&Query::Nodes).await? {
        QueryResult::Nodes { nodes, classes, .. } => (nodes, classes),
        other => return Err(AdminError::unexpected(other)),
    };
    let live: Vec<_> = nodes
        .iter()
        .filter(|n| n.admin != weft_common::topology::NodeAdmin::Removed)
        .collect();
    if let Some(z) = r
        .zones
        .iter()
        .find(|z| !live.iter().any(|n| n.info.zone == **z))
    {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            format!(
                "no data nodes in zone {z:?}: name zones the cluster has (weft cluster status)"
            ),
        ));
    }
    let known: Vec<KnownNode<'_>> = live
        .iter()
        .map(|n| KnownNode {
            zone: &n.info.zone,
            labels: &n.info.labels,
        })
        .collect();
    // Every class the cluster can place must stay placeable inside: a
    // class that could not be would refuse the bucket's writes, and its
    // moves would be offered again on every migration walk.
    for c in &classes {
        let anywhere = c
            .resolve(weft_common::SegmentId(0), c.layout, &known)
            .is_ok();
        let narrowed = weft_common::residency::narrow(c, Some(&r));
        if let (true, Err(e)) = (
            anywhere,
            narrowed.resolve(weft_common::SegmentId(0), c.layout, &known),
        ) {
            return Err(AdminError(
                StatusCode::BAD_REQUEST,
                format!(
                    "storage class {} cannot be kept in {}: {e}; include zones where it can be placed",
                    c.name,
                    r.describe()
                ),
            ));
        }
    }
    command(&s, &bucket, Some(r)).await
}

async fn clear_residency(
    State(s): State<AdminState>,
    Path(bucket): Path<String>,
    req: AdminRequest,
) -> Result<Json<Option<Residency>>, AdminError> {
    check(&s, &req, b"").await?;
    command(&s, &bucket, None).await
}

async fn command(
    s: &AdminState,
    bucket: &str,
    residency: Option<Residency>,
) -> Result<Json<Option<Residency>>, AdminError> {
    let cmd = Command::SetBucketResidency {
        bucket: bucket.to_string(),
        residency: residency.clone(),
    };
    crate::admin::commit_bucket_setting(s, bucket, &cmd).await?;
    Ok(Json(residency))
}
