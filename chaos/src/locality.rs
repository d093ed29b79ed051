//! The `locality` scenario (docs/locality.md, docs/chaos.md): zones that
//! cost something to cross, a compute job in one zone, a warm, and then
//! the usual faults with the warm copies in place.
//!
//! - Latency between zones comes from the daemons' own emulated WAN
//!   (`wan = { latency_ms }` on gateways and data nodes: this kernel has
//!   no netem). Bandwidth between zones is shaped for real: a tbf qdisc on
//!   each container's backbone interface (all cross-zone traffic crosses
//!   the backbone; traffic inside a zone may too, when a name resolves to
//!   a backbone address), installed from the host inside the
//!   container's network namespace with `nsenter`, so the FROM-scratch
//!   image needs neither a `tc` binary nor NET_ADMIN. A container a fault
//!   restarts comes back in a new namespace, unshaped; the job phase runs
//!   before any fault.
//! - The job is a container on zone-a's network running `weft bench read`
//!   against zone-a's gateway. It reads the dataset cold, then after
//!   `PUT /v1/warm` has made zone-a hold k shards of every stripe; the
//!   gateway's cross-zone byte counter must have grown on the cold read
//!   and not at all on the warm one, and every object's CRC32C must match
//!   what was written.
//! - Then the workload's whole bucket is warmed into zone-a too, so its
//!   objects get copies there as they are written, while data nodes are
//!   killed; the checker judges the history as in any scenario.
//!
//! Gateways run without their stripe cache and without hedging here: a
//! cached stripe would make the warm read cost nothing for the wrong
//! reason, and a hedge may cross zones around a slow local copy, so
//! neither would let the counters be read exactly.

use crate::cluster::{zone_name, Cluster, Role};
use crate::docker::docker;
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Emulated round trip between zones, ms.
pub const LATENCY_MS: u64 = 20;
/// Shaped rate of each container's backbone interface (tc syntax).
pub const SHAPED_RATE: &str = "200mbit";
/// The job's dataset's bucket (apart from the workload's, whose listings
/// the checker judges).
pub const DATASET_BUCKET: &str = "locality-job";
/// And its prefix.
pub const DATASET_PREFIX: &str = "job/";
const DATASET_OBJECTS: u64 = 6;
/// Two full 4+2 stripes of 1 MiB units each.
const DATASET_BYTES: u64 = 8 << 20;
/// The zone the job runs in.
const JOB_ZONE: usize = 0;
const WARM_DEADLINE: Duration = Duration::from_secs(180);
const JOB_DEADLINE: Duration = Duration::from_secs(300);

/// What the job phase measured, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LocalityFigures {
    /// Backbone interfaces given a tbf qdisc.
    pub shaped_interfaces: usize,
    /// Bytes zone-a's gateway fetched from other zones for the cold read.
    pub cold_cross_zone_bytes: u64,
    /// The same for the read after the warm (must be 0).
    pub warm_cross_zone_bytes: u64,
    /// Shard fetches of that read answered by warm copies (must be some:
    /// the layout leaves zone-a 2 of the 4 shards a stripe needs).
    pub warm_copy_reads: u64,
    /// Dataset bytes the job read each time.
    pub dataset_bytes: u64,
    /// The job's own figures, cold (`weft bench read`'s JSON).
    pub cold_job: serde_json::Value,
    /// After the warm.
    pub warm_job: serde_json::Value,
    /// Seconds until zone-a held the dataset.
    pub warm_secs: f64,
}

/// The gateway and data node settings the scenario adds.
pub fn config_lines(role: Role) -> String {
    match role {
        Role::Gateway => format!(
            "wan = {{ latency_ms = {LATENCY_MS} }}\nstripe_cache_bytes = 0\nread_hedging = false\n"
        ),
        Role::Datad => format!("wan = {{ latency_ms = {LATENCY_MS} }}\nnetmap_period_ms = 2000\n"),
        Role::Metad => String::new(),
    }
}

async fn container_pid(name: &str) -> Result<u32> {
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", name]).await?;
    pid.trim()
        .parse()
        .with_context(|| format!("pid of {name}: {pid:?}"))
}

