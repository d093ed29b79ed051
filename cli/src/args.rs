//! The command line: every subcommand, flag and help text of `weft`, as clap
//! definitions. The code that runs each command lives in `cmd/`; keeping
//! the two apart lets the help output be reviewed in one place.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Weft: an erasure-coded, zone-aware object store with an S3 API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a whole cluster in this process (metad, 6 data nodes in 3 zones,
    /// a cold zone of 6 more, gateway).
    Dev(DevArgs),
    /// Manage S3 access keys.
    Key {
        #[command(subcommand)]
        command: KeyCmd,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Inspect buckets.
    Bucket {
        #[command(subcommand)]
        command: BucketCmd,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List, define, change and delete storage classes.
    Class {
        #[command(subcommand)]
        command: ClassCmd,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Lifecycle rules at work: what they would do now, run a pass now,
    /// and where they stand.
    Lifecycle {
        #[command(subcommand)]
        command: LifecycleCmd,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Where a dataset's bytes are and what reading it from each zone
    /// costs: for schedulers placing jobs near their data.
    Locate {
        /// `s3://BUCKET[/PREFIX]`.
        target: String,
        /// Only this zone's read cost.
        #[arg(long)]
        zone: Option<String>,
        /// `table` (default), or `k8s-affinity`: a Kubernetes nodeAffinity
        /// preferring the zones that read the set with the fewest
        /// cross-zone bytes (`--json` prints the whole answer).
        #[arg(long, default_value = "table")]
        format: String,
        /// List every object, not only the totals (table format).
        #[arg(long)]
        objects: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Warm a dataset into a zone, so jobs there read it without crossing
    /// zones: `weft warm s3://BUCKET/PREFIX --zone Z`; `weft warm status`,
    /// `weft warm drop`.
    #[command(args_conflicts_with_subcommands = true)]
    Warm {
        #[command(subcommand)]
        command: Option<WarmCmd>,
        #[command(flatten)]
        warm: WarmArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Inspect the cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drain, reactivate or remove data nodes.
    Node {
        #[command(subcommand)]
        command: NodeCmd,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Read, export and verify the tamper-evident audit chain.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the cluster CA and issue role certificates for internal mTLS.
    Cert {
        #[command(subcommand)]
        command: CertCmd,
    },
    /// Measure: figures for docs/performance.md (never pass/fail).
    Bench {
        #[command(subcommand)]
        command: BenchCmd,
    },
    /// Simulate the metadata group deterministically under faults (exit 0
    /// when every check held).
    Sim(SimArgs),
    /// Run a metad voter.
    Metad(DaemonArgs),
    /// Run a data node.
    Datad(DaemonArgs),
    /// Run an S3 gateway.
    Gateway(DaemonArgs),
}

#[derive(Subcommand)]
pub enum CertCmd {
    /// Create the cluster CA: DIR/ca.pem (trusted by every process),
    /// DIR/ca.key (keep it offline after issuing), DIR/ca.json.
    Init {
        #[command(flatten)]
        pki: PkiDir,
        /// The cluster's name, written into every certificate it issues.
        #[arg(long, default_value = "weft")]
        cluster: String,
    },
    /// Issue a certificate naming one role to a process or an operator:
    /// OUT/NAME.pem and OUT/NAME.key.
    Issue {
        #[command(flatten)]
        pki: PkiDir,
        /// metad, datad, gateway or admin: what the holder may do.
        #[arg(long)]
        role: String,
        /// The holder's name (file names and the certificate's CN).
        #[arg(long)]
        name: String,
        /// A DNS name or IP address the holder serves on (repeatable);
        /// none for a client-only certificate.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// The node id a data node runs as (its config's `node_id`): metad lets
        /// the certificate register, heartbeat and take work only as that
        /// node. Required with --role datad, refused with other roles.
        #[arg(long = "node-id")]
        node_id: Option<u64>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Where to write it (default: the CA's directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace a certificate of the same name (a re-issue for rotation).
        #[arg(long)]
        force: bool,
        /// Record the issue in the cluster's audit chain through the admin
        /// API at --admin (credentials as for the admin commands, from
        /// --data or WEFT_ROOT_*). The CA signs offline, so the cluster
        /// learns of an issue only this way.
        #[arg(long)]
        record: bool,
        /// Admin API endpoint for --record.
        #[arg(long, default_value = "https://127.0.0.1:9001", env = "WEFT_ADMIN")]
        admin: String,
    },
    /// Make a cluster master key (32 random bytes as hex, mode 0600):
    /// metad seals access-key secrets under it. Every voter needs it.
    MasterKey {
        /// The file to write; never replaced.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where the cluster CA lives.
#[derive(Args)]
pub struct PkiDir {
    /// The CA's directory (default: DATA/pki).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Data directory of a `weft dev` cluster.
    #[arg(long, default_value = "weft-data", env = "WEFT_DATA")]
    pub data: PathBuf,
}

impl PkiDir {
    /// The directory the CA is in.
    pub fn path(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| self.data.join("pki"))
    }
}

#[derive(Args)]
pub struct SimArgs {
    /// The seed: every choice of the run (workload, faults, elections) follows from it.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run every seed of a range instead, e.g. `1..20` or `1..=20`.
    #[arg(long, conflicts_with = "seed")]
    pub seeds: Option<String>,
    /// Client operations per run.
    #[arg(long, default_value_t = weft_sim::SimConfig::DEFAULT_STEPS)]
    pub steps: u32,
    /// Run each seed twice in this process and fail unless both runs leave
    /// the same trace. (For the data plane compare two separate runs' trace
    /// hashes instead: docs/testing.md, Simulation.)
    #[arg(long)]
    pub check_determinism: bool,
    /// Also simulate six data nodes and an S3 gateway under S3 clients,
    /// data-node crashes and shard rot.
    #[arg(long)]
    pub data_plane: bool,
    /// Write each run's whole trace (every operation, answer and fault, in
    /// order) to this file; with `--seeds`, the last run's.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<std::path::PathBuf>,
    /// Re-introduce a fixed bug (ack-before-commit, unknown-as-not-applied,
    /// skip-fsync, self-releasing-put-part, whole-file-scrub-drop); the run
    /// should fail. Only in builds with the `failpoints` feature.
    #[cfg(feature = "failpoints")]
    #[arg(long)]
    pub bug: Option<String>,
}

#[derive(Args)]
pub struct DevArgs {
    /// Data directory.
    #[arg(long, default_value = "weft-data", env = "WEFT_DATA")]
    pub data: PathBuf,
    /// S3 listen address.
    #[arg(long, default_value = "127.0.0.1:9000", env = "WEFT_LISTEN")]
    pub listen: SocketAddr,
    /// Admin API listen address.
    #[arg(long, default_value = "127.0.0.1:9001", env = "WEFT_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// metad listen address.
    #[arg(long, default_value = "127.0.0.1:9010")]
    pub metad_listen: SocketAddr,
    /// S3 region.
    #[arg(long, default_value = "us-east-1", env = "WEFT_REGION")]
    pub region: String,
    /// Serve S3 over HTTPS with a self-signed certificate (kept in DATA/tls).
    #[arg(long)]
    pub tls: bool,
    /// Plain HTTP between the cluster's parts, serving any caller (logs a
    /// warning). Without it every internal hop is mutual TLS, with a CA and
    /// certificates made in DATA/pki on first start.
    #[arg(long)]
    pub insecure_internal: bool,
    /// Data nodes in the cold zone `west` (labelled tier=cold), where
    /// GLACIER_IR and one-zone classes live; 0 runs without tiers.
    #[arg(long, default_value_t = 6)]
    pub cold_nodes: usize,
    /// Length of a lifecycle day (`1s`, `10m`, `1d`): lifecycle rules count
    /// days of this length, so a 30-day rule can be watched in seconds.
    #[arg(long, value_parser = parse_day, default_value = "1d")]
    pub lifecycle_day: u64,
    /// One S3 gateway in each zone (their ports are printed at start), so
    /// reads from each zone can be compared.
    #[arg(long)]
    pub gateway_per_zone: bool,
    /// Emulated round trip between zones (`20ms`, `0.1s`) on the gateways'
    /// hops to data nodes; inside a zone nothing is added.
    #[arg(long, value_parser = parse_latency)]
    pub zone_latency: Option<u64>,
    /// Emulated bandwidth between each pair of zones (`200MiB/s`).
    #[arg(long, value_parser = parse_bandwidth)]
    pub zone_bandwidth: Option<u64>,
}

/// What to warm, where, and how long.
#[derive(clap::Args, Debug, Default)]
pub struct WarmArgs {
    /// `s3://BUCKET[/PREFIX]`.
    pub target: Option<String>,
    /// The zone whose jobs will read it.
    #[arg(long)]
    pub zone: Option<String>,
    /// Keep it warm this long (`30m`, `12h`, `7d`); default: until dropped
    /// or evicted.
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<u64>,
    /// Never evict it to make room for other warms (administrators only).
    #[arg(long)]
    pub pin: bool,
    /// Return once asked for; do not wait for the copies.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this long (`10m`); the warm goes on.
    #[arg(long, value_parser = parse_ttl, default_value = "1h", conflicts_with = "no_wait")]
    pub wait_max: u64,
}

/// `weft warm` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum WarmCmd {
    /// How far a warm has got, or with no target every warm and each
    /// zone's cache budget (only `--zone`'s, when given).
    Status {
        /// `s3://BUCKET[/PREFIX]`.
        target: Option<String>,
        /// The warm's zone.
        #[arg(long)]
        zone: Option<String>,
    },
    /// Stop keeping a dataset warm; its cache copies are dropped.
    Drop {
        /// `s3://BUCKET[/PREFIX]`.
        target: String,
        /// The warm's zone.
        #[arg(long)]
        zone: String,
    },
}

/// `30m`, `12h`, `7d`: seconds, at least 1.
fn parse_ttl(text: &str) -> Result<u64, String> {
    match parse_secs(text)? {
        0 => Err(format!("{text:?}: give at least 1s")),
        n => Ok(n),
    }
}

/// `20ms`, `0.5s`: milliseconds.
fn parse_latency(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?}: write a latency like 20ms or 0.5s");
    let (n, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return Err(bad());
    };
    let v: f64 = n.parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 || v * scale > 60_000.0 {
        return Err(format!("{text:?}: give 0 to 60s"));
    }
    Ok((v * scale).round() as u64)
}

/// `200MiB/s`, `1GiB/s`, `500KB/s`: bytes per second.
fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?}: write a bandwidth like 200MiB/s, 1GiB/s or 50MB/s");
    let n = text.strip_suffix("/s").ok_or_else(bad)?;
    let split = n
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = n.split_at(split);
    let scale: f64 = match unit {
        "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = (v * scale).round();
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("{text:?}: give at least 1B/s"));
    }
    Ok(bytes as u64)
}

/// `N` seconds, or `Ns`, `Nm`, `Nh`, `Nd`; at least one second.
fn parse_day(text: &str) -> Result<u64, String> {
    match parse_secs(text)? {
        0 => Err("a lifecycle day lasts at least 1s".into()),
        n => Ok(n),
    }
}

/// A whole number of s, m, h or d (bare: seconds), in seconds.
fn parse_secs(text: &str) -> Result<u64, String> {
    let (n, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: write a whole number with s, m, h or d, e.g. 1s"))?;
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use s, m, h or d"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?}: too long"))
}

/// How the CLI reaches an internal endpoint (metad) itself: with an admin
/// certificate (default: DATA/pki/admin.pem, admin.key and ca.pem, which
/// `weft dev` makes), or plain HTTP with --insecure-internal.
#[derive(Args, Clone)]
pub struct InternalClientTls {
    /// An admin certificate (`weft cert issue --role admin`).
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Its key.
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA certificates to trust.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Plain HTTP to a cluster run with --insecure-internal.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_internal: bool,
}

impl InternalClientTls {
    /// The identity to present: the flags', else the dev cluster's in
    /// `data/pki`, else `None` with --insecure-internal; an error naming
    /// both ways otherwise.
    pub fn files(
        &self,
        data: &std::path::Path,
    ) -> anyhow::Result<Option<weft_client::internal_tls::TlsFiles>> {
        if self.insecure_internal {
            return Ok(None);
        }
        if let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            return Ok(Some(weft_client::internal_tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }));
        }
        let dir = data.join("pki");
        let files = weft_client::internal_tls::TlsFiles {
            cert: dir.join("admin.pem"),
            key: dir.join("admin.key"),
            ca: dir.join("ca.pem"),
        };
        if files.cert.is_file() && files.key.is_file() && files.ca.is_file() {
            return Ok(Some(files));
        }
        anyhow::bail!(
            "no admin certificate for the internal hops: pass --tls-cert/--tls-key/--tls-ca (`weft cert issue --role admin`), point --data at a weft dev data directory (tried {}), or --insecure-internal for a cluster run without TLS",
            dir.display()
        )
    }
}

