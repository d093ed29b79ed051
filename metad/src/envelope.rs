//! The envelope every metadata value wears on disk: a format byte and a
//! crc32c, so a flipped byte in `state.redb` or `raft-log.redb` is caught
//! when the value is read and is never served or applied.
//!
//! Layout: `[FORMAT_V1] [crc32c, 4 bytes LE] [JSON payload]`. The crc covers
//! the table key, the format byte and the payload, so a value that rot moved
//! under another key (a flipped key byte) fails too. JSON never starts with
//! `0xE1`, so values written before the envelope existed are recognisable and
//! are sealed once when the database opens (see [`MIGRATED_KEY`]).

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// Format byte of the current envelope. Bump (and teach [`open`] the old
/// one) when the payload encoding changes.
pub const FORMAT_V1: u8 = 0xE1;
const HEADER: usize = 5;

/// Meta-table key recording that every value of a database is sealed.
pub const MIGRATED_KEY: &str = "value_envelope_v1";

/// A stored value that failed its check: the database is damaged here.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "metadata value in table `{table}` at key {key} is corrupt ({reason}); this voter must not \
     serve or apply it: stop it, move its data directory aside and re-add it so it resyncs from \
     the other voters (weft cluster metad remove, then add)"
)]
pub struct CorruptValue {
    /// Table name.
    pub table: &'static str,
    /// The key, printable (UTF-8 where it is, hex otherwise).
    pub key: String,
    /// What was wrong.
    pub reason: String,
}

impl CorruptValue {
    pub(crate) fn new(table: &'static str, key: &[u8], reason: impl Into<String>) -> Self {
        CorruptValue {
            table,
            key: printable(key),
            reason: reason.into(),
        }
    }
}

/// A key as an operator can read it in a log line.
pub fn printable(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\0') => {
            format!("{:?}", s.replace('\0', "/"))
        }
        _ => format!("0x{}", hex::encode(key)),
    }
}

fn crc(key: &[u8], format: u8, payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(key);
    let c = crc32c::crc32c_append(c, &[format]);
    crc32c::crc32c_append(c, payload)
}

/// Wraps an encoded payload for `key`.
pub fn seal(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&crc(key, FORMAT_V1, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a stored value, after checking format and crc.
pub fn open<'a>(
    table: &'static str,
    key: &[u8],
    stored: &'a [u8],
) -> Result<&'a [u8], CorruptValue> {
    if stored.len() < HEADER {
        return Err(CorruptValue::new(
            table,
            key,
            format!("{} bytes is shorter than the envelope", stored.len()),
        ));
    }
    if stored[0] != FORMAT_V1 {
        return Err(CorruptValue::new(
            table,
            key,
            format!("unknown format byte {:#04x}", stored[0]),
        ));
    }
    let want = u32::from_le_bytes(stored[1..HEADER].try_into().expect("4 bytes"));
    let payload = &stored[HEADER..];
    let got = crc(key, stored[0], payload);
    if got != want {
        return Err(CorruptValue::new(
            table,
            key,
            format!("crc32c {got:08x} != stored {want:08x}"),
        ));
    }
    Ok(payload)
}

/// Serializes and seals `value` for `key`.
pub fn encode<T: Serialize>(key: &[u8], value: &T) -> Vec<u8> {
    seal(
        key,
        &serde_json::to_vec(value).expect("metadata types always serialize"),
    )
}

/// Checks and deserializes a stored value.
pub fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &[u8],
    stored: &[u8],
) -> Result<T, CorruptValue> {
    let payload = open(table, key, stored)?;
    serde_json::from_slice(payload).map_err(|e| {
        CorruptValue::new(
            table,
            key,
            format!("checksum good but payload does not decode: {e}"),
        )
    })
}

