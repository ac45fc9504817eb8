//! `archiver pva`: pvAccess diagnostics for operators (like `pvget`, `pvinfo`,
//! `pvmonitor`), using the archiver's own PVA client and the EPICS_PVA_* environment.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use archiver_pva::nt;
use archiver_pva::value::{lookup, marked};
use archiver_pva::{
    BitSet, ChannelEvent, Client, ClientConfig, FieldDesc, Overflow, Pretty, PvRequest, PvValue,
    event_queue,
};
use archiver_time::Precision;

/// pvAccess diagnostics.
#[derive(Debug, clap::Subcommand)]
pub enum PvaCommand {
    /// Read PVs once. Normative types print as `NAME TIME VALUE SEVERITY STATUS`; other
    /// structures (or `-v`) print the whole value, one member per line.
    Get {
        /// PV names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Seconds to wait for the server.
        #[arg(short = 'w', long = "wait", default_value_t = 5.0)]
        wait: f64,
        /// pvRequest, e.g. `field(value,alarm)` (default: the whole structure).
        #[arg(short = 'r', long = "request", default_value = "")]
        request: String,
        /// Print the whole structure.
        #[arg(short = 'v', long = "verbose")]
        verbose: bool,
    },
    /// Show each PV's server and type (GET_FIELD), as pvinfo.
    Info {
        /// PV names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Seconds to wait for the server.
        #[arg(short = 'w', long = "wait", default_value_t = 5.0)]
        wait: f64,
    },
    /// Print updates and connection changes until interrupted.
    Monitor {
        /// PV names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Seconds after which unanswered searches are reported (searching continues).
        #[arg(short = 'w', long = "wait", default_value_t = 5.0)]
        wait: f64,
        /// pvRequest, e.g. `field(value,alarm,timeStamp)` (default: the whole structure,
        /// as pvmonitor: the display precision and units are then known).
        #[arg(short = 'r', long = "request", default_value = "")]
        request: String,
        /// Print the whole structure of each update.
        #[arg(short = 'v', long = "verbose")]
        verbose: bool,
    },
}

/// Runs a `pva` subcommand.
pub async fn run(cmd: PvaCommand) -> Result<()> {
    let cfg = ClientConfig::from_env().context("reading the EPICS_PVA_* environment")?;
    let client = Client::new(cfg).await.context("starting the PVA client")?;
    match cmd {
        PvaCommand::Get {
            names,
            wait,
            request,
            verbose,
        } => {
            get(
                &client,
                &channel_names(names)?,
                secs(wait),
                &request,
                verbose,
            )
            .await
        }
        PvaCommand::Info { names, wait } => {
            let names = channel_names(names)?;
            let mut failed = 0;
            for name in &names {
                if let Err(e) = info(&client, name, secs(wait)).await {
                    eprintln!("{name}: {e:#}");
                    failed += 1;
                }
            }
            crate::ca_cmd::all_read(failed, names.len())
        }
        PvaCommand::Monitor {
            names,
            wait,
            request,
            verbose,
        } => {
            monitor(
                &client,
                &channel_names(names)?,
                secs(wait),
                &request,
                verbose,
            )
            .await
        }
    }
}

/// The channel names of `names` as archivePV and getPVStatus write them: `pva://NAME` is
/// the channel NAME; `NAME#a/b` (a member archived as its own PV) is refused with how to
/// read that member here instead of searching for a channel that no server has.
fn channel_names(names: Vec<String>) -> Result<Vec<String>> {
    names
        .into_iter()
        .map(|n| {
            let bare = n.strip_prefix("pva://").unwrap_or(&n);
            if let Some((channel, path)) = bare.split_once('#') {
                bail!(
                    "{n:?} names the member {path:?} of the channel {channel:?}: read it with \
                     `-r 'field({})' {channel}`",
                    path.replace('/', ".")
                );
            }
            Ok(bare.to_string())
        })
        .collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.01, 3600.0)
    } else {
        5.0
    })
}

