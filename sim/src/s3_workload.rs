//! The simulated S3 clients: PUT, multipart upload (part replaced, retried,
//! completed or aborted), copy, DELETE, GET and LIST through the gateway,
//! over the simulated network, signed like any client. Each worker owns its
//! keys; the model of a key is the set of bodies (by MD5) it may hold, as in
//! [`crate::workload`]. A GET must return exactly one of them, byte for
//! byte, or a 404 when "no object" is among them. Every operation but
//! copies is also recorded for the chaos suite's history checker
//! ([`crate::history`]), which adds real-time order to the judgement.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use weft_client::s3::Signer;
use weft_client::transport::{SharedTransport, TransportError};

use weft_chaos::history::{Op, OpKind, Outcome as Seen};

use crate::data::{ACCESS_KEY, GATEWAY, REGION, SECRET_KEY};
use crate::history::{self, Recorder};
use crate::workload::Models;
use crate::Trace;

/// Concurrent S3 clients.
pub(crate) const WORKERS: usize = 2;
const KEYS: usize = 3;
pub(crate) const BUCKET: &str = "s3sim";
/// Largest ordinary object: a stripe or two of the simulated profile.
const SIZE_MAX: usize = 300_000;
/// Some objects span three or more stripes ([`crate::data::UNIT_BYTES`]
/// per shard per stripe, four data shards), so rot can hit a different
/// stripe in each of three shards.
const LARGE: std::ops::RangeInclusive<usize> = 600_000..=800_000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// An S3 client on the simulated network.
pub(crate) struct S3 {
    signer: Signer,
    http: reqwest::Client,
    transport: SharedTransport,
}

/// An answer: status, ETag and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) etag: Option<String>,
    pub(crate) body: bytes::Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned()
    }
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
        self.request(method, path, &[], &[], body).await
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, TransportError> {
        let hash = weft_client::s3::payload_hash(body);
        let signed = self
            .signer
            .sign(&self.http, method, path, query, headers, &hash)
            .map_err(|e| TransportError::NotSent(e.to_string()))?;
        let request = signed
            .builder
            .timeout(TIMEOUT)
            .body(body.to_vec())
            .build()
            .map_err(|e| TransportError::NotSent(e.to_string()))?;
        let response = self.transport.execute(request).await?;
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await?;
        Ok(Answer { status, etag, body })
    }
}

/// What a write's answer tells the model.
enum Outcome {
    /// Applied.
    Done(Answer),
    /// Refused: nothing changed.
    Refused(Answer),
    /// May or may not have been applied.
    Unknown(String),
}

impl Outcome {
    /// What the history checker makes of it: a refusal (404 included) is a
    /// failed write, indeterminate to it (the set model judges refusals).
    fn seen(&self) -> Seen {
        match self {
            Outcome::Done(_) => Seen::Ok,
            Outcome::Refused(a) => Seen::Error {
                kind: format!("refused-{}", a.status),
                detail: a.text(),
            },
            Outcome::Unknown(e) => history::outcome(None, e),
        }
    }
}

fn outcome(answer: Result<Answer, TransportError>) -> Outcome {
    match answer {
        // S3 may answer a failed CompleteMultipartUpload with 200 and an
        // error document.
        Ok(a) if (200..300).contains(&a.status) && a.body.starts_with(b"<Error") => {
            Outcome::Unknown(a.text())
        }
        Ok(a) if (200..300).contains(&a.status) => Outcome::Done(a),
        Ok(a) if (400..500).contains(&a.status) => Outcome::Refused(a),
        Ok(a) => Outcome::Unknown(format!("{}: {}", a.status, a.text())),
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The text of the first `<tag>` element of an XML answer.
fn xml_field(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + len].to_string())
}

/// Whether the history checker sees `key`: every key but the copies'
/// (see [`crate::history`]).
fn in_history(key: &str) -> bool {
    !key.contains("/c")
}

