//! The audit chain on the admin API (docs/audit.md): reading it page by
//! page for `weft audit tail/export/verify`, its settings, and pruning.
//! Every call is authenticated like the rest of the admin API.

use axum::body::Bytes;
use axum::extract::{Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use weft_common::audit::{AuditCheckpoint, AuditEntry, AuditInfo};
use weft_common::rpc::{Command, CommandResult, Query, QueryResult, Refusal, AUDIT_PRUNE_MAX};

use crate::admin::{check, json_body, AdminError, AdminState};
use crate::admin_cert::AdminRequest;

/// Routes under `/v1/audit`.
pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/audit", get(entries))
        .route("/v1/audit/checkpoints", get(checkpoints))
        .route("/v1/audit/info", get(info))
        .route("/v1/audit/config", post(config))
        .route("/v1/audit/prune", post(prune))
        .route("/v1/audit/certificate", post(certificate))
}

/// `?after=N&limit=M` of the paged reads.
#[derive(Deserialize, Serialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Last sequence number the caller has (0: from the start).
    #[serde(default)]
    pub after: u64,
    /// Most items (metad caps it at 1,000).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    1_000
}

/// Answer of `GET /v1/audit`.
#[derive(Deserialize, Serialize, Debug)]
pub struct EntriesReply {
    /// Entries after `after`, oldest first.
    pub entries: Vec<AuditEntry>,
}

/// Answer of `GET /v1/audit/checkpoints`.
#[derive(Deserialize, Serialize, Debug)]
pub struct CheckpointsReply {
    /// Checkpoints covering entries after `after`, oldest first.
    pub checkpoints: Vec<AuditCheckpoint>,
}

/// Body of `POST /v1/audit/config`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConfigRequest {
    /// Record object writes and deletes.
    pub data_plane: bool,
}

/// Body of `POST /v1/audit/prune`.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Drop entries up to and including this one.
    pub through: u64,
}

/// Body of `POST /v1/audit/certificate`: a certificate the CA holder
/// issued offline (`weft cert issue --record`).
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct CertificateRecord {
    /// Its role.
    pub role: String,
    /// Its holder's name.
    pub name: String,
    /// Names it serves on.
    pub hosts: Vec<String>,
    /// Days valid.
    pub days: i64,
    /// SHA-256 of its PEM file, to tell it from a later re-issue.
    pub pem_sha256: String,
}

/// Records a certificate issue in the chain, as the authenticated admin.
async fn certificate(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AdminError> {
    check(&s, &req, &body).await?;
    let c: CertificateRecord = json_body(&body)?;
    let bounded = |v: &str| v.chars().take(256).collect::<String>();
    let event = weft_common::audit::AuditEvent {
        at_ms: crate::s3::now_ms(),
        kind: weft_common::audit::EventKind::Admin,
        actor: weft_client::audit_report::principal().unwrap_or_else(|| "unknown".into()),
        action: "issue_certificate".into(),
        target: bounded(&format!(
            "{} certificate {:?} for hosts {:?}, {} days, pem sha256 {}",
            c.role, c.name, c.hosts, c.days, c.pem_sha256
        )),
        outcome: "ok".into(),
        count: 1,
    };
    match s
        .metad
        .command(&Command::Audit {
            events: vec![event],
        })
        .await?
    {
        CommandResult::Done => Ok(Json(serde_json::json!({ "recorded": true }))),
        other => Err(unexpected("a certificate record", other)),
    }
}

fn unexpected(what: &str, other: impl std::fmt::Debug) -> AdminError {
    AdminError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("metad answered {what} with {other:?}"),
    )
}

fn bad_query(e: impl std::fmt::Display) -> AdminError {
    AdminError(
        StatusCode::BAD_REQUEST,
        format!("bad query string: {e} (use ?after=N&limit=M)"),
    )
}

async fn entries(
    State(s): State<AdminState>,
    req: AdminRequest,
    page: Result<UrlQuery<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EntriesReply>, AdminError> {
    check(&s, &req, b"").await?;
    let UrlQuery(page) = page.map_err(bad_query)?;
    match s
        .metad
        .query(&Query::Audit {
            after: page.after,
            max: page.limit,
        })
        .await?
    {
        QueryResult::Audit { entries } => Ok(Json(EntriesReply { entries })),
        other => Err(unexpected("an audit read", other)),
    }
}

async fn checkpoints(
    State(s): State<AdminState>,
    req: AdminRequest,
    page: Result<UrlQuery<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CheckpointsReply>, AdminError> {
    check(&s, &req, b"").await?;
    let UrlQuery(page) = page.map_err(bad_query)?;
    match s
        .metad
        .query(&Query::AuditCheckpoints {
            after: page.after,
            max: page.limit,
        })
        .await?
    {
        QueryResult::AuditCheckpoints { checkpoints } => Ok(Json(CheckpointsReply { checkpoints })),
        other => Err(unexpected("a checkpoint read", other)),
    }
}

async fn audit_info(s: &AdminState) -> Result<AuditInfo, AdminError> {
    match s.metad.query(&Query::AuditInfo).await? {
        QueryResult::AuditInfo { info } => Ok(info),
        other => Err(unexpected("an audit info read", other)),
    }
}

async fn info(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<AuditInfo>, AdminError> {
    check(&s, &req, b"").await?;
    Ok(Json(audit_info(&s).await?))
}

async fn config(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<AuditInfo>, AdminError> {
    check(&s, &req, &body).await?;
    let c: ConfigRequest = json_body(&body)?;
    match s
        .metad
        .command(&Command::SetAuditConfig {
            data_plane: c.data_plane,
        })
        .await?
    {
        CommandResult::Done => Ok(Json(audit_info(&s).await?)),
        other => Err(unexpected("an audit setting", other)),
    }
}

/// Prunes through `through`, which a signed checkpoint must cover exactly
/// (its checkpoint proves where the remaining chain starts), in steps of
/// at most `AUDIT_PRUNE_MAX` entries.
async fn prune(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<AuditInfo>, AdminError> {
    check(&s, &req, &body).await?;
    let p: PruneRequest = json_body(&body)?;
    let before = audit_info(&s).await?;
    // At most one step per AUDIT_PRUNE_MAX entries, and one more.
    let steps = p
        .through
        .saturating_sub(before.anchor.as_ref().map_or(0, |a| a.0))
        / AUDIT_PRUNE_MAX
        + 2;
    for _ in 0..steps {
        match s
            .metad
            .command(&Command::AuditPrune { through: p.through })
            .await?
        {
            CommandResult::Done => {}
            CommandResult::Refused {
                refusal: Refusal::Stale,
            } => {
                return Err(AdminError(
                    StatusCode::CONFLICT,
                    format!(
                        "no signed checkpoint is at entry {}: prune through an entry a checkpoint signs (`weft audit checkpoints` lists them; the newest signs entry {}), after exporting",
                        p.through, before.checkpointed_through
                    ),
                ))
            }
            other => return Err(unexpected("a prune", other)),
        }
        let first = match s.metad.query(&Query::Audit { after: 0, max: 1 }).await? {
            QueryResult::Audit { entries } => entries.first().map(|e| e.seq),
            other => return Err(unexpected("an audit read", other)),
        };
        if first.is_none_or(|seq| seq > p.through) {
            return Ok(Json(audit_info(&s).await?));
        }
    }
    Err(AdminError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "entries through {} are still there after {steps} prune steps; run it again",
            p.through
        ),
    ))
}
