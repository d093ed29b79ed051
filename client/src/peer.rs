//! Who is calling an internal endpoint, and whether that role may.
//!
//! The internal listener ([`crate::listener`]) attaches a [`Peer`] to every
//! request (axum's `ConnectInfo`); each endpoint names the roles it serves
//! and asks [`require`]. Health and metrics are the only paths that ask
//! nothing.

use crate::pki::Role;
use std::net::SocketAddr;

/// How the caller on a connection was identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identified {
    /// Mutual TLS: its certificate names this role.
    Role(Role),
    /// TLS without a client certificate (a probe, a scraper).
    Anonymous,
    /// Plain HTTP: the process runs with `--insecure-internal` and checks
    /// nobody.
    Insecure,
    /// A call inside one process (the simulator), where there is no
    /// connection to authenticate.
    InProcess,
}

/// The caller of an internal endpoint.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its socket address (unspecified in process).
    pub addr: SocketAddr,
    /// What it proved.
    pub identified: Identified,
    /// Its certificate, verified in the handshake (mutual TLS only): what
    /// else it names, such as a data node's id.
    pub cert: Option<std::sync::Arc<rustls_pki_types::CertificateDer<'static>>>,
}

impl Peer {
    /// The caller of an in-process call.
    pub fn in_process() -> Peer {
        Peer {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            identified: Identified::InProcess,
            cert: None,
        }
    }

    /// Refuses a data node that speaks for another node than the one its
    /// certificate names (registration, heartbeats, polls for work, its
    /// own shards' records). Other roles are judged by path and command,
    /// and plain or in-process callers are not checked at all.
    /// `allow_unbound` lets a certificate that names no node at all through
    /// (`Ok(true)`): an upgrade's window, until every data node's
    /// certificate is re-issued with its node id.
    pub fn may_act_as_node(&self, node: u64, allow_unbound: bool) -> Result<bool, String> {
        if self.identified != Identified::Role(Role::Datad) {
            return Ok(false);
        }
        match &self.cert {
            Some(cert) if crate::pki::names_node(cert, node) => Ok(false),
            Some(cert) if allow_unbound && crate::pki::node_markers(cert) == 0 => Ok(true),
            _ => Err(format!(
                "this data node certificate does not name node {node}: a data node may speak only for the node its certificate names; issue it with `weft cert issue --role datad --node-id {node}`"
            )),
        }
    }
}

/// Why a caller was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No certificate.
    #[error("{what} needs a client certificate from the cluster CA naming one of the roles {allowed}; the caller presented none")]
    Anonymous {
        /// The operation.
        what: String,
        /// Roles that may.
        allowed: String,
    },
    /// A certificate for another role.
    #[error("{what} is not allowed for role {role}; it needs one of the roles {allowed}")]
    WrongRole {
        /// The operation.
        what: String,
        /// The caller's role.
        role: &'static str,
        /// Roles that may.
        allowed: String,
    },
    /// The request did not come through an internal listener (a server
    /// wired without one): nobody vouches for the caller.
    #[error(
        "{what}: the caller is unknown (the request did not arrive through an internal listener)"
    )]
    Unknown {
        /// The operation.
        what: String,
    },
}

/// `metad, datad`: roles for a message.
pub fn role_names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `peer` may do `what`, which `allowed` roles may do. Plain HTTP
/// (`--insecure-internal`) and in-process calls are let through: nothing
/// identifies their callers.
pub fn require(peer: Option<&Peer>, allowed: &[Role], what: &str) -> Result<(), Denied> {
    match peer.map(|p| p.identified) {
        Some(Identified::Role(role)) if allowed.contains(&role) => Ok(()),
        Some(Identified::Role(role)) => Err(Denied::WrongRole {
            what: what.to_string(),
            role: role.name(),
            allowed: role_names(allowed),
        }),
        Some(Identified::Anonymous) => Err(Denied::Anonymous {
            what: what.to_string(),
            allowed: role_names(allowed),
        }),
        Some(Identified::Insecure | Identified::InProcess) => Ok(()),
        None => Err(Denied::Unknown {
            what: what.to_string(),
        }),
    }
}

impl Denied {
    /// 401 for a caller that proved nothing, 403 for one whose role may not.
    pub fn status(&self) -> u16 {
        match self {
            Denied::WrongRole { .. } => 403,
            Denied::Anonymous { .. } | Denied::Unknown { .. } => 401,
        }
    }
}

/// The request's caller, as the internal listener (or the simulator)
/// attached it; `None` when nothing did.
pub fn of(req: &axum::extract::Request) -> Option<Peer> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .map(|c| c.0.clone())
}

/// Refusal as an internal RPC error body.
pub fn refusal(denied: &Denied) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = axum::http::StatusCode::from_u16(denied.status())
        .unwrap_or(axum::http::StatusCode::FORBIDDEN);
    let body = weft_common::rpc::RpcErrorBody {
        code: weft_common::rpc::RpcErrorCode::Unauthorized,
        message: denied.to_string(),
        leader_addr: None,
        damage: None,
    };
    (status, axum::Json(body)).into_response()
}

