//! Crash-safe files: the one recipe every Weft process uses to make a file
//! or directory durable (datad's shard files and node id, metad's snapshots,
//! the CLI's credentials file).
//!
//! The recipe (after Neon's `crashsafe.rs`):
//!
//! 1. [`DurableFile`] opens a fresh file under a temporary name with
//!    `create_new`. A crash now, or while the caller writes to it, leaves only
//!    a stray temp file; the target name is untouched (either absent or still
//!    the old, complete file).
//! 2. [`DurableFile::commit`] fsyncs the temp file. A crash after this leaves
//!    the complete contents on disk, but still only under the temp name.
//! 3. It renames the temp file over the target. `rename` is atomic: a reader
//!    sees either the old file or the new one, never a mix. A crash right
//!    after may still lose the rename (the directory entry is not yet
//!    durable), so after restart the target is the old file or absent: never
//!    partial.
//! 4. It fsyncs the target's directory. Only now is the new file guaranteed to
//!    be found under the target name after a crash; callers must not
//!    acknowledge the write before `commit` returns.
//!
//! The same holds for directories: a new directory's entry lives in its
//! parent, so [`create_dir_all`] and [`create_subdirs`] fsync the parent. They
//! do so even when the directory already exists: a process that crashed
//! between `mkdir` and that fsync leaves a directory the next start sees but a
//! power loss can still take away, with every file committed into it.
//!
//! The temp file and the target must be on the same file system (rename does
//! not cross file systems). Every write gets a temp file of its own
//! (`create_new` with a name unique to the process and the write), so
//! concurrent writers never share one. A [`DurableFile`] dropped or failed
//! before its rename removes its temp file (best effort; a crash leaves it,
//! which is why datad empties its temp directory when it opens its store and
//! callers of [`write_file`] call [`remove_stale_temps`] when they open
//! theirs).
//!
//! Everything here is blocking code: call it from
//! `crate::effects::spawn_blocking` or a dedicated thread, never from async code.
//! Every step that changes what survives a crash goes through the process's
//! [`Disk`](crate::disk::Disk) ([`crate::disk::current`]), so a power-cut
//! disk can test the recipe with real processes.

