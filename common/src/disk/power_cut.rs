//! A disk on which `kill -9` is a power cut: what was not fsynced is gone
//! at the next start.
//!
//! `kill -9` keeps the page cache, so a process that forgot an fsync loses
//! nothing when killed, and no crash test with real processes can find the
//! missing fsync. [`PowerCutDisk`] writes through to the real files (every
//! reader sees them, as with a real page cache) and first appends to an undo
//! journal what each change replaced: old bytes and length for writes and
//! truncations, the old name for renames, a hard link to what a rename
//! replaced or a remove removed. An fsync of a file makes its data records
//! durable; an fsync of a directory makes the entries changed in it durable
//! (the worst case POSIX allows: a new or renamed file needs its directory
//! synced). Records older than the writeback age (30 s by default, Linux's
//! `dirty_expire_centisecs`) count as written back by the kernel.
//!
//! At the next start, [`PowerCutDisk::start`] undoes every record still
//! pending, newest first, and the directory is what a power cut at the kill
//! would have left in the worst case. Everything under the root on the
//! root's file system is covered; the journal and the kept links live in
//! `<root>/.power-cut/`.
//!
//! What it does not model: a new directory counts as durable at once (Weft
//! makes directories when it opens a store and fsyncs them there); a torn
//! write inside one `write` call (the checksums in shard files and redb
//! pages cover that, and the bitrot scenario tests it).

use super::journal::Record;
use super::{Access, Disk, RealDisk};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The kernel's default age at which dirty pages are written back.
pub const DEFAULT_WRITEBACK: Duration = Duration::from_secs(30);

/// Rewrites the journal with only the pending records past this size.
const COMPACT_BYTES: u64 = 32 << 20;

/// How a [`PowerCutDisk`] behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Changes older than this count as durable (written back by the
    /// kernel); `None`: only fsyncs make anything durable.
    pub writeback: Option<Duration>,
    /// The injected bug "missing fsync": file fsyncs do nothing, so written
    /// data is durable only after the writeback age. For the self-test that
    /// power-cut runs catch lost fsyncs.
    pub skip_file_fsync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            writeback: Some(DEFAULT_WRITEBACK),
            skip_file_fsync: false,
        }
    }
}

/// What a start undid: the changes a power cut at the kill took away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Writes and truncations undone.
    pub writes: usize,
    /// Creates, renames and removes undone.
    pub entries: usize,
}

/// See the module docs.
#[derive(Debug)]
pub struct PowerCutDisk {
    root: PathBuf,
    dir: PathBuf,
    /// `root` with symlinks resolved, as `/proc/self/fd` names files.
    real_root: PathBuf,
    device: u64,
    options: Options,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    journal: File,
    journal_bytes: u64,
    next_seq: u64,
    pending: VecDeque<(Instant, Record)>,
}

impl PowerCutDisk {
    /// Undoes what the last run left unsynced under `root` (the power cut),
    /// then starts a new journal there.
    pub fn start(root: &Path, options: Options) -> io::Result<(PowerCutDisk, Recovered)> {
        let root = std::path::absolute(root)?;
        let dir = root.join(".power-cut");
        fs::create_dir_all(dir.join("aside"))?;
        let recovered = recover(&root, &dir)?;
        let journal = open_journal(&dir, true)?;
        let device = fs::metadata(&root)?.dev();
        let real_root = fs::canonicalize(&root)?;
        let disk = PowerCutDisk {
            root,
            dir,
            real_root,
            device,
            options,
            state: Mutex::new(State {
                journal,
                journal_bytes: 0,
                next_seq: 1,
                pending: VecDeque::new(),
            }),
        };
        Ok((disk, recovered))
    }

    /// How many changes are not yet durable (for tests and logs).
    pub fn pending(&self) -> usize {
        self.state.lock().expect("power-cut state").pending.len()
    }

