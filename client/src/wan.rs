//! An emulated wide-area network on one machine: a [`Transport`] decorator
//! that makes a request between two zones pay what crossing a WAN costs.
//!
//! This kernel has no netem, so latency cannot come from `tc`; and the point
//! of zones is lost on a laptop where every hop is loopback. The decorator
//! sits at the one seam every internal request goes through, so the same
//! gateway, data node and read path run unchanged, and only the cost of a
//! hop changes:
//!
//! - a request to another zone waits the configured round trip before it is
//!   sent;
//! - bytes crossing between two zones (response bodies, and request bodies
//!   of known length; a streamed request body, a shard PUT, is not yet
//!   throttled) share a token bucket per (this zone, that zone) pair, so a
//!   transfer takes at least `bytes / bandwidth`;
//! - any one peer can be given an extra delay at run time
//!   ([`WanHandle::slow_down`]): a slow node, for hedging tests.
//!
//! Inside one zone nothing is added. A destination whose zone is unknown
//! (metad voters, which have no zone, or a node not yet in the map) counts
//! as inside this zone: the emulation never invents a cost it cannot place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use crate::transport::{SharedTransport, Transport, TransportFuture};

/// Finds the zone of a request's destination (`host:port`).
pub trait ZoneOf: Send + Sync + std::fmt::Debug + 'static {
    /// The zone `authority` is in, if known.
    fn zone_of(&self, authority: &str) -> Option<String>;
}

/// What crossing between zones costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WanSettings {
    /// Round trip added to every request between two zones, in ms.
    pub latency_ms: u64,
    /// Bytes per second between each pair of zones, each direction (0:
    /// unlimited).
    pub bandwidth_bytes_per_s: u64,
}

impl WanSettings {
    /// Whether the emulation adds anything.
    pub fn is_active(&self) -> bool {
        self.latency_ms > 0 || self.bandwidth_bytes_per_s > 0
    }
}

/// A token bucket of bytes: a transfer of `n` bytes reserves them and waits
/// until the bucket would have refilled that far. Reservations queue in
/// order, so concurrent transfers share the link instead of each getting
/// all of it.
#[derive(Debug)]
struct Link {
    bytes_per_s: u64,
    /// When the link is next free.
    free_at: Mutex<Instant>,
}

impl Link {
    fn new(bytes_per_s: u64) -> Link {
        Link {
            bytes_per_s,
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// Reserves `n` bytes of the link: the instant the last of them has
    /// crossed.
    fn reserve(&self, n: u64) -> Instant {
        let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_s as f64);
        let mut free_at = self.free_at.lock().expect("link lock");
        let start = (*free_at).max(Instant::now());
        *free_at = start + cost;
        *free_at
    }
}

/// Run-time controls of a [`Wan`], shared with whoever built it.
#[derive(Clone, Debug, Default)]
pub struct WanHandle {
    extra: Arc<RwLock<HashMap<String, Duration>>>,
}

impl WanHandle {
    /// Every request to `authority` waits `delay` more before it is sent (a
    /// slow node); `Duration::ZERO` removes it.
    pub fn slow_down(&self, authority: &str, delay: Duration) {
        let mut extra = self.extra.write().expect("wan lock");
        if delay.is_zero() {
            extra.remove(authority);
        } else {
            extra.insert(authority.to_string(), delay);
        }
    }

    fn extra_for(&self, authority: &str) -> Option<Duration> {
        self.extra.read().expect("wan lock").get(authority).copied()
    }
}

/// The decorator: `inner` sends; this adds the WAN's cost first.
#[derive(Debug)]
pub struct Wan {
    inner: SharedTransport,
    zone: String,
    zones: Arc<dyn ZoneOf>,
    settings: WanSettings,
    links: Mutex<HashMap<String, Arc<Link>>>,
    handle: WanHandle,
}

impl Wan {
    /// Requests from a process in `zone` go through `inner`, costed by
    /// `settings` when `zones` places their destination in another zone.
    pub fn new(
        inner: SharedTransport,
        zone: impl Into<String>,
        zones: Arc<dyn ZoneOf>,
        settings: WanSettings,
        handle: WanHandle,
    ) -> Wan {
        Wan {
            inner,
            zone: zone.into(),
            zones,
            settings,
            links: Mutex::new(HashMap::new()),
            handle,
        }
    }

    /// `inner`, decorated.
    pub fn wrap(
        inner: SharedTransport,
        zone: &str,
        zones: Arc<dyn ZoneOf>,
        settings: WanSettings,
        handle: WanHandle,
    ) -> SharedTransport {
        Arc::new(Wan::new(inner, zone, zones, settings, handle))
    }

