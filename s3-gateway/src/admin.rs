//! The admin API (HTTP + JSON) that the `weft` CLI drives: keys, buckets and
//! cluster status. Every request is signed with a root key
//! ([`weft_common::admin_auth`]) or carries the configured bearer token.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use weft_common::admin_auth;
use weft_common::manifest::AccessKey;
use weft_common::repair::{DurabilityStatus, RepairConfig, RepairPriority};
use weft_common::rpc::{
    AddMember, Command, CommandResult, Query, QueryResult, RaftStatus, Refusal, RemoveMember,
};
use weft_common::topology::{NodeAdmin, NodeView};
use weft_common::upload_timers::UploadTimers;

use crate::admin_cert::AdminRequest;
use crate::auth::KeyStore;
use crate::metrics::GatewayMetrics;
use crate::s3::now_ms;
use weft_client::MetadClient;

/// State of the admin router.
#[derive(Clone)]
pub struct AdminState {
    /// Where keys, buckets and the cluster's state live.
    pub metad: MetadClient,
    /// Access keys, to check the admin caller's signature.
    pub keys: KeyStore,
    /// What `/metrics` renders.
    pub metrics: GatewayMetrics,
    /// Accepted bearer token, if configured.
    pub admin_token: Option<String>,
    /// The last durability report metad gave, served (flagged stale) when
    /// metad cannot answer, e.g. during a partition.
    pub last_durability: Arc<std::sync::Mutex<Option<DurabilityStatus>>>,
    /// Refused callers, for the audit chain.
    pub audit: weft_client::audit_report::Reporter,
    /// Price per GiB-month by zone (`zone_prices`).
    pub zone_prices: std::collections::BTreeMap<String, f64>,
}

/// An admin API error: status plus `{"error": "..."}`.
pub struct AdminError(pub(crate) StatusCode, pub(crate) String);

impl AdminError {
    /// metad answered with something the call never asks for: a bug.
    pub(crate) fn unexpected(answer: impl std::fmt::Debug) -> Self {
        AdminError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected {answer:?}"),
        )
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<weft_client::MetadClientError> for AdminError {
    fn from(e: weft_client::MetadClientError) -> Self {
        AdminError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// A key as the admin API shows it; the secret only on creation.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct KeyView {
    /// Key name.
    pub name: String,
    /// Access key id.
    pub access_key: String,
    /// Secret, only in the answer to create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Root key?
    pub root: bool,
    /// Creation time, ms since epoch.
    pub created_ms: u64,
}

/// A bucket as the admin API shows it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BucketView {
    /// Bucket name.
    pub name: String,
    /// Owner's key name (or access key if the key was deleted).
    pub owner: String,
    /// Creation time, ms since epoch.
    pub created_ms: u64,
}

/// One metad as it describes itself.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct VoterView {
    /// Address asked.
    pub addr: String,
    /// Its raft status, if it answered.
    pub status: Option<RaftStatus>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// `weft cluster status`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ClusterStatus {
    /// metad raft view of the leader (members with replication progress).
    pub metad: RaftStatus,
    /// Every known metad's own view (role, term, indexes).
    #[serde(default)]
    pub voters: Vec<VoterView>,
    /// Data nodes.
    pub nodes: Vec<NodeView>,
}

/// Body of key creation.
#[derive(Deserialize, Serialize)]
pub struct CreateKeyRequest {
    /// Unique key name.
    pub name: String,
}

