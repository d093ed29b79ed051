//! datad's link to metad: registration (retried with backoff until a
//! metad answers, following `NotLeader` hints), then a heartbeat every
//! interval. Neither failure is fatal: a datad keeps serving shards while
//! metad is away, and warns about it at a bounded rate.

use crate::limits::{
    METAD_CALL_TIMEOUT_MS, METAD_REDIRECTS_MAX, METAD_WARN_INTERVAL_MS, REGISTER_BACKOFF_MS_MAX,
    REGISTER_BACKOFF_MS_MIN,
};
use crate::space::SpaceMonitor;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_common::rpc::{Command, Heartbeat, RpcErrorBody, RpcErrorCode};
use weft_common::topology::NodeInfo;

/// Why one call to metad failed.
#[derive(Debug, thiserror::Error)]
enum MetadCallError {
    #[error("metad {addr} unreachable")]
    Unreachable {
        addr: String,
        #[source]
        source: weft_client::TransportError,
    },
    #[error("metad {addr}: status {status}: {message}")]
    Failed {
        addr: String,
        status: u16,
        code: Option<RpcErrorCode>,
        message: String,
        /// For `NotLeader`: where the leader is.
        leader_addr: Option<String>,
    },
}

/// The metad addresses and which one to try next.
struct MetadLink {
    http: reqwest::Client,
    transport: weft_client::SharedTransport,
    addrs: Vec<String>,
    next: usize,
    /// Where the last `NotLeader` pointed, or the last metad that answered.
    target: Option<String>,
}

