//! Each mapping to an S3 error: the code, the HTTP status and the message.

use super::*;

#[test]
fn mappings() {
    let unreadable = to_s3(GatewayError::Unreadable {
        segment: SegmentId(1),
        detail: "x".into(),
    });
    assert_eq!(*unreadable.code(), S3ErrorCode::ServiceUnavailable);
    assert_eq!(
        *to_s3(GatewayError::Body("short".into())).code(),
        S3ErrorCode::IncompleteBody
    );
    assert_eq!(
        *to_s3(GatewayError::Metad(
            weft_client::MetadClientError::Unavailable {
                attempts: 1,
                last: "x".into()
            }
        ))
        .code(),
        S3ErrorCode::ServiceUnavailable
    );
    assert_eq!(
        *to_s3(GatewayError::Metad(
            weft_client::MetadClientError::OutcomeUnknown {
                attempts: 3,
                last: "timeout".into()
            }
        ))
        .code(),
        S3ErrorCode::ServiceUnavailable
    );
    assert_eq!(
        *to_s3(GatewayError::BodySignature("chunk 3".into())).code(),
        S3ErrorCode::SignatureDoesNotMatch
    );
    assert_eq!(
        *to_s3(GatewayError::Internal("bug".into())).code(),
        S3ErrorCode::InternalError
    );
}

fn failed(code: weft_common::rpc::RpcErrorCode) -> weft_client::datad::DatadClientError {
    weft_client::datad::DatadClientError::Failed {
        op: "put shard",
        addr: "127.0.0.1:1".into(),
        status: 503,
        code: Some(code),
        message: "x".into(),
    }
}

fn quorum(shortfall: Shortfall) -> GatewayError {
    GatewayError::WriteQuorum {
        segment: SegmentId(1),
        written: 3,
        needed: 5,
        detail: "x".into(),
        shortfall,
    }
}

#[test]
fn a_write_short_of_descriptors_is_slow_down_and_one_short_of_space_is_507() {
    use weft_common::rpc::RpcErrorCode as C;
    let busy = to_s3(quorum(Shortfall::Busy));
    assert_eq!(*busy.code(), S3ErrorCode::SlowDown);
    assert!(busy.message().unwrap().contains("retry with backoff"));
    let full = to_s3(quorum(Shortfall::Full));
    assert_eq!(full.code().as_str(), INSUFFICIENT_STORAGE);
    assert_eq!(
        full.status_code(),
        Some(http::StatusCode::INSUFFICIENT_STORAGE)
    );
    assert!(full.message().unwrap().contains("add capacity"));
    assert_eq!(
        *to_s3(quorum(Shortfall::Other)).code(),
        S3ErrorCode::ServiceUnavailable
    );

    let tally = |codes: &[Option<C>]| {
        let mut t = ShortfallTally::default();
        for c in codes {
            match c {
                Some(c) => t.note(&failed(*c)),
                None => t.note_other(),
            }
        }
        t.verdict()
    };
    assert_eq!(tally(&[Some(C::Busy), Some(C::Busy)]), Shortfall::Busy);
    assert_eq!(tally(&[Some(C::Busy), Some(C::DiskFull)]), Shortfall::Busy);
    assert_eq!(
        tally(&[Some(C::DiskFull), Some(C::DiskFull)]),
        Shortfall::Full
    );
    // An unreachable node or an internal error makes the cause unclear.
    assert_eq!(tally(&[Some(C::DiskFull), None]), Shortfall::Other);
    assert_eq!(tally(&[Some(C::Busy), Some(C::Internal)]), Shortfall::Other);
    assert_eq!(tally(&[]), Shortfall::Other);
}

