//! The HTTP endpoints of a datad, over a [`ShardStore`].
//!
//! | Method and path | Success |
//! |---|---|
//! | `PUT /v1/shards/{segment}/{index}` (header `x-weft-shard-len`, body = the shard's bytes) | 200, JSON [`ShardPutReply`] once durable |
//! | `GET /v1/shards/{segment}/{index}?offset=N&len=N` (`len` absent: to the end) | 200, `application/octet-stream`, exactly `len` bytes |
//! | `DELETE /v1/shards/{segment}/{index}` | 204, also when absent |
//! | `POST /v1/shards/release` (JSON [`ShardReleaseBatch`]) | 200, JSON [`ShardReleaseReply`]: shards deleted now, or once their readers are done ([`crate::release`]) |
//! | `GET /health` | 200 `ok` |
//! | `GET /metrics` | Prometheus / OpenMetrics text |
//!
//! Errors are JSON [`RpcErrorBody`], status by code:
//!
//! | Code | Status | When |
//! |---|---|---|
//! | `BadRequest` | 400 | bad ids, missing or bad length header, body length mismatch, body failed |
//! | `BadRequest` | 413 | shard above `DATA_LEN_MAX` |
//! | `BadRequest` | 416 | range outside the shard |
//! | `NotFound` | 404 | no such shard |
//! | `Corrupt` | 409 | the header or a block of the range failed verification; `damage` names the bad blocks |
//! | `DiskFull` | 507 | the node is full (past `full_ratio`, see [`crate::space`]), the PUT would exceed capacity, or the disk is full |
//! | `Busy` | 503 | out of file descriptors (EMFILE/ENFILE); retry shortly |
//! | `Internal` | 500 | other I/O failure |
//!
//! A refused PUT reads and drops the rest of its body (up to
//! [`PUT_DRAIN_BYTES_MAX`]) before replying, so the client sees the error
//! rather than a broken pipe.
//!
//! A GET of at most [`GET_VERIFIED_MAX`] bytes (every per-stripe read of the
//! gateway and of repair) is read and verified whole before the status goes
//! out, so any bad block is a 409 whose `damage` lists every bad block in the
//! range: the reader reports exactly those, and repair rewrites only them.
//! A larger GET streams: it checks the header and the first block it touches
//! before sending the status, so those failures get a proper error; a block
//! that fails later aborts the response body (the connection is closed
//! before `len` bytes), so the client's body read fails: a partial body is
//! never mistaken for data.

use crate::error::chain;
use crate::error::ShardError;
use crate::release::Releaser;
use crate::shard_file::ShardHeader;
use crate::shard_store::{ShardStore, GET_VERIFIED_MAX};
use crate::space::SpaceMonitor;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use weft_common::damage::BlockDamage;
use weft_common::rpc::{
    RpcErrorBody, RpcErrorCode, ShardPutReply, ShardReleaseBatch, ShardReleaseReply,
    SHARD_LEN_HEADER, SHARD_RELEASE_BATCH_MAX,
};
use weft_common::{SegmentId, ShardIndex};

/// Counters exported at `/metrics`.
struct Metrics {
    registry: Registry,
    put_bytes: Counter,
    get_bytes: Counter,
    /// Shard bytes served, by the zone the caller named.
    served_bytes: Family<ZoneLabel, Counter>,
    /// Zones `served_bytes` names so far (at most
    /// [`weft_common::locality::METRIC_ZONES_MAX`]).
    served_zones: std::sync::Mutex<std::collections::BTreeSet<String>>,
    corrupt_blocks: Counter,
    used_bytes: Gauge,
}

impl Metrics {
    fn new(work: &crate::work_metrics::WorkMetrics, space: &SpaceMonitor) -> Metrics {
        let mut registry = Registry::with_prefix("weft_datad");
        work.register(&mut registry);
        space.register(&mut registry);
        let put_bytes = Counter::default();
        let get_bytes = Counter::default();
        let corrupt_blocks = Counter::default();
        let used_bytes = Gauge::default();
        registry.register(
            "shard_put_bytes",
            "Data bytes of shards stored",
            put_bytes.clone(),
        );
        registry.register(
            "shard_get_bytes",
            "Data bytes of shards served",
            get_bytes.clone(),
        );
        registry.register(
            "shard_corrupt_blocks",
            "Shard blocks or headers that failed verification on read",
            corrupt_blocks.clone(),
        );
        registry.register("used_bytes", "Bytes of all shard files", used_bytes.clone());
        let served_bytes = Family::<ZoneLabel, Counter>::default();
        registry.register(
            "shard_served_bytes",
            "Shard bytes served, by the zone the reader named (unknown: none named)",
            served_bytes.clone(),
        );
        Metrics {
            registry,
            put_bytes,
            get_bytes,
            served_bytes,
            served_zones: Default::default(),
            corrupt_blocks,
            used_bytes,
        }
    }
}

