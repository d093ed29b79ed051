//! Unit tests of the integrity checks: header validation, digests and the streaming body check.

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn parse_claims_body(h: &HeaderMap) -> S3Result<Expected> {
    parse_claims(h, true)
}

#[test]
fn form_uploads_are_not_wrapped() {
    let post = http::Method::POST;
    let form = |ct: &'static str| headers(&[("content-md5", EMPTY_MD5), ("content-type", ct)]);
    assert!(!should_wrap(
        &post,
        &form("multipart/form-data; boundary=xyz")
    ));
    assert!(!should_wrap(
        &post,
        &form("Multipart/Form-Data;boundary=\"a b\"")
    ));
    // Other bodies that claim a digest are wrapped.
    assert!(should_wrap(&post, &form("application/xml")));
    assert!(should_wrap(
        &http::Method::PUT,
        &form("multipart/form-data; boundary=xyz")
    ));
    let mut two = form("multipart/form-data; boundary=xyz");
    two.append(
        "content-type",
        "multipart/form-data; boundary=xyz".parse().unwrap(),
    );
    assert!(
        should_wrap(&post, &two),
        "s3s reads no form from two Content-Types"
    );
    // Nothing claimed, or aws-chunked: not wrapped.
    assert!(!should_wrap(
        &post,
        &headers(&[("content-type", "application/xml")])
    ));
    assert!(!should_wrap(
        &http::Method::PUT,
        &headers(&[
            ("content-md5", EMPTY_MD5),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        ])
    ));
    // The form's operation is let through to s3s's own answer, which is
    // right only while Weft does not implement it.
    arm(
        POST_OBJECT,
        &form("multipart/form-data; boundary=xyz"),
        None,
    )
    .unwrap();
    assert!(!crate::refusals::IMPLEMENTED_OPS.contains(&POST_OBJECT));
}

#[test]
fn repeated_digest_headers_are_refused() {
    for name in [
        "content-md5",
        "x-amz-checksum-crc32",
        "x-amz-checksum-sha256",
    ] {
        let mut h = HeaderMap::new();
        let value = match name {
            "content-md5" => EMPTY_MD5,
            "x-amz-checksum-crc32" => "AAAAAA==",
            _ => EMPTY_SHA256,
        };
        h.append(name, value.parse().unwrap());
        assert!(parse_claims(&h, true).is_ok(), "{name}");
        h.append(name, value.parse().unwrap());
        for body in [true, false] {
            let e = parse_claims(&h, body).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::InvalidRequest, "{name}");
        }
    }
}

#[test]
fn checksums_of_the_wrong_length_are_refused_up_front() {
    for (name, value) in [
        ("x-amz-checksum-crc32", "AAAAAAA="),     // 5 bytes
        ("x-amz-checksum-crc32c", "AAA="),        // 2 bytes
        ("x-amz-checksum-crc64nvme", "AAAAAA=="), // 4 bytes
        ("x-amz-checksum-sha1", EMPTY_MD5),       // 16 bytes
        ("x-amz-checksum-sha256", EMPTY_MD5),     // 16 bytes
    ] {
        let e = parse_claims_body(&headers(&[(name, value)])).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidRequest, "{name}");
        // Refused before the write path reads any of a PutObject body.
        let e = arm("PutObject", &headers(&[(name, value)]), None).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidRequest, "{name}");
    }
    // CompleteMultipartUpload's checksum is the object's, `-N` and all.
    let h = headers(&[("x-amz-checksum-sha256", "abc-2")]);
    arm("CompleteMultipartUpload", &h, Some(&BodyCheck::new())).unwrap();
}

#[test]
fn malformed_values_are_refused_with_aws_codes() {
    let bad_md5 = parse_claims_body(&headers(&[("content-md5", "not base64!")])).unwrap_err();
    assert_eq!(*bad_md5.code(), S3ErrorCode::InvalidDigest);
    let short_md5 = parse_claims_body(&headers(&[("content-md5", "AAAA")])).unwrap_err();
    assert_eq!(*short_md5.code(), S3ErrorCode::InvalidDigest);
    let bad_crc = parse_claims_body(&headers(&[("x-amz-checksum-crc32", "***")])).unwrap_err();
    assert_eq!(*bad_crc.code(), S3ErrorCode::InvalidRequest);
    let two = parse_claims_body(&headers(&[
        ("x-amz-checksum-crc32", "AAAAAA=="),
        ("x-amz-checksum-crc32c", "AAAAAA=="),
    ]))
    .unwrap_err();
    assert_eq!(*two.code(), S3ErrorCode::InvalidRequest);
}

