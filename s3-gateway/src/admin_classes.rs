//! Storage classes on the admin API (docs/storage-classes.md): list them
//! with what each holds and whether this cluster can place it, define or
//! change one, delete one. Every call is authenticated like the rest of the
//! admin API; metad applies the change and checks the definition again.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use weft_common::rpc::{ClassUsageRow, Command, CommandResult, Query, QueryResult, Refusal};
use weft_common::storage_class::{KnownNode, StorageClass};
use weft_common::topology::{NodeAdmin, NodeView};

use crate::admin::{check, json_body, AdminError, AdminState};
use crate::admin_cert::AdminRequest;

/// Routes under `/v1/classes`.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/classes", get(list))
        .route("/v1/classes/{name}", axum::routing::put(put).delete(delete))
}

/// One class as `weft class list` shows it.
#[derive(Deserialize, Serialize, Debug)]
pub struct ClassView {
    /// The definition.
    pub class: StorageClass,
    /// Why this cluster cannot place it at full width now, if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplaceable: Option<String>,
    /// Segments it holds.
    pub segments: u64,
    /// Bytes of object data it holds.
    pub bytes: u64,
    /// Bytes of shard files it holds.
    pub stored_bytes: u64,
    /// Whether data written under an earlier definition is being moved to
    /// this one (`weft class set --migrate`).
    #[serde(default)]
    pub migrating: bool,
}

/// Answer of `GET /v1/classes`.
#[derive(Deserialize, Serialize, Debug)]
pub struct ClassesReply {
    /// Every class, in definition order.
    pub classes: Vec<ClassView>,
    /// What each class holds, per bucket.
    pub usage: Vec<ClassUsageRow>,
}

/// Body of `PUT /v1/classes/{name}`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PutClassRequest {
    /// The new definition (its name must be the one in the path).
    pub class: StorageClass,
    /// Move data already in the class to the new definition.
    #[serde(default)]
    pub migrate: bool,
}

async fn nodes(s: &AdminState) -> Result<Vec<NodeView>, AdminError> {
    match s.metad.query(&Query::Nodes).await? {
        QueryResult::Nodes { nodes, .. } => Ok(nodes),
        other => Err(AdminError::unexpected(other)),
    }
}

fn known(nodes: &[NodeView]) -> Vec<KnownNode<'_>> {
    nodes
        .iter()
        .filter(|n| n.admin != NodeAdmin::Removed)
        .map(|n| KnownNode {
            zone: &n.info.zone,
            labels: &n.info.labels,
        })
        .collect()
}

async fn list(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<ClassesReply>, AdminError> {
    check(&s, &req, b"").await?;
    let (classes, usage, migrating) = match s.metad.query(&Query::StorageClasses).await? {
        QueryResult::StorageClasses {
            classes,
            usage,
            migrating,
        } => (classes, usage, migrating),
        other => return Err(AdminError::unexpected(other)),
    };
    let nodes = nodes(&s).await?;
    let known = known(&nodes);
    let classes = classes
        .into_iter()
        .map(|class| {
            let rows = usage.iter().filter(|r| r.class == class.name);
            let (mut segments, mut bytes, mut stored_bytes) = (0, 0, 0);
            for r in rows {
                segments += r.usage.segments;
                bytes += r.usage.bytes;
                stored_bytes += r.usage.stored_bytes;
            }
            ClassView {
                unplaceable: class.check_placeable(&known).err().map(|e| e.to_string()),
                migrating: migrating.contains(&class.name),
                class,
                segments,
                bytes,
                stored_bytes,
            }
        })
        .collect();
    Ok(Json(ClassesReply { classes, usage }))
}

fn refused(message: String) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, message)
}

async fn put(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<StorageClass>, AdminError> {
    check(&s, &req, &body).await?;
    let r: PutClassRequest = json_body(&body)?;
    if r.class.name != name {
        return Err(refused(format!(
            "the body defines {} but the path names {name}",
            r.class.name
        )));
    }
    r.class.validate().map_err(|e| refused(e.to_string()))?;
    let nodes = nodes(&s).await?;
    r.class
        .check_placeable(&known(&nodes))
        .map_err(|e| refused(e.to_string()))?;
    match s
        .metad
        .command(&Command::PutStorageClass {
            class: r.class.clone(),
            migrate: r.migrate,
        })
        .await?
    {
        CommandResult::Done => Ok(Json(r.class)),
        CommandResult::Refused {
            refusal: Refusal::ClassRefused { message },
        } => Err(refused(message)),
        other => Err(AdminError::unexpected(other)),
    }
}

async fn delete(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    req: AdminRequest,
) -> Result<StatusCode, AdminError> {
    check(&s, &req, b"").await?;
    match s
        .metad
        .command(&Command::DeleteStorageClass { name })
        .await?
    {
        CommandResult::Done => Ok(StatusCode::NO_CONTENT),
        CommandResult::Refused {
            refusal: Refusal::ClassRefused { message },
        } => Err(AdminError(StatusCode::CONFLICT, message)),
        other => Err(AdminError::unexpected(other)),
    }
}
