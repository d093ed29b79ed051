//! The audit chain: what an entry holds, how each entry is bound to the one
//! before it, how checkpoints are signed, and the verifier behind
//! `weft audit verify` (docs/audit.md).
//!
//! Entry `n` carries the hash of entry `n - 1`, and its own hash covers its
//! sequence number, that previous hash and its event, so editing, deleting,
//! inserting or reordering any entry breaks the links from that entry on.
//! A hash chain alone proves nothing to someone who can rewrite the whole
//! chain, so the metad leader periodically signs a checkpoint — sequence
//! number and hash of the newest entry — with an Ed25519 key derived from
//! the cluster master key. Whoever trusts the cluster's public key can then
//! check an export offline: the chain up to the last checkpoint is exactly
//! what metad committed.
//!
//! Hashes are over a fixed byte layout (a domain tag, the sequence number
//! big-endian, the previous hash, then the event's JSON with its fields in
//! declaration order); the event refuses unknown fields on decode, so an
//! export cannot carry text the hash does not cover.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The previous hash of the first entry ever written.
pub const GENESIS: [u8; 32] = [0; 32];

const ENTRY_DOMAIN: &[u8] = b"weft-audit-entry-v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"weft-audit-checkpoint-v1\0";
const SIGNING_KEY_LABEL: &[u8] = b"weft audit checkpoint signing key v1";

/// Who asked for a command: the principal a gateway vouches for (an access
/// key, the admin API's authenticated caller) and the process that
/// proposed it, which metad stamps from the caller's certificate (so a
/// process cannot claim another's role).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user behind the request, as the proposing process names it
    /// (`key AKIA…`, `admin-cert ops`); absent for a process's own work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The proposer, stamped by metad from what the caller's connection
    /// proved: its certificate's role and its address (`gateway at
    /// 10.0.0.2`), `plain at …` on a cluster running
    /// `--insecure-internal`, or `metad 1` for a voter's own proposals.
    #[serde(default)]
    pub via: String,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.principal {
            Some(p) if self.via.is_empty() => write!(f, "{p}"),
            Some(p) => write!(f, "{p} via {}", self.via),
            None if self.via.is_empty() => f.write_str("unknown"),
            None => f.write_str(&self.via),
        }
    }
}

/// What kind of event an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An administrative change: keys, buckets, nodes, settings, membership.
    Admin,
    /// An object write or delete (recorded when data-plane auditing is on).
    Data,
    /// A caller that could not prove who it is (bad signature, unknown key,
    /// no or untrusted certificate).
    AuthFailure,
    /// A caller who proved who it is and asked for something its role or
    /// key may not do.
    Denial,
    /// Events lost to the rate limit, counted.
    Dropped,
}

impl EventKind {
    /// The name used in the JSON and in `weft audit tail`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Admin => "admin",
            EventKind::Data => "data",
            EventKind::AuthFailure => "auth_failure",
            EventKind::Denial => "denial",
            EventKind::Dropped => "dropped",
        }
    }
}

/// One audited event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// When, ms since the epoch: the proposer's stamp for commands, the
    /// first occurrence for a batch of denials.
    pub at_ms: u64,
    /// What kind.
    pub kind: EventKind,
    /// Who (see [`Actor`]); for a failed authentication, who it claimed to
    /// be and from where.
    pub actor: String,
    /// What was asked: a command (`create_key`), an S3 operation, or an
    /// internal path.
    pub action: String,
    /// What it was asked of: a bucket, key name, node, or object.
    pub target: String,
    /// `ok`, or why not (`refused: …`, `denied: …`).
    pub outcome: String,
    /// How many identical events this one stands for (denials are batched).
    pub count: u64,
}

/// An entry of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// Hash of entry `seq - 1` (hex), or zeros for the first.
    pub prev: String,
    /// The event.
    pub event: AuditEvent,
    /// This entry's hash (hex): [`entry_hash`] of the above.
    pub hash: String,
}

impl AuditEntry {
    /// The entry following one whose hash is `prev`.
    pub fn chain(seq: u64, prev: &[u8; 32], event: AuditEvent) -> AuditEntry {
        let hash = entry_hash(seq, prev, &event);
        AuditEntry {
            seq,
            prev: hex::encode(prev),
            event,
            hash: hex::encode(hash),
        }
    }
}

/// The hash binding an event to its place in the chain.
pub fn entry_hash(seq: u64, prev: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENTRY_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(serde_json::to_vec(event).expect("an audit event always encodes"));
    h.finalize().into()
}

