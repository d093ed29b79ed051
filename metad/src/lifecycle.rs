//! The lifecycle engine: the metad leader walks each bucket with rules a
//! page of keys at a time and proposes what is due as raft commands.
//!
//! Work per tick is bounded ([`KEYS_PER_TICK`] keys read, each with its
//! history; [`COMMANDS_PER_TICK`] commands proposed), so no tick reads a
//! whole table; a pass over every bucket with rules costs O(keys +
//! versions) reads spread over ticks, plus one raft entry per action and
//! one per tick that moved the cursor: the cursor is replicated
//! (`SetLifecycleCursor`), so a new leader resumes the pass where the old
//! one left it (a step the old leader proposed after its last save is
//! judged again; harmless, as every command re-checks what it acts on).
//!
//! Each action is a `Lifecycle` command naming one [`Step`]; apply plans
//! the key again with the rules, the state and the cluster's day as they
//! are then ([`still_due`]) and acts only if the same step is still due, so
//! a write, a tag change, a deleted version or a rule change since the
//! scan wins. Shards the actions free are reclaimed by the data nodes'
//! garbage collector.

use std::collections::BTreeMap;
use weft_common::lifecycle::tiering::{tier_due, unread_due, Accessed, Tiering, IT_CLASS};
use weft_common::lifecycle::{Current, LifecycleConfig, NoncurrentOf, Step};
use weft_common::manifest::{BucketInfo, ObjectVersion, Upload, VersionRecord};
use weft_common::rpc::Command;

use crate::envelope::{item, SealedRead};
use crate::error::MetaError;
use crate::state_machine::StateMachine;
use crate::tables::*;

/// Keys read per tick, over every bucket.
pub const KEYS_PER_TICK: usize = 1_000;
/// Commands proposed per tick.
pub const COMMANDS_PER_TICK: usize = 256;
/// Uploads read per tick.
pub const UPLOADS_PER_TICK: usize = 1_000;

/// One key as the engine judges it.
#[derive(Debug)]
pub struct KeyState {
    /// The key.
    pub key: String,
    /// Its current version, if it has one (not a delete marker).
    pub current: Option<ObjectVersion>,
    /// Its history in a versioned bucket, newest first.
    pub history: Vec<VersionRecord>,
}

impl StateMachine {
    /// Up to `max` keys of `bucket` after `after` (from the first when
    /// `None`), each with its current version and history, and whether the
    /// bucket has keys beyond them.
    pub fn lifecycle_page(
        &self,
        bucket: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<KeyState>, bool), MetaError> {
        let tx = self.begin_read()?;
        let base = object_key(bucket, "");
        let end = prefix_end(&base);
        use std::ops::Bound::{Excluded, Included};
        // Past `after`'s object key, and past its last history entry (its
        // prefix then an 8-byte sequence); keys that extend `after`
        // (`after/x`) sort after both.
        let (obj_from, hist_from) = match after {
            Some(k) => {
                let mut last = history_prefix(bucket, k);
                last.extend_from_slice(&[0xFF; 8]);
                (Excluded(object_key(bucket, k)), Excluded(last))
            }
            None => (Included(base.clone()), Included(base.clone())),
        };
        // The next keys from both tables, merged: a key whose current
        // entry is a delete marker has history only.
        let mut keys = std::collections::BTreeSet::new();
        let objects = tx.open_table(OBJECTS)?;
        for it in objects.range::<&[u8]>((as_slice(&obj_from), Excluded(end.as_slice())))? {
            let (k, _) = it?;
            keys.insert(String::from_utf8_lossy(&k.value()[base.len()..]).into_owned());
            if keys.len() > max {
                break;
            }
        }
        let versions = tx.open_table(VERSIONS)?;
        let mut seen = 0;
        let mut last: Option<String> = None;
        for it in versions.range::<&[u8]>((as_slice(&hist_from), Excluded(end.as_slice())))? {
            let (k, _) = it?;
            let full = k.value();
            // `bucket \0 key \0 !seq`: 8 bytes of sequence after the separator.
            let key = String::from_utf8_lossy(&full[base.len()..full.len().saturating_sub(9)])
                .into_owned();
            if last.as_deref() != Some(key.as_str()) {
                seen += 1;
                last = Some(key.clone());
                keys.insert(key);
                if seen > max {
                    break;
                }
            }
        }
        let more = keys.len() > max;
        let mut out = vec![];
        for key in keys.into_iter().take(max) {
            let current = objects.get_sealed(T_OBJECTS, object_key(bucket, &key).as_slice())?;
            // Entries are the prefix then an 8-byte sequence; a longer
            // table key belongs to a key that extends this one.
            let hp = history_prefix(bucket, &key);
            let mut he = hp.clone();
            he.extend_from_slice(&[0xFF; 8]);
            let mut history = vec![];
            for it in versions.range::<&[u8]>(hp.as_slice()..=he.as_slice())? {
                let (k, v) = it?;
                if k.value().len() == hp.len() + 8 {
                    history.push(item::<&[u8], VersionRecord>(T_VERSIONS, &k, &v)?);
                }
            }
            out.push(KeyState {
                key,
                current,
                history,
            });
        }
        Ok((out, more))
    }

