//! weft-datad: the data node. It keeps shard files on local disk and serves
//! them over the internal HTTP RPC.
//!
//! - [`shard_file`]: the shard file format v1: header, checksummed blocks.
//! - [`shard_store`]: shard files on disk, streamed in and out with bounded
//!   memory; every read verified.
//! - [`server`]: the HTTP endpoints over the store (`/v1/shards/...`,
//!   `/health`, `/metrics`).
//! - [`space`]: how full the node is (nearfull/full high-water marks) and
//!   whether it takes a new shard.
//! - [`node`]: the daemon: config, start, registration and heartbeats to
//!   metad, shutdown by cancellation.
//!
//! Files are made durable with [`weft_common::durable_file`], the recipe
//! every Weft process shares (temp, fsync, rename, fsync directory).
//!
//! datad does not depend on metad's crate: it speaks to metad in plain JSON
//! over HTTP with the messages of `weft_common::rpc`.

pub mod error;
pub mod gc;
pub mod limits;
mod metad_link;
pub mod node;
pub mod release;
pub mod repair;
pub mod scrub;
pub mod server;
pub mod shard_file;
pub mod shard_store;
pub mod space;
pub mod throttle;
pub mod transition;
pub mod work_metrics;

pub use error::ShardError;
pub use node::{start, DatadConfig, DatadError, DatadHandle};
pub use shard_store::{ShardRange, ShardStore};
