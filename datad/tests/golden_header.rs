//! Golden encoding of the shard file header, format v1. A change to the
//! encoding shows up as a diff of `tests/golden/shard_header_v1.hex` in review.
//! To regenerate deliberately: `WEFT_BLESS=1 cargo test -p weft-datad --test golden_header`.

use weft_common::{SegmentId, ShardIndex};
use weft_datad::shard_file::{ShardHeader, HEADER_BYTES, SHARD_BLOCK_BYTES};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/shard_header_v1.hex"
);

fn known_header() -> ShardHeader {
    ShardHeader::new(
        SegmentId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
        ShardIndex(5),
        5 * 1024 * 1024 + 3,
    )
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn shard_header_v1_matches_golden() {
    let header = known_header();
    assert_eq!(header.block_bytes, SHARD_BLOCK_BYTES);
    let encoded = to_hex(&header.encode());
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(GOLDEN, format!("{encoded}\n")).expect("write golden file");
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("golden file exists");
    let golden = golden.trim();
    assert_eq!(golden.len(), 2 * HEADER_BYTES);
    assert_eq!(encoded, golden, "shard header v1 encoding changed");

    // And the golden bytes decode to the same header.
    let mut bytes = [0u8; HEADER_BYTES];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&golden[2 * i..2 * i + 2], 16).expect("hex");
    }
    assert_eq!(ShardHeader::decode(&bytes), Ok(header));
}