/// GET `key`: `Ok(Some(md5))`, `Ok(None)` for 404, `Err` for no answer or
/// a server error (nothing to check). Recorded in the history as `kind`.
pub(crate) async fn get(
    s3: &S3,
    key: &str,
    kind: OpKind,
    worker: usize,
    history: &Rc<RefCell<Recorder>>,
) -> Result<Option<String>, String> {
    let start = history.borrow().now_us();
    let answer = s3.call("GET", &format!("/{BUCKET}/{key}"), b"").await;
    let mut op = history::op(kind, key);
    let got = match &answer {
        Ok(a) if a.status == 200 => {
            op.size = Some(a.body.len() as u64);
            op.digest = Some(weft_chaos::content::digest(&a.body));
            Ok(Some(md5_hex(&a.body)))
        }
        Ok(a) if a.status == 404 => Ok(None),
        Ok(a) => Err(format!("HTTP {}: {}", a.status, a.text())),
        Err(e) => Err(e.to_string()),
    };
    op.outcome = match &answer {
        Ok(a) => history::outcome(Some(a.status), &a.text()),
        Err(e) => history::outcome(None, &e.to_string()),
    };
    if in_history(key) {
        history.borrow_mut().record(op, worker, start);
    }
    got
}

/// One worker's view: its number, generator, trace and the shared models.
struct Worker<'a> {
    w: usize,
    s3: S3,
    rng: StdRng,
    trace: &'a Rc<RefCell<Trace>>,
    models: &'a Rc<RefCell<Models>>,
    history: &'a Rc<RefCell<Recorder>>,
}

