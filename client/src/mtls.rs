//! Mutual TLS for the internal hops: the server side asks every caller for
//! a certificate from a trusted cluster CA and learns its role; the client
//! side presents its own certificate and trusts only the cluster CA.
//!
//! Both sides take a list of trusted CA certificates, so during a CA roll
//! old and new are trusted at once. What each endpoint lets a role do is
//! the endpoint's to decide ([`crate::pki::Role`]); this module only
//! establishes who is calling. (A client does not yet check the role of
//! the server it reaches, only that the CA vouches for the host name.)

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

/// webpki's client verifier, which also refuses a certificate that names
/// no role or several: such a caller fails the handshake, whatever the
/// endpoint would later have checked.
#[derive(Debug)]
struct OneRole(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for OneRole {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        pki::role_of(end_entity)
            .map_err(|e| rustls::Error::General(format!("client certificate refused: {e}")))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The server side: a caller that presents a certificate must present one
/// that chains to a trusted CA and names exactly one role, or the
/// handshake fails. A caller may present none: it completes the handshake
/// with no role, which is how a kubelet probe or Prometheus reaches
/// `/health` and `/metrics`; every other path refuses it
/// ([`crate::peer::require`]).
pub fn server_config(id: &Identity) -> Result<rustls::ServerConfig, PkiError> {
    let verifier = Arc::new(OneRole(
        rustls::server::WebPkiClientVerifier::builder_with_provider(id.roots()?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(tls_error)?,
    ));
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
    async fn a_caller_without_a_certificate_completes_the_handshake_with_no_role() {
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
                .map(|tls| peer_role(tls.get_ref().1).map_err(|e| e.to_string()))
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
        let _tls = connector.connect(name, tcp).await.unwrap();
        let role = serve.await.unwrap().unwrap();
        assert!(role.is_err(), "an anonymous caller was given a role");
    }

    #[tokio::test]
    async fn a_caller_whose_certificate_names_no_role_is_refused_in_the_handshake() {
        let ca = new_ca("c").unwrap();
        // Signed by the cluster CA, but naming no role (made by hand:
        // `issue` always names one).
        let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
        let issuer = pki::issuer_for_tests("c", &ca_key);
        let mut params = rcgen::CertificateParams::new(vec!["host.example".to_string()]).unwrap();
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &issuer, &ca_key).unwrap();
        let roleless = Issued {
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        };
        let (role, answered) = handshake(
            identity(&server_of(&ca), &[&ca]),
            identity(&roleless, &[&ca]),
        )
        .await;
        let err = role.unwrap_err();
        assert!(!answered);
        assert!(!err.is_empty());
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
