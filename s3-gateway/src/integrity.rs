//! Request body digests (`Content-MD5`, `x-amz-checksum-*`) for every
//! operation, checked before the operation acts.
//!
//! s3s parses these headers but verifies none of them, and hands XML-body
//! operations (DeleteObjects, PutObjectTagging, PutBucketVersioning,
//! CompleteMultipartUpload ...) a parsed body, never the bytes. So the check
//! sits under s3s, on the raw body, in three steps:
//!
//! 1. [`wrap_request`] (in `serve`, before s3s) wraps the body of any request
//!    that claims a digest in a [`CheckedBody`] sharing a [`BodyCheck`].
//! 2. [`arm`] (in the access check, after authentication, before any body
//!    byte is read) validates the claimed values and, knowing the operation,
//!    tells the body which of them describe it.
//! 3. The body hashes what s3s reads; at its end a mismatch turns into a
//!    stream error, so s3s never finishes reading it and the operation never
//!    runs (XML bodies are read in full first) or never commits (a streaming
//!    body's error fails the write). [`BodyCheck::answer`] then replaces
//!    whatever error that produced with `BadDigest`.
//!
//! Step 3 only happens for operations whose body is read to its end (s3s's
//! full-body operations, and the write path's). Any other operation's body
//! is never read, so [`arm`] compares its claimed digests with the empty
//! body's right away (a mismatch is `BadDigest`), and refuses a non-empty
//! body that carries a digest (`InvalidRequest`): nobody would check it.
//!
//! PutObject and UploadPart are the exception: their bodies may be
//! aws-chunked, which only s3s decodes, and are too large to hash twice, so
//! the write path checks them on the decoded bytes (`store_body`) before
//! committing. Any other operation sent aws-chunked with a digest is refused:
//! its digest could not be checked.

use bytes::Bytes;
use http::HeaderMap;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use weft_common::checksum::EtagHasher;

use crate::checksums::{self, Alg};

/// Operations whose body digest the write path verifies after decoding.
const VERIFIED_BY_WRITE_PATH: [&str; 2] = ["PutObject", "UploadPart"];

/// Operations whose body s3s reads in full before calling the operation
/// (its `needs_full_body` routes in s3s 0.14.1: XML bodies, and the bucket
/// policy). Only for these and [`VERIFIED_BY_WRITE_PATH`] is the body read
/// to its end, so only for these can a digest be checked on it; any other
/// operation's body is never read, so [`arm`] checks its digest against the
/// empty body or refuses the body.
const BODY_READ_BY_S3S: [&str; 30] = [
    "CompleteMultipartUpload",
    "CreateBucket",
    "CreateBucketMetadataTableConfiguration",
    "DeleteObjects",
    "PutBucketAccelerateConfiguration",
    "PutBucketAcl",
    "PutBucketAnalyticsConfiguration",
    "PutBucketCors",
    "PutBucketEncryption",
    "PutBucketIntelligentTieringConfiguration",
    "PutBucketInventoryConfiguration",
    "PutBucketLifecycleConfiguration",
    "PutBucketLogging",
    "PutBucketMetricsConfiguration",
    "PutBucketNotificationConfiguration",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutBucketReplication",
    "PutBucketRequestPayment",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutBucketWebsite",
    "PutObjectAcl",
    "PutObjectLegalHold",
    "PutObjectLockConfiguration",
    "PutObjectRetention",
    "PutObjectTagging",
    "PutPublicAccessBlock",
    "RestoreObject",
    "SelectObjectContent",
];

/// Whether `op`'s body is read to its end (by s3s or the write path), so a
/// digest of it can be checked as it is read.
fn body_is_read(op: &str) -> bool {
    VERIFIED_BY_WRITE_PATH.contains(&op) || BODY_READ_BY_S3S.contains(&op)
}

/// Whether the request declares an empty body: `Content-Length: 0`, or no
/// length and no chunked transfer encoding (an HTTP/1.1 request without
/// either has no body).
fn declares_empty_body(headers: &HeaderMap) -> bool {
    match headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => v.as_bytes() == b"0",
        None => !headers.contains_key(http::header::TRANSFER_ENCODING),
    }
}

