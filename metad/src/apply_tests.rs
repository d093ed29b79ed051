//! Property tests of the apply rule: a command applied twice — at once, or
//! later with other commands in between — changes nothing the second time
//! and never releases a segment that anything still references.
//!
//! Operations are drawn from every command kind over small pools of buckets
//! (one unversioned, one versioned), keys and uploads, so they collide
//! often: overwrites, re-uploaded parts with the same ETag, completions
//! racing part uploads. Every segment and version id is fresh, as in the
//! real system. After each application the checker asserts:
//!
//! - no segment a result releases is referenced afterwards;
//! - no segment ever released is referenced again (a retry resurrecting a
//!   version or part whose shards were already freed);
//! - the segment index holds exactly the referenced segments;
//! - the effects apply reports are the result's releases and exactly how
//!   the index changed (so the index is kept by what apply says it did);
//! - a second application leaves every table as it was (digest equal) and
//!   has no effects.
//!
//! Request runs also advance leader time by 30 s per command, so records
//! older than the retention are pruned along the way (retries come within
//! five commands, well inside it), apply some duplicates as a batch holding
//! the same request twice, and move the state through a snapshot midway, so
//! request records must survive dump and install.

use std::collections::BTreeSet;

use proptest::prelude::*;
use weft_common::manifest::{AccessKey, BucketInfo, ObjectVersion, Segment, Upload, UploadPart};
use weft_common::profile::Layout;
use weft_common::repair::RepairConfig;
use weft_common::rpc::{Command, CommandResult};
use weft_common::topology::{NodeAdmin, NodeInfo};
use weft_common::upload_timers::UploadTimers;
use weft_common::{NodeId, RequestId, SegmentId, VersionId};

use crate::effects::Applied;
use crate::state_machine::StateMachine;

mod cases;

const BUCKETS: [&str; 3] = ["plain", "versioned", "suspended"];
const KEYS: [&str; 2] = ["k1", "k2"];
/// Upload id → (bucket, key).
const UPLOADS: [(&str, usize, usize); 3] = [("u1", 0, 0), ("u2", 1, 1), ("u3", 1, 0)];
const PART_BYTES: u64 = 10;

/// An operation before ids are assigned.
#[derive(Clone, Debug)]
enum Op {
    Put {
        b: usize,
        k: usize,
    },
    Delete {
        b: usize,
        k: usize,
    },
    DeleteVersion {
        b: usize,
        k: usize,
        pick: usize,
    },
    SetTags {
        b: usize,
        k: usize,
    },
    BucketTags {
        b: usize,
    },
    CreateUpload {
        u: usize,
    },
    PutPart {
        u: usize,
        n: u32,
    },
    Complete {
        u: usize,
        parts: u32,
    },
    Abort {
        u: usize,
    },
    Move {
        pick: usize,
        to: u64,
    },
    Drop {
        pick: usize,
    },
    NodeAdmin {
        n: u64,
    },
    RepairConfig,
    /// Set (or only seed) the upload timers to one of two safe pairs.
    UploadTimers {
        long: bool,
        seed: bool,
    },
    CreateKey {
        n: usize,
    },
    DeleteKey {
        n: usize,
    },
    CreateBucket,
    DeleteBucket {
        b: usize,
    },
    /// Enable or suspend versioning on one of the versioned buckets.
    Versioning {
        b: usize,
        enabled: bool,
    },
    /// Move one of the versions put so far to GLACIER_IR: new segments, or
    /// (`relabel`) the same ones under a new rule.
    Transition {
        pick: usize,
        relabel: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let b = 0..BUCKETS.len();
    let k = 0..KEYS.len();
    let u = 0..UPLOADS.len();
    prop_oneof![
        4 => (b.clone(), k.clone()).prop_map(|(b, k)| Op::Put { b, k }),
        2 => (b.clone(), k.clone()).prop_map(|(b, k)| Op::Delete { b, k }),
        2 => (b.clone(), k.clone(), any::<usize>())
            .prop_map(|(b, k, pick)| Op::DeleteVersion { b, k, pick }),
        1 => (b.clone(), k.clone()).prop_map(|(b, k)| Op::SetTags { b, k }),
        1 => b.clone().prop_map(|b| Op::BucketTags { b }),
        2 => u.clone().prop_map(|u| Op::CreateUpload { u }),
        4 => (u.clone(), 1u32..=2).prop_map(|(u, n)| Op::PutPart { u, n }),
        3 => (u.clone(), 1u32..=2).prop_map(|(u, parts)| Op::Complete { u, parts }),
        1 => u.prop_map(|u| Op::Abort { u }),
        2 => (any::<usize>(), 1u64..=4).prop_map(|(pick, to)| Op::Move { pick, to }),
        1 => any::<usize>().prop_map(|pick| Op::Drop { pick }),
        1 => (1u64..=4).prop_map(|n| Op::NodeAdmin { n }),
        1 => Just(Op::RepairConfig),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(long, seed)| Op::UploadTimers { long, seed }),
        1 => (0usize..2).prop_map(|n| Op::CreateKey { n }),
        1 => (0usize..2).prop_map(|n| Op::DeleteKey { n }),
        1 => Just(Op::CreateBucket),
        1 => b.prop_map(|b| Op::DeleteBucket { b }),
        1 => (1usize..3, any::<bool>()).prop_map(|(b, enabled)| Op::Versioning { b, enabled }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, relabel)| Op::Transition { pick, relabel }),
    ]
}

