//! A Weft cluster in docker: 3 metad voters, 9 data nodes in 3 zones and
//! 2 gateways in different zones, each process its own container.
//!
//! Networks: one bridge network per zone plus a backbone. Every container
//! sits on its zone's network and on the backbone; peers address each other
//! by container name (docker's DNS), and every daemon advertises its name,
//! so a restarted container may come back with another IP without anyone
//! noticing. Partitioning a zone is disconnecting its containers from the
//! backbone: they keep talking inside the zone, and the harness still
//! reaches the zone's gateway over the zone network.
//!
//! Volumes: each metad and datad has its own host directory bind-mounted at
//! `/data`, so faults that act on files (bitrot, disk-full) work from the
//! host even though the image has no shell. The disk-full target's
//! directory is a size-limited tmpfs mounted on the host before the
//! container starts (it survives container restarts, unlike a docker tmpfs
//! mount).
//!
//! The harness reaches gateways by their IP on the zone network; IPs are
//! re-read after anything that restarts a gateway (`refresh_endpoints`).

use crate::docker::{docker, RUN_LABEL};
use crate::s3_client::S3Client;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Hot zones, by index.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// The cold zone (`tier=cold`), index 3, present when `cold_nodes > 0`.
pub const COLD_ZONE: &str = "west";

/// The name of zone `i` (the hot ones, then the cold one).
pub fn zone_name(i: usize) -> &'static str {
    ZONES.get(i).copied().unwrap_or(COLD_ZONE)
}
/// metad voters.
pub const METAD_COUNT: usize = 3;
/// Data nodes (three per zone).
pub const DATAD_COUNT: usize = 9;
/// Gateways (in zone-a and zone-b).
pub const GATEWAY_COUNT: usize = 2;
const METAD_PORT: u16 = 7000;
const DATAD_PORT: u16 = 7100;
const S3_PORT: u16 = 9000;
const ADMIN_PORT: u16 = 9001;
/// S3 region the gateways use.
pub const REGION: &str = "us-east-1";

/// What a container runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A metad voter.
    Metad,
    /// A data node.
    Datad,
    /// An S3 gateway.
    Gateway,
}

/// One container.
#[derive(Clone, Debug)]
pub struct Node {
    /// Container name, also its DNS name.
    pub name: String,
    /// What it runs.
    pub role: Role,
    /// Raft id, node id or gateway number (1-based).
    pub id: u64,
    /// Index into [`ZONES`].
    pub zone: usize,
    /// Host directory mounted at `/data` (metad, datad).
    pub data_dir: Option<PathBuf>,
}

/// How to build the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Unique per scenario; prefixes every container and network name.
    pub prefix: String,
    /// Run id for the cleanup label.
    pub run_id: String,
    /// Image tag.
    pub image: String,
    /// Host directory for volumes and configs.
    pub work_dir: PathBuf,
    /// metad's data-node grace: no heartbeat for this long means down.
    pub node_grace_ms: u64,
    /// Data node whose volume is a tmpfs of this many bytes (disk-full).
    pub limited_disk: Option<(u64, u64)>,
    /// Extra environment for gateways (fault hooks such as an injected bug).
    pub gateway_env: Vec<(String, String)>,
    /// Extra environment for metads (the power-cut disk).
    pub metad_env: Vec<(String, String)>,
    /// Extra environment for datads (the power-cut disk, an injected bug).
    pub datad_env: Vec<(String, String)>,
    /// `WEFT_LOG` for the daemons.
    pub log_filter: String,
    /// Data nodes in the cold zone `west` (ids after the hot ones), for
    /// GLACIER_IR and lifecycle transitions; 0 for none.
    pub cold_nodes: usize,
    /// metad's lifecycle day in seconds (`None`: a real day).
    pub lifecycle_day_secs: Option<u64>,
    /// The locality scenario's settings: an emulated WAN between zones,
    /// gateways without stripe cache or hedging ([`crate::locality`]).
    pub locality: bool,
}

