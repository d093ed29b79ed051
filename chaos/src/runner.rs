//! One chaos run: for each selected scenario, a fresh cluster, the workload
//! and the fault schedule together, heal, wait for health and redundancy,
//! read everything back, check, report, tear down.
//!
//! Every scenario gets its own cluster so that damage one scenario leaves
//! behind (a corrupted shard that repair has not fixed yet) cannot turn into
//! a "loss" in the next one; scenarios meant to compound are combined
//! explicitly (`a+b`) and run in one cluster.

use crate::checker;
use crate::cluster::{Cluster, ClusterConfig};
use crate::faults;
use crate::history::{OpKind, Recorder};
use crate::report::{RunReport, ScenarioReport};
use crate::scenario::{self, Scenario};
use crate::workload::{self, Shared, WorkloadConfig};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bug to inject on purpose, to prove the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InjectedBug {
    /// Gateways acknowledge PUTs before the metadata commit. Needs the
    /// gateway hook `WEFT_FAULT_ACK_BEFORE_COMMIT=1` (see docs/chaos.md).
    AckBeforeCommit,
    /// After the workload, the harness deletes a few acknowledged objects
    /// behind the history's back: an acknowledged write that did not last,
    /// as an ack-before-commit bug would leave. Needs no daemon support.
    HiddenDelete,
    /// Data nodes skip every file fsync (`WEFT_FAULT_SKIP_FSYNC=1`): shards
    /// are acknowledged before they are durable. Only a power cut shows it,
    /// so it needs the `power-cut` scenario.
    SkipFsync,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Unique id (container names, labels).
    pub run_id: String,
    /// Seed for schedules, content and op choice.
    pub seed: u64,
    /// The `--scenario` argument, for the report.
    pub selection: String,
    /// Parsed selection.
    pub runs: Vec<Vec<Scenario>>,
    /// Workload time for the whole run, split evenly over the scenarios.
    pub duration: Duration,
    /// Report directory.
    pub report_dir: PathBuf,
    /// Where volumes and configs live (removed afterwards unless kept).
    pub work_dir: PathBuf,
    /// Image tag.
    pub image: String,
    /// Concurrent clients.
    pub workers: u32,
    /// Keys per client.
    pub keys_per_worker: u32,
    /// Write-once keys per client.
    pub cold_keys_per_worker: u32,
    /// Largest object.
    pub object_bytes_max: u64,
    /// metad node grace.
    pub node_grace_ms: u64,
    /// Deliberate bug.
    pub inject_bug: Option<InjectedBug>,
    /// Longest accepted wait for full redundancy after the heal.
    pub redundancy_bound: Duration,
    /// Longest wait for every voter and data node to be up after the heal.
    pub heal_bound: Duration,
    /// Size of the disk-full node's volume.
    pub disk_full_bytes: u64,
    /// `WEFT_LOG` for daemons.
    pub log_filter: String,
}

impl RunConfig {
    /// Workload time of each scenario.
    pub fn per_scenario(&self) -> Duration {
        (self.duration / self.runs.len().max(1) as u32).max(Duration::from_secs(20))
    }
}

/// Runs every scenario; returns the report (already written to disk).
pub async fn run(cfg: &RunConfig) -> Result<RunReport> {
    std::fs::create_dir_all(&cfg.report_dir)
        .with_context(|| format!("create {}", cfg.report_dir.display()))?;
    let began = Instant::now();
    let started = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut report = RunReport {
        run_id: cfg.run_id.clone(),
        seed: cfg.seed,
        selection: cfg.selection.clone(),
        image: cfg.image.clone(),
        inject_bug: cfg.inject_bug.map(|b| format!("{b:?}")),
        started,
        elapsed_s: 0.0,
        passed: false,
        scenarios: Vec::new(),
    };
    for (i, combo) in cfg.runs.iter().enumerate() {
        let name = scenario::combo_name(combo);
        tracing::info!(scenario = %name, index = i + 1, of = cfg.runs.len(), "scenario begins");
        let sr = run_scenario(cfg, i, combo).await;
        tracing::info!(
            scenario = %name,
            passed = sr.passed,
            ops = sr.ops_total,
            lost_writes = sr.lost_writes,
            wrong_reads = sr.wrong_reads,
            failures = ?sr.failures,
            "scenario ends"
        );
        report.scenarios.push(sr);
        report.elapsed_s = began.elapsed().as_secs_f64();
        report.passed = report.scenarios.iter().all(|s| s.passed);
        write_report(cfg, &report)?;
    }
    Ok(report)
}

