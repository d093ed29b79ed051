//! An admin API call's request head and who made it: over TLS, a client
//! certificate from the cluster CA naming the `admin` role authenticates a
//! call by itself, as the root key's signature does (docs/security.md,
//! "The admin endpoint").

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use weft_client::peer::{Identified, Peer};
use weft_client::pki::Role;

/// What the admin API authenticates a call by.
#[derive(Clone, Debug)]
pub struct AdminRequest {
    /// The method (signed).
    pub method: Method,
    /// The path and query (signed).
    pub uri: Uri,
    /// The headers (the signature or token is in `Authorization`).
    pub headers: HeaderMap,
    /// The caller presented an admin certificate.
    pub admin_cert: bool,
    /// The caller, as the listener identified it.
    pub peer: Option<Peer>,
}

impl<S: Send + Sync> FromRequestParts<S> for AdminRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .map(|c| c.0.clone());
        let role = peer.as_ref().map(|p| p.identified);
        Ok(AdminRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            admin_cert: role == Some(Identified::Role(Role::Admin)),
            peer,
        })
    }
}