/// The router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{name}", delete(delete_key))
        .route("/v1/buckets", get(list_buckets))
        .route("/v1/cluster/status", get(cluster_status))
        .route("/v1/repair/status", get(repair_status))
        .route("/v1/repair/config", axum::routing::post(repair_config))
        .route(
            "/v1/upload-timers",
            get(get_upload_timers).post(set_upload_timers),
        )
        .route("/v1/nodes/{id}/{action}", axum::routing::post(node_action))
        .route("/v1/metad/add", axum::routing::post(metad_add))
        .route("/v1/metad/remove", axum::routing::post(metad_remove))
        .route("/v1/metad/step-down", axum::routing::post(metad_step_down))
        .merge(crate::admin_audit::routes())
        .merge(crate::admin_classes::routes())
        .merge(crate::admin_lifecycle::routes())
        .merge(crate::admin_locate::routes())
        .merge(crate::admin_residency::routes())
        .merge(crate::admin_warm::routes())
        .route("/v1/cluster/usage", get(crate::admin_usage::usage))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(s): State<AdminState>| async move { s.metrics.render() }),
        )
        // Each call gets its own principal slot, which `check` fills.
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                weft_client::audit_report::acting_for(
                    weft_client::audit_report::PrincipalSlot::new(),
                    next.run(req),
                )
            },
        ))
        .with_state(state)
}

/// Authenticates an admin call: on success the request acts for who
/// proved it (every command it causes names them in the audit chain); a
/// failure is reported to the chain.
pub(crate) async fn check(
    s: &AdminState,
    req: &AdminRequest,
    body: &[u8],
) -> Result<(), AdminError> {
    check_for(s, req, body, None).await
}

/// [`check`], also admitting the key `owner` (a bucket's owner, for the
/// calls S3 would let it make on its own bucket, like `weft locate`).
pub(crate) async fn check_for(
    s: &AdminState,
    req: &AdminRequest,
    body: &[u8],
    owner: Option<&str>,
) -> Result<(), AdminError> {
    let host = req
        .peer
        .as_ref()
        .map(|p| p.addr.ip().to_string())
        .unwrap_or_else(|| "an unknown address".into());
    match authenticate(s, req, body, owner).await {
        Ok(principal) => {
            weft_client::audit_report::set_principal(format!("{principal} at {host}"));
            Ok(())
        }
        Err(e) => {
            // A 403 comes after the signature held: the key is proved.
            let denied = e.0 == StatusCode::FORBIDDEN;
            let claimed = req
                .headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(admin_auth::parse)
                .map(|p| {
                    let word = if denied { "key" } else { "claimed key" };
                    format!("{word} {} at {host}", p.access_key)
                })
                .unwrap_or_else(|| format!("caller at {host}"));
            let kind = if denied {
                weft_common::audit::EventKind::Denial
            } else {
                weft_common::audit::EventKind::AuthFailure
            };
            if matches!(e.0, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                s.audit.report(
                    kind,
                    &claimed,
                    &format!("admin {}", req.method),
                    req.uri.path(),
                    &format!("denied: {}", e.1),
                );
            }
            Err(e)
        }
    }
}

/// Who an admin call proves it comes from.
async fn authenticate(
    s: &AdminState,
    req: &AdminRequest,
    body: &[u8],
    owner: Option<&str>,
) -> Result<String, AdminError> {
    if req.admin_cert {
        return Ok("admin certificate".into());
    }
    let (method, uri, headers) = (&req.method, &req.uri, &req.headers);
    let unauthorized = |m: &str| AdminError(StatusCode::UNAUTHORIZED, m.to_string());
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| {
            unauthorized("missing Authorization: sign with the root key, send the admin token, or present an admin certificate")
        })?;
    if let (Some(token), Some(given)) = (&s.admin_token, header.strip_prefix("Bearer ")) {
        if admin_auth::signatures_equal(token, given.trim()) {
            return Ok("admin token".into());
        }
        return Err(unauthorized("wrong admin token"));
    }
    let parsed =
        admin_auth::parse(header).ok_or_else(|| unauthorized("malformed Authorization header"))?;
    let now = now_ms() / 1000;
    if parsed.unix_secs.abs_diff(now) > admin_auth::SKEW_SECS_MAX {
        return Err(unauthorized(
            "request time too far from server time; check the clock",
        ));
    }
    let key = s.keys.get(&parsed.access_key).await.map_err(|e| {
        AdminError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("look up key: {e:?}"),
        )
    })?;
    let Some(key) = key else {
        return Err(unauthorized("no such access key"));
    };
    // The signature first: a caller who has not proved the key is an
    // authentication failure, whatever the key may do.
    let path_q = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let expected = admin_auth::signature(
        &key.secret_key,
        method.as_str(),
        path_q,
        parsed.unix_secs,
        body,
    );
    if !admin_auth::signatures_equal(&expected, &parsed.signature) {
        return Err(unauthorized("signature does not match: wrong secret key?"));
    }
    if !key.root {
        if owner == Some(key.access_key.as_str()) {
            return Ok(format!(
                "bucket owner key {} ({})",
                key.name, key.access_key
            ));
        }
        return Err(AdminError(
            StatusCode::FORBIDDEN,
            match owner {
                Some(_) => "only root keys and a bucket's owner may make this call".into(),
                None => "only root keys may use the admin API".into(),
            },
        ));
    }
    Ok(format!("root key {} ({})", key.name, key.access_key))
}