/// A signed statement that the chain's entry `seq` has hash `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpoint {
    /// The entry covered (and, through the chain, every entry before it).
    pub seq: u64,
    /// That entry's hash (hex).
    pub hash: String,
    /// When the leader signed it, ms since the epoch.
    pub at_ms: u64,
    /// The signing key's public half (hex), so a verifier can say which of
    /// the keys it trusts signed it.
    pub public_key: String,
    /// Ed25519 signature (hex) over the domain tag, `seq`, `hash`, `at_ms`.
    pub signature: String,
}

fn checkpoint_message(seq: u64, hash: &[u8; 32], at_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

/// The checkpoint signing key, derived from the cluster master key (so
/// there is no second secret to distribute, back up and rotate).
pub struct CheckpointSigner {
    pair: ring::signature::Ed25519KeyPair,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointSigner({})", self.public_key_hex())
    }
}

impl CheckpointSigner {
    /// The signer for a 32-byte master key.
    pub fn from_master_key(master: &[u8]) -> CheckpointSigner {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(master).expect("HMAC takes any key");
        mac.update(SIGNING_KEY_LABEL);
        let seed = mac.finalize().into_bytes();
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("any 32 bytes are an Ed25519 seed");
        CheckpointSigner { pair }
    }

    /// The public key (hex), which `weft audit verify` trusts.
    pub fn public_key_hex(&self) -> String {
        use ring::signature::KeyPair;
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Signs entry `seq` with hash `hash`.
    pub fn sign(&self, seq: u64, hash: &[u8; 32], at_ms: u64) -> AuditCheckpoint {
        let sig = self.pair.sign(&checkpoint_message(seq, hash, at_ms));
        AuditCheckpoint {
            seq,
            hash: hex::encode(hash),
            at_ms,
            public_key: self.public_key_hex(),
            signature: hex::encode(sig.as_ref()),
        }
    }
}

/// The hash in an entry or checkpoint, as bytes.
pub fn parse_hash(hex_text: &str) -> Option<[u8; 32]> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

/// An exported chain: everything `weft audit verify FILE` needs except the
/// trusted public keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditExport {
    /// Entries before the first one here were pruned; this is the last
    /// pruned entry's sequence number and hash, which a kept checkpoint
    /// vouches for. `None` when the export starts at entry 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<(u64, String)>,
    /// The entries, in order.
    pub entries: Vec<AuditEntry>,
    /// Checkpoints, in order.
    pub checkpoints: Vec<AuditCheckpoint>,
}

/// The chain's state, as metad answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditInfo {
    /// Newest entry (0 when empty).
    pub head: u64,
    /// Its hash (hex; zeros when empty).
    pub head_hash: String,
    /// Last pruned entry and its hash, if any were pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<(u64, String)>,
    /// Newest entry a checkpoint covers (0 if none).
    pub checkpointed_through: u64,
    /// Whether object writes and deletes are recorded.
    pub data_plane: bool,
    /// Public keys (hex) checkpoints are signed with: the current master
    /// key's first, then those of previous master keys. Empty on a cluster
    /// without a master key (`--insecure-internal`), which signs nothing.
    pub public_keys: Vec<String>,
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// First entry checked (1, or the one after the prune anchor).
    pub first: u64,
    /// Last entry checked (`first - 1` when there are none).
    pub last: u64,
    /// Entries checked.
    pub entries: u64,
    /// Newest entry vouched for by a valid checkpoint (0 if none).
    pub checkpointed_through: u64,
    /// Entries after the newest checkpoint: linked, but not yet signed.
    pub unsigned_tail: u64,
}