/// Labels of bytes served to one zone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ZoneLabel {
    zone: String,
}

impl Metrics {
    /// The counter of bytes served to the zone a request names.
    fn served_to(&self, headers: &HeaderMap) -> Counter {
        use weft_common::locality::{metric_zone, METRIC_ZONES_MAX};
        let raw = headers
            .get(weft_common::locality::ZONE_HEADER)
            .and_then(|v| v.to_str().ok());
        let mut zone = metric_zone(raw).to_string();
        {
            let mut seen = self.served_zones.lock().expect("zones lock");
            if !seen.contains(&zone) {
                if seen.len() < METRIC_ZONES_MAX {
                    seen.insert(zone.clone());
                } else {
                    zone = "other".into();
                }
            }
        }
        self.served_bytes.get_or_create(&ZoneLabel { zone }).clone()
    }
}

#[derive(Clone)]
struct AppState {
    store: Arc<ShardStore>,
    metrics: Arc<Metrics>,
    space: Arc<SpaceMonitor>,
    release: Arc<Releaser>,
}

/// The router of a datad. `space` admits PUTs: while the node is full, or
/// when a shard would take it past `capacity_bytes`, they are refused with
/// 507. `release` takes released shards. Exports the background jobs'
/// counters too.
pub fn router_with_metrics(
    store: Arc<ShardStore>,
    space: Arc<SpaceMonitor>,
    work: &crate::work_metrics::WorkMetrics,
    release: Arc<Releaser>,
    audit: weft_client::audit_report::Reporter,
) -> Router {
    let mut counters = Metrics::new(work, &space);
    release.register(&mut counters.registry);
    let state = AppState {
        store,
        metrics: Arc::new(counters),
        space,
        release,
    };
    Router::new()
        .route(
            "/v1/shards/{segment}/{index}",
            put(put_shard).get(get_shard).delete(delete_shard),
        )
        .route("/v1/shards/release", post(release_shards))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(check_format))
        // Outermost: a caller is identified before anything else runs.
        .layer(axum::middleware::from_fn(move |req, next| {
            weft_client::peer::guard(path_roles, audit.clone(), req, next)
        }))
        .with_state(state)
}

/// Who may call what on a data node (docs/security.md, "Roles"): shard
/// reads, writes, deletes and releases come from gateways and from other
/// data nodes (repair reads and writes shards); health and metrics are
/// open.
fn path_roles(path: &str) -> Option<&'static [weft_client::pki::Role]> {
    use weft_client::pki::Role;
    if weft_client::peer::is_open_path(path) {
        None
    } else {
        Some(&[Role::Gateway, Role::Datad])
    }
}

/// Refuses a request whose body is in a format this node cannot read
/// (`weft_common::rpc::FORMAT_HEADER`), before anything reads the body.
async fn check_format(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let checked = weft_common::rpc::check_rpc_format(
        req.headers()
            .get(weft_common::rpc::FORMAT_HEADER)
            .map(|v| v.to_str().unwrap_or("(not text)")),
    );
    if let Err(e) = checked {
        return ApiError::bad_request(e.to_string()).into_response();
    }
    next.run(req).await
}

pub use crate::limits::SHUTDOWN_GRACE_MS;

/// Serves `router` on `listener` (TCP_NODELAY on every connection) until
/// `cancel` fires, then shuts down gracefully: requests in flight get
/// [`SHUTDOWN_GRACE_MS`], after which the server stops waiting for them (a
/// peer that went silent mid-request must not keep a node from stopping).
pub async fn serve(
    listener: TcpListener,
    tls: Option<std::sync::Arc<weft_client::internal_tls::InternalTls>>,
    router: Router,
    accepted: Counter,
    cancel: CancellationToken,
    audit: weft_client::audit_report::Reporter,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    use std::future::IntoFuture;
    let listener = weft_client::listener::InternalListener::reporting(listener, tls, Some(audit))?
        .tap_io(move |_| {
            accepted.inc();
        });
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<weft_client::peer::Peer>(),
    )
    .with_graceful_shutdown(cancel.clone().cancelled_owned())
    .into_future();
    tokio::select! {
        biased;
        r = server => r,
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(std::time::Duration::from_millis(SHUTDOWN_GRACE_MS)).await;
        } => {
            tracing::warn!(grace_ms = SHUTDOWN_GRACE_MS, "requests still in flight after the shutdown grace; stopping without them");
            Ok(())
        }
    }
}

