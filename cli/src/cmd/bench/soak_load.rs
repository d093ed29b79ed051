//! The load of `weft bench soak`: clients that check every answer against
//! what they wrote, and the periodic delete bursts.

use crate::args::SoakArgs;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SMALL: usize = 4 << 10;
const LARGE: usize = 1 << 20;
/// Live objects per client: bounds the data set, so disk use stays flat and
/// any growth measured is not the data's.
const SMALL_PER_CLIENT: usize = 150;
const LARGE_PER_CLIENT: usize = 2;

// ---- S3 requests ---------------------------------------------------------------

/// The shared S3 signer (`weft_client::s3`) with the root key, and the
/// bucket; every client signs with it over its own pool.
pub(crate) struct S3 {
    pub(crate) signer: weft_client::s3::Signer,
    pub(crate) bucket: String,
}

impl S3 {
    pub(crate) fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("static client settings")
    }

    pub(crate) fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        key: Option<&str>,
        query: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let path = match key {
            Some(k) => format!("/{}/{k}", self.bucket),
            None => format!("/{}", self.bucket),
        };
        self.signer
            .sign(http, method.as_str(), &path, query, &[], "UNSIGNED-PAYLOAD")
            .expect("a known method")
            .builder
    }
}

/// Distinct, checkable content for every (seed, length).
fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

// ---- outcome counting ----------------------------------------------------------

#[derive(Clone, Copy)]
enum Op {
    PutSmall,
    PutLarge,
    Get,
    List,
    Delete,
    BurstPut,
    BurstDelete,
}
pub(crate) const OPS: [&str; 7] = [
    "put_4k",
    "put_1m",
    "get",
    "list",
    "delete",
    "burst_put",
    "burst_delete",
];

#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    Error,
    Wrong,
}

#[derive(Default)]
pub(crate) struct Stats {
    counts: [[AtomicU64; 3]; 7],
    latencies_us: Mutex<Vec<u32>>,
    /// The first few errors and every wrong answer, to print at the end.
    pub(crate) notes: Mutex<Vec<String>>,
}

pub(crate) type Counts = [[u64; 3]; 7];