async fn get(
    client: &Client,
    names: &[String],
    wait: Duration,
    request: &str,
    verbose: bool,
) -> Result<()> {
    let req = PvRequest::parse(request)?;
    let chans = names
        .iter()
        .map(|n| client.channel(n).map(|c| c.0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut failed = 0;
    for ch in &chans {
        match ch.get_marked(req.clone(), wait).await {
            Ok((d, v, sent)) => print!("{}", format_update(ch.name(), &d, &v, &sent, verbose)),
            Err(e) => {
                eprintln!("{}: {e}", ch.name());
                failed += 1;
            }
        }
    }
    crate::ca_cmd::all_read(failed, names.len())
}

async fn info(client: &Client, name: &str, wait: Duration) -> Result<()> {
    let (ch, _rx) = client.channel(name)?;
    let t = ch.get_field(wait).await?;
    println!("name:   {name}");
    if let Some(s) = ch.server() {
        println!("server: {s}");
    }
    println!("type:");
    print!("{t}");
    Ok(())
}

async fn monitor(
    client: &Client,
    names: &[String],
    wait: Duration,
    request: &str,
    verbose: bool,
) -> Result<()> {
    let req = PvRequest::parse(request)?;
    let (q, rx) = event_queue(100_000, Overflow::DropNewest);
    let mut chans = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let ch = client.create_channel(n, i as u64, &q)?;
        ch.subscribe(req.clone());
        chans.push(ch);
    }
    drop(q);
    // per channel, the members the server has sent since it connected (a server may
    // send the whole type and mark only what the pvRequest selected)
    let mut sent = vec![BitSet::new(); names.len()];
    let not_found = async {
        tokio::time::sleep(wait).await;
        for ch in &chans {
            if ch.server().is_none() {
                eprintln!(
                    "{}: no server answered within {:.1} s (searched: {}); still searching",
                    ch.name(),
                    wait.as_secs_f64(),
                    client.searched()
                );
            }
        }
        std::future::pending::<()>().await;
    };
    crate::ca_cmd::monitor_loop(
        not_found,
        async |buf: &mut Vec<_>| rx.recv_many(buf, 1024).await,
        async |ev: archiver_pva::Event| {
            let Some(name) = names.get(ev.key as usize) else {
                return;
            };
            match ev.kind {
                ChannelEvent::Update { data, .. } => {
                    let Some(sent) = sent.get_mut(ev.key as usize) else {
                        return;
                    };
                    sent.union_with(&data.changed);
                    print!(
                        "{}",
                        format_update(name, &data.desc, &data.value, sent, verbose)
                    );
                    if data.overrun.any() {
                        println!("{name} *** overrun: the server dropped updates before this one");
                    }
                }
                ChannelEvent::Connected { server, .. } => {
                    if let Some(sent) = sent.get_mut(ev.key as usize) {
                        sent.clear();
                    }
                    println!("{name} *** connected to {server}")
                }
                ChannelEvent::Disconnected { at } => {
                    let t = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    println!(
                        "{name} *** disconnected at {}",
                        format_time(t.as_secs() as i64, t.subsec_nanos())
                    );
                }
                ChannelEvent::SubscriptionError { message, .. } => {
                    println!("{name} *** monitor error: {message}")
                }
            }
        },
    )
    .await;
    let dropped: u64 = chans.iter().map(|c| c.dropped()).sum();
    let overruns: u64 = chans.iter().map(|c| c.overruns()).sum();
    if dropped > 0 || overruns > 0 {
        eprintln!("{dropped} updates dropped (output too slow), {overruns} overrun by the server");
    }
    Ok(())
}

/// pvData alarm severities (`alarm_t.severity`).
const SEVERITIES: [&str; 4] = ["NO_ALARM", "MINOR", "MAJOR", "INVALID"];
/// pvData alarm status (`alarm_t.status`, pvData `AlarmStatus`).
const STATUSES: [&str; 8] = [
    "NO_STATUS",
    "DEVICE",
    "DRIVER",
    "RECORD",
    "DB",
    "CONF",
    "UNDEFINED",
    "CLIENT",
];

/// One line `NAME [TIME] VALUE [UNITS] [SEVERITY STATUS [message]]` for a value with a
/// `value` member, as pvget/pvmonitor print normative types: only what the server sent
/// (`sent`: members marked in the reply; no `timeStamp` sent, no time, never 1970), a
/// floating-point value with `display.precision` decimals when the server gives one,
/// `display.units` after it. The whole tree (after the name) otherwise or when `verbose`.
fn format_update(name: &str, d: &FieldDesc, v: &PvValue, sent: &BitSet, verbose: bool) -> String {
    let has = |path: &str| d.lookup(path).is_some() && marked(d, sent, path);
    if !verbose && !fully_sent(d, sent, "value") {
        // `-r 'field(display.units)'`, `-r 'field(value.a.b)'`: the server sends the whole
        // type and marks what was asked for; the rest holds nothing it sent.
        let mut out = format!("{name}\n");
        sent_members(d, d, v, sent, "", &mut out);
        return out;
    }
    let Some((vd, vv)) = lookup(d, v, "value").filter(|_| !verbose) else {
        return format!("{name}\n{}", Pretty { desc: d, value: v });
    };
    let time = nt::time_stamp(d, v)
        .filter(|_| has("timeStamp"))
        .map(|t| format!(" {}", format_time(t.seconds, t.nanos.max(0) as u32)))
        .unwrap_or_default();
    let display = nt::display(d, v);
    let precision = display.precision.filter(|_| has("display.precision"));
    let value = format_value(vd, vv, precision);
    let units = display
        .units
        .filter(|u| !u.is_empty() && has("display.units"))
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    let alarm = nt::alarm(d, v)
        .filter(|_| has("alarm"))
        .map(|a| {
            let sev = usize::try_from(a.severity)
                .ok()
                .and_then(|i| SEVERITIES.get(i))
                .unwrap_or(&"UNKNOWN");
            let st = usize::try_from(a.status)
                .ok()
                .and_then(|i| STATUSES.get(i))
                .unwrap_or(&"UNKNOWN");
            if a.message.is_empty() {
                format!(" {sev} {st}")
            } else {
                format!(" {sev} {st} {}", a.message)
            }
        })
        .unwrap_or_default();
    format!("{name:<30}{time} {value}{units}{alarm}\n")
}

/// True when member `path` (dotted) was sent whole: the whole structure's bit, its own, or
/// that of a structure above it (`marked` also counts a member sent in part). A path that
/// names no member was not sent.
fn sent_whole(d: &FieldDesc, sent: &BitSet, path: &str) -> bool {
    if sent.get(0) {
        return true;
    }
    let mut end = 0;
    loop {
        let next = path[end..].find('.').map(|i| end + i);
        match d.lookup(&path[..next.unwrap_or(path.len())]) {
            Some((_, off)) if sent.get(off) => return true,
            None => return false,
            Some(_) => {}
        }
        match next {
            Some(n) => end = n + 1,
            None => return false,
        }
    }
}

/// True when member `path` was sent whole ([`sent_whole`]) or member by member (QSRV marks
/// an enum's `value.index` and `value.choices`, not `value`).
fn fully_sent(root: &FieldDesc, sent: &BitSet, path: &str) -> bool {
    if sent_whole(root, sent, path) {
        return true;
    }
    match root.lookup(path) {
        Some((FieldDesc::Structure { desc, .. }, _)) => {
            !desc.fields.is_empty()
                && desc
                    .fields
                    .iter()
                    .all(|(m, _)| fully_sent(root, sent, &format!("{path}.{m}")))
        }
        _ => false,
    }
}

/// One indented line `path value` for each member of `v` (under `prefix`) the server sent
/// whole, descending into structures sent in part; `root` is the type the bits are over.
fn sent_members(
    root: &FieldDesc,
    d: &FieldDesc,
    v: &PvValue,
    sent: &BitSet,
    prefix: &str,
    out: &mut String,
) {
    let (FieldDesc::Structure { desc, .. }, PvValue::Structure(members)) = (d, v) else {
        return;
    };
    for ((member, md), mv) in desc.fields.iter().zip(members) {
        let path = if prefix.is_empty() {
            member.clone()
        } else {
            format!("{prefix}.{member}")
        };
        if fully_sent(root, sent, &path) {
            let text = format_value(md, mv, None);
            out.push_str(&format!("    {path} {}\n", text.trim_end()));
        } else if marked(root, sent, &path) {
            sent_members(root, md, mv, sent, &path, out);
        }
    }
}

/// Decimals shown at most (an f64 holds 17 significant digits).
const MAX_PRECISION: i32 = 17;

/// A value as pvget prints it: an enum's choice, a floating-point number (or array) with
/// `precision` decimals when the server gives a precision (pvget's display.precision),
/// anything else as the value tree prints it.
fn format_value(d: &FieldDesc, v: &PvValue, precision: Option<i32>) -> String {
    if nt::is_enum(d)
        && let Some((i, choices)) = nt::enum_value(d, v)
    {
        return usize::try_from(i)
            .ok()
            .and_then(|i| choices.get(i))
            .cloned()
            .unwrap_or_else(|| i.to_string());
    }
    if let Some(p) = precision {
        let p = p.clamp(0, MAX_PRECISION) as usize;
        let fixed = |x: f64| format!("{x:.p$}");
        let list = |xs: Vec<String>| format!("[{}] ({} elements)", xs.join(", "), xs.len());
        match v {
            PvValue::F64(x) => return fixed(*x),
            PvValue::F32(x) => return fixed(f64::from(*x)),
            PvValue::F64Array(a) => return list(a.iter().map(|x| fixed(*x)).collect()),
            PvValue::F32Array(a) => {
                return list(a.iter().map(|x| fixed(f64::from(*x))).collect());
            }
            _ => {}
        }
    }
    let s = Pretty { desc: d, value: v }.to_string();
    // a scalar or array prints as "TYPE  VALUE": keep the value
    let text = s
        .trim_end()
        .split_once(' ')
        .map(|x| x.1)
        .unwrap_or(&s)
        .trim();
    match v {
        PvValue::StringArray(a) => format!("{text} ({} elements)", a.len()),
        _ if matches!(d, FieldDesc::ScalarArray(_)) => {
            let n = text.matches(',').count() + usize::from(text.len() > 2);
            format!("{text} ({n} elements)")
        }
        _ => text.to_string(),
    }
}

/// ISO 8601 UTC with nanoseconds (the project's one formatter, `archiver_time`).
fn format_time(secs: i64, nanos: u32) -> String {
    archiver_time::Timestamp::new(secs, nanos)
        .iso(Precision::Nanos)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pva::ScalarType;
    use archiver_pva::nt::desc;

    #[test]
    fn names_as_archive_pv_writes_them_are_channels_or_a_hint() {
        let names = channel_names(vec!["pva://A:B".into(), "C:D".into()]).unwrap();
        assert_eq!(names, ["A:B", "C:D"]);
        let e = channel_names(vec!["pva://S:T#value/a/b".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("-r 'field(value.a.b)' S:T"), "{e}");
    }

    /// Sets member `path` (dotted) of `v` (a value of `d`) to `new`.
    fn set(d: &FieldDesc, v: &mut PvValue, path: &str, new: PvValue) {
        let (first, rest) = path.split_once('.').unwrap_or((path, ""));
        let s = d.as_struct().unwrap();
        let i = s.index_of(first).unwrap();
        let PvValue::Structure(m) = v else { panic!() };
        if rest.is_empty() {
            m[i] = new;
        } else {
            set(&s.fields[i].1, &mut m[i], rest, new);
        }
    }

    /// Every member sent (bit 0: the whole structure).
    fn all() -> BitSet {
        let mut b = BitSet::new();
        b.set(0);
        b
    }

    /// The bits of members `paths` of `d`, as a server marks what a pvRequest selected.
    fn only(d: &FieldDesc, paths: &[&str]) -> BitSet {
        let mut b = BitSet::new();
        for p in paths {
            b.set(d.lookup(p).unwrap().1);
        }
        b
    }

    /// An NTScalar double 1.23456789 mm, precision 3, at 2024-01-01T00:00:00.5Z, MINOR.
    fn ai() -> (FieldDesc, PvValue) {
        let d = desc::nt_scalar(desc::scalar(ScalarType::F64));
        let mut v = PvValue::default_for(&d);
        set(&d, &mut v, "value", PvValue::F64(1.234_567_89));
        set(&d, &mut v, "display.units", PvValue::String("mm".into()));
        set(&d, &mut v, "display.precision", PvValue::I32(3));
        set(
            &d,
            &mut v,
            "timeStamp.secondsPastEpoch",
            PvValue::I64(1_704_067_200),
        );
        set(
            &d,
            &mut v,
            "timeStamp.nanoseconds",
            PvValue::I32(500_000_000),
        );
        set(&d, &mut v, "alarm.severity", PvValue::I32(1));
        set(&d, &mut v, "alarm.status", PvValue::I32(3));
        (d, v)
    }

    #[test]
    fn nt_line_and_enum_and_arrays() {
        let d = desc::members(
            "epics:nt/NTScalarArray:1.0",
            vec![
                ("value", FieldDesc::ScalarArray(ScalarType::F64)),
                ("alarm", desc::alarm()),
            ],
        );
        let v = PvValue::Structure(vec![
            PvValue::F64Array(vec![1.0, 2.5]),
            PvValue::Structure(vec![
                PvValue::I32(2),
                PvValue::I32(3),
                PvValue::String("HIHI".into()),
            ]),
        ]);
        let s = format_update("X", &d, &v, &all(), false);
        assert!(
            s.contains("[1.0, 2.5] (2 elements) MAJOR RECORD HIHI"),
            "{s}"
        );
        let s = format_update("X", &d, &v, &all(), true);
        assert!(s.contains("double[] value [1.0, 2.5]"), "{s}");
        assert_eq!(
            format_time(1_704_067_200, 5),
            "2024-01-01T00:00:00.000000005Z"
        );
    }

    /// Found by a fresh-user test: `-r 'field(value,display.units)'` printed a 1970 time
    /// (the server sends the whole type and marks the selected members) and no units.
    #[test]
    fn only_what_the_server_sent_is_printed_with_units() {
        let (d, mut v) = ai();
        // what a server that sent value and display.units alone leaves in the rest
        set(&d, &mut v, "timeStamp.secondsPastEpoch", PvValue::I64(0));
        let s = format_update("X", &d, &v, &only(&d, &["value", "display.units"]), false);
        assert_eq!(s, format!("{:<30} 1.23456789 mm\n", "X"));
        assert!(!s.contains("1970"), "{s}");
    }

    /// Found by a fresh-user test: `-r 'field(display.units)'` printed `0 mm` (a value never
    /// sent) and `-r 'field(value.a.b)'` the unsent members beside it as zeros.
    #[test]
    fn a_request_without_the_whole_value_prints_only_what_was_sent() {
        let (d, v) = ai();
        let s = format_update("X", &d, &v, &only(&d, &["display.units"]), false);
        assert_eq!(s, "X\n    display.units \"mm\"\n");
        let d = desc::members(
            "",
            vec![(
                "value",
                desc::members(
                    "",
                    vec![
                        (
                            "a",
                            desc::members(
                                "",
                                vec![
                                    ("b", desc::scalar(ScalarType::I32)),
                                    ("d", desc::scalar(ScalarType::I32)),
                                ],
                            ),
                        ),
                        ("c", desc::scalar(ScalarType::I32)),
                    ],
                ),
            )],
        );
        let mut v = PvValue::default_for(&d);
        set(&d, &mut v, "value.a.b", PvValue::I32(7));
        let s = format_update("X", &d, &v, &only(&d, &["value.a.b"]), false);
        assert_eq!(s, "X\n    value.a.b 7\n");
    }

    /// Found by a fresh-user test: more digits than display.precision.
    #[test]
    fn floating_values_follow_the_servers_precision() {
        let (d, v) = ai();
        assert_eq!(
            format_update("X", &d, &v, &all(), false),
            format!(
                "{:<30} 2024-01-01T00:00:00.500000000Z 1.235 mm MINOR RECORD\n",
                "X"
            )
        );
        // no precision sent: the value as it is
        let s = format_update("X", &d, &v, &only(&d, &["value", "timeStamp"]), false);
        assert!(s.ends_with("Z 1.23456789\n"), "{s}");
        // arrays too, and a precision out of range is clamped
        let d = desc::nt_scalar(FieldDesc::ScalarArray(ScalarType::F32));
        let mut v = PvValue::default_for(&d);
        set(&d, &mut v, "value", PvValue::F32Array(vec![0.5, 2.25]));
        set(&d, &mut v, "display.precision", PvValue::I32(1));
        let s = format_update("X", &d, &v, &only(&d, &["value", "display"]), false);
        assert!(s.ends_with(" [0.5, 2.2] (2 elements)\n"), "{s}");
        set(&d, &mut v, "display.precision", PvValue::I32(-4));
        let s = format_update("X", &d, &v, &all(), false);
        assert!(s.contains(" [0, 2] (2 elements)"), "{s}");
    }
}
