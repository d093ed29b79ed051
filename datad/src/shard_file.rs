//! The shard file format, version 1: encoding, decoding and verification.
//!
//! ```text
//! header (64 bytes)
//!   0..8    magic b"WEFTSHD1"
//!   8..10   format_version u16 LE (= 1)
//!   10      shard_index u8
//!   11      reserved (0)
//!   12..16  block_bytes u32 LE (B)
//!   16..32  segment_id u128 BE
//!   32..40  data_len u64 LE
//!   40..60  reserved (0)
//!   60..64  crc32c of bytes 0..60, u32 LE
//! blocks, b = 0 .. ceil(data_len / B)
//!   data bytes [b*B, min((b+1)*B, data_len))   then their crc32c, u32 LE
//! ```
//!
//! The data length is known before the first byte arrives (the PUT declares
//! it), so the header is written first and the file is written in one pass.
//! Every read verifies the header crc, magic, version, segment and shard index,
//! then the crc of every block it touches; a block that fails is reported as
//! [`ShardError::Corrupt`] and its bytes are never returned.
//!
//! Blocks are independent: one bad block spoils only itself, and repair
//! rewrites it in place ([`encode_block`] at [`ShardHeader::block_file_offset`]),
//! leaving the rest of the file alone. A torn rewrite fails its crc and is
//! found and repaired again.
//!
//! This module is pure logic over `std::io` traits: blocking, no tokio.
//! Golden encoding: `datad/tests/golden/shard_header_v1.hex`.

use crate::error::ShardError;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use weft_common::durable_file::FsError;
use weft_common::{SegmentId, ShardIndex};

/// Data bytes per block (B) written by this version.
pub const SHARD_BLOCK_BYTES: u32 = 64 * 1024;
const _: () = assert!(SHARD_BLOCK_BYTES % 4096 == 0);

/// Largest block size a reader accepts from a header (bounds read buffers).
pub const SHARD_BLOCK_BYTES_MAX: u32 = 16 * 1024 * 1024;
const _: () = assert!(SHARD_BLOCK_BYTES <= SHARD_BLOCK_BYTES_MAX);

/// Largest shard (data bytes) the store accepts.
pub const DATA_LEN_MAX: u64 = 64 * 1024 * 1024 * 1024;
// Block numbers are u32.
const _: () = assert!(DATA_LEN_MAX / 4096 <= u32::MAX as u64);

/// Header length in bytes.
pub const HEADER_BYTES: usize = 64;
/// Bytes of the crc32c after each block.
pub const BLOCK_CRC_BYTES: usize = 4;
/// First 8 bytes of every shard file.
pub const MAGIC: [u8; 8] = *b"WEFTSHD1";
/// The format version this module writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const HEADER_CRC_OFFSET: usize = 60;

/// The decoded header of a shard file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    /// Segment the shard belongs to.
    pub segment: SegmentId,
    /// Shard index within the segment.
    pub index: ShardIndex,
    /// Data bytes per block.
    pub block_bytes: u32,
    /// Data bytes in the shard (excluding header and block crcs).
    pub data_len: u64,
}

/// Why a header does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Header crc mismatch.
    #[error("header crc32c mismatch")]
    Checksum,
    /// Not a shard file.
    #[error("bad magic")]
    Magic,
    /// Written by another format version.
    #[error("unsupported format version {0}")]
    Version(u16),
    /// Block size zero, not a multiple of 4096, or above the limit.
    #[error("invalid block size {0}")]
    BlockBytes(u32),
    /// Data length above the limit.
    #[error("data length {0} above limit")]
    DataLen(u64),
}

