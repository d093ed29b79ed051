//! The gateway's configuration and the checks it must pass before the
//! gateway binds anything.

use serde::Deserialize;
use std::net::SocketAddr;
use weft_common::config_check::{self, ConfigError};
use weft_common::profile::Profiles;

/// Gateway configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// S3 endpoint.
    pub listen: SocketAddr,
    /// Admin API endpoint (the CLI's).
    pub admin_listen: SocketAddr,
    /// metad addresses.
    pub metad: Vec<String>,
    /// S3 region name reported and accepted in signatures.
    pub region: String,
    /// Root key, created in metad at start if missing.
    pub root_access_key: Option<String>,
    /// Root secret.
    pub root_secret_key: Option<String>,
    /// Optional bearer token accepted by the admin API.
    pub admin_token: Option<String>,
    /// A token the admin port's `/metrics` then asks of callers without a cluster
    /// certificate (`Authorization: Bearer TOKEN`, Prometheus'
    /// `bearer_token`); `WEFT_METRICS_TOKEN` sets it too. Health stays open.
    pub metrics_token: Option<String>,
    /// Storage classes and size rules.
    pub profiles: Profiles,
    /// Shards queued for release per data node; beyond it they are left to
    /// garbage collection (0: every release is left to it).
    pub release_queue_max: usize,
    /// Shards per release request to a data node.
    pub release_batch_max: usize,
    /// The longest a read keeps the shards it reads from being released
    /// (the deadline of one GET).
    pub read_lease_max_ms: u64,
    /// Requests in flight to one data node (and so connections to it).
    pub datad_connections_max: usize,
    /// How long a request waits for a free connection slot to a data node
    /// before that node counts as busy.
    pub datad_queue_timeout_ms: u64,
    /// A data node that sends nothing for this long has stalled: the read
    /// moves to another shard.
    pub datad_idle_timeout_ms: u64,
    /// Whole-request deadline of one shard read or release; the base of a
    /// shard write's deadline, which adds its length at 1 MiB/s.
    pub datad_request_timeout_ms: u64,
    /// Once a segment's write quorum is durable, how long the remaining
    /// shard writes may take before they are abandoned and left to repair.
    pub put_straggler_grace_ms: u64,
    /// Price of a GiB-month of stored bytes in each zone (any currency),
    /// for `weft cluster usage`'s cost and savings; zones left out have no
    /// price.
    pub zone_prices: std::collections::BTreeMap<String, f64>,
    /// No longer read here: metad owns it, beside datad's `gc_grace_ms`,
    /// so the two are checked together. Present only so an old config gets
    /// a message saying where it moved.
    pub upload_max_age_ms: Option<u64>,
    /// Base domains for virtual-hosted-style requests (`bucket.DOMAIN`);
    /// path-style requests always work.
    pub virtual_host_domains: Vec<String>,
    /// PEM certificate chain: serve S3 over HTTPS (with `tls_key`).
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// Admission caps of the S3 listener.
    pub limits: Limits,
    /// On SIGTERM, how long requests in flight may take to finish before
    /// they are cut.
    pub shutdown_grace_ms: u64,
    /// Mutual TLS on this gateway's calls to metad and the data nodes
    /// (`tls = { cert, key, ca }`, from `weft cert issue --role gateway`).
    /// Without it they go as plain HTTP, which `weft gateway` allows only
    /// with `insecure_internal`. (`tls_cert`/`tls_key` are the S3
    /// endpoint's own, for clients.)
    pub tls: Option<weft_client::internal_tls::TlsFiles>,
    /// Plain HTTP to metad and the data nodes on purpose.
    pub insecure_internal: bool,
    /// The zone this gateway runs in: reads prefer shards in it, and bytes
    /// fetched from other zones are counted as crossing. `None`: no zone,
    /// so no shard is preferred for where it is.
    pub zone: Option<String>,
    /// An emulated WAN between zones on this gateway's internal calls
    /// (`weft dev --zone-latency`); off by default. Needs `zone`.
    pub wan: weft_client::wan::WanSettings,
    /// Send one more shard request when a stripe's fetch outlives the
    /// recent p95 of shard fetches (the first k answers win).
    pub read_hedging: bool,
    /// A hedge is never sent sooner than this, ms: on an idle loopback
    /// cluster the p95 is a few hundred microseconds, and hedging against
    /// scheduler noise would double the reads.
    pub hedge_min_ms: u64,
    /// Bytes of recently read stripes kept in memory (0: no cache).
    /// Segments never change once written, so an entry is never stale.
    pub stripe_cache_bytes: u64,
    /// How often, ms, this gateway probes the data nodes and reports its
    /// network figures to metad (with a `zone` only).
    pub netmap_period_ms: u64,
}

