//! S3 additional checksums (`x-amz-checksum-*`): which a request asks for,
//! computing them while the body streams, verifying the client's value from
//! a header or an aws-chunked trailer, and combining part checksums for
//! multipart uploads.
//!
//! A mismatch is `BadDigest` and nothing becomes visible. Values are stored
//! base64-encoded, keyed by algorithm name (`CRC32`, `CRC32C`, `CRC64NVME`,
//! `SHA1`, `SHA256`), and returned when the client asks with
//! `x-amz-checksum-mode: ENABLED`.

use base64::Engine;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::dto::Checksum;
use s3s::{s3_error, S3Result};
use std::collections::BTreeMap;

/// A checksum algorithm S3 knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Alg {
    /// CRC-32 (ISO-HDLC).
    Crc32,
    /// CRC-32C (Castagnoli).
    Crc32c,
    /// CRC-64/NVME.
    Crc64Nvme,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

pub(crate) const ALL: [Alg; 5] = [
    Alg::Crc32,
    Alg::Crc32c,
    Alg::Crc64Nvme,
    Alg::Sha1,
    Alg::Sha256,
];

impl Alg {
    /// S3's name (`x-amz-checksum-algorithm`, stored key).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Crc32 => "CRC32",
            Alg::Crc32c => "CRC32C",
            Alg::Crc64Nvme => "CRC64NVME",
            Alg::Sha1 => "SHA1",
            Alg::Sha256 => "SHA256",
        }
    }

    /// The request header that carries a value (`x-amz-checksum-crc32`, ...).
    pub(crate) fn header(self) -> &'static str {
        match self {
            Alg::Crc32 => "x-amz-checksum-crc32",
            Alg::Crc32c => "x-amz-checksum-crc32c",
            Alg::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Alg::Sha1 => "x-amz-checksum-sha1",
            Alg::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// Parses an algorithm name, case-insensitively.
    pub fn parse(s: &str) -> Option<Alg> {
        ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(s))
    }

    /// Bytes in a decoded value: a header of another length is malformed.
    pub(crate) fn digest_bytes(self) -> usize {
        match self {
            Alg::Crc32 | Alg::Crc32c => 4,
            Alg::Crc64Nvme => 8,
            Alg::Sha1 => 20,
            Alg::Sha256 => 32,
        }
    }

    fn from_header(h: &str) -> Option<Alg> {
        ALL.into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(h.trim()))
    }

    fn is_crc(self) -> bool {
        matches!(self, Alg::Crc32 | Alg::Crc32c | Alg::Crc64Nvme)
    }

    fn crc_algorithm(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            Alg::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            Alg::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            Alg::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            _ => None,
        }
    }
}

/// What one upload asks to be checked.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// Algorithms to compute.
    pub algs: Vec<Alg>,
    /// Values the client sent in headers.
    pub claimed: BTreeMap<Alg, String>,
    /// The algorithm whose value arrives in the aws-chunked trailer.
    pub trailer: Option<Alg>,
}

pub(crate) fn get(c: &Checksum, a: Alg) -> Option<&String> {
    match a {
        Alg::Crc32 => c.checksum_crc32.as_ref(),
        Alg::Crc32c => c.checksum_crc32c.as_ref(),
        Alg::Crc64Nvme => c.checksum_crc64nvme.as_ref(),
        Alg::Sha1 => c.checksum_sha1.as_ref(),
        Alg::Sha256 => c.checksum_sha256.as_ref(),
    }
}

/// Fills the `checksum_*` fields of an output from stored values.
pub fn to_dto(stored: &BTreeMap<String, String>) -> Checksum {
    let mut c = Checksum::default();
    for (name, v) in stored {
        let v = Some(v.clone());
        match Alg::parse(name) {
            Some(Alg::Crc32) => c.checksum_crc32 = v,
            Some(Alg::Crc32c) => c.checksum_crc32c = v,
            Some(Alg::Crc64Nvme) => c.checksum_crc64nvme = v,
            Some(Alg::Sha1) => c.checksum_sha1 = v,
            Some(Alg::Sha256) => c.checksum_sha256 = v,
            None => {}
        }
    }
    c
}

