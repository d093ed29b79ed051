//! The one S3 client of Weft's tests, chaos suite and benches: SigV4 header
//! signing over reqwest, path-style, HTTP.
//!
//! Two layers. [`Signer`] turns a method, path, query, headers and payload
//! hash into a signed `reqwest::RequestBuilder` (with a clock offset for
//! skew tests, and the chunk signatures of signed aws-chunked bodies); every
//! caller that needs an unusual request (a streamed or aborted body, an
//! unread response, `UNSIGNED-PAYLOAD`) builds on it. [`S3Client`] adds the
//! operations the chaos workload uses (objects, ranges, listing,
//! multipart). Every call returns the transport outcome as a value
//! (`Err(ClientError)` for a request that got no HTTP answer) so the
//! workload can record it; it never retries, because a retry would hide
//! exactly the indeterminate outcomes the checker must reason about.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A request that got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The per-request deadline passed.
    #[error("timed out")]
    Timeout,
    /// No connection (refused, unreachable, reset before a response).
    #[error("connect: {0}")]
    Connect(String),
    /// Anything else the transport reported.
    #[error("transport: {0}")]
    Transport(String),
}

impl ClientError {
    /// Stable category for error counts.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Timeout => "timeout",
            ClientError::Connect(_) => "connect",
            ClientError::Transport(_) => "transport",
        }
    }

    fn from_reqwest(e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout
        } else if e.is_connect() {
            ClientError::Connect(error_chain(&e))
        } else {
            ClientError::Transport(error_chain(&e))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// An HTTP response with its body read.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `<Code>` of an S3 XML error body.
    pub fn error_code(&self) -> Option<String> {
        xml_values(&String::from_utf8_lossy(&self.body), "Code")
            .into_iter()
            .next()
    }

    /// `http-<status>` plus the S3 code: the error category for counts.
    pub fn error_kind(&self) -> String {
        match self.error_code() {
            Some(c) => format!("http-{} {c}", self.status),
            None => format!("http-{}", self.status),
        }
    }

    /// Success status, and (S3 quirk) no `<Error>` document in a 200 body.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
            && !self
                .body
                .starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>")
            && !self.body.starts_with(b"<Error>")
    }
}

/// Signs requests for one endpoint and key.
#[derive(Clone, Debug)]
pub struct Signer {
    endpoint: String,
    host: String,
    access_key: String,
    secret_key: String,
    region: String,
    clock_offset_secs: i64,
}

/// A signed request, ready to send, with what chunk signing needs. Not
/// `Debug`: it holds the derived signing key.
pub struct SignedRequest {
    /// The request with `authorization`, `x-amz-date`,
    /// `x-amz-content-sha256` and the signed headers set.
    pub builder: reqwest::RequestBuilder,
    /// The signature details (seed of chunk signatures).
    pub signed: weft_common::sigv4::Signed,
}

