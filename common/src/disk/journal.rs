//! The power-cut disk's undo journal: one record per change not yet
//! durable, and markers saying which records became durable.
//!
//! Each record is written with one `write(2)` to an `O_APPEND` file, so a
//! `kill -9` leaves whole records only (a torn tail, possible only on a real
//! power loss of the host, is ignored on reading). Layout, little-endian:
//! `[u32 body length][u8 kind][u64 seq][fields]`, paths and byte strings as
//! `[u32 length][bytes]`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One journal record. `seq` orders records; markers name earlier seqs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// Before bytes at `offset..` of inode `ino` changed (a write or a
    /// truncation): the file was `old_len` long and held `old` there.
    Data {
        seq: u64,
        ino: u64,
        offset: u64,
        old_len: u64,
        old: Vec<u8>,
    },
    /// Inode `ino` was fsynced: its earlier data records are durable.
    Synced { seq: u64, ino: u64 },
    /// File `path` (inode `ino`) was created.
    Create { seq: u64, ino: u64, path: PathBuf },
    /// Inode `ino` is about to move from `from` to `to`; the file `to` held
    /// before is kept, hard-linked, at `aside` (inode `aside_ino`).
    Rename {
        seq: u64,
        ino: u64,
        from: PathBuf,
        to: PathBuf,
        aside: Option<(PathBuf, u64)>,
    },
    /// File `path` (inode `ino`) is about to be removed; it is kept,
    /// hard-linked, at `aside`.
    Remove {
        seq: u64,
        ino: u64,
        path: PathBuf,
        aside: PathBuf,
    },
    /// Directory `dir` was fsynced: entries changed in it are durable.
    DirSynced { seq: u64, dir: PathBuf },
    /// Every record up to and including `through` is durable (the kernel
    /// would have written it back by now).
    FlushedThrough { seq: u64, through: u64 },
    /// The step recorded as `target` failed and changed nothing.
    Cancel { seq: u64, target: u64 },
}

impl Record {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            Record::Data { seq, .. }
            | Record::Synced { seq, .. }
            | Record::Create { seq, .. }
            | Record::Rename { seq, .. }
            | Record::Remove { seq, .. }
            | Record::DirSynced { seq, .. }
            | Record::FlushedThrough { seq, .. }
            | Record::Cancel { seq, .. } => *seq,
        }
    }

    /// The length of [`encode`](Self::encode)'s output.
    pub(crate) fn encoded_len(&self) -> u64 {
        self.encode().len() as u64
    }

    /// The encoded record, length prefix included.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&[0; 4]);
        let (kind, seq) = match self {
            Record::Data { seq, .. } => (1, seq),
            Record::Synced { seq, .. } => (2, seq),
            Record::Create { seq, .. } => (3, seq),
            Record::Rename { seq, .. } => (4, seq),
            Record::Remove { seq, .. } => (5, seq),
            Record::DirSynced { seq, .. } => (6, seq),
            Record::FlushedThrough { seq, .. } => (7, seq),
            Record::Cancel { seq, .. } => (8, seq),
        };
        b.push(kind);
        b.extend_from_slice(&seq.to_le_bytes());
        match self {
            Record::Data {
                ino,
                offset,
                old_len,
                old,
                ..
            } => {
                put_u64(&mut b, *ino);
                put_u64(&mut b, *offset);
                put_u64(&mut b, *old_len);
                put_bytes(&mut b, old);
            }
            Record::Synced { ino, .. } => put_u64(&mut b, *ino),
            Record::Create { ino, path, .. } => {
                put_u64(&mut b, *ino);
                put_path(&mut b, path);
            }
            Record::Rename {
                ino,
                from,
                to,
                aside,
                ..
            } => {
                put_u64(&mut b, *ino);
                put_path(&mut b, from);
                put_path(&mut b, to);
                match aside {
                    Some((path, aside_ino)) => {
                        b.push(1);
                        put_path(&mut b, path);
                        put_u64(&mut b, *aside_ino);
                    }
                    None => b.push(0),
                }
            }
            Record::Remove {
                ino, path, aside, ..
            } => {
                put_u64(&mut b, *ino);
                put_path(&mut b, path);
                put_path(&mut b, aside);
            }
            Record::DirSynced { dir, .. } => put_path(&mut b, dir),
            Record::FlushedThrough { through, .. } => put_u64(&mut b, *through),
            Record::Cancel { target, .. } => put_u64(&mut b, *target),
        }
        let body = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&body.to_le_bytes());
        b
    }

    /// Decodes every whole record of a journal; stops at a torn or
    /// unreadable tail.
    pub(crate) fn decode_all(mut bytes: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        while bytes.len() >= 4 {
            let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            let Some(body) = bytes.get(4..4 + len) else {
                break;
            };
            match Reader(body).record() {
                Some(r) => out.push(r),
                None => break,
            }
            bytes = &bytes[4 + len..];
        }
        out
    }
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    b.extend_from_slice(&(v.len() as u32).to_le_bytes());
    b.extend_from_slice(v);
}

