//! Golden encodings of the messages processes exchange and metad keeps in
//! its raft log: every `Command` variant (raft entries outlive binaries: a
//! voter replays its log, and a follower receives entries a newer or older
//! leader wrote), the results, and the internal RPC bodies. A change to an
//! encoding shows up as a diff of `tests/golden/rpc_v1.jsonl` in review, and
//! the test also proves the committed lines still decode to the same value,
//! which is the rolling-upgrade rule's first half (docs/decisions.md,
//! "Formats and rolling upgrades"): a binary reads everything older binaries
//! wrote. To regenerate deliberately, after adding a case or a new format
//! version's lines (never by editing old lines):
//! `WEFT_BLESS=1 cargo test -p weft-common --test golden_rpc`.

use std::collections::BTreeMap;
use weft_common::damage::{BlockDamage, BlockRange};
use weft_common::manifest::{
    AccessKey, BucketInfo, ContentHeaders, ObjectVersion, Segment, Upload, UploadPart,
};
use weft_common::profile::Layout;
use weft_common::repair::{RepairConfig, RepairPriority};
use weft_common::rpc::{
    Command, CommandResult, Heartbeat, Query, QueryResult, Refusal, RpcErrorBody, RpcErrorCode,
    ShardPutReply, ShardRef, ShardReleaseBatch, ShardReleaseReply, WriteCondition,
};
use weft_common::space::{SpaceReport, SpaceState};
use weft_common::topology::{NodeAdmin, NodeInfo};
use weft_common::{NodeId, RequestId, SegmentId, VersionId};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/rpc_v1.jsonl");

fn segment() -> Segment {
    Segment {
        id: SegmentId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
        offset: 0,
        len: 5 << 20,
        layout: Layout::Erasure {
            k: 4,
            m: 2,
            unit_bytes: 1 << 20,
        },
        shards: vec![
            Some(NodeId(1)),
            Some(NodeId(2)),
            None,
            Some(NodeId(4)),
            Some(NodeId(5)),
            Some(NodeId(6)),
        ],
        shard_len: (5 << 20) / 4,
        placement: None,
        cache: vec![],
    }
}

fn version() -> ObjectVersion {
    ObjectVersion {
        version_id: VersionId(0xfeed_beef),
        size: 5 << 20,
        etag: "\"9e107d9d372bb6826bd81d3542a419d6\"".into(),
        crc32c: 0xdead_beef,
        last_modified_ms: 1_764_460_800_000,
        storage_class: "STANDARD".into(),
        user_metadata: BTreeMap::from([("owner".into(), "ada".into())]),
        content: ContentHeaders {
            content_type: Some("application/octet-stream".into()),
            ..ContentHeaders::default()
        },
        checksums: BTreeMap::from([("CRC32C".into(), "3q2+7w==".into())]),
        checksum_type: Some("FULL_OBJECT".into()),
        version_label: None,
        part_sizes: vec![],
        tags: BTreeMap::from([("team".into(), "storage".into())]),
        segments: vec![segment()],
        tier: None,
        last_access_ms: None,
    }
}

fn part(n: u32) -> UploadPart {
    UploadPart {
        part_number: n,
        etag: format!("\"etag-{n}\""),
        size: 5 << 20,
        crc32c: n,
        last_modified_ms: 1_764_460_800_000,
        checksums: BTreeMap::new(),
        segments: vec![segment()],
    }
}

fn damage() -> BlockDamage {
    BlockDamage::from_ranges(65_536, [BlockRange::new(3, 5)])
}

fn request(command: Command) -> Command {
    Command::Request {
        format: 1,
        actor: None,
        id: RequestId(0x42),
        at_ms: 1_764_460_800_000,
        command: Box::new(command),
    }
}

