//! `weft-chaos`: build the image, run scenarios, re-check a history.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use weft_chaos::runner::{InjectedBug, RunConfig};
use weft_chaos::{checker, cluster, docker, history, image, runner, scenario};

#[derive(Parser)]
#[command(
    name = "weft-chaos",
    about = "Run a Weft cluster in docker under faults and check nothing acknowledged was lost"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the weft image FROM scratch (binary + the libraries ldd lists).
    BuildImage(ImageArgs),
    /// Run fault scenarios against a dockerised cluster.
    Run(RunArgs),
    /// Print the fault schedule a seed gives (no docker needed).
    Schedule {
        /// Scenario selection, as for `run`.
        #[arg(long, default_value = "smoke")]
        scenario: String,
        /// Workload time for the whole run.
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        duration: Duration,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// metad node grace, ms.
        #[arg(long, default_value_t = 3000)]
        node_grace_ms: u64,
    },
    /// Re-run the checker on a saved history.jsonl.
    Check {
        /// The history file.
        history: PathBuf,
    },
    /// Remove containers and networks left by runs (all runs, or one).
    Cleanup {
        /// Run id.
        #[arg(long)]
        run: Option<String>,
    },
}

#[derive(clap::Args, Clone)]
struct ImageArgs {
    /// Cargo profile whose `weft` binary goes in (`release` or `dev`), taken
    /// from the chaos target directory `$CARGO_TARGET_DIR/chaos`.
    #[arg(long, default_value = "release")]
    profile: String,
    /// Explicit binary path (overrides --profile).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Image tag.
    #[arg(long, default_value = image::DEFAULT_TAG)]
    tag: String,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A scenario name, `a+b` to combine, comma-separated lists, `all` or `smoke`.
    #[arg(long, default_value = "smoke")]
    scenario: String,
    /// Workload time for the whole run, split evenly over the scenarios
    /// (each gets at least 20 s). Cluster start, heal and read-back come on top.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    duration: Duration,
    /// Seed: the same seed gives the same fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Report directory (report.json, summary.md, per-scenario history and logs).
    #[arg(long, default_value = "chaos-report")]
    report: PathBuf,
    /// Build the image first.
    #[arg(long)]
    build_image: bool,
    #[command(flatten)]
    image: ImageArgs,
    /// Concurrent S3 clients.
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// Keys each client owns.
    #[arg(long, default_value_t = 24)]
    keys_per_worker: u32,
    /// Write-once (cold) keys each client writes at the start and then reads.
    #[arg(long, default_value_t = 8)]
    cold_keys_per_worker: u32,
    /// Largest object, MiB.
    #[arg(long, default_value_t = 64)]
    object_mib_max: u64,
    /// metad's data-node grace (no heartbeat for this long: down), ms.
    #[arg(long, default_value_t = 3000)]
    node_grace_ms: u64,
    /// Inject a bug on purpose; the run must then fail.
    #[arg(long, value_enum)]
    inject_bug: Option<InjectedBug>,
    /// Longest accepted time to full redundancy after the heal.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    redundancy_bound: Duration,
    /// Longest wait for every voter and data node to be up after the heal.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    heal_bound: Duration,
    /// Size of the disk-full node's volume, MiB.
    #[arg(long, default_value_t = 512)]
    disk_full_mib: u64,
    /// Host directory for volumes (a per-run subdirectory is made and removed).
    #[arg(long, default_value = "/tmp/weft-chaos")]
    work_dir: PathBuf,
    /// WEFT_LOG for the daemons.
    #[arg(long, default_value = "info,s3s=off,openraft=warn")]
    daemon_log: String,
}

/// Parses `90s`, `5m`, `1h`, `2m30s`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        num.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("bad duration unit {c:?} in {s:?} (use h, m, s)")),
        };
    }
    if !num.is_empty() {
        return Err(format!("bad duration {s:?}: number without unit"));
    }
    Ok(Duration::from_secs(total))
}

/// Tears the run down by label when dropped: normal exit, error or panic.
struct TeardownGuard {
    run_id: String,
    work_dir: PathBuf,
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        teardown(&self.run_id, &self.work_dir);
    }
}

fn teardown(run_id: &str, work_dir: &std::path::Path) {
    for p in docker::remove_run(Some(run_id)) {
        eprintln!("weft-chaos: tear-down: {p}");
    }
    cluster::unmount_under(work_dir);
    let _ = std::fs::remove_dir_all(work_dir);
}

/// SIGINT and SIGTERM streams, registered before the run starts so that a
/// signal arriving at any moment is seen (and tears the run down).
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn register() -> Result<Interrupts> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Interrupts {
            int: signal(SignalKind::interrupt()).context("watch SIGINT")?,
            term: signal(SignalKind::terminate()).context("watch SIGTERM")?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM, naming which.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "interrupted",
            _ = self.term.recv() => "terminated",
        }
    }
}