impl Signer {
    /// A signer for `endpoint` (`http://host:port`).
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> Signer {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let host = endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        Signer {
            endpoint,
            host,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            region: region.to_string(),
            clock_offset_secs: 0,
        }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The same signer with its clock off by `secs` (skew tests).
    pub fn with_clock_offset(&self, secs: i64) -> Signer {
        Signer {
            clock_offset_secs: secs,
            ..self.clone()
        }
    }

    /// The same signer with another secret (bad-signature tests).
    pub fn with_secret(&self, secret: &str) -> Signer {
        Signer {
            secret_key: secret.to_string(),
            ..self.clone()
        }
    }

    /// The same key for another endpoint (a virtual host, say).
    pub fn with_endpoint(&self, endpoint: &str) -> Signer {
        Signer {
            clock_offset_secs: self.clock_offset_secs,
            ..Signer::new(endpoint, &self.access_key, &self.secret_key, &self.region)
        }
    }

    /// Signs `method path?query` with `headers` (sent too) and
    /// `payload_hash` (the body's hex SHA-256, or `UNSIGNED-PAYLOAD` and
    /// the streaming markers), as a request on `http`.
    pub fn sign(
        &self,
        http: &reqwest::Client,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        payload_hash: &str,
    ) -> Result<SignedRequest, ClientError> {
        let signed = weft_common::sigv4::sign(&weft_common::sigv4::Request {
            method,
            host: &self.host,
            path,
            query,
            headers,
            payload_hash,
            access_key: &self.access_key,
            secret_key: &self.secret_key,
            region: &self.region,
            unix_secs: time::OffsetDateTime::now_utc().unix_timestamp() + self.clock_offset_secs,
        });
        let url = format!("{}{}", self.endpoint, signed.path_and_query);
        let method: reqwest::Method = method
            .parse()
            .map_err(|_| ClientError::Transport(format!("bad method {method}")))?;
        let mut builder = http
            .request(method, &url)
            .header("authorization", &signed.authorization)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", &signed.amz_date);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        Ok(SignedRequest { builder, signed })
    }
}

/// The hex SHA-256 of `body`: the payload hash of a signed body.
pub fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `data` as a signed aws-chunked body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`)
/// in chunks of `chunk` bytes, each chunk signed over the previous
/// signature starting from the request's; `corrupt` names a chunk whose
/// signature is deliberately wrong.
pub fn aws_chunked_body(
    signed: &weft_common::sigv4::Signed,
    data: &[u8],
    chunk: usize,
    corrupt: Option<usize>,
) -> Vec<u8> {
    let empty_hash = payload_hash(b"");
    let mut prev = signed.signature.clone();
    let mut out = Vec::with_capacity(data.len() + 256);
    let mut pieces: Vec<&[u8]> = data.chunks(chunk.max(1)).collect();
    pieces.push(&[]);
    for (i, piece) in pieces.iter().enumerate() {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{prev}\n{empty_hash}\n{}",
            signed.amz_date,
            signed.scope,
            payload_hash(piece)
        );
        let mut sig = hex::encode(weft_common::sigv4::hmac(&signed.signing_key, &sts));
        if corrupt == Some(i) {
            sig = sig.chars().rev().collect();
        }
        out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
        prev = sig;
    }
    out
}

/// Sends `req` and reads the whole response.
pub async fn send(req: reqwest::RequestBuilder) -> Result<Response, ClientError> {
    let resp = req.send().await.map_err(ClientError::from_reqwest)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(ClientError::from_reqwest)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// One gateway endpoint with root credentials.
#[derive(Clone)]
pub struct S3Client {
    http: reqwest::Client,
    signer: Signer,
}

pub use weft_common::sigv4::uri_encode;

/// Every `<tag>value</tag>` in an XML body, in order.
pub fn xml_values(body: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = vec![];
    let mut rest = body;
    while let Some(s) = rest.find(&open) {
        let after = &rest[s + open.len()..];
        let Some(e) = after.find(&close) else { break };
        out.push(xml_unescape(&after[..e]));
        rest = &after[e + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl S3Client {
    /// A client for `endpoint` (`http://host:port`), with a per-request timeout.
    pub fn new(
        endpoint: &str,
        access_key: &str,
        secret_key: &str,
        region: &str,
        timeout: Duration,
    ) -> S3Client {
        S3Client {
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(3))
                .timeout(timeout)
                .pool_max_idle_per_host(8)
                .build()
                .expect("static client settings"),
            signer: Signer::new(endpoint, access_key, secret_key, region),
        }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        self.signer.endpoint()
    }

    /// The signer, for requests the operations below do not cover.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Sends one signed request. `path` is `/bucket` or `/bucket/key`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let hash = payload_hash(&body);
        let req = self
            .signer
            .sign(&self.http, method, path, query, headers, &hash)?;
        send(req.builder.body(body)).await
    }

    /// CreateBucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<Response, ClientError> {
        self.request("PUT", &format!("/{bucket}"), &[], &[], Bytes::new())
            .await
    }

    /// PutObject with user metadata.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        meta: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, ClientError> {
        self.request("PUT", &format!("/{bucket}/{key}"), &[], meta, body)
            .await
    }

    /// GetObject, optionally with a `Range: bytes=…` header value.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<&str>,
    ) -> Result<Response, ClientError> {
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        self.request(
            "GET",
            &format!("/{bucket}/{key}"),
            &[],
            &headers,
            Bytes::new(),
        )
        .await
    }

    /// DeleteObject.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<Response, ClientError> {
        self.request(
            "DELETE",
            &format!("/{bucket}/{key}"),
            &[],
            &[],
            Bytes::new(),
        )
        .await
    }

    /// One ListObjectsV2 page.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<Response, ClientError> {
        let mut q = vec![("list-type", "2"), ("prefix", prefix), ("max-keys", "1000")];
        if let Some(t) = token {
            q.push(("continuation-token", t));
        }
        self.request("GET", &format!("/{bucket}"), &q, &[], Bytes::new())
            .await
    }

    /// CreateMultipartUpload.
    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        meta: &[(&str, &str)],
    ) -> Result<Response, ClientError> {
        self.request(
            "POST",
            &format!("/{bucket}/{key}"),
            &[("uploads", "")],
            meta,
            Bytes::new(),
        )
        .await
    }

    /// UploadPart.
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        body: Bytes,
    ) -> Result<Response, ClientError> {
        let n = part.to_string();
        self.request(
            "PUT",
            &format!("/{bucket}/{key}"),
            &[("partNumber", &n), ("uploadId", upload_id)],
            &[],
            body,
        )
        .await
    }

    /// CompleteMultipartUpload with `(part number, etag)` pairs.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<Response, ClientError> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        self.request(
            "POST",
            &format!("/{bucket}/{key}"),
            &[("uploadId", upload_id)],
            &[],
            Bytes::from(xml),
        )
        .await
    }

    /// AbortMultipartUpload.
    pub async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Response, ClientError> {
        self.request(
            "DELETE",
            &format!("/{bucket}/{key}"),
            &[("uploadId", upload_id)],
            &[],
            Bytes::new(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_sigv4() {
        assert_eq!(uri_encode("/b/w0/k 1+é", true), "/b/w0/k%201%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn reads_xml_values() {
        let x = "<R><Key>a&amp;b</Key><Key>c</Key><IsTruncated>false</IsTruncated></R>";
        assert_eq!(xml_values(x, "Key"), vec!["a&b", "c"]);
        assert_eq!(xml_values(x, "Nope"), Vec::<String>::new());
    }
}
