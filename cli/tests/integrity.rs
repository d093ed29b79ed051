//! Every operation that takes a body digest (Content-MD5, x-amz-checksum-*)
//! checks it before acting: a wrong digest is BadDigest and changes nothing,
//! a malformed one is InvalidDigest, a right one works.

mod support;
use support::*;

fn md5_b64(body: &[u8]) -> String {
    b64(&hex::decode(weft_common::checksum::md5_hex(body)).unwrap())
}

fn sha256_b64(body: &[u8]) -> String {
    use sha2::Digest;
    b64(&sha2::Sha256::digest(body))
}

/// An MD5 of other bytes.
fn wrong_md5() -> String {
    b64(&[7u8; 16])
}

fn assert_code(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (status, Some(code)),
        "{}",
        r.text()
    );
}

fn delete_body(keys: &[&str]) -> Vec<u8> {
    let mut b = String::from("<Delete>");
    for k in keys {
        b.push_str(&format!("<Object><Key>{k}</Key></Object>"));
    }
    b.push_str("</Delete>");
    b.into_bytes()
}

fn tagging_body(k: &str, v: &str) -> Vec<u8> {
    format!("<Tagging><TagSet><Tag><Key>{k}</Key><Value>{v}</Value></Tag></TagSet></Tagging>")
        .into_bytes()
}

