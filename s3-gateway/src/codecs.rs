//! The erasure codecs the write and read paths share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use weft_common::stripe::StripeCodec;

use crate::error::GatewayError;

/// Codecs by (k, m).
type CodecMap = HashMap<(usize, usize), Arc<StripeCodec>>;

/// One codec per (k, m), shared by writes and reads: each codec caches its
/// decode matrices, so a geometry pays for them once. Cheap to clone.
#[derive(Clone, Default)]
pub struct Codecs(Arc<Mutex<CodecMap>>);

impl Codecs {
    /// The codec for `k` data and `m` parity shards.
    pub fn get(&self, k: usize, m: usize) -> Result<Arc<StripeCodec>, GatewayError> {
        // The map only ever gains finished codecs, so a panic elsewhere while
        // it was locked left nothing half-done: use it anyway.
        let mut codecs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = codecs.get(&(k, m)) {
            return Ok(c.clone());
        }
        let c =
            Arc::new(StripeCodec::new(k, m).map_err(|e| GatewayError::Internal(e.to_string()))?);
        codecs.insert((k, m), c.clone());
        Ok(c)
    }
}
