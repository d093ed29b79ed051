//! [`DatadClient`]: how the gateway (and tests) talk to datads.
//!
//! One `reqwest::Client` (connection pool, TCP_NODELAY) shared by clones.
//! Errors name the datad and the operation; the caller adds which object and
//! segment it was working on.
//!
//! **Bounded connections.** HTTP/1.1 carries one request per connection at a
//! time, so a pool reuses connections only when callers take turns: with
//! nothing bounding concurrency, a burst of N calls to one datad opens N
//! connections (a DELETE burst once reached 1,700 per datad and the open-file
//! limit). Every call therefore first takes one of
//! [`DatadClientLimits::per_peer_max`] slots for its datad, waiting at most
//! [`DatadClientLimits::queue_timeout`] (then [`DatadClientError::Busy`]),
//! and holds it until the response body is read, so connections to a datad
//! never exceed the slots and idle ones are reused.
//!
//! **Deadlines.** Every call has a connect deadline, an idle-read deadline
//! (no byte for that long: the datad stalled) and a whole-request deadline;
//! a PUT's grows with its length at a floor rate.

use bytes::Bytes;
use futures::Stream;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::transport::{Http, SharedTransport, TransportError};
use weft_common::damage::BlockDamage;
use weft_common::rpc::{
    RpcErrorBody, RpcErrorCode, ShardPutReply, ShardRef, ShardReleaseBatch, ShardReleaseReply,
    SHARD_LEN_HEADER,
};
use weft_common::{SegmentId, ShardIndex};

pub use crate::limits::CONNECT_TIMEOUT_MS;

/// Connection and deadline limits of a [`DatadClient`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatadClientLimits {
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// A response that sends nothing for this long has stalled.
    pub idle_read_timeout: Duration,
    /// Whole-request deadline of reads, deletes and releases; also the base
    /// of a PUT's deadline.
    pub request_timeout: Duration,
    /// A PUT's deadline is `request_timeout` plus its length at this rate.
    pub put_min_bytes_per_sec: u64,
    /// Requests in flight to one datad (and so connections to it).
    pub per_peer_max: usize,
    /// How long a call waits for a free slot before failing with `Busy`.
    pub queue_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Speak HTTP/2 (cleartext, prior knowledge): every request to a datad
    /// is a stream on one connection. Off by default: measured no faster
    /// than pooled HTTP/1.1 here (docs/performance.md, "Internal HTTP"),
    /// and one TCP connection puts every shard of a node behind one
    /// congestion window.
    pub http2: bool,
}

impl Default for DatadClientLimits {
    fn default() -> Self {
        DatadClientLimits {
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
            idle_read_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(60),
            put_min_bytes_per_sec: 1 << 20,
            per_peer_max: 64,
            queue_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(30),
            http2: false,
        }
    }
}
use crate::limits::GET_PREALLOC_BYTES_MAX;

