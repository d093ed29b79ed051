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
//! pending, newest first: the directory is what a power cut at the kill
//! leaves when the disk kept nothing it was not told to keep. Everything
//! under the root is covered; the journal and the kept links live in
//! `<root>/.power-cut/`.
//!
//! What it does not model:
//! - Other crash states. A real power cut may keep any subset of the
//!   unsynced changes (a later page but not an earlier one, one entry of a
//!   directory but not another); this disk always drops all of them, so
//!   code that depends on the order of writes between two fsyncs is not
//!   exercised.
//! - A new directory counts as durable at once (Weft makes directories
//!   when it opens a store and fsyncs them there).
//! - A file created and killed before its record was appended survives
//!   (empty: nothing was written to it yet).
//! - A rename is settled by an fsync of the destination's directory alone.
//! - A torn write inside one `write` call (the checksums in shard files and
//!   redb pages cover that, and the bitrot scenario tests it).
//!
//! A journal that cannot be written (a full disk) would make every later
//! answer wrong, so it aborts the process: a crash the harness sees.

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

/// The default [`Options::compact_bytes`].
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
    /// The journal is rewritten with only its pending records once it is
    /// past this size and mostly settled records.
    pub compact_bytes: u64,
    /// Whether an fsync also reaches the real device. The simulator turns
    /// it off: its power cuts are the journal's alone (the machine never
    /// loses power mid-run), and a real fsync per shard and raft entry
    /// made a seed's run several times slower.
    pub real_fsync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            writeback: Some(DEFAULT_WRITEBACK),
            skip_file_fsync: false,
            compact_bytes: COMPACT_BYTES,
            real_fsync: true,
        }
    }
}

/// How often a running disk applies the writeback age without waiting for
/// the next step (an idle process's old changes still become durable).
const AGE_TICK: Duration = Duration::from_secs(1);

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
    /// The root, with symlinks resolved (as `/proc/self/fd` names files).
    root: PathBuf,
    dir: PathBuf,
    device: u64,
    options: Options,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    journal: File,
    journal_bytes: u64,
    /// Encoded size of the pending records (what a compaction keeps).
    pending_bytes: u64,
    next_seq: u64,
    pending: VecDeque<(Instant, Record)>,
}

impl PowerCutDisk {
    /// Undoes what the last run left unsynced under `root` (the power cut),
    /// then starts a new journal there.
    pub fn start(root: &Path, options: Options) -> io::Result<(PowerCutDisk, Recovered)> {
        let root = fs::canonicalize(root)?;
        let dir = root.join(".power-cut");
        fs::create_dir_all(dir.join("aside"))?;
        let recovered = recover(&root, &dir)?;
        let journal = open_journal(&dir, true)?;
        let device = fs::metadata(&root)?.dev();
        let disk = PowerCutDisk {
            root,
            dir,
            device,
            options,
            state: Mutex::new(State {
                journal,
                journal_bytes: 0,
                pending_bytes: 0,
                next_seq: 1,
                pending: VecDeque::new(),
            }),
        };
        Ok((disk, recovered))
    }

    /// Applies the writeback age every second from a helper thread, for as
    /// long as the disk lives: without it, an idle process's old changes
    /// would stay undoable forever.
    pub fn age_in_background(disk: &std::sync::Arc<PowerCutDisk>) {
        if disk.options.writeback.is_none() {
            return;
        }
        let weak = std::sync::Arc::downgrade(disk);
        std::thread::Builder::new()
            .name("power-cut-writeback".into())
            .spawn(move || loop {
                std::thread::sleep(AGE_TICK);
                let Some(disk) = weak.upgrade() else { return };
                let mut st = disk.lock();
                disk.age(&mut st);
            })
            .expect("spawn the writeback thread");
    }

    /// How many changes are not yet durable (for tests and logs).
    pub fn pending(&self) -> usize {
        self.state.lock().expect("power-cut state").pending.len()
    }

