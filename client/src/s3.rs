//! A small S3 client: SigV4 header signing over reqwest, path-style, HTTP.
//!
//! Only what the chaos workload, the benches and tests need (objects, ranges, listing, multipart). Every
//! call returns the transport outcome as a value (`Err(ClientError)` for a
//! request that got no HTTP answer) so the workload can record it; it never
//! retries, because a retry would hide exactly the indeterminate outcomes the
//! checker must reason about.

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

/// One gateway endpoint with root credentials.
#[derive(Clone)]
pub struct S3Client {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    access_key: String,
    secret_key: String,
    region: String,
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
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let host = endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        S3Client {
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(3))
                .timeout(timeout)
                .pool_max_idle_per_host(8)
                .build()
                .expect("static client settings"),
            endpoint,
            host,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            region: region.to_string(),
        }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
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
        let payload_hash = hex::encode(Sha256::digest(&body));
        let signed = weft_common::sigv4::sign(&weft_common::sigv4::Request {
            method,
            host: &self.host,
            path,
            query,
            headers,
            payload_hash: &payload_hash,
            access_key: &self.access_key,
            secret_key: &self.secret_key,
            region: &self.region,
            unix_secs: time::OffsetDateTime::now_utc().unix_timestamp(),
        });
        let url = format!("{}{}", self.endpoint, signed.path_and_query);
        let method: reqwest::Method = method
            .parse()
            .map_err(|_| ClientError::Transport(format!("bad method {method}")))?;
        let mut req = self
            .http
            .request(method, &url)
            .header("authorization", signed.authorization)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", signed.amz_date);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(ClientError::from_reqwest)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(ClientError::from_reqwest)?;
        Ok(Response {
            status,
            headers,
            body,
        })
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