    fn covers_path(&self, path: &Path) -> Option<PathBuf> {
        let abs = std::path::absolute(path).ok()?;
        (abs.starts_with(&self.root) && !abs.starts_with(&self.dir)).then_some(abs)
    }

    /// The metadata of `file` when it lives under the root (by its name in
    /// `/proc/self/fd`; by its file system where there is no `/proc`).
    fn covers_file(&self, file: &File) -> io::Result<Option<fs::Metadata>> {
        use std::os::fd::AsRawFd;
        let meta = file.metadata()?;
        if meta.dev() != self.device {
            return Ok(None);
        }
        let covered = match fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            Ok(name) => {
                name.starts_with(&self.real_root)
                    && !name.starts_with(self.real_root.join(".power-cut"))
            }
            Err(_) => true,
        };
        Ok(covered.then_some(meta))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("power-cut state")
    }

    /// Appends `make(seq)` to the journal and remembers it as pending.
    fn log(&self, st: &mut State, make: impl FnOnce(u64) -> Record) -> io::Result<u64> {
        let seq = st.next_seq;
        st.next_seq += 1;
        let record = make(seq);
        let bytes = record.encode();
        st.journal.write_all(&bytes)?;
        st.journal_bytes += bytes.len() as u64;
        if is_change(&record) {
            st.pending.push_back((Instant::now(), record));
        } else {
            for aside in settle(&mut st.pending, &record) {
                let _ = fs::remove_file(aside);
            }
        }
        Ok(seq)
    }

    /// Marks what the kernel would have written back by now as durable, and
    /// keeps the journal small.
    fn age(&self, st: &mut State) -> io::Result<()> {
        if let Some(writeback) = self.options.writeback {
            let now = Instant::now();
            let through = st
                .pending
                .iter()
                .take_while(|(at, _)| now.duration_since(*at) >= writeback)
                .last()
                .map(|(_, r)| r.seq());
            if let Some(through) = through {
                self.log(st, |seq| Record::FlushedThrough { seq, through })?;
            }
        }
        if st.journal_bytes > COMPACT_BYTES {
            let next = self.dir.join("journal.next");
            let mut out = File::create(&next)?;
            let mut bytes = 0;
            for (_, r) in &st.pending {
                let b = r.encode();
                out.write_all(&b)?;
                bytes += b.len() as u64;
            }
            fs::rename(&next, self.dir.join("journal"))?;
            st.journal = open_journal(&self.dir, false)?;
            st.journal_bytes = bytes;
        }
        Ok(())
    }

    fn aside_path(&self, seq: u64) -> PathBuf {
        self.dir.join("aside").join(seq.to_string())
    }
}

impl Disk for PowerCutDisk {
    fn create_new(&self, path: &Path, access: Access) -> io::Result<File> {
        let Some(abs) = self.covers_path(path) else {
            return RealDisk.create_new(path, access);
        };
        let mut st = self.lock();
        let file = RealDisk.create_new(path, access)?;
        let ino = file.metadata()?.ino();
        self.log(&mut st, |seq| Record::Create {
            seq,
            ino,
            path: abs,
        })?;
        self.age(&mut st)?;
        Ok(file)
    }