impl ShardHeader {
    /// Header for a new shard file written with [`SHARD_BLOCK_BYTES`].
    pub fn new(segment: SegmentId, index: ShardIndex, data_len: u64) -> Self {
        ShardHeader {
            segment,
            index,
            block_bytes: SHARD_BLOCK_BYTES,
            data_len,
        }
    }

    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[10] = self.index.0;
        out[12..16].copy_from_slice(&self.block_bytes.to_le_bytes());
        out[16..32].copy_from_slice(&self.segment.0.to_be_bytes());
        out[32..40].copy_from_slice(&self.data_len.to_le_bytes());
        let crc = crc32c::crc32c(&out[..HEADER_CRC_OFFSET]);
        out[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header: crc first, then magic, version and limits.
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<Self, HeaderError> {
        let stored = u32::from_le_bytes(le4(&bytes[HEADER_CRC_OFFSET..]));
        if crc32c::crc32c(&bytes[..HEADER_CRC_OFFSET]) != stored {
            return Err(HeaderError::Checksum);
        }
        if bytes[0..8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let block_bytes = u32::from_le_bytes(le4(&bytes[12..16]));
        if block_bytes == 0 || block_bytes % 4096 != 0 || block_bytes > SHARD_BLOCK_BYTES_MAX {
            return Err(HeaderError::BlockBytes(block_bytes));
        }
        let mut segment = [0u8; 16];
        segment.copy_from_slice(&bytes[16..32]);
        let mut data_len = [0u8; 8];
        data_len.copy_from_slice(&bytes[32..40]);
        let data_len = u64::from_le_bytes(data_len);
        if data_len > DATA_LEN_MAX {
            return Err(HeaderError::DataLen(data_len));
        }
        Ok(ShardHeader {
            segment: SegmentId(u128::from_be_bytes(segment)),
            index: ShardIndex(bytes[10]),
            block_bytes,
            data_len,
        })
    }

    /// Number of blocks.
    pub fn block_count(&self) -> u64 {
        self.data_len.div_ceil(u64::from(self.block_bytes))
    }

    /// Total file length: header, data and block crcs.
    pub fn file_len(&self) -> u64 {
        HEADER_BYTES as u64 + self.data_len + self.block_count() * BLOCK_CRC_BYTES as u64
    }

    /// The data bytes block `block` holds.
    pub fn block_data(&self, block: u32) -> Range<u64> {
        let start = u64::from(block) * u64::from(self.block_bytes);
        assert!(start < self.data_len, "block {block} beyond {self:?}");
        start..(start + u64::from(self.block_bytes)).min(self.data_len)
    }

    /// File offset where block `block` starts.
    pub fn block_file_offset(&self, block: u32) -> u64 {
        HEADER_BYTES as u64
            + u64::from(block) * (u64::from(self.block_bytes) + BLOCK_CRC_BYTES as u64)
    }

    /// The blocks a data range touches, each with the part of the block's data
    /// inside the range. `range` must lie within the data.
    pub fn blocks_touching(
        &self,
        range: Range<u64>,
    ) -> impl Iterator<Item = (u32, Range<usize>)> + Send + 'static {
        assert!(range.start <= range.end && range.end <= self.data_len);
        let block_bytes = u64::from(self.block_bytes);
        let first = range.start / block_bytes;
        let end = range.end.div_ceil(block_bytes);
        let blocks = if range.is_empty() {
            first..first
        } else {
            first..end
        };
        blocks.map(move |b| {
            let block_start = b * block_bytes;
            let start = range.start.max(block_start) - block_start;
            let end = range.end.min(block_start + block_bytes) - block_start;
            let b = u32::try_from(b).expect("block number fits u32 (DATA_LEN_MAX)");
            (b, start as usize..end as usize)
        })
    }

    /// Resolves `offset` and an optional `len` (absent: to the end) to a data
    /// range, checking it lies within the data.
    pub fn resolve_range(&self, offset: u64, len: Option<u64>) -> Result<Range<u64>, ShardError> {
        let len = len.unwrap_or(self.data_len.saturating_sub(offset));
        match offset.checked_add(len) {
            Some(end) if end <= self.data_len => Ok(offset..end),
            _ => Err(ShardError::OutOfRange {
                offset,
                len,
                data_len: self.data_len,
            }),
        }
    }
}

/// Block `data` as stored: the bytes, then their crc32c. For rewriting one
/// block of a file in place (at [`ShardHeader::block_file_offset`]).
pub fn encode_block(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + BLOCK_CRC_BYTES);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    out
}

fn le4(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    out.copy_from_slice(&bytes[..4]);
    out
}

/// What a finished writer wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSummary {
    /// Data bytes written.
    pub bytes: u64,
    /// crc32c of all data bytes.
    pub crc32c: u32,
}

