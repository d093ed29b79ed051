//! The checksums of a multipart upload: the part values a completion lists,
//! and the object checksum combined from the parts.

use s3s::dto::*;
use s3s::{s3_error, S3Result};
use std::collections::BTreeMap;
use weft_common::manifest::Upload;

use crate::checksums;

/// A part listed in CompleteMultipartUpload may carry the checksums the
/// client computed for it; each must equal what was stored when the part was
/// uploaded (S3 answers InvalidPart otherwise), never be ignored.
pub(super) fn check_listed_part_checksums(upload: &Upload, p: &CompletedPart) -> S3Result<()> {
    let n = p.part_number.unwrap_or(0);
    let claimed = [
        (checksums::Alg::Crc32, p.checksum_crc32.as_ref()),
        (checksums::Alg::Crc32c, p.checksum_crc32c.as_ref()),
        (checksums::Alg::Crc64Nvme, p.checksum_crc64nvme.as_ref()),
        (checksums::Alg::Sha1, p.checksum_sha1.as_ref()),
        (checksums::Alg::Sha256, p.checksum_sha256.as_ref()),
    ];
    let stored = upload.part(n as u32).map(|part| &part.checksums);
    for (alg, value) in claimed {
        let Some(value) = value else { continue };
        if stored.and_then(|c| c.get(alg.name())) != Some(value) {
            return Err(s3_error!(
                InvalidPart,
                "part {n}: the {} checksum in the request ({value}) does not match the part as uploaded",
                alg.name()
            ));
        }
    }
    Ok(())
}

/// The object checksum of a completed upload, from its parts' checksums,
/// checked against the value the client sent with the completion.
pub(super) fn multipart_checksum(
    upload: &Upload,
    parts: &[(u32, String)],
    input: &CompleteMultipartUploadInput,
) -> S3Result<(BTreeMap<String, String>, Option<String>)> {
    let upload_alg = upload
        .checksum_algorithm
        .as_deref()
        .and_then(checksums::Alg::parse);
    // A value of another algorithm, or a type other than the upload's,
    // cannot be checked against the parts: refused, not ignored.
    let dto = Checksum {
        checksum_crc32: input.checksum_crc32.clone(),
        checksum_crc32c: input.checksum_crc32c.clone(),
        checksum_crc64nvme: input.checksum_crc64nvme.clone(),
        checksum_sha1: input.checksum_sha1.clone(),
        checksum_sha256: input.checksum_sha256.clone(),
        ..Default::default()
    };
    for a in checksums::ALL {
        if checksums::get(&dto, a).is_some() && upload_alg != Some(a) {
            return Err(s3_error!(
                InvalidRequest,
                "the upload was created with checksum algorithm {}, so a {} checksum cannot be checked; send none or the upload's",
                upload_alg.map_or("none", |u| u.name()),
                a.name()
            ));
        }
    }
    if let Some(t) = &input.checksum_type {
        if upload.checksum_type.as_deref() != Some(t.as_str()) {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-checksum-type {} differs from the upload's ({})",
                t.as_str(),
                upload.checksum_type.as_deref().unwrap_or("none")
            ));
        }
    }
    let Some(alg) = upload_alg else {
        return Ok((BTreeMap::new(), None));
    };
    let full = upload.checksum_type.as_deref() == Some(ChecksumType::FULL_OBJECT);
    let mut values = Vec::with_capacity(parts.len());
    for (n, _) in parts {
        let part = upload.part(*n).expect("parts were checked by the caller");
        let Some(v) = part.checksums.get(alg.name()) else {
            return Err(s3_error!(
                InvalidRequest,
                "part {n} was uploaded without its {} checksum",
                alg.name()
            ));
        };
        values.push((v.clone(), part.size));
    }
    let combined = checksums::combine_parts(alg, full, &values)
        .ok_or_else(|| s3_error!(InvalidRequest, "a part checksum is malformed"))?;
    let sent = match alg {
        checksums::Alg::Crc32 => input.checksum_crc32.as_ref(),
        checksums::Alg::Crc32c => input.checksum_crc32c.as_ref(),
        checksums::Alg::Crc64Nvme => input.checksum_crc64nvme.as_ref(),
        checksums::Alg::Sha1 => input.checksum_sha1.as_ref(),
        checksums::Alg::Sha256 => input.checksum_sha256.as_ref(),
    };
    if let Some(sent) = sent {
        // Clients send the composite value with or without the `-N` suffix.
        let bare = combined.split('-').next().unwrap_or(&combined);
        if sent != &combined && sent.as_str() != bare {
            return Err(s3_error!(
                BadDigest,
                "the {} checksum you specified ({sent}) did not match the calculated one ({combined})",
                alg.name()
            ));
        }
    }
    let kind = if full {
        ChecksumType::FULL_OBJECT
    } else {
        ChecksumType::COMPOSITE
    };
    Ok((
        BTreeMap::from([(alg.name().to_string(), combined)]),
        Some(kind.to_string()),
    ))
}
