//! The client every other process uses to reach metad.
//!
//! It knows every metad address, remembers the leader, follows `NotLeader`
//! redirects and retries with backoff until a deadline, so a leader change
//! costs callers a short delay, not an error.
//!
//! # Retry contract
//!
//! Every failed attempt is one of two kinds:
//!
//! - **Not applied**, safe to retry anything: the connection was refused
//!   (nothing was sent), or metad answered `NotLeader` / `Unavailable`, which
//!   it only does before proposing the command to raft.
//! - **Outcome unknown**: the request may have been proposed and may commit.
//!   A transport error after the request was sent, a timeout, an unreadable
//!   answer, or metad's `OutcomeUnknown` (raft failed or leadership was lost
//!   after the proposal: openraft reports a lost leadership for entries it
//!   had already appended, and a new leader may still commit them).
//!
//! An unknown outcome is retried only for idempotent calls: queries,
//! heartbeats and [`MetadClient::command`], which wraps every command in a
//! [`Command::Request`] whose id all attempts share, so metad applies it once
//! and answers a repeat without releasing anything. Other calls
//! ([`MetadClient::call`], used for membership changes) stop at the first
//! unknown outcome. If the deadline passes after any attempt of a command
//! whose outcome is unknown, the error is
//! [`MetadClientError::OutcomeUnknown`], never `Unavailable` (a query
//! changes nothing, so giving up on one is `Unavailable`): the caller must
//! then keep whatever the command would have
//! referenced (shards stay for garbage collection to judge) and must not
//! release anything on the strength of it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tokio::time::Instant;
use weft_common::rpc::{
    Command, CommandResult, Heartbeat, Query, QueryResult, RpcErrorBody, RpcErrorCode,
    REQUEST_RETENTION_MS,
};
use weft_common::RequestId;

use thiserror::Error;

use crate::transport::{Http, SharedTransport};

/// How long one attempt waits for metad's answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a connection to a voter may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The shortest an attempt is given near the deadline: longer than the
/// connect timeout, so a voter that never answers the connection is told
/// apart (a connect error: nothing was sent, try the next) from one that
/// took the request and went silent (the outcome is unknown).
const ATTEMPT_TIMEOUT_FLOOR: Duration = Duration::from_secs(3);

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
    /// The command may or may not have been applied, and the deadline
    /// passed before a retry could tell. Nothing may be released on the
    /// strength of it; the caller reports a retryable failure.
    #[error("the metadata service did not confirm the change after {attempts} attempts ({last}); it may or may not have been applied: retry the request")]
    OutcomeUnknown {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// metad answered with something this client does not understand.
    #[error("unexpected answer from metad: {0}")]
    Protocol(String),
}

/// A committed command's result.
#[derive(Clone, Debug)]
pub struct Committed {
    /// What apply answered (to this attempt, or remembered from the first).
    pub result: CommandResult,
    /// Some earlier attempt's outcome was unknown.
    pub after_unknown: bool,
}

/// A handle to the metad group; cheap to clone.
#[derive(Clone)]
pub struct MetadClient {
    http: reqwest::Client,
    transport: SharedTransport,
    /// Configured seed addresses plus members learned from the group.
    addrs: Arc<std::sync::RwLock<Vec<String>>>,
    seeds: Arc<Vec<String>>,
    leader: Arc<Mutex<Option<String>>>,
    deadline: Duration,
    /// How long one attempt waits for its answer.
    attempt_timeout: Duration,
}

enum Attempt<T> {
    Done(T),
    /// Not applied: safe to retry anything.
    Retry {
        reason: String,
        redirect: Option<String>,
    },
    /// Possibly applied: retried only when the call is idempotent.
    Unknown {
        reason: String,
        redirect: Option<String>,
    },
    Fail(MetadClientError),
}

/// Whether a call may be sent again after an attempt whose outcome is
/// unknown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idempotent {
    Yes,
    No,
    /// A read: retried like `Yes`, and since it changes nothing, an
    /// unknown attempt never makes giving up "may have been applied".
    Read,
}

impl MetadClient {
    /// A client for the metad voters at `addrs` (`host:port`).
    /// Plain HTTP: for a cluster run with `--insecure-internal`.
    pub fn new(addrs: Vec<String>) -> Self {
        Self::with_tls(addrs, None)
    }