impl MetadLink {
    /// POSTs `body` as JSON to `path`, trying each metad in turn and following
    /// `NotLeader` hints. Returns the last error when none accepts it.
    async fn post<T: Serialize>(&mut self, path: &str, body: &T) -> Result<(), MetadCallError> {
        let attempts = self.addrs.len() + METAD_REDIRECTS_MAX;
        let mut last_error = None;
        for _ in 0..attempts {
            let addr = match self.target.clone() {
                Some(addr) => addr,
                None => {
                    let addr = self.addrs[self.next % self.addrs.len()].clone();
                    self.next = self.next.wrapping_add(1);
                    addr
                }
            };
            match self.post_once(&addr, path, body).await {
                Ok(()) => {
                    self.target = Some(addr);
                    return Ok(());
                }
                Err(MetadCallError::Failed {
                    code: Some(RpcErrorCode::NotLeader),
                    leader_addr: Some(leader),
                    ..
                }) => {
                    tracing::debug!(%addr, %leader, "metad is not the leader; following hint");
                    self.target = Some(leader);
                }
                Err(e) => {
                    self.target = None;
                    let stop = matches!(
                        e,
                        MetadCallError::Failed {
                            code: Some(RpcErrorCode::NotFound),
                            ..
                        }
                    );
                    last_error = Some(e);
                    if stop {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| MetadCallError::Failed {
            addr: String::new(),
            status: 0,
            code: None,
            message: "no metad accepted the call".into(),
            leader_addr: None,
        }))
    }

    async fn post_once<T: Serialize>(
        &self,
        addr: &str,
        path: &str,
        body: &T,
    ) -> Result<(), MetadCallError> {
        let unreachable = |source: weft_client::TransportError| MetadCallError::Unreachable {
            addr: addr.to_string(),
            source,
        };
        let request = self
            .http
            .post(format!("http://{addr}{path}"))
            .headers(weft_client::format_headers())
            .timeout(Duration::from_millis(METAD_CALL_TIMEOUT_MS))
            .json(body)
            .build()
            .map_err(|e| unreachable(e.into()))?;
        let response = self.transport.execute(request).await.map_err(unreachable)?;
        let status = response.status();
        // Read the whole body even on success: a response dropped unread
        // takes its connection with it instead of returning it to the pool.
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let (code, message, leader_addr) = match serde_json::from_str::<RpcErrorBody>(&text) {
            Ok(body) => (Some(body.code), body.message, body.leader_addr),
            Err(_) => (None, text.chars().take(200).collect(), None),
        };
        Err(MetadCallError::Failed {
            addr: addr.to_string(),
            status: status.as_u16(),
            code,
            message,
            leader_addr,
        })
    }
}

/// Logs repeated failures at WARN at most every [`METAD_WARN_INTERVAL_MS`].
#[derive(Default)]
struct WarnLimiter {
    last_warn: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn failed(&mut self, what: &str, error: &MetadCallError) {
        let message = crate::error::chain(error);
        let due = self
            .last_warn
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(METAD_WARN_INTERVAL_MS));
        if due {
            tracing::warn!(error = %message, suppressed = self.suppressed, "{what} failed; will retry");
            self.last_warn = Some(Instant::now());
            self.suppressed = 0;
        } else {
            tracing::debug!(error = %message, "{what} failed; will retry");
            self.suppressed += 1;
        }
    }

    fn succeeded(&mut self) {
        self.last_warn = None;
        self.suppressed = 0;
    }
}

/// Registers, then heartbeats; registers again if metad forgets the node.
/// Runs until `cancel` fires.
pub(crate) async fn metad_loop(
    node: NodeInfo,
    addrs: Vec<String>,
    transport: weft_client::SharedTransport,
    heartbeat_interval: Duration,
    space: Arc<SpaceMonitor>,
    cancel: CancellationToken,
) {
    if addrs.is_empty() {
        tracing::warn!("no metad addresses configured; not registering");
        cancel.cancelled().await;
        return;
    }
    let mut link = MetadLink {
        http: weft_client::transport::builder_client(),
        transport,
        addrs,
        next: 0,
        target: None,
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => {}
        _ = register_and_heartbeat(&mut link, &node, heartbeat_interval, &space) => {}
    }
    tracing::debug!("metad task stopped");
}

async fn register_and_heartbeat(
    link: &mut MetadLink,
    node: &NodeInfo,
    heartbeat_interval: Duration,
    space: &SpaceMonitor,
) {
    let mut limiter = WarnLimiter::default();
    loop {
        // One request id for every attempt of this registration, so metad
        // applies it once however often the answer is lost; a later
        // registration (after metad forgot the node) is a new request.
        let register = Command::Request {
            format: weft_common::rpc::COMMAND_FORMAT,
            actor: None,
            id: weft_common::RequestId::from_random(weft_common::effects::random()),
            at_ms: 0, // stamped by the leader
            command: Box::new(Command::RegisterNode { node: node.clone() }),
        };
        let mut backoff_ms = REGISTER_BACKOFF_MS_MIN;
        loop {
            match link.post("/v1/command", &register).await {
                Ok(()) => break,
                Err(e) => {
                    limiter.failed("register with metad", &e);
                    let jitter = weft_common::effects::random::<u64>() % (backoff_ms / 2 + 1);
                    tokio::time::sleep(Duration::from_millis(backoff_ms + jitter)).await;
                    backoff_ms = (backoff_ms * 2).min(REGISTER_BACKOFF_MS_MAX);
                }
            }
        }
        limiter.succeeded();
        tracing::info!(metad = ?link.target, addr = %node.addr, "registered with metad");

        let mut ticker = tokio::time::interval(heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let heartbeat = Heartbeat {
                node: node.id,
                used_bytes: space.used_bytes(),
                space: space.report(),
            };
            match link.post("/v1/heartbeat", &heartbeat).await {
                Ok(()) => limiter.succeeded(),
                Err(MetadCallError::Failed {
                    code: Some(RpcErrorCode::NotFound),
                    ..
                }) => {
                    tracing::info!("metad does not know this node; registering again");
                    break;
                }
                Err(e) => limiter.failed("heartbeat to metad", &e),
            }
        }
    }
}
