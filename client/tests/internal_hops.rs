//! The internal listener and transport over real sockets: a server on
//! [`InternalListener`] learns each caller's role from its certificate;
//! certificates and trusted CAs are re-read without a restart, so a CA
//! roll goes through with both CAs trusted at once.

use axum::extract::ConnectInfo;
use axum::routing::get;
use std::path::Path;
use std::sync::Arc;
use weft_client::internal_tls::{InternalTls, TlsFiles};
use weft_client::listener::InternalListener;
use weft_client::peer::{Identified, Peer};
use weft_client::pki::{issue, new_ca, Issued, Role};
use weft_client::transport::{Http, Transport};

fn write(dir: &Path, name: &str, leaf: &Issued, trusted: &[&Issued]) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join(format!("{name}-ca.pem")),
    };
    std::fs::write(&files.cert, &leaf.cert_pem).unwrap();
    std::fs::write(&files.key, &leaf.key_pem).unwrap();
    let bundle: String = trusted.iter().map(|c| c.cert_pem.clone()).collect();
    std::fs::write(&files.ca, bundle).unwrap();
    files
}

/// Serves `/who` (the caller as the listener identified it) and `/metrics`.
async fn serve(tls: Arc<InternalTls>) -> std::net::SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = InternalListener::new(tcp, Some(tls)).unwrap();
    let app = axum::Router::new()
        .route(
            "/who",
            get(|ConnectInfo(p): ConnectInfo<Peer>| async move { format!("{:?}", p.identified) }),
        )
        .route(
            "/conn",
            get(|ConnectInfo(p): ConnectInfo<Peer>| async move { p.addr.port().to_string() }),
        )
        .route("/metrics", get(|| async { "up 1\n" }));
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
            .await
            .unwrap();
    });
    addr
}

