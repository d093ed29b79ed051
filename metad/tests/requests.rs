//! The command endpoint takes only requests, and ages their records by the
//! leader's clock: a client clock cannot expire another client's record, so
//! a late retry is still answered from it.

mod support;
use support::*;
use weft_client::MetadClient;
use weft_common::rpc::{Command, CommandResult, Query, QueryResult, RpcErrorBody, RpcErrorCode};
use weft_common::RequestId;

async fn post(addr: &str, cmd: &Command) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/command"))
        .json(cmd)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_commands_are_refused_and_client_clocks_do_not_age_records() {
    let dir = tempfile::tempdir().unwrap();
    let (h, cancel) = start_voter(dir.path(), true).await;
    let addr = h.addr().to_string();
    let c = MetadClient::new(vec![addr.clone()]);
    c.command(&create_bucket("b", "owner")).await.unwrap();

    // A bare command could not be recognised when retried: refused.
    let (status, body) = post(&addr, &put("b", "k", 1)).await;
    assert_eq!(status, 400);
    let err: RpcErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(err.code, RpcErrorCode::BadRequest);

    // A command in a format newer than this metad reads is refused before
    // it reaches the log, naming the upgrade order.
    let newer = Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT + 1,
        actor: None,
        id: RequestId(9),
        at_ms: 0,
        command: Box::new(put("b", "k", 9)),
    };
    let (status, body) = post(&addr, &newer).await;
    assert_eq!(status, 400);
    let err: RpcErrorBody = serde_json::from_slice(&body).unwrap();
    assert!(
        err.message.contains("upgrade every metad voter"),
        "{}",
        err.message
    );

    // So is any internal request whose body format is newer.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/query"))
        .header(
            weft_common::rpc::FORMAT_HEADER,
            weft_common::rpc::RPC_FORMAT + 1,
        )
        .json(&Query::Buckets)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let err: RpcErrorBody = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(
        err.message.contains("newer than this process reads"),
        "{}",
        err.message
    );

    // A client claiming a clock far in the future...
    let hostile = Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT,
        actor: None,
        id: RequestId(1),
        at_ms: u64::MAX,
        command: Box::new(Command::SetBucketTags {
            bucket: "b".into(),
            tags: Default::default(),
        }),
    };
    assert_eq!(post(&addr, &hostile).await.0, 200);
    // ...must not expire this request's record: its late retry, after
    // another writer replaced the version, must not bring it back.
    let first = Command::Request {
        format: weft_common::rpc::COMMAND_FORMAT,
        actor: None,
        id: RequestId(2),
        at_ms: 0,
        command: Box::new(put("b", "k", 1)),
    };
    assert_eq!(post(&addr, &first).await.0, 200);
    c.command(&put("b", "k", 2)).await.unwrap();
    let (status, body) = post(&addr, &first).await;
    assert_eq!(status, 200);
    let retried: CommandResult = serde_json::from_slice(&body).unwrap();
    assert_eq!(retried, CommandResult::Replaced { previous: None });
    match c
        .query(&Query::Object {
            bucket: "b".into(),
            key: "k".into(),
        })
        .await
        .unwrap()
    {
        QueryResult::Object {
            version: Some(v), ..
        } => assert_eq!(v, version(2), "a late retry replaced the newer version"),
        other => panic!("{other:?}"),
    }
    cancel.cancel();
    h.stopped().await;
}
