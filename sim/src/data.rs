//! The data plane of the simulated cluster: six data nodes in three zones
//! (as `weft dev` runs them) and one S3 gateway, in process, on the
//! simulated network and disk.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft_datad::node::{DatadConfig, DatadHandle};

use crate::net::{Handler, SimNet};

/// Data nodes: EC 4+2 needs six, two per zone.
pub(crate) const DATADS: usize = 6;
/// The gateway's address on the simulated network.
pub(crate) const GATEWAY: &str = "127.0.4.1:9000";
/// The root key the gateway installs and the S3 workers sign with.
pub(crate) const ACCESS_KEY: &str = "SIMROOTACCESSKEY0001";
pub(crate) const SECRET_KEY: &str = "sim-root-secret-key-for-seeded-runs-only";
pub(crate) const REGION: &str = "us-east-1";

pub(crate) fn datad_addr(i: usize) -> String {
    format!("127.0.3.{}:7100", i + 1)
}

/// The running data nodes and gateway.
pub(crate) struct DataPlane {
    pub(crate) datads: Vec<Option<(DatadHandle, CancellationToken)>>,
    gateway: Option<CancellationToken>,
}

impl DataPlane {
    pub(crate) fn new() -> DataPlane {
        DataPlane {
            datads: (0..DATADS).map(|_| None).collect(),
            gateway: None,
        }
    }

    pub(crate) async fn start_datad(
        &mut self,
        i: usize,
        net: &SimNet,
        dir: &std::path::Path,
        metad: Vec<String>,
    ) -> Result<(), String> {
        let addr = datad_addr(i);
        let cfg = DatadConfig {
            node_id: i as u64 + 1,
            zone: format!("z{}", i / 2 + 1),
            listen: addr.parse().expect("valid datad address"),
            data_dir: dir.join(format!("datad-{}", i + 1)),
            capacity_bytes: 1 << 30,
            metad,
            heartbeat_interval_ms: 500,
            ..DatadConfig::default()
        };
        let cancel = CancellationToken::new();
        let (handle, router) =
            weft_datad::node::start_in_process(cfg, net.endpoint(&addr), cancel.clone())
                .await
                .map_err(|e| format!("datad {} did not start: {e}", i + 1))?;
        net.serve(&addr, router);
        self.datads[i] = Some((handle, cancel));
        Ok(())
    }

    /// Stops data node `i` as a kill would: it answers nothing from now on.
    pub(crate) async fn crash_datad(&mut self, i: usize, net: &SimNet) {
        net.unserve(&datad_addr(i));
        if let Some((handle, cancel)) = self.datads[i].take() {
            cancel.cancel();
            handle.stopped().await;
        }
    }

    pub(crate) fn live_datads(&self) -> Vec<usize> {
        (0..DATADS).filter(|i| self.datads[*i].is_some()).collect()
    }

    pub(crate) async fn start_gateway(
        &mut self,
        net: &SimNet,
        metad: Vec<String>,
    ) -> Result<(), String> {
        let cfg = weft_gateway::config::GatewayConfig {
            listen: GATEWAY.parse().expect("valid gateway address"),
            metad,
            region: REGION.into(),
            root_access_key: Some(ACCESS_KEY.into()),
            root_secret_key: Some(SECRET_KEY.into()),
            ..Default::default()
        };
        let cancel = CancellationToken::new();
        let gw = weft_gateway::start_in_process(cfg, net.endpoint(GATEWAY), cancel.clone())
            .await
            .map_err(|e| format!("the gateway did not start: {e}"))?;
        net.serve_handler(GATEWAY, s3_handler(gw.service));
        self.gateway = Some(gw.background);
        Ok(())
    }

    /// Stops everything.
    pub(crate) async fn stop(&mut self, net: &SimNet) {
        net.unserve(GATEWAY);
        if let Some(bg) = self.gateway.take() {
            bg.cancel();
        }
        for i in 0..DATADS {
            self.crash_datad(i, net).await;
        }
        // The gateway's release queues and refreshers end on their own.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gateway's S3 service as a network handler (whole bodies: the
/// simulated objects are small).
fn s3_handler(service: s3s::service::S3Service) -> Handler {
    Arc::new(move |req: http::Request<axum::body::Body>| {
        let service = service.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(b) => b,
                Err(e) => return status(400, &format!("request body: {e}")),
            };
            let req = http::Request::from_parts(parts, s3s::Body::from(bytes));
            match service.call(req).await {
                Ok(resp) => resp.map(axum::body::Body::new),
                Err(e) => status(500, &format!("{e:?}")),
            }
        })
    })
}

fn status(code: u16, text: &str) -> http::Response<axum::body::Body> {
    let mut r = http::Response::new(axum::body::Body::from(text.to_string()));
    *r.status_mut() = http::StatusCode::from_u16(code).expect("valid status");
    r
}