async fn build_image(a: &ImageArgs) -> Result<()> {
    let binary = a
        .binary
        .clone()
        .unwrap_or_else(|| image::default_binary(&a.profile));
    let id = image::build(&binary, &a.tag).await?;
    println!("built {} ({id}) from {}", a.tag, binary.display());
    Ok(())
}

async fn run(a: RunArgs) -> Result<bool> {
    let runs = scenario::parse_selection(&a.scenario).map_err(anyhow::Error::msg)?;
    if a.build_image {
        build_image(&a.image).await?;
    }
    docker::docker(&["image", "inspect", "--format", "{{.Id}}", &a.image.tag])
        .await
        .with_context(|| {
            format!(
                "image {} not found; build it with `weft-chaos build-image` or pass --build-image",
                a.image.tag
            )
        })?;
    if a.inject_bug == Some(InjectedBug::SkipFsync)
        && !runs
            .iter()
            .any(|r| r.iter().any(|s| s.needs_power_cut_disk()))
    {
        anyhow::bail!("--inject-bug skip-fsync loses data only on a power cut: add the power-cut scenario (--scenario power-cut)");
    }
    let run_id = format!(
        "{:x}",
        weft_chaos::content::mix64(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64
                ^ std::process::id() as u64
        ) & 0xff_ffff
    );
    let work_dir = a.work_dir.join(&run_id);
    let cfg = RunConfig {
        run_id: run_id.clone(),
        seed: a.seed,
        selection: a.scenario.clone(),
        runs,
        duration: a.duration,
        report_dir: a.report.clone(),
        work_dir: work_dir.clone(),
        image: a.image.tag.clone(),
        workers: a.workers,
        keys_per_worker: a.keys_per_worker,
        cold_keys_per_worker: a.cold_keys_per_worker,
        object_bytes_max: a.object_mib_max << 20,
        node_grace_ms: a.node_grace_ms,
        inject_bug: a.inject_bug,
        redundancy_bound: a.redundancy_bound,
        heal_bound: a.heal_bound,
        disk_full_bytes: a.disk_full_mib << 20,
        log_filter: a.daemon_log.clone(),
    };
    tracing::info!(%run_id, scenarios = cfg.runs.len(), per_scenario_s = cfg.per_scenario().as_secs(), "run begins");
    let mut interrupts = Interrupts::register()?;
    let _guard = TeardownGuard {
        run_id: run_id.clone(),
        work_dir: work_dir.clone(),
    };
    let report = tokio::select! {
        r = runner::run(&cfg) => r?,
        signal = interrupts.next() => {
            eprintln!("weft-chaos: {signal}; tearing down run {run_id}");
            teardown(&run_id, &work_dir);
            std::process::exit(130);
        }
    };
    println!("{}", weft_chaos::report::markdown(&report));
    println!("report: {}", a.report.join("report.json").display());
    Ok(report.passed)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_CHAOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result: Result<bool> = match Cli::parse().command {
        Cmd::BuildImage(a) => build_image(&a).await.map(|_| true),
        Cmd::Run(a) => run(a).await,
        Cmd::Schedule {
            scenario,
            duration,
            seed,
            node_grace_ms,
        } => (|| {
            let runs = scenario::parse_selection(&scenario).map_err(anyhow::Error::msg)?;
            let per = (duration / runs.len() as u32).max(Duration::from_secs(20));
            let all: Vec<serde_json::Value> = runs
                .iter()
                .map(|r| serde_json::json!({"scenario": scenario::combo_name(r), "steps": scenario::schedule(r, seed, per, node_grace_ms)}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
            Ok(true)
        })(),
        Cmd::Check { history: path } => (|| {
            let h = history::load(&path)?;
            let v = checker::check(&h);
            for f in &v.findings {
                println!("{}", f.describe());
            }
            println!(
                "{} ops; {} acknowledged writes; {} reads checked; lost writes {}, wrong reads {}, resurrected deletes {}, list mismatches {}, unverified {}",
                h.len(), v.acked_writes, v.reads_checked, v.lost_writes, v.wrong_reads, v.resurrected_deletes, v.list_mismatches, v.unverified
            );
            Ok(v.passed())
        })(),
        Cmd::Cleanup { run } => {
            let problems = docker::remove_run(run.as_deref());
            for p in &problems {
                eprintln!("{p}");
            }
            if problems.is_empty() {
                Ok(true)
            } else {
                Err(anyhow::anyhow!(
                    "{} problem(s) during clean-up",
                    problems.len()
                ))
            }
        }
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("weft-chaos: FAILED");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2m30s").unwrap(), Duration::from_secs(150));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("5m3").is_err());
    }
}