/// When an operation is applied again.
#[derive(Clone, Copy, Debug)]
enum Again {
    Never,
    AtOnce,
    /// After this many later operations.
    After(usize),
    /// Twice in one batch (one raft entry).
    InBatch,
}

fn again(later: bool) -> impl Strategy<Value = Again> {
    if later {
        prop_oneof![
            2 => Just(Again::Never),
            1 => Just(Again::AtOnce),
            1 => Just(Again::InBatch),
            2 => (1usize..6).prop_map(Again::After),
        ]
        .boxed()
    } else {
        prop_oneof![2 => Just(Again::Never), 1 => Just(Again::AtOnce)].boxed()
    }
}

/// Turns operations into commands with fresh ids, as gateways would.
#[derive(Default)]
struct Builder {
    next: u128,
    segments: Vec<SegmentId>,
    versions: Vec<String>,
    /// Versions put: (bucket, key, version, its segments).
    put: Vec<(usize, usize, VersionId, Vec<Segment>)>,
}

impl Builder {
    fn fresh(&mut self) -> u128 {
        self.next += 1;
        self.next
    }

    fn segments(&mut self, n: usize) -> Vec<Segment> {
        (0..n)
            .map(|i| {
                let id = SegmentId(self.fresh());
                self.segments.push(id);
                Segment {
                    id,
                    offset: i as u64 * 5,
                    len: 5,
                    layout: Layout::Replicated { copies: 3 },
                    shards: vec![Some(NodeId(1)), Some(NodeId(2)), Some(NodeId(3))],
                    shard_len: 5,
                    placement: None,
                    cache: vec![],
                }
            })
            .collect()
    }

    fn version(&mut self, size: u64, segments: Vec<Segment>) -> ObjectVersion {
        let id = VersionId(self.fresh());
        self.versions.push(id.to_string());
        ObjectVersion {
            version_id: id,
            size,
            etag: format!("etag-{}", id.0),
            crc32c: 0,
            last_modified_ms: 1_000,
            storage_class: "STANDARD".into(),
            user_metadata: Default::default(),
            content: Default::default(),
            checksums: Default::default(),
            checksum_type: None,
            version_label: None,
            part_sizes: vec![],
            tags: Default::default(),
            segments,
            tier: None,
            last_access_ms: None,
        }
    }

    fn key(n: usize) -> AccessKey {
        AccessKey {
            access_key: format!("AK{n}"),
            secret_key: "secret".into(),
            name: format!("key{n}"),
            root: false,
            created_ms: 1,
        }
    }