pub use crate::disk::Access;
use crate::disk::{self, Disk, DiskWriter};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// A failed file-system step: `step` says what was being done, `path` to what.
#[derive(Debug, Error)]
#[error("{step} {}", path.display())]
pub struct FsError {
    /// What was being done, e.g. "fsync directory".
    pub step: &'static str,
    /// The file or directory it was done to.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Wraps `source`, saying what was being done to `path`.
    pub fn new(step: &'static str, path: &Path, source: io::Error) -> Self {
        FsError {
            step,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the disk (or a quota) is full.
    pub fn is_disk_full(&self) -> bool {
        is_disk_full(&self.source)
    }

    /// Whether the process (or the system) ran out of file descriptors.
    pub fn is_out_of_descriptors(&self) -> bool {
        is_out_of_descriptors(&self.source)
    }
}

/// Whether an I/O error means the disk (or a quota) is full.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Whether an I/O error means no file descriptor was free (EMFILE for the
/// process, ENFILE for the whole system). Like a full disk this passes once
/// descriptors are released, so callers answer "busy, retry" rather than
/// treating it as a broken store.
pub fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Distinguishes temp files of one process; the process id separates
/// processes sharing a temp directory.
static TEMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Restarts temp-file numbering: a simulated run calls it first, so a seed
/// run twice in one process names its files alike. (A name already on disk
/// is skipped, so a restart can never reuse a live file's name.)
pub fn restart_temp_names() {
    TEMP_SEQUENCE.store(0, Ordering::Relaxed);
}

/// A file being written under a temp name, to be committed to its real name.
#[derive(Debug)]
pub struct DurableFile {
    disk: Arc<dyn Disk>,
    file: Option<File>,
    /// Where the next [`writer`](Self::writer) write lands.
    pos: u64,
    /// Empty once renamed: then there is nothing for `Drop` to remove.
    temp_path: PathBuf,
}

impl DurableFile {
    /// Step 1: creates a new, uniquely named, empty file in `tmp_dir` (which
    /// must be on the target's file system).
    pub fn create(tmp_dir: &Path, access: Access) -> Result<DurableFile, FsError> {
        Self::create_on(disk::current().clone(), tmp_dir, access)
    }

    /// [`create`](Self::create) on a given disk rather than the process's.
    pub fn create_on(
        disk: Arc<dyn Disk>,
        tmp_dir: &Path,
        access: Access,
    ) -> Result<DurableFile, FsError> {
        Self::create_unique(disk, access, |unique| tmp_dir.join(format!("{unique}.tmp")))
    }

    /// Creates the file at `path(unique)` with `create_new`, where `unique` is
    /// `<pid>-<sequence>` in hex, unique among this process's temp files.
    fn create_unique(
        disk: Arc<dyn Disk>,
        access: Access,
        path: impl Fn(&str) -> PathBuf,
    ) -> Result<DurableFile, FsError> {
        loop {
            // A simulated run names files the same in every process that
            // replays it (the names show in error messages it records).
            let pid = if crate::effects::simulated() {
                0
            } else {
                std::process::id()
            };
            let unique = format!(
                "{:x}-{:x}",
                pid,
                TEMP_SEQUENCE.fetch_add(1, Ordering::Relaxed)
            );
            match Self::create_at(disk.clone(), path(&unique), access) {
                // Left by an earlier process with the same id: take the next.
                Err(e) if e.source.kind() == io::ErrorKind::AlreadyExists => continue,
                other => return other,
            }
        }
    }

    fn create_at(
        disk: Arc<dyn Disk>,
        temp_path: PathBuf,
        access: Access,
    ) -> Result<DurableFile, FsError> {
        match disk.create_new(&temp_path, access) {
            Ok(file) => Ok(DurableFile {
                disk,
                file: Some(file),
                pos: 0,
                temp_path,
            }),
            Err(e) => Err(FsError::new("create temp file", &temp_path, e)),
        }
    }

    /// Appends the contents to the temp file (through the disk).
    pub fn writer(&mut self) -> DiskWriter<'_> {
        let file = self
            .file
            .as_ref()
            .expect("file is present until commit or drop");
        DiskWriter::new(&*self.disk, file, &mut self.pos)
    }

    /// The temp file's path (for logs and tests).
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Step 2 alone: fsyncs the temp file. Optional: [`commit`](Self::commit)
    /// does it anyway, but calling it first moves the slow part of the commit
    /// out of any lock the caller holds around `commit` (the second fsync
    /// then has nothing to write).
    pub fn sync(&mut self) -> Result<(), FsError> {
        let file = self
            .file
            .as_ref()
            .expect("file is present until commit or drop");
        self.disk
            .sync_data(file)
            .map_err(|e| FsError::new("fsync temp file", &self.temp_path, e))
    }

    /// Steps 2–4: fsyncs the file, renames it to `target` (replacing any file
    /// there), fsyncs `target`'s directory. Once this returns the new file is
    /// durable under `target`. On error before the rename the temp file is
    /// removed and `target` is untouched.
    pub fn commit(mut self, target: &Path) -> Result<(), FsError> {
        self.sync()?;
        self.file.take();
        if let Err(e) = self.disk.rename(&self.temp_path, target) {
            return Err(FsError::new("rename temp file into", target, e));
        }
        self.temp_path = PathBuf::new();
        fsync_parent_on(&*self.disk, target)
    }
}

impl Drop for DurableFile {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            self.file.take();
            let _ = self.disk.remove_file(&self.temp_path);
        }
    }
}

