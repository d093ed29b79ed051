//! The disk seam: every write that must survive a crash goes through a
//! [`Disk`], so a test can replace what "durable" means.
//!
//! Only the steps that change what a power cut leaves behind are here:
//! creating a file, writing into it, changing its length, fsyncing it,
//! renaming, removing, and fsyncing a directory. Reads stay plain `std::fs`:
//! they cannot change what survives, and every implementation keeps the
//! files readable at their real paths.
//!
//! Two implementations:
//! - [`RealDisk`], the production one: each method is the system call.
//! - [`power_cut::PowerCutDisk`], for fault testing with real processes: it
//!   writes through like [`RealDisk`] but keeps an undo journal of every
//!   change not yet made durable by an fsync (or by the kernel's writeback
//!   age), and [`power_cut::recover`] undoes those changes at the next start.
//!   `kill -9` keeps the page cache, so without it no test could show a
//!   missing fsync; with it, `kill -9` followed by a start is a power cut.
//!
//! The process-wide disk is [`current`]; a binary may [`install`] another
//! once at start, before any store opens. One disk per process fits every
//! real deployment (a process owns one data directory); the simulator, which
//! runs many nodes in one process, will hand each node its own (the plan is
//! in docs/decisions.md, "The disk seam").

mod journal;
pub mod power_cut;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Who may read a new file. Set when the file is created, so a secret is
/// never readable by others, not even before the rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The process's umask decides (shard files, snapshots).
    Default,
    /// Only the owner may read or write it (mode 0600 on Unix; credentials).
    OwnerOnly,
}

/// The durability-relevant file-system steps. Methods take the open
/// [`File`] where one exists, so implementations need no handle type of
/// their own and callers keep reading through `std`.
pub trait Disk: Send + Sync + std::fmt::Debug {
    /// Creates `path`, which must not exist, open for reading and writing.
    fn create_new(&self, path: &Path, access: Access) -> io::Result<File>;
    /// Writes all of `data` at `offset`. The file must be open for reading
    /// too (a fault-injecting disk reads what it overwrites).
    fn write_at(&self, file: &File, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, file: &File, len: u64) -> io::Result<()>;
    /// Makes the file's data (and its length) durable: `fdatasync`.
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// Renames `from` to `to`, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries created, renamed or removed in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The production disk: each step is the system call, nothing more.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn create_new(&self, path: &Path, access: Access) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.write(true).read(true).create_new(true);
        #[cfg(unix)]
        if access == Access::OwnerOnly {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = access;
        options.open(path)
    }

    fn write_at(&self, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        file.write_all_at(data, offset)
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

static CURRENT: OnceLock<Arc<dyn Disk>> = OnceLock::new();

/// The process's disk: [`RealDisk`] unless [`install`] chose another first.
pub fn current() -> &'static Arc<dyn Disk> {
    CURRENT.get_or_init(|| Arc::new(RealDisk))
}

/// Makes `disk` the process's disk. Only before the first [`current`] (at
/// start, before any store opens): a store must not see two disks. Returns
/// `false`, changing nothing, when it is too late.
pub fn install(disk: Arc<dyn Disk>) -> bool {
    CURRENT.set(disk).is_ok()
}

/// A [`std::io::Write`] that appends to a file through a [`Disk`], from a
/// starting offset. What [`crate::durable_file::DurableFile`] hands out to
/// stream contents into its temp file.
#[derive(Debug)]
pub struct DiskWriter<'a> {
    disk: &'a dyn Disk,
    file: &'a File,
    pos: &'a mut u64,
}

impl<'a> DiskWriter<'a> {
    /// Writes into `file` at `*pos`, advancing it.
    pub fn new(disk: &'a dyn Disk, file: &'a File, pos: &'a mut u64) -> Self {
        DiskWriter { disk, file, pos }
    }
}

impl io::Write for DiskWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.disk.write_at(self.file, *self.pos, buf)?;
        *self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