#[test]
fn out_of_space_is_507_insufficient_storage() {
    use weft_common::placement::PlacementError;
    let full = to_s3(GatewayError::Placement(PlacementError::NodesFull {
        available: 1,
        needed: 3,
        quorum: 2,
        full: vec![weft_common::NodeId(4)],
    }));
    assert_eq!(full.code().as_str(), INSUFFICIENT_STORAGE);
    assert_eq!(
        full.status_code(),
        Some(http::StatusCode::INSUFFICIENT_STORAGE)
    );
    assert!(full.message().unwrap().contains("data nodes n4 are full"));
    let low = to_s3(GatewayError::Metad(
        weft_client::MetadClientError::Rejected {
            code: weft_common::rpc::RpcErrorCode::DiskFull,
            message: "metad is low on space".into(),
        },
    ));
    assert_eq!(low.code().as_str(), INSUFFICIENT_STORAGE);
    assert_eq!(
        low.status_code(),
        Some(http::StatusCode::INSUFFICIENT_STORAGE)
    );
    // Too few nodes for another reason stays a retryable 503.
    let down = to_s3(GatewayError::Placement(PlacementError::NotEnoughNodes {
        available: 1,
        needed: 3,
        quorum: 2,
    }));
    assert_eq!(*down.code(), S3ErrorCode::ServiceUnavailable);
}

/// Asserts what the client sees: the code, the HTTP status and the message.
#[track_caller]
fn answers(e: &S3Error, code: S3ErrorCode, status: u16, message: &str) {
    assert_eq!(*e.code(), code, "{e:?}");
    assert_eq!(
        e.status_code(),
        Some(http::StatusCode::from_u16(status).unwrap()),
        "{e:?}"
    );
    assert_eq!(e.message(), Some(message), "{e:?}");
}

fn insufficient_storage() -> S3ErrorCode {
    S3ErrorCode::Custom(INSUFFICIENT_STORAGE.into())
}

#[test]
fn every_gateway_error_has_its_code_and_status() {
    use std::time::Duration;
    use weft_common::placement::PlacementError;
    use S3ErrorCode as C;
    let unavailable = weft_client::MetadClientError::Unavailable {
        attempts: 2,
        last: "refused".into(),
    };
    let cases: Vec<(GatewayError, S3ErrorCode, u16)> = vec![
        (GatewayError::Metad(unavailable), C::ServiceUnavailable, 503),
        (
            GatewayError::Placement(PlacementError::NotEnoughNodes {
                available: 1,
                needed: 3,
                quorum: 2,
            }),
            C::ServiceUnavailable,
            503,
        ),
        (
            GatewayError::Placement(PlacementError::NodesFull {
                available: 1,
                needed: 3,
                quorum: 2,
                full: vec![weft_common::NodeId(4)],
            }),
            insufficient_storage(),
            507,
        ),
        (quorum(Shortfall::Other), C::ServiceUnavailable, 503),
        (quorum(Shortfall::Busy), C::SlowDown, 503),
        (quorum(Shortfall::Full), insufficient_storage(), 507),
        (
            GatewayError::Unreadable {
                segment: SegmentId(1),
                detail: "x".into(),
            },
            C::ServiceUnavailable,
            503,
        ),
        (GatewayError::Body("short".into()), C::IncompleteBody, 400),
        (
            GatewayError::BodySignature("chunk 3".into()),
            C::SignatureDoesNotMatch,
            403,
        ),
        (
            GatewayError::TooSlow {
                took: Duration::from_secs(2),
                max: Duration::from_secs(1),
            },
            C::RequestTimeout,
            400,
        ),
        (
            GatewayError::ClientIdle(Duration::from_secs(1)),
            C::RequestTimeout,
            400,
        ),
        (GatewayError::Internal("bug".into()), C::InternalError, 500),
    ];
    for (e, code, status) in cases {
        let message = e.to_string();
        let got = to_s3(e);
        assert_eq!(*got.code(), code, "{message}");
        assert_eq!(
            got.status_code(),
            Some(http::StatusCode::from_u16(status).unwrap()),
            "{message}"
        );
        // The message is the error's own, with advice appended for a
        // write short of its quorum for a clear reason.
        assert!(got.message().unwrap().starts_with(&message), "{message}");
    }
    answers(
        &to_s3(GatewayError::Body("short".into())),
        S3ErrorCode::IncompleteBody,
        400,
        "request body: short",
    );
}

