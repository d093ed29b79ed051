//! Mutual TLS on a dev cluster's internal endpoints, one family at a time
//! (metad's raft, commands and queries by kind, membership, heartbeats
//! and repair polls; a data node's shards and releases):
//! a caller without a certificate, with one from another CA, or with the
//! wrong role is refused; the right role is served. Health and metrics
//! answer without a certificate.

mod support;
use std::sync::Arc;
use support::TestCluster;
use weft_cli::pki_files::{issue, IssueRequest};
use weft_client::internal_tls::{InternalTls, TlsFiles};
use weft_client::pki::Role;

/// Callers of every kind, with certificates from the cluster's CA (and one
/// from another CA).
struct Callers {
    by_role: Vec<(Role, reqwest::Client)>,
    anonymous: reqwest::Client,
    foreign: reqwest::Client,
}

fn client(files: TlsFiles) -> reqwest::Client {
    let tls = InternalTls::load(files).expect("load caller certificate");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.client_config())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

fn callers(tc: &TestCluster) -> Callers {
    let pki = tc
        .c()
        .pki()
        .expect("the dev cluster runs with mutual TLS by default");
    let dir = tc.dir.path().join("pki");
    let out = tc.dir.path().join("callers");
    let by_role = [Role::Metad, Role::Datad, Role::Gateway, Role::Admin]
        .into_iter()
        .map(|role| {
            let name = format!("caller-{}", role.name());
            let (cert, key) = issue(
                &dir,
                &out,
                &IssueRequest {
                    role,
                    name: &name,
                    hosts: &[],
                    node: (role == Role::Datad).then_some(99),
                    days: 1,
                    force: false,
                },
            )
            .unwrap();
            (
                role,
                client(TlsFiles {
                    cert,
                    key,
                    ca: pki.ca.clone(),
                }),
            )
        })
        .collect();
    // Another CA, whose admin certificate trusts the cluster's CA (so it
    // accepts the server) but is vouched for by nobody the server trusts.
    let other = tc.dir.path().join("other-pki");
    weft_cli::pki_files::init(&other, "weft-dev").unwrap();
    let (cert, key) = issue(
        &other,
        &other,
        &IssueRequest {
            role: Role::Admin,
            name: "mallory",
            hosts: &[],
            node: None,
            days: 1,
            force: false,
        },
    )
    .unwrap();
    // Built by hand: loading it as an identity refuses it already (it
    // does not chain to the CA it trusts).
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let id =
        weft_client::mtls::Identity::from_pem(&read(&cert), &read(&key), &read(&pki.ca)).unwrap();
    let foreign = reqwest::Client::builder()
        .use_preconfigured_tls(weft_client::mtls::client_config(&id).unwrap())
        .build()
        .unwrap();
    let mut store = tokio_rustls::rustls::RootCertStore::empty();
    let ca_pem = std::fs::read_to_string(&pki.ca).unwrap();
    for c in weft_client::pki::certs_from_pem(&ca_pem, "ca").unwrap() {
        store.add(c).unwrap();
    }
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(
            tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth(),
        )
        .build()
        .unwrap();
    Callers {
        by_role,
        anonymous,
        foreign,
    }
}

/// A command as the metad client sends it: one request with an id.
fn request(command: weft_common::rpc::Command) -> serde_json::Value {
    serde_json::to_value(weft_common::rpc::Command::Request {
        id: weft_common::RequestId::from_random(rand_id().to_le_bytes()),
        at_ms: 0,
        command: Box::new(command),
        format: weft_common::rpc::COMMAND_FORMAT,
        actor: None,
    })
    .unwrap()
}

fn rand_id() -> u128 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        ^ 0x5eed
}

fn query(q: weft_common::rpc::Query) -> Option<serde_json::Value> {
    Some(serde_json::to_value(q).unwrap())
}

