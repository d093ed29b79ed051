//! The leader's lifecycle loop (see `crate::lifecycle`). A pass walks every
//! bucket with rules and the uploads a bounded page per tick (the position
//! is replicated after each tick that moved it, so a new leader resumes
//! the pass); ticks come
//! every second (or every quarter day, if shorter, at least 100 ms) while
//! a pass has pages left, and a new pass starts a quarter day after the
//! previous one began. So a rule fires within a quarter day (plus the pass)
//! of becoming due: within a second or so when a day is one second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weft_common::lifecycle::LifecycleConfig;
use weft_common::rpc::{CommandResult, Refusal};

use super::{ensure_serving_leader, AppState};
use crate::lifecycle::{
    plan_keys, plan_uploads, COMMANDS_PER_TICK, KEYS_PER_TICK, UPLOADS_PER_TICK,
};

/// Time between the starts of two passes for a day of `day_ms`.
pub(crate) fn pass_interval(day_ms: u64) -> Duration {
    Duration::from_millis((day_ms / 4).clamp(100, 6 * 3600 * 1000))
}

/// Time between the ticks of one pass.
fn page_interval(day_ms: u64) -> Duration {
    pass_interval(day_ms).min(Duration::from_secs(1))
}

/// Where the leader's pass stands.
#[derive(Default)]
struct Pass {
    /// Last key fully handled, per bucket still being walked.
    keys: BTreeMap<String, String>,
    /// Buckets whose walk this pass has finished.
    done: std::collections::BTreeSet<String>,
    /// Last upload id handled; `uploads_done` once the walk ended.
    upload: Option<String>,
    uploads_done: bool,
    started: Option<Instant>,
    /// When it started, ms since the epoch (saved with the cursor as is).
    started_ms: u64,
    /// Whether its end was counted in the shared progress.
    counted: bool,
    /// Ticks so far: where each tick starts among the buckets, so one
    /// bucket's backlog cannot starve the rest.
    ticks: usize,
}

impl Pass {
    /// The replicated form of this pass.
    fn cursor(&self) -> weft_common::lifecycle::Cursor {
        weft_common::lifecycle::Cursor {
            pass_started_ms: self.started_ms,
            keys: self.keys.clone(),
            done: self.done.clone(),
            upload: self.upload.clone(),
            uploads_done: self.uploads_done,
        }
    }

    /// A pass resumed from a saved cursor.
    fn resumed(c: weft_common::lifecycle::Cursor) -> Pass {
        let age = crate::server::now_ms().saturating_sub(c.pass_started_ms);
        Pass {
            keys: c.keys,
            done: c.done,
            upload: c.upload,
            uploads_done: c.uploads_done,
            started: Some(
                Instant::now()
                    .checked_sub(Duration::from_millis(age))
                    .unwrap_or_else(Instant::now),
            ),
            started_ms: c.pass_started_ms,
            counted: false,
            ticks: 0,
        }
    }

    /// Whether the walk over buckets' keys moved: what is worth a raft
    /// entry to resume (the uploads' walk is saved along, but a cluster
    /// without lifecycle rules writes no cursor at all).
    fn moved_from(&self, c: &weft_common::lifecycle::Cursor) -> bool {
        self.keys != c.keys || self.done != c.done || self.started_ms != c.pass_started_ms
    }
}

/// `POST /v1/lifecycle/run`: start a pass now on the leader (as
/// `radosgw-admin lc process`); the caller watches the preview empty.
pub(crate) async fn run_now(
    axum::extract::State(s): axum::extract::State<Arc<AppState>>,
) -> Result<axum::Json<weft_common::lifecycle::Passes>, super::ApiError> {
    ensure_serving_leader(&s)?;
    s.lifecycle_kick.notify_one();
    Ok(axum::Json(*s.lifecycle_passes.lock().expect("passes lock")))
}

