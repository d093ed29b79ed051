//! Signing of admin API requests with a root access key.
//!
//! `Authorization: WEFT-HMAC-SHA256 Credential=<access key>, Timestamp=<unix
//! seconds>, Signature=<hex>`, where the signature is HMAC-SHA256 keyed by the
//! secret over `METHOD\nPATH?QUERY\nTIMESTAMP\nSHA256(BODY)`. The secret never
//! crosses the wire; the timestamp bounds replay to the allowed skew.
//! `Authorization: Bearer <admin token>` is the alternative for automation.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The scheme name in the Authorization header.
pub const SCHEME: &str = "WEFT-HMAC-SHA256";

/// Largest accepted clock difference between CLI and gateway.
pub const SKEW_SECS_MAX: u64 = 300;

/// Computes the signature for a request.
pub fn signature(
    secret: &str,
    method: &str,
    path_and_query: &str,
    unix_secs: u64,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    let to_sign = format!("{method}\n{path_and_query}\n{unix_secs}\n{body_hash}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac accepts any key length");
    mac.update(to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Builds the Authorization header value.
pub fn authorization(
    access_key: &str,
    secret: &str,
    method: &str,
    path_and_query: &str,
    unix_secs: u64,
    body: &[u8],
) -> String {
    let sig = signature(secret, method, path_and_query, unix_secs, body);
    format!("{SCHEME} Credential={access_key}, Timestamp={unix_secs}, Signature={sig}")
}

/// The parts of a parsed Authorization header.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedAuth {
    /// Access key id.
    pub access_key: String,
    /// Claimed signing time.
    pub unix_secs: u64,
    /// Hex signature.
    pub signature: String,
}

/// Parses a `WEFT-HMAC-SHA256` header; `None` if it is not one.
pub fn parse(header: &str) -> Option<ParsedAuth> {
    let rest = header.strip_prefix(SCHEME)?.trim();
    let (mut ak, mut ts, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => ak = Some(v.to_string()),
            "Timestamp" => ts = v.parse().ok(),
            "Signature" => sig = Some(v.to_string()),
            _ => return None,
        }
    }
    Some(ParsedAuth {
        access_key: ak?,
        unix_secs: ts?,
        signature: sig?,
    })
}

/// Constant-time comparison of two signatures.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_tamper() {
        let h = authorization("AK", "secret", "GET", "/v1/keys", 1000, b"");
        let p = parse(&h).unwrap();
        assert_eq!(p.access_key, "AK");
        assert_eq!(p.unix_secs, 1000);
        assert!(signatures_equal(
            &p.signature,
            &signature("secret", "GET", "/v1/keys", 1000, b"")
        ));
        assert!(!signatures_equal(
            &p.signature,
            &signature("secret", "POST", "/v1/keys", 1000, b"")
        ));
        assert!(!signatures_equal(
            &p.signature,
            &signature("other", "GET", "/v1/keys", 1000, b"")
        ));
        assert!(parse("Bearer x").is_none());
    }
}