/// Why a call to a datad failed. `op` says which call ("put shard", ...).
#[derive(Debug, thiserror::Error)]
pub enum DatadClientError {
    /// No answer: connection refused or reset, timeout, or the request body
    /// stream failed. Try another node.
    #[error("{op} on datad {addr}: unreachable")]
    Unreachable {
        /// Which call.
        op: &'static str,
        /// The datad.
        addr: String,
        /// Transport error.
        #[source]
        source: TransportError,
    },
    /// Blocks of the range (or the file's header) failed their checksum on
    /// the datad. Use other shards for this range and report the blocks for
    /// repair; the rest of the shard is still good.
    #[error("{op} on datad {addr}: shard corrupt: {message}")]
    Corrupt {
        /// Which call.
        op: &'static str,
        /// The datad.
        addr: String,
        /// The datad's description (segment, shard, blocks).
        message: String,
        /// The bad blocks, as the datad named them.
        damage: Option<BlockDamage>,
    },
    /// The datad has no such shard.
    #[error("{op} on datad {addr}: shard not found")]
    NotFound {
        /// Which call.
        op: &'static str,
        /// The datad.
        addr: String,
    },
    /// The datad refused or failed the request.
    #[error("{op} on datad {addr}: status {status}: {message}")]
    Failed {
        /// Which call.
        op: &'static str,
        /// The datad.
        addr: String,
        /// HTTP status.
        status: u16,
        /// The error code, if the body was an `RpcErrorBody` (`DiskFull`, ...).
        code: Option<RpcErrorCode>,
        /// What the datad said.
        message: String,
    },
    /// The response body broke off. A datad does this when it meets a corrupt
    /// block after the status was sent, so treat it like `Corrupt` or
    /// `Unreachable`: use other shards.
    #[error("{op} on datad {addr}: body broke off after {got} of {expected} bytes")]
    Interrupted {
        /// Which call.
        op: &'static str,
        /// The datad.
        addr: String,
        /// Bytes asked for.
        expected: u64,
        /// Bytes received before the failure.
        got: u64,
        /// Transport error.
        #[source]
        source: reqwest::Error,
    },
    /// All of this client's slots for the datad stayed busy for the queue
    /// timeout: the node is overloaded or slow. Back off, or use another node.
    #[error("{op} on datad {addr}: {slots} requests already in flight for {waited:?}; the node is overloaded")]
    Busy {
        /// Which call.
        op: &'static str,
        /// The datad.
        addr: String,
        /// The per-node limit.
        slots: usize,
        /// How long the call waited.
        waited: Duration,
    },
    /// The datad sent nothing for the idle-read deadline, or the request
    /// passed its whole-request deadline. Use another node.
    #[error("{op} on datad {addr}: {what} after {after:?}")]
    TimedOut {
        /// Which call.
        op: &'static str,
        /// The datad.
        addr: String,
        /// Which deadline ("no response", "body stalled", ...).
        what: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The body ended cleanly but with the wrong number of bytes.
    #[error("{op} on datad {addr}: short read: {got} of {expected} bytes")]
    ShortRead {
        /// Which call.
        op: &'static str,
        /// The datad.
        addr: String,
        /// Bytes asked for.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
}

/// Client of datads' shard endpoints. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DatadClient {
    http: reqwest::Client,
    transport: SharedTransport,
    /// The caller's zone, sent on shard reads so data nodes can count the
    /// bytes they serve to each zone.
    origin_zone: Option<String>,
    limits: DatadClientLimits,
    slots: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    /// Where shard reads' throughput is recorded, by the peer's zone (the
    /// network cost map; a data node's repair and warm copies).
    measure: Option<(crate::netmap::PathCosts, Arc<dyn crate::wan::ZoneOf>)>,
}

impl Default for DatadClient {
    fn default() -> Self {
        Self::new()
    }
}

fn shard_url(addr: &str, segment: SegmentId, index: ShardIndex) -> String {
    format!("http://{addr}/v1/shards/{segment}/{}", index.0)
}

impl DatadClient {
    /// A client with the default [`DatadClientLimits`].
    pub fn new() -> DatadClient {
        DatadClient::with_limits(DatadClientLimits::default())
    }

    /// A client with TCP_NODELAY, at most `per_peer_max` pooled connections
    /// per datad, and `limits`' deadlines.
    pub fn with_limits(limits: DatadClientLimits) -> DatadClient {
        Self::with_limits_tls(limits, None)
    }

    /// [`with_limits`](Self::with_limits), over mutual TLS with `tls`'s
    /// identity (plain HTTP when `None`).
    pub fn with_limits_tls(
        limits: DatadClientLimits,
        tls: Option<&Arc<crate::internal_tls::InternalTls>>,
    ) -> DatadClient {
        Self::with_transport(limits, Self::http_transport(limits, tls))
    }

    /// The socket transport [`with_limits_tls`](Self::with_limits_tls)
    /// sends through, for callers that decorate it (the emulated WAN).
    pub fn http_transport(
        limits: DatadClientLimits,
        tls: Option<&Arc<crate::internal_tls::InternalTls>>,
    ) -> SharedTransport {
        let http = move || {
            let b = reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(limits.connect_timeout)
                .pool_max_idle_per_host(limits.per_peer_max)
                .pool_idle_timeout(limits.pool_idle_timeout);
            if limits.http2 {
                b.http2_prior_knowledge()
            } else {
                b
            }
        };
        Arc::new(Http::with_tls_to(http, tls, crate::pki::Role::Datad))
    }

    /// A client that sends through `transport` (the simulator's network, or
    /// a decorated one).
    pub fn with_transport(limits: DatadClientLimits, transport: SharedTransport) -> DatadClient {
        DatadClient {
            http: crate::transport::builder_client(),
            transport,
            origin_zone: None,
            limits,
            slots: Arc::default(),
            measure: None,
        }
    }

    /// The same client, recording each shard read's throughput in `paths`
    /// under the zone `zones` places its peer in.
    pub fn measuring(
        mut self,
        paths: crate::netmap::PathCosts,
        zones: Arc<dyn crate::wan::ZoneOf>,
    ) -> DatadClient {
        self.measure = Some((paths, zones));
        self
    }

