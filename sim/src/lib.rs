//! `weft sim`: a seeded, deterministic simulation of a Weft cluster.
//!
//! Three metad voters (and, with `--data-plane`, six data nodes and an S3
//! gateway) run in this process on one current-thread tokio runtime with
//! paused time, with no sockets: their routers answer through
//! [`net::SimNet`], which delays, loses, duplicates and partitions
//! requests and loses or resets responses, and their raft RPCs go the same
//! way; their files go through a power-cut disk. Workers write, overwrite,
//! delete, read and put upload parts through the real
//! [`weft_client::MetadClient`] (its retry contract is part of what is
//! tested), and S3 clients sign requests to the gateway; a nemesis crashes
//! and restarts processes, cuts power to all of them, partitions voters,
//! loses responses in spells, fails a data node's disk, rots shards and
//! jumps the wall clock. Every choice comes from the seed (the workloads'
//! and the nemesis's generators, the network's, and the thread generator
//! metad and openraft draw ids and election timeouts from), so a seed
//! replays the same run: the trace hash says so.
//!
//! Checks, each a failure of the run:
//! - every read answers a value the key may hold: the last acknowledged
//!   write, or one whose outcome the client was told is unknown;
//! - no `PutPart` answer releases the segments of the part it put;
//! - with the data plane, the chaos suite's history checker passes
//!   ([`history`]), and after every nemesis step every referenced segment
//!   keeps k shard files where metad placed them ([`invariants`]);
//! - after the faults stop, every voter's state machine converges to the
//!   same digest at the same applied index;
//! - the final value of every key is one it may hold.
//!
//! docs/testing.md (Simulation) says what is not simulated yet.

#![warn(missing_docs)]

mod clock;
mod cluster;
mod data;
mod disk;
mod history;
mod invariants;
mod nemesis;
pub mod net;
mod s3_workload;
mod workload;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use cluster::{voter_addr, Cluster, VOTERS};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use weft_client::MetadClient;
use weft_common::rpc::{Query, QueryResult};

pub use net::{NetFaults, NetStats, SimNet};

/// Power cuts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerCuts {
    /// Whole-cluster cuts.
    pub cuts: u32,
    /// Cuts of one process (a voter or a data node).
    pub node_cuts: u32,
    /// Writes and truncations undone.
    pub writes_undone: usize,
    /// Creates, renames and removes undone.
    pub entries_undone: usize,
}

/// One simulation run's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Decides every choice of the run.
    pub seed: u64,
    /// Client operations across all workers.
    pub steps: u32,
    /// A fixed bug to re-introduce (builds with the `failpoints` feature).
    pub bug: Option<weft_common::failpoints::Bug>,
    /// Also run six data nodes and a gateway, with S3 clients and data-node
    /// crashes (experimental: see docs/testing.md, Simulation).
    pub data_plane: bool,
}

impl SimConfig {
    /// The default run length: a few seconds of real time here.
    pub const DEFAULT_STEPS: u32 = 300;
}

/// What a run did and found.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    /// The seed.
    pub seed: u64,
    /// Client operations.
    pub steps: u32,
    /// Hash of the run's trace: equal for two runs of one seed when the
    /// simulation is deterministic.
    pub trace_hash: String,
    /// Every violated check (empty: the run passed).
    pub failures: Vec<String>,
    /// Writes the client saw acknowledged.
    pub acked: u64,
    /// Writes whose outcome the client was told is unknown.
    pub unknown: u64,
    /// Reads checked against the model.
    pub reads: u64,
    /// Voter crashes (a power cut counts every voter).
    pub crashes: u32,
    /// Whole-group power cuts, and the unsynced writes and directory
    /// entries they undid.
    pub power_cuts: PowerCuts,
    /// Segments whose shards were rotted (three each, in different
    /// stripes).
    pub rotted: usize,
    /// What the network did.
    pub net: NetStats,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// The last lines of the trace (for a failing run's report).
    pub tail: Vec<String>,
    /// Every line of the trace (`weft sim --trace FILE` writes it).
    pub trace: Vec<String>,
}

