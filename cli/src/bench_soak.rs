//! `weft bench soak`: mixed S3 load for minutes to hours while the process's
//! open files, TCP connections, RSS and release queues are sampled, to show
//! that nothing keeps growing (issue 11: a delete burst once ran `weft dev`
//! out of file descriptors). Prints and records the curves; with `--check`
//! it also judges them, and fails on any wrong answer.

use crate::admin_client::AdminClient;
use crate::dev_cluster::{Credentials, DevCluster, DevClusterConfig};
use crate::soak_series::{self, Tolerance, Verdict};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `weft bench soak`.
#[derive(clap::Args, Clone, Debug)]
pub struct SoakArgs {
    /// Minutes of load (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// Exit non-zero if open fds, TCP connections, RSS or release queue
    /// depth keep growing, if the queues do not drain afterwards, if any
    /// answer was wrong, or if errors exceed --max-error-fraction.
    #[arg(long)]
    pub check: bool,
    /// Concurrent clients of the mixed workload.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    pub interval_secs: u64,
    /// Seconds between delete bursts (0: none).
    #[arg(long, default_value_t = 60)]
    pub burst_every_secs: u64,
    /// 4 KiB objects written and then deleted in each burst.
    #[arg(long, default_value_t = 3000)]
    pub burst_objects: usize,
    /// Concurrent clients of a burst.
    #[arg(long, default_value_t = 32)]
    pub burst_clients: usize,
    /// Largest tolerated share of requests that fail (errors, not wrong
    /// answers: one wrong answer always fails --check).
    #[arg(long, default_value_t = 0.001)]
    pub max_error_fraction: f64,
    /// CSV of the samples (default: $TMPDIR/weft-soak-<unix time>.csv).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// S3 endpoint of a running `weft dev` to load, instead of starting a
    /// cluster inside this process. Needs --pid.
    #[arg(long, requires = "pid")]
    pub endpoint: Option<String>,
    /// Process id of that `weft dev`: the process that is measured.
    #[arg(long, requires = "endpoint")]
    pub pid: Option<u32>,
    /// Its admin endpoint (metrics and the data nodes' addresses).
    #[arg(long, default_value = "http://127.0.0.1:9001")]
    pub admin: String,
    /// Its S3 region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Its data directory, for the root credentials (unless
    /// WEFT_ROOT_ACCESS_KEY and WEFT_ROOT_SECRET_KEY are set).
    #[arg(long, default_value = "weft-data")]
    pub data: PathBuf,
}

const SMALL: usize = 4 << 10;
const LARGE: usize = 1 << 20;
/// Live objects per client: bounds the data set, so disk use stays flat and
/// any growth measured is not the data's.
const SMALL_PER_CLIENT: usize = 150;
const LARGE_PER_CLIENT: usize = 2;
const WARMUP: f64 = 0.2;
/// How long the release queues get to empty after the load stops: the data
/// nodes keep recently read shards for a 30 s quiet period.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

// ---- S3 requests ---------------------------------------------------------------

/// Endpoint and root key; every client signs with it over its own pool.
struct S3 {
    endpoint: String,
    creds: Credentials,
    region: String,
    bucket: String,
}

impl S3 {
    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("static client settings")
    }

    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        key: Option<&str>,
        query: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let path = match key {
            Some(k) => format!("/{}/{k}", self.bucket),
            None => format!("/{}", self.bucket),
        };
        let signed = weft_common::sigv4::sign(&weft_common::sigv4::Request {
            method: method.as_str(),
            host: self.endpoint.trim_start_matches("http://"),
            path: &path,
            query,
            headers: &[],
            payload_hash: "UNSIGNED-PAYLOAD",
            access_key: &self.creds.access_key,
            secret_key: &self.creds.secret_key,
            region: &self.region,
            unix_secs: time::OffsetDateTime::now_utc().unix_timestamp(),
        });
        http.request(
            method,
            format!("{}{}", self.endpoint, signed.path_and_query),
        )
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header("x-amz-date", signed.amz_date)
        .header("authorization", signed.authorization)
    }
}

/// Distinct, checkable content for every (seed, length).
fn body(seed: u64, len: usize) -> Vec<u8> {
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

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

// ---- outcome counting ----------------------------------------------------------

#[derive(Clone, Copy)]
enum Op {
    PutSmall,
    PutLarge,
    Get,
    List,
    Delete,
    BurstPut,
    BurstDelete,
}
const OPS: [&str; 7] = [
    "put_4k",
    "put_1m",
    "get",
    "list",
    "delete",
    "burst_put",
    "burst_delete",
];

#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    Error,
    Wrong,
}

