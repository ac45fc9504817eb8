//! The engine against the project's own CA server, in process, for what rides on the
//! samples and what the policy decides: the archive-field policy comes from `EngineConfig`
//! (extra fields by `.RTYP`), the annotations follow the injected clock through the actor
//! (connection marks, changed fields, the daily dump, startup after resume), and extreme
//! sampling periods neither panic nor stop the task that archives every PV.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archiver_ca::server::{PvSpec, Server, ServerConfig};
use archiver_ca::{CaString, Client, Meta, Timestamp, Value};
use archiver_engine::{Engine, EngineConfig, EngineError, PvConfig, SamplingMethod};
use archiver_pb::{Granularity, Sample};
use archiver_storage::Tier;
use archiver_time::{Clock, ManualClock, SystemClock};

use support::wait_for;

/// The manual clock of the time crate, started at the current second.
fn manual_clock_now() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(archiver_pb::Timestamp::new(
        Timestamp::now().secs,
        0,
    )))
}

async fn setup(cfg: EngineConfig, clock: Arc<dyn Clock>) -> (Server, Engine, tempfile::TempDir) {
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(
        client,
        Tier::new("STS", dir.path().join("sts"), Granularity::Hour),
        cfg,
        clock,
    );
    (server, engine, dir)
}

fn text(s: &str) -> Value {
    Value::String(CaString::new(s))
}

fn fields(s: &Sample) -> Vec<String> {
    s.field_values
        .iter()
        .map(|f| format!("{}={}", f.name, f.val))
        .collect()
}

fn has(s: &Sample, field: &str) -> bool {
    fields(s).iter().any(|f| f == field)
}

