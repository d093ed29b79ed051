//! Executes a fault schedule against a running cluster and logs what each
//! action actually did (resolved targets, files touched, failures).
//!
//! Actions run one after another at their scheduled offsets; one that takes
//! long (a rolling restart) delays the next, and the log records the real
//! times. A failed action is logged and the schedule goes on: the checker,
//! not the fault injector, decides whether the run passed.

use crate::cluster::{Cluster, Role, ZONES};
use crate::docker::docker;
use crate::scenario::{Action, Step};
use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the filler file the disk-full fault writes into a node's volume.
pub const FILLER: &str = "chaos-filler";

/// One executed action.
#[derive(Clone, Debug, Serialize)]
pub struct FaultEvent {
    /// Milliseconds after the workload started, when the action began.
    pub at_ms: u64,
    /// How long it took.
    pub took_ms: u64,
    /// The scheduled action.
    pub action: Action,
    /// What it resolved to and did.
    pub detail: String,
    /// Whether docker (or the file system) did what was asked.
    pub ok: bool,
}

/// Runs `steps` relative to `epoch`; returns the log.
pub async fn execute(cluster: &Cluster, steps: &[Step], epoch: Instant) -> Vec<FaultEvent> {
    let mut log = Vec::new();
    for step in steps {
        let due = epoch + Duration::from_millis(step.at_ms);
        tokio::time::sleep_until(due.into()).await;
        let began = Instant::now();
        let at_ms = began.duration_since(epoch).as_millis() as u64;
        let (ok, detail) = match apply(cluster, &step.action).await {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        if let Err(e) = cluster.refresh_endpoints().await {
            tracing::warn!(error = %e, "refresh gateway endpoints");
        }
        let ev = FaultEvent {
            at_ms,
            took_ms: began.elapsed().as_millis() as u64,
            action: step.action.clone(),
            detail,
            ok,
        };
        if ok {
            tracing::info!(at_s = at_ms as f64 / 1e3, action = ?ev.action, detail = %ev.detail, "fault");
        } else {
            tracing::warn!(at_s = at_ms as f64 / 1e3, action = ?ev.action, detail = %ev.detail, "fault action failed");
        }
        log.push(ev);
    }
    log
}

fn datad_names(cluster: &Cluster, ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|&id| cluster.node(Role::Datad, id).name.clone())
        .collect()
}

async fn leader_with_retry(cluster: &Cluster) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match cluster.metad_leader().await {
            Ok(Some(id)) => return Ok(id),
            Ok(None) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Ok(None) => anyhow::bail!("no metad leader known"),
            Err(e) => return Err(e).context("find the metad leader"),
        }
    }
}

async fn apply(cluster: &Cluster, action: &Action) -> Result<String> {
    match action {
        Action::KillDatad { ids } => {
            let names = datad_names(cluster, ids);
            let mut args = vec!["kill", "--signal", "KILL"];
            args.extend(names.iter().map(String::as_str));
            docker(&args).await?;
            Ok(format!("SIGKILL {}", names.join(" ")))
        }
        Action::StartDatad { ids } => {
            let names = datad_names(cluster, ids);
            let mut args = vec!["start"];
            args.extend(names.iter().map(String::as_str));
            docker(&args).await?;
            Ok(format!("started {}", names.join(" ")))
        }
        Action::KillMetadLeader => {
            let id = leader_with_retry(cluster).await?;
            let name = &cluster.node(Role::Metad, id).name;
            docker(&["kill", "--signal", "KILL", name]).await?;
            Ok(format!("SIGKILL leader {name}"))
        }
        Action::KillMetadFollower { pick } => {
            let leader = leader_with_retry(cluster).await?;
            let followers: Vec<u64> = cluster
                .of(Role::Metad)
                .map(|n| n.id)
                .filter(|&i| i != leader)
                .collect();
            let id = followers[(*pick as usize) % followers.len()];
            let name = &cluster.node(Role::Metad, id).name;
            docker(&["kill", "--signal", "KILL", name]).await?;
            Ok(format!(
                "SIGKILL follower {name} (leader is metad-{leader})"
            ))
        }
        Action::StartMetad => {
            let mut started = Vec::new();
            for n in cluster.of(Role::Metad) {
                if !cluster.state(&n.name).await?.0 {
                    docker(&["start", &n.name]).await?;
                    started.push(n.name.clone());
                }
            }
            Ok(format!("started [{}]", started.join(" ")))
        }
        Action::PauseDatad { id } => {
            let name = &cluster.node(Role::Datad, *id).name;
            docker(&["pause", name]).await?;
            Ok(format!("paused {name}"))
        }
        Action::UnpauseDatad { id } => {
            let name = &cluster.node(Role::Datad, *id).name;
            docker(&["unpause", name]).await?;
            Ok(format!("resumed {name}"))
        }
        Action::PartitionZone { zone } => {
            let mut cut = Vec::new();
            for n in cluster.nodes.iter().filter(|n| n.zone == *zone) {
                docker(&[
                    "network",
                    "disconnect",
                    "--force",
                    &cluster.backbone,
                    &n.name,
                ])
                .await?;
                cut.push(n.name.clone());
            }
            Ok(format!(
                "{} cut off the backbone: {}",
                ZONES[*zone],
                cut.join(" ")
            ))
        }
        Action::HealZone { zone } => {
            for n in cluster.nodes.iter().filter(|n| n.zone == *zone) {
                if !cluster.on_backbone(&n.name).await? {
                    docker(&["network", "connect", &cluster.backbone, &n.name]).await?;
                }
            }
            Ok(format!("{} reconnected", ZONES[*zone]))
        }
        Action::RollingRestart => rolling_restart(cluster).await,
        Action::Bitrot { id, files, seed } => {
            let node = cluster.node(Role::Datad, *id);
            let dir = node
                .data_dir
                .as_ref()
                .context("data node without a volume")?;
            let touched = corrupt_shard_files(dir, *files as usize, *seed)?;
            Ok(format!(
                "{}: corrupted {} shard file(s): {}",
                node.name,
                touched.len(),
                touched.join(", ")
            ))
        }
        Action::FillDisk { id } => {
            let node = cluster.node(Role::Datad, *id);
            let dir = node
                .data_dir
                .as_ref()
                .context("data node without a volume")?;
            let bytes = fill(dir)?;
            Ok(format!(
                "{}: wrote {} MiB of filler until the volume was full",
                node.name,
                bytes >> 20
            ))
        }
        Action::FreeDisk { id } => {
            let node = cluster.node(Role::Datad, *id);
            let dir = node
                .data_dir
                .as_ref()
                .context("data node without a volume")?;
            let _ = std::fs::remove_file(dir.join(FILLER));
            Ok(format!("{}: filler removed", node.name))
        }
        Action::RestartAll => {
            let names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
            let mut kill = vec!["kill", "--signal", "KILL"];
            kill.extend(names.iter().copied());
            docker(&kill).await?;
            let mut start = vec!["start"];
            start.extend(names.iter().copied());
            docker(&start).await?;
            Ok(format!(
                "SIGKILL and started all {} containers",
                names.len()
            ))
        }
    }
}