/// One request: method, URL, JSON body.
struct Call {
    family: &'static str,
    url: String,
    body: Option<serde_json::Value>,
    /// Roles that must be served; every other role must get 403.
    allowed: &'static [Role],
}

async fn send(client: &reqwest::Client, call: &Call) -> Result<u16, String> {
    let req = match &call.body {
        Some(b) => client.post(&call.url).json(b),
        None => client.get(&call.url),
    };
    req.send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_internal_endpoint_family_serves_only_its_roles() {
    let tc = TestCluster::start().await;
    let c = tc.c();
    let callers = callers(&tc);
    let metad = c.metad_addrs()[0].clone();
    let datad = c.datad_addr(0).expect("running");
    let url = |addr: &str, path: &str| c.internal_url(addr, path);
    use weft_common::rpc::{Command, Query};
    let segment = weft_common::SegmentId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    let calls = [
        Call {
            family: "metad raft append",
            url: url(&metad, "/raft/append"),
            body: Some(serde_json::json!({})),
            allowed: &[Role::Metad],
        },
        Call {
            family: "metad raft vote",
            url: url(&metad, "/raft/vote"),
            body: Some(serde_json::json!({})),
            allowed: &[Role::Metad],
        },
        Call {
            family: "metad raft snapshot",
            url: url(&metad, "/raft/snapshot"),
            body: Some(serde_json::json!({})),
            allowed: &[Role::Metad],
        },
        Call {
            family: "metad key listing",
            url: url(&metad, "/v1/query"),
            body: query(Query::Keys),
            allowed: &[Role::Gateway, Role::Admin],
        },
        Call {
            family: "metad key lookup",
            url: url(&metad, "/v1/query"),
            body: query(Query::AccessKey {
                access_key: c.credentials().access_key.clone(),
            }),
            allowed: &[Role::Gateway, Role::Admin],
        },
        Call {
            family: "metad object metadata",
            url: url(&metad, "/v1/query"),
            body: query(Query::Object {
                bucket: "b".into(),
                key: "k".into(),
            }),
            allowed: &[Role::Gateway, Role::Admin],
        },
        Call {
            family: "metad shards a node holds",
            url: url(&metad, "/v1/query"),
            body: query(Query::ShardsHeld {
                node: weft_common::NodeId(1),
                shards: vec![(segment, 0)],
            }),
            allowed: &[Role::Datad, Role::Admin],
        },
        Call {
            family: "metad cluster shape",
            url: url(&metad, "/v1/query"),
            body: query(Query::Nodes),
            allowed: &[Role::Metad, Role::Datad, Role::Gateway, Role::Admin],
        },
        Call {
            family: "metad object writes",
            url: url(&metad, "/v1/command"),
            body: Some(request(Command::DeleteBucket {
                name: "no-such-bucket".into(),
            })),
            allowed: &[Role::Gateway],
        },
        Call {
            family: "metad key administration",
            url: url(&metad, "/v1/command"),
            body: Some(request(Command::DeleteKey {
                name: "no-such-key".into(),
            })),
            allowed: &[Role::Gateway, Role::Admin],
        },
        Call {
            family: "metad repair results",
            url: url(&metad, "/v1/command"),
            body: Some(request(Command::MoveShard {
                segment,
                index: 0,
                from: None,
                to: weft_common::NodeId(99),
            })),
            allowed: &[Role::Datad],
        },
        Call {
            family: "metad membership",
            url: url(&metad, "/v1/members/remove"),
            body: Some(serde_json::json!({})),
            allowed: &[Role::Admin, Role::Gateway],
        },
        Call {
            family: "metad init",
            url: url(&metad, "/v1/init"),
            body: Some(serde_json::json!({})),
            allowed: &[Role::Admin, Role::Gateway],
        },
        Call {
            family: "metad heartbeats",
            url: url(&metad, "/v1/heartbeat"),
            body: Some(serde_json::json!({})),
            allowed: &[Role::Datad],
        },
        Call {
            family: "metad repair polls",
            url: url(&metad, "/v1/repair/poll"),
            body: Some(serde_json::json!({})),
            allowed: &[Role::Datad],
        },
        Call {
            family: "datad shards",
            url: url(
                &datad.to_string(),
                "/v1/shards/0123456789abcdef0011223344556677/0",
            ),
            body: None,
            allowed: &[Role::Gateway, Role::Datad],
        },
        Call {
            family: "datad release",
            url: url(&datad.to_string(), "/v1/shards/release"),
            body: Some(serde_json::json!({})),
            allowed: &[Role::Gateway, Role::Datad],
        },
    ];
    for call in &calls {
        let f = call.family;
        assert_eq!(
            send(&callers.anonymous, call).await,
            Ok(401),
            "{f}: a caller without a certificate"
        );
        assert!(
            send(&callers.foreign, call).await.is_err(),
            "{f}: a caller with a certificate from another CA got an answer"
        );
        for (role, client) in &callers.by_role {
            let status = send(client, call)
                .await
                .unwrap_or_else(|e| panic!("{f} as {role}: {e}"));
            if call.allowed.contains(role) {
                assert!(
                    status != 401 && status != 403,
                    "{f}: role {role} refused with {status}"
                );
            } else {
                assert_eq!(status, 403, "{f}: role {role}");
            }
        }
    }
    // A role that passes reaches the handler: the right role gets answers.
    let (_, gateway) = &callers.by_role[2];
    let keys = gateway
        .post(url(&metad, "/v1/query"))
        .json(&weft_common::rpc::Query::Nodes)
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200);
    let body: weft_common::rpc::QueryResult = keys.json().await.unwrap();
    match body {
        weft_common::rpc::QueryResult::Nodes { nodes, .. } => {
            assert_eq!(nodes.len(), c.datad_count())
        }
        other => panic!("asked for nodes, got {other:?}"),
    }
    // Health and metrics answer without a certificate.
    for (addr, path) in [
        (metad.clone(), "/health"),
        (metad.clone(), "/health/ready"),
        (metad.clone(), "/metrics"),
        (datad.to_string(), "/health"),
        (datad.to_string(), "/metrics"),
    ] {
        let status = callers
            .anonymous
            .get(url(&addr, path))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{addr}{path}: {status}");
    }
    // Plain HTTP reaches nothing.
    let plain = reqwest::Client::new()
        .get(format!("http://{metad}/health"))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "metad answered plain HTTP"
    );
    tc.shutdown().await;
}

