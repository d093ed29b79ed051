//! What runs only while this metad leads: resetting liveness and the
//! planner when leadership changes hands, seeding the cluster's upload
//! timers, and the periodic durability scan.

use std::sync::Arc;
use weft_common::rpc::Command;

use super::api::node_views;
use super::{ensure_serving_leader, ApiError, AppState};

/// Scans the segment index now (waiting for a scan already running) and
/// refreshes the status, the task queue and the metrics.
pub(super) async fn durability_scan(
    s: Arc<AppState>,
) -> Result<weft_common::repair::DurabilityStatus, ApiError> {
    let _scan = s.planner.lock_scan().await;
    s.planner
        .scan_begins_at(s.raft.metrics().borrow().last_applied.map(|l| l.index));
    let views = node_views(&s).await?;
    s.metrics.node_space.clear();
    for state in weft_common::space::SpaceState::ALL {
        let count = views.iter().filter(|v| v.space.state == state).count();
        s.metrics
            .node_space
            .get_or_create(&vec![("state".to_string(), state.name().to_string())])
            .set(count as i64);
    }
    let s2 = s.clone();
    let status =
        weft_common::effects::spawn_blocking(move || -> Result<_, crate::error::MetaError> {
            let config = s2.sm.repair_config()?;
            let mut failed = None;
            let status = s2.planner.scan(&views, config, |visit| {
                if let Err(e) = s2.sm.scan_segments(visit) {
                    failed = Some(e);
                }
            });
            match failed {
                Some(e) => Err(e),
                None => Ok(status),
            }
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    s.metrics.segments.clear();
    for c in &status.classes {
        let labels = |state: &str| {
            vec![
                ("class".to_string(), c.class.clone()),
                ("layout".to_string(), c.layout.clone()),
                ("state".to_string(), state.to_string()),
            ]
        };
        s.metrics
            .segments
            .get_or_create(&labels("full"))
            .set(c.full as i64);
        let degraded: u64 = c.degraded.iter().sum();
        s.metrics
            .segments
            .get_or_create(&labels("degraded"))
            .set(degraded as i64);
        s.metrics
            .segments
            .get_or_create(&labels("unreadable"))
            .set(c.unreadable as i64);
    }
    s.metrics.nodes.clear();
    for n in &status.nodes {
        s.metrics
            .nodes
            .get_or_create(&vec![("state".to_string(), n.state.clone())])
            .inc();
    }
    s.metrics
        .repair_backlog_bytes
        .set(status.backlog_bytes as i64);
    s.metrics
        .repair_tasks_in_flight
        .set(status.tasks_in_flight as i64);
    Ok(status)
}

/// Resets liveness and planning the moment leadership changes hands: a new
/// leader has heard no heartbeats (they went to the old one), so it must
/// count silence from now, not from when it started.
pub(crate) async fn leadership_watch(
    s: Arc<AppState>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut rx = s.raft.metrics();
    let mut leading = false;
    loop {
        let now_leading = {
            let m = rx.borrow_and_update();
            m.state == openraft::ServerState::Leader && m.current_leader == Some(s.id)
        };
        if now_leading != leading {
            leading = now_leading;
            s.planner.reset();
            if leading {
                s.liveness.reset_epoch();
                tracing::info!("leading: liveness reset, durability planner active");
                tokio::spawn(seed_upload_timers(s.clone(), cancel.clone()));
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// Installs this voter's configured storage classes if the cluster has
/// none, retrying while this voter leads; false once it stops leading.
async fn seed_storage_classes(
    s: &Arc<AppState>,
    cancel: &tokio_util::sync::CancellationToken,
) -> bool {
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        if ensure_serving_leader(s).is_err() {
            return false;
        }
        let sm = s.sm.clone();
        if let Ok(Ok((Some(_), Some(_)))) = weft_common::effects::spawn_blocking(move || {
            Ok::<_, crate::error::MetaError>((sm.storage_classes()?, sm.lifecycle_day_ms()?))
        })
        .await
        {
            return true;
        }
        // The lifecycle day with the classes: both are what a new cluster
        // takes from its first leader's config.
        let cmd = super::audit::own_request(
            s,
            Command::Batch {
                commands: vec![
                    Command::SeedLifecycleDay {
                        day_ms: s.lifecycle_day_ms,
                    },
                    Command::SeedStorageClasses {
                        classes: s.storage_classes.clone(),
                    },
                ],
            },
        );
        match s.writes.write(cmd).await {
            Ok(_) => return true,
            Err(e) => tracing::debug!(error = ?e, "seeding the storage classes failed; retrying"),
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
}

/// Installs this voter's configured upload timers as the cluster's if none
/// are set (a new cluster, or one upgraded from when each voter served its
/// own), retrying while this voter leads. If the cluster already has
/// different ones, says so: the replicated pair is what every process uses,
/// and `weft cluster timers` changes it.
async fn seed_upload_timers(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    // Classes first: a gateway that can read the timers (from any voter)
    // then finds the classes committed before them.
    if !seed_storage_classes(&s, &cancel).await {
        return;
    }
    let mine = s.upload_timers;
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        if ensure_serving_leader(&s).is_err() {
            return;
        }
        // A pair this replica has applied is committed: nothing to seed.
        let sm = s.sm.clone();
        if let Ok(Ok(Some(_))) =
            weft_common::effects::spawn_blocking(move || sm.upload_timers()).await
        {
            break;
        }
        let cmd = super::audit::own_request(
            &s,
            Command::SetUploadTimers {
                upload_max_age_ms: Some(mine.upload_max_age_ms),
                gc_grace_ms: Some(mine.gc_grace_ms),
                seed: true,
                at_ms: crate::server::now_ms(),
            },
        );
        match s.writes.write(cmd).await {
            Ok(_) => break,
            Err(e) => tracing::debug!(error = ?e, "seeding the upload timers failed; retrying"),
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
    }
    let sm = s.sm.clone();
    if let Ok(Ok(Some(record))) =
        weft_common::effects::spawn_blocking(move || sm.upload_timers()).await
    {
        let cluster = record.timers;
        if cluster != mine {
            tracing::warn!(
                cluster_upload_max_age_ms = cluster.upload_max_age_ms,
                cluster_gc_grace_ms = cluster.gc_grace_ms,
                config_upload_max_age_ms = mine.upload_max_age_ms,
                config_gc_grace_ms = mine.gc_grace_ms,
                "this metad's configured upload timers differ from the cluster's, which stay in effect; change them with `weft cluster timers --upload-max-age-ms N --gc-grace-ms N`"
            );
        }
    }
}

/// Runs the planner while this metad leads: a scan every interval.
pub(crate) async fn planner_loop(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(s.planner.config().scan_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ensure_serving_leader(&s).is_ok() {
            if let Err(e) = durability_scan(s.clone()).await {
                tracing::warn!(error = %e.1.message, "durability scan failed");
            }
        }
    }
}