    /// The link to `zone`, when bandwidth is limited.
    fn link(&self, zone: &str) -> Option<Arc<Link>> {
        if self.settings.bandwidth_bytes_per_s == 0 {
            return None;
        }
        let mut links = self.links.lock().expect("wan lock");
        Some(
            links
                .entry(zone.to_string())
                .or_insert_with(|| Arc::new(Link::new(self.settings.bandwidth_bytes_per_s)))
                .clone(),
        )
    }
}

fn authority(request: &reqwest::Request) -> String {
    let url = request.url();
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

impl Transport for Wan {
    fn execute(&self, request: reqwest::Request) -> TransportFuture {
        let to = authority(&request);
        let extra = self.handle.extra_for(&to);
        let remote = self.zones.zone_of(&to).filter(|z| *z != self.zone);
        let latency = match &remote {
            Some(_) => Duration::from_millis(self.settings.latency_ms),
            None => Duration::ZERO,
        };
        let link = remote.as_deref().and_then(|z| self.link(z));
        let sent = request
            .body()
            .and_then(|b| b.as_bytes())
            .map_or(0, |b| b.len() as u64);
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut wait = latency + extra.unwrap_or_default();
            if let (Some(link), true) = (&link, sent > 0) {
                let done = link.reserve(sent);
                wait = wait.max(done.saturating_duration_since(Instant::now()));
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let response = inner.execute(request).await?;
            let Some(link) = link else {
                return Ok(response);
            };
            // The response body crosses the link too, chunk by chunk.
            let response: http::Response<reqwest::Body> = response.into();
            let (head, body) = response.into_parts();
            let throttled = http_body_util_stream(body).then(move |chunk| {
                let link = link.clone();
                async move {
                    if let Ok(bytes) = &chunk {
                        tokio::time::sleep_until(link.reserve(bytes.len() as u64)).await;
                    }
                    chunk
                }
            });
            Ok(reqwest::Response::from(http::Response::from_parts(
                head,
                reqwest::Body::wrap_stream(throttled),
            )))
        })
    }
}

/// A response body as a stream of its data chunks.
fn http_body_util_stream(
    body: reqwest::Body,
) -> impl futures::Stream<Item = Result<Bytes, reqwest::Error>> + Send {
    // reqwest's Response is the one place that turns a Body back into a
    // chunk stream without another dependency.
    reqwest::Response::from(http::Response::new(body)).bytes_stream()
}

/// A fixed table of zones by `host:port`: tests, and processes whose peers
/// are known from configuration.
#[derive(Debug, Default)]
pub struct StaticZones(pub RwLock<HashMap<String, String>>);

impl ZoneOf for StaticZones {
    fn zone_of(&self, authority: &str) -> Option<String> {
        self.0.read().expect("zones lock").get(authority).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;

    /// Answers every request at once with `len` bytes, counting requests.
    #[derive(Debug)]
    struct Echo {
        len: usize,
    }

    impl Transport for Echo {
        fn execute(&self, _request: reqwest::Request) -> TransportFuture {
            let body = Bytes::from(vec![7u8; self.len]);
            Box::pin(async move {
                Ok::<_, TransportError>(reqwest::Response::from(http::Response::new(
                    reqwest::Body::from(body),
                )))
            })
        }
    }

    fn wan(settings: WanSettings, len: usize) -> (Wan, WanHandle) {
        let zones = StaticZones::default();
        zones
            .0
            .write()
            .unwrap()
            .insert("10.0.0.2:80".into(), "b".into());
        zones
            .0
            .write()
            .unwrap()
            .insert("10.0.0.1:80".into(), "a".into());
        let handle = WanHandle::default();
        (
            Wan::new(
                Arc::new(Echo { len }),
                "a",
                Arc::new(zones),
                settings,
                handle.clone(),
            ),
            handle,
        )
    }

    async fn get(wan: &Wan, url: &str) -> (Duration, usize) {
        let start = Instant::now();
        let request = reqwest::Client::new().get(url).build().unwrap();
        let body = wan.execute(request).await.unwrap().bytes().await.unwrap();
        (start.elapsed(), body.len())
    }

    #[tokio::test(start_paused = true)]
    async fn only_requests_to_another_zone_pay_the_round_trip() {
        let (wan, _) = wan(
            WanSettings {
                latency_ms: 20,
                bandwidth_bytes_per_s: 0,
            },
            10,
        );
        let (local, _) = get(&wan, "http://10.0.0.1:80/x").await;
        let (remote, n) = get(&wan, "http://10.0.0.2:80/x").await;
        let (unknown, _) = get(&wan, "http://10.0.0.9:80/x").await;
        assert_eq!(local, Duration::ZERO);
        assert_eq!(unknown, Duration::ZERO, "an unplaced peer costs nothing");
        assert_eq!(remote, Duration::from_millis(20));
        assert_eq!(n, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_between_zones_share_the_pair_bandwidth() {
        // 1 MB at 1 MB/s takes a second; two at once take two between them.
        let (wan, _) = wan(
            WanSettings {
                latency_ms: 0,
                bandwidth_bytes_per_s: 1_000_000,
            },
            1_000_000,
        );
        let (one, n) = get(&wan, "http://10.0.0.2:80/x").await;
        assert_eq!(n, 1_000_000);
        assert!(one >= Duration::from_secs(1), "{one:?}");
        let start = Instant::now();
        let (a, b) = tokio::join!(
            get(&wan, "http://10.0.0.2:80/x"),
            get(&wan, "http://10.0.0.2:80/y")
        );
        assert_eq!((a.1, b.1), (1_000_000, 1_000_000));
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let (local, _) = get(&wan, "http://10.0.0.1:80/x").await;
        assert_eq!(local, Duration::ZERO, "inside a zone is unlimited");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slowed_peer_waits_its_extra_delay_until_it_is_removed() {
        let (wan, handle) = wan(WanSettings::default(), 1);
        handle.slow_down("10.0.0.1:80", Duration::from_millis(500));
        assert_eq!(
            get(&wan, "http://10.0.0.1:80/x").await.0,
            Duration::from_millis(500)
        );
        handle.slow_down("10.0.0.1:80", Duration::ZERO);
        assert_eq!(get(&wan, "http://10.0.0.1:80/x").await.0, Duration::ZERO);
    }
}