/// One example of everything with a golden line, in file order.
fn examples() -> Vec<(&'static str, serde_json::Value)> {
    let commands: Vec<(&str, Command)> = vec![
        (
            "create_bucket",
            Command::CreateBucket {
                bucket: BucketInfo {
                    name: "photos".into(),
                    owner: "AKIDEXAMPLE".into(),
                    created_ms: 1_764_460_800_000,
                    tags: BTreeMap::new(),
                    versioning: Some("Enabled".into()),
                    lifecycle: None,
                    tiering: None,
                    residency: None,
                },
            },
        ),
        (
            "delete_bucket",
            Command::DeleteBucket {
                name: "photos".into(),
            },
        ),
        (
            "put_object",
            Command::PutObject {
                bucket: "photos".into(),
                key: "2026/cat.jpg".into(),
                version: version(),
                condition: Some(WriteCondition::Match("\"abc\"".into())),
            },
        ),
        (
            "delete_object",
            Command::DeleteObject {
                bucket: "photos".into(),
                key: "2026/cat.jpg".into(),
                marker: Some((VersionId(7), 1_764_460_800_000)),
            },
        ),
        (
            "delete_object_version",
            Command::DeleteObjectVersion {
                bucket: "photos".into(),
                key: "2026/cat.jpg".into(),
                version_id: "null".into(),
            },
        ),
        (
            "set_bucket_versioning",
            Command::SetBucketVersioning {
                bucket: "photos".into(),
                status: "Suspended".into(),
            },
        ),
        (
            "create_upload",
            Command::CreateUpload {
                upload: Upload {
                    upload_id: "u-1".into(),
                    bucket: "photos".into(),
                    key: "big.bin".into(),
                    initiated_ms: 1_764_460_800_000,
                    storage_class: "STANDARD".into(),
                    user_metadata: BTreeMap::new(),
                    content: ContentHeaders::default(),
                    checksum_algorithm: Some("CRC32C".into()),
                    checksum_type: Some("COMPOSITE".into()),
                    tags: BTreeMap::new(),
                    parts: vec![],
                },
            },
        ),
        (
            "put_part",
            Command::PutPart {
                upload_id: "u-1".into(),
                part: part(1),
            },
        ),
        (
            "complete_upload",
            Command::CompleteUpload {
                upload_id: "u-1".into(),
                bucket: "photos".into(),
                key: "big.bin".into(),
                parts: vec![(1, "\"etag-1\"".into()), (2, "\"etag-2\"".into())],
                version: version(),
                condition: Some(WriteCondition::NoneMatchAny),
            },
        ),
        (
            "set_object_tags",
            Command::SetObjectTags {
                bucket: "photos".into(),
                key: "2026/cat.jpg".into(),
                tags: BTreeMap::from([("k".into(), "v".into())]),
            },
        ),
        (
            "set_bucket_tags",
            Command::SetBucketTags {
                bucket: "photos".into(),
                tags: BTreeMap::new(),
            },
        ),
        (
            "abort_upload",
            Command::AbortUpload {
                upload_id: "u-1".into(),
            },
        ),
        (
            "register_node",
            Command::RegisterNode {
                node: NodeInfo {
                    labels: Default::default(),
                    id: NodeId(3),
                    zone: "zone-b".into(),
                    addr: "10.0.0.3:7100".into(),
                    capacity_bytes: 100 << 30,
                },
            },
        ),
        (
            "create_key",
            Command::CreateKey {
                key: AccessKey {
                    access_key: "AKIDEXAMPLE".into(),
                    secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                    name: "ops".into(),
                    root: false,
                    created_ms: 1_764_460_800_000,
                },
            },
        ),
        ("delete_key", Command::DeleteKey { name: "ops".into() }),
        (
            "reseal_key",
            Command::ResealKey {
                access_key: "AKIDEXAMPLE".into(),
                created_ms: 1_764_460_800_000,
                from: Some("weft-sealed:v1:8899aabbccddeeff:b2xk".into()),
                sealed: "weft-sealed:v1:0011223344556677:bm9uY2U".into(),
            },
        ),
        (
            "warm",
            Command::Warm {
                warm: weft_common::warm::Warm {
                    zone: "zone-a".into(),
                    bucket: "photos".into(),
                    prefix: "train/".into(),
                    pinned: true,
                    created_ms: 1_764_460_800_000,
                    expires_ms: Some(1_764_547_200_000),
                },
            },
        ),
        (
            "drop_warm",
            Command::DropWarm {
                zone: "zone-a".into(),
                bucket: "photos".into(),
                prefix: "train/".into(),
                created_ms: Some(1_764_460_800_000),
            },
        ),
        (
            "add_cache_copy",
            Command::AddCacheCopy {
                segment: segment().id,
                index: 1,
                node: NodeId(4),
            },
        ),
        (
            "drop_cache_copies",
            Command::DropCacheCopies {
                segment: segment().id,
                copies: vec![(1, NodeId(4))],
            },
        ),
        (
            "move_shard",
            Command::MoveShard {
                segment: segment().id,
                index: 2,
                from: None,
                to: NodeId(3),
            },
        ),
        (
            "drop_shard",
            Command::DropShard {
                segment: segment().id,
                index: 1,
                node: NodeId(2),
            },
        ),
        (
            "set_node_admin",
            Command::SetNodeAdmin {
                node: NodeId(4),
                admin: NodeAdmin::Draining,
            },
        ),
        (
            "set_repair_config",
            Command::SetRepairConfig {
                config: RepairConfig {
                    rate_bytes_per_sec: 200 << 20,
                    priority: RepairPriority::High,
                },
            },
        ),
        (
            "set_upload_timers",
            Command::SetUploadTimers {
                upload_max_age_ms: Some(1_800_000),
                gc_grace_ms: None,
                seed: false,
                at_ms: 1_764_460_800_000,
            },
        ),
        (
            "batch",
            Command::Batch {
                commands: vec![request(Command::DeleteKey { name: "a".into() })],
            },
        ),
        (
            "request",
            request(Command::AbortUpload {
                upload_id: "u-2".into(),
            }),
        ),
        (
            "report_damage",
            Command::ReportDamage {
                segment: segment().id,
                index: 0,
                node: NodeId(1),
                damage: damage(),
            },
        ),
        (
            "damage_repaired",
            Command::DamageRepaired {
                segment: segment().id,
                index: 0,
                node: NodeId(1),
                damage: damage(),
            },
        ),
    ];
    let results: Vec<(&str, CommandResult)> = vec![
        ("result_done", CommandResult::Done),
        (
            "result_replaced",
            CommandResult::Replaced {
                previous: Some(version()),
            },
        ),
        (
            "result_released",
            CommandResult::Released {
                segments: vec![segment()],
            },
        ),
        (
            "result_version_deleted",
            CommandResult::VersionDeleted {
                released: None,
                delete_marker: Some("00000000000000000000000000000007".into()),
            },
        ),
        (
            "result_batch",
            CommandResult::Batch {
                results: vec![CommandResult::Done],
            },
        ),
        (
            "result_refused",
            CommandResult::Refused {
                refusal: Refusal::InvalidPart { part_number: 2 },
            },
        ),
        (
            "result_refused_timers",
            CommandResult::Refused {
                refusal: Refusal::UnsafeTimers {
                    message: "gc_grace_ms too short".into(),
                },
            },
        ),
    ];
    let mut out: Vec<(&'static str, serde_json::Value)> = Vec::new();
    for (name, c) in commands {
        out.push((name, serde_json::to_value(c).expect("encodes")));
    }
    for (name, r) in results {
        out.push((name, serde_json::to_value(r).expect("encodes")));
    }
    out.push((
        "query_object",
        serde_json::to_value(Query::Object {
            bucket: "photos".into(),
            key: "2026/cat.jpg".into(),
        })
        .expect("encodes"),
    ));
    out.push((
        "query_shards_held",
        serde_json::to_value(Query::ShardsHeld {
            node: NodeId(1),
            shards: vec![(segment().id, 3)],
        })
        .expect("encodes"),
    ));
    out.push((
        "query_segments",
        serde_json::to_value(Query::Segments {
            after: Some(segment().id),
            max: 1000,
        })
        .expect("encodes"),
    ));
    out.push((
        "heartbeat",
        serde_json::to_value(Heartbeat {
            node: NodeId(2),
            used_bytes: 1 << 30,
            space: SpaceReport {
                state: SpaceState::Nearfull,
                fullness_ppm: 870_000,
                fs_used_bytes: 87 << 30,
                fs_size_bytes: 100 << 30,
                reason: "87% used, above nearfull_ratio 0.85".into(),
            },
        })
        .expect("encodes"),
    ));
    out.push((
        "shard_put_reply",
        serde_json::to_value(ShardPutReply {
            bytes: 1 << 20,
            crc32c: 7,
        })
        .expect("encodes"),
    ));
    out.push((
        "shard_release_batch",
        serde_json::to_value(ShardReleaseBatch {
            shards: vec![ShardRef {
                segment: segment().id,
                index: 4,
            }],
            hold: true,
            hold_full: false,
        })
        .expect("encodes"),
    ));
    out.push((
        "shard_release_reply",
        serde_json::to_value(ShardReleaseReply {
            deleted: 1,
            absent: 2,
            deferred: 3,
            dropped: 4,
        })
        .expect("encodes"),
    ));
    out.push((
        "rpc_error",
        serde_json::to_value(RpcErrorBody {
            code: RpcErrorCode::DiskFull,
            message: "metad 1 is low on disk space".into(),
            leader_addr: Some("10.0.0.1:7000".into()),
            damage: None,
        })
        .expect("encodes"),
    ));
    // ---- format 2: the audit chain (appended; lines above are format 1) ----
    let event = weft_common::audit::AuditEvent {
        at_ms: 1_764_460_800_000,
        kind: weft_common::audit::EventKind::Denial,
        actor: "datad at 10.0.0.7".into(),
        action: "POST /v1/query".into(),
        target: "keys".into(),
        outcome: "denied: needs role admin, gateway".into(),
        count: 3,
    };
    out.push((
        "request",
        serde_json::to_value(Command::Request {
            format: 2,
            id: RequestId(0x43),
            at_ms: 1_764_460_800_000,
            command: Box::new(Command::DeleteKey { name: "a".into() }),
            actor: Some(weft_common::audit::Actor {
                principal: Some("admin-cert ops".into()),
                via: "gateway at 10.0.0.2".into(),
            }),
        })
        .expect("encodes"),
    ));
    out.push((
        "audit",
        serde_json::to_value(Command::Audit {
            events: vec![event.clone()],
        })
        .expect("encodes"),
    ));
    out.push((
        "audit_checkpoint",
        serde_json::to_value(Command::AuditCheckpoint {
            checkpoint: weft_common::audit::AuditCheckpoint {
                seq: 9,
                hash: "ab".repeat(32),
                at_ms: 1_764_460_800_000,
                public_key: "cd".repeat(32),
                signature: "ef".repeat(64),
            },
        })
        .expect("encodes"),
    ));
    out.push((
        "set_audit_config",
        serde_json::to_value(Command::SetAuditConfig { data_plane: true }).expect("encodes"),
    ));
    out.push((
        "audit_prune",
        serde_json::to_value(Command::AuditPrune { through: 9 }).expect("encodes"),
    ));
    out.push((
        "query_audit",
        serde_json::to_value(Query::Audit { after: 9, max: 100 }).expect("encodes"),
    ));
    out.push((
        "query_audit_info",
        serde_json::to_value(Query::AuditInfo).expect("encodes"),
    ));
    out.push((
        "query_warms",
        serde_json::to_value(Query::Warms).expect("encodes"),
    ));
    out.push((
        "query_placements",
        serde_json::to_value(Query::Placements {
            bucket: "photos".into(),
            prefix: "train/".into(),
            after: Some("train/0042".into()),
            max: 5000,
        })
        .expect("encodes"),
    ));
    out.push((
        "query_placement_table",
        serde_json::to_value(Query::PlacementTable {
            bucket: "photos".into(),
            prefix: "train/".into(),
            after: Some("train/0042".into()),
            max: 5000,
        })
        .expect("encodes"),
    ));
    out.push((
        "result_placement_table",
        serde_json::to_value(QueryResult::PlacementTable {
            table: weft_common::placement_table::PlacementTable {
                placements: vec![weft_common::placement_table::Placement {
                    layout: segment().layout,
                    shards: segment().shards,
                    cache: vec![weft_common::warm::CacheCopy {
                        index: 2,
                        node: NodeId(3),
                        zone: "west-1".into(),
                    }],
                }],
                objects: vec![weft_common::placement_table::TabledObject {
                    key: "train/0043".into(),
                    size: 5 << 20,
                    segments: vec![weft_common::placement_table::TabledSegment(
                        0,
                        5 << 20,
                        (5 << 20) / 4,
                    )],
                }],
            },
            next: Some("train/0043".into()),
        })
        .expect("encodes"),
    ));
    out.push((
        "register_node",
        serde_json::to_value(Command::RegisterNode {
            node: NodeInfo {
                id: NodeId(12),
                zone: "west-1".into(),
                addr: "10.0.0.12:7100".into(),
                capacity_bytes: 1 << 40,
                labels: [
                    ("tier".to_string(), "cold".to_string()),
                    ("region".to_string(), "west".to_string()),
                ]
                .into(),
            },
        })
        .expect("encodes"),
    ));
    out.push((
        "result_audit",
        serde_json::to_value(QueryResult::Audit {
            entries: vec![weft_common::audit::AuditEntry::chain(1, &[0; 32], event)],
        })
        .expect("encodes"),
    ));
    // ---- format 3: storage classes as data (appended) ----
    let glacier = weft_common::storage_class::default_classes()
        .into_iter()
        .find(|c| c.name == "GLACIER_IR")
        .expect("a default class");
    out.push((
        "seed_storage_classes",
        serde_json::to_value(Command::SeedStorageClasses {
            classes: vec![glacier.clone()],
        })
        .expect("encodes"),
    ));
    out.push((
        "put_storage_class",
        serde_json::to_value(Command::PutStorageClass {
            class: glacier,
            migrate: false,
        })
        .expect("encodes"),
    ));
    out.push((
        "delete_storage_class",
        serde_json::to_value(Command::DeleteStorageClass {
            name: "ONEZONE_IA".into(),
        })
        .expect("encodes"),
    ));
    let mut placed = segment();
    placed.placement = Some(weft_common::storage_class::PlacementRule {
        select: weft_common::storage_class::Selector::parse("tier=cold,zone=west")
            .expect("a selector"),
        spread_zones: false,
    });
    out.push((
        "request",
        serde_json::to_value(Command::Request {
            format: 3,
            id: RequestId(0x44),
            at_ms: 1_764_460_800_000,
            command: Box::new(Command::PutPart {
                upload_id: "u-3".into(),
                part: weft_common::manifest::UploadPart {
                    part_number: 1,
                    size: placed.len,
                    etag: "e".into(),
                    crc32c: 7,
                    last_modified_ms: 1_764_460_800_000,
                    checksums: BTreeMap::new(),
                    segments: vec![placed],
                },
            }),
            actor: None,
        })
        .expect("encodes"),
    ));
    out.push((
        "set_bucket_residency",
        serde_json::to_value(Command::SetBucketResidency {
            bucket: "photos".into(),
            residency: Some(weft_common::residency::Residency::zones([
                "zone-a".to_string(),
                "zone-b".to_string(),
            ])),
        })
        .unwrap(),
    ));
    out.push((
        "set_bucket_tiering",
        serde_json::to_value(Command::SetBucketTiering {
            bucket: "photos".into(),
            change: weft_common::lifecycle::tiering::TieringChange::Config {
                id: "archive".into(),
                config: Some(weft_common::lifecycle::tiering::TieringConfig {
                    id: "archive".into(),
                    enabled: true,
                    filter: weft_common::lifecycle::Filter {
                        prefix: "raw/".into(),
                        ..Default::default()
                    },
                    archive_days: Some(90),
                    deep_archive_days: Some(180),
                }),
            },
        })
        .unwrap(),
    ));
    out.push((
        "record_access",
        serde_json::to_value(Command::RecordAccess {
            reads: vec![weft_common::lifecycle::tiering::Read {
                bucket: "photos".into(),
                key: "cat.jpg".into(),
                version_id: VersionId(0xfeed_beef),
                at_ms: 1_764_460_800_000,
            }],
        })
        .unwrap(),
    ));
    out.push((
        "set_bucket_lifecycle",
        serde_json::to_value(Command::SetBucketLifecycle {
            bucket: "photos".into(),
            config: Some(weft_common::lifecycle::LifecycleConfig {
                rules: vec![weft_common::lifecycle::Rule {
                    id: "tmp".into(),
                    enabled: true,
                    filter: weft_common::lifecycle::Filter {
                        prefix: "tmp/".into(),
                        tags: [("class".to_string(), "scratch".to_string())].into(),
                        size_greater_than: Some(1),
                        size_less_than: None,
                    },
                    expiration: Some(weft_common::lifecycle::Expiration::Days(7)),
                    noncurrent_expiration: Some(weft_common::lifecycle::NoncurrentExpiration {
                        days: 3,
                        newer_noncurrent_versions: Some(2),
                    }),
                    abort_incomplete_days: Some(1),
                    ..Default::default()
                }],
            }),
        })
        .expect("encodes"),
    ));
    out.push((
        "lifecycle",
        serde_json::to_value(Command::Lifecycle {
            bucket: "photos".into(),
            key: "tmp/a".into(),
            step: weft_common::lifecycle::Step::ExpireCurrent {
                version_id: VersionId(0x45),
                marker_id: VersionId(0x46),
            },
            at_ms: 1_764_460_800_000,
        })
        .expect("encodes"),
    ));
    out.push((
        "seed_lifecycle_day",
        serde_json::to_value(Command::SeedLifecycleDay { day_ms: 86_400_000 }).expect("encodes"),
    ));
    out.push((
        "query_storage_classes",
        serde_json::to_value(Query::StorageClasses).expect("encodes"),
    ));
    out.push((
        "result_storage_classes",
        serde_json::to_value(QueryResult::StorageClasses {
            classes: weft_common::storage_class::default_classes(),
            usage: vec![weft_common::rpc::ClassUsageRow {
                class: "GLACIER_IR".into(),
                bucket: "photos".into(),
                usage: weft_common::storage_class::ClassUsage {
                    segments: 2,
                    bytes: 10 << 20,
                    stored_bytes: 15 << 20,
                },
            }],
            migrating: vec![],
        })
        .expect("encodes"),
    ));
    out.push((
        "result_refused_class",
        serde_json::to_value(CommandResult::Refused {
            refusal: Refusal::ClassRefused {
                message: "storage class GLACIER_IR holds 3 segments".into(),
            },
        })
        .expect("encodes"),
    ));
    let mut moved = segment();
    moved.id = SegmentId(0x77);
    moved.placement = Some(weft_common::storage_class::PlacementRule {
        select: weft_common::storage_class::Selector::parse("tier=cold").expect("a selector"),
        spread_zones: false,
    });
    let step = weft_common::lifecycle::Step::TransitionCurrent {
        version_id: VersionId(0x45),
        class: "GLACIER_IR".into(),
    };
    out.push((
        "transition_version",
        serde_json::to_value(Command::TransitionVersion {
            bucket: "photos".into(),
            key: "raw/a".into(),
            version_id: VersionId(0x45),
            from_class: "STANDARD".into(),
            to_class: "GLACIER_IR".into(),
            segments: vec![(segment().id, moved.clone())],
            step: Some(step.clone()),
            at_ms: 1_764_460_800_000,
        })
        .expect("encodes"),
    ));
    out.push((
        "set_lifecycle_cursor",
        serde_json::to_value(Command::SetLifecycleCursor {
            cursor: weft_common::lifecycle::Cursor {
                pass_started_ms: 1_764_460_800_000,
                keys: [("photos".to_string(), "raw/a".to_string())].into(),
                done: ["logs".to_string()].into(),
                upload: None,
                uploads_done: false,
            },
        })
        .expect("encodes"),
    ));
    out.push((
        "finish_class_migration",
        serde_json::to_value(Command::FinishClassMigration {
            class: weft_common::storage_class::default_classes()
                .into_iter()
                .find(|c| c.name == "GLACIER_IR")
                .expect("a default class"),
            epoch: 0,
        })
        .expect("encodes"),
    ));
    out.push((
        "lifecycle_transition_rules",
        serde_json::to_value(weft_common::lifecycle::LifecycleConfig {
            rules: vec![weft_common::lifecycle::Rule {
                id: "cold".into(),
                enabled: true,
                transitions: vec![
                    weft_common::lifecycle::Transition {
                        at: weft_common::lifecycle::TransitionAt::Days(30),
                        class: "STANDARD_IA".into(),
                    },
                    weft_common::lifecycle::Transition {
                        at: weft_common::lifecycle::TransitionAt::Days(90),
                        class: "GLACIER_IR".into(),
                    },
                ],
                noncurrent_transitions: vec![weft_common::lifecycle::NoncurrentTransition {
                    days: 30,
                    newer_noncurrent_versions: Some(1),
                    class: "GLACIER_IR".into(),
                }],
                ..Default::default()
            }],
        })
        .expect("encodes"),
    ));
    out.push((
        "transition_poll",
        serde_json::to_value(weft_common::transition::TransitionPoll {
            node: NodeId(3),
            free_slots: 1,
            finished: vec![weft_common::transition::TransitionOutcome {
                id: 9,
                ok: false,
                superseded: true,
                bytes: 0,
                error: Some("commit refused: Stale".into()),
            }],
        })
        .expect("encodes"),
    ));
    out.push((
        "transition_assignment",
        serde_json::to_value(weft_common::transition::TransitionAssignment {
            tasks: vec![weft_common::transition::TransitionTask {
                id: 10,
                bucket: "photos".into(),
                key: "raw/a".into(),
                version_id: VersionId(0x45),
                from_class: "STANDARD".into(),
                to_class: "GLACIER_IR".into(),
                size: 5 << 20,
                crc32c: 7,
                step: Some(step),
                at_ms: 1_764_460_800_000,
                segments: vec![weft_common::transition::SegmentMove {
                    old: segment().id,
                    old_layout: segment().layout,
                    old_shard_len: segment().shard_len,
                    sources: vec![weft_common::repair::ShardSource {
                        index: 0,
                        node: NodeId(1),
                        addr: "127.0.0.1:7001".into(),
                    }],
                    targets: vec![Some("127.0.0.1:7101".into()), None],
                    new: moved,
                }],
            }],
            rate_bytes_per_sec: 16 << 20,
        })
        .expect("encodes"),
    ));
    out
}

/// Decodes one golden line's value back into the type it was made from and
/// re-encodes it, so a line that no longer decodes (or decodes to something
/// else) fails.
fn roundtrip(name: &str, v: &serde_json::Value) -> serde_json::Value {
    fn again<T: serde::Serialize + serde::de::DeserializeOwned>(
        v: &serde_json::Value,
    ) -> serde_json::Value {
        let t: T = serde_json::from_value(v.clone()).expect("golden line decodes");
        serde_json::to_value(t).expect("encodes")
    }
    match name {
        "result_audit" | "result_storage_classes" | "result_placement_table" => {
            again::<QueryResult>(v)
        }
        n if n.starts_with("result_") => again::<CommandResult>(v),
        n if n.starts_with("query_") => again::<Query>(v),
        "heartbeat" => again::<Heartbeat>(v),
        "shard_put_reply" => again::<ShardPutReply>(v),
        "shard_release_batch" => again::<ShardReleaseBatch>(v),
        "shard_release_reply" => again::<ShardReleaseReply>(v),
        "rpc_error" => again::<RpcErrorBody>(v),
        "lifecycle_transition_rules" => again::<weft_common::lifecycle::LifecycleConfig>(v),
        "transition_poll" => again::<weft_common::transition::TransitionPoll>(v),
        "transition_assignment" => again::<weft_common::transition::TransitionAssignment>(v),
        _ => again::<Command>(v),
    }
}

#[test]
fn rpc_and_raft_command_encodings_match_golden_v1() {
    let examples = examples();
    let encoded: String = examples
        .iter()
        .map(|(name, v)| format!("{}\n", serde_json::json!({ "case": name, "value": v })))
        .collect();
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(GOLDEN, &encoded).expect("write golden file");
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("golden file exists");
    let lines: Vec<serde_json::Value> = golden
        .lines()
        .map(|l| serde_json::from_str(l).expect("golden line is JSON"))
        .collect();
    assert_eq!(
        lines.len(),
        examples.len(),
        "a case was added or removed without blessing"
    );
    for ((name, value), line) in examples.iter().zip(&lines) {
        assert_eq!(line["case"], *name, "golden cases out of order");
        assert_eq!(
            &line["value"], value,
            "the encoding of {name} changed: a new format needs a new version, not an edit"
        );
        assert_eq!(
            roundtrip(name, &line["value"]),
            line["value"],
            "golden {name} no longer decodes to the same value"
        );
    }
}

#[test]
fn every_command_variant_has_a_golden_case() {
    // serde's tag of each command example; a new variant without a case
    // fails here (the count of variants is in the match below, which the
    // compiler keeps exhaustive).
    fn tag(c: &Command) -> &'static str {
        match c {
            Command::CreateBucket { .. } => "create_bucket",
            Command::DeleteBucket { .. } => "delete_bucket",
            Command::PutObject { .. } => "put_object",
            Command::DeleteObject { .. } => "delete_object",
            Command::DeleteObjectVersion { .. } => "delete_object_version",
            Command::SetBucketVersioning { .. } => "set_bucket_versioning",
            Command::CreateUpload { .. } => "create_upload",
            Command::PutPart { .. } => "put_part",
            Command::CompleteUpload { .. } => "complete_upload",
            Command::SetObjectTags { .. } => "set_object_tags",
            Command::SetBucketTags { .. } => "set_bucket_tags",
            Command::AbortUpload { .. } => "abort_upload",
            Command::RegisterNode { .. } => "register_node",
            Command::CreateKey { .. } => "create_key",
            Command::DeleteKey { .. } => "delete_key",
            Command::ResealKey { .. } => "reseal_key",
            Command::MoveShard { .. } => "move_shard",
            Command::DropShard { .. } => "drop_shard",
            Command::SetNodeAdmin { .. } => "set_node_admin",
            Command::SetRepairConfig { .. } => "set_repair_config",
            Command::SetUploadTimers { .. } => "set_upload_timers",
            Command::Batch { .. } => "batch",
            Command::Request { .. } => "request",
            Command::ReportDamage { .. } => "report_damage",
            Command::DamageRepaired { .. } => "damage_repaired",
            Command::Audit { .. } => "audit",
            Command::AuditCheckpoint { .. } => "audit_checkpoint",
            Command::SetAuditConfig { .. } => "set_audit_config",
            Command::AuditPrune { .. } => "audit_prune",
            Command::SeedStorageClasses { .. } => "seed_storage_classes",
            Command::PutStorageClass { .. } => "put_storage_class",
            Command::DeleteStorageClass { .. } => "delete_storage_class",
            Command::SetBucketLifecycle { .. } => "set_bucket_lifecycle",
            Command::Lifecycle { .. } => "lifecycle",
            Command::SeedLifecycleDay { .. } => "seed_lifecycle_day",
            Command::TransitionVersion { .. } => "transition_version",
            Command::SetLifecycleCursor { .. } => "set_lifecycle_cursor",
            Command::FinishClassMigration { .. } => "finish_class_migration",
            Command::SetBucketTiering { .. } => "set_bucket_tiering",
            Command::RecordAccess { .. } => "record_access",
            Command::SetBucketResidency { .. } => "set_bucket_residency",
            Command::Warm { .. } => "warm",
            Command::DropWarm { .. } => "drop_warm",
            Command::AddCacheCopy { .. } => "add_cache_copy",
            Command::DropCacheCopies { .. } => "drop_cache_copies",
        }
    }
    // Every line that decodes as a command is named for its variant, and
    // the command lines cover every variant once.
    const VARIANTS: usize = 45;
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in examples() {
        if let Ok(c) = serde_json::from_value::<Command>(value) {
            assert_eq!(tag(&c), name);
            // A request, and a registration (labels), appear once per format.
            assert!(
                seen.insert(name) || name == "request" || name == "register_node",
                "{name} twice"
            );
        }
    }
    assert_eq!(
        seen.len(),
        VARIANTS,
        "every Command variant needs a golden case: {seen:?}"
    );
}

