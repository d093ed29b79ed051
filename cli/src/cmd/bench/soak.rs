//! `weft bench soak`: mixed S3 load for minutes to hours while the process's
//! open files, TCP connections, RSS and release queues are sampled, to show
//! that nothing keeps growing (issue 11: a delete burst once ran `weft dev`
//! out of file descriptors). Prints and records the curves; with `--check`
//! it also judges them, and fails on any wrong answer.

use super::soak_load::{bursts, client_loop, totals, Burst, Counts, Stats, OPS, S3};
use super::soak_series::{self, Tolerance, Verdict};
use crate::args::SoakArgs;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_cli::admin_client::AdminClient;
use weft_cli::dev_cluster::{Credentials, DevCluster, DevClusterConfig};

const WARMUP: f64 = 0.2;
/// How long the release queues get to empty after the load stops: the data
/// nodes keep recently read shards for a 30 s quiet period.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

// ---- the measured process ------------------------------------------------------

/// The process under load and where its gauges are.
struct Target {
    pid: u32,
    gateway_metrics: String,
    datad_metrics: Vec<String>,
    what: String,
    /// Scrapes the metrics pages (over the cluster CA when they are TLS).
    scraper: reqwest::Client,
    /// The cluster when it runs in this process (dropped last).
    cluster: Option<(DevCluster, tempfile::TempDir)>,
}