/// The browser form upload, whose body s3s reads before the access check.
/// Not implemented by Weft: if it ever is, its digests must be checked on
/// the form's file (a unit test holds this).
const POST_OBJECT: &str = "PostObject";

/// Operations whose `x-amz-checksum-*` headers describe the object being
/// assembled, not the request body (checked against the parts instead).
const CHECKSUM_HEADERS_DESCRIBE_OBJECT: [&str; 1] = ["CompleteMultipartUpload"];

/// What the body must hash to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Expected {
    md5: Option<Vec<u8>>,
    checksum: Option<(Alg, Vec<u8>)>,
}

impl Expected {
    fn is_empty(&self) -> bool {
        self.md5.is_none() && self.checksum.is_none()
    }
}

#[derive(Debug)]
enum Plan {
    /// The access check has not run: reading the body is a bug.
    Unarmed,
    /// Someone else verifies (the write path), or nothing is claimed.
    PassThrough,
    /// Hash and compare at the end.
    Check(Expected),
}

/// State shared by a request's body, its access check and `serve`.
#[derive(Debug)]
pub struct BodyCheck {
    plan: Mutex<Plan>,
    verdict: OnceLock<(S3ErrorCode, String)>,
}

impl BodyCheck {
    fn new() -> Self {
        BodyCheck {
            plan: Mutex::new(Plan::Unarmed),
            verdict: OnceLock::new(),
        }
    }

    fn fail(&self, code: S3ErrorCode, message: String) -> std::io::Error {
        let _ = self.verdict.set((code, message.clone()));
        std::io::Error::other(message)
    }

    /// The response to send: `resp` unless the body failed its digest, in
    /// which case the client learns that, not the read error it caused.
    pub fn answer(&self, resp: s3s::HttpResponse) -> s3s::HttpResponse {
        let Some((code, message)) = self.verdict.get() else {
            return resp;
        };
        if resp.status().is_success() {
            // Cannot happen: the body failed before its end was read.
            tracing::error!(
                code = code.as_str(),
                "an operation succeeded although its body failed its digest"
            );
        }
        error_response(code, message)
    }
}

/// The S3 XML error document, as s3s writes it.
pub(crate) fn error_response(code: &S3ErrorCode, message: &str) -> s3s::HttpResponse {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
        escape(code.as_str()),
        escape(message)
    );
    let status = code.status_code().unwrap_or(http::StatusCode::BAD_REQUEST);
    let mut resp = http::Response::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    resp
}

/// Whether s3s will decode the body as aws-chunked (its rule: the payload
/// hash names a streaming mode).
fn is_aws_chunked(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"))
}

fn claims_digest(headers: &HeaderMap) -> bool {
    headers.contains_key("content-md5")
        || checksums::ALL
            .iter()
            .any(|a| headers.contains_key(a.header()))
}

/// Whether s3s takes the request for a browser form upload (its rule: POST
/// with one Content-Type that parses as multipart/form-data). s3s reads such
/// a body while checking the form's signature, before the access check
/// could arm a digest check, so it must not be wrapped.
fn is_post_form(method: &http::Method, headers: &HeaderMap) -> bool {
    if method != http::Method::POST {
        return false;
    }
    let mut values = headers.get_all(http::header::CONTENT_TYPE).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    v.to_str()
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.type_() == mime::MULTIPART && m.subtype() == mime::FORM_DATA)
}

/// Whether [`wrap_request`] wraps the body: it claims a digest, and s3s
/// neither decodes it (aws-chunked) nor reads it before the access check (a
/// form upload).
fn should_wrap(method: &http::Method, headers: &HeaderMap) -> bool {
    claims_digest(headers) && !is_aws_chunked(headers) && !is_post_form(method, headers)
}

/// A request body as it reaches the integrity check.
pub type RequestBody = crate::body_end::ReadToEnd<hyper::body::Incoming>;

