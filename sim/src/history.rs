//! The S3 workload's history in the chaos suite's format, judged by the
//! chaos suite's checker ([`weft_chaos::checker`]): the same oracle for a
//! docker run and a simulated one. The checker treats each key as a
//! register and checks every read against real-time order (a read may not
//! return a value an acknowledged write had replaced before the read
//! began), and every LIST against it, and identifies whole reads by the
//! digest of their bytes.
//!
//! Times are microseconds of simulated time since the workload began.
//! Copies are not in the history (their value is whatever the source held,
//! which the register model cannot name); they write keys of their own,
//! which the set model of [`crate::workload::Models`] checks.

use tokio::time::Instant;
use weft_chaos::history::{Op, OpKind, Outcome};

/// Operations recorded so far.
pub(crate) struct Recorder {
    start: Instant,
    ops: Vec<Op>,
    /// Version numbers name each PUT for the checker; unique in a run.
    next_version: u64,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Vec::new(),
            next_version: 1,
        }
    }

    /// Now, in the history's time.
    pub(crate) fn now_us(&self) -> i64 {
        i64::try_from(self.start.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// A fresh version number for a write.
    pub(crate) fn version(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }

    /// Records `op`, which ran from `start_us` until now.
    pub(crate) fn record(&mut self, mut op: Op, worker: usize, start_us: i64) {
        op.id = self.ops.len() as u64;
        op.worker = u32::try_from(worker).unwrap_or(u32::MAX);
        op.start_us = start_us;
        op.end_us = self.now_us();
        self.ops.push(op);
    }

    /// Keys any operation touched (LISTs aside), for the final read-back.
    pub(crate) fn keys(&self) -> std::collections::BTreeSet<String> {
        self.ops
            .iter()
            .filter(|o| !matches!(o.kind, OpKind::List | OpKind::FinalList))
            .map(|o| o.key.clone())
            .collect()
    }

    /// Final reads that found an object.
    pub(crate) fn final_objects(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| o.kind == OpKind::FinalGet && o.is_ok())
            .count()
    }

    /// The checker's findings, one line each (empty: the history holds).
    pub(crate) fn check(&self) -> (usize, Vec<String>) {
        let verdict = weft_chaos::checker::check(&self.ops);
        let lines = verdict
            .findings
            .iter()
            .map(|f| format!("history checker: {}", f.describe()))
            .collect();
        (verdict.reads_checked, lines)
    }
}

/// A blank op of `kind` on `key`.
pub(crate) fn op(kind: OpKind, key: &str) -> Op {
    Op::new(kind, key)
}

/// The checker's outcome for a read's answer status (`None`: no answer).
pub(crate) fn outcome(status: Option<u16>, detail: &str) -> Outcome {
    match status {
        Some(200..=299) => Outcome::Ok,
        Some(404) => Outcome::NotFound,
        Some(s) => Outcome::Error {
            kind: format!("http-{s}"),
            detail: detail.to_string(),
        },
        None => Outcome::Error {
            kind: "no-answer".into(),
            detail: detail.to_string(),
        },
    }
}
