//! Whole-cluster invariants, checked after every nemesis step and once more
//! when the faults have stopped: what a client cannot see yet but that
//! means data is lost, or one fault from it.
//!
//! **Every referenced segment keeps k shard files.** Each segment
//! of the S3 workload's bucket in metad's segment index (so referenced by
//! an object version or an upload part) must have at least k shard files (one copy, replicated) on
//! the data nodes metad placed them on. Shard files are found on the run's
//! disk directly, so a crashed data node's files still count (they come
//! back with it), and a file that a garbage collector, a release queue or
//! a scrubber deleted does not. Rot leaves a file in place; it is the
//! scrubber's to repair, block by block.
//!
//! While faults run, writes, releases and repairs race the check, so it
//! reads the index twice, before and after looking at the disk, and judges
//! only segments in both reads (a segment committed or released meanwhile
//! is left for the next step), counting a shard as present when a file
//! exists on the node either read placed it on (a repair moved it
//! meanwhile). A released segment leaves the index in the command that
//! releases it, before any shard of it is deleted, so nothing the check
//! judges can be legitimately going away. (A shard moved twice within one
//! check, A to B to C with each old copy deleted at once, would show on
//! neither placement read: a false alarm in principle; moves are rare and
//! the window is two metad reads.)
//!
//! It checks that the files exist, not that their bytes are whole: rot is
//! the scrubber's, and a torn write the power-cut disk undoes as a whole.
//!
//! **Replicas agree.** Voters that have applied the same raft index hold
//! the same state-machine digest (each voter answers its index and digest
//! from one read), so their logs agree on everything applied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use weft_client::MetadClient;
use weft_common::repair::SegmentRecord;
use weft_common::rpc::{Query, QueryResult};
use weft_common::SegmentId;

use crate::data::DATADS;
use crate::s3_workload;

/// Segments per index page asked for.
const PAGE: u32 = 1000;

/// The whole segment index, page by page, from the leader.
async fn index(metad: &MetadClient) -> Result<BTreeMap<SegmentId, SegmentRecord>, String> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        match metad.query(&Query::Segments { after, max: PAGE }).await {
            Ok(QueryResult::Segments { segments, more }) => {
                after = segments.last().map(|(id, _)| *id);
                out.extend(segments);
                if !more || after.is_none() {
                    return Ok(out);
                }
            }
            Ok(other) => return Err(format!("Segments answered {other:?}")),
            Err(e) => return Err(format!("the segment index could not be read: {e}")),
        }
    }
}

/// Every shard file on the run's disk, as (data node, segment, index),
/// for the segments in `wanted`.
fn files_on_disk(
    dir: &Path,
    wanted: &BTreeMap<SegmentId, SegmentRecord>,
) -> BTreeSet<(u64, SegmentId, usize)> {
    let mut out = BTreeSet::new();
    for node in 0..DATADS {
        for f in crate::data::shard_files(dir, node) {
            let name = f.file_name();
            let Some((segment, index)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            let (Ok(id), Ok(index)) = (segment.parse::<SegmentId>(), index.parse::<usize>()) else {
                continue;
            };
            if wanted.contains_key(&id) {
                out.insert((node as u64 + 1, id, index));
            }
        }
    }
    out
}

/// Checks that every segment in the index keeps k shard files where metad
/// placed them. `Err` when metad did not answer (nothing was judged);
/// otherwise how many segments were judged and the violations (empty: the
/// invariant holds).
pub(crate) async fn segments_keep_read_quorum(
    dir: &Path,
    metad: &MetadClient,
) -> Result<(usize, Vec<String>), String> {
    let before = index(metad).await?;
    // Synchronous: no other task of the run moves while the disk is read.
    let files = files_on_disk(dir, &before);
    let after = index(metad).await?;
    let placed = |r: &SegmentRecord, id: SegmentId, i: usize| {
        r.shards
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|n| files.contains(&(n.0, id, i)))
    };
    let mut judged = 0;
    let mut failures = Vec::new();
    for (id, b) in &before {
        // Only the S3 workload's objects have bytes: the metadata
        // workload's uploads name segments on no disk.
        let Some(a) = after.get(id).filter(|a| a.bucket == s3_workload::BUCKET) else {
            continue;
        };
        judged += 1;
        let need = a.layout.read_quorum();
        let have = (0..b.layout.width().max(a.layout.width()))
            .filter(|i| placed(b, *id, *i) || placed(a, *id, *i))
            .count();
        if have < need {
            failures.push(format!(
                "segment {id} of {}/{} is referenced but only {have} of its shard files remain where metad placed them: fewer than k = {need} (placement {:?})",
                a.bucket, a.key, a.shards
            ));
        }
    }
    Ok((judged, failures))
}

/// Asks every voter in `voters` for its applied index and state digest
/// (answered locally); two voters at the same index must hold the same
/// digest. Voters that do not answer are skipped. Returns the violations.
pub(crate) async fn replicas_agree(voters: &[MetadClient]) -> Vec<String> {
    let mut seen: BTreeMap<u64, (usize, String)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, voter) in voters.iter().enumerate() {
        let Ok(QueryResult::Digest {
            applied_index: Some(index),
            digest,
        }) = voter.query(&Query::Digest).await
        else {
            continue;
        };
        match seen.get(&index) {
            Some((j, other)) if *other != digest => failures.push(format!(
                "voters {} and {} have both applied index {index} but hold different states ({other} and {digest})",
                j + 1,
                i + 1
            )),
            Some(_) => {}
            None => {
                seen.insert(index, (i, digest));
            }
        }
    }
    failures
}
