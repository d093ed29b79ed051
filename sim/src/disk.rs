//! The simulated cluster's disk: a [`PowerCutDisk`] over the run's
//! directory, so a simulated power cut drops every write no fsync made
//! durable, exactly as with real processes in the chaos suite.
//!
//! The process has one disk (`weft_common::disk::install`, once), and a
//! `weft sim --seeds` sweep runs many simulations in one process, so the
//! installed disk is a [`SwapDisk`] whose inner disk each run replaces. The
//! kernel's writeback age is off: under simulation only an fsync makes
//! anything durable, the strictest disk a power cut can meet. Every change
//! stamps the file's modification time from the simulated clock. The
//! nemesis can make a data node's directory fail every change with EIO for
//! a while (a failing device), then heal it.

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
    /// Directories whose every write, fsync, create, rename and remove
    /// fails with EIO (a failing device), until healed.
    failing: RwLock<Vec<PathBuf>>,
}

static DISK: OnceLock<Option<Arc<SwapDisk>>> = OnceLock::new();

/// The process's swap disk, installed on first use; `None` if something
/// wrote a file through another disk first (power cuts are then off).
pub(crate) fn installed() -> Option<Arc<SwapDisk>> {
    DISK.get_or_init(|| {
        let disk = Arc::new(SwapDisk {
            inner: RwLock::new(Arc::new(RealDisk)),
            run: RwLock::new(None),
            failing: RwLock::new(Vec::new()),
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
            real_fsync: false,
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

    /// From now on every change under `dir` fails with EIO.
    pub(crate) fn fail_under(&self, dir: &Path) {
        self.failing
            .write()
            .expect("swap disk lock")
            .push(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()));
    }

    /// Every directory works again.
    pub(crate) fn heal(&self) {
        self.failing.write().expect("swap disk lock").clear();
    }

    /// EIO if `path` is under a failing directory.
    fn check_path(&self, path: &Path) -> io::Result<()> {
        let failing = self.failing.read().expect("swap disk lock");
        if failing.iter().any(|d| path.starts_with(d)) {
            return Err(io::Error::other(format!(
                "simulated I/O error (EIO) under {}",
                path.display()
            )));
        }
        Ok(())
    }

    /// EIO if the open `file` is under a failing directory (its path from
    /// /proc, looked up only while some directory is failing).
    fn check_file(&self, file: &File) -> io::Result<()> {
        if self.failing.read().expect("swap disk lock").is_empty() {
            return Ok(());
        }
        use std::os::fd::AsRawFd;
        match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            Ok(path) => self.check_path(&path),
            Err(_) => Ok(()),
        }
    }

    /// Ends the run: back to the real disk.
    pub(crate) fn end(&self) {
        self.heal();
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
        self.check_path(path)?;
        let file = self.inner().create_new(path, access)?;
        stamp(&file)?;
        Ok(file)
    }

    fn write_at(&self, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_file(file)?;
        self.inner().write_at(file, offset, data)?;
        stamp(file)
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        self.check_file(file)?;
        self.inner().set_len(file, len)?;
        stamp(file)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.check_file(file)?;
        self.inner().sync_data(file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_path(from)?;
        self.check_path(to)?;
        self.inner().rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_path(path)?;
        self.inner().remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check_path(dir)?;
        self.inner().sync_dir(dir)
    }
}