impl Spec {
    /// Reads the request: `x-amz-checksum-*` values (already parsed by s3s
    /// into `claimed`), `x-amz-trailer`, and `x-amz-sdk-checksum-algorithm`
    /// (compute and store without a value to check).
    pub fn from_request(
        claimed: &Checksum,
        headers: &HeaderMap,
        algorithm: Option<&str>,
    ) -> S3Result<Spec> {
        let mut spec = Spec::default();
        for a in ALL {
            if let Some(v) = get(claimed, a) {
                spec.claimed.insert(a, v.clone());
                spec.algs.push(a);
            }
        }
        if spec.claimed.len() > 1 {
            return Err(s3_error!(InvalidRequest, "expecting a single x-amz-checksum- header; multiple checksum types are not allowed"));
        }
        if let Some(t) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
            for name in t.split(',') {
                match Alg::from_header(name) {
                    Some(a) => {
                        spec.trailer = Some(a);
                        if !spec.algs.contains(&a) {
                            spec.algs.push(a);
                        }
                    }
                    None => return Err(s3_error!(InvalidArgument, "unsupported trailer {name:?}")),
                }
            }
        }
        if let Some(name) = algorithm {
            let a = Alg::parse(name)
                .ok_or_else(|| s3_error!(InvalidArgument, "unknown checksum algorithm {name:?}"))?;
            if !spec.algs.contains(&a) {
                spec.algs.push(a);
            }
        }
        Ok(spec)
    }

    /// A hasher for the requested algorithms, or `None` if none.
    pub fn hasher(&self) -> Option<ChecksumHasher> {
        if self.algs.is_empty() {
            return None;
        }
        let mut h = ChecksumHasher::default();
        for a in &self.algs {
            match a {
                Alg::Crc32 => h.crc32 = Some(Default::default()),
                Alg::Crc32c => h.crc32c = Some(Default::default()),
                Alg::Crc64Nvme => h.crc64nvme = Some(Default::default()),
                Alg::Sha1 => h.sha1 = Some(Default::default()),
                Alg::Sha256 => h.sha256 = Some(Default::default()),
            }
        }
        Some(h)
    }

    /// Compares what was computed with what the client claimed (in headers
    /// or in `trailers`) and returns what to store.
    pub fn verify(
        &self,
        computed: &Checksum,
        trailers: Option<&HeaderMap>,
    ) -> S3Result<BTreeMap<String, String>> {
        let mut claimed = self.claimed.clone();
        if let Some(a) = self.trailer {
            let value = trailers
                .and_then(|t| t.get(a.header()))
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    s3_error!(IncompleteBody, "the {} trailer did not arrive", a.header())
                })?;
            claimed.insert(a, value.trim().to_string());
        }
        let mut stored = BTreeMap::new();
        for a in &self.algs {
            let got = get(computed, *a).cloned().unwrap_or_default();
            if let Some(want) = claimed.get(a) {
                if want != &got {
                    return Err(s3_error!(
                        BadDigest,
                        "the {} you specified ({want}) did not match the calculated checksum ({got})",
                        a.header()
                    ));
                }
            }
            stored.insert(a.name().to_string(), got);
        }
        Ok(stored)
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The checksum S3 reports for a multipart object from its parts' checksums
/// (`(value, part size)` in order): COMPOSITE is the checksum of the
/// concatenated part checksums with `-N`; FULL_OBJECT (CRCs only) is the CRC
/// of the whole object, combined from the parts without reading data.
pub fn combine_parts(alg: Alg, full_object: bool, parts: &[(String, u64)]) -> Option<String> {
    if full_object {
        let crc = alg.crc_algorithm()?;
        let width = if alg == Alg::Crc64Nvme { 8 } else { 4 };
        let mut acc: Option<u64> = None;
        for (v, len) in parts {
            let bytes = unb64(v)?;
            if bytes.len() != width {
                return None;
            }
            let part = bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
            acc = Some(match acc {
                None => part,
                Some(a) => crc_fast::checksum_combine(crc, a, part, *len),
            });
        }
        let v = acc?;
        let out = if width == 8 {
            v.to_be_bytes().to_vec()
        } else {
            (v as u32).to_be_bytes().to_vec()
        };
        return Some(b64(&out));
    }
    let mut h = Spec {
        algs: vec![alg],
        ..Default::default()
    }
    .hasher()?;
    for (v, _) in parts {
        h.update(&unb64(v)?);
    }
    get(&h.finalize(), alg).map(|v| format!("{v}-{}", parts.len()))
}

