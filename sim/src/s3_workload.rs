//! The simulated S3 clients: PUT, GET and DELETE through the gateway, over
//! the simulated network, signed like any client. Each worker owns its
//! keys; the model of a key is the set of bodies (by MD5) it may hold, as in
//! [`crate::workload`]. A GET must return exactly one of them, byte for
//! byte, or a 404 when "no object" is among them.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use weft_client::s3::Signer;
use weft_client::transport::{SharedTransport, TransportError};

use crate::data::{ACCESS_KEY, GATEWAY, REGION, SECRET_KEY};
use crate::workload::Models;
use crate::Trace;

/// Concurrent S3 clients.
pub(crate) const WORKERS: usize = 2;
const KEYS: usize = 3;
pub(crate) const BUCKET: &str = "s3sim";
/// Largest object: a few stripes of the default profile.
const SIZE_MAX: usize = 300_000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// An S3 client on the simulated network.
pub(crate) struct S3 {
    signer: Signer,
    http: reqwest::Client,
    transport: SharedTransport,
}

/// An answer: status and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: bytes::Bytes,
}

impl S3 {
    pub(crate) fn new(transport: SharedTransport) -> S3 {
        S3 {
            signer: Signer::new(&format!("http://{GATEWAY}"), ACCESS_KEY, SECRET_KEY, REGION),
            http: weft_client::transport::builder_client(),
            transport,
        }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Answer, TransportError> {
        let hash = weft_client::s3::payload_hash(body);
        let signed = self
            .signer
            .sign(&self.http, method, path, &[], &[], &hash)
            .map_err(|e| TransportError::NotSent(e.to_string()))?;
        let request = signed
            .builder
            .timeout(TIMEOUT)
            .body(body.to_vec())
            .build()
            .map_err(|e| TransportError::NotSent(e.to_string()))?;
        let response = self.transport.execute(request).await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok(Answer { status, body })
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// GET `key`: `Ok(Some(md5))`, `Ok(None)` for 404, `Err` for no answer or
/// a server error (nothing to check).
pub(crate) async fn get(s3: &S3, key: &str) -> Result<Option<String>, String> {
    match s3.call("GET", &format!("/{BUCKET}/{key}"), b"").await {
        Ok(a) if a.status == 200 => Ok(Some(md5_hex(&a.body))),
        Ok(a) if a.status == 404 => Ok(None),
        Ok(a) => Err(format!(
            "HTTP {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `ops` S3 operations on this worker's keys.
pub(crate) async fn worker(
    w: usize,
    s3: S3,
    mut rng: StdRng,
    ops: u32,
    trace: &Rc<RefCell<Trace>>,
    models: &Rc<RefCell<Models>>,
) {
    for n in 0..ops {
        let key = format!("s{w}/k{}", rng.gen_range(0..KEYS));
        let model_key = format!("s3:{key}");
        let roll = rng.gen_range(0..100);
        if roll < 40 {
            let got = get(&s3, &key).await;
            trace.borrow_mut().log(format!("s{w} GET {key} -> {got:?}"));
            if let Ok(got) = got {
                models
                    .borrow_mut()
                    .check_read(&model_key, &got, &format!("s{w} op {n}"));
            }
        } else {
            let (method, body) = if roll < 85 {
                let mut body = vec![0u8; rng.gen_range(0..=SIZE_MAX)];
                rng.fill_bytes(&mut body);
                ("PUT", body)
            } else {
                ("DELETE", Vec::new())
            };
            let value = (method == "PUT").then(|| md5_hex(&body));
            let answer = s3.call(method, &format!("/{BUCKET}/{key}"), &body).await;
            let mut m = models.borrow_mut();
            let what = match &answer {
                Ok(a) if (200..300).contains(&a.status) => {
                    m.acknowledge(&model_key, value.clone());
                    format!("{}", a.status)
                }
                // A refusal of a well-formed request is a bug here: the
                // bucket exists and the key is valid.
                Ok(a) if (400..500).contains(&a.status) => {
                    m.failures.push(format!(
                        "s{w} op {n}: {method} {key} refused with {}: {}",
                        a.status,
                        String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
                    ));
                    format!("refused {}", a.status)
                }
                Ok(a) => {
                    m.maybe(&model_key, value.clone());
                    format!("unknown ({})", a.status)
                }
                Err(e) => {
                    m.maybe(&model_key, value.clone());
                    format!("unknown ({e})")
                }
            };
            drop(m);
            trace.borrow_mut().log(format!(
                "s{w} {method} {key} {} -> {what}",
                value.as_deref().unwrap_or("-")
            ));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..50))).await;
    }
}

/// Reads every S3 key once more after the faults stopped.
pub(crate) async fn final_reads(
    s3: &S3,
    models: &Rc<RefCell<Models>>,
    trace: &Rc<RefCell<Trace>>,
) -> Vec<String> {
    crate::workload::check_final(models, trace, "s3:", "s3:", "final GET", |key| async move {
        get(s3, &key).await
    })
    .await
}
