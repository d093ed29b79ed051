//! The recorded history of one scenario: every operation the workload (and
//! the final read-back) performed, with its time window and outcome.
//!
//! The history is the checker's only input, so it records what the client
//! *observed*, never what the harness believes happened: the digest of the
//! bytes sent or received, the version the object claimed, the keys a LIST
//! returned. Times are microseconds since the scenario's workload began, on
//! one monotonic clock shared by every worker, so "ended before" and
//! "started after" comparisons across workers are sound.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// Single-request PutObject.
    Put,
    /// CreateMultipartUpload, UploadPart×n, CompleteMultipartUpload.
    MultipartPut,
    /// GetObject of the whole object.
    Get,
    /// GetObject with a `Range` header.
    GetRange,
    /// DeleteObject.
    Delete,
    /// ListObjectsV2 (all pages) under a prefix.
    List,
    /// GetObject after the cluster healed and the workload stopped.
    FinalGet,
    /// ListObjectsV2 of the whole bucket after the cluster healed.
    FinalList,
}

impl OpKind {
    /// Whether the operation changes the key's state.
    pub fn is_write(self) -> bool {
        matches!(self, OpKind::Put | OpKind::MultipartPut | OpKind::Delete)
    }
}

/// What the client observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// 2xx: a write acknowledged, or a read that returned bytes or keys.
    Ok,
    /// 404 NoSuchKey on a read.
    NotFound,
    /// Anything else. A failed write is *indeterminate*: it may or may not
    /// have taken effect, now or later.
    Error {
        /// Stable category for counting (`timeout`, `connect`, `http-503`, …).
        /// Serialized as `error`: the op's own `kind` shares the JSON object.
        #[serde(rename = "error")]
        kind: String,
        /// Human detail (S3 error code and message, transport error).
        detail: String,
    },
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Unique within the scenario.
    pub id: u64,
    /// Workload worker (`u32::MAX` for the final read-back).
    pub worker: u32,
    /// Index of the gateway the request went to.
    pub gateway: u8,
    /// What it did.
    pub kind: OpKind,
    /// Object key, or the prefix of a LIST.
    pub key: String,
    /// Invocation time, µs since the workload began.
    pub start_us: i64,
    /// Completion time, µs since the workload began.
    pub end_us: i64,
    /// What came back.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Writes: the version written. Reads: the version the object claimed
    /// (`x-amz-meta-chaos-version`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Writes: the content seed (see `content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Writes: object size. Reads: bytes returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Hex SHA-256 of the bytes written or returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Ranged reads: first byte requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_offset: Option<u64>,
    /// LISTs: the keys returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<Vec<String>>,
}

impl Op {
    /// A blank operation of `kind` on `key`, to be filled in.
    pub fn new(kind: OpKind, key: &str) -> Op {
        Op {
            id: 0,
            worker: 0,
            gateway: 0,
            kind,
            key: key.to_string(),
            start_us: 0,
            end_us: 0,
            outcome: Outcome::Ok,
            version: None,
            seed: None,
            size: None,
            digest: None,
            range_offset: None,
            listed: None,
        }
    }

    /// Acknowledged (2xx, or 404 for a read).
    pub fn is_ok(&self) -> bool {
        !matches!(self.outcome, Outcome::Error { .. })
    }

    /// One line for failure messages: enough to find the operation in
    /// `history.jsonl` and in the daemons' logs.
    pub fn describe(&self) -> String {
        let outcome = match &self.outcome {
            Outcome::Ok => "ok".to_string(),
            Outcome::NotFound => "not-found".to_string(),
            Outcome::Error { kind, detail } => format!("error {kind}: {detail}"),
        };
        let mut s = format!(
            "op#{} {:?} {} [{:.3}s..{:.3}s] worker {} gw {} -> {}",
            self.id,
            self.kind,
            self.key,
            self.start_us as f64 / 1e6,
            self.end_us as f64 / 1e6,
            self.worker,
            self.gateway,
            outcome
        );
        if let Some(v) = self.version {
            s.push_str(&format!(" version {v}"));
        }
        if let Some(n) = self.size {
            s.push_str(&format!(" size {n}"));
        }
        if let Some(o) = self.range_offset {
            s.push_str(&format!(" range-offset {o}"));
        }
        if let Some(d) = &self.digest {
            s.push_str(&format!(" sha256 {}", &d[..d.len().min(12)]));
        }
        s
    }
}

/// Collects operations from concurrent workers; appends each to a JSONL
/// file as it completes, so a crashed run still leaves its history.
pub struct Recorder {
    epoch: Instant,
    inner: Mutex<RecorderInner>,
}

struct RecorderInner {
    next_id: u64,
    ops: Vec<Op>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Recorder {
    /// A recorder whose clock starts now, writing to `path` if given.
    pub fn new(path: Option<&std::path::Path>) -> std::io::Result<Recorder> {
        let file = match path {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        };
        Ok(Recorder {
            epoch: Instant::now(),
            inner: Mutex::new(RecorderInner {
                next_id: 1,
                ops: Vec::new(),
                file,
            }),
        })
    }

    /// µs since the recorder's epoch.
    pub fn now_us(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// The recorder's epoch (the scenario's time zero).
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Stores a completed operation, assigning its id.
    pub fn record(&self, mut op: Op) -> u64 {
        let mut g = self.inner.lock().expect("recorder lock");
        op.id = g.next_id;
        g.next_id += 1;
        if let Some(f) = g.file.as_mut() {
            // A history line that cannot be written is reported when the file
            // is flushed; the in-memory history stays authoritative.
            let _ = serde_json::to_writer(&mut *f, &op);
            let _ = f.write_all(b"\n");
        }
        let id = op.id;
        g.ops.push(op);
        id
    }

    /// Every operation so far, in completion order.
    pub fn snapshot(&self) -> Vec<Op> {
        self.inner.lock().expect("recorder lock").ops.clone()
    }

    /// Flushes the JSONL file.
    pub fn flush(&self) -> std::io::Result<()> {
        let mut g = self.inner.lock().expect("recorder lock");
        match g.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Reads a `history.jsonl` back (for `weft-chaos check`).
pub fn load(path: &std::path::Path) -> anyhow::Result<Vec<Op>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("parse {} line {}", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_jsonl() {
        let mut op = Op::new(OpKind::Put, "w0/k001");
        op.version = Some(7);
        op.outcome = Outcome::Error {
            kind: "http-503 ServiceUnavailable".into(),
            detail: "only 4 of 5 shards durable".into(),
        };
        let line = serde_json::to_string(&op).unwrap();
        assert_eq!(
            line.matches("\"kind\"").count(),
            1,
            "no duplicate keys: {line}"
        );
        let back: Op = serde_json::from_str(&line).unwrap();
        assert_eq!(back, op);
        let mut ok = Op::new(OpKind::List, "");
        ok.listed = Some(vec!["a".into()]);
        let back: Op = serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
    }
}
