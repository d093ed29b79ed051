//! The simulated clients and the model their answers are checked against.
//!
//! Each worker owns its keys, so the model of a key is exact: the set of
//! values it may hold. An acknowledged write makes it the one value; a
//! write whose outcome the client was told is unknown adds its value to the
//! set (it may still land); a refused or certainly-unapplied write changes
//! nothing. A read must answer a value in the set.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use weft_client::{MetadClient, MetadClientError};
use weft_common::manifest::{
    BucketInfo, ContentHeaders, ObjectVersion, Segment, Upload, UploadPart,
};
use weft_common::profile::Layout;
use weft_common::rpc::{Command, CommandResult, Query, QueryResult};
use weft_common::VersionId;
use weft_common::{NodeId, SegmentId};

use crate::Trace;

/// Concurrent clients.
pub(crate) const WORKERS: usize = 3;
/// Keys per worker.
const KEYS: usize = 4;
const BUCKET: &str = "sim";

/// What each key may hold (`None`: no object), and what the checks found.
#[derive(Default)]
pub(crate) struct Models {
    keys: BTreeMap<String, BTreeSet<Option<String>>>,
    pub(crate) failures: Vec<String>,
    pub(crate) acked: u64,
    pub(crate) unknown: u64,
    pub(crate) reads: u64,
}

impl Models {
    fn may_hold(&mut self, key: &str) -> &mut BTreeSet<Option<String>> {
        self.keys
            .entry(key.to_string())
            .or_insert_with(|| BTreeSet::from([None]))
    }

    /// The write of `value` to `key` was acknowledged: it is all the key
    /// may hold now.
    pub(crate) fn acknowledge(&mut self, key: &str, value: Option<String>) {
        self.acked += 1;
        *self.may_hold(key) = BTreeSet::from([value]);
    }

    /// The write of `value` to `key` may or may not have taken effect.
    pub(crate) fn maybe(&mut self, key: &str, value: Option<String>) {
        self.unknown += 1;
        self.may_hold(key).insert(value);
    }

    /// What `key` may hold now.
    pub(crate) fn holds(&mut self, key: &str) -> BTreeSet<Option<String>> {
        self.may_hold(key).clone()
    }

    /// An acknowledged write whose value is one of `values` (a copy of a
    /// key that may hold any of them): all the key may hold now.
    pub(crate) fn acknowledge_any(&mut self, key: &str, values: BTreeSet<Option<String>>) {
        self.acked += 1;
        *self.may_hold(key) = values;
    }

    /// A write of one of `values` whose outcome is unknown.
    pub(crate) fn maybe_any(&mut self, key: &str, values: BTreeSet<Option<String>>) {
        self.unknown += 1;
        self.may_hold(key).extend(values);
    }

