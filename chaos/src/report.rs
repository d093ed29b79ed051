//! Run reports: `report.json` (machine-readable) and `summary.md` (for
//! people and docs/chaos.md), plus the unavailability analysis.

use crate::checker::{Finding, Verdict};
use crate::faults::FaultEvent;
use crate::history::{Op, OpKind, Outcome};
use crate::scenario::Step;
use serde::Serialize;
use std::collections::BTreeMap;

/// Findings kept in the report per scenario (all are counted).
pub const FINDINGS_MAX: usize = 50;

/// A stretch of time in which clients got only errors.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    /// Seconds after the workload began.
    pub start_s: f64,
    /// Seconds after the workload began.
    pub end_s: f64,
    /// Failed operations completing in it.
    pub failed_ops: u64,
}

/// Windows of whole seconds in which at least one workload operation
/// completed with an error and none succeeded; adjacent seconds (and gaps of
/// one quiet second) merge. A slow-but-working cluster therefore shows no
/// window; a stalled one shows the seconds its requests were failing.
pub fn unavailability(history: &[Op]) -> Vec<Window> {
    let mut per_sec: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for op in history
        .iter()
        .filter(|o| !matches!(o.kind, OpKind::FinalGet | OpKind::FinalList))
    {
        let e = per_sec.entry(op.end_us / 1_000_000).or_default();
        if op.is_ok() {
            e.0 += 1;
        } else if !matches!(&op.outcome, Outcome::Error { kind, .. } if kind.starts_with("http-416"))
        {
            e.1 += 1;
        }
    }
    let mut windows: Vec<Window> = Vec::new();
    for (&sec, &(ok, failed)) in &per_sec {
        if ok > 0 || failed == 0 {
            continue;
        }
        match windows.last_mut() {
            Some(w) if (sec as f64) <= w.end_s + 1.0 => {
                w.end_s = (sec + 1) as f64;
                w.failed_ops += failed;
            }
            _ => windows.push(Window {
                start_s: sec as f64,
                end_s: (sec + 1) as f64,
                failed_ops: failed,
            }),
        }
    }
    windows
}

/// One scenario's (or combination's) result.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    /// Stable name (`kill-datad`, or `a+b` for combinations).
    pub name: String,
    /// Verdict.
    pub passed: bool,
    /// Why it failed, in one line each.
    pub failures: Vec<String>,
    /// Seed of the run.
    pub seed: u64,
    /// Workload duration, seconds.
    pub duration_s: f64,
    /// Acknowledged writes lost (must be 0).
    pub lost_writes: usize,
    /// Reads of stale or never-written bytes (must be 0).
    pub wrong_reads: usize,
    /// Acknowledged deletes undone (must be 0).
    pub resurrected_deletes: usize,
    /// LISTs disagreeing with acknowledged state (must be 0).
    pub list_mismatches: usize,
    /// Keys whose final state could not be read (must be 0).
    pub unverified: usize,
    /// Operations by kind.
    pub ops: BTreeMap<String, u64>,
    /// All operations.
    pub ops_total: u64,
    /// Acknowledged writes.
    pub acked_writes: usize,
    /// Reads whose value the checker verified.
    pub reads_checked: usize,
    /// Failed operations by error kind.
    pub errors: BTreeMap<String, u64>,
    /// When clients saw only errors.
    pub unavailability: Vec<Window>,
    /// Sum of the windows, seconds.
    pub unavailable_s: f64,
    /// The seeded schedule.
    pub schedule: Vec<Step>,
    /// What the fault injector did.
    pub faults: Vec<FaultEvent>,
    /// Seconds from the final heal until every voter and data node was up.
    pub time_to_healthy_s: Option<f64>,
    /// Seconds from the final heal until `/v1/repair/status` reported full
    /// redundancy; `null` when the gateway has no such endpoint yet.
    pub time_to_full_redundancy_s: Option<f64>,
    /// `full`, `unknown (…)` or `not full after …`.
    pub redundancy: String,
    /// ERROR or panic lines in the daemons' logs (tail).
    pub log_errors: usize,
    /// The first findings, with the operations involved.
    pub findings: Vec<Finding>,
    /// In power-cut runs: what the daemons' power-cut disks undid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_cut: Option<crate::power_cut::PowerCutStats>,
    /// In locality runs: what the job phase measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<crate::locality::LocalityFigures>,
}

