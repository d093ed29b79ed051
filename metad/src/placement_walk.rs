//! The placement walk behind `weft locate` and `weft warm status`: where
//! the current objects under a prefix have their shards, as a
//! [`PlacementTable`].
//!
//! Nearly all of a walk's time is per object: checking and decoding its
//! manifest, then looking up and decoding each segment's record for the
//! current holders. So the walk decodes only the fields a placement needs
//! (see [`segment_index::SizedSegments`]), and a large page is decoded by
//! a few threads at once over one read transaction: the range is read in
//! order first (cheap copies of stored bytes), the decoding split in
//! chunks, and the table built in key order from the chunks' results.

use std::sync::atomic::{AtomicUsize, Ordering};

use redb::ReadOnlyTable;
use weft_common::placement_table::{Placement, PlacementTable, TableBuilder, TabledSegment};

use crate::envelope::{decode, CorruptValue};
use crate::error::MetaError;
use crate::segment_index;
use crate::state_machine::StateMachine;
use crate::tables::{current_range, object_key, OBJECTS, SEGMENTS, T_OBJECTS};

/// Objects below which a page is decoded on the calling thread alone.
const PARALLEL_FROM: usize = 2_000;
/// Most threads one page is decoded by.
const THREADS_MAX: usize = 4;
/// Pages being decoded by several threads now: one at a time, so that
/// many callers walking at once (any bucket owner may locate) add at most
/// `THREADS_MAX - 1` threads to metad, and the rest decode on their own.
static PARALLEL_WALKS: AtomicUsize = AtomicUsize::new(0);

/// Holds the one parallel walk's turn.
struct Turn;

impl Turn {
    fn take() -> Option<Turn> {
        PARALLEL_WALKS
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then_some(Turn)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        PARALLEL_WALKS.store(0, Ordering::Release);
    }
}

/// One object's stored manifest: its table key and sealed value.
type Stored = (Vec<u8>, Vec<u8>);
/// One object decoded: key, size, and each segment's placement and lengths.
type Placed = (String, u64, Vec<(Placement, u64, u64)>);

impl StateMachine {
    /// Up to `max` current versions under `bucket/prefix` after `after`,
    /// as a table of distinct placements (current holders and cache
    /// copies overlaid), and the key to resume after if more follow (see
    /// `Query::PlacementTable`).
    pub fn placement_table(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(PlacementTable, Option<String>), MetaError> {
        self.placement_walk(bucket, prefix, after, max, PARALLEL_FROM)
    }

    /// [`placement_table`](Self::placement_table), decoding in parallel
    /// from `parallel_from` objects a page (tests lower it).
    pub(crate) fn placement_walk(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
        parallel_from: usize,
    ) -> Result<(PlacementTable, Option<String>), MetaError> {
        let tx = self.begin_read()?;
        let Some((start, hi)) = current_range(bucket, prefix, after) else {
            return Ok((PlacementTable::default(), None));
        };
        let objects = tx.open_table(OBJECTS)?;
        let segs = tx.open_table(SEGMENTS)?;
        let mut stored: Vec<Stored> = vec![];
        let mut more = false;
        for it in objects.range::<&[u8]>(start.as_slice()..hi.as_slice())? {
            let (k, v) = it?;
            if stored.len() as u32 >= max {
                more = true;
                break;
            }
            stored.push((k.value().to_vec(), v.value().to_vec()));
        }
        let skip = object_key(bucket, "").len();
        let turn = (stored.len() >= parallel_from.max(2))
            .then(Turn::take)
            .flatten();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(2, THREADS_MAX);
        let decoded: Vec<Placed> = if turn.is_none() {
            place(&segs, skip, &stored)?
        } else {
            let chunk = stored.len().div_ceil(threads);
            let segs = &segs;
            let parts: Vec<Result<Vec<Placed>, MetaError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = stored
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || place(segs, skip, part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a placement decoder panicked"))
                    .collect()
            });
            drop(turn);
            let mut all = Vec::with_capacity(stored.len());
            for p in parts {
                all.extend(p?);
            }
            all
        };
        let mut b = TableBuilder::default();
        for (key, size, segments) in decoded {
            let tabled = segments
                .into_iter()
                .map(|(p, len, shard_len)| TabledSegment(b.placement(p), len, shard_len))
                .collect();
            b.object(key, size, tabled);
        }
        let next = more.then(|| b.last_key().map(str::to_string)).flatten();
        Ok((b.finish(), next))
    }
}

/// Decodes `stored` manifests (keys `skip` bytes of bucket prefix long)
/// with each segment's current holders from the segment index.
fn place(
    segs: &ReadOnlyTable<&'static [u8], &'static [u8]>,
    skip: usize,
    stored: &[Stored],
) -> Result<Vec<Placed>, MetaError> {
    let mut out = Vec::with_capacity(stored.len());
    for (k, v) in stored {
        let key = String::from_utf8_lossy(&k[skip..]).into_owned();
        let version: segment_index::SizedSegments = decode(T_OBJECTS, k, v)?;
        let mut placed = Vec::with_capacity(version.segments.len());
        for s in version.segments {
            let layout = s.layout.layout().ok_or_else(|| {
                CorruptValue::new(
                    T_OBJECTS,
                    k,
                    "a segment's layout lacks a field its kind needs",
                )
            })?;
            let (shards, cache) = match segment_index::placement_of(segs, s.id)? {
                Some(rec) => (rec.shards, rec.cache),
                None => (s.shards, vec![]),
            };
            placed.push((
                Placement {
                    layout,
                    shards,
                    cache,
                },
                s.len,
                s.shard_len,
            ));
        }
        out.push((key, version.size, placed));
    }
    Ok(out)
}
