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
//! A segment fits when it is kept as replicas or small enough to be (small
//! objects stay, as for transitions), or its layout is the class's and its
//! placement rule is the one the class resolves to for it now. The walk's
//! cursor is the leader's memory: a new leader walks again from the first
//! segment.
//!
//! A walk ends a migration only if the class's definition was the same
//! over the whole walk, the walk began an upload age after this leader
//! first saw that definition (so a PUT resolved under the old one has
//! committed or failed before the walk can pass its segments), it found
//! nothing unfit, and no move of the class is queued or running (relabels
//! included). A move into the class planned under an older definition is
//! refused at commit. A gateway whose class map is older than an upload
//! age is the one gap left (docs/storage-classes.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use weft_common::lifecycle::Step;
use weft_common::repair::SegmentRecord;
use weft_common::rpc::Command;
use weft_common::storage_class::{KnownNode, StorageClass};
use weft_common::SegmentId;

use super::{ensure_serving_leader, AppState};
use crate::classes::Migrations;

/// Segments read per tick.
const SEGMENTS_PER_TICK: u32 = 1_000;

/// Whether segment `id` fits `class` as defined now.
pub(crate) fn fits(
    id: SegmentId,
    rec: &SegmentRecord,
    class: &StorageClass,
    residency: Option<&weft_common::residency::Residency>,
    known: &[KnownNode<'_>],
) -> bool {
    crate::transition::segment_fits(
        id,
        rec.layout,
        rec.len,
        rec.placement.as_ref(),
        class,
        residency,
        known,
    )
}

/// The walk in progress.
#[derive(Default)]
struct Walk {
    /// Resume after this segment; `None`: the next tick starts a walk.
    after: Option<SegmentId>,
    /// The definitions being migrated to when this walk began: only a
    /// class whose definition stayed the same over the whole walk can be
    /// found finished by it.
    defs: Migrations,
    /// Classes with a segment found not fitting in this walk.
    unfit: BTreeSet<String>,
    /// When this walk began.
    began: Option<Instant>,
    /// The residency epoch it began under.
    epoch: u64,
}

/// When this leader first saw each migration (with its definition): a walk
/// counts for it only if it began an upload age plus a task lease later,
/// so writes resolved under the old definition have committed (or failed)
/// before the walk can pass them.
type FirstSeen = BTreeMap<String, (StorageClass, Instant)>;

pub(crate) async fn migration_loop(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let mut walk = Walk::default();
    let mut seen = FirstSeen::new();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if ensure_serving_leader(&s).is_err() {
            walk = Walk::default();
            seen.clear();
            continue;
        }
        if let Err(e) = tick(&s, &mut walk, &mut seen).await {
            tracing::warn!(error = %e, "class migration tick failed; retrying");
        }
    }
}

async fn tick(s: &Arc<AppState>, walk: &mut Walk, seen: &mut FirstSeen) -> Result<(), String> {
    let sm = s.sm.clone();
    let (migrations, timers, epoch) = weft_common::effects::spawn_blocking(move || {
        Ok::<_, crate::error::MetaError>((
            sm.class_migrations()?,
            sm.upload_timers()?,
            sm.residency_epoch()?,
        ))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    // A residency change is a new definition for every class: the walk
    // starts over, and writes get an upload age to settle under it.
    if walk.began.is_some() && walk.epoch != epoch {
        *walk = Walk::default();
        seen.clear();
    }
    seen.retain(|name, (def, _)| migrations.get(name) == Some(def));
    for (name, def) in &migrations {
        seen.entry(name.clone())
            .or_insert_with(|| (def.clone(), Instant::now()));
    }
    if migrations.is_empty() {
        *walk = Walk::default();
        return Ok(());
    }
    if walk.after.is_none() && walk.began.is_none() {
        walk.defs = migrations.clone();
        walk.began = Some(Instant::now());
        walk.epoch = epoch;
    }
    let views = super::api::node_views(s)
        .await
        .map_err(|_| "node views".to_string())?;
    let (sm, from) = (s.sm.clone(), walk.after);
    let (page, more) =
        weft_common::effects::spawn_blocking(move || sm.segments_page(from, SEGMENTS_PER_TICK))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    let known = crate::transition::known_nodes(&views);
    let mut offers = vec![];
    // Each bucket's residency, read once per page.
    let mut residencies: BTreeMap<String, Option<weft_common::residency::Residency>> =
        BTreeMap::new();
    for (id, rec) in &page {
        let Some(class) = migrations.get(&rec.class) else {
            continue;
        };
        if !residencies.contains_key(&rec.bucket) {
            let (sm, b) = (s.sm.clone(), rec.bucket.clone());
            let r = weft_common::effects::spawn_blocking(move || sm.bucket(&b))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
                .and_then(|b| b.residency);
            residencies.insert(rec.bucket.clone(), r);
        }
        if !fits(*id, rec, class, residencies[&rec.bucket].as_ref(), &known) {
            offers.push((*id, rec.bucket.clone(), rec.key.clone(), rec.class.clone()));
        }
    }
    walk.after = page.last().map(|(id, _)| *id);
    let now = crate::server::now_ms();
    for (id, bucket, key, class) in offers {
        // The version holding it: current, or in the key's history. A part
        // of an upload in progress has none yet; its completed object is
        // judged by a later walk.
        let (sm, b, k) = (s.sm.clone(), bucket.clone(), key.clone());
        let holder = weft_common::effects::spawn_blocking(move || sm.version_holding(&b, &k, id))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        // An Intelligent-Tiering version in a lower tier is placed by its
        // tier's class, not this one: its next tier move re-places it.
        if let Some((version_id, None)) = holder {
            walk.unfit.insert(class.clone());
            s.transitions
                .offer(&bucket, &key, Step::Migrate { version_id, class }, now);
        }
    }
    if !more {
        // Moves planned under an older definition are refused at commit
        // (`transition::fits_migration`); writes need the upload age.
        let settle = Duration::from_millis(
            timers.map_or(0, |t| t.timers.upload_max_age_ms.max(t.protect_age_ms)),
        );
        let began = walk.began.unwrap_or_else(Instant::now);
        for (name, def) in &migrations {
            let whole_walk = walk.defs.get(name) == Some(def);
            let settled = seen
                .get(name)
                .is_some_and(|(d, at)| d == def && began >= *at + settle);
            if !whole_walk || !settled || walk.unfit.contains(name) || s.transitions.has_class(name)
            {
                continue;
            }
            let cmd = Command::FinishClassMigration {
                class: def.clone(),
                epoch: walk.epoch,
            };
            if let Err(e) = s.writes.write(super::audit::own_request(s, cmd)).await {
                tracing::debug!(error = ?e, class = %name, "class migration not finished yet");
            } else {
                tracing::info!(class = %name, "class migration finished");
            }
        }
        *walk = Walk::default();
    }
    Ok(())
}
