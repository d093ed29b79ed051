//! The S3 API: s3s parses and authenticates, and the operations run on top
//! of the write and read paths and metad.
//!
//! s3s wants a single `impl S3`; it stays here as one-line delegations, and
//! each operation lives as an inherent method of the same name (inherent
//! methods win method resolution) in the module of the resource it acts on,
//! so an operation and the helpers only it needs read in one place.

mod bucket;
mod conditions;
mod lifecycle;
mod listing;
mod lookup;
mod multipart;
mod object;
mod part_checksums;
mod request;
mod store;
mod tagging;
mod tiering;

use prometheus_client::metrics::counter::Counter;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Response, S3Result, S3};
use std::time::{Duration, UNIX_EPOCH};
use weft_client::MetadClient;

use crate::auth::KeyStore;
use crate::read_path::ObjectReader;
use crate::release::Releaser;
use crate::write_path::ObjectWriter;
use crate::GatewayConfig;

pub use crate::limits::KEY_BYTES_MAX;
pub use crate::limits::LIST_KEYS_MAX;
pub use crate::limits::PARTS_MAX;
pub use crate::limits::PART_BYTES_MIN;
pub use crate::limits::PUT_BYTES_MAX;
pub use crate::limits::USER_METADATA_BYTES_MAX;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    weft_common::effects::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn timestamp_ms(t: Timestamp) -> u64 {
    let t = time::OffsetDateTime::from(t);
    (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// The S3 operations and what they run on; cheap to clone.
#[derive(Clone)]
pub struct WeftS3 {
    /// Stores request bodies and copies.
    pub(crate) writer: ObjectWriter,
    /// Reads objects for GET and copies.
    pub(crate) reader: ObjectReader,
    /// Where every bucket, version and upload lives.
    pub(crate) metad: MetadClient,
    /// Access keys, to authorise callers per bucket.
    pub(crate) keys: KeyStore,
    /// The one S3 region this cluster serves.
    pub(crate) region: String,
    /// Releases the shards of replaced, deleted and refused versions, and
    /// the read leases that hold releases back.
    pub(crate) releaser: Releaser,
    /// Object bytes accepted by PUT, UploadPart and copies.
    pub(crate) bytes_written: Counter,
    /// Reads noted for tiering by access.
    pub(crate) reads: crate::read_tracking::ReadTracker,
    /// A deliberate bug for the chaos suite's self-test: acknowledge PUTs and
    /// completions without committing them. Never set outside that test.
    pub(crate) fault_ack_before_commit: bool,
}

/// Builds the s3s service with SigV4 against metad's keys and
/// virtual-hosted-style addressing for the configured domains.
pub fn build_service(s3: WeftS3, cfg: &GatewayConfig) -> Result<S3Service, crate::StartError> {
    let keys = s3.keys.clone();
    let mut b = S3ServiceBuilder::new(s3);
    b.set_auth(keys);
    b.set_access(crate::access::Gate);
    if !cfg.virtual_host_domains.is_empty() {
        for d in &cfg.virtual_host_domains {
            if d.is_empty() || d.contains(':') || d.starts_with('.') || d.ends_with('.') {
                return Err(crate::StartError::Domain(format!(
                    "{d:?} is not a domain (no port, no leading or trailing dot)"
                )));
            }
        }
        b.set_host(VirtualHosts {
            domains: cfg
                .virtual_host_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        });
    }
    Ok(b.build())
}

/// Virtual-hosted-style addressing: `bucket.DOMAIN[:port]` names a bucket
/// for each configured DOMAIN; every other host (an IP, `localhost:9000`, a
/// load balancer's name) is path-style. Unlike s3s's `MultiDomain`, an
/// unknown host is never taken for a bucket name.
struct VirtualHosts {
    domains: Vec<String>,
}

impl s3s::host::S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        // Strip a port; bracketed IPv6 literals are never virtual hosts.
        let name = if host.starts_with('[') {
            host
        } else {
            host.rsplit_once(':')
                .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .map(|(h, _)| h)
                .unwrap_or(host)
        };
        for d in &self.domains {
            if name.len() > d.len() + 1 && name.to_ascii_lowercase().ends_with(d.as_str()) {
                let cut = name.len() - d.len();
                if name.as_bytes()[cut - 1] == b'.' {
                    let bucket = &name[..cut - 1];
                    return Ok(s3s::host::VirtualHost::new(d.as_str())
                        .with_bucket(bucket.to_ascii_lowercase()));
                }
            }
        }
        Ok(s3s::host::VirtualHost::new(host))
    }
}