    /// The canonical form of `path` when it lies under the root. The last
    /// component is kept as it is (the file may not exist); its directory
    /// is resolved, so every spelling of one directory matches.
    fn covers_path(&self, path: &Path) -> Option<PathBuf> {
        let abs = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                fs::canonicalize(parent).ok()?.join(name)
            }
            _ => fs::canonicalize(path).ok()?,
        };
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
            Ok(name) => name.starts_with(&self.root) && !name.starts_with(&self.dir),
            Err(_) => true,
        };
        Ok(covered.then_some(meta))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("power-cut state")
    }

    /// Takes the next sequence number.
    fn next(st: &mut State) -> u64 {
        let seq = st.next_seq;
        st.next_seq += 1;
        seq
    }

    /// Appends `record` to the journal and remembers it as pending, or
    /// applies it if it is a marker. A journal that cannot be appended to
    /// aborts the process (see the module docs).
    fn log(&self, st: &mut State, record: Record) {
        let bytes = record.encode();
        if let Err(e) = st.journal.write_all(&bytes) {
            eprintln!(
                "power-cut disk: cannot append to the journal in {}: {e}; aborting (a torn journal would make every later answer wrong)",
                self.dir.display()
            );
            std::process::abort();
        }
        st.journal_bytes += bytes.len() as u64;
        if is_change(&record) {
            st.pending_bytes += bytes.len() as u64;
            st.pending.push_back((Instant::now(), record));
        } else {
            let (freed, settled_bytes) = settle(&mut st.pending, &record);
            for aside in freed {
                let _ = fs::remove_file(aside);
            }
            st.pending_bytes -= settled_bytes;
        }
    }

    /// Logs a change record made by `make` with the next sequence number.
    fn log_change(&self, st: &mut State, make: impl FnOnce(u64) -> Record) -> u64 {
        let seq = Self::next(st);
        self.log(st, make(seq));
        seq
    }

    /// Marks what the kernel would have written back by now as durable, and
    /// keeps the journal small. Runs after a step has happened, so it never
    /// fails the step: a failed compaction is retried later.
    fn age(&self, st: &mut State) {
        if let Some(writeback) = self.options.writeback {
            let now = Instant::now();
            let through = st
                .pending
                .iter()
                .take_while(|(at, _)| now.duration_since(*at) >= writeback)
                .last()
                .map(|(_, r)| r.seq());
            if let Some(through) = through {
                let seq = Self::next(st);
                self.log(st, Record::FlushedThrough { seq, through });
            }
        }
        // Only when most of the journal is settled records: rewriting a
        // journal of mostly pending ones would repeat at every step.
        if st.journal_bytes > self.options.compact_bytes.max(2 * st.pending_bytes) {
            if let Err(e) = self.compact(st) {
                eprintln!("power-cut disk: journal compaction failed (retried later): {e}");
            }
        }
    }

    /// Rewrites the journal with only the pending records; the rename is
    /// atomic, so a kill leaves the old journal or the new one.
    fn compact(&self, st: &mut State) -> io::Result<()> {
        let next = self.dir.join("journal.next");
        let mut out = File::create(&next)?;
        for (_, r) in &st.pending {
            out.write_all(&r.encode())?;
        }
        fs::rename(&next, self.dir.join("journal"))?;
        st.journal = open_journal(&self.dir, false)?;
        st.journal_bytes = st.pending_bytes;
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
        self.log_change(&mut st, |seq| Record::Create {
            seq,
            ino,
            path: abs,
        });
        self.age(&mut st);
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
        self.log_change(&mut st, |seq| Record::Data {
            seq,
            ino: meta.ino(),
            offset,
            old_len,
            old,
        });
        file.write_all_at(data, offset)?;
        self.age(&mut st);
        Ok(())
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
        self.log_change(&mut st, |seq| Record::Data {
            seq,
            ino: meta.ino(),
            offset,
            old_len,
            old,
        });
        file.set_len(len)?;
        self.age(&mut st);
        Ok(())
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        let Some(meta) = self.covers_file(file)? else {
            return file.sync_data();
        };
        if self.options.skip_file_fsync {
            return Ok(());
        }
        // The marker's number is taken before the fsync starts: it settles
        // only the writes recorded before it, never one that raced the
        // fsync. The fsync itself runs without the lock.
        let seq = Self::next(&mut self.lock());
        if self.options.real_fsync {
            file.sync_data()?;
        }
        let mut st = self.lock();
        self.log(
            &mut st,
            Record::Synced {
                seq,
                ino: meta.ino(),
            },
        );
        self.age(&mut st);
        Ok(())
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
        let seq = Self::next(&mut st);
        let aside = match fs::symlink_metadata(to) {
            Ok(m) => {
                let aside = self.aside_path(seq);
                fs::hard_link(to, &aside)?;
                Some((aside, m.ino()))
            }
            Err(_) => None,
        };
        let kept = aside.as_ref().map(|(p, _)| p.clone());
        self.log(
            &mut st,
            Record::Rename {
                seq,
                ino,
                from: from_abs,
                to: to_abs,
                aside,
            },
        );
        if let Err(e) = fs::rename(from, to) {
            self.log_change_cancel(&mut st, seq, kept);
            return Err(e);
        }
        self.age(&mut st);
        Ok(())
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
        let seq = Self::next(&mut st);
        let aside = self.aside_path(seq);
        fs::hard_link(path, &aside)?;
        self.log(
            &mut st,
            Record::Remove {
                seq,
                ino,
                path: abs,
                aside: aside.clone(),
            },
        );
        if let Err(e) = fs::remove_file(path) {
            self.log_change_cancel(&mut st, seq, Some(aside));
            return Err(e);
        }
        self.age(&mut st);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let Some(abs) = fs::canonicalize(dir)
            .ok()
            .filter(|d| d.starts_with(&self.root) && !d.starts_with(&self.dir))
        else {
            return RealDisk.sync_dir(dir);
        };
        let seq = Self::next(&mut self.lock());
        if self.options.real_fsync {
            RealDisk.sync_dir(dir)?;
        }
        let mut st = self.lock();
        self.log(&mut st, Record::DirSynced { seq, dir: abs });
        self.age(&mut st);
        Ok(())
    }
}

