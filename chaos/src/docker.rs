//! The docker CLI, driven from Rust.
//!
//! Shelling out to `docker` keeps the chaos crate cheap to build (no API
//! client crate) and makes every action the harness takes reproducible by
//! hand: each call is logged at debug level with its arguments.

use std::process::Stdio;

/// A docker command that failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The binary could not be run at all.
    #[error("run docker {args}: {source}")]
    Spawn {
        /// The arguments.
        args: String,
        /// Cause.
        source: std::io::Error,
    },
    /// docker ran and reported failure.
    #[error("docker {args}: exit {code}: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// Exit code (-1 if killed by a signal).
        code: i32,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Runs `docker <args>` and returns its trimmed stdout.
pub async fn docker(args: &[&str]) -> Result<String, DockerError> {
    tracing::debug!(args = args.join(" "), "docker");
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| DockerError::Spawn {
            args: args.join(" "),
            source,
        })?;
    finish(args, out)
}

/// Blocking variant for tear-down from `Drop` and signal paths.
pub fn docker_blocking(args: &[&str]) -> Result<String, DockerError> {
    let out = std::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DockerError::Spawn {
            args: args.join(" "),
            source,
        })?;
    finish(args, out)
}

fn finish(args: &[&str], out: std::process::Output) -> Result<String, DockerError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(DockerError::Failed {
            args: args.join(" "),
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The label every object of one run carries: `weft-chaos.run=<run id>`.
pub const RUN_LABEL: &str = "weft-chaos.run";

/// Removes every container, network and volume labelled with `run_id`
/// (or with any run id when `None`). Blocking and best-effort: it must work
/// from a panic or a signal handler, and leftovers are reported, not fatal.
pub fn remove_run(run_id: Option<&str>) -> Vec<String> {
    let filter = match run_id {
        Some(id) => format!("label={RUN_LABEL}={id}"),
        None => format!("label={RUN_LABEL}"),
    };
    let mut problems = Vec::new();
    // Detach every container from the run's networks before removing it:
    // docker 20.10 sometimes leaves a stale endpoint on a network that a
    // running container was `network connect`ed to when it is `rm -f`ed,
    // and such a network can never be removed.
    if let Ok(nets) = docker_blocking(&["network", "ls", "-q", "--filter", &filter]) {
        for net in nets.split_whitespace() {
            let members = docker_blocking(&[
                "network",
                "inspect",
                "-f",
                "{{range .Containers}}{{.Name}} {{end}}",
                net,
            ])
            .unwrap_or_default();
            for c in members.split_whitespace() {
                let _ = docker_blocking(&["network", "disconnect", "--force", net, c]);
            }
        }
    }
    match docker_blocking(&["ps", "-aq", "--filter", &filter]) {
        Ok(ids) => {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            // Paused containers must be unpaused before they can be killed.
            for id in &ids {
                let _ = docker_blocking(&["unpause", id]);
            }
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().copied());
                if let Err(e) = docker_blocking(&args) {
                    problems.push(e.to_string());
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    match docker_blocking(&["network", "ls", "-q", "--filter", &filter]) {
        Ok(ids) => {
            for id in ids.split_whitespace() {
                if let Err(e) = docker_blocking(&["network", "rm", id]) {
                    problems.push(e.to_string());
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    match docker_blocking(&["volume", "ls", "-q", "--filter", &filter]) {
        Ok(ids) => {
            for id in ids.split_whitespace() {
                if let Err(e) = docker_blocking(&["volume", "rm", "-f", id]) {
                    problems.push(e.to_string());
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    problems
}
