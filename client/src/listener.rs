//! The accept side of the internal hops: a TCP listener that, with mutual
//! TLS on, completes each handshake off the accept loop (under a deadline,
//! a bounded number at a time) and hands axum the stream with the caller's
//! identity ([`Peer`], read with `ConnectInfo<Peer>`).
//!
//! Handshakes run in their own tasks so one slow or silent caller cannot
//! hold up the others; a caller that has not finished its handshake within
//! [`HANDSHAKE_TIMEOUT`] is dropped. When [`HANDSHAKES_MAX`] handshakes are
//! already under way, a new connection is closed at once rather than
//! queued: the accept loop never waits, so silent connections (which need
//! no certificate to open) cannot stop the accepting of others, and
//! connections already established (raft's, pooled clients') keep working.

use crate::internal_tls::InternalTls;
use crate::peer::{Identified, Peer};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// How long a caller has to finish its TLS handshake (a few round trips;
/// loopback and LAN peers take milliseconds).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in progress at once; beyond it new connections are closed.
pub const HANDSHAKES_MAX: usize = 256;

/// A connection: plain TCP (`--insecure-internal`) or TLS.
pub enum InternalIo {
    /// Plain.
    Plain(TcpStream),
    /// TLS (boxed: the session state is large).
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for InternalIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            InternalIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for InternalIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            InternalIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            InternalIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            InternalIo::Plain(s) => s.is_write_vectored(),
            InternalIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_flush(cx),
            InternalIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            InternalIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An internal endpoint's listener, for `axum::serve`.
pub struct InternalListener {
    ready: mpsc::Receiver<(InternalIo, Peer)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for InternalListener {
    fn drop(&mut self) {
        // The accept loop owns the socket: stop it, so the port closes
        // when the server stops.
        self.accept_task.abort();
    }
}

impl InternalListener {
    /// Serves on `tcp`: mutual TLS with `tls`, or plain HTTP when `None`
    /// (the caller has chosen `--insecure-internal`).
    pub fn new(tcp: TcpListener, tls: Option<Arc<InternalTls>>) -> io::Result<InternalListener> {
        Self::reporting(tcp, tls, None)
    }

    /// As [`new`](Self::new), reporting refused handshakes (no trusted
    /// certificate, not TLS at all, too slow) to the audit chain.
    pub fn reporting(
        tcp: TcpListener,
        tls: Option<Arc<InternalTls>>,
        audit: Option<crate::audit_report::Reporter>,
    ) -> io::Result<InternalListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accept_task = tokio::spawn(accept_loop(tcp, tls, tx, audit));
        Ok(InternalListener {
            ready,
            local,
            accept_task,
        })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<Arc<InternalTls>>,
    tx: mpsc::Sender<(InternalIo, Peer)>,
    audit: Option<crate::audit_report::Reporter>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    let local = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut refused = 0u64;
    let mut last_warned: Option<tokio::time::Instant> = None;
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or a connection reset before accept:
                // back off instead of spinning.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = &tls else {
            let peer = Peer {
                addr,
                identified: Identified::Insecure,
            };
            if tx.send((InternalIo::Plain(stream), peer)).await.is_err() {
                return;
            }
            continue;
        };
        let permit = match handshakes.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                refused += 1;
                // At most one line a second, however hard the flood.
                if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(%addr, refused, max = HANDSHAKES_MAX, "too many TLS handshakes under way; new connections closed");
                    last_warned = Some(tokio::time::Instant::now());
                    refused = 0;
                }
                drop(stream);
                continue;
            }
            Err(tokio::sync::TryAcquireError::Closed) => return,
        };
        if tx.is_closed() {
            return;
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        let tx = tx.clone();
        let (audit, local) = (audit.clone(), local.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let refused = |why: String| {
                if let Some(a) = &audit {
                    a.report(
                        weft_common::audit::EventKind::AuthFailure,
                        &format!("TLS caller at {}", addr.ip()),
                        "TLS handshake",
                        &format!("internal port {local}"),
                        &format!("denied: {why}"),
                    );
                }
            };
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%addr, error = %e, "internal TLS handshake refused");
                    refused(e.to_string());
                    return;
                }
                Err(_) => {
                    tracing::info!(%addr, "internal TLS handshake did not finish in time");
                    refused(format!("handshake not finished in {HANDSHAKE_TIMEOUT:?}"));
                    return;
                }
            };
            let identified = match tls.get_ref().1.peer_certificates() {
                None => Identified::Anonymous,
                Some(certs) => match certs.first().map(crate::pki::role_of) {
                    Some(Ok(role)) => Identified::Role(role),
                    // The verifier already refused these; never serve one.
                    _ => return,
                },
            };
            let _ = tx
                .send((InternalIo::Tls(Box::new(tls)), Peer { addr, identified }))
                .await;
        });
    }
}

impl axum::serve::Listener for InternalListener {
    type Io = InternalIo;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept loop ended (only if aborted): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            identified: Identified::InProcess,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, InternalListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, InternalListener>) -> Peer {
        *stream.remote_addr()
    }
}

/// The address the listener is bound to.
pub fn local_addr(listener: &InternalListener) -> SocketAddr {
    listener.local
}
