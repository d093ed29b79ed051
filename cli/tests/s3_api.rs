//! The S3 API through a real in-process cluster: operations, listing and the
//! S3 errors clients see.

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_head_list_delete() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("photos").await.status, 200);
    assert_eq!(
        s3.request("HEAD", "/photos", &[], &[], vec![]).await.status,
        200
    );

    // A small object (replicated), an EC object of several stripes and segments, an empty one.
    let small = data(1, 1000);
    let big = data(2, 10 * 1024 * 1024 + 12345);
    s3.must_put("photos", "small.bin", small.clone()).await;
    s3.must_put("photos", "dir/big.bin", big.clone()).await;
    s3.must_put("photos", "empty", vec![]).await;
    s3.must_get_equal("photos", "small.bin", &small).await;
    s3.must_get_equal("photos", "dir/big.bin", &big).await;
    s3.must_get_equal("photos", "empty", &[]).await;

    // ETag is the MD5 of the body; every response carries a request id.
    let h = s3.head("photos", "dir/big.bin").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("x-amz-request-id").map(|id| id.len()), Some(16));
    assert_eq!(
        h.header("content-length").as_deref(),
        Some(big.len().to_string().as_str())
    );
    let md5 = weft_common::checksum::md5_hex(&big);
    assert_eq!(h.header("etag"), Some(format!("\"{md5}\"")));

    // Ranges: inside a stripe, across stripes (4 MiB), suffix, open-ended.
    for (range, expected) in [
        ("bytes=0-99", &big[0..100]),
        ("bytes=4194000-4194999", &big[4194000..4195000]),
        ("bytes=100-", &big[100..]),
        ("bytes=-5000", &big[big.len() - 5000..]),
    ] {
        let r = s3.get_range("photos", "dir/big.bin", range).await;
        assert_eq!(r.status, 206, "{range}: {}", r.text());
        assert!(r.body == expected, "{range}: wrong bytes");
    }
    let r = s3
        .get_range("photos", "dir/big.bin", "bytes=99999999-")
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.error_code().as_deref(), Some("InvalidRange"));

    // Overwrite replaces the bytes.
    let small2 = data(3, 2000);
    s3.must_put("photos", "small.bin", small2.clone()).await;
    s3.must_get_equal("photos", "small.bin", &small2).await;

    // Listing with delimiter and prefix.
    let l = s3.list("photos", &[("delimiter", "/")]).await;
    assert_eq!(l.status, 200, "{}", l.text());
    let body = l.text();
    assert_eq!(xml_values(&body, "Key"), vec!["empty", "small.bin"]);
    assert_eq!(
        xml_values(&body, "Prefix")
            .iter()
            .filter(|p| *p == "dir/")
            .count(),
        1
    );
    let l = s3.list("photos", &[("prefix", "dir/")]).await;
    assert_eq!(xml_values(&l.text(), "Key"), vec!["dir/big.bin"]);

    // The gateway counts what it served.
    let metrics = tc
        .c()
        .internal_http()
        .get(format!("{}/metrics", tc.c().admin_endpoint()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("weft_gateway_requests_total{method=\"PUT\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_gateway_written_bytes_total"),
        "{metrics}"
    );

    // Delete, then the key is gone.
    assert_eq!(s3.delete("photos", "small.bin").await.status, 204);
    let r = s3.get("photos", "small.bin").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code().as_deref(), Some("NoSuchKey"));
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_with_continuation_and_start_after() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("many").await.status, 200);
    let mut keys = vec![];
    for d in 0..4 {
        for f in 0..6 {
            keys.push(format!("d{d}/f{f}"));
        }
    }
    keys.push("top1".into());
    keys.push("top2".into());
    for k in &keys {
        s3.must_put("many", k, k.as_bytes().to_vec()).await;
    }
    keys.sort();

    // Flat listing, 5 per page, following continuation tokens.
    let mut seen = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("max-keys", "5")];
        if let Some(t) = &token {
            q.push(("continuation-token", t.as_str()));
        }
        let r = s3.list("many", &q).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.text();
        let page = xml_values(&body, "Key");
        assert!(page.len() <= 5);
        seen.extend(page);
        match xml_values(&body, "NextContinuationToken").pop() {
            Some(t) => {
                assert_eq!(xml_values(&body, "IsTruncated"), vec!["true"]);
                token = Some(t)
            }
            None => break,
        }
    }
    assert_eq!(seen, keys);

    // Delimiter listing, 2 entries per page: prefixes are skipped whole.
    let mut entries = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("max-keys", "2"), ("delimiter", "/")];
        if let Some(t) = &token {
            q.push(("continuation-token", t.as_str()));
        }
        let body = s3.list("many", &q).await.text();
        let prefixes: Vec<String> = xml_values(&body, "Prefix")
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        entries.extend(prefixes);
        entries.extend(xml_values(&body, "Key"));
        match xml_values(&body, "NextContinuationToken").pop() {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    entries.sort();
    assert_eq!(entries, vec!["d0/", "d1/", "d2/", "d3/", "top1", "top2"]);

    // start-after.
    let body = s3.list("many", &[("start-after", "d3/f4")]).await.text();
    assert_eq!(xml_values(&body, "Key"), vec!["d3/f5", "top1", "top2"]);
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_s3_errors() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();

    let r = s3.get("nosuchbucket", "k").await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (404, Some("NoSuchBucket")),
        "{}",
        r.text()
    );
    let r = s3.list("nosuchbucket", &[]).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (404, Some("NoSuchBucket"))
    );

    assert_eq!(s3.mb("real").await.status, 200);
    let r = s3.get("real", "missing").await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (404, Some("NoSuchKey"))
    );

    let r = s3.with_secret("wrong-secret").get("real", "missing").await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (403, Some("SignatureDoesNotMatch")),
        "{}",
        r.text()
    );

    let r = s3.with_clock_offset(-3600).get("real", "missing").await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (403, Some("RequestTimeTooSkewed")),
        "{}",
        r.text()
    );

    let r = s3.mb("Bad_Name").await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (400, Some("InvalidBucketName")),
        "{}",
        r.text()
    );

    let r = s3.mb("real").await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("BucketAlreadyOwnedByYou"),
        "{}",
        r.text()
    );

    s3.must_put("real", "k", b"x".to_vec()).await;
    let r = s3.rb("real").await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (409, Some("BucketNotEmpty"))
    );
    assert_eq!(s3.delete("real", "k").await.status, 204);
    assert_eq!(s3.rb("real").await.status, 204);
    let r = s3.request("HEAD", "/real", &[], &[], vec![]).await;
    assert_eq!(r.status, 404);

    let long_key = "k".repeat(1025);
    assert_eq!(s3.mb("keys").await.status, 200);
    let r = s3.put("keys", &long_key, b"x".to_vec()).await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("KeyTooLongError"),
        "{}",
        r.text()
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_own_their_buckets() {
    let tc = TestCluster::start().await;
    let c = tc.c();
    let admin = c.admin_client();
    let alice: weft_gateway::admin::KeyView = admin
        .call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(serde_json::json!({"name": "alice"})),
        )
        .await
        .unwrap();
    let bob: weft_gateway::admin::KeyView = admin
        .call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(serde_json::json!({"name": "bob"})),
        )
        .await
        .unwrap();
    let a = S3Client::new(
        &c.s3_endpoint(),
        &alice.access_key,
        alice.secret_key.as_deref().unwrap(),
        c.region(),
    );
    let b = S3Client::new(
        &c.s3_endpoint(),
        &bob.access_key,
        bob.secret_key.as_deref().unwrap(),
        c.region(),
    );
    assert_eq!(a.mb("alices").await.status, 200);
    a.must_put("alices", "secret.txt", b"mine".to_vec()).await;

    let r = b.get("alices", "secret.txt").await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (403, Some("AccessDenied"))
    );
    let r = b.put("alices", "x", b"y".to_vec()).await;
    assert_eq!(r.error_code().as_deref(), Some("AccessDenied"));
    let r = b.mb("alices").await;
    assert_eq!(r.error_code().as_deref(), Some("BucketAlreadyExists"));
    // Bob's bucket list does not show Alice's bucket; root sees it.
    assert!(!b
        .request("GET", "/", &[], &[], vec![])
        .await
        .text()
        .contains("alices"));
    assert!(tc
        .root_client()
        .request("GET", "/", &[], &[], vec![])
        .await
        .text()
        .contains("alices"));
    tc.root_client()
        .must_get_equal("alices", "secret.txt", b"mine")
        .await;

    // A deleted key stops working (after the gateway's short key cache).
    let _: serde_json::Value = admin
        .call(reqwest::Method::DELETE, "/v1/keys/alice", None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = a.get("alices", "secret.txt").await;
        if r.status == 403 {
            assert_eq!(r.error_code().as_deref(), Some("InvalidAccessKeyId"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deleted key still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosted_style_addressing() {
    let tc = TestCluster::start().await;
    let s3 = tc.root_client();
    assert_eq!(s3.mb("vhost-bucket").await.status, 200);
    let addr: std::net::SocketAddr = tc
        .c()
        .s3_endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let vh = s3.virtual_host("vhost-bucket", addr);
    let r = vh
        .request(
            "PUT",
            "/dir/obj.txt",
            &[],
            &[],
            b"via virtual host".to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s3.must_get_equal("vhost-bucket", "dir/obj.txt", b"via virtual host")
        .await;
    let r = vh
        .request("GET", "/", &[("list-type", "2")], &[], vec![])
        .await;
    assert_eq!(xml_values(&r.text(), "Key"), vec!["dir/obj.txt"]);
    tc.shutdown().await;
}
