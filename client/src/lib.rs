//! Clients of Weft's services, shared by every process that calls them: the
//! gateway calls metad and the data nodes, a data node calls metad (and
//! other data nodes for repair), the CLI and the benches call both; and a
//! small SigV4 S3 client ([`s3`]) for the chaos workload, benches and tests. Kept out of `weft-common`, which holds only types and pure
//! functions, and out of the daemon crates, so no daemon links another.

#![warn(missing_docs)]

pub mod audit_report;
pub mod datad;
pub mod internal_tls;
pub mod limits;
pub mod listener;
pub mod metad;
pub mod mtls;
pub mod netmap;
pub mod peer;
pub mod pki;
pub mod s3;
pub mod transport;
pub mod wan;

pub use datad::{DatadClient, DatadClientError, DatadClientLimits};
pub use metad::{Committed, MetadClient, MetadClientError};
pub use transport::{Http, SharedTransport, Transport, TransportError};

/// Headers every internal request carries: the body's format
/// (`weft_common::rpc::FORMAT_HEADER`), which servers check before reading.
pub fn format_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        weft_common::rpc::FORMAT_HEADER,
        reqwest::header::HeaderValue::from(weft_common::rpc::RPC_FORMAT),
    );
    h
}
