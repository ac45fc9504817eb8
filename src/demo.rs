//! The built-in demo IOC: the project's own CA server with simulated PVs of every type.
//!
//! A real IOC answers every field of a record as a channel of its own (`DEMO:AI.HIHI`);
//! the archiver archives some of them with the PV ("archive fields": the policy's
//! `HIHI`, `HIGH`, `LOW`, `LOLO`, `LOPR`, `HOPR`, and `DRVH`, `DRVL` of output records,
//! whose type it reads from `.RTYP`). The simulated PVs are only values, so the demo
//! serves those fields as PVs of their own ([`field_pvs`]): without them the archive
//! fields never connected and the demo never stored any.

use anyhow::{Context, Result};
use archiver_ca::server::{PvSpec, Server, ServerConfig, sim};
use archiver_ca::value::{CaString, Value};

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
    for spec in &specs {
        for field in field_pvs(spec) {
            server.add_pv(field);
        }
    }
    // 10 updates per second, for as long as the process runs (the task is detached).
    drop(sim::spawn_updates(&server, specs, 10));
    Ok((server, names))
}

/// The record type a simulated PV stands for (its `.RTYP`), by the type of its value; a
/// writable double is an `ao` (an output record: the archiver adds `DRVH`, `DRVL`).
fn record_type(spec: &PvSpec) -> &'static str {
    match &spec.value {
        Value::Double(_) | Value::Float(_) if spec.writable => "ao",
        Value::Double(_) | Value::Float(_) => "ai",
        Value::Long(_) | Value::Short(_) | Value::Char(_) => "longin",
        Value::Enum(_) => "mbbi",
        Value::String(_) => "stringin",
        _ => "waveform",
    }
}

/// The field channels of a simulated PV: `.RTYP`, and for a numeric scalar its limits
/// from its metadata as the record fields (`HOPR`, `LOPR`, `HIHI`, `HIGH`, `LOW`,
/// `LOLO`, `DRVH`, `DRVL`, doubles, as an `ai` record serves them).
pub fn field_pvs(spec: &PvSpec) -> Vec<PvSpec> {
    let field = |f: &str, v: Value| PvSpec::new(&format!("{}.{f}", spec.name), v);
    let mut out = vec![field(
        "RTYP",
        Value::String(CaString::new(record_type(spec))),
    )];
    let numeric = matches!(
        spec.value,
        Value::Double(_) | Value::Float(_) | Value::Long(_) | Value::Short(_) | Value::Char(_)
    );
    if numeric {
        let l = &spec.meta.limits;
        for (f, v) in [
            ("HOPR", l.upper_disp),
            ("LOPR", l.lower_disp),
            ("HIHI", l.upper_alarm),
            ("HIGH", l.upper_warning),
            ("LOW", l.lower_warning),
            ("LOLO", l.lower_alarm),
            ("DRVH", l.upper_ctrl),
            ("DRVL", l.lower_ctrl),
        ] {
            out.push(field(f, Value::Double(v)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_ca::Client;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_ioc_serves_the_archive_fields_of_its_pvs() {
        let (server, names) = start_ioc().await.expect("ioc");
        assert!(names.iter().any(|(n, _)| n == "DEMO:AI"));
        let c = Client::new(server.client_config().build().expect("config"))
            .await
            .expect("client");
        let t = Duration::from_secs(10);
        let get = |name: &'static str| {
            let (ch, _rx) = c.channel(name).expect("channel");
            async move {
                ch.wait_connected(t).await.expect(name);
                ch.get().await.expect(name).value
            }
        };
        // The AI's alarm limits (sim::meta_of("AI")) as its fields.
        assert_eq!(get("DEMO:AI.HIHI").await, Value::Double(90.0));
        assert_eq!(get("DEMO:AI.LOLO").await, Value::Double(-90.0));
        assert_eq!(get("DEMO:AI.HOPR").await, Value::Double(100.0));
        assert_eq!(get("DEMO:LOAD:3.HIGH").await, Value::Double(70.0));
        assert_eq!(
            get("DEMO:AO.RTYP").await,
            Value::String(CaString::new("ao"))
        );
        assert_eq!(
            get("DEMO:MBBI.RTYP").await,
            Value::String(CaString::new("mbbi"))
        );
    }
}