/// Commits a command that changes one bucket's settings: a refused
/// setting is a 400 with metad's reason, a missing bucket a 404.
pub(crate) async fn commit_bucket_setting(
    s: &AdminState,
    bucket: &str,
    cmd: &weft_common::rpc::Command,
) -> Result<(), AdminError> {
    use weft_common::rpc::{CommandResult, Refusal};
    match s.metad.command(cmd).await? {
        CommandResult::Done => Ok(()),
        CommandResult::Refused {
            refusal: Refusal::ClassRefused { message },
        } => Err(AdminError(StatusCode::BAD_REQUEST, message)),
        CommandResult::Refused {
            refusal: Refusal::NoSuchBucket,
        } => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no bucket {bucket}"),
        )),
        other => Err(AdminError::unexpected(other)),
    }
}

/// Decodes a JSON request body; a malformed one is a 400 naming the problem.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

async fn keys(s: &AdminState) -> Result<Vec<AccessKey>, AdminError> {
    match s.metad.query(&Query::Keys).await? {
        QueryResult::Keys { keys } => Ok(keys),
        other => Err(AdminError::unexpected(other)),
    }
}

async fn list_keys(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<Vec<KeyView>>, AdminError> {
    check(&s, &req, b"").await?;
    let out = keys(&s)
        .await?
        .into_iter()
        .map(|k| KeyView {
            name: k.name,
            access_key: k.access_key,
            secret_key: None,
            root: k.root,
            created_ms: k.created_ms,
        })
        .collect();
    Ok(Json(out))
}

fn random_token(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[weft_common::effects::random::<usize>() % alphabet.len()] as char)
        .collect()
}

/// A new random access key id (20 chars) and secret (40 chars).
pub fn generate_key_pair() -> (String, String) {
    let ak = format!(
        "WK{}",
        random_token(18, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    );
    let sk = random_token(
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    );
    (ak, sk)
}

async fn create_key(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<(StatusCode, Json<KeyView>), AdminError> {
    check(&s, &req, &body).await?;
    let req: CreateKeyRequest = json_body(&body)?;
    if req.name.is_empty() || req.name.len() > 128 {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "key names are 1-128 characters".into(),
        ));
    }
    let (access_key, secret_key) = generate_key_pair();
    let key = AccessKey {
        access_key: access_key.clone(),
        secret_key: secret_key.clone(),
        name: req.name.clone(),
        root: false,
        created_ms: now_ms(),
    };
    match s
        .metad
        .command(&Command::CreateKey { key: key.clone() })
        .await?
    {
        CommandResult::Done => Ok((
            StatusCode::CREATED,
            Json(KeyView {
                name: key.name,
                access_key,
                secret_key: Some(secret_key),
                root: false,
                created_ms: key.created_ms,
            }),
        )),
        CommandResult::Refused {
            refusal: Refusal::KeyExists,
        } => Err(AdminError(
            StatusCode::CONFLICT,
            format!("a key named {} already exists", req.name),
        )),
        other => Err(AdminError::unexpected(other)),
    }
}