impl Worker<'_> {
    fn log(&self, line: String) {
        self.trace.borrow_mut().log(line);
    }

    fn fail(&self, line: String) {
        self.models.borrow_mut().failures.push(line);
    }

    /// A body the history can name: the chaos suite's content for a seed.
    fn body(&mut self) -> (u64, Vec<u8>) {
        let len = if self.rng.gen_range(0..100) < 15 {
            self.rng.gen_range(LARGE)
        } else {
            self.rng.gen_range(0..=SIZE_MAX)
        };
        let seed = self.rng.next_u64();
        (seed, weft_chaos::content::generate(seed, len as u64))
    }

    /// Records a write to `key` (a PUT when `body` names its seed and
    /// bytes) that began at `start`.
    fn record_write(
        &self,
        kind: OpKind,
        key: &str,
        body: Option<(u64, &[u8])>,
        seen: Seen,
        start: i64,
    ) {
        let mut h = self.history.borrow_mut();
        let mut op: Op = history::op(kind, key);
        if let Some((seed, bytes)) = body {
            op.version = Some(h.version());
            op.seed = Some(seed);
            op.size = Some(bytes.len() as u64);
            op.digest = Some(weft_chaos::content::digest(bytes));
        }
        op.outcome = seen;
        h.record(op, self.w, start);
    }

    /// PUT (`Some` seed and body) or DELETE of `key`.
    async fn write(&mut self, n: u32, key: &str, put: Option<(u64, Vec<u8>)>) {
        let w = self.w;
        let method = if put.is_some() { "PUT" } else { "DELETE" };
        let value = put.as_ref().map(|(_, b)| md5_hex(b));
        let start = self.history.borrow().now_us();
        let body = put.as_ref().map(|(_, b)| b.as_slice()).unwrap_or_default();
        let answer = self
            .s3
            .call(method, &format!("/{BUCKET}/{key}"), body)
            .await;
        let answer = outcome(answer);
        let kind = if put.is_some() {
            OpKind::Put
        } else {
            OpKind::Delete
        };
        self.record_write(
            kind,
            key,
            put.as_ref().map(|(seed, b)| (*seed, b.as_slice())),
            answer.seen(),
            start,
        );
        let model_key = format!("s3:{key}");
        let what = match answer {
            Outcome::Done(a) => {
                self.models
                    .borrow_mut()
                    .acknowledge(&model_key, value.clone());
                format!("{}", a.status)
            }
            // A refusal of a well-formed request is a bug here: the bucket
            // exists and the key is valid.
            Outcome::Refused(a) => {
                self.fail(format!(
                    "s{w} op {n}: {method} {key} refused with {}: {}",
                    a.status,
                    a.text()
                ));
                format!("refused {}", a.status)
            }
            Outcome::Unknown(e) => {
                self.models.borrow_mut().maybe(&model_key, value.clone());
                format!("unknown ({e})")
            }
        };
        self.log(format!(
            "s{w} {method} {key} {} -> {what}",
            value.as_deref().unwrap_or("-")
        ));
    }

    /// A multipart upload of one part (every part but the last must be
    /// 5 MiB, and small objects keep runs fast), which is sometimes
    /// uploaded twice (S3 lets a part be replaced) and whose lost answers
    /// are retried once with the same bytes, as clients do; then completed,
    /// or sometimes aborted.
    async fn multipart(&mut self, n: u32, key: &str) {
        let w = self.w;
        let path = format!("/{BUCKET}/{key}");
        let created = self
            .s3
            .request("POST", &path, &[("uploads", "")], &[], b"")
            .await;
        let upload_id = match outcome(created) {
            Outcome::Done(a) => match xml_field(&a.body, "UploadId") {
                Some(id) => id,
                None => {
                    self.fail(format!(
                        "s{w} op {n}: CreateMultipartUpload answered no UploadId: {}",
                        a.text()
                    ));
                    return;
                }
            },
            Outcome::Refused(a) => {
                self.fail(format!(
                    "s{w} op {n}: CreateMultipartUpload {key} refused with {}: {}",
                    a.status,
                    a.text()
                ));
                return;
            }
            Outcome::Unknown(e) => {
                self.log(format!("s{w} create upload {key} -> unknown ({e})"));
                return;
            }
        };
        let id = upload_id.as_str();
        // The part last acknowledged (ETag, MD5 of its bytes), and whether
        // a later upload of the part had an unknown outcome (so the part
        // may hold other bytes and completing may rightly be refused).
        let mut acked: Option<(String, String, u64, Vec<u8>)> = None;
        let mut uncertain = false;
        for _ in 0..self.rng.gen_range(1..=2) {
            let (seed, body) = self.body();
            let md5 = md5_hex(&body);
            for attempt in 0..2 {
                let answer = self
                    .s3
                    .request(
                        "PUT",
                        &path,
                        &[("partNumber", "1"), ("uploadId", id)],
                        &[],
                        &body,
                    )
                    .await;
                match outcome(answer) {
                    Outcome::Done(a) => {
                        let Some(etag) = a.etag else {
                            self.fail(format!("s{w} op {n}: UploadPart answered no ETag"));
                            return;
                        };
                        self.log(format!("s{w} part {key} {md5} (try {attempt}) -> {etag}"));
                        // An earlier upload of the part whose outcome was
                        // unknown may still land after this one, so the
                        // uncertainty stays.
                        acked = Some((etag, md5.clone(), seed, body.clone()));
                        break;
                    }
                    Outcome::Refused(a) => {
                        self.fail(format!(
                            "s{w} op {n}: UploadPart {key} refused with {}: {}",
                            a.status,
                            a.text()
                        ));
                        return;
                    }
                    Outcome::Unknown(e) => {
                        self.log(format!(
                            "s{w} part {key} {md5} (try {attempt}) -> unknown ({e})"
                        ));
                        uncertain = true;
                    }
                }
            }
        }
        let model_key = format!("s3:{key}");
        let Some((etag, md5, seed, bytes)) = acked.filter(|_| self.rng.gen_range(0..100) >= 5)
        else {
            let answer = self
                .s3
                .request("DELETE", &path, &[("uploadId", id)], &[], b"")
                .await;
            let what = match outcome(answer) {
                Outcome::Done(a) => format!("{}", a.status),
                // The network may deliver a copy of this request that
                // aborts the upload while this one runs; Weft (as MinIO)
                // then answers 404 NoSuchUpload, where AWS remembers aborted
                // uploads for hours and answers 204. Nothing was made of
                // the upload either way (a Complete is never sent after).
                Outcome::Refused(a) if a.status == 404 => "already gone (404)".to_string(),
                Outcome::Refused(a) => {
                    self.fail(format!(
                        "s{w} op {n}: AbortMultipartUpload {key} refused with {}: {}",
                        a.status,
                        a.text()
                    ));
                    format!("refused {}", a.status)
                }
                Outcome::Unknown(e) => format!("unknown ({e})"),
            };
            self.log(format!("s{w} abort upload {key} -> {what}"));
            return;
        };
        let xml = format!(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        );
        let start = self.history.borrow().now_us();
        let answer = self
            .s3
            .request("POST", &path, &[("uploadId", id)], &[], xml.as_bytes())
            .await;
        let answer = outcome(answer);
        self.record_write(
            OpKind::MultipartPut,
            key,
            Some((seed, &bytes)),
            answer.seen(),
            start,
        );
        let what = match answer {
            Outcome::Done(a) => {
                self.models
                    .borrow_mut()
                    .acknowledge(&model_key, Some(md5.clone()));
                format!("{}", a.status)
            }
            Outcome::Refused(a) if uncertain => {
                format!("refused {} after an unknown part", a.status)
            }
            Outcome::Refused(a) => {
                self.fail(format!(
                    "s{w} op {n}: CompleteMultipartUpload {key} refused with {}: {}",
                    a.status,
                    a.text()
                ));
                format!("refused {}", a.status)
            }
            Outcome::Unknown(e) => {
                self.models
                    .borrow_mut()
                    .maybe(&model_key, Some(md5.clone()));
                format!("unknown ({e})")
            }
        };
        self.log(format!("s{w} complete {key} {md5} -> {what}"));
    }

    /// CopyObject from one of this worker's keys to a copy's key (outside
    /// the history, see [`crate::history`]): the copy may hold whatever
    /// the source may hold.
    async fn copy(&mut self, n: u32, key: &str, source: &str) {
        let w = self.w;
        let may = self.models.borrow_mut().holds(&format!("s3:{source}"));
        let present: BTreeSet<Option<String>> =
            may.iter().filter(|v| v.is_some()).cloned().collect();
        let answer = self
            .s3
            .request(
                "PUT",
                &format!("/{BUCKET}/{key}"),
                &[],
                &[("x-amz-copy-source", &format!("/{BUCKET}/{source}"))],
                b"",
            )
            .await;
        let model_key = format!("s3:{key}");
        let what = match outcome(answer) {
            Outcome::Done(a) if present.is_empty() => {
                self.fail(format!(
                    "s{w} op {n}: copy of {source}, which holds no object, answered {}",
                    a.status
                ));
                format!("{}", a.status)
            }
            Outcome::Done(a) => {
                self.models
                    .borrow_mut()
                    .acknowledge_any(&model_key, present);
                format!("{}", a.status)
            }
            Outcome::Refused(a) if a.status == 404 && may.contains(&None) => {
                "no source (404)".to_string()
            }
            Outcome::Refused(a) => {
                self.fail(format!(
                    "s{w} op {n}: copy {source} -> {key} refused with {}: {}",
                    a.status,
                    a.text()
                ));
                format!("refused {}", a.status)
            }
            Outcome::Unknown(e) => {
                self.models.borrow_mut().maybe_any(&model_key, present);
                format!("unknown ({e})")
            }
        };
        self.log(format!("s{w} copy {source} -> {key} -> {what}"));
    }
}

