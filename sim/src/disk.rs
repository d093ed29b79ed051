//! The simulated cluster's disk: a [`PowerCutDisk`] over the run's
//! directory, so a simulated power cut drops every write no fsync made
//! durable, exactly as with real processes in the chaos suite.
//!
//! The process has one disk (`weft_common::disk::install`, once), and a
//! `weft sim --seeds` sweep runs many simulations in one process, so the
//! installed disk is a [`SwapDisk`] whose inner disk each run replaces. The
//! kernel's writeback age is off: under simulation only an fsync makes
//! anything durable, the strictest disk a power cut can meet. Every change
//! stamps the file's modification time from the simulated clock.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use weft_common::disk::power_cut::{Options, PowerCutDisk, Recovered};
use weft_common::disk::{Access, Disk, RealDisk};

/// The installed disk: delegates every step to the current run's disk.
#[derive(Debug)]
pub(crate) struct SwapDisk {
    inner: RwLock<Arc<dyn Disk>>,
    /// The run's root and options, for the restart after a cut.
    run: RwLock<Option<(PathBuf, Options)>>,
}

static DISK: OnceLock<Option<Arc<SwapDisk>>> = OnceLock::new();

/// The process's swap disk, installed on first use; `None` if something
/// wrote a file through another disk first (power cuts are then off).
pub(crate) fn installed() -> Option<Arc<SwapDisk>> {
    DISK.get_or_init(|| {
        let disk = Arc::new(SwapDisk {
            inner: RwLock::new(Arc::new(RealDisk)),
            run: RwLock::new(None),
        });
        weft_common::disk::install(disk.clone()).then_some(disk)
    })
    .clone()
}

impl SwapDisk {
    fn inner(&self) -> Arc<dyn Disk> {
        self.inner.read().expect("swap disk lock").clone()
    }

    /// Starts a run's power-cut disk over `root`.
    pub(crate) fn begin(&self, root: &Path, skip_file_fsync: bool) -> io::Result<()> {
        let options = Options {
            writeback: None,
            skip_file_fsync,
            ..Options::default()
        };
        let (disk, _) = PowerCutDisk::start(root, options.clone())?;
        *self.inner.write().expect("swap disk lock") = Arc::new(disk);
        *self.run.write().expect("swap disk lock") = Some((root.to_path_buf(), options));
        Ok(())
    }

    /// The power cut: every change not made durable is undone. Every
    /// process using the disk must have stopped.
    pub(crate) fn cut(&self) -> io::Result<Recovered> {
        let run = self.run.read().expect("swap disk lock").clone();
        let Some((root, options)) = run else {
            return Ok(Recovered::default());
        };
        // The old journal is closed before the new disk reads it.
        *self.inner.write().expect("swap disk lock") = Arc::new(RealDisk);
        let (disk, recovered) = PowerCutDisk::start(&root, options)?;
        *self.inner.write().expect("swap disk lock") = Arc::new(disk);
        Ok(recovered)
    }

    /// Ends the run: back to the real disk.
    pub(crate) fn end(&self) {
        *self.inner.write().expect("swap disk lock") = Arc::new(RealDisk);
        *self.run.write().expect("swap disk lock") = None;
    }
}

/// Stamps a file just changed with the simulated wall clock: data nodes
/// judge a file's age (the scrubber's and garbage collector's grace) by
/// its modification time against `effects::now()`, and the machine's time
/// would make every file look as if written in the simulated future (and
/// make what they do depend on when the run happened).
fn stamp(file: &File) -> io::Result<()> {
    file.set_modified(weft_common::effects::now())
}

impl Disk for SwapDisk {
    fn create_new(&self, path: &Path, access: Access) -> io::Result<File> {
        let file = self.inner().create_new(path, access)?;
        stamp(&file)?;
        Ok(file)
    }

    fn write_at(&self, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner().write_at(file, offset, data)?;
        stamp(file)
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        self.inner().set_len(file, len)?;
        stamp(file)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.inner().sync_data(file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner().rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner().remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner().sync_dir(dir)
    }
}
