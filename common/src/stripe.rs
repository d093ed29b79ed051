//! The stripe codec and segment geometry.
//!
//! A segment of `len` bytes under `Erasure{k, m, unit}` is cut into stripes of
//! `k × unit` bytes. Shard `i` of every stripe is appended to shard file `i`.
//! The last stripe may be short: its unit is `⌈rest / k⌉`, so shard files carry
//! at most `k - 1` bytes of padding in total. Every shard file of a segment has
//! the same length, [`Geometry::shard_len`].

use bytes::{Bytes, BytesMut};
use reed_solomon_erasure::galois_8::ReedSolomon;
use std::ops::Range;
use thiserror::Error;

/// Errors of the codec; all are caller bugs or too many lost shards.
#[derive(Debug, Error)]
pub enum StripeError {
    /// Fewer than `k` shards were supplied for reconstruction.
    #[error("only {present} of {k} needed shards available")]
    TooFewShards {
        /// Shards present.
        present: usize,
        /// Shards needed.
        k: usize,
    },
    /// The shards given disagree in length or count.
    #[error("malformed stripe: {0}")]
    Malformed(&'static str),
}

/// Where a segment's bytes sit in its shard files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Data shards.
    pub k: usize,
    /// Parity shards.
    pub m: usize,
    /// Bytes per shard of a full stripe.
    pub unit: u64,
    /// Segment length in bytes.
    pub len: u64,
}

/// One stripe: which part of the segment, and which part of each shard file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeSpan {
    /// Stripe number.
    pub index: u64,
    /// Bytes of the segment this stripe holds.
    pub data: Range<u64>,
    /// Bytes of each shard file this stripe occupies (same for all shards).
    pub shard: Range<u64>,
}

impl Geometry {
    /// Geometry of a segment.
    pub fn new(k: usize, m: usize, unit: u64, len: u64) -> Self {
        assert!(k > 0 && unit > 0, "k and unit must be positive");
        Geometry { k, m, unit, len }
    }

    /// Bytes of data in one full stripe.
    pub fn stripe_bytes(&self) -> u64 {
        self.k as u64 * self.unit
    }

    /// Number of stripes (0 for an empty segment).
    pub fn stripe_count(&self) -> u64 {
        self.len.div_ceil(self.stripe_bytes())
    }

    /// The span of stripe `index`.
    pub fn stripe(&self, index: u64) -> StripeSpan {
        let sb = self.stripe_bytes();
        let start = index * sb;
        assert!(
            start < self.len,
            "stripe {index} beyond segment of {} bytes",
            self.len
        );
        let end = (start + sb).min(self.len);
        let unit = (end - start).div_ceil(self.k as u64);
        let shard_start = index * self.unit;
        StripeSpan {
            index,
            data: start..end,
            shard: shard_start..shard_start + unit,
        }
    }

    /// Length of every shard file of the segment.
    pub fn shard_len(&self) -> u64 {
        match self.stripe_count() {
            0 => 0,
            n => {
                let last = self.stripe(n - 1);
                last.shard.end
            }
        }
    }

    /// Stripes overlapping `range` of the segment.
    pub fn stripes_for(&self, range: Range<u64>) -> impl Iterator<Item = StripeSpan> + '_ {
        let sb = self.stripe_bytes();
        let (first, last) = if range.start >= range.end {
            (1, 0)
        } else {
            (range.start / sb, (range.end - 1) / sb)
        };
        (first..=last).map(|i| self.stripe(i))
    }
}

/// A Reed-Solomon codec for one (k, m). Reuse it: it caches decode matrices.
pub struct StripeCodec {
    rs: ReedSolomon,
    k: usize,
    m: usize,
}

impl std::fmt::Debug for StripeCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StripeCodec({}+{})", self.k, self.m)
    }
}

impl StripeCodec {
    /// A codec for `k` data and `m` parity shards.
    pub fn new(k: usize, m: usize) -> Result<Self, StripeError> {
        let rs = ReedSolomon::new(k, m).map_err(|_| StripeError::Malformed("invalid k/m"))?;
        Ok(StripeCodec { rs, k, m })
    }

    /// Data shards.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Parity shards.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Cuts one stripe's data (at most `k × unit` bytes; shorter for the last
    /// stripe) into `k + m` shards of `⌈len/k⌉` bytes, zero-padding the tail.
    pub fn encode(&self, data: &[u8]) -> Vec<Bytes> {
        let unit = data.len().div_ceil(self.k).max(1);
        let mut buf = BytesMut::zeroed(unit * (self.k + self.m));
        buf[..data.len()].copy_from_slice(data);
        {
            let mut slices: Vec<&mut [u8]> = buf.chunks_mut(unit).collect();
            // Column slices of 64 KiB keep the working set in L2 (see DEPENDENCIES.md).
            const SLICE: usize = 64 * 1024;
            let mut off = 0;
            while off < unit {
                let end = (off + SLICE).min(unit);
                let mut cols: Vec<&mut [u8]> =
                    slices.iter_mut().map(|s| &mut s[off..end]).collect();
                self.rs
                    .encode(&mut cols)
                    .expect("shard sizes are equal by construction");
                off = end;
            }
        }
        let buf = buf.freeze();
        (0..self.k + self.m)
            .map(|i| buf.slice(i * unit..(i + 1) * unit))
            .collect()
    }