impl Worker<'_> {
    /// ListObjectsV2 of this worker's prefix: every key the model says
    /// surely exists is listed, and no key that surely does not (or was
    /// never written) is.
    async fn list(&mut self, n: u32) {
        let w = self.w;
        let prefix = format!("s{w}/");
        let start = self.history.borrow().now_us();
        let listed = match list_keys(&self.s3, &prefix).await {
            Ok(Some(keys)) => keys,
            Ok(None) => {
                // One page of a longer listing: what is missing may be on
                // the next page (only long --steps runs get here).
                self.log(format!("s{w} LIST -> truncated, not checked"));
                return;
            }
            Err(e) => {
                self.log(format!("s{w} LIST -> {e}"));
                return;
            }
        };
        let mut op = history::op(OpKind::List, &prefix);
        op.listed = Some(listed.iter().filter(|k| in_history(k)).cloned().collect());
        self.history.borrow_mut().record(op, w, start);
        let mut m = self.models.borrow_mut();
        let known = m.keys_with_prefix(&format!("s3:{prefix}"));
        for model_key in &known {
            let key = &model_key["s3:".len()..];
            let may = m.holds(model_key);
            let surely_exists = !may.contains(&None);
            let surely_absent = may.iter().all(Option::is_none);
            let shown = listed.contains(key);
            if surely_exists && !shown {
                m.failures.push(format!(
                    "s{w} op {n}: LIST misses {key}, which surely exists ({may:?})"
                ));
            }
            if surely_absent && shown {
                m.failures.push(format!(
                    "s{w} op {n}: LIST shows {key}, which surely does not exist"
                ));
            }
        }
        for key in &listed {
            if !known.contains(&format!("s3:{key}")) {
                m.failures.push(format!(
                    "s{w} op {n}: LIST shows {key}, which was never written"
                ));
            }
        }
        drop(m);
        self.log(format!("s{w} LIST -> {} keys", listed.len()));
    }
}