    fn write_at(&self, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let Some(meta) = self.covers_file(file)? else {
            return RealDisk.write_at(file, offset, data);
        };
        let old_len = meta.len();
        let end = (offset + data.len() as u64).min(old_len);
        let mut old = vec![0; end.saturating_sub(offset) as usize];
        file.read_exact_at(&mut old, offset)?;
        self.log(&mut st, |seq| Record::Data {
            seq,
            ino: meta.ino(),
            offset,
            old_len,
            old,
        })?;
        file.write_all_at(data, offset)?;
        self.age(&mut st)
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        let mut st = self.lock();
        let Some(meta) = self.covers_file(file)? else {
            return file.set_len(len);
        };
        let old_len = meta.len();
        let offset = len.min(old_len);
        let mut old = vec![0; (old_len - offset) as usize];
        file.read_exact_at(&mut old, offset)?;
        self.log(&mut st, |seq| Record::Data {
            seq,
            ino: meta.ino(),
            offset,
            old_len,
            old,
        })?;
        file.set_len(len)?;
        self.age(&mut st)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        let Some(meta) = self.covers_file(file)? else {
            return file.sync_data();
        };
        if self.options.skip_file_fsync {
            return Ok(());
        }
        // Under the lock: a write recorded after the fsync started must not
        // be taken for durable.
        let mut st = self.lock();
        file.sync_data()?;
        self.log(&mut st, |seq| Record::Synced {
            seq,
            ino: meta.ino(),
        })?;
        self.age(&mut st)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (Some(from_abs), Some(to_abs)) = (self.covers_path(from), self.covers_path(to)) else {
            return fs::rename(from, to);
        };
        let mut st = self.lock();
        let ino = match fs::symlink_metadata(from) {
            Ok(m) => m.ino(),
            Err(_) => return fs::rename(from, to),
        };
        let seq_hint = st.next_seq;
        let aside = match fs::symlink_metadata(to) {
            Ok(m) => {
                let aside = self.aside_path(seq_hint);
                fs::hard_link(to, &aside)?;
                Some((aside, m.ino()))
            }
            Err(_) => None,
        };
        let kept = aside.as_ref().map(|(p, _)| p.clone());
        let seq = self.log(&mut st, |seq| Record::Rename {
            seq,
            ino,
            from: from_abs,
            to: to_abs,
            aside,
        })?;
        debug_assert_eq!(seq, seq_hint);
        if let Err(e) = fs::rename(from, to) {
            self.log(&mut st, |s| Record::Cancel {
                seq: s,
                target: seq,
            })?;
            if let Some(kept) = kept {
                let _ = fs::remove_file(kept);
            }
            return Err(e);
        }
        self.age(&mut st)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let Some(abs) = self.covers_path(path) else {
            return fs::remove_file(path);
        };
        let mut st = self.lock();
        let ino = match fs::symlink_metadata(path) {
            Ok(m) => m.ino(),
            Err(_) => return fs::remove_file(path),
        };
        let aside = self.aside_path(st.next_seq);
        fs::hard_link(path, &aside)?;
        let seq = self.log(&mut st, |seq| Record::Remove {
            seq,
            ino,
            path: abs,
            aside: aside.clone(),
        })?;
        if let Err(e) = fs::remove_file(path) {
            self.log(&mut st, |s| Record::Cancel {
                seq: s,
                target: seq,
            })?;
            let _ = fs::remove_file(&aside);
            return Err(e);
        }
        self.age(&mut st)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let Some(abs) = self.covers_path(dir) else {
            return RealDisk.sync_dir(dir);
        };
        let mut st = self.lock();
        RealDisk.sync_dir(dir)?;
        self.log(&mut st, |seq| Record::DirSynced { seq, dir: abs })?;
        self.age(&mut st)
    }
}

fn open_journal(dir: &Path, truncate: bool) -> io::Result<File> {
    let path = dir.join("journal");
    if truncate {
        File::create(&path)?;
    }
    OpenOptions::new().append(true).open(path)
}

/// Whether `r` records a change (rather than marking changes durable).
fn is_change(r: &Record) -> bool {
    matches!(
        r,
        Record::Data { .. } | Record::Create { .. } | Record::Rename { .. } | Record::Remove { .. }
    )
}

/// The directory whose fsync makes an entry record durable.
fn entry_dir(r: &Record) -> Option<&Path> {
    match r {
        Record::Create { path, .. } | Record::Remove { path, .. } => path.parent(),
        Record::Rename { to, .. } => to.parent(),
        _ => None,
    }
}