/// Middleware: refuses a request whose caller's role `rule` does not list
/// for its path (`None`: the path is open, as `/health` and `/metrics`
/// are), before anything reads the body, and reports the refusal to the
/// audit chain through `audit`.
pub async fn guard(
    rule: fn(&str) -> Option<&'static [Role]>,
    audit: crate::audit_report::Reporter,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(allowed) = rule(req.uri().path()) {
        let what = format!("{} {}", req.method(), req.uri().path());
        let peer = of(&req);
        if let Err(denied) = require(peer.as_ref(), allowed, &what) {
            tracing::info!(%denied, "internal request refused");
            report(
                &audit,
                peer.as_ref(),
                &denied,
                req.method().as_str(),
                req.uri().path(),
            );
            return refusal(&denied);
        }
    }
    next.run(req).await
}

/// Who a caller is, for an audit record, by host: its role and IP address
/// (the port changes with every connection, so a flood from one host stays
/// one counted event).
pub fn describe_host(peer: Option<&Peer>) -> String {
    match peer {
        Some(p) => match p.identified {
            Identified::Role(role) => format!("{} at {}", role.name(), p.addr.ip()),
            Identified::Anonymous => format!("no certificate at {}", p.addr.ip()),
            Identified::Insecure => format!("plain at {}", p.addr.ip()),
            Identified::InProcess => "in process".to_string(),
        },
        None => "unknown caller".to_string(),
    }
}

/// Reports a refusal to the audit chain: a caller that proved nothing is an
/// authentication failure, one whose role may not is a denial.
pub fn report(
    audit: &crate::audit_report::Reporter,
    peer: Option<&Peer>,
    denied: &Denied,
    method: &str,
    path: &str,
) {
    use weft_common::audit::EventKind;
    let kind = match denied {
        Denied::WrongRole { .. } => EventKind::Denial,
        Denied::Anonymous { .. } | Denied::Unknown { .. } => EventKind::AuthFailure,
    };
    let actor = describe_host(peer);
    let outcome = match denied {
        Denied::WrongRole { allowed, .. } => format!("denied: needs role {allowed}"),
        Denied::Anonymous { .. } => "denied: no client certificate".to_string(),
        Denied::Unknown { .. } => "denied: unidentified".to_string(),
    };
    audit.report(kind, &actor, method, path, &outcome);
}

/// Every role: what a path that judges the caller further inside asks
/// for first (an anonymous caller gets no further).
pub const ANY_ROLE: &[Role] = &[Role::Metad, Role::Datad, Role::Gateway, Role::Admin];

/// Wraps `router` so that, with `token` set, `/metrics` answers only a
/// caller that sends it (`Authorization: Bearer TOKEN`, what Prometheus'
/// `bearer_token` sends) or presents a cluster certificate; without a
/// token it stays open like health, which always is.
pub fn with_metrics_token<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    token: Option<String>,
) -> axum::Router<S> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return router;
    };
    let token: std::sync::Arc<str> = token.into();
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let token = token.clone();
            async move {
                if req.uri().path() != "/metrics" || metrics_caller_ok(&req, &token) {
                    return next.run(req).await;
                }
                use axum::response::IntoResponse;
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                    "metrics need the metrics token (Authorization: Bearer TOKEN) or a cluster certificate\n",
                )
                    .into_response()
            }
        },
    ))
}

/// Whether a `/metrics` caller holds a cluster certificate (or is in
/// process) or sent the token.
fn metrics_caller_ok(req: &axum::extract::Request, token: &str) -> bool {
    if matches!(
        of(req).map(|p| p.identified),
        Some(Identified::Role(_) | Identified::InProcess)
    ) {
        return true;
    }
    let sent = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Same time whatever the first differing byte.
    sent.is_some_and(|s| {
        s.len() == token.len()
            && s.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// Health and metrics: open to probes and scrapers that present no
/// certificate.
pub fn is_open_path(path: &str) -> bool {
    path == "/metrics" || path == "/health" || path.starts_with("/health/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(identified: Identified) -> Peer {
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            identified,
            cert: None,
        }
    }

    #[test]
    fn only_the_named_roles_pass_when_callers_are_identified() {
        let allowed = [Role::Gateway, Role::Datad];
        assert!(require(Some(&peer(Identified::Role(Role::Gateway))), &allowed, "x").is_ok());
        let e = require(
            Some(&peer(Identified::Role(Role::Admin))),
            &allowed,
            "read x",
        )
        .unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.to_string().contains("role admin"), "{e}");
        assert!(e.to_string().contains("gateway, datad"), "{e}");
        let e = require(Some(&peer(Identified::Anonymous)), &allowed, "x").unwrap_err();
        assert_eq!(e.status(), 401);
        assert_eq!(require(None, &allowed, "x").unwrap_err().status(), 401);
    }

    #[test]
    fn insecure_and_in_process_callers_are_not_checked() {
        assert!(require(Some(&peer(Identified::Insecure)), &[Role::Metad], "x").is_ok());
        assert!(require(Some(&Peer::in_process()), &[Role::Metad], "x").is_ok());
    }
}
