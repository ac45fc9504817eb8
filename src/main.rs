//! The `archiver` binary: an EPICS archiver compatible with the Java EPICS Archiver
//! Appliance. Subcommands: `serve`, `demo`, `pb`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod pb_cmd;

/// An EPICS archiver: archives PVs over Channel Access into the Java appliance's PlainPB
/// files and serves them over the Java appliance's HTTP APIs.
#[derive(Debug, Parser)]
#[command(name = "archiver", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the archiver appliance.
    Serve(ServeArgs),
    /// Run the archiver with a built-in simulated IOC.
    Demo(ServeArgs),
    /// Print or check PlainPB (.pb) files.
    Pb(pb_cmd::PbArgs),
}

/// Flags shared by `serve` and `demo`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Folder for the registry and the storage tiers.
    #[arg(long, value_name = "DIR", default_value = "./archiver-data")]
    data_dir: PathBuf,
    /// Address of the HTTP listener.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:17665")]
    listen: SocketAddr,
}

fn serve(args: &ServeArgs, demo: bool) -> Result<i32> {
    if let Some(config) = &args.config {
        anyhow::ensure!(
            config.is_file(),
            "config file {} not found",
            config.display()
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    println!(
        "archiver {}: data dir {}, listen {}{}",
        env!("CARGO_PKG_VERSION"),
        args.data_dir.display(),
        args.listen,
        if demo { " (demo)" } else { "" }
    );
    println!("nothing to archive yet: the engine and HTTP API are not built yet");
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve(args, false),
        Command::Demo(args) => serve(args, true),
        Command::Pb(args) => pb_cmd::run(args),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
