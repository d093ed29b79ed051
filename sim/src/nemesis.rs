//! The nemesis: faults while the workload runs, drawn from its own seeded
//! generator.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use crate::cluster::{voter_addr, Cluster, VOTERS};
use crate::{clock, data, Trace};

/// Faults while any worker runs: every 0.2–1.5 s of simulated time, one of
/// crash a voter (never more than one down, so the group keeps a
/// majority), restart it, cut one voter off from the others, heal, a
/// power cut, or jump the wall clock; with the data plane also crash or
/// restart a data node (at most two down) or rot three shards of one
/// segment in different stripes ([`data::rot`]).
pub(crate) async fn nemesis(
    mut rng: StdRng,
    cluster: Rc<tokio::sync::Mutex<Cluster>>,
    trace: Rc<RefCell<Trace>>,
    workers_left: Rc<Cell<usize>>,
    crashes: Rc<Cell<u32>>,
    failures: Rc<RefCell<Vec<String>>>,
) {
    while workers_left.get() > 0 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1500))).await;
        if workers_left.get() == 0 {
            break;
        }
        let mut c = cluster.lock().await;
        let live = c.live();
        let actions = if c.data_plane { 9 } else { 6 };
        let line = match rng.gen_range(0..actions) {
            0 if live.len() == VOTERS => {
                let i = live[rng.gen_range(0..live.len())];
                c.crash(i).await;
                crashes.set(crashes.get() + 1);
                format!("nemesis: crash voter {}", i + 1)
            }
            1 if live.len() < VOTERS => {
                let i = (0..VOTERS)
                    .find(|i| !live.contains(i))
                    .expect("one is down");
                match c.start(i).await {
                    Ok(()) => format!("nemesis: restart voter {}", i + 1),
                    Err(e) => format!("nemesis: restart failed: {e}"),
                }
            }
            2 => {
                let i = rng.gen_range(0..VOTERS);
                for j in (0..VOTERS).filter(|j| *j != i) {
                    c.net.cut(&voter_addr(i), &voter_addr(j));
                }
                format!("nemesis: cut voter {} off", i + 1)
            }
            3 => {
                c.net.heal();
                "nemesis: heal".to_string()
            }
            // With the data plane, a quarter of its draws: a cut restarts
            // nine processes, and data nodes' timers (scrub, garbage
            // collection) need them to live a while.
            5 if !c.data_plane || rng.gen_range(0..4) == 0 => {
                crashes.set(crashes.get() + VOTERS as u32);
                match c.power_cut().await {
                    Ok(undone) => format!("nemesis: power cut ({undone})"),
                    Err(e) => {
                        failures.borrow_mut().push(e.clone());
                        format!("nemesis: power cut failed: {e}")
                    }
                }
            }
            6 if c.data.live_datads().len() > data::DATADS - 2 => {
                let live = c.data.live_datads();
                let i = live[rng.gen_range(0..live.len())];
                let net = c.net.clone();
                c.data.crash_datad(i, &net).await;
                crashes.set(crashes.get() + 1);
                format!("nemesis: crash datad {}", i + 1)
            }
            7 if c.data.live_datads().len() < data::DATADS => {
                let i = (0..data::DATADS)
                    .find(|i| c.data.datads[*i].is_none())
                    .expect("one is down");
                match c.start_datad(i).await {
                    Ok(()) => format!("nemesis: restart datad {}", i + 1),
                    Err(e) => {
                        failures.borrow_mut().push(e.clone());
                        format!("nemesis: datad restart failed: {e}")
                    }
                }
            }
            // Rot is rarer than crashes: a third of its draws.
            8 if rng.gen_range(0..3) == 0 => {
                let live = c.data.live_datads();
                let dir = c.dir.path().to_path_buf();
                match data::rot(&dir, &live, &mut c.data.rotted) {
                    Some(what) => format!("nemesis: rot {what}"),
                    None => "nemesis: nothing to rot yet".to_string(),
                }
            }
            _ => {
                let jump = rng.gen_range(-30_000i64..=30_000);
                clock::jump(jump);
                format!("nemesis: wall clock jumps {jump} ms")
            }
        };
        drop(c);
        trace.borrow_mut().log(line);
    }
}
