//! Reseals access-key secrets under the current master key.
//!
//! After a rotation the secrets sealed under the previous key must be
//! sealed again before that key can be retired, and a cluster upgraded from
//! before sealing holds secrets in clear. The leader does both, a bounded
//! batch per tick, each key with a compare-and-set command
//! ([`Command::ResealKey`]) so a key deleted or re-created meanwhile is left
//! alone. `weft_metad_secrets{sealing="previous"}` and `{sealing="clear"}`
//! reach 0 when it is done (docs/security.md, "Master key").
//!
//! It reseals only while every voter's current master key is the leader's
//! (each answers `GET /v1/master-keys`): a rotation done out of order, or
//! half done, would otherwise move every secret under a key some voter
//! cannot open, or move them back and forth as leadership changes hands.
//! A voter too old to answer holds it back too, so no voter meets a
//! command it cannot read.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use weft_common::rpc::Command;

use super::audit::own_request;
use super::{ensure_serving_leader, AppState};
use crate::seal::{is_sealed, Sealer};

/// Keys resealed per tick: a bounded burst of raft commands.
const PER_TICK: usize = 64;
/// Time between passes.
const EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a voter has to say which keys it holds.
const ASK_VOTER: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /v1/master-keys`: the ids (public: a digest prefix) of the master
/// keys this voter holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MasterKeys {
    /// The key new secrets are sealed under; `None` without sealing.
    pub current: Option<String>,
    /// The earlier keys it still opens.
    pub previous: Vec<String>,
}

/// `GET /v1/master-keys` (voters only).
pub(crate) async fn master_keys(State(s): State<Arc<AppState>>) -> Json<MasterKeys> {
    Json(match &s.sealer {
        Some(sealer) => MasterKeys {
            current: Some(sealer.current_id().to_string()),
            previous: sealer.previous_ids(),
        },
        None => MasterKeys::default(),
    })
}

/// `None` when every other voter's current key is `current`; otherwise
/// why not.
async fn voters_disagree(s: &Arc<AppState>, current: &str) -> Option<String> {
    let voters: Vec<(u64, String)> = {
        let m = s.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != s.id)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    };
    for (id, addr) in voters {
        let req = match reqwest::Client::new()
            .get(format!("http://{addr}/v1/master-keys"))
            .timeout(ASK_VOTER)
            .build()
        {
            Ok(r) => r,
            Err(e) => return Some(format!("voter {id}: {e}")),
        };
        let answer = match s.peers.execute(req).await {
            Ok(r) if r.status().is_success() => r.json::<MasterKeys>().await.ok(),
            Ok(r) => return Some(format!("voter {id} answered {}", r.status())),
            Err(e) => return Some(format!("voter {id}: {e}")),
        };
        match answer {
            Some(k) if k.current.as_deref() == Some(current) => {}
            Some(k) => {
                return Some(format!(
                    "voter {id} seals under {} (this leader under {current})",
                    k.current.as_deref().unwrap_or("no key")
                ))
            }
            None => return Some(format!("voter {id} sent an unreadable answer")),
        }
    }
    None
}

/// How a stored secret is kept, as the metric labels it.
fn sealing(sealer: &Sealer, access_key: &str, stored: &str) -> &'static str {
    if !is_sealed(stored) {
        "clear"
    } else if !sealer.is_stale(stored) {
        "current"
    } else if sealer.unseal(access_key, stored).is_ok() {
        "previous"
    } else {
        "unreadable"
    }
}

/// What one pass saw.
#[derive(Default, PartialEq, Eq)]
struct Pass {
    unreadable: i64,
    /// Why resealing waited, if it did.
    waiting: Option<String>,
}

/// One pass: counts every key's sealing and, when every voter seals under
/// this leader's key, proposes reseals for at most [`PER_TICK`] of those
/// not under it.
async fn pass(s: &Arc<AppState>, sealer: &Sealer) -> Pass {
    let sm = s.sm.clone();
    let keys = match weft_common::effects::spawn_blocking(move || sm.keys()).await {
        Ok(Ok(keys)) => keys,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reseal: reading the keys failed");
            return Pass::default();
        }
        Err(e) => {
            tracing::warn!(error = %e, "reseal: the read task failed");
            return Pass::default();
        }
    };
    let mut counts: std::collections::BTreeMap<&'static str, i64> =
        ["current", "previous", "clear", "unreadable"]
            .into_iter()
            .map(|k| (k, 0))
            .collect();
    let to_do = keys.iter().any(|k| {
        matches!(
            sealing(sealer, &k.access_key, &k.secret_key),
            "previous" | "clear"
        )
    });
    let waiting = if to_do {
        voters_disagree(s, sealer.current_id()).await
    } else {
        None
    };
    let mut proposed = 0;
    for key in &keys {
        let mut how = sealing(sealer, &key.access_key, &key.secret_key);
        if waiting.is_none()
            && matches!(how, "previous" | "clear")
            && proposed < PER_TICK
            && !key.secret_key.is_empty()
        {
            let (plain, from) = if how == "clear" {
                (key.secret_key.clone(), None)
            } else {
                match sealer.unseal(&key.access_key, &key.secret_key) {
                    Ok(p) => (p, Some(key.secret_key.clone())),
                    Err(_) => continue,
                }
            };
            proposed += 1;
            let cmd = own_request(
                s,
                Command::ResealKey {
                    access_key: key.access_key.clone(),
                    created_ms: key.created_ms,
                    from,
                    sealed: sealer.seal(&key.access_key, &plain),
                },
            );
            match s.writes.write(cmd).await {
                Ok(weft_common::rpc::CommandResult::Done) => how = "current",
                Ok(other) => {
                    tracing::debug!(key = %key.access_key, result = ?other, "reseal refused (the key changed meanwhile)")
                }
                Err(e) => {
                    tracing::debug!(key = %key.access_key, error = ?e, "reseal not committed; the next pass tries again")
                }
            }
        }
        *counts.entry(how).or_default() += 1;
    }
    for (how, n) in &counts {
        s.metrics
            .secrets
            .get_or_create(&vec![("sealing".to_string(), how.to_string())])
            .set(*n);
    }
    s.metrics.reseal_waiting.set(i64::from(waiting.is_some()));
    Pass {
        unreadable: counts["unreadable"],
        waiting,
    }
}

/// Reseals, while this voter leads, every secret not sealed under the
/// current master key.
pub(crate) async fn reseal_loop(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let Some(sealer) = s.sealer.clone() else {
        return;
    };
    let mut last = Pass::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ensure_serving_leader(&s).is_err() {
            // The gauges are the leader's: a former leader's would go stale.
            s.metrics.secrets.clear();
            s.metrics.reseal_waiting.set(0);
            continue;
        }
        let now = pass(&s, &sealer).await;
        if now.unreadable != last.unreadable && now.unreadable > 0 {
            tracing::warn!(
                secrets = now.unreadable,
                "secrets sealed under a master key this metad is not configured with: add that key to previous_master_key_files (docs/security.md, \"Master key\")"
            );
        }
        if now.waiting != last.waiting {
            if let Some(why) = &now.waiting {
                tracing::warn!(%why, "resealing secrets waits until every metad voter seals under this leader's master key (docs/security.md, \"Master key\")");
            }
        }
        last = now;
    }
}