    fn build(&mut self, op: &Op) -> Command {
        match *op {
            Op::Put { b, k } => {
                let segs = self.segments(2);
                let version = self.version(10, segs.clone());
                self.put.push((b, k, version.version_id, segs));
                Command::PutObject {
                    bucket: BUCKETS[b].into(),
                    key: KEYS[k].into(),
                    version,
                    condition: None,
                }
            }
            Op::Transition { pick, relabel } => {
                let Some((b, k, v, segs)) =
                    (!self.put.is_empty()).then(|| self.put[pick % self.put.len()].clone())
                else {
                    return Command::SetBucketTags {
                        bucket: BUCKETS[0].into(),
                        tags: Default::default(),
                    };
                };
                let rule = weft_common::storage_class::PlacementRule::default();
                let pairs = segs
                    .iter()
                    .map(|s| {
                        let mut new = s.clone();
                        new.placement = Some(rule.clone());
                        if !relabel {
                            new.id = SegmentId(self.fresh());
                            self.segments.push(new.id);
                            new.shards = vec![Some(NodeId(4)), Some(NodeId(3)), Some(NodeId(2))];
                        }
                        (s.id, new)
                    })
                    .collect();
                Command::TransitionVersion {
                    bucket: BUCKETS[b].into(),
                    key: KEYS[k].into(),
                    version_id: v,
                    from_class: "STANDARD".into(),
                    to_class: "GLACIER_IR".into(),
                    segments: pairs,
                    step: None,
                    at_ms: 5_000,
                }
            }
            Op::Delete { b, k } => Command::DeleteObject {
                bucket: BUCKETS[b].into(),
                key: KEYS[k].into(),
                marker: Some((VersionId(self.fresh()), 2_000)),
            },
            Op::DeleteVersion { b, k, pick } => Command::DeleteObjectVersion {
                bucket: BUCKETS[b].into(),
                key: KEYS[k].into(),
                version_id: if self.versions.is_empty() {
                    "null".into()
                } else {
                    self.versions[pick % self.versions.len()].clone()
                },
            },
            Op::SetTags { b, k } => Command::SetObjectTags {
                bucket: BUCKETS[b].into(),
                key: KEYS[k].into(),
                tags: [("t".to_string(), self.fresh().to_string())].into(),
            },
            Op::BucketTags { b } => Command::SetBucketTags {
                bucket: BUCKETS[b].into(),
                tags: [("t".to_string(), self.fresh().to_string())].into(),
            },
            Op::CreateUpload { u } => {
                let (id, b, k) = UPLOADS[u];
                Command::CreateUpload {
                    upload: Upload {
                        upload_id: id.into(),
                        bucket: BUCKETS[b].into(),
                        key: KEYS[k].into(),
                        initiated_ms: 1,
                        storage_class: "STANDARD".into(),
                        user_metadata: Default::default(),
                        content: Default::default(),
                        checksum_algorithm: None,
                        checksum_type: None,
                        tags: Default::default(),
                        parts: vec![],
                    },
                }
            }
            // The same ETag for every upload of a part number: a re-upload
            // of the same bytes, the case that must not confuse completion.
            Op::PutPart { u, n } => Command::PutPart {
                upload_id: UPLOADS[u].0.into(),
                part: UploadPart {
                    part_number: n,
                    etag: format!("part-{n}"),
                    size: PART_BYTES,
                    crc32c: 0,
                    last_modified_ms: 1,
                    checksums: Default::default(),
                    segments: self.segments(1),
                },
            },
            Op::Complete { u, parts } => {
                let (id, b, k) = UPLOADS[u];
                let listed: Vec<(u32, String)> =
                    (1..=parts).map(|n| (n, format!("part-{n}"))).collect();
                // The segments a gateway would have read earlier: stale ones
                // on purpose (apply must use the parts it holds).
                let stale = self.segments(1);
                Command::CompleteUpload {
                    upload_id: id.into(),
                    bucket: BUCKETS[b].into(),
                    key: KEYS[k].into(),
                    parts: listed,
                    version: self.version(PART_BYTES * u64::from(parts), stale),
                    condition: None,
                }
            }
            Op::Abort { u } => Command::AbortUpload {
                upload_id: UPLOADS[u].0.into(),
            },
            Op::Move { pick, to } => {
                let segment = self.pick_segment(pick);
                Command::MoveShard {
                    segment,
                    index: (pick % 3) as u8,
                    from: Some(NodeId((pick % 3) as u64 + 1)),
                    to: NodeId(to),
                }
            }
            Op::Drop { pick } => Command::DropShard {
                segment: self.pick_segment(pick),
                index: (pick % 3) as u8,
                node: NodeId((pick % 3) as u64 + 1),
            },
            Op::NodeAdmin { n } => Command::SetNodeAdmin {
                node: NodeId(n),
                admin: if n % 2 == 0 {
                    NodeAdmin::Draining
                } else {
                    NodeAdmin::Active
                },
            },
            Op::RepairConfig => Command::SetRepairConfig {
                config: RepairConfig::default(),
            },
            Op::UploadTimers { long, seed } => Command::SetUploadTimers {
                upload_max_age_ms: Some(if long { 60_000 } else { 30_000 }),
                gc_grace_ms: Some(120_000),
                seed,
                at_ms: self.fresh() as u64,
            },
            Op::CreateKey { n } => Command::CreateKey { key: Self::key(n) },
            Op::DeleteKey { n } => Command::DeleteKey {
                name: Self::key(n).name,
            },
            Op::CreateBucket => Command::CreateBucket {
                bucket: BucketInfo {
                    name: format!("extra-{}", self.fresh() % 3),
                    owner: "AK0".into(),
                    created_ms: 1,
                    tags: Default::default(),
                    versioning: None,
                    lifecycle: None,
                    tiering: None,
                    residency: None,
                },
            },
            Op::DeleteBucket { b } => Command::DeleteBucket {
                name: BUCKETS[b].into(),
            },
            Op::Versioning { b, enabled } => Command::SetBucketVersioning {
                bucket: BUCKETS[b].into(),
                status: if enabled { "Enabled" } else { "Suspended" }.into(),
            },
        }
    }

