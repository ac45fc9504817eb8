//! `archiver ca`: Channel Access diagnostics for operators, using the archiver's own CA
//! client and the same EPICS_CA_* environment as the archiver.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use archiver_ca::{
    ChannelEvent, Client, ClientConfig, ConnInfo, DbfType, Dbr, Meta, Overflow, Subscription,
    Timestamp, Value, event_queue, mask, status,
};
use archiver_time::Precision;

/// Channel Access diagnostics.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Read PVs once: value, time stamp, alarm severity and status.
    Get {
        /// PV names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Seconds to wait for a server to answer the search.
        #[arg(short = 'w', long = "wait", default_value_t = 5.0)]
        wait: f64,
    },
    /// Show a PV's server, native type, count, access rights and metadata.
    Info {
        /// PV name.
        name: String,
        /// Seconds to wait for a server to answer the search.
        #[arg(short = 'w', long = "wait", default_value_t = 5.0)]
        wait: f64,
    },
    /// Print updates (DBE_VALUE|DBE_ALARM) and connection changes until interrupted.
    Monitor {
        /// PV names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Seconds after which unanswered searches are reported (searching continues).
        #[arg(short = 'w', long = "wait", default_value_t = 5.0)]
        wait: f64,
    },
}

/// Runs a `ca` subcommand.
pub async fn run(cmd: CaCommand) -> Result<()> {
    let cfg = ClientConfig::from_env().context("reading the EPICS_CA_* environment")?;
    let client = Client::new(cfg).await.context("starting the CA client")?;
    match cmd {
        CaCommand::Get { names, wait } => get(&client, &names, secs(wait)).await,
        CaCommand::Info { name, wait } => info(&client, &name, secs(wait)).await,
        CaCommand::Monitor { names, wait } => monitor(&client, &names, secs(wait)).await,
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.01, 3600.0)
    } else {
        5.0
    })
}

async fn get(client: &Client, names: &[String], wait: Duration) -> Result<()> {
    let mut chans = Vec::new();
    for n in names {
        chans.push(client.channel(n)?.0);
    }
    let mut failed = 0;
    for ch in &chans {
        let r = async {
            let info = ch.wait_connected(wait).await?;
            let d = ch.get().await?;
            let labels = if info.native == DbfType::Enum {
                ch.get_ctrl().await?.meta.map(|m| m.enum_strs)
            } else {
                None
            };
            Ok::<_, archiver_ca::CaError>(format_sample(
                ch.name(),
                &d,
                labels.as_deref().unwrap_or(&[]),
            ))
        }
        .await;
        match r {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{}: {e}", ch.name());
                failed += 1;
            }
        }
    }
    all_read(failed, names.len())
}

async fn info(client: &Client, name: &str, wait: Duration) -> Result<()> {
    let (ch, _rx) = client.channel(name)?;
    let i = ch.wait_connected(wait).await?;
    let ctrl = ch.get_ctrl().await?;
    let now = ch.get().await?;
    print!("{}", format_info(name, &i, ctrl.meta.as_deref(), &now));
    Ok(())
}

