//! A data directory written before the value envelope opens: every bare
//! JSON value is sealed once, in place, and served as before; a legacy value
//! that is not even JSON refuses the start, naming table and key.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use weft_common::manifest::{BucketInfo, ContentHeaders, ObjectVersion};
use weft_common::rpc::Command;
use weft_common::VersionId;

use crate::envelope::{self, FORMAT_V1};
use crate::error::MetaError;
use crate::state_machine::StateMachine;
use crate::tables::*;

fn version() -> ObjectVersion {
    ObjectVersion {
        version_id: VersionId(7),
        size: 0,
        etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
        crc32c: 0,
        last_modified_ms: 1,
        storage_class: "STANDARD".into(),
        user_metadata: Default::default(),
        content: ContentHeaders::default(),
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

/// Strips the envelope from every value of a `&str`- or `&[u8]`-keyed
/// table, as the database looked before it existed.
fn unseal_str(db: &redb::Database, def: TableDefinition<&str, &[u8]>, name: &'static str) {
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(def).unwrap();
        let all: Vec<(String, Vec<u8>)> = t
            .iter()
            .unwrap()
            .map(|it| {
                let (k, v) = it.unwrap();
                let key = k.value().to_string();
                let bare = envelope::open(name, key.as_bytes(), v.value())
                    .unwrap()
                    .to_vec();
                (key, bare)
            })
            .collect();
        for (k, v) in all {
            t.insert(k.as_str(), v.as_slice()).unwrap();
        }
        t.remove(envelope::MIGRATED_KEY).unwrap();
    }
    tx.commit().unwrap();
}

fn unseal_bytes(db: &redb::Database, def: TableDefinition<&[u8], &[u8]>, name: &'static str) {
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(def).unwrap();
        let all: Vec<(Vec<u8>, Vec<u8>)> = t
            .iter()
            .unwrap()
            .map(|it| {
                let (k, v) = it.unwrap();
                let key = k.value().to_vec();
                let bare = envelope::open(name, &key, v.value()).unwrap().to_vec();
                (key, bare)
            })
            .collect();
        for (k, v) in all {
            t.insert(k.as_slice(), v.as_slice()).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn legacy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    {
        let sm = StateMachine::open(dir.path()).unwrap();
        let bucket = BucketInfo {
            name: "b".into(),
            owner: "o".into(),
            created_ms: 1,
            tags: Default::default(),
            versioning: None,
            lifecycle: None,
            tiering: None,
            residency: None,
        };
        sm.apply_for_test(&Command::CreateBucket { bucket })
            .unwrap();
        sm.apply_for_test(&Command::PutObject {
            bucket: "b".into(),
            key: "k".into(),
            version: version(),
            condition: None,
        })
        .unwrap();
        sm.flush().unwrap();
    }
    let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
    unseal_str(&db, BUCKETS, T_BUCKETS);
    unseal_str(&db, META, T_META);
    unseal_bytes(&db, OBJECTS, T_OBJECTS);
    dir
}

#[test]
fn pre_envelope_directory_is_sealed_on_open_and_served_unchanged() {
    let dir = legacy_dir();
    let sm = StateMachine::open(dir.path()).unwrap();
    assert_eq!(sm.object("b", "k").unwrap(), Some(version()));
    assert_eq!(
        sm.bucket("b").unwrap().map(|b| b.owner),
        Some("o".to_string())
    );
    drop(sm);
    let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(OBJECTS).unwrap();
    let raw = t.get(object_key("b", "k").as_slice()).unwrap().unwrap();
    assert_eq!(
        raw.value()[0],
        FORMAT_V1,
        "value left unsealed after migration"
    );
}

#[test]
fn pre_envelope_value_that_is_not_json_refuses_to_open() {
    let dir = legacy_dir();
    {
        let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(OBJECTS)
            .unwrap()
            .insert(object_key("b", "k").as_slice(), &b"{\"size\": 1"[..])
            .unwrap();
        tx.commit().unwrap();
    }
    match StateMachine::open(dir.path()) {
        Err(MetaError::Corrupt(e)) => {
            assert_eq!(e.table, "objects");
            assert_eq!(e.key, "\"b/k\"");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a database holding a damaged value"),
    }
}
