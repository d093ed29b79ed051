//! The S3 listener: accepts connections under admission control, gives each
//! request an id, and drains gracefully on shutdown.
//!
//! Shutdown (the cancel token fires, e.g. on SIGTERM): the listening socket
//! is closed first, so new connections are refused by the kernel and a load
//! balancer moves on; every open connection is told to finish the request
//! it is serving and then close (idle keep-alive connections close at once);
//! after the grace period whatever is still running is cut, and the count
//! is logged. The process then exits cleanly either way.

use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::service::S3Service;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admission::{slow_down, Admission, AdmittedBody, Reason};
use crate::metrics::{GatewayMetrics, RequestLabels};

use crate::limits::REFUSED_CONNECTION_TIMEOUT;
use crate::limits::TLS_HANDSHAKE_TIMEOUT;

/// A request id: 16 hex characters, unique enough to find one request in logs.
fn request_id() -> String {
    format!("{:016X}", weft_common::effects::random::<u64>())
}

/// Bytes a request body declares: Content-Length, else the decoded length
/// of an aws-chunked body; a body of unknown length (chunked transfer
/// without either) is charged the most one request can be.
fn declared_body_bytes(headers: &http::HeaderMap) -> u64 {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(n) = number("content-length") {
        return n;
    }
    if let Some(n) = number("x-amz-decoded-content-length") {
        return n;
    }
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return u64::MAX;
    }
    0
}

/// Everything a connection task needs; cloned per connection.
#[derive(Clone)]
struct Shared {
    service: S3Service,
    metrics: GatewayMetrics,
    admission: Admission,
    audit: weft_client::audit_report::Reporter,
}

/// What the S3 listener reports to: request metrics, and refusals for the
/// audit chain.
pub struct Observers {
    /// Request counts and latencies.
    pub metrics: GatewayMetrics,
    /// Refused requests, for the audit chain.
    pub audit: weft_client::audit_report::Reporter,
}

/// Serves S3 on `listener` until `cancel` fires, then drains for up to
/// `grace`. Each request gets an id, returned as `x-amz-request-id` and
/// attached to every log line of the request through a tracing span.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: S3Service,
    observers: Observers,
    admission: Admission,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
    grace: Duration,
) {
    let shared = Shared {
        service,
        metrics: observers.metrics,
        admission: admission.clone(),
        audit: observers.audit,
    };
    let drain = CancellationToken::new();
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    if accept_backoff(&e, &cancel).await {
                        break;
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let drain = drain.clone();
        match admission.connection() {
            Some(permit) => {
                let shared = shared.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    match tls {
                        None => serve_connection(stream, peer, shared, drain).await,
                        Some(acceptor) => {
                            if let Some(s) = handshake(&acceptor, stream, peer, &drain).await {
                                serve_connection(s, peer, shared, drain).await;
                            }
                        }
                    }
                });
            }
            None => {
                // Answered with 503 SlowDown rather than left unaccepted:
                // an unaccepted client waits in the kernel's backlog with no
                // signal and times out, while SlowDown makes SDKs back off.
                let Some(permit) = admission.rejecting_connection() else {
                    tracing::debug!(%peer, "at the connection cap and too many refusals in progress; closing");
                    continue;
                };
                conns.spawn(async move {
                    let _permit = permit;
                    let answer = async {
                        match tls {
                            None => refuse_connection(stream).await,
                            Some(acceptor) => {
                                if let Some(s) = handshake(&acceptor, stream, peer, &drain).await {
                                    refuse_connection(s).await;
                                }
                            }
                        }
                    };
                    let _ = tokio::time::timeout(REFUSED_CONNECTION_TIMEOUT, answer).await;
                });
            }
        }
    }
    // Closing the socket first: new connections are refused from here on.
    drop(listener);
    let open = conns.len();
    let running = admission.requests_in_flight();
    tracing::info!(
        connections = open,
        requests = running,
        grace_ms = grace.as_millis() as u64,
        "S3 listener closed; letting requests in flight finish"
    );
    drain.cancel();
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    match drained {
        Ok(()) => tracing::info!("S3 requests drained"),
        Err(_) => {
            let cut = admission.requests_in_flight();
            let connections = conns.len();
            conns.abort_all();
            while conns.join_next().await.is_some() {}
            tracing::warn!(
                requests = cut,
                connections,
                grace_ms = grace.as_millis() as u64,
                "shutdown grace ended; cut the requests still running (clients see a closed connection and may retry)"
            );
        }
    }
}

