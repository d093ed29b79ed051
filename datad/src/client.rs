//! [`DatadClient`]: how the gateway (and tests) talk to datads.
//!
//! One `reqwest::Client` (connection pool, TCP_NODELAY) shared by clones.
//! Errors name the datad and the operation; the caller adds which object and
//! segment it was working on.

use bytes::Bytes;
use futures::Stream;
use std::time::Duration;
use weft_common::damage::BlockDamage;
use weft_common::rpc::{RpcErrorBody, RpcErrorCode, ShardPutReply, SHARD_LEN_HEADER};
use weft_common::{SegmentId, ShardIndex};

/// How long to wait for a TCP connection to a datad.
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;
/// Largest preallocation for a GET body; larger bodies grow as they arrive.
const GET_PREALLOC_BYTES_MAX: u64 = 8 * 1024 * 1024;

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
        source: reqwest::Error,
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
    /// A client with TCP_NODELAY and a connect timeout of
    /// [`CONNECT_TIMEOUT_MS`].
    pub fn new() -> DatadClient {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .build()
            .expect("reqwest client with static settings builds");
        DatadClient { http }
    }

    /// Uses a caller-built `reqwest::Client` (e.g. with other timeouts).
    pub fn with_http(http: reqwest::Client) -> DatadClient {
        DatadClient { http }
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
        let response = self
            .http
            .put(shard_url(addr, segment, index))
            .header(SHARD_LEN_HEADER, len)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .map_err(|source| unreachable(OP, addr, source))?;
        let response = check(OP, addr, response).await?;
        response
            .json()
            .await
            .map_err(|source| unreachable(OP, addr, source))
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
        let response = self
            .http
            .get(shard_url(addr, segment, index))
            .query(&[("offset", offset), ("len", len)])
            .send()
            .await
            .map_err(|source| unreachable(OP, addr, source))?;
        let mut response = check(OP, addr, response).await?;
        let mut out = Vec::with_capacity(len.min(GET_PREALLOC_BYTES_MAX) as usize);
        loop {
            match response.chunk().await {
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
        let response = self
            .http
            .delete(shard_url(addr, segment, index))
            .send()
            .await
            .map_err(|source| unreachable(OP, addr, source))?;
        check(OP, addr, response).await.map(drop)
    }
}

fn unreachable(op: &'static str, addr: &str, source: reqwest::Error) -> DatadClientError {
    DatadClientError::Unreachable {
        op,
        addr: addr.to_string(),
        source,
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
