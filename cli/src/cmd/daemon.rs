//! `weft metad`, `weft datad` and `weft gateway`: one server per process,
//! configured from a TOML file overridden by flags and `WEFT_*` variables,
//! running until SIGTERM or Ctrl-C.

use super::LOG_TARGET;
use crate::args::DaemonArgs;
use anyhow::Result;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use weft_cli::config;
use weft_cli::exit::{fatal_hint, RestartNeeded, STOP_AFTER_FATAL};

/// Resolves on SIGTERM (what a service manager sends) or Ctrl-C.
pub(super) async fn shutdown_signal() {
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
const DAEMON_STOP_MAX: Duration = Duration::from_secs(30);

/// Waits for `stopped` up to `max`; past it, logs and returns so the
/// process exits anyway (everything durable is already on disk).
async fn stop_within(what: &str, max: Duration, stopped: impl std::future::Future<Output = ()>) {
    match tokio::time::timeout(max, stopped).await {
        Ok(()) => tracing::info!(target: LOG_TARGET, "{what} stopped"),
        Err(_) => {
            tracing::warn!(target: LOG_TARGET, "{what} did not stop within {max:?}; exiting with work still running")
        }
    }
}

/// `weft metad`: runs a voter until a signal, or until its raft core dies,
/// which ends the process with [`RestartNeeded`] so a supervisor restarts it.
pub async fn metad(a: DaemonArgs) -> Result<()> {
    if !a.labels.is_empty() {
        anyhow::bail!("--label describes a data node's zone; metad takes none");
    }
    weft_cli::limits::raise_open_file_limit_logged();
    let cancel = CancellationToken::new();
    let mut cfg: weft_metad::MetadConfig = config::load(a.config.as_deref())?;
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = a.data_dir.clone() {
        cfg.data_dir = v;
    }
    if let Some(v) = a.id {
        cfg.id = v;
    }
    if a.advertise.is_some() {
        cfg.advertise = a.advertise.clone();
    }
    let insecure = a.insecure_internal || cfg.insecure_internal;
    cfg.tls = a.internal_tls("metad", cfg.tls.take(), cfg.insecure_internal)?;
    // No certificate means the operator chose plain HTTP (checked above).
    cfg.insecure_internal = cfg.tls.is_none();
    if let Ok(key) = std::env::var("WEFT_MASTER_KEY") {
        cfg.master_key = Some(key);
    }
    if let Ok(token) = std::env::var("WEFT_METRICS_TOKEN") {
        cfg.metrics_token = Some(token);
    }
    if cfg.master_key.is_none() && cfg.master_key_file.is_none() {
        if !insecure {
            anyhow::bail!(
                "metad: no master key to seal access-key secrets with. Make one with \
                 `weft cert master-key --out FILE` and set master_key_file = FILE (the same key on \
                 every voter) or WEFT_MASTER_KEY; --insecure-internal keeps secrets in clear on a bench \
                 (docs/security.md, \"Master key\")"
            );
        }
        tracing::warn!(
            "metad: no master key: access-key secrets are kept in clear (--insecure-internal)"
        );
    }
    let data_dir = cfg.data_dir.clone();
    weft_cli::faults::install_disk(&data_dir)?;
    let h = weft_metad::start(cfg, cancel.clone()).await?;
    println!("metad listening on {}", h.addr());
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!(target: LOG_TARGET, "stopping: finishing requests in flight");
            cancel.cancel();
            stop_within("metad", DAEMON_STOP_MAX, h.stopped()).await;
        }
        fatal = h.fatal() => {
            cancel.cancel();
            if tokio::time::timeout(STOP_AFTER_FATAL, h.stopped()).await.is_err() {
                tracing::warn!(target: LOG_TARGET, "metad did not stop within {STOP_AFTER_FATAL:?}; exiting anyway");
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
    Ok(())
}

/// `weft datad`: runs a data node until a signal.
pub async fn datad(a: DaemonArgs) -> Result<()> {
    weft_cli::limits::raise_open_file_limit_logged();
    let cancel = CancellationToken::new();
    let mut cfg: weft_datad::node::DatadConfig = config::load(a.config.as_deref())?;
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = a.data_dir.clone() {
        cfg.data_dir = v;
    }
    if let Some(v) = a.metad.clone() {
        cfg.metad = v;
    }
    if let Some(v) = a.id {
        cfg.node_id = v;
    }
    if let Some(v) = a.zone.clone() {
        cfg.zone = v;
    }
    // Flags add to (and override) the config file's labels.
    for (k, v) in &a.labels {
        cfg.labels.insert(k.clone(), v.clone());
    }
    if a.advertise.is_some() {
        cfg.advertise = a.advertise.clone();
    }
    cfg.tls = a.internal_tls("datad", cfg.tls.take(), cfg.insecure_internal)?;
    if let Ok(token) = std::env::var("WEFT_METRICS_TOKEN") {
        cfg.metrics_token = Some(token);
    }
    // No certificate means the operator chose plain HTTP (checked above).
    cfg.insecure_internal = cfg.tls.is_none();
    weft_cli::faults::install_disk(&cfg.data_dir)?;
    let h = weft_datad::node::start(cfg, cancel.clone()).await?;
    println!("datad {} listening on {}", h.node_id(), h.addr());
    shutdown_signal().await;
    tracing::info!(target: LOG_TARGET, "stopping: finishing requests in flight");
    cancel.cancel();
    stop_within("datad", DAEMON_STOP_MAX, h.stopped()).await;
    Ok(())
}

/// `weft gateway`: runs an S3 gateway until a signal, then gives requests
/// in flight its shutdown grace. The root key comes from the config file or
/// `WEFT_ROOT_ACCESS_KEY`/`WEFT_ROOT_SECRET_KEY`; there is no flag for it.
pub async fn gateway(a: DaemonArgs) -> Result<()> {
    if !a.labels.is_empty() {
        anyhow::bail!("--label describes a data node's zone; gateway takes none");
    }
    weft_cli::limits::raise_open_file_limit_logged();
    let cancel = CancellationToken::new();
    let mut cfg: weft_gateway::GatewayConfig = config::load(a.config.as_deref())?;
    if let Ok(token) = std::env::var("WEFT_METRICS_TOKEN") {
        cfg.metrics_token = Some(token);
    }
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = a.admin_listen {
        cfg.admin_listen = v;
    }
    if let Some(v) = a.metad.clone() {
        cfg.metad = v;
    }
    if let Some(v) = a.zone.clone() {
        cfg.zone = Some(v);
    }
    cfg.tls = a.internal_tls("gateway", cfg.tls.take(), cfg.insecure_internal)?;
    // No certificate means the operator chose plain HTTP (checked above).
    cfg.insecure_internal = cfg.tls.is_none();
    if let Ok(ak) = std::env::var("WEFT_ROOT_ACCESS_KEY") {
        cfg.root_access_key = Some(ak);
    }
    if let Ok(sk) = std::env::var("WEFT_ROOT_SECRET_KEY") {
        cfg.root_secret_key = Some(sk);
    }
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    let h = weft_gateway::start(cfg, cancel.clone()).await?;
    println!(
        "gateway: S3 on {}, admin API on {}",
        h.s3_addr(),
        h.admin_addr()
    );
    shutdown_signal().await;
    tracing::info!(
        target: LOG_TARGET,
        grace_ms = grace.as_millis() as u64,
        "stopping: no new connections; requests in flight may finish within the grace"
    );
    cancel.cancel();
    // The listener cuts what outlives the grace itself; the margin
    // only turns a bug there into a logged exit instead of a hang.
    stop_within("gateway", grace + DAEMON_STOP_MAX, h.stopped()).await;
    Ok(())
}
