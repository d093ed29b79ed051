//! Class migrations (`weft class set --migrate`): while a class is being
//! migrated, the leader walks the segment index a page per second and
//! offers every version with a segment that does not fit the class's
//! current definition to the transition queue, as a `Migrate` step; data
//! nodes then re-place it (or metad relabels it when its shards already
//! sit on nodes the new rule admits) exactly as for a lifecycle
//! transition. A walk that finds nothing left for a class, with none of
//! its moves queued or running, ends the migration
//! (`FinishClassMigration`).
//!
//! A segment fits when it is kept as replicas (small objects stay, as for
//! transitions), or its layout is the class's and its placement rule is
//! the one the class resolves to for it now. The walk's cursor is the
//! leader's memory: a new leader walks again from the first segment.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use weft_common::lifecycle::Step;
use weft_common::profile::Layout;
use weft_common::repair::SegmentRecord;
use weft_common::rpc::Command;
use weft_common::storage_class::{KnownNode, StorageClass};
use weft_common::topology::NodeAdmin;
use weft_common::SegmentId;

use super::{ensure_serving_leader, AppState};

/// Segments read per tick.
const SEGMENTS_PER_TICK: u32 = 1_000;

/// Whether segment `id` fits `class` as defined now.
pub(crate) fn fits(
    id: SegmentId,
    rec: &SegmentRecord,
    class: &StorageClass,
    known: &[KnownNode<'_>],
) -> bool {
    if matches!(rec.layout, Layout::Replicated { .. }) {
        return true;
    }
    rec.layout == class.layout
        && class
            .resolve(id, class.layout, known)
            .is_ok_and(|rule| rec.placement.as_ref() == Some(&rule))
}

pub(crate) async fn migration_loop(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let mut after: Option<SegmentId> = None;
    // Classes with a segment found not fitting in the current walk.
    let mut unfit: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if ensure_serving_leader(&s).is_err() {
            after = None;
            unfit.clear();
            continue;
        }
        match tick(&s, &mut after, &mut unfit).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "class migration tick failed; retrying"),
        }
    }
}

async fn tick(
    s: &Arc<AppState>,
    after: &mut Option<SegmentId>,
    unfit: &mut BTreeSet<String>,
) -> Result<(), String> {
    let sm = s.sm.clone();
    let migrations = weft_common::effects::spawn_blocking(move || sm.class_migrations())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if migrations.is_empty() {
        *after = None;
        unfit.clear();
        return Ok(());
    }
    let views = super::api::node_views(s)
        .await
        .map_err(|_| "node views".to_string())?;
    let (sm, from) = (s.sm.clone(), *after);
    let (page, more) =
        weft_common::effects::spawn_blocking(move || sm.segments_page(from, SEGMENTS_PER_TICK))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    let known: Vec<KnownNode<'_>> = views
        .iter()
        .filter(|n| n.admin != NodeAdmin::Removed)
        .map(|n| KnownNode {
            zone: &n.info.zone,
            labels: &n.info.labels,
        })
        .collect();
    let mut offers = vec![];
    for (id, rec) in &page {
        let Some(class) = migrations.get(&rec.class) else {
            continue;
        };
        if fits(*id, rec, class, &known) {
            continue;
        }
        unfit.insert(rec.class.clone());
        offers.push((*id, rec.bucket.clone(), rec.key.clone(), rec.class.clone()));
    }
    *after = page.last().map(|(id, _)| *id);
    let now = crate::server::now_ms();
    for (id, bucket, key, class) in offers {
        // The version holding it: current, or in the key's history (a
        // part of an upload in progress has none yet; its completion is
        // found by a later walk).
        let (sm, b, k) = (s.sm.clone(), bucket.clone(), key.clone());
        let holder = weft_common::effects::spawn_blocking(move || sm.version_holding(&b, &k, id))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if let Some(version_id) = holder {
            s.transitions
                .offer(&bucket, &key, Step::Migrate { version_id, class }, now);
        }
    }
    if !more {
        // A whole walk: a class with nothing unfit and no move pending is
        // migrated.
        for (name, def) in &migrations {
            if unfit.contains(name) || s.transitions.has_class(name) {
                continue;
            }
            let cmd = Command::FinishClassMigration { class: def.clone() };
            if let Err(e) = s.writes.write(super::audit::own_request(s, cmd)).await {
                tracing::debug!(error = ?e, class = %name, "class migration not finished yet");
            } else {
                tracing::info!(class = %name, "class migration finished");
            }
        }
        *after = None;
        unfit.clear();
    }
    Ok(())
}