    /// Up to `max` uploads with ids after `after`, parts left out.
    pub fn uploads_page(&self, after: Option<&str>, max: usize) -> Result<Vec<Upload>, MetaError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(UPLOADS)?;
        let mut out = vec![];
        let range = match after {
            Some(a) => {
                t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
            }
            None => t.range::<&str>(..)?,
        };
        for it in range {
            let (k, v) = it?;
            let mut u: Upload = item(T_UPLOADS, &k, &v)?;
            u.parts.clear();
            out.push(u);
            if out.len() == max {
                break;
            }
        }
        Ok(out)
    }
}

fn as_slice(b: &std::ops::Bound<Vec<u8>>) -> std::ops::Bound<&[u8]> {
    use std::ops::Bound::*;
    match b {
        Included(v) => Included(v.as_slice()),
        Excluded(v) => Excluded(v.as_slice()),
        Unbounded => Unbounded,
    }
}

/// The steps due now for one key under `rules`. `marker_id` names the
/// delete marker an expiration writes (used only in a versioned or
/// suspended bucket; apply ignores it in an unversioned one).
pub fn plan_key(
    rules: &LifecycleConfig,
    tiering: Option<&Tiering>,
    k: &KeyState,
    now_ms: u64,
    day_ms: u64,
    marker_id: weft_common::VersionId,
) -> Vec<Step> {
    let mut out = vec![];
    if let Some(v) = &k.current {
        let cur = Current {
            key: &k.key,
            size: v.size,
            tags: &v.tags,
            modified_ms: v.last_modified_ms,
        };
        if rules.current_due(&cur, now_ms, day_ms).is_some() {
            out.push(Step::ExpireCurrent {
                version_id: v.version_id,
                marker_id,
            });
        } else if let Some(class) = movable(v)
            .then(|| rules.transition_due(&cur, &v.storage_class, now_ms, day_ms))
            .flatten()
        {
            out.push(Step::TransitionCurrent {
                version_id: v.version_id,
                class: class.to_string(),
            });
        } else if let Some(step) = tier_step(tiering, &k.key, v, now_ms, day_ms) {
            out.push(step);
        } else if let Some(class) = movable(v)
            .then(|| {
                unread_due(
                    tiering,
                    &accessed(&k.key, v),
                    &v.storage_class,
                    now_ms,
                    day_ms,
                )
            })
            .flatten()
        {
            out.push(Step::TransitionCurrent {
                version_id: v.version_id,
                class: class.to_string(),
            });
        }
    }
    // The history's first entry is the current version or the current
    // delete marker; the rest are noncurrent, each since the newer entry
    // before it was written.
    let Some((latest, older)) = k.history.split_first() else {
        return out;
    };
    if latest.version.is_none() && older.is_empty() && k.current.is_none() {
        if rules.lone_marker_due(&k.key, latest.last_modified_ms, now_ms, day_ms) {
            out.push(Step::RemoveLoneMarker {
                label: latest.version_id.clone(),
                modified_ms: latest.last_modified_ms,
            });
        }
        return out;
    }
    let empty = BTreeMap::new();
    let noncurrent: Vec<(u64, &BTreeMap<String, String>, u64)> = older
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let newer = if i == 0 { latest } else { &older[i - 1] };
            let (size, tags) = r
                .version
                .as_ref()
                .map_or((0, &empty), |v| (v.size, &v.tags));
            (size, tags, newer.last_modified_ms)
        })
        .collect();
    let removed = rules.noncurrent_due(&k.key, &noncurrent, now_ms, day_ms);
    for &i in &removed {
        out.push(Step::RemoveNoncurrent {
            label: older[i].version_id.clone(),
            modified_ms: older[i].last_modified_ms,
        });
    }
    // Versions (not markers) that stay and can move.
    let classed: Vec<NoncurrentOf<'_>> = noncurrent
        .iter()
        .zip(older)
        .map(|(&(size, tags, since), r)| {
            let class = r
                .version
                .as_ref()
                .filter(|v| movable(v))
                .map_or("", |v| v.storage_class.as_str());
            (size, tags, since, class)
        })
        .collect();
    let mut moving = vec![];
    for (i, class) in rules.noncurrent_transitions_due(&k.key, &classed, now_ms, day_ms) {
        if removed.contains(&i) || classed[i].3.is_empty() {
            continue;
        }
        moving.push(i);
        out.push(Step::TransitionNoncurrent {
            label: older[i].version_id.clone(),
            modified_ms: older[i].last_modified_ms,
            class,
        });
    }
    // Noncurrent Intelligent-Tiering versions tier by access too.
    for (i, r) in older.iter().enumerate() {
        if removed.contains(&i) || moving.contains(&i) {
            continue;
        }
        if let Some(step) = r
            .version
            .as_ref()
            .and_then(|v| tier_step(tiering, &k.key, v, now_ms, day_ms))
        {
            out.push(step);
        }
    }
    out
}

