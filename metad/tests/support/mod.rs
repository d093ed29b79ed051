//! Builders shared by metad's integration tests.
#![allow(dead_code)]

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use weft_common::manifest::{BucketInfo, ContentHeaders, ObjectVersion, Segment};
use weft_common::profile::Layout;
use weft_common::rpc::Command;
use weft_common::{NodeId, SegmentId, VersionId};
use weft_metad::TypeConfig;

/// A small object version, distinct for every `n`.
pub fn version(n: u64) -> ObjectVersion {
    ObjectVersion {
        version_id: VersionId(u128::from(n) + 1),
        size: n,
        etag: format!("{n:032x}"),
        crc32c: n as u32,
        last_modified_ms: 1_700_000_000_000 + n,
        storage_class: "STANDARD".into(),
        user_metadata: [("n".to_string(), n.to_string())].into(),
        content: ContentHeaders::default(),
        checksums: Default::default(),
        checksum_type: None,
        tags: Default::default(),
        part_sizes: Vec::new(),
        version_label: None,
        segments: vec![Segment {
            id: SegmentId(u128::from(n) << 8),
            offset: 0,
            len: n,
            layout: Layout::Replicated { copies: 1 },
            shards: vec![Some(NodeId(1))],
            shard_len: n,
            placement: None,
            cache: vec![],
        }],
        tier: None,
        last_access_ms: None,
    }
}

/// A bucket owned by `owner`.
pub fn bucket(name: &str, owner: &str) -> BucketInfo {
    BucketInfo {
        name: name.into(),
        owner: owner.into(),
        created_ms: 1_700_000_000_000,
        tags: Default::default(),
        versioning: None,
        lifecycle: None,
        tiering: None,
        residency: None,
    }
}

/// `CreateBucket`.
pub fn create_bucket(name: &str, owner: &str) -> Command {
    Command::CreateBucket {
        bucket: bucket(name, owner),
    }
}

/// `PutObject` of `version(n)`.
pub fn put(bucket: &str, key: &str, n: u64) -> Command {
    Command::PutObject {
        bucket: bucket.into(),
        key: key.into(),
        version: version(n),
        condition: None,
    }
}

/// The log id of entry `index` in term 1, leader 1.
pub fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// A normal log entry carrying `cmd` at `index`.
pub fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(cmd),
    }
}

/// Normal entries for `cmds`, numbered from `first`.
pub fn entries(first: u64, cmds: impl IntoIterator<Item = Command>) -> Vec<Entry<TypeConfig>> {
    cmds.into_iter()
        .enumerate()
        .map(|(i, c)| entry(first + i as u64, c))
        .collect()
}

/// Starts one metad voter on a loopback port over `dir` (bootstrapping a
/// one-voter group if `bootstrap`) and waits for it to lead.
pub async fn start_voter(
    dir: &std::path::Path,
    bootstrap: bool,
) -> (weft_metad::MetadHandle, tokio_util::sync::CancellationToken) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let cfg = weft_metad::MetadConfig {
        insecure_internal: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        bootstrap,
        // These tests write fixed times (1 s after the epoch and so on).
        clock_skew_max_secs: u64::MAX / 1000,
        ..Default::default()
    };
    let h = weft_metad::start(cfg, cancel.clone()).await.unwrap();
    h.wait_for_leader(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    (h, cancel)
}