#[derive(Default)]
struct Stats {
    counts: [[AtomicU64; 3]; 7],
    latencies_us: Mutex<Vec<u32>>,
    /// The first few errors and every wrong answer, to print at the end.
    notes: Mutex<Vec<String>>,
}

type Counts = [[u64; 3]; 7];

impl Stats {
    fn record(&self, op: Op, outcome: Outcome, t0: Instant, note: impl FnOnce() -> String) {
        self.counts[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.latencies_us.lock().expect("latency lock").push(us);
        if !matches!(outcome, Outcome::Ok) {
            let mut notes = self.notes.lock().expect("notes lock");
            let wrong = matches!(outcome, Outcome::Wrong);
            if wrong || notes.len() < 20 {
                let n = note();
                if wrong {
                    eprintln!("WRONG ANSWER: {} {n}", OPS[op as usize]);
                }
                notes.push(format!(
                    "{} {}: {n}",
                    if wrong { "wrong" } else { "error" },
                    OPS[op as usize]
                ));
            }
        }
    }

    fn snapshot(&self) -> Counts {
        let mut c = [[0; 3]; 7];
        for (op, row) in self.counts.iter().enumerate() {
            for (o, v) in row.iter().enumerate() {
                c[op][o] = v.load(Ordering::Relaxed);
            }
        }
        c
    }

    /// p99 of the requests finished since the last call, ms.
    fn take_p99_ms(&self) -> Option<f64> {
        let mut lat = std::mem::take(&mut *self.latencies_us.lock().expect("latency lock"));
        if lat.is_empty() {
            return None;
        }
        lat.sort_unstable();
        Some(lat[((lat.len() - 1) as f64 * 0.99).round() as usize] as f64 / 1000.0)
    }
}

fn totals(c: &Counts) -> [u64; 3] {
    let mut t = [0; 3];
    for row in c {
        for (o, v) in row.iter().enumerate() {
            t[o] += v;
        }
    }
    t
}

// ---- the workload --------------------------------------------------------------

/// One client: PUTs (4 KiB and 1 MiB, new keys and overwrites), GETs that
/// check every byte, LISTs that must show exactly the keys it owns, and
/// DELETEs. Each client owns its key prefix, so what it should see is known
/// without coordination: a 404 for a key it wrote, different bytes, or a
/// listing that differs is a wrong answer, not an error.
async fn client_loop(id: usize, s3: Arc<S3>, stats: Arc<Stats>, deadline: Instant) {
    let http = S3::client();
    let prefix = format!("c{id:03}/");
    // key -> (seed, length) of what it holds now.
    let mut live: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    // Keys whose last write failed: either version may be there.
    let mut uncertain: HashSet<String> = HashSet::new();
    let mut rng = Rng((id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let roll = rng.below(100);
        let (small, large) = live.iter().fold((0, 0), |(s, l), (_, v)| {
            if v.1 == SMALL {
                (s + 1, l)
            } else {
                (s, l + 1)
            }
        });
        let pick = |rng: &mut Rng, len: Option<usize>| -> Option<String> {
            let keys: Vec<&String> = live
                .iter()
                .filter(|(_, v)| len.is_none_or(|l| v.1 == l))
                .map(|(k, _)| k)
                .collect();
            (!keys.is_empty()).then(|| keys[rng.below(keys.len())].clone())
        };
        seq += 1;
        let seed = ((id as u64) << 40) | seq;
        if roll < 30 || (roll >= 34 && live.is_empty()) {
            let key = if small < SMALL_PER_CLIENT {
                format!("{prefix}s{seq}")
            } else {
                pick(&mut rng, Some(SMALL)).expect("at the cap, so some exist")
            };
            put(&s3, &http, &stats, Op::PutSmall, key, seed, SMALL, &mut live, &mut uncertain).await;
        } else if roll < 34 {
            let key = if large < LARGE_PER_CLIENT {
                format!("{prefix}l{seq}")
            } else {
                pick(&mut rng, Some(LARGE)).expect("at the cap, so some exist")
            };
            put(&s3, &http, &stats, Op::PutLarge, key, seed, LARGE, &mut live, &mut uncertain).await;
        } else if roll < 70 {
            let key = pick(&mut rng, None).expect("not empty");
            get(&s3, &http, &stats, &key, live[&key]).await;
        } else if roll < 74 {
            list(&s3, &http, &stats, &prefix, &live, &uncertain).await;
        } else {
            let key = pick(&mut rng, None).expect("not empty");
            let t0 = Instant::now();
            let r = s3.request(&http, reqwest::Method::DELETE, Some(&key), &[]).send().await;
            live.remove(&key);
            match r {
                Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                    uncertain.remove(&key);
                    stats.record(Op::Delete, Outcome::Ok, t0, String::new)
                }
                r => {
                    uncertain.insert(key.clone());
                    stats.record(Op::Delete, Outcome::Error, t0, || describe(&key, r))
                }
            }
        }
    }
}

fn describe(key: &str, r: reqwest::Result<reqwest::Response>) -> String {
    match r {
        Ok(r) => format!("{key}: HTTP {}", r.status()),
        Err(e) => format!("{key}: {e}"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn put(
    s3: &S3,
    http: &reqwest::Client,
    stats: &Stats,
    op: Op,
    key: String,
    seed: u64,
    len: usize,
    live: &mut BTreeMap<String, (u64, usize)>,
    uncertain: &mut HashSet<String>,
) {
    let t0 = Instant::now();
    let r = s3
        .request(http, reqwest::Method::PUT, Some(&key), &[])
        .body(body(seed, len))
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => {
            uncertain.remove(&key);
            live.insert(key, (seed, len));
            stats.record(op, Outcome::Ok, t0, String::new)
        }
        r => {
            live.remove(&key);
            stats.record(op, Outcome::Error, t0, || describe(&key, r));
            uncertain.insert(key);
        }
    }
}

async fn get(s3: &S3, http: &reqwest::Client, stats: &Stats, key: &str, (seed, len): (u64, usize)) {
    let t0 = Instant::now();
    let r = s3.request(http, reqwest::Method::GET, Some(key), &[]).send().await;
    let (outcome, note) = match r {
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
            (Outcome::Wrong, format!("{key}: 404 for an object written and not deleted"))
        }
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(b) if b[..] == body(seed, len)[..] => (Outcome::Ok, String::new()),
            Ok(b) => (
                Outcome::Wrong,
                format!("{key}: {} bytes that differ from the {len} written", b.len()),
            ),
            Err(e) => (Outcome::Error, format!("{key}: body: {e}")),
        },
        r => (Outcome::Error, describe(key, r)),
    };
    stats.record(Op::Get, outcome, t0, || note);
}

async fn list(
    s3: &S3,
    http: &reqwest::Client,
    stats: &Stats,
    prefix: &str,
    live: &BTreeMap<String, (u64, usize)>,
    uncertain: &HashSet<String>,
) {
    let t0 = Instant::now();
    let r = s3
        .request(http, reqwest::Method::GET, None, &[("list-type", "2"), ("prefix", prefix)])
        .send()
        .await;
    let text = match r {
        Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => return stats.record(Op::List, Outcome::Error, t0, || format!("{prefix}: {e}")),
    };
    let listed: HashSet<String> = text
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = live.keys().filter(|k| !listed.contains(*k)).collect();
    let extra: Vec<&String> = listed
        .iter()
        .filter(|k| !live.contains_key(*k) && !uncertain.contains(*k))
        .collect();
    if missing.is_empty() && extra.is_empty() {
        stats.record(Op::List, Outcome::Ok, t0, String::new)
    } else {
        stats.record(Op::List, Outcome::Wrong, t0, || {
            format!("{prefix}: missing {missing:?}, deleted but listed {extra:?}")
        })
    }
}

/// `items` done by `clients` tasks, each with its own connection pool, as
/// independent clients would. Returns the items `f` succeeded on.
async fn fan_out<F, Fut>(clients: usize, items: Vec<String>, f: F) -> Vec<String>
where
    F: Fn(reqwest::Client, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..clients.max(1) {
        let (items, next, f) = (items.clone(), next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let http = S3::client();
            let mut done = vec![];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                if f(http.clone(), item.clone()).await {
                    done.push(item.clone());
                }
            }
            done
        }));
    }
    let mut done = vec![];
    for t in tasks {
        done.extend(t.await.unwrap_or_default());
    }
    done
}