fn accessed<'a>(key: &'a str, v: &'a ObjectVersion) -> Accessed<'a> {
    Accessed {
        key,
        size: v.size,
        tags: &v.tags,
        touched_ms: v.touched_ms(),
    }
}

/// The access-tier move an `INTELLIGENT_TIERING` version is due, if any.
fn tier_step(
    tiering: Option<&Tiering>,
    key: &str,
    v: &ObjectVersion,
    now_ms: u64,
    day_ms: u64,
) -> Option<Step> {
    if v.storage_class != IT_CLASS || !movable(v) {
        return None;
    }
    let to = tier_due(tiering, &accessed(key, v), now_ms, day_ms);
    (to != v.tier).then_some(Step::Tier {
        version_id: v.version_id,
        from: v.tier,
        to,
    })
}

/// Whether a transition re-encodes `v`: some segment is erasure coded.
/// Small objects kept as replicas stay where they are, as S3 leaves
/// objects below the transition minimum; a multipart object whose small
/// last part is replicated moves whole.
fn movable(v: &ObjectVersion) -> bool {
    v.segments
        .iter()
        .any(|s| matches!(s.layout, weft_common::profile::Layout::Erasure { .. }))
}

/// The commands due now for `keys` of `bucket`, key by key.
pub fn plan_keys(
    bucket: &BucketInfo,
    keys: &[KeyState],
    now_ms: u64,
    day_ms: u64,
    mut marker_id: impl FnMut() -> weft_common::VersionId,
) -> Vec<(String, Vec<Command>)> {
    let rules = bucket.lifecycle.clone().unwrap_or_default();
    keys.iter()
        .map(|k| {
            let cmds = plan_key(
                &rules,
                bucket.tiering.as_ref(),
                k,
                now_ms,
                day_ms,
                marker_id(),
            )
            .into_iter()
            .map(|step| Command::Lifecycle {
                bucket: bucket.name.clone(),
                key: k.key.clone(),
                step,
                at_ms: now_ms,
            })
            .collect();
            (k.key.clone(), cmds)
        })
        .collect()
}

