//! Raft RPC between metad voters: JSON over HTTP POST, one endpoint per RPC.

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use weft_client::transport::SharedTransport;

use crate::{RaftNodeId, TypeConfig};

/// Creates one [`Peer`] per target voter; all share one transport (one HTTP
/// connection pool in production, the simulator's network under `weft sim`).
#[derive(Clone)]
pub struct Network {
    http: reqwest::Client,
    transport: SharedTransport,
}

impl Network {
    /// A network sending every peer's RPCs through `transport`.
    pub fn new(transport: SharedTransport) -> Self {
        Network {
            http: weft_client::transport::builder_client(),
            transport,
        }
    }
}

/// Connection to one voter.
pub struct Peer {
    http: reqwest::Client,
    transport: SharedTransport,
    target: RaftNodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> Peer {
        Peer {
            http: self.http.clone(),
            transport: self.transport.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<RaftNodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("http://{}/raft/{path}", self.addr);
        let request = self
            .http
            .post(&url)
            .headers(weft_client::format_headers())
            .timeout(option.hard_ttl())
            .json(req)
            .build()
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let resp = self.transport.execute(request).await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            let e = std::io::Error::other(format!("{} answered HTTP {status}: {body}", self.addr));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, E> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>,
    > {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>
    {
        self.call("vote", &rpc, &option).await
    }
}