/// The admin API is HTTPS with the cluster CA: an admin certificate
/// authenticates a call by itself; any other caller still needs the root
/// key's signature; metrics answer anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_takes_an_admin_certificate_instead_of_a_signature() {
    let tc = TestCluster::start().await;
    let c = tc.c();
    let callers = callers(&tc);
    let admin = c.admin_endpoint();
    assert!(admin.starts_with("https://"), "{admin}");
    let status = |client: &reqwest::Client, path: &str| {
        let req = client.get(format!("{admin}{path}"));
        async move {
            req.send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| format!("{e:?}"))
        }
    };
    for (role, client) in &callers.by_role {
        let want = if *role == Role::Admin { 200 } else { 401 };
        assert_eq!(
            status(client, "/v1/cluster/status").await,
            Ok(want),
            "role {role}"
        );
    }
    assert_eq!(status(&callers.anonymous, "/v1/keys").await, Ok(401));
    assert_eq!(status(&callers.anonymous, "/metrics").await, Ok(200));
    assert!(status(&callers.foreign, "/v1/cluster/status")
        .await
        .is_err());
    // Over TLS without an admin certificate (a gateway's here), the root
    // key's signature authenticates; a wrong secret is refused.
    let pki = c.pki().unwrap();
    let not_admin = InternalTls::load(pki.gateway.clone()).unwrap();
    let signed = weft_cli::admin_client::AdminClient::new(
        &admin,
        &c.credentials().access_key,
        &c.credentials().secret_key,
    )
    .with_tls(Some(&not_admin));
    let st: serde_json::Value = signed
        .call(reqwest::Method::GET, "/v1/cluster/status", None)
        .await
        .unwrap();
    assert!(st.get("nodes").is_some(), "{st}");
    let wrong =
        weft_cli::admin_client::AdminClient::new(&admin, &c.credentials().access_key, "nope")
            .with_tls(Some(&not_admin));
    assert!(wrong
        .call::<serde_json::Value>(reqwest::Method::GET, "/v1/cluster/status", None)
        .await
        .is_err());
    tc.shutdown().await;
}

