//! `weft bench`: measurements for docs/performance.md.

use crate::args::BenchCmd;
use anyhow::Result;

/// Runs the bench named by `cmd`.
pub async fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Metad {
            voters,
            seconds,
            writers,
            failovers,
        } => weft_cli::bench::metad(voters, seconds, &writers, failovers).await,
        BenchCmd::List {
            keys,
            per_prefix,
            samples,
        } => weft_cli::bench::list(keys, per_prefix, samples).await,
        BenchCmd::Repair {
            objects,
            size_mib,
            clients,
        } => weft_cli::bench_repair::repair(objects, size_mib, clients).await,
        BenchCmd::Soak(a) => weft_cli::bench_soak::soak(a).await,
        BenchCmd::InternalHttp(a) => weft_cli::bench_internal::internal_http(a).await,
    }
}
