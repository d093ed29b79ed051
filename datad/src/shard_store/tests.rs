//! Tests of the shard store through its public API: accounting, length
//! checks, verification of every read, in-place block repair, and the
//! fan-out directories.

use super::ShardStore;
use crate::error::ShardError;
use crate::shard_file::{ShardHeader, SHARD_BLOCK_BYTES};
use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use std::convert::Infallible;
use std::fs;
use std::io;
use std::path::Path;
use weft_common::damage::BlockDamage;
use weft_common::{SegmentId, ShardIndex};

const B: u64 = SHARD_BLOCK_BYTES as u64;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 977) as u8).collect()
}

fn chunks(d: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let parts: Vec<_> = d
        .chunks(size.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(parts)
}

#[tokio::test]
async fn put_get_delete_and_accounting() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let (seg, idx) = (SegmentId(0xabcdef), ShardIndex(2));
    let d = data(3 * B as usize + 5);
    let reply = store
        .put(seg, idx, d.len() as u64, chunks(&d, 10_001))
        .await
        .unwrap();
    assert_eq!(reply.bytes, d.len() as u64);
    assert_eq!(reply.crc32c, crc32c::crc32c(&d));
    let path = store.path_of(seg, idx);
    assert!(path.ends_with("shards/00/00000000000000000000000000abcdef.2"));
    let file_len = fs::metadata(&path).unwrap().len();
    assert_eq!(store.used_bytes(), file_len);

    let got = store.get_bytes(seg, idx, 5, Some(B + 3)).await.unwrap();
    assert_eq!(&got[..], &d[5..5 + B as usize + 3]);
    let all = store.get_bytes(seg, idx, 0, None).await.unwrap();
    assert_eq!(&all[..], &d[..]);
    assert!(store
        .get_bytes(seg, idx, d.len() as u64, None)
        .await
        .unwrap()
        .is_empty());

    // Idempotent retry replaces, accounting stays exact.
    store
        .put(seg, idx, d.len() as u64, chunks(&d, 4096))
        .await
        .unwrap();
    assert_eq!(store.used_bytes(), file_len);

    // Reopen scans the same total.
    let reopened = ShardStore::open(dir.path()).await.unwrap();
    assert_eq!(reopened.used_bytes(), file_len);

    assert!(store.delete(seg, idx).await.unwrap());
    assert!(!store.delete(seg, idx).await.unwrap());
    assert_eq!(store.used_bytes(), 0);
    assert!(matches!(
        store.get(seg, idx, 0, None).await,
        Err(ShardError::NotFound { .. })
    ));
}

#[tokio::test]
async fn bad_lengths_store_nothing_and_keep_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let (seg, idx) = (SegmentId(7), ShardIndex(0));
    let d = data(1000);
    for declared in [999u64, 1001, 5000] {
        let err = store
            .put(seg, idx, declared, chunks(&d, 300))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ShardError::LengthMismatch { .. }),
            "{declared}: {err:?}"
        );
        assert!(!store.path_of(seg, idx).exists());
    }
    store.put(seg, idx, 1000, chunks(&d, 300)).await.unwrap();
    let before = fs::read(store.path_of(seg, idx)).unwrap();
    assert!(store.put(seg, idx, 1001, chunks(&d, 300)).await.is_err());
    assert_eq!(fs::read(store.path_of(seg, idx)).unwrap(), before);
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::other("client went away")),
    ]);
    assert!(matches!(
        store.put(seg, idx, 1000, failing).await,
        Err(ShardError::Body(_))
    ));
    assert_eq!(fs::read(store.path_of(seg, idx)).unwrap(), before);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert_eq!(store.used_bytes(), before.len() as u64);
}

