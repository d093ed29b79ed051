//! Conditional requests: the If-Match/If-None-Match/If-Modified-Since/
//! If-Unmodified-Since rules of reads and copies, and S3 conditional writes.

use s3s::dto::*;
use s3s::{s3_error, S3Result};
use weft_common::manifest::ObjectVersion;
use weft_common::rpc::WriteCondition;

/// The four `x-amz-copy-source-if-*` conditions.
pub(super) type CopyConditions<'a> = (
    Option<&'a ETagCondition>,
    Option<&'a ETagCondition>,
    Option<&'a Timestamp>,
    Option<&'a Timestamp>,
);

/// `If-None-Match: *` / `If-Match: <etag>` on a write.
pub(super) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match together are not supported"
        )),
        (Some(ETagCondition::ETag(e)), None) => {
            Ok(Some(WriteCondition::Match(e.value().to_string())))
        }
        (Some(ETagCondition::Any), None) => {
            Err(s3_error!(NotImplemented, "If-Match: * is not supported"))
        }
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::NoneMatchAny)),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on a write supports only *"
        )),
        (None, None) => Ok(None),
    }
}

/// The same check metad makes, to fail before storing data.
pub(super) use weft_common::rpc::condition_refusal;

pub(super) fn etag_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

/// S3's conditional-request rules for GET and HEAD: If-Match and
/// If-Unmodified-Since fail with 412; If-None-Match and If-Modified-Since
/// answer 304. When If-Match holds, If-Unmodified-Since is ignored; when
/// If-None-Match is present, If-Modified-Since is ignored.
pub(super) fn check_preconditions(
    v: &ObjectVersion,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    // HTTP dates have second precision.
    let modified_secs = (v.last_modified_ms / 1000) as i64;
    let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
    match if_match {
        Some(c) if !etag_matches(c, &v.etag) => {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ))
        }
        Some(_) => {}
        None => {
            if let Some(t) = if_unmodified_since {
                if modified_secs > secs(t) {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ));
                }
            }
        }
    }
    match if_none_match {
        Some(c) if etag_matches(c, &v.etag) => return Err(s3_error!(NotModified)),
        Some(_) => {}
        None => {
            if let Some(t) = if_modified_since {
                if modified_secs <= secs(t) {
                    return Err(s3_error!(NotModified));
                }
            }
        }
    }
    Ok(())
}

/// The `x-amz-copy-source-if-*` conditions on a copy's source: the same
/// rules as a read's, except that every failure is 412 (a copy has nothing
/// to answer 304 with).
pub(super) fn check_copy_preconditions(
    v: &ObjectVersion,
    (if_match, if_none_match, if_modified_since, if_unmodified_since): CopyConditions<'_>,
) -> S3Result<()> {
    check_preconditions(
        v,
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
    )
    .map_err(|e| {
        if *e.code() == s3s::S3ErrorCode::NotModified {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::rpc::Refusal;

    fn version(etag: &str) -> ObjectVersion {
        ObjectVersion {
            version_id: weft_common::VersionId::from_random([1; 16]),
            size: 0,
            etag: etag.into(),
            crc32c: 0,
            last_modified_ms: 1_000_000,
            storage_class: "STANDARD".into(),
            user_metadata: Default::default(),
            content: Default::default(),
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

    fn etag(e: &str) -> ETagCondition {
        ETagCondition::ETag(ETag::Strong(e.into()))
    }

    #[test]
    fn write_conditions_are_if_none_match_any_or_if_match_an_etag() {
        assert_eq!(write_condition(None, None).unwrap(), None);
        assert_eq!(
            write_condition(None, Some(&ETagCondition::Any)).unwrap(),
            Some(WriteCondition::NoneMatchAny)
        );
        assert_eq!(
            write_condition(Some(&etag("abc")), None).unwrap(),
            Some(WriteCondition::Match("abc".into()))
        );
        for (m, n) in [
            (Some(etag("abc")), Some(ETagCondition::Any)),
            (Some(ETagCondition::Any), None),
            (None, Some(etag("abc"))),
        ] {
            let e = write_condition(m.as_ref(), n.as_ref()).unwrap_err();
            assert_eq!(*e.code(), s3s::S3ErrorCode::NotImplemented);
        }
    }

    #[test]
    fn the_write_condition_check_refuses_as_metad_does() {
        let v = version("abc");
        let none_match = WriteCondition::NoneMatchAny;
        let matching = WriteCondition::Match("abc".into());
        let other = WriteCondition::Match("xyz".into());
        assert_eq!(condition_refusal(None, Some(&v)), None);
        assert_eq!(condition_refusal(Some(&none_match), None), None);
        assert_eq!(
            condition_refusal(Some(&none_match), Some(&v)),
            Some(Refusal::PreconditionFailed)
        );
        assert_eq!(condition_refusal(Some(&matching), Some(&v)), None);
        assert_eq!(
            condition_refusal(Some(&other), Some(&v)),
            Some(Refusal::PreconditionFailed)
        );
        assert_eq!(
            condition_refusal(Some(&matching), None),
            Some(Refusal::NoSuchKey)
        );
    }

    #[test]
    fn a_copy_source_condition_that_would_be_304_is_412() {
        let v = version("abc");
        let e = check_preconditions(&v, None, Some(&etag("abc")), None, None).unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::NotModified);
        let e = check_copy_preconditions(&v, (None, Some(&etag("abc")), None, None)).unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::PreconditionFailed);
        let e = check_copy_preconditions(&v, (Some(&etag("xyz")), None, None, None)).unwrap_err();
        assert_eq!(*e.code(), s3s::S3ErrorCode::PreconditionFailed);
        assert!(check_copy_preconditions(&v, (Some(&etag("abc")), None, None, None)).is_ok());
    }
}
