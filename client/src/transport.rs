//! The internal transport: how every internal request leaves a process.
//!
//! Internal RPC is HTTP + JSON (and shard bytes) on the wire. The clients in
//! this crate and metad's raft network build their requests with reqwest's
//! builder and hand them to a [`Transport`] instead of sending them
//! themselves, so one seam decides where a request goes: [`Http`] sends it
//! over a socket; the simulator hands it to an in-process server's router
//! under a scheduler that delays, drops, duplicates and partitions; an
//! emulated WAN is a decorator that adds per-zone latency. Nothing above the
//! seam can tell which one it talks to, except by what arrives.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

/// A response, or why there is none.
pub type TransportResult = Result<reqwest::Response, TransportError>;

/// The future a [`Transport`] returns; `'static` so callers can race it
/// against deadlines and drop it.
pub type TransportFuture = Pin<Box<dyn Future<Output = TransportResult> + Send + 'static>>;

/// Sends one internal request and yields the response head (the body
/// streams from the response).
///
/// Implementations honour the request's own timeout
/// ([`reqwest::Request::timeout`]) if it has one, and add the format header
/// callers put on every request ([`crate::format_headers`]) themselves only
/// if they build requests that lack it.
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `request`.
    fn execute(&self, request: reqwest::Request) -> TransportFuture;
}

/// A shared transport.
pub type SharedTransport = Arc<dyn Transport>;

/// Why a request got no response.
#[derive(Debug, Error)]
pub enum TransportError {
    /// Nothing was sent: the peer refused the connection, or no such peer
    /// exists. The request certainly had no effect.
    #[error("connection refused: {0}")]
    NotSent(String),
    /// The request may have reached the peer (and may have taken effect),
    /// but no response arrived: reset, lost, or broke off.
    #[error("no response: {0}")]
    Lost(String),
    /// The request's deadline passed first; it may have taken effect.
    #[error("request deadline of {0:?} passed")]
    TimedOut(Duration),
    /// reqwest's own error (sockets, or reading a body).
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

impl TransportError {
    /// Nothing was sent, so the request certainly had no effect.
    pub fn is_connect(&self) -> bool {
        match self {
            TransportError::NotSent(_) => true,
            TransportError::Http(e) => e.is_connect() || refused_in_handshake(e),
            _ => false,
        }
    }

    /// The deadline passed.
    pub fn is_timeout(&self) -> bool {
        match self {
            TransportError::TimedOut(_) => true,
            TransportError::Http(e) => e.is_timeout(),
            _ => false,
        }
    }
}

/// Whether the server refused our certificate in the TLS handshake. With
/// TLS 1.3 the client finishes its side first and writes its request; the
/// server's alert arrives on the first read, so reqwest reports it as a
/// failed request, not a failed connect. The server never processed that
/// request: it is as certainly not applied as a refused connection.
pub fn refused_in_handshake(e: &(dyn std::error::Error + 'static)) -> bool {
    use tokio_rustls::rustls::{AlertDescription as A, Error as TlsError};
    let refusal = |r: &TlsError| {
        matches!(
            r,
            TlsError::AlertReceived(
                A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::AccessDenied
                    | A::CertificateRequired
                    | A::HandshakeFailure
                    // A signature that does not verify: what a certificate
                    // from a rolled-out CA of the same name gets.
                    | A::DecryptError
            )
        )
    };
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err.downcast_ref::<TlsError>().is_some_and(refusal) {
            return true;
        }
        // io::Error hides the error it wraps from `source()`.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if inner.downcast_ref::<TlsError>().is_some_and(refusal) {
                return true;
            }
        }
        cause = err.source();
    }
    false
}

/// `e` and its causes, `: `-separated: reqwest's own message ("error
/// sending request") says nothing of a refused handshake or a reset.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The real transport: reqwest over TCP, plain or with mutual TLS.
///
/// With mutual TLS it starts a new client (a new connection pool) when its
/// identity or trust is reloaded: new requests then open connections that
/// present the new certificate, while requests in flight finish on the old
/// ones, which close with them. A CA roll's last step (the old CA no longer
/// trusted, which closes connections made with old certificates) then finds
/// no connection in use, so it costs no request.
#[derive(Clone)]
pub struct Http {
    current: Arc<std::sync::RwLock<(u64, reqwest::Client)>>,
    /// Rebuilds the client, for the identity reloaded since.
    renew: Option<Renew>,
    /// Requests go out as `https://` (callers build `http://` URLs; the
    /// transport alone decides how a request leaves the process).
    https: bool,
}

