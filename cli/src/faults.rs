//! Fault switches for the chaos image's daemons. They exist only in builds
//! with the `failpoints` feature: a release binary has neither the switches
//! nor the variables' names in it (cli/tests/failpoints.rs checks).
//!
//! - `WEFT_FAULT_POWER_CUT=1`: the daemon's data directory is on a
//!   [`PowerCutDisk`](weft_common::disk::power_cut::PowerCutDisk), so a
//!   `kill -9` followed by a start is a power cut: at start, every change
//!   the last run did not make durable is undone.
//! - `WEFT_FAULT_SKIP_FSYNC=1` (with the above): file fsyncs do nothing, the
//!   injected "missing fsync" bug that a power-cut run must catch.

use std::path::Path;

/// Installs the power-cut disk over `data_dir` when the switch is set,
/// recovering what the last run left unsynced first. Call before any store
/// opens.
#[cfg(feature = "failpoints")]
pub fn install_disk(data_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::sync::Arc;
    use weft_common::disk::power_cut::{Options, PowerCutDisk};
    if std::env::var("WEFT_FAULT_POWER_CUT").as_deref() != Ok("1") {
        return Ok(());
    }
    let skip_file_fsync = std::env::var("WEFT_FAULT_SKIP_FSYNC").as_deref() == Ok("1");
    // Plain std: the durable-file helpers would fix the process's disk.
    std::fs::create_dir_all(data_dir)
        .context("create the data directory for the power-cut disk")?;
    let options = Options {
        skip_file_fsync,
        ..Options::default()
    };
    let (disk, recovered) = PowerCutDisk::start(data_dir, options)
        .with_context(|| format!("power-cut recovery in {}", data_dir.display()))?;
    tracing::warn!(
        data_dir = %data_dir.display(),
        writes_undone = recovered.writes,
        entries_undone = recovered.entries,
        skip_file_fsync,
        "WEFT_FAULT_POWER_CUT=1: this process's last stop was treated as a power cut (unsynced changes undone); a kill -9 of it is one too"
    );
    if skip_file_fsync {
        tracing::warn!("WEFT_FAULT_SKIP_FSYNC=1: file fsyncs do nothing (a deliberate bug for the chaos self-test); it loses data on a power cut");
    }
    let disk = Arc::new(disk);
    PowerCutDisk::age_in_background(&disk);
    anyhow::ensure!(
        weft_common::disk::install(disk),
        "the power-cut disk must be installed before any file is written"
    );
    Ok(())
}

/// Without the `failpoints` feature there is no switch: nothing to install.
#[cfg(not(feature = "failpoints"))]
pub fn install_disk(_data_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}
