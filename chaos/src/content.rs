//! Object content derived from a seed, readable at any offset.
//!
//! Every byte the workload writes is a pure function of `(seed, offset)`, so
//! the checker can regenerate any range of any version it has a PUT record
//! for, without the history carrying the bytes. The generator is
//! counter-based (SplitMix64 of the 8-byte word index), which makes a ranged
//! read as cheap to verify as it is to perform.

use sha2::{Digest, Sha256};

/// SplitMix64's finaliser: a bijective, well-mixed function of a u64.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The content seed of one object version written in one run.
pub fn version_seed(run_seed: u64, version: u64) -> u64 {
    mix64(run_seed ^ mix64(version))
}

/// Bytes `[offset, offset + len)` of the object generated from `seed`.
pub fn generate_range(seed: u64, offset: u64, len: u64) -> Vec<u8> {
    let len = usize::try_from(len).expect("range fits in memory");
    let mut out = Vec::with_capacity(len + 16);
    let mut word = offset / 8;
    let skip = (offset % 8) as usize;
    while out.len() < len + skip {
        out.extend_from_slice(
            &mix64(seed ^ word.wrapping_mul(0xd6e8_feb8_6659_fd93)).to_le_bytes(),
        );
        word += 1;
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

/// The whole object of `len` bytes generated from `seed`.
pub fn generate(seed: u64, len: u64) -> Vec<u8> {
    generate_range(seed, 0, len)
}

/// Hex SHA-256, the digest every history record carries.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_agree_with_the_whole() {
        let whole = generate(42, 1000);
        assert_eq!(whole.len(), 1000);
        for (off, len) in [
            (0, 1),
            (1, 7),
            (7, 9),
            (8, 8),
            (13, 500),
            (999, 1),
            (990, 10),
        ] {
            assert_eq!(
                generate_range(42, off, len),
                whole[off as usize..(off + len) as usize].to_vec(),
                "range {off}+{len}"
            );
        }
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(generate(1, 64), generate(2, 64));
        assert_ne!(version_seed(7, 1), version_seed(7, 2));
        assert_eq!(version_seed(7, 1), version_seed(7, 1));
    }
}
