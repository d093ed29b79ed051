//! redb's file storage with every write, truncation and fsync going through
//! the process's [`Disk`], so metad's databases live on the same seam as
//! datad's shard files (a power-cut disk then covers the raft log and the
//! state machine too). Reads and locks are redb's own file backend.

use redb::backends::FileBackend;
use redb::{Builder, Database, DatabaseError, StorageBackend};
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use weft_common::disk::{self, Disk};

/// A redb storage backend: redb's [`FileBackend`] for reads, length and
/// locks; the [`Disk`] for every change.
#[derive(Debug)]
pub struct DiskBackend {
    inner: FileBackend,
    /// A second handle on the same open file, for the disk's calls.
    file: File,
    disk: Arc<dyn Disk>,
}

impl DiskBackend {
    /// Opens (creating if absent) the file at `path` on `disk`, then
    /// fsyncs its directory: a new database file's name is durable before
    /// anything is committed into it (and an old one made by a process that
    /// died before that fsync becomes so now).
    pub fn open(path: &Path, disk: Arc<dyn Disk>) -> std::io::Result<DiskBackend> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match disk.create_new(path, weft_common::disk::Access::Default) {
                    Ok(f) => f,
                    // Created meanwhile by someone else: open theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        OpenOptions::new().read(true).write(true).open(path)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        disk.sync_dir(dir)?;
        let ours = file.try_clone()?;
        let inner = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(DiskBackend {
            inner,
            file: ours,
            disk,
        })
    }
}

/// Opens or creates the database at `path` with `builder`'s settings, on the
/// process's disk.
pub fn create(builder: &Builder, path: &Path) -> Result<Database, DatabaseError> {
    let backend = DiskBackend::open(path, disk::current().clone())?;
    builder.create_with_backend(backend)
}

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.disk.set_len(&self.file, len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.disk.sync_data(&self.file)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.disk.write_at(&self.file, offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, TableDefinition};
    use weft_common::disk::power_cut::{Options, PowerCutDisk, Recovered};

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn put(db: &Database, key: &str, value: u64, durability: redb::Durability) {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(durability).unwrap();
        tx.open_table(T).unwrap().insert(key, value).unwrap();
        tx.commit().unwrap();
    }

    const CHILD: &str = "disk_backend::tests::power_cut_child";

    fn options(skip_file_fsync: bool) -> Options {
        Options {
            writeback: None,
            skip_file_fsync,
            ..Options::default()
        }
    }

    /// Not a test by itself: the half of a power-cut test that runs in a
    /// child process and exits without closing anything (a kill, made a
    /// power cut by the disk), started by [`commit_then_cut`].
    #[test]
    #[ignore = "the child half of the power-cut tests; commit_then_cut runs it"]
    fn power_cut_child() {
        let root = std::env::var("WEFT_TEST_POWER_CUT_ROOT").expect("run by commit_then_cut");
        let skip = std::env::var("WEFT_TEST_POWER_CUT_SKIP").is_ok();
        let root = Path::new(&root);
        let (disk, _) = PowerCutDisk::start(root, options(skip)).unwrap();
        let disk: Arc<dyn Disk> = Arc::new(disk);
        let db = Builder::new()
            .create_with_backend(DiskBackend::open(&root.join("db.redb"), disk.clone()).unwrap())
            .unwrap();
        put(&db, "a", 1, redb::Durability::Immediate);
        put(&db, "b", 2, redb::Durability::Immediate);
        std::fs::write(root.join("child-done"), b"").unwrap();
        std::process::exit(0); // no destructor runs: redb is never closed
    }

    /// Runs [`power_cut_child`] in a child process, then recovers the disk
    /// (the power cut) and opens the database.
    fn commit_then_cut(skip_file_fsync: bool) -> (tempfile::TempDir, Recovered, Database) {
        let root = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                CHILD,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WEFT_TEST_POWER_CUT_ROOT", root.path());
        if skip_file_fsync {
            child.env("WEFT_TEST_POWER_CUT_SKIP", "1");
        }
        assert!(child.status().unwrap().success());
        assert!(root.path().join("child-done").exists(), "the child ran");
        let (disk, recovered) = PowerCutDisk::start(root.path(), options(false)).unwrap();
        let db = Builder::new()
            .create_with_backend(
                DiskBackend::open(&root.path().join("db.redb"), Arc::new(disk)).unwrap(),
            )
            .unwrap();
        (root, recovered, db)
    }

    fn get(db: &Database, key: &str) -> Option<u64> {
        let r = db.begin_read().unwrap();
        let t = r.open_table(T).unwrap();
        t.get(key).unwrap().map(|v| v.value())
    }

    /// Also shows the file's own name is durable: `open` fsyncs the
    /// directory (without that, the cut would undo the create and the
    /// database would come back empty).
    #[test]
    fn committed_transactions_survive_a_power_cut() {
        let (_root, recovered, db) = commit_then_cut(false);
        assert_eq!(
            recovered,
            Recovered::default(),
            "redb fsynced everything it wrote"
        );
        assert_eq!((get(&db, "a"), get(&db, "b")), (Some(1), Some(2)));
    }

    /// The same commits on a disk whose fsyncs do nothing are gone after
    /// the cut: the disk, not luck, is what kept them above.
    #[test]
    fn without_fsyncs_a_power_cut_takes_the_commits() {
        let (_root, recovered, db) = commit_then_cut(true);
        assert!(recovered.writes > 0, "the unsynced writes were undone");
        let r = db.begin_read().unwrap();
        assert!(r.open_table(T).is_err(), "not even the table survives");
    }
}