/// What one delete burst did.
struct Burst {
    at_secs: f64,
    deleted: usize,
    failed: usize,
    secs: f64,
}

/// Every `every`, writes `objects` small objects and deletes them all from
/// `clients` clients at once: the pattern that once exhausted fds.
async fn bursts(s3: Arc<S3>, stats: Arc<Stats>, start: Instant, deadline: Instant, a: SoakArgs) -> Vec<Burst> {
    let mut out = vec![];
    if a.burst_every_secs == 0 || a.burst_objects == 0 {
        return out;
    }
    for round in 1.. {
        let at = start + Duration::from_secs(a.burst_every_secs * round);
        if at >= deadline {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let keys: Vec<String> = (0..a.burst_objects).map(|i| format!("burst/{round}/{i:05}")).collect();
        let (s, st) = (s3.clone(), stats.clone());
        let written = fan_out(a.burst_clients, keys, move |http, key| {
            let (s3, stats) = (s.clone(), st.clone());
            async move {
                let t0 = Instant::now();
                let r = s3
                    .request(&http, reqwest::Method::PUT, Some(&key), &[])
                    .body(body(round, SMALL))
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                let outcome = if ok { Outcome::Ok } else { Outcome::Error };
                stats.record(Op::BurstPut, outcome, t0, || describe(&key, r));
                ok
            }
        })
        .await;
        let t0 = Instant::now();
        let n = written.len();
        let (s, st) = (s3.clone(), stats.clone());
        let deleted = fan_out(a.burst_clients, written, move |http, key| {
            let (s3, stats) = (s.clone(), st.clone());
            async move {
                let t0 = Instant::now();
                let r = s3.request(&http, reqwest::Method::DELETE, Some(&key), &[]).send().await;
                let ok = matches!(&r, Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT);
                let outcome = if ok { Outcome::Ok } else { Outcome::Error };
                stats.record(Op::BurstDelete, outcome, t0, || describe(&key, r));
                ok
            }
        })
        .await;
        let b = Burst {
            at_secs: (at - start).as_secs_f64(),
            deleted: deleted.len(),
            failed: n - deleted.len(),
            secs: t0.elapsed().as_secs_f64(),
        };
        println!(
            "  burst {round} at {:.0}s: {} DELETEs in {:.1}s ({:.0}/s), {} failed",
            b.at_secs,
            b.deleted,
            b.secs,
            b.deleted as f64 / b.secs.max(1e-9),
            b.failed
        );
        out.push(b);
    }
    out
}

// ---- the measured process ------------------------------------------------------

/// The process under load and where its gauges are.
struct Target {
    pid: u32,
    gateway_metrics: String,
    datad_metrics: Vec<String>,
    what: String,
    /// The cluster when it runs in this process (dropped last).
    cluster: Option<(DevCluster, tempfile::TempDir)>,
}

/// Root credentials of an attached `weft dev`: never made up here.
fn attached_credentials(data: &std::path::Path) -> Result<Credentials> {
    if let (Ok(a), Ok(s)) = (
        std::env::var("WEFT_ROOT_ACCESS_KEY"),
        std::env::var("WEFT_ROOT_SECRET_KEY"),
    ) {
        return Ok(Credentials { access_key: a, secret_key: s });
    }
    let path = data.join("credentials.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!("no root credentials: set WEFT_ROOT_ACCESS_KEY and WEFT_ROOT_SECRET_KEY, or point --data at the weft dev data directory (tried {})", path.display())
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))
}

