//! Runs one simulation seed in a process of its own and prints one line,
//! `<trace hash> <passed> <failures>`: the determinism test compares two
//! such processes, because a replay (`weft sim --seed N`) is always a fresh
//! process. Usage: `weft-sim-seed SEED [--data-plane]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = match args.next().and_then(|s| s.parse().ok()) {
        Some(s) => s,
        None => {
            eprintln!("usage: weft-sim-seed SEED [--data-plane]");
            std::process::exit(2);
        }
    };
    let data_plane = args.any(|a| a == "--data-plane");
    let o = weft_sim::run(&weft_sim::SimConfig {
        seed,
        steps: weft_sim::SimConfig::DEFAULT_STEPS,
        bug: None,
        data_plane,
    });
    println!(
        "{} {} {} {} {}",
        o.trace_hash,
        o.passed(),
        o.rotted,
        o.unknown,
        o.crashes
    );
    for f in &o.failures {
        eprintln!("FAILED: {f}");
    }
    for line in &o.tail {
        eprintln!("trace: {line}");
    }
}