/// Prepares a request for s3s: a body that claims a digest (and is not
/// aws-chunked or a form upload) is wrapped so it can be checked; the
/// returned handle gives the final answer.
pub fn wrap_request(req: http::Request<RequestBody>) -> (s3s::HttpRequest, Option<Arc<BodyCheck>>) {
    if !should_wrap(req.method(), req.headers()) {
        return (req.map(s3s::Body::http_body), None);
    }
    let check = Arc::new(BodyCheck::new());
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(check.clone());
    let body = CheckedBody {
        inner: body,
        check: check.clone(),
        hashing: None,
        done: false,
    };
    (
        http::Request::from_parts(parts, s3s::Body::http_body_unsync(body)),
        Some(check),
    )
}

/// The one value of a digest header, if any: a header sent twice is
/// ambiguous (s3s and the write path would read only the first), so it is
/// refused.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> S3Result<Option<&'h http::HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(s3_error!(
            InvalidRequest,
            "{name} was sent more than once; send one value"
        ));
    }
    Ok(first)
}

/// The claimed values, validated: a Content-MD5 that is not the base64 of
/// 16 bytes is `InvalidDigest`; a checksum value that is not the base64 of
/// its algorithm's digest length, more than one checksum, or any digest
/// header sent twice is `InvalidRequest` (AWS's answers). With
/// `checksums_are_body_digests` false (CompleteMultipartUpload, whose
/// `x-amz-checksum-*` headers describe the object and may carry a `-N`
/// suffix), checksum values are left to the operation and not returned.
fn parse_claims(headers: &HeaderMap, checksums_are_body_digests: bool) -> S3Result<Expected> {
    let mut out = Expected::default();
    if let Some(v) = single(headers, "content-md5")? {
        let md5 = v
            .to_str()
            .ok()
            .and_then(|s| checksums::unb64(s.trim()))
            .filter(|b| b.len() == 16)
            .ok_or_else(|| {
                s3_error!(
                    InvalidDigest,
                    "the Content-MD5 you specified is not valid: send the base64 of the body's 16-byte MD5"
                )
            })?;
        out.md5 = Some(md5);
    }
    let mut seen = false;
    for a in checksums::ALL {
        let Some(v) = single(headers, a.header())? else {
            continue;
        };
        if seen {
            return Err(s3_error!(
                InvalidRequest,
                "expecting a single x-amz-checksum- header; multiple checksum types are not allowed"
            ));
        }
        seen = true;
        if !checksums_are_body_digests {
            continue;
        }
        let bytes = v
            .to_str()
            .ok()
            .and_then(|s| checksums::unb64(s.trim()))
            .filter(|b| b.len() == a.digest_bytes())
            .ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "Value for {} header is invalid: send the base64 of the {}-byte {}",
                    a.header(),
                    a.digest_bytes(),
                    a.name()
                )
            })?;
        out.checksum = Some((a, bytes));
    }
    Ok(out)
}

