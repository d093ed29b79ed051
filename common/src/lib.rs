//! Types every Weft process shares: ids, topology, storage-class profiles,
//! placement, the stripe codec, checksums and the internal RPC messages.
//!
//! This crate holds no policy about disks or sockets: it is the vocabulary of
//! the system (see docs/glossary.md), so that metad, datad and the gateway
//! agree on formats by construction. Anything that touches a file or a clock
//! belongs to a daemon crate, and every network call to the `weft-client`
//! crate. A little file I/O lives here because every process needs it done
//! the same way: [`durable_file`], the one crash-safe file recipe behind
//! datad's shards, metad's snapshots and the CLI's credentials. The
//! `statvfs` reading in [`space`] is shared the same way by datad's
//! high-water marks and metad's reserve.
#![deny(missing_docs)]

pub mod admin_auth;
pub mod audit;
pub mod checksum;
pub mod config_check;
pub mod damage;
pub mod disk;
pub mod durable_file;
pub mod effects;
pub mod failpoints;
pub mod ids;
pub mod lifecycle;
pub mod locality;
pub mod manifest;
pub mod netmap;
pub mod placement;
pub mod placement_table;
pub mod profile;
pub mod repair;
pub mod residency;
pub mod rpc;
pub mod sigv4;
pub mod space;
pub mod storage_class;
pub mod stripe;
pub mod topology;
pub mod transition;
pub mod upload_timers;
pub mod warm;

pub use ids::{NodeId, RequestId, SegmentId, ShardIndex, VersionId};
