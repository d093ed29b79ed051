//! `weft dev`: a whole cluster in this process, for trying Weft out; prints
//! how to reach it and runs until Ctrl-C.

use super::daemon::shutdown_signal;
use super::LOG_TARGET;
use crate::args::DevArgs;
use anyhow::Result;
use weft_cli::dev_cluster::{root_credentials, DevCluster, DevClusterConfig};
use weft_cli::exit::{fatal_hint, RestartNeeded, STOP_AFTER_FATAL};

/// Runs the dev cluster until a signal, or until its metad can no longer
/// serve: then it stops with [`RestartNeeded`] rather than answer 503s
/// forever.
pub async fn run(a: DevArgs) -> Result<()> {
    let mut cfg = DevClusterConfig::new(&a.data);
    cfg.s3_listen = a.listen;
    cfg.admin_listen = a.admin_listen;
    cfg.metad_listen = a.metad_listen;
    cfg.region = a.region;
    cfg.tls = a.tls;
    cfg.insecure_internal = a.insecure_internal;
    cfg.cold_nodes = a.cold_nodes;
    cfg.metad.lifecycle_day_secs = a.lifecycle_day;
    cfg.gateway_per_zone = a.gateway_per_zone;
    cfg.wan = weft_client::wan::WanSettings {
        latency_ms: a.zone_latency.unwrap_or(0),
        bandwidth_bytes_per_s: a.zone_bandwidth.unwrap_or(0),
    };
    cfg.credentials = Some(root_credentials(&a.data)?);
    weft_cli::limits::raise_open_file_limit_logged();
    let cluster = DevCluster::start(cfg).await?;
    let c = cluster.credentials();
    let cfg = cluster.config();
    if cfg.cold_nodes > 0 {
        println!(
            "Weft dev cluster is up: metad + {} data nodes in {} zones + {} in the cold zone {} (tier=cold) + S3 gateway",
            cfg.datad_count,
            cfg.zones.len(),
            cfg.cold_nodes,
            cfg.cold_zone
        );
    } else {
        println!(
            "Weft dev cluster is up: metad + {} data nodes in {} zones + S3 gateway",
            cfg.datad_count,
            cfg.zones.len()
        );
    }
    if cfg.metad.lifecycle_day_secs != 86_400 {
        println!(
            "Lifecycle days last {} s: rules fire on that schedule.",
            cfg.metad.lifecycle_day_secs
        );
    }
    println!();
    println!("  S3 endpoint:   {}", cluster.s3_endpoint());
    println!("  Admin API:     {}", cluster.admin_endpoint());
    if cfg.gateway_per_zone || cfg.wan.is_active() {
        for i in 0..cluster.gateway_count() {
            println!(
                "  Gateway {i}:     zone {}, S3 {}, admin {}",
                cluster.gateway_zone(i).unwrap_or_else(|| "(none)".into()),
                cluster.s3_endpoint_of(i).unwrap_or_default(),
                cluster.admin_endpoint_of(i).unwrap_or_default()
            );
        }
    }
    if cfg.wan.is_active() {
        println!(
            "  Emulated WAN:  {} ms between zones, {} between each pair of zones",
            cfg.wan.latency_ms,
            match cfg.wan.bandwidth_bytes_per_s {
                0 => "unlimited bandwidth".to_string(),
                b => format!("{:.0} MiB/s", b as f64 / (1u64 << 20) as f64),
            }
        );
    }
    println!("  Region:        {}", cluster.region());
    println!("  Access key:    {}", c.access_key);
    println!("  Secret key:    {}", c.secret_key);
    println!("  Data:          {}", a.data.display());
    match cluster.pki() {
        Some(pki) => println!(
            "  Internal hops: mutual TLS; cluster CA {}, admin certificate {}",
            pki.ca.display(),
            pki.admin.cert.display()
        ),
        None => println!("  Internal hops: PLAIN HTTP (--insecure-internal): any caller is served"),
    }
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
                tracing::warn!(target: LOG_TARGET, "the dev cluster did not stop within {STOP_AFTER_FATAL:?}; exiting anyway");
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