async fn target(a: &SoakArgs) -> Result<(Target, S3)> {
    let bucket = format!("soak-{}", time::OffsetDateTime::now_utc().unix_timestamp());
    if let (Some(endpoint), Some(pid)) = (&a.endpoint, a.pid) {
        soak_series::fd_count(pid)?;
        let creds = attached_credentials(&a.data)?;
        let admin = AdminClient::new(&a.admin, &creds.access_key, &creds.secret_key);
        let status: serde_json::Value = admin
            .call(reqwest::Method::GET, "/v1/cluster/status", None)
            .await
            .context("find the data nodes through the admin API (--admin)")?;
        let datad_metrics = status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["info"]["addr"].as_str())
            .map(|addr| format!("http://{addr}/metrics"))
            .collect();
        let t = Target {
            pid,
            gateway_metrics: format!("{}/metrics", a.admin.trim_end_matches('/')),
            datad_metrics,
            what: format!("process {pid} (the weft dev at {endpoint})"),
            cluster: None,
        };
        let s3 = S3 { endpoint: endpoint.trim_end_matches('/').to_string(), creds, region: a.region.clone(), bucket };
        return Ok((t, s3));
    }
    let dir = tempfile::tempdir().context("make a temporary data directory (set TMPDIR to move it)")?;
    let c = DevCluster::start(DevClusterConfig::ephemeral(dir.path()))
        .await
        .context("start the in-process dev cluster")?;
    let s3 = S3 { endpoint: c.s3_endpoint(), creds: c.credentials().clone(), region: c.region().to_string(), bucket };
    let t = Target {
        pid: std::process::id(),
        gateway_metrics: format!("{}/metrics", c.admin_endpoint()),
        datad_metrics: (0..c.datad_count())
            .filter_map(|i| c.datad_addr(i))
            .map(|addr| format!("http://{addr}/metrics"))
            .collect(),
        what: format!(
            "this process ({}): metad, {} data nodes, the gateway and the load clients, data in {}",
            std::process::id(),
            c.datad_count(),
            dir.path().display()
        ),
        cluster: Some((c, dir)),
    };
    Ok((t, s3))
}

