//! A byte-rate limiter shared by the tasks of one background job (repair,
//! scrub), so that their combined I/O stays under a rate that can change
//! while they run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Token bucket that lends: a caller takes what it needs at once and sleeps
/// off the debt, so large chunks need no special case and concurrent callers
/// queue fairly behind each other's debt.
pub struct Throttle {
    rate: AtomicU64,
    /// (last refill, tokens); tokens may be negative (debt).
    state: std::sync::Mutex<(Instant, f64)>,
}

impl Throttle {
    /// A throttle at `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        Throttle {
            rate: AtomicU64::new(bytes_per_sec.max(1)),
            state: std::sync::Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Changes the rate; callers already waiting keep their computed delay.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.rate.store(bytes_per_sec.max(1), Ordering::Relaxed);
    }

    /// The current rate.
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Waits until `bytes` may be spent.
    pub async fn acquire(&self, bytes: u64) {
        let wait = {
            let rate = self.rate() as f64;
            let mut st = self.state.lock().expect("throttle lock");
            let now = Instant::now();
            let refill = now.duration_since(st.0).as_secs_f64() * rate;
            // A burst of at most a tenth of a second of credit.
            st.1 = (st.1 + refill).min(rate / 10.0);
            st.0 = now;
            st.1 -= bytes as f64;
            if st.1 < 0.0 {
                Duration::from_secs_f64(-st.1 / rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_is_held_over_many_acquisitions() {
        let t = Throttle::new(1 << 20);
        let start = tokio::time::Instant::now();
        for _ in 0..8 {
            t.acquire(256 << 10).await;
        }
        // 2 MiB at 1 MiB/s: about two seconds (less the small burst).
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1800), "{took:?}");
        assert!(took <= Duration::from_millis(2100), "{took:?}");
    }
}