/// The keys of a ListObjectsV2 of `prefix`: `Ok(None)` when the answer is
/// one page of more.
async fn list_keys(s3: &S3, prefix: &str) -> Result<Option<BTreeSet<String>>, String> {
    let answer = s3
        .request(
            "GET",
            &format!("/{BUCKET}"),
            &[("list-type", "2"), ("prefix", prefix)],
            &[],
            b"",
        )
        .await;
    let body = match answer {
        Ok(a) if a.status == 200 => a.body,
        Ok(a) => return Err(format!("HTTP {}: {}", a.status, a.text())),
        Err(e) => return Err(e.to_string()),
    };
    let text = String::from_utf8_lossy(&body);
    if text.contains("<IsTruncated>true</IsTruncated>") {
        return Ok(None);
    }
    Ok(Some(
        text.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect(),
    ))
}

/// Runs `ops` S3 operations on this worker's keys.
pub(crate) async fn worker(
    w: usize,
    s3: S3,
    rng: StdRng,
    ops: u32,
    trace: &Rc<RefCell<Trace>>,
    models: &Rc<RefCell<Models>>,
    history: &Rc<RefCell<Recorder>>,
) {
    let mut me = Worker {
        w,
        s3,
        rng,
        trace,
        models,
        history,
    };
    for n in 0..ops {
        let k = me.rng.gen_range(0..KEYS);
        let key = format!("s{w}/k{k}");
        match me.rng.gen_range(0..100) {
            0..=4 => me.list(n).await,
            5..=34 => {
                // Mostly the keys PUT and DELETE write; a fifth of reads
                // are of the copies' keys.
                let key = if me.rng.gen_range(0..5) == 0 {
                    format!("s{w}/c{k}")
                } else {
                    key
                };
                let got = get(&me.s3, &key, OpKind::Get, w, history).await;
                me.log(format!("s{w} GET {key} -> {got:?}"));
                if let Ok(got) = got {
                    models.borrow_mut().check_read(
                        &format!("s3:{key}"),
                        &got,
                        &format!("s{w} op {n}"),
                    );
                }
            }
            35..=64 => {
                let body = me.body();
                me.write(n, &key, Some(body)).await;
            }
            // Each upload to a key of its own, never overwritten, so the
            // final reads check every completed upload's bytes.
            65..=79 => me.multipart(n, &format!("s{w}/mp{n}")).await,
            // From one of the keys PUT writes to a key of the copies'.
            80..=89 => me.copy(n, &format!("s{w}/c{k}"), &key).await,
            _ => me.write(n, &key, None).await,
        }
        let pause = me.rng.gen_range(0..50);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Reads every S3 key once more after the faults stopped, for the set
/// model and the history, and lists the bucket once for the history.
pub(crate) async fn final_reads(
    s3: &S3,
    models: &Rc<RefCell<Models>>,
    trace: &Rc<RefCell<Trace>>,
    history: &Rc<RefCell<Recorder>>,
) -> Vec<String> {
    let mut failures =
        crate::workload::check_final(models, trace, "s3:", "s3:", "final GET", |key| async move {
            get(s3, &key, OpKind::FinalGet, usize::MAX, history).await
        })
        .await;
    // Keys only ever read (a copy's, say) were never written: the history
    // has them, the model may not.
    let model_keys = models.borrow().keys_with_prefix("s3:");
    let unread: Vec<String> = history
        .borrow()
        .keys()
        .into_iter()
        .filter(|k| !model_keys.contains(&format!("s3:{k}")))
        .collect();
    for key in unread {
        if let Err(e) = get(s3, &key, OpKind::FinalGet, usize::MAX, history).await {
            failures.push(format!("final GET of {key} failed with no faults: {e}"));
        }
    }
    let start = history.borrow().now_us();
    let listed = list_keys(s3, "").await;
    let mut op = history::op(OpKind::FinalList, "");
    match listed {
        Ok(Some(keys)) => {
            op.listed = Some(keys.into_iter().filter(|k| in_history(k)).collect());
            history.borrow_mut().record(op, usize::MAX, start);
        }
        Ok(None) => trace
            .borrow_mut()
            .log("final LIST truncated: not checked".into()),
        Err(e) => failures.push(format!("final LIST failed with no faults: {e}")),
    }
    let (reads, found) = history.borrow().check();
    trace.borrow_mut().log(format!(
        "history checker: {reads} reads checked, {} findings",
        found.len()
    ));
    failures.extend(found);
    failures
}