/// One row of the record.
struct Sample {
    t: f64,
    fds: Option<u64>,
    tcp: Option<u64>,
    rss_kib: Option<u64>,
    queued: Option<f64>,
    deferred: Option<f64>,
    gw_dropped: Option<f64>,
    datad_dropped: Option<f64>,
    leases: Option<f64>,
    counts: Counts,
    p99_ms: Option<f64>,
}

impl Sample {
    fn queue_depth(&self) -> Option<f64> {
        Some(self.queued? + self.deferred?)
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> Option<String> {
    http.get(url).send().await.ok()?.error_for_status().ok()?.text().await.ok()
}

/// The gateway's queued/dropped/leases and the data nodes' deferred/dropped
/// (summed; `None` if any node did not answer).
async fn queues(http: &reqwest::Client, t: &Target) -> [Option<f64>; 5] {
    let gw = scrape(http, &t.gateway_metrics).await;
    let g = |name| gw.as_deref().and_then(|p| soak_series::metric(p, name));
    let (mut deferred, mut dropped) = (Some(0.0), Some(0.0));
    for url in &t.datad_metrics {
        let page = scrape(http, url).await;
        let m = |name| page.as_deref().and_then(|p| soak_series::metric(p, name));
        deferred = deferred.zip(m("release_deferred_depth")).map(|(a, b)| a + b);
        dropped = dropped.zip(m("release_dropped_total")).map(|(a, b)| a + b);
    }
    [
        g("weft_gateway_release_queued"),
        deferred,
        g("weft_gateway_release_dropped_total"),
        dropped,
        g("weft_gateway_read_leases"),
    ]
}

async fn sample(http: &reqwest::Client, t: &Target, start: Instant, stats: &Stats) -> Sample {
    let [queued, deferred, gw_dropped, datad_dropped, leases] = queues(http, t).await;
    Sample {
        t: start.elapsed().as_secs_f64(),
        fds: soak_series::fd_count(t.pid).ok(),
        tcp: soak_series::tcp_established(t.pid).ok(),
        rss_kib: soak_series::rss_kib(t.pid).ok(),
        queued,
        deferred,
        gw_dropped,
        datad_dropped,
        leases,
        counts: stats.snapshot(),
        p99_ms: stats.take_p99_ms(),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

const CSV_HEADER: &str = "elapsed_s,fds,tcp_established,rss_kib,gateway_release_queued,datad_release_deferred,queue_depth,gateway_release_dropped_total,datad_release_dropped_total,read_leases,ok,errors,wrong,put_4k,put_1m,get,list,delete,burst_put,burst_delete,p99_ms";

fn csv_row(s: &Sample, prev: &Counts) -> String {
    let (now, before) = (totals(&s.counts), totals(prev));
    let mut row = format!(
        "{:.1},{},{},{},{},{},{},{},{},{},{},{},{}",
        s.t,
        opt(s.fds),
        opt(s.tcp),
        opt(s.rss_kib),
        opt(s.queued),
        opt(s.deferred),
        opt(s.queue_depth()),
        opt(s.gw_dropped),
        opt(s.datad_dropped),
        opt(s.leases),
        now[0] - before[0],
        now[1] - before[1],
        now[2] - before[2],
    );
    for op in 0..OPS.len() {
        row.push_str(&format!(",{}", s.counts[op][0] - prev[op][0]));
    }
    row.push_str(&format!(",{}", s.p99_ms.map(|v| format!("{v:.1}")).unwrap_or_default()));
    row
}

fn table_row(s: &Sample, prev: &Counts, interval: f64) -> String {
    let (now, before) = (totals(&s.counts), totals(prev));
    format!(
        "{:>6.0} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8.0} {:>7} {:>6} {:>8}",
        s.t,
        opt(s.fds),
        opt(s.tcp),
        opt(s.rss_kib.map(|k| k / 1024)),
        opt(s.queued),
        opt(s.deferred),
        (now[0] - before[0]) as f64 / interval,
        now[1] - before[1],
        now[2] - before[2],
        s.p99_ms.map(|v| format!("{v:.1}")).unwrap_or_default(),
    )
}

/// `weft bench soak`.
pub async fn soak(a: SoakArgs) -> Result<()> {
    if !(a.minutes > 0.0) || a.interval_secs == 0 || a.clients == 0 {
        bail!("--minutes, --interval-secs and --clients must be positive");
    }
    let (target, s3) = target(&a).await?;
    let s3 = Arc::new(s3);
    let http = S3::client();
    let r = s3.request(&http, reqwest::Method::PUT, None, &[]).send().await.context("create the soak bucket")?;
    if !r.status().is_success() {
        bail!("create bucket {}: HTTP {}: {}", s3.bucket, r.status(), r.text().await.unwrap_or_default());
    }
    let out = a.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("weft-soak-{}.csv", time::OffsetDateTime::now_utc().unix_timestamp()))
    });
    let mut csv = std::fs::File::create(&out).with_context(|| format!("create {}", out.display()))?;
    writeln!(csv, "{CSV_HEADER}")?;
    println!(
        "soak: {:.1} min, {} clients (4 KiB and 1 MiB PUTs, verified GETs, LISTs, DELETEs), a burst of {} DELETEs from {} clients every {} s",
        a.minutes, a.clients, a.burst_objects, a.burst_clients, a.burst_every_secs
    );
    println!("measured: {}", target.what);
    println!("samples every {} s to {}", a.interval_secs, out.display());
    println!(
        "{:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>8}",
        "t s", "fds", "tcp", "rss MiB", "queued", "deferred", "ok/s", "errors", "wrong", "p99 ms"
    );

    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.minutes * 60.0);
    let mut load = tokio::task::JoinSet::new();
    for id in 0..a.clients {
        load.spawn(client_loop(id, s3.clone(), stats.clone(), deadline));
    }
    let burst_task = tokio::spawn(bursts(s3.clone(), stats.clone(), start, deadline, a.clone()));

