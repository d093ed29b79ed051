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
//! parent, so [`create_dir_all`] fsyncs the parent of every directory it
//! creates. A file committed into a directory that is not yet durable can be
//! lost with the directory, whatever was fsynced.
//!
//! The temp file and the target must be on the same file system (rename does
//! not cross file systems). A [`DurableFile`] dropped or failed before its
//! rename removes its temp file (best effort; a crash leaves it, which is why
//! datad empties its temp directory at startup and [`write_file`] reuses one
//! temp name per target).
//!
//! Everything here is blocking `std::fs` code: call it from
//! `tokio::task::spawn_blocking` or a dedicated thread, never from async code.
//! Weft keeps it in one module so that disk I/O can later move behind a trait
//! (for fault injection) without hunting for copies of the recipe.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// Whether an I/O error means the disk (or a quota) is full.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Who may read a new file. Set when the temp file is created, so a secret
/// is never readable by others, not even before the rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The process's umask decides (shard files, snapshots).
    Default,
    /// Only the owner may read or write it (mode 0600 on Unix; credentials).
    OwnerOnly,
}

/// Distinguishes temp files of one process; the process id separates
/// processes sharing a temp directory.
static TEMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temp name, to be committed to its real name.
#[derive(Debug)]
pub struct DurableFile {
    file: Option<File>,
    /// Empty once renamed: then there is nothing for `Drop` to remove.
    temp_path: PathBuf,
}

impl DurableFile {
    /// Step 1: creates a new, uniquely named, empty file in `tmp_dir` (which
    /// must be on the target's file system).
    pub fn create(tmp_dir: &Path, access: Access) -> Result<DurableFile, FsError> {
        loop {
            let name = format!(
                "{:x}-{:x}.tmp",
                std::process::id(),
                TEMP_SEQUENCE.fetch_add(1, Ordering::Relaxed)
            );
            match Self::create_at(tmp_dir.join(name), access) {
                // Left by an earlier process with the same id: take the next.
                Err(e) if e.source.kind() == io::ErrorKind::AlreadyExists => continue,
                other => return other,
            }
        }
    }

    fn create_at(temp_path: PathBuf, access: Access) -> Result<DurableFile, FsError> {
        let mut options = OpenOptions::new();
        options.write(true).read(true).create_new(true);
        #[cfg(unix)]
        if access == Access::OwnerOnly {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = access;
        match options.open(&temp_path) {
            Ok(file) => Ok(DurableFile {
                file: Some(file),
                temp_path,
            }),
            Err(e) => Err(FsError::new("create temp file", &temp_path, e)),
        }
    }

    /// The open temp file, to write the contents to.
    pub fn file_mut(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("file is present until commit or drop")
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
        let temp_path = self.temp_path.clone();
        self.file_mut()
            .sync_all()
            .map_err(|e| FsError::new("fsync temp file", &temp_path, e))
    }

    /// Steps 2–4: fsyncs the file, renames it to `target` (replacing any file
    /// there), fsyncs `target`'s directory. Once this returns the new file is
    /// durable under `target`. On error before the rename the temp file is
    /// removed and `target` is untouched.
    pub fn commit(mut self, target: &Path) -> Result<(), FsError> {
        self.sync()?;
        self.file.take();
        if let Err(e) = fs::rename(&self.temp_path, target) {
            return Err(FsError::new("rename temp file into", target, e));
        }
        self.temp_path = PathBuf::new();
        fsync_parent(target)
    }
}

impl Drop for DurableFile {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.temp_path);
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
/// The temp file is `.<name>.tmp` beside `target`: one fixed name, so a crash
/// mid-write leaves at most one stray file per target, replaced by the next
/// write. Writers of one target must therefore take turns; a second writer
/// meanwhile fails with "create temp file" rather than mixing contents.
pub fn write_file_with(
    target: &Path,
    access: Access,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), FsError> {
    let Some(name) = target.file_name() else {
        return Err(FsError::new(
            "write file (the path names no file)",
            target,
            io::ErrorKind::InvalidInput.into(),
        ));
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(".tmp");
    let temp_path = target.with_file_name(temp_name);
    // A stray temp file of a crashed write: its mode may be wrong, so remove
    // it rather than reuse it.
    match fs::remove_file(&temp_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(FsError::new("remove stale temp file", &temp_path, e)),
    }
    let mut file = DurableFile::create_at(temp_path, access)?;
    if let Err(e) = write(file.file_mut()) {
        return Err(FsError::new("write temp file", file.temp_path(), e));
    }
    file.commit(target)
}

/// Fsyncs a directory, making the entries created, renamed or removed in it
/// durable.
pub fn fsync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new("fsync directory", dir, e))
}

fn fsync_parent(path: &Path) -> Result<(), FsError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsync_dir(parent),
        _ => fsync_dir(Path::new(".")),
    }
}

/// Creates `dir` and its missing ancestors durably (`mkdir -p`): the parent
/// of each directory created is fsynced, so the new entry survives a crash.
pub fn create_dir_all(dir: &Path) -> Result<(), FsError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dir_all(parent)?;
        }
    }
    match fs::create_dir(dir) {
        Ok(()) => fsync_parent(dir),
        // Another thread won the race; its fsync covers the entry.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(FsError::new("create directory", dir, e)),
    }
}

/// Creates the directories `names` inside the existing directory `parent`,
/// with one fsync of `parent` for all of them. Returns how many were new.
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
    if created > 0 {
        fsync_dir(parent)?;
    }
    Ok(created)
}

/// Removes `path` and fsyncs its directory. Returns whether it existed.
pub fn remove_file(path: &Path) -> Result<bool, FsError> {
    match fs::remove_file(path) {
        Ok(()) => fsync_parent(path).map(|()| true),
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
    fn stray_temp_of_a_crashed_write_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("creds.json");
        fs::write(dir.path().join(".creds.json.tmp"), b"torn").unwrap();
        write_file(&target, b"whole", Access::Default).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"whole");
        assert_eq!(names(dir.path()), vec!["creds.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn owner_only_files_are_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        // A world-readable stray temp must not lend its mode to the secret.
        let stray = dir.path().join(".secret.tmp");
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
            f.file_mut().write_all(b"partial").unwrap();
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
        f.file_mut().write_all(b"first ").unwrap();
        f.file_mut().write_all(b"second").unwrap();
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

    #[test]
    fn create_subdirs_counts_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(create_subdirs(dir.path(), ["a", "b"]).unwrap(), 2);
        assert_eq!(create_subdirs(dir.path(), ["a", "b", "c"]).unwrap(), 1);
        assert_eq!(names(dir.path()), vec!["a", "b", "c"]);
    }
}
