//! `weft bench`: measurements whose figures go in docs/performance.md.
//! Benchmarks report; they never assert a speed (`soak --check` judges
//! growth and wrong answers, not speed).

use crate::args::BenchCmd;
use anyhow::Result;

mod internal_http;
mod lifecycle;
mod locality;
mod metad;
mod read;
mod repair;
mod soak;
mod soak_load;
mod soak_series;
mod tiering;

/// Runs the bench named by `cmd`.
pub async fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Metad {
            voters,
            seconds,
            writers,
            failovers,
        } => metad::metad(voters, seconds, &writers, failovers).await,
        BenchCmd::List {
            keys,
            per_prefix,
            samples,
        } => metad::list(keys, per_prefix, samples).await,
        BenchCmd::Repair {
            objects,
            size_mib,
            clients,
        } => repair::repair(objects, size_mib, clients).await,
        BenchCmd::Lifecycle {
            objects,
            size_mib,
            clients,
        } => lifecycle::lifecycle(objects, size_mib, clients).await,
        BenchCmd::Tiering {
            objects,
            size_kib,
            clients,
            rounds,
            secs,
        } => tiering::tiering(objects, size_kib, clients, rounds, secs).await,
        BenchCmd::Locality {
            objects,
            size_mib,
            rounds,
            zone_latency_ms,
            zone_bandwidth_mib,
            locate_objects,
            locate_samples,
            locate_only,
        } => {
            locality::locality(locality::Settings {
                objects,
                size_mib,
                rounds,
                latency_ms: zone_latency_ms,
                bandwidth: zone_bandwidth_mib << 20,
                locate_objects,
                locate_samples,
                locate_only,
            })
            .await
        }
        BenchCmd::Read {
            target,
            endpoint,
            region,
            access_key,
            secret_key,
            rounds,
        } => {
            read::read(
                &target,
                &endpoint,
                &region,
                (&access_key, &secret_key),
                rounds,
            )
            .await
        }
        BenchCmd::Soak(a) => soak::soak(a).await,
        BenchCmd::InternalHttp(a) => internal_http::internal_http(a).await,
    }
}