#[derive(Args, Clone)]
pub struct AdminArgs {
    /// Admin API endpoint: https with the cluster CA (`weft dev`), or http
    /// for a cluster run with --insecure-internal.
    #[arg(
        long,
        global = true,
        default_value = "https://127.0.0.1:9001",
        env = "WEFT_ADMIN"
    )]
    pub admin: String,
    /// An admin certificate for an https endpoint (default: --data's
    /// pki/admin.pem); with --admin-key and --admin-ca.
    #[arg(long, global = true, env = "WEFT_ADMIN_CERT", requires_all = ["admin_key", "admin_ca"])]
    pub admin_cert: Option<PathBuf>,
    /// Its key.
    #[arg(long, global = true, env = "WEFT_ADMIN_KEY", requires_all = ["admin_cert", "admin_ca"])]
    pub admin_key: Option<PathBuf>,
    /// The cluster CA certificates to trust.
    #[arg(long, global = true, env = "WEFT_ADMIN_CA", requires_all = ["admin_cert", "admin_key"])]
    pub admin_ca: Option<PathBuf>,
    /// Root access key (default: WEFT_ROOT_ACCESS_KEY, else --data's credentials.json).
    #[arg(
        long,
        global = true,
        env = "WEFT_ROOT_ACCESS_KEY",
        hide_env_values = true
    )]
    pub access_key: Option<String>,
    /// Root secret key.
    #[arg(
        long,
        global = true,
        env = "WEFT_ROOT_SECRET_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// Data directory of a `weft dev` cluster, to read its credentials.
    #[arg(long, global = true, default_value = "weft-data", env = "WEFT_DATA")]
    pub data: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Metadata commit rate by concurrency, listing latency, leader failover time.
    Metad {
        /// Voters in the group.
        #[arg(long, default_value_t = 3)]
        voters: usize,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent writers, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        writers: Vec<usize>,
        /// Leader kills to time.
        #[arg(long, default_value_t = 3)]
        failovers: usize,
    },
    /// Repair throughput after a node loss and GET latency while repair runs.
    Repair {
        /// Objects to write.
        #[arg(long, default_value_t = 48)]
        objects: u64,
        /// Size of each, MiB.
        #[arg(long, default_value_t = 16)]
        size_mib: u64,
        /// Concurrent GET clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// What noting reads for Intelligent-Tiering costs GETs: a STANDARD
    /// and an INTELLIGENT_TIERING bucket read in alternating rounds.
    Tiering {
        /// Objects per bucket.
        #[arg(long, default_value_t = 200)]
        objects: u64,
        /// Size of each, KiB (small: the tracker's share is largest).
        #[arg(long, default_value_t = 4)]
        size_kib: usize,
        /// Concurrent GET clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Rounds per bucket.
        #[arg(long, default_value_t = 6)]
        rounds: usize,
        /// Seconds per round.
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// Reads across an emulated WAN: cross-zone bytes per GiB and GET
    /// p50/p99 from zone-a's gateway on 3 zones against 1, and `locate`
    /// latency on a prefix of many objects.
    Locality {
        /// Objects to read.
        #[arg(long, default_value_t = 16)]
        objects: u64,
        /// Size of each, MiB.
        #[arg(long, default_value_t = 8)]
        size_mib: usize,
        /// Times each object is read.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Emulated delay between zones, ms.
        #[arg(long, default_value_t = 20)]
        zone_latency_ms: u64,
        /// Emulated bandwidth between zones, MiB/s (0: no limit).
        #[arg(long, default_value_t = 200)]
        zone_bandwidth_mib: u64,
        /// Objects under the prefix `locate` is timed on.
        #[arg(long, default_value_t = 10_000)]
        locate_objects: u64,
        /// Timed `locate` calls of each kind (with each object, totals
        /// only).
        #[arg(long, default_value_t = 20)]
        locate_samples: usize,
        /// Time `locate` only: no reads, no warm, no one-zone cluster.
        #[arg(long)]
        locate_only: bool,
    },
    /// A compute job's read of a dataset through one gateway: every object
    /// under `s3://BUCKET/PREFIX`, whole, timed; prints one JSON document
    /// (objects, bytes, seconds, GET p50/p99, each object's CRC32C).
    Read {
        /// The dataset, `s3://BUCKET[/PREFIX]`.
        target: String,
        /// The gateway's S3 endpoint.
        #[arg(long, env = "WEFT_S3_ENDPOINT")]
        endpoint: String,
        /// S3 region.
        #[arg(long, default_value = "us-east-1", env = "AWS_REGION")]
        region: String,
        /// Access key.
        #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
        access_key: String,
        /// Secret key.
        #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
        secret_key: String,
        /// Times the dataset is read.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// Lifecycle transitions to the cold zone: throughput, CPU per GiB
    /// moved, and GET latency while they run at the default rate.
    Lifecycle {
        /// Objects per set (two sets are written).
        #[arg(long, default_value_t = 24)]
        objects: u64,
        /// Size of each, MiB.
        #[arg(long, default_value_t = 16)]
        size_mib: u64,
        /// Concurrent GET clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Shard PUT and GET between a gateway's datad client and one data node,
    /// over pooled HTTP/1.1 and over HTTP/2: throughput, latency and
    /// connections by size and concurrency.
    InternalHttp(InternalHttpArgs),
    /// Mixed S3 load with delete bursts, sampling open fds, TCP connections,
    /// RSS and release queues; `--check` fails if any keeps growing.
    Soak(SoakArgs),
    /// ListObjectsV2 page latency on a large bucket, flat and with a delimiter.
    List {
        /// Keys in the bucket.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Keys under each common prefix.
        #[arg(long, default_value_t = 1_000)]
        per_prefix: u64,
        /// Pages to time.
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
}

/// Arguments of `weft bench internal-http`.
#[derive(Args, Debug)]
pub struct InternalHttpArgs {
    /// Seconds per (protocol, size, concurrency) cell.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent requests, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 16, 64])]
    pub concurrency: Vec<usize>,
    /// Shard sizes in bytes, comma-separated (4 KiB and 1 MiB: a small
    /// object's copy and a 4 MiB stripe's shard).
    #[arg(long, value_delimiter = ',', default_values_t = vec![4096u64, 1 << 20])]
    pub sizes: Vec<u64>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Mutual TLS between client and node, as a real cluster runs (the
    /// client presents the dev gateway's certificate): run once with and
    /// once without to measure what TLS costs.
    #[arg(long)]
    pub tls: bool,
}

/// Options of `weft bench soak`.
#[derive(Args, Clone, Debug)]
pub struct SoakArgs {
    /// Minutes of load (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// Exit non-zero if open fds, TCP connections, RSS or release queue
    /// depth keep growing, if the queues do not drain afterwards, if any
    /// answer was wrong, or if errors exceed --max-error-fraction.
    #[arg(long)]
    pub check: bool,
    /// Concurrent clients of the mixed workload.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    pub interval_secs: u64,
    /// Seconds between delete bursts (0: none).
    #[arg(long, default_value_t = 60)]
    pub burst_every_secs: u64,
    /// 4 KiB objects written and then deleted in each burst.
    #[arg(long, default_value_t = 3000)]
    pub burst_objects: usize,
    /// Concurrent clients of a burst.
    #[arg(long, default_value_t = 32)]
    pub burst_clients: usize,
    /// Largest tolerated share of requests that fail (errors, not wrong
    /// answers: one wrong answer always fails --check).
    #[arg(long, default_value_t = 0.001)]
    pub max_error_fraction: f64,
    /// CSV of the samples (default: $TMPDIR/weft-soak-<unix time>.csv).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// S3 endpoint of a running `weft dev` to load, instead of starting a
    /// cluster inside this process. Needs --pid.
    #[arg(long, requires = "pid")]
    pub endpoint: Option<String>,
    /// Process id of that `weft dev`: the process that is measured.
    #[arg(long, requires = "endpoint")]
    pub pid: Option<u32>,
    /// Its admin endpoint (metrics and the data nodes' addresses).
    #[arg(long, default_value = "http://127.0.0.1:9001")]
    pub admin: String,
    /// Its S3 region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Its data directory, for the root credentials (unless
    /// WEFT_ROOT_ACCESS_KEY and WEFT_ROOT_SECRET_KEY are set).
    #[arg(long, default_value = "weft-data")]
    pub data: PathBuf,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Print the newest entries (with --json, one JSON object per line).
    Tail {
        /// How many of the newest entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u64,
        /// Keep printing new entries as they are committed.
        #[arg(long)]
        follow: bool,
    },
    /// Write the chain (entries, signed checkpoints, prune anchor) to FILE.
    Export {
        /// Where to write it (JSON).
        file: PathBuf,
    },
    /// Prove the chain intact: the live chain, or an export FILE. Names the
    /// first altered, inserted, reordered or missing entry and any forged
    /// checkpoint; exits 1 if it finds one.
    Verify {
        /// An export to check instead of the live chain.
        file: Option<PathBuf>,
        /// Public keys (hex) to trust for checkpoints, instead of the ones
        /// the cluster names (`weft audit info`): give them to check an
        /// export away from the cluster, or to not take its word.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
    },
    /// The chain's head, newest checkpoint, settings and public keys.
    Info,
    /// The signed checkpoints: the entries `weft audit prune` may prune to.
    Checkpoints,
    /// Record object writes and deletes too (`on`), or only administration,
    /// failures and denials (`off`, the default).
    DataPlane {
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Drop the entries through N, which a signed checkpoint must cover
    /// (export them first); the checkpoints are kept.
    Prune {
        /// Last entry to drop.
        #[arg(long)]
        through: u64,
    },
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Create a key; prints its secret once.
    Create { name: String },
    /// List keys.
    List,
    /// Delete a key.
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum ClassCmd {
    /// Every class: layout, zones, spread, what it holds, and whether this
    /// cluster can place it.
    List,
    /// Define a class, or change one (settings left out keep their value).
    /// New writes use the change; data already written stays where it is.
    Set {
        /// S3 name: STANDARD, STANDARD_IA, ONEZONE_IA, GLACIER_IR, ...
        name: String,
        /// `ec:K+M` (optionally `@UNIT_BYTES`) or `replicas:N`.
        #[arg(long)]
        layout: Option<String>,
        /// Nodes the class may use, by label (`tier=cold,region!=east`;
        /// `zone=NAME` names a zone; `*` every node). Repeat it for
        /// fallbacks: the first that can hold the layout is used.
        #[arg(long = "select")]
        select: Vec<String>,
        /// `zones` (at most ⌈width/zones⌉ shards per zone), `nodes` (no zone
        /// cap) or `one_zone` (every shard in one zone).
        #[arg(long)]
        spread: Option<String>,
        /// Objects at or below this size are stored as replicas.
        #[arg(long)]
        small_bytes: Option<u64>,
        /// Copies of a small object.
        #[arg(long)]
        small_copies: Option<u8>,
        /// Also move the data already in the class to the new definition
        /// (re-encoded or re-placed by data nodes, as lifecycle transitions).
        #[arg(long)]
        migrate: bool,
    },
    /// Delete a class that holds nothing (STANDARD cannot be deleted).
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum LifecycleCmd {
    /// What BUCKET's rules would do now, without doing it.
    Preview {
        bucket: String,
        /// Most keys to judge.
        #[arg(long, default_value_t = 100_000)]
        max_keys: u32,
    },
    /// Start a lifecycle pass now (as `radosgw-admin lc process`) and wait
    /// until BUCKET has nothing due (exit 0), or the timeout.
    Run {
        bucket: String,
        /// Seconds to wait for the due actions to be applied.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Weft's rule beside the S3 XML: current versions of BUCKET not read
    /// for N days move to CLASS (one way; replaces BUCKET's unread rules).
    Set {
        bucket: String,
        /// Days without a read (a GET of the version).
        #[arg(long, required_unless_present = "clear_unread", requires = "to")]
        unread_days: Option<u32>,
        /// The class they move to (further down S3's waterfall).
        #[arg(long)]
        to: Option<String>,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Remove BUCKET's unread rules instead.
        #[arg(long, conflicts_with_all = ["unread_days", "to", "prefix"])]
        clear_unread: bool,
    },
    /// Each bucket with rules: its rules, actions due now, bytes per class;
    /// the leader's passes.
    Status {
        /// Only this bucket.
        bucket: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum BucketCmd {
    /// List every bucket with its owner.
    List,
    /// Where a bucket's bytes may be (data residency): `show`, `set` or
    /// `clear`. Setting it moves the bucket's data that sits elsewhere,
    /// throttled like a transition (`weft class list` shows the migration).
    Placement {
        #[command(subcommand)]
        command: PlacementCmd,
    },
}

#[derive(Subcommand)]
pub enum PlacementCmd {
    /// The bucket's residency.
    Show {
        /// Bucket.
        bucket: String,
    },
    /// Keep the bucket's bytes in these zones and/or on nodes with these
    /// labels.
    Set {
        /// Bucket.
        bucket: String,
        /// Zones, comma-separated (`zone-a,zone-b`).
        #[arg(long, value_delimiter = ',')]
        zones: Vec<String>,
        /// A label the nodes must carry, `name=value` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Let the bucket's bytes be anywhere its classes place them.
    Clear {
        /// Bucket.
        bucket: String,
    },
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Nodes, zones, capacity and every metad voter's raft state.
    Status,
    /// Bytes per storage class and zone; with `zone_prices` in the
    /// gateway's config, the monthly cost and what the classes saved.
    Usage,
    /// The measured network between zones: round trip, throughput and age
    /// of the measurement for each zone pair (from gateways' probes and
    /// reads).
    Netmap,
    /// Initialise a new metad group: run once, against fresh voters that were
    /// started without `bootstrap`. Talks to the first member directly.
    Init {
        /// Members as ID=HOST:PORT, e.g. --member 1=10.0.0.1:7000 (repeat).
        #[arg(long = "member", required = true, value_parser = parse_member)]
        members: Vec<(u64, String)>,
        #[command(flatten)]
        tls: InternalClientTls,
    },
    /// Manage the metad voters.
    Metad {
        #[command(subcommand)]
        command: MetadCmd,
    },
    /// Repair: `weft cluster repair status`, or set the rate and priority
    /// (`weft cluster repair --rate 200MiB/s --priority high`).
    #[command(args_conflicts_with_subcommands = true)]
    Repair {
        #[command(subcommand)]
        command: Option<RepairCmd>,
        /// Cluster-wide rate of repair, drain and rebalance writes, e.g. 200MiB/s.
        #[arg(long, value_parser = weft_common::repair::parse_rate)]
        rate: Option<u64>,
        /// low (1 task per node), normal (2) or high (4, rebalancing waits).
        #[arg(long)]
        priority: Option<weft_common::repair::RepairPriority>,
    },
    /// The cluster's upload timers: show them, or change them
    /// (`weft cluster timers --upload-max-age-ms 1800000 --gc-grace-ms 3600000`).
    /// The grace must be at least twice the age; a shorter age reaches the
    /// gateways and a longer grace the data nodes within a minute, the
    /// opposite changes when each process restarts.
    Timers {
        /// Longest time one upload may write before it commits, in ms.
        #[arg(long)]
        upload_max_age_ms: Option<u64>,
        /// Age under which data nodes never collect a shard file, in ms.
        #[arg(long)]
        gc_grace_ms: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum RepairCmd {
    /// Segments at full redundancy, degraded and unreadable per storage
    /// class, the backlog and an ETA.
    Status,
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Move every shard off the node (it stays readable meanwhile).
    Drain {
        /// Node id.
        id: u64,
    },
    /// Cancel a drain: the node takes new shards again.
    Activate {
        /// Node id.
        id: u64,
    },
    /// Take a drained node out of the cluster for good.
    Remove {
        /// Node id.
        id: u64,
        /// Remove even if it still holds shards (repair rebuilds them).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum MetadCmd {
    /// Every voter with role, term, log indexes and replication lag.
    List,
    /// Add a voter: it catches up as a learner (log or snapshot), then is promoted.
    Add {
        /// Raft id, never reused.
        id: u64,
        /// Its HOST:PORT.
        addr: String,
    },
    /// Remove a voter (the leader steps down first if it is the one removed).
    Remove {
        /// Raft id.
        id: u64,
    },
    /// Make the current leader step down so another voter takes over.
    StepDown,
}

fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s.split_once('=').ok_or("expected ID=HOST:PORT")?;
    let id = id.parse().map_err(|e| format!("bad id {id:?}: {e}"))?;
    Ok((id, addr.to_string()))
}

/// Flags override the TOML file, which overrides the defaults.
#[derive(Args)]
pub struct DaemonArgs {
    /// TOML configuration file (fields as in docs/operations.md).
    #[arg(long, env = "WEFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "WEFT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (metad, datad).
    #[arg(long, env = "WEFT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// metad addresses, comma-separated (datad, gateway).
    #[arg(long, env = "WEFT_METAD", value_delimiter = ',')]
    pub metad: Option<Vec<String>>,
    /// Raft id (metad) or node id (datad).
    #[arg(long, env = "WEFT_ID")]
    pub id: Option<u64>,
    /// Zone (datad: where its shards are; gateway: where it serves, so
    /// reads prefer shards in it).
    #[arg(long, env = "WEFT_ZONE")]
    pub zone: Option<String>,
    /// A label of this node's zone, `name=value` (datad; repeatable), e.g.
    /// `--label tier=cold --label region=west`.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Address to advertise to peers, if not the listen address (metad, datad).
    #[arg(long, env = "WEFT_ADVERTISE")]
    pub advertise: Option<String>,
    /// Admin API listen address (gateway).
    #[arg(long, env = "WEFT_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// This process's certificate for the internal hops (`weft cert
    /// issue`); with --tls-key and --tls-ca, or `tls` in the config file.
    #[arg(long, env = "WEFT_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, env = "WEFT_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA certificates to trust (old and new during a roll).
    #[arg(long, env = "WEFT_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Plain HTTP on the internal hops: anyone who reaches the ports is
    /// served. Only for a bench on one host.
    #[arg(long, env = "WEFT_INSECURE_INTERNAL")]
    pub insecure_internal: bool,
}

impl DaemonArgs {
    /// The internal-hop security the flags and the config file choose
    /// together: refuses neither (secure by default, nothing configured)
    /// and both (a contradiction), naming the fix.
    pub fn internal_tls(
        &self,
        daemon: &str,
        config_tls: Option<weft_client::internal_tls::TlsFiles>,
        config_insecure: bool,
    ) -> anyhow::Result<Option<weft_client::internal_tls::TlsFiles>> {
        let flags = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(weft_client::internal_tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            _ => None,
        };
        let tls = flags.or(config_tls);
        let insecure = self.insecure_internal || config_insecure;
        match (tls, insecure) {
            (Some(_), true) => anyhow::bail!(
                "{daemon}: both internal TLS and insecure_internal are set; choose one (remove --insecure-internal / insecure_internal, or the tls files)"
            ),
            (None, false) => anyhow::bail!(
                "{daemon}: no internal TLS configured. Give this process a certificate \
                 (`weft cert issue --role {daemon} --name NAME`, then --tls-cert/--tls-key/--tls-ca \
                 or `tls = {{ cert = ..., key = ..., ca = ... }}` in its config), or run with \
                 --insecure-internal to serve and call plain HTTP on purpose (docs/security.md)"
            ),
            (None, true) => {
                tracing::warn!(
                    "{daemon}: --insecure-internal: internal traffic is plain HTTP and every caller is served; use it only on a bench"
                );
                Ok(None)
            }
            (tls, false) => Ok(tls),
        }
    }
}

/// `name=value` of `--label`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected name=value, e.g. tier=cold"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}
