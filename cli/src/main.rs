//! `weft`: admin CLI, daemons and the all-in-one dev cluster.
//!
//! The command line is defined in [`args`] and each command group runs in
//! its module under [`cmd`]; this file parses, sets up logging, dispatches
//! and turns the outcome into the exit status (see `weft_cli::exit`).

mod args;
mod cmd;

use args::{Cli, Cmd};
use clap::Parser;
use weft_cli::exit::{RestartNeeded, EXIT_RESTART};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // s3s logs every client error (a 404, a bad signature) at ERROR; the
    // gateway logs what needs a human itself, so s3s is off by default.
    let default_filter = match &cli.command {
        Cmd::Dev(_) | Cmd::Metad(_) | Cmd::Datad(_) | Cmd::Gateway(_) => {
            "info,s3s=off,openraft=warn"
        }
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Cmd::Dev(a) => cmd::dev::run(a).await,
        Cmd::Key { command, admin } => cmd::key::run(command, admin).await,
        Cmd::Audit { command, admin } => cmd::audit::run(command, admin).await,
        Cmd::Bucket { command, admin } => cmd::bucket::run(command, admin).await,
        Cmd::Class { command, admin } => cmd::class::run(command, admin).await,
        Cmd::Lifecycle { command, admin } => cmd::lifecycle::run(command, admin).await,
        Cmd::Locate {
            target,
            zone,
            format,
            objects,
            admin,
        } => cmd::locate::run(&target, zone, &format, objects, admin).await,
        Cmd::Warm {
            command,
            warm,
            admin,
        } => cmd::warm::run(command, warm, admin).await,
        Cmd::Cluster { command, admin } => cmd::cluster::run(command, admin).await,
        Cmd::Node { command, admin } => cmd::node::run(command, admin).await,
        Cmd::Cert { command } => cmd::cert::run(command).await,
        Cmd::Bench { command } => cmd::bench::run(command).await,
        Cmd::Sim(a) => cmd::sim::run(a),
        Cmd::Metad(a) => cmd::daemon::metad(a).await,
        Cmd::Datad(a) => cmd::daemon::datad(a).await,
        Cmd::Gateway(a) => cmd::daemon::gateway(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<RestartNeeded>().is_some() {
                std::process::ExitCode::from(EXIT_RESTART)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
