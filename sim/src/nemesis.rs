//! The nemesis: faults while the workload runs, drawn from its own seeded
//! generator.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use crate::cluster::{voter_addr, Cluster, VOTERS};
use crate::{clock, data, invariants, Trace};

/// Faults while any worker runs: every 0.2–1.5 s of simulated time, one
/// of: crash a voter (never more than one down, so the group keeps a
/// majority; half the crashes cut its disk's power too), restart it, cut
/// one voter off from the others, heal, a whole-cluster power cut, a spell
/// in which a third of responses are lost until the next step, or a jump
/// of the wall clock, or a voter's disk failing every change with EIO until
/// the next step (then the voter is restarted, as a supervisor would). With
/// the data plane also: crash a data node (one
/// down at a time: with two down, EC 4+2's write quorum of five cannot be
/// placed and every write fails; half with a power cut) or restart it, rot
/// three shards of one segment in different stripes ([`data::rot`]), or
/// make one data node's disk fail every change with EIO until the next
/// step. After every step, [`invariants::replicas_agree`] and, with the
/// data plane, [`invariants::segments_keep_read_quorum`] (until the first
/// violation, which stays in the failures).
pub(crate) async fn nemesis(
    mut rng: StdRng,
    cluster: Rc<tokio::sync::Mutex<Cluster>>,
    trace: Rc<RefCell<Trace>>,
    workers_left: Rc<Cell<usize>>,
    crashes: Rc<Cell<u32>>,
    failures: Rc<RefCell<Vec<String>>>,
) {
    // Asks the leader for the segment index after each step (a short
    // deadline: a step that left no leader is checked at the next one).
    let metad = {
        let c = cluster.lock().await;
        weft_client::MetadClient::with_transport(
            (0..VOTERS).map(voter_addr).collect(),
            c.net.endpoint("127.0.2.247:1"),
        )
        .with_deadline(Duration::from_secs(5))
        .with_attempt_timeout(Duration::from_secs(2))
    };
    // One client per voter, for what each answers locally.
    let each: Vec<weft_client::MetadClient> = {
        let c = cluster.lock().await;
        (0..VOTERS)
            .map(|i| {
                weft_client::MetadClient::with_transport(
                    vec![voter_addr(i)],
                    c.net.endpoint("127.0.2.246:1"),
                )
                .with_deadline(Duration::from_secs(1))
                .with_attempt_timeout(Duration::from_secs(1))
            })
            .collect()
    };
    // A data node, or a voter, whose disk fails every change until the
    // next step.
    let mut failing_disk: Option<usize> = None;
    let mut failing_voter: Option<usize> = None;
    // The usual faults, while a spell of lost responses lasts (until the
    // next step).
    let mut lossy: Option<crate::NetFaults> = None;
    while workers_left.get() > 0 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1500))).await;
        if workers_left.get() == 0 {
            break;
        }
        let mut c = cluster.lock().await;
        if let Some(usual) = lossy.take() {
            c.net.set_faults(usual);
            trace
                .borrow_mut()
                .log("nemesis: responses get through as usual again".into());
        }
        if let Some(i) = failing_disk.take() {
            c.disk.heal();
            trace
                .borrow_mut()
                .log(format!("nemesis: datad {}'s disk works again", i + 1));
        }
        if let Some(i) = failing_voter.take() {
            // The voter stopped on its I/O errors; a supervisor restarts
            // it once the device works again.
            c.disk.heal();
            c.crash(i).await;
            let line = match c.start(i).await {
                Ok(()) => format!(
                    "nemesis: voter {}'s disk works again; voter restarted",
                    i + 1
                ),
                Err(e) => {
                    failures.borrow_mut().push(format!(
                        "voter {} did not restart after its disk failed with EIO: {e}",
                        i + 1
                    ));
                    format!("nemesis: voter {} restart after EIO failed: {e}", i + 1)
                }
            };
            trace.borrow_mut().log(line);
        }
        let live = c.live();
        let actions = if c.data_plane { 12 } else { 8 };
        let line = match rng.gen_range(0..actions) {
            0 if live.len() == VOTERS => {
                let i = live[rng.gen_range(0..live.len())];
                c.crash(i).await;
                crashes.set(crashes.get() + 1);
                // Half the crashes lose power too.
                if rng.gen_bool(0.5) {
                    power_cut_one(&mut c, &format!("metad-{}", i + 1), &failures)
                } else {
                    format!("nemesis: crash voter {}", i + 1)
                }
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
            6 if c.data_plane && c.data.live_datads().len() == data::DATADS => {
                let live = c.data.live_datads();
                let i = live[rng.gen_range(0..live.len())];
                let net = c.net.clone();
                c.data.crash_datad(i, &net).await;
                crashes.set(crashes.get() + 1);
                if rng.gen_bool(0.5) {
                    power_cut_one(&mut c, &format!("datad-{}", i + 1), &failures)
                } else {
                    format!("nemesis: crash datad {}", i + 1)
                }
            }
            7 if c.data_plane && c.data.live_datads().len() < data::DATADS => {
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
            8 if c.data_plane && rng.gen_range(0..3) == 0 => {
                let live = c.data.live_datads();
                let dir = c.dir.path().to_path_buf();
                match data::rot(&dir, &live, &mut c.data.rotted) {
                    Some(what) => format!("nemesis: rot {what}"),
                    None => "nemesis: nothing to rot yet".to_string(),
                }
            }
            // A spell in which a third of all responses are lost after
            // their requests took effect: every caller retries something
            // that already happened, the case idempotent apply is for.
            6 if !c.data_plane => lossy_spell(&c.net, &mut lossy),
            10 => lossy_spell(&c.net, &mut lossy),
            // Only while every data node is up: with one down and one
            // failing, a write could not be placed anywhere.
            9 if c.data_plane && c.data.live_datads().len() == data::DATADS => {
                let i = rng.gen_range(0..data::DATADS);
                c.disk
                    .fail_under(&c.dir.path().join(format!("datad-{}", i + 1)));
                failing_disk = Some(i);
                format!("nemesis: datad {}'s disk fails every change (EIO)", i + 1)
            }
            // A voter's disk fails (only while all are up, so a majority
            // keeps working).
            7 if !c.data_plane && live.len() == VOTERS => {
                voter_disk_fails(&mut c, &mut rng, &mut failing_voter)
            }
            11 if live.len() == VOTERS => voter_disk_fails(&mut c, &mut rng, &mut failing_voter),
            _ => {
                let jump = rng.gen_range(-30_000i64..=30_000);
                clock::jump(jump);
                format!("nemesis: wall clock jumps {jump} ms")
            }
        };
        let check = c.data_plane.then(|| c.dir.path().to_path_buf());
        drop(c);
        trace.borrow_mut().log(line);
        let clean = failures.borrow().is_empty();
        if clean {
            let split = invariants::replicas_agree(&each).await;
            if !split.is_empty() {
                trace
                    .borrow_mut()
                    .log(format!("invariant broken after the step: {}", split[0]));
                failures.borrow_mut().extend(split);
            }
        }
        let clean = failures.borrow().is_empty();
        if let (Some(dir), true) = (check, clean) {
            let found = invariants::segments_keep_read_quorum(&dir, &metad).await;
            match found {
                Ok((_, found)) if !found.is_empty() => {
                    trace
                        .borrow_mut()
                        .log(format!("invariant broken after the step: {}", found[0]));
                    failures.borrow_mut().extend(found);
                }
                Ok(_) => {}
                Err(e) => trace
                    .borrow_mut()
                    .log(format!("invariant not checked: {e}")),
            }
        }
    }
    if failing_disk.is_some() {
        cluster.lock().await.disk.heal();
    }
    if let Some(i) = failing_voter {
        let mut c = cluster.lock().await;
        c.disk.heal();
        c.crash(i).await;
    }
    if let Some(usual) = lossy {
        cluster.lock().await.net.set_faults(usual);
    }
}