/// An error reply: status plus [`RpcErrorBody`].
struct ApiError {
    status: StatusCode,
    code: RpcErrorCode,
    message: String,
    /// For `Corrupt`: the bad blocks.
    damage: Option<BlockDamage>,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: RpcErrorCode::BadRequest,
            message: message.into(),
            damage: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = RpcErrorBody {
            code: self.code,
            message: self.message,
            leader_addr: None,
            damage: self.damage,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ShardError> for ApiError {
    fn from(error: ShardError) -> ApiError {
        use RpcErrorCode as C;
        let (status, code) = match &error {
            ShardError::NotFound { .. } => (StatusCode::NOT_FOUND, C::NotFound),
            ShardError::Corrupt { .. }
            | ShardError::CorruptHeader { .. }
            | ShardError::Damaged { .. } => (StatusCode::CONFLICT, C::Corrupt),
            ShardError::LengthMismatch { .. } | ShardError::Body(_) => {
                (StatusCode::BAD_REQUEST, C::BadRequest)
            }
            ShardError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, C::BadRequest),
            ShardError::OutOfRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, C::BadRequest),
            ShardError::DiskFull(_) => (StatusCode::INSUFFICIENT_STORAGE, C::DiskFull),
            ShardError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, C::Busy),
            ShardError::Io(_) | ShardError::Task(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, C::Internal)
            }
        };
        let mut message = chain(&error);
        if code == C::Busy {
            message.push_str(
                "; this datad is out of file descriptors: retry shortly, and raise its open-file limit (LimitNOFILE) if this persists",
            );
        }
        match code {
            // Handled here: a human should look.
            C::Internal => tracing::error!(error = %message, "shard request failed"),
            C::DiskFull | C::Busy => tracing::warn!(error = %message, "shard request failed"),
            _ => tracing::debug!(error = %message, "shard request failed"),
        }
        ApiError {
            status,
            code,
            message,
            damage: error.damage(),
        }
    }
}

fn parse_ids(segment: &str, index: &str) -> Result<(SegmentId, ShardIndex), ApiError> {
    if segment.len() != 32 || !segment.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "segment id {segment:?} is not 32 hex digits"
        )));
    }
    let segment = segment
        .parse()
        .map_err(|_| ApiError::bad_request(format!("bad segment id {segment:?}")))?;
    let index = index
        .parse()
        .map(ShardIndex)
        .map_err(|_| ApiError::bad_request(format!("bad shard index {index:?}")))?;
    Ok((segment, index))
}

async fn put_shard(
    State(state): State<AppState>,
    Path((segment, index)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ShardPutReply>, ApiError> {
    let (segment, index) = parse_ids(&segment, &index)?;
    let len = headers
        .get(SHARD_LEN_HEADER)
        .ok_or_else(|| ApiError::bad_request(format!("missing header {SHARD_LEN_HEADER}")))?;
    let len: u64 = len
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::bad_request(format!("bad header {SHARD_LEN_HEADER}")))?;
    let span = tracing::info_span!("shard_put", %segment, %index, len);
    let mut body = body.into_data_stream();
    let result = async {
        let file_len = ShardHeader::new(segment, index, len).file_len();
        if let Err(refused) = state.space.admit(file_len) {
            let message = refused.to_string();
            tracing::warn!(error = %message, "refused shard");
            return Err(ApiError {
                status: StatusCode::INSUFFICIENT_STORAGE,
                code: RpcErrorCode::DiskFull,
                message,
                damage: None,
            });
        }
        let reply = state.store.put(segment, index, len, &mut body).await?;
        state.metrics.put_bytes.inc_by(reply.bytes);
        Ok(Json(reply))
    }
    .instrument(span)
    .await;
    if result.is_err() {
        drain(body, PUT_DRAIN_BYTES_MAX).await;
    }
    result
}

pub use crate::limits::PUT_DRAIN_BYTES_MAX;

async fn drain(mut body: axum::body::BodyDataStream, max_bytes: u64) {
    let mut drained = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        drained += chunk.len() as u64;
        if drained > max_bytes {
            break;
        }
    }
}

