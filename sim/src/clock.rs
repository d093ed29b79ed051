//! The simulated wall clock: a fixed epoch plus the runtime's paused time
//! plus the jumps the nemesis made, so record timestamps follow the run and
//! a jump backwards is as real as NTP can make it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weft_common::effects::Clock;

/// 2026-01-01T00:00:00Z: every run starts its wall clock here.
const EPOCH_S: u64 = 1_767_225_600;

#[derive(Default)]
struct SimClock {
    /// The run's start on the runtime's clock, and the sum of jumps (ms).
    state: Mutex<(Option<tokio::time::Instant>, i64)>,
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        let mut s = self.state.lock().expect("sim clock lock");
        let start = *s.0.get_or_insert_with(tokio::time::Instant::now);
        let t = UNIX_EPOCH + Duration::from_secs(EPOCH_S) + start.elapsed();
        if s.1 >= 0 {
            t + Duration::from_millis(s.1 as u64)
        } else {
            t - Duration::from_millis(s.1.unsigned_abs())
        }
    }
}

static CLOCK: OnceLock<Arc<SimClock>> = OnceLock::new();

/// Makes the simulated clock the process's clock (once), and starts it
/// over for a new run.
pub(crate) fn install_and_reset() {
    let clock = CLOCK.get_or_init(|| {
        let c = Arc::new(SimClock::default());
        weft_common::effects::install_clock(c.clone());
        c
    });
    *clock.state.lock().expect("sim clock lock") = (None, 0);
}

/// Moves the wall clock by `ms` (negative: backwards).
pub(crate) fn jump(ms: i64) {
    if let Some(c) = CLOCK.get() {
        c.state.lock().expect("sim clock lock").1 += ms;
    }
}
