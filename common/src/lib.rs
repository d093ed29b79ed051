//! Types every Weft process shares: ids, topology, storage-class profiles,
//! placement, the stripe codec, checksums and the internal RPC messages.
//!
//! This crate does no I/O and holds no policy about disks or sockets: it is the
//! vocabulary of the system (see docs/glossary.md), so that metad, datad and the
//! gateway agree on formats by construction. Anything that touches a file, a
//! socket or a clock belongs to a daemon crate.
#![deny(missing_docs)]

pub mod admin_auth;
pub mod checksum;
pub mod ids;
pub mod manifest;
pub mod placement;
pub mod profile;
pub mod rpc;
pub mod stripe;
pub mod topology;

pub use ids::{NodeId, SegmentId, ShardIndex, VersionId};
