//! `weft locate`: where a dataset lives, for schedulers (docs/locality.md).

use super::admin_client;
use super::output::{human_bytes, print_json};
use crate::args::AdminArgs;
use anyhow::{bail, Context, Result};
use weft_gateway::admin_locate::{k8s_affinity, Located};

/// `s3://bucket/prefix` → (bucket, prefix).
pub(crate) fn parse_target(target: &str) -> Result<(String, String)> {
    let Some(rest) = target.strip_prefix("s3://") else {
        bail!("{target:?}: name the dataset as s3://BUCKET[/PREFIX]");
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("{target:?}: no bucket; name the dataset as s3://BUCKET[/PREFIX]");
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Runs `weft locate`.
pub async fn run(
    target: &str,
    zone: Option<String>,
    format: &str,
    objects: bool,
    a: AdminArgs,
) -> Result<()> {
    if !matches!(format, "table" | "k8s-affinity") {
        bail!("--format {format:?}: use table or k8s-affinity (or --json)");
    }
    let (bucket, prefix) = parse_target(target)?;
    let c = admin_client(&a)?;
    let mut url = reqwest::Url::parse("http://x/v1/locate").expect("literal");
    url.query_pairs_mut()
        .append_pair("bucket", &bucket)
        .append_pair("prefix", &prefix);
    if let Some(z) = &zone {
        url.query_pairs_mut().append_pair("zone", z);
    }
    // Per-object detail is most of the answer's cost; only what is
    // printed is asked for.
    if !(a.json || objects) {
        url.query_pairs_mut().append_pair("objects", "false");
    }
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let l: Located = c
        .call(reqwest::Method::GET, &path, None)
        .await
        .with_context(|| format!("locate {target}"))?;
    if a.json {
        return print_json(&l);
    }
    if format == "k8s-affinity" {
        print!("{}", k8s_affinity(&l));
        return Ok(());
    }
    println!(
        "{} objects, {}{}",
        l.object_count,
        human_bytes(l.total_bytes),
        if l.truncated {
            " (truncated: more objects match)"
        } else {
            ""
        }
    );
    println!("\n{:<16} {:>12}", "ZONE", "STORED");
    for (z, b) in &l.zone_bytes {
        println!("{z:<16} {:>12}", human_bytes(*b));
    }
    println!("\n{:<16} {:>8}", "NODE", "SHARDS");
    for (n, s) in &l.node_shards {
        println!("{n:<16} {s:>8}");
    }
    println!(
        "\n{:<16} {:<16} {:>12} {:>12} {:>10}",
        "READ FROM", "K8S ZONE", "LOCAL", "CROSS-ZONE", "EST. SECS"
    );
    for r in &l.reads {
        println!(
            "{:<16} {:<16} {:>12} {:>12} {:>10}",
            r.zone,
            r.k8s_zone,
            human_bytes(r.local_bytes),
            human_bytes(r.cross_zone_bytes),
            r.estimated_secs
                .map_or("-".to_string(), |s| format!("{s:.2}"))
        );
    }
    if let Some(best) = &l.best_zone {
        println!("\nbest zone: {best}");
    }
    if objects {
        println!("\n{:<40} {:>10}  ZONES", "KEY", "SIZE");
        for o in &l.objects {
            let zones: Vec<String> = o
                .zone_bytes
                .iter()
                .map(|(z, b)| format!("{z}={}", human_bytes(*b)))
                .collect();
            println!(
                "{:<40} {:>10}  {}",
                o.key,
                human_bytes(o.size),
                zones.join(" ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_bucket_and_prefix_and_others_are_refused() {
        assert_eq!(
            parse_target("s3://b/p/q").unwrap(),
            ("b".into(), "p/q".into())
        );
        assert_eq!(parse_target("s3://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_target("b/p").is_err());
        assert!(parse_target("s3:///p").is_err());
    }
}