impl Stats {
    fn record(&self, op: Op, outcome: Outcome, t0: Instant, note: impl FnOnce() -> String) {
        self.counts[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.latencies_us.lock().expect("latency lock").push(us);
        if !matches!(outcome, Outcome::Ok) {
            let mut notes = self.notes.lock().expect("notes lock");
            let wrong = matches!(outcome, Outcome::Wrong);
            if wrong || notes.len() < 20 {
                let n = note();
                if wrong {
                    eprintln!("WRONG ANSWER: {} {n}", OPS[op as usize]);
                }
                notes.push(format!(
                    "{} {}: {n}",
                    if wrong { "wrong" } else { "error" },
                    OPS[op as usize]
                ));
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Counts {
        let mut c = [[0; 3]; 7];
        for (op, row) in self.counts.iter().enumerate() {
            for (o, v) in row.iter().enumerate() {
                c[op][o] = v.load(Ordering::Relaxed);
            }
        }
        c
    }

    /// p99 of the requests finished since the last call, ms.
    pub(crate) fn take_p99_ms(&self) -> Option<f64> {
        let mut lat = std::mem::take(&mut *self.latencies_us.lock().expect("latency lock"));
        if lat.is_empty() {
            return None;
        }
        lat.sort_unstable();
        Some(lat[((lat.len() - 1) as f64 * 0.99).round() as usize] as f64 / 1000.0)
    }
}

pub(crate) fn totals(c: &Counts) -> [u64; 3] {
    let mut t = [0; 3];
    for row in c {
        for (o, v) in row.iter().enumerate() {
            t[o] += v;
        }
    }
    t
}

// ---- the workload --------------------------------------------------------------

/// One client: PUTs (4 KiB and 1 MiB, new keys and overwrites), GETs that
/// check every byte, LISTs that must show exactly the keys it owns, and
/// DELETEs. Each client owns its key prefix, so what it should see is known
/// without coordination: a 404 for a key it wrote, different bytes, or a
/// listing that differs is a wrong answer, not an error.
pub(crate) async fn client_loop(id: usize, s3: Arc<S3>, stats: Arc<Stats>, deadline: Instant) {
    let http = S3::client();
    let prefix = format!("c{id:03}/");
    // key -> (seed, length) of what it holds now.
    let mut live: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    // Keys whose last write failed: either version may be there.
    let mut uncertain: HashSet<String> = HashSet::new();
    let mut rng = Rng((id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let roll = rng.below(100);
        let (small, large) =
            live.iter().fold(
                (0, 0),
                |(s, l), (_, v)| {
                    if v.1 == SMALL {
                        (s + 1, l)
                    } else {
                        (s, l + 1)
                    }
                },
            );
        let pick = |rng: &mut Rng, len: Option<usize>| -> Option<String> {
            let keys: Vec<&String> = live
                .iter()
                .filter(|(_, v)| len.is_none_or(|l| v.1 == l))
                .map(|(k, _)| k)
                .collect();
            (!keys.is_empty()).then(|| keys[rng.below(keys.len())].clone())
        };
        seq += 1;
        let seed = ((id as u64) << 40) | seq;
        if roll < 30 || (roll >= 34 && live.is_empty()) {
            let key = if small < SMALL_PER_CLIENT {
                format!("{prefix}s{seq}")
            } else {
                pick(&mut rng, Some(SMALL)).expect("at the cap, so some exist")
            };
            put(
                &s3,
                &http,
                &stats,
                Op::PutSmall,
                key,
                seed,
                SMALL,
                &mut live,
                &mut uncertain,
            )
            .await;
        } else if roll < 34 {
            let key = if large < LARGE_PER_CLIENT {
                format!("{prefix}l{seq}")
            } else {
                pick(&mut rng, Some(LARGE)).expect("at the cap, so some exist")
            };
            put(
                &s3,
                &http,
                &stats,
                Op::PutLarge,
                key,
                seed,
                LARGE,
                &mut live,
                &mut uncertain,
            )
            .await;
        } else if roll < 70 {
            let key = pick(&mut rng, None).expect("not empty");
            get(&s3, &http, &stats, &key, live[&key]).await;
        } else if roll < 74 {
            list(&s3, &http, &stats, &prefix, &live, &uncertain).await;
        } else {
            let key = pick(&mut rng, None).expect("not empty");
            let t0 = Instant::now();
            let r = s3
                .request(&http, reqwest::Method::DELETE, Some(&key), &[])
                .send()
                .await;
            live.remove(&key);
            match r {
                Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                    uncertain.remove(&key);
                    stats.record(Op::Delete, Outcome::Ok, t0, String::new)
                }
                r => {
                    uncertain.insert(key.clone());
                    stats.record(Op::Delete, Outcome::Error, t0, || describe(&key, r))
                }
            }
        }
    }
    // Leave nothing behind (this also lets the drain check see every
    // release go through).
    for key in live.keys().chain(uncertain.iter()) {
        let t0 = Instant::now();
        let r = s3
            .request(&http, reqwest::Method::DELETE, Some(key), &[])
            .send()
            .await;
        let ok = matches!(&r, Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT);
        let outcome = if ok { Outcome::Ok } else { Outcome::Error };
        stats.record(Op::Delete, outcome, t0, || describe(key, r));
    }
}

fn describe(key: &str, r: reqwest::Result<reqwest::Response>) -> String {
    match r {
        Ok(r) => format!("{key}: HTTP {}", r.status()),
        Err(e) => format!("{key}: {e}"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn put(
    s3: &S3,
    http: &reqwest::Client,
    stats: &Stats,
    op: Op,
    key: String,
    seed: u64,
    len: usize,
    live: &mut BTreeMap<String, (u64, usize)>,
    uncertain: &mut HashSet<String>,
) {
    let t0 = Instant::now();
    let r = s3
        .request(http, reqwest::Method::PUT, Some(&key), &[])
        .body(body(seed, len))
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => {
            uncertain.remove(&key);
            live.insert(key, (seed, len));
            stats.record(op, Outcome::Ok, t0, String::new)
        }
        r => {
            live.remove(&key);
            stats.record(op, Outcome::Error, t0, || describe(&key, r));
            uncertain.insert(key);
        }
    }
}

async fn get(s3: &S3, http: &reqwest::Client, stats: &Stats, key: &str, (seed, len): (u64, usize)) {
    let t0 = Instant::now();
    let r = s3
        .request(http, reqwest::Method::GET, Some(key), &[])
        .send()
        .await;
    let (outcome, note) = match r {
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => (
            Outcome::Wrong,
            format!("{key}: 404 for an object written and not deleted"),
        ),
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(b) if b[..] == body(seed, len)[..] => (Outcome::Ok, String::new()),
            Ok(b) => (
                Outcome::Wrong,
                format!(
                    "{key}: {} bytes that differ from the {len} written",
                    b.len()
                ),
            ),
            Err(e) => (Outcome::Error, format!("{key}: body: {e}")),
        },
        r => (Outcome::Error, describe(key, r)),
    };
    stats.record(Op::Get, outcome, t0, || note);
}

async fn list(
    s3: &S3,
    http: &reqwest::Client,
    stats: &Stats,
    prefix: &str,
    live: &BTreeMap<String, (u64, usize)>,
    uncertain: &HashSet<String>,
) {
    let t0 = Instant::now();
    let r = s3
        .request(
            http,
            reqwest::Method::GET,
            None,
            &[("list-type", "2"), ("prefix", prefix)],
        )
        .send()
        .await;
    let text = match r {
        Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => return stats.record(Op::List, Outcome::Error, t0, || format!("{prefix}: {e}")),
    };
    let listed: HashSet<String> = text
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = live.keys().filter(|k| !listed.contains(*k)).collect();
    let extra: Vec<&String> = listed
        .iter()
        .filter(|k| !live.contains_key(*k) && !uncertain.contains(*k))
        .collect();
    if missing.is_empty() && extra.is_empty() {
        stats.record(Op::List, Outcome::Ok, t0, String::new)
    } else {
        stats.record(Op::List, Outcome::Wrong, t0, || {
            format!("{prefix}: missing {missing:?}, deleted but listed {extra:?}")
        })
    }
}

/// `items` done by `clients` tasks, each with its own connection pool, as
/// independent clients would. Returns the items `f` succeeded on.
async fn fan_out<F, Fut>(clients: usize, items: Vec<String>, f: F) -> Vec<String>
where
    F: Fn(reqwest::Client, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..clients.max(1) {
        let (items, next, f) = (items.clone(), next.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let http = S3::client();
            let mut done = vec![];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                if f(http.clone(), item.clone()).await {
                    done.push(item.clone());
                }
            }
            done
        }));
    }
    let mut done = vec![];
    for t in tasks {
        done.extend(t.await.unwrap_or_default());
    }
    done
}

/// What one delete burst did.
pub(crate) struct Burst {
    pub(crate) at_secs: f64,
    pub(crate) deleted: usize,
    pub(crate) failed: usize,
    pub(crate) secs: f64,
}

/// Every `every`, writes `objects` small objects and deletes them all from
/// `clients` clients at once: the pattern that once exhausted fds.
pub(crate) async fn bursts(
    s3: Arc<S3>,
    stats: Arc<Stats>,
    start: Instant,
    deadline: Instant,
    a: SoakArgs,
) -> Vec<Burst> {
    let mut out = vec![];
    if a.burst_every_secs == 0 || a.burst_objects == 0 {
        return out;
    }
    for round in 1u64.. {
        // The next slot from now: a burst that overran its period skips the
        // slots it missed instead of running back to back (or after the
        // load has stopped).
        let slot = start.elapsed().as_secs() / a.burst_every_secs + 1;
        let at = start + Duration::from_secs(a.burst_every_secs * slot);
        if at >= deadline {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let keys: Vec<String> = (0..a.burst_objects)
            .map(|i| format!("burst/{round}/{i:05}"))
            .collect();
        let (s, st) = (s3.clone(), stats.clone());
        let written = fan_out(a.burst_clients, keys, move |http, key| {
            let (s3, stats) = (s.clone(), st.clone());
            async move {
                let t0 = Instant::now();
                let r = s3
                    .request(&http, reqwest::Method::PUT, Some(&key), &[])
                    .body(body(round, SMALL))
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                let outcome = if ok { Outcome::Ok } else { Outcome::Error };
                stats.record(Op::BurstPut, outcome, t0, || describe(&key, r));
                ok
            }
        })
        .await;
        let t0 = Instant::now();
        let n = written.len();
        let (s, st) = (s3.clone(), stats.clone());
        let deleted = fan_out(a.burst_clients, written, move |http, key| {
            let (s3, stats) = (s.clone(), st.clone());
            async move {
                let t0 = Instant::now();
                let r = s3
                    .request(&http, reqwest::Method::DELETE, Some(&key), &[])
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT);
                let outcome = if ok { Outcome::Ok } else { Outcome::Error };
                stats.record(Op::BurstDelete, outcome, t0, || describe(&key, r));
                ok
            }
        })
        .await;
        let b = Burst {
            at_secs: (at - start).as_secs_f64(),
            deleted: deleted.len(),
            failed: n - deleted.len(),
            secs: t0.elapsed().as_secs_f64(),
        };
        println!(
            "  burst {round} at {:.0}s: {} DELETEs in {:.1}s ({:.0}/s), {} failed",
            b.at_secs,
            b.deleted,
            b.secs,
            b.deleted as f64 / b.secs.max(1e-9),
            b.failed
        );
        out.push(b);
    }
    out
}