pub(crate) async fn lifecycle_loop(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let mut pass = Pass::default();
    let mut warned = false;
    // The cursor last saved (or read at the start of this leadership).
    let mut saved: Option<weft_common::lifecycle::Cursor> = None;
    loop {
        let day_ms = {
            let sm = s.sm.clone();
            match weft_common::effects::spawn_blocking(move || sm.lifecycle_day_ms()).await {
                Ok(Ok(Some(d))) => d,
                // Not seeded yet: a config day until the seed commits.
                _ => s.lifecycle_day_ms,
            }
        };
        if day_ms != s.lifecycle_day_ms && !warned {
            warned = true;
            tracing::warn!(
                cluster_day_ms = day_ms,
                config_day_ms = s.lifecycle_day_ms,
                "this metad's lifecycle_day_secs differs from the cluster's, which stays in effect"
            );
        }
        let kicked = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = s.lifecycle_kick.notified() => true,
            _ = tokio::time::sleep(page_interval(day_ms)) => false,
        };
        if ensure_serving_leader(&s).is_err() {
            // A later leadership starts its pass afresh.
            pass = Pass::default();
            saved = None;
            *s.lifecycle_passes.lock().expect("passes lock") = Default::default();
            s.transitions.reset();
            continue;
        }
        if pass.started.is_none() && !kicked {
            // A new leadership: resume the pass the last leader saved.
            let sm = s.sm.clone();
            if let Ok(Ok(Some(c))) =
                weft_common::effects::spawn_blocking(move || sm.lifecycle_cursor()).await
            {
                s.lifecycle_passes.lock().expect("passes lock").started_ms =
                    Some(c.pass_started_ms);
                pass = Pass::resumed(c.clone());
                saved = Some(c);
            }
        }
        let due = pass
            .started
            .is_none_or(|t| t.elapsed() >= pass_interval(day_ms));
        if kicked || (pass.counted && due) || pass.started.is_none() {
            let now_ms = crate::server::now_ms();
            pass = Pass {
                started: Some(Instant::now()),
                started_ms: now_ms,
                ticks: 0,
                ..Pass::default()
            };
            s.lifecycle_passes.lock().expect("passes lock").started_ms = Some(now_ms);
        } else if pass.counted {
            // Done; the next pass starts a quarter day after this one
            // began (rules added meanwhile wait for it, or for a kick).
            continue;
        } else if pass_finished(&s, &pass).await {
            pass.counted = true;
            let mut p = s.lifecycle_passes.lock().expect("passes lock");
            p.finished += 1;
            p.finished_ms = Some(crate::server::now_ms());
            continue;
        }
        if let Err(e) = one_tick(&s, &mut pass, day_ms).await {
            tracing::warn!(error = %e, "lifecycle scan tick failed; retrying next tick");
        }
        // Save the position when it moved: one raft entry per tick at most.
        let walked = !pass.keys.is_empty() || !pass.done.is_empty();
        if saved.as_ref().map_or(walked, |c| pass.moved_from(c)) {
            let cursor = pass.cursor();
            let cmd = weft_common::rpc::Command::SetLifecycleCursor {
                cursor: cursor.clone(),
            };
            match s.writes.write(super::audit::own_request(&s, cmd)).await {
                Ok(_) => saved = Some(cursor),
                Err(e) => {
                    tracing::debug!(error = ?e, "lifecycle cursor not saved; next tick tries again")
                }
            }
        }
    }
}

/// Whether every bucket with rules and the uploads have been walked.
async fn pass_finished(s: &Arc<AppState>, pass: &Pass) -> bool {
    let Ok(buckets) = judged_buckets(s).await else {
        return false;
    };
    pass.uploads_done && buckets.iter().all(|b| pass.done.contains(&b.name))
}

