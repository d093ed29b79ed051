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
use weft_common::profile::UNIT_BYTES_DEFAULT;

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
        Action::RollCa => {
            // Three reload intervals per step: every daemon has re-read
            // its files (and its peers' pooled connections have moved on)
            // before the next step needs it.
            let settle = Duration::from_millis(3 * crate::pki::RELOAD_MS + 500);
            let mut steps = Vec::new();
            cluster
                .pki
                .lock()
                .await
                .roll(settle, |s| steps.push(s.to_string()))
                .await?;
            Ok(format!("rolled the cluster CA: {}", steps.join("; ")))
        }
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
        Action::RotSegment { shards, seed } => {
            let dirs: Vec<(String, PathBuf)> = cluster
                .of(Role::Datad)
                .filter_map(|n| Some((n.name.clone(), n.data_dir.clone()?)))
                .collect();
            let touched = rot_segment(&dirs, *shards as usize, UNIT_BYTES_DEFAULT.into(), *seed)?;
            Ok(format!(
                "rotted {} shards of one segment, one stripe each: {}",
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

/// Shard file header fields [`rot_segment`] needs: `(block_bytes,
/// data_len)`, if the file starts with a version-1 shard header.
fn shard_geometry(path: &Path) -> Option<(u64, u64)> {
    let mut h = [0u8; 64];
    std::fs::File::open(path).ok()?.read_exact(&mut h).ok()?;
    if &h[0..8] != b"WEFTSHD1" {
        return None;
    }
    let block = u32::from_le_bytes(h[12..16].try_into().ok()?);
    let data_len = u64::from_le_bytes(h[32..40].try_into().ok()?);
    (block > 0).then_some((u64::from(block), data_len))
}

/// Flips one byte in `shards` shard files of one segment, shard `i` (in a
/// random order) in a data block of stripe `i` (`unit` shard bytes per
/// stripe): rot across more shards than the parity covers, recoverable
/// only stripe by stripe. `dirs` are the data nodes' volumes by name.
///
/// Chooses among the oldest tenth of the segments whose shard files span
/// at least `shards` stripes and have at least `shards` files: the cold
/// objects, which stay and are read until the end of the run.
pub fn rot_segment(
    dirs: &[(String, PathBuf)],
    shards: usize,
    unit: u64,
    seed: u64,
) -> Result<Vec<String>> {
    use std::collections::BTreeMap;
    anyhow::ensure!(shards > 0, "rot at least one shard");
    // segment hex -> (oldest mtime, [(node, path)])
    type Files = (std::time::SystemTime, Vec<(String, PathBuf)>);
    let mut by_segment: BTreeMap<String, Files> = BTreeMap::new();
    for (node, dir) in dirs {
        for p in shard_files(dir) {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((seg, _index)) = name.split_once('.') else {
                continue;
            };
            let Ok(mtime) = std::fs::metadata(&p).and_then(|m| m.modified()) else {
                continue;
            };
            let e = by_segment
                .entry(seg.to_string())
                .or_insert((mtime, Vec::new()));
            e.0 = e.0.min(mtime);
            e.1.push((node.clone(), p));
        }
    }
    // (oldest mtime, segment, files, block bytes, data bytes per shard)
    type Candidate = (
        std::time::SystemTime,
        String,
        Vec<(String, PathBuf)>,
        u64,
        u64,
    );
    let mut candidates: Vec<Candidate> = by_segment
        .into_iter()
        .filter(|(_, (_, files))| files.len() >= shards)
        .filter_map(|(seg, (mtime, files))| {
            let (block, data_len) = shard_geometry(&files[0].1)?;
            (data_len > (shards as u64 - 1) * unit).then_some((mtime, seg, files, block, data_len))
        })
        .collect();
    anyhow::ensure!(
        !candidates.is_empty(),
        "no segment has {shards} shard files spanning {shards} stripes"
    );
    candidates.sort();
    let pool = (candidates.len() / 10).max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let (_, _segment, mut files, block, data_len) = candidates.swap_remove(rng.gen_range(0..pool));
    let mut touched = Vec::new();
    for stripe in 0..shards {
        let (node, path) = files.swap_remove(rng.gen_range(0..files.len()));
        let start = stripe as u64 * unit;
        let x = rng.gen_range(start..(start + unit).min(data_len));
        let off = 64 + (x / block) * (block + 4) + x % block;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let mut b = [0u8];
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut b)?;
        b[0] ^= rng.gen_range(1..=255u8);
        f.seek(SeekFrom::Start(off))?;
        f.write_all(&b)?;
        f.sync_all()?;
        touched.push(format!(
            "{node}:{}@{off} (stripe {stripe}, block {})",
            path.file_name().unwrap_or_default().to_string_lossy(),
            x / block
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

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = 64 * 1024;
    const UNIT: u64 = 1 << 20;

    /// A shard file with a version-1 header (crc not needed here) and
    /// `data_len` data bytes in blocks of `B` with their crcs.
    fn shard_file(path: &Path, data_len: u64) {
        let mut f = vec![0u8; 64];
        f[0..8].copy_from_slice(b"WEFTSHD1");
        f[8..10].copy_from_slice(&1u16.to_le_bytes());
        f[12..16].copy_from_slice(&(B as u32).to_le_bytes());
        f[32..40].copy_from_slice(&data_len.to_le_bytes());
        let blocks = data_len.div_ceil(B);
        f.resize((64 + data_len + 4 * blocks) as usize, 0x11);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, f).unwrap();
    }

    #[test]
    fn segment_rot_hits_one_shard_per_stripe() {
        let root = std::env::temp_dir().join(format!("weft-chaos-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let seg = "00112233445566778899aabbccddeeff";
        let data_len = 3 * UNIT + UNIT / 2;
        let mut dirs = vec![];
        for i in 0..6u8 {
            let dir = root.join(format!("d{i}"));
            shard_file(&dir.join("shards/00").join(format!("{seg}.{i}")), data_len);
            // A small segment that cannot take the rot.
            shard_file(
                &dir.join("shards/ff").join(format!("ff{}.{i}", &seg[2..])),
                1000,
            );
            dirs.push((format!("datad-{i}"), dir));
        }
        let touched = rot_segment(&dirs, 3, UNIT, 42).unwrap();
        assert_eq!(touched.len(), 3, "{touched:?}");
        let mut stripes = vec![];
        let mut nodes = std::collections::BTreeSet::new();
        for (name, dir) in &dirs {
            for p in shard_files(dir) {
                let bytes = std::fs::read(&p).unwrap();
                let changed: Vec<usize> = bytes
                    .iter()
                    .enumerate()
                    .filter(|(i, b)| *i >= 64 && **b != 0x11)
                    .map(|(i, _)| i)
                    .collect();
                assert!(changed.len() <= 1, "{p:?}: {changed:?}");
                if let Some(&off) = changed.first() {
                    assert!(p.to_string_lossy().contains(seg), "only the big segment");
                    let rel = off as u64 - 64;
                    let (block, within) = (rel / (B + 4), rel % (B + 4));
                    assert!(within < B, "a data byte, not a crc");
                    stripes.push(block * B / UNIT);
                    nodes.insert(name.clone());
                }
            }
        }
        stripes.sort();
        assert_eq!(stripes, vec![0, 1, 2], "one bad shard per stripe");
        assert_eq!(nodes.len(), 3);
        assert!(
            rot_segment(&dirs, 5, UNIT, 1).is_err(),
            "no segment spans 5 stripes"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
