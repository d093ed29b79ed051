//! Inputs Weft does not honour, refused before anything is read or written.
//!
//! S3 clients send security promises in headers: encrypt this (SSE, SSE-C),
//! keep this (object lock, legal hold), share this (ACLs, grants), only if
//! the bucket is mine (expected-bucket-owner). Accepting such a request and
//! storing plaintext, or letting a DELETE remove a "locked" object, breaks
//! the promise silently. Until a feature exists, every input it needs is
//! refused here, with NotImplemented or AWS's own code where AWS has a more
//! specific one. The rules are one table ([`RULES`]) so they can be audited
//! and documented (docs/s3-compatibility.md lists them) and tested one by
//! one.
//!
//! Header and query inputs are checked by [`check`] from the access check,
//! after authentication and before s3s reads the body. Body elements are
//! only visible once s3s has parsed the body, so the operation calls
//! [`refuse_body_element`] first thing.
//!
//! Inputs deliberately accepted because Weft's only behaviour is what they
//! ask for: `x-amz-acl: private` / `bucket-owner-full-control` (only the
//! bucket's owner has access), `x-amz-object-ownership: BucketOwnerEnforced`
//! (there are no ACLs), `x-amz-bucket-object-lock-enabled: false`,
//! `x-amz-request-payer: requester` (no bucket is requester-pays, so the
//! acknowledgement changes nothing, as on AWS),
//! `x-amz-bypass-governance-retention` (nothing is ever under retention),
//! and `<MfaDelete>Disabled</MfaDelete>` in PutBucketVersioning.

use http::HeaderMap;
use s3s::{S3Error, S3ErrorCode, S3Result};

/// Where an input travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A request header (lower case).
    Header(&'static str),
    /// A query parameter.
    Query(&'static str),
    /// An element of the XML body, as `Parent/Child`.
    BodyElement(&'static str),
}

impl Input {
    /// The name as a client sends it.
    pub fn name(self) -> &'static str {
        match self {
            Input::Header(n) | Input::Query(n) | Input::BodyElement(n) => n,
        }
    }
}

/// One refusal: these operations, this input, unless its value is one of
/// `allowed` (compared case-insensitively), answer `code` with `reason`.
#[derive(Debug)]
pub struct Rule {
    /// s3s operation names.
    pub ops: &'static [&'static str],
    /// The input.
    pub input: Input,
    /// Values Weft honours (its only behaviour); empty: any value is refused.
    pub allowed: &'static [&'static str],
    /// A value a client would send that is refused (docs and tests use it).
    pub example: &'static str,
    /// The S3 error code.
    pub code: S3ErrorCode,
    /// What the client is told, after the input's name.
    pub reason: &'static str,
}

const OBJECT_WRITES: &[&str] = &["PutObject", "CopyObject", "CreateMultipartUpload"];
const BUCKET_AND_OBJECT_WRITES: &[&str] = &[
    "CreateBucket",
    "PutObject",
    "CopyObject",
    "CreateMultipartUpload",
];
const SSE_C_WRITES: &[&str] = &[
    "PutObject",
    "CopyObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "ListParts",
];
const SSE_C_READS: &[&str] = &["GetObject", "HeadObject"];
const COPIES: &[&str] = &["CopyObject", "UploadPartCopy"];
const OBJECT_TAGGING: &[&str] = &[
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
];

/// Every operation Weft implements (the S3 trait methods in s3.rs).
pub const IMPLEMENTED_OPS: &[&str] = &[
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CopyObject",
    "CreateBucket",
    "CreateMultipartUpload",
    "DeleteBucket",
    "DeleteBucketLifecycle",
    "DeleteBucketTagging",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjects",
    "GetBucketLifecycleConfiguration",
    "GetBucketLocation",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetObject",
    "GetObjectTagging",
    "HeadBucket",
    "HeadObject",
    "ListBuckets",
    "ListMultipartUploads",
    "ListObjectVersions",
    "ListObjects",
    "ListObjectsV2",
    "ListParts",
    "PutBucketLifecycleConfiguration",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutObject",
    "PutObjectTagging",
    "UploadPart",
    "UploadPartCopy",
];

