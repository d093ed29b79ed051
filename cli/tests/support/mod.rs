//! Test support: a started dev cluster and a small SigV4-signing S3 client,
//! so integration tests drive the gateway exactly as an SDK would.
#![allow(dead_code)]

pub mod stall_proxy;
pub mod zones;

use std::time::Duration;
use weft_cli::dev_cluster::{DevCluster, DevClusterConfig};

/// A cluster in a temporary directory (kept alive with it).
pub struct TestCluster {
    pub cluster: Option<DevCluster>,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    pub async fn start() -> TestCluster {
        Self::start_with(|_| {}).await
    }

    /// A cluster whose config `tweak` adjusts first (e.g. TLS on).
    pub async fn start_with(tweak: impl FnOnce(&mut DevClusterConfig)) -> TestCluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = DevClusterConfig::ephemeral(dir.path());
        tweak(&mut cfg);
        let cluster = DevCluster::start(cfg).await.expect("start cluster");
        TestCluster {
            cluster: Some(cluster),
            dir,
        }
    }

    pub fn c(&self) -> &DevCluster {
        self.cluster.as_ref().expect("cluster running")
    }

    pub fn c_mut(&mut self) -> &mut DevCluster {
        self.cluster.as_mut().expect("cluster running")
    }

    pub fn root_client(&self) -> S3Client {
        let c = self.c();
        S3Client::new(
            &c.s3_endpoint(),
            &c.credentials().access_key,
            &c.credentials().secret_key,
            c.region(),
        )
    }

    pub async fn restart(&mut self) {
        let c = self.cluster.take().expect("cluster running");
        self.cluster = Some(c.restart().await.expect("restart cluster"));
    }

    pub async fn shutdown(mut self) {
        if let Some(c) = self.cluster.take() {
            c.shutdown().await;
        }
    }
}

