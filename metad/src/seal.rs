//! Access-key secrets sealed at rest under the cluster master key.
//!
//! The leader seals a new key's secret before the command enters the raft
//! log, so the log, the state database, snapshots and backups hold only
//! sealed secrets; it unseals one only to answer a gateway, which checks
//! SigV4 signatures with it (s3s derives each request's signing key from
//! the secret itself). Sealing is AES-256-GCM (ring) with a random 96-bit
//! nonce and the access key id as associated data, so a sealed secret
//! cannot be moved to another key record.
//!
//! A sealed secret reads `weft-sealed:v1:<key id>:<base64url(nonce ‖
//! ciphertext ‖ tag)>`; the key id (the first 8 bytes of the master key's
//! SHA-256, in hex) says which master key sealed it, so old keys can be
//! kept for unsealing during a rotation (docs/security.md, "Master key").

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Digest;
use std::path::{Path, PathBuf};

const PREFIX: &str = "weft-sealed:v1:";

/// Why sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A master key file could not be read or does not hold a key.
    #[error("master key {source_name}: {why}")]
    BadKey {
        /// The file (or the variable) it came from.
        source_name: String,
        /// What is wrong.
        why: String,
    },
    /// The secret was sealed under a master key this voter does not have.
    #[error("secret sealed under master key {0}, which this metad is not configured with: add it to previous_master_key_files (docs/security.md, \"Master key\")")]
    UnknownKey(String),
    /// The sealed text is damaged or belongs to another key record.
    #[error("sealed secret does not open: damaged, or moved from another key record")]
    Damaged,
}

/// One master key.
struct MasterKey {
    id: String,
    key: LessSafeKey,
    /// The audit checkpoint key derived from it.
    signer: weft_common::audit::CheckpointSigner,
}

impl MasterKey {
    fn parse(text: &str, source_name: &str) -> Result<MasterKey, SealError> {
        let bad = |why: &str| SealError::BadKey {
            source_name: source_name.to_string(),
            why: why.to_string(),
        };
        let bytes = hex::decode(text.trim())
            .map_err(|_| bad("not hex: expected 64 hex digits (32 random bytes), e.g. from `weft cert master-key`"))?;
        if bytes.len() != 32 {
            return Err(bad("expected 64 hex digits (32 bytes)"));
        }
        let id = hex::encode(&sha2::Sha256::digest(&bytes)[..8]);
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad("unusable key"))?;
        Ok(MasterKey {
            id,
            key: LessSafeKey::new(key),
            signer: weft_common::audit::CheckpointSigner::from_master_key(&bytes),
        })
    }
}

/// The master key secrets are sealed under, and earlier ones still read.
pub struct Sealer {
    current: MasterKey,
    previous: Vec<MasterKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn read_key(path: &Path) -> Result<MasterKey, SealError> {
    let text = std::fs::read_to_string(path).map_err(|e| SealError::BadKey {
        source_name: path.display().to_string(),
        why: e.to_string(),
    })?;
    MasterKey::parse(&text, &path.display().to_string())
}

impl Sealer {
    /// The current key from `current` (hex text, e.g. `WEFT_MASTER_KEY`) or
    /// from `current_file`, and the previous ones from their files.
    pub fn load(
        current: Option<&str>,
        current_file: Option<&Path>,
        previous_files: &[PathBuf],
    ) -> Result<Option<Sealer>, SealError> {
        let current = match (current, current_file) {
            (Some(text), _) => MasterKey::parse(text, "WEFT_MASTER_KEY")?,
            (None, Some(path)) => read_key(path)?,
            (None, None) => return Ok(None),
        };
        let previous = previous_files
            .iter()
            .map(|p| read_key(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Sealer {
            current,
            previous,
            rng: SystemRandom::new(),
        }))
    }

    /// The current master key's id.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The ids of the earlier keys it still opens.
    pub fn previous_ids(&self) -> Vec<String> {
        self.previous.iter().map(|k| k.id.clone()).collect()
    }

    /// Signs audit checkpoints with the key derived from the current master
    /// key.
    pub fn checkpoint_signer(&self) -> &weft_common::audit::CheckpointSigner {
        &self.current.signer
    }

    /// The checkpoint public keys of every master key held, current first:
    /// a checkpoint signed before a rotation still verifies.
    pub fn audit_public_keys(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.signer.public_key_hex())
            .collect()
    }

    /// Seals `secret` for the key record `access_key`.
    pub fn seal(&self, access_key: &str, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut buf = secret.as_bytes().to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(access_key.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seals any length a secret has");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!(
            "{PREFIX}{}:{}",
            self.current.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// Opens what [`seal`](Self::seal) made for `access_key`.
    pub fn unseal(&self, access_key: &str, sealed: &str) -> Result<String, SealError> {
        let rest = sealed.strip_prefix(PREFIX).ok_or(SealError::Damaged)?;
        let (id, body) = rest.split_once(':').ok_or(SealError::Damaged)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Damaged)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Damaged);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let mut buf = ct.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(access_key.as_bytes()), &mut buf)
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Damaged)
    }

    /// Whether `sealed` was sealed under an earlier master key (so the
    /// leader seals it again under the current one).
    pub fn is_stale(&self, sealed: &str) -> bool {
        is_sealed(sealed) && !sealed[PREFIX.len()..].starts_with(&format!("{}:", self.current.id))
    }
}

/// Whether a stored secret is sealed (older clusters kept them in clear).
pub fn is_sealed(secret: &str) -> bool {
    secret.starts_with(PREFIX)
}

/// A new random master key, as the hex text a key file holds.
pub fn new_master_key() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(key: &str) -> Sealer {
        Sealer::load(Some(key), None, &[]).unwrap().unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_own_key_record() {
        let s = sealer(&new_master_key());
        let sealed = s.seal("AK1", "the-secret");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("the-secret"));
        assert_eq!(s.unseal("AK1", &sealed).unwrap(), "the-secret");
        assert!(matches!(s.unseal("AK2", &sealed), Err(SealError::Damaged)));
        let mut bad = sealed.clone();
        bad.pop();
        bad.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(s.unseal("AK1", &bad).is_err());
        // Two seals of one secret differ (fresh nonces).
        assert_ne!(s.seal("AK1", "the-secret"), sealed);
    }

    #[test]
    fn after_a_rotation_old_secrets_open_with_the_previous_key_and_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let old_text = new_master_key();
        let old = sealer(&old_text);
        let sealed = old.seal("AK", "s3cr3t");
        let old_file = dir.path().join("old.key");
        std::fs::write(&old_file, &old_text).unwrap();
        let new_text = new_master_key();
        let without = sealer(&new_text);
        assert!(matches!(
            without.unseal("AK", &sealed),
            Err(SealError::UnknownKey(_))
        ));
        let rotated = Sealer::load(Some(&new_text), None, &[old_file])
            .unwrap()
            .unwrap();
        assert_eq!(rotated.unseal("AK", &sealed).unwrap(), "s3cr3t");
        assert!(rotated.is_stale(&sealed));
        assert!(!rotated.is_stale(&rotated.seal("AK", "s3cr3t")));
    }

    #[test]
    fn a_master_key_that_is_not_32_hex_bytes_is_refused_naming_its_source() {
        let e = Sealer::load(Some("abcd"), None, &[]).unwrap_err();
        assert!(e.to_string().contains("WEFT_MASTER_KEY"), "{e}");
        let e = Sealer::load(Some("zz"), None, &[]).unwrap_err();
        assert!(e.to_string().contains("hex"), "{e}");
    }
}
