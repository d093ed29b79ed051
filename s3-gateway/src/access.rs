//! The s3s access check: the one hook that runs for every request after its
//! signature is verified and its operation known, and before its body is
//! read: the place for checks that need the operation but must come before
//! any data is read or written. Refusals of inputs Weft does not honour
//! (refusals.rs) and digest arming (integrity.rs) run here.

use s3s::access::{S3Access, S3AccessContext};
use s3s::S3Result;
use std::sync::Arc;

use crate::integrity::{self, BodyCheck};

/// Installed on the S3 service by `build_service`.
pub struct Gate;

#[async_trait::async_trait]
impl S3Access for Gate {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        // s3s's default check, kept: unsigned requests are refused.
        let Some(creds) = cx.credentials() else {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        };
        // Verified by s3s before this hook runs: from here on the request
        // acts for this key (the audit chain names it).
        weft_client::audit_report::set_principal(format!("key {}", creds.access_key));
        let body = cx.extensions_mut().get::<Arc<BodyCheck>>().cloned();
        let op = cx.s3_op().name();
        crate::refusals::check(op, cx.headers(), cx.uri().query())?;
        integrity::arm(op, cx.headers(), body.as_deref())
    }
}