async fn monitor(client: &Client, names: &[String], wait: Duration) -> Result<()> {
    let (q, rx) = event_queue(100_000, Overflow::DropNewest);
    let mut chans = Vec::new();
    let mut labels: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    for (i, n) in names.iter().enumerate() {
        let ch = client.create_channel(n, &q, i as u64)?;
        ch.subscribe(Subscription::time(mask::DBE_VALUE | mask::DBE_ALARM))?;
        chans.push(ch);
    }
    drop(q);
    let not_found = async {
        tokio::time::sleep(wait).await;
        for ch in &chans {
            if ch.info().is_none() {
                eprintln!(
                    "{}: no server answered the search within {:.1} s (searched: {}); still searching",
                    ch.name(),
                    wait.as_secs_f64(),
                    client
                        .search_addrs()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
        std::future::pending::<()>().await;
    };
    monitor_loop(
        not_found,
        async |buf: &mut Vec<_>| rx.recv_many(buf, 1024).await,
        async |ev: archiver_ca::Event| {
            let idx = ev.key as usize;
            let (Some(ch), Some(name)) = (chans.get(idx), names.get(idx)) else {
                return;
            };
            match ev.kind {
                ChannelEvent::Value { data, .. } => {
                    println!("{}", format_sample(name, &data, &labels[idx]))
                }
                ChannelEvent::Connected {
                    native,
                    count,
                    server,
                    access,
                } => {
                    println!(
                        "{name} *** connected to {server} ({native}, count {count}, {access})"
                    );
                    if native == DbfType::Enum
                        && let Ok(d) = ch.get_ctrl().await
                    {
                        labels[idx] = d.meta.map(|m| m.enum_strs).unwrap_or_default();
                    }
                }
                ChannelEvent::Disconnected { at } => {
                    println!("{name} *** disconnected at {}", format_time(at))
                }
                ChannelEvent::AccessRights(a) => println!("{name} *** access rights now {a}"),
                ChannelEvent::SubscriptionError { status, .. } => {
                    println!("{name} *** monitor error: {status}")
                }
            }
        },
    )
    .await;
    let dropped: u64 = chans.iter().map(|c| c.dropped()).sum();
    if dropped > 0 {
        eprintln!("{dropped} updates dropped (output too slow)");
    }
    Ok(())
}

/// The end of a `get`/`info` over `n` PVs (CA and pvAccess alike): an error when `failed`
/// of them could not be read (each already reported on stderr).
pub(crate) fn all_read(failed: usize, n: usize) -> Result<()> {
    if failed > 0 {
        bail!("{failed} of {n} PVs could not be read");
    }
    Ok(())
}

/// The loop of `archiver ca monitor` and `archiver pva monitor`: takes events in batches
/// of up to 1024 with `recv` (0: the queue ended) and hands each to `on_event`, while
/// `not_found` (which reports names no server answered, then never ends) runs beside
/// them, until SIGINT or the end of the queue. One SIGINT listener for the whole run: a
/// listener made anew at each turn of the loop misses a SIGINT that arrives while a
/// batch is being printed (the monitor then never stopped; found as a flaky test).
pub(crate) async fn monitor_loop<E>(
    not_found: impl std::future::Future<Output = ()>,
    mut recv: impl AsyncFnMut(&mut Vec<E>) -> usize,
    mut on_event: impl AsyncFnMut(E),
) {
    tokio::pin!(not_found);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            _ = &mut not_found => {}
            n = recv(&mut buf) => {
                if n == 0 {
                    break;
                }
                for ev in buf.drain(..) {
                    on_event(ev).await;
                }
            }
        }
    }
}

/// `NAME  TIME  VALUE  SEVERITY STATUS`, as caget/camonitor print it.
fn format_sample(name: &str, d: &Dbr, labels: &[String]) -> String {
    let value = format_value(&d.value, labels);
    let time = d.stamp.map(format_time).unwrap_or_else(|| "-".into());
    format!(
        "{name:<30} {time} {value} {} {}",
        status::severity_name(d.severity),
        status::alarm_status_name(d.status)
    )
}

fn format_value(v: &Value, labels: &[String]) -> String {
    let n = v.len();
    let items: Vec<String> = (0..n).filter_map(|i| v.get_string(i, labels)).collect();
    if v.is_array() {
        format!("[{}] ({n} elements)", items.join(", "))
    } else {
        items.join("")
    }
}

fn format_info(name: &str, i: &ConnInfo, meta: Option<&Meta>, now: &Dbr) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "name:        {name}");
    let _ = writeln!(
        s,
        "server:      {} (CA protocol 4.{})",
        i.server, i.server_minor
    );
    let _ = writeln!(s, "native type: {}", i.native);
    let _ = writeln!(s, "count:       {}", i.count);
    let _ = writeln!(s, "access:      {}", i.access);
    if let Some(m) = meta {
        match i.native {
            DbfType::Enum => {
                let _ = writeln!(
                    s,
                    "enum labels: {}",
                    m.enum_strs
                        .iter()
                        .enumerate()
                        .map(|(i, l)| format!("{i}={l}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            DbfType::String => {}
            native => {
                let _ = writeln!(s, "units (EGU): {}", m.units);
                if matches!(native, DbfType::Float | DbfType::Double) {
                    let _ = writeln!(s, "precision:   {}", m.precision);
                }
                let l = &m.limits;
                let _ = writeln!(s, "display:     {} .. {}", l.lower_disp, l.upper_disp);
                let _ = writeln!(
                    s,
                    "alarm:       {} .. {} (LOLO .. HIHI)",
                    l.lower_alarm, l.upper_alarm
                );
                let _ = writeln!(
                    s,
                    "warning:     {} .. {} (LOW .. HIGH)",
                    l.lower_warning, l.upper_warning
                );
                let _ = writeln!(s, "control:     {} .. {}", l.lower_ctrl, l.upper_ctrl);
            }
        }
    }
    let labels = meta.map(|m| m.enum_strs.as_slice()).unwrap_or(&[]);
    let _ = writeln!(s, "value:       {}", format_value(&now.value, labels));
    let _ = writeln!(
        s,
        "time:        {}",
        now.stamp.map(format_time).unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(
        s,
        "alarm:       {} {}",
        status::severity_name(now.severity),
        status::alarm_status_name(now.status)
    );
    s
}

/// ISO 8601 UTC with nanoseconds, e.g. `2024-01-01T00:00:00.500000000Z`: the project's one
/// formatter (`archiver_time`), on the CA client's time stamp.
fn format_time(t: Timestamp) -> String {
    archiver_time::Timestamp::new(t.secs, t.nanos)
        .iso(Precision::Nanos)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_ca::CaString;

    #[test]
    fn time_format() {
        assert_eq!(
            format_time(Timestamp {
                secs: 1_704_067_200,
                nanos: 500_000_000
            }),
            "2024-01-01T00:00:00.500000000Z"
        );
        assert_eq!(
            format_time(Timestamp::from_epics(0, 0)),
            "1990-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            format_time(Timestamp {
                secs: 951_782_400 + 86_399,
                nanos: 1
            }),
            "2000-02-29T23:59:59.000000001Z"
        );
    }

    #[test]
    fn sample_format() {
        let d = Dbr {
            status: 3,
            severity: 2,
            stamp: Some(Timestamp { secs: 0, nanos: 0 }),
            value: Value::Double(95.5),
            meta: None,
        };
        let s = format_sample("X", &d, &[]);
        assert!(
            s.starts_with("X ") && s.contains("1970-01-01T00:00:00.000000000Z 95.5 MAJOR HIHI"),
            "{s}"
        );
        let labels = vec!["OK".to_string(), "WARN".to_string()];
        assert_eq!(format_value(&Value::Enum(1), &labels), "WARN");
        assert_eq!(
            format_value(&Value::LongArray(vec![1, 2]), &[]),
            "[1, 2] (2 elements)"
        );
        assert_eq!(format_value(&Value::String(CaString::new("hi")), &[]), "hi");
    }
}