/// Called for every request once s3s knows the operation and the caller is
/// authenticated, before any of the body is read: validates the claimed
/// digests and decides who checks them.
pub fn arm(op: &str, headers: &HeaderMap, body: Option<&BodyCheck>) -> S3Result<()> {
    if op == POST_OBJECT {
        // s3s has read the form already (its body is never wrapped). Weft
        // does not implement PostObject, so s3s answers it as it would
        // without a digest (NotImplemented); nothing is written.
        return Ok(());
    }
    let claims = parse_claims(headers, !CHECKSUM_HEADERS_DESCRIBE_OBJECT.contains(&op))?;
    if VERIFIED_BY_WRITE_PATH.contains(&op) {
        if let Some(check) = body {
            *check.plan.lock().expect("body check lock") = Plan::PassThrough;
        }
        return Ok(());
    }
    if headers.contains_key("x-amz-trailer") {
        return Err(s3_error!(
            NotImplemented,
            "{op} does not accept a checksum trailer (x-amz-trailer); send the checksum in a header"
        ));
    }
    if !body_is_read(op) {
        // Nobody reads this body, so a digest of it would never be compared
        // if it were left to the body: compare it here, with the empty body,
        // or refuse a body that no one would check.
        if claims.is_empty() {
            return Ok(());
        }
        if !declares_empty_body(headers) || is_aws_chunked(headers) {
            return Err(s3_error!(
                InvalidRequest,
                "{op} takes no body: send it without one (and with the digest of the empty body, if any)"
            ));
        }
        if let Some(mismatch) = Hashing::new(claims).finish() {
            return Err(S3Error::with_message(S3ErrorCode::BadDigest, mismatch));
        }
        if let Some(check) = body {
            *check.plan.lock().expect("body check lock") = Plan::PassThrough;
        }
        return Ok(());
    }
    if is_aws_chunked(headers) {
        if !claims.is_empty() {
            return Err(s3_error!(
                NotImplemented,
                "{op} with an aws-chunked body cannot have its Content-MD5 or checksum verified; send the body unchunked"
            ));
        }
        return Ok(());
    }
    let plan = if claims.is_empty() {
        Plan::PassThrough
    } else {
        Plan::Check(claims)
    };
    match body {
        Some(check) => *check.plan.lock().expect("body check lock") = plan,
        None if matches!(plan, Plan::Check(_)) => {
            return Err(s3_error!(
                InternalError,
                "the body digest check is not installed for this request"
            ))
        }
        None => {}
    }
    Ok(())
}

struct Hashing {
    expected: Expected,
    md5: Option<EtagHasher>,
    checksum: Option<s3s::checksum::ChecksumHasher>,
}

impl Hashing {
    fn new(expected: Expected) -> Self {
        let checksum = expected.checksum.as_ref().and_then(|(a, _)| {
            checksums::Spec {
                algs: vec![*a],
                ..Default::default()
            }
            .hasher()
        });
        Hashing {
            md5: expected.md5.as_ref().map(|_| EtagHasher::default()),
            checksum,
            expected,
        }
    }

    fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.checksum {
            h.update(data);
        }
    }

    /// The mismatch, if any.
    fn finish(self) -> Option<String> {
        if let (Some(want), Some(h)) = (&self.expected.md5, self.md5) {
            let got = hex::decode(h.finish_hex()).unwrap_or_default();
            if &got != want {
                return Some(
                    "the Content-MD5 you specified did not match what we received".to_string(),
                );
            }
        }
        if let (Some((alg, want)), Some(h)) = (&self.expected.checksum, self.checksum) {
            let computed = h.finalize();
            let got = checksums::get(&computed, *alg).cloned().unwrap_or_default();
            if checksums::unb64(&got).as_ref() != Some(want) {
                return Some(format!(
                    "the {} you specified did not match the calculated checksum ({got})",
                    alg.header()
                ));
            }
        }
        None
    }
}

/// A request body that hashes itself and fails at its end on a mismatch.
struct CheckedBody {
    inner: RequestBody,
    check: Arc<BodyCheck>,
    hashing: Option<Hashing>,
    done: bool,
}

impl http_body::Body for CheckedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.hashing.is_none() {
            let plan = std::mem::replace(
                &mut *this.check.plan.lock().expect("body check lock"),
                Plan::PassThrough,
            );
            match plan {
                Plan::Unarmed => {
                    this.done = true;
                    return Poll::Ready(Some(Err(this.check.fail(
                        S3ErrorCode::InternalError,
                        "the body was read before its digest check was armed".into(),
                    ))));
                }
                Plan::PassThrough => this.hashing = Some(Hashing::new(Expected::default())),
                Plan::Check(e) => this.hashing = Some(Hashing::new(e)),
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(h)) = (frame.data_ref(), this.hashing.as_mut()) {
                    h.update(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
            Poll::Ready(None) => {
                this.done = true;
                let mismatch = this.hashing.take().and_then(Hashing::finish);
                match mismatch {
                    None => Poll::Ready(None),
                    Some(m) => Poll::Ready(Some(Err(this.check.fail(S3ErrorCode::BadDigest, m)))),
                }
            }
        }
    }

    // Never reports the end before the digest was compared, so every reader
    // polls once more and meets the mismatch.
    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
