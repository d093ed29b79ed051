//! Crash-safe file creation: the one place datad makes a file durable.
//!
//! The recipe (after Neon's `crashsafe.rs`):
//!
//! 1. [`DurableFile::create`] opens a fresh, uniquely named file in `<data>/tmp/`
//!    with `create_new`. A crash now, or while the caller writes to it, leaves
//!    only a stray temp file; the target name is untouched (either absent or
//!    still the old, complete file). `<data>/tmp/` is emptied at startup.
//! 2. [`DurableFile::commit`] fsyncs the temp file. A crash after this leaves
//!    the complete contents on disk, but still only under the temp name.
//! 3. It renames the temp file over the target. `rename` is atomic: a reader
//!    sees either the old file or the new one, never a mix. A crash right after
//!    may still lose the rename (the directory entry is not yet durable), so
//!    after restart the target is the old file or absent: never partial.
//! 4. It fsyncs the target's directory. Only now is the new file guaranteed
//!    to be found under the target name after a crash; callers must not
//!    acknowledge the write before `commit` returns.
//!
//! `<data>/tmp/` and the target must be on the same file system (rename does
//! not cross file systems). A [`DurableFile`] dropped without `commit` removes
//! its temp file (best effort; startup cleanup catches the rest).
//!
//! Everything here is blocking `std::fs` code: call it from
//! `tokio::task::spawn_blocking` or a dedicated thread, never from async code.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A failed file-system step: `step` says what was being done, `path` to what.
/// Used by every blocking file operation in datad.
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

/// A file being written under a temp name, to be committed to its real name.
#[derive(Debug)]
pub struct DurableFile {
    file: Option<File>,
    temp_path: PathBuf,
}

impl DurableFile {
    /// Step 1: creates a new, uniquely named, empty file in `tmp_dir`.
    pub fn create(tmp_dir: &Path) -> Result<DurableFile, FsError> {
        loop {
            let name = format!("{:032x}.tmp", rand::random::<u128>());
            let temp_path = tmp_dir.join(name);
            match OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&temp_path)
            {
                Ok(file) => {
                    return Ok(DurableFile {
                        file: Some(file),
                        temp_path,
                    })
                }
                // 128 random bits: a collision is practically impossible, but
                // retrying is cheaper than reasoning about it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(FsError::new("create temp file", &temp_path, e)),
            }
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
    /// durable under `target`.
    pub fn commit(mut self, target: &Path) -> Result<(), FsError> {
        self.sync()?;
        self.file.take();
        if let Err(e) = fs::rename(&self.temp_path, target) {
            return Err(FsError::new("rename temp file into", target, e));
        }
        // The temp name is gone; nothing left for Drop to clean up.
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

/// Writes `contents` to `target` crash-safely (all four steps).
pub fn write_file(tmp_dir: &Path, target: &Path, contents: &[u8]) -> Result<(), FsError> {
    use std::io::Write;
    let mut file = DurableFile::create(tmp_dir)?;
    let temp_path = file.temp_path().to_path_buf();
    file.file_mut()
        .write_all(contents)
        .map_err(|e| FsError::new("write temp file", &temp_path, e))?;
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

/// Creates `dir` (and missing ancestors) durably: each directory created is
/// made durable by fsyncing its parent.
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
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(FsError::new("create directory", dir, e)),
    }
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

    #[test]
    fn write_file_replaces_target_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let target = dir.path().join("x");
        write_file(&tmp, &target, b"one").unwrap();
        write_file(&tmp, &target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn uncommitted_file_is_removed_and_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let target = dir.path().join("x");
        write_file(&tmp, &target, b"old").unwrap();
        {
            let mut f = DurableFile::create(&tmp).unwrap();
            f.file_mut().write_all(b"partial").unwrap();
            assert_eq!(fs::read_dir(&tmp).unwrap().count(), 1);
        }
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn create_dir_all_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_dir_all(&nested).unwrap();
        create_dir_all(&nested).unwrap();
        let tmp = dir.path().join("a");
        let file = nested.join("f");
        write_file(&tmp, &file, b"x").unwrap();
        assert!(remove_file(&file).unwrap());
        assert!(!remove_file(&file).unwrap());
    }
}
