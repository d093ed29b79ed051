//! Security-relevant inputs Weft does not honour (SSE, SSE-C, object lock,
//! ACLs, ownership expectations, ...) are refused before anything is
//! written, never accepted and ignored. The table is
//! `weft_gateway::refusals::RULES`; the walk below sends every rule's input
//! on every operation it names and checks the refusal and that nothing
//! changed.

mod support;
use support::*;
use weft_gateway::refusals::{Input, Rule, IMPLEMENTED_OPS, RULES};

const SSE_C: [(&str, &str); 3] = [
    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
    (
        "x-amz-server-side-encryption-customer-key",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    ),
    (
        "x-amz-server-side-encryption-customer-key-md5",
        "zZ7ZKDd9mZBORlr8AQ8uVA==",
    ),
];

fn assert_refused(r: &Resp, status: u16, code: &str, names: &str) {
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (status, Some(code)),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains(names),
        "message names {names}: {}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_put_is_refused_and_sse_c_reads_are_invalid() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("ssec").await.status, 200);
    let r = s3
        .request("PUT", "/ssec/secret", &[], &SSE_C, b"plaintext".to_vec())
        .await;
    assert_refused(&r, 501, "NotImplemented", "SSE-C");
    assert_eq!(
        s3.head("ssec", "secret").await.status,
        404,
        "nothing stored"
    );

    s3.must_put("ssec", "plain", b"plaintext".to_vec()).await;
    let r = s3.request("GET", "/ssec/plain", &[], &SSE_C, vec![]).await;
    assert_refused(&r, 400, "InvalidRequest", "not applicable");
    let r = s3.request("HEAD", "/ssec/plain", &[], &SSE_C, vec![]).await;
    assert_eq!(r.status, 400);
    let r = s3
        .request(
            "PUT",
            "/ssec/copy",
            &[],
            &[
                ("x-amz-copy-source", "/ssec/plain"),
                SSE_C[0],
                SSE_C[1],
                SSE_C[2],
            ],
            vec![],
        )
        .await;
    assert_refused(&r, 501, "NotImplemented", "SSE-C");
    assert_eq!(s3.head("ssec", "copy").await.status, 404, "nothing copied");
    let copy_source_ssec = [
        ("x-amz-copy-source", "/ssec/plain"),
        (
            "x-amz-copy-source-server-side-encryption-customer-algorithm",
            "AES256",
        ),
    ];
    let r = s3
        .request("PUT", "/ssec/copy", &[], &copy_source_ssec, vec![])
        .await;
    assert_refused(
        &r,
        400,
        "InvalidRequest",
        "x-amz-copy-source-server-side-encryption-customer-algorithm",
    );
    assert_eq!(s3.head("ssec", "copy").await.status, 404, "nothing copied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_s3_and_sse_kms_puts_are_refused() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("sse").await.status, 200);
    for v in ["AES256", "aws:kms"] {
        let r = s3
            .request(
                "PUT",
                "/sse/o",
                &[],
                &[("x-amz-server-side-encryption", v)],
                b"x".to_vec(),
            )
            .await;
        assert_refused(&r, 501, "NotImplemented", "x-amz-server-side-encryption");
        let r = s3
            .request(
                "POST",
                "/sse/mp",
                &[("uploads", "")],
                &[("x-amz-server-side-encryption", v)],
                vec![],
            )
            .await;
        assert_refused(&r, 501, "NotImplemented", "x-amz-server-side-encryption");
    }
    assert_eq!(s3.head("sse", "o").await.status, 404);
    let r = s3
        .request("GET", "/sse", &[("uploads", "")], &[], vec![])
        .await;
    assert!(
        xml_values(&r.text(), "UploadId").is_empty(),
        "no upload: {}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_bucket_retention_and_legal_hold_are_refused() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    let r = s3
        .request(
            "PUT",
            "/locked",
            &[],
            &[("x-amz-bucket-object-lock-enabled", "true")],
            vec![],
        )
        .await;
    assert_refused(
        &r,
        501,
        "NotImplemented",
        "x-amz-bucket-object-lock-enabled",
    );
    assert_eq!(
        s3.request("HEAD", "/locked", &[], &[], vec![]).await.status,
        404
    );
    let r = s3
        .request(
            "PUT",
            "/unlocked",
            &[],
            &[("x-amz-bucket-object-lock-enabled", "false")],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "false is Weft's behaviour: {}", r.text());

    for headers in [
        vec![
            ("x-amz-object-lock-mode", "COMPLIANCE"),
            (
                "x-amz-object-lock-retain-until-date",
                "2099-01-01T00:00:00Z",
            ),
        ],
        vec![("x-amz-object-lock-legal-hold", "ON")],
    ] {
        let r = s3
            .request("PUT", "/unlocked/kept", &[], &headers, b"x".to_vec())
            .await;
        assert_refused(&r, 400, "InvalidRequest", "Object Lock");
        assert_eq!(s3.head("unlocked", "kept").await.status, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_acl_private_is_honoured_and_other_acls_are_refused() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    let r = s3
        .request("PUT", "/acl", &[], &[("x-amz-acl", "private")], vec![])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s3
        .request(
            "PUT",
            "/acl/o",
            &[],
            &[("x-amz-acl", "private")],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s3
        .request(
            "PUT",
            "/acl/p",
            &[],
            &[("x-amz-acl", "public-read")],
            b"x".to_vec(),
        )
        .await;
    assert_refused(&r, 400, "AccessControlListNotSupported", "x-amz-acl");
    assert_eq!(s3.head("acl", "p").await.status, 404);
    let r = s3
        .request(
            "PUT",
            "/acl/g",
            &[],
            &[(
                "x-amz-grant-read",
                "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
            )],
            b"x".to_vec(),
        )
        .await;
    assert_refused(&r, 400, "AccessControlListNotSupported", "x-amz-grant-read");
    assert_eq!(s3.head("acl", "g").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_lock_and_encryption_operations_are_not_implemented() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("ops").await.status, 200);
    s3.must_put("ops", "o", b"x".to_vec()).await;
    let acl = b"<AccessControlPolicy><AccessControlList/></AccessControlPolicy>".to_vec();
    for (method, path, query, body) in [
        ("PUT", "/ops/o", "acl", acl.clone()),
        ("PUT", "/ops", "acl", acl),
        ("PUT", "/ops/o", "retention", b"<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate></Retention>".to_vec()),
        ("PUT", "/ops/o", "legal-hold", b"<LegalHold><Status>ON</Status></LegalHold>".to_vec()),
        ("PUT", "/ops", "object-lock", b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>".to_vec()),
        ("PUT", "/ops", "encryption", b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>".to_vec()),
    ] {
        let r = s3.request(method, path, &[(query, "")], &[], body).await;
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (501, Some("NotImplemented")),
            "{method} {path}?{query}: {}",
            r.text()
        );
    }
    // And the object stays deletable: nothing above took hold.
    assert_eq!(s3.delete("ops", "o").await.status, 204);
}

/// A request for `op` against the walk's fixtures: (method, path, query, headers, body).
type Req = (
    &'static str,
    String,
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<u8>,
);

fn request_for(op: &str, upload_id: &str) -> Req {
    let q = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let copy = vec![("x-amz-copy-source".to_string(), "/walk/o".to_string())];
    let tags = b"<Tagging><TagSet><Tag><Key>k</Key><Value>changed</Value></Tag></TagSet></Tagging>"
        .to_vec();
    let part = [("partNumber", "1"), ("uploadId", upload_id)];
    match op {
        "AbortMultipartUpload" => ("DELETE", "/walk/mp".into(), q(&[("uploadId", upload_id)]), vec![], vec![]),
        "CompleteMultipartUpload" => ("POST", "/walk/mp".into(), q(&[("uploadId", upload_id)]), vec![], b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"x\"</ETag></Part></CompleteMultipartUpload>".to_vec()),
        "CopyObject" => ("PUT", "/walk/copy".into(), vec![], copy, vec![]),
        "CreateBucket" => ("PUT", "/walk-new".into(), vec![], vec![], vec![]),
        "CreateMultipartUpload" => ("POST", "/walk/new-mp".into(), q(&[("uploads", "")]), vec![], vec![]),
        "DeleteBucket" => ("DELETE", "/walk".into(), vec![], vec![], vec![]),
        "DeleteBucketLifecycle" => ("DELETE", "/walk".into(), q(&[("lifecycle", "")]), vec![], vec![]),
        "DeleteBucketTagging" => ("DELETE", "/walk".into(), q(&[("tagging", "")]), vec![], vec![]),
        "DeleteObject" => ("DELETE", "/walk/o".into(), vec![], vec![], vec![]),
        "DeleteObjectTagging" => ("DELETE", "/walk/o".into(), q(&[("tagging", "")]), vec![], vec![]),
        "DeleteObjects" => ("POST", "/walk".into(), q(&[("delete", "")]), vec![], b"<Delete><Object><Key>o</Key></Object></Delete>".to_vec()),
        "GetBucketLifecycleConfiguration" => ("GET", "/walk".into(), q(&[("lifecycle", "")]), vec![], vec![]),
        "GetBucketLocation" => ("GET", "/walk".into(), q(&[("location", "")]), vec![], vec![]),
        "GetBucketTagging" => ("GET", "/walk".into(), q(&[("tagging", "")]), vec![], vec![]),
        "GetBucketVersioning" => ("GET", "/walk".into(), q(&[("versioning", "")]), vec![], vec![]),
        "GetObject" => ("GET", "/walk/o".into(), vec![], vec![], vec![]),
        "GetObjectTagging" => ("GET", "/walk/o".into(), q(&[("tagging", "")]), vec![], vec![]),
        "HeadBucket" => ("HEAD", "/walk".into(), vec![], vec![], vec![]),
        "HeadObject" => ("HEAD", "/walk/o".into(), vec![], vec![], vec![]),
        "ListBuckets" => ("GET", "/".into(), vec![], vec![], vec![]),
        "ListMultipartUploads" => ("GET", "/walk".into(), q(&[("uploads", "")]), vec![], vec![]),
        "ListObjectVersions" => ("GET", "/walk".into(), q(&[("versions", "")]), vec![], vec![]),
        "ListObjects" => ("GET", "/walk".into(), vec![], vec![], vec![]),
        "ListObjectsV2" => ("GET", "/walk".into(), q(&[("list-type", "2")]), vec![], vec![]),
        "ListParts" => ("GET", "/walk/mp".into(), q(&[("uploadId", upload_id)]), vec![], vec![]),
        "PutBucketLifecycleConfiguration" => ("PUT", "/walk".into(), q(&[("lifecycle", "")]), vec![], b"<LifecycleConfiguration><Rule><ID>r</ID><Status>Enabled</Status><Filter><Prefix>gone/</Prefix></Filter><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>".to_vec()),
        "PutBucketTagging" => ("PUT", "/walk".into(), q(&[("tagging", "")]), vec![], tags),
        "PutBucketVersioning" => ("PUT", "/walk".into(), q(&[("versioning", "")]), vec![], b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>".to_vec()),
        "PutObject" => ("PUT", "/walk/new".into(), vec![], vec![], b"new".to_vec()),
        "PutObjectTagging" => ("PUT", "/walk/o".into(), q(&[("tagging", "")]), vec![], tags),
        "UploadPart" => ("PUT", "/walk/mp".into(), q(&part), vec![], b"part".to_vec()),
        "UploadPartCopy" => ("PUT", "/walk/mp".into(), q(&part), copy, vec![]),
        other => panic!("the walk has no request for {other}; add one"),
    }
}

/// `req` carrying `rule`'s input with its refused example value.
fn with_input(mut req: Req, rule: &Rule, op: &str) -> Req {
    match rule.input {
        Input::Header(h) => req.3.push((h.to_string(), rule.example.to_string())),
        Input::Query(p) => req.2.push((p.to_string(), rule.example.to_string())),
        Input::BodyElement(e) => {
            req.4 = match (op, e) {
                ("DeleteObjects", _) => {
                    let tag = e.rsplit('/').next().unwrap();
                    format!("<Delete><Object><Key>o</Key><{tag}>{}</{tag}></Object></Delete>", rule.example).into_bytes()
                }
                ("CreateBucket", _) => {
                    let tag = e.rsplit('/').next().unwrap();
                    format!("<CreateBucketConfiguration><{tag}>{}</{tag}></CreateBucketConfiguration>", rule.example).into_bytes()
                }
                ("PutBucketVersioning", _) => format!(
                    "<VersioningConfiguration><Status>Enabled</Status><MfaDelete>{}</MfaDelete></VersioningConfiguration>",
                    rule.example
                )
                .into_bytes(),
                _ => panic!("the walk cannot send body element {e} on {op}; add it"),
            }
        }
    }
    req
}

/// Everything a refused request could have changed.
async fn snapshot(s3: &S3Client, upload_id: &str) -> Vec<String> {
    let mut out = vec![];
    for (path, query) in [
        ("/", vec![]),
        ("/walk", vec![("versions", "")]),
        ("/walk", vec![("uploads", "")]),
        ("/walk/mp", vec![("uploadId", upload_id)]),
        ("/walk", vec![("tagging", "")]),
        ("/walk", vec![("versioning", "")]),
        ("/walk/o", vec![("tagging", "")]),
    ] {
        let r = s3.request("GET", path, &query, &[], vec![]).await;
        out.push(format!("{path}?{query:?} {} {}", r.status, r.text()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_input_is_refused_on_every_operation_and_changes_nothing() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("walk").await.status, 200);
    s3.must_put("walk", "o", b"original".to_vec()).await;
    let r = s3
        .request(
            "PUT",
            "/walk/o",
            &[("tagging", "")],
            &[],
            b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>".to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s3
        .request("POST", "/walk/mp", &[("uploads", "")], &[], vec![])
        .await;
    let upload_id = xml_values(&r.text(), "UploadId").remove(0);

    let before = snapshot(&s3, &upload_id).await;
    let mut sent = 0;
    for op in IMPLEMENTED_OPS {
        for rule in RULES.iter().filter(|r| r.ops.contains(op)) {
            let (method, path, query, headers, body) =
                with_input(request_for(op, &upload_id), rule, op);
            let query: Vec<(&str, &str)> = query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = s3.request(method, &path, &query, &headers, body).await;
            let what = format!("{op} with {:?}: {}", rule.input, r.text());
            let status = rule
                .code
                .status_code()
                .expect("refusal codes have a status")
                .as_u16();
            assert_eq!(r.status, status, "{what}");
            if method != "HEAD" {
                assert_eq!(
                    r.error_code().as_deref(),
                    Some(rule.code.as_str()),
                    "{what}"
                );
                assert!(
                    r.text().contains(rule.input.name()),
                    "message names the input: {what}"
                );
            }
            assert_eq!(
                snapshot(&s3, &upload_id).await,
                before,
                "nothing changed after {op} with {:?}",
                rule.input
            );
            sent += 1;
        }
    }
    assert!(
        sent >= RULES.len(),
        "every rule was sent at least once ({sent})"
    );
    // The fixtures still work without the refused inputs.
    s3.must_get_equal("walk", "o", b"original").await;
}

/// `x-amz-tagging` on CreateMultipartUpload is kept, not refused: aws-cli v2
/// sends it when it copies a tagged object of 8 MiB or more, and the tags
/// must end up on the completed object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_sent_when_a_multipart_upload_starts_are_on_the_completed_object() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("mp-tags").await.status, 200);
    let r = s3
        .request(
            "POST",
            "/mp-tags/o",
            &[("uploads", "")],
            &[("x-amz-tagging", "a=1&b=two%20words")],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upload_id = xml_values(&r.text(), "UploadId").remove(0);
    let part = data(8, 1000);
    let r = s3
        .request(
            "PUT",
            "/mp-tags/o",
            &[("partNumber", "1"), ("uploadId", &upload_id)],
            &[],
            part.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = r.header("etag").unwrap();
    let complete = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let r = s3
        .request(
            "POST",
            "/mp-tags/o",
            &[("uploadId", &upload_id)],
            &[],
            complete.into_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s3.must_get_equal("mp-tags", "o", &part).await;
    let r = s3
        .request("GET", "/mp-tags/o", &[("tagging", "")], &[], vec![])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(xml_values(&r.text(), "Key"), vec!["a", "b"], "{}", r.text());
    assert_eq!(
        xml_values(&r.text(), "Value"),
        vec!["1", "two words"],
        "{}",
        r.text()
    );

    // Malformed tags are refused when the upload starts, as on PutObject.
    let r = s3
        .request(
            "POST",
            "/mp-tags/p",
            &[("uploads", "")],
            &[("x-amz-tagging", "a=1&a=2")],
            vec![],
        )
        .await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("InvalidTag"),
        "{}",
        r.text()
    );
}

/// `<MfaDelete>Disabled</MfaDelete>` asks for what Weft does: accepted.
/// `Enabled` is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_delete_disabled_is_accepted_and_enabled_refused() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("mfa").await.status, 200);
    let body = |status: &str, mfa: &str| {
        format!(
            "<VersioningConfiguration><Status>{status}</Status><MfaDelete>{mfa}</MfaDelete></VersioningConfiguration>"
        )
        .into_bytes()
    };
    let status = || async {
        let r = s3
            .request("GET", "/mfa", &[("versioning", "")], &[], vec![])
            .await;
        xml_values(&r.text(), "Status")
    };
    let r = s3
        .request(
            "PUT",
            "/mfa",
            &[("versioning", "")],
            &[],
            body("Enabled", "Enabled"),
        )
        .await;
    assert_refused(&r, 501, "NotImplemented", "MfaDelete");
    assert!(status().await.is_empty(), "versioning unchanged");
    let r = s3
        .request(
            "PUT",
            "/mfa",
            &[("versioning", "")],
            &[],
            body("Enabled", "Disabled"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status().await, vec!["Enabled"]);
}
