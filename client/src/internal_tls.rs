//! A process's mutual-TLS identity for the internal hops, read from files
//! and re-read while it runs, so certificates and trusted CAs roll without
//! a restart.
//!
//! Servers take the current [`rustls::ServerConfig`] at every handshake;
//! clients are built once (reqwest keeps its `ClientConfig`), so their
//! certificate and their trust are looked up through this value at every
//! handshake instead of being copied in. A reload that fails (a half-written
//! file, a key that does not match) keeps the last good identity and says
//! so. Connections already open keep the identity this process presented
//! when they were made, but their callers are judged again against the
//! trust after each reload ([`InternalTls::still_trusts`], used by
//! [`crate::listener`]).

use crate::mtls::{self, Identity};
use crate::pki::{self, PkiError, Role};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Where a process's certificate, key and trusted CAs are (`weft cert
/// issue` writes the first two; `ca.pem` may hold the old and the new CA
/// during a roll).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// This process's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The cluster CA certificates it trusts (PEM, one or more).
    pub ca: PathBuf,
}

/// How often a running process looks for new certificate files.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

struct Loaded {
    /// The files' bytes, to tell whether they changed.
    bytes: [Vec<u8>; 3],
    role: Role,
    server: Arc<rustls::ServerConfig>,
    certified: Arc<CertifiedKey>,
    verifier: Arc<dyn ServerCertVerifier>,
    /// The CA certificates trusted, to judge connections already open
    /// again after a reload ([`InternalTls::still_trusts`]).
    trusted: Vec<CertificateDer<'static>>,
}

/// The identity a daemon's `tls` setting names, loaded and re-read every
/// [`RELOAD_INTERVAL`] (or `WEFT_TLS_RELOAD_MS`, which the chaos suite
/// shortens to roll certificates within a run); `None` (plain HTTP) when
/// it names none.
pub fn from_config(files: Option<&TlsFiles>) -> Result<Option<Arc<InternalTls>>, PkiError> {
    let Some(files) = files else {
        return Ok(None);
    };
    let tls = InternalTls::load(files.clone())?;
    let every = std::env::var("WEFT_TLS_RELOAD_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(RELOAD_INTERVAL);
    tls.spawn_reloader(every);
    Ok(Some(tls))
}

/// A process's identity and trust on the internal hops; shared by its
/// listeners and its clients.
pub struct InternalTls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
    /// Bumped at each reload that changed something: connections opened
    /// before it check their caller again ([`Self::still_trusts`]), woken
    /// by it while idle.
    generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTls")
            .field("files", &self.files)
            .field("role", &self.role())
            .finish()
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|e| PkiError::BadPem {
        what: format!("{what} ({})", path.display()),
        why: e.to_string(),
    })
}

fn text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, PkiError> {
    std::str::from_utf8(bytes).map_err(|_| PkiError::BadPem {
        what: what.into(),
        why: "not UTF-8 text".into(),
    })
}

fn load(files: &TlsFiles) -> Result<Loaded, PkiError> {
    let bytes = [
        read(&files.cert, "the certificate")?,
        read(&files.key, "the private key")?,
        read(&files.ca, "the trusted CA certificates")?,
    ];
    build(bytes)
}

