//! Formatting shared by the admin commands' tables, and their `--json`.

use anyhow::Result;

/// Prints `v` as pretty JSON: what every admin command prints with `--json`.
pub(super) fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A timestamp of the admin API (ms since the epoch) as RFC 3339; the raw
/// number if it is out of range, so a bad value still shows.
pub(super) fn ms_to_rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Bytes in binary units with one decimal (`1.5 GiB`), for table columns.
pub(super) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}
