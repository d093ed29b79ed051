//! The data plane of the simulated cluster: six data nodes in three zones
//! (as `weft dev` runs them) and one S3 gateway, in process, on the
//! simulated network and disk.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft_datad::node::{DatadConfig, DatadHandle};

use crate::net::{Handler, SimNet};

/// Data nodes: EC 4+2 needs six, two per zone.
pub(crate) const DATADS: usize = 6;
/// The gateway's address on the simulated network.
pub(crate) const GATEWAY: &str = "127.0.4.1:9000";
/// The root key the gateway installs and the S3 workers sign with.
pub(crate) const ACCESS_KEY: &str = "SIMROOTACCESSKEY0001";
pub(crate) const SECRET_KEY: &str = "sim-root-secret-key-for-seeded-runs-only";
pub(crate) const REGION: &str = "us-east-1";

/// A scrub pass starts this often on every data node.
const SCRUB_PERIOD_MS: u64 = 5_000;
/// A garbage-collection pass starts this often on every data node.
const GC_INTERVAL_MS: u64 = 30_000;
/// A released shard's quiet period on a data node.
const RELEASE_QUIET_MS: u64 = 2_000;
/// The simulated cluster's EC unit: one shard-file block per shard per
/// stripe, so an object of a few hundred KiB spans several stripes and rot
/// can hit different stripes of different shards.
pub(crate) const UNIT_BYTES: u32 = 64 * 1024;
/// Shard-file layout (datad/src/shard_file.rs): a 64-byte header, then
/// each block's data and its crc32c.
const SHARD_HEADER_BYTES: u64 = 64;
const SHARD_BLOCK_BYTES: u64 = 64 * 1024;
const SHARD_BLOCK_CRC_BYTES: u64 = 4;

pub(crate) fn datad_addr(i: usize) -> String {
    format!("127.0.3.{}:7100", i + 1)
}

/// The running data nodes and gateway.
pub(crate) struct DataPlane {
    pub(crate) datads: Vec<Option<(DatadHandle, CancellationToken)>>,
    /// Segments the nemesis rotted (each once).
    pub(crate) rotted: std::collections::BTreeSet<String>,
    gateway: Option<CancellationToken>,
}

impl DataPlane {
    pub(crate) fn new() -> DataPlane {
        DataPlane {
            datads: (0..DATADS).map(|_| None).collect(),
            rotted: Default::default(),
            gateway: None,
        }
    }

    pub(crate) async fn start_datad(
        &mut self,
        i: usize,
        net: &SimNet,
        dir: &std::path::Path,
        metad: Vec<String>,
    ) -> Result<(), String> {
        let addr = datad_addr(i);
        let cfg = DatadConfig {
            node_id: i as u64 + 1,
            zone: format!("z{}", i / 2 + 1),
            listen: addr.parse().expect("valid datad address"),
            data_dir: dir.join(format!("datad-{}", i + 1)),
            capacity_bytes: 1 << 30,
            metad,
            heartbeat_interval_ms: 500,
            // Often, so rot is found by the scrubber within a run.
            scrub_period_ms: SCRUB_PERIOD_MS,
            gc_interval_ms: GC_INTERVAL_MS,
            // Released shards go within seconds, not the half minute a
            // real node holds them for readers elsewhere: with a node
            // crashing every few seconds, a 30 s hold would almost never
            // end (the deferral queue is in memory), and the deletions
            // releases make would never be exercised.
            release_quiet_ms: RELEASE_QUIET_MS,
            release_hold_max_ms: 5 * RELEASE_QUIET_MS,
            ..DatadConfig::default()
        };
        let cancel = CancellationToken::new();
        let (handle, router) =
            weft_datad::node::start_in_process(cfg, net.endpoint(&addr), cancel.clone())
                .await
                .map_err(|e| format!("datad {} did not start: {e}", i + 1))?;
        net.serve(&addr, router);
        self.datads[i] = Some((handle, cancel));
        Ok(())
    }

    /// Stops data node `i` as a kill would: it answers nothing from now on.
    pub(crate) async fn crash_datad(&mut self, i: usize, net: &SimNet) {
        net.unserve(&datad_addr(i));
        if let Some((handle, cancel)) = self.datads[i].take() {
            cancel.cancel();
            handle.stopped().await;
        }
    }

    pub(crate) fn live_datads(&self) -> Vec<usize> {
        (0..DATADS).filter(|i| self.datads[*i].is_some()).collect()
    }

    pub(crate) async fn start_gateway(
        &mut self,
        net: &SimNet,
        metad: Vec<String>,
    ) -> Result<(), String> {
        let cfg = weft_gateway::config::GatewayConfig {
            listen: GATEWAY.parse().expect("valid gateway address"),
            metad,
            region: REGION.into(),
            root_access_key: Some(ACCESS_KEY.into()),
            root_secret_key: Some(SECRET_KEY.into()),
            ..Default::default()
        };
        let cancel = CancellationToken::new();
        let gw = weft_gateway::start_in_process(cfg, net.endpoint(GATEWAY), cancel.clone())
            .await
            .map_err(|e| format!("the gateway did not start: {e}"))?;
        net.serve_handler(GATEWAY, s3_handler(gw.service));
        self.gateway = Some(gw.background);
        Ok(())
    }