async fn delete_key(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    req: AdminRequest,
) -> Result<StatusCode, AdminError> {
    check(&s, &req, b"").await?;
    match s
        .metad
        .command(&Command::DeleteKey { name: name.clone() })
        .await?
    {
        CommandResult::Done => Ok(StatusCode::NO_CONTENT),
        CommandResult::Refused {
            refusal: Refusal::NoSuchKeyName,
        } => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no key named {name}"),
        )),
        CommandResult::Refused {
            refusal: Refusal::KeyIsRoot,
        } => Err(AdminError(
            StatusCode::CONFLICT,
            "the root key cannot be deleted".into(),
        )),
        other => Err(AdminError::unexpected(other)),
    }
}

async fn list_buckets(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<Vec<BucketView>>, AdminError> {
    check(&s, &req, b"").await?;
    let keys = keys(&s).await?;
    let buckets = match s.metad.query(&Query::Buckets).await? {
        QueryResult::Buckets { buckets } => buckets,
        other => return Err(AdminError::unexpected(other)),
    };
    Ok(Json(
        buckets
            .into_iter()
            .map(|b| BucketView {
                owner: keys
                    .iter()
                    .find(|k| k.access_key == b.owner)
                    .map(|k| k.name.clone())
                    .unwrap_or(b.owner),
                name: b.name,
                created_ms: b.created_ms,
            })
            .collect(),
    ))
}

async fn voter_views(s: &AdminState) -> Vec<VoterView> {
    s.metad
        .query_each(&Query::Status)
        .await
        .into_iter()
        .map(|(addr, r)| match r {
            Ok(QueryResult::Status { status }) => VoterView {
                addr,
                status: Some(status),
                error: None,
            },
            Ok(other) => VoterView {
                addr,
                status: None,
                error: Some(format!("unexpected answer {other:?}")),
            },
            Err(e) => VoterView {
                addr,
                status: None,
                error: Some(e.to_string()),
            },
        })
        .collect()
}

async fn cluster_status(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<ClusterStatus>, AdminError> {
    check(&s, &req, b"").await?;
    let voters = voter_views(&s).await;
    // The leader's view carries replication progress for every member.
    let leader = voters
        .iter()
        .filter_map(|v| v.status.as_ref())
        .find(|st| st.role == "Leader")
        .cloned();
    let metad = match leader {
        Some(st) => st,
        None => match s.metad.query(&Query::Status).await? {
            QueryResult::Status { status } => status,
            other => return Err(AdminError::unexpected(other)),
        },
    };
    let nodes = match s.metad.query(&Query::Nodes).await? {
        QueryResult::Nodes { nodes, .. } => nodes,
        other => return Err(AdminError::unexpected(other)),
    };
    Ok(Json(ClusterStatus {
        metad,
        voters,
        nodes,
    }))
}

async fn metad_member_call<B: Serialize>(
    s: &AdminState,
    path: &str,
    body: &B,
) -> Result<Json<RaftStatus>, AdminError> {
    let st: RaftStatus = s.metad.call(path, body).await.map_err(|e| match e {
        weft_client::MetadClientError::Rejected { message, .. } => {
            AdminError(StatusCode::CONFLICT, message)
        }
        e => AdminError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    })?;
    if let Err(e) = s.metad.learn_members().await {
        tracing::warn!(error = %e, "refresh metad members after a membership change");
    }
    Ok(Json(st))
}

async fn metad_add(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<RaftStatus>, AdminError> {
    check(&s, &req, &body).await?;
    let req: AddMember = json_body(&body)?;
    metad_member_call(&s, "/v1/members/add", &req).await
}

async fn metad_remove(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<RaftStatus>, AdminError> {
    check(&s, &req, &body).await?;
    let req: RemoveMember = json_body(&body)?;
    metad_member_call(&s, "/v1/members/remove", &req).await
}

async fn metad_step_down(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<RaftStatus>, AdminError> {
    check(&s, &req, &body).await?;
    metad_member_call(&s, "/v1/leader/step-down", &serde_json::json!({})).await
}

use crate::limits::DURABILITY_QUERY_DEADLINE;

async fn durability(s: &AdminState) -> Result<DurabilityStatus, AdminError> {
    let metad = s.metad.clone().with_deadline(DURABILITY_QUERY_DEADLINE);
    match metad.query(&Query::Durability).await? {
        QueryResult::Durability { status } => Ok(status),
        other => Err(AdminError::unexpected(other)),
    }
}

async fn repair_status(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<DurabilityStatus>, AdminError> {
    check(&s, &req, b"").await?;
    match durability(&s).await {
        Ok(status) => {
            *s.last_durability.lock().expect("status cache lock") = Some(status.clone());
            Ok(Json(status))
        }
        Err(e) => {
            let cached = s.last_durability.lock().expect("status cache lock").clone();
            match cached {
                Some(mut status) => {
                    // Never claim health from an old report: it says what
                    // was true then, flagged as such.
                    status.stale = true;
                    status.stale_reason = Some(format!(
                        "metad did not answer ({}); this is the last report, from {} ms since the epoch",
                        e.1, status.as_of_ms
                    ));
                    Ok(Json(status))
                }
                None => Err(e),
            }
        }
    }
}

/// Body of `POST /v1/repair/config`: fields left out keep their value.
#[derive(Deserialize, Serialize, Default)]
pub struct RepairConfigRequest {
    /// Cluster-wide repair rate.
    pub rate_bytes_per_sec: Option<u64>,
    /// `low`, `normal` or `high`.
    pub priority: Option<RepairPriority>,
}

async fn repair_config(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<RepairConfig>, AdminError> {
    check(&s, &req, &body).await?;
    let req: RepairConfigRequest = json_body(&body)?;
    let mut config = durability(&s).await?.config;
    if let Some(rate) = req.rate_bytes_per_sec {
        if rate == 0 {
            return Err(AdminError(
                StatusCode::BAD_REQUEST,
                "the repair rate must be at least 1 byte per second".into(),
            ));
        }
        config.rate_bytes_per_sec = rate;
    }
    if let Some(p) = req.priority {
        config.priority = p;
    }
    s.metad
        .command(&Command::SetRepairConfig { config })
        .await?;
    Ok(Json(config))
}

/// Body of `POST /v1/upload-timers`: fields left out keep their value; an
/// unknown field (a misspelt timer) is refused, never ignored.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UploadTimersRequest {
    /// Longest time one upload may write before it commits.
    pub upload_max_age_ms: Option<u64>,
    /// Age under which data nodes never collect a shard file.
    pub gc_grace_ms: Option<u64>,
}

async fn cluster_upload_timers(s: &AdminState) -> Result<UploadTimers, AdminError> {
    match s.metad.query(&Query::UploadTimers).await? {
        QueryResult::UploadTimers { timers } => Ok(timers),
        other => Err(AdminError::unexpected(other)),
    }
}

async fn get_upload_timers(
    State(s): State<AdminState>,
    req: AdminRequest,
) -> Result<Json<UploadTimers>, AdminError> {
    check(&s, &req, b"").await?;
    Ok(Json(cluster_upload_timers(&s).await?))
}

/// Changes the cluster's upload timers. metad merges the fields given into
/// the pair it holds and checks the result in apply, so two changes at once
/// cannot undo each other. Gateways pick up a shorter age within a
/// refresh; until uploads begun under the old age are over, metad serves
/// data nodes a grace of at least twice that age
/// (`weft_common::upload_timers::TimersRecord`). The answer is the pair
/// metad serves afterwards (its grace may show that protection).
async fn set_upload_timers(
    State(s): State<AdminState>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<UploadTimers>, AdminError> {
    check(&s, &req, &body).await?;
    let req: UploadTimersRequest = json_body(&body)?;
    if req.upload_max_age_ms.is_none() && req.gc_grace_ms.is_none() {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "nothing to change: give upload_max_age_ms and/or gc_grace_ms".into(),
        ));
    }
    let at_ms = weft_common::effects::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    match s
        .metad
        .command(&Command::SetUploadTimers {
            upload_max_age_ms: req.upload_max_age_ms,
            gc_grace_ms: req.gc_grace_ms,
            seed: false,
            at_ms,
        })
        .await?
    {
        CommandResult::Done => Ok(Json(cluster_upload_timers(&s).await?)),
        CommandResult::Refused {
            refusal: Refusal::UnsafeTimers { message },
        } => Err(AdminError(StatusCode::BAD_REQUEST, message)),
        other => Err(AdminError::unexpected(other)),
    }
}

/// Answer of the node actions.
#[derive(Deserialize, Serialize, Debug)]
pub struct NodeActionReply {
    /// The node.
    pub node: u64,
    /// Its operator state now.
    pub admin: NodeAdmin,
    /// Shards still placed on it.
    pub shards: u64,
}

#[derive(Deserialize, Default)]
struct NodeActionQuery {
    #[serde(default)]
    force: bool,
}

async fn node_action(
    State(s): State<AdminState>,
    Path((id, action)): Path<(u64, String)>,
    axum::extract::Query(q): axum::extract::Query<NodeActionQuery>,
    req: AdminRequest,
    body: Bytes,
) -> Result<Json<NodeActionReply>, AdminError> {
    check(&s, &req, &body).await?;
    let admin = match action.as_str() {
        "drain" => NodeAdmin::Draining,
        "activate" => NodeAdmin::Active,
        "remove" => NodeAdmin::Removed,
        other => {
            return Err(AdminError(
                StatusCode::NOT_FOUND,
                format!("unknown node action {other:?}; use drain, activate or remove"),
            ))
        }
    };
    let shards_on =
        |st: &DurabilityStatus| st.nodes.iter().find(|n| n.node.0 == id).map(|n| n.shards);
    let status = durability(&s).await?;
    let Some(shards) = shards_on(&status) else {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no data node {id}; see `weft cluster status`"),
        ));
    };
    if admin == NodeAdmin::Removed && shards > 0 && !q.force {
        return Err(AdminError(
            StatusCode::CONFLICT,
            format!(
                "node {id} still holds {shards} shards; drain it first (`weft node drain {id}`) and wait until it holds none, or pass --force to remove it now and let repair rebuild its shards"
            ),
        ));
    }
    let cmd = Command::SetNodeAdmin {
        node: weft_common::NodeId(id),
        admin,
    };
    match s.metad.command(&cmd).await? {
        CommandResult::Done => Ok(Json(NodeActionReply {
            node: id,
            admin,
            shards,
        })),
        CommandResult::Refused {
            refusal: Refusal::NodeRemoved,
        } => Err(AdminError(
            StatusCode::CONFLICT,
            format!("node {id} was removed and cannot be brought back; start a new node (with an empty data directory) instead"),
        )),
        CommandResult::Refused {
            refusal: Refusal::NoSuchNode,
        } => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no data node {id}"),
        )),
        other => Err(AdminError::unexpected(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::UploadTimersRequest;

    #[test]
    fn a_misspelt_timer_is_refused_not_ignored() {
        let ok: UploadTimersRequest = serde_json::from_str(r#"{"gc_grace_ms": 7200000}"#).unwrap();
        assert_eq!(ok.gc_grace_ms, Some(7_200_000));
        assert!(serde_json::from_str::<UploadTimersRequest>(r#"{"gc_grace": 7200000}"#).is_err());
    }
}
