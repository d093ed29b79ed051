//! A TCP proxy in front of a data node that can stall mid-stream: the fault
//! hook for deadline tests. It forwards bytes faithfully until told to stall;
//! then, on every connection (pooled ones included), it forwards a number of
//! bytes in one direction counted from the change and then nothing, keeping
//! the sockets open, so the peer sees a node that accepted, answered part way
//! and went silent: no reset, no close.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the proxy does from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward the first `after` bytes of each response, then nothing.
    StallResponses { after: u64 },
    /// Forward the first `after` bytes of each request, then nothing.
    StallRequests { after: u64 },
}

/// A running proxy; stops when dropped.
pub struct StallProxy {
    addr: std::net::SocketAddr,
    mode: Arc<Mutex<(Mode, u64)>>,
    stalled: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl StallProxy {
    /// A proxy on a free loopback port forwarding to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(Mutex::new((Mode::Pass, 0u64)));
        let stalled = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let (m, st, c) = (mode.clone(), stalled.clone(), cancel.clone());
        let acc = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = c.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let (m, st, c) = (m.clone(), st.clone(), c.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = pump(cr, sw, Direction::Requests, m.clone(), st.clone());
                    let down = pump(sr, cw, Direction::Responses, m, st);
                    tokio::select! {
                        _ = c.cancelled() => {}
                        _ = async { tokio::join!(up, down) } => {}
                    }
                });
            }
        });
        StallProxy {
            addr,
            mode,
            stalled,
            accepted,
            cancel,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The address to advertise in place of the node's own.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Sets what happens from now on, on every connection.
    pub fn set_mode(&self, mode: Mode) {
        let mut m = self.mode.lock().unwrap();
        *m = (mode, m.1 + 1);
    }

    /// Connections that reached their stall point so far.
    pub fn stalled(&self) -> u64 {
        self.stalled.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Requests,
    Responses,
}

/// Copies `from` to `to`. While the mode stalls this direction, forwards at
/// most its `after` bytes counted from the mode change, then holds both
/// sockets open forwarding nothing until the proxy is cancelled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    direction: Direction,
    mode: Arc<Mutex<(Mode, u64)>>,
    stalled: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut epoch = 0u64;
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let (m, e) = *mode.lock().unwrap();
        if e != epoch {
            epoch = e;
            sent = 0;
        }
        let limit = match (m, direction) {
            (Mode::StallRequests { after }, Direction::Requests)
            | (Mode::StallResponses { after }, Direction::Responses) => Some(after),
            _ => None,
        };
        let allowed = limit.map_or(n, |l| (l.saturating_sub(sent) as usize).min(n));
        if to.write_all(&buf[..allowed]).await.is_err() {
            return;
        }
        sent += allowed as u64;
        if allowed < n || limit.is_some_and(|l| sent >= l) {
            stalled.fetch_add(1, Ordering::SeqCst);
            // Silent from here on: keep `from` and `to` alive, forward nothing.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
    }
}
