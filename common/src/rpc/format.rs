//! Format numbers: of raft commands and of the internal RPC
//! (docs/decisions.md, "Formats and rolling upgrades").

/// The newest raft command format this binary reads and writes. A voter
/// that meets a newer one stops its raft core rather than apply what it
/// cannot fully read.
///
/// Format 2 added the audit chain: a request's `actor` and the `audit`,
/// `audit_checkpoint`, `set_audit_config` and `audit_prune` commands. A
/// format 1 request applies as before and records nothing in the chain.
///
/// Format 3 added storage classes as data (the `seed_storage_classes`,
/// `put_storage_class` and `delete_storage_class` commands, and the
/// placement rule a segment carries: a format 2 voter would drop that field
/// and let repair move the segment out of its class's zones) and lifecycle
/// rules (`set_bucket_lifecycle`, `lifecycle`, `seed_lifecycle_day`, and a
/// bucket's rules, which a format 2 voter would drop).
pub const COMMAND_FORMAT: u32 = 3;

pub(crate) fn command_format_v1() -> u32 {
    1
}

pub(crate) fn is_command_format_v1(format: &u32) -> bool {
    *format == 1
}

/// Format of internal RPC bodies (metad's API and raft RPC, datad's shard
/// API), sent in [`FORMAT_HEADER`]; absent means format 1.
pub const RPC_FORMAT: u32 = 1;

/// The header an internal request names its body's format in.
pub const FORMAT_HEADER: &str = "x-weft-format";

/// A request whose format this process cannot read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// Not a number.
    #[error("{FORMAT_HEADER}: {0:?} is not a format number")]
    Malformed(String),
    /// Newer than this binary reads.
    #[error("internal request format {0} is newer than this process reads ({RPC_FORMAT}); upgrade metad voters first, then data nodes and gateways (docs/decisions.md, \"Formats and rolling upgrades\")")]
    Newer(u32),
}

/// Checks a request's [`FORMAT_HEADER`] value.
pub fn check_rpc_format(header: Option<&str>) -> Result<(), FormatError> {
    let Some(v) = header else { return Ok(()) };
    let n: u32 = v
        .trim()
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| FormatError::Malformed(v.to_string()))?;
    if n > RPC_FORMAT {
        return Err(FormatError::Newer(n));
    }
    Ok(())
}