fn build(bytes: [Vec<u8>; 3]) -> Result<Loaded, PkiError> {
    let id = Identity::from_pem(
        text(&bytes[0], "the certificate")?,
        text(&bytes[1], "the private key")?,
        text(&bytes[2], "the trusted CA certificates")?,
    )?;
    let leaf = id.chain.first().ok_or_else(|| PkiError::BadPem {
        what: "the certificate".into(),
        why: "no certificate in it".into(),
    })?;
    let role = pki::role_of(leaf)?;
    // A certificate this process's own trust would refuse is refused here,
    // where the operator sees why, rather than by every peer.
    pki::verify_client(leaf, &id.trusted)?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(id.key.clone_key())
        .map_err(|e| PkiError::Untrusted(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(id.chain.clone(), signing);
    certified.keys_match().map_err(|e| {
        PkiError::Untrusted(format!(
            "the private key does not belong to the certificate: {e}"
        ))
    })?;
    let server = Arc::new(mtls::server_config(&id)?);
    let mut roots = rustls::RootCertStore::empty();
    for ca in &id.trusted {
        roots
            .add(ca.clone())
            .map_err(|e| PkiError::Untrusted(format!("unusable CA certificate: {e}")))?;
    }
    let verifier: Arc<dyn ServerCertVerifier> =
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(provider),
        )
        .build()
        .map_err(|e| PkiError::Untrusted(e.to_string()))?;
    Ok(Loaded {
        bytes,
        role,
        server,
        certified: Arc::new(certified),
        verifier,
        trusted: id.trusted.clone(),
    })
}

impl InternalTls {
    /// Reads `files`; fails with what is wrong with them.
    pub fn load(files: TlsFiles) -> Result<Arc<InternalTls>, PkiError> {
        let loaded = load(&files)?;
        Ok(Arc::new(InternalTls {
            files,
            current: RwLock::new(Arc::new(loaded)),
            generation: tokio::sync::watch::Sender::new(0),
        }))
    }

    fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("tls lock").clone()
    }

    /// The role this process's certificate names.
    pub fn role(&self) -> Role {
        self.current().role
    }

    /// Refuses a certificate that cannot serve TLS (issued without
    /// `--host`): a process that also serves with it (a gateway's admin
    /// API) says so at start instead of failing every handshake.
    pub fn check_serves(&self) -> Result<(), PkiError> {
        let current = self.current();
        let leaf = pki::certs_from_pem(
            text(&current.bytes[0], "the certificate")?,
            "the certificate",
        )?;
        let trusted = pki::certs_from_pem(
            text(&current.bytes[2], "the trusted CA certificates")?,
            "the trusted CA certificates",
        )?;
        pki::verify_server(&leaf[0], &trusted).map_err(|e| {
            PkiError::Untrusted(format!(
                "{} cannot serve TLS ({e}); issue it with --host NAME, the name clients dial",
                self.files.cert.display()
            ))
        })?;
        Ok(())
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again: `Ok(true)` when they changed and the new
    /// identity is in use, `Ok(false)` when they did not change. On an
    /// error the old identity stays in use.
    pub fn reload(&self) -> Result<bool, PkiError> {
        let bytes = [
            read(&self.files.cert, "the certificate")?,
            read(&self.files.key, "the private key")?,
            read(&self.files.ca, "the trusted CA certificates")?,
        ];
        if bytes == self.current().bytes {
            return Ok(false);
        }
        let loaded = build(bytes)?;
        *self.current.write().expect("tls lock") = Arc::new(loaded);
        self.generation.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// Counts the reloads that changed the identity or the trust.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Notified at each reload that changed something.
    pub fn watch_generation(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether a caller that presented `cert` would still pass the
    /// handshake now: it chains to a CA trusted now and has not expired.
    /// Connections already open are judged by it after a CA roll, so an
    /// untrusted certificate loses its connections too, not only new ones.
    pub fn still_trusts(&self, cert: &CertificateDer<'_>) -> Result<(), PkiError> {
        pki::verify_client(cert, &self.current().trusted).map(|_| ())
    }

    /// Re-reads the files every `every` until the last handle to `self` is
    /// dropped.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration) {
        let weak: Weak<InternalTls> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(tls) = weak.upgrade() else { return };
                match tls.reload() {
                    Ok(true) => tracing::info!(
                        cert = %tls.files.cert.display(),
                        role = %tls.role().name(),
                        "internal TLS certificates reloaded"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        cert = %tls.files.cert.display(),
                        "internal TLS certificates could not be reloaded; the previous ones stay in use"
                    ),
                }
            }
        });
    }

    /// The server side of the current identity (taken at each handshake).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.current().server.clone()
    }

    /// A client side that presents the current certificate and trusts the
    /// current CAs at each handshake, so a reload reaches clients already
    /// built. The server may hold a certificate of any role; a client of
    /// one kind of server should use [`client_config_for`](Self::client_config_for).
    pub fn client_config(self: &Arc<Self>) -> rustls::ClientConfig {
        self.client_config_expecting(None)
    }

    /// [`client_config`](Self::client_config) that also refuses a server
    /// whose certificate names another role than `server`: a data node's
    /// certificate cannot answer as metad at the same address.
    pub fn client_config_for(self: &Arc<Self>, server: Role) -> rustls::ClientConfig {
        self.client_config_expecting(Some(server))
    }

    /// [`client_config_for`](Self::client_config_for) speaking HTTP/2: for
    /// raft between voters, whose small RPCs run under a deadline of one
    /// heartbeat. A request past it is reset as a stream and the connection
    /// stays up; with HTTP/1.1 the connection would close, and the next RPC
    /// would pay a new handshake, under the same deadline.
    pub fn client_config_multiplexed_for(self: &Arc<Self>, server: Role) -> rustls::ClientConfig {
        let mut config = self.client_config_expecting(Some(server));
        config.alpn_protocols = vec![b"h2".to_vec()];
        config
    }

    fn client_config_expecting(self: &Arc<Self>, server: Option<Role>) -> rustls::ClientConfig {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LiveTrust {
            tls: self.clone(),
            server,
        }))
        .with_client_cert_resolver(Arc::new(LiveCert(self.clone())));
        // HTTP/1.1, as over plain HTTP: each request in flight has its own
        // connection, so one stalled transfer never holds up the others
        // (HTTP/2 would multiplex every shard of a node on one connection).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

/// The current certificate, for the client side.
#[derive(Debug)]
struct LiveCert(Arc<InternalTls>);

impl rustls::client::ResolvesClientCert for LiveCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The current trusted CAs, for the client side: webpki's server verifier,
/// which also wants the server's certificate to name a role (every cluster
/// certificate does; one that names none is not the cluster's), and the
/// expected one when the client knows what it dials.
#[derive(Debug)]
struct LiveTrust {
    tls: Arc<InternalTls>,
    server: Option<Role>,
}

impl ServerCertVerifier for LiveTrust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.tls.current().verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let role = pki::role_of(end_entity)
            .map_err(|e| rustls::Error::General(format!("server certificate refused: {e}")))?;
        if let Some(expected) = self.server {
            if role != expected {
                return Err(rustls::Error::General(format!(
                    "server certificate names role {role}, but a {expected} was dialled"
                )));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls
            .current()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls
            .current()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.tls.current().verifier.supported_verify_schemes()
    }
}
