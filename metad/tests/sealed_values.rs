//! A flipped byte in `state.redb` is caught by the value envelope: a query
//! answers a clear error naming the table and key instead of a wrong value,
//! and a command that would apply on top of it stops the voter, with
//! recovery instructions, instead of building on damaged state.

mod support;
use std::time::Duration;
use support::*;
use tokio_util::sync::CancellationToken;
use weft_client::{MetadClient, MetadClientError};
use weft_common::rpc::{Command, ListRequest, Query, QueryResult};
use weft_metad::MetadHandle;

async fn start(
    dir: &std::path::Path,
    bootstrap: bool,
) -> (MetadHandle, CancellationToken, MetadClient) {
    let (h, cancel) = start_voter(dir, bootstrap).await;
    let c = MetadClient::new(vec![h.addr().to_string()]).with_deadline(Duration::from_secs(3));
    (h, cancel, c)
}

/// Changes the last digit of `k3`'s ETag wherever it is in the file: the
/// damage that used to be served as a wrong ETag.
fn flip_etag_digit(path: &std::path::Path) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let needle = format!("\"etag\":\"{:032x}\"", 3);
    let needle = needle.as_bytes();
    let mut hits = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle {
            bytes[i + needle.len() - 2] = b'7';
            hits += 1;
        }
        i += 1;
    }
    std::fs::write(path, bytes).unwrap();
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_state_is_refused_by_queries_and_stops_apply() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (h, cancel, c) = start(dir.path(), true).await;
        c.command(&create_bucket("b", "owner")).await.unwrap();
        for i in 0..6 {
            c.command(&put("b", &format!("k{i}"), i)).await.unwrap();
        }
        cancel.cancel();
        h.stopped().await;
    }
    assert!(
        flip_etag_digit(&dir.path().join("state.redb")) >= 1,
        "etag of k3 not found in state.redb"
    );

    let (h, cancel, c) = start(dir.path(), false).await;
    // Undamaged values are served as written.
    match c
        .query(&Query::Object {
            bucket: "b".into(),
            key: "k2".into(),
        })
        .await
        .unwrap()
    {
        QueryResult::Object {
            version: Some(v), ..
        } => assert_eq!(v, version(2)),
        other => panic!("{other:?}"),
    }
    // The damaged one is an error that names table and key, never a value.
    for q in [
        Query::Object {
            bucket: "b".into(),
            key: "k3".into(),
        },
        Query::List(ListRequest {
            bucket: "b".into(),
            prefix: String::new(),
            delimiter: None,
            after: None,
            max_keys: 1000,
        }),
    ] {
        match c.query(&q).await {
            Err(MetadClientError::Rejected { message, .. }) => {
                assert!(
                    message.contains("`objects`")
                        && message.contains("b/k3")
                        && message.contains("corrupt"),
                    "unclear error: {message}"
                );
                assert!(
                    message.contains("weft cluster metad"),
                    "no recovery advice: {message}"
                );
            }
            other => panic!("{q:?} on a damaged value answered {other:?}"),
        }
    }
    // A command that reads the damaged value stops this voter rather than
    // applying on top of it.
    let tag = Command::SetObjectTags {
        bucket: "b".into(),
        key: "k3".into(),
        tags: [("a".to_string(), "b".to_string())].into(),
    };
    assert!(
        c.command(&tag).await.is_err(),
        "a command applied on a damaged value"
    );
    let mut metrics = h.raft().metrics();
    let fatal = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Err(e) = &metrics.borrow().running_state {
                return e.to_string();
            }
            metrics.changed().await.unwrap();
        }
    })
    .await
    .expect("the voter kept running after apply met a damaged value");
    assert!(
        fatal.contains("objects") && fatal.contains("b/k3"),
        "stop reason does not name the value: {fatal}"
    );
    cancel.cancel();
    h.stopped().await;
}
