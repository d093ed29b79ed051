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
/// fetched), not by moka's own timer. Under simulation moka is not used at
/// all: it reads the machine's clock both to expire entries and to decide
/// when to run its upkeep inline (which can wait on its own locks), so a
/// cache hit, and where a request yields, would depend on how fast this
/// machine ran rather than on the seed (docs/decisions.md).
#[derive(Clone)]
pub struct KeyStore {
    metad: MetadClient,
    ttl: Duration,
    cache: KeyCache<(Instant, Option<AccessKey>)>,
    /// Keys last seen, kept for an hour: used only when metad cannot answer,
    /// so the admin API (repair status above all) keeps working during a
    /// partition. A key deleted meanwhile stays usable here until metad is
    /// reachable again.
    last_known: KeyCache<AccessKey>,
}

use crate::limits::STALE_LOOKUP_DEADLINE;

/// Most keys either cache holds.
const KEYS_CACHED_MAX: u64 = 10_000;

/// moka in production; a plain map under simulation (see [`KeyStore`]).
#[derive(Clone)]
enum KeyCache<V: Clone + Send + Sync + 'static> {
    Moka(Cache<String, V>),
    Plain(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, V>>>),
}

impl<V: Clone + Send + Sync + 'static> KeyCache<V> {
    fn new(ttl: Duration) -> Self {
        if weft_common::effects::simulated() {
            return KeyCache::Plain(Default::default());
        }
        KeyCache::Moka(
            Cache::builder()
                .max_capacity(KEYS_CACHED_MAX)
                .time_to_live(ttl)
                .build(),
        )
    }

    fn plain(
        m: &std::sync::Mutex<std::collections::BTreeMap<String, V>>,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, V>> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn get(&self, key: &str) -> Option<V> {
        match self {
            KeyCache::Moka(c) => c.get(key).await,
            KeyCache::Plain(m) => Self::plain(m).get(key).cloned(),
        }
    }

    async fn insert(&self, key: String, value: V) {
        match self {
            KeyCache::Moka(c) => c.insert(key, value).await,
            KeyCache::Plain(m) => {
                let mut m = Self::plain(m);
                if m.len() as u64 >= KEYS_CACHED_MAX {
                    m.clear();
                }
                m.insert(key, value);
            }
        }
    }

    async fn invalidate(&self, key: &str) {
        match self {
            KeyCache::Moka(c) => c.invalidate(key).await,
            KeyCache::Plain(m) => {
                Self::plain(m).remove(key);
            }
        }
    }
}

impl KeyStore {
    /// A key store over `metad`, caching answers for `ttl`.
    pub fn new(metad: MetadClient, ttl: Duration) -> Self {
        KeyStore {
            metad,
            ttl,
            cache: KeyCache::new(ttl),
            last_known: KeyCache::new(Duration::from_secs(3600)),
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
