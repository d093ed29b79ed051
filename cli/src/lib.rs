//! The `weft` command: the admin CLI, the per-process daemons, and `weft dev`.
//!
//! The library part holds what tests share with the binary: [`dev_cluster`]
//! (the in-process cluster behind `weft dev` and the integration tests) and
//! [`admin_client`] (the signed client of the gateway's admin API).

pub mod admin_client;
pub mod bench;
pub mod bench_internal;
pub mod bench_repair;
pub mod bench_soak;
pub mod config;
pub mod dev_cluster;
pub mod exit;
pub mod limits;
mod soak_load;
pub mod soak_series;