/// Posts values to `pv` stamped at the engine's clock until some buffered sample satisfies
/// `done`; returns that sample.
async fn post_until(
    engine: &Engine,
    pv: &archiver_ca::server::Pv,
    clock: &ManualClock,
    k: &mut u32,
    done: impl Fn(&Sample) -> bool,
) -> Option<Sample> {
    for _ in 0..200 {
        let samples = engine.buffered(pv.name())?.samples;
        if let Some(s) = samples.into_iter().find(|s| done(s)) {
            return Some(s);
        }
        *k += 1;
        // A second ahead of the clock: after the PV's initial value (stamped by the real
        // clock), within the allowed drift.
        let stamp = Timestamp {
            secs: clock.now().secs + 1,
            nanos: *k * 1000,
        };
        pv.post(Value::Double(f64::from(*k)), stamp, 0, 0).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn archive_fields(engine: &Engine, pv: &str) -> Vec<String> {
    engine.status(pv).unwrap().config.archive_fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_fields_by_record_type_come_from_the_config() {
    let mut policy = BTreeMap::new();
    policy.insert("mbbo".to_string(), vec!["ZRST".to_string()]);
    let cfg = EngineConfig {
        default_archive_fields: vec!["HIHI".into()],
        record_type_fields: policy,
        // every record type keeps the defaults here (the next test checks Java's list)
        default_fields_record_types: Vec::new(),
        write_period: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let clock = manual_clock_now();
    let (server, engine, _dir) = setup(cfg, clock.clone()).await;
    for (pv, rtyp) in [("T:MBBO", "mbbo"), ("T:AO", "ao"), ("T:CHOSEN", "mbbo")] {
        server.add_pv(PvSpec::new(pv, Value::Double(1.0)));
        server.add_pv(PvSpec::new(&format!("{pv}.RTYP"), text(rtyp)));
        server.add_pv(PvSpec::new(&format!("{pv}.HIHI"), Value::Double(9.0)));
    }
    let zrst = server.add_pv(PvSpec::new("T:MBBO.ZRST", text("zero")));
    let auto = PvConfig {
        method: SamplingMethod::Monitor,
        period: 0.0,
        archive_fields: Vec::new(),
    };
    engine.archive("T:AO", auto.clone()).unwrap();
    engine.archive("T:MBBO", auto).unwrap();
    engine
        .archive(
            "T:CHOSEN",
            PvConfig {
                method: SamplingMethod::Monitor,
                period: 0.0,
                archive_fields: vec!["HIHI".into()],
            },
        )
        .unwrap();
    assert!(
        wait_for(10, || archive_fields(&engine, "T:MBBO") == ["HIHI", "ZRST"]).await,
        "ZRST added for the mbbo record: {:?}",
        archive_fields(&engine, "T:MBBO")
    );
    // The added field is monitored: a daily dump (the clock moved a day on) holds its
    // value once it has arrived...
    let pv = server.pv("T:MBBO").unwrap();
    let mut k = 0;
    let mut dumped = None;
    for _ in 0..20 {
        clock.advance(Duration::from_secs(86_400));
        let day = clock.now().secs;
        dumped = post_until(&engine, &pv, &clock, &mut k, |s| {
            s.time.secs > day && s.field_actual_change == Some(false)
        })
        .await
        .filter(|s| has(s, "ZRST=zero"));
        if dumped.is_some() {
            break;
        }
    }
    assert!(dumped.is_some(), "{:?}", engine.buffered("T:MBBO"));
    // ...and its change rides on the next sample.
    zrst.post(text("nothing"), Timestamp::now(), 0, 0).unwrap();
    let changed = post_until(&engine, &pv, &clock, &mut k, |s| has(s, "ZRST=nothing")).await;
    assert_eq!(
        changed.and_then(|s| s.field_actual_change),
        Some(true),
        "{:?}",
        engine.buffered("T:MBBO")
    );
    // Not in this policy: ao gets no DRVH/DRVL; a request that names its fields gets no
    // extras. (Both read, or skipped, well before the mbbo change above went through.)
    assert_eq!(archive_fields(&engine, "T:AO"), ["HIHI"]);
    assert_eq!(archive_fields(&engine, "T:CHOSEN"), ["HIHI"]);
    engine.shutdown().await;
}

/// Java's default policy gives the default fields only to `ai calc calcout longin
/// dfanout sub` (and `ao longout`, with DRVH and DRVL): a stringin or a waveform archived
/// without named fields stops them once its `.RTYP` is read (a fresh-user test found
/// channels on `SIM:SI:0.HIHI` searching forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_record_types_get_no_default_fields() {
    let cfg = EngineConfig {
        default_archive_fields: vec!["HIHI".into(), "LOPR".into()],
        write_period: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let clock = manual_clock_now();
    let (server, engine, _dir) = setup(cfg, clock.clone()).await;
    for (pv, rtyp) in [
        ("T:SI", "stringin"),
        ("T:WF", "waveform"),
        ("T:AI", "ai"),
        ("T:LO", "longout"),
    ] {
        server.add_pv(PvSpec::new(pv, Value::Double(1.0)));
        server.add_pv(PvSpec::new(&format!("{pv}.RTYP"), text(rtyp)));
        server.add_pv(PvSpec::new(&format!("{pv}.LOPR"), Value::Double(0.0)));
        let auto = PvConfig {
            method: SamplingMethod::Monitor,
            period: 0.0,
            archive_fields: Vec::new(),
        };
        engine.archive(pv, auto).unwrap();
    }
    assert!(
        wait_for(10, || archive_fields(&engine, "T:SI").is_empty()
            && archive_fields(&engine, "T:WF").is_empty()
            && archive_fields(&engine, "T:LO")
                == ["HIHI", "LOPR", "DRVH", "DRVL"])
        .await,
        "{:?} {:?} {:?}",
        archive_fields(&engine, "T:SI"),
        archive_fields(&engine, "T:WF"),
        archive_fields(&engine, "T:LO")
    );
    assert_eq!(archive_fields(&engine, "T:AI"), ["HIHI", "LOPR"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_follow_the_injected_clock() {
    let clock = manual_clock_now();
    let cfg = EngineConfig {
        default_archive_fields: vec!["HIHI".into()],
        record_type_fields: BTreeMap::new(),
        write_period: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let (server, engine, _dir) = setup(cfg, clock.clone()).await;
    let meta = Meta {
        units: "mA".into(),
        precision: 3,
        ..Meta::default()
    };
    let pv = server.add_pv(PvSpec::new("T:A", Value::Double(0.0)).meta(meta));
    let hihi = server.add_pv(PvSpec::new("T:A.HIHI", Value::Double(10.0)));
    server.add_pv(PvSpec::new("T:A.DESC", text("a pump")));
    let t0 = clock.now().secs;
    engine
        .archive(
            "T:A",
            PvConfig {
                method: SamplingMethod::Monitor,
                period: 0.0,
                archive_fields: Vec::new(),
            },
        )
        .unwrap();
    assert!(
        wait_for(10, || engine
            .status("T:A")
            .is_some_and(|s| s.conn.connected && s.meta.known))
        .await
    );
    let samples = || engine.buffered("T:A").unwrap().samples;
    let mut k = 0u32;
    // The first sample: never lost, regained at the clock's time, a startup.
    let first = post_until(&engine, &pv, &clock, &mut k, |_| true)
        .await
        .unwrap();
    let first = samples().into_iter().next().unwrap_or(first);
    assert!(has(&first, "cnxlostepsecs=0"), "{first:?}");
    assert!(has(&first, &format!("cnxregainedepsecs={t0}")), "{first:?}");
    assert!(has(&first, "startup=true"), "{first:?}");
    // The first dump, once the fields have values.
    let dump = post_until(&engine, &pv, &clock, &mut k, |s| {
        s.field_actual_change == Some(false)
    })
    .await
    .unwrap();
    assert!(
        has(&dump, "HIHI=10.0") && has(&dump, "DESC=a pump"),
        "{dump:?}"
    );

    // A changed archive field rides on a later sample as a change.
    hihi.post(Value::Double(11.0), Timestamp::now(), 0, 0)
        .unwrap();
    let change = post_until(&engine, &pv, &clock, &mut k, |s| has(s, "HIHI=11.0"))
        .await
        .unwrap();
    assert_eq!(change.field_actual_change, Some(true), "{change:?}");
    assert!(
        !has(&change, "DESC=a pump"),
        "runtime fields wait for the dump"
    );

    // A day later by the engine's clock: everything again, with EGU and PREC.
    clock.advance(Duration::from_secs(86_400));
    let day = post_until(&engine, &pv, &clock, &mut k, |s| {
        s.time.secs >= t0 + 86_400 && s.field_actual_change.is_some()
    })
    .await
    .unwrap();
    assert_eq!(day.field_actual_change, Some(false), "{day:?}");
    for f in ["HIHI=11.0", "DESC=a pump", "EGU=mA", "PREC=3"] {
        assert!(has(&day, f), "{f} in {day:?}");
    }

    // Resumed: the next sample is a startup again, regained at the clock's time.
    engine.pause("T:A").await.unwrap();
    clock.advance(Duration::from_secs(60));
    engine.resume("T:A").unwrap();
    let t1 = clock.now().secs;
    let resumed = post_until(&engine, &pv, &clock, &mut k, |s| has(s, "startup=true"))
        .await
        .unwrap();
    assert!(
        has(&resumed, &format!("cnxregainedepsecs={t1}")) && has(&resumed, "cnxlostepsecs=0"),
        "{resumed:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_sampling_periods_neither_panic_nor_stop_the_engine() {
    let cfg = EngineConfig {
        tick: Duration::from_millis(20),
        write_period: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let (server, engine, _dir) = setup(cfg, Arc::new(SystemClock)).await;
    let cases = [
        ("T:TINY", SamplingMethod::Monitor, 1e-30),
        ("T:HUGE", SamplingMethod::Monitor, 1e300),
        ("T:MAX", SamplingMethod::Monitor, f64::MAX),
        ("T:STINY", SamplingMethod::Scan, 1e-30),
        ("T:SHUGE", SamplingMethod::Scan, 1e300),
        ("T:OK", SamplingMethod::Monitor, 0.0),
    ];
    let mut pvs = Vec::new();
    for (name, method, period) in cases {
        pvs.push(server.add_pv(PvSpec::new(name, Value::Double(0.0))));
        engine
            .archive(
                name,
                PvConfig {
                    method,
                    period,
                    archive_fields: vec!["NONE".into()],
                },
            )
            .unwrap();
    }
    // Not periods at all: refused with a typed error.
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        let err = engine
            .archive(
                "T:BAD",
                PvConfig {
                    method: SamplingMethod::Monitor,
                    period: bad,
                    archive_fields: Vec::new(),
                },
            )
            .unwrap_err();
        assert!(matches!(err, EngineError::BadPeriod(_)), "{err}");
    }
    assert!(
        wait_for(10, || cases.iter().all(|(p, ..)| engine
            .status(p)
            .is_some_and(|s| s.conn.connected)))
        .await
    );
    // After the initial values (stamped by the real clock), within the allowed drift.
    let t0 = Timestamp::now().secs + 1;
    for k in 1..=20u32 {
        let stamp = Timestamp {
            secs: t0,
            nanos: k * 1000,
        };
        for pv in &pvs {
            pv.post(Value::Double(f64::from(k)), stamp, 0, 0).unwrap();
        }
    }
    let stored = |p: &str| engine.status(p).unwrap().counters.events_stored;
    // Every event of the tiny periods is kept (the initial value and 20 updates).
    assert!(
        wait_for(10, || ["T:TINY", "T:STINY", "T:OK"]
            .iter()
            .all(|p| stored(p) == 21))
        .await,
        "{:?}",
        cases.map(|(p, ..)| stored(p))
    );
    // Several ticks later the huge periods still hold their value back...
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stored("T:HUGE"), 0);
    assert_eq!(stored("T:MAX"), 0);
    // ...SCAN archived its first value only.
    assert_eq!(stored("T:SHUGE"), 1);
    // The task that archives every PV is still alive.
    let ok = &pvs[5];
    ok.post(
        Value::Double(99.0),
        Timestamp {
            secs: t0 + 1,
            nanos: 0,
        },
        0,
        0,
    )
    .unwrap();
    assert!(wait_for(10, || stored("T:OK") == 22).await);
    // A pause commits what the huge periods held back.
    engine.pause("T:HUGE").await.unwrap();
    assert_eq!(stored("T:HUGE"), 1);
    engine.shutdown().await;
}