    /// A client for the voters at `addrs` over mutual TLS with `tls`'s
    /// identity (plain HTTP when `None`).
    pub fn with_tls(
        addrs: Vec<String>,
        tls: Option<&Arc<crate::internal_tls::InternalTls>>,
    ) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(CONNECT_TIMEOUT)
        };
        Self::with_transport(
            addrs,
            Arc::new(Http::with_tls_to(builder, tls, crate::pki::Role::Metad)),
        )
    }

    /// A client that sends through `transport` (the simulator's network, or
    /// a decorated one).
    pub fn with_transport(addrs: Vec<String>, transport: SharedTransport) -> Self {
        MetadClient {
            http: crate::transport::builder_client(),
            transport,
            addrs: Arc::new(std::sync::RwLock::new(addrs.clone())),
            seeds: Arc::new(addrs),
            leader: Arc::new(Mutex::new(None)),
            deadline: Duration::from_secs(20),
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }

    /// Changes how long a call keeps retrying before giving up, capped at a
    /// quarter of how long metad remembers a request, so every retry of a
    /// command is still recognised.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline.min(Duration::from_millis(REQUEST_RETENTION_MS / 4));
        self
    }

    /// Changes how long one attempt waits for its answer (15 s by
    /// default): for callers that would rather try another voter soon
    /// than wait out a slow one.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Proposes a command and returns its result once committed and applied.
    /// Every attempt carries the same request id, so a command whose first
    /// answer was lost is applied once (see the module's retry contract).
    pub async fn command(&self, cmd: &Command) -> Result<CommandResult, MetadClientError> {
        self.command_outcome(cmd).await.map(|c| c.result)
    }

    /// As [`command`](Self::command), also telling whether an earlier
    /// attempt's outcome was unknown. A caller that would delete data on a
    /// refusal must not when it was: a refusal answered to a retry whose
    /// record had expired could hide a first attempt that did apply.
    pub async fn command_outcome(&self, cmd: &Command) -> Result<Committed, MetadClientError> {
        let request = match cmd {
            Command::Request { .. } => cmd.clone(),
            _ => Command::Request {
                format: weft_common::rpc::COMMAND_FORMAT,
                id: RequestId::from_random(weft_common::effects::random()),
                at_ms: weft_common::effects::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                command: Box::new(cmd.clone()),
                // Named from the request this command serves, if any; metad
                // adds who proposed it from the caller's certificate.
                actor: crate::audit_report::principal().map(|p| weft_common::audit::Actor {
                    principal: Some(p),
                    via: String::new(),
                }),
            },
        };
        let mut after_unknown = false;
        let result = self
            .call_tracked(
                "/v1/command",
                &request,
                false,
                Idempotent::Yes,
                &mut after_unknown,
            )
            .await?;
        Ok(Committed {
            result,
            after_unknown,
        })
    }

    /// Runs a linearizable query on the leader. A query changes nothing, so
    /// giving up on one is "unavailable", never "may have been applied".
    pub async fn query(&self, q: &Query) -> Result<QueryResult, MetadClientError> {
        self.call_raw("/v1/query", q, false, Idempotent::Read).await
    }

    /// One page of [`Query::PlacementTable`]: the table and the key to
    /// resume after. Decoded straight into its fields: through
    /// [`QueryResult`], whose variants are told apart by a tag inside the
    /// object, serde would first copy the whole page (megabytes for a large
    /// prefix) into an untyped tree, which measured as a large share of a
    /// `weft locate` (docs/performance.md).
    pub async fn placement_table(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<String>,
        max: u32,
    ) -> Result<(weft_common::placement_table::PlacementTable, Option<String>), MetadClientError>
    {
        /// `QueryResult::PlacementTable` as it is on the wire.
        #[derive(serde::Deserialize)]
        struct Answer {
            a: String,
            table: weft_common::placement_table::PlacementTable,
            next: Option<String>,
        }
        let q = Query::PlacementTable {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            after,
            max,
        };
        let answer: Answer = self
            .call_raw("/v1/query", &q, false, Idempotent::Read)
            .await?;
        if answer.a != "placement_table" {
            return Err(MetadClientError::Protocol(format!(
                "asked for a placement table, got a {:?} answer",
                answer.a
            )));
        }
        Ok((answer.table, answer.next))
    }

    /// Reports liveness (the leader keeps it).
    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<(), MetadClientError> {
        let _: serde_json::Value = self
            .call_raw("/v1/heartbeat", hb, true, Idempotent::Yes)
            .await?;
        Ok(())
    }

    /// Reports network measurements (the leader keeps the last of each
    /// reporter in memory).
    pub async fn report_netmap(
        &self,
        report: &weft_common::netmap::NetReport,
    ) -> Result<(), MetadClientError> {
        let _: serde_json::Value = self
            .call_raw("/v1/netmap", report, true, Idempotent::Yes)
            .await?;
        Ok(())
    }

    /// POSTs `body` to `path` on the leader (following redirects) and decodes
    /// the answer: for endpoints without a typed helper (membership changes).
    /// Not retried after an unknown outcome: these calls are not idempotent.
    pub async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, MetadClientError> {
        self.call_raw(path, body, false, Idempotent::No).await
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
            let r = match self
                .attempt(addr, "/v1/query", q, false, ATTEMPT_TIMEOUT)
                .await
            {
                Attempt::Done(v) => Ok(v),
                Attempt::Fail(e) => Err(e),
                Attempt::Retry { reason, .. } | Attempt::Unknown { reason, .. } => {
                    Err(MetadClientError::Unavailable {
                        attempts: 1,
                        last: reason,
                    })
                }
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
        idempotent: Idempotent,
    ) -> Result<Resp, MetadClientError> {
        let mut maybe_applied = false;
        self.call_tracked(path, body, empty_ok, idempotent, &mut maybe_applied)
            .await
    }

    /// The retry loop. `maybe_applied` is set once any attempt's outcome was
    /// unknown: from then on, giving up must say so.
    async fn call_tracked<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
        empty_ok: bool,
        idempotent: Idempotent,
        maybe_applied: &mut bool,
    ) -> Result<Resp, MetadClientError> {
        let start = Instant::now();
        let mut attempts = 0u32;
        let mut backoff = Duration::from_millis(10);
        let mut next: Option<String> = self.leader.lock().expect("leader lock").clone();
        let mut rr = 0usize;
        let mut last_reason = String::new();
        loop {
            // No new attempt once the deadline has passed (the backoff
            // below sleeps up to it): the caller hears what the attempts so
            // far amount to.
            if attempts > 0 && start.elapsed() >= self.deadline {
                return Err(if *maybe_applied {
                    MetadClientError::OutcomeUnknown {
                        attempts,
                        last: last_reason,
                    }
                } else {
                    MetadClientError::Unavailable {
                        attempts,
                        last: last_reason,
                    }
                });
            }
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
            // No attempt outlives the caller's deadline by more than a
            // moment: a command's caller decides what an unknown outcome
            // means, and must hear of it when it said it would.
            let remaining = self.deadline.saturating_sub(start.elapsed());
            let timeout = self
                .attempt_timeout
                .min(remaining.max(ATTEMPT_TIMEOUT_FLOOR));
            let (reason, redirect) = match self.attempt(&addr, path, body, empty_ok, timeout).await
            {
                Attempt::Done(v) => {
                    *self.leader.lock().expect("leader lock") = Some(addr);
                    return Ok(v);
                }
                Attempt::Fail(e) if *maybe_applied => {
                    return Err(MetadClientError::OutcomeUnknown {
                        attempts,
                        last: format!("after an unknown outcome: {e}"),
                    })
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Unknown { reason, .. } if idempotent == Idempotent::No => {
                    return Err(MetadClientError::OutcomeUnknown {
                        attempts,
                        last: reason,
                    });
                }
                Attempt::Unknown { reason, redirect } => {
                    if idempotent != Idempotent::Read
                        && !weft_common::failpoints::active(
                            weft_common::failpoints::Bug::UnknownAsNotApplied,
                        )
                    {
                        *maybe_applied = true;
                    }
                    (reason, redirect)
                }
                Attempt::Retry { reason, redirect } => (reason, redirect),
            };
            last_reason.clone_from(&reason);
            {
                {
                    if start.elapsed() >= self.deadline {
                        return Err(if *maybe_applied {
                            MetadClientError::OutcomeUnknown {
                                attempts,
                                last: reason,
                            }
                        } else {
                            MetadClientError::Unavailable {
                                attempts,
                                last: reason,
                            }
                        });
                    }
                    if let Some(r) = redirect {
                        *self.leader.lock().expect("leader lock") = Some(r.clone());
                        next = Some(r);
                        continue;
                    }
                    *self.leader.lock().expect("leader lock") = None;
                    tokio::time::sleep(backoff.min(self.deadline.saturating_sub(start.elapsed())))
                        .await;
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
        timeout: Duration,
    ) -> Attempt<Resp> {
        let url = format!("http://{addr}{path}");
        let mut headers = crate::format_headers();
        if let Some(v) = crate::audit_report::principal()
            .and_then(|p| reqwest::header::HeaderValue::from_str(&p).ok())
        {
            headers.insert(crate::audit_report::PRINCIPAL_HEADER, v);
        }
        let request = match self
            .http
            .post(&url)
            .headers(headers)
            .timeout(timeout)
            .json(body)
            .build()
        {
            Ok(r) => r,
            Err(e) => return Attempt::Fail(MetadClientError::Protocol(format!("{url}: {e}"))),
        };
        let resp = match self.transport.execute(request).await {
            Ok(r) => r,
            // Refused before a byte was sent: certainly not applied.
            Err(e) if e.is_connect() => {
                return Attempt::Retry {
                    reason: format!("{addr}: {}", crate::transport::describe(&e)),
                    redirect: None,
                }
            }
            Err(e) => {
                return Attempt::Unknown {
                    reason: format!("{addr}: {}", crate::transport::describe(&e)),
                    redirect: None,
                }
            }
        };
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Unknown {
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
                RpcErrorCode::OutcomeUnknown => Attempt::Unknown {
                    reason: format!("{addr}: {}", err.message),
                    redirect: err.leader_addr.filter(|l| l != addr),
                },
                code => Attempt::Fail(MetadClientError::Rejected {
                    code,
                    message: err.message,
                }),
            },
            // metad could not read the request (axum's JSON extractor
            // answers these in plain text, before any handler runs, so
            // nothing was done): most likely a request this metad's version
            // does not know. Asking again, or another voter, gets the same.
            Err(_) if matches!(status.as_u16(), 400 | 415 | 422) => {
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.chars().take(300).collect();
                Attempt::Fail(MetadClientError::Rejected {
                    code: RpcErrorCode::BadRequest,
                    message: format!(
                        "{addr}{path}: HTTP {status}: {text} (a metad older than this process \
                         refuses requests it does not know: upgrade metad first)"
                    ),
                })
            }
            // Not metad's own answer (a proxy, a crashed handler): unknown.
            Err(_) => Attempt::Unknown {
                reason: format!("{addr}: HTTP {status}"),
                redirect: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    //! The retry contract against a scripted metad on loopback: each POST
    //! gets the next scripted answer, and every request body is recorded.
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

    async fn scripted(answers: Vec<(u16, String)>) -> (String, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let body = loop {
                    let mut chunk = [0u8; 4096];
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break Some(buf[end + 4..end + 4 + len].to_vec());
                        }
                    }
                };
                let Some(body) = body else { continue };
                log.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                let (status, text) = answers.next().unwrap_or((500, "{}".into()));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        (addr, seen)
    }

    fn error(code: &str) -> (u16, String) {
        (503, format!(r#"{{"code":"{code}","message":"scripted"}}"#))
    }

    fn put_tags() -> Command {
        Command::SetBucketTags {
            bucket: "b".into(),
            tags: Default::default(),
        }
    }

    #[tokio::test]
    async fn command_is_retried_after_an_unknown_outcome_with_the_same_request_id() {
        let (addr, seen) = scripted(vec![
            error("OutcomeUnknown"),
            (200, r#"{"result":"done"}"#.into()),
        ])
        .await;
        let c = MetadClient::new(vec![addr]);
        let out = c.command_outcome(&put_tags()).await.unwrap();
        assert_eq!(out.result, CommandResult::Done);
        assert!(
            out.after_unknown,
            "the caller must learn an attempt's outcome was unknown"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0]["op"], "request");
        assert_eq!(
            seen[0]["id"], seen[1]["id"],
            "a retry must carry the first attempt's id"
        );
    }

    /// An older metad's JSON extractor refuses a query it does not know
    /// with a plain-text 422: refused at once, not retried for 20 s.
    #[tokio::test]
    async fn a_request_metad_cannot_read_is_refused_at_once() {
        let (addr, seen) = scripted(vec![(
            422,
            "Failed to deserialize the JSON body into the target type: unknown variant `placement_table`".into(),
        )])
        .await;
        let c = MetadClient::new(vec![addr]);
        let r = c.placement_table("b", "", None, 10).await;
        match r {
            Err(MetadClientError::Rejected { code, message }) => {
                assert_eq!(code, RpcErrorCode::BadRequest);
                assert!(message.contains("upgrade metad first"), "{message}");
                assert!(message.contains("unknown variant"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(seen.lock().unwrap().len(), 1, "asked again");
    }

    /// The placement page helper decodes the golden encoding of the answer.
    #[tokio::test]
    async fn a_placement_page_is_decoded_into_its_fields() {
        let answer = serde_json::to_string(&QueryResult::PlacementTable {
            table: weft_common::placement_table::PlacementTable {
                placements: vec![weft_common::placement_table::Placement {
                    layout: weft_common::profile::Layout::Replicated { copies: 2 },
                    shards: vec![Some(weft_common::NodeId(1)), None],
                    cache: vec![],
                }],
                objects: vec![weft_common::placement_table::TabledObject {
                    key: "k".into(),
                    size: 3,
                    segments: vec![weft_common::placement_table::TabledSegment(0, 3, 3)],
                }],
            },
            next: Some("k".into()),
        })
        .unwrap();
        let (addr, seen) = scripted(vec![(200, answer)]).await;
        let c = MetadClient::new(vec![addr]);
        let (table, next) = c
            .placement_table("b", "p", Some("a".into()), 10)
            .await
            .unwrap();
        assert_eq!(next.as_deref(), Some("k"));
        assert_eq!(table.objects[0].segments[0].shard_len(), 3);
        assert_eq!(table.placements[0].shards[1], None);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0]["q"], "placement_table");
        assert_eq!(seen[0]["after"], "a");
    }

    #[tokio::test]
    async fn a_non_idempotent_call_stops_at_an_unknown_outcome() {
        let (addr, seen) = scripted(vec![error("OutcomeUnknown"), (200, "{}".into())]).await;
        let c = MetadClient::new(vec![addr]);
        let r: Result<serde_json::Value, _> = c
            .call("/v1/members/add", &serde_json::json!({"id": 9}))
            .await;
        assert!(
            matches!(r, Err(MetadClientError::OutcomeUnknown { .. })),
            "{r:?}"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "sent again after an unknown outcome"
        );
    }

    #[tokio::test]
    async fn giving_up_after_an_unknown_outcome_says_unknown_not_unavailable() {
        let mut answers = vec![error("OutcomeUnknown")];
        answers.extend((0..200).map(|_| error("Unavailable")));
        let (addr, _) = scripted(answers).await;
        let c = MetadClient::new(vec![addr]).with_deadline(Duration::from_millis(300));
        let r = c.command(&put_tags()).await;
        assert!(
            matches!(r, Err(MetadClientError::OutcomeUnknown { .. })),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_after_an_unknown_outcome_is_reported_as_unknown() {
        let (addr, _) = scripted(vec![
            error("OutcomeUnknown"),
            (400, r#"{"code":"BadRequest","message":"scripted"}"#.into()),
        ])
        .await;
        let c = MetadClient::new(vec![addr]);
        let r = c.command(&put_tags()).await;
        assert!(
            matches!(r, Err(MetadClientError::OutcomeUnknown { .. })),
            "{r:?}"
        );
    }

    /// A metad that takes the request and never answers: the caller hears
    /// "outcome unknown" at its own deadline, not after the 15 s an attempt
    /// may otherwise take.
    #[tokio::test]
    async fn a_silent_metad_fails_the_command_at_the_callers_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut open = vec![];
            loop {
                let (s, _) = listener.accept().await.unwrap();
                open.push(s);
            }
        });
        let c = MetadClient::new(vec![addr]).with_deadline(Duration::from_millis(500));
        let t0 = std::time::Instant::now();
        let r = c.command(&put_tags()).await;
        let took = t0.elapsed();
        assert!(
            matches!(r, Err(MetadClientError::OutcomeUnknown { .. })),
            "{r:?}"
        );
        // At the deadline raised to the attempt floor (3 s): far below one
        // attempt's own 15 s bound, however busy the machine.
        assert!(took < ATTEMPT_TIMEOUT / 2, "gave up after {took:?}");
        held.abort();
    }

    #[tokio::test]
    async fn not_applied_failures_alone_give_up_as_unavailable() {
        let answers = (0..200).map(|_| error("Unavailable")).collect();
        let (addr, _) = scripted(answers).await;
        let c = MetadClient::new(vec![addr]).with_deadline(Duration::from_millis(300));
        let r = c.command(&put_tags()).await;
        assert!(
            matches!(r, Err(MetadClientError::Unavailable { .. })),
            "{r:?}"
        );
    }
}