#[test]
fn every_metad_client_error_kind_has_its_code_and_status() {
    use weft_client::MetadClientError as M;
    use weft_common::rpc::RpcErrorCode;
    let unavailable = M::Unavailable {
        attempts: 2,
        last: "refused".into(),
    };
    answers(
        &metad_err(unavailable),
        S3ErrorCode::ServiceUnavailable,
        503,
        "metadata service: metadata service unavailable after 2 attempts (refused); check that metad is running and reachable",
    );
    let unknown = M::OutcomeUnknown {
        attempts: 3,
        last: "timeout".into(),
    };
    let e = metad_err(unknown);
    assert_eq!(*e.code(), S3ErrorCode::ServiceUnavailable);
    assert_eq!(e.status_code(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert!(e.message().unwrap().contains("retry the request"));
    let rejected = M::Rejected {
        code: RpcErrorCode::Internal,
        message: "boom".into(),
    };
    let e = metad_err(rejected);
    assert_eq!(*e.code(), S3ErrorCode::InternalError);
    assert_eq!(
        e.status_code(),
        Some(http::StatusCode::INTERNAL_SERVER_ERROR)
    );
    let low = M::Rejected {
        code: RpcErrorCode::DiskFull,
        message: "metad is low on space".into(),
    };
    let e = metad_err(low);
    assert_eq!(*e.code(), insufficient_storage());
    assert_eq!(
        e.status_code(),
        Some(http::StatusCode::INSUFFICIENT_STORAGE)
    );
    answers(
        &metad_err(M::Protocol("garbage".into())),
        S3ErrorCode::InternalError,
        500,
        "metadata service: unexpected answer from metad: garbage",
    );
    // An access key lookup with no fallback is worth a retry, whatever failed.
    answers(
        &key_lookup_failed(M::Protocol("garbage".into())),
        S3ErrorCode::ServiceUnavailable,
        503,
        "look up access key: unexpected answer from metad: garbage",
    );
}

#[test]
fn an_unexpected_answer_is_an_internal_error_naming_it() {
    answers(
        &unexpected("list", CommandResult::Done),
        S3ErrorCode::InternalError,
        500,
        "unexpected metad answer to list: Done",
    );
    answers(
        &unexpected_key_answer(CommandResult::Done),
        S3ErrorCode::InternalError,
        500,
        "unexpected metad answer: Done",
    );
}

/// One of each `Refusal` variant.
fn every_refusal() -> Vec<Refusal> {
    vec![
        Refusal::BucketExists {
            owner: "AKOWNER".into(),
        },
        Refusal::NoSuchBucket,
        Refusal::BucketNotEmpty,
        Refusal::KeyExists,
        Refusal::NoSuchKeyName,
        Refusal::KeyIsRoot,
        Refusal::NoSuchUpload,
        Refusal::PreconditionFailed,
        Refusal::NoSuchKey,
        Refusal::InvalidPart { part_number: 7 },
        Refusal::Stale,
        Refusal::NoSuchNode,
        Refusal::NodeRemoved,
        Refusal::UnsafeTimers {
            message: "x".into(),
        },
    ]
}

#[test]
fn every_refusal_of_an_object_command_has_its_code_and_status() {
    let cmd = Refused::Object {
        bucket: "b",
        key: "k",
    };
    for r in every_refusal() {
        let e = refusal_to_s3(cmd, r.clone());
        match r {
            Refusal::NoSuchBucket => answers(
                &e,
                S3ErrorCode::NoSuchBucket,
                404,
                "bucket b does not exist",
            ),
            Refusal::NoSuchKey => answers(&e, S3ErrorCode::NoSuchKey, 404, "key k does not exist"),
            Refusal::PreconditionFailed => answers(
                &e,
                S3ErrorCode::PreconditionFailed,
                412,
                "At least one of the pre-conditions you specified did not hold",
            ),
            Refusal::NoSuchUpload => answers(
                &e,
                S3ErrorCode::NoSuchUpload,
                404,
                "the upload does not exist",
            ),
            other => answers(
                &e,
                S3ErrorCode::InternalError,
                500,
                &format!("unexpected refusal {other:?}"),
            ),
        }
    }
}

#[test]
fn bucket_refusals_name_the_bucket_and_the_owner() {
    let create = |caller| Refused::CreateBucket {
        bucket: "b",
        caller,
    };
    let exists = || Refusal::BucketExists {
        owner: "AKOWNER".into(),
    };
    answers(
        &refusal_to_s3(create("AKOWNER"), exists()),
        S3ErrorCode::BucketAlreadyOwnedByYou,
        409,
        "you already own the bucket b",
    );
    answers(
        &refusal_to_s3(create("AKOTHER"), exists()),
        S3ErrorCode::BucketAlreadyExists,
        409,
        "the bucket b exists and belongs to someone else",
    );
    let delete = Refused::DeleteBucket { bucket: "b" };
    answers(
        &refusal_to_s3(delete, Refusal::BucketNotEmpty),
        S3ErrorCode::BucketNotEmpty,
        409,
        "the bucket b is not empty; delete its objects first",
    );
    answers(
        &refusal_to_s3(delete, Refusal::NoSuchBucket),
        S3ErrorCode::NoSuchBucket,
        404,
        "bucket b does not exist",
    );
    answers(
        &refusal_to_s3(create("AKOWNER"), Refusal::Stale),
        S3ErrorCode::InternalError,
        500,
        "unexpected metad answer to create bucket: Refused { refusal: Stale }",
    );
    answers(
        &refusal_to_s3(delete, Refusal::NoSuchKey),
        S3ErrorCode::InternalError,
        500,
        "unexpected metad answer to delete bucket: Refused { refusal: NoSuchKey }",
    );
}

#[test]
fn upload_refusals_tell_a_vanished_upload_from_an_unknown_one() {
    let put_part = Refused::PutPart { upload_id: "u1" };
    answers(
        &refusal_to_s3(put_part, Refusal::NoSuchUpload),
        S3ErrorCode::NoSuchUpload,
        404,
        "upload u1 was completed or aborted meanwhile",
    );
    let complete = Refused::CompleteUpload {
        bucket: "b",
        key: "k",
        upload_id: "u1",
    };
    answers(
        &refusal_to_s3(complete, Refusal::NoSuchUpload),
        S3ErrorCode::NoSuchUpload,
        404,
        "upload u1 was completed or aborted meanwhile",
    );
    answers(
        &refusal_to_s3(complete, Refusal::InvalidPart { part_number: 7 }),
        S3ErrorCode::InvalidPart,
        400,
        "part 7 changed while completing; retry",
    );
    answers(
        &refusal_to_s3(complete, Refusal::PreconditionFailed),
        S3ErrorCode::PreconditionFailed,
        412,
        "At least one of the pre-conditions you specified did not hold",
    );
    answers(
        &refusal_to_s3(complete, Refusal::NoSuchKey),
        S3ErrorCode::NoSuchKey,
        404,
        "key k does not exist",
    );
    answers(
        &refusal_to_s3(complete, Refusal::NoSuchBucket),
        S3ErrorCode::NoSuchBucket,
        404,
        "bucket b does not exist",
    );
    let abort = Refused::AbortUpload { upload_id: "u1" };
    answers(
        &refusal_to_s3(abort, Refusal::NoSuchUpload),
        S3ErrorCode::NoSuchUpload,
        404,
        "upload u1 does not exist",
    );
    let create = Refused::CreateUpload { bucket: "b" };
    answers(
        &refusal_to_s3(create, Refusal::NoSuchBucket),
        S3ErrorCode::NoSuchBucket,
        404,
        "bucket b does not exist",
    );
    // Any other refusal is a bug, named with the command it answered.
    for (cmd, what) in [
        (put_part, "put part"),
        (complete, "complete upload"),
        (abort, "abort upload"),
        (create, "create upload"),
    ] {
        answers(
            &refusal_to_s3(cmd, Refusal::Stale),
            S3ErrorCode::InternalError,
            500,
            &format!("unexpected metad answer to {what}: Refused {{ refusal: Stale }}"),
        );
    }
}