/// `GET http://addr/who` through the transport (which sends it as https).
async fn who(http: &Http, addr: std::net::SocketAddr) -> Result<String, String> {
    let req = reqwest::Client::new()
        .get(format!("http://{addr}/who"))
        .build()
        .unwrap();
    match http.execute(req).await {
        Ok(r) => Ok(r.text().await.unwrap()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// No pooling: every request makes its own handshake, so each one
/// exercises the identity as it is at that moment.
fn client(tls: &Arc<InternalTls>) -> Http {
    Http::with_tls(
        || reqwest::Client::builder().pool_max_idle_per_host(0),
        Some(tls),
    )
}

#[tokio::test]
async fn the_server_learns_the_callers_role_and_an_anonymous_caller_only_reaches_open_paths() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("c").unwrap();
    let server_leaf = issue(
        "c",
        &ca.key_pem,
        Role::Metad,
        "m",
        &["127.0.0.1".into()],
        30,
    )
    .unwrap();
    let gw_leaf = issue("c", &ca.key_pem, Role::Gateway, "g", &[], 30).unwrap();
    let server = InternalTls::load(write(dir.path(), "server", &server_leaf, &[&ca])).unwrap();
    let gw = InternalTls::load(write(dir.path(), "gw", &gw_leaf, &[&ca])).unwrap();
    assert_eq!(server.role(), Role::Metad);
    let addr = serve(server).await;
    assert_eq!(
        who(&client(&gw), addr).await.unwrap(),
        format!("{:?}", Identified::Role(Role::Gateway))
    );
    // No certificate: the handshake completes (probes and scrapers) and
    // the server knows the caller as anonymous.
    let mut store = tokio_rustls::rustls::RootCertStore::empty();
    for c in weft_client::pki::certs_from_pem(&ca.cert_pem, "ca").unwrap() {
        store.add(c).unwrap();
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap();
    let text = anonymous
        .get(format!("https://{addr}/who"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, format!("{:?}", Identified::Anonymous));
}

#[tokio::test]
async fn a_ca_roll_with_reloads_keeps_every_caller_served_and_then_drops_the_old_ca() {
    let dir = tempfile::tempdir().unwrap();
    let old = new_ca("c").unwrap();
    let new = new_ca("c").unwrap();
    let host = ["127.0.0.1".to_string()];
    let server_files = write(
        dir.path(),
        "server",
        &issue("c", &old.key_pem, Role::Datad, "d", &host, 30).unwrap(),
        &[&old],
    );
    let caller_files = write(
        dir.path(),
        "caller",
        &issue("c", &old.key_pem, Role::Gateway, "g", &[], 30).unwrap(),
        &[&old],
    );
    let server = InternalTls::load(server_files.clone()).unwrap();
    let caller = InternalTls::load(caller_files.clone()).unwrap();
    let addr = serve(server.clone()).await;
    let http = client(&caller);
    assert!(who(&http, addr).await.is_ok());
    assert!(
        !server.reload().unwrap(),
        "nothing changed, nothing reloaded"
    );

    // Step 1: both trust old and new.
    for files in [&server_files, &caller_files] {
        let bundle = format!("{}{}", old.cert_pem, new.cert_pem);
        std::fs::write(&files.ca, bundle).unwrap();
    }
    assert!(server.reload().unwrap());
    assert!(caller.reload().unwrap());
    // Step 2: the server gets a certificate from the new CA; the caller,
    // still on the old one, is served by it.
    let leaf = issue("c", &new.key_pem, Role::Datad, "d", &host, 30).unwrap();
    std::fs::write(&server_files.key, &leaf.key_pem).unwrap();
    std::fs::write(&server_files.cert, &leaf.cert_pem).unwrap();
    assert!(server.reload().unwrap());
    assert!(who(&client(&caller), addr).await.is_ok());
    // Step 3: the caller moves to the new CA too.
    let leaf = issue("c", &new.key_pem, Role::Gateway, "g", &[], 30).unwrap();
    std::fs::write(&caller_files.key, &leaf.key_pem).unwrap();
    std::fs::write(&caller_files.cert, &leaf.cert_pem).unwrap();
    assert!(caller.reload().unwrap());
    assert!(who(&client(&caller), addr).await.is_ok());
    // The client built before the roll follows it (it reads the identity
    // at each handshake).
    assert!(who(&http, addr).await.is_ok());

    // Step 4: the old CA is dropped; a caller still holding an old
    // certificate is refused from then on.
    std::fs::write(&server_files.ca, &new.cert_pem).unwrap();
    assert!(server.reload().unwrap());
    let straggler = write(
        dir.path(),
        "straggler",
        &issue("c", &old.key_pem, Role::Gateway, "s", &[], 30).unwrap(),
        &[&old, &new],
    );
    let straggler = InternalTls::load(straggler).unwrap();
    let req = reqwest::Client::new()
        .get(format!("http://{addr}/who"))
        .build()
        .unwrap();
    let refused = client(&straggler).execute(req).await.unwrap_err();
    // Refused in the handshake: certainly not processed, so safe to retry
    // elsewhere, even though TLS 1.3 let the request be written first.
    assert!(refused.is_connect(), "{refused:?}");
    assert!(who(&client(&caller), addr).await.is_ok());
}

#[tokio::test]
async fn a_broken_reload_keeps_the_previous_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("c").unwrap();
    let leaf = issue(
        "c",
        &ca.key_pem,
        Role::Metad,
        "m",
        &["127.0.0.1".into()],
        30,
    )
    .unwrap();
    let files = write(dir.path(), "m", &leaf, &[&ca]);
    let tls = InternalTls::load(files.clone()).unwrap();
    // Half-written: a key that belongs to another certificate.
    let other = issue(
        "c",
        &ca.key_pem,
        Role::Metad,
        "m",
        &["127.0.0.1".into()],
        30,
    )
    .unwrap();
    std::fs::write(&files.key, &other.key_pem).unwrap();
    let e = tls.reload().unwrap_err();
    assert!(e.to_string().contains("does not belong"), "{e}");
    assert_eq!(tls.role(), Role::Metad);
    let caller_leaf = issue("c", &ca.key_pem, Role::Admin, "a", &[], 30).unwrap();
    let caller = InternalTls::load(write(dir.path(), "a", &caller_leaf, &[&ca])).unwrap();
    let addr = serve(tls).await;
    assert_eq!(
        who(&client(&caller), addr).await.unwrap(),
        format!("{:?}", Identified::Role(Role::Admin))
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("c").unwrap();
    let other = new_ca("c").unwrap();
    let leaf = issue("c", &other.key_pem, Role::Datad, "d", &[], 30).unwrap();
    let e = InternalTls::load(write(dir.path(), "d", &leaf, &[&ca])).unwrap_err();
    assert!(
        matches!(e, weft_client::pki::PkiError::Untrusted(_)),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_client_of_metad_refuses_a_server_holding_another_roles_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("c").unwrap();
    let host = ["127.0.0.1".to_string()];
    // A data node's certificate, answering where a metad was dialled.
    let server = issue("c", &ca.key_pem, Role::Datad, "d", &host, 30).unwrap();
    let server = InternalTls::load(write(dir.path(), "d", &server, &[&ca])).unwrap();
    let gw = issue("c", &ca.key_pem, Role::Gateway, "g", &[], 30).unwrap();
    let gw = InternalTls::load(write(dir.path(), "g", &gw, &[&ca])).unwrap();
    let addr = serve(server).await;
    let to_metad = Http::with_tls_to(reqwest::Client::builder, Some(&gw), Role::Metad);
    let e = who(&to_metad, addr).await.unwrap_err();
    assert!(e.contains("names role datad"), "{e}");
    let to_datad = Http::with_tls_to(reqwest::Client::builder, Some(&gw), Role::Datad);
    assert!(who(&to_datad, addr).await.is_ok());
}

/// Keeps its connections: one handshake, then every request on it.
fn pooled(tls: &Arc<InternalTls>) -> Http {
    Http::with_tls(
        || {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .pool_idle_timeout(std::time::Duration::from_secs(300))
        },
        Some(tls),
    )
}

#[tokio::test]
async fn dropping_a_ca_cuts_the_open_connections_of_its_certificates_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let old = new_ca("c").unwrap();
    let new = new_ca("c").unwrap();
    let host = ["127.0.0.1".to_string()];
    // Mid-roll: the server holds a new certificate and trusts both CAs.
    let server_files = write(
        dir.path(),
        "server",
        &issue("c", &new.key_pem, Role::Datad, "d", &host, 30).unwrap(),
        &[&old, &new],
    );
    let server = InternalTls::load(server_files.clone()).unwrap();
    let addr = serve(server.clone()).await;
    let straggler = InternalTls::load(write(
        dir.path(),
        "straggler",
        &issue("c", &old.key_pem, Role::Gateway, "s", &[], 30).unwrap(),
        &[&old, &new],
    ))
    .unwrap();
    let rolled = InternalTls::load(write(
        dir.path(),
        "rolled",
        &issue("c", &new.key_pem, Role::Gateway, "g", &[], 30).unwrap(),
        &[&old, &new],
    ))
    .unwrap();
    let (stale, fresh) = (pooled(&straggler), pooled(&rolled));
    // Both served, each over a connection its client keeps.
    assert!(who(&stale, addr).await.is_ok());
    assert!(who(&fresh, addr).await.is_ok());
    // And one connection by hand, which then sits idle.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(straggler.client_config()));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut idle = connector
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    idle.write_all(b"GET /who HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The old CA is dropped. Without the re-check the straggler's open
    // connections would go on serving it.
    std::fs::write(&server_files.ca, &new.cert_pem).unwrap();
    assert!(server.reload().unwrap());
    // The idle one is closed by the server without another request (a
    // pooled client sees that before it sends on it).
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), idle.read(&mut buf))
        .await
        .expect("the idle connection of an untrusted certificate is closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let cut = who(&stale, addr).await;
    assert!(
        cut.is_err(),
        "an old-CA certificate was still served: {cut:?}"
    );
    // A caller the new trust accepts keeps being served.
    assert!(who(&fresh, addr).await.is_ok());
    assert!(who(&fresh, addr).await.is_ok());
}

#[tokio::test]
async fn when_handshakes_crowd_one_address_holds_only_its_share() {
    use weft_client::listener::{HANDSHAKES_MAX, HANDSHAKES_PER_ADDR_MAX};
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("c").unwrap();
    let host = ["127.0.0.1".to_string()];
    let server = InternalTls::load(write(
        dir.path(),
        "server",
        &issue("c", &ca.key_pem, Role::Datad, "d", &host, 30).unwrap(),
        &[&ca],
    ))
    .unwrap();
    let addr = serve(server).await;
    let silent_from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
        socket.connect(addr).await.unwrap()
    };
    let still_pending = |held: &[tokio::net::TcpStream], who: &str| {
        let mut buf = [0u8; 1];
        for s in held {
            match s.try_read(&mut buf) {
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{who}"),
                Ok(n) => panic!("{who}: a pending handshake was closed early ({n} bytes)"),
            }
        }
    };
    // Connections that never start their handshake. Below half of the
    // slots one address is not held back: 100 from one, then enough from
    // another to pass half.
    let mut busy = Vec::new();
    for _ in 0..100 {
        busy.push(silent_from([127, 0, 0, 3]).await);
    }
    for _ in 100..=HANDSHAKES_MAX / 2 {
        busy.push(silent_from([127, 0, 0, 4]).await);
    }
    // Now crowded: the address holding 100 gets no more...
    let mut extra = silent_from([127, 0, 0, 3]).await;
    assert_eq!(closed(&mut extra).await, 0);
    // ...another address gets its share, and not one more.
    let mut held = Vec::new();
    for _ in 0..HANDSHAKES_PER_ADDR_MAX {
        held.push(silent_from([127, 0, 0, 2]).await);
    }
    let mut extra = silent_from([127, 0, 0, 2]).await;
    assert_eq!(closed(&mut extra).await, 0);
    // Every connection let in is still waiting for its handshake (closed
    // only by its deadline), the first 100 included.
    still_pending(&busy, "a connection made before the slots crowded");
    still_pending(&held, "a connection within its address's share");
}

/// Reads `s` until the server closes it (0), under a generous deadline.
async fn closed(s: &mut tokio::net::TcpStream) -> usize {
    let mut buf = [0u8; 1];
    tokio::time::timeout(
        weft_client::listener::HANDSHAKE_TIMEOUT * 4,
        tokio::io::AsyncReadExt::read(s, &mut buf),
    )
    .await
    .expect("the extra connection is closed")
    .unwrap_or(0)
}

#[tokio::test]
async fn a_client_opens_new_connections_once_its_own_certificate_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let old = new_ca("c").unwrap();
    let new = new_ca("c").unwrap();
    let host = ["127.0.0.1".to_string()];
    let server = InternalTls::load(write(
        dir.path(),
        "server",
        &issue("c", &old.key_pem, Role::Datad, "d", &host, 30).unwrap(),
        &[&old, &new],
    ))
    .unwrap();
    let addr = serve(server).await;
    let caller_files = write(
        dir.path(),
        "caller",
        &issue("c", &old.key_pem, Role::Gateway, "g", &[], 30).unwrap(),
        &[&old, &new],
    );
    let caller = InternalTls::load(caller_files.clone()).unwrap();
    let http = pooled(&caller);
    let conn = |http: &Http| {
        let req = reqwest::Client::new()
            .get(format!("http://{addr}/conn"))
            .build()
            .unwrap();
        let fut = http.execute(req);
        async move { fut.await.unwrap().text().await.unwrap() }
    };
    let first = conn(&http).await;
    assert_eq!(conn(&http).await, first, "the pooled connection is reused");
    // The caller's certificate is re-issued (step 2 of a CA roll).
    let leaf = issue("c", &new.key_pem, Role::Gateway, "g", &[], 30).unwrap();
    std::fs::write(&caller_files.key, &leaf.key_pem).unwrap();
    std::fs::write(&caller_files.cert, &leaf.cert_pem).unwrap();
    assert!(caller.reload().unwrap());
    // The next request goes over a new connection, with the new certificate.
    let after = conn(&http).await;
    assert_ne!(
        after, first,
        "a connection made with the old certificate was reused"
    );
    assert_eq!(conn(&http).await, after);
}