async fn nsenter(pid: u32, args: &[&str]) -> Result<String> {
    let pid = pid.to_string();
    let mut full = vec!["-t", pid.as_str(), "-n"];
    full.extend_from_slice(args);
    let out = tokio::process::Command::new("nsenter")
        .args(&full)
        .output()
        .await
        .context("run nsenter (needs root and util-linux)")?;
    if !out.status.success() {
        bail!(
            "nsenter {}: {}",
            full.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Puts a tbf qdisc on every running container's backbone interface.
pub async fn shape(cluster: &Cluster) -> Result<usize> {
    let mut shaped = 0;
    for n in &cluster.nodes {
        let pid = container_pid(&n.name).await?;
        let mac = docker(&[
            "inspect",
            "-f",
            &format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").MacAddress}}}}",
                cluster.backbone
            ),
            &n.name,
        ])
        .await?;
        let mac = mac.trim().to_lowercase();
        ensure!(!mac.is_empty(), "{} has no backbone address", n.name);
        let links = nsenter(pid, &["ip", "-o", "link"]).await?;
        // "2: eth1@if9: <...> ... link/ether 02:42:ac:12:00:03 brd ..."
        let iface = links
            .lines()
            .find(|l| l.contains(&format!("link/ether {mac}")))
            .and_then(|l| l.split(": ").nth(1))
            .map(|s| s.split('@').next().unwrap_or(s).to_string())
            .with_context(|| format!("{}: no interface with {mac} in {links}", n.name))?;
        nsenter(
            pid,
            &[
                "tc",
                "qdisc",
                "replace",
                "dev",
                &iface,
                "root",
                "tbf",
                "rate",
                SHAPED_RATE,
                "burst",
                "256kb",
                "latency",
                "200ms",
            ],
        )
        .await?;
        shaped += 1;
    }
    Ok(shaped)
}

/// The gateway's count of shard bytes fetched from other zones.
const CROSS_ZONE: &str = "weft_gateway_cross_zone_read_bytes_total";
/// The gateway's count of shard fetches answered by warm copies.
const WARM_COPY_READS: &str = "weft_gateway_warm_copy_reads_total";

/// Gateway `gateway`'s counters `names` (0 for one not yet counted).
async fn counters<const N: usize>(
    cluster: &Cluster,
    gateway: usize,
    names: [&str; N],
) -> Result<[u64; N]> {
    let text = cluster.admin_text(gateway, "/metrics").await?;
    let mut out = [0; N];
    for (i, name) in names.iter().enumerate() {
        let prefix = format!("{name} ");
        if let Some(v) = text.lines().find_map(|l| l.strip_prefix(&prefix)) {
            out[i] = v
                .trim()
                .parse()
                .with_context(|| format!("{name} {v}: not a count"))?;
        }
    }
    Ok(out)
}

/// Growth of a counter between two readings; a restart in between (the
/// counter went back) is an error, not a negative.
fn grown(before: u64, after: u64) -> Result<u64> {
    after
        .checked_sub(before)
        .context("the gateway's counter went back: it restarted during the job")
}

/// The name of a scenario's job container.
pub fn job_container(prefix: &str) -> String {
    format!("{prefix}-job")
}

/// Runs `weft bench read` in a container on `zone`'s network against
/// gateway `gateway`; checks every object's CRC32C against `want`.
async fn job(
    cluster: &Cluster,
    zone: usize,
    gateway: &str,
    bucket: &str,
    want: &BTreeMap<String, u32>,
) -> Result<serde_json::Value> {
    let name = job_container(&cluster.cfg.prefix);
    let label = format!("{}={}", crate::docker::RUN_LABEL, cluster.cfg.run_id);
    let access = format!("AWS_ACCESS_KEY_ID={}", cluster.access_key);
    let secret = format!("AWS_SECRET_ACCESS_KEY={}", cluster.secret_key);
    let endpoint = format!("http://{gateway}:9000");
    let target = format!("s3://{bucket}/{DATASET_PREFIX}");
    let args = [
        "run",
        "--rm",
        "--name",
        &name,
        "--label",
        &label,
        "--network",
        &cluster.zone_nets[zone],
        "-e",
        &access,
        "-e",
        &secret,
        "-e",
        "NO_COLOR=1",
        &cluster.cfg.image,
        "bench",
        "read",
        &target,
        "--endpoint",
        &endpoint,
        "--region",
        crate::cluster::REGION,
    ];
    let run = docker(&args);
    // The run's tear-down removes the container by label if it outlives
    // this.
    let out = tokio::time::timeout(JOB_DEADLINE, run)
        .await
        .with_context(|| format!("the job container ran past {JOB_DEADLINE:?}"))?
        .context("the job container")?;
    let report: serde_json::Value =
        serde_json::from_str(out.trim()).with_context(|| format!("the job's report: {out:?}"))?;
    let got: BTreeMap<String, u32> =
        serde_json::from_value(report["crc32c"].clone()).context("the job's CRC32Cs")?;
    ensure!(
        &got == want,
        "the job in {} read other bytes than were written: got {got:?}, want {want:?}",
        zone_name(zone)
    );
    Ok(report)
}

/// Asks for a warm of the whole of `bucket` in `zone` and waits until
/// the zone holds it.
async fn warm(cluster: &Cluster, bucket: &str, zone: &str) -> Result<()> {
    let began = Instant::now();
    let body = serde_json::json!({"bucket": bucket, "prefix": "", "zone": zone});
    // A new leader may answer 503 until it has counted the zones' caches:
    // both steps retry until the deadline.
    let mut asked = false;
    let query = format!("bucket={bucket}&prefix=&zone={zone}");
    loop {
        let last = if asked {
            match cluster.admin_send("GET", "/v1/warm", &query, vec![]).await {
                Ok(st) if st["ready"] == true => return Ok(()),
                Ok(st) => st.to_string(),
                Err(e) => format!("{e:#}"),
            }
        } else {
            match cluster
                .admin_send("PUT", "/v1/warm", "", body.to_string().into_bytes())
                .await
            {
                Ok(_) => {
                    asked = true;
                    continue;
                }
                Err(e) => format!("asking: {e:#}"),
            }
        };
        ensure!(
            began.elapsed() < WARM_DEADLINE,
            "{zone} did not hold {bucket} within {WARM_DEADLINE:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The job phase: shape, write the dataset, read it cold, warm it, read
/// it again; then warm the workload's (still empty) `bucket` in the job's
/// zone, so its objects get copies there as they are written.
pub async fn job_phase(cluster: &Cluster, workload_bucket: &str) -> Result<LocalityFigures> {
    let mut fig = LocalityFigures {
        shaped_interfaces: shape(cluster).await.context("shape the backbone")?,
        ..Default::default()
    };
    let bucket = DATASET_BUCKET;
    // The gateway serving the job's zone, and its index among gateways.
    let (gw, gateway) = cluster
        .nodes
        .iter()
        .filter(|n| n.role == Role::Gateway)
        .enumerate()
        .find(|(_, n)| n.zone == JOB_ZONE)
        .map(|(i, n)| (i, n.name.clone()))
        .with_context(|| format!("no gateway in {}", zone_name(JOB_ZONE)))?;
    let s3 = cluster.gateway(gw);
    let r = s3
        .create_bucket(bucket)
        .await
        .context("create the job's bucket")?;
    ensure!(
        r.is_success(),
        "create {bucket}: {} {}",
        r.status,
        r.error_kind()
    );
    let mut want = BTreeMap::new();
    for i in 0..DATASET_OBJECTS {
        let key = format!("{DATASET_PREFIX}{i}");
        let body = crate::content::generate(0x10ca_1000 + i, DATASET_BYTES);
        want.insert(key.clone(), crc32c::crc32c(&body));
        let r = s3
            .put_object(bucket, &key, &[], bytes::Bytes::from(body))
            .await
            .with_context(|| format!("put {key}"))?;
        ensure!(r.is_success(), "put {key}: {} {}", r.status, r.error_kind());
    }
    fig.dataset_bytes = DATASET_OBJECTS * DATASET_BYTES;

    let [before] = counters(cluster, gw, [CROSS_ZONE]).await?;
    fig.cold_job = job(cluster, JOB_ZONE, &gateway, bucket, &want).await?;
    let [after] = counters(cluster, gw, [CROSS_ZONE]).await?;
    fig.cold_cross_zone_bytes = grown(before, after)?;

    let zone = zone_name(JOB_ZONE);
    let began = Instant::now();
    warm(cluster, bucket, zone).await?;
    fig.warm_secs = began.elapsed().as_secs_f64();

    let [cross0, copies0] = counters(cluster, gw, [CROSS_ZONE, WARM_COPY_READS]).await?;
    fig.warm_job = job(cluster, JOB_ZONE, &gateway, bucket, &want).await?;
    let [cross1, copies1] = counters(cluster, gw, [CROSS_ZONE, WARM_COPY_READS]).await?;
    fig.warm_cross_zone_bytes = grown(cross0, cross1)?;
    fig.warm_copy_reads = grown(copies0, copies1)?;
    tracing::info!(?fig, "locality job phase");
    ensure!(
        fig.cold_cross_zone_bytes > 0,
        "the cold read crossed no zone: the layout should put 4 of 6 shards outside {zone}"
    );
    ensure!(
        fig.warm_copy_reads > 0,
        "the read after the warm used no warm copy"
    );
    ensure!(
        fig.warm_cross_zone_bytes == 0,
        "after the warm, the job in {zone} still moved {} bytes across zones",
        fig.warm_cross_zone_bytes
    );
    warm(cluster, workload_bucket, zone).await?;
    Ok(fig)
}