#[derive(Deserialize)]
struct RangeParams {
    #[serde(default)]
    offset: u64,
    len: Option<u64>,
}

async fn get_shard(
    State(state): State<AppState>,
    Path((segment, index)): Path<(String, String)>,
    headers: HeaderMap,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let served = state.metrics.served_to(&headers);
    let (segment, index) = parse_ids(&segment, &index)?;
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("bad range: {}", e.body_text())))?;
    let span = tracing::info_span!("shard_get", %segment, %index, offset = params.offset, len = params.len);
    state.release.note_read(segment, index);
    let metrics = state.metrics.clone();
    // Small ranges (every per-stripe read) are verified whole before the
    // status goes out, so a bad block is a 409 naming every bad block in
    // the range rather than a body that breaks off.
    if let Some(len) = params.len.filter(|l| *l <= GET_VERIFIED_MAX) {
        return match state
            .store
            .get_verified(segment, index, params.offset, len)
            .instrument(span.clone())
            .await
        {
            Ok(bytes) => {
                metrics.get_bytes.inc_by(bytes.len() as u64);
                served.inc_by(bytes.len() as u64);
                Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
            }
            Err(e) => {
                match &e {
                    ShardError::Damaged { damage, .. } => {
                        metrics.corrupt_blocks.inc_by(damage.block_count(u64::MAX));
                    }
                    e if e.is_corrupt() => {
                        metrics.corrupt_blocks.inc();
                    }
                    _ => {}
                }
                Err(span.in_scope(|| ApiError::from(e)))
            }
        };
    }
    let range = match state
        .store
        .get(segment, index, params.offset, params.len)
        .instrument(span.clone())
        .await
    {
        Ok(range) => range,
        Err(e) => {
            if e.is_corrupt() {
                metrics.corrupt_blocks.inc();
            }
            return Err(span.in_scope(|| ApiError::from(e)));
        }
    };
    let body = range.body.inspect(move |item| match item {
        Ok(chunk) => {
            metrics.get_bytes.inc_by(chunk.len() as u64);
            served.inc_by(chunk.len() as u64);
        }
        Err(e) => {
            if e.is_corrupt() {
                metrics.corrupt_blocks.inc();
            }
            // The status is sent; all that is left is to cut the body short.
            span.in_scope(|| tracing::debug!(error = %chain(e), "aborting shard body"));
        }
    });
    // Before passing an error on (which makes hyper close the connection),
    // give hyper one turn to flush the status and the data so far: the client
    // then sees a body that breaks off rather than a connection closed before
    // any response, and can tell "bad shard" from "node unreachable".
    let body = futures::stream::unfold(body, |mut body| async move {
        let item = body.next().await?;
        if item.is_err() {
            tokio::task::yield_now().await;
        }
        Some((item, body))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, range.len.to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

async fn delete_shard(
    State(state): State<AppState>,
    Path((segment, index)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (segment, index) = parse_ids(&segment, &index)?;
    let span = tracing::info_span!("shard_delete", %segment, %index);
    async move {
        let existed = state.store.delete(segment, index).await?;
        tracing::debug!(existed, "deleted shard");
        Ok(StatusCode::NO_CONTENT)
    }
    .instrument(span)
    .await
}

async fn release_shards(
    State(state): State<AppState>,
    Json(batch): Json<ShardReleaseBatch>,
) -> Result<Json<ShardReleaseReply>, ApiError> {
    if batch.shards.len() > SHARD_RELEASE_BATCH_MAX {
        return Err(ApiError::bad_request(format!(
            "{} shards in one release batch; send at most {SHARD_RELEASE_BATCH_MAX}",
            batch.shards.len()
        )));
    }
    let n = batch.shards.len();
    let span = tracing::info_span!("shard_release", shards = n);
    let reply = state
        .release
        .release_held(batch.shards, batch.hold, batch.hold_full)
        .instrument(span)
        .await?;
    tracing::debug!(?reply, "released shards");
    Ok(Json(reply))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let used = i64::try_from(state.store.used_bytes()).unwrap_or(i64::MAX);
    state.metrics.used_bytes.set(used);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry).map_err(|e| {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: RpcErrorCode::Internal,
            message: format!("encode metrics: {e}"),
            damage: None,
        }
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
