//! The `weft` command: the admin CLI, the per-process daemons, and `weft dev`.
//!
//! The library part holds what tests share with the binary: [`dev_cluster`]
//! (the in-process cluster behind `weft dev` and the integration tests),
//! [`admin_client`] (the signed client of the gateway's admin API), and what
//! the daemons need at start and exit ([`config`], [`limits`], [`exit`]).
//! The commands themselves, benches included, are modules of the binary.

pub mod admin_client;
pub mod config;
pub mod dev_cluster;
pub mod exit;
pub mod faults;
pub mod limits;
pub mod pki_files;
pub mod proc_net;
