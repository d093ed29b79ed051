//! Weft's fuzz targets: parsers that read bytes from outside (a peer, a
//! client) or from disk, each with a property that must hold for any
//! input (docs/testing.md, "Fuzzing", lists them and what is not covered).
//!
//! `fuzzing/fuzz` (cargo-fuzz, `--sanitizer none` on the stable
//! toolchain) drives each function with libFuzzer; `tests/replay.rs` runs
//! every input kept under `corpus/<target>/` and `artifacts/<target>/` on
//! each test run, so a crash once found stays fixed.

use weft_common::rpc::{Command, Query};

mod s3_request;
pub use s3_request::s3_request;

/// A target: checks one input, and says whether it decoded.
pub type Target = fn(&[u8]) -> bool;

/// Every target, by the name its corpus directory has.
/// Each returns whether the input decoded (so the property was checked),
/// which the replay test uses to see that every corpus reaches it.
pub const TARGETS: &[(&str, Target)] = &[
    ("shard_header", shard_header),
    ("envelope", envelope),
    ("rpc_command", rpc_command),
    ("rpc_query", rpc_query),
    ("admin_auth", admin_auth),
    ("certificate_role", certificate_role),
    ("part_checksums", part_checksums),
    ("audit_export", audit_export),
    ("s3_request", s3_request),
];

/// A shard file's 64-byte header (read from disk at every open): a header
/// that decodes re-encodes to bytes that decode to the same header.
pub fn shard_header(data: &[u8]) -> bool {
    use weft_datad::shard_file::{ShardHeader, HEADER_BYTES};
    let mut bytes = [0u8; HEADER_BYTES];
    let n = data.len().min(HEADER_BYTES);
    bytes[..n].copy_from_slice(&data[..n]);
    let Ok(h) = ShardHeader::decode(&bytes) else {
        return false;
    };
    let again = ShardHeader::decode(&h.encode()).expect("a header's own encoding decodes");
    assert_eq!(again, h, "decode(encode(h)) != h");
    true
}

/// A metadata value's envelope (read from metad's state database): what
/// opens is exactly what sealing its payload gives.
pub fn envelope(data: &[u8]) -> bool {
    let (key, stored) = data.split_at(
        data.len()
            .min(data.first().copied().unwrap_or(0) as usize % 17),
    );
    let Ok(payload) = weft_metad::envelope::open("fuzz", key, stored) else {
        return false;
    };
    assert_eq!(
        weft_metad::envelope::seal(key, payload),
        stored,
        "an opened envelope is not the seal of its payload"
    );
    true
}

/// A metad command as it arrives from a peer (JSON): one that parses
/// survives a round trip unchanged, so what a voter applies is what was
/// sent.
pub fn rpc_command(data: &[u8]) -> bool {
    json_round_trips::<Command>(data)
}

/// A metad query (JSON), as [`rpc_command`].
pub fn rpc_query(data: &[u8]) -> bool {
    json_round_trips::<Query>(data)
}

fn json_round_trips<T>(data: &[u8]) -> bool
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return false;
    };
    let bytes = serde_json::to_vec(&value).expect("a parsed value serializes");
    let again: T = serde_json::from_slice(&bytes).expect("a value's own encoding parses");
    assert_eq!(again, value);
    true
}

/// The admin API's `Authorization` header: a parsed header, written back
/// in canonical form, parses to the same fields (the parser reads one
/// meaning from any header it accepts).
pub fn admin_auth(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Some(p) = weft_common::admin_auth::parse(text) else {
        return false;
    };
    let canonical = format!(
        "{} Credential={},Timestamp={},Signature={}",
        weft_common::admin_auth::SCHEME,
        p.access_key,
        p.unix_secs,
        p.signature
    );
    let again = weft_common::admin_auth::parse(&canonical).expect("a canonical header parses");
    assert_eq!(
        (&again.access_key, again.unix_secs, &again.signature),
        (&p.access_key, p.unix_secs, &p.signature)
    );
    true
}

/// A peer's certificate, as the role check reads it: a role webpki reads
/// is one the certificate's bytes name (`<role>.role.weft.invalid`, an
/// IA5String in the subject alternative names).
pub fn certificate_role(data: &[u8]) -> bool {
    let cert = rustls_pki_types::CertificateDer::from(data);
    let Ok(role) = weft_client::pki::role_of(&cert) else {
        return false;
    };
    // DNS names match without regard to ASCII case.
    let marker = role.marker();
    assert!(
        data.windows(marker.len())
            .any(|w| w.eq_ignore_ascii_case(marker.as_bytes())),
        "role {role} read from a certificate that does not name {marker}"
    );
    // The same for the node id a data node certificate names (the first
    // few ids, and one taken from the input).
    let from_input = data
        .iter()
        .take(8)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    for node in [0, 1, 2, 7, 42, from_input] {
        if weft_client::pki::names_node(&cert, node) {
            let marker = weft_client::pki::node_marker(node);
            assert!(
                data.windows(marker.len())
                    .any(|w| w.eq_ignore_ascii_case(marker.as_bytes())),
                "node {node} read from a certificate that does not name {marker}"
            );
        }
    }
    true
}

/// The checksums of a multipart upload's parts, as clients send them,
/// combined into the object's: any text gives an answer or none, without
/// panicking (no stronger property yet).
pub fn part_checksums(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut lines = text.split('\n');
    let Some(alg) = lines.next().and_then(weft_gateway::checksums::Alg::parse) else {
        return false;
    };
    let parts: Vec<(String, u64)> = lines
        .map(|l| match l.split_once(' ') {
            Some((c, n)) => (c.to_string(), n.parse().unwrap_or(0)),
            None => (l.to_string(), 0),
        })
        .collect();
    let mut combined = false;
    for full in [false, true] {
        if let Some(out) = weft_gateway::checksums::combine_parts(alg, full, &parts) {
            assert!(!out.is_empty());
            combined = true;
        }
    }
    combined
}

/// An audit export, as `weft audit verify FILE` reads it (from anyone):
/// verification answers without panicking, and a chain it accepts is the
/// contiguous run of entries it says it checked.
pub fn audit_export(data: &[u8]) -> bool {
    let Ok(x) = serde_json::from_slice::<weft_common::audit::AuditExport>(data) else {
        return false;
    };
    if let Ok(v) = weft_common::audit::verify(&x, &[]) {
        assert_eq!(v.entries as usize, x.entries.len());
        for (i, e) in x.entries.iter().enumerate() {
            assert_eq!(e.seq, v.first + i as u64, "an accepted chain with a gap");
        }
    }
    true
}
