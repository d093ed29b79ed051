//! Wall-clock time, randomness and blocking work, reached through one place
//! so the simulator (`weft sim`) can make a whole cluster's run a function
//! of its seed.
//!
//! In production these are the obvious things: `SystemTime::now`, the
//! thread's OS-seeded RNG, tokio's blocking pool. Under simulation the
//! process is one current-thread runtime with paused time; then
//!
//! - [`now`] is the simulated clock (an epoch plus tokio's paused time plus
//!   any injected jumps), so record timestamps and ages follow the
//!   simulation, not the machine;
//! - [`random`] and [`Rng`] draw from a seeded generator owned by the
//!   simulator's thread (openraft's election timeouts draw from it too,
//!   through metad's raft runtime);
//! - [`spawn_blocking`] runs the closure as an ordinary task on the runtime
//!   thread, so its completion is ordered like every other task's rather
//!   than by when an OS thread finished.
//!
//! Sleeps and timeouts need no seam: they are tokio's, and tokio's paused
//! clock drives them.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::distributions::{Distribution, Standard};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

static CLOCK: OnceLock<Arc<dyn Clock>> = OnceLock::new();
static SIMULATED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes `clock` the process's clock. Only the first call has effect (a
/// process runs one simulation, or none); returns whether it did.
pub fn install_clock(clock: Arc<dyn Clock>) -> bool {
    CLOCK.set(clock).is_ok()
}

/// The current time, from the installed clock.
pub fn now() -> SystemTime {
    match CLOCK.get() {
        Some(c) => c.now(),
        None => SystemTime::now(),
    }
}

/// Milliseconds since the Unix epoch, from [`now`].
pub fn now_ms() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Switches this process into simulation: blocking work runs inline on the
/// runtime thread. Irreversible; called once by the simulator.
pub fn enter_simulation() {
    SIMULATED.store(true, Ordering::SeqCst);
}

/// Whether [`enter_simulation`] was called.
pub fn simulated() -> bool {
    SIMULATED.load(Ordering::Relaxed)
}

/// Seeds this thread's generator: from now on [`random`] and [`Rng`] on
/// this thread are a function of `seed`.
pub fn seed_thread(seed: u64) {
    SEEDED.with(|s| *s.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// A random value: from the thread's seeded generator if it has one, else
/// from the OS-seeded thread RNG.
pub fn random<T>() -> T
where
    Standard: Distribution<T>,
{
    use rand::Rng as _;
    Rng.gen()
}

/// A handle to this thread's generator (seeded under simulation); what
/// metad's raft runtime hands openraft.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rng;

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        SEEDED.with(|s| match s.borrow_mut().as_mut() {
            Some(r) => r.next_u32(),
            None => rand::thread_rng().next_u32(),
        })
    }

    fn next_u64(&mut self) -> u64 {
        SEEDED.with(|s| match s.borrow_mut().as_mut() {
            Some(r) => r.next_u64(),
            None => rand::thread_rng().next_u64(),
        })
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        SEEDED.with(|s| match s.borrow_mut().as_mut() {
            Some(r) => r.fill_bytes(dest),
            None => rand::thread_rng().fill_bytes(dest),
        })
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Runs blocking work (file and database I/O): on tokio's blocking pool, or
/// under simulation as a task on the runtime thread.
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if simulated() {
        tokio::task::spawn(async move { f() })
    } else {
        tokio::task::spawn_blocking(f)
    }
}

/// Room in a channel between async code and blocking work: `normal` in
/// production; under simulation enough for a whole object, because the
/// blocking side runs on the runtime's thread and can neither wait for the
/// async side nor be waited for ([`blocking_recv`], [`blocking_send`]).
pub fn channel_capacity(normal: usize) -> usize {
    if simulated() {
        SIM_CHANNEL_CAPACITY
    } else {
        normal
    }
}

/// A channel's room under simulation (tokio's bounded channels allow up to
/// `usize::MAX >> 3`; no simulated object comes near it).
const SIM_CHANNEL_CAPACITY: usize = 1 << 20;

/// Receives from blocking work: waits in production; under simulation the
/// sender has already sent everything (see [`channel_capacity`]), so an
/// empty channel is the end.
pub fn blocking_recv<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> Option<T> {
    if simulated() {
        rx.try_recv().ok()
    } else {
        rx.blocking_recv()
    }
}

/// The receiver of a channel is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverGone;

/// Sends from blocking work. Under simulation the channel has room for
/// everything (see [`channel_capacity`]), so it never waits.
pub fn blocking_send<T>(tx: &tokio::sync::mpsc::Sender<T>, value: T) -> Result<(), ReceiverGone> {
    if simulated() {
        tx.try_send(value).map_err(|_| ReceiverGone)
    } else {
        tx.blocking_send(value).map_err(|_| ReceiverGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_draws_the_same_sequence_twice() {
        let draw = |seed| {
            std::thread::spawn(move || {
                seed_thread(seed);
                (0..8).map(|_| random::<u64>()).collect::<Vec<_>>()
            })
            .join()
            .unwrap()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn an_unseeded_thread_draws_differently_each_time() {
        let a: Vec<u64> = (0..4).map(|_| random()).collect();
        let b: Vec<u64> = (0..4).map(|_| random()).collect();
        assert_ne!(a, b);
    }
}