fn write_report(cfg: &RunConfig, report: &RunReport) -> Result<()> {
    std::fs::write(
        cfg.report_dir.join("report.json"),
        serde_json::to_vec_pretty(report)?,
    )?;
    std::fs::write(
        cfg.report_dir.join("summary.md"),
        crate::report::markdown(report),
    )?;
    Ok(())
}

async fn run_scenario(cfg: &RunConfig, index: usize, combo: &[Scenario]) -> ScenarioReport {
    let name = scenario::combo_name(combo);
    let mut sr = ScenarioReport::new(name.clone(), cfg.seed);
    let dir = cfg.report_dir.join(&name);
    let work_dir = cfg.work_dir.join(format!("{}-{index}", name));
    let duration = cfg.per_scenario();
    sr.schedule = scenario::schedule(combo, cfg.seed, duration, cfg.node_grace_ms);
    let lifecycle = combo.iter().any(|s| s.needs_lifecycle());
    let cluster_cfg = ClusterConfig {
        prefix: format!("wc-{}-{index}", cfg.run_id),
        run_id: cfg.run_id.clone(),
        image: cfg.image.clone(),
        work_dir: work_dir.clone(),
        node_grace_ms: cfg.node_grace_ms,
        limited_disk: scenario::disk_full_target(combo, cfg.seed)
            .map(|id| (id, cfg.disk_full_bytes)),
        gateway_env: match cfg.inject_bug {
            Some(InjectedBug::AckBeforeCommit) => {
                vec![("WEFT_FAULT_ACK_BEFORE_COMMIT".into(), "1".into())]
            }
            _ => vec![],
        },
        metad_env: power_cut_env(combo),
        datad_env: {
            let mut env = power_cut_env(combo);
            if cfg.inject_bug == Some(InjectedBug::SkipFsync) {
                env.push(("WEFT_FAULT_SKIP_FSYNC".into(), "1".into()));
            }
            env
        },
        log_filter: cfg.log_filter.clone(),
        cold_nodes: if lifecycle {
            scenario::LIFECYCLE_COLD_NODES
        } else {
            0
        },
        lifecycle_day_secs: lifecycle.then_some(1),
        locality: combo.iter().any(|s| s.needs_locality()),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        sr.failures.push(format!("create {}: {e}", dir.display()));
        return sr;
    }
    let cluster = match Cluster::start(cluster_cfg).await {
        Ok(c) => c,
        Err(e) => {
            sr.failures.push(format!("start the cluster: {e:#}"));
            crate::docker::remove_run(Some(&cfg.run_id));
            crate::cluster::unmount_under(&work_dir);
            return sr;
        }
    };
    if let Err(e) = drive(cfg, &cluster, combo, duration, &dir, &mut sr).await {
        sr.failures.push(format!("{e:#}"));
    }
    match cluster.save_logs(&dir.join("logs"), 20_000).await {
        Ok(n) => sr.log_errors = n,
        Err(e) => tracing::warn!(error = %e, "save container logs"),
    }
    if combo.iter().any(|s| s.needs_power_cut_disk()) {
        check_power_cut(&cluster, &dir.join("logs"), &mut sr);
    }
    cluster.destroy().await;
    let _ = std::fs::remove_dir_all(&work_dir);
    sr.passed = sr.failures.is_empty()
        && sr.lost_writes == 0
        && sr.wrong_reads == 0
        && sr.resurrected_deletes == 0
        && sr.list_mismatches == 0
        && sr.unverified == 0;
    sr
}

