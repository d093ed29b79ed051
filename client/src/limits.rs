//! Fixed bounds of the internal clients (settings a caller tunes are in
//! [`crate::datad::DatadClientLimits`] and the metad client's deadline).

/// How long to wait for a TCP connection to a datad.
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// Largest preallocation for a GET body; larger bodies grow as they arrive.
pub const GET_PREALLOC_BYTES_MAX: u64 = 8 * 1024 * 1024;
