//! The checker: history in, verdicts out. Pure, deterministic, no I/O.
//!
//! Each key is a register whose writes are PUTs (value: the version written)
//! and DELETEs (value: absent), plus an initial "absent" write before time
//! zero. A read is *allowed* to observe a write `w` when
//!
//! 1. `w` began before the read ended (it may have taken effect in time), and
//! 2. no acknowledged write `w2` both began after `w` completed and completed
//!    before the read began (then `w2` is certainly ordered after `w`, and a
//!    linearizable store may not show the older value).
//!
//! A failed write is *indeterminate*: it may take effect at any time after it
//! began, so it is never considered completed (rule 2 never retires it) and
//! its absence is never an error. This is the usual register model for black-box
//! checking (as Jepsen's); it is slightly weaker than full linearizability
//! (reads are checked one at a time, not against one global order), which is
//! enough to catch the bugs that matter here: lost acknowledged writes, reads
//! of stale or never-written data, resurrected deletes and LISTs that disagree.
//!
//! Bytes are verified too: a read must return exactly the content of the
//! version it claims (`x-amz-meta-chaos-version`), regenerated from the PUT's
//! content seed, so a corrupt or mixed-up read is caught even when its version
//! number looks right.

use crate::content;
use crate::history::{Op, OpKind, Outcome};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Why an operation is in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An acknowledged PUT that the final read-back did not return (an older
    /// version, nothing, or an error came back instead).
    LostWrite,
    /// An acknowledged DELETE whose object came back.
    ResurrectedDelete,
    /// A read returned bytes no PUT wrote (or not the bytes of the version it
    /// claims).
    PhantomRead,
    /// A read returned a version older than one acknowledged before it began.
    StaleRead,
    /// A LIST disagreed with the acknowledged state of a key.
    ListMismatch,
    /// A final read failed, so the key's state could not be verified.
    Unverified,
}

/// One violation, with the operations that prove it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// What went wrong.
    pub kind: FindingKind,
    /// The key concerned.
    pub key: String,
    /// The read (or final read) that exposed it.
    pub op: Op,
    /// The writes that make it a violation (the acknowledged write that was
    /// lost or that the read should have seen; the version it did return).
    pub related: Vec<Op>,
    /// One sentence, in words.
    pub explanation: String,
}

impl Finding {
    /// Multi-line text naming every operation involved.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{:?} on {}: {}\n  read:    {}",
            self.kind,
            self.key,
            self.explanation,
            self.op.describe()
        );
        for r in &self.related {
            s.push_str(&format!("\n  related: {}", r.describe()));
        }
        s
    }
}

/// The checker's verdict on one history.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    /// Acknowledged writes not readable after the cluster healed.
    pub lost_writes: usize,
    /// Reads of stale or never-written bytes.
    pub wrong_reads: usize,
    /// Acknowledged deletes undone.
    pub resurrected_deletes: usize,
    /// LISTs that disagreed with the acknowledged state.
    pub list_mismatches: usize,
    /// Keys whose final state could not be read.
    pub unverified: usize,
    /// Reads (including final ones) whose value was checked.
    pub reads_checked: usize,
    /// Acknowledged writes in the history.
    pub acked_writes: usize,
    /// Keys read back at the end.
    pub final_keys: usize,
    /// Every violation (all of them; the report prints the first few).
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// No violation of any kind.
    pub fn passed(&self) -> bool {
        self.lost_writes == 0
            && self.wrong_reads == 0
            && self.resurrected_deletes == 0
            && self.list_mismatches == 0
            && self.unverified == 0
    }

    fn add(&mut self, f: Finding) {
        match f.kind {
            FindingKind::LostWrite => self.lost_writes += 1,
            FindingKind::ResurrectedDelete => self.resurrected_deletes += 1,
            FindingKind::PhantomRead | FindingKind::StaleRead => self.wrong_reads += 1,
            FindingKind::ListMismatch => self.list_mismatches += 1,
            FindingKind::Unverified => self.unverified += 1,
        }
        self.findings.push(f);
    }
}