/// Streams data into a shard file: takes chunks of any size, emits the header
/// then checksummed blocks. Fails on more or fewer bytes than declared.
pub struct ShardWriter<W: Write> {
    inner: W,
    path: PathBuf,
    header: ShardHeader,
    /// Current block's data, then room for its crc.
    block: Vec<u8>,
    received: u64,
    crc_all: u32,
}

impl<W: Write> ShardWriter<W> {
    /// Writes the header. `path` names the file in errors.
    pub fn new(mut inner: W, path: &Path, header: ShardHeader) -> Result<Self, ShardError> {
        if header.data_len > DATA_LEN_MAX {
            return Err(ShardError::TooLarge {
                len: header.data_len,
                max: DATA_LEN_MAX,
            });
        }
        inner
            .write_all(&header.encode())
            .map_err(|e| ShardError::from_fs(FsError::new("write shard header", path, e)))?;
        Ok(ShardWriter {
            inner,
            path: path.to_path_buf(),
            header,
            block: Vec::with_capacity(header.block_bytes as usize + BLOCK_CRC_BYTES),
            received: 0,
            crc_all: 0,
        })
    }

    /// Appends data.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), ShardError> {
        let received = self.received + data.len() as u64;
        if received > self.header.data_len {
            return Err(ShardError::LengthMismatch {
                declared: self.header.data_len,
                received,
            });
        }
        self.received = received;
        self.crc_all = crc32c::crc32c_append(self.crc_all, data);
        let block_bytes = self.header.block_bytes as usize;
        while !data.is_empty() {
            let take = (block_bytes - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == block_bytes {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<(), ShardError> {
        debug_assert!(!self.block.is_empty());
        let crc = crc32c::crc32c(&self.block);
        self.block.extend_from_slice(&crc.to_le_bytes());
        self.inner
            .write_all(&self.block)
            .map_err(|e| ShardError::from_fs(FsError::new("write shard block", &self.path, e)))?;
        self.block.clear();
        Ok(())
    }

    /// Writes the last partial block and checks the length. Returns the inner
    /// writer (flushed) and a summary.
    pub fn finish(mut self) -> Result<(W, WriteSummary), ShardError> {
        if self.received != self.header.data_len {
            return Err(ShardError::LengthMismatch {
                declared: self.header.data_len,
                received: self.received,
            });
        }
        if !self.block.is_empty() {
            self.flush_block()?;
        }
        self.inner
            .flush()
            .map_err(|e| ShardError::from_fs(FsError::new("flush shard file", &self.path, e)))?;
        Ok((
            self.inner,
            WriteSummary {
                bytes: self.received,
                crc32c: self.crc_all,
            },
        ))
    }
}

/// Reads verified data out of a shard file. Positions with `Seek`, so only the
/// blocks a range touches are read.
pub struct ShardReader<R: Read + Seek> {
    inner: R,
    path: PathBuf,
    header: ShardHeader,
    buf: Vec<u8>,
}

impl<R: Read + Seek> ShardReader<R> {
    /// Reads and verifies the header: crc, magic, version, and that it names
    /// `segment` and `index`. `path` names the file in errors.
    pub fn open(
        mut inner: R,
        path: &Path,
        segment: SegmentId,
        index: ShardIndex,
    ) -> Result<Self, ShardError> {
        let bad = |reason: String| ShardError::CorruptHeader {
            segment,
            index,
            reason,
        };
        let mut bytes = [0u8; HEADER_BYTES];
        let read = inner
            .seek(SeekFrom::Start(0))
            .and_then(|_| inner.read_exact(&mut bytes));
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(bad("file shorter than a header".into()))
            }
            Err(e) => {
                return Err(ShardError::from_fs(FsError::new(
                    "read shard header",
                    path,
                    e,
                )))
            }
        }
        let header = ShardHeader::decode(&bytes).map_err(|e| bad(e.to_string()))?;
        if header.segment != segment || header.index != index {
            return Err(bad(format!(
                "names segment {} shard {}",
                header.segment, header.index
            )));
        }
        Ok(ShardReader {
            inner,
            path: path.to_path_buf(),
            header,
            buf: Vec::new(),
        })
    }

    /// The verified header.
    pub fn header(&self) -> &ShardHeader {
        &self.header
    }

    /// Reads block `block` and verifies its crc; returns its data.
    pub fn read_block(&mut self, block: u32) -> Result<&[u8], ShardError> {
        let data = self.header.block_data(block);
        let data_len = (data.end - data.start) as usize;
        self.buf.resize(data_len + BLOCK_CRC_BYTES, 0);
        let offset = self.header.block_file_offset(block);
        let read = self
            .inner
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.inner.read_exact(&mut self.buf));
        let corrupt = ShardError::Corrupt {
            segment: self.header.segment,
            index: self.header.index,
            block,
            block_bytes: self.header.block_bytes,
        };
        match read {
            Ok(()) => {}
            // A truncated file: the block is missing, which is corruption.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(corrupt),
            Err(e) => {
                return Err(ShardError::from_fs(FsError::new(
                    "read shard block",
                    &self.path,
                    e,
                )))
            }
        }
        let (body, crc) = self.buf.split_at(data_len);
        if crc32c::crc32c(body) != u32::from_le_bytes(le4(crc)) {
            return Err(corrupt);
        }
        Ok(body)
    }

