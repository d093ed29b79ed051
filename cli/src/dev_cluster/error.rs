//! [`DevClusterError`]: why a dev cluster, or one of its parts, did not
//! start or stop.

use std::path::PathBuf;
use std::time::Duration;
use weft_common::durable_file::FsError;

/// Why a dev cluster operation failed. Each message says what was being
/// done and leaves the cause to [`std::error::Error::source`], so `weft dev`
/// prints the whole chain (`start data node 3: ...: No space left on
/// device`).
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    /// The cluster CA or its certificates for the internal hops.
    #[error("prepare the internal certificates in {}: {reason:#}", dir.display())]
    InternalPki {
        /// `DATA/pki`.
        dir: PathBuf,
        /// Cause (a chain).
        reason: anyhow::Error,
    },
    /// A file or directory under the data directory.
    #[error("{action} {}", path.display())]
    Files {
        /// What was being done to it, as a verb phrase.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        source: FsError,
    },
    /// The saved root credentials could not be read.
    #[error("read {}", path.display())]
    ReadCredentials {
        /// `credentials.json`.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The saved root credentials are not valid JSON credentials.
    #[error("parse {}", path.display())]
    ParseCredentials {
        /// `credentials.json`.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// New root credentials could not be encoded for saving.
    #[error(transparent)]
    EncodeCredentials(serde_json::Error),
    /// The TLS certificate could not be made.
    #[error("generate a self-signed certificate")]
    Certificate(#[source] rcgen::Error),
    /// A part asked to start is running already.
    #[error("{part} {number} is already running")]
    AlreadyRunning {
        /// `metad` or `data node`.
        part: &'static str,
        /// Its raft or node id (index + 1).
        number: usize,
    },
    /// A part asked to stop is not running.
    #[error("{part} {number} is not running")]
    NotRunning {
        /// `metad` or `data node`.
        part: &'static str,
        /// Its raft or node id (index + 1).
        number: usize,
    },
    /// A metad voter did not start.
    #[error("start metad {number}")]
    StartMetad {
        /// Its raft id.
        number: usize,
        /// Cause.
        source: Box<weft_metad::MetadError>,
    },
    /// A data node did not start.
    #[error("start data node {number}")]
    StartDatad {
        /// Its node id.
        number: usize,
        /// Cause.
        source: weft_datad::DatadError,
    },
    /// A gateway did not start.
    #[error("start gateway")]
    StartGateway(#[source] weft_gateway::StartError),
    /// The first voter could not be asked to initialise the group.
    #[error("initialise the metad group")]
    InitUnreachable(#[source] reqwest::Error),
    /// The first voter refused to initialise the group.
    #[error("initialise the metad group: HTTP {status}: {body}")]
    InitRefused {
        /// Its status.
        status: reqwest::StatusCode,
        /// Its body.
        body: String,
    },
    /// No voter became leader in time.
    #[error("no metad leader within {timeout:?}")]
    NoLeader {
        /// How long it waited.
        timeout: Duration,
    },
    /// Not every data node was seen up in time.
    #[error("waited {timeout:?} for {wanted} data nodes up: metad sees {metad_up}, gateway sees {gateway_up}")]
    NodesNotUp {
        /// How long it waited.
        timeout: Duration,
        /// Nodes expected up.
        wanted: usize,
        /// Up in metad's view.
        metad_up: usize,
        /// Up in the gateways' view (the lowest of them).
        gateway_up: usize,
    },
}
