//! The client every other process uses to reach metad.
//!
//! It knows every metad address, remembers the leader, follows `NotLeader`
//! redirects and retries connection failures and `Unavailable` answers with
//! backoff until a deadline, so a leader change costs callers a short delay,
//! not an error. Commands are retried only when they cannot have been applied
//! (the request never reached a metad, or was refused as not-leader /
//! unavailable before proposal) or are idempotent by construction.

use crate::rpc::{
    Command, CommandResult, Heartbeat, Query, QueryResult, RpcErrorBody, RpcErrorCode,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a metad call failed after retries.
#[derive(Debug, Error)]
pub enum MetadClientError {
    /// No metad answered before the deadline.
    #[error("metadata service unavailable after {attempts} attempts ({last}); check that metad is running and reachable")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// metad answered with an error that retrying will not fix.
    #[error("metad refused the request: {code:?}: {message}")]
    Rejected {
        /// Error code.
        code: RpcErrorCode,
        /// Message from metad.
        message: String,
    },
    /// metad answered with something this client does not understand.
    #[error("unexpected answer from metad: {0}")]
    Protocol(String),
}

/// A handle to the metad group; cheap to clone.
#[derive(Clone)]
pub struct MetadClient {
    http: reqwest::Client,
    /// Configured seed addresses plus members learned from the group.
    addrs: Arc<std::sync::RwLock<Vec<String>>>,
    seeds: Arc<Vec<String>>,
    leader: Arc<Mutex<Option<String>>>,
    deadline: Duration,
}

enum Attempt<T> {
    Done(T),
    Retry {
        reason: String,
        redirect: Option<String>,
    },
    Fail(MetadClientError),
}

impl MetadClient {
    /// A client for the metad voters at `addrs` (`host:port`).
    pub fn new(addrs: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15))
            .build()
            .expect("reqwest client with static settings builds");
        MetadClient {
            http,
            addrs: Arc::new(std::sync::RwLock::new(addrs.clone())),
            seeds: Arc::new(addrs),
            leader: Arc::new(Mutex::new(None)),
            deadline: Duration::from_secs(20),
        }
    }

    /// Changes how long a call keeps retrying before giving up.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Proposes a command and returns its result once committed and applied.
    pub async fn command(&self, cmd: &Command) -> Result<CommandResult, MetadClientError> {
        self.call("/v1/command", cmd).await
    }

    /// Runs a linearizable query on the leader.
    pub async fn query(&self, q: &Query) -> Result<QueryResult, MetadClientError> {
        self.call("/v1/query", q).await
    }

    /// Reports liveness (the leader keeps it).
    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<(), MetadClientError> {
        let _: serde_json::Value = self.call_raw("/v1/heartbeat", hb, true).await?;
        Ok(())
    }

    /// POSTs `body` to `path` on the leader (following redirects) and decodes
    /// the answer: for endpoints without a typed helper (membership changes).
    pub async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, MetadClientError> {
        self.call_raw(path, body, false).await
    }

    /// Asks every configured metad for a locally answered query (`Status`,
    /// `Digest`) once, without redirects: one result per address.
    pub async fn query_each(
        &self,
        q: &Query,
    ) -> Vec<(String, Result<QueryResult, MetadClientError>)> {
        let addrs = self.addrs();
        let mut out = Vec::with_capacity(addrs.len());
        for addr in addrs.iter() {
            let r = match self.attempt(addr, "/v1/query", q, false).await {
                Attempt::Done(v) => Ok(v),
                Attempt::Fail(e) => Err(e),
                Attempt::Retry { reason, .. } => Err(MetadClientError::Unavailable {
                    attempts: 1,
                    last: reason,
                }),
            };
            out.push((addr.clone(), r));
        }
        out
    }

    /// The configured metad addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.addrs.read().expect("addrs lock").clone()
    }

    /// Learns the group's current members from any voter, so requests reach
    /// voters added after this client was configured. The configured seeds
    /// stay in the list as a fallback.
    pub async fn learn_members(&self) -> Result<(), MetadClientError> {
        let status = match self.query(&Query::Status).await? {
            QueryResult::Status { status } => status,
            other => {
                return Err(MetadClientError::Protocol(format!(
                    "expected status, got {other:?}"
                )))
            }
        };
        let mut addrs: Vec<String> = status.members.into_iter().map(|m| m.addr).collect();
        for s in self.seeds.iter() {
            if !addrs.contains(s) {
                addrs.push(s.clone());
            }
        }
        *self.addrs.write().expect("addrs lock") = addrs;
        Ok(())
    }

    async fn call_raw<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
        empty_ok: bool,
    ) -> Result<Resp, MetadClientError> {
        let start = Instant::now();
        let mut attempts = 0u32;
        let mut backoff = Duration::from_millis(10);
        let mut next: Option<String> = self.leader.lock().expect("leader lock").clone();
        let mut rr = 0usize;
        loop {
            let addr = match next.take() {
                Some(a) => a,
                None => {
                    let addrs = self.addrs();
                    if addrs.is_empty() {
                        return Err(MetadClientError::Protocol(
                            "no metad addresses configured".into(),
                        ));
                    }
                    rr += 1;
                    addrs[rr % addrs.len()].clone()
                }
            };
            attempts += 1;
            match self.attempt(&addr, path, body, empty_ok).await {
                Attempt::Done(v) => {
                    *self.leader.lock().expect("leader lock") = Some(addr);
                    return Ok(v);
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { reason, redirect } => {
                    if start.elapsed() >= self.deadline {
                        return Err(MetadClientError::Unavailable {
                            attempts,
                            last: reason,
                        });
                    }
                    if let Some(r) = redirect {
                        *self.leader.lock().expect("leader lock") = Some(r.clone());
                        next = Some(r);
                        continue;
                    }
                    *self.leader.lock().expect("leader lock") = None;
                    tokio::time::sleep(backoff).await;
                    // Short cap: an election takes a few hundred ms and
                    // callers are waiting; loopback retries are cheap.
                    backoff = (backoff * 2).min(Duration::from_millis(150));
                }
            }
        }
    }

    async fn attempt<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        empty_ok: bool,
    ) -> Attempt<Resp> {
        let url = format!("http://{addr}{path}");
        let resp = match self.http.post(&url).json(body).send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("{addr}: {e}"),
                    redirect: None,
                }
            }
        };
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("{addr}: read response: {e}"),
                    redirect: None,
                }
            }
        };
        if status.is_success() {
            if empty_ok && bytes.is_empty() {
                return match serde_json::from_str("null") {
                    Ok(v) => Attempt::Done(v),
                    Err(e) => Attempt::Fail(MetadClientError::Protocol(e.to_string())),
                };
            }
            return match serde_json::from_slice(&bytes) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fail(MetadClientError::Protocol(format!("{addr}{path}: {e}"))),
            };
        }
        match serde_json::from_slice::<RpcErrorBody>(&bytes) {
            Ok(err) => match err.code {
                RpcErrorCode::NotLeader => Attempt::Retry {
                    reason: format!("{addr}: not leader"),
                    redirect: err.leader_addr.filter(|l| l != addr),
                },
                RpcErrorCode::Unavailable => Attempt::Retry {
                    reason: format!("{addr}: {}", err.message),
                    redirect: None,
                },
                code => Attempt::Fail(MetadClientError::Rejected {
                    code,
                    message: err.message,
                }),
            },
            Err(_) => Attempt::Retry {
                reason: format!("{addr}: HTTP {status}"),
                redirect: None,
            },
        }
    }
}
