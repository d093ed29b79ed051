//! The simulated cluster's processes: three metad voters (and, with the
//! data plane, the data nodes and gateway of [`crate::data`]), started,
//! crashed and power-cut on the simulated network and disk.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft_metad::node::{MetadConfig, MetadHandle};

use crate::{data, disk, PowerCuts, SimNet};

pub(crate) const VOTERS: usize = 3;
/// The longest an upload may take (its shards are protected that long).
const UPLOAD_MAX_AGE_MS: u64 = 120_000;

pub(crate) fn voter_addr(i: usize) -> String {
    format!("127.0.1.{}:7000", i + 1)
}

pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) disk: Arc<disk::SwapDisk>,
    pub(crate) net: SimNet,
    pub(crate) voters: Vec<Option<(MetadHandle, CancellationToken)>>,
    pub(crate) data: data::DataPlane,
    pub(crate) data_plane: bool,
    pub(crate) power_cuts: PowerCuts,
}

impl Cluster {
    pub(crate) async fn start(&mut self, i: usize) -> Result<(), String> {
        let addr = voter_addr(i);
        let cfg = MetadConfig {
            id: i as u64 + 1,
            listen: addr.parse().expect("valid voter address"),
            data_dir: self.dir.path().join(format!("metad-{}", i + 1)),
            bootstrap: false,
            // Small, so snapshots are taken and installed during a run.
            snapshot_logs: 64,
            snapshot_logs_keep: 16,
            // Short, so data nodes collect garbage within a run (which
            // lasts some 15 simulated minutes) and the checks see it.
            upload_max_age_ms: UPLOAD_MAX_AGE_MS,
            gc_grace_ms: 2 * UPLOAD_MAX_AGE_MS,
            storage_classes: crate::data::storage_classes(),
            ..MetadConfig::default()
        };
        let cancel = CancellationToken::new();
        let (handle, router) =
            weft_metad::node::start_in_process(cfg, self.net.endpoint(&addr), cancel.clone())
                .await
                .map_err(|e| format!("voter {} did not start: {e}", i + 1))?;
        self.net.serve(&addr, router);
        self.voters[i] = Some((handle, cancel));
        Ok(())
    }

    /// Stops voter `i` as a kill would: it answers nothing from now on and
    /// its raft core stops without a flush of the state machine.
    pub(crate) async fn crash(&mut self, i: usize) {
        self.net.unserve(&voter_addr(i));
        if let Some((handle, cancel)) = self.voters[i].take() {
            cancel.cancel();
            let _ = handle.raft().shutdown().await;
            drop(handle);
        }
    }

    pub(crate) async fn start_datad(&mut self, i: usize) -> Result<(), String> {
        let metad = (0..VOTERS).map(voter_addr).collect();
        self.data
            .start_datad(i, &self.net, self.dir.path(), metad)
            .await
    }

    /// Every voter and data node loses power at once: all stop, and every
    /// change their disks had not made durable is undone before they start
    /// again. (The gateway keeps running: it has no disk.)
    pub(crate) async fn power_cut(&mut self) -> Result<String, String> {
        for i in 0..VOTERS {
            self.crash(i).await;
        }
        for i in 0..data::DATADS {
            self.data.crash_datad(i, &self.net).await;
        }
        // Let the stopped voters' last tasks end and release their files.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let undone = self
            .disk
            .cut(None)
            .map_err(|e| format!("power-cut recovery failed: {e}"))?;
        self.power_cuts.cuts += 1;
        self.power_cuts.writes_undone += undone.writes;
        self.power_cuts.entries_undone += undone.entries;
        for i in 0..VOTERS {
            self.start(i).await?;
        }
        if self.data_plane {
            for i in 0..data::DATADS {
                self.start_datad(i).await?;
            }
        }
        Ok(format!(
            "{} writes and {} entries undone",
            undone.writes, undone.entries
        ))
    }

    /// Power to one process's disk is cut: what it had not made durable
    /// is undone (the process must have stopped: crashed just before).
    pub(crate) fn cut_one(&mut self, name: &str) -> Result<String, String> {
        let undone = self
            .disk
            .cut(Some(&[name.to_string()]))
            .map_err(|e| format!("power-cut recovery of {name} failed: {e}"))?;
        self.power_cuts.node_cuts += 1;
        self.power_cuts.writes_undone += undone.writes;
        self.power_cuts.entries_undone += undone.entries;
        Ok(format!(
            "{} writes and {} entries undone",
            undone.writes, undone.entries
        ))
    }

    pub(crate) fn live(&self) -> Vec<usize> {
        (0..VOTERS).filter(|i| self.voters[*i].is_some()).collect()
    }
}
