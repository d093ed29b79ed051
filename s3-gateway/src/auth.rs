//! SigV4 secrets from metad (cached briefly) and bucket ownership checks.

use moka::future::Cache;
use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use std::time::Duration;
use tokio::time::Instant;
use weft_client::MetadClient;
use weft_common::manifest::{AccessKey, BucketInfo};
use weft_common::rpc::{Query, QueryResult};

/// Looks up access keys in metad. Entries live for a few seconds so a
/// deleted key stops working quickly without a metad read per request.
///
/// Freshness is judged on tokio's clock (each entry carries when it was
/// fetched), not by moka's own timer: moka reads the machine's clock, which
/// under simulation would make a cache hit depend on how fast this machine
/// ran rather than on the seed. moka's time-to-live stays as the bound on
/// memory in production.
#[derive(Clone)]
pub struct KeyStore {
    metad: MetadClient,
    ttl: Duration,
    cache: Cache<String, (Instant, Option<AccessKey>)>,
    /// Keys last seen, kept for an hour: used only when metad cannot answer,
    /// so the admin API (repair status above all) keeps working during a
    /// partition. A key deleted meanwhile stays usable here until metad is
    /// reachable again.
    last_known: Cache<String, AccessKey>,
}

use crate::limits::STALE_LOOKUP_DEADLINE;

impl KeyStore {
    /// A key store over `metad`, caching answers for `ttl`.
    pub fn new(metad: MetadClient, ttl: Duration) -> Self {
        // Under simulation moka never expires anything by itself: the stamp
        // decides, on the simulated clock.
        let backstop = |d: Duration| {
            if weft_common::effects::simulated() {
                Duration::from_secs(100 * 365 * 24 * 3600)
            } else {
                d
            }
        };
        KeyStore {
            metad,
            ttl,
            cache: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(backstop(ttl))
                .build(),
            last_known: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(backstop(Duration::from_secs(3600)))
                .build(),
        }
    }

    /// The key with this id, if it exists.
    pub async fn get(&self, access_key: &str) -> S3Result<Option<AccessKey>> {
        if let Some((fetched, k)) = self.cache.get(access_key).await {
            if fetched.elapsed() < self.ttl {
                return Ok(k);
            }
        }
        let q = Query::AccessKey {
            access_key: access_key.to_string(),
        };
        let fallback = self.last_known.get(access_key).await;
        let metad = match fallback {
            Some(_) => self.metad.clone().with_deadline(STALE_LOOKUP_DEADLINE),
            None => self.metad.clone(),
        };
        let key = match metad.query(&q).await {
            Ok(QueryResult::AccessKey { key }) => key,
            Ok(other) => return Err(crate::error::unexpected_key_answer(other)),
            Err(e) => match fallback {
                Some(k) => {
                    tracing::warn!(error = %e, "metad unreachable; using the last known access key");
                    return Ok(Some(k));
                }
                None => return Err(crate::error::key_lookup_failed(e)),
            },
        };
        self.cache
            .insert(access_key.to_string(), (Instant::now(), key.clone()))
            .await;
        match &key {
            Some(k) => {
                self.last_known
                    .insert(access_key.to_string(), k.clone())
                    .await
            }
            None => self.last_known.invalidate(access_key).await,
        }
        Ok(key)
    }

    /// Whether `creds` may act on `bucket`: its owner or a root key.
    pub async fn authorize(
        &self,
        creds: Option<&Credentials>,
        bucket: &BucketInfo,
    ) -> S3Result<()> {
        let Some(creds) = creds else {
            return Err(s3_error!(AccessDenied, "anonymous access is not allowed"));
        };
        if creds.access_key == bucket.owner {
            return Ok(());
        }
        match self.get(&creds.access_key).await? {
            Some(k) if k.root => Ok(()),
            _ => Err(s3_error!(
                AccessDenied,
                "access to bucket {} denied",
                bucket.name
            )),
        }
    }

    /// Whether `creds` belongs to a root key.
    pub async fn is_root(&self, creds: Option<&Credentials>) -> S3Result<bool> {
        match creds {
            None => Ok(false),
            Some(c) => Ok(self
                .get(&c.access_key)
                .await?
                .map(|k| k.root)
                .unwrap_or(false)),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyStore {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.get(access_key).await? {
            Some(k) => Ok(SecretKey::from(k.secret_key)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "the access key {access_key} does not exist"
            )),
        }
    }
}