/// Whether an algorithm can be combined into a FULL_OBJECT checksum.
pub fn supports_full_object(alg: Alg) -> bool {
    alg.is_crc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compute(alg: Alg, data: &[u8]) -> String {
        let mut h = Spec {
            algs: vec![alg],
            ..Default::default()
        }
        .hasher()
        .unwrap();
        h.update(data);
        get(&h.finalize(), alg).unwrap().clone()
    }

    #[test]
    fn known_values() {
        // CRC32 of "hello world" is 0x0d4a1185.
        assert_eq!(
            unb64(&compute(Alg::Crc32, b"hello world")).unwrap(),
            vec![0x0d, 0x4a, 0x11, 0x85]
        );
        // CRC32C of "hello world" is 0xc99465aa.
        assert_eq!(
            unb64(&compute(Alg::Crc32c, b"hello world")).unwrap(),
            vec![0xc9, 0x94, 0x65, 0xaa]
        );
    }

    #[test]
    fn full_object_combination_equals_whole_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for alg in [Alg::Crc32, Alg::Crc32c, Alg::Crc64Nvme] {
            let parts: Vec<(String, u64)> = data
                .chunks(30_000)
                .map(|c| (compute(alg, c), c.len() as u64))
                .collect();
            assert_eq!(
                combine_parts(alg, true, &parts),
                Some(compute(alg, &data)),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn composite_is_checksum_of_checksums() {
        let parts = vec![
            (compute(Alg::Sha256, b"a"), 1),
            (compute(Alg::Sha256, b"b"), 1),
        ];
        let mut cat = unb64(&parts[0].0).unwrap();
        cat.extend(unb64(&parts[1].0).unwrap());
        assert_eq!(
            combine_parts(Alg::Sha256, false, &parts),
            Some(format!("{}-2", compute(Alg::Sha256, &cat)))
        );
    }

    #[test]
    fn mismatch_is_bad_digest_and_trailer_is_read() {
        let spec = Spec {
            algs: vec![Alg::Crc32],
            trailer: Some(Alg::Crc32),
            ..Default::default()
        };
        let mut h = spec.hasher().unwrap();
        h.update(b"hello world");
        let computed = h.finalize();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-amz-checksum-crc32", "AAAAAA==".parse().unwrap());
        let err = spec.verify(&computed, Some(&trailers)).unwrap_err();
        assert_eq!(*err.code(), s3s::S3ErrorCode::BadDigest);
        trailers.insert(
            "x-amz-checksum-crc32",
            compute(Alg::Crc32, b"hello world").parse().unwrap(),
        );
        let stored = spec.verify(&computed, Some(&trailers)).unwrap();
        assert_eq!(
            stored.get("CRC32"),
            Some(&compute(Alg::Crc32, b"hello world"))
        );
        assert_eq!(
            *spec.verify(&computed, None).unwrap_err().code(),
            s3s::S3ErrorCode::IncompleteBody
        );
    }
}