impl PowerCutDisk {
    /// Records that the step logged as `target` failed and changed
    /// nothing, and drops its kept link.
    fn log_change_cancel(&self, st: &mut State, target: u64, kept: Option<PathBuf>) {
        let seq = Self::next(st);
        self.log(st, Record::Cancel { seq, target });
        if let Some(kept) = kept {
            let _ = fs::remove_file(kept);
        }
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

/// The inode a change record is about.
fn record_ino(r: &Record) -> Option<u64> {
    match r {
        Record::Data { ino, .. }
        | Record::Create { ino, .. }
        | Record::Rename { ino, .. }
        | Record::Remove { ino, .. } => Some(*ino),
        _ => None,
    }
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
/// durable. Returns the kept links no longer needed and the encoded size of
/// the records dropped. An inode whose last kept link goes (a durable
/// remove, or a durable rename over it) takes its pending records with it:
/// the file is gone.
fn settle(pending: &mut VecDeque<(Instant, Record)>, m: &Record) -> (Vec<PathBuf>, u64) {
    let before = |r: &Record| r.seq() < m.seq();
    let durable = |r: &Record| match m {
        Record::Synced { ino, .. } => {
            before(r) && matches!(r, Record::Data { ino: i, .. } if i == ino)
        }
        Record::DirSynced { dir, .. } => before(r) && entry_dir(r) == Some(dir.as_path()),
        Record::FlushedThrough { through, .. } => r.seq() <= *through,
        Record::Cancel { target, .. } => r.seq() == *target,
        _ => false,
    };
    let mut freed = Vec::new();
    let mut gone = HashSet::new();
    let mut bytes = 0;
    pending.retain(|(_, r)| {
        if !durable(r) {
            return true;
        }
        bytes += r.encoded_len();
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
        pending.retain(|(_, r)| {
            let keep = !record_ino(r).is_some_and(|i| gone.contains(&i));
            if !keep {
                bytes += r.encoded_len();
            }
            keep
        });
    }
    (freed, bytes)
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
            let _ = settle(&mut pending, &r);
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
                // Back to the old name only if it is free: no power cut puts
                // an older file over a newer one.
                if ino_at(to) == Some(*ino) && ino_at(from).is_none() {
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
            } if ino_at(aside) == Some(*ino) && ino_at(path).is_none() => {
                fs::hard_link(aside, path)?;
                done.entries += 1;
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