#[derive(Clone)]
struct Renew {
    tls: Arc<crate::internal_tls::InternalTls>,
    make: Arc<dyn Fn() -> reqwest::Client + Send + Sync>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("https", &self.https)
            .field("renews", &self.renew.is_some())
            .finish()
    }
}

impl Http {
    /// Sends plain HTTP through `client` (its pool, timeouts and default
    /// headers).
    pub fn new(client: reqwest::Client) -> Http {
        Http {
            current: Arc::new(std::sync::RwLock::new((0, client))),
            renew: None,
            https: false,
        }
    }

    /// Sends through a client built from `builder()` (its pool and
    /// timeouts) over mutual TLS with `tls`'s identity when given, else
    /// plain HTTP. `builder` is called again at each reload of `tls`.
    pub fn with_tls(
        builder: impl Fn() -> reqwest::ClientBuilder + Send + Sync + 'static,
        tls: Option<&Arc<crate::internal_tls::InternalTls>>,
    ) -> Http {
        Http::with_tls_expecting(builder, tls, None, false)
    }

    /// [`with_tls`](Self::with_tls) to servers of one role only (every
    /// client of metad, or of the data nodes).
    pub fn with_tls_to(
        builder: impl Fn() -> reqwest::ClientBuilder + Send + Sync + 'static,
        tls: Option<&Arc<crate::internal_tls::InternalTls>>,
        server: crate::pki::Role,
    ) -> Http {
        Http::with_tls_expecting(builder, tls, Some(server), false)
    }

    /// Mutual TLS to servers of one role over HTTP/2 (raft between voters;
    /// see [`InternalTls::client_config_multiplexed_for`]); plain HTTP/1.1
    /// when `tls` is `None`.
    ///
    /// [`InternalTls::client_config_multiplexed_for`]: crate::internal_tls::InternalTls::client_config_multiplexed_for
    pub fn multiplexed_to(
        builder: impl Fn() -> reqwest::ClientBuilder + Send + Sync + 'static,
        tls: Option<&Arc<crate::internal_tls::InternalTls>>,
        server: crate::pki::Role,
    ) -> Http {
        Http::with_tls_expecting(builder, tls, Some(server), true)
    }

    fn with_tls_expecting(
        builder: impl Fn() -> reqwest::ClientBuilder + Send + Sync + 'static,
        tls: Option<&Arc<crate::internal_tls::InternalTls>>,
        server: Option<crate::pki::Role>,
        multiplexed: bool,
    ) -> Http {
        let Some(tls) = tls else {
            return Http::new(
                builder()
                    .build()
                    .expect("reqwest client with static settings builds"),
            );
        };
        let for_tls = tls.clone();
        let make: Arc<dyn Fn() -> reqwest::Client + Send + Sync> = Arc::new(move || {
            let config = match (server, multiplexed) {
                (Some(role), true) => for_tls.client_config_multiplexed_for(role),
                (Some(role), false) => for_tls.client_config_for(role),
                (None, _) => for_tls.client_config(),
            };
            builder()
                .use_preconfigured_tls(config)
                .build()
                .expect("reqwest client with a rustls config builds")
        });
        let generation = tls.generation();
        Http {
            current: Arc::new(std::sync::RwLock::new((generation, make()))),
            renew: Some(Renew {
                tls: tls.clone(),
                make,
            }),
            https: true,
        }
    }

    /// The client for the identity as it is now.
    fn client(&self) -> reqwest::Client {
        // The lock guards a plain swap: a panic elsewhere while it was held
        // leaves a whole value behind.
        let read = || self.current.read().unwrap_or_else(|e| e.into_inner());
        let Some(renew) = &self.renew else {
            return read().1.clone();
        };
        let generation = renew.tls.generation();
        {
            let current = read();
            if current.0 == generation {
                return current.1.clone();
            }
        }
        // Built outside the lock: no request waits on it.
        let fresh = (renew.make)();
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.0 != generation {
            *current = (generation, fresh);
            tracing::debug!(
                generation,
                "internal TLS identity reloaded: new connections from here on"
            );
        }
        current.1.clone()
    }
}

impl Transport for Http {
    fn execute(&self, mut request: reqwest::Request) -> TransportFuture {
        if self.https && request.url().scheme() == "http" {
            // Infallible for http → https (both are special schemes).
            let _ = request.url_mut().set_scheme("https");
        }
        let fut = self.client().execute(request);
        Box::pin(async move { fut.await.map_err(TransportError::Http) })
    }
}

/// A client used only to build requests ([`reqwest::RequestBuilder`] needs
/// one); it never sends anything, so it opens no sockets.
pub fn builder_client() -> reqwest::Client {
    reqwest::Client::new()
}
