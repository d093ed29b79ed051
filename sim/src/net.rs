//! The simulated network: every internal request of the simulated cluster
//! goes through here, to an in-process router, under faults drawn from the
//! seed.
//!
//! Each process gets its own [`Endpoint`] (a [`Transport`]) so the network
//! knows who sends, and partitions can cut one pair of processes. What the
//! network can do to a request, each with its own probability:
//!
//! - delay it, and delay its response (up to `max_delay`), which also
//!   reorders requests that overlap;
//! - lose it before delivery (the caller sees no answer until its
//!   deadline: the request had no effect, but the caller cannot know);
//! - deliver it and lose the response (the request took effect and the
//!   caller cannot know: the case that finds retry bugs); half of the lost
//!   responses show as silence until the caller's timeout, half as a reset
//!   connection at once (as when a server dies after applying), after
//!   which a caller retries while the first attempt is fresh;
//! - deliver it twice (the copy arrives later; its answer goes nowhere).
//!
//! A process that is down, or cut off by a partition, refuses connections:
//! the caller learns at once that nothing was sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use weft_client::transport::{Transport, TransportError, TransportFuture};

/// Probabilities and bounds of network faults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetFaults {
    /// Chance a request is lost before delivery.
    pub loss: f64,
    /// Chance a delivered request's response is lost.
    pub response_loss: f64,
    /// Chance a request is delivered a second time.
    pub duplicate: f64,
    /// Upper bound of each added delay (request, response, duplicate).
    pub max_delay: Duration,
}

impl NetFaults {
    /// A perfect network: no loss, no duplicates, no delay.
    pub const NONE: NetFaults = NetFaults {
        loss: 0.0,
        response_loss: 0.0,
        duplicate: 0.0,
        max_delay: Duration::ZERO,
    };
}

/// What the network did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Requests delivered to a router.
    pub delivered: u64,
    /// Requests lost before delivery.
    pub lost: u64,
    /// Responses lost after delivery.
    pub responses_lost: u64,
    /// Extra deliveries.
    pub duplicated: u64,
    /// Refused: the target was down or partitioned away.
    pub refused: u64,
}

/// What answers at an address: an axum router, or the gateway's S3
/// service, behind one signature.
pub type Handler = Arc<
    dyn Fn(
            http::Request<axum::body::Body>,
        ) -> futures::future::BoxFuture<'static, http::Response<axum::body::Body>>
        + Send
        + Sync,
>;

struct State {
    /// What answers at each address, and the token that fires when that
    /// process dies (its requests in flight die with it).
    routers: BTreeMap<String, (Handler, CancellationToken)>,
    /// Unordered pairs of addresses that cannot reach each other.
    cut: BTreeSet<(String, String)>,
    faults: NetFaults,
    rng: StdRng,
    stats: NetStats,
}

/// The network all simulated processes share.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimNet")
    }
}

