//! `weft-chaos`: runs a real Weft cluster in docker, drives an S3 workload
//! against it while injecting faults, and checks the recorded history.
//!
//! Layers, from pure to effectful:
//! - [`content`], [`history`], [`checker`], [`scenario`], [`report`]: pure
//!   logic with unit tests (content generation, the history format, the
//!   verdict, seeded fault schedules, report rendering);
//! - `s3_client`: `weft_client::s3`, the SigV4 client of our own (no SDK,
//!   cheap to build), shared with the benches and tests;
//! - [`docker`], [`image`], [`cluster`], [`faults`]: docker through its CLI;
//! - [`workload`], [`runner`]: the run itself.

pub mod checker;
pub mod cluster;
pub mod content;
pub mod docker;
pub mod faults;
pub mod history;
pub mod image;
pub mod locality;
pub mod pki;
pub mod power_cut;
pub mod report;
pub mod runner;
pub use weft_client::s3 as s3_client;
pub mod scenario;
pub mod workload;