#[async_trait::async_trait]
impl S3 for WeftS3 {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.create_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.delete_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.head_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.get_bucket_location(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.list_buckets(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.put_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.head_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.delete_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.upload_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart_upload(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.copy_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.delete_objects(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_parts(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_multipart_uploads(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.upload_part_copy(req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.get_object_tagging(req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.put_object_tagging(req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.delete_object_tagging(req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.get_bucket_tagging(req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.put_bucket_tagging(req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.delete_bucket_tagging(req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.put_bucket_lifecycle_configuration(req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.get_bucket_lifecycle_configuration(req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.delete_bucket_lifecycle(req).await
    }

    async fn put_bucket_intelligent_tiering_configuration(
        &self,
        req: S3Request<PutBucketIntelligentTieringConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketIntelligentTieringConfigurationOutput>> {
        self.put_bucket_intelligent_tiering_configuration(req).await
    }

    async fn get_bucket_intelligent_tiering_configuration(
        &self,
        req: S3Request<GetBucketIntelligentTieringConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketIntelligentTieringConfigurationOutput>> {
        self.get_bucket_intelligent_tiering_configuration(req).await
    }

    async fn list_bucket_intelligent_tiering_configurations(
        &self,
        req: S3Request<ListBucketIntelligentTieringConfigurationsInput>,
    ) -> S3Result<S3Response<ListBucketIntelligentTieringConfigurationsOutput>> {
        self.list_bucket_intelligent_tiering_configurations(req)
            .await
    }

    async fn delete_bucket_intelligent_tiering_configuration(
        &self,
        req: S3Request<DeleteBucketIntelligentTieringConfigurationInput>,
    ) -> S3Result<S3Response<DeleteBucketIntelligentTieringConfigurationOutput>> {
        self.delete_bucket_intelligent_tiering_configuration(req)
            .await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_bucket_versioning(req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.get_bucket_versioning(req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_object_versions(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2(req).await
    }
}

impl WeftS3 {
    /// The storage class a request names (the default when it names
    /// none), as metad defines it now.
    ///
    /// Narrowed by `bucket`'s residency, so the rule each new segment is
    /// written under keeps it inside the bucket's zones.
    pub(crate) fn storage_class(
        &self,
        name: Option<&str>,
        bucket: &weft_common::manifest::BucketInfo,
    ) -> S3Result<weft_common::storage_class::StorageClass> {
        use crate::cluster_map::ClassLookup;
        let class = self.writer.cluster.class(name).map_err(|e| match e {
            ClassLookup::Unknown(_) => s3s::s3_error!(InvalidStorageClass, "{e}"),
            ClassLookup::NotYetKnown => s3s::s3_error!(ServiceUnavailable, "{e}"),
        })?;
        Ok(weft_common::residency::narrow(
            &class,
            bucket.residency.as_ref(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_only_under_configured_domains() {
        use s3s::host::S3Host;
        let vh = VirtualHosts {
            domains: vec!["localhost".into(), "s3.example.com".into()],
        };
        let bucket = |h: &str| {
            vh.parse_host_header(h)
                .unwrap()
                .bucket()
                .map(str::to_string)
        };
        assert_eq!(bucket("photos.localhost:9000"), Some("photos".into()));
        assert_eq!(
            bucket("my.dotted.bucket.s3.example.com"),
            Some("my.dotted.bucket".into())
        );
        assert_eq!(bucket("localhost:9000"), None);
        assert_eq!(bucket("127.0.0.1:9000"), None);
        assert_eq!(bucket("[::1]:9000"), None);
        assert_eq!(bucket("gateway.internal:9000"), None);
        assert_eq!(bucket("xlocalhost"), None);
    }
}