    /// The keys whose names start with `prefix`.
    pub(crate) fn keys_with_prefix(&self, prefix: &str) -> BTreeSet<String> {
        self.keys
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    pub(crate) fn check_read(&mut self, key: &str, got: &Option<String>, when: &str) {
        self.reads += 1;
        let may = self.may_hold(key).clone();
        if !may.contains(got) {
            self.failures.push(format!(
                "{when}: {key} read {got:?}, but it may only hold {may:?}"
            ));
        }
    }
}

pub(crate) async fn create_bucket(client: &MetadClient) -> Result<(), MetadClientError> {
    client
        .command(&Command::CreateBucket {
            bucket: BucketInfo {
                name: BUCKET.into(),
                owner: "root".into(),
                created_ms: weft_common::effects::now_ms(),
                tags: BTreeMap::new(),
                versioning: None,
                lifecycle: None,
                tiering: None,
                residency: None,
            },
        })
        .await
        .map(|_| ())
}

fn version(etag: &str) -> ObjectVersion {
    ObjectVersion {
        version_id: VersionId::from_random(weft_common::effects::random()),
        size: 0,
        etag: etag.to_string(),
        crc32c: 0,
        last_modified_ms: weft_common::effects::now_ms(),
        storage_class: "STANDARD".into(),
        user_metadata: BTreeMap::new(),
        content: ContentHeaders::default(),
        checksums: BTreeMap::new(),
        checksum_type: None,
        version_label: None,
        part_sizes: Vec::new(),
        tags: BTreeMap::new(),
        segments: Vec::new(),
        tier: None,
        last_access_ms: None,
    }
}

async fn read(client: &MetadClient, key: &str) -> Result<Option<String>, String> {
    match client
        .query(&Query::Object {
            bucket: BUCKET.into(),
            key: key.into(),
        })
        .await
    {
        Ok(QueryResult::Object { version, .. }) => Ok(version.map(|v| v.etag)),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `ops` operations on this worker's keys.
pub(crate) async fn worker(
    w: usize,
    client: MetadClient,
    mut rng: StdRng,
    ops: u32,
    trace: &Rc<RefCell<Trace>>,
    models: &Rc<RefCell<Models>>,
) {
    for n in 0..ops {
        let key = format!("w{w}/k{}", rng.gen_range(0..KEYS));
        let roll = rng.gen_range(0..100);
        if roll < 35 {
            let got = read(&client, &key).await;
            trace
                .borrow_mut()
                .log(format!("w{w} read {key} -> {got:?}"));
            if let Ok(got) = got {
                models
                    .borrow_mut()
                    .check_read(&key, &got, &format!("w{w} op {n}"));
            }
        } else if (85..92).contains(&roll) {
            multipart_part(w, n, &client, &mut rng, trace, models).await;
        } else {
            let (cmd, value) = if roll < 85 {
                let etag = format!("w{w}-{n}");
                let cmd = Command::PutObject {
                    bucket: BUCKET.into(),
                    key: key.clone(),
                    version: version(&etag),
                    condition: None,
                };
                (cmd, Some(etag))
            } else {
                let cmd = Command::DeleteObject {
                    bucket: BUCKET.into(),
                    key: key.clone(),
                    marker: None,
                };
                (cmd, None)
            };
            let result = client.command(&cmd).await;
            let mut m = models.borrow_mut();
            let what = match &result {
                Ok(CommandResult::Refused { refusal, .. }) => {
                    m.failures
                        .push(format!("w{w} op {n}: {key} refused: {refusal:?}"));
                    "refused".to_string()
                }
                Ok(_) => {
                    m.acknowledge(&key, value.clone());
                    "ok".to_string()
                }
                Err(MetadClientError::OutcomeUnknown { .. }) => {
                    m.maybe(&key, value.clone());
                    "unknown".to_string()
                }
                Err(e) => format!("not applied: {e}"),
            };
            drop(m);
            trace
                .borrow_mut()
                .log(format!("w{w} write {key} {value:?} -> {what}"));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
    }
}

/// A fresh segment id on a node that does not exist (metad only records
/// placements; no data node is asked to repair it).
fn fake_segment() -> Segment {
    Segment {
        id: SegmentId::from_random(weft_common::effects::random()),
        offset: 0,
        len: 1,
        layout: Layout::Replicated { copies: 1 },
        shards: vec![Some(NodeId(999))],
        shard_len: 1,
        placement: None,
        cache: vec![],
    }
}

/// Creates an upload, puts part 1 once or twice (a replacement) and aborts
/// it, checking the contract a gateway deletes data on: a `PutPart`'s
/// answer never releases the segments that same part now refers to. (A
/// retried `PutPart` re-applied as new once released its own segments,
/// and the gateway deleted a part it had just stored.)
async fn multipart_part(
    w: usize,
    n: u32,
    client: &MetadClient,
    rng: &mut StdRng,
    trace: &Rc<RefCell<Trace>>,
    models: &Rc<RefCell<Models>>,
) {
    let upload_id = format!("w{w}-upload-{n}");
    let upload = Upload {
        upload_id: upload_id.clone(),
        bucket: BUCKET.into(),
        key: format!("w{w}/mp{n}"),
        initiated_ms: weft_common::effects::now_ms(),
        storage_class: "STANDARD".into(),
        user_metadata: BTreeMap::new(),
        content: ContentHeaders::default(),
        checksum_algorithm: None,
        checksum_type: None,
        tags: BTreeMap::new(),
        parts: Vec::new(),
    };
    let created = client.command(&Command::CreateUpload { upload }).await;
    trace
        .borrow_mut()
        .log(format!("w{w} create upload {upload_id} -> {created:?}"));
    if !matches!(created, Ok(CommandResult::Done)) {
        return;
    }
    for _ in 0..rng.gen_range(1..=2) {
        let segment = fake_segment();
        let own = segment.id;
        let part = UploadPart {
            part_number: 1,
            etag: format!("w{w}-{n}-{own}"),
            size: 1,
            crc32c: 0,
            last_modified_ms: weft_common::effects::now_ms(),
            checksums: BTreeMap::new(),
            segments: vec![segment],
        };
        let put = client
            .command(&Command::PutPart {
                upload_id: upload_id.clone(),
                part,
            })
            .await;
        let what = match &put {
            Ok(CommandResult::Released { segments }) => {
                if segments.iter().any(|s| s.id == own) {
                    models.borrow_mut().failures.push(format!(
                        "w{w} op {n}: PutPart of upload {upload_id} answered that it released segment {own}, which the part it put refers to: a gateway deletes what it is told is released"
                    ));
                }
                format!("released {}", segments.len())
            }
            other => format!("{other:?}"),
        };
        trace
            .borrow_mut()
            .log(format!("w{w} put part {upload_id} {own} -> {what}"));
    }
    let aborted = client
        .command(&Command::AbortUpload {
            upload_id: upload_id.clone(),
        })
        .await;
    trace.borrow_mut().log(format!(
        "w{w} abort upload {upload_id} -> {}",
        aborted.is_ok()
    ));
}

/// Reads every key once more after the faults stopped.
pub(crate) async fn final_reads(
    client: &MetadClient,
    models: &Rc<RefCell<Models>>,
    trace: &Rc<RefCell<Trace>>,
) -> Vec<String> {
    check_final(models, trace, "w", "", "final", |key| async move {
        read(client, &key).await
    })
    .await
}

/// Reads every model key starting with `prefix` once more through `read`
/// (given the key without `strip`), after the faults stopped, and checks
/// each answer: the last check of every workload.
pub(crate) async fn check_final<F, Fut>(
    models: &Rc<RefCell<Models>>,
    trace: &Rc<RefCell<Trace>>,
    prefix: &str,
    strip: &str,
    what: &str,
    read: F,
) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, String>>,
{
    let keys = models.borrow().keys_with_prefix(prefix);
    let mut failures = Vec::new();
    for model_key in keys {
        let key = model_key
            .strip_prefix(strip)
            .unwrap_or(&model_key)
            .to_string();
        match read(key.clone()).await {
            Ok(got) => {
                trace.borrow_mut().log(format!("{what} {key} -> {got:?}"));
                let mut m = models.borrow_mut();
                let before = m.failures.len();
                m.check_read(&model_key, &got, what);
                failures.extend(m.failures.drain(before..));
            }
            Err(e) => failures.push(format!("{what} of {key} failed with no faults: {e}")),
        }
    }
    failures
}
