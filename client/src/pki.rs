//! The cluster's certificates: a cluster CA, and certificates it issues to
//! processes and operators, each naming one role.
//!
//! A role rides in the certificate as a DNS subject alternative name,
//! `<role>.role.weft.invalid` (`.invalid` is reserved: it never resolves,
//! so the marker cannot name a real host). A DNS name rather than a private
//! extension, because the verifier every endpoint already runs (webpki)
//! can check a DNS name with no certificate parser of our own: the only
//! bytes Weft reads from a peer's certificate are those webpki parses.
//! A certificate names exactly one role; one with none or several is
//! refused by [`role_of`] (and so in the handshake, `crate::mtls`). A
//! certificate may serve only the hosts it names (no wildcards), and one
//! with no host, as every `admin` certificate, may only authenticate a
//! client.
//!
//! Keys are ECDSA P-256. The CA's key signs; its certificate is what every
//! endpoint trusts (more than one during a rotation).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::fmt;
use std::net::IpAddr;
use thiserror::Error;

/// What a certificate allows its holder to do inside the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A metadata voter: raft with its peers, answers gateways and data
    /// nodes.
    Metad,
    /// A data node: serves shards, reports to metad, reads peers' shards
    /// for repair.
    Datad,
    /// An S3 gateway: reads and writes metadata and shards for clients.
    Gateway,
    /// An operator or tool: the admin API, secrets included.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Metad, Role::Datad, Role::Gateway, Role::Admin];

    /// The role's name, as `weft cert issue --role` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Metad => "metad",
            Role::Datad => "datad",
            Role::Gateway => "gateway",
            Role::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Result<Role, PkiError> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| PkiError::UnknownRole(name.to_string()))
    }

    /// The DNS name that carries the role in a certificate.
    pub fn marker(self) -> String {
        format!("{}.role.weft.invalid", self.name())
    }
}

/// The DNS name that binds a data node's certificate to its node id, like
/// the role marker: metad lets a data node certificate register, heartbeat
/// and poll for work only as the node id it names, so one stolen data node
/// certificate cannot stand in for another node.
pub fn node_marker(node: u64) -> String {
    format!("{node}.node.weft.invalid")
}

/// Whether `cert` names data node `node` ([`node_marker`]). A wildcard
/// (`*.node.weft.invalid`) would name every node, so a certificate that
/// also matches a label no node id has is refused, as several roles are;
/// so is one that names more than one node.
pub fn names_node(cert: &CertificateDer<'_>, node: u64) -> bool {
    node_markers(cert) == 1
        && webpki::EndEntityCert::try_from(cert).is_ok_and(|ee| {
            let names = |name: String| {
                ServerName::try_from(name)
                    .is_ok_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
            };
            names(node_marker(node)) && !names("any.node.weft.invalid".to_string())
        })
}