    /// Rebuilds the data of one stripe (`data_len` bytes) from any `k` of its
    /// shards. `shards[i]` is shard `i` or `None` if lost.
    pub fn decode(
        &self,
        shards: Vec<Option<Bytes>>,
        data_len: usize,
    ) -> Result<Bytes, StripeError> {
        if shards.len() != self.k + self.m {
            return Err(StripeError::Malformed("wrong shard count"));
        }
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < self.k {
            return Err(StripeError::TooFewShards { present, k: self.k });
        }
        let unit = data_len.div_ceil(self.k).max(1);
        if shards.iter().flatten().any(|s| s.len() != unit) {
            return Err(StripeError::Malformed("shard length does not match stripe"));
        }
        let data_complete = shards[..self.k].iter().all(|s| s.is_some());
        let data: Vec<Bytes> = if data_complete {
            shards
                .into_iter()
                .take(self.k)
                .map(|s| s.expect("checked"))
                .collect()
        } else {
            let mut work: Vec<Option<Vec<u8>>> =
                shards.into_iter().map(|s| s.map(|b| b.to_vec())).collect();
            self.rs
                .reconstruct_data(&mut work)
                .map_err(|_| StripeError::Malformed("reconstruction failed"))?;
            work.into_iter()
                .take(self.k)
                .map(|s| Bytes::from(s.expect("reconstructed")))
                .collect()
        };
        let mut out = BytesMut::with_capacity(unit * self.k);
        for d in &data {
            out.extend_from_slice(d);
        }
        out.truncate(data_len);
        Ok(out.freeze())
    }
}

impl StripeCodec {
    /// Rebuilds shard `want` of one stripe (data or parity) from any `k` of
    /// the others: what repair writes onto a new node.
    pub fn reconstruct_shard(
        &self,
        shards: Vec<Option<Bytes>>,
        want: usize,
    ) -> Result<Bytes, StripeError> {
        if shards.len() != self.k + self.m || want >= shards.len() {
            return Err(StripeError::Malformed("wrong shard count"));
        }
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < self.k {
            return Err(StripeError::TooFewShards { present, k: self.k });
        }
        let unit = shards.iter().flatten().map(|s| s.len()).next().unwrap_or(0);
        if shards.iter().flatten().any(|s| s.len() != unit) {
            return Err(StripeError::Malformed(
                "shards of one stripe differ in length",
            ));
        }
        if let Some(s) = &shards[want] {
            return Ok(s.clone());
        }
        let mut work: Vec<Option<Vec<u8>>> =
            shards.into_iter().map(|s| s.map(|b| b.to_vec())).collect();
        self.rs
            .reconstruct(&mut work)
            .map_err(|_| StripeError::Malformed("reconstruction failed"))?;
        Ok(Bytes::from(work.swap_remove(want).expect("reconstructed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_k_of_k_plus_m_rebuild(data in prop::collection::vec(any::<u8>(), 1..200_000), lost in prop::sample::subsequence((0..6usize).collect::<Vec<_>>(), 0..=2)) {
            let codec = StripeCodec::new(4, 2).unwrap();
            let shards = codec.encode(&data);
            prop_assert_eq!(shards.len(), 6);
            let partial: Vec<Option<Bytes>> = shards.iter().enumerate()
                .map(|(i, s)| if lost.contains(&i) { None } else { Some(s.clone()) }).collect();
            let back = codec.decode(partial, data.len()).unwrap();
            prop_assert_eq!(&back[..], &data[..]);
        }

        #[test]
        fn geometry_covers_every_byte_once(len in 0u64..50_000, unit in 1u64..2000, k in 1usize..8) {
            let g = Geometry::new(k, 2, unit, len);
            let mut next = 0;
            for i in 0..g.stripe_count() {
                let s = g.stripe(i);
                prop_assert_eq!(s.data.start, next);
                prop_assert!(s.shard.end - s.shard.start <= unit);
                prop_assert!((s.shard.end - s.shard.start) * k as u64 >= s.data.end - s.data.start);
                next = s.data.end;
            }
            prop_assert_eq!(next, len);
            let all: Vec<_> = g.stripes_for(0..len).map(|s| s.index).collect();
            prop_assert_eq!(all.len() as u64, g.stripe_count());
        }
    }

    #[test]
    fn any_single_shard_is_rebuilt_exactly() {
        let codec = StripeCodec::new(4, 2).unwrap();
        let data: Vec<u8> = (0..100_003u32).map(|i| (i * 31 % 251) as u8).collect();
        let shards = codec.encode(&data);
        for want in 0..6 {
            // Lose `want` and one more; rebuild `want` from the other four.
            let other = (want + 3) % 6;
            let partial: Vec<Option<Bytes>> = shards
                .iter()
                .enumerate()
                .map(|(i, s)| (i != want && i != other).then(|| s.clone()))
                .collect();
            assert_eq!(
                codec.reconstruct_shard(partial, want).unwrap(),
                shards[want]
            );
        }
    }

    #[test]
    fn three_lost_shards_cannot_rebuild() {
        let codec = StripeCodec::new(4, 2).unwrap();
        let shards = codec.encode(&[7u8; 4096]);
        let partial: Vec<Option<Bytes>> = shards
            .into_iter()
            .enumerate()
            .map(|(i, s)| if i < 3 { None } else { Some(s) })
            .collect();
        assert!(matches!(
            codec.decode(partial, 4096),
            Err(StripeError::TooFewShards { present: 3, k: 4 })
        ));
    }

    #[test]
    fn short_last_stripe_geometry() {
        // 10 MiB at 4 x 1 MiB stripes: two full stripes and one of 2 MiB.
        let g = Geometry::new(4, 2, 1 << 20, 10 << 20);
        assert_eq!(g.stripe_count(), 3);
        assert_eq!(g.stripe(2).shard, (2 << 20)..(2 << 20) + (512 << 10));
        assert_eq!(g.shard_len(), (2 << 20) + (512 << 10));
        let spans: Vec<u64> = g
            .stripes_for((5 << 20)..(5 << 20) + 1)
            .map(|s| s.index)
            .collect();
        assert_eq!(spans, vec![1]);
    }
}
