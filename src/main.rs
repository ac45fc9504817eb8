//! The `archiver` binary: an EPICS archiver compatible with the Java EPICS Archiver
//! Appliance. Subcommands: `serve`, `demo`, `pb`, `ca`, `pva`, `import`, `config`, `mgmt`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ca_cmd;
mod config;
mod demo;
mod import_cmd;
mod malloc;
mod mgmt_cmd;
mod pb_cmd;
mod pb_generate;
mod progress;
mod pva_cmd;
mod serve;

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
    Serve(serve::ServeArgs),
    /// Run the archiver with a built-in simulated IOC, archiving its PVs.
    Demo(serve::ServeArgs),
    /// Print or check PlainPB (.pb) files, or generate synthetic ones (`pb generate`).
    Pb(pb_cmd::PbArgs),
    /// Channel Access diagnostics (get, info, monitor) with the archiver's own client.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// Take over a Java appliance's PVs: import PVTypeInfo JSON (exportConfig or a folder
    /// of documents) and, with --retired, PVs that have files but no PVTypeInfo.
    Import(import_cmd::ImportArgs),
    /// pvAccess diagnostics (get, info, monitor) with the archiver's own client.
    #[command(subcommand)]
    Pva(pva_cmd::PvaCommand),
    /// Check a configuration file, or print every key with its default.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Run a management call of a running archiver over many PVs (globs), in batches, with
    /// progress and a summary: consolidateDataForPV, reapplyPolicies, pauseArchivingPV...
    Mgmt(mgmt_cmd::MgmtArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            malloc::configure();
            init_logging();
            runtime().and_then(|rt| rt.block_on(serve::run(&args, false)).map(|()| 0))
        }
        Command::Demo(args) => {
            malloc::configure();
            init_logging();
            runtime().and_then(|rt| rt.block_on(serve::run(&args, true)).map(|()| 0))
        }
        Command::Pb(args) => pb_cmd::run(&args),
        Command::Ca(cmd) => runtime().and_then(|rt| rt.block_on(ca_cmd::run(cmd)).map(|()| 0)),
        Command::Import(args) => import_cmd::run(&args).map(|()| 0),
        Command::Pva(cmd) => runtime().and_then(|rt| rt.block_on(pva_cmd::run(cmd)).map(|()| 0)),
        Command::Config(cmd) => config::run(&cmd).map(|()| 0),
        Command::Mgmt(args) => mgmt_cmd::run(&args).map(i32::from),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // The reader of our output went away (`archiver pb FILE | head`): a normal end
        // for a command that prints, quiet as cat's or ripgrep's.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// True when `e` is, or was caused by, a write to a closed pipe (`EPIPE`; Rust ignores
/// `SIGPIPE`, so the write fails instead of ending the process).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            // serde_json's writer (`archiver pb --json`) wraps the I/O error.
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand, at every depth, says what it does, and every flag and argument
    /// of each is documented in its `--help`.
    #[test]
    fn every_subcommand_and_flag_is_documented() {
        fn walk(cmd: &clap::Command, path: &str, undocumented: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    undocumented.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    undocumented.push(p.clone());
                }
                walk(sub, &p, undocumented);
            }
        }
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let mut undocumented = Vec::new();
        walk(&cli, "archiver", &mut undocumented);
        assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
        let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        for expected in [
            "serve", "demo", "pb", "ca", "import", "pva", "config", "mgmt",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
    }
}