/// Makes a random voter's disk fail every change with EIO until the next
/// step.
fn voter_disk_fails(c: &mut Cluster, rng: &mut StdRng, failing: &mut Option<usize>) -> String {
    let i = rng.gen_range(0..VOTERS);
    c.disk
        .fail_under(&c.dir.path().join(format!("metad-{}", i + 1)));
    *failing = Some(i);
    format!("nemesis: voter {}'s disk fails every change (EIO)", i + 1)
}

/// Cuts the power of the process `name`, which just crashed.
fn power_cut_one(c: &mut Cluster, name: &str, failures: &Rc<RefCell<Vec<String>>>) -> String {
    match c.cut_one(name) {
        Ok(undone) => format!("nemesis: {name} loses power ({undone})"),
        Err(e) => {
            failures.borrow_mut().push(e.clone());
            format!("nemesis: power cut of {name} failed: {e}")
        }
    }
}

/// Starts a spell of lost responses (see the nemesis's draw), keeping the
/// usual faults in `lossy` to restore at the next step.
fn lossy_spell(net: &crate::SimNet, lossy: &mut Option<crate::NetFaults>) -> String {
    let usual = net.faults();
    net.set_faults(crate::NetFaults {
        response_loss: 0.33,
        ..usual
    });
    *lossy = Some(usual);
    "nemesis: a third of responses are lost until the next step".to_string()
}