/// Replaces `target` crash-safely with `contents` (all four steps). The temp
/// file sits beside `target`; see [`write_file_with`].
pub fn write_file(target: &Path, contents: &[u8], access: Access) -> Result<(), FsError> {
    use std::io::Write;
    write_file_with(target, access, |file| file.write_all(contents))
}

/// Replaces `target` crash-safely with what `write` writes (all four steps).
/// If `write` fails, the temp file is removed and `target` is untouched.
///
/// The temp file is `.<name>.<pid>-<sequence>.tmp` beside `target`, created
/// with `create_new`: each write has its own, so concurrent writers of one
/// target never touch each other's temp file, and the target ends up as one
/// writer's whole contents (the last rename wins). A crash mid-write leaves
/// the temp file behind; [`remove_stale_temps`] removes such files where the
/// caller opens its store, when no write of the target can be running.
pub fn write_file_with(
    target: &Path,
    access: Access,
    write: impl FnOnce(&mut DiskWriter<'_>) -> io::Result<()>,
) -> Result<(), FsError> {
    let Some(name) = target.file_name() else {
        return Err(FsError::new(
            "write file (the path names no file)",
            target,
            io::ErrorKind::InvalidInput.into(),
        ));
    };
    let mut file = DurableFile::create_unique(disk::current().clone(), access, |unique| {
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{unique}.tmp"));
        target.with_file_name(temp_name)
    })?;
    if let Err(e) = write(&mut file.writer()) {
        return Err(FsError::new("write temp file", file.temp_path(), e));
    }
    file.commit(target)
}

/// Whether `file_name` is a temp file [`write_file_with`] makes for a target
/// named `target_name`: `.<target_name>.<hex>-<hex>.tmp`, or the older
/// `.<target_name>.tmp`.
fn is_temp_of(file_name: &[u8], target_name: &[u8]) -> bool {
    let Some(rest) = file_name
        .strip_prefix(b".")
        .and_then(|r| r.strip_prefix(target_name))
        .and_then(|r| r.strip_prefix(b"."))
    else {
        return false;
    };
    if rest == b"tmp" {
        return true;
    }
    let Some(unique) = rest.strip_suffix(b".tmp") else {
        return false;
    };
    let hex = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_hexdigit);
    match unique.iter().position(|&b| b == b'-') {
        Some(dash) => hex(&unique[..dash]) && hex(&unique[dash + 1..]),
        None => false,
    }
}

/// Removes the temp files that crashed writes of `target` left beside it
/// (see [`write_file_with`]) and returns how many there were. Call it where
/// the caller opens the store `target` belongs to, before any write of it:
/// it would remove the temp file of a write in progress, failing that write.
pub fn remove_stale_temps(target: &Path) -> Result<usize, FsError> {
    let Some(name) = target.file_name() else {
        return Err(FsError::new(
            "remove stale temp files (the path names no file)",
            target,
            io::ErrorKind::InvalidInput.into(),
        ));
    };
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(FsError::new("list directory", dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("list directory", dir, e))?;
        let file_name = entry.file_name();
        if !is_temp_of(file_name.as_encoded_bytes(), name.as_encoded_bytes()) {
            continue;
        }
        let path = entry.path();
        match disk::current().remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::new("remove stale temp file", &path, e)),
        }
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// Fsyncs a directory, making the entries created, renamed or removed in it
/// durable.
pub fn fsync_dir(dir: &Path) -> Result<(), FsError> {
    fsync_dir_on(&**disk::current(), dir)
}

fn fsync_dir_on(disk: &dyn Disk, dir: &Path) -> Result<(), FsError> {
    disk.sync_dir(dir)
        .map_err(|e| FsError::new("fsync directory", dir, e))
}

fn fsync_parent_on(disk: &dyn Disk, path: &Path) -> Result<(), FsError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsync_dir_on(disk, parent),
        _ => fsync_dir_on(disk, Path::new(".")),
    }
}