const SSE_C_WRITE_REASON: &str = "server-side encryption with customer keys (SSE-C) is not supported; Weft would store the object unencrypted. Encrypt on the client instead";
const SSE_C_READ_REASON: &str =
    "The encryption parameters are not applicable to this object (Weft stores no SSE-C objects)";
const SSE_REASON: &str = "server-side encryption is not supported; Weft would store the object unencrypted. Encrypt on the client instead";
const ACL_REASON: &str = "Weft has no ACLs: only the bucket's owner has access (as with S3 Object Ownership BucketOwnerEnforced). Send no ACL, or `private`";
const LOCK_REASON: &str = "Bucket is missing Object Lock Configuration (Weft does not support object lock, retention or legal holds)";

/// The table. Order is irrelevant; each (operation, input) appears once.
pub const RULES: &[Rule] = &[
    // --- SSE-C ---
    Rule { ops: SSE_C_WRITES, input: Input::Header("x-amz-server-side-encryption-customer-algorithm"), allowed: &[], example: "AES256", code: S3ErrorCode::NotImplemented, reason: SSE_C_WRITE_REASON },
    Rule { ops: SSE_C_WRITES, input: Input::Header("x-amz-server-side-encryption-customer-key"), allowed: &[], example: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", code: S3ErrorCode::NotImplemented, reason: SSE_C_WRITE_REASON },
    Rule { ops: SSE_C_WRITES, input: Input::Header("x-amz-server-side-encryption-customer-key-md5"), allowed: &[], example: "zZ7ZKDd9mZBORlr8AQ8uVA==", code: S3ErrorCode::NotImplemented, reason: SSE_C_WRITE_REASON },
    Rule { ops: SSE_C_READS, input: Input::Header("x-amz-server-side-encryption-customer-algorithm"), allowed: &[], example: "AES256", code: S3ErrorCode::InvalidRequest, reason: SSE_C_READ_REASON },
    Rule { ops: SSE_C_READS, input: Input::Header("x-amz-server-side-encryption-customer-key"), allowed: &[], example: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", code: S3ErrorCode::InvalidRequest, reason: SSE_C_READ_REASON },
    Rule { ops: SSE_C_READS, input: Input::Header("x-amz-server-side-encryption-customer-key-md5"), allowed: &[], example: "zZ7ZKDd9mZBORlr8AQ8uVA==", code: S3ErrorCode::InvalidRequest, reason: SSE_C_READ_REASON },
    Rule { ops: COPIES, input: Input::Header("x-amz-copy-source-server-side-encryption-customer-algorithm"), allowed: &[], example: "AES256", code: S3ErrorCode::InvalidRequest, reason: SSE_C_READ_REASON },
    Rule { ops: COPIES, input: Input::Header("x-amz-copy-source-server-side-encryption-customer-key"), allowed: &[], example: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", code: S3ErrorCode::InvalidRequest, reason: SSE_C_READ_REASON },
    Rule { ops: COPIES, input: Input::Header("x-amz-copy-source-server-side-encryption-customer-key-md5"), allowed: &[], example: "zZ7ZKDd9mZBORlr8AQ8uVA==", code: S3ErrorCode::InvalidRequest, reason: SSE_C_READ_REASON },
    // --- SSE-S3 / SSE-KMS ---
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-server-side-encryption"), allowed: &[], example: "AES256", code: S3ErrorCode::NotImplemented, reason: SSE_REASON },
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-server-side-encryption-aws-kms-key-id"), allowed: &[], example: "arn:aws:kms:us-east-1:111122223333:key/1", code: S3ErrorCode::NotImplemented, reason: SSE_REASON },
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-server-side-encryption-context"), allowed: &[], example: "eyJhIjoiYiJ9", code: S3ErrorCode::NotImplemented, reason: SSE_REASON },
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-server-side-encryption-bucket-key-enabled"), allowed: &[], example: "true", code: S3ErrorCode::NotImplemented, reason: SSE_REASON },
    // --- ACLs ---
    Rule { ops: &["CreateBucket"], input: Input::Header("x-amz-acl"), allowed: &["private"], example: "public-read", code: S3ErrorCode::AccessControlListNotSupported, reason: ACL_REASON },
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-acl"), allowed: &["private", "bucket-owner-full-control"], example: "public-read", code: S3ErrorCode::AccessControlListNotSupported, reason: ACL_REASON },
    Rule { ops: BUCKET_AND_OBJECT_WRITES, input: Input::Header("x-amz-grant-full-control"), allowed: &[], example: "id=\"1234\"", code: S3ErrorCode::AccessControlListNotSupported, reason: ACL_REASON },
    Rule { ops: BUCKET_AND_OBJECT_WRITES, input: Input::Header("x-amz-grant-read"), allowed: &[], example: "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"", code: S3ErrorCode::AccessControlListNotSupported, reason: ACL_REASON },
    Rule { ops: BUCKET_AND_OBJECT_WRITES, input: Input::Header("x-amz-grant-read-acp"), allowed: &[], example: "id=\"1234\"", code: S3ErrorCode::AccessControlListNotSupported, reason: ACL_REASON },
    Rule { ops: BUCKET_AND_OBJECT_WRITES, input: Input::Header("x-amz-grant-write-acp"), allowed: &[], example: "id=\"1234\"", code: S3ErrorCode::AccessControlListNotSupported, reason: ACL_REASON },
    Rule { ops: &["CreateBucket"], input: Input::Header("x-amz-grant-write"), allowed: &[], example: "id=\"1234\"", code: S3ErrorCode::AccessControlListNotSupported, reason: ACL_REASON },
    Rule { ops: &["CreateBucket"], input: Input::Header("x-amz-object-ownership"), allowed: &["BucketOwnerEnforced"], example: "ObjectWriter", code: S3ErrorCode::NotImplemented, reason: "Weft has no ACLs, so object ownership is always BucketOwnerEnforced" },
    // --- Object lock ---
    Rule { ops: &["CreateBucket"], input: Input::Header("x-amz-bucket-object-lock-enabled"), allowed: &["false"], example: "true", code: S3ErrorCode::NotImplemented, reason: "object lock is not supported: Weft cannot keep objects from being deleted or overwritten" },
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-object-lock-mode"), allowed: &[], example: "COMPLIANCE", code: S3ErrorCode::InvalidRequest, reason: LOCK_REASON },
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-object-lock-retain-until-date"), allowed: &[], example: "2099-01-01T00:00:00Z", code: S3ErrorCode::InvalidRequest, reason: LOCK_REASON },
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-object-lock-legal-hold"), allowed: &[], example: "ON", code: S3ErrorCode::InvalidRequest, reason: LOCK_REASON },
    Rule { ops: &["DeleteObject", "DeleteObjects", "PutBucketVersioning"], input: Input::Header("x-amz-mfa"), allowed: &[], example: "arn:aws:iam::123456789012:mfa/user 123456", code: S3ErrorCode::NotImplemented, reason: "MFA delete is not supported" },
    Rule { ops: &["PutBucketVersioning"], input: Input::BodyElement("VersioningConfiguration/MfaDelete"), allowed: &["Disabled"], example: "Enabled", code: S3ErrorCode::NotImplemented, reason: "MFA delete is not supported (Disabled is accepted: it is Weft's only behaviour)" },
    // --- Ownership expectations ---
    Rule { ops: IMPLEMENTED_OPS, input: Input::Header("x-amz-expected-bucket-owner"), allowed: &[], example: "111122223333", code: S3ErrorCode::NotImplemented, reason: "Weft has no AWS account ids to check the bucket's owner against; leave the expectation out" },
    Rule { ops: COPIES, input: Input::Header("x-amz-source-expected-bucket-owner"), allowed: &[], example: "111122223333", code: S3ErrorCode::NotImplemented, reason: "Weft has no AWS account ids to check the source bucket's owner against; leave the expectation out" },
    // --- Lifecycle ---
    Rule { ops: &["PutBucketLifecycleConfiguration"], input: Input::Header("x-amz-transition-default-minimum-object-size"), allowed: &["all_storage_classes_128K"], example: "varies_by_storage_class", code: S3ErrorCode::NotImplemented, reason: "only the default transition minimum (all_storage_classes_128K) is honoured" },
    // --- Other object inputs Weft would drop ---
    Rule { ops: OBJECT_WRITES, input: Input::Header("x-amz-website-redirect-location"), allowed: &[], example: "/other-page.html", code: S3ErrorCode::NotImplemented, reason: "website redirects are not supported" },
    Rule { ops: &["CopyObject"], input: Input::Header("x-amz-checksum-algorithm"), allowed: &[], example: "CRC32", code: S3ErrorCode::NotImplemented, reason: "a copy keeps the source's checksums; a new checksum algorithm cannot be requested on copy" },
    Rule { ops: &["PutObject"], input: Input::Header("x-amz-write-offset-bytes"), allowed: &[], example: "0", code: S3ErrorCode::NotImplemented, reason: "appending to objects is not supported" },
    Rule { ops: &["DeleteObject"], input: Input::Header("if-match"), allowed: &[], example: "\"d41d8cd98f00b204e9800998ecf8427e\"", code: S3ErrorCode::NotImplemented, reason: "conditional deletes are not supported" },
    Rule { ops: &["DeleteObject"], input: Input::Header("x-amz-if-match-last-modified-time"), allowed: &[], example: "Wed, 01 Jan 2025 00:00:00 GMT", code: S3ErrorCode::NotImplemented, reason: "conditional deletes are not supported" },
    Rule { ops: &["DeleteObject"], input: Input::Header("x-amz-if-match-size"), allowed: &[], example: "5", code: S3ErrorCode::NotImplemented, reason: "conditional deletes are not supported" },
    Rule { ops: &["DeleteObjects"], input: Input::BodyElement("Object/ETag"), allowed: &[], example: "\"d41d8cd98f00b204e9800998ecf8427e\"", code: S3ErrorCode::NotImplemented, reason: "conditional deletes are not supported" },
    Rule { ops: &["DeleteObjects"], input: Input::BodyElement("Object/LastModifiedTime"), allowed: &[], example: "Wed, 01 Jan 2025 00:00:00 GMT", code: S3ErrorCode::NotImplemented, reason: "conditional deletes are not supported" },
    Rule { ops: &["DeleteObjects"], input: Input::BodyElement("Object/Size"), allowed: &[], example: "5", code: S3ErrorCode::NotImplemented, reason: "conditional deletes are not supported" },
    Rule { ops: &["AbortMultipartUpload"], input: Input::Header("x-amz-if-match-initiated-time"), allowed: &[], example: "Wed, 01 Jan 2025 00:00:00 GMT", code: S3ErrorCode::NotImplemented, reason: "conditional aborts are not supported" },
    Rule { ops: &["CompleteMultipartUpload"], input: Input::Header("x-amz-mp-object-size"), allowed: &[], example: "5", code: S3ErrorCode::NotImplemented, reason: "x-amz-mp-object-size is not checked by Weft; leave it out" },
    Rule { ops: OBJECT_TAGGING, input: Input::Query("versionId"), allowed: &[], example: "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY", code: S3ErrorCode::NotImplemented, reason: "tags are kept for the current version only; leave versionId out" },
    Rule { ops: &["CreateBucket"], input: Input::BodyElement("CreateBucketConfiguration/Bucket"), allowed: &[], example: "<Type>Directory</Type>", code: S3ErrorCode::NotImplemented, reason: "directory buckets are not supported" },
    Rule { ops: &["CreateBucket"], input: Input::BodyElement("CreateBucketConfiguration/Location"), allowed: &[], example: "<Type>AvailabilityZone</Type>", code: S3ErrorCode::NotImplemented, reason: "directory buckets are not supported" },
];

fn error(rule: &Rule) -> S3Error {
    S3Error::with_message(
        rule.code.clone(),
        format!("{}: {}", rule.input.name(), rule.reason),
    )
}

fn honoured(rule: &Rule, value: &str) -> bool {
    rule.allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(value.trim()))
}

/// Refuses `op` if it carries a header or query input Weft does not honour.
pub fn check(op: &str, headers: &HeaderMap, query: Option<&str>) -> S3Result<()> {
    for rule in RULES.iter().filter(|r| r.ops.contains(&op)) {
        let refused = match rule.input {
            Input::Header(name) => headers
                .get_all(name)
                .iter()
                .any(|v| !honoured(rule, v.to_str().unwrap_or(""))),
            Input::Query(name) => query.is_some_and(|q| {
                form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == name && !honoured(rule, &v))
            }),
            Input::BodyElement(_) => false,
        };
        if refused {
            return Err(error(rule));
        }
    }
    Ok(())
}

/// The refusal for a body element of `op` that the request carries.
/// Panics if the table has no such rule: a call site names a rule that was
/// removed, a bug the unit tests catch.
pub fn refuse_body_element(op: &str, element: &str) -> S3Error {
    let rule = RULES
        .iter()
        .find(|r| {
            r.ops.contains(&op)
                && r.input.name() == element
                && matches!(r.input, Input::BodyElement(_))
        })
        .unwrap_or_else(|| panic!("no refusal rule for {op} {element}"));
    error(rule)
}

/// Refuses `value` of body element `element` of `op` unless its rule allows
/// it. Panics as [`refuse_body_element`] does.
pub fn check_body_element(op: &str, element: &str, value: &str) -> S3Result<()> {
    let refusal = refuse_body_element(op, element);
    let rule = RULES
        .iter()
        .find(|r| {
            r.ops.contains(&op)
                && r.input.name() == element
                && matches!(r.input, Input::BodyElement(_))
        })
        .expect("refuse_body_element found it");
    if honoured(rule, value) {
        Ok(())
    } else {
        Err(refusal)
    }
}

/// PutBucketVersioning: `MfaDelete` other than `Disabled`.
pub fn check_put_bucket_versioning(config: &s3s::dto::VersioningConfiguration) -> S3Result<()> {
    match &config.mfa_delete {
        None => Ok(()),
        Some(m) => check_body_element(
            "PutBucketVersioning",
            "VersioningConfiguration/MfaDelete",
            m.as_str(),
        ),
    }
}

/// DeleteObjects: per-key conditions are body elements.
pub fn check_delete_objects(objects: &[s3s::dto::ObjectIdentifier]) -> S3Result<()> {
    for o in objects {
        if o.e_tag.is_some() {
            return Err(refuse_body_element("DeleteObjects", "Object/ETag"));
        }
        if o.last_modified_time.is_some() {
            return Err(refuse_body_element(
                "DeleteObjects",
                "Object/LastModifiedTime",
            ));
        }
        if o.size.is_some() {
            return Err(refuse_body_element("DeleteObjects", "Object/Size"));
        }
    }
    Ok(())
}

/// CreateBucket: directory-bucket elements of CreateBucketConfiguration.
pub fn check_create_bucket(input: &s3s::dto::CreateBucketInput) -> S3Result<()> {
    if let Some(c) = &input.create_bucket_configuration {
        if c.bucket.is_some() {
            return Err(refuse_body_element(
                "CreateBucket",
                "CreateBucketConfiguration/Bucket",
            ));
        }
        if c.location.is_some() {
            return Err(refuse_body_element(
                "CreateBucket",
                "CreateBucketConfiguration/Location",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    fn refused_code(op: &str, name: &str, value: &str) -> Option<S3ErrorCode> {
        check(op, &with_header(name, value), None)
            .err()
            .map(|e| e.code().clone())
    }

    #[test]
    fn mfa_delete_disabled_is_honoured_and_enabled_refused() {
        let config = |m: &str| s3s::dto::VersioningConfiguration {
            mfa_delete: Some(s3s::dto::MFADelete::from(m.to_string())),
            status: Some(s3s::dto::BucketVersioningStatus::from(
                "Enabled".to_string(),
            )),
        };
        assert!(check_put_bucket_versioning(&config("Disabled")).is_ok());
        let e = check_put_bucket_versioning(&config("Enabled")).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::NotImplemented);
        assert!(check_put_bucket_versioning(&s3s::dto::VersioningConfiguration::default()).is_ok());
    }

    #[test]
    fn every_rule_names_implemented_operations_once() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RULES {
            for op in r.ops {
                assert!(IMPLEMENTED_OPS.contains(op), "{op} in {:?}", r.input);
                assert!(
                    seen.insert((*op, r.input.name())),
                    "{op} {:?} twice",
                    r.input
                );
            }
            assert!(!honoured(r, r.example), "{:?}: example is allowed", r.input);
        }
    }

    #[test]
    fn the_compatibility_doc_lists_every_refused_input() {
        let doc = include_str!("../../docs/s3-compatibility.md").to_ascii_lowercase();
        for r in RULES {
            let name = r.input.name().to_ascii_lowercase();
            let name = name.as_str();
            assert!(
                doc.contains(&format!("`{name}")),
                "docs/s3-compatibility.md does not mention {name}"
            );
            for op in r.ops {
                assert!(
                    r.ops == IMPLEMENTED_OPS || doc.contains(&op.to_ascii_lowercase()),
                    "docs/s3-compatibility.md does not mention {op}"
                );
            }
        }
    }

    #[test]
    fn every_header_rule_refuses_its_example_with_its_code() {
        for r in RULES {
            if let Input::Header(name) = r.input {
                for op in r.ops {
                    assert_eq!(
                        refused_code(op, name, r.example),
                        Some(r.code.clone()),
                        "{op} {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_body_element_rule_is_reachable() {
        for r in RULES {
            if let Input::BodyElement(e) = r.input {
                for op in r.ops {
                    assert_eq!(*refuse_body_element(op, e).code(), r.code);
                }
            }
        }
    }

    #[test]
    fn sse_c_put_is_not_implemented_and_sse_c_get_is_invalid_request() {
        let k = "x-amz-server-side-encryption-customer-algorithm";
        assert_eq!(
            refused_code("PutObject", k, "AES256"),
            Some(S3ErrorCode::NotImplemented)
        );
        assert_eq!(
            refused_code("GetObject", k, "AES256"),
            Some(S3ErrorCode::InvalidRequest)
        );
        assert_eq!(
            refused_code("HeadObject", k, "AES256"),
            Some(S3ErrorCode::InvalidRequest)
        );
    }

    #[test]
    fn sse_s3_and_kms_are_not_implemented() {
        for v in ["AES256", "aws:kms", "aws:kms:dsse"] {
            assert_eq!(
                refused_code("PutObject", "x-amz-server-side-encryption", v),
                Some(S3ErrorCode::NotImplemented)
            );
        }
    }

    #[test]
    fn canned_acl_private_is_honoured_and_others_refused() {
        for op in [
            "PutObject",
            "CopyObject",
            "CreateMultipartUpload",
            "CreateBucket",
        ] {
            assert_eq!(refused_code(op, "x-amz-acl", "private"), None, "{op}");
            assert_eq!(
                refused_code(op, "x-amz-acl", "public-read"),
                Some(S3ErrorCode::AccessControlListNotSupported),
                "{op}"
            );
        }
        assert_eq!(
            refused_code("PutObject", "x-amz-acl", "bucket-owner-full-control"),
            None
        );
        assert!(refused_code("CreateBucket", "x-amz-acl", "bucket-owner-full-control").is_some());
    }

    #[test]
    fn object_lock_enabled_false_is_honoured() {
        assert_eq!(
            refused_code("CreateBucket", "x-amz-bucket-object-lock-enabled", "false"),
            None
        );
        assert_eq!(
            refused_code("CreateBucket", "x-amz-bucket-object-lock-enabled", "true"),
            Some(S3ErrorCode::NotImplemented)
        );
    }

    #[test]
    fn request_payer_and_bypass_governance_are_honoured() {
        assert_eq!(
            refused_code("GetObject", "x-amz-request-payer", "requester"),
            None
        );
        assert_eq!(
            refused_code("DeleteObject", "x-amz-bypass-governance-retention", "true"),
            None
        );
    }

    #[test]
    fn version_id_on_object_tagging_is_refused() {
        let h = HeaderMap::new();
        for op in OBJECT_TAGGING {
            let e = check(op, &h, Some("tagging&versionId=abc")).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::NotImplemented, "{op}");
        }
        assert!(check("GetObject", &h, Some("versionId=abc")).is_ok());
    }

    #[test]
    fn the_message_names_the_input_and_what_to_do() {
        let e = check(
            "PutObject",
            &with_header("x-amz-server-side-encryption", "AES256"),
            None,
        )
        .unwrap_err();
        let m = e.message().unwrap();
        assert!(m.starts_with("x-amz-server-side-encryption: "), "{m}");
        assert!(m.contains("Encrypt on the client"), "{m}");
    }
}