    /// Stops everything.
    pub(crate) async fn stop(&mut self, net: &SimNet) {
        net.unserve(GATEWAY);
        if let Some(bg) = self.gateway.take() {
            bg.cancel();
        }
        for i in 0..DATADS {
            self.crash_datad(i, net).await;
        }
        // The gateway's release queues and refreshers end on their own.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The default classes with the simulation's small unit, so a run's
/// objects span several stripes. Seeded by the metad voters.
pub(crate) fn storage_classes() -> Vec<weft_common::storage_class::StorageClass> {
    let mut classes = weft_common::storage_class::default_classes();
    for class in &mut classes {
        if let weft_common::profile::Layout::Erasure { unit_bytes, .. } = &mut class.layout {
            *unit_bytes = UNIT_BYTES;
        }
    }
    classes
}

/// Rots m+1 = 3 shard files of one segment, each in a different block
/// (so a different stripe): every stripe keeps k good shards, so nothing
/// may be lost, yet a scrubber that dropped whole files would drop three.
/// Picks, in name order, the first segment not rotted before with three
/// files of at least three blocks on live data nodes (once per segment, so
/// rot never piles up past what the code tolerates). Returns what it did,
/// or `None` when no segment qualifies.
pub(crate) fn rot(
    dir: &std::path::Path,
    live: &[usize],
    rotted: &mut std::collections::BTreeSet<String>,
) -> Option<String> {
    use std::collections::BTreeMap;
    let min_len = SHARD_HEADER_BYTES + 2 * (SHARD_BLOCK_BYTES + SHARD_BLOCK_CRC_BYTES) + 1;
    // Segment name -> files of it (path), in a deterministic order.
    let mut by_segment: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for i in live {
        for f in shard_files(dir, *i) {
            let path = f.path();
            let long = f.metadata().map(|m| m.len() >= min_len).unwrap_or(false);
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let (true, Some((segment, _))) = (long, name.split_once('.')) {
                by_segment
                    .entry(segment.to_string())
                    .or_default()
                    .push(path);
            }
        }
    }
    let (segment, mut files) = by_segment
        .into_iter()
        .find(|(s, f)| f.len() >= 3 && !rotted.contains(s))?;
    rotted.insert(segment.clone());
    files.sort();
    let mut done = Vec::new();
    for (block, path) in files.iter().take(3).enumerate() {
        let offset =
            SHARD_HEADER_BYTES + block as u64 * (SHARD_BLOCK_BYTES + SHARD_BLOCK_CRC_BYTES) + 100;
        if flip(path, offset).is_ok() {
            done.push(format!(
                "{} block {block}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
            ));
        }
    }
    Some(format!("segment {segment}: {}", done.join(", ")))
}

/// Every file in data node `node`'s (0-based) shard fan-out directories,
/// read straight from the run's disk (whether the node runs or not).
pub(crate) fn shard_files(dir: &std::path::Path, node: usize) -> Vec<std::fs::DirEntry> {
    let shards = dir.join(format!("datad-{}", node + 1)).join("shards");
    let Ok(fans) = std::fs::read_dir(&shards) else {
        return Vec::new();
    };
    fans.flatten()
        .filter_map(|fan| std::fs::read_dir(fan.path()).ok())
        .flat_map(|files| files.flatten())
        .collect()
}

/// Inverts one byte in place, as rot would: beside the simulated disk, in
/// a file synced long ago, so no power cut undoes it.
fn flip(path: &std::path::Path, offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    // Rot does not touch the file's time (which data nodes judge its age by).
    let modified = f.metadata()?.modified()?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut b)?;
    b[0] = !b[0];
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(&b)?;
    f.set_modified(modified)?;
    f.sync_all()
}

/// The gateway's S3 service as a network handler (whole bodies: the
/// simulated objects are small).
fn s3_handler(service: s3s::service::S3Service) -> Handler {
    Arc::new(move |req: http::Request<axum::body::Body>| {
        let service = service.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(b) => b,
                Err(e) => return status(400, &format!("request body: {e}")),
            };
            let req = http::Request::from_parts(parts, s3s::Body::from(bytes));
            match service.call(req).await {
                Ok(resp) => resp.map(axum::body::Body::new),
                Err(e) => status(500, &format!("{e:?}")),
            }
        })
    })
}

fn status(code: u16, text: &str) -> http::Response<axum::body::Body> {
    let mut r = http::Response::new(axum::body::Body::from(text.to_string()));
    *r.status_mut() = http::StatusCode::from_u16(code).expect("valid status");
    r
}