    fn pick_segment(&self, pick: usize) -> SegmentId {
        if self.segments.is_empty() {
            SegmentId(u128::MAX)
        } else {
            self.segments[pick % self.segments.len()]
        }
    }
}

/// A state machine with the pools' buckets and four nodes.
fn setup() -> (tempfile::TempDir, StateMachine) {
    let dir = tempfile::tempdir().unwrap();
    let sm = StateMachine::open(dir.path()).unwrap();
    for name in BUCKETS {
        let bucket = BucketInfo {
            name: name.into(),
            owner: "AK0".into(),
            created_ms: 1,
            tags: Default::default(),
            versioning: None,
            lifecycle: None,
            tiering: None,
            residency: None,
        };
        sm.apply_for_test(&Command::CreateBucket { bucket })
            .unwrap();
    }
    for (bucket, status) in [
        ("versioned", "Enabled"),
        ("suspended", "Enabled"),
        ("suspended", "Suspended"),
    ] {
        sm.apply_for_test(&Command::SetBucketVersioning {
            bucket: bucket.into(),
            status: status.into(),
        })
        .unwrap();
    }
    for n in 1..=4 {
        let node = NodeInfo {
            labels: Default::default(),
            id: NodeId(n),
            zone: "z".into(),
            addr: format!("127.0.0.1:{n}"),
            capacity_bytes: 1 << 30,
        };
        sm.apply_for_test(&Command::RegisterNode { node }).unwrap();
    }
    (dir, sm)
}

/// Applies `cmd` and checks the invariants; `ever_released` accumulates.
fn apply_checked(
    sm: &StateMachine,
    cmd: &Command,
    ever_released: &mut BTreeSet<SegmentId>,
) -> Applied {
    let (_, indexed_before, _) = sm.references_for_test().unwrap();
    let applied = sm.apply_with_effects_for_test(cmd).unwrap();
    let result = &applied.result;
    let (referenced, indexed, _) = sm.references_for_test().unwrap();
    let released: BTreeSet<SegmentId> = result.released_segments().into_iter().collect();
    let still = released.intersection(&referenced).collect::<Vec<_>>();
    assert!(
        still.is_empty(),
        "{cmd:?} released {still:?}, still referenced"
    );
    ever_released.extend(released);
    let back = ever_released.intersection(&referenced).collect::<Vec<_>>();
    assert!(
        back.is_empty(),
        "{cmd:?} left released segments {back:?} referenced again"
    );
    assert_eq!(
        indexed, referenced,
        "segment index out of step after {cmd:?}"
    );
    check_effects(cmd, &applied, &indexed_before, &indexed);
    applied
}

/// Segments a result releases, with the placement it reports for them.
fn released_in(result: &CommandResult) -> Vec<Segment> {
    match result {
        CommandResult::Replaced { previous: Some(v) }
        | CommandResult::VersionDeleted {
            released: Some(v), ..
        } => v.segments.clone(),
        CommandResult::Released { segments } => segments.clone(),
        CommandResult::Batch { results } => results.iter().flat_map(released_in).collect(),
        _ => vec![],
    }
}