/// Caps on what the S3 listener takes on at once; beyond them a request is
/// answered `503 SlowDown` at once, so overload turns into client backoff
/// instead of memory growth and timeouts for everyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections (idle keep-alive ones included).
    pub max_connections: u64,
    /// Requests being served at once.
    pub max_requests: u64,
    /// Bytes of request bodies being received plus response bodies being
    /// sent, counted from their declared lengths.
    pub max_inflight_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_requests: 1024,
            max_inflight_bytes: 1 << 30,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:9000".parse().expect("valid literal"),
            admin_listen: "127.0.0.1:9001".parse().expect("valid literal"),
            metad: vec!["127.0.0.1:7000".into()],
            region: "us-east-1".into(),
            root_access_key: None,
            root_secret_key: None,
            admin_token: None,
            metrics_token: None,
            profiles: Profiles::default(),
            release_queue_max: 65_536,
            release_batch_max: 512,
            read_lease_max_ms: 15 * 60 * 1000,
            datad_connections_max: 64,
            datad_queue_timeout_ms: 10_000,
            datad_idle_timeout_ms: 15_000,
            datad_request_timeout_ms: 60_000,
            put_straggler_grace_ms: 2_000,
            zone_prices: Default::default(),
            upload_max_age_ms: None,
            tls_cert: None,
            tls_key: None,
            virtual_host_domains: vec!["localhost".into()],
            limits: Limits::default(),
            shutdown_grace_ms: 30_000,
            tls: None,
            insecure_internal: false,
            zone: None,
            wan: Default::default(),
            read_hedging: true,
            hedge_min_ms: 10,
            stripe_cache_bytes: 128 << 20,
            netmap_period_ms: 5_000,
        }
    }
}