/// The first thing wrong with a chain, naming the entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The entry's contents no longer match its hash.
    #[error("entry {seq} (position {position}) was altered: its contents do not match its hash")]
    Altered {
        /// Sequence number it carries.
        seq: u64,
        /// 1-based position in the file.
        position: usize,
    },
    /// Entries between two neighbours are gone.
    #[error("entry {expected} is missing: entry {found} follows entry {after}")]
    Missing {
        /// The first absent sequence number.
        expected: u64,
        /// The entry before the gap.
        after: u64,
        /// The entry after it.
        found: u64,
    },
    /// An entry sits out of order (or twice).
    #[error("entry {found} is out of order: expected entry {expected} at position {position}")]
    Reordered {
        /// Expected sequence number.
        expected: u64,
        /// The one found.
        found: u64,
        /// 1-based position in the file.
        position: usize,
    },
    /// The entry does not link to the one before it: something was
    /// inserted, or the one before was replaced.
    #[error("entry {seq} does not follow entry {before}: its previous hash differs (an entry was inserted or replaced there)")]
    Unlinked {
        /// The entry whose `prev` is wrong.
        seq: u64,
        /// The entry before it.
        before: u64,
    },
    /// A checkpoint's signature does not verify under any trusted key.
    #[error("checkpoint for entry {seq} is forged: its signature does not verify under {why}")]
    ForgedCheckpoint {
        /// The entry it claims to cover.
        seq: u64,
        /// Which keys were tried.
        why: String,
    },
    /// A validly signed checkpoint names a different hash than the chain
    /// holds: the chain was rewritten.
    #[error("entry {seq} differs from what the checkpoint signed at {at_ms} ms vouches for: the chain was rewritten up to there")]
    Rewritten {
        /// The entry.
        seq: u64,
        /// When the checkpoint was signed.
        at_ms: u64,
    },
    /// A checkpoint names an entry past the end of the chain: entries
    /// after it were deleted (truncation).
    #[error("the chain ends at entry {last} but a checkpoint vouches for entry {seq}: entries {from} to {seq} were removed", from = last.saturating_add(1))]
    Truncated {
        /// Last entry present.
        last: u64,
        /// Entry the checkpoint covers.
        seq: u64,
    },
    /// The export starts after a prune anchor no checkpoint signs.
    #[error("the chain starts after entry {seq}, but no signed checkpoint vouches for entry {seq}: entries before it may have been cut off")]
    UnsignedAnchor {
        /// The anchor's entry.
        seq: u64,
    },
    /// Something other than the chain's bytes is wrong (bad hex, an export
    /// starting after entry 1 without an anchor).
    #[error("{0}")]
    Malformed(String),
}

/// Verifies an exported chain: every link, every hash, and every
/// checkpoint against `trusted` public keys (hex). An empty `trusted`
/// checks links and hashes only and says so in the caller's output; a
/// chain is then only as good as the file it came in.
pub fn verify(export: &AuditExport, trusted: &[String]) -> Result<Verified, ChainError> {
    let (mut expected, mut prev) = match &export.anchor {
        None => (1, GENESIS),
        Some((seq, hash)) => (
            seq.checked_add(1).ok_or_else(|| {
                ChainError::Malformed(format!("anchor entry {seq} is past the end"))
            })?,
            parse_hash(hash)
                .ok_or_else(|| ChainError::Malformed(format!("anchor hash {hash:?} is not hex")))?,
        ),
    };
    let first = expected;
    let mut hashes: std::collections::HashMap<u64, [u8; 32]> = Default::default();
    if let Some((seq, _)) = &export.anchor {
        hashes.insert(*seq, prev);
    }
    for (i, e) in export.entries.iter().enumerate() {
        let position = i + 1;
        if e.seq != expected {
            if e.seq > expected && !hashes.contains_key(&e.seq) {
                // A later entry where the next one belongs: a gap, unless
                // the missing one turns up later (then it was moved).
                let moved = export.entries[i..].iter().any(|x| x.seq == expected);
                if moved {
                    return Err(ChainError::Reordered {
                        expected,
                        found: e.seq,
                        position,
                    });
                }
                return Err(ChainError::Missing {
                    expected,
                    after: expected - 1,
                    found: e.seq,
                });
            }
            return Err(ChainError::Reordered {
                expected,
                found: e.seq,
                position,
            });
        }
        let own = parse_hash(&e.hash)
            .ok_or_else(|| ChainError::Malformed(format!("entry {}: hash is not hex", e.seq)))?;
        let claimed_prev = parse_hash(&e.prev).ok_or_else(|| {
            ChainError::Malformed(format!("entry {}: previous hash is not hex", e.seq))
        })?;
        if entry_hash(e.seq, &claimed_prev, &e.event) != own {
            return Err(ChainError::Altered {
                seq: e.seq,
                position,
            });
        }
        if claimed_prev != prev {
            return Err(ChainError::Unlinked {
                seq: e.seq,
                before: e.seq - 1,
            });
        }
        hashes.insert(e.seq, own);
        prev = own;
        expected = expected.checked_add(1).ok_or_else(|| {
            ChainError::Malformed(format!("entry {} is the last a chain can hold", e.seq))
        })?;
    }
    let last = expected - 1;
    let mut checkpointed_through = 0;
    for c in &export.checkpoints {
        check_signature(c, trusted)?;
        if c.seq > last {
            return Err(ChainError::Truncated { last, seq: c.seq });
        }
        let signed = parse_hash(&c.hash).ok_or_else(|| {
            ChainError::Malformed(format!("checkpoint for entry {}: hash is not hex", c.seq))
        })?;
        match hashes.get(&c.seq) {
            Some(h) if *h == signed => checkpointed_through = checkpointed_through.max(c.seq),
            Some(_) => {
                return Err(ChainError::Rewritten {
                    seq: c.seq,
                    at_ms: c.at_ms,
                })
            }
            // Covers a pruned entry this export does not hold: nothing to
            // compare, the signature was still checked.
            None => {}
        }
    }
    // A chain pruned to an anchor is provable only from a signed
    // checkpoint of exactly that entry (metad prunes only to one):
    // otherwise entries could have been cut from the front.
    if let Some((seq, _)) = &export.anchor {
        let signed = export.checkpoints.iter().any(|c| c.seq == *seq);
        if !signed {
            return Err(ChainError::UnsignedAnchor { seq: *seq });
        }
    }
    let entries = last + 1 - first;
    Ok(Verified {
        first,
        last,
        entries,
        checkpointed_through,
        unsigned_tail: last.saturating_sub(checkpointed_through.max(first - 1)),
    })
}