/// TLS handshake with a deadline; `None` when it fails, times out or the
/// gateway shuts down meanwhile.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    drain: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    tokio::select! {
        biased;
        r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match r {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        },
        _ = drain.cancelled() => None,
    }
}

/// Answers every request on a connection over the cap with 503 SlowDown
/// and closes it, without reading any body.
async fn refuse_connection<I>(io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
        let mut resp = slow_down(Reason::Connections);
        crate::body_end::close_connection(&mut resp);
        if let Ok(v) = http::HeaderValue::from_str(&request_id()) {
            resp.headers_mut().insert("x-amz-request-id", v);
        }
        Ok::<_, std::convert::Infallible>(resp)
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.keep_alive(false);
    let Ok(parts) = http1
        .serve_connection(TokioIo::new(io), svc)
        .without_shutdown()
        .await
    else {
        return;
    };
    linger(parts.io.into_inner()).await;
}

use crate::limits::LINGER_BYTES_MAX;
use crate::limits::LINGER_TIME_MAX;

/// Closes a connection whose request body was never read without losing
/// the answer: closing a socket with unread input makes the kernel send a
/// reset, which can overtake the 503 still on its way and reach the client
/// as "connection reset" instead. So: stop writing, then discard what the
/// client still sends, a bounded amount, before closing.
async fn linger<I>(mut io: I)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if io.shutdown().await.is_err() {
        return;
    }
    let discard = async {
        let mut buf = vec![0u8; 16 << 10];
        let mut total = 0;
        while total < LINGER_BYTES_MAX {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME_MAX, discard).await;
}

/// Serves one admitted connection until it closes, or until `drain` fires
/// (then it finishes its current request and closes).
async fn serve_connection<I>(io: I, peer: SocketAddr, shared: Shared, drain: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move { handle(req, shared, peer).await }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper applies no header deadline: an idle or silent
    // connection would hold its admission slot forever.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(crate::limits::CLIENT_HEADER_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        r = conn.as_mut() => if let Err(e) = r {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        },
        _ = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error while draining");
            }
        }
    }
}

/// The access key a request claims to be signed with (header or presigned
/// query), before anything verified it.
fn claimed_access_key(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .map(|c| c.split('/').next().unwrap_or("").to_string());
    let from_query = || {
        query?
            .split('&')
            .find_map(|kv| kv.strip_prefix("X-Amz-Credential="))
            .map(|c| {
                let c = c.replace("%2F", "/").replace("%2f", "/");
                c.split('/').next().unwrap_or("").to_string()
            })
    };
    from_header
        .or_else(from_query)
        .filter(|k| !k.is_empty() && k.len() <= 128)
}

/// Reports a 403 to the audit chain: a request whose key was verified was
/// denied; one whose key never was failed authentication.
fn report_refusal(
    audit: &weft_client::audit_report::Reporter,
    resp: &http::Response<s3s::Body>,
    principal: &weft_client::audit_report::PrincipalSlot,
    claimed: Option<String>,
    peer: SocketAddr,
    method: &http::Method,
    path: &str,
) {
    use weft_common::audit::EventKind;
    let code = resp
        .body()
        .bytes()
        .and_then(|b| {
            let text = std::str::from_utf8(&b).ok()?.to_string();
            let start = text.find("<Code>")? + "<Code>".len();
            let end = text[start..].find("</Code>")? + start;
            Some(text[start..end].to_string())
        })
        .unwrap_or_else(|| "AccessDenied".into());
    let (kind, actor, target) = match principal.get() {
        Some(p) => (
            EventKind::Denial,
            format!("{p} at {}", peer.ip()),
            path.to_string(),
        ),
        // The caller proved nothing, so its claims and paths are its own
        // choice: only the bucket is kept, so varying keys do not make
        // every refusal distinct.
        None => (
            EventKind::AuthFailure,
            match claimed {
                Some(k) => format!("claimed key {k} at {}", peer.ip()),
                None => format!("unsigned caller at {}", peer.ip()),
            },
            format!(
                "/{}",
                path.trim_start_matches('/').split('/').next().unwrap_or("")
            ),
        ),
    };
    audit.report(
        kind,
        &actor,
        &format!("s3 {method}"),
        &target,
        &format!("denied: {code}"),
    );
}