/// Aborts due for `uploads` under their buckets' rules.
pub fn plan_uploads(
    buckets: &BTreeMap<String, LifecycleConfig>,
    uploads: &[Upload],
    now_ms: u64,
    day_ms: u64,
) -> Vec<Command> {
    uploads
        .iter()
        .filter(|u| {
            buckets
                .get(&u.bucket)
                .and_then(|r| r.abort_due(&u.key, u.initiated_ms, now_ms, day_ms))
                .is_some()
        })
        .map(|u| Command::Lifecycle {
            bucket: u.bucket.clone(),
            key: u.key.clone(),
            step: Step::AbortUpload {
                upload_id: u.upload_id.clone(),
            },
            at_ms: now_ms,
        })
        .collect()
}

/// A preview: the actions (key, step), the keys judged, whether that was
/// every key, and the day length used.
pub type PreviewOf = (Vec<(String, Step)>, u64, bool, u64);

/// Most keys one preview judges.
pub const PREVIEW_KEYS_MAX: u32 = 100_000;

/// What `bucket`'s rules would do at `now_ms` to its first `max_keys` keys
/// (at most [`PREVIEW_KEYS_MAX`]) and its uploads: the actions, the keys
/// judged, whether that was every key, and the day length used (0 and no
/// actions before the cluster's day is set).
pub fn preview(
    sm: &StateMachine,
    bucket: &str,
    max_keys: u32,
    now_ms: u64,
) -> Result<PreviewOf, MetaError> {
    let Some(day) = sm.lifecycle_day_ms()? else {
        return Ok((vec![], 0, true, 0));
    };
    let Some(info) = sm.bucket(bucket)? else {
        return Ok((vec![], 0, true, day));
    };
    if info.lifecycle.is_none() && info.tiering.is_none() && !sm.holds_class(bucket, IT_CLASS)? {
        return Ok((vec![], 0, true, day));
    }
    let rules = info.lifecycle.clone().unwrap_or_default();
    let budget = max_keys.clamp(1, PREVIEW_KEYS_MAX) as usize;
    let mut actions = vec![];
    let mut judged = 0usize;
    let mut after: Option<String> = None;
    let mut complete = false;
    while judged < budget {
        let (keys, more) = sm.lifecycle_page(
            bucket,
            after.as_deref(),
            (budget - judged).min(KEYS_PER_TICK),
        )?;
        judged += keys.len();
        for k in &keys {
            for step in plan_key(
                &rules,
                info.tiering.as_ref(),
                k,
                now_ms,
                day,
                weft_common::VersionId(0),
            ) {
                actions.push((k.key.clone(), step));
            }
        }
        after = keys.last().map(|k| k.key.clone());
        if !more || after.is_none() {
            complete = true;
            break;
        }
    }
    // The uploads, a page at a time (the table holds every bucket's).
    let mut one = BTreeMap::new();
    one.insert(bucket.to_string(), rules);
    let mut after: Option<String> = None;
    loop {
        let page = sm.uploads_page(after.as_deref(), UPLOADS_PER_TICK)?;
        for c in plan_uploads(&one, &page, now_ms, day) {
            if let Command::Lifecycle { key, step, .. } = c {
                actions.push((key, step));
            }
        }
        if page.len() < UPLOADS_PER_TICK {
            break;
        }
        after = page.last().map(|u| u.upload_id.clone());
    }
    Ok((actions, judged as u64, complete, day))
}

