//! Listings: ListObjects (v1 and v2), ListObjectVersions, their continuation
//! tokens and `encoding-type=url`.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use weft_common::rpc::{ListMarker, ListRequest, Query, QueryResult};

use crate::error::{metad_err, unexpected};

use super::{timestamp, WeftS3, LIST_KEYS_MAX};

impl WeftS3 {
    pub(super) async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let max_keys = input.max_keys.unwrap_or(LIST_KEYS_MAX);
        if max_keys < 0 {
            return Err(s3_error!(InvalidArgument, "max-keys must not be negative"));
        }
        let max_keys = max_keys.min(LIST_KEYS_MAX);
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        // A marker that is a common prefix (as NextMarker is when a page ends
        // on one) resumes after every key under it.
        let after = input
            .marker
            .as_ref()
            .filter(|m| !m.is_empty())
            .map(|m| match &delimiter {
                Some(d)
                    if m.starts_with(&prefix)
                        && m[prefix.len()..].ends_with(d.as_str())
                        && m[prefix.len()..].find(d.as_str()).map(|p| p + d.len())
                            == Some(m.len() - prefix.len()) =>
                {
                    ListMarker::Prefix(m.clone())
                }
                _ => ListMarker::Key(m.clone()),
            });
        let page = self
            .list_page(
                &input.bucket,
                &prefix,
                delimiter.clone(),
                after,
                max_keys as u32,
            )
            .await?;
        let next_marker = page.next.as_ref().map(|m| match m {
            ListMarker::Key(k) | ListMarker::Prefix(k) => k.clone(),
        });
        let url = is_url_encoding(input.encoding_type.as_ref())?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_list_value(&prefix, url)),
            delimiter: input.delimiter.map(|d| encode_list_value(&d, url)),
            marker: Some(encode_list_value(&input.marker.unwrap_or_default(), url)),
            max_keys: Some(max_keys),
            is_truncated: Some(page.next.is_some()),
            next_marker: next_marker.map(|m| encode_list_value(&m, url)),
            encoding_type: input.encoding_type,
            contents: Some(list_contents(page.entries, url)),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(encode_list_value(&p, url)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let bucket_owner = self
            .bucket(req.credentials.as_ref(), &input.bucket)
            .await?
            .owner;
        let max_keys = input.max_keys.unwrap_or(LIST_KEYS_MAX);
        if max_keys < 0 {
            return Err(s3_error!(InvalidArgument, "max-keys must not be negative"));
        }
        let max_keys = max_keys.min(LIST_KEYS_MAX);
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(t), _) => Some(decode_token(t).ok_or_else(|| {
                s3_error!(InvalidArgument, "the continuation token is not valid")
            })?),
            (None, Some(s)) if !s.is_empty() => Some(ListMarker::Key(s.clone())),
            _ => None,
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let q = Query::List(ListRequest {
            bucket: input.bucket.clone(),
            prefix: prefix.clone(),
            delimiter: input.delimiter.clone(),
            after,
            max_keys: max_keys as u32,
        });
        let page = match self.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::List { page: Some(p) } => p,
            QueryResult::List { page: None } => {
                return Err(s3_error!(
                    NoSuchBucket,
                    "bucket {} does not exist",
                    input.bucket
                ))
            }
            other => return Err(unexpected("list", other)),
        };
        let key_count = (page.entries.len() + page.common_prefixes.len()) as i32;
        let url = is_url_encoding(input.encoding_type.as_ref())?;
        let owner = input.fetch_owner.unwrap_or(false).then(|| Owner {
            display_name: Some(bucket_owner.clone()),
            id: Some(bucket_owner.clone()),
        });
        let mut contents = list_contents(page.entries, url);
        if owner.is_some() {
            for c in &mut contents {
                c.owner = owner.clone();
            }
        }
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode_list_value(&p, url)),
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode_list_value(&prefix, url)),
            delimiter: input.delimiter.map(|d| encode_list_value(&d, url)),
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            is_truncated: Some(page.next.is_some()),
            next_continuation_token: page.next.as_ref().map(encode_token),
            continuation_token: input.continuation_token,
            start_after: input.start_after.map(|s| encode_list_value(&s, url)),
            encoding_type: input.encoding_type,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }

    pub(super) async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        self.bucket(req.credentials.as_ref(), &input.bucket).await?;
        let max = input
            .max_keys
            .unwrap_or(LIST_KEYS_MAX)
            .clamp(0, LIST_KEYS_MAX);
        let prefix = input.prefix.clone().unwrap_or_default();
        let q = Query::Versions {
            bucket: input.bucket.clone(),
            prefix: prefix.clone(),
            key_marker: input.key_marker.clone().filter(|k| !k.is_empty()),
            version_marker: input.version_id_marker.clone().filter(|k| !k.is_empty()),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            max: max as u32,
        };
        let (entries, common_prefixes, next) =
            match self.metad.query(&q).await.map_err(metad_err)? {
                QueryResult::Versions {
                    entries,
                    common_prefixes,
                    next,
                } => (entries, common_prefixes, next),
                other => return Err(unexpected("list versions", other)),
            };
        let url = is_url_encoding(input.encoding_type.as_ref())?;
        let truncated = next.is_some();
        let (next_key, next_version) = match next {
            Some((k, v)) => (Some(encode_list_value(&k, url)), v),
            None => (None, None),
        };
        let mut versions = vec![];
        let mut markers = vec![];
        for (key, r, latest) in entries {
            match r.version {
                Some(v) => versions.push(s3s::dto::ObjectVersion {
                    key: Some(encode_list_value(&key, url)),
                    version_id: Some(r.version_id),
                    is_latest: Some(latest),
                    e_tag: Some(ETag::Strong(v.etag)),
                    size: Some(v.size as i64),
                    last_modified: Some(timestamp(v.last_modified_ms)),
                    storage_class: Some(ObjectVersionStorageClass::from(v.storage_class)),
                    ..Default::default()
                }),
                None => markers.push(DeleteMarkerEntry {
                    key: Some(encode_list_value(&key, url)),
                    version_id: Some(r.version_id),
                    is_latest: Some(latest),
                    last_modified: Some(timestamp(r.last_modified_ms)),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_list_value(&prefix, url)),
            key_marker: input.key_marker,
            version_id_marker: input.version_id_marker,
            max_keys: Some(max),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(
                common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(encode_list_value(&p, url)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    /// One page of a listing from metad.
    pub(super) async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<String>,
        after: Option<ListMarker>,
        max_keys: u32,
    ) -> S3Result<weft_common::rpc::ListPage> {
        let q = Query::List(ListRequest {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            delimiter,
            after,
            max_keys,
        });
        match self.metad.query(&q).await.map_err(metad_err)? {
            QueryResult::List { page: Some(p) } => Ok(p),
            QueryResult::List { page: None } => {
                Err(s3_error!(NoSuchBucket, "bucket {bucket} does not exist"))
            }
            other => Err(unexpected("list", other)),
        }
    }
}

pub(super) fn encode_token(m: &ListMarker) -> String {
    let raw = match m {
        ListMarker::Key(k) => format!("k{k}"),
        ListMarker::Prefix(p) => format!("p{p}"),
    };
    hex::encode(raw)
}

pub(super) fn decode_token(t: &str) -> Option<ListMarker> {
    let raw = String::from_utf8(hex::decode(t).ok()?).ok()?;
    let (kind, rest) = raw.split_at(
        raw.char_indices()
            .nth(1)
            .map(|(i, _)| i)
            .unwrap_or(raw.len()),
    );
    match kind {
        "k" => Some(ListMarker::Key(rest.to_string())),
        "p" => Some(ListMarker::Prefix(rest.to_string())),
        _ => None,
    }
}

pub(super) fn is_url_encoding(e: Option<&EncodingType>) -> S3Result<bool> {
    match e {
        None => Ok(false),
        Some(e) if e.as_str() == EncodingType::URL => Ok(true),
        Some(e) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request: {}",
            e.as_str()
        )),
    }
}

/// Values in listings with `encoding-type=url` are percent-encoded as S3
/// does (unreserved characters and '/' kept).
pub(super) fn encode_list_value(v: &str, url: bool) -> String {
    if !url {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub(super) fn list_contents(entries: Vec<weft_common::rpc::ListEntry>, url: bool) -> Vec<Object> {
    entries
        .into_iter()
        .map(|e| Object {
            key: Some(encode_list_value(&e.key, url)),
            size: Some(e.size as i64),
            e_tag: Some(ETag::Strong(e.etag)),
            last_modified: Some(timestamp(e.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from(e.storage_class)),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for m in [
            ListMarker::Key("a/ü b+c".into()),
            ListMarker::Prefix("x/".into()),
            ListMarker::Key(String::new()),
        ] {
            assert_eq!(decode_token(&encode_token(&m)), Some(m));
        }
        assert_eq!(decode_token("zz"), None);
    }
}