/// The effects apply reported name exactly what the result releases (with
/// the same placement), and are exactly how the index changed: it gained
/// what was added and lost what was released, and nothing else.
fn check_effects(
    cmd: &Command,
    applied: &Applied,
    before: &BTreeSet<SegmentId>,
    after: &BTreeSet<SegmentId>,
) {
    let Applied { result, effects } = applied;
    assert_eq!(
        effects.released,
        released_in(result),
        "{cmd:?}: the effects and the result disagree on what is released"
    );
    let added: BTreeSet<SegmentId> = effects.added.iter().map(|(_, s)| s.id).collect();
    let released: BTreeSet<SegmentId> = effects.released.iter().map(|s| s.id).collect();
    let known: BTreeSet<SegmentId> = before.union(&added).copied().collect();
    assert!(
        released.is_subset(&known),
        "{cmd:?} released {:?}, never indexed",
        released.difference(&known).collect::<Vec<_>>()
    );
    let expected: BTreeSet<SegmentId> = known.difference(&released).copied().collect();
    assert_eq!(
        after, &expected,
        "{cmd:?}: the index changed other than its effects say ({effects:?})"
    );
}

/// Applies `cmd` again and checks that it released nothing and left every
/// table as it was.
fn apply_again(sm: &StateMachine, cmd: &Command, ever_released: &mut BTreeSet<SegmentId>) {
    let before = sm.digest().unwrap();
    let second = apply_checked(sm, cmd, ever_released);
    assert_eq!(
        second.result.released_segments(),
        vec![],
        "{cmd:?} released when applied again"
    );
    assert!(
        second.effects.is_empty(),
        "{cmd:?} had effects when applied again: {:?}",
        second.effects
    );
    assert_eq!(
        sm.digest().unwrap(),
        before,
        "{cmd:?} changed state when applied again"
    );
}

/// Runs `ops`, applying each again as its schedule says; `wrap` turns a
/// command into what is proposed (raw, or a client request).
fn run(ops: &[(Op, Again)], wrap: impl Fn(Command, u128) -> Command) {
    let (dir, mut sm) = setup();
    let mut b = Builder::default();
    let mut ever_released = BTreeSet::new();
    let mut pending: Vec<(usize, Command)> = vec![];
    let mut restored = 0;
    for (i, (op, when)) in ops.iter().enumerate() {
        if i == ops.len() / 2 && i > 0 {
            // Midway, continue on a voter restored from a snapshot.
            let next = dir.path().join(format!("restored-{restored}"));
            restored += 1;
            std::fs::create_dir(&next).unwrap();
            let before = sm.digest().unwrap().1;
            sm = sm.snapshot_roundtrip_for_test(&next).unwrap();
            assert_eq!(
                sm.digest().unwrap().1,
                before,
                "a snapshot did not carry every table"
            );
        }
        let cmd = wrap(b.build(op), i as u128 + 1);
        match when {
            Again::InBatch => {
                let batch = Command::Batch {
                    commands: vec![cmd.clone(), cmd.clone()],
                };
                let r = apply_checked(&sm, &batch, &mut ever_released).result;
                let CommandResult::Batch { results } = r else {
                    panic!("batch answered {r:?}")
                };
                assert_eq!(
                    results[1].released_segments(),
                    vec![],
                    "{cmd:?} released twice in one batch"
                );
            }
            Again::Never => {
                apply_checked(&sm, &cmd, &mut ever_released);
            }
            Again::AtOnce => {
                apply_checked(&sm, &cmd, &mut ever_released);
                apply_again(&sm, &cmd, &mut ever_released);
            }
            Again::After(d) => {
                apply_checked(&sm, &cmd, &mut ever_released);
                pending.push((i + d, cmd));
            }
        }
        for (_, cmd) in pending.extract_if(.., |(due, _)| *due <= i) {
            apply_again(&sm, &cmd, &mut ever_released);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Client requests (every command the metad client sends): applied again
    /// at once or after up to five others, they change nothing.
    #[test]
    fn requests_applied_twice_release_nothing_referenced(
        ops in prop::collection::vec((op(), again(true)), 1..50)
    ) {
        // 30 s of leader time per command: records are pruned as the run
        // goes, retries (within five commands) stay inside the retention.
        run(&ops, |command, n| Command::Request {
            format: weft_common::rpc::COMMAND_FORMAT,
            actor: None,
            id: RequestId(n),
            at_ms: 1_000 + n as u64 * 30_000,
            command: Box::new(command),
        });
    }

    /// Bare commands, re-applied at once: each arm is a no-op by itself,
    /// comparing version and segment ids.
    #[test]
    fn bare_commands_applied_twice_at_once_release_nothing_referenced(
        ops in prop::collection::vec((op(), again(false)), 1..50)
    ) {
        run(&ops, |command, _| command);
    }
}
