//! Whole S3 requests through s3s, the parser of everything an S3 client
//! sends that Weft does not parse itself: SigV4 `Authorization` headers,
//! presigned query strings, aws-chunked bodies and the XML bodies of every
//! operation.
//!
//! The service is s3s's with its default operations (each answers
//! NotImplemented once its input parsed) and an access check that lets
//! anonymous requests through, so unsigned inputs reach the XML parsers.
//! An input can ask to be signed with the service's key (first byte), so
//! signed inputs get past the signature check to the body parsers, the
//! aws-chunked decoder included.
//!
//! Signed inputs are signed at the current time (s3s refuses a signature
//! more than 15 minutes off its clock), so the signature bytes differ
//! from run to run; what reaches the parsers does not, and a reproducer
//! replays as long as its failure does not depend on the signature's
//! value.
//!
//! Input: a mode byte (0 as is, 1 signed with `UNSIGNED-PAYLOAD`, 2 signed
//! as an aws-chunked stream, 3 signed with the body's SHA-256), then
//! `METHOD /path?query`, header lines `name: value`, an empty line, and
//! the body.

use sha2::Digest;
use std::sync::OnceLock;

const ACCESS_KEY: &str = "AKFUZZFUZZFUZZFUZZ01";
const SECRET_KEY: &str = "fuzz-secret-fuzz-secret-fuzz-secret-0000";
const REGION: &str = "us-east-1";
const HOST: &str = "127.0.0.1:9000";

struct DefaultOps;

#[async_trait::async_trait]
impl s3s::S3 for DefaultOps {}

/// Lets every request through, signed or not, so the operation's input is
/// parsed whatever the credentials.
struct Open;

#[async_trait::async_trait]
impl s3s::access::S3Access for Open {
    async fn check(&self, _cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        Ok(())
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    service: s3s::service::S3Service,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let mut b = s3s::service::S3ServiceBuilder::new(DefaultOps);
        b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        b.set_access(Open);
        Harness {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            service: b.build(),
        }
    })
}

/// The request an input describes, or `None` if it names none.
fn request(data: &[u8]) -> Option<http::Request<s3s::Body>> {
    let (&mode, rest) = data.split_first()?;
    let split = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(rest.len());
    let head = std::str::from_utf8(&rest[..split]).ok()?;
    let body = rest.get(split + 2..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let method = http::Method::from_bytes(method.as_bytes()).ok()?;
    let uri: http::Uri = target.parse().ok()?;
    let path = uri.path().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut req = http::Request::builder().method(method.clone()).uri(&uri);
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if mode % 4 != 0 {
        let payload = match mode % 4 {
            1 => "UNSIGNED-PAYLOAD".to_string(),
            2 => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_string(),
            _ => hex::encode(sha2::Sha256::digest(&body)),
        };
        let query: Vec<(String, String)> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect();
        let query: Vec<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signed_headers: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(k, _)| {
                k.starts_with("x-amz-") && k != "x-amz-date" && k != "x-amz-content-sha256"
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let signed = weft_common::sigv4::sign(&weft_common::sigv4::Request {
            method: method.as_str(),
            host: HOST,
            path: &path,
            query: &query,
            headers: &signed_headers,
            payload_hash: &payload,
            access_key: ACCESS_KEY,
            secret_key: SECRET_KEY,
            region: REGION,
            unix_secs: now,
        });
        req = req
            .header("host", HOST)
            .header("x-amz-date", signed.amz_date)
            .header("x-amz-content-sha256", payload)
            .header("authorization", signed.authorization);
    }
    req.body(s3s::Body::from(body)).ok()
}

/// Any request gets an answer, and no input panics the parsers; returns
/// whether the request got past authentication to its operation (its
/// input was parsed).
pub fn s3_request(data: &[u8]) -> bool {
    let Some(req) = request(data) else {
        return false;
    };
    let h = harness();
    let answer = h.rt.block_on(async {
        let resp = h.service.call(req).await?;
        // Drain the body too: streamed errors surface there.
        let status = resp.status();
        let mut body = resp.into_body();
        let _ = body.store_all_limited(1 << 20).await;
        Ok::<_, s3s::HttpError>(status)
    });
    match answer {
        Ok(status) => {
            assert!(
                status.as_u16() >= 200 && status.as_u16() < 600,
                "an answer with status {status}"
            );
            status != http::StatusCode::FORBIDDEN
        }
        Err(_) => false,
    }
}