async fn drive(
    cfg: &RunConfig,
    cluster: &Cluster,
    combo: &[Scenario],
    duration: Duration,
    dir: &std::path::Path,
    sr: &mut ScenarioReport,
) -> Result<()> {
    let wl = WorkloadConfig {
        bucket: "chaos".into(),
        seed: cfg.seed ^ crate::content::mix64(scenario::combo_name(combo).len() as u64),
        workers: cfg.workers,
        keys_per_worker: cfg.keys_per_worker,
        cold_keys_per_worker: cfg.cold_keys_per_worker,
        object_bytes_max: cfg.object_bytes_max,
        ops_max: 1_000_000,
    };
    // The gateway's cluster map lags registration a little; retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = cluster.gateway(0).create_bucket(&wl.bucket).await;
        match r {
            Ok(resp) if resp.is_success() => break,
            other if Instant::now() > deadline => anyhow::bail!("create bucket: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let lifecycle = combo.iter().any(|s| s.needs_lifecycle());
    if lifecycle {
        // Worker 0's keys may vanish: the others must exist to check.
        anyhow::ensure!(
            wl.workers >= 2,
            "the lifecycle scenario needs at least 2 workers (worker 0's keys expire)"
        );
        put_lifecycle_rules(cluster, &wl.bucket).await?;
    }
    if combo.iter().any(|s| s.needs_locality()) {
        sr.locality = Some(
            crate::locality::job_phase(cluster, &wl.bucket)
                .await
                .context("the locality job phase")?,
        );
    }
    let recorder = Arc::new(Recorder::new(Some(&dir.join("history.jsonl")))?);
    let shared = Arc::new(Shared::new(recorder.clone(), cluster.gateways.clone()));
    let epoch = recorder.epoch();
    let workload_deadline = epoch + duration;
    let (_, fault_log) = tokio::join!(
        workload::run(wl.clone(), shared.clone(), workload_deadline),
        faults::execute(cluster, &sr.schedule, epoch)
    );
    sr.faults = fault_log;
    sr.duration_s = epoch.elapsed().as_secs_f64();

    // Heal everything and wait.
    faults::remove_fillers(cluster);
    let healed_at = Instant::now();
    cluster.heal().await.context("heal the cluster")?;
    match cluster.wait_healthy(cfg.heal_bound).await {
        Ok(_) => sr.time_to_healthy_s = Some(healed_at.elapsed().as_secs_f64()),
        Err(e) => sr.failures.push(format!("after the heal: {e:#}")),
    }
    let (t, state) = wait_redundancy(cluster, healed_at, cfg.redundancy_bound).await;
    sr.time_to_full_redundancy_s = t;
    if state.starts_with("not full") {
        sr.failures.push(format!("redundancy: {state}"));
    }
    sr.redundancy = state;

    if cfg.inject_bug == Some(InjectedBug::HiddenDelete) {
        hidden_delete(cluster, &wl, &recorder).await;
    }
    workload::final_read_back(&wl, &shared, Duration::from_secs(60)).await;
    recorder.flush()?;
    let history = recorder.snapshot();
    // Under the lifecycle scenario's expiration rule a key may vanish.
    let verdict = checker::check_with(
        &history,
        |k| lifecycle && k.starts_with(scenario::EXPIRING_PREFIX),
        LIFECYCLE_DAY_US,
    );
    for f in verdict.findings.iter().take(20) {
        tracing::error!("{}", f.describe());
    }
    sr.counts(&history, &verdict);
    // A certificate roll is planned maintenance, not a fault: clients must
    // not see it at all. A range GET that raced a write of a shorter
    // object to its key gets 416 from any S3 store: that is the workload's
    // race, not the roll's.
    if combo == [Scenario::CertRoll] {
        let failed = roll_failures(&history);
        if !failed.is_empty() {
            sr.failures.push(format!(
                "client requests failed during the certificate roll: {failed:?}"
            ));
        }
    }
    if lifecycle {
        if let Err(e) = lifecycle_acted(cluster, &history).await {
            sr.failures.push(e);
        }
    }
    if verdict.final_keys == 0 || verdict.acked_writes == 0 {
        sr.failures.push(format!(
            "nothing to check: {} acknowledged writes, {} keys read back",
            verdict.acked_writes, verdict.final_keys
        ));
    }
    Ok(())
}

/// The lifecycle scenario's day, µs (`lifecycle_day_secs = 1`).
const LIFECYCLE_DAY_US: i64 = 1_000_000;

/// Whether the lifecycle scenario's rules did their work, judged on the
/// expiring worker's cold keys (written once at the start, never deleted,
/// so nothing but the rule removes them): every one whose PUT was
/// acknowledged well before the read-back reads back absent, and the
/// cluster holds GLACIER_IR bytes in the cold zone.
async fn lifecycle_acted(cluster: &Cluster, history: &[crate::history::Op]) -> Result<(), String> {
    use crate::history::{OpKind, Outcome};
    let cold_prefix = format!("{}c", scenario::EXPIRING_PREFIX);
    let mut acked_put: std::collections::BTreeMap<&str, i64> = Default::default();
    for op in history.iter().filter(|o| o.kind.is_write() && o.is_ok()) {
        if op.key.starts_with(&cold_prefix) {
            acked_put.insert(op.key.as_str(), op.end_us);
        }
    }
    let (mut expired, mut kept) = (0, vec![]);
    for o in history.iter().filter(|o| o.kind == OpKind::FinalGet) {
        // Written 20 days (s) before the read-back: past its day and
        // several passes even across a leader's election.
        let Some(&put_end) = acked_put.get(o.key.as_str()) else {
            continue;
        };
        if put_end + 20 * LIFECYCLE_DAY_US > o.start_us {
            continue;
        }
        match o.outcome {
            Outcome::NotFound => expired += 1,
            _ => kept.push(o.key.clone()),
        }
    }
    if !kept.is_empty() {
        return Err(format!(
            "keys under the expiration rule still there 20 days after their write: {kept:?}"
        ));
    }
    let usage = cluster
        .admin_get("/v1/cluster/usage")
        .await
        .map_err(|e| format!("cluster usage: {e:#}"))?
        .unwrap_or_default();
    let cold: u64 = usage["zones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|z| z["class"] == "GLACIER_IR" && z["zone"] == crate::cluster::COLD_ZONE)
        .filter_map(|z| z["stored_bytes"].as_u64())
        .sum();
    tracing::info!(expired, cold_bytes = cold, "lifecycle work seen");
    if expired == 0 || cold == 0 {
        return Err(format!(
            "the lifecycle rules did not act: {expired} expired keys read back absent, {cold} GLACIER_IR bytes in {}",
            crate::cluster::COLD_ZONE
        ));
    }
    Ok(())
}

/// The lifecycle scenario's rules: worker 0's keys expire a day after each
/// write; every other object of 128 KiB or more moves to GLACIER_IR at
/// once (day 0), on the cold zone. Days are one second.
async fn put_lifecycle_rules(cluster: &Cluster, bucket: &str) -> Result<()> {
    let xml = format!(
        "<LifecycleConfiguration>\
         <Rule><ID>expire</ID><Status>Enabled</Status><Filter><Prefix>{}</Prefix></Filter>\
         <Expiration><Days>1</Days></Expiration></Rule>\
         <Rule><ID>cold</ID><Status>Enabled</Status><Filter><Prefix></Prefix></Filter>\
         <Transition><Days>0</Days><StorageClass>GLACIER_IR</StorageClass></Transition></Rule>\
         </LifecycleConfiguration>",
        scenario::EXPIRING_PREFIX
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = cluster
            .gateway(0)
            .request(
                "PUT",
                &format!("/{bucket}"),
                &[("lifecycle", "")],
                &[],
                bytes::Bytes::from(xml.clone()),
            )
            .await;
        match r {
            Ok(resp) if resp.is_success() => return Ok(()),
            other if Instant::now() > deadline => {
                anyhow::bail!("put the lifecycle rules: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Polls `/v1/repair/status` until it reports `healthy` and not `stale`.
/// Returns the time since `since` and a state word for the report.
async fn wait_redundancy(
    cluster: &Cluster,
    since: Instant,
    bound: Duration,
) -> (Option<f64>, String) {
    let mut last = String::new();
    while since.elapsed() < bound {
        match cluster.admin_get("/v1/repair/status").await {
            Ok(None) => {
                return (
                    None,
                    "unknown (the gateway has no /v1/repair/status yet)".into(),
                )
            }
            Ok(Some(v)) => {
                if v["healthy"] == true && v["stale"] != true {
                    return (Some(since.elapsed().as_secs_f64()), "full".into());
                }
                last = format!("backlog {} bytes", v["backlog_bytes"]);
            }
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (
        None,
        format!("not full after {} s: {last}", bound.as_secs()),
    )
}

/// Fails the scenario unless every metad and data node logged starting on
/// the power-cut disk; records what the disks undid.
fn check_power_cut(cluster: &Cluster, logs: &std::path::Path, sr: &mut ScenarioReport) {
    let mut stats = crate::power_cut::PowerCutStats::default();
    for role in [crate::cluster::Role::Metad, crate::cluster::Role::Datad] {
        for n in cluster.of(role) {
            let log =
                std::fs::read_to_string(logs.join(format!("{}.log", n.name))).unwrap_or_default();
            if crate::power_cut::tally(&log, &mut stats) == 0 {
                sr.failures.push(format!(
                    "{} never started on the power-cut disk (an image built without WEFT_FAULT_POWER_CUT?): its kills were not power cuts",
                    n.name
                ));
            }
        }
    }
    tracing::info!(?stats, "power-cut disks");
    sr.power_cut = Some(stats);
}

/// The daemons' power-cut disk, for the scenarios that cut power.
fn power_cut_env(combo: &[Scenario]) -> Vec<(String, String)> {
    if combo.iter().any(|s| s.needs_power_cut_disk()) {
        vec![("WEFT_FAULT_POWER_CUT".into(), "1".into())]
    } else {
        vec![]
    }
}

/// The `hidden-delete` bug: removes up to three objects whose latest write
/// was an acknowledged PUT, without recording it.
async fn hidden_delete(cluster: &Cluster, wl: &WorkloadConfig, recorder: &Recorder) {
    let history = recorder.snapshot();
    let mut last: std::collections::BTreeMap<&str, &crate::history::Op> = Default::default();
    for op in history.iter().filter(|o| o.kind.is_write()) {
        last.insert(op.key.as_str(), op);
    }
    let victims: Vec<&str> = last
        .iter()
        .filter(|(_, op)| op.is_ok() && matches!(op.kind, OpKind::Put | OpKind::MultipartPut))
        .map(|(k, _)| *k)
        .take(3)
        .collect();
    for key in victims {
        let r = cluster.gateway(0).delete_object(&wl.bucket, key).await;
        tracing::warn!(
            key,
            ok = r.map(|r| r.is_success()).unwrap_or(false),
            "injected bug: deleted an acknowledged object behind the history's back"
        );
    }
}

/// Failed requests by error, leaving out 416s of range GETs that overlap a
/// successful write to the same key of an object no longer than the range's
/// first byte (the object became shorter than the range meanwhile).
fn roll_failures(history: &[crate::history::Op]) -> std::collections::BTreeMap<String, u64> {
    use crate::history::{OpKind, Outcome};
    let mut out = std::collections::BTreeMap::new();
    for op in history {
        let Outcome::Error { kind, .. } = &op.outcome else {
            continue;
        };
        let raced = op.kind == OpKind::GetRange
            && kind.starts_with("http-416")
            && op.range_offset.is_some_and(|offset| {
                history.iter().any(|w| {
                    matches!(w.kind, OpKind::Put | OpKind::MultipartPut)
                        && w.is_ok()
                        && w.key == op.key
                        && w.size.is_some_and(|size| size <= offset)
                        && w.start_us < op.end_us
                        && op.start_us < w.end_us
                })
            });
        if !raced {
            *out.entry(kind.clone()).or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::roll_failures;
    use crate::history::{Op, OpKind, Outcome};

    fn op(kind: OpKind, key: &str, span: (i64, i64), error: Option<&str>) -> Op {
        let mut o = Op::new(kind, key);
        (o.start_us, o.end_us) = span;
        // Writes are 100 bytes long; ranges start at byte 500.
        if kind == OpKind::Put {
            o.size = Some(100);
        } else if kind == OpKind::GetRange {
            o.range_offset = Some(500);
        }
        if let Some(e) = error {
            o.outcome = Outcome::Error {
                kind: e.into(),
                detail: String::new(),
            };
        }
        o
    }

    #[test]
    fn a_range_get_that_raced_a_write_of_its_key_is_not_a_roll_failure() {
        let history = vec![
            op(OpKind::Put, "a", (100, 200), None),
            // Overlaps the write of "a": excused.
            op(
                OpKind::GetRange,
                "a",
                (150, 250),
                Some("http-416 InvalidRange"),
            ),
            // No write of "b" overlaps it: counted.
            op(
                OpKind::GetRange,
                "b",
                (150, 250),
                Some("http-416 InvalidRange"),
            ),
            // After the write of "a" ended: counted.
            op(
                OpKind::GetRange,
                "a",
                (300, 400),
                Some("http-416 InvalidRange"),
            ),
            // A write of "c" long enough for the range cannot explain it.
            {
                let mut w = op(OpKind::Put, "c", (100, 200), None);
                w.size = Some(1_000);
                w
            },
            op(
                OpKind::GetRange,
                "c",
                (150, 250),
                Some("http-416 InvalidRange"),
            ),
            // Any other error is counted, write or not.
            op(
                OpKind::Get,
                "a",
                (150, 250),
                Some("http-503 ServiceUnavailable"),
            ),
        ];
        let failed = roll_failures(&history);
        assert_eq!(failed.get("http-416 InvalidRange"), Some(&3));
        assert_eq!(failed.get("http-503 ServiceUnavailable"), Some(&1));
        assert_eq!(failed.len(), 2);
    }
}
