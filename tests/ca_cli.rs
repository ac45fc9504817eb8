//! `archiver ca get|info|monitor` run as an operator runs them: the real binary, a CA
//! server of this project (`archiver_ca::server`) in the test process on a free loopback
//! port, and only `EPICS_CA_*` variables telling the binary where to search.
//!
//! The served PVs are `server::sim::every_type` (each updates 10 times a second; its value
//! is a pure function of the tick k = time stamp × 10, so every printed (time, value) pair
//! is checked exactly) and one fixed PV with a known time stamp, alarm and metadata.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use archiver_ca::server::{PvSpec, Server, ServerConfig, sim};
use archiver_ca::{Limits, Meta, Timestamp, Value};

const RATE: u32 = 10;
const FIXED_STAMP: Timestamp = Timestamp {
    secs: 1_704_067_200,
    nanos: 500_000_000,
};

/// A CA server on a free loopback port, running on its own tokio runtime.
struct Ioc {
    prefix: String,
    port: u16,
    repeater: u16,
    _updates: tokio::task::JoinHandle<()>,
    _server: Server,
    _rt: tokio::runtime::Runtime,
}

fn free_port() -> u16 {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("bind a UDP port")
            .port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Ioc {
    fn start(tag: &str) -> Ioc {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let server = rt
            .block_on(Server::start(ServerConfig {
                port: 0,
                beacon_addrs: vec![],
                ..ServerConfig::default()
            }))
            .expect("start the CA server");
        let port = server.port();
        let prefix = format!("{tag}{port}:");
        let updates = {
            let _guard = rt.enter();
            sim::spawn_updates(&server, sim::every_type(&prefix), RATE)
        };
        let fixed = server.add_pv(
            PvSpec::new(&format!("{prefix}FIXED"), Value::Double(0.0))
                .meta(Meta {
                    units: "degC".into(),
                    precision: 2,
                    limits: Limits::from_array([50.0, 0.0, 45.0, 40.0, 5.0, 2.0, 60.0, -10.0]),
                    enum_strs: vec![],
                })
                .writable(),
        );
        fixed
            .post(Value::Double(42.5), FIXED_STAMP, 3, 2)
            .expect("post the fixed value");
        Ioc {
            prefix,
            port,
            repeater: free_port(),
            _updates: updates,
            _server: server,
            _rt: rt,
        }
    }

    fn pv(&self, kind: &str) -> String {
        format!("{}{kind}", self.prefix)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_archiver"));
        c.arg("ca")
            .args(args)
            .env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{}", self.port))
            .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
            .env("EPICS_CA_REPEATER_PORT", self.repeater.to_string())
            .env_remove("EPICS_CA_SERVER_PORT")
            .env_remove("EPICS_CA_MAX_SEARCH_PERIOD")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run archiver ca")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses `2024-01-01T00:00:00.500000000Z` (as the binary prints it) with the project's
/// one ISO-8601 parser, insisting on the nine fraction digits the binary writes.
fn parse_time(s: &str) -> Timestamp {
    let t = archiver_time::parse_iso8601(s).unwrap_or_else(|e| panic!("not a time stamp: {e}"));
    assert_eq!(
        s,
        t.iso(archiver_time::Precision::Nanos).to_string(),
        "not in the binary's form"
    );
    Timestamp {
        secs: t.secs,
        nanos: t.nanos,
    }
}

/// The sim tick of a time stamp (stamps are exactly k / RATE).
fn tick(t: Timestamp) -> i64 {
    let step = 1_000_000_000 / RATE;
    assert_eq!(t.nanos % step, 0, "{t:?} is not on a tick");
    t.secs * i64::from(RATE) + i64::from(t.nanos / step)
}

/// One `NAME TIME VALUE SEVERITY STATUS` line, split (the value may contain spaces).
struct Sample {
    name: String,
    stamp: Timestamp,
    value: String,
    severity: String,
    status: String,
}

fn parse_sample(line: &str) -> Sample {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert!(w.len() >= 5, "not a sample line: {line:?}");
    Sample {
        name: w[0].to_string(),
        stamp: parse_time(w[1]),
        value: w[2..w.len() - 2].join(" "),
        severity: w[w.len() - 2].to_string(),
        status: w[w.len() - 1].to_string(),
    }
}

/// (severity, status) names of the sim AI alarm at value `v`.
fn ai_alarm_names(v: f64) -> (&'static str, &'static str) {
    match sim::ai_alarm(v) {
        (0, 0) => ("NO_ALARM", "NO_ALARM"),
        (3, 2) => ("MAJOR", "HIHI"),
        (5, 2) => ("MAJOR", "LOLO"),
        (4, 1) => ("MINOR", "HIGH"),
        (6, 1) => ("MINOR", "LOW"),
        other => panic!("unexpected alarm {other:?}"),
    }
}

/// Checks a printed sample of a sim PV of `kind` against the value the server posts at
/// the tick of its time stamp; returns the tick.
fn check_sim_sample(s: &Sample, kind: &str) -> i64 {
    let k = tick(s.stamp);
    let want = sim::value_at(kind, k).expect("known kind");
    match (kind, want) {
        ("AI", Value::Double(v)) => {
            let got: f64 = s.value.parse().expect("a number");
            assert_eq!(got, v, "AI at tick {k}");
            let (sev, stat) = ai_alarm_names(v);
            assert_eq!((s.severity.as_str(), s.status.as_str()), (sev, stat));
        }
        ("LI", Value::Long(v)) => assert_eq!(s.value, v.to_string(), "LI at tick {k}"),
        ("MBBI", Value::Enum(v)) => {
            assert_eq!(
                s.value,
                ["OK", "WARN", "FAULT", "OFF"][usize::from(v)],
                "MBBI at tick {k}"
            );
        }
        ("WFL", Value::LongArray(a)) => {
            let items: Vec<String> = a.iter().map(ToString::to_string).collect();
            assert_eq!(
                s.value,
                format!("[{}] ({} elements)", items.join(", "), a.len()),
                "WFL at tick {k}"
            );
        }
        ("SI", Value::String(v)) => assert_eq!(s.value, v.to_string(), "SI at tick {k}"),
        (kind, _) => panic!("no check for {kind}"),
    }
    if kind != "AI" {
        assert_eq!(
            (s.severity.as_str(), s.status.as_str()),
            ("NO_ALARM", "NO_ALARM")
        );
    }
    k
}

/// Seconds since the Unix epoch now.
fn now_secs() -> i64 {
    Timestamp::now().secs
}

#[test]
fn get_prints_value_time_and_alarm_of_each_pv() {
    let ioc = Ioc::start("CLIGET");
    let kinds = ["AI", "LI", "MBBI", "WFL", "SI"];
    let mut args: Vec<String> = vec![ioc.pv("FIXED")];
    args.extend(kinds.iter().map(|k| ioc.pv(k)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ioc.run(&[&["get"], &args[..]].concat());
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1 + kinds.len(), "{stdout}");
    // the fixed PV: exactly what was posted
    let fixed = parse_sample(lines[0]);
    assert_eq!(fixed.name, ioc.pv("FIXED"));
    assert_eq!(fixed.stamp, FIXED_STAMP);
    assert_eq!(
        lines[0],
        format!(
            "{:<30} 2024-01-01T00:00:00.500000000Z 42.5 MAJOR HIHI",
            ioc.pv("FIXED")
        )
    );
    // the updating PVs: in order, each (time, value) consistent, and recent
    for (line, kind) in lines[1..].iter().zip(kinds) {
        let s = parse_sample(line);
        assert_eq!(s.name, ioc.pv(kind), "{line}");
        check_sim_sample(&s, kind);
        assert!(
            (now_secs() - s.stamp.secs).abs() <= 5,
            "stale time stamp in {line}"
        );
    }
}

#[test]
fn info_prints_server_type_access_and_metadata() {
    let ioc = Ioc::start("CLIINFO");
    let server = format!("127.0.0.1:{} (CA protocol 4.13)", ioc.port);

    let out = ioc.run(&["info", &ioc.pv("AI")]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
    for want in [
        format!("name:        {}", ioc.pv("AI")),
        format!("server:      {server}"),
        "native type: DBF_DOUBLE".into(),
        "count:       1".into(),
        "access:      read-only".into(),
        "units (EGU): mm".into(),
        "precision:   3".into(),
        "display:     -100 .. 100".into(),
        "alarm:       -90 .. 90 (LOLO .. HIHI)".into(),
        "warning:     -70 .. 70 (LOW .. HIGH)".into(),
        "control:     -100 .. 100".into(),
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in:\n{s}");
    }
    // the current value, time and alarm agree with each other
    let field = |k: &str| {
        s.lines()
            .filter_map(|l| l.strip_prefix(k))
            .next_back()
            .unwrap_or_else(|| panic!("no {k:?} in:\n{s}"))
            .trim()
            .to_string()
    };
    let k = tick(parse_time(&field("time:")));
    let Some(Value::Double(v)) = sim::value_at("AI", k) else {
        panic!("AI is a double")
    };
    assert_eq!(field("value:").parse::<f64>().expect("number"), v, "{s}");
    let (sev, stat) = ai_alarm_names(v);
    assert_eq!(field("alarm:"), format!("{sev} {stat}"), "{s}");

    let out = ioc.run(&["info", &ioc.pv("MBBI")]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
    assert!(s.contains("native type: DBF_ENUM\n"), "{s}");
    assert!(
        s.contains("enum labels: 0=OK 1=WARN 2=FAULT 3=OFF\n"),
        "{s}"
    );

    let out = ioc.run(&["info", &ioc.pv("WFL")]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
    assert!(s.contains("native type: DBF_LONG\ncount:       8\n"), "{s}");

    let out = ioc.run(&["info", &ioc.pv("FIXED")]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
    for want in [
        "access:      read/write",
        "units (EGU): degC",
        "precision:   2",
        "display:     0 .. 50",
        "alarm:       2 .. 45 (LOLO .. HIHI)",
        "warning:     5 .. 40 (LOW .. HIGH)",
        "control:     -10 .. 60",
        "value:       42.5",
        "time:        2024-01-01T00:00:00.500000000Z",
        "alarm:       MAJOR HIHI",
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in:\n{s}");
    }
}

/// Reads a child's stdout lines on a thread.
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends SIGINT (as Ctrl-C) to our child and waits up to 5 s for it to exit.
fn interrupt(child: &mut Child) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn monitor_prints_connection_and_every_update() {
    let ioc = Ioc::start("CLIMON");
    let name = ioc.pv("AI");
    let mut child = ioc
        .command(&["monitor", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn archiver ca monitor");
    let rx = line_reader(&mut child);
    let mut lines = Vec::new();
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while samples.len() < 6 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if !line.contains("***") {
                samples.push(parse_sample(&line));
            }
            lines.push(line);
        }
    }
    let status = interrupt(&mut child);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let all = lines.join("\n");
    assert!(
        samples.len() >= 6,
        "too few updates:\n{all}\nstderr:\n{stderr}"
    );
    assert_eq!(
        lines[0],
        format!(
            "{name} *** connected to 127.0.0.1:{} (DBF_DOUBLE, count 1, read-only)",
            ioc.port
        ),
        "{all}"
    );
    // every update, in order, none lost (10 Hz, one tick apart), each value right
    let ticks: Vec<i64> = samples
        .iter()
        .map(|s| {
            assert_eq!(s.name, name);
            check_sim_sample(s, "AI")
        })
        .collect();
    for w in ticks.windows(2) {
        assert_eq!(w[1], w[0] + 1, "not consecutive ticks: {ticks:?}\n{all}");
    }
    let status = status.expect("monitor did not exit on SIGINT within 5 s");
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
}

#[test]
fn a_name_nobody_serves_fails_naming_pv_wait_and_addresses() {
    let ioc = Ioc::start("CLINONE");
    let addr = format!("127.0.0.1:{}", ioc.port);
    let missing = format!("{}NOBODY:SERVES:THIS", ioc.prefix);
    let want =
        format!("no server answered the search for {missing} within 0.5 s (searched: {addr})");

    for cmd in ["get", "info"] {
        let t = Instant::now();
        let out = ioc.run(&[cmd, "-w", "0.5", &missing]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{cmd} succeeded: {stderr}");
        assert!(stderr.contains(&want), "{cmd}: {stderr}");
        assert!(text(&out.stdout).is_empty(), "{cmd}: {}", text(&out.stdout));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{cmd} took {:?}",
            t.elapsed()
        );
    }

    // get of a served and an unserved PV: prints the one, fails naming the other
    let out = ioc.run(&["get", "-w", "0.5", &ioc.pv("FIXED"), &missing]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("42.5 MAJOR HIHI"), "{stdout}");
    assert!(stderr.contains(&want), "{stderr}");
    assert!(stderr.contains("1 of 2 PVs could not be read"), "{stderr}");

    // monitor reports the unanswered search and keeps searching until interrupted
    let mut child = ioc
        .command(&["monitor", "-w", "0.5", &missing])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn archiver ca monitor");
    let err = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(10));
    let still_running = child.try_wait().ok().flatten().is_none();
    let _ = interrupt(&mut child);
    let line = line.expect("monitor printed nothing on stderr within 10 s");
    assert_eq!(
        line,
        format!(
            "{missing}: no server answered the search within 0.5 s (searched: {addr}); still searching"
        )
    );
    assert!(
        still_running,
        "monitor exited after reporting the missing PV"
    );
}