#[test]
fn hashing_detects_md5_and_checksum_mismatches() {
    // MD5("hello") = 5d41402abc4b2a76b9719d911017c592.
    let md5 = hex::decode("5d41402abc4b2a76b9719d911017c592").unwrap();
    let mut h = Hashing::new(Expected {
        md5: Some(md5.clone()),
        checksum: None,
    });
    h.update(b"hel");
    h.update(b"lo");
    assert_eq!(h.finish(), None);
    let mut h = Hashing::new(Expected {
        md5: Some(md5),
        checksum: None,
    });
    h.update(b"hellO");
    assert!(h.finish().unwrap().contains("Content-MD5"));
    // CRC32("hello world") = 0x0d4a1185.
    let mut h = Hashing::new(Expected {
        md5: None,
        checksum: Some((Alg::Crc32, vec![0x0d, 0x4a, 0x11, 0x85])),
    });
    h.update(b"hello world");
    assert_eq!(h.finish(), None);
    let mut h = Hashing::new(Expected {
        md5: None,
        checksum: Some((Alg::Crc32, vec![0, 0, 0, 0])),
    });
    h.update(b"hello world");
    assert!(h.finish().unwrap().contains("x-amz-checksum-crc32"));
}

#[test]
fn completion_checksum_headers_are_not_body_digests() {
    let check = BodyCheck::new();
    arm(
        "CompleteMultipartUpload",
        &headers(&[("x-amz-checksum-crc32", "AAAAAA==")]),
        Some(&check),
    )
    .unwrap();
    assert!(matches!(*check.plan.lock().unwrap(), Plan::PassThrough));
}

const EMPTY_MD5: &str = "1B2M2Y8AsgTpgAmY7PhCfg==";
const EMPTY_SHA256: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

#[test]
fn only_operations_whose_body_is_read_check_it_as_it_is_read() {
    for op in [
        "PutObject",
        "UploadPart",
        "CompleteMultipartUpload",
        "CreateBucket",
        "DeleteObjects",
        "PutObjectTagging",
        "PutBucketTagging",
        "PutBucketVersioning",
    ] {
        assert!(body_is_read(op), "{op}");
    }
    for op in [
        "DeleteObject",
        "CopyObject",
        "UploadPartCopy",
        "CreateMultipartUpload",
        "AbortMultipartUpload",
        "DeleteBucket",
        "DeleteObjectTagging",
        "DeleteBucketTagging",
        "GetObject",
        "HeadObject",
        "ListObjectsV2",
        "PostObject",
    ] {
        assert!(!body_is_read(op), "{op}");
    }
    assert!(BODY_READ_BY_S3S
        .iter()
        .all(|op| !VERIFIED_BY_WRITE_PATH.contains(op)));
}

#[test]
fn digests_of_unread_bodies_are_compared_with_the_empty_body() {
    for cl in [Some("0"), None] {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut v = pairs.to_vec();
            if let Some(cl) = cl {
                v.push(("content-length", cl));
            }
            headers(&v)
        };
        let e = arm(
            "DeleteObject",
            &with(&[("content-md5", "XUFAKrxLKna5cZ2REBfFkg==")]),
            Some(&BodyCheck::new()),
        )
        .unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::BadDigest, "{cl:?}");
        let e = arm(
            "CopyObject",
            &with(&[(
                "x-amz-checksum-sha256",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )]),
            Some(&BodyCheck::new()),
        )
        .unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::BadDigest, "{cl:?}");
        let check = BodyCheck::new();
        arm(
            "DeleteObject",
            &with(&[
                ("content-md5", EMPTY_MD5),
                ("x-amz-checksum-sha256", EMPTY_SHA256),
            ]),
            Some(&check),
        )
        .unwrap();
        assert!(matches!(*check.plan.lock().unwrap(), Plan::PassThrough));
    }
}

#[test]
fn unread_bodies_with_digests_are_refused() {
    for extra in [("content-length", "5"), ("transfer-encoding", "chunked")] {
        let e = arm(
            "DeleteObject",
            &headers(&[("content-md5", EMPTY_MD5), extra]),
            Some(&BodyCheck::new()),
        )
        .unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::InvalidRequest, "{extra:?}");
    }
    // Without a digest nothing is claimed, so nothing is refused.
    arm("DeleteObject", &headers(&[("content-length", "5")]), None).unwrap();
}

#[test]
fn chunked_bodies_with_digests_are_refused_outside_the_write_path() {
    let h = headers(&[
        ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ("content-md5", "XUFAKrxLKna5cZ2REBfFkg=="),
    ]);
    let e = arm("DeleteObjects", &h, None).unwrap_err();
    assert_eq!(*e.code(), S3ErrorCode::NotImplemented);
    arm("PutObject", &h, None).unwrap();
}