/// The buckets a pass walks: those with lifecycle rules or tiering of
/// their own, and those holding `INTELLIGENT_TIERING` data.
async fn judged_buckets(
    s: &Arc<AppState>,
) -> Result<Vec<weft_common::manifest::BucketInfo>, String> {
    let sm = s.sm.clone();
    weft_common::effects::spawn_blocking(move || {
        let it = sm.buckets_holding(weft_common::lifecycle::tiering::IT_CLASS)?;
        let mut all = sm.buckets()?;
        all.retain(|b| crate::tiering::judged(b, &it));
        Ok::<_, crate::error::MetaError>(all)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Proposes `cmd`; false (and counted) if the proposal failed.
async fn propose(s: &Arc<AppState>, cmd: weft_common::rpc::Command) -> Result<(), String> {
    // A move is a task for a data node, not a command.
    if let weft_common::rpc::Command::Lifecycle {
        bucket,
        key,
        step,
        at_ms,
    } = &cmd
    {
        if step.is_transition() {
            s.transitions.offer(bucket, key, step.clone(), *at_ms);
            return Ok(());
        }
    }
    let what = super::access::command_label(&cmd);
    match s.writes.write(super::audit::own_request(s, cmd)).await {
        Ok(CommandResult::Refused {
            refusal: Refusal::Stale,
        }) => {
            s.metrics.lifecycle_skipped.inc();
        }
        Ok(CommandResult::Refused { refusal }) => {
            s.metrics.lifecycle_failed.inc();
            tracing::debug!(what, ?refusal, "lifecycle action refused");
        }
        Ok(_) => {
            s.metrics.lifecycle_done.inc();
        }
        Err(e) => {
            s.metrics.lifecycle_failed.inc();
            return Err(format!("proposing {what}: {e:?}"));
        }
    };
    Ok(())
}

async fn one_tick(s: &Arc<AppState>, pass: &mut Pass, day_ms: u64) -> Result<(), String> {
    let buckets = judged_buckets(s).await?;
    // Every bucket's rules judge its uploads, walked or not.
    let rules: BTreeMap<String, LifecycleConfig> = buckets
        .iter()
        .filter_map(|b| Some((b.name.clone(), b.lifecycle.clone()?)))
        .collect();
    let mut ruled: Vec<_> = buckets
        .into_iter()
        .filter(|b| !pass.done.contains(&b.name))
        .collect();
    // A window of at most KEYS_PER_TICK buckets, starting further on each
    // tick.
    if !ruled.is_empty() {
        let start = pass.ticks % ruled.len();
        ruled.rotate_left(start);
        ruled.truncate(KEYS_PER_TICK);
    }
    pass.ticks += 1;
    let per_bucket = (KEYS_PER_TICK / ruled.len().max(1)).max(1);
    let now = crate::server::now_ms();
    let mut budget = COMMANDS_PER_TICK;
    for b in &ruled {
        let (sm, bucket, after) = (s.sm.clone(), b.clone(), pass.keys.get(&b.name).cloned());
        // Reading and planning run off the runtime: a key's history may be long.
        let (planned, more) = weft_common::effects::spawn_blocking(move || {
            let (keys, more) = sm.lifecycle_page(&bucket.name, after.as_deref(), per_bucket)?;
            let planned = plan_keys(&bucket, &keys, now, day_ms, || {
                weft_common::VersionId::from_random(weft_common::effects::random())
            });
            Ok::<_, crate::error::MetaError>((planned, more))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        for (key, cmds) in planned {
            // Moves are offered to the transition queue (deduplicated, no
            // raft entry) and stay due until a data node commits them, so
            // they neither spend the budget nor hold the cursor.
            let (moves, cmds): (Vec<_>, Vec<_>) = cmds.into_iter().partition(|c| {
                matches!(c, weft_common::rpc::Command::Lifecycle { step, .. } if step.is_transition())
            });
            for m in moves {
                propose(s, m).await?;
            }
            // The cursor moves past a key only once all its actions were
            // proposed: none is lost to the budget or a failed proposal.
            if cmds.len() > budget {
                if budget == COMMANDS_PER_TICK {
                    // One key with more due than a tick's budget: propose a
                    // budget's worth and judge the key again next tick
                    // (the applied ones are then no longer due).
                    for cmd in cmds.into_iter().take(budget) {
                        propose(s, cmd).await?;
                    }
                }
                return Ok(());
            }
            budget -= cmds.len();
            for cmd in cmds {
                propose(s, cmd).await?;
            }
            pass.keys.insert(b.name.clone(), key);
        }
        if !more {
            pass.done.insert(b.name.clone());
            pass.keys.remove(&b.name);
        }
        if budget == 0 {
            return Ok(());
        }
    }
    if !pass.uploads_done {
        let sm = s.sm.clone();
        let after = pass.upload.clone();
        let uploads = weft_common::effects::spawn_blocking(move || {
            sm.uploads_page(after.as_deref(), UPLOADS_PER_TICK)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        for u in &uploads {
            let cmds = plan_uploads(&rules, std::slice::from_ref(u), now, day_ms);
            if cmds.len() > budget {
                return Ok(());
            }
            budget -= cmds.len();
            for cmd in cmds {
                propose(s, cmd).await?;
            }
            pass.upload = Some(u.upload_id.clone());
        }
        if uploads.len() < UPLOADS_PER_TICK {
            pass.uploads_done = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_start_every_quarter_day_and_pages_come_at_least_every_second() {
        assert_eq!(pass_interval(1_000), Duration::from_millis(250));
        assert_eq!(pass_interval(100), Duration::from_millis(100));
        assert_eq!(pass_interval(86_400_000), Duration::from_secs(6 * 3600));
        assert_eq!(page_interval(86_400_000), Duration::from_secs(1));
        assert_eq!(page_interval(1_000), Duration::from_millis(250));
    }
}