/// Format 1 requests are written without a format field (so their bytes
/// are what they were before formats were numbered) and read as format 1;
/// a newer format is kept on decode, so metad can refuse it.
#[test]
fn request_format_is_implicit_for_v1_and_kept_when_newer() {
    let v1 = request(Command::DeleteKey { name: "a".into() });
    let json = serde_json::to_value(&v1).unwrap();
    assert!(json.get("format").is_none(), "{json}");
    assert_eq!(serde_json::from_value::<Command>(json).unwrap(), v1);
    let mut newer = serde_json::to_value(&v1).unwrap();
    newer["format"] = serde_json::json!(2);
    match serde_json::from_value::<Command>(newer).unwrap() {
        Command::Request { format, .. } => assert_eq!(format, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rpc_format_header_accepts_this_format_and_older_and_refuses_newer() {
    use weft_common::rpc::{check_rpc_format, FormatError, RPC_FORMAT};
    assert_eq!(check_rpc_format(None), Ok(()));
    assert_eq!(check_rpc_format(Some("1")), Ok(()));
    assert_eq!(
        check_rpc_format(Some(&(RPC_FORMAT + 1).to_string())),
        Err(FormatError::Newer(RPC_FORMAT + 1))
    );
    assert!(matches!(
        check_rpc_format(Some("v2")),
        Err(FormatError::Malformed(_))
    ));
    assert!(matches!(
        check_rpc_format(Some("0")),
        Err(FormatError::Malformed(_))
    ));
}
