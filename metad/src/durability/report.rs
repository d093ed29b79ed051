//! The durability status a scan reports (`weft cluster durability`, the
//! metrics): redundancy by class, the repair backlog, the observed repair
//! rate and an estimate of when the backlog is done.

use std::time::{Duration, UNIX_EPOCH};
use tokio::time::Instant;
use weft_common::repair::{ClassStatus, DurabilityStatus, NodeUsage, RepairConfig};
use weft_common::topology::NodeView;

use super::survey::Survey;
use super::PlannerState;

fn now_ms() -> u64 {
    weft_common::effects::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The status of a scan that found `survey`, with the rate of the repairs
/// finished in the last minute; drops older finishes from `st`.
pub(super) fn status(
    st: &mut PlannerState,
    now: Instant,
    config: RepairConfig,
    views: &[NodeView],
    survey: Survey,
) -> DurabilityStatus {
    let classes: Vec<ClassStatus> = survey.classes.into_values().collect();
    let backlog_bytes: u64 = classes.iter().map(|c| c.backlog_bytes).sum();
    let unreadable = classes.iter().any(|c| c.unreadable > 0);
    let degraded = classes.iter().any(|c| c.full < c.segments);
    let state = if unreadable {
        "unreadable"
    } else if degraded {
        "degraded"
    } else {
        "healthy"
    };
    let horizon = Duration::from_secs(60);
    while st
        .finished
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > horizon)
    {
        st.finished.pop_front();
    }
    let recent: u64 = st.finished.iter().map(|(_, b)| *b).sum();
    let window = st
        .finished
        .front()
        .map(|(t, _)| now.duration_since(*t).as_secs_f64().max(1.0))
        .unwrap_or(1.0);
    let recent_rate = (recent as f64 / window) as u64;
    let in_flight = st.tasks.len() as u64;
    let expected_rate = if recent_rate > 0 {
        recent_rate.min(config.rate_bytes_per_sec)
    } else {
        config.rate_bytes_per_sec
    };
    let eta_seconds = if backlog_bytes == 0 {
        Some(0)
    } else if in_flight > 0 && expected_rate > 0 {
        Some(backlog_bytes.div_ceil(expected_rate))
    } else {
        None
    };
    let mut nodes: Vec<NodeUsage> = views
        .iter()
        .map(|v| {
            let (shards, stored) = survey.usage.get(&v.info.id).copied().unwrap_or((0, 0));
            NodeUsage {
                node: v.info.id,
                zone: v.info.zone.clone(),
                state: v.state_name().to_string(),
                liveness: v.state,
                shards,
                stored_bytes: stored,
                capacity_bytes: v.info.capacity_bytes,
            }
        })
        .collect();
    nodes.sort_by_key(|n| n.node);
    DurabilityStatus {
        state: state.to_string(),
        healthy: state == "healthy",
        as_of_ms: now_ms(),
        stale: false,
        stale_reason: None,
        classes,
        backlog_bytes,
        tasks_in_flight: in_flight,
        recent_rate_bytes_per_sec: recent_rate,
        eta_seconds,
        config,
        draining_shards: survey.draining_shards,
        damaged_shards: survey.damaged_shards,
        nodes,
        unreadable_objects: survey.unreadable_objects,
    }
}