    /// The same client, naming `zone` as the caller's on shard reads.
    pub fn from_zone(mut self, zone: Option<String>) -> DatadClient {
        self.origin_zone = zone;
        self
    }

    /// The limits this client applies.
    pub fn limits(&self) -> DatadClientLimits {
        self.limits
    }

    /// Takes one of the datad's request slots, waiting at most the queue
    /// timeout.
    async fn slot(
        &self,
        op: &'static str,
        addr: &str,
    ) -> Result<OwnedSemaphorePermit, DatadClientError> {
        let sem = {
            let mut slots = self.slots.lock().expect("datad slots lock");
            slots
                .entry(addr.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_peer_max)))
                .clone()
        };
        match tokio::time::timeout(self.limits.queue_timeout, sem.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a full queue.
            Ok(Err(_)) | Err(_) => Err(DatadClientError::Busy {
                op,
                addr: addr.to_string(),
                slots: self.limits.per_peer_max,
                waited: self.limits.queue_timeout,
            }),
        }
    }

    /// Sends `request`, waiting at most `wait` for the response head.
    async fn send(
        &self,
        op: &'static str,
        addr: &str,
        request: reqwest::RequestBuilder,
        wait: Duration,
    ) -> Result<reqwest::Response, DatadClientError> {
        let request = request
            .headers(crate::format_headers())
            .build()
            .map_err(|source| unreachable(op, addr, source))?;
        match tokio::time::timeout(wait, self.transport.execute(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) if source.is_timeout() => Err(DatadClientError::TimedOut {
                op,
                addr: addr.to_string(),
                what: "request deadline passed",
                after: wait,
            }),
            Ok(Err(source)) => Err(unreachable(op, addr, source)),
            Err(_) => Err(DatadClientError::TimedOut {
                op,
                addr: addr.to_string(),
                what: "no response",
                after: wait,
            }),
        }
    }

    /// Whole-request deadline of a PUT of `len` bytes.
    fn put_deadline(&self, len: u64) -> Duration {
        let rate = self.limits.put_min_bytes_per_sec.max(1);
        self.limits.request_timeout + Duration::from_secs(len.div_ceil(rate))
    }

    /// Stores a shard of `len` bytes from `chunks`, streamed (never buffered
    /// whole). Returns once the datad has made it durable.
    pub async fn put_shard<S>(
        &self,
        addr: &str,
        segment: SegmentId,
        index: ShardIndex,
        len: u64,
        chunks: S,
    ) -> Result<ShardPutReply, DatadClientError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        const OP: &str = "put shard";
        let _slot = self.slot(OP, addr).await?;
        let deadline = self.put_deadline(len);
        let request = self
            .http
            .put(shard_url(addr, segment, index))
            .timeout(deadline)
            .header(SHARD_LEN_HEADER, len)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(chunks));
        let response = self.send(OP, addr, request, deadline).await?;
        let response = check(OP, addr, response).await?;
        response
            .json()
            .await
            .map_err(|source| unreachable(OP, addr, source))
    }

    /// Asks a data node's `/health` and returns how long the answer took: a
    /// round-trip probe for the network cost map.
    pub async fn probe(&self, addr: &str) -> Result<Duration, DatadClientError> {
        const OP: &str = "probe";
        let started = tokio::time::Instant::now();
        let request = self
            .http
            .get(format!("http://{addr}/health"))
            .timeout(self.limits.request_timeout);
        let response = self
            .send(OP, addr, request, self.limits.idle_read_timeout)
            .await?;
        check(OP, addr, response).await?;
        Ok(started.elapsed())
    }

    /// Reads `len` bytes of a shard from `offset` into one buffer (meant for
    /// per-stripe reads of a few MiB). Fails unless exactly `len` arrive.
    pub async fn get_shard(
        &self,
        addr: &str,
        segment: SegmentId,
        index: ShardIndex,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, DatadClientError> {
        const OP: &str = "get shard";
        let _slot = self.slot(OP, addr).await?;
        let started = tokio::time::Instant::now();
        let mut request = self
            .http
            .get(shard_url(addr, segment, index))
            .timeout(self.limits.request_timeout)
            .query(&[("offset", offset), ("len", len)]);
        if let Some(zone) = &self.origin_zone {
            request = request.header(weft_common::locality::ZONE_HEADER, zone);
        }
        let response = self
            .send(OP, addr, request, self.limits.idle_read_timeout)
            .await?;
        let mut response = check(OP, addr, response).await?;
        let mut out = Vec::with_capacity(len.min(GET_PREALLOC_BYTES_MAX) as usize);
        loop {
            let chunk = tokio::time::timeout(self.limits.idle_read_timeout, response.chunk())
                .await
                .map_err(|_| DatadClientError::TimedOut {
                    op: OP,
                    addr: addr.to_string(),
                    what: "body stalled",
                    after: self.limits.idle_read_timeout,
                })?;
            match chunk {
                Ok(Some(chunk)) => {
                    if out.len() as u64 + chunk.len() as u64 > len {
                        return Err(DatadClientError::ShortRead {
                            op: OP,
                            addr: addr.to_string(),
                            expected: len,
                            got: out.len() as u64 + chunk.len() as u64,
                        });
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(source) => {
                    return Err(DatadClientError::Interrupted {
                        op: OP,
                        addr: addr.to_string(),
                        expected: len,
                        got: out.len() as u64,
                        source,
                    })
                }
            }
        }
        if out.len() as u64 != len {
            return Err(DatadClientError::ShortRead {
                op: OP,
                addr: addr.to_string(),
                expected: len,
                got: out.len() as u64,
            });
        }
        if let Some((paths, zones)) = &self.measure {
            if let Some(zone) = zones.zone_of(addr) {
                paths.record_transfer(&zone, len, started.elapsed());
            }
        }
        Ok(out.into())
    }

    /// Deletes a shard; succeeds also when it was absent.
    pub async fn delete_shard(
        &self,
        addr: &str,
        segment: SegmentId,
        index: ShardIndex,
    ) -> Result<(), DatadClientError> {
        const OP: &str = "delete shard";
        let _slot = self.slot(OP, addr).await?;
        let request = self
            .http
            .delete(shard_url(addr, segment, index))
            .timeout(self.limits.request_timeout);
        let response = self
            .send(OP, addr, request, self.limits.request_timeout)
            .await?;
        let response = check(OP, addr, response).await?;
        // Read the (empty) body so the connection returns to the pool.
        let _ = response.bytes().await;
        Ok(())
    }

    /// Releases shards no version refers to (`POST /v1/shards/release`): the
    /// datad deletes them now, or once their readers are done. At most
    /// [`weft_common::rpc::SHARD_RELEASE_BATCH_MAX`] per call.
    pub async fn release_shards(
        &self,
        addr: &str,
        shards: Vec<ShardRef>,
        hold: bool,
    ) -> Result<ShardReleaseReply, DatadClientError> {
        self.release_batch(
            addr,
            &ShardReleaseBatch {
                shards,
                hold,
                hold_full: false,
            },
        )
        .await
    }

    /// Sends one release batch as it is (see [`ShardReleaseBatch`]).
    pub async fn release_batch(
        &self,
        addr: &str,
        batch: &ShardReleaseBatch,
    ) -> Result<ShardReleaseReply, DatadClientError> {
        const OP: &str = "release shards";
        let _slot = self.slot(OP, addr).await?;
        let request = self
            .http
            .post(format!("http://{addr}/v1/shards/release"))
            .timeout(self.limits.request_timeout)
            .json(batch);
        let response = self
            .send(OP, addr, request, self.limits.request_timeout)
            .await?;
        let response = check(OP, addr, response).await?;
        response
            .json()
            .await
            .map_err(|source| unreachable(OP, addr, source))
    }
}

fn unreachable(
    op: &'static str,
    addr: &str,
    source: impl Into<TransportError>,
) -> DatadClientError {
    DatadClientError::Unreachable {
        op,
        addr: addr.to_string(),
        source: source.into(),
    }
}

/// Passes 2xx responses through; turns others into the matching error.
async fn check(
    op: &'static str,
    addr: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, DatadClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let body: Option<RpcErrorBody> = serde_json::from_str(&text).ok();
    let addr = addr.to_string();
    Err(match body {
        Some(RpcErrorBody {
            code: RpcErrorCode::NotFound,
            ..
        }) => DatadClientError::NotFound { op, addr },
        Some(RpcErrorBody {
            code: RpcErrorCode::Corrupt,
            message,
            damage,
            ..
        }) => DatadClientError::Corrupt {
            op,
            addr,
            message,
            damage,
        },
        Some(RpcErrorBody { code, message, .. }) => DatadClientError::Failed {
            op,
            addr,
            status: status.as_u16(),
            code: Some(code),
            message,
        },
        None => DatadClientError::Failed {
            op,
            addr,
            status: status.as_u16(),
            code: None,
            message: text.chars().take(200).collect(),
        },
    })
}
