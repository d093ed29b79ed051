//! Mutual TLS for the internal hops: the server side asks every caller for
//! a certificate from a trusted cluster CA and learns its role; the client
//! side presents its own certificate and trusts only the cluster CA.
//!
//! Both sides take a list of trusted CA certificates, so during a CA roll
//! old and new are trusted at once. What each endpoint lets a role do is
//! the endpoint's to decide ([`crate::pki::Role`]); this module only
//! establishes who is calling.

use crate::pki::{self, PkiError, Role};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::rustls;

/// One process's identity and trust: its certificate chain and key, and
/// the CA certificates it trusts.
pub struct Identity {
    /// Its certificate (first) and any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// The cluster CA certificates it trusts (two during a roll).
    pub trusted: Vec<CertificateDer<'static>>,
}

impl Identity {
    /// From PEM texts: the certificate, its key, and the trusted CAs (one
    /// or more certificates in one text).
    pub fn from_pem(cert_pem: &str, key_pem: &str, trusted_pem: &str) -> Result<Self, PkiError> {
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| PkiError::BadPem {
                what: "the private key".into(),
                why: e.to_string(),
            })?
            .ok_or_else(|| PkiError::BadPem {
                what: "the private key".into(),
                why: "no private key in it".into(),
            })?;
        Ok(Identity {
            chain: pki::certs_from_pem(cert_pem, "the certificate")?,
            key,
            trusted: pki::certs_from_pem(trusted_pem, "the trusted CA certificates")?,
        })
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, PkiError> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &self.trusted {
            roots
                .add(ca.clone())
                .map_err(|e| PkiError::Untrusted(format!("unusable CA certificate: {e}")))?;
        }
        Ok(Arc::new(roots))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: impl std::fmt::Display) -> PkiError {
    PkiError::Untrusted(e.to_string())
}

/// The server side: every caller must present a certificate that chains
/// to a trusted CA; the handshake fails otherwise.
pub fn server_config(id: &Identity) -> Result<rustls::ServerConfig, PkiError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(id.roots()?, provider())
            .build()
            .map_err(tls_error)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The client side: presents `id`'s certificate and trusts only its CAs
/// (never the system's roots).
pub fn client_config(id: &Identity) -> Result<rustls::ClientConfig, PkiError> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(id.roots()?)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(tls_error)
}

/// The role of the caller on an accepted connection (its certificate was
/// verified in the handshake).
pub fn peer_role(conn: &rustls::ServerConnection) -> Result<Role, PkiError> {
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| PkiError::Untrusted("the caller presented no certificate".into()))?;
    pki::role_of(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{issue, new_ca, Issued};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn identity(leaf: &Issued, trusted: &[&Issued]) -> Identity {
        let trusted: String = trusted.iter().map(|c| c.cert_pem.clone()).collect();
        Identity::from_pem(&leaf.cert_pem, &leaf.key_pem, &trusted).unwrap()
    }

    /// Serves one connection on loopback with `server`, and connects with
    /// `client`: the role the server saw (or its handshake error), and
    /// whether the client got the server's answer.
    async fn handshake(server: Identity, client: Identity) -> (Result<Role, String>, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&server).unwrap()));
        let serve = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            match acceptor.accept(tcp).await {
                Ok(mut tls) => {
                    let role = peer_role(tls.get_ref().1).map_err(|e| e.to_string());
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                    role
                }
                Err(e) => Err(e.to_string()),
            }
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&client).unwrap()));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let answered = match connector.connect(name, tcp).await {
            Ok(mut tls) => {
                let mut buf = Vec::new();
                tls.read_to_end(&mut buf).await.is_ok() && buf == b"ok"
            }
            Err(_) => false,
        };
        (serve.await.unwrap(), answered)
    }

    fn server_of(ca: &Issued) -> Issued {
        issue(
            "c",
            &ca.key_pem,
            Role::Datad,
            "datad-1",
            &["127.0.0.1".into()],
            30,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_caller_with_a_certificate_from_the_cluster_ca_is_served_and_its_role_known() {
        let ca = new_ca("c").unwrap();
        let gw = issue("c", &ca.key_pem, Role::Gateway, "gw-1", &[], 30).unwrap();
        let (role, answered) =
            handshake(identity(&server_of(&ca), &[&ca]), identity(&gw, &[&ca])).await;
        assert_eq!(role.unwrap(), Role::Gateway);
        assert!(answered);
    }

    #[tokio::test]
    async fn a_caller_whose_certificate_another_ca_issued_is_refused_in_the_handshake() {
        let ca = new_ca("c").unwrap();
        let other = new_ca("c").unwrap();
        let mallory = issue("c", &other.key_pem, Role::Admin, "mallory", &[], 30).unwrap();
        // The caller trusts the real CA (so it accepts the server), but its
        // own certificate is from elsewhere.
        let (role, answered) = handshake(
            identity(&server_of(&ca), &[&ca]),
            identity(&mallory, &[&ca]),
        )
        .await;
        assert!(role.is_err(), "served a caller from another CA: {role:?}");
        assert!(!answered);
    }

    #[tokio::test]
    async fn a_caller_without_a_certificate_is_refused_in_the_handshake() {
        let ca = new_ca("c").unwrap();
        let server = identity(&server_of(&ca), &[&ca]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&server).unwrap()));
        let serve = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor
                .accept(tcp)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server.trusted[0].clone()).unwrap();
        let anonymous = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(anonymous));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        if let Ok(mut tls) = connector.connect(name, tcp).await {
            // TLS 1.3 may finish the client's side first; the refusal then
            // arrives as the first read.
            let mut buf = Vec::new();
            let _ = tls.read_to_end(&mut buf).await;
            assert!(buf.is_empty(), "an anonymous caller got an answer");
        }
        let served = serve.await.unwrap();
        assert!(served.is_err(), "the server accepted an anonymous caller");
    }

    #[tokio::test]
    async fn during_a_roll_callers_from_the_old_and_the_new_ca_are_both_served() {
        let old = new_ca("c").unwrap();
        let new = new_ca("c").unwrap();
        for (ca, role) in [(&old, Role::Metad), (&new, Role::Admin)] {
            let caller = issue("c", &ca.key_pem, role, "x", &[], 30).unwrap();
            let (seen, answered) = handshake(
                identity(&server_of(&new), &[&old, &new]),
                identity(&caller, &[&old, &new]),
            )
            .await;
            assert_eq!(seen.unwrap(), role);
            assert!(answered);
        }
    }
}