/// Root credentials of an attached `weft dev`: never made up here.
fn attached_credentials(data: &std::path::Path) -> Result<Credentials> {
    if let (Ok(a), Ok(s)) = (
        std::env::var("WEFT_ROOT_ACCESS_KEY"),
        std::env::var("WEFT_ROOT_SECRET_KEY"),
    ) {
        return Ok(Credentials {
            access_key: a,
            secret_key: s,
        });
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
        // An attached `weft dev` runs mutual TLS unless it was started with
        // --insecure-internal (then --admin is http://).
        let tls = if a.admin.starts_with("https://") {
            Some(
                weft_client::internal_tls::InternalTls::load(weft_client::internal_tls::TlsFiles {
                    cert: a.data.join("pki/admin.pem"),
                    key: a.data.join("pki/admin.key"),
                    ca: a.data.join("pki/ca.pem"),
                })
                .context("load the dev cluster's admin certificate from --data")?,
            )
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let scraper = match &tls {
            Some(t) => reqwest::Client::builder().use_preconfigured_tls(t.client_config()),
            None => reqwest::Client::builder(),
        }
        .timeout(Duration::from_secs(10))
        .build()
        .context("metrics client")?;
        let admin =
            AdminClient::new(&a.admin, &creds.access_key, &creds.secret_key).with_tls(tls.as_ref());
        let status: serde_json::Value = admin
            .call(reqwest::Method::GET, "/v1/cluster/status", None)
            .await
            .context("find the data nodes through the admin API (--admin)")?;
        let datad_metrics = status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["info"]["addr"].as_str())
            .map(|addr| format!("{scheme}://{addr}/metrics"))
            .collect();
        let t = Target {
            scraper,
            pid,
            gateway_metrics: format!("{}/metrics", a.admin.trim_end_matches('/')),
            datad_metrics,
            what: format!("process {pid} (the weft dev at {endpoint})"),
            cluster: None,
        };
        let s3 = S3 {
            signer: weft_client::s3::Signer::new(
                endpoint,
                &creds.access_key,
                &creds.secret_key,
                &a.region,
            ),
            bucket,
        };
        return Ok((t, s3));
    }
    let dir =
        tempfile::tempdir().context("make a temporary data directory (set TMPDIR to move it)")?;
    let c = DevCluster::start(DevClusterConfig::ephemeral(dir.path()))
        .await
        .context("start the in-process dev cluster")?;
    let creds = c.credentials();
    let s3 = S3 {
        signer: weft_client::s3::Signer::new(
            &c.s3_endpoint(),
            &creds.access_key,
            &creds.secret_key,
            c.region(),
        ),
        bucket,
    };
    let t = Target {
        pid: std::process::id(),
        gateway_metrics: format!("{}/metrics", c.admin_endpoint()),
        datad_metrics: (0..c.datad_count())
            .filter_map(|i| c.datad_addr(i))
            .map(|addr| c.internal_url(addr, "/metrics"))
            .collect(),
        scraper: c.internal_http(),
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
    http.get(url)
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .text()
        .await
        .ok()
}

/// The gateway's queued/dropped/leases and the data nodes' deferred/dropped
/// (summed; `None` if any node did not answer).
async fn queues(t: &Target) -> [Option<f64>; 5] {
    let http = &t.scraper;
    let gw = scrape(http, &t.gateway_metrics).await;
    let g = |name| gw.as_deref().and_then(|p| soak_series::metric(p, name));
    let (mut deferred, mut dropped) = (Some(0.0), Some(0.0));
    for url in &t.datad_metrics {
        let page = scrape(http, url).await;
        let m = |name| page.as_deref().and_then(|p| soak_series::metric(p, name));
        deferred = deferred
            .zip(m("weft_datad_release_deferred_depth"))
            .map(|(a, b)| a + b);
        dropped = dropped
            .zip(m("weft_datad_release_dropped_total"))
            .map(|(a, b)| a + b);
    }
    [
        g("weft_gateway_release_queued"),
        deferred,
        g("weft_gateway_release_dropped_total"),
        dropped,
        g("weft_gateway_read_leases"),
    ]
}

async fn sample(t: &Target, start: Instant, stats: &Stats) -> Sample {
    let [queued, deferred, gw_dropped, datad_dropped, leases] = queues(t).await;
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
    for (now, before) in s.counts.iter().zip(prev) {
        row.push_str(&format!(",{}", now[0] - before[0]));
    }
    row.push_str(&format!(
        ",{}",
        s.p99_ms.map(|v| format!("{v:.1}")).unwrap_or_default()
    ));
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
    if a.minutes.is_nan() || a.minutes <= 0.0 || a.interval_secs == 0 || a.clients == 0 {
        bail!("--minutes, --interval-secs and --clients must be positive");
    }
    let (target, s3) = target(&a).await?;
    let s3 = Arc::new(s3);
    let http = S3::client();
    let r = s3
        .request(&http, reqwest::Method::PUT, None, &[])
        .send()
        .await
        .context("create the soak bucket")?;
    if !r.status().is_success() {
        bail!(
            "create bucket {}: HTTP {}: {}",
            s3.bucket,
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    let out = a.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "weft-soak-{}.csv",
            time::OffsetDateTime::now_utc().unix_timestamp()
        ))
    });
    let mut csv =
        std::fs::File::create(&out).with_context(|| format!("create {}", out.display()))?;
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
    let burst_task = tokio::spawn(bursts(
        s3.clone(),
        stats.clone(),
        start,
        deadline,
        a.clone(),
    ));

    let mut samples: Vec<Sample> = vec![];
    let mut prev = [[0; 3]; 7];
    let mut tick = tokio::time::interval(Duration::from_secs(a.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = sample(&target, start, &stats).await;
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
        let [queued, deferred, ..] = queues(&target).await;
        if queued == Some(0.0) && deferred == Some(0.0) {
            break Some(drain_start.elapsed());
        }
        if drain_start.elapsed() > DRAIN_DEADLINE {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let after = sample(&target, start, &stats).await;

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
        println!(
            "  {name:<13} {:>9} {:>7} {:>6}",
            c[op][0], c[op][1], c[op][2]
        );
    }
    let [ok, errors, wrong] = totals(&c);
    let all = (ok + errors + wrong).max(1);
    if !bursts.is_empty() {
        let rates: Vec<f64> = bursts
            .iter()
            .map(|b| b.deleted as f64 / b.secs.max(1e-9))
            .collect();
        println!(
            "delete bursts: {}, {:.0}–{:.0} DELETEs/s, {} failed DELETEs",
            bursts.len(),
            rates.iter().cloned().fold(f64::INFINITY, f64::min),
            rates.iter().cloned().fold(0.0, f64::max),
            bursts.iter().map(|b| b.failed).sum::<usize>()
        );
    }
    match drained {
        Some(d) => println!(
            "release queues empty {:.0} s after the load stopped",
            d.as_secs_f64()
        ),
        None => println!(
            "release queues NOT empty {} s after the load stopped",
            DRAIN_DEADLINE.as_secs()
        ),
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
        (
            "open fds",
            |s| s.fds.map(|v| v as f64),
            Tolerance {
                abs: 64.0,
                rel: 0.10,
            },
        ),
        (
            "TCP connections",
            |s| s.tcp.map(|v| v as f64),
            Tolerance {
                abs: 64.0,
                rel: 0.10,
            },
        ),
        (
            "RSS MiB",
            |s| s.rss_kib.map(|v| v as f64 / 1024.0),
            Tolerance {
                abs: 64.0,
                rel: 0.10,
            },
        ),
        (
            "release queue depth",
            Sample::queue_depth,
            Tolerance {
                abs: 1000.0,
                rel: 0.25,
            },
        ),
    ];
    let mut problems = vec![];
    println!("\ngrowth after a {:.0}% warm-up (peak of the last third vs the middle third, and the trend):", WARMUP * 100.0);
    for (name, get, tol) in series {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| Some((s.t, get(s)?)))
            .collect();
        let (min, max) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
        let v = soak_series::growth(&points, WARMUP, tol);
        let judged = match &v {
            Verdict::Steady => "steady".to_string(),
            Verdict::Grows {
                middle_max,
                last_max,
                trend_rise,
            } => {
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
        problems.push(format!(
            "release queue depth: not back to 0 within {} s after the load stopped",
            DRAIN_DEADLINE.as_secs()
        ));
    }
    if wrong > 0 {
        problems.push(format!(
            "{wrong} wrong answers (see WRONG ANSWER lines above)"
        ));
    }
    if errors as f64 > a.max_error_fraction * all as f64 {
        problems.push(format!(
            "{errors} of {all} requests failed, more than --max-error-fraction {}",
            a.max_error_fraction
        ));
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
