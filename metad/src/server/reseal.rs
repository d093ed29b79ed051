//! Reseals access-key secrets under the current master key.
//!
//! After a rotation the secrets sealed under the previous key must be
//! sealed again before that key can be retired, and a cluster upgraded from
//! before sealing holds secrets in clear. The leader does both, a bounded
//! batch per tick, each key with a compare-and-set command
//! ([`Command::ResealKey`]) so a key deleted or re-created meanwhile is left
//! alone. `weft_metad_secrets{sealing="previous"}` and `{sealing="clear"}`
//! reach 0 when it is done (docs/security.md, "Master key").

use std::sync::Arc;

use weft_common::rpc::Command;

use super::audit::own_request;
use super::{ensure_serving_leader, AppState};
use crate::seal::{digest_hex, is_sealed, Sealer};

/// Keys resealed per tick: a bounded burst of raft commands.
const PER_TICK: usize = 64;
/// Time between passes.
const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

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

/// One pass: counts every key's sealing and proposes reseals for at most
/// [`PER_TICK`] of those not under the current key; the number of secrets
/// no configured master key opens.
async fn pass(s: &Arc<AppState>, sealer: &Sealer) -> i64 {
    let sm = s.sm.clone();
    let keys = match weft_common::effects::spawn_blocking(move || sm.keys()).await {
        Ok(Ok(keys)) => keys,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reseal: reading the keys failed");
            return 0;
        }
        Err(e) => {
            tracing::warn!(error = %e, "reseal: the read task failed");
            return 0;
        }
    };
    let mut counts: std::collections::BTreeMap<&'static str, i64> =
        ["current", "previous", "clear", "unreadable"]
            .into_iter()
            .map(|k| (k, 0))
            .collect();
    let mut proposed = 0;
    for key in &keys {
        let mut how = sealing(sealer, &key.access_key, &key.secret_key);
        if matches!(how, "previous" | "clear") && proposed < PER_TICK && !key.secret_key.is_empty()
        {
            let plain = if how == "clear" {
                key.secret_key.clone()
            } else {
                match sealer.unseal(&key.access_key, &key.secret_key) {
                    Ok(p) => p,
                    Err(_) => continue,
                }
            };
            proposed += 1;
            let cmd = own_request(
                s,
                Command::ResealKey {
                    access_key: key.access_key.clone(),
                    from_sha256: digest_hex(&key.secret_key),
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
    counts["unreadable"]
}

/// Reseals, while this voter leads, every secret not sealed under the
/// current master key.
pub(crate) async fn reseal_loop(s: Arc<AppState>, cancel: tokio_util::sync::CancellationToken) {
    let Some(sealer) = s.sealer.clone() else {
        return;
    };
    let mut unreadable = 0;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if ensure_serving_leader(&s).is_err() {
            continue;
        }
        let now = pass(&s, &sealer).await;
        if now != unreadable && now > 0 {
            tracing::warn!(
                secrets = now,
                "secrets sealed under a master key this metad is not configured with: add that key to previous_master_key_files (docs/security.md, \"Master key\")"
            );
        }
        unreadable = now;
    }
}
