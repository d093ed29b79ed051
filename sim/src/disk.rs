//! The simulated cluster's disk: a [`PowerCutDisk`] over each process's
//! directory, so a simulated power cut (of one process, or of all) drops
//! every write no fsync made durable, exactly as with real processes in
//! the chaos suite.
//!
//! The process has one disk (`weft_common::disk::install`, once), and a
//! `weft sim --seeds` sweep runs many simulations in one process, so the
//! installed disk is a [`SwapDisk`] whose inner disks each run replaces,
//! routing each step to the disk of the directory it touches. The
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

/// One process's power-cut disk, over its own directory.
#[derive(Debug)]
struct Part {
    name: String,
    /// The directory as the processes name it, and with symlinks resolved
    /// (as `/proc/self/fd` names open files).
    raw: PathBuf,
    canonical: PathBuf,
    disk: Arc<dyn Disk>,
}

/// The installed disk: delegates every step to the power-cut disk of the
/// process whose directory the file is in.
#[derive(Debug)]
pub(crate) struct SwapDisk {
    parts: RwLock<Vec<Part>>,
    /// The run's options, for the restart after a cut.
    options: RwLock<Option<Options>>,
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
            parts: RwLock::new(Vec::new()),
            options: RwLock::new(None),
            failing: RwLock::new(Vec::new()),
        });
        weft_common::disk::install(disk.clone()).then_some(disk)
    })
    .clone()
}

impl SwapDisk {
    /// The disk of the process whose directory holds `path`; the real disk
    /// for anything outside them.
    fn for_path(&self, path: &Path) -> Arc<dyn Disk> {
        self.parts
            .read()
            .expect("swap disk lock")
            .iter()
            .find(|p| path.starts_with(&p.raw) || path.starts_with(&p.canonical))
            .map(|p| p.disk.clone())
            .unwrap_or_else(|| Arc::new(RealDisk))
    }

    /// The disk of the process whose directory holds the open `file`.
    fn for_file(&self, file: &File) -> Arc<dyn Disk> {
        match path_of(file) {
            Some(path) => self.for_path(&path),
            None => Arc::new(RealDisk),
        }
    }

    /// Starts a run: one power-cut disk for each process directory
    /// `names` under `root` (each process's power is cut on its own).
    pub(crate) fn begin(
        &self,
        root: &Path,
        names: &[String],
        skip_file_fsync: bool,
    ) -> io::Result<()> {
        let options = Options {
            writeback: None,
            skip_file_fsync,
            real_fsync: false,
            ..Options::default()
        };
        let mut parts = Vec::with_capacity(names.len());
        for name in names {
            let raw = root.join(name);
            std::fs::create_dir_all(&raw)?;
            let (disk, _) = PowerCutDisk::start(&raw, options.clone())?;
            parts.push(Part {
                name: name.clone(),
                canonical: raw.canonicalize()?,
                raw,
                disk: Arc::new(disk),
            });
        }
        *self.parts.write().expect("swap disk lock") = parts;
        *self.options.write().expect("swap disk lock") = Some(options);
        Ok(())
    }

    /// A power cut of the processes named (all of them when `names` is
    /// `None`): every change their disks had not made durable is undone.
    /// Each must have stopped.
    pub(crate) fn cut(&self, names: Option<&[String]>) -> io::Result<Recovered> {
        let Some(options) = self.options.read().expect("swap disk lock").clone() else {
            return Ok(Recovered::default());
        };
        let mut total = Recovered::default();
        let mut parts = self.parts.write().expect("swap disk lock");
        for part in parts
            .iter_mut()
            .filter(|p| names.is_none_or(|n| n.contains(&p.name)))
        {
            // The old journal is closed before the new disk reads it.
            part.disk = Arc::new(RealDisk);
            let (disk, recovered) = PowerCutDisk::start(&part.raw, options.clone())?;
            part.disk = Arc::new(disk);
            total.writes += recovered.writes;
            total.entries += recovered.entries;
        }
        Ok(total)
    }

    /// From now on every change under `dir` fails with EIO.
    pub(crate) fn fail_under(&self, dir: &Path) {
        let mut failing = self.failing.write().expect("swap disk lock");
        // As processes name it, and as /proc names open files.
        failing.push(dir.to_path_buf());
        if let Ok(canonical) = dir.canonicalize() {
            failing.push(canonical);
        }
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

    /// EIO if the open `file` is under a failing directory (its path
    /// looked up only while some directory is failing).
    fn check_file(&self, file: &File) -> io::Result<()> {
        if self.failing.read().expect("swap disk lock").is_empty() {
            return Ok(());
        }
        match path_of(file) {
            Some(path) => self.check_path(&path),
            None => Ok(()),
        }
    }

    /// Ends the run: back to the real disk.
    pub(crate) fn end(&self) {
        self.heal();
        self.parts.write().expect("swap disk lock").clear();
        *self.options.write().expect("swap disk lock") = None;
    }
}

/// The path of an open file, from /proc.
fn path_of(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
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
        let file = self.for_path(path).create_new(path, access)?;
        stamp(&file)?;
        Ok(file)
    }

    fn write_at(&self, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_file(file)?;
        self.for_file(file).write_at(file, offset, data)?;
        stamp(file)
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        self.check_file(file)?;
        self.for_file(file).set_len(file, len)?;
        stamp(file)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.check_file(file)?;
        self.for_file(file).sync_data(file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_path(from)?;
        self.check_path(to)?;
        self.for_path(from).rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_path(path)?;
        self.for_path(path).remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check_path(dir)?;
        self.for_path(dir).sync_dir(dir)
    }
}