    /// Reads `range` of the data into one buffer (for small ranges; stream
    /// larger ones block by block with [`ShardHeader::blocks_touching`]).
    pub fn read_range(&mut self, range: Range<u64>) -> Result<Vec<u8>, ShardError> {
        let range = self
            .header
            .resolve_range(range.start, Some(range.end.saturating_sub(range.start)))?;
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (block, part) in self.header.blocks_touching(range) {
            out.extend_from_slice(&self.read_block(block)?[part]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    const B: u64 = SHARD_BLOCK_BYTES as u64;
    const SEG: SegmentId = SegmentId(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
    const IDX: ShardIndex = ShardIndex(3);

    fn data(len: u64, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
            .collect()
    }

    /// Encodes `data` feeding chunks of the given sizes (cycled).
    fn encode(data: &[u8], chunks: &[usize]) -> Vec<u8> {
        let header = ShardHeader::new(SEG, IDX, data.len() as u64);
        let mut w = ShardWriter::new(Vec::new(), Path::new("mem"), header).unwrap();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks[i % chunks.len()].max(1).min(rest.len());
            w.write(&rest[..n]).unwrap();
            rest = &rest[n..];
            i += 1;
        }
        let (out, summary) = w.finish().unwrap();
        assert_eq!(summary.bytes, data.len() as u64);
        assert_eq!(summary.crc32c, crc32c::crc32c(data));
        assert_eq!(out.len() as u64, header.file_len());
        out
    }

    fn reader(file: Vec<u8>) -> Result<ShardReader<Cursor<Vec<u8>>>, ShardError> {
        ShardReader::open(Cursor::new(file), Path::new("mem"), SEG, IDX)
    }

    #[test]
    fn header_round_trips() {
        let h = ShardHeader::new(SEG, IDX, 12345);
        assert_eq!(ShardHeader::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn every_header_bit_flip_is_detected() {
        let file = encode(&data(10, 0), &[10]);
        for pos in 0..HEADER_BYTES {
            for bit in 0..8 {
                let mut bad = file.clone();
                bad[pos] ^= 1 << bit;
                assert!(
                    matches!(reader(bad), Err(ShardError::CorruptHeader { .. })),
                    "flip of bit {bit} at {pos}"
                );
            }
        }
    }

    #[test]
    fn round_trip_edge_lengths() {
        for len in [0, 1, B - 1, B, B + 1, 3 * B, 5 * 1024 * 1024 + 7] {
            let d = data(len, 1);
            let file = encode(&d, &[4097, 1, 70_000]);
            let mut r = reader(file).unwrap();
            assert_eq!(r.header().data_len, len);
            assert_eq!(r.read_range(0..len).unwrap(), d);
            if len > 2 {
                assert_eq!(r.read_range(1..len - 1).unwrap(), &d[1..len as usize - 1]);
            }
            assert!(matches!(
                r.read_range(0..len + 1),
                Err(ShardError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn wrong_declared_length_is_rejected() {
        let header = ShardHeader::new(SEG, IDX, 10);
        let mut w = ShardWriter::new(Vec::new(), Path::new("mem"), header).unwrap();
        w.write(&[0; 9]).unwrap();
        assert!(matches!(
            w.finish(),
            Err(ShardError::LengthMismatch {
                declared: 10,
                received: 9
            })
        ));
        let mut w = ShardWriter::new(Vec::new(), Path::new("mem"), header).unwrap();
        w.write(&[0; 6]).unwrap();
        assert!(matches!(
            w.write(&[0; 5]),
            Err(ShardError::LengthMismatch {
                declared: 10,
                received: 11
            })
        ));
    }

    #[test]
    fn wrong_segment_or_index_is_rejected() {
        let file = encode(&data(10, 0), &[10]);
        let other = ShardReader::open(
            Cursor::new(file.clone()),
            Path::new("mem"),
            SegmentId(1),
            IDX,
        );
        assert!(matches!(other, Err(ShardError::CorruptHeader { .. })));
        let other = ShardReader::open(Cursor::new(file), Path::new("mem"), SEG, ShardIndex(4));
        assert!(matches!(other, Err(ShardError::CorruptHeader { .. })));
        assert!(matches!(
            reader(vec![0; 10]),
            Err(ShardError::CorruptHeader { .. })
        ));
    }

    #[test]
    fn truncated_file_reports_missing_block() {
        let mut file = encode(&data(3 * B, 0), &[1000]);
        file.truncate(file.len() - 1);
        let mut r = reader(file).unwrap();
        assert_eq!(r.read_range(0..2 * B).unwrap().len() as u64, 2 * B);
        assert!(matches!(
            r.read_range(2 * B..2 * B + 1),
            Err(ShardError::Corrupt { block: 2, .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn round_trip_random(
            len in prop_oneof![
                Just(0u64), Just(1), Just(B - 1), Just(B), Just(B + 1),
                0u64..4 * 1024 * 1024,
            ],
            chunks in proptest::collection::vec(1usize..200_000, 1..5),
            ranges in proptest::collection::vec((0.0f64..=1.0, 0.0f64..=1.0), 1..8),
        ) {
            let d = data(len, 7);
            let mut r = reader(encode(&d, &chunks)).unwrap();
            for (a, b) in ranges {
                let start = (a * len as f64) as u64;
                let end = start + ((b * (len - start) as f64) as u64);
                prop_assert_eq!(
                    r.read_range(start..end).unwrap(),
                    &d[start as usize..end as usize]
                );
            }
        }

        #[test]
        fn any_flipped_bit_is_detected(
            len in 1u64..3 * B + 100,
            pos in 0.0f64..1.0,
            bit in 0u8..8,
        ) {
            let d = data(len, 3);
            let mut file = encode(&d, &[50_000]);
            let pos = ((pos * file.len() as f64) as usize).min(file.len() - 1);
            file[pos] ^= 1 << bit;
            if pos < HEADER_BYTES {
                prop_assert!(
                    matches!(reader(file), Err(ShardError::CorruptHeader { .. })),
                    "flip at {} in header not detected", pos
                );
                return Ok(());
            }
            let mut r = reader(file).unwrap();
            let stride = B as usize + BLOCK_CRC_BYTES;
            let block = ((pos - HEADER_BYTES) / stride) as u32;
            let touched = r.header().block_data(block);
            // Any range touching the block fails with that block...
            let mid = (touched.start + touched.end) / 2;
            for range in [touched.clone(), mid..mid + 1, 0..len] {
                let got = r.read_range(range);
                prop_assert!(
                    matches!(got, Err(ShardError::Corrupt { block: b, .. }) if b == block),
                    "flip at {} (block {}) not detected", pos, block
                );
            }
            // ...and ranges elsewhere are still served.
            if touched.start > 0 {
                prop_assert_eq!(r.read_range(0..touched.start).unwrap(), &d[..touched.start as usize]);
            }
            if touched.end < len {
                prop_assert_eq!(r.read_range(touched.end..len).unwrap(), &d[touched.end as usize..]);
            }
        }
    }
}