/// A running cluster. Dropping it does not tear it down: the run's guard
/// does, by label, on every exit path.
pub struct Cluster {
    /// Its configuration.
    pub cfg: ClusterConfig,
    /// Every container.
    pub nodes: Vec<Node>,
    /// Backbone network name.
    pub backbone: String,
    /// Zone network names, by zone index.
    pub zone_nets: Vec<String>,
    /// Root access key.
    pub access_key: String,
    /// Root secret key.
    pub secret_key: String,
    /// One client per gateway, refreshed when gateways move.
    pub gateways: Arc<RwLock<Vec<S3Client>>>,
    /// Each gateway's admin endpoint (HTTPS, by container name) and a
    /// client that reaches it at its current address.
    admin: RwLock<Vec<(String, reqwest::Client)>>,
    /// The cluster's certificates (every internal hop is mutual TLS).
    pub pki: tokio::sync::Mutex<crate::pki::ChaosPki>,
    /// The harness's identity on the internal hops.
    internal: Arc<weft_client::internal_tls::InternalTls>,
}

impl Cluster {
    fn plan(cfg: &ClusterConfig) -> Vec<Node> {
        let mut nodes = Vec::new();
        let dir = |name: &str| Some(cfg.work_dir.join("volumes").join(name));
        for i in 1..=METAD_COUNT as u64 {
            let name = format!("{}-metad-{i}", cfg.prefix);
            nodes.push(Node {
                data_dir: dir(&name),
                name,
                role: Role::Metad,
                id: i,
                zone: (i as usize - 1) % 3,
            });
        }
        for i in 1..=DATAD_COUNT as u64 {
            let name = format!("{}-datad-{i}", cfg.prefix);
            nodes.push(Node {
                data_dir: dir(&name),
                name,
                role: Role::Datad,
                id: i,
                zone: (i as usize - 1) % 3,
            });
        }
        for i in 1..=cfg.cold_nodes as u64 {
            let id = DATAD_COUNT as u64 + i;
            let name = format!("{}-datad-{id}", cfg.prefix);
            nodes.push(Node {
                data_dir: dir(&name),
                name,
                role: Role::Datad,
                id,
                zone: ZONES.len(),
            });
        }
        for i in 1..=GATEWAY_COUNT as u64 {
            let name = format!("{}-gateway-{i}", cfg.prefix);
            nodes.push(Node {
                data_dir: None,
                name,
                role: Role::Gateway,
                id: i,
                zone: (i as usize - 1) % 3,
            });
        }
        nodes
    }

    /// Containers with `role`.
    pub fn of(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// The node with `role` and `id`.
    pub fn node(&self, role: Role, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.role == role && n.id == id)
            .expect("planned node")
    }

    fn metad_addrs(&self) -> Vec<String> {
        self.of(Role::Metad)
            .map(|n| format!("{}:{METAD_PORT}", n.name))
            .collect()
    }

