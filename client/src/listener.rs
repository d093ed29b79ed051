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
//! Once more than half are taken, one address may hold at most
//! [`HANDSHAKES_PER_ADDR_MAX`] of them.
//!
//! A connection's caller is judged again after every reload of the
//! trusted CAs and every [`RECHECK_INTERVAL`] ([`TlsConn`]): a certificate
//! rolled out of trust or expired loses its open connections too.

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

/// Handshakes in progress at once from one address (an IPv6 /64 counts as
/// one) once more than half of [`HANDSHAKES_MAX`] are taken: one host's
/// flood of silent connections then gets no more, so the cluster's other
/// members still get through. Below that, a busy peer (a gateway starting
/// cold, several behind one NAT) is not held back.
pub const HANDSHAKES_PER_ADDR_MAX: usize = 32;

/// The address a caller's handshakes are counted under: an IPv4 address,
/// or an IPv6 /64 (one host can hold a whole /64).
fn caller_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Handshakes under way per caller address.
#[derive(Default)]
struct Pending(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One pending handshake of one address; counted down when dropped.
struct PendingSlot {
    pending: Arc<Pending>,
    ip: std::net::IpAddr,
}

impl Pending {
    /// A slot for a handshake from `ip`; `None` when `crowded` (most of the
    /// handshake slots are taken) and `ip` already holds its share.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, crowded: bool) -> Option<PendingSlot> {
        let ip = caller_key(ip);
        let mut m = self.0.lock().expect("pending lock");
        let n = m.entry(ip).or_default();
        if crowded && *n >= HANDSHAKES_PER_ADDR_MAX {
            return None;
        }
        *n += 1;
        Some(PendingSlot {
            pending: self.clone(),
            ip,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut m = self.pending.0.lock().expect("pending lock");
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// How often a connection's caller is judged again even with no reload:
/// a certificate that expires while its connection is open loses it.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(60);

/// A connection: plain TCP (`--insecure-internal`) or TLS.
pub enum InternalIo {
    /// Plain.
    Plain(TcpStream),
    /// TLS (boxed: the session state is large).
    Tls(Box<TlsConn>),
}

/// A TLS connection and what its caller proved.
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    check: Option<TrustCheck>,
}

/// Judges a connection's caller again after a reload of the trusted CAs
/// (or every [`RECHECK_INTERVAL`]), before reading its next bytes: a CA
/// roll or an expiry ends the connections of certificates no longer
/// trusted, not only their new handshakes.
struct TrustCheck {
    tls: Arc<InternalTls>,
    cert: Arc<rustls_pki_types::CertificateDer<'static>>,
    generation: u64,
    at: std::time::Instant,
    addr: SocketAddr,
    /// Ready at the next reload: an idle connection (a pooled client's,
    /// waiting for its next request) is judged then, and closed while
    /// idle, which a client's pool notices before it sends on it.
    reloaded: tokio_util::sync::ReusableBoxFuture<'static, tokio::sync::watch::Receiver<u64>>,
}

/// The next reload after `rx`'s last seen one; never, once the identity
/// is gone.
async fn next_reload(
    mut rx: tokio::sync::watch::Receiver<u64>,
) -> tokio::sync::watch::Receiver<u64> {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    rx
}

impl TrustCheck {
    fn new(
        tls: Arc<InternalTls>,
        cert: Arc<rustls_pki_types::CertificateDer<'static>>,
        generation: u64,
        addr: SocketAddr,
    ) -> TrustCheck {
        let mut rx = tls.watch_generation();
        rx.mark_unchanged();
        TrustCheck {
            tls,
            cert,
            generation,
            at: std::time::Instant::now(),
            addr,
            reloaded: tokio_util::sync::ReusableBoxFuture::new(next_reload(rx)),
        }
    }

    /// With the read pending: judges the caller again if a reload came.
    fn poll_reloaded(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while let Poll::Ready(rx) = self.reloaded.poll(cx) {
            self.reloaded.set(next_reload(rx));
            self.still_trusted()?;
        }
        Ok(())
    }

    fn still_trusted(&mut self) -> io::Result<()> {
        let generation = self.tls.generation();
        if generation == self.generation && self.at.elapsed() < RECHECK_INTERVAL {
            return Ok(());
        }
        match self.tls.still_trusts(&self.cert) {
            Ok(()) => {
                self.generation = generation;
                self.at = std::time::Instant::now();
                Ok(())
            }
            Err(e) => {
                tracing::info!(addr = %self.addr, error = %e, "closed an internal connection: its caller's certificate is no longer trusted");
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("the caller's certificate is no longer trusted: {e}"),
                ))
            }
        }
    }
}

impl AsyncRead for InternalIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            InternalIo::Tls(s) => {
                if let Some(check) = &mut s.check {
                    check.still_trusted()?;
                }
                let read = Pin::new(&mut s.stream).poll_read(cx, buf);
                if read.is_pending() {
                    if let Some(check) = &mut s.check {
                        check.poll_reloaded(cx)?;
                    }
                }
                read
            }
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
            InternalIo::Tls(s) => Pin::new(&mut s.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            InternalIo::Tls(s) => Pin::new(&mut s.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            InternalIo::Plain(s) => s.is_write_vectored(),
            InternalIo::Tls(s) => s.stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_flush(cx),
            InternalIo::Tls(s) => Pin::new(&mut s.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            InternalIo::Tls(s) => Pin::new(&mut s.stream).poll_shutdown(cx),
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
    let pending = Arc::new(Pending::default());
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
                cert: None,
            };
            if tx.send((InternalIo::Plain(stream), peer)).await.is_err() {
                return;
            }
            continue;
        };
        let crowded = handshakes.available_permits() < HANDSHAKES_MAX / 2;
        let Some(slot) = pending.take(addr.ip(), crowded) else {
            refused += 1;
            if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                tracing::warn!(%addr, refused, max = HANDSHAKES_PER_ADDR_MAX, "too many TLS handshakes under way from one address; its new connections closed");
                last_warned = Some(tokio::time::Instant::now());
                refused = 0;
            }
            drop(stream);
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
        // The generation before the config: a reload in between is then
        // judged again at the first read.
        let generation = tls.generation();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        let server_tls = tls.clone();
        let tx = tx.clone();
        let (audit, local) = (audit.clone(), local.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = slot;
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
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.clone().into_owned()));
            let identified = match &leaf {
                None => Identified::Anonymous,
                Some(cert) => match crate::pki::role_of(cert) {
                    Ok(role) => Identified::Role(role),
                    // The verifier already refused these; never serve one.
                    Err(_) => return,
                },
            };
            let check = leaf
                .clone()
                .map(|cert| TrustCheck::new(server_tls.clone(), cert, generation, addr));
            let peer = Peer {
                addr,
                identified,
                cert: leaf,
            };
            let conn = TlsConn { stream: tls, check };
            let _ = tx.send((InternalIo::Tls(Box::new(conn)), peer)).await;
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
            cert: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, InternalListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, InternalListener>) -> Peer {
        stream.remote_addr().clone()
    }
}

/// The address the listener is bound to.
pub fn local_addr(listener: &InternalListener) -> SocketAddr {
    listener.local
}