/// Creates `dir` and its missing ancestors durably (`mkdir -p`), then fsyncs
/// `dir` and each of its ancestors, whether or not this call created them:
/// a directory that already exists may have been made by a process that
/// crashed before its fsync, and files committed into it are only as durable
/// as its entry. Meant for opening a store, not for every write. The walk up
/// stops at a mount point (above it lies another file system) and at the
/// first ancestor the process may not open: that one was not made by it (it
/// would have read permission), nor, in practice, anything above.
pub fn create_dir_all(dir: &Path) -> Result<(), FsError> {
    if !dir.is_dir() {
        if let Some(parent) = dir.parent() {
            if !parent.as_os_str().is_empty() {
                create_dir_all_unsynced(parent)?;
            }
        }
        match fs::create_dir(dir) {
            Ok(()) => {}
            // Another thread made it: its fsyncs may not have run yet, so
            // ours below still matter.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(FsError::new("create directory", dir, e)),
        }
    }
    let real = fs::canonicalize(dir).map_err(|e| FsError::new("resolve directory", dir, e))?;
    let device = device_of(&real)?;
    fsync_dir(&real)?;
    for ancestor in real.ancestors().skip(1) {
        if device_of(ancestor)? != device {
            break; // a mount point: what lies above is another file system
        }
        match disk::current().sync_dir(ancestor) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => break,
            Err(e) => return Err(FsError::new("fsync directory", ancestor, e)),
        }
    }
    Ok(())
}

/// The file system `dir` is on (always the same value where that is unknown).
fn device_of(dir: &Path) -> Result<u64, FsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(dir)
            .map(|m| m.dev())
            .map_err(|e| FsError::new("stat directory", dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(0)
    }
}

/// `mkdir -p` without fsyncs: [`create_dir_all`] fsyncs the whole chain once.
fn create_dir_all_unsynced(dir: &Path) -> Result<(), FsError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dir_all_unsynced(parent)?;
        }
    }
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(FsError::new("create directory", dir, e)),
    }
}

/// Creates the directories `names` inside the existing directory `parent`,
/// then fsyncs `parent` once, whether or not any was new (one made by a
/// process that crashed before its fsync looks just like an old one). Meant
/// for opening a store. Returns how many were new.
pub fn create_subdirs<S: AsRef<Path>>(
    parent: &Path,
    names: impl IntoIterator<Item = S>,
) -> Result<usize, FsError> {
    let mut created = 0;
    for name in names {
        let dir = parent.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => created += 1,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(FsError::new("create directory", &dir, e)),
        }
    }
    fsync_dir(parent)?;
    Ok(created)
}