impl SimOutcome {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The clock, the disk and the failpoint switches are the process's: one
/// run at a time (tests that share a process wait for each other).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs one simulation on a fresh current-thread runtime with paused time.
pub fn run(cfg: &SimConfig) -> SimOutcome {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    weft_common::effects::enter_simulation();
    for bug in weft_common::failpoints::Bug::ALL {
        weft_common::failpoints::set(bug, false);
    }
    if let Some(bug) = cfg.bug {
        if !weft_common::failpoints::set(bug, true) {
            return failed(
                cfg,
                format!(
                    "cannot re-introduce {}: this build has no failpoints (build with the `failpoints` feature)",
                    bug.name()
                ),
            );
        }
    }
    clock::install_and_reset();
    weft_common::durable_file::restart_temp_names();
    weft_common::effects::seed_thread(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 1);
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    // tokio's `select!` picks among ready branches from a runtime generator
    // that only an unstable setting can seed.
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&cfg.seed.to_le_bytes()));
    let rt = builder.build().expect("a current-thread runtime builds");
    // A panic anywhere in the simulated cluster (its blocking work runs
    // inline, on this thread) is a finding like any other, not the end of
    // a sweep.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(simulate(cfg.clone()))
    }));
    match run {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            if let Some(disk) = disk::installed() {
                disk.end();
            }
            failed(cfg, format!("the simulated cluster panicked: {what}"))
        }
    }
}

/// The outcome of a run that could not run or did not finish.
fn failed(cfg: &SimConfig, failure: String) -> SimOutcome {
    SimOutcome {
        seed: cfg.seed,
        steps: cfg.steps,
        trace_hash: String::new(),
        failures: vec![failure],
        acked: 0,
        unknown: 0,
        reads: 0,
        crashes: 0,
        power_cuts: PowerCuts::default(),
        rotted: 0,
        net: NetStats::default(),
        simulated: Duration::ZERO,
        tail: Vec::new(),
        trace: Vec::new(),
    }
}

/// The recorded events of a run, hashed for the determinism check.
#[derive(Default)]
pub(crate) struct Trace {
    start: Option<tokio::time::Instant>,
    lines: Vec<String>,
    /// The run's directory, as named and with symlinks resolved: paths
    /// under it (in error messages) differ from run to run, so the trace
    /// shows `<path>` instead.
    run_dir: Vec<String>,
}

impl Trace {
    pub(crate) fn log(&mut self, line: String) {
        // A word naming a path under the run's directory, or the start of
        // one cut short (answers are quoted up to a length), or any
        // temporary directory's path.
        let unstable = |word: &str| {
            word.contains("/.tmp") || self.run_dir.iter().any(|d| word.contains(d.as_str()))
        };
        let line = if line.split(' ').any(unstable) {
            line.split(' ')
                .map(|word| if unstable(word) { "<path>" } else { word })
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            line
        };
        let start = *self.start.get_or_insert_with(tokio::time::Instant::now);
        let ms = start.elapsed().as_millis();
        tracing::debug!(target: "weft_sim", "{ms:>8} {line}");
        self.lines.push(format!("{ms} {line}"));
    }

    fn hash(&self) -> String {
        let mut h = Sha256::new();
        for l in &self.lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        hex::encode(&h.finalize()[..16])
    }
}