/// The length of a lifecycle day the cluster judges rules by, once its
/// first leader has set it.
pub(crate) fn day_ms<T: redb::ReadableTable<&'static str, &'static [u8]>>(
    meta: &T,
) -> Result<Option<u64>, MetaError> {
    meta.get_sealed(T_META, KEY_LIFECYCLE_DAY)
}

/// Whether `step` on `bucket/key` is still due at `at_ms` under the rules
/// and the state as they are in this transaction: apply's re-check.
pub(crate) fn still_due(
    tx: &redb::WriteTransaction,
    bucket: &BucketInfo,
    key: &str,
    step: &Step,
    at_ms: u64,
) -> Result<bool, MetaError> {
    let rules = &bucket.lifecycle.clone().unwrap_or_default();
    let Some(day) = day_ms(&tx.open_table(META)?)? else {
        return Ok(false);
    };
    if let Step::AbortUpload { upload_id } = step {
        let u: Option<Upload> = tx
            .open_table(UPLOADS)?
            .get_sealed(T_UPLOADS, upload_id.as_str())?;
        return Ok(u.is_some_and(|u| {
            u.bucket == bucket.name
                && u.key == key
                && rules
                    .abort_due(&u.key, u.initiated_ms, at_ms, day)
                    .is_some()
        }));
    }
    let k = KeyState {
        key: key.to_string(),
        current: tx
            .open_table(OBJECTS)?
            .get_sealed(T_OBJECTS, object_key(&bucket.name, key).as_slice())?,
        history: crate::versioning::history(tx, &bucket.name, key)?
            .into_iter()
            .map(|(_, r)| r)
            .collect(),
    };
    let marker = match step {
        Step::ExpireCurrent { marker_id, .. } => *marker_id,
        _ => weft_common::VersionId(0),
    };
    Ok(plan_key(rules, bucket.tiering.as_ref(), &k, at_ms, day, marker).contains(step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::lifecycle::{Expiration, Filter, NoncurrentExpiration, Rule};
    use weft_common::VersionId;

    fn version(id: u128, at_ms: u64) -> ObjectVersion {
        ObjectVersion {
            version_id: VersionId(id),
            size: 1,
            etag: format!("e{id}"),
            crc32c: 0,
            last_modified_ms: at_ms,
            storage_class: "STANDARD".into(),
            user_metadata: Default::default(),
            content: Default::default(),
            checksums: Default::default(),
            checksum_type: None,
            version_label: None,
            part_sizes: vec![],
            tags: Default::default(),
            segments: vec![],
            tier: None,
            last_access_ms: None,
        }
    }

    fn setup(versioned: bool) -> (tempfile::TempDir, StateMachine, BucketInfo) {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        let bucket = BucketInfo {
            name: "b".into(),
            owner: "AK".into(),
            created_ms: 1,
            tags: Default::default(),
            versioning: None,
            lifecycle: None,
            tiering: None,
            residency: None,
        };
        sm.apply_for_test(&Command::CreateBucket {
            bucket: bucket.clone(),
        })
        .unwrap();
        if versioned {
            sm.apply_for_test(&Command::SetBucketVersioning {
                bucket: "b".into(),
                status: "Enabled".into(),
            })
            .unwrap();
        }
        let bucket = sm.bucket("b").unwrap().unwrap();
        (dir, sm, bucket)
    }

    fn put(sm: &StateMachine, key: &str, id: u128, at_ms: u64) {
        sm.apply_for_test(&Command::PutObject {
            bucket: "b".into(),
            key: key.into(),
            version: version(id, at_ms),
            condition: None,
        })
        .unwrap();
    }

    #[test]
    fn pages_walk_every_key_once_including_keys_that_extend_the_cursor() {
        let (_d, sm, _) = setup(true);
        let keys = ["a", "a/b", "a0", "b", "c"];
        for (i, k) in keys.iter().enumerate() {
            put(&sm, k, i as u128 + 1, 1_000);
            put(&sm, k, i as u128 + 100, 2_000);
        }
        // "a0" and "c" end with a delete marker: in the history table only.
        for k in ["a0", "c"] {
            sm.apply_for_test(&Command::DeleteObject {
                bucket: "b".into(),
                key: k.into(),
                marker: Some((VersionId(500 + k.len() as u128), 3_000)),
            })
            .unwrap();
        }
        for page_size in [1, 2, 3] {
            let mut seen = vec![];
            let mut after: Option<String> = None;
            for _ in 0..10 {
                let (page, more) = sm.lifecycle_page("b", after.as_deref(), page_size).unwrap();
                assert!(page.len() <= page_size);
                for k in &page {
                    // Each key comes with its whole history, newest first.
                    let want = if k.key == "a0" || k.key == "c" { 3 } else { 2 };
                    assert_eq!(k.history.len(), want, "{}", k.key);
                    assert_eq!(k.current.is_none(), want == 3, "{}", k.key);
                    seen.push(k.key.clone());
                }
                after = page.last().map(|k| k.key.clone());
                if !more {
                    break;
                }
            }
            assert_eq!(seen, keys, "page size {page_size}");
        }
    }

    #[test]
    fn a_versioned_key_gets_a_marker_then_loses_its_noncurrent_versions() {
        let (_d, sm, _) = setup(true);
        put(&sm, "v/a", 1, 1_000);
        put(&sm, "v/a", 2, 1_500);
        let rules = days_rule("v/", 1);
        set_rules(&sm, &rules);
        let bucket = sm.bucket("b").unwrap().unwrap();
        let plan = |now| -> Vec<Command> {
            let (keys, _) = sm.lifecycle_page("b", None, 10).unwrap();
            plan_keys(&bucket, &keys, now, 1_000, || VersionId(77))
                .into_iter()
                .flat_map(|(_, c)| c)
                .collect()
        };
        let step = |c: &Command| match c {
            Command::Lifecycle { step, .. } => step.clone(),
            other => panic!("{other:?}"),
        };
        // Both due at 3 s (version 2 written at 1.5 s; version 1
        // noncurrent since then): not a millisecond before.
        assert!(plan(2_999).is_empty());
        let cmds = plan(3_000);
        assert_eq!(cmds.len(), 2, "{cmds:?}");
        assert_eq!(
            step(&cmds[0]),
            Step::ExpireCurrent {
                version_id: VersionId(2),
                marker_id: VersionId(77)
            }
        );
        assert!(
            matches!(step(&cmds[1]), Step::RemoveNoncurrent { label, .. } if label == VersionId(1).to_string())
        );
        for c in &cmds {
            assert!(!sm.apply_for_test(c).unwrap().is_refused(), "{c:?}");
        }
        // Version 2 became noncurrent at 3 s, behind the marker: due at 4 s.
        assert!(plan(3_999).is_empty());
        let cmds = plan(4_000);
        assert!(
            matches!(&cmds[..], [c] if matches!(step(c), Step::RemoveNoncurrent { label, .. } if label == VersionId(2).to_string())),
            "{cmds:?}"
        );
        assert!(!sm.apply_for_test(&cmds[0]).unwrap().is_refused());
        let (keys, _) = sm.lifecycle_page("b", None, 10).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].current.is_none());
        assert_eq!(keys[0].history.len(), 1, "only the marker is left");
        assert!(keys[0].history[0].version.is_none());
        // The marker, written at 3 s, is a day old at 4 s: under the Days
        // rule it goes once it is alone.
        let cmds = plan(4_000);
        assert!(
            matches!(&cmds[..], [c] if matches!(step(c), Step::RemoveLoneMarker { .. })),
            "{cmds:?}"
        );
        assert!(!sm.apply_for_test(&cmds[0]).unwrap().is_refused());
        assert!(sm.lifecycle_page("b", None, 10).unwrap().0.is_empty());
    }

    fn days_rule(prefix: &str, days: u32) -> LifecycleConfig {
        LifecycleConfig {
            rules: vec![Rule {
                id: "r".into(),
                enabled: true,
                filter: Filter {
                    prefix: prefix.into(),
                    ..Filter::default()
                },
                expiration: Some(Expiration::Days(days)),
                noncurrent_expiration: Some(NoncurrentExpiration {
                    days,
                    newer_noncurrent_versions: None,
                }),
                abort_incomplete_days: None,
                ..Rule::default()
            }],
        }
    }

    fn set_rules(sm: &StateMachine, rules: &LifecycleConfig) {
        sm.apply_for_test(&Command::SeedLifecycleDay { day_ms: 1_000 })
            .unwrap();
        sm.apply_for_test(&Command::SetBucketLifecycle {
            bucket: "b".into(),
            config: Some(rules.clone()),
        })
        .unwrap();
    }

    fn expire(key: &str, id: u128, at_ms: u64) -> Command {
        Command::Lifecycle {
            bucket: "b".into(),
            key: key.into(),
            step: Step::ExpireCurrent {
                version_id: VersionId(id),
                marker_id: VersionId(99),
            },
            at_ms,
        }
    }

    fn stale(r: weft_common::rpc::CommandResult) -> bool {
        r == weft_common::rpc::CommandResult::Refused {
            refusal: weft_common::rpc::Refusal::Stale,
        }
    }

    #[test]
    fn an_action_no_longer_due_when_it_applies_changes_nothing() {
        let (_d, sm, _) = setup(false);
        set_rules(&sm, &days_rule("", 1));
        // Replaced since the scan.
        put(&sm, "k", 1, 1_000);
        put(&sm, "k", 2, 5_000);
        assert!(stale(sm.apply_for_test(&expire("k", 1, 3_000)).unwrap()));
        // Judged at a time before it is due.
        assert!(stale(sm.apply_for_test(&expire("k", 2, 5_999)).unwrap()));
        // Its tags no longer match the rule.
        let mut tagged = days_rule("", 1);
        tagged.rules[0].filter.tags.insert("t".into(), "1".into());
        tagged.rules[0].noncurrent_expiration = None;
        set_rules(&sm, &tagged);
        assert!(stale(sm.apply_for_test(&expire("k", 2, 9_000)).unwrap()));
        // The rules were removed.
        sm.apply_for_test(&Command::SetBucketLifecycle {
            bucket: "b".into(),
            config: None,
        })
        .unwrap();
        assert!(stale(sm.apply_for_test(&expire("k", 2, 9_000)).unwrap()));
        assert_eq!(
            sm.object("b", "k").unwrap().unwrap().version_id,
            VersionId(2)
        );
        // Due, and applied: gone (unversioned), and a second apply is stale.
        set_rules(&sm, &days_rule("", 1));
        assert!(!sm
            .apply_for_test(&expire("k", 2, 6_000))
            .unwrap()
            .is_refused());
        assert!(sm.object("b", "k").unwrap().is_none());
        assert!(stale(sm.apply_for_test(&expire("k", 2, 6_000)).unwrap()));
    }

    #[test]
    fn a_noncurrent_version_that_became_current_again_is_kept() {
        let (_d, sm, _) = setup(true);
        set_rules(&sm, &days_rule("", 1));
        put(&sm, "k", 1, 1_000);
        put(&sm, "k", 2, 1_500);
        let remove_v1 = Command::Lifecycle {
            bucket: "b".into(),
            key: "k".into(),
            step: Step::RemoveNoncurrent {
                label: VersionId(1).to_string(),
                modified_ms: 1_000,
            },
            at_ms: 9_000,
        };
        // A client deletes version 2 by id after the scan: version 1 is
        // current again and must stay.
        sm.apply_for_test(&Command::DeleteObjectVersion {
            bucket: "b".into(),
            key: "k".into(),
            version_id: VersionId(2).to_string(),
        })
        .unwrap();
        assert!(stale(sm.apply_for_test(&remove_v1).unwrap()));
        assert_eq!(
            sm.object("b", "k").unwrap().unwrap().version_id,
            VersionId(1)
        );
    }
}