/// How many node markers a certificate's bytes carry (a DNS name in a
/// certificate is its ASCII bytes, so a count of them needs no parser):
/// 0 for a certificate issued without `--node-id`.
pub fn node_markers(cert: &CertificateDer<'_>) -> usize {
    const MARKER: &[u8] = b".node.weft.invalid";
    cert.as_ref()
        .windows(MARKER.len())
        .filter(|w| w.eq_ignore_ascii_case(MARKER))
        .count()
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What can go wrong making or reading certificates.
#[derive(Debug, Error)]
pub enum PkiError {
    /// `--role` named no role.
    #[error("unknown role {0:?}: use metad, datad, gateway or admin")]
    UnknownRole(String),
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file held no certificate, or something unreadable.
    #[error("{what}: {why}")]
    BadPem {
        /// Which file or value.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// The certificate does not chain to a trusted CA, has expired, or is
    /// not for this use.
    #[error("certificate not trusted: {0}")]
    Untrusted(String),
    /// The certificate names no role, or more than one.
    #[error("certificate names {0}: a cluster certificate names exactly one role")]
    Roles(String),
    /// A `--host` that would give the certificate more than its holder's
    /// own names.
    #[error("host {host:?} refused: {why}")]
    BadHost {
        /// The host.
        host: String,
        /// Why.
        why: &'static str,
    },
    /// A validity the CA cannot vouch for.
    #[error("a certificate is valid for 1 to {MAX_DAYS} days, not {0}")]
    BadDays(i64),
}

/// The longest a certificate may be valid: no longer than the CA itself.
pub const MAX_DAYS: i64 = CA_DAYS - 1;
/// How long a cluster CA is valid.
const CA_DAYS: i64 = 3650;

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8). Keep it at mode 0600.
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The CA's subject: the leaves name it as their issuer, byte for byte, so
/// it is rebuilt from `cluster` whenever the CA signs.
fn ca_params(cluster: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, cluster);
    dn.push(DnType::CommonName, format!("Weft cluster CA ({cluster})"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    Ok(params)
}

/// The CA certificate of `cluster` rebuilt from its key, as `issue` does:
/// for tests that sign certificates `issue` would refuse to make.
#[cfg(test)]
pub(crate) fn issuer_for_tests(cluster: &str, key: &KeyPair) -> rcgen::Certificate {
    ca_params(cluster)
        .expect("CA parameters")
        .self_signed(key)
        .expect("CA self-signs")
}

/// A new cluster CA named for `cluster`.
pub fn new_ca(cluster: &str) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(cluster)?.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `role` to `name`, signed by the CA of
/// `cluster` whose key is `ca_key_pem`, valid for `days`. `hosts` (DNS
/// names or IP addresses) are where a server holding it is reached; a
/// certificate with none (an operator's, or any `admin`) may only
/// authenticate a client. No wildcard and no marker is accepted as a
/// host.
pub fn issue(
    cluster: &str,
    ca_key_pem: &str,
    role: Role,
    name: &str,
    hosts: &[String],
    days: i64,
) -> Result<Issued, PkiError> {
    issue_bound(cluster, ca_key_pem, role, name, hosts, None, days)
}

/// [`issue`], and with `node` a data node certificate bound to that node
/// id ([`node_marker`]); only a data node certificate names one.
pub fn issue_bound(
    cluster: &str,
    ca_key_pem: &str,
    role: Role,
    name: &str,
    hosts: &[String],
    node: Option<u64>,
    days: i64,
) -> Result<Issued, PkiError> {
    if node.is_some() && role != Role::Datad {
        return Err(PkiError::BadHost {
            host: format!("node {}", node.unwrap_or_default()),
            why: "only a data node certificate names a node id",
        });
    }
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(PkiError::BadDays(days));
    }
    for host in hosts {
        let lower = host.to_ascii_lowercase();
        if lower.contains('*') {
            return Err(PkiError::BadHost {
                host: host.clone(),
                why: "a wildcard would let the holder stand in for every host it matches",
            });
        }
        if lower.ends_with(".weft.invalid") {
            return Err(PkiError::BadHost {
                host: host.clone(),
                why: "roles and node ids are given with --role and --node-id, one per certificate",
            });
        }
    }
    if role == Role::Admin && !hosts.is_empty() {
        return Err(PkiError::BadHost {
            host: hosts[0].clone(),
            why: "an admin certificate only authenticates a client; it serves nothing",
        });
    }
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| PkiError::BadPem {
        what: "the CA key".into(),
        why: e.to_string(),
    })?;
    let ca = ca_params(cluster)?.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, cluster);
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let mut sans = vec![SanType::DnsName(role.marker().try_into()?)];
    if let Some(node) = node {
        sans.push(SanType::DnsName(node_marker(node).try_into()?));
    }
    for host in hosts {
        sans.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into()?),
        });
    }
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if !hosts.is_empty() {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The DER certificates in a PEM text (`what` names it in errors).
pub fn certs_from_pem(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::BadPem {
            what: what.to_string(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::BadPem {
            what: what.to_string(),
            why: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

/// The one role `cert` names (its chain is the TLS verifier's to check).
pub fn role_of(cert: &CertificateDer<'_>) -> Result<Role, PkiError> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| PkiError::Untrusted(format!("unreadable certificate: {e}")))?;
    let named: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| {
            ServerName::try_from(r.marker())
                .is_ok_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
        })
        .collect();
    match named.as_slice() {
        [one] => Ok(*one),
        [] => Err(PkiError::Roles("no role".into())),
        many => Err(PkiError::Roles(format!(
            "several roles ({})",
            many.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Checks that `cert` chains to one of `trusted` and may serve TLS (it was
/// issued with hosts); then returns its role.
pub fn verify_server(
    cert: &CertificateDer<'_>,
    trusted: &[CertificateDer<'_>],
) -> Result<Role, PkiError> {
    verify_for(cert, trusted, webpki::KeyUsage::server_auth())
}

/// Checks that `cert` chains to one of `trusted` (CA certificates), is in
/// its validity period now, and may authenticate a TLS client; then
/// returns its role. What an endpoint's handshake does, for tools and
/// tests that hold a certificate outside a connection.
pub fn verify_client(
    cert: &CertificateDer<'_>,
    trusted: &[CertificateDer<'_>],
) -> Result<Role, PkiError> {
    verify_for(cert, trusted, webpki::KeyUsage::client_auth())
}

fn verify_for(
    cert: &CertificateDer<'_>,
    trusted: &[CertificateDer<'_>],
    usage: webpki::KeyUsage,
) -> Result<Role, PkiError> {
    let anchors: Vec<_> = trusted
        .iter()
        .map(|ca| {
            webpki::anchor_from_trusted_cert(ca)
                .map_err(|e| PkiError::Untrusted(format!("unreadable CA certificate: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| PkiError::Untrusted(format!("unreadable certificate: {e}")))?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map_err(|e| PkiError::Untrusted(e.to_string()))?;
    role_of(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        certs_from_pem(pem, "test").unwrap().remove(0)
    }

    #[test]
    fn each_role_issued_by_the_ca_is_verified_and_read_back() {
        let ca = new_ca("test-cluster").unwrap();
        for role in Role::ALL {
            // An admin certificate serves nothing, so it names no host.
            let hosts: Vec<String> = if role == Role::Admin {
                vec![]
            } else {
                vec!["127.0.0.1".into(), "localhost".into()]
            };
            let leaf = issue(
                "test-cluster",
                &ca.key_pem,
                role,
                &format!("{role}-1"),
                &hosts,
                30,
            )
            .unwrap();
            assert_eq!(
                verify_client(&der(&leaf.cert_pem), &[der(&ca.cert_pem)]).unwrap(),
                role
            );
        }
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused() {
        let ours = new_ca("ours").unwrap();
        let theirs = new_ca("ours").unwrap();
        let leaf = issue("ours", &theirs.key_pem, Role::Admin, "mallory", &[], 30).unwrap();
        let err = verify_client(&der(&leaf.cert_pem), &[der(&ours.cert_pem)]).unwrap_err();
        assert!(matches!(err, PkiError::Untrusted(_)), "{err}");
    }

    #[test]
    fn during_a_rotation_both_cas_are_trusted() {
        let old = new_ca("c").unwrap();
        let new = new_ca("c").unwrap();
        let trusted = [der(&old.cert_pem), der(&new.cert_pem)];
        for ca in [&old, &new] {
            let leaf = issue("c", &ca.key_pem, Role::Datad, "d1", &[], 30).unwrap();
            assert_eq!(
                verify_client(&der(&leaf.cert_pem), &trusted).unwrap(),
                Role::Datad
            );
        }
    }

    #[test]
    fn a_certificate_without_a_role_or_with_two_is_refused() {
        // Issued by hand: `issue` always names exactly one role.
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params("c").unwrap().self_signed(&ca_key).unwrap();
        for sans in [
            vec!["host.example".to_string()],
            vec![Role::Gateway.marker(), Role::Admin.marker()],
            vec!["*.role.weft.invalid".to_string()],
        ] {
            let mut params = CertificateParams::new(sans).unwrap();
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().unwrap();
            let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
            let err = role_of(leaf.der()).unwrap_err();
            assert!(matches!(err, PkiError::Roles(_)), "{err}");
        }
    }

    #[test]
    fn wildcards_role_markers_admin_hosts_and_long_validity_are_refused() {
        let ca = new_ca("c").unwrap();
        let try_issue = |role: Role, host: &str, days: i64| {
            let hosts: Vec<String> = [host]
                .into_iter()
                .filter(|h| !h.is_empty())
                .map(String::from)
                .collect();
            issue("c", &ca.key_pem, role, "x", &hosts, days)
        };
        for (role, host) in [
            (Role::Gateway, "*.internal"),
            (Role::Datad, "admin.role.weft.invalid"),
            (Role::Admin, "127.0.0.1"),
        ] {
            let err = try_issue(role, host, 30).unwrap_err();
            assert!(
                matches!(err, PkiError::BadHost { .. }),
                "{role} {host}: {err}"
            );
        }
        for days in [0, MAX_DAYS + 1, i64::MAX] {
            let err = try_issue(Role::Metad, "", days).unwrap_err();
            assert!(matches!(err, PkiError::BadDays(_)), "{days}: {err}");
        }
        assert!(try_issue(Role::Metad, "", MAX_DAYS).is_ok());
    }

    #[test]
    fn a_data_node_certificate_names_only_the_node_it_was_issued_for() {
        let ca = new_ca("c").unwrap();
        let hosts = vec!["d4.internal".to_string()];
        let bound = der(
            &issue_bound("c", &ca.key_pem, Role::Datad, "d4", &hosts, Some(4), 30)
                .unwrap()
                .cert_pem,
        );
        assert!(names_node(&bound, 4));
        assert!(!names_node(&bound, 40));
        assert!(!names_node(&bound, 5));
        assert_eq!(role_of(&bound).unwrap(), Role::Datad);
        // Unbound: names no node at all.
        let unbound = der(&issue("c", &ca.key_pem, Role::Datad, "d", &hosts, 30)
            .unwrap()
            .cert_pem);
        assert!(!names_node(&unbound, 4));
        // Only data node certificates carry one, and nobody passes one as a host.
        let err =
            issue_bound("c", &ca.key_pem, Role::Gateway, "g", &hosts, Some(4), 30).unwrap_err();
        assert!(matches!(err, PkiError::BadHost { .. }), "{err}");
        for host in [node_marker(4), "2.NODE.weft.INVALID".to_string()] {
            let err = issue("c", &ca.key_pem, Role::Datad, "x", &[host], 30).unwrap_err();
            assert!(matches!(err, PkiError::BadHost { .. }), "{err}");
        }
        assert_eq!(node_markers(&bound), 1);
        assert_eq!(node_markers(&unbound), 0);
        // A wildcard, signed by hand (issue refuses one), names no node.
        let ca_key = KeyPair::from_pem(&ca.key_pem).unwrap();
        let issuer = issuer_for_tests("c", &ca_key);
        let mut params = CertificateParams::new(vec![
            Role::Datad.marker(),
            "*.node.weft.invalid".to_string(),
        ])
        .unwrap();
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(&KeyPair::generate().unwrap(), &issuer, &ca_key)
            .unwrap();
        assert!(!names_node(leaf.der(), 4));
    }

    #[test]
    fn only_a_certificate_with_hosts_may_serve() {
        let ca = new_ca("c").unwrap();
        let anchors = [webpki::anchor_from_trusted_cert(&der(&ca.cert_pem))
            .unwrap()
            .to_owned()];
        let serves = |hosts: &[String]| {
            let leaf = der(&issue("c", &ca.key_pem, Role::Datad, "d", hosts, 30)
                .unwrap()
                .cert_pem);
            webpki::EndEntityCert::try_from(&leaf)
                .unwrap()
                .verify_for_usage(
                    webpki::ALL_VERIFICATION_ALGS,
                    &anchors,
                    &[],
                    UnixTime::now(),
                    webpki::KeyUsage::server_auth(),
                    None,
                    None,
                )
                .is_ok()
        };
        assert!(serves(&["127.0.0.1".to_string()]));
        assert!(!serves(&[]), "a client-only certificate served");
    }

    #[test]
    fn role_names_round_trip_and_unknown_ones_are_refused() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()).unwrap(), role);
        }
        assert!(matches!(Role::parse("root"), Err(PkiError::UnknownRole(_))));
    }

    #[test]
    fn debug_output_of_an_issued_pair_never_shows_the_key() {
        let ca = new_ca("c").unwrap();
        let shown = format!("{ca:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(ca.key_pem.contains("PRIVATE KEY"));
    }
}