async fn simulate(cfg: SimConfig) -> SimOutcome {
    let trace = Rc::new(RefCell::new(Trace::default()));
    let started = tokio::time::Instant::now();
    let net = SimNet::new(cfg.seed);
    let Some(disk) = disk::installed() else {
        let failures = vec![
            "the simulated disk could not be installed: a file was written through another disk before the simulation started".to_string(),
        ];
        return outcome(&cfg, &trace, failures, Default::default(), 0, &net, started);
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    {
        let mut t = trace.borrow_mut();
        t.run_dir.push(dir.path().to_string_lossy().into_owned());
        if let Ok(canonical) = dir.path().canonicalize() {
            t.run_dir.push(canonical.to_string_lossy().into_owned());
        }
    }
    let skip_fsync = weft_common::failpoints::active(weft_common::failpoints::Bug::SkipFsync);
    let mut processes: Vec<String> = (0..VOTERS).map(|i| format!("metad-{}", i + 1)).collect();
    if cfg.data_plane {
        processes.extend((0..data::DATADS).map(|i| format!("datad-{}", i + 1)));
    }
    if let Err(e) = disk.begin(dir.path(), &processes, skip_fsync) {
        let failures = vec![format!("start the simulated disk: {e}")];
        return outcome(&cfg, &trace, failures, Default::default(), 0, &net, started);
    }
    let mut cluster = Cluster {
        dir,
        disk: disk.clone(),
        net: net.clone(),
        voters: (0..VOTERS).map(|_| None).collect(),
        data: data::DataPlane::new(),
        data_plane: cfg.data_plane,
        power_cuts: PowerCuts::default(),
    };
    let mut failures = Vec::new();
    for i in 0..VOTERS {
        if let Err(e) = cluster.start(i).await {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        let members: BTreeMap<u64, openraft::BasicNode> = (0..VOTERS)
            .map(|i| {
                (
                    i as u64 + 1,
                    openraft::BasicNode {
                        addr: voter_addr(i),
                    },
                )
            })
            .collect();
        if let Some((h, _)) = &cluster.voters[0] {
            if let Err(e) = h.raft().initialize(members).await {
                failures.push(format!("initialize the group: {e}"));
            }
        }
    }
    if !failures.is_empty() {
        return outcome(&cfg, &trace, failures, Default::default(), 0, &net, started);
    }
    let client = |name: &str| {
        MetadClient::with_transport((0..VOTERS).map(voter_addr).collect(), net.endpoint(name))
    };
    let setup = client("127.0.2.250:1");
    if let Err(e) = workload::create_bucket(&setup).await {
        failures.push(format!("create the bucket before any fault: {e}"));
        return outcome(&cfg, &trace, failures, Default::default(), 0, &net, started);
    }
    trace.borrow_mut().log("bucket created".into());
    let s3 = |name: &str| s3_workload::S3::new(net.endpoint(name));
    if cfg.data_plane {
        for i in 0..data::DATADS {
            if let Err(e) = cluster.start_datad(i).await {
                failures.push(e);
            }
        }
        let metad_addrs: Vec<String> = (0..VOTERS).map(voter_addr).collect();
        if let Err(e) = cluster.data.start_gateway(&net, metad_addrs).await {
            failures.push(e);
        }
        if failures.is_empty() {
            if let Err(e) = create_s3_bucket(&s3("127.0.2.249:1")).await {
                failures.push(e);
            }
        }
        if !failures.is_empty() {
            return outcome(&cfg, &trace, failures, Default::default(), 0, &net, started);
        }
        trace.borrow_mut().log("data nodes and gateway up".into());
    }

    net.set_faults(NetFaults {
        loss: 0.02,
        response_loss: 0.03,
        duplicate: 0.03,
        max_delay: Duration::from_millis(40),
    });
    let cluster = Rc::new(tokio::sync::Mutex::new(cluster));
    let workers_left = Rc::new(Cell::new(workload::WORKERS));
    let models = Rc::new(RefCell::new(workload::Models::default()));
    let crashes = Rc::new(Cell::new(0u32));
    let nemesis_failures = Rc::new(RefCell::new(Vec::new()));
    let (metad_steps, s3_steps, s3_workers) = if cfg.data_plane {
        (cfg.steps / 2, cfg.steps / 2, s3_workload::WORKERS)
    } else {
        (cfg.steps, 0, 0)
    };
    let per_worker = metad_steps.div_ceil(workload::WORKERS as u32);
    let per_s3_worker = s3_steps.div_ceil(s3_workload::WORKERS as u32);
    workers_left.set(workload::WORKERS + s3_workers);
    let workers = (0..workload::WORKERS).map(|w| {
        let client = client(&format!("127.0.2.{}:1", w + 1));
        let rng = StdRng::seed_from_u64(cfg.seed ^ ((w as u64 + 1) << 48));
        let (trace, models, left) = (trace.clone(), models.clone(), workers_left.clone());
        async move {
            workload::worker(w, client, rng, per_worker, &trace, &models).await;
            left.set(left.get() - 1);
        }
    });
    let history = Rc::new(RefCell::new(history::Recorder::new()));
    let s3_workers = (0..s3_workers).map(|w| {
        let client = s3(&format!("127.0.2.{}:1", 100 + w));
        let rng = StdRng::seed_from_u64(cfg.seed ^ ((w as u64 + 1) << 40));
        let (trace, models, left) = (trace.clone(), models.clone(), workers_left.clone());
        let history = history.clone();
        async move {
            s3_workload::worker(w, client, rng, per_s3_worker, &trace, &models, &history).await;
            left.set(left.get() - 1);
        }
    });
    let nemesis = nemesis::nemesis(
        StdRng::seed_from_u64(cfg.seed ^ 0xDEAD_BEEF),
        cluster.clone(),
        trace.clone(),
        workers_left.clone(),
        crashes.clone(),
        nemesis_failures.clone(),
    );
    futures::join!(
        futures::future::join_all(workers),
        futures::future::join_all(s3_workers),
        nemesis
    );

    // Quiet: no more faults; every voter and data node back.
    net.set_faults(NetFaults::NONE);
    net.heal();
    let rotted;
    {
        let mut c = cluster.lock().await;
        for i in 0..VOTERS {
            if c.voters[i].is_none() {
                if let Err(e) = c.start(i).await {
                    failures.push(e);
                }
            }
        }
        if c.data_plane {
            for i in 0..data::DATADS {
                if c.data.datads[i].is_none() {
                    if let Err(e) = c.start_datad(i).await {
                        failures.push(e);
                    }
                }
            }
        }
        rotted = c.data.rotted.len();
    }
    trace
        .borrow_mut()
        .log("faults stopped; all voters and data nodes up".into());
    failures.extend(nemesis_failures.borrow().iter().cloned());
    failures.extend(models.borrow().failures.iter().cloned());
    if let Err(e) = converge(&net, &trace).await {
        failures.push(e);
    }
    let checker = client("127.0.2.251:1");
    failures.extend(workload::final_reads(&checker, &models, &trace).await);
    if cfg.data_plane {
        failures.extend(
            s3_workload::final_reads(&s3("127.0.2.253:1"), &models, &trace, &history).await,
        );
    }
    if cfg.data_plane {
        let dir = cluster.lock().await.dir.path().to_path_buf();
        let metad = client("127.0.2.248:1");
        match invariants::segments_keep_read_quorum(&dir, &metad).await {
            Ok((judged, found)) => {
                trace.borrow_mut().log(format!(
                    "{judged} referenced segments checked on disk: {} problems",
                    found.len()
                ));
                failures.extend(found);
                let objects = history.borrow().final_objects();
                if judged == 0 && objects > 0 {
                    failures.push(format!(
                        "the final reads found {objects} objects, yet no segment of the S3 bucket was in metad's segment index to check"
                    ));
                }
            }
            Err(e) => failures.push(format!("with no faults, {e}")),
        }
    }
    let power_cuts;
    let (acked, unknown, reads) = {
        let m = models.borrow();
        (m.acked, m.unknown, m.reads)
    };
    {
        let mut c = cluster.lock().await;
        let net = c.net.clone();
        c.data.stop(&net).await;
        for i in 0..VOTERS {
            c.crash(i).await;
        }
        c.disk.end();
        power_cuts = c.power_cuts;
    }
    let mut out = outcome(
        &cfg,
        &trace,
        failures,
        (acked, unknown, reads),
        crashes.get(),
        &net,
        started,
    );
    out.simulated = started.elapsed();
    out.power_cuts = power_cuts;
    out.rotted = rotted;
    out
}

fn outcome(
    cfg: &SimConfig,
    trace: &Rc<RefCell<Trace>>,
    failures: Vec<String>,
    (acked, unknown, reads): (u64, u64, u64),
    crashes: u32,
    net: &SimNet,
    started: tokio::time::Instant,
) -> SimOutcome {
    let t = trace.borrow();
    SimOutcome {
        seed: cfg.seed,
        steps: cfg.steps,
        trace_hash: t.hash(),
        failures,
        acked,
        unknown,
        reads,
        crashes,
        power_cuts: PowerCuts::default(),
        rotted: 0,
        net: net.stats(),
        simulated: started.elapsed(),
        tail: t.lines.iter().rev().take(30).rev().cloned().collect(),
        trace: t.lines.clone(),
    }
}

/// Waits (up to 60 s simulated) until every voter has applied the same index
/// and holds the same state-machine digest.
async fn converge(net: &SimNet, trace: &Rc<RefCell<Trace>>) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut seen = Vec::new();
        for i in 0..VOTERS {
            let one =
                MetadClient::with_transport(vec![voter_addr(i)], net.endpoint("127.0.2.252:1"))
                    .with_deadline(Duration::from_secs(2));
            match one.query(&Query::Digest).await {
                Ok(QueryResult::Digest {
                    applied_index,
                    digest,
                }) => seen.push((applied_index, digest)),
                Ok(other) => seen.push((None, format!("unexpected answer {other:?}"))),
                Err(e) => seen.push((None, format!("no digest: {e}"))),
            }
        }
        if seen.windows(2).all(|w| w[0] == w[1]) && seen[0].0.is_some() {
            trace.borrow_mut().log(format!(
                "converged at index {:?} digest {}",
                seen[0].0, seen[0].1
            ));
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "voters did not converge within 60 s after the faults stopped: {seen:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the S3 workers' bucket through the gateway, retrying while the
/// group settles (no faults yet).
async fn create_s3_bucket(s3: &s3_workload::S3) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = match s3
            .call("PUT", &format!("/{}", s3_workload::BUCKET), b"")
            .await
        {
            Ok(a) if a.status == 200 => return Ok(()),
            Ok(a) => format!("HTTP {}: {}", a.status, String::from_utf8_lossy(&a.body)),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("create the S3 bucket before any fault: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