/// A key's value: absent, or the version a PUT wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Absent,
    Present(u64),
}

#[derive(Clone, Copy)]
struct Write<'a> {
    /// `None` for the initial absent state.
    op: Option<&'a Op>,
    start_us: i64,
    /// Completion time if acknowledged; `i64::MAX` if indeterminate.
    end_eff_us: i64,
    value: Value,
}

/// All writes to one key, indexed for rule 2.
struct KeyWrites<'a> {
    writes: Vec<Write<'a>>,
    /// Acknowledged writes as (end, start, index into `writes`), by end.
    acked_by_end: Vec<(i64, i64, usize)>,
    /// `prefix_max_start[i]` = latest start among `acked_by_end[..=i]`.
    prefix_max_start: Vec<i64>,
    puts: BTreeMap<u64, &'a Op>,
}

impl<'a> KeyWrites<'a> {
    fn build(ops: &[&'a Op]) -> KeyWrites<'a> {
        let mut writes = vec![Write {
            op: None,
            start_us: -1,
            end_eff_us: -1,
            value: Value::Absent,
        }];
        let mut puts = BTreeMap::new();
        for op in ops.iter().copied().filter(|o| o.kind.is_write()) {
            let value = match op.kind {
                OpKind::Delete => Value::Absent,
                _ => {
                    let Some(v) = op.version else { continue };
                    puts.insert(v, op);
                    Value::Present(v)
                }
            };
            writes.push(Write {
                op: Some(op),
                start_us: op.start_us,
                end_eff_us: if op.is_ok() { op.end_us } else { i64::MAX },
                value,
            });
        }
        let mut acked_by_end: Vec<(i64, i64, usize)> = writes
            .iter()
            .enumerate()
            .filter(|(_, w)| w.end_eff_us != i64::MAX)
            .map(|(i, w)| (w.end_eff_us, w.start_us, i))
            .collect();
        acked_by_end.sort();
        let mut prefix_max_start = Vec::with_capacity(acked_by_end.len());
        let mut m = i64::MIN;
        for &(_, s, _) in &acked_by_end {
            m = m.max(s);
            prefix_max_start.push(m);
        }
        KeyWrites {
            writes,
            acked_by_end,
            prefix_max_start,
            puts,
        }
    }

    /// The acknowledged writes that certainly follow `w` and completed before
    /// `read_start` (empty when `w` may still be observed).
    fn superseding(&self, w: &Write<'a>, read_start_us: i64) -> Vec<&Write<'a>> {
        let n = self
            .acked_by_end
            .partition_point(|&(end, _, _)| end < read_start_us);
        if n == 0 || self.prefix_max_start[n - 1] <= w.end_eff_us {
            return Vec::new();
        }
        self.acked_by_end[..n]
            .iter()
            .filter(|&&(_, s, _)| s > w.end_eff_us)
            .map(|&(_, _, i)| &self.writes[i])
            .collect()
    }

    fn allowed(&self, w: &Write<'a>, r: &Op) -> bool {
        w.start_us < r.end_us && self.superseding(w, r.start_us).is_empty()
    }

    /// Writes of `value`'s presence (or exactly `value`) a read may observe.
    fn allowed_matching(&self, r: &Op, pred: impl Fn(Value) -> bool) -> bool {
        self.writes
            .iter()
            .any(|w| pred(w.value) && self.allowed(w, r))
    }

    /// Whether a version `r` may observe was written a day (`day_us`) before
    /// `r` ended: an expiration rule of one day may have removed it.
    fn may_have_expired(&self, r: &Op, day_us: i64) -> bool {
        self.writes.iter().any(|w| {
            matches!(w.value, Value::Present(_))
                && self.allowed(w, r)
                && w.start_us.saturating_add(day_us) <= r.end_us
        })
    }

    /// The latest-completing acknowledged write before `r` began: what a
    /// sequential observer would expect.
    fn latest_acked_before(&self, r: &Op) -> Option<&Write<'a>> {
        let n = self
            .acked_by_end
            .partition_point(|&(end, _, _)| end < r.start_us);
        self.acked_by_end[..n]
            .last()
            .map(|&(_, _, i)| &self.writes[i])
    }
}

/// Checks that a read's bytes are exactly those of `put`'s version.
fn bytes_match(r: &Op, put: &Op) -> Result<(), String> {
    let (Some(put_size), Some(put_seed)) = (put.size, put.seed) else {
        return Err(format!("PUT op#{} has no size or seed", put.id));
    };
    let got_size = r.size.unwrap_or(0);
    match r.range_offset {
        None => {
            if got_size != put_size || r.digest != put.digest {
                return Err(format!(
                    "returned {got_size} bytes that are not version {}'s {put_size} bytes",
                    put.version.unwrap_or(0)
                ));
            }
        }
        Some(off) => {
            if off.saturating_add(got_size) > put_size {
                return Err(format!(
                    "returned bytes {off}..{} beyond version {}'s size {put_size}",
                    off + got_size,
                    put.version.unwrap_or(0)
                ));
            }
            let want = content::digest(&content::generate_range(put_seed, off, got_size));
            if r.digest.as_deref() != Some(want.as_str()) {
                return Err(format!(
                    "bytes {off}..{} differ from version {}'s",
                    off + got_size,
                    put.version.unwrap_or(0)
                ));
            }
        }
    }
    Ok(())
}

fn ops_of<'a>(ws: &[&Write<'a>]) -> Vec<Op> {
    ws.iter().filter_map(|w| w.op.cloned()).collect()
}

