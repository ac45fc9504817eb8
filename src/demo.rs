//! The built-in demo IOC: the project's own CA server with simulated PVs of every type.

use anyhow::{Context, Result};
use archiver_ca::server::{Server, ServerConfig, sim};

/// Starts the demo IOC on a free loopback port; returns it and the PVs to archive with
/// their sampling periods.
pub async fn start_ioc() -> Result<(Server, Vec<(String, f64)>)> {
    let cfg = ServerConfig {
        port: 0,
        ..ServerConfig::default()
    };
    let server = Server::start(cfg)
        .await
        .context("cannot start the demo IOC")?;
    let mut specs = sim::every_type("DEMO:");
    specs.extend(sim::load_pvs("DEMO:", 24));
    let names: Vec<(String, f64)> = specs
        .iter()
        .map(|s| {
            let name = s.name.clone();
            // Fast-changing numeric PVs are decimated to one sample a second; the rest keep
            // every update.
            let period = if name.ends_with(":AI") { 1.0 } else { 0.0 };
            (name, period)
        })
        .collect();
    // 10 updates per second, for as long as the process runs (the task is detached).
    drop(sim::spawn_updates(&server, specs, 10));
    Ok((server, names))
}