/// With a metrics token configured, `/metrics` on every port (metad, a
/// data node, the gateway's admin port) answers a caller without a
/// certificate only if it sends the token; health stays open, and a
/// cluster certificate is enough on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_metrics_token_metrics_need_it_and_health_stays_open() {
    const TOKEN: &str = "scrape-me-0123456789";
    let tc = TestCluster::start_with(|c| {
        c.metad.metrics_token = Some(TOKEN.into());
        c.datad.metrics_token = Some(TOKEN.into());
        c.gateway.metrics_token = Some(TOKEN.into());
    })
    .await;
    let c = tc.c();
    let callers = callers(&tc);
    let metad = c.metad_addrs()[0].clone();
    let datad = c.datad_addr(0).expect("running").to_string();
    let admin = c.admin_endpoint();
    let ports = [
        c.internal_url(&metad, ""),
        c.internal_url(&datad, ""),
        admin.trim_end_matches('/').to_string(),
    ];
    let get = |client: &reqwest::Client, u: String, token: Option<&str>| {
        let mut req = client.get(u);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let gateway = &callers
        .by_role
        .iter()
        .find(|(r, _)| *r == Role::Gateway)
        .unwrap()
        .1;
    for base in &ports {
        let metrics = format!("{base}/metrics");
        assert_eq!(
            get(&callers.anonymous, metrics.clone(), None).await,
            401,
            "{metrics}"
        );
        assert_eq!(
            get(
                &callers.anonymous,
                metrics.clone(),
                Some("wrong-token-000000000")
            )
            .await,
            401,
            "{metrics}"
        );
        assert_eq!(
            get(&callers.anonymous, metrics.clone(), Some(TOKEN)).await,
            200,
            "{metrics}"
        );
        assert_eq!(get(gateway, metrics.clone(), None).await, 200, "{metrics}");
        let health = format!("{base}/health");
        assert_eq!(
            get(&callers.anonymous, health.clone(), None).await,
            200,
            "{health}"
        );
    }
    tc.shutdown().await;
}

/// A data node certificate issued without a node id (before node-bound
/// certificates) is refused when it speaks for a node, unless metad is
/// told to let such certificates through for an upgrade's window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_data_node_certificate_is_refused_unless_allowed() {
    for allow in [false, true] {
        let tc = TestCluster::start_with(|c| c.metad.allow_unbound_datad_certs = allow).await;
        let c = tc.c();
        let pki_dir = tc.dir.path().join("pki");
        let ca_key = std::fs::read_to_string(pki_dir.join("ca.key")).unwrap();
        let leaf =
            weft_client::pki::issue("weft-dev", &ca_key, Role::Datad, "old-datad", &[], 1).unwrap();
        let out = tc.dir.path().join("old");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("d.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(out.join("d.key"), &leaf.key_pem).unwrap();
        let as_old = client(TlsFiles {
            cert: out.join("d.pem"),
            key: out.join("d.key"),
            ca: pki_dir.join("ca.pem"),
        });
        let metad = c.metad_addrs()[0].clone();
        let status = as_old
            .post(c.internal_url(&metad, "/v1/heartbeat"))
            .json(&serde_json::json!({ "node": 1, "used_bytes": 0 }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, if allow { 204 } else { 403 }, "allowed: {allow}");
        tc.shutdown().await;
    }
}