/// Checks a whole history.
pub fn check(history: &[Op]) -> Verdict {
    check_with(history, |_| false, 0)
}

/// [`check`], where a key `may_vanish` accepts is under a lifecycle
/// expiration rule of one day of `day_us`: reading or listing it as absent
/// is allowed once a version the read may observe is a day old (the rule
/// may have removed it since); a younger one must be there, and nothing
/// else is relaxed.
pub fn check_with(history: &[Op], may_vanish: impl Fn(&str) -> bool, day_us: i64) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        if !matches!(op.kind, OpKind::List | OpKind::FinalList) {
            by_key.entry(op.key.as_str()).or_default().push(op);
        }
    }
    let keys: BTreeMap<&str, KeyWrites> = by_key
        .iter()
        .map(|(k, ops)| (*k, KeyWrites::build(ops)))
        .collect();
    let mut v = Verdict {
        acked_writes: history
            .iter()
            .filter(|o| o.kind.is_write() && o.is_ok())
            .count(),
        ..Verdict::default()
    };

    for (key, ops) in &by_key {
        let kw = &keys[key];
        for r in ops.iter().copied().filter(|o| !o.kind.is_write()) {
            let is_final = r.kind == OpKind::FinalGet;
            if is_final {
                v.final_keys += 1;
            }
            if may_vanish(key)
                && matches!(r.outcome, Outcome::NotFound)
                && kw.may_have_expired(r, day_us)
            {
                // Expired by the rule: allowed, and still a read checked.
                v.reads_checked += 1;
                continue;
            }
            check_read(&mut v, key, kw, r, is_final);
        }
    }

    for r in history
        .iter()
        .filter(|o| matches!(o.kind, OpKind::List | OpKind::FinalList))
    {
        check_list(&mut v, &keys, r, &may_vanish, day_us);
    }
    v
}

