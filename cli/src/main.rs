//! `weft`: admin CLI, daemons and the all-in-one dev cluster.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use weft_cli::admin_client::AdminClient;
use weft_cli::config;
use weft_cli::dev_cluster::{root_credentials, DevCluster, DevClusterConfig};
use weft_cli::exit::{fatal_hint, RestartNeeded, EXIT_RESTART, STOP_AFTER_FATAL};
use weft_gateway::admin::{BucketView, ClusterStatus, KeyView};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Weft: an erasure-coded, zone-aware object store with an S3 API"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a whole cluster in this process (metad, 6 data nodes in 3 zones, gateway).
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
    /// Measure: figures for docs/performance.md (never pass/fail).
    Bench {
        #[command(subcommand)]
        command: BenchCmd,
    },
    /// Run a metad voter.
    Metad(DaemonArgs),
    /// Run a data node.
    Datad(DaemonArgs),
    /// Run an S3 gateway.
    Gateway(DaemonArgs),
}

#[derive(Args)]
struct DevArgs {
    /// Data directory.
    #[arg(long, default_value = "weft-data", env = "WEFT_DATA")]
    data: PathBuf,
    /// S3 listen address.
    #[arg(long, default_value = "127.0.0.1:9000", env = "WEFT_LISTEN")]
    listen: SocketAddr,
    /// Admin API listen address.
    #[arg(long, default_value = "127.0.0.1:9001", env = "WEFT_ADMIN_LISTEN")]
    admin_listen: SocketAddr,
    /// metad listen address.
    #[arg(long, default_value = "127.0.0.1:9010")]
    metad_listen: SocketAddr,
    /// S3 region.
    #[arg(long, default_value = "us-east-1", env = "WEFT_REGION")]
    region: String,
    /// Serve S3 over HTTPS with a self-signed certificate (kept in DATA/tls).
    #[arg(long)]
    tls: bool,
}