/// Applies the marker `m` to the pending changes: drops those it makes
/// durable. Returns the kept links no longer needed. An inode whose last
/// kept link goes (a durable remove, or a durable rename over it) takes its
/// pending data records with it: the file is gone.
fn settle(pending: &mut VecDeque<(Instant, Record)>, m: &Record) -> Vec<PathBuf> {
    let durable = |r: &Record| match m {
        Record::Synced { ino, .. } => matches!(r, Record::Data { ino: i, .. } if i == ino),
        Record::DirSynced { dir, .. } => entry_dir(r) == Some(dir.as_path()),
        Record::FlushedThrough { through, .. } => r.seq() <= *through,
        Record::Cancel { target, .. } => r.seq() == *target,
        _ => false,
    };
    let mut freed = Vec::new();
    let mut gone = HashSet::new();
    pending.retain(|(_, r)| {
        if !durable(r) {
            return true;
        }
        match r {
            Record::Rename {
                aside: Some((path, ino)),
                ..
            } => {
                freed.push(path.clone());
                if !matches!(m, Record::Cancel { .. }) {
                    gone.insert(*ino);
                }
            }
            Record::Remove {
                ino, aside: path, ..
            } => {
                freed.push(path.clone());
                if !matches!(m, Record::Cancel { .. }) {
                    gone.insert(*ino);
                }
            }
            _ => {}
        }
        false
    });
    if !gone.is_empty() {
        pending.retain(|(_, r)| !matches!(r, Record::Data { ino, .. } if gone.contains(ino)));
    }
    freed
}

/// Undoes the pending records of the journal in `dir`, newest first, then
/// clears the kept links.
fn recover(root: &Path, dir: &Path) -> io::Result<Recovered> {
    let mut done = Recovered::default();
    let bytes = match fs::read(dir.join("journal")) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut pending = VecDeque::new();
    let epoch = Instant::now();
    for r in Record::decode_all(&bytes) {
        if is_change(&r) {
            pending.push_back((epoch, r));
        } else {
            settle(&mut pending, &r);
        }
    }
    // Data first (by inode, wherever the file now is), then names.
    let mut paths: Option<HashMap<u64, PathBuf>> = None;
    for (_, r) in pending.iter().rev() {
        let Record::Data {
            ino,
            offset,
            old_len,
            old,
            ..
        } = r
        else {
            continue;
        };
        let map = paths.get_or_insert_with(|| inode_paths(root, dir));
        let Some(path) = map.get(ino) else { continue };
        let file = OpenOptions::new().write(true).open(path)?;
        file.write_all_at(old, *offset)?;
        file.set_len(*old_len)?;
        done.writes += 1;
    }
    let ino_at = |p: &Path| fs::symlink_metadata(p).ok().map(|m| m.ino());
    for (_, r) in pending.iter().rev() {
        match r {
            Record::Create { ino, path, .. } if ino_at(path) == Some(*ino) => {
                fs::remove_file(path)?;
                done.entries += 1;
            }
            Record::Rename {
                ino,
                from,
                to,
                aside,
                ..
            } => {
                if ino_at(to) == Some(*ino) {
                    fs::rename(to, from)?;
                    done.entries += 1;
                }
                if let Some((kept, _)) = aside {
                    if ino_at(kept).is_some() && ino_at(to).is_none() {
                        fs::hard_link(kept, to)?;
                    }
                }
            }
            Record::Remove {
                ino, path, aside, ..
            } => {
                if ino_at(aside) == Some(*ino) && ino_at(path).is_none() {
                    fs::hard_link(aside, path)?;
                    done.entries += 1;
                }
            }
            _ => {}
        }
    }
    for entry in fs::read_dir(dir.join("aside"))? {
        fs::remove_file(entry?.path())?;
    }
    Ok(done)
}

/// Every regular file under `root` by inode, the kept links included and
/// the journal (in `journal_dir`) left out.
fn inode_paths(root: &Path, journal_dir: &Path) -> HashMap<u64, PathBuf> {
    let mut out = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && entry.path().parent() != Some(journal_dir) {
                out.entry(meta.ino()).or_insert_with(|| entry.path());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