    /// Creates networks, volumes and containers, initialises the metad group
    /// and waits until every data node is up and a write succeeds.
    pub async fn start(cfg: ClusterConfig) -> Result<Cluster> {
        let nodes = Self::plan(&cfg);
        let label = format!("{RUN_LABEL}={}", cfg.run_id);
        let backbone = format!("{}-backbone", cfg.prefix);
        let zone_count = ZONES.len() + usize::from(cfg.cold_nodes > 0);
        let zone_nets: Vec<String> = (0..zone_count)
            .map(|z| format!("{}-{}", cfg.prefix, zone_name(z)))
            .collect();
        for net in std::iter::once(&backbone).chain(&zone_nets) {
            docker(&["network", "create", "--label", &label, net])
                .await
                .with_context(|| format!("create network {net}"))?;
        }
        let seed = crate::content::mix64(
            cfg.prefix
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64)),
        );
        let access_key = format!("CHAOSROOT{:011X}", seed & 0xFFF_FFFF_FFFF);
        let secret_key = format!(
            "chaos-secret-{:032x}",
            crate::content::mix64(seed) as u128 * 0x1_0000_0001
        );
        let mut pki = crate::pki::ChaosPki::create(
            &cfg.work_dir.join("pki"),
            nodes
                .iter()
                .map(|n| {
                    let (role, node) = match n.role {
                        Role::Metad => (weft_client::pki::Role::Metad, None),
                        Role::Datad => (weft_client::pki::Role::Datad, Some(n.id)),
                        Role::Gateway => (weft_client::pki::Role::Gateway, None),
                    };
                    (n.name.clone(), role, node)
                })
                .collect(),
        )
        .context("make the cluster's certificates")?;
        let internal = pki
            .admin()
            .context("load the harness's admin certificate")?;
        let cluster = Cluster {
            pki: tokio::sync::Mutex::new(pki),
            internal,
            cfg,
            nodes,
            backbone,
            zone_nets,
            access_key,
            secret_key,
            gateways: Arc::new(RwLock::new(Vec::new())),
            admin: RwLock::new(Vec::new()),
        };
        let config_dir = cluster.cfg.work_dir.join("config");
        std::fs::create_dir_all(&config_dir)?;
        for n in &cluster.nodes {
            if let Some(d) = &n.data_dir {
                std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
                if n.role == Role::Datad && cluster.cfg.limited_disk.map(|(id, _)| id) == Some(n.id)
                {
                    let bytes = cluster.cfg.limited_disk.expect("checked").1;
                    let out = std::process::Command::new("mount")
                        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                        .arg(d)
                        .output()
                        .context("run mount")?;
                    if !out.status.success() {
                        bail!(
                            "mount a {bytes}-byte tmpfs on {} for the disk-full node (needs root): {}",
                            d.display(),
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
            }
        }
        // metad voters first, then one `weft cluster init`, as in docs/operations.md.
        for n in cluster.of(Role::Metad).cloned().collect::<Vec<_>>() {
            cluster.create_and_start(&n).await?;
        }
        cluster.init_metad_group().await?;
        for n in cluster.of(Role::Datad).cloned().collect::<Vec<_>>() {
            cluster.create_and_start(&n).await?;
        }
        for n in cluster.of(Role::Gateway).cloned().collect::<Vec<_>>() {
            cluster.create_and_start(&n).await?;
        }
        cluster.refresh_endpoints().await?;
        cluster
            .wait_healthy(Duration::from_secs(120))
            .await
            .context("wait for the new cluster")?;
        Ok(cluster)
    }

    fn config_toml(&self, n: &Node) -> String {
        let metad = self
            .metad_addrs()
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let tls = crate::pki::ChaosPki::config_line(&n.name);
        let role = match n.role {
            Role::Metad => format!(
                "id = {}\nlisten = \"0.0.0.0:{METAD_PORT}\"\nadvertise = \"{}:{METAD_PORT}\"\ndata_dir = \"/data\"\nbootstrap = false\nnode_grace_ms = {}\n{}",
                n.id,
                n.name,
                self.cfg.node_grace_ms,
                self.cfg
                    .lifecycle_day_secs
                    .map(|d| format!("lifecycle_day_secs = {d}\n"))
                    .unwrap_or_default()
            ),
            Role::Datad => format!(
                "node_id = {}\nzone = \"{}\"\nlisten = \"0.0.0.0:{DATAD_PORT}\"\nadvertise = \"{}:{DATAD_PORT}\"\ndata_dir = \"/data\"\nmetad = [{metad}]\nheartbeat_interval_ms = 500\n{}",
                n.id,
                zone_name(n.zone),
                n.name,
                if n.zone >= ZONES.len() {
                    "labels = { tier = \"cold\" }\n"
                } else {
                    ""
                }
            ),
            Role::Gateway => format!(
                "listen = \"0.0.0.0:{S3_PORT}\"\nadmin_listen = \"0.0.0.0:{ADMIN_PORT}\"\nmetad = [{metad}]\nregion = \"{REGION}\"\n"
            ),
        };
        let master_key = if n.role == Role::Metad {
            crate::pki::ChaosPki::master_key_line()
        } else {
            String::new()
        };
        let locality = if self.cfg.locality {
            crate::locality::config_lines(n.role)
        } else {
            String::new()
        };
        format!("{role}{tls}{master_key}{locality}")
    }

    async fn create_and_start(&self, n: &Node) -> Result<()> {
        let cfg_path = self
            .cfg
            .work_dir
            .join("config")
            .join(format!("{}.toml", n.name));
        std::fs::write(&cfg_path, self.config_toml(n))?;
        let label = format!("{RUN_LABEL}={}", self.cfg.run_id);
        let role_label = format!("weft-chaos.role={:?}", n.role).to_lowercase();
        let mut args: Vec<String> = vec![
            "create".into(),
            "--name".into(),
            n.name.clone(),
            "--hostname".into(),
            n.name.clone(),
            "--label".into(),
            label,
            "--label".into(),
            role_label,
            "--network".into(),
            self.zone_nets[n.zone].clone(),
            "--stop-timeout".into(),
            "10".into(),
            "-v".into(),
            format!("{}:/etc/weft/weft.toml:ro", cfg_path.display()),
            // The directory, not the files: a rename during a roll must
            // show through.
            "-v".into(),
            format!(
                "{}:{}:ro",
                self.cfg.work_dir.join("pki").display(),
                crate::pki::CONTAINER_DIR
            ),
            "-e".into(),
            format!("WEFT_TLS_RELOAD_MS={}", crate::pki::RELOAD_MS),
            "-e".into(),
            "WEFT_CONFIG=/etc/weft/weft.toml".into(),
            "-e".into(),
            format!("WEFT_LOG={}", self.cfg.log_filter),
            "-e".into(),
            format!("WEFT_ZONE={}", zone_name(n.zone)),
            // Plain logs: they are saved to files and grepped for ERROR.
            "-e".into(),
            "NO_COLOR=1".into(),
        ];
        if let Some(d) = &n.data_dir {
            args.push("-v".into());
            args.push(format!("{}:/data", d.display()));
        }
        match n.role {
            Role::Metad => {
                // The durability engine's down grace (ignored by daemons
                // that do not know it yet).
                args.push("-e".into());
                args.push(format!("WEFT_DOWN_GRACE_MS={}", self.cfg.node_grace_ms));
                for (k, v) in &self.cfg.metad_env {
                    args.push("-e".into());
                    args.push(format!("{k}={v}"));
                }
            }
            Role::Gateway => {
                args.push("-e".into());
                args.push(format!("WEFT_ROOT_ACCESS_KEY={}", self.access_key));
                args.push("-e".into());
                args.push(format!("WEFT_ROOT_SECRET_KEY={}", self.secret_key));
                for (k, v) in &self.cfg.gateway_env {
                    args.push("-e".into());
                    args.push(format!("{k}={v}"));
                }
            }
            Role::Datad => {
                for (k, v) in &self.cfg.datad_env {
                    args.push("-e".into());
                    args.push(format!("{k}={v}"));
                }
            }
        }
        args.push(self.cfg.image.clone());
        args.push(format!("{:?}", n.role).to_lowercase());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&refs)
            .await
            .with_context(|| format!("create container {}", n.name))?;
        docker(&["network", "connect", &self.backbone, &n.name])
            .await
            .with_context(|| format!("connect {} to the backbone", n.name))?;
        docker(&["start", &n.name])
            .await
            .with_context(|| format!("start {}", n.name))?;
        Ok(())
    }

    /// Runs `weft cluster init` once, in a named throw-away container on the
    /// backbone, after every voter answers `/health`. Waiting first (instead
    /// of retrying the container) matters: docker 20.10 occasionally leaves
    /// a stale endpoint behind a `--rm` container, and a network with one
    /// cannot be removed; one named container can at least be force-detached.
    async fn init_metad_group(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in self.of(Role::Metad) {
            loop {
                let ok = match self.zone_ip(n).await? {
                    Some(ip) => self
                        .internal_http(&n.name, &ip, METAD_PORT)?
                        .get(format!("https://{}:{METAD_PORT}/health", n.name))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    None => false,
                };
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("metad {} did not answer /health within 60 s", n.name);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut args: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--name".into(),
            self.init_container(),
            "--label".into(),
            format!("{RUN_LABEL}={}", self.cfg.run_id),
            "--network".into(),
            self.backbone.clone(),
            "-v".into(),
            format!(
                "{}:{}:ro",
                self.cfg.work_dir.join("pki").display(),
                crate::pki::CONTAINER_DIR
            ),
            self.cfg.image.clone(),
            "cluster".into(),
            "init".into(),
        ];
        args.extend(crate::pki::ChaosPki::init_flags());
        for n in self.of(Role::Metad) {
            args.push("--member".into());
            args.push(format!("{}={}:{METAD_PORT}", n.id, n.name));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&refs).await.context("weft cluster init")?;
        Ok(())
    }

    /// A client for container `name`'s internal endpoint, reached at `ip`
    /// (the harness cannot resolve container names) while checking the
    /// certificate against the name.
    fn internal_http(&self, name: &str, ip: &str, port: u16) -> Result<reqwest::Client> {
        let addr: std::net::SocketAddr = format!("{ip}:{port}")
            .parse()
            .with_context(|| format!("container address {ip}:{port}"))?;
        reqwest::Client::builder()
            .use_preconfigured_tls(self.internal.client_config())
            .resolve(name, addr)
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .context("internal HTTP client")
    }

    fn init_container(&self) -> String {
        format!("{}-init", self.cfg.prefix)
    }

    /// The container's IP on its zone network (None if not running).
    async fn zone_ip(&self, n: &Node) -> Result<Option<String>> {
        let fmt = format!(
            "{{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
            self.zone_nets[n.zone]
        );
        let ip = docker(&["inspect", "-f", &fmt, &n.name]).await?;
        Ok((!ip.is_empty()).then_some(ip))
    }

    /// Re-reads gateway IPs (after a gateway restarted) and rebuilds clients.
    pub async fn refresh_endpoints(&self) -> Result<()> {
        let old_s3 = self.gateways.read().expect("gateways lock").clone();
        let old_admin = self.admin.read().expect("admin lock").clone();
        let mut clients = Vec::new();
        let mut admin = Vec::new();
        for (i, n) in self.of(Role::Gateway).enumerate() {
            match self.zone_ip(n).await? {
                Some(ip) => {
                    // Same IP: keep the client and its warm connections.
                    let endpoint = format!("http://{ip}:{S3_PORT}");
                    match old_s3.get(i).filter(|c| c.endpoint() == endpoint) {
                        Some(c) => clients.push(c.clone()),
                        None => clients.push(S3Client::new(
                            &endpoint,
                            &self.access_key,
                            &self.secret_key,
                            REGION,
                            Duration::from_secs(60),
                        )),
                    }
                    admin.push((
                        format!("https://{}:{ADMIN_PORT}", n.name),
                        self.internal_http(&n.name, &ip, ADMIN_PORT)?,
                    ));
                }
                // Not running: keep the last address (requests fail to
                // connect, as a client's would) rather than invent one.
                None => match (old_s3.get(i), old_admin.get(i)) {
                    (Some(c), Some(a)) => {
                        clients.push(c.clone());
                        admin.push(a.clone());
                    }
                    _ => bail!(
                        "gateway {} has no address on {}",
                        n.name,
                        self.zone_nets[n.zone]
                    ),
                },
            }
        }
        *self.gateways.write().expect("gateways lock") = clients;
        *self.admin.write().expect("admin lock") = admin;
        Ok(())
    }

    /// A client of gateway `i`.
    pub fn gateway(&self, i: usize) -> S3Client {
        self.gateways.read().expect("gateways lock")[i].clone()
    }

    /// Signed GET of an admin path, tried on each gateway until one answers.
    /// `Ok(None)` when every gateway answered 404 (endpoint not there yet).
    pub async fn admin_get(&self, path: &str) -> Result<Option<Value>> {
        let endpoints = self.admin.read().expect("admin lock").clone();
        let mut last_err = None;
        let mut not_found = 0;
        for (ep, http) in &endpoints {
            match self.admin_request(ep, http, "GET", path, Vec::new()).await {
                Ok(r) if r.status().is_success() => return Ok(Some(r.json().await?)),
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => not_found += 1,
                Ok(r) => last_err = Some(anyhow::anyhow!("GET {ep}{path}: HTTP {}", r.status())),
                Err(e) => last_err = Some(e),
            }
        }
        if not_found > 0 && last_err.is_none() {
            return Ok(None);
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no gateway endpoints")))
    }

    /// One signed admin request to `ep`.
    async fn admin_request(
        &self,
        ep: &str,
        http: &reqwest::Client,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let auth = weft_common::admin_auth::authorization(
            &self.access_key,
            &self.secret_key,
            method,
            path_and_query,
            now,
            &body,
        );
        http.request(
            reqwest::Method::from_bytes(method.as_bytes())?,
            format!("{ep}{path_and_query}"),
        )
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .with_context(|| format!("{method} {ep}{path_and_query}"))
    }

    /// A signed admin request to gateway 0 that must succeed; its JSON
    /// answer (`Null` when it has no body).
    pub async fn admin_send(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: Vec<u8>,
    ) -> Result<Value> {
        let (ep, http) = self.admin.read().expect("admin lock")[0].clone();
        let path_and_query = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let r = self
            .admin_request(&ep, &http, method, &path_and_query, body)
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("{method} {ep}{path_and_query}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The text gateway `i`'s admin listener serves at `path` (its
    /// `/metrics`).
    pub async fn admin_text(&self, i: usize, path: &str) -> Result<String> {
        let (ep, http) = self.admin.read().expect("admin lock")[i].clone();
        let r = self
            .admin_request(&ep, &http, "GET", path, Vec::new())
            .await?;
        let status = r.status();
        let text = r.text().await?;
        ensure!(status.is_success(), "GET {ep}{path}: HTTP {status}: {text}");
        Ok(text)
    }

    /// `/v1/cluster/status` from any gateway.
    pub async fn status(&self) -> Result<Value> {
        self.admin_get("/v1/cluster/status")
            .await?
            .context("the gateway has no /v1/cluster/status")
    }

    /// The metad leader's raft id, if one is known.
    pub async fn metad_leader(&self) -> Result<Option<u64>> {
        Ok(self.status().await?["metad"]["leader"].as_u64())
    }

    /// What is not healthy yet, or `None` when every voter answers, there is
    /// a leader and every data node is up.
    pub fn unhealthy_reason(status: &Value, datad_want: usize) -> Option<String> {
        if status["metad"]["leader"].as_u64().is_none() {
            return Some("no metad leader".into());
        }
        let voters = status["voters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let reachable = voters.iter().filter(|v| !v["status"].is_null()).count();
        if reachable < METAD_COUNT {
            return Some(format!("{reachable}/{METAD_COUNT} metad voters reachable"));
        }
        let nodes = status["nodes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let up = nodes.iter().filter(|n| n["state"] == "up").count();
        if up < datad_want {
            return Some(format!("{up}/{datad_want} data nodes up"));
        }
        None
    }

    /// The first gateway whose S3 port refuses a TCP connection, if any.
    async fn gateway_not_serving(&self) -> Option<String> {
        let endpoints: Vec<String> = self
            .gateways
            .read()
            .expect("gateways lock")
            .iter()
            .map(|c| c.endpoint().to_string())
            .collect();
        for e in endpoints {
            let addr = e.trim_start_matches("http://").to_string();
            let connect = tokio::net::TcpStream::connect(addr.as_str());
            match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    return Some(format!("gateway {addr} refuses S3 connections: {err}"))
                }
                Err(_) => return Some(format!("gateway {addr} does not answer a connect")),
            }
        }
        None
    }

    /// Waits until [`Self::unhealthy_reason`] is `None` and every gateway
    /// takes S3 connections.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<Duration> {
        let began = Instant::now();
        let mut last = String::from("no answer yet");
        while began.elapsed() < timeout {
            match self.status().await {
                Ok(st) => match Self::unhealthy_reason(&st, DATAD_COUNT + self.cfg.cold_nodes) {
                    // The status came from one gateway; every one must
                    // also take S3 connections (one still starting refuses
                    // the workload's first requests).
                    None => match self.gateway_not_serving().await {
                        None => return Ok(began.elapsed()),
                        Some(r) => last = r,
                    },
                    Some(r) => last = r,
                },
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("cluster not healthy after {timeout:?}: {last}")
    }

    /// Whether a container is running, and whether it is paused.
    pub async fn state(&self, name: &str) -> Result<(bool, bool)> {
        let s = docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Paused}}",
            name,
        ])
        .await?;
        Ok((s.starts_with("true"), s.ends_with("true")))
    }

    /// Whether a container is attached to the backbone.
    pub async fn on_backbone(&self, name: &str) -> Result<bool> {
        let fmt = format!(
            "{{{{if index .NetworkSettings.Networks \"{}\"}}}}yes{{{{end}}}}",
            self.backbone
        );
        Ok(docker(&["inspect", "-f", &fmt, name]).await? == "yes")
    }

    /// Undoes every fault: unpause, reconnect, start. Idempotent.
    pub async fn heal(&self) -> Result<()> {
        for n in &self.nodes {
            let (running, paused) = self.state(&n.name).await?;
            if paused {
                docker(&["unpause", &n.name]).await?;
            }
            if !self.on_backbone(&n.name).await? {
                docker(&["network", "connect", &self.backbone, &n.name]).await?;
            }
            if !running {
                docker(&["start", &n.name]).await?;
            }
        }
        self.refresh_endpoints().await
    }

    /// The last `lines` lines of every container's log, into `dir`.
    pub async fn save_logs(&self, dir: &std::path::Path, lines: usize) -> Result<usize> {
        std::fs::create_dir_all(dir)?;
        let mut alarming = 0;
        for n in &self.nodes {
            let out = tokio::process::Command::new("docker")
                .args(["logs", "--tail", &lines.to_string(), &n.name])
                .output()
                .await?;
            let mut text = out.stdout;
            text.extend_from_slice(&out.stderr);
            alarming += String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| l.contains(" ERROR ") || l.contains("panicked"))
                .count();
            std::fs::write(dir.join(format!("{}.log", n.name)), text)?;
        }
        Ok(alarming)
    }

    /// Removes this cluster's containers and networks and unmounts the
    /// disk-full tmpfs. The run guard repeats this by label on every exit.
    pub async fn destroy(&self) {
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        for n in &names {
            let _ = docker(&["unpause", n]).await;
        }
        // Kill, detach, then remove: see `docker::remove_run` on the stale
        // endpoints docker 20.10 leaves when running containers are removed.
        let mut kill = vec!["kill", "--signal", "KILL"];
        kill.extend(names.iter().copied());
        let _ = docker(&kill).await;
        for n in &self.nodes {
            let _ = docker(&["network", "disconnect", "--force", &self.backbone, &n.name]).await;
            let _ = docker(&[
                "network",
                "disconnect",
                "--force",
                &self.zone_nets[n.zone],
                &n.name,
            ])
            .await;
        }
        // The locality scenario's job container, should it have outlived
        // its deadline.
        let job = crate::locality::job_container(&self.cfg.prefix);
        let _ = docker(&["kill", "--signal", "KILL", &job]).await;
        for net in &self.zone_nets {
            let _ = docker(&["network", "disconnect", "--force", net, &job]).await;
        }
        // Usually absent, or already being removed (`--rm`): not a
        // problem either way.
        let _ = docker(&["rm", "-f", "-v", &job]).await;
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(names);
        if let Err(e) = docker(&args).await {
            tracing::warn!(error = %e, "remove containers");
        }
        let init = self.init_container();
        for net in std::iter::once(&self.backbone).chain(&self.zone_nets) {
            // Endpoint release can lag container removal; retry, then
            // force-detach the one short-lived container before giving up.
            let mut removed = false;
            for attempt in 0..5 {
                if docker(&["network", "rm", net]).await.is_ok() {
                    removed = true;
                    break;
                }
                if attempt == 2 {
                    let _ = docker(&["network", "disconnect", "--force", net, &init]).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if !removed {
                tracing::warn!(network = %net, "network left behind (docker reports active endpoints); `weft-chaos cleanup` retries");
            }
        }
        unmount_under(&self.cfg.work_dir);
    }
}

/// Unmounts every mount point under `dir` (the disk-full tmpfs).
pub fn unmount_under(dir: &std::path::Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    let Ok(dir) = dir.canonicalize() else { return };
    for line in mounts.lines() {
        if let Some(mp) = line.split_whitespace().nth(1) {
            if std::path::Path::new(mp).starts_with(&dir) {
                let _ = std::process::Command::new("umount").arg(mp).output();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_a_leader_every_voter_and_every_node() {
        let mut st = serde_json::json!({
            "metad": {"leader": 1},
            "voters": [{"status": {}}, {"status": {}}, {"status": {}}],
            "nodes": (0..9).map(|_| serde_json::json!({"state": "up"})).collect::<Vec<_>>(),
        });
        assert_eq!(Cluster::unhealthy_reason(&st, DATAD_COUNT), None);
        st["nodes"][3]["state"] = "suspect".into();
        assert_eq!(
            Cluster::unhealthy_reason(&st, DATAD_COUNT).unwrap(),
            "8/9 data nodes up"
        );
        st["voters"][0]["status"] = Value::Null;
        assert!(Cluster::unhealthy_reason(&st, DATAD_COUNT)
            .unwrap()
            .contains("voters"));
        st["metad"]["leader"] = Value::Null;
        assert_eq!(
            Cluster::unhealthy_reason(&st, DATAD_COUNT).unwrap(),
            "no metad leader"
        );
    }
}