#[tokio::test]
async fn corruption_mid_stream_is_an_error_item() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let (seg, idx) = (SegmentId(9), ShardIndex(1));
    let d = data(4 * B as usize);
    store
        .put(seg, idx, d.len() as u64, chunks(&d, 65_537))
        .await
        .unwrap();
    let path = store.path_of(seg, idx);
    let mut file = fs::read(&path).unwrap();
    let header = ShardHeader::new(seg, idx, d.len() as u64);
    file[header.block_file_offset(2) as usize + 10] ^= 0x40;
    fs::write(&path, file).unwrap();

    // The first block touched is bad: the call itself fails.
    assert!(matches!(
        store.get(seg, idx, 2 * B, Some(10)).await,
        Err(ShardError::Corrupt { block: 2, .. })
    ));
    // A later block is bad: good blocks, then the error, then the end.
    let mut range = store.get(seg, idx, 0, None).await.unwrap();
    let mut good = Vec::new();
    let mut error = None;
    while let Some(item) = range.body.next().await {
        match item {
            Ok(chunk) => good.extend_from_slice(&chunk),
            Err(e) => error = Some(e),
        }
    }
    assert_eq!(&good[..], &d[..2 * B as usize]);
    assert!(matches!(error, Some(ShardError::Corrupt { block: 2, .. })));
    // Ranges avoiding the block still work.
    let tail = store.get_bytes(seg, idx, 3 * B, None).await.unwrap();
    assert_eq!(&tail[..], &d[3 * B as usize..]);
}

#[tokio::test]
async fn bad_blocks_are_named_checked_and_rewritten_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let (seg, idx) = (SegmentId(11), ShardIndex(3));
    let d = data(5 * B as usize + 7);
    let len = d.len() as u64;
    store.put(seg, idx, len, chunks(&d, 70_001)).await.unwrap();
    let path = store.path_of(seg, idx);
    let header = ShardHeader::new(seg, idx, len);
    let mut file = fs::read(&path).unwrap();
    file[header.block_file_offset(1) as usize + 3] ^= 1;
    // The crc of the short last block.
    file[header.block_file_offset(5) as usize + 7] ^= 1;
    file[header.block_file_offset(3) as usize] ^= 1;
    fs::write(&path, &file).unwrap();
    let used = store.used_bytes();

    // A verified read names every bad block in its range, returns nothing.
    let err = store.get_verified(seg, idx, 0, len).await.unwrap_err();
    let want = BlockDamage::from_blocks(SHARD_BLOCK_BYTES, [1, 3, 5]);
    assert!(
        matches!(&err, ShardError::Damaged { damage, .. } if *damage == want),
        "{err:?}"
    );
    assert_eq!(err.damage(), Some(want));
    let err = store
        .get_verified(seg, idx, B + 1, 2 * B)
        .await
        .unwrap_err();
    assert_eq!(
        err.damage(),
        Some(BlockDamage::from_blocks(SHARD_BLOCK_BYTES, [1, 3]))
    );
    assert_eq!(
        &store.get_verified(seg, idx, 2 * B, B).await.unwrap()[..],
        &d[2 * B as usize..3 * B as usize]
    );

    // Checking lists the bad ones among those asked (past the end: none).
    let check = store.check_blocks(seg, idx, 0..100).await.unwrap();
    assert_eq!(check.bad, vec![1, 3, 5]);
    assert!(check.whole);
    assert_eq!(check.header, header);
    assert!(store
        .check_blocks(seg, idx, [0, 2, 4])
        .await
        .unwrap()
        .bad
        .is_empty());

    // Rewriting in place repairs them; the file is otherwise the same.
    let block =
        |b: u64| Bytes::copy_from_slice(&d[(b * B) as usize..((b + 1) * B).min(len) as usize]);
    assert!(matches!(
        store
            .rewrite_blocks(seg, idx, len, vec![(1, block(2))])
            .await,
        Ok(())
    ));
    assert_eq!(
        store.check_blocks(seg, idx, [1]).await.unwrap().bad,
        Vec::<u32>::new()
    );
    assert!(matches!(
        store
            .rewrite_blocks(seg, idx, len, vec![(5, block(4))])
            .await,
        Err(ShardError::LengthMismatch { .. })
    ));
    store
        .rewrite_blocks(
            seg,
            idx,
            len,
            vec![(1, block(1)), (3, block(3)), (5, block(5))],
        )
        .await
        .unwrap();
    assert_eq!(
        &store.get_bytes(seg, idx, 0, None).await.unwrap()[..],
        &d[..]
    );
    assert_eq!(store.used_bytes(), used);
    assert_eq!(fs::metadata(&path).unwrap().len(), header.file_len());

    // A file of the wrong length is not patched; a missing one is absent.
    assert!(matches!(
        store.rewrite_blocks(seg, idx, len + 1, vec![]).await,
        Err(ShardError::CorruptHeader { .. })
    ));
    let mut file = fs::read(&path).unwrap();
    file.truncate(file.len() - 10);
    fs::write(&path, &file).unwrap();
    let check = store.check_blocks(seg, idx, 0..10).await.unwrap();
    assert_eq!(check.bad, vec![5], "the cut block is bad");
    assert!(!check.whole);
    assert!(matches!(
        store
            .rewrite_blocks(seg, idx, len, vec![(5, block(5))])
            .await,
        Err(ShardError::CorruptHeader { .. })
    ));
    store.delete(seg, idx).await.unwrap();
    assert!(matches!(
        store.check_blocks(seg, idx, [0]).await,
        Err(ShardError::NotFound { .. })
    ));
    assert!(matches!(
        store.rewrite_blocks(seg, idx, len, vec![]).await,
        Err(ShardError::NotFound { .. })
    ));
}