impl GatewayConfig {
    /// Refuses settings that cannot work, naming the setting and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.upload_max_age_ms.is_some() {
            return Err(ConfigError::new(
                "upload_max_age_ms",
                "moved to metad's config (beside gc_grace_ms, which must be at least twice it); remove it here and set it on every metad voter",
            ));
        }
        config_check::positive(
            "datad_connections_max",
            self.datad_connections_max as u64,
            "64",
        )?;
        config_check::positive("datad_idle_timeout_ms", self.datad_idle_timeout_ms, "15000")?;
        config_check::positive(
            "datad_request_timeout_ms",
            self.datad_request_timeout_ms,
            "60000",
        )?;
        if self.release_batch_max == 0
            || self.release_batch_max > weft_common::rpc::SHARD_RELEASE_BATCH_MAX
        {
            return Err(ConfigError::new(
                "release_batch_max",
                format!(
                    "{} is outside 1..={}; use e.g. 512",
                    self.release_batch_max,
                    weft_common::rpc::SHARD_RELEASE_BATCH_MAX
                ),
            ));
        }
        config_check::distinct_listeners(&[
            ("listen", self.listen),
            ("admin_listen", self.admin_listen),
        ])?;
        if self.metad.is_empty() || self.metad.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError::new(
                "metad",
                "no metad address; list every metad voter as \"host:port\"",
            ));
        }
        if self.region.is_empty() {
            return Err(ConfigError::new(
                "region",
                "empty; clients sign for a region, e.g. \"us-east-1\"",
            ));
        }
        if self.root_access_key.is_some() != self.root_secret_key.is_some() {
            return Err(ConfigError::new(
                "root_access_key/root_secret_key",
                "only one is set; give both or neither",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::new(
                "tls_cert/tls_key",
                "only one is set; give both to serve HTTPS, or neither",
            ));
        }
        if let Some((zone, price)) = self
            .zone_prices
            .iter()
            .find(|(_, p)| !p.is_finite() || **p < 0.0)
        {
            return Err(ConfigError::new(
                format!("zone_prices.{zone}"),
                format!("{price} is not a price; give a number of 0 or more per GiB-month"),
            ));
        }
        self.profiles
            .validate()
            .map_err(|e| ConfigError::new(format!("profiles.{}", e.setting), e.problem))?;
        config_check::positive(
            "limits.max_connections",
            self.limits.max_connections,
            "4096",
        )?;
        config_check::positive("limits.max_requests", self.limits.max_requests, "1024")?;
        config_check::positive("netmap_period_ms", self.netmap_period_ms, "5000")?;
        if self.zone.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new(
                "zone",
                "empty; name the zone this gateway runs in, as its data nodes name theirs, or leave it out",
            ));
        }
        if self.wan.is_active() && self.zone.is_none() {
            return Err(ConfigError::new(
                "wan",
                "an emulated WAN costs hops between zones, and this gateway has no zone; set zone too",
            ));
        }
        config_check::positive(
            "limits.max_inflight_bytes",
            self.limits.max_inflight_bytes,
            "1073741824 (1 GiB)",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> GatewayConfig {
        // The config file format is TOML; JSON has the same serde shape and
        // avoids a toml dependency in this crate.
        serde_json::from_str(toml_text).expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(GatewayConfig::default().validate(), Ok(()));
    }

    #[test]
    fn upload_max_age_here_is_refused_saying_it_moved_to_metad() {
        let c = parse(r#"{"upload_max_age_ms": 1800000}"#);
        let e = c.validate().unwrap_err();
        assert_eq!(e.setting, "upload_max_age_ms");
        assert!(e.problem.contains("moved to metad"), "{}", e.problem);
    }

    #[test]
    fn same_port_for_s3_and_admin_is_refused() {
        let c = parse(r#"{"listen": "127.0.0.1:9000", "admin_listen": "127.0.0.1:9000"}"#);
        assert_eq!(c.validate().unwrap_err().setting, "admin_listen");
    }

    #[test]
    fn storage_classes_here_are_refused_saying_they_moved_to_metad() {
        let c = parse(r#"{"profiles": {"segment_bytes_max": 67108864, "classes": []}}"#);
        let e = c.validate().unwrap_err();
        assert_eq!(e.setting, "profiles.classes");
        assert!(e.problem.starts_with("moved to metad"), "{}", e.problem);
    }

    #[test]
    fn zero_limits_half_tls_and_no_metad_are_refused() {
        let c = parse(r#"{"limits": {"max_requests": 0}}"#);
        assert_eq!(c.validate().unwrap_err().setting, "limits.max_requests");
        let c = parse(r#"{"tls_cert": "/x.pem"}"#);
        assert_eq!(c.validate().unwrap_err().setting, "tls_cert/tls_key");
        let c = parse(r#"{"metad": []}"#);
        assert_eq!(c.validate().unwrap_err().setting, "metad");
        let c = parse(r#"{"root_access_key": "AK"}"#);
        assert_eq!(
            c.validate().unwrap_err().setting,
            "root_access_key/root_secret_key"
        );
    }

    #[test]
    fn empty_zone_and_a_wan_without_a_zone_are_refused() {
        let mut c = GatewayConfig {
            zone: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().setting, "zone");
        c.zone = None;
        c.wan.latency_ms = 20;
        assert_eq!(c.validate().unwrap_err().setting, "wan");
        c.zone = Some("a".into());
        c.validate().unwrap();
    }

    #[test]
    fn unknown_limits_field_is_refused_at_parse() {
        assert!(serde_json::from_str::<GatewayConfig>(r#"{"limits": {"max_conns": 1}}"#).is_err());
    }
}