/// One request: admission, then s3s, then the response body is charged
/// and carries the request's ticket until it is sent.
async fn handle(
    req: http::Request<hyper::body::Incoming>,
    shared: Shared,
    peer: SocketAddr,
) -> Result<http::Response<AdmittedBody>, s3s::HttpError> {
    let id = request_id();
    let method = req.method().clone();
    let declared = declared_body_bytes(req.headers());
    // `Expect: 100-continue`: when we answer without reading the body (an
    // error, or an empty body), hyper sends no interim 100 and keeps the
    // connection; botocore then either sends the body anyway (its bytes
    // corrupt the next request on the connection) or misreads the next
    // response and stalls. Closing such connections after the answer keeps
    // the client's next request on a fresh one.
    let expect_continue = req
        .headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let empty_body = declared == 0;
    // Any answer given before the body was read closes the connection
    // (`close_if_unread` below), so its unread bytes cannot be taken for
    // the next request: a refusal by admission never reads it.
    let (parts, body) = req.into_parts();
    let (body, body_ended) = crate::body_end::ReadToEnd::new(body);
    let req = http::Request::from_parts(parts, body);
    let t0 = tokio::time::Instant::now();
    let (mut resp, ticket) = match shared.admission.request(declared) {
        Err(reason) => (slow_down(reason), None),
        Ok(mut ticket) => {
            let span = tracing::info_span!("s3", request_id = %id, method = %method, path = %req.uri().path());
            let (req, body_check) = crate::integrity::wrap_request(req);
            let claimed = claimed_access_key(req.headers(), req.uri().query());
            let path = req.uri().path().to_string();
            // The S3 access check names the verified key in this slot, so
            // every command the request causes records who asked.
            let principal = weft_client::audit_report::PrincipalSlot::new();
            let mut resp =
                weft_client::audit_report::acting_for(principal.clone(), shared.service.call(req))
                    .instrument(span)
                    .await?;
            if resp.status() == http::StatusCode::FORBIDDEN {
                report_refusal(
                    &shared.audit,
                    &resp,
                    &principal,
                    claimed,
                    peer,
                    &method,
                    &path,
                );
            }
            if let Some(c) = body_check {
                resp = c.answer(resp);
            }
            ticket.release_bytes();
            let streamed = method != http::Method::HEAD && resp.body().bytes().is_none();
            let length = resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let (true, Some(len)) = (streamed, length) {
                if !ticket.add_bytes(len) {
                    shared.admission.refused_response();
                    resp = slow_down(Reason::Bytes);
                }
            }
            (resp, Some(ticket))
        }
    };
    shared
        .metrics
        .request_seconds
        .observe(t0.elapsed().as_secs_f64());
    shared
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.to_string(),
            status: resp.status().as_u16(),
        })
        .inc();
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    crate::body_end::close_if_unread(&mut resp, &body_ended);
    if expect_continue && (empty_body || !resp.status().is_success()) {
        crate::body_end::close_connection(&mut resp);
    }
    Ok(resp.map(|b| AdmittedBody::new(b, ticket)))
}

/// Pause after an `accept` error; returns true if `cancel` fired meanwhile.
///
/// A peer that gave up before being accepted costs nothing. Anything else,
/// above all EMFILE/ENFILE (out of file descriptors), clears only when
/// connections or files are closed, so the loop waits a second (as
/// `axum::serve` does) instead of spinning and flooding the log, and keeps
/// serving the connections it has.
async fn accept_backoff(e: &std::io::Error, cancel: &CancellationToken) -> bool {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused
    ) {
        return false;
    }
    if weft_common::durable_file::is_out_of_descriptors(e) {
        tracing::error!(error = %e, "cannot accept S3 connections: out of file descriptors; retrying in 1s (raise the open-file limit, LimitNOFILE, if this persists)");
    } else {
        tracing::error!(error = %e, "accept failed; retrying in 1s");
    }
    tokio::select! {
        biased;
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(ACCEPT_BACKOFF) => false,
    }
}

use crate::limits::ACCEPT_BACKOFF;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn body_bytes_come_from_content_length_then_decoded_length() {
        assert_eq!(
            declared_body_bytes(&headers(&[("content-length", "42")])),
            42
        );
        assert_eq!(
            declared_body_bytes(&headers(&[
                ("transfer-encoding", "chunked"),
                ("x-amz-decoded-content-length", "7")
            ])),
            7
        );
        assert_eq!(
            declared_body_bytes(&headers(&[("transfer-encoding", "chunked")])),
            u64::MAX
        );
        assert_eq!(declared_body_bytes(&headers(&[])), 0);
    }
}