fn check_signature(c: &AuditCheckpoint, trusted: &[String]) -> Result<(), ChainError> {
    let forged = |why: String| ChainError::ForgedCheckpoint { seq: c.seq, why };
    // Without trusted keys, the key the checkpoint names: that still
    // catches signed fields changed after signing.
    if !trusted.is_empty() && !trusted.contains(&c.public_key) {
        return Err(forged(format!(
            "the trusted keys (it names key {}, which is not one of them)",
            c.public_key
        )));
    }
    let keys = [&c.public_key];
    let hash = parse_hash(&c.hash).ok_or_else(|| forged("any key: its hash is not hex".into()))?;
    let sig = hex::decode(&c.signature).map_err(|_| forged("any key: not hex".into()))?;
    let message = checkpoint_message(c.seq, &hash, c.at_ms);
    for k in keys {
        let Ok(public) = hex::decode(k) else { continue };
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
        if key.verify(&message, &sig).is_ok() {
            return Ok(());
        }
    }
    Err(forged(format!("key {}", c.public_key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            at_ms: 1_000 + i,
            kind: EventKind::Admin,
            actor: "admin-cert ops via gateway gw-1".into(),
            action: "create_key".into(),
            target: format!("key k{i}"),
            outcome: "ok".into(),
            count: 1,
        }
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|i| {
                let e = AuditEntry::chain(i, &prev, event(i));
                prev = parse_hash(&e.hash).unwrap();
                e
            })
            .collect()
    }

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_master_key(&[7; 32])
    }

    fn export(n: u64, checkpoint_at: u64) -> (AuditExport, Vec<String>) {
        let entries = chain(n);
        let s = signer();
        let h = parse_hash(&entries[checkpoint_at as usize - 1].hash).unwrap();
        let cp = s.sign(checkpoint_at, &h, 5_000);
        (
            AuditExport {
                anchor: None,
                entries,
                checkpoints: vec![cp],
            },
            vec![s.public_key_hex()],
        )
    }

    #[test]
    fn an_intact_chain_verifies_with_its_checkpoint() {
        let (x, keys) = export(10, 8);
        let v = verify(&x, &keys).unwrap();
        assert_eq!(
            v,
            Verified {
                first: 1,
                last: 10,
                entries: 10,
                checkpointed_through: 8,
                unsigned_tail: 2
            }
        );
    }

    #[test]
    fn an_edited_entry_is_named() {
        let (mut x, keys) = export(10, 8);
        x.entries[4].event.outcome = "refused: nothing".into();
        assert_eq!(
            verify(&x, &keys),
            Err(ChainError::Altered {
                seq: 5,
                position: 5
            })
        );
    }

    #[test]
    fn an_edited_entry_with_its_hash_recomputed_breaks_the_next_link() {
        let (mut x, keys) = export(10, 8);
        let prev = parse_hash(&x.entries[3].hash).unwrap();
        let mut ev = x.entries[4].event.clone();
        ev.actor = "someone else".into();
        x.entries[4] = AuditEntry::chain(5, &prev, ev);
        assert_eq!(
            verify(&x, &keys),
            Err(ChainError::Unlinked { seq: 6, before: 5 })
        );
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let (mut x, keys) = export(10, 8);
        x.entries.remove(6);
        assert_eq!(
            verify(&x, &keys),
            Err(ChainError::Missing {
                expected: 7,
                after: 6,
                found: 8
            })
        );
    }

    #[test]
    fn swapped_entries_are_named() {
        let (mut x, keys) = export(10, 8);
        x.entries.swap(2, 3);
        assert_eq!(
            verify(&x, &keys),
            Err(ChainError::Reordered {
                expected: 3,
                found: 4,
                position: 3
            })
        );
    }

    #[test]
    fn an_inserted_entry_is_named() {
        let (mut x, keys) = export(10, 8);
        // A forger renumbers everything after the insert so sequence
        // numbers stay contiguous; the link at the insert still breaks.
        let mut forged = x.entries[..3].to_vec();
        forged.push(AuditEntry::chain(4, &[9; 32], event(99)));
        for e in &x.entries[3..] {
            let mut e = e.clone();
            e.seq += 1;
            forged.push(e);
        }
        x.entries = forged;
        assert_eq!(
            verify(&x, &keys),
            Err(ChainError::Unlinked { seq: 4, before: 3 })
        );
    }

    #[test]
    fn a_truncated_chain_is_caught_by_its_checkpoint() {
        let (mut x, keys) = export(10, 8);
        x.entries.truncate(6);
        assert_eq!(
            verify(&x, &keys),
            Err(ChainError::Truncated { last: 6, seq: 8 })
        );
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_its_signed_checkpoint() {
        let (mut x, keys) = export(10, 8);
        // Rebuild the whole chain with one event changed: every link holds,
        // but the signed hash of entry 8 no longer matches.
        let mut prev = GENESIS;
        for e in &mut x.entries {
            let mut ev = e.event.clone();
            if e.seq == 2 {
                ev.target = "key other".into();
            }
            *e = AuditEntry::chain(e.seq, &prev, ev);
            prev = parse_hash(&e.hash).unwrap();
        }
        assert_eq!(
            verify(&x, &keys),
            Err(ChainError::Rewritten {
                seq: 8,
                at_ms: 5_000
            })
        );
    }

    #[test]
    fn a_forged_checkpoint_is_detected() {
        let (x, keys) = export(10, 8);
        // Signed by another key that the export names as its own.
        let mut other = x.clone();
        let h = parse_hash(&other.entries[9].hash).unwrap();
        other.checkpoints = vec![CheckpointSigner::from_master_key(&[8; 32]).sign(10, &h, 6_000)];
        assert!(matches!(
            verify(&other, &keys),
            Err(ChainError::ForgedCheckpoint { seq: 10, .. })
        ));
        // The right key named, but the signed fields changed.
        let mut moved = x.clone();
        moved.checkpoints[0].at_ms += 1;
        assert!(matches!(
            verify(&moved, &keys),
            Err(ChainError::ForgedCheckpoint { seq: 8, .. })
        ));
        // Without trusted keys the self-named key is used: still caught
        // when the fields do not match the signature.
        assert!(matches!(
            verify(&moved, &[]),
            Err(ChainError::ForgedCheckpoint { seq: 8, .. })
        ));
    }

    #[test]
    fn a_field_the_hash_does_not_cover_is_refused_on_decode() {
        let (x, _) = export(2, 2);
        let mut json = serde_json::to_value(&x).unwrap();
        json["entries"][0]["event"]["note"] = serde_json::json!("added");
        assert!(serde_json::from_value::<AuditExport>(json).is_err());
    }

    #[test]
    fn an_export_from_after_a_prune_verifies_from_its_anchor() {
        let (x, keys) = export(10, 4);
        let anchor = (4, x.entries[3].hash.clone());
        let pruned = AuditExport {
            anchor: Some(anchor),
            entries: x.entries[4..].to_vec(),
            checkpoints: x.checkpoints.clone(),
        };
        let v = verify(&pruned, &keys).unwrap();
        assert_eq!(v.entries, 6);
        assert_eq!((v.first, v.last), (5, 10));
        assert_eq!(v.checkpointed_through, 4);
        // An anchor no checkpoint signs: the front may have been cut.
        let mut cut_front = pruned.clone();
        cut_front.anchor = Some((6, x.entries[5].hash.clone()));
        cut_front.entries.drain(..2);
        assert_eq!(
            verify(&cut_front, &keys),
            Err(ChainError::UnsignedAnchor { seq: 6 })
        );
        let mut cut = pruned.clone();
        cut.entries.remove(0);
        assert!(matches!(
            verify(&cut, &keys),
            Err(ChainError::Missing { expected: 5, .. })
        ));
    }

    #[test]
    fn the_signing_key_depends_on_the_master_key_only() {
        assert_eq!(signer().public_key_hex(), signer().public_key_hex());
        assert_ne!(
            signer().public_key_hex(),
            CheckpointSigner::from_master_key(&[8; 32]).public_key_hex()
        );
    }
}