fn check_read(v: &mut Verdict, key: &str, kw: &KeyWrites, r: &Op, is_final: bool) {
    let observed = match &r.outcome {
        Outcome::Error { .. } => {
            if is_final {
                let expected = kw.latest_acked_before(r);
                let wants_data = kw
                    .writes
                    .iter()
                    .any(|w| matches!(w.value, Value::Present(_)) && kw.allowed(w, r));
                let kind =
                    if wants_data && matches!(expected.map(|w| w.value), Some(Value::Present(_))) {
                        FindingKind::LostWrite
                    } else {
                        FindingKind::Unverified
                    };
                v.add(Finding {
                    kind,
                    key: key.to_string(),
                    op: r.clone(),
                    related: expected.and_then(|w| w.op.cloned()).into_iter().collect(),
                    explanation: "the final read-back failed after the cluster healed".into(),
                });
            }
            return;
        }
        Outcome::NotFound => Value::Absent,
        Outcome::Ok => {
            // Identify the version: by its claim, else (whole reads) by digest.
            let put = r
                .version
                .and_then(|ver| kw.puts.get(&ver).copied())
                .or_else(|| {
                    if r.range_offset.is_none() {
                        kw.puts
                            .values()
                            .copied()
                            .find(|p| p.digest == r.digest && p.size == r.size)
                    } else {
                        None
                    }
                });
            let Some(put) = put else {
                v.reads_checked += 1;
                v.add(Finding {
                    kind: FindingKind::PhantomRead,
                    key: key.to_string(),
                    op: r.clone(),
                    related: vec![],
                    explanation: format!(
                        "returned version {:?}, which no PUT to this key wrote",
                        r.version
                    ),
                });
                return;
            };
            if let Err(why) = bytes_match(r, put) {
                v.reads_checked += 1;
                v.add(Finding {
                    kind: FindingKind::PhantomRead,
                    key: key.to_string(),
                    op: r.clone(),
                    related: vec![put.clone()],
                    explanation: why,
                });
                return;
            }
            Value::Present(put.version.expect("puts are indexed by version"))
        }
    };
    v.reads_checked += 1;
    if kw.allowed_matching(r, |w| w == observed) {
        return;
    }
    // Not allowed: say which acknowledged writes rule it out.
    let seen: Vec<Op> = kw
        .writes
        .iter()
        .filter(|w| w.value == observed)
        .filter_map(|w| w.op.cloned())
        .collect();
    let newer: Vec<Op> = kw
        .writes
        .iter()
        .filter(|w| w.value == observed)
        .flat_map(|w| ops_of(&kw.superseding(w, r.start_us)))
        .collect();
    let mut related = newer.clone();
    related.extend(seen);
    related.sort_by_key(|o| o.id);
    related.dedup_by_key(|o| o.id);
    let kind = if is_final {
        let expected_absent = !kw.allowed_matching(r, |w| matches!(w, Value::Present(_)));
        if matches!(observed, Value::Present(_)) && expected_absent {
            FindingKind::ResurrectedDelete
        } else {
            FindingKind::LostWrite
        }
    } else {
        FindingKind::StaleRead
    };
    let what = match observed {
        Value::Absent => "no object".to_string(),
        Value::Present(ver) => format!("version {ver}"),
    };
    v.add(Finding {
        kind,
        key: key.to_string(),
        op: r.clone(),
        related,
        explanation: format!(
            "returned {what}, but acknowledged write(s) {} completed before the read began and replaced it",
            newer
                .iter()
                .map(|o| match o.kind {
                    OpKind::Delete => format!("op#{} (DELETE)", o.id),
                    _ => format!("op#{} (PUT version {})", o.id, o.version.unwrap_or(0)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
}

fn check_list(
    v: &mut Verdict,
    keys: &BTreeMap<&str, KeyWrites>,
    r: &Op,
    may_vanish: &dyn Fn(&str) -> bool,
    day_us: i64,
) {
    let Some(listed) = &r.listed else { return };
    if !r.is_ok() {
        return;
    }
    let prefix = r.key.as_str();
    let listed_set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let mut considered: BTreeSet<&str> = keys
        .keys()
        .copied()
        .filter(|k| k.starts_with(prefix))
        .collect();
    considered.extend(listed_set.iter().copied());
    for k in considered {
        let present = listed_set.contains(k);
        if !present
            && k.starts_with(prefix)
            && may_vanish(k)
            && keys.get(k).is_some_and(|kw| kw.may_have_expired(r, day_us))
        {
            continue;
        }
        let problem = if !k.starts_with(prefix) {
            Some(format!(
                "listed under prefix {prefix:?}, which it does not start with"
            ))
        } else {
            match keys.get(k) {
                None if present => Some("listed, but no PUT ever wrote this key".to_string()),
                None => None,
                Some(kw) => {
                    let ok = kw.allowed_matching(r, |w| matches!(w, Value::Present(_)) == present);
                    (!ok).then(|| {
                        if present {
                            "listed, but an acknowledged DELETE removed it before the LIST began"
                                .to_string()
                        } else {
                            "missing, but an acknowledged PUT wrote it before the LIST began"
                                .to_string()
                        }
                    })
                }
            }
        };
        if let Some(explanation) = problem {
            let related = keys
                .get(k)
                .and_then(|kw| kw.latest_acked_before(r))
                .and_then(|w| w.op.cloned())
                .into_iter()
                .collect();
            v.add(Finding {
                kind: FindingKind::ListMismatch,
                key: k.to_string(),
                op: Op {
                    listed: None,
                    ..r.clone()
                },
                related,
                explanation,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content;

    /// Builds histories by hand: times in ms for readability.
    struct H {
        ops: Vec<Op>,
    }

    impl H {
        fn new() -> H {
            H { ops: vec![] }
        }
        fn push(&mut self, mut op: Op, start_ms: i64, end_ms: i64) -> &mut Op {
            op.id = self.ops.len() as u64 + 1;
            op.start_us = start_ms * 1000;
            op.end_us = end_ms * 1000;
            self.ops.push(op);
            self.ops.last_mut().unwrap()
        }
        fn put(&mut self, key: &str, version: u64, t: (i64, i64), ok: bool) {
            let seed = content::version_seed(1, version);
            let size = 100 + version;
            let mut op = Op::new(OpKind::Put, key);
            op.version = Some(version);
            op.seed = Some(seed);
            op.size = Some(size);
            op.digest = Some(content::digest(&content::generate(seed, size)));
            if !ok {
                op.outcome = Outcome::Error {
                    kind: "timeout".into(),
                    detail: "".into(),
                };
            }
            self.push(op, t.0, t.1);
        }
        fn delete(&mut self, key: &str, t: (i64, i64), ok: bool) {
            let mut op = Op::new(OpKind::Delete, key);
            if !ok {
                op.outcome = Outcome::Error {
                    kind: "http-503".into(),
                    detail: "".into(),
                };
            }
            self.push(op, t.0, t.1);
        }
        /// A read that returned `version`'s true bytes (or nothing).
        fn get(&mut self, kind: OpKind, key: &str, version: Option<u64>, t: (i64, i64)) {
            let mut op = Op::new(kind, key);
            match version {
                None => op.outcome = Outcome::NotFound,
                Some(v) => {
                    let seed = content::version_seed(1, v);
                    let size = 100 + v;
                    op.version = Some(v);
                    op.size = Some(size);
                    op.digest = Some(content::digest(&content::generate(seed, size)));
                }
            }
            self.push(op, t.0, t.1);
        }
        fn list(&mut self, kind: OpKind, prefix: &str, keys: &[&str], t: (i64, i64)) {
            let mut op = Op::new(kind, prefix);
            op.listed = Some(keys.iter().map(|k| k.to_string()).collect());
            self.push(op, t.0, t.1);
        }
    }

    #[test]
    fn a_clean_sequential_history_passes() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        h.get(OpKind::Get, "a", Some(1), (11, 12));
        h.put("a", 2, (13, 20), true);
        h.get(OpKind::Get, "a", Some(2), (21, 22));
        h.list(OpKind::List, "", &["a"], (23, 24));
        h.delete("a", (25, 30), true);
        h.get(OpKind::Get, "a", None, (31, 32));
        h.put("b", 3, (33, 40), true);
        h.get(OpKind::FinalGet, "a", None, (100, 101));
        h.get(OpKind::FinalGet, "b", Some(3), (100, 101));
        h.list(OpKind::FinalList, "", &["b"], (102, 103));
        let v = check(&h.ops);
        assert!(v.passed(), "{:#?}", v.findings);
        assert_eq!(v.final_keys, 2);
        assert_eq!(v.acked_writes, 4);
    }

    #[test]
    fn concurrent_reads_may_see_either_value() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        h.put("a", 2, (20, 40), true);
        h.get(OpKind::Get, "a", Some(1), (25, 30)); // overlaps the second PUT
        h.get(OpKind::Get, "a", Some(2), (25, 30));
        h.get(OpKind::Get, "a", None, (-5, 5)); // overlaps the first PUT
        h.list(OpKind::List, "", &[], (5, 6));
        assert!(check(&h.ops).passed());
    }

    #[test]
    fn indeterminate_writes_may_or_may_not_show() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        h.put("a", 2, (20, 30), false); // timed out: may commit later
        h.get(OpKind::Get, "a", Some(1), (40, 41));
        h.get(OpKind::Get, "a", Some(2), (50, 51));
        h.delete("a", (60, 70), false);
        h.get(OpKind::Get, "a", None, (80, 81));
        h.get(OpKind::FinalGet, "a", Some(1), (100, 101));
        assert!(check(&h.ops).passed(), "{:#?}", check(&h.ops).findings);
    }

    /// The injected bug the issue asks for, as a history: the gateway
    /// acknowledged PUT v2 but never committed it (ack before commit), so the
    /// final read-back returns v1.
    #[test]
    fn an_acknowledged_put_that_never_committed_is_a_lost_write() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        h.put("a", 2, (20, 30), true);
        h.get(OpKind::FinalGet, "a", Some(1), (100, 101));
        let v = check(&h.ops);
        assert_eq!(v.lost_writes, 1, "{:#?}", v.findings);
        assert!(!v.passed());
        let f = &v.findings[0];
        assert_eq!(f.kind, FindingKind::LostWrite);
        assert!(
            f.related.iter().any(|o| o.version == Some(2)),
            "names the lost PUT: {}",
            f.describe()
        );
    }

    #[test]
    fn a_vanished_object_is_a_lost_write() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        h.get(OpKind::FinalGet, "a", None, (100, 101));
        assert_eq!(check(&h.ops).lost_writes, 1);
    }

    #[test]
    fn an_unreadable_acked_object_is_a_lost_write() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        let mut op = Op::new(OpKind::FinalGet, "a");
        op.outcome = Outcome::Error {
            kind: "http-500".into(),
            detail: "InternalError".into(),
        };
        h.push(op, 100, 101);
        let v = check(&h.ops);
        assert_eq!(v.lost_writes, 1);
    }

    #[test]
    fn a_read_older_than_an_acknowledged_write_is_caught() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        h.put("a", 2, (20, 30), true);
        h.get(OpKind::Get, "a", Some(1), (40, 41));
        let v = check(&h.ops);
        assert_eq!(v.wrong_reads, 1);
        assert_eq!(v.findings[0].kind, FindingKind::StaleRead);
        assert_eq!(
            v.findings[0].related.len(),
            2,
            "{}",
            v.findings[0].describe()
        );
    }

    #[test]
    fn a_read_of_a_deleted_object_is_caught() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        h.delete("a", (20, 30), true);
        h.get(OpKind::Get, "a", Some(1), (40, 41));
        h.get(OpKind::FinalGet, "a", Some(1), (100, 101));
        let v = check(&h.ops);
        assert_eq!(v.wrong_reads, 1);
        assert_eq!(v.resurrected_deletes, 1);
    }

    #[test]
    fn bytes_no_put_wrote_are_caught() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        h.get(OpKind::Get, "a", Some(7), (20, 21)); // never written
        h.get(OpKind::Get, "a", Some(1), (22, 23));
        h.ops.last_mut().unwrap().digest = Some("00".repeat(32)); // right claim, wrong bytes
        let v = check(&h.ops);
        assert_eq!(v.wrong_reads, 2, "{:#?}", v.findings);
        assert!(v
            .findings
            .iter()
            .all(|f| f.kind == FindingKind::PhantomRead));
    }

    #[test]
    fn ranged_reads_are_verified_against_the_claimed_version() {
        let mut h = H::new();
        h.put("a", 1, (0, 10), true);
        let seed = content::version_seed(1, 1);
        for (off, len, good) in [(10u64, 50u64, true), (0, 101, true), (90, 20, false)] {
            let mut op = Op::new(OpKind::GetRange, "a");
            op.version = Some(1);
            op.range_offset = Some(off);
            op.size = Some(len);
            let bytes = if good {
                content::generate_range(seed, off, len)
            } else {
                content::generate_range(seed ^ 1, off, len)
            };
            op.digest = Some(content::digest(&bytes));
            h.push(op, 20, 21);
        }
        let v = check(&h.ops);
        assert_eq!(v.wrong_reads, 1, "{:#?}", v.findings);
    }

    #[test]
    fn lists_must_agree_with_acknowledged_state() {
        let mut h = H::new();
        h.put("w0/a", 1, (0, 10), true);
        h.put("w0/b", 2, (0, 10), true);
        h.delete("w0/b", (20, 30), true);
        h.list(OpKind::List, "w0/", &["w0/a"], (40, 41)); // right
        h.list(OpKind::List, "w0/", &["w0/b"], (42, 43)); // a missing, b resurrected
        h.list(OpKind::List, "", &["w0/a", "zz"], (44, 45)); // zz never written
        let v = check(&h.ops);
        assert_eq!(v.list_mismatches, 3, "{:#?}", v.findings);
    }

    #[test]
    fn only_keys_under_an_expiration_rule_may_vanish() {
        let mut h = H::new();
        h.put("exp/a", 1, (0, 10), true);
        h.put("keep/b", 2, (0, 10), true);
        h.get(OpKind::FinalGet, "exp/a", None, (100, 110));
        h.get(OpKind::FinalGet, "keep/b", None, (100, 110));
        h.list(OpKind::FinalList, "", &["keep/b"], (120, 130));
        let v = check_with(&h.ops, |k| k.starts_with("exp/"), 50_000);
        assert_eq!(v.lost_writes, 1, "{:?}", v.findings);
        assert_eq!(v.findings[0].key, "keep/b");
        assert_eq!(v.list_mismatches, 0, "{:?}", v.findings);
        // Before a day has passed, an expiring key must still be there.
        let v = check_with(&h.ops, |k| k.starts_with("exp/"), 500_000);
        assert_eq!(v.lost_writes, 2, "{:?}", v.findings);
        assert_eq!(v.list_mismatches, 1, "{:?}", v.findings);
        // A wrong version of an expiring key is still caught.
        let mut h = H::new();
        h.put("exp/a", 1, (0, 10), true);
        h.put("exp/a", 2, (20, 30), true);
        h.get(OpKind::FinalGet, "exp/a", Some(1), (100, 110));
        let v = check_with(&h.ops, |k| k.starts_with("exp/"), 50_000);
        assert_eq!(v.lost_writes + v.wrong_reads, 1, "{:?}", v.findings);
    }
}