/// Removes `path` and fsyncs its directory. Returns whether it existed.
pub fn remove_file(path: &Path) -> Result<bool, FsError> {
    let disk = disk::current();
    match disk.remove_file(path) {
        Ok(()) => fsync_parent_on(&**disk, path).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FsError::new("remove file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_file_replaces_target_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        write_file(&target, b"one", Access::Default).unwrap();
        write_file(&target, b"two", Access::Default).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(names(dir.path()), vec!["x"]);
    }

    #[test]
    fn failed_write_leaves_old_file_intact_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        write_file(&target, b"old", Access::Default).unwrap();
        let err = write_file_with(&target, Access::Default, |f| {
            f.write_all(b"half of the new")?;
            Err(io::ErrorKind::StorageFull.into())
        })
        .unwrap_err();
        assert_eq!(err.step, "write temp file");
        assert!(err.is_disk_full(), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(names(dir.path()), vec!["x"], "no temp file is left");
    }

    #[test]
    fn descriptor_exhaustion_and_full_disk_are_told_apart() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let enfile = io::Error::from_raw_os_error(libc::ENFILE);
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_out_of_descriptors(&emfile) && !is_disk_full(&emfile));
        assert!(is_out_of_descriptors(&enfile) && !is_disk_full(&enfile));
        assert!(is_disk_full(&enospc) && !is_out_of_descriptors(&enospc));
        let e = FsError::new("create temp file", Path::new("/x"), emfile);
        assert!(e.is_out_of_descriptors());
    }

    #[test]
    fn failed_rename_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way: the rename fails after the temp file was
        // written and fsynced.
        let target = dir.path().join("x");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"keep").unwrap();
        let err = write_file(&target, b"new", Access::Default).unwrap_err();
        assert_eq!(err.step, "rename temp file into");
        assert_eq!(fs::read(target.join("inside")).unwrap(), b"keep");
        assert_eq!(names(dir.path()), vec!["x"], "no temp file is left");
    }

    #[test]
    fn stale_temps_are_left_by_writes_and_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("creds.json");
        // Temp files of crashed writes (the current and the older naming),
        // and files that only look alike.
        for stale in [".creds.json.tmp", ".creds.json.1f-2a.tmp"] {
            fs::write(dir.path().join(stale), b"torn").unwrap();
        }
        for other in [
            ".creds.json.bak",
            ".creds.json.x-1.tmp",
            ".creds.json.old.1-2.tmp",
            ".other.1-2.tmp",
        ] {
            fs::write(dir.path().join(other), b"keep").unwrap();
        }
        // A write never touches another write's temp file, stale or not.
        write_file(&target, b"whole", Access::Default).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"whole");
        assert_eq!(
            fs::read(dir.path().join(".creds.json.1f-2a.tmp")).unwrap(),
            b"torn"
        );
        assert_eq!(remove_stale_temps(&target).unwrap(), 2);
        assert_eq!(
            names(dir.path()),
            vec![
                ".creds.json.bak",
                ".creds.json.old.1-2.tmp",
                ".creds.json.x-1.tmp",
                ".other.1-2.tmp",
                "creds.json"
            ]
        );
        assert_eq!(remove_stale_temps(&target).unwrap(), 0);
        assert_eq!(fs::read(&target).unwrap(), b"whole");
    }

    /// Two threads replace one target over and over with contents of their
    /// own, each written in many small pieces (so the writes overlap), while a
    /// third reads it. Every write must succeed, every read and the final file
    /// must be one writer's whole contents, and no temp file may remain. With
    /// a temp name shared by the writers, one would unlink the other's temp
    /// file and rename a partial file over the target (or fail to create its
    /// temp file).
    #[test]
    fn concurrent_writers_never_mix_contents() {
        const PIECE: usize = 512;
        const PIECES: usize = 64;
        const WRITES: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        let contents = |b: u8| vec![b; PIECE * PIECES];
        let whole = |got: &[u8]| got == contents(b'a') || got == contents(b'b');
        write_file(&target, &contents(b'a'), Access::Default).unwrap();
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for byte in [b'a', b'b'] {
                let (target, done) = (&target, &done);
                scope.spawn(move || {
                    // Counted on panic too, so the reader stops either way.
                    struct Done<'a>(&'a std::sync::atomic::AtomicUsize);
                    impl Drop for Done<'_> {
                        fn drop(&mut self) {
                            self.0.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    let _done = Done(done);
                    for _ in 0..WRITES {
                        write_file_with(target, Access::Default, |f| {
                            for _ in 0..PIECES {
                                f.write_all(&[byte; PIECE])?;
                            }
                            Ok(())
                        })
                        .unwrap_or_else(|e| panic!("writer {}: {e}", byte as char));
                    }
                });
            }
            let (target, done) = (&target, &done);
            scope.spawn(move || {
                while done.load(Ordering::SeqCst) < 2 {
                    let got = fs::read(target).unwrap();
                    assert!(whole(&got), "a reader saw a mix of {} bytes", got.len());
                }
            });
        });
        let got = fs::read(&target).unwrap();
        assert!(
            whole(&got),
            "the final file is a mix of {} bytes",
            got.len()
        );
        assert_eq!(names(dir.path()), vec!["x"], "no temp file is left");
    }

    #[cfg(unix)]
    #[test]
    fn owner_only_files_are_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        // A world-readable stray temp must not lend its mode to the secret.
        let stray = dir.path().join(".secret.0-0.tmp");
        fs::write(&stray, b"").unwrap();
        fs::set_permissions(&stray, fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&target, b"s3cr3t", Access::OwnerOnly).unwrap();
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn uncommitted_file_is_removed_and_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let target = dir.path().join("x");
        write_file(&target, b"old", Access::Default).unwrap();
        {
            let mut f = DurableFile::create(&tmp, Access::Default).unwrap();
            f.writer().write_all(b"partial").unwrap();
            assert_eq!(names(&tmp).len(), 1);
        }
        assert!(names(&tmp).is_empty());
        assert_eq!(fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn streamed_file_commits_from_a_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let target = dir.path().join("x");
        let mut f = DurableFile::create(&tmp, Access::Default).unwrap();
        f.writer().write_all(b"first ").unwrap();
        f.writer().write_all(b"second").unwrap();
        f.sync().unwrap();
        f.commit(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"first second");
        assert!(names(&tmp).is_empty());
    }

    #[test]
    fn temp_names_never_collide_with_stray_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = DurableFile::create(dir.path(), Access::Default).unwrap();
        // A stray file with the next name this process would pick.
        let next = TEMP_SEQUENCE.load(Ordering::Relaxed);
        let stray = format!("{:x}-{:x}.tmp", std::process::id(), next);
        fs::write(dir.path().join(&stray), b"left by a crash").unwrap();
        let b = DurableFile::create(dir.path(), Access::Default).unwrap();
        assert_ne!(a.temp_path(), b.temp_path());
        assert_eq!(
            fs::read(dir.path().join(&stray)).unwrap(),
            b"left by a crash"
        );
    }

    #[test]
    fn create_dir_all_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_dir_all(&nested).unwrap();
        assert!(nested.is_dir());
        create_dir_all(&nested).unwrap();
        let file = nested.join("f");
        write_file(&file, b"x", Access::Default).unwrap();
        assert!(remove_file(&file).unwrap());
        assert!(!remove_file(&file).unwrap());
    }

    #[test]
    fn create_dir_all_refuses_a_file_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        let err = create_dir_all(&file.join("sub")).unwrap_err();
        assert_eq!(err.step, "create directory");
    }

    /// Directories that already exist (as after a crash between `mkdir` and
    /// the parent's fsync) are accepted and fsynced again. The fsyncs
    /// themselves cannot be observed from a test; this checks that the
    /// unconditional walk (the directory, its ancestors, the parent of
    /// `create_subdirs`) succeeds and changes nothing, also for relative
    /// paths and paths through a symlink.
    #[test]
    fn existing_dirs_are_accepted_and_synced_again() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        fs::create_dir_all(&nested).unwrap();
        fs::write(nested.join("f"), b"kept").unwrap();
        create_dir_all(&nested).unwrap();
        create_dir_all(&dir.path().join("a")).unwrap();
        assert_eq!(fs::read(nested.join("f")).unwrap(), b"kept");
        assert_eq!(create_subdirs(&nested, ["f2", "g"]).unwrap(), 2);
        assert_eq!(create_subdirs(&nested, ["f2", "g"]).unwrap(), 0);
        assert_eq!(names(&nested), vec!["f", "f2", "g"]);
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&nested, &link).unwrap();
            create_dir_all(&link).unwrap();
            create_dir_all(&link.join("via-link")).unwrap();
            assert!(nested.join("via-link").is_dir());
        }
        // A relative path: the crate directory is the test's working one.
        create_dir_all(Path::new("src")).unwrap();
    }

    #[test]
    fn create_subdirs_counts_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(create_subdirs(dir.path(), ["a", "b"]).unwrap(), 2);
        assert_eq!(create_subdirs(dir.path(), ["a", "b", "c"]).unwrap(), 1);
        assert_eq!(names(dir.path()), vec!["a", "b", "c"]);
    }
}
