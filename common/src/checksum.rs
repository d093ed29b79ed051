//! Checksums: MD5 for S3 ETags, crc32c for integrity of blocks and objects.

use md5::{Digest, Md5};

/// Incremental MD5 whose result is an S3 ETag value (lowercase hex, no quotes).
#[derive(Default, Clone)]
pub struct EtagHasher(Md5);

impl EtagHasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The ETag value for everything fed so far.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// MD5 of `data` as lowercase hex.
pub fn md5_hex(data: &[u8]) -> String {
    let mut h = EtagHasher::default();
    h.update(data);
    h.finish_hex()
}

/// crc32c of `data`, continuing from `crc` (0 to start).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_empty_is_the_s3_empty_etag() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn crc32c_is_incremental() {
        let whole = crc32c_append(0, b"hello world");
        let parts = crc32c_append(crc32c_append(0, b"hello "), b"world");
        assert_eq!(whole, parts);
        assert_eq!(whole, 0xc994_65aa);
    }
}