/// What to do with one request, drawn when it is sent.
struct Fate {
    delay: Duration,
    lose: bool,
    lose_response: bool,
    /// A lost response shows as a reset connection at once, not as
    /// silence until the caller's timeout.
    reset: bool,
    duplicate_after: Option<Duration>,
    response_delay: Duration,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl SimNet {
    /// A network whose faults are drawn from `seed`.
    pub fn new(seed: u64) -> SimNet {
        SimNet {
            state: Arc::new(Mutex::new(State {
                routers: BTreeMap::new(),
                cut: BTreeSet::new(),
                faults: NetFaults::NONE,
                rng: StdRng::seed_from_u64(seed),
                stats: NetStats::default(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("sim net lock")
    }

    /// A transport for the process at `from`.
    pub fn endpoint(&self, from: &str) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            net: self.clone(),
            from: from.to_string(),
        })
    }

    /// Makes `router` answer at `addr` (a process started).
    pub fn serve(&self, addr: &str, router: axum::Router) {
        let handler: Handler = Arc::new(move |mut req: axum::extract::Request| {
            let router = router.clone();
            // In process nothing authenticates the caller; the servers'
            // role checks let such calls through (they see plain HTTP).
            req.extensions_mut().insert(axum::extract::ConnectInfo(
                weft_client::peer::Peer::in_process(),
            ));
            Box::pin(async move {
                match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            })
        });
        self.serve_handler(addr, handler);
    }

    /// Makes `handler` answer at `addr`.
    pub fn serve_handler(&self, addr: &str, handler: Handler) {
        let old = self
            .lock()
            .routers
            .insert(addr.to_string(), (handler, CancellationToken::new()));
        if let Some((_, died)) = old {
            died.cancel();
        }
    }

    /// Nothing answers at `addr` any more (the process died), and the
    /// requests it was handling are dropped mid-way.
    pub fn unserve(&self, addr: &str) {
        let old = self.lock().routers.remove(addr);
        if let Some((_, died)) = old {
            died.cancel();
        }
    }

    /// Cuts `a` off from `b` (both ways).
    pub fn cut(&self, a: &str, b: &str) {
        self.lock().cut.insert(pair(a, b));
    }

    /// Removes every cut.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Sets the fault probabilities.
    pub fn set_faults(&self, faults: NetFaults) {
        self.lock().faults = faults;
    }

    /// The fault probabilities now.
    pub fn faults(&self) -> NetFaults {
        self.lock().faults
    }

    /// What the network has done so far.
    pub fn stats(&self) -> NetStats {
        self.lock().stats
    }

    fn fate(&self) -> Fate {
        let mut s = self.lock();
        let f = s.faults;
        let max = f.max_delay.as_micros() as u64;
        let mut delay = || {
            Duration::from_micros(if max == 0 {
                0
            } else {
                s.rng.gen_range(0..=max)
            })
        };
        let (d1, d2, d3) = (delay(), delay(), delay());
        let lose = s.rng.gen_bool(f.loss);
        let lose_response = s.rng.gen_bool(f.response_loss);
        let reset = lose_response && s.rng.gen_bool(0.5);
        let duplicate = s.rng.gen_bool(f.duplicate);
        Fate {
            delay: d1,
            lose,
            lose_response,
            reset,
            duplicate_after: duplicate.then_some(d1 + d3),
            response_delay: d2,
        }
    }

    /// The router at `to` if `from` can reach it; counts a refusal if not.
    fn route(&self, from: &str, to: &str) -> Option<(Handler, CancellationToken)> {
        let mut s = self.lock();
        let reachable = !s.cut.contains(&pair(from, to));
        match s.routers.get(to).filter(|_| reachable).cloned() {
            Some(r) => Some(r),
            None => {
                s.stats.refused += 1;
                None
            }
        }
    }

    fn connected(&self, a: &str, b: &str) -> bool {
        !self.lock().cut.contains(&pair(a, b))
    }

    fn count(&self, f: impl FnOnce(&mut NetStats)) {
        f(&mut self.lock().stats)
    }
}

/// One process's view of the network.
#[derive(Debug)]
pub struct Endpoint {
    net: SimNet,
    from: String,
}

/// Default deadline of a request that sets none (reqwest's clients here
/// always set one).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

fn to_axum(parts: &http::request::Parts, body: Bytes) -> http::Request<axum::body::Body> {
    let mut req = http::Request::new(axum::body::Body::from(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    req
}

impl Transport for Endpoint {
    fn execute(&self, request: reqwest::Request) -> TransportFuture {
        let net = self.net.clone();
        let from = self.from.clone();
        let to = match request.url().port() {
            Some(p) => format!("{}:{p}", request.url().host_str().unwrap_or_default()),
            None => request.url().host_str().unwrap_or_default().to_string(),
        };
        let timeout = request.timeout().copied().unwrap_or(DEFAULT_TIMEOUT);
        Box::pin(async move {
            // A whole body (JSON) can be delivered twice; a streamed one
            // (shard bytes) is delivered once, as it streams.
            let whole = match request.body().map(|b| b.as_bytes()) {
                None => Some(Bytes::new()),
                Some(Some(b)) => Some(Bytes::copy_from_slice(b)),
                Some(None) => None,
            };
            let http_req: http::Request<reqwest::Body> = request
                .try_into()
                .map_err(|e: reqwest::Error| TransportError::NotSent(e.to_string()))?;
            let (mut parts, stream) = http_req.into_parts();
            // What hyper adds on a real connection: the Host header, and
            // the length of a whole body.
            if !parts.headers.contains_key(http::header::HOST) {
                if let Ok(v) = http::HeaderValue::from_str(&to) {
                    parts.headers.insert(http::header::HOST, v);
                }
            }
            let mut stream = whole.is_none().then_some(stream);
            if let Some(b) = &whole {
                if !b.is_empty() || parts.method != http::Method::GET {
                    parts
                        .headers
                        .entry(http::header::CONTENT_LENGTH)
                        .or_insert(http::HeaderValue::from(b.len()));
                }
            }
            let body = whole.unwrap_or_default();
            let mut fate = net.fate();
            if stream.is_some() {
                fate.duplicate_after = None;
            }
            let deliver = async {
                if net.route(&from, &to).is_none() {
                    return Err(TransportError::NotSent(format!(
                        "{to} refused the connection"
                    )));
                }
                tokio::time::sleep(fate.delay).await;
                if let Some(after) = fate.duplicate_after {
                    let (net, from, to) = (net.clone(), from.clone(), to.clone());
                    let copy = to_axum(&parts, body.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        if let Some((handler, died)) = net.route(&from, &to) {
                            net.count(|s| s.duplicated += 1);
                            let handled = async move { handler(copy).await };
                            tokio::select! {
                                biased;
                                _ = died.cancelled() => {}
                                _ = handled => {}
                            }
                        }
                    });
                }
                if fate.lose {
                    net.count(|s| s.lost += 1);
                    return std::future::pending().await;
                }
                // Looked up again: the process may have died meanwhile.
                let Some((handler, died)) = net.route(&from, &to) else {
                    return Err(TransportError::Lost(format!("{to} went away")));
                };
                net.count(|s| s.delivered += 1);
                let mut req = to_axum(&parts, body.clone());
                if let Some(stream) = stream.take() {
                    *req.body_mut() = axum::body::Body::new(stream);
                }
                // Whole responses: the head and body arrive together, so a
                // lost response loses both.
                // The handler (which holds the process's state) is dropped
                // here, not kept alive while the response is delayed or lost:
                // a dead process's files must close when it dies.
                let handled = async move {
                    let (head, body) = handler(req).await.into_parts();
                    axum::body::to_bytes(body, usize::MAX)
                        .await
                        .map(|bytes| (head, bytes))
                        .map_err(|e| TransportError::Lost(e.to_string()))
                };
                let (head, bytes) = tokio::select! {
                    biased;
                    _ = died.cancelled() => {
                        return Err(TransportError::Lost(format!("{to} died while handling the request")));
                    }
                    r = handled => r?,
                };
                drop(died);
                tokio::time::sleep(fate.response_delay).await;
                if fate.lose_response {
                    net.count(|s| s.responses_lost += 1);
                    if fate.reset {
                        return Err(TransportError::Lost(format!(
                            "{to} reset the connection before its answer arrived"
                        )));
                    }
                    return std::future::pending().await;
                }
                if !net.connected(&to, &from) {
                    return Err(TransportError::Lost(format!(
                        "{to} was cut off before it answered"
                    )));
                }
                Ok(reqwest::Response::from(http::Response::from_parts(
                    head,
                    reqwest::Body::from(bytes),
                )))
            };
            match tokio::time::timeout(timeout, deliver).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::TimedOut(timeout)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn counting_router(hits: Arc<AtomicU32>) -> axum::Router {
        axum::Router::new().route(
            "/x",
            axum::routing::post(move || {
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "done"
                }
            }),
        )
    }

    fn request(timeout: Duration) -> reqwest::Request {
        reqwest::Client::new()
            .post("http://127.0.1.9:7000/x")
            .timeout(timeout)
            .body("b")
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_response_leaves_the_request_applied_and_the_caller_without_an_answer() {
        let net = SimNet::new(1);
        let hits = Arc::new(AtomicU32::new(0));
        net.serve("127.0.1.9:7000", counting_router(hits.clone()));
        net.set_faults(NetFaults {
            response_loss: 1.0,
            ..NetFaults::NONE
        });
        let e = net
            .endpoint("127.0.2.1:1")
            .execute(request(Duration::from_secs(2)))
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(net.stats().responses_lost, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_or_a_dead_process_refuses_before_anything_is_delivered() {
        let net = SimNet::new(1);
        let hits = Arc::new(AtomicU32::new(0));
        net.serve("127.0.1.9:7000", counting_router(hits.clone()));
        let ep = net.endpoint("127.0.2.1:1");
        net.cut("127.0.2.1:1", "127.0.1.9:7000");
        assert!(ep
            .execute(request(Duration::from_secs(2)))
            .await
            .unwrap_err()
            .is_connect());
        net.heal();
        let ok = ep.execute(request(Duration::from_secs(2))).await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "done");
        net.unserve("127.0.1.9:7000");
        assert!(ep
            .execute(request(Duration::from_secs(2)))
            .await
            .unwrap_err()
            .is_connect());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_duplicated_request_is_applied_twice_and_its_caller_gets_one_answer() {
        let net = SimNet::new(1);
        let hits = Arc::new(AtomicU32::new(0));
        net.serve("127.0.1.9:7000", counting_router(hits.clone()));
        net.set_faults(NetFaults {
            duplicate: 1.0,
            max_delay: Duration::from_millis(10),
            ..NetFaults::NONE
        });
        let ok = net
            .endpoint("127.0.2.1:1")
            .execute(request(Duration::from_secs(2)))
            .await
            .unwrap();
        assert_eq!(ok.text().await.unwrap(), "done");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }
}
