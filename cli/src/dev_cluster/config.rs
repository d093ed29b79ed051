//! How a dev cluster is laid out: how many of each part, where they
//! listen, and the settings every part of a kind shares.

use super::Credentials;
use std::net::SocketAddr;
use std::path::PathBuf;
use weft_datad::node::DatadConfig;
use weft_gateway::GatewayConfig;
use weft_metad::MetadConfig;

/// How to lay out a dev cluster.
#[derive(Clone, Debug)]
pub struct DevClusterConfig {
    /// Everything lives under here.
    pub data_dir: PathBuf,
    /// S3 endpoint.
    pub s3_listen: SocketAddr,
    /// Admin API endpoint.
    pub admin_listen: SocketAddr,
    /// metad endpoint.
    pub metad_listen: SocketAddr,
    /// Number of metad voters (1 for `weft dev`; 3 or 5 to test HA).
    pub metad_voters: usize,
    /// Number of data nodes.
    pub datad_count: usize,
    /// Number of gateways (the first listens on `s3_listen`/`admin_listen`,
    /// others on random ports).
    pub gateways: usize,
    /// Zone names; the `datad_count` nodes are dealt round-robin.
    pub zones: Vec<String>,
    /// Data nodes of a cold zone started after those (labelled
    /// `tier=cold`, `region=west`): where `GLACIER_IR` lives. `weft dev`
    /// starts 6; tests that do not need tiers start none.
    pub cold_nodes: usize,
    /// The cold zone's name.
    pub cold_zone: String,
    /// S3 region.
    pub region: String,
    /// Root credentials; `None` means from the environment or the data dir.
    pub credentials: Option<Credentials>,
    /// Capacity each data node reports.
    pub datad_capacity_bytes: u64,
    /// Settings applied to every gateway (listen addresses, metad, region,
    /// and root key are set per gateway).
    pub gateway: GatewayConfig,
    /// Capacity of particular data nodes (by index), instead of
    /// `datad_capacity_bytes`: tests fill one node without filling all.
    pub datad_capacity_of: std::collections::BTreeMap<usize, u64>,
    /// metad settings applied to every voter (id, listen, data_dir and
    /// bootstrap are set per voter).
    pub metad: MetadConfig,
    /// Serve S3 over HTTPS with a self-signed certificate kept in
    /// `<data>/tls/` (made on first use).
    pub tls: bool,
    /// datad settings applied to every data node (id, zone, listen,
    /// data_dir, capacity and metad are set per node). The upload and GC
    /// timers are metad's (`metad.upload_max_age_ms`, `metad.gc_grace_ms`).
    pub datad: DatadConfig,
    /// How metad voters read their disk's free space: `None` is the real
    /// filesystem; tests give a disk whose size they set.
    pub metad_fs: Option<MetadFs>,
    /// Labels of the data nodes of each zone, by zone name (added to
    /// `datad.labels`).
    pub zone_labels: std::collections::BTreeMap<String, weft_common::topology::Labels>,
    /// Plain HTTP between the parts (`weft dev --insecure-internal`).
    /// Otherwise every internal hop is mutual TLS with certificates from a
    /// CA made in `<data>/pki` on first start.
    pub insecure_internal: bool,
    /// One gateway in each of `zones` (gateway `i` in zone `i`) instead of
    /// `gateways` zone-less ones (`weft dev --gateway-per-zone`).
    pub gateway_per_zone: bool,
    /// The emulated WAN between zones on the gateways' hops to data nodes
    /// (`weft dev --zone-latency/--zone-bandwidth`).
    pub wan: weft_client::wan::WanSettings,
}

/// A free-space reader for metad voters (see `DevClusterConfig::metad_fs`).
#[derive(Clone)]
pub struct MetadFs(pub std::sync::Arc<dyn weft_common::space::FsStats>);

impl std::fmt::Debug for MetadFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetadFs(..)")
    }
}

impl MetadFs {
    pub(super) fn get(cfg: &DevClusterConfig) -> std::sync::Arc<dyn weft_common::space::FsStats> {
        match &cfg.metad_fs {
            Some(fs) => fs.0.clone(),
            None => std::sync::Arc::new(weft_common::space::Statvfs),
        }
    }
}

impl DevClusterConfig {
    /// Defaults of `weft dev`: 6 nodes in 3 zones, S3 on 127.0.0.1:9000.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        DevClusterConfig {
            data_dir: data_dir.into(),
            s3_listen: "127.0.0.1:9000".parse().expect("literal"),
            admin_listen: "127.0.0.1:9001".parse().expect("literal"),
            metad_listen: "127.0.0.1:9010".parse().expect("literal"),
            metad_voters: 1,
            datad_count: 6,
            gateways: 1,
            zones: vec!["zone-a".into(), "zone-b".into(), "zone-c".into()],
            cold_nodes: 0,
            cold_zone: "west".into(),
            region: "us-east-1".into(),
            credentials: None,
            datad_capacity_bytes: 100 << 30,
            gateway: GatewayConfig::default(),
            datad_capacity_of: Default::default(),
            metad: MetadConfig::default(),
            tls: false,
            datad: DatadConfig {
                heartbeat_interval_ms: 500,
                ..DatadConfig::default()
            },
            metad_fs: None,
            zone_labels: Default::default(),
            insecure_internal: false,
            gateway_per_zone: false,
            wan: Default::default(),
        }
    }

    /// Every listener on a random loopback port: for tests.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        DevClusterConfig {
            s3_listen: any,
            admin_listen: any,
            metad_listen: any,
            metad: MetadConfig {
                node_suspect_ms: 1_500,
                ..MetadConfig::default()
            },
            // Tests read shards on purpose: a second GET after damage must
            // reach the damaged shards, not a cached stripe; and a read
            // must see every shard it asked for, not hedge past a slow one
            // whose damage it was to report. The locality tests turn both
            // on.
            gateway: GatewayConfig {
                stripe_cache_bytes: 0,
                read_hedging: false,
                ..GatewayConfig::default()
            },
            ..Self::new(data_dir)
        }
    }
}
