//! `weft cluster`: the cluster's status, initialising and changing the metad
//! group, repair status and settings, and the upload timers.

use super::admin_client;
use super::output::{human_bytes, ms_to_rfc3339, print_json};
use crate::args::{AdminArgs, ClusterCmd, MetadCmd, RepairCmd};
use anyhow::{Context, Result};
use weft_gateway::admin::ClusterStatus;

/// Runs a `weft cluster` subcommand. `init` talks to a metad directly (no
/// gateway can run before the group exists); the others go through the
/// admin API.
pub async fn run(cmd: ClusterCmd, a: AdminArgs) -> Result<()> {
    if let ClusterCmd::Init { members, tls } = &cmd {
        let (_, first) = members.first().context("at least one --member")?;
        let map: std::collections::BTreeMap<u64, String> = members.iter().cloned().collect();
        let builder = reqwest::Client::builder()
            .connect_timeout(weft_cli::admin_client::ADMIN_CONNECT_TIMEOUT)
            .timeout(std::time::Duration::from_secs(60));
        let (builder, scheme) = match tls.files(&a.data)? {
            Some(files) => {
                let id = weft_client::internal_tls::InternalTls::load(files.clone()).with_context(
                    || format!("load the admin certificate {}", files.cert.display()),
                )?;
                (
                    builder
                        .use_preconfigured_tls(id.client_config_for(weft_client::pki::Role::Metad)),
                    "https",
                )
            }
            None => (builder, "http"),
        };
        let resp = builder
            .build()
            .context("HTTP client")?
            .post(format!("{scheme}://{first}/v1/init"))
            .json(&serde_json::json!({ "members": map }))
            .send()
            .await
            .with_context(|| format!("reach metad at {first}"))?;
        if !resp.status().is_success() {
            anyhow::bail!(
                "initialise the metad group: HTTP {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        if a.json {
            return print_json(&serde_json::json!({ "initialized": map }));
        }
        println!("initialised a metad group of {} voters", map.len());
        return Ok(());
    }
    let c = admin_client(&a)?;
    match cmd {
        ClusterCmd::Init { .. } => unreachable!("handled above"),
        ClusterCmd::Metad { command } => {
            let st: weft_common::rpc::RaftStatus = match command {
                MetadCmd::List => {
                    let s: ClusterStatus = c
                        .call(reqwest::Method::GET, "/v1/cluster/status", None)
                        .await
                        .context("get metad status")?;
                    if a.json {
                        return print_json(&s.voters);
                    }
                    print_voters(&s.voters, &s.metad);
                    return Ok(());
                }
                MetadCmd::Add { id, addr } => c
                    .call(
                        reqwest::Method::POST,
                        "/v1/metad/add",
                        Some(serde_json::json!({ "id": id, "addr": addr })),
                    )
                    .await
                    .with_context(|| format!("add metad voter {id} at {addr}"))?,
                MetadCmd::Remove { id } => c
                    .call(
                        reqwest::Method::POST,
                        "/v1/metad/remove",
                        Some(serde_json::json!({ "id": id })),
                    )
                    .await
                    .with_context(|| format!("remove metad voter {id}"))?,
                MetadCmd::StepDown => c
                    .call(
                        reqwest::Method::POST,
                        "/v1/metad/step-down",
                        Some(serde_json::json!({})),
                    )
                    .await
                    .context("step down the metad leader")?,
            };
            if a.json {
                return print_json(&st);
            }
            println!("voters now: {:?}", st.voters);
        }
        ClusterCmd::Repair {
            command: Some(RepairCmd::Status),
            ..
        } => {
            let st: weft_common::repair::DurabilityStatus = c
                .call(reqwest::Method::GET, "/v1/repair/status", None)
                .await
                .context("get repair status")?;
            if a.json {
                return print_json(&st);
            }
            print_durability(&st);
        }
        ClusterCmd::Repair {
            command: None,
            rate,
            priority,
        } => {
            if rate.is_none() && priority.is_none() {
                anyhow::bail!("nothing to change: give --rate and/or --priority, or use `weft cluster repair status`");
            }
            let cfg: weft_common::repair::RepairConfig = c
                .call(
                    reqwest::Method::POST,
                    "/v1/repair/config",
                    Some(serde_json::json!({ "rate_bytes_per_sec": rate, "priority": priority })),
                )
                .await
                .context("set repair settings")?;
            if a.json {
                return print_json(&cfg);
            }
            println!(
                "repair rate {}/s, priority {:?}",
                human_bytes(cfg.rate_bytes_per_sec),
                cfg.priority
            );
        }
        ClusterCmd::Timers {
            upload_max_age_ms,
            gc_grace_ms,
        } => {
            let t: weft_common::upload_timers::UploadTimers =
                if upload_max_age_ms.is_none() && gc_grace_ms.is_none() {
                    c.call(reqwest::Method::GET, "/v1/upload-timers", None)
                        .await
                        .context("get the upload timers")?
                } else {
                    c.call(
                        reqwest::Method::POST,
                        "/v1/upload-timers",
                        Some(serde_json::json!({
                            "upload_max_age_ms": upload_max_age_ms,
                            "gc_grace_ms": gc_grace_ms,
                        })),
                    )
                    .await
                    .context("set the upload timers")?
                };
            if a.json {
                return print_json(&t);
            }
            println!(
                "upload_max_age_ms {}\ngc_grace_ms {}",
                t.upload_max_age_ms, t.gc_grace_ms
            );
        }
        ClusterCmd::Netmap => {
            let m: weft_common::netmap::NetMap = c
                .call(reqwest::Method::GET, "/v1/cluster/netmap", None)
                .await
                .context("get the network map")?;
            if a.json {
                return print_json(&m);
            }
            print!("{}", netmap_table(&m));
        }
        ClusterCmd::Usage => {
            let u: weft_gateway::admin_usage::Usage = c
                .call(reqwest::Method::GET, "/v1/cluster/usage", None)
                .await
                .context("get cluster usage")?;
            if a.json {
                return print_json(&u);
            }
            println!("{:<20} {:>12} {:>12}", "CLASS", "DATA", "STORED");
            for cl in &u.classes {
                println!(
                    "{:<20} {:>12} {:>12}",
                    cl.class,
                    human_bytes(cl.bytes),
                    human_bytes(cl.stored_bytes)
                );
            }
            println!(
                "\n{:<20} {:<16} {:>12} {:>12}",
                "CLASS", "ZONE", "STORED", "PER MONTH"
            );
            for z in &u.zones {
                println!(
                    "{:<20} {:<16} {:>12} {:>12}",
                    z.class,
                    z.zone,
                    human_bytes(z.stored_bytes),
                    z.monthly_cost
                        .map_or("-".to_string(), |c| format!("{c:.2}"))
                );
            }
            match (u.monthly_cost, u.monthly_saving) {
                (Some(cost), Some(saving)) => println!(
                    "\nmonthly cost {cost:.2}; as STANDARD it would be {:.2} (saved {saving:.2})",
                    cost + saving
                ),
                _ => println!("\nno zone_prices in the gateway's config: bytes only"),
            }
            if !u.unpriced_zones.is_empty() {
                println!(
                    "zones without a price (not in the cost): {}",
                    u.unpriced_zones.join(", ")
                );
            }
        }
        ClusterCmd::Status => {
            let s: ClusterStatus = c
                .call(reqwest::Method::GET, "/v1/cluster/status", None)
                .await
                .context("get cluster status")?;
            if a.json {
                return print_json(&s);
            }
            println!(
                "metad group: leader {:?}, voters {:?}\n",
                s.metad.leader, s.metad.voters
            );
            print_voters(&s.voters, &s.metad);
            #[derive(Default)]
            struct Zone {
                nodes: usize,
                up: usize,
                capacity: u64,
                used: u64,
                labels: std::collections::BTreeSet<String>,
            }
            let mut zones: std::collections::BTreeMap<&str, Zone> = Default::default();
            for n in &s.nodes {
                let z = zones.entry(n.info.zone.as_str()).or_default();
                z.nodes += 1;
                if n.state_name() == "up" {
                    z.up += 1;
                }
                z.capacity += n.info.capacity_bytes;
                z.used += n.used_bytes;
                z.labels
                    .insert(weft_common::topology::labels_text(&n.info.labels));
            }
            println!(
                "\n{:<12} {:>5} {:>5} {:>12} {:>12}  LABELS",
                "ZONE", "NODES", "UP", "CAPACITY", "USED"
            );
            for (name, z) in &zones {
                // Nodes of one zone should agree; if they do not, each
                // variant is shown.
                let labels = z
                    .labels
                    .iter()
                    .map(|l| if l.is_empty() { "-" } else { l.as_str() })
                    .collect::<Vec<_>>()
                    .join(" | ");
                println!(
                    "{:<12} {:>5} {:>5} {:>12} {:>12}  {}",
                    name,
                    z.nodes,
                    z.up,
                    human_bytes(z.capacity),
                    human_bytes(z.used),
                    labels
                );
            }
            println!(
                "\n{:<6} {:<12} {:<22} {:<9} {:>12} {:>12} {:<9} {:>10}",
                "NODE", "ZONE", "ADDRESS", "STATE", "CAPACITY", "USED", "SPACE", "HEARTBEAT"
            );
            for n in &s.nodes {
                println!(
                    "{:<6} {:<12} {:<22} {:<9} {:>12} {:>12} {:<9} {:>10}",
                    n.info.id.to_string(),
                    n.info.zone,
                    n.info.addr,
                    n.state_name(),
                    human_bytes(n.info.capacity_bytes),
                    human_bytes(n.used_bytes),
                    format!(
                        "{} {}%",
                        n.space.state.name(),
                        n.space.fullness_ppm / 10_000
                    ),
                    n.last_heartbeat_ms_ago
                        .map(|ms| format!("{ms}ms ago"))
                        .unwrap_or_else(|| "never".into())
                );
            }
            for n in s.nodes.iter().filter(|n| !n.space.reason.is_empty()) {
                println!(
                    "node {} is {}: {}",
                    n.info.id,
                    n.space.state.name(),
                    n.space.reason
                );
            }
        }
    }
    Ok(())
}

/// The voter table of `cluster status` and `cluster metad list`. Lag is
/// counted from the leader's view of each voter's log; a voter in space-low
/// mode also gets a line saying what it refuses and what to do.
fn print_voters(voters: &[weft_gateway::admin::VoterView], leader: &weft_common::rpc::RaftStatus) {
    println!(
        "{:<6} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10} {:>8}  {:<10}",
        "VOTER", "ADDRESS", "ROLE", "TERM", "LAST LOG", "APPLIED", "SNAPSHOT", "LAG", "DISK"
    );
    let mut low = vec![];
    let leader_last = leader.last_log_index.unwrap_or(0);
    for v in voters {
        match &v.status {
            Some(st) => {
                let matched = leader
                    .members
                    .iter()
                    .find(|m| m.id == st.node_id)
                    .and_then(|m| m.matched_index);
                let lag = matched
                    .map(|m| leader_last.saturating_sub(m).to_string())
                    .unwrap_or_else(|| "-".into());
                let opt = |x: Option<u64>| x.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                let disk = match &st.space {
                    Some(sp) if sp.low => {
                        low.push((st.node_id, sp.reason.clone()));
                        format!("LOW ({} free)", human_bytes(sp.free_bytes))
                    }
                    Some(sp) => format!("ok ({} free)", human_bytes(sp.free_bytes)),
                    None => "-".into(),
                };
                println!(
                    "{:<6} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10} {:>8}  {:<10}",
                    st.node_id,
                    v.addr,
                    st.role,
                    st.term,
                    opt(st.last_log_index),
                    opt(st.applied_index),
                    opt(st.snapshot_index),
                    lag,
                    disk
                );
            }
            None => println!(
                "{:<6} {:<22} unreachable: {}",
                "?",
                v.addr,
                v.error.as_deref().unwrap_or("")
            ),
        }
    }
    for (id, reason) in low {
        println!(
            "metad {id} is in space-low mode ({reason}): new objects, uploads and buckets are refused; free space on its disk"
        );
    }
}

/// The report of `cluster repair status`: redundancy per storage class, the
/// backlog and its ETA, anything unreadable, and where shards sit per node.
fn print_durability(st: &weft_common::repair::DurabilityStatus) {
    let when = ms_to_rfc3339(st.as_of_ms);
    println!("state: {}   (as of {when})", st.state.to_uppercase());
    if st.stale {
        println!(
            "STALE: {}",
            st.stale_reason.as_deref().unwrap_or("metad did not answer")
        );
    }
    println!(
        "\n{:<12} {:<11} {:>10} {:>10} {:>22} {:>11} {:>12}",
        "CLASS", "LAYOUT", "SEGMENTS", "FULL", "DEGRADED (-1,-2,..)", "UNREADABLE", "BACKLOG"
    );
    for c in &st.classes {
        let degraded: Vec<String> = c.degraded.iter().map(|d| d.to_string()).collect();
        println!(
            "{:<12} {:<11} {:>10} {:>10} {:>22} {:>11} {:>12}",
            c.class,
            c.layout,
            c.segments,
            c.full,
            degraded.join(","),
            c.unreadable,
            human_bytes(c.backlog_bytes)
        );
    }
    let eta = match st.eta_seconds {
        Some(0) => "none needed".to_string(),
        Some(s) => format!("~{s}s"),
        None => "unknown (no repair is making progress)".to_string(),
    };
    println!(
        "\nbacklog {}, ETA {eta}; {} tasks in flight, {}/s over the last minute; rate limit {}/s, priority {:?}",
        human_bytes(st.backlog_bytes),
        st.tasks_in_flight,
        human_bytes(st.recent_rate_bytes_per_sec),
        human_bytes(st.config.rate_bytes_per_sec),
        st.config.priority
    );
    if st.draining_shards > 0 {
        println!("{} shards still on draining nodes", st.draining_shards);
    }
    if st.damaged_shards > 0 {
        println!(
            "{} shard files have bad blocks awaiting repair in place",
            st.damaged_shards
        );
    }
    if !st.unreadable_objects.is_empty() {
        println!(
            "unreadable objects (first {}):",
            st.unreadable_objects.len()
        );
        for o in &st.unreadable_objects {
            println!("  {o}");
        }
    }
    println!(
        "\n{:<6} {:<12} {:<9} {:>8} {:>12} {:>12}",
        "NODE", "ZONE", "STATE", "SHARDS", "STORED", "CAPACITY"
    );
    for n in &st.nodes {
        println!(
            "{:<6} {:<12} {:<9} {:>8} {:>12} {:>12}",
            n.node.to_string(),
            n.zone,
            n.state,
            n.shards,
            human_bytes(n.stored_bytes),
            human_bytes(n.capacity_bytes)
        );
    }
}

/// The zone × zone matrix: a row per zone measured from, a column per zone
/// reached; each cell `RTT / throughput (age)`.
fn netmap_table(m: &weft_common::netmap::NetMap) -> String {
    use std::fmt::Write;
    if m.is_empty() {
        return "no measurements yet: gateways with a zone report every 5 s\n".into();
    }
    let mut froms: Vec<&str> = m.paths.iter().map(|p| p.from.as_str()).collect();
    let mut tos: Vec<&str> = m.paths.iter().map(|p| p.to.as_str()).collect();
    froms.sort_unstable();
    froms.dedup();
    tos.sort_unstable();
    tos.dedup();
    let mut out = String::new();
    let _ = write!(out, "{:<14}", "FROM \\ TO");
    for t in &tos {
        let _ = write!(out, " {t:<28}");
    }
    out.push('\n');
    for f in &froms {
        let _ = write!(out, "{f:<14}");
        for t in &tos {
            let cell = match m.path(f, t) {
                None => "-".to_string(),
                Some(p) => format!(
                    "{:.1} ms / {} ({:.0} s)",
                    p.rtt_us as f64 / 1000.0,
                    match p.bytes_per_s {
                        0 => "? MiB/s".to_string(),
                        b => format!("{:.0} MiB/s", b as f64 / (1u64 << 20) as f64),
                    },
                    p.age_ms as f64 / 1000.0
                ),
            };
            let _ = write!(out, " {cell:<28}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod netmap_tests {
    use super::netmap_table;
    use weft_common::netmap::{NetMap, NetPath};

    #[test]
    fn the_matrix_has_a_row_per_source_and_a_dash_where_unmeasured() {
        let path = |from: &str, to: &str| NetPath {
            from: from.into(),
            to: to.into(),
            rtt_us: 20_500,
            bytes_per_s: 200 << 20,
            age_ms: 3_000,
            reporters: 1,
        };
        let t = netmap_table(&NetMap {
            paths: vec![path("a", "a"), path("a", "b"), path("b", "a")],
        });
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[1].starts_with("a "), "{t}");
        assert!(lines[1].contains("20.5 ms / 200 MiB/s (3 s)"), "{t}");
        assert!(lines[2].starts_with("b ") && lines[2].contains(" -"), "{t}");
    }
}