fn put_path(b: &mut Vec<u8>, p: &Path) {
    put_bytes(b, p.as_os_str().as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(n).map(<[u8]>::to_vec)
    }

    fn path(&mut self) -> Option<PathBuf> {
        self.bytes().map(|b| PathBuf::from(OsString::from_vec(b)))
    }

    fn record(mut self) -> Option<Record> {
        let kind = self.u8()?;
        let seq = self.u64()?;
        let r = match kind {
            1 => Record::Data {
                seq,
                ino: self.u64()?,
                offset: self.u64()?,
                old_len: self.u64()?,
                old: self.bytes()?,
            },
            2 => Record::Synced {
                seq,
                ino: self.u64()?,
            },
            3 => Record::Create {
                seq,
                ino: self.u64()?,
                path: self.path()?,
            },
            4 => {
                let ino = self.u64()?;
                let from = self.path()?;
                let to = self.path()?;
                let aside = match self.u8()? {
                    0 => None,
                    1 => Some((self.path()?, self.u64()?)),
                    _ => return None,
                };
                Record::Rename {
                    seq,
                    ino,
                    from,
                    to,
                    aside,
                }
            }
            5 => Record::Remove {
                seq,
                ino: self.u64()?,
                path: self.path()?,
                aside: self.path()?,
            },
            6 => Record::DirSynced {
                seq,
                dir: self.path()?,
            },
            7 => Record::FlushedThrough {
                seq,
                through: self.u64()?,
            },
            8 => Record::Cancel {
                seq,
                target: self.u64()?,
            },
            _ => return None,
        };
        self.0.is_empty().then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_a_torn_tail_is_dropped() {
        let records = vec![
            Record::Data {
                seq: 1,
                ino: 7,
                offset: 4096,
                old_len: 9000,
                old: vec![1, 2, 3],
            },
            Record::Synced { seq: 2, ino: 7 },
            Record::Create {
                seq: 3,
                ino: 8,
                path: "/d/tmp/a.tmp".into(),
            },
            Record::Rename {
                seq: 4,
                ino: 8,
                from: "/d/tmp/a.tmp".into(),
                to: "/d/s/a".into(),
                aside: Some(("/d/.power-cut/aside/4".into(), 9)),
            },
            Record::Rename {
                seq: 5,
                ino: 8,
                from: "/x".into(),
                to: "/y".into(),
                aside: None,
            },
            Record::Remove {
                seq: 6,
                ino: 8,
                path: "/d/s/a".into(),
                aside: "/d/.power-cut/aside/6".into(),
            },
            Record::DirSynced {
                seq: 7,
                dir: "/d/s".into(),
            },
            Record::FlushedThrough { seq: 8, through: 5 },
            Record::Cancel { seq: 9, target: 6 },
        ];
        let mut bytes: Vec<u8> = records.iter().flat_map(Record::encode).collect();
        assert_eq!(Record::decode_all(&bytes), records);
        bytes.truncate(bytes.len() - 3);
        assert_eq!(Record::decode_all(&bytes), records[..records.len() - 1]);
    }
}