async fn exists(s3: &S3Client, bucket: &str, key: &str) -> bool {
    let r = s3.head(bucket, key).await;
    assert!(
        r.status == 200 || r.status == 404,
        "HEAD {key}: {}",
        r.status
    );
    r.status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_checks_its_digest_before_deleting() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("dig-del").await.status, 200);
    s3.must_put("dig-del", "a", b"a".to_vec()).await;
    s3.must_put("dig-del", "b", b"b".to_vec()).await;
    let body = delete_body(&["a", "b"]);

    let r = s3
        .request(
            "POST",
            "/dig-del",
            &[("delete", "")],
            &[("content-md5", &wrong_md5())],
            body.clone(),
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    assert!(exists(&s3, "dig-del", "a").await && exists(&s3, "dig-del", "b").await);

    let r = s3
        .request(
            "POST",
            "/dig-del",
            &[("delete", "")],
            &[("x-amz-checksum-sha256", &sha256_b64(b"other"))],
            body.clone(),
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    assert!(exists(&s3, "dig-del", "a").await && exists(&s3, "dig-del", "b").await);

    let r = s3
        .request(
            "POST",
            "/dig-del",
            &[("delete", "")],
            &[("content-md5", "not-an-md5")],
            body.clone(),
        )
        .await;
    assert_code(&r, 400, "InvalidDigest");
    assert!(exists(&s3, "dig-del", "a").await && exists(&s3, "dig-del", "b").await);

    let r = s3
        .request(
            "POST",
            "/dig-del",
            &[("delete", "")],
            &[("content-md5", &md5_b64(&body))],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!exists(&s3, "dig-del", "a").await && !exists(&s3, "dig-del", "b").await);

    let body = delete_body(&["c"]);
    s3.must_put("dig-del", "c", b"c".to_vec()).await;
    let r = s3
        .request(
            "POST",
            "/dig-del",
            &[("delete", "")],
            &[("x-amz-checksum-sha256", &sha256_b64(&body))],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!exists(&s3, "dig-del", "c").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagging_and_versioning_check_their_digest_before_changing_anything() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("dig-tag").await.status, 200);
    s3.must_put("dig-tag", "o", b"o".to_vec()).await;

    // PutObjectTagging.
    let good = tagging_body("k", "v1");
    let r = s3
        .request(
            "PUT",
            "/dig-tag/o",
            &[("tagging", "")],
            &[("content-md5", &md5_b64(&good))],
            good.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let changed = tagging_body("k", "v2");
    let r = s3
        .request(
            "PUT",
            "/dig-tag/o",
            &[("tagging", "")],
            &[("content-md5", &md5_b64(&good))],
            changed,
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    let r = s3
        .request("GET", "/dig-tag/o", &[("tagging", "")], &[], vec![])
        .await;
    assert_eq!(
        xml_values(&r.text(), "Value"),
        vec!["v1"],
        "object tags unchanged"
    );

    // PutBucketTagging.
    let r = s3
        .request(
            "PUT",
            "/dig-tag",
            &[("tagging", "")],
            &[("content-md5", &md5_b64(&good))],
            good.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let changed = tagging_body("k", "v3");
    let r = s3
        .request(
            "PUT",
            "/dig-tag",
            &[("tagging", "")],
            &[("x-amz-checksum-sha256", &sha256_b64(&good))],
            changed,
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    let r = s3
        .request("GET", "/dig-tag", &[("tagging", "")], &[], vec![])
        .await;
    assert_eq!(
        xml_values(&r.text(), "Value"),
        vec!["v1"],
        "bucket tags unchanged"
    );

    // PutBucketVersioning.
    let enable =
        b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>".to_vec();
    let r = s3
        .request(
            "PUT",
            "/dig-tag",
            &[("versioning", "")],
            &[("content-md5", &wrong_md5())],
            enable.clone(),
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    let r = s3
        .request("GET", "/dig-tag", &[("versioning", "")], &[], vec![])
        .await;
    assert!(
        xml_values(&r.text(), "Status").is_empty(),
        "versioning unchanged: {}",
        r.text()
    );
    let r = s3
        .request(
            "PUT",
            "/dig-tag",
            &[("versioning", "")],
            &[("content-md5", &md5_b64(&enable))],
            enable,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s3
        .request("GET", "/dig-tag", &[("versioning", "")], &[], vec![])
        .await;
    assert_eq!(xml_values(&r.text(), "Status"), vec!["Enabled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_operations_check_their_digest_before_acting() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("dig-mp").await.status, 200);
    let r = s3
        .request("POST", "/dig-mp/mp", &[("uploads", "")], &[], vec![])
        .await;
    let upload_id = xml_values(&r.text(), "UploadId").remove(0);

    // UploadPart: wrong digest, no part.
    let part = data(3, 1000);
    let r = s3
        .request(
            "PUT",
            "/dig-mp/mp",
            &[("partNumber", "1"), ("uploadId", &upload_id)],
            &[("content-md5", &wrong_md5())],
            part.clone(),
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    let r = s3
        .request(
            "GET",
            "/dig-mp/mp",
            &[("uploadId", &upload_id)],
            &[],
            vec![],
        )
        .await;
    assert!(
        xml_values(&r.text(), "PartNumber").is_empty(),
        "no part listed: {}",
        r.text()
    );
    let r = s3
        .request(
            "PUT",
            "/dig-mp/mp",
            &[("partNumber", "1"), ("uploadId", &upload_id)],
            &[("content-md5", &md5_b64(&part))],
            part.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = r.header("etag").unwrap();

    // CompleteMultipartUpload: the body's digest, checked before completing.
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    )
    .into_bytes();
    let r = s3
        .request(
            "POST",
            "/dig-mp/mp",
            &[("uploadId", &upload_id)],
            &[("content-md5", &wrong_md5())],
            complete.clone(),
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    assert!(!exists(&s3, "dig-mp", "mp").await, "not completed");
    let r = s3
        .request("GET", "/dig-mp", &[("uploads", "")], &[], vec![])
        .await;
    assert_eq!(
        xml_values(&r.text(), "UploadId"),
        vec![upload_id.clone()],
        "upload still open"
    );
    let r = s3
        .request(
            "POST",
            "/dig-mp/mp",
            &[("uploadId", &upload_id)],
            &[("content-md5", &md5_b64(&complete))],
            complete,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s3.must_get_equal("dig-mp", "mp", &part).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_bucket_and_put_object_check_their_digest() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    let config = b"<CreateBucketConfiguration><LocationConstraint>us-east-1</LocationConstraint></CreateBucketConfiguration>".to_vec();
    let r = s3
        .request(
            "PUT",
            "/dig-cb",
            &[],
            &[("content-md5", &wrong_md5())],
            config.clone(),
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    let r = s3.request("HEAD", "/dig-cb", &[], &[], vec![]).await;
    assert_eq!(r.status, 404, "bucket not created");
    let r = s3
        .request(
            "PUT",
            "/dig-cb",
            &[],
            &[("content-md5", &md5_b64(&config))],
            config,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let body = data(4, 10_000);
    let r = s3
        .request(
            "PUT",
            "/dig-cb/o",
            &[],
            &[("content-md5", &wrong_md5())],
            body.clone(),
        )
        .await;
    assert_code(&r, 400, "BadDigest");
    assert!(!exists(&s3, "dig-cb", "o").await);
    let r = s3
        .request(
            "PUT",
            "/dig-cb/o",
            &[],
            &[("content-md5", "AAAA")],
            body.clone(),
        )
        .await;
    assert_code(&r, 400, "InvalidDigest");
    assert!(!exists(&s3, "dig-cb", "o").await);
    let r = s3
        .request(
            "PUT",
            "/dig-cb/o",
            &[],
            &[("content-md5", &md5_b64(&body))],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s3.must_get_equal("dig-cb", "o", &body).await;
}

/// A part listed in CompleteMultipartUpload with a checksum other than the
/// one stored for it is refused (InvalidPart) and the upload stays open; the
/// stored value completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_checks_listed_part_checksums_against_the_parts() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("dig-pc").await.status, 200);
    let r = s3
        .request(
            "POST",
            "/dig-pc/mp",
            &[("uploads", "")],
            &[("x-amz-checksum-algorithm", "SHA256")],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upload_id = xml_values(&r.text(), "UploadId").remove(0);
    let part = data(5, 2000);
    let sum = sha256_b64(&part);
    let r = s3
        .request(
            "PUT",
            "/dig-pc/mp",
            &[("partNumber", "1"), ("uploadId", &upload_id)],
            &[("x-amz-checksum-sha256", &sum)],
            part.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = r.header("etag").unwrap();
    let body = |checksum: &str| {
        format!(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag>\
             <ChecksumSHA256>{checksum}</ChecksumSHA256></Part></CompleteMultipartUpload>"
        )
        .into_bytes()
    };
    let wrong = sha256_b64(b"other bytes");
    let r = s3
        .request(
            "POST",
            "/dig-pc/mp",
            &[("uploadId", &upload_id)],
            &[],
            body(&wrong),
        )
        .await;
    assert_code(&r, 400, "InvalidPart");
    assert!(
        !exists(&s3, "dig-pc", "mp").await,
        "completed despite a wrong part checksum"
    );
    let r = s3
        .request(
            "POST",
            "/dig-pc/mp",
            &[("uploadId", &upload_id)],
            &[],
            body(&sum),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(exists(&s3, "dig-pc", "mp").await);
}

/// DeleteObject and CopyObject take no body, so nobody reads one to check a
/// digest as it streams: a digest they carry is compared with the empty
/// body's before they act, and a wrong one changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_without_a_body_check_the_empty_body_digest() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("dig-nb").await.status, 200);
    s3.must_put("dig-nb", "src", b"source".to_vec()).await;
    s3.must_put("dig-nb", "victim", b"victim".to_vec()).await;
    let empty_md5 = md5_b64(b"");
    let empty_sha256 = sha256_b64(b"");
    let wrong_sha256 = sha256_b64(b"other");

    for h in [
        ("content-md5", wrong_md5()),
        ("x-amz-checksum-sha256", wrong_sha256.clone()),
    ] {
        let r = s3
            .request("DELETE", "/dig-nb/victim", &[], &[(h.0, &h.1)], vec![])
            .await;
        assert_code(&r, 400, "BadDigest");
        assert!(
            exists(&s3, "dig-nb", "victim").await,
            "deleted despite {h:?}"
        );

        let r = s3
            .request(
                "PUT",
                "/dig-nb/copy",
                &[],
                &[("x-amz-copy-source", "/dig-nb/src"), (h.0, &h.1)],
                vec![],
            )
            .await;
        assert_code(&r, 400, "BadDigest");
        assert!(!exists(&s3, "dig-nb", "copy").await, "copied despite {h:?}");
    }

    let r = s3
        .request(
            "PUT",
            "/dig-nb/copy",
            &[],
            &[
                ("x-amz-copy-source", "/dig-nb/src"),
                ("content-md5", &empty_md5),
                ("x-amz-checksum-sha256", &empty_sha256),
            ],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s3.must_get_equal("dig-nb", "copy", b"source").await;

    // A body where none is taken cannot have its digest checked: refused.
    let r = s3
        .request(
            "DELETE",
            "/dig-nb/victim",
            &[],
            &[("content-md5", &md5_b64(b"body"))],
            b"body".to_vec(),
        )
        .await;
    assert_code(&r, 400, "InvalidRequest");
    assert!(exists(&s3, "dig-nb", "victim").await);

    let r = s3
        .request(
            "DELETE",
            "/dig-nb/victim",
            &[],
            &[("content-md5", &empty_md5)],
            vec![],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!exists(&s3, "dig-nb", "victim").await);
    let r = s3
        .request(
            "DELETE",
            "/dig-nb/copy",
            &[],
            &[("x-amz-checksum-sha256", &empty_sha256)],
            vec![],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!exists(&s3, "dig-nb", "copy").await);
}

/// CompleteMultipartUpload's object checksum headers are checked against the
/// upload: a value of another algorithm than the upload's (or for an upload
/// without one) and an x-amz-checksum-type other than the upload's are
/// refused, not ignored, and the upload stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_refuses_checksum_headers_it_cannot_check() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("dig-ca").await.status, 200);
    let part = data(6, 1500);
    let start = |headers: &'static [(&'static str, &'static str)]| {
        let s3 = &s3;
        let part = part.clone();
        async move {
            let r = s3
                .request("POST", "/dig-ca/mp", &[("uploads", "")], headers, vec![])
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let upload_id = xml_values(&r.text(), "UploadId").remove(0);
            let r = s3
                .request(
                    "PUT",
                    "/dig-ca/mp",
                    &[("partNumber", "1"), ("uploadId", &upload_id)],
                    &[],
                    part,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let etag = r.header("etag").unwrap();
            let body = format!(
                "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
            )
            .into_bytes();
            (upload_id, body)
        }
    };
    let open_uploads = || async {
        let r = s3
            .request("GET", "/dig-ca", &[("uploads", "")], &[], vec![])
            .await;
        xml_values(&r.text(), "UploadId")
    };

    // An upload with SHA256 (COMPOSITE): a CRC32 value, or FULL_OBJECT, is refused.
    let (id, body) = start(&[("x-amz-checksum-algorithm", "SHA256")]).await;
    for h in [
        ("x-amz-checksum-crc32", "AAAAAA=="),
        ("x-amz-checksum-type", "FULL_OBJECT"),
    ] {
        let r = s3
            .request(
                "POST",
                "/dig-ca/mp",
                &[("uploadId", &id)],
                &[h],
                body.clone(),
            )
            .await;
        assert_code(&r, 400, "InvalidRequest");
        assert!(
            !exists(&s3, "dig-ca", "mp").await,
            "completed despite {h:?}"
        );
        assert_eq!(open_uploads().await, vec![id.clone()]);
    }
    let r = s3
        .request(
            "POST",
            "/dig-ca/mp",
            &[("uploadId", &id)],
            &[("x-amz-checksum-type", "COMPOSITE")],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // An upload without an algorithm: any checksum value or type is refused.
    let (id, body) = start(&[]).await;
    for h in [
        (
            "x-amz-checksum-sha256",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
        ("x-amz-checksum-type", "COMPOSITE"),
    ] {
        let r = s3
            .request(
                "POST",
                "/dig-ca/mp",
                &[("uploadId", &id)],
                &[h],
                body.clone(),
            )
            .await;
        assert_code(&r, 400, "InvalidRequest");
        assert_eq!(open_uploads().await, vec![id.clone()], "{h:?}");
    }
    let r = s3
        .request("POST", "/dig-ca/mp", &[("uploadId", &id)], &[], body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(open_uploads().await.is_empty());
}