    let probe = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let mut samples: Vec<Sample> = vec![];
    let mut prev = [[0; 3]; 7];
    let mut tick = tokio::time::interval(Duration::from_secs(a.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = sample(&probe, &target, start, &stats).await;
        println!("{}", table_row(&s, &prev, a.interval_secs as f64));
        writeln!(csv, "{}", csv_row(&s, &prev))?;
        csv.flush()?;
        prev = s.counts;
        samples.push(s);
        if load.is_empty() || Instant::now() >= deadline {
            while load.join_next().await.is_some() {}
            if burst_task.is_finished() {
                break;
            }
        }
    }
    let bursts = burst_task.await.context("burst task")?;

    // After the load: do the queues empty, and what is left open?
    let drain_start = Instant::now();
    let drained = loop {
        let [queued, deferred, ..] = queues(&probe, &target).await;
        if queued == Some(0.0) && deferred == Some(0.0) {
            break Some(drain_start.elapsed());
        }
        if drain_start.elapsed() > DRAIN_DEADLINE {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let after = sample(&probe, &target, start, &stats).await;
    drop(probe);

    let verdict = report(&a, &samples, &after, &stats, &bursts, drained);
    println!("samples: {}", out.display());
    if let Some((c, dir)) = target.cluster {
        c.shutdown().await;
        drop(dir);
    }
    verdict
}

/// Prints the summary; with `--check`, fails naming every problem.
fn report(
    a: &SoakArgs,
    samples: &[Sample],
    after: &Sample,
    stats: &Stats,
    bursts: &[Burst],
    drained: Option<Duration>,
) -> Result<()> {
    let c = after.counts;
    println!("\nrequests by outcome (ok / errors / wrong):");
    for (op, name) in OPS.iter().enumerate() {
        println!("  {name:<13} {:>9} {:>7} {:>6}", c[op][0], c[op][1], c[op][2]);
    }
    let [ok, errors, wrong] = totals(&c);
    let all = (ok + errors + wrong).max(1);
    if !bursts.is_empty() {
        let rates: Vec<f64> = bursts.iter().map(|b| b.deleted as f64 / b.secs.max(1e-9)).collect();
        println!(
            "delete bursts: {}, {:.0}–{:.0} DELETEs/s, {} failed DELETEs",
            bursts.len(),
            rates.iter().cloned().fold(f64::INFINITY, f64::min),
            rates.iter().cloned().fold(0.0, f64::max),
            bursts.iter().map(|b| b.failed).sum::<usize>()
        );
    }
    match drained {
        Some(d) => println!("release queues empty {:.0} s after the load stopped", d.as_secs_f64()),
        None => println!("release queues NOT empty {} s after the load stopped", DRAIN_DEADLINE.as_secs()),
    }
    println!(
        "after the load: {} fds, {} TCP connections, RSS {} MiB; release dropped: gateway {}, data nodes {}",
        opt(after.fds),
        opt(after.tcp),
        opt(after.rss_kib.map(|k| k / 1024)),
        opt(after.gw_dropped),
        opt(after.datad_dropped)
    );

    type Series = (&'static str, fn(&Sample) -> Option<f64>, Tolerance);
    let series: [Series; 4] = [
        ("open fds", |s| s.fds.map(|v| v as f64), Tolerance { abs: 64.0, rel: 0.10 }),
        ("TCP connections", |s| s.tcp.map(|v| v as f64), Tolerance { abs: 64.0, rel: 0.10 }),
        ("RSS MiB", |s| s.rss_kib.map(|v| v as f64 / 1024.0), Tolerance { abs: 64.0, rel: 0.10 }),
        ("release queue depth", Sample::queue_depth, Tolerance { abs: 1000.0, rel: 0.25 }),
    ];
    let mut problems = vec![];
    println!("\ngrowth after a {:.0}% warm-up (peak of the last third vs the middle third, and the trend):", WARMUP * 100.0);
    for (name, get, tol) in series {
        let points: Vec<(f64, f64)> = samples.iter().filter_map(|s| Some((s.t, get(s)?))).collect();
        let (min, max) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let v = soak_series::growth(&points, WARMUP, tol);
        let judged = match &v {
            Verdict::Steady => "steady".to_string(),
            Verdict::Grows { middle_max, last_max, trend_rise } => {
                problems.push(format!("{name} keeps growing: peak {middle_max:.0} in the middle third, {last_max:.0} in the last, trend +{trend_rise:.0} over the judged window"));
                "GROWS".to_string()
            }
            Verdict::TooShort { samples } => {
                problems.push(format!("{name}: only {samples} samples after warm-up, {} needed to judge growth; run longer or lower --interval-secs", soak_series::MIN_JUDGED));
                "too few samples".to_string()
            }
        };
        println!("  {name:<20} min {min:>9.0} max {max:>9.0}  {judged}");
    }
    if drained.is_none() {
        problems.push(format!("release queue depth: not back to 0 within {} s after the load stopped", DRAIN_DEADLINE.as_secs()));
    }
    if wrong > 0 {
        problems.push(format!("{wrong} wrong answers (see WRONG ANSWER lines above)"));
    }
    if errors as f64 > a.max_error_fraction * all as f64 {
        problems.push(format!("{errors} of {all} requests failed, more than --max-error-fraction {}", a.max_error_fraction));
    }
    let notes = stats.notes.lock().expect("notes lock");
    if !notes.is_empty() {
        println!("\nfirst errors and every wrong answer:");
        for n in notes.iter() {
            println!("  {n}");
        }
    }
    if !a.check {
        return Ok(());
    }
    if problems.is_empty() {
        println!("\ncheck passed");
        return Ok(());
    }
    bail!("soak check failed:\n  {}", problems.join("\n  "))
}
