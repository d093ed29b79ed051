//! AWS Signature Version 4 for S3 requests, header form: what the chaos
//! workload, `weft bench` and the integration tests sign their requests
//! with. The gateway verifies signatures with s3s; this is the client side.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// URI-encodes per SigV4: unreserved characters kept, '/' kept in paths.
pub fn uri_encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if path => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time in seconds.
pub fn amz_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One request to sign.
pub struct Request<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// `host[:port]` as sent in the Host header.
    pub host: &'a str,
    /// Unencoded path, `/bucket/key`.
    pub path: &'a str,
    /// Unencoded query parameters.
    pub query: &'a [(&'a str, &'a str)],
    /// Extra headers to sign (Host, date and payload hash are added).
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD` and the like.
    pub payload_hash: &'a str,
    /// Access key id.
    pub access_key: &'a str,
    /// Secret key.
    pub secret_key: &'a str,
    /// Region.
    pub region: &'a str,
    /// Signing time, Unix seconds.
    pub unix_secs: i64,
}

/// A signed request: what to send, plus what aws-chunked bodies chain on.
pub struct Signed {
    /// Encoded path and query, `/bucket/key?a=b`.
    pub path_and_query: String,
    /// `Authorization` header value.
    pub authorization: String,
    /// `x-amz-date` header value.
    pub amz_date: String,
    /// `date/region/s3/aws4_request`.
    pub scope: String,
    /// The request signature (seed of chunk signatures).
    pub signature: String,
    /// The derived signing key.
    pub signing_key: Vec<u8>,
}

/// Signs `r`.
pub fn sign(r: &Request<'_>) -> Signed {
    let amz_date = amz_date(r.unix_secs);
    let date = &amz_date[..8];
    let canonical_uri = uri_encode(r.path, true);
    let mut q: Vec<(String, String)> = r
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), r.host.to_string()),
        ("x-amz-content-sha256".into(), r.payload_hash.to_string()),
        ("x-amz-date".into(), amz_date.clone()),
    ];
    for (k, v) in r.headers {
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        r.method, r.payload_hash
    );
    let scope = format!("{date}/{}/s3/aws4_request", r.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{}", r.secret_key).as_bytes(), date);
    let k_region = hmac(&k_date, r.region);
    let k_service = hmac(&k_region, "s3");
    let signing_key = hmac(&k_service, "aws4_request");
    let signature = hex::encode(hmac(&signing_key, &string_to_sign));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        r.access_key
    );
    let path_and_query = if canonical_query.is_empty() {
        canonical_uri
    } else {
        format!("{canonical_uri}?{canonical_query}")
    };
    Signed {
        path_and_query,
        authorization,
        amz_date,
        scope,
        signature,
        signing_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_795_830_765), "20261128T015245Z");
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("/b/w0/k 1+é", true), "/b/w0/k%201%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn aws_documented_example_signature() {
        // The GET Object example of the SigV4 S3 documentation.
        let s = sign(&Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            headers: &[("range", "bytes=0-9")],
            payload_hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            unix_secs: 1_369_353_600, // 2013-05-24T00:00:00Z
        });
        assert_eq!(
            s.signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }
}