/// Runs the `weft` binary with `args` and `--admin` pointed at the
/// cluster, its credentials and data directory in the environment, as an
/// operator's shell has them; (success, stdout, stderr).
pub async fn weft_cli(c: &DevCluster, args: &[&str]) -> (bool, String, String) {
    let admin = c.admin_endpoint();
    let creds = c.credentials().clone();
    let data = c.config().data_dir.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(&args)
            .args(["--admin", &admin])
            .env("WEFT_DATA", &data)
            .env("WEFT_ROOT_ACCESS_KEY", &creds.access_key)
            .env("WEFT_ROOT_SECRET_KEY", &creds.secret_key)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an S3 XML error body.
    pub fn error_code(&self) -> Option<String> {
        let t = self.text();
        let s = t.find("<Code>")? + 6;
        let e = t[s..].find("</Code>")? + s;
        Some(t[s..e].to_string())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// The tests' S3 client: `weft_client::s3`'s signer (the one the chaos
/// suite and the benches use) with asserting helpers on top. A request that
/// gets no HTTP answer panics, except where a test provokes that on purpose
/// (status 0).
#[derive(Clone)]
pub struct S3Client {
    http: reqwest::Client,
    signer: Signer,
}

use weft_client::s3::{aws_chunked_body, payload_hash, Signer};

impl S3Client {
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> Self {
        S3Client {
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
            signer: Signer::new(endpoint, access_key, secret_key, region),
        }
    }

    /// A client whose clock is off by `secs` (to test skew checks).
    pub fn with_clock_offset(&self, secs: i64) -> Self {
        let mut c = self.clone();
        c.signer = self.signer.with_clock_offset(secs);
        c
    }

    /// A client whose endpoint is a virtual host (`bucket.localhost:port`)
    /// resolved to `addr` without DNS.
    pub fn virtual_host(&self, bucket: &str, addr: std::net::SocketAddr) -> Self {
        let mut c = self.clone();
        let host = format!("{bucket}.localhost");
        c.http = reqwest::Client::builder()
            .resolve(&host, addr)
            .build()
            .expect("client");
        c.signer = self
            .signer
            .with_endpoint(&format!("http://{host}:{}", addr.port()));
        c
    }

    pub fn with_secret(&self, secret: &str) -> Self {
        let mut c = self.clone();
        c.signer = self.signer.with_secret(secret);
        c
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        self.request_with_payload_hash(method, path, query, extra_headers, body, None)
            .await
    }

    /// Like `request`, with `x-amz-content-sha256` set to `payload_hash`
    /// (e.g. `UNSIGNED-PAYLOAD`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`).
    pub async fn request_with_payload_hash(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: Vec<u8>,
        payload_hash: Option<&str>,
    ) -> Resp {
        self.request_inner(
            method,
            path,
            query,
            extra_headers,
            body,
            payload_hash,
            None,
            None,
        )
        .await
    }

    /// A PUT whose body is sent as signed aws-chunked
    /// (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) in chunks of `chunk` bytes,
    /// each signed over the previous signature; `corrupt` names a chunk whose
    /// signature is deliberately wrong.
    pub async fn put_signed_chunked(
        &self,
        path: &str,
        data: Vec<u8>,
        chunk: usize,
        corrupt: Option<usize>,
    ) -> Resp {
        let len = data.len().to_string();
        let headers = [
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", len.as_str()),
        ];
        self.request_inner(
            "PUT",
            path,
            &[],
            &headers,
            data,
            Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            Some((chunk, corrupt)),
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn request_inner(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: Vec<u8>,
        payload_hash: Option<&str>,
        signed_chunks: Option<(usize, Option<usize>)>,
        raw_body: Option<reqwest::Body>,
    ) -> Resp {
        let hash = payload_hash
            .map(str::to_string)
            .unwrap_or_else(|| weft_client::s3::payload_hash(&body));
        let req = self
            .signer
            .sign(&self.http, method, path, query, extra_headers, &hash)
            .expect("sign request");
        let body = match signed_chunks {
            None => body,
            Some((size, corrupt)) => aws_chunked_body(&req.signed, &body, size, corrupt),
        };
        let req = req.builder;
        let resp = match raw_body {
            None => req.body(body).send().await.expect("send request"),
            Some(raw) => match req.body(raw).send().await {
                Ok(r) => r,
                // The body stream failed on purpose: report it as status 0.
                Err(_) => {
                    return Resp {
                        status: 0,
                        headers: Default::default(),
                        body: vec![],
                    }
                }
            },
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A PUT of `declared_len` bytes whose body is `body` (e.g. a stream fed
    /// slowly by the test); UNSIGNED-PAYLOAD. A transport error (the
    /// connection closed or reset) comes back as status 0.
    pub async fn put_body(
        &self,
        bucket: &str,
        key: &str,
        declared_len: usize,
        body: reqwest::Body,
    ) -> Resp {
        let len = declared_len.to_string();
        self.request_inner(
            "PUT",
            &format!("/{bucket}/{key}"),
            &[],
            &[("content-length", len.as_str())],
            vec![],
            Some("UNSIGNED-PAYLOAD"),
            None,
            Some(body),
        )
        .await
    }

    /// A PUT declaring `declared_len` bytes whose body sends `sent` and then
    /// fails, so the connection drops midway: a client that disconnects.
    pub async fn put_aborted(
        &self,
        bucket: &str,
        key: &str,
        declared_len: usize,
        sent: Vec<u8>,
    ) -> Resp {
        let len = declared_len.to_string();
        let stream = futures::stream::iter(vec![
            Ok(bytes::Bytes::from(sent)),
            Err(std::io::Error::other("client went away")),
        ]);
        self.request_inner(
            "PUT",
            &format!("/{bucket}/{key}"),
            &[],
            &[("content-length", len.as_str())],
            vec![],
            Some("UNSIGNED-PAYLOAD"),
            None,
            Some(reqwest::Body::wrap_stream(stream)),
        )
        .await
    }

    /// A signed GET whose response body is left unread, for tests that read
    /// it slowly (a reader that is still reading while something changes).
    pub async fn get_streaming(&self, bucket: &str, key: &str) -> reqwest::Response {
        // Its own client: no whole-request timeout while the test pauses.
        let http = reqwest::Client::new();
        self.signer
            .sign(
                &http,
                "GET",
                &format!("/{bucket}/{key}"),
                &[],
                &[],
                &payload_hash(b""),
            )
            .expect("sign request")
            .builder
            .send()
            .await
            .expect("GET sent")
    }

    pub async fn mb(&self, bucket: &str) -> Resp {
        self.request("PUT", &format!("/{bucket}"), &[], &[], vec![])
            .await
    }
    pub async fn rb(&self, bucket: &str) -> Resp {
        self.request("DELETE", &format!("/{bucket}"), &[], &[], vec![])
            .await
    }
    pub async fn put(&self, bucket: &str, key: &str, data: Vec<u8>) -> Resp {
        self.request("PUT", &format!("/{bucket}/{key}"), &[], &[], data)
            .await
    }
    pub async fn get(&self, bucket: &str, key: &str) -> Resp {
        self.request("GET", &format!("/{bucket}/{key}"), &[], &[], vec![])
            .await
    }
    pub async fn get_range(&self, bucket: &str, key: &str, range: &str) -> Resp {
        self.request(
            "GET",
            &format!("/{bucket}/{key}"),
            &[],
            &[("range", range)],
            vec![],
        )
        .await
    }
    pub async fn head(&self, bucket: &str, key: &str) -> Resp {
        self.request("HEAD", &format!("/{bucket}/{key}"), &[], &[], vec![])
            .await
    }
    pub async fn delete(&self, bucket: &str, key: &str) -> Resp {
        self.request("DELETE", &format!("/{bucket}/{key}"), &[], &[], vec![])
            .await
    }
    pub async fn list(&self, bucket: &str, query: &[(&str, &str)]) -> Resp {
        let mut q = vec![("list-type", "2")];
        q.extend_from_slice(query);
        self.request("GET", &format!("/{bucket}"), &q, &[], vec![])
            .await
    }

    /// PUT that must succeed.
    pub async fn must_put(&self, bucket: &str, key: &str, data: Vec<u8>) {
        let r = self.put(bucket, key, data).await;
        assert_eq!(r.status, 200, "PUT {bucket}/{key}: {}", r.text());
    }

    /// GET that must return exactly `expected`.
    pub async fn must_get_equal(&self, bucket: &str, key: &str, expected: &[u8]) {
        let r = self.get(bucket, key).await;
        assert_eq!(r.status, 200, "GET {bucket}/{key}: {}", r.text());
        assert_eq!(r.body.len(), expected.len(), "GET {bucket}/{key}: length");
        assert!(r.body == expected, "GET {bucket}/{key}: bytes differ");
    }
}

/// Deterministic pseudo-random bytes: content derived from a seed, so every
/// object is distinct and checkable.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every `<tag>value</tag>` in an XML body.
pub fn xml_values(body: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = vec![];
    let mut rest = body;
    while let Some(s) = rest.find(&open) {
        let after = &rest[s + open.len()..];
        let Some(e) = after.find(&close) else { break };
        out.push(after[..e].to_string());
        rest = &after[e + close.len()..];
    }
    out
}

/// Where shard `index` of the first segment of `bucket/key` is placed now,
/// per metad: `(segment, node)`; no node while the shard is lost or being
/// rebuilt.
pub async fn shard_placement(
    tc: &TestCluster,
    bucket: &str,
    key: &str,
    index: weft_common::ShardIndex,
) -> (weft_common::SegmentId, Option<weft_common::NodeId>) {
    let v = current_version(tc, bucket, key).await;
    let seg = &v.segments[0];
    (seg.id, seg.shards[usize::from(index.0)])
}

/// Polls, up to `timeout`, until shard `index` of the first segment of
/// `bucket/key`, on whichever node metad now places it, passes its crc32c
/// checks and holds `expected`: proof that a damaged copy was rebuilt.
/// Returns the node that holds it.
pub async fn wait_shard_restored(
    tc: &TestCluster,
    bucket: &str,
    key: &str,
    index: weft_common::ShardIndex,
    expected: &[u8],
    timeout: Duration,
) -> weft_common::NodeId {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match shard_placement(tc, bucket, key, index).await {
            (_, None) => "not placed".to_string(),
            (segment, Some(node)) => {
                let store = tc.c().datad_store(node.0 as usize - 1).unwrap_or_else(|| {
                    panic!("node {node} holds shard {index} but is not running")
                });
                match store.get_bytes(segment, index, 0, None).await {
                    Ok(bytes) if bytes[..] == *expected => return node,
                    Ok(bytes) => format!("node {node} holds {} bytes that differ", bytes.len()),
                    Err(e) => format!("node {node}: {e}"),
                }
            }
        };
        assert!(
            std::time::Instant::now() < deadline,
            "shard {index} of {bucket}/{key} not restored within {timeout:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Standard base64 with padding, written here so the tests do not share the
/// gateway's encoder (a bug there must not hide in both).
pub fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A counter or gauge from the gateway's `/metrics` (0 when absent).
pub async fn gateway_metric(tc: &TestCluster, name: &str) -> u64 {
    let text = tc
        .c()
        .internal_http()
        .get(format!("{}/metrics", tc.c().admin_endpoint()))
        .send()
        .await
        .expect("gateway metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.trim().parse().expect("metric value"))
        .unwrap_or(0)
}

/// The current version of `bucket/key`, per metad (panics if there is none).
pub async fn current_version(
    tc: &TestCluster,
    bucket: &str,
    key: &str,
) -> weft_common::manifest::ObjectVersion {
    use weft_common::rpc::{Query, QueryResult};
    let metad = tc.c().metad_client();
    let q = Query::Object {
        bucket: bucket.into(),
        key: key.into(),
    };
    let Ok(QueryResult::Object {
        version: Some(v), ..
    }) = metad.query(&q).await
    else {
        panic!("{bucket}/{key} has no current version");
    };
    v
}