#[tokio::test]
async fn open_cleans_tmp() {
    let dir = tempfile::tempdir().unwrap();
    drop(ShardStore::open(dir.path()).await.unwrap());
    fs::write(dir.path().join("tmp/leftover.tmp"), b"x").unwrap();
    drop(ShardStore::open(dir.path()).await.unwrap());
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

fn fan_out_dirs(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(data_dir.join("shards"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn open_creates_every_fan_out_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let expected: Vec<String> = (0..=255u32).map(|b| format!("{b:02x}")).collect();
    assert_eq!(fan_out_dirs(dir.path()), expected);
    // Every segment's file goes into one of them, whatever its first byte.
    for first in 0..=255u128 {
        let seg = SegmentId(first << 120 | 0x0123_4567_89ab);
        let path = store.path_of(seg, ShardIndex(3));
        let parent = path.parent().unwrap();
        assert!(parent.is_dir(), "{} missing", parent.display());
        assert_eq!(
            parent.file_name().unwrap().to_str().unwrap(),
            &seg.to_string()[..2]
        );
    }
}

#[tokio::test]
async fn open_recreates_a_missing_fan_out_directory() {
    let dir = tempfile::tempdir().unwrap();
    drop(ShardStore::open(dir.path()).await.unwrap());
    fs::remove_dir(dir.path().join("shards/7f")).unwrap();
    assert_eq!(fan_out_dirs(dir.path()).len(), 255);
    let store = ShardStore::open(dir.path()).await.unwrap();
    assert_eq!(fan_out_dirs(dir.path()).len(), 256);
    let seg = SegmentId(0x7f << 120);
    let d = data(100);
    store
        .put(seg, ShardIndex(0), d.len() as u64, chunks(&d, 64))
        .await
        .unwrap();
    assert_eq!(
        &store.get_bytes(seg, ShardIndex(0), 0, None).await.unwrap()[..],
        &d[..]
    );
}

/// Released shards go in one batch: present ones are removed and their
/// bytes leave the accounting, absent ones are counted as absent, and a
/// shard not in the batch stays.
#[tokio::test]
async fn remove_released_removes_the_batch_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path()).await.unwrap();
    let d = data(2 * B as usize);
    let shards: Vec<(SegmentId, ShardIndex)> = (0..3)
        .map(|i| (SegmentId(0x100 + i), ShardIndex(0)))
        .collect();
    for &(seg, idx) in &shards {
        store
            .put(seg, idx, d.len() as u64, chunks(&d, 4096))
            .await
            .unwrap();
    }
    let kept = shards[2];
    let before = store.used_bytes();
    let removed = store
        .remove_released(vec![
            shards[0],
            shards[1],
            (SegmentId(0xdead), ShardIndex(1)),
        ])
        .await;
    assert_eq!(
        removed,
        super::Removed {
            deleted: 2,
            absent: 1,
            failed: 0
        }
    );
    assert_eq!(
        store.used_bytes(),
        before / 3,
        "two of three files' bytes left the accounting"
    );
    for &(seg, idx) in &shards[..2] {
        assert!(
            store.get_bytes(seg, idx, 0, Some(1)).await.is_err(),
            "released shard still readable"
        );
    }
    let back = store.get_bytes(kept.0, kept.1, 0, None).await.unwrap();
    assert_eq!(&back[..], &d[..]);
}