/// Restarts (SIGTERM, 10 s grace) metad followers, the leader, every data
/// node and every gateway, one at a time, waiting for the cluster to be
/// healthy again between two restarts.
async fn rolling_restart(cluster: &Cluster) -> Result<String> {
    let leader = leader_with_retry(cluster).await.ok();
    let mut order: Vec<String> = cluster
        .of(Role::Metad)
        .filter(|n| Some(n.id) != leader)
        .map(|n| n.name.clone())
        .collect();
    order.extend(
        cluster
            .of(Role::Metad)
            .filter(|n| Some(n.id) == leader)
            .map(|n| n.name.clone()),
    );
    order.extend(cluster.of(Role::Datad).map(|n| n.name.clone()));
    order.extend(cluster.of(Role::Gateway).map(|n| n.name.clone()));
    let mut slow = Vec::new();
    for name in &order {
        docker(&["restart", "-t", "10", name]).await?;
        cluster.refresh_endpoints().await?;
        // Let heartbeats and elections catch up before asking.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = cluster.wait_healthy(Duration::from_secs(60)).await {
            slow.push(format!("{name}: {e:#}"));
        }
    }
    Ok(if slow.is_empty() {
        format!("restarted {} processes in turn", order.len())
    } else {
        format!(
            "restarted {} processes; not healthy after: {}",
            order.len(),
            slow.join("; ")
        )
    })
}

/// Every shard file under a data node's volume, sorted.
pub fn shard_files(data_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("shards"), &mut out);
    out.sort();
    out
}

/// Flips one byte in each of `count` random shard files (one in eight in
/// the 64-byte header, the rest in block data or block checksums): the
/// kind of damage a read must detect by crc32c and serve from parity.
///
/// Files are drawn from the oldest tenth (at least `2 × count`): hot objects
/// are replaced within seconds and their shards deleted after the gateway's
/// delete delay, so rot there would never be read; the oldest files hold
/// the workload's write-once (cold) objects, which are read until the end.
pub fn corrupt_shard_files(data_dir: &Path, count: usize, seed: u64) -> Result<Vec<String>> {
    let mut aged: Vec<(std::time::SystemTime, PathBuf)> = shard_files(data_dir)
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    aged.sort();
    let pool = (aged.len() / 10).max(2 * count).min(aged.len());
    let files: Vec<PathBuf> = aged.into_iter().take(pool).map(|(_, p)| p).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut touched = Vec::new();
    for _ in 0..count.min(files.len()) {
        let path = &files[rng.gen_range(0..files.len())];
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let len = f.metadata()?.len();
        if len == 0 {
            continue;
        }
        let off = if len <= 64 || rng.gen_ratio(1, 8) {
            rng.gen_range(0..len.min(64))
        } else {
            rng.gen_range(64..len)
        };
        let mut b = [0u8];
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut b)?;
        b[0] ^= rng.gen_range(1..=255u8);
        f.seek(SeekFrom::Start(off))?;
        f.write_all(&b)?;
        f.sync_all()?;
        touched.push(format!(
            "{}@{off}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    Ok(touched)
}

/// Writes a filler file until the file system refuses (ENOSPC); returns
/// the bytes written. Bounded by 64 GiB in case the volume is not limited.
pub fn fill(data_dir: &Path) -> Result<u64> {
    let mut f = std::fs::File::create(data_dir.join(FILLER))?;
    let chunk = vec![0xA5u8; 1 << 20];
    let mut written = 0u64;
    while written < 64 << 30 {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e).context("write filler"),
        }
    }
    // Squeeze the last partial chunk in too.
    let mut small = vec![0xA5u8; 4096];
    while let Ok(n) = f.write(&small) {
        if n == 0 {
            break;
        }
        written += n as u64;
        small.truncate(4096);
    }
    let _ = f.sync_all();
    Ok(written)
}

/// Undoes file-level faults (removes fillers); docker-level ones are
/// undone by [`Cluster::heal`].
pub fn remove_fillers(cluster: &Cluster) {
    for n in cluster.of(Role::Datad) {
        if let Some(d) = &n.data_dir {
            let _ = std::fs::remove_file(d.join(FILLER));
        }
    }
}
