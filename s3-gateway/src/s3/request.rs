//! Parsing what a request carries beyond s3s's typed input: byte ranges,
//! the body length, aws-chunked coding, the tagging header, user metadata.

use s3s::dto::*;
use s3s::{s3_error, S3Result};
use std::collections::BTreeMap;
use weft_common::manifest::ObjectVersion;

use crate::limits::{TAGS_OBJECT_MAX, USER_METADATA_BYTES_MAX};

use super::tagging::check_tag;

/// The `x-amz-checksum-*` values a PUT or UploadPart input carries.
macro_rules! claimed_checksums {
    ($input:expr) => {
        Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            ..Default::default()
        }
    };
}
pub(super) use claimed_checksums;

/// Content-Encoding without the `aws-chunked` transfer coding, which
/// describes the request, not the object (S3 does not store it).
pub(super) fn strip_aws_chunked(v: Option<String>) -> Option<String> {
    let kept: Vec<&str> = v
        .as_deref()?
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// The bytes a GET or HEAD asks for (a Range or a `partNumber`) and the
/// Content-Range to answer with; the whole object when neither is given.
pub(super) fn requested_range(
    v: &ObjectVersion,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<(std::ops::Range<u64>, Option<String>)> {
    let content_range = |r: &std::ops::Range<u64>| {
        format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), v.size)
    };
    match (range, part_number) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        (Some(r), None) => {
            let rg = r.check(v.size).map_err(|_| {
                s3_error!(
                    InvalidRange,
                    "the requested range is not satisfiable for {} bytes",
                    v.size
                )
            })?;
            let cr = content_range(&rg);
            Ok((rg, Some(cr)))
        }
        (None, Some(n)) => {
            let sizes: Vec<u64> = if v.part_sizes.is_empty() {
                vec![v.size]
            } else {
                v.part_sizes.clone()
            };
            if n < 1 || n as usize > sizes.len() {
                return Err(s3_error!(
                    InvalidRange,
                    "part {n} does not exist: the object has {} parts",
                    sizes.len()
                ));
            }
            let start: u64 = sizes[..n as usize - 1].iter().sum();
            let rg = start..start + sizes[n as usize - 1];
            // A single-part object read as part 1 is the whole object: no Content-Range.
            let cr = (!v.part_sizes.is_empty()).then(|| content_range(&rg));
            Ok((rg, cr))
        }
        (None, None) => Ok((0..v.size, None)),
    }
}

/// The length of a request body: Content-Length, or for aws-chunked bodies
/// `x-amz-decoded-content-length` (s3s does not always carry it over). A
/// body with neither is refused: the segment layout needs the size up front.
pub(super) fn body_length(
    content_length: Option<i64>,
    headers: &http::HeaderMap,
    has_body: bool,
) -> S3Result<i64> {
    let decoded = headers
        .get("x-amz-decoded-content-length")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<i64>())
        .transpose()
        .map_err(|_| {
            s3_error!(
                InvalidArgument,
                "x-amz-decoded-content-length is not a number"
            )
        })?;
    let chunked = headers.contains_key(http::header::TRANSFER_ENCODING);
    let n = match (decoded, content_length) {
        (Some(d), _) => d,
        (None, Some(n)) => n,
        // s3s leaves content_length unset for an empty body.
        (None, None) if has_body && chunked => {
            return Err(s3_error!(
                MissingContentLength,
                "PUT needs a Content-Length (or x-amz-decoded-content-length)"
            ))
        }
        (None, None) => 0,
    };
    if n < 0 {
        return Err(s3_error!(InvalidArgument, "negative Content-Length"));
    }
    Ok(n)
}

/// `x-amz-tagging: k1=v1&k2=v2` (URL-encoded).
pub(super) fn parse_tagging_header(h: Option<&str>) -> S3Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(h) = h.filter(|h| !h.is_empty()) else {
        return Ok(out);
    };
    for (k, v) in form_urlencoded::parse(h.as_bytes()) {
        check_tag(&k, &v)?;
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    if out.len() > TAGS_OBJECT_MAX {
        return Err(s3_error!(
            InvalidTag,
            "Object tags cannot be greater than {TAGS_OBJECT_MAX}"
        ));
    }
    Ok(out)
}

/// User metadata with lowercase names, within S3's size limit.
pub(super) fn user_metadata(m: Option<Metadata>) -> S3Result<BTreeMap<String, String>> {
    let user_metadata: BTreeMap<String, String> = m
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let meta_bytes: usize = user_metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if meta_bytes > USER_METADATA_BYTES_MAX {
        return Err(s3_error!(
            MetadataTooLarge,
            "user metadata is {meta_bytes} bytes; the limit is {USER_METADATA_BYTES_MAX}"
        ));
    }
    Ok(user_metadata)
}

pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(
            base64_decode("1B2M2Y8AsgTpgAmY7PhCfg==").unwrap(),
            hex::decode("d41d8cd98f00b204e9800998ecf8427e").unwrap()
        );
        assert!(base64_decode("!!").is_none());
    }
}