impl ScenarioReport {
    /// Fills counts from a history and its verdict.
    pub fn counts(&mut self, history: &[Op], verdict: &Verdict) {
        self.lost_writes = verdict.lost_writes;
        self.wrong_reads = verdict.wrong_reads;
        self.resurrected_deletes = verdict.resurrected_deletes;
        self.list_mismatches = verdict.list_mismatches;
        self.unverified = verdict.unverified;
        self.acked_writes = verdict.acked_writes;
        self.reads_checked = verdict.reads_checked;
        self.findings = verdict
            .findings
            .iter()
            .take(FINDINGS_MAX)
            .cloned()
            .collect();
        self.ops_total = history.len() as u64;
        for op in history {
            let kind = serde_json::to_value(op.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *self.ops.entry(kind).or_default() += 1;
            if let Outcome::Error { kind, .. } = &op.outcome {
                *self.errors.entry(kind.clone()).or_default() += 1;
            }
        }
        self.unavailability = unavailability(history);
        self.unavailable_s = self
            .unavailability
            .iter()
            .map(|w| w.end_s - w.start_s)
            // `sum` of no f64s is -0.0, which prints as "-0".
            .fold(0.0, |a, b| a + b);
    }

    /// An empty report for `name`.
    pub fn new(name: String, seed: u64) -> ScenarioReport {
        ScenarioReport {
            name,
            passed: false,
            failures: Vec::new(),
            seed,
            duration_s: 0.0,
            lost_writes: 0,
            wrong_reads: 0,
            resurrected_deletes: 0,
            list_mismatches: 0,
            unverified: 0,
            ops: BTreeMap::new(),
            ops_total: 0,
            acked_writes: 0,
            reads_checked: 0,
            power_cut: None,
            locality: None,
            errors: BTreeMap::new(),
            unavailability: Vec::new(),
            unavailable_s: 0.0,
            schedule: Vec::new(),
            faults: Vec::new(),
            time_to_healthy_s: None,
            time_to_full_redundancy_s: None,
            redundancy: "unknown".into(),
            log_errors: 0,
            findings: Vec::new(),
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Unique run id (container and network name prefix).
    pub run_id: String,
    /// Seed.
    pub seed: u64,
    /// The `--scenario` argument.
    pub selection: String,
    /// Image used.
    pub image: String,
    /// Bug deliberately injected, if any.
    pub inject_bug: Option<String>,
    /// Wall-clock start (RFC 3339).
    pub started: String,
    /// Wall-clock seconds for the whole run.
    pub elapsed_s: f64,
    /// Every scenario passed.
    pub passed: bool,
    /// Per scenario.
    pub scenarios: Vec<ScenarioReport>,
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.1} s"))
        .unwrap_or_else(|| "n/a".into())
}

/// The markdown summary.
pub fn markdown(r: &RunReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# weft-chaos run {}\n\n{} — seed {} — `--scenario {}` — {:.0} s — image `{}`{}\n\n**{}**\n\n",
        r.run_id,
        r.started,
        r.seed,
        r.selection,
        r.elapsed_s,
        r.image,
        r.inject_bug.as_ref().map(|b| format!(" — injected bug `{b}`")).unwrap_or_default(),
        if r.passed { "PASSED" } else { "FAILED" }
    ));
    s.push_str("| scenario | result | ops | errors | lost writes | wrong reads | other violations | unavailable | healthy after heal | full redundancy |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---|---|---|\n");
    for sc in &r.scenarios {
        let errors: u64 = sc.errors.values().sum();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} s in {} window(s) | {} | {} |\n",
            sc.name,
            if sc.passed { "pass" } else { "**FAIL**" },
            sc.ops_total,
            errors,
            sc.lost_writes,
            sc.wrong_reads,
            sc.resurrected_deletes + sc.list_mismatches + sc.unverified,
            sc.unavailable_s,
            sc.unavailability.len(),
            fmt_opt(sc.time_to_healthy_s),
            match sc.time_to_full_redundancy_s {
                Some(t) => format!("{t:.1} s"),
                None => sc.redundancy.clone(),
            }
        ));
    }
    for sc in &r.scenarios {
        s.push_str(&format!("\n## {}\n\n", sc.name));
        let ops: Vec<String> = sc.ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        s.push_str(&format!("- ops: {}\n", ops.join(", ")));
        let mut errs: Vec<(&String, &u64)> = sc.errors.iter().collect();
        errs.sort_by(|a, b| b.1.cmp(a.1));
        let errs: Vec<String> = errs
            .iter()
            .take(8)
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        s.push_str(&format!(
            "- errors: {}\n",
            if errs.is_empty() {
                "none".into()
            } else {
                errs.join(", ")
            }
        ));
        s.push_str(&format!(
            "- checked: {} acknowledged writes, {} reads verified; {} ERROR/panic log lines\n",
            sc.acked_writes, sc.reads_checked, sc.log_errors
        ));
        if let Some(pc) = &sc.power_cut {
            s.push_str(&format!(
                "- power cuts: {} daemon starts on the power-cut disk undid {} unsynced writes and {} unsynced entries\n",
                pc.starts, pc.writes_undone, pc.entries_undone
            ));
        }
        if let Some(l) = &sc.locality {
            s.push_str(&format!(
                "- locality: the job in zone-a read {:.0} MiB; {} bytes crossed zones cold, {} after the warm ({:.1} s to warm; {} shard fetches from warm copies); GET p99 {} ms cold, {} ms warm; {} backbone interfaces shaped\n",
                l.dataset_bytes as f64 / (1u64 << 20) as f64,
                l.cold_cross_zone_bytes,
                l.warm_cross_zone_bytes,
                l.warm_secs,
                l.warm_copy_reads,
                l.cold_job["get_ms_p99"],
                l.warm_job["get_ms_p99"],
                l.shaped_interfaces
            ));
        }
        let wins: Vec<String> = sc
            .unavailability
            .iter()
            .map(|w| format!("{:.0}–{:.0} s", w.start_s, w.end_s))
            .collect();
        s.push_str(&format!(
            "- unavailability windows: {}\n",
            if wins.is_empty() {
                "none".into()
            } else {
                wins.join(", ")
            }
        ));
        s.push_str("- faults:\n");
        for f in &sc.faults {
            s.push_str(&format!(
                "  - {:.1} s {}{}\n",
                f.at_ms as f64 / 1e3,
                f.detail,
                if f.ok { "" } else { " (FAILED)" }
            ));
        }
        for fl in &sc.failures {
            s.push_str(&format!("- **failure:** {fl}\n"));
        }
        if !sc.findings.is_empty() {
            s.push_str("\n```text\n");
            for f in sc.findings.iter().take(10) {
                s.push_str(&f.describe());
                s.push('\n');
            }
            s.push_str("```\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(end_s: f64, ok: bool) -> Op {
        let mut o = Op::new(OpKind::Get, "k");
        o.end_us = (end_s * 1e6) as i64;
        if !ok {
            o.outcome = Outcome::Error {
                kind: "timeout".into(),
                detail: String::new(),
            };
        }
        o
    }

    #[test]
    fn windows_are_seconds_with_only_failures() {
        let h = vec![
            op(0.5, true),
            op(1.2, false),
            op(2.5, false),
            op(4.1, false),
            op(6.0, true),
            op(8.3, false),
        ];
        let w = unavailability(&h);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!((w[0].start_s, w[0].end_s, w[0].failed_ops), (1.0, 5.0, 3));
        assert_eq!((w[1].start_s, w[1].end_s), (8.0, 9.0));
    }
}