#[derive(Args, Clone)]
struct AdminArgs {
    /// Admin API endpoint.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9001",
        env = "WEFT_ADMIN"
    )]
    admin: String,
    /// Root access key (default: WEFT_ROOT_ACCESS_KEY, else --data's credentials.json).
    #[arg(
        long,
        global = true,
        env = "WEFT_ROOT_ACCESS_KEY",
        hide_env_values = true
    )]
    access_key: Option<String>,
    /// Root secret key.
    #[arg(
        long,
        global = true,
        env = "WEFT_ROOT_SECRET_KEY",
        hide_env_values = true
    )]
    secret_key: Option<String>,
    /// Data directory of a `weft dev` cluster, to read its credentials.
    #[arg(long, global = true, default_value = "weft-data", env = "WEFT_DATA")]
    data: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCmd {
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
    /// Shard PUT and GET between a gateway's datad client and one data node,
    /// over pooled HTTP/1.1 and over HTTP/2: throughput, latency and
    /// connections by size and concurrency.
    InternalHttp(weft_cli::bench_internal::InternalHttpArgs),
    /// Mixed S3 load with delete bursts, sampling open fds, TCP connections,
    /// RSS and release queues; `--check` fails if any keeps growing.
    Soak(weft_cli::bench_soak::SoakArgs),
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

#[derive(Subcommand)]
enum KeyCmd {
    /// Create a key; prints its secret once.
    Create { name: String },
    /// List keys.
    List,
    /// Delete a key.
    Delete { name: String },
}

#[derive(Subcommand)]
enum BucketCmd {
    /// List every bucket with its owner.
    List,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Nodes, zones, capacity and every metad voter's raft state.
    Status,
    /// Initialise a new metad group: run once, against fresh voters that were
    /// started without `bootstrap`. Talks to the first member directly.
    Init {
        /// Members as ID=HOST:PORT, e.g. --member 1=10.0.0.1:7000 (repeat).
        #[arg(long = "member", required = true, value_parser = parse_member)]
        members: Vec<(u64, String)>,
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
enum RepairCmd {
    /// Segments at full redundancy, degraded and unreadable per storage
    /// class, the backlog and an ETA.
    Status,
}

#[derive(Subcommand)]
enum NodeCmd {
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
enum MetadCmd {
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
struct DaemonArgs {
    /// TOML configuration file (fields as in docs/operations.md).
    #[arg(long, env = "WEFT_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "WEFT_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory (metad, datad).
    #[arg(long, env = "WEFT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// metad addresses, comma-separated (datad, gateway).
    #[arg(long, env = "WEFT_METAD", value_delimiter = ',')]
    metad: Option<Vec<String>>,
    /// Raft id (metad) or node id (datad).
    #[arg(long, env = "WEFT_ID")]
    id: Option<u64>,
    /// Zone (datad).
    #[arg(long, env = "WEFT_ZONE")]
    zone: Option<String>,
    /// Address to advertise to peers, if not the listen address (metad, datad).
    #[arg(long, env = "WEFT_ADVERTISE")]
    advertise: Option<String>,
    /// Admin API listen address (gateway).
    #[arg(long, env = "WEFT_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
}

fn admin_client(a: &AdminArgs) -> Result<AdminClient> {
    let (ak, sk) = match (&a.access_key, &a.secret_key) {
        (Some(ak), Some(sk)) => (ak.clone(), sk.clone()),
        _ => {
            let path = a.data.join("credentials.json");
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "no root credentials: set WEFT_ROOT_ACCESS_KEY and WEFT_ROOT_SECRET_KEY, or point --data at a weft dev data directory (tried {})",
                    path.display()
                )
            })?;
            let c: weft_cli::dev_cluster::Credentials = serde_json::from_slice(&bytes)
                .with_context(|| format!("parse {}", path.display()))?;
            (c.access_key, c.secret_key)
        }
    };
    Ok(AdminClient::new(&a.admin, &ak, &sk))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn ms_to_rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

async fn run_key(cmd: KeyCmd, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    match cmd {
        KeyCmd::Create { name } => {
            let k: KeyView = c
                .call(
                    reqwest::Method::POST,
                    "/v1/keys",
                    Some(serde_json::json!({ "name": name })),
                )
                .await
                .with_context(|| format!("create key {name}"))?;
            if a.json {
                return print_json(&k);
            }
            println!("Key name:   {}", k.name);
            println!("Access key: {}", k.access_key);
            println!("Secret key: {}", k.secret_key.unwrap_or_default());
            println!("(the secret is shown only once)");
        }
        KeyCmd::List => {
            let keys: Vec<KeyView> = c
                .call(reqwest::Method::GET, "/v1/keys", None)
                .await
                .context("list keys")?;
            if a.json {
                return print_json(&keys);
            }
            println!("{:<24} {:<24} {:<5} CREATED", "NAME", "ACCESS KEY", "ROOT");
            for k in keys {
                println!(
                    "{:<24} {:<24} {:<5} {}",
                    k.name,
                    k.access_key,
                    k.root,
                    ms_to_rfc3339(k.created_ms)
                );
            }
        }
        KeyCmd::Delete { name } => {
            let _: serde_json::Value = c
                .call(reqwest::Method::DELETE, &format!("/v1/keys/{name}"), None)
                .await
                .with_context(|| format!("delete key {name}"))?;
            if a.json {
                return print_json(&serde_json::json!({ "deleted": name }));
            }
            println!("deleted key {name}");
        }
    }
    Ok(())
}

async fn run_bucket(cmd: BucketCmd, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    match cmd {
        BucketCmd::List => {
            let buckets: Vec<BucketView> = c
                .call(reqwest::Method::GET, "/v1/buckets", None)
                .await
                .context("list buckets")?;
            if a.json {
                return print_json(&buckets);
            }
            println!("{:<40} {:<24} CREATED", "BUCKET", "OWNER");
            for b in buckets {
                println!(
                    "{:<40} {:<24} {}",
                    b.name,
                    b.owner,
                    ms_to_rfc3339(b.created_ms)
                );
            }
        }
    }
    Ok(())
}

fn print_durability(st: &weft_common::repair::DurabilityStatus) {
    let when = ms_to_rfc3339(st.as_of_ms);
    println!("state: {}   (as of {when})", st.state.to_uppercase());
    if st.stale {
        println!(
            "STALE: {}",
            st.stale_reason.as_deref().unwrap_or("metad did not answer")
        );
    }
    println!(
        "\n{:<12} {:<11} {:>10} {:>10} {:>22} {:>11} {:>12}",
        "CLASS", "LAYOUT", "SEGMENTS", "FULL", "DEGRADED (-1,-2,..)", "UNREADABLE", "BACKLOG"
    );
    for c in &st.classes {
        let degraded: Vec<String> = c.degraded.iter().map(|d| d.to_string()).collect();
        println!(
            "{:<12} {:<11} {:>10} {:>10} {:>22} {:>11} {:>12}",
            c.class,
            c.layout,
            c.segments,
            c.full,
            degraded.join(","),
            c.unreadable,
            human_bytes(c.backlog_bytes)
        );
    }
    let eta = match st.eta_seconds {
        Some(0) => "none needed".to_string(),
        Some(s) => format!("~{s}s"),
        None => "unknown (no repair is making progress)".to_string(),
    };
    println!(
        "\nbacklog {}, ETA {eta}; {} tasks in flight, {}/s over the last minute; rate limit {}/s, priority {:?}",
        human_bytes(st.backlog_bytes),
        st.tasks_in_flight,
        human_bytes(st.recent_rate_bytes_per_sec),
        human_bytes(st.config.rate_bytes_per_sec),
        st.config.priority
    );
    if st.draining_shards > 0 {
        println!("{} shards still on draining nodes", st.draining_shards);
    }
    if st.damaged_shards > 0 {
        println!(
            "{} shard files have bad blocks awaiting repair in place",
            st.damaged_shards
        );
    }
    if !st.unreadable_objects.is_empty() {
        println!(
            "unreadable objects (first {}):",
            st.unreadable_objects.len()
        );
        for o in &st.unreadable_objects {
            println!("  {o}");
        }
    }
    println!(
        "\n{:<6} {:<12} {:<9} {:>8} {:>12} {:>12}",
        "NODE", "ZONE", "STATE", "SHARDS", "STORED", "CAPACITY"
    );
    for n in &st.nodes {
        println!(
            "{:<6} {:<12} {:<9} {:>8} {:>12} {:>12}",
            n.node.to_string(),
            n.zone,
            n.state,
            n.shards,
            human_bytes(n.stored_bytes),
            human_bytes(n.capacity_bytes)
        );
    }
}

async fn run_node(cmd: NodeCmd, a: AdminArgs) -> Result<()> {
    let c = admin_client(&a)?;
    let (id, path) = match cmd {
        NodeCmd::Drain { id } => (id, format!("/v1/nodes/{id}/drain")),
        NodeCmd::Activate { id } => (id, format!("/v1/nodes/{id}/activate")),
        NodeCmd::Remove { id, force } => (
            id,
            format!(
                "/v1/nodes/{id}/remove{}",
                if force { "?force=true" } else { "" }
            ),
        ),
    };
    let r: weft_gateway::admin::NodeActionReply = c
        .call(reqwest::Method::POST, &path, Some(serde_json::json!({})))
        .await
        .with_context(|| format!("change node {id}"))?;
    if a.json {
        return print_json(&r);
    }
    println!(
        "node {} is now {:?} ({} shards placed on it{})",
        r.node,
        r.admin,
        r.shards,
        if r.admin == weft_common::topology::NodeAdmin::Draining {
            "; watch `weft cluster repair status` until it holds none"
        } else {
            ""
        }
    );
    Ok(())
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn print_voters(voters: &[weft_gateway::admin::VoterView], leader: &weft_common::rpc::RaftStatus) {
    println!(
        "{:<6} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10} {:>8}  {:<10}",
        "VOTER", "ADDRESS", "ROLE", "TERM", "LAST LOG", "APPLIED", "SNAPSHOT", "LAG", "DISK"
    );
    let mut low = vec![];
    let leader_last = leader.last_log_index.unwrap_or(0);
    for v in voters {
        match &v.status {
            Some(st) => {
                let matched = leader
                    .members
                    .iter()
                    .find(|m| m.id == st.node_id)
                    .and_then(|m| m.matched_index);
                let lag = matched
                    .map(|m| leader_last.saturating_sub(m).to_string())
                    .unwrap_or_else(|| "-".into());
                let opt = |x: Option<u64>| x.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                let disk = match &st.space {
                    Some(sp) if sp.low => {
                        low.push((st.node_id, sp.reason.clone()));
                        format!("LOW ({} free)", human_bytes(sp.free_bytes))
                    }
                    Some(sp) => format!("ok ({} free)", human_bytes(sp.free_bytes)),
                    None => "-".into(),
                };
                println!(
                    "{:<6} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10} {:>8}  {:<10}",
                    st.node_id,
                    v.addr,
                    st.role,
                    st.term,
                    opt(st.last_log_index),
                    opt(st.applied_index),
                    opt(st.snapshot_index),
                    lag,
                    disk
                );
            }
            None => println!(
                "{:<6} {:<22} unreachable: {}",
                "?",
                v.addr,
                v.error.as_deref().unwrap_or("")
            ),
        }
    }
    for (id, reason) in low {
        println!(
            "metad {id} is in space-low mode ({reason}): new objects, uploads and buckets are refused; free space on its disk"
        );
    }
}

async fn run_cluster(cmd: ClusterCmd, a: AdminArgs) -> Result<()> {
    if let ClusterCmd::Init { members } = &cmd {
        let (_, first) = members.first().context("at least one --member")?;
        let map: std::collections::BTreeMap<u64, String> = members.iter().cloned().collect();
        let resp = reqwest::Client::new()
            .post(format!("http://{first}/v1/init"))
            .json(&serde_json::json!({ "members": map }))
            .send()
            .await
            .with_context(|| format!("reach metad at {first}"))?;
        if !resp.status().is_success() {
            anyhow::bail!(
                "initialise the metad group: HTTP {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        if a.json {
            return print_json(&serde_json::json!({ "initialized": map }));
        }
        println!("initialised a metad group of {} voters", map.len());
        return Ok(());
    }
    let c = admin_client(&a)?;
    match cmd {
        ClusterCmd::Init { .. } => unreachable!("handled above"),
        ClusterCmd::Metad { command } => {
            let st: weft_common::rpc::RaftStatus = match command {
                MetadCmd::List => {
                    let s: ClusterStatus = c
                        .call(reqwest::Method::GET, "/v1/cluster/status", None)
                        .await
                        .context("get metad status")?;
                    if a.json {
                        return print_json(&s.voters);
                    }
                    print_voters(&s.voters, &s.metad);
                    return Ok(());
                }
                MetadCmd::Add { id, addr } => c
                    .call(
                        reqwest::Method::POST,
                        "/v1/metad/add",
                        Some(serde_json::json!({ "id": id, "addr": addr })),
                    )
                    .await
                    .with_context(|| format!("add metad voter {id} at {addr}"))?,
                MetadCmd::Remove { id } => c
                    .call(
                        reqwest::Method::POST,
                        "/v1/metad/remove",
                        Some(serde_json::json!({ "id": id })),
                    )
                    .await
                    .with_context(|| format!("remove metad voter {id}"))?,
                MetadCmd::StepDown => c
                    .call(
                        reqwest::Method::POST,
                        "/v1/metad/step-down",
                        Some(serde_json::json!({})),
                    )
                    .await
                    .context("step down the metad leader")?,
            };
            if a.json {
                return print_json(&st);
            }
            println!("voters now: {:?}", st.voters);
        }
        ClusterCmd::Repair {
            command: Some(RepairCmd::Status),
            ..
        } => {
            let st: weft_common::repair::DurabilityStatus = c
                .call(reqwest::Method::GET, "/v1/repair/status", None)
                .await
                .context("get repair status")?;
            if a.json {
                return print_json(&st);
            }
            print_durability(&st);
        }
        ClusterCmd::Repair {
            command: None,
            rate,
            priority,
        } => {
            if rate.is_none() && priority.is_none() {
                anyhow::bail!("nothing to change: give --rate and/or --priority, or use `weft cluster repair status`");
            }
            let cfg: weft_common::repair::RepairConfig = c
                .call(
                    reqwest::Method::POST,
                    "/v1/repair/config",
                    Some(serde_json::json!({ "rate_bytes_per_sec": rate, "priority": priority })),
                )
                .await
                .context("set repair settings")?;
            if a.json {
                return print_json(&cfg);
            }
            println!(
                "repair rate {}/s, priority {:?}",
                human_bytes(cfg.rate_bytes_per_sec),
                cfg.priority
            );
        }
        ClusterCmd::Timers {
            upload_max_age_ms,
            gc_grace_ms,
        } => {
            let t: weft_common::upload_timers::UploadTimers =
                if upload_max_age_ms.is_none() && gc_grace_ms.is_none() {
                    c.call(reqwest::Method::GET, "/v1/upload-timers", None)
                        .await
                        .context("get the upload timers")?
                } else {
                    c.call(
                        reqwest::Method::POST,
                        "/v1/upload-timers",
                        Some(serde_json::json!({
                            "upload_max_age_ms": upload_max_age_ms,
                            "gc_grace_ms": gc_grace_ms,
                        })),
                    )
                    .await
                    .context("set the upload timers")?
                };
            if a.json {
                return print_json(&t);
            }
            println!(
                "upload_max_age_ms {}\ngc_grace_ms {}",
                t.upload_max_age_ms, t.gc_grace_ms
            );
        }
        ClusterCmd::Status => {
            let s: ClusterStatus = c
                .call(reqwest::Method::GET, "/v1/cluster/status", None)
                .await
                .context("get cluster status")?;
            if a.json {
                return print_json(&s);
            }
            println!(
                "metad group: leader {:?}, voters {:?}\n",
                s.metad.leader, s.metad.voters
            );
            print_voters(&s.voters, &s.metad);
            let mut zones: std::collections::BTreeMap<&str, (usize, usize, u64, u64)> =
                Default::default();
            for n in &s.nodes {
                let z = zones.entry(n.info.zone.as_str()).or_default();
                z.0 += 1;
                if n.state_name() == "up" {
                    z.1 += 1;
                }
                z.2 += n.info.capacity_bytes;
                z.3 += n.used_bytes;
            }
            println!(
                "\n{:<12} {:>5} {:>5} {:>12} {:>12}",
                "ZONE", "NODES", "UP", "CAPACITY", "USED"
            );
            for (z, (n, up, cap, used)) in &zones {
                println!(
                    "{:<12} {:>5} {:>5} {:>12} {:>12}",
                    z,
                    n,
                    up,
                    human_bytes(*cap),
                    human_bytes(*used)
                );
            }
            println!(
                "\n{:<6} {:<12} {:<22} {:<9} {:>12} {:>12} {:<9} {:>10}",
                "NODE", "ZONE", "ADDRESS", "STATE", "CAPACITY", "USED", "SPACE", "HEARTBEAT"
            );
            for n in &s.nodes {
                println!(
                    "{:<6} {:<12} {:<22} {:<9} {:>12} {:>12} {:<9} {:>10}",
                    n.info.id.to_string(),
                    n.info.zone,
                    n.info.addr,
                    n.state_name(),
                    human_bytes(n.info.capacity_bytes),
                    human_bytes(n.used_bytes),
                    format!(
                        "{} {}%",
                        n.space.state.name(),
                        n.space.fullness_ppm / 10_000
                    ),
                    n.last_heartbeat_ms_ago
                        .map(|ms| format!("{ms}ms ago"))
                        .unwrap_or_else(|| "never".into())
                );
            }
            for n in s.nodes.iter().filter(|n| !n.space.reason.is_empty()) {
                println!(
                    "node {} is {}: {}",
                    n.info.id,
                    n.space.state.name(),
                    n.space.reason
                );
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Longest a metad or datad takes to stop after SIGTERM (and the margin a
/// gateway gets beyond its grace): their servers finish requests in flight,
/// which are short internal calls, but a stuck one must not keep the process
/// from exiting.
const DAEMON_STOP_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits for `stopped` up to `max`; past it, logs and returns so the
/// process exits anyway (everything durable is already on disk).
async fn stop_within(
    what: &str,
    max: std::time::Duration,
    stopped: impl std::future::Future<Output = ()>,
) {
    match tokio::time::timeout(max, stopped).await {
        Ok(()) => tracing::info!("{what} stopped"),
        Err(_) => {
            tracing::warn!("{what} did not stop within {max:?}; exiting with work still running")
        }
    }
}

async fn run_dev(a: DevArgs) -> Result<()> {
    let mut cfg = DevClusterConfig::new(&a.data);
    cfg.s3_listen = a.listen;
    cfg.admin_listen = a.admin_listen;
    cfg.metad_listen = a.metad_listen;
    cfg.region = a.region;
    cfg.tls = a.tls;
    cfg.credentials = Some(root_credentials(&a.data)?);
    weft_cli::limits::raise_open_file_limit_logged();
    let cluster = DevCluster::start(cfg).await?;
    let c = cluster.credentials();
    println!(
        "Weft dev cluster is up: metad + {} data nodes in 3 zones + S3 gateway",
        cluster.config().datad_count
    );
    println!();
    println!("  S3 endpoint:   {}", cluster.s3_endpoint());
    println!("  Admin API:     {}", cluster.admin_endpoint());
    println!("  Region:        {}", cluster.region());
    println!("  Access key:    {}", c.access_key);
    println!("  Secret key:    {}", c.secret_key);
    println!("  Data:          {}", a.data.display());
    if let Some(ca) = cluster.ca_cert() {
        println!(
            "  TLS cert:      {} (self-signed: export AWS_CA_BUNDLE={})",
            ca.display(),
            ca.display()
        );
    }
    println!();
    println!("Try it with aws-cli:");
    println!(
        "  export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={}",
        c.access_key,
        c.secret_key,
        cluster.region()
    );
    println!(
        "  aws --endpoint-url {} s3 mb s3://demo",
        cluster.s3_endpoint()
    );
    println!(
        "  aws --endpoint-url {} s3 cp ./README.md s3://demo/",
        cluster.s3_endpoint()
    );
    println!();
    println!("Press Ctrl-C to stop.");
    tokio::select! {
        _ = shutdown_signal() => {
            println!("stopping…");
            cluster.shutdown().await;
            Ok(())
        }
        fatal = cluster.metad_fatal() => {
            eprintln!("metad {} of the dev cluster can no longer serve; stopping everything", fatal.id);
            if tokio::time::timeout(STOP_AFTER_FATAL, cluster.shutdown()).await.is_err() {
                tracing::warn!("the dev cluster did not stop within {STOP_AFTER_FATAL:?}; exiting anyway");
            }
            Err(RestartNeeded(format!(
                "{fatal}. Committed data in {} is intact; run `weft dev` again to restart from it.{}",
                a.data.display(),
                fatal_hint(&fatal.cause)
            ))
            .into())
        }
    }
}

async fn run_daemon(kind: &str, a: DaemonArgs) -> Result<()> {
    weft_cli::limits::raise_open_file_limit_logged();
    let cancel = CancellationToken::new();
    let path = a.config.as_deref();
    match kind {
        "metad" => {
            let mut cfg: weft_metad::MetadConfig = config::load(path)?;
            if let Some(v) = a.listen {
                cfg.listen = v;
            }
            if let Some(v) = a.data_dir {
                cfg.data_dir = v;
            }
            if let Some(v) = a.id {
                cfg.id = v;
            }
            if a.advertise.is_some() {
                cfg.advertise = a.advertise;
            }
            let data_dir = cfg.data_dir.clone();
            let h = weft_metad::start(cfg, cancel.clone()).await?;
            println!("metad listening on {}", h.addr());
            tokio::select! {
                _ = shutdown_signal() => {
                    tracing::info!("stopping: finishing requests in flight");
                    cancel.cancel();
                    stop_within("metad", DAEMON_STOP_MAX, h.stopped()).await;
                }
                fatal = h.fatal() => {
                    cancel.cancel();
                    if tokio::time::timeout(STOP_AFTER_FATAL, h.stopped()).await.is_err() {
                        tracing::warn!("metad did not stop within {STOP_AFTER_FATAL:?}; exiting anyway");
                    }
                    return Err(RestartNeeded(format!(
                        "{fatal}. Committed metadata in {} is intact (the raft log is fsynced at every commit); \
                         restart this metad (a supervisor such as systemd with Restart=on-failure does) and it recovers \
                         from its log and snapshot.{}",
                        data_dir.display(),
                        fatal_hint(&fatal.cause)
                    ))
                    .into());
                }
            }
        }
        "datad" => {
            let mut cfg: weft_datad::node::DatadConfig = config::load(path)?;
            if let Some(v) = a.listen {
                cfg.listen = v;
            }
            if let Some(v) = a.data_dir {
                cfg.data_dir = v;
            }
            if let Some(v) = a.metad {
                cfg.metad = v;
            }
            if let Some(v) = a.id {
                cfg.node_id = v;
            }
            if let Some(v) = a.zone {
                cfg.zone = v;
            }
            if a.advertise.is_some() {
                cfg.advertise = a.advertise;
            }
            let h = weft_datad::node::start(cfg, cancel.clone()).await?;
            println!("datad {} listening on {}", h.node_id(), h.addr());
            shutdown_signal().await;
            tracing::info!("stopping: finishing requests in flight");
            cancel.cancel();
            stop_within("datad", DAEMON_STOP_MAX, h.stopped()).await;
        }
        _ => {
            let mut cfg: weft_gateway::GatewayConfig = config::load(path)?;
            if let Some(v) = a.listen {
                cfg.listen = v;
            }
            if let Some(v) = a.admin_listen {
                cfg.admin_listen = v;
            }
            if let Some(v) = a.metad {
                cfg.metad = v;
            }
            if let Ok(ak) = std::env::var("WEFT_ROOT_ACCESS_KEY") {
                cfg.root_access_key = Some(ak);
            }
            if let Ok(sk) = std::env::var("WEFT_ROOT_SECRET_KEY") {
                cfg.root_secret_key = Some(sk);
            }
            let grace = std::time::Duration::from_millis(cfg.shutdown_grace_ms);
            let h = weft_gateway::start(cfg, cancel.clone()).await?;
            println!(
                "gateway: S3 on {}, admin API on {}",
                h.s3_addr(),
                h.admin_addr()
            );
            shutdown_signal().await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "stopping: no new connections; requests in flight may finish within the grace"
            );
            cancel.cancel();
            // The listener cuts what outlives the grace itself; the margin
            // only turns a bug there into a logged exit instead of a hang.
            stop_within("gateway", grace + DAEMON_STOP_MAX, h.stopped()).await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // s3s logs every client error (a 404, a bad signature) at ERROR; the
    // gateway logs what needs a human itself, so s3s is off by default.
    let default_filter = match &cli.command {
        Cmd::Dev(_) | Cmd::Metad(_) | Cmd::Datad(_) | Cmd::Gateway(_) => {
            "info,s3s=off,openraft=warn"
        }
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Cmd::Dev(a) => run_dev(a).await,
        Cmd::Key { command, admin } => run_key(command, admin).await,
        Cmd::Bucket { command, admin } => run_bucket(command, admin).await,
        Cmd::Cluster { command, admin } => run_cluster(command, admin).await,
        Cmd::Node { command, admin } => run_node(command, admin).await,
        Cmd::Bench { command } => match command {
            BenchCmd::Metad {
                voters,
                seconds,
                writers,
                failovers,
            } => weft_cli::bench::metad(voters, seconds, &writers, failovers).await,
            BenchCmd::List {
                keys,
                per_prefix,
                samples,
            } => weft_cli::bench::list(keys, per_prefix, samples).await,
            BenchCmd::Repair {
                objects,
                size_mib,
                clients,
            } => weft_cli::bench_repair::repair(objects, size_mib, clients).await,
            BenchCmd::Soak(a) => weft_cli::bench_soak::soak(a).await,
            BenchCmd::InternalHttp(a) => weft_cli::bench_internal::internal_http(a).await,
        },
        Cmd::Metad(a) => run_daemon("metad", a).await,
        Cmd::Datad(a) => run_daemon("datad", a).await,
        Cmd::Gateway(a) => run_daemon("gateway", a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<RestartNeeded>().is_some() {
                std::process::ExitCode::from(EXIT_RESTART)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