/// For migration: seals a value written before the envelope (bare JSON),
/// after checking it parses. `Ok(None)` means it is already sealed.
pub fn seal_legacy(
    table: &'static str,
    key: &[u8],
    stored: &[u8],
) -> Result<Option<Vec<u8>>, CorruptValue> {
    if stored.first() == Some(&FORMAT_V1) {
        open(table, key, stored)?;
        return Ok(None);
    }
    serde_json::from_slice::<serde_json::Value>(stored).map_err(|e| {
        CorruptValue::new(
            table,
            key,
            format!("pre-envelope value is not valid JSON: {e}"),
        )
    })?;
    Ok(Some(seal(key, stored)))
}

// ---- redb adapters: every sealed read and write goes through these ----

use crate::error::MetaError;
use redb::{AccessGuard, Key, ReadableTable, Value};
use std::borrow::Borrow;

/// The bytes redb stores for a key, which the crc covers.
pub fn key_bytes<K: Key>(key: &K::SelfType<'_>) -> Vec<u8> {
    K::as_bytes(key).as_ref().to_vec()
}

/// Sealed reads on any table whose values are sealed metadata.
pub trait SealedRead<K: Key + 'static> {
    /// The value at `key`, checked and decoded.
    fn get_sealed<'a, T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: impl Borrow<K::SelfType<'a>>,
    ) -> Result<Option<T>, MetaError>;
}

impl<K: Key + 'static, Tb: ReadableTable<K, &'static [u8]>> SealedRead<K> for Tb {
    fn get_sealed<'a, T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: impl Borrow<K::SelfType<'a>>,
    ) -> Result<Option<T>, MetaError> {
        let key = key.borrow();
        match self.get(key)? {
            None => Ok(None),
            Some(v) => Ok(Some(decode(table, K::as_bytes(key).as_ref(), v.value())?)),
        }
    }
}

/// Decodes one `(key, value)` item of a table iteration.
pub fn item<K: Key + 'static, T: DeserializeOwned>(
    table: &'static str,
    k: &AccessGuard<'_, K>,
    v: &AccessGuard<'_, &'static [u8]>,
) -> Result<T, MetaError> {
    Ok(decode(table, K::as_bytes(&k.value()).as_ref(), v.value())?)
}

/// Seals `value` for insertion at `key` of a table keyed by `K`.
pub fn sealed<'a, K: Key + 'static, T: Serialize>(
    key: impl Borrow<K::SelfType<'a>>,
    value: &T,
) -> Vec<u8> {
    encode(K::as_bytes(key.borrow()).as_ref(), value)
}

// Keep `Value` in scope for `K::as_bytes`.
#[allow(dead_code)]
fn _uses_value<V: Value>() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let v = encode(b"b\0k", &vec![1u32, 2, 3]);
        assert_eq!(
            decode::<Vec<u32>>("objects", b"b\0k", &v).unwrap(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let v = encode(
            b"bucket\0key",
            &serde_json::json!({"etag": "abc", "size": 1234}),
        );
        for i in 0..v.len() * 8 {
            let mut bad = v.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                decode::<serde_json::Value>("objects", b"bucket\0key", &bad).is_err(),
                "flip of bit {i} went unnoticed"
            );
        }
    }

    #[test]
    fn a_value_under_another_key_is_detected() {
        let v = encode(b"bucket\0a", &1u32);
        let e = decode::<u32>("objects", b"bucket\0b", &v).unwrap_err();
        assert_eq!(e.table, "objects");
        assert_eq!(e.key, "\"bucket/b\"");
        assert!(
            e.to_string().contains("resyncs from the other voters"),
            "{e}"
        );
    }

    #[test]
    fn legacy_json_is_sealed_and_garbage_refused() {
        let sealed = seal_legacy("buckets", b"b", br#"{"name":"b"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            decode::<serde_json::Value>("buckets", b"b", &sealed).unwrap(),
            serde_json::json!({"name": "b"})
        );
        assert_eq!(seal_legacy("buckets", b"b", &sealed).unwrap(), None);
        assert!(seal_legacy("buckets", b"b", br#"{"name":"#).is_err());
    }
}
