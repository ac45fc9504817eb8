//! The engine archiving `pva://` PVs from real servers: NTScalar double/int/string,
//! NTScalarArray and NTEnum from an IOC (types, exact values, time stamps, alarms,
//! metadata, connection marks), and from p4p's server a custom structure as
//! V4_GENERIC_BYTES, one of its members as a PV of its own (`pva://NAME#value/x`, taking
//! only updates of that member) and an NTTable column.

#![allow(clippy::unwrap_used)]

mod pva_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use archiver_engine::{Engine, EngineConfig, PvConfig, SamplingMethod};
use archiver_pb::{Granularity, PayloadType, Sample, Value};
use archiver_pva::value::{decode_value, lookup};
use archiver_pva::wire::Reader;
use archiver_pva::{ClientConfig, PvValue, TypeCache, types};
use archiver_storage::Tier;
use archiver_time::SystemClock;
use pva_support::Server;

fn every_event() -> PvConfig {
    PvConfig {
        method: SamplingMethod::Monitor,
        period: 0.0,
        archive_fields: Vec::new(),
    }
}

/// Polls until `pv` has at least `n` buffered samples; returns them.
async fn samples(engine: &Engine, pv: &str, n: usize) -> (PayloadType, Vec<Sample>) {
    for _ in 0..200 {
        if let Some(b) = engine.buffered(pv)
            && b.samples.len() >= n
        {
            return (b.payload_type, b.samples);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{pv}: fewer than {n} samples: {:?}",
        engine.status(pv).map(|s| (s.counters, s.conn))
    );
}

fn field<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
    s.field_value(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_normative_types_structures_and_members() {
    let mut ioc = Server::start("pva_ioc.py", "PE");
    let mut p4p = Server::start("p4p_server.py", "PS");
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 100;
    ioc.cmd(&format!("set AI 12.625 {t0}.25 1"));
    ioc.cmd(&format!("set LI -42 {}.5", t0 + 1));
    ioc.cmd(&format!("set SI some_text {}.75", t0 + 2));
    ioc.cmd(&format!("set WF 1,2.5,-3 {}.125", t0 + 3));
    ioc.cmd(&format!("set MBBI 2 {} 2", t0 + 4));
    p4p.cmd(&format!("x 4.5 {} 9", t0 + 5));

    let dir = tempfile::tempdir().unwrap();
    let ca = archiver_ca::Client::new(
        archiver_ca::ClientConfig::builder()
            .addr_list("127.0.0.1:1")
            .auto_addr_list(false)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let cfg = EngineConfig {
        write_period: Duration::from_secs(3600),
        pva: Some(ClientConfig {
            addr_list: vec![
                format!("127.0.0.1:{}", ioc.udp).parse().unwrap(),
                format!("127.0.0.1:{}", p4p.udp).parse().unwrap(),
            ],
            auto_addr_list: false,
            ..ClientConfig::default()
        }),
        ..EngineConfig::default()
    };
    let engine = Engine::start(
        ca,
        Tier::new("STS", dir.path().join("sts"), Granularity::Hour),
        cfg,
        Arc::new(SystemClock),
    );
    for pv in [
        "pva://PE:AI",
        "pva://PE:LI",
        "pva://PE:SI",
        "pva://PE:WF",
        "pva://PE:MBBI",
        "pva://PS:STRUCT",
        "pva://PS:STRUCT#value/x",
        "pva://PS:TABLE#value/pos",
        "pva://PS:STRUCT#value/nonexist",
    ] {
        engine.archive(pv, every_event()).unwrap();
    }
    assert!(engine.uses_pva("PE:AI") && engine.uses_pva("PS:STRUCT#value/x"));
    assert!(
        engine.status("pva://PE:AI").is_none(),
        "stored without the prefix"
    );

    let (ty, s) = samples(&engine, "PE:AI", 1).await;
    assert_eq!(ty, PayloadType::ScalarDouble);
    assert_eq!(s[0].value, Value::ScalarDouble(12.625));
    assert_eq!((s[0].time.secs, s[0].time.nanos), (t0, 250_000_000));
    assert_eq!((s[0].severity, s[0].status), (1, 1));
    assert_eq!(
        field(&s[0], "cnxlostepsecs"),
        Some("0"),
        "{:?}",
        s[0].field_values
    );
    assert_eq!(field(&s[0], "startup"), Some("true"));
    // the structure's other members as archive fields (Java's FieldValuesCache, V3 names
    // where there is one): all of them in the first sample's dump, with EGU and PREC
    for (name, v) in [
        ("HIHI", "90.0"),
        ("HIGH", "70.0"),
        ("LOW", "-70.0"),
        ("LOLO", "-90.0"),
        ("HOPR", "100.0"),
        ("LOPR", "-100.0"),
        ("EGU", "mm"),
        ("PREC", "3"),
    ] {
        assert_eq!(
            field(&s[0], name),
            Some(v),
            "{name}: {:?}",
            s[0].field_values
        );
    }
    // the daily dump names members by their pvData path, as Java's dump
    // (FieldValuesCache.getUpdatedFieldValues(true)), the V3 names above being the
    // changes Java reports on the first sample after a connect
    for (name, v) in [
        ("valueAlarm.highAlarmLimit", "90.0"),
        ("valueAlarm.lowAlarmLimit", "-90.0"),
        ("display.limitLow", "-100.0"),
        ("display.limitHigh", "100.0"),
        ("display.units", "mm"),
        ("display.precision", "3"),
        ("display.form.index", "0"),
    ] {
        assert_eq!(
            field(&s[0], name),
            Some(v),
            "{name}: {:?}",
            s[0].field_values
        );
    }
    assert_eq!(s[0].field_actual_change, Some(false));
    assert!(
        field(&s[0], "timeStamp.userTag").is_none() && field(&s[0], "value").is_none(),
        "{:?}",
        s[0].field_values
    );
    // a changed limit rides on the next sample as a change
    ioc.cmd("field AI HIHI 95");
    ioc.cmd(&format!("set AI 13.5 {}.5", t0 + 8));
    let (_, s) = samples(&engine, "PE:AI", 2).await;
    assert_eq!(s[1].value, Value::ScalarDouble(13.5));
    assert_eq!(
        field(&s[1], "HIHI"),
        Some("95.0"),
        "{:?}",
        s[1].field_values
    );
    assert_eq!(
        field(&s[1], "LOLO"),
        None,
        "unchanged: {:?}",
        s[1].field_values
    );
    assert_eq!(s[1].field_actual_change, Some(true));
    let st = engine.status("PE:AI").unwrap();
    assert!(st.meta.known);
    assert_eq!((st.meta.egu.as_str(), st.meta.prec), ("mm", 3));
    assert_eq!(
        st.meta.limits,
        [100.0, -100.0, 95.0, 70.0, -70.0, -90.0, 100.0, -100.0]
    );
    assert!(st.conn.connected);

    let (ty, s) = samples(&engine, "PE:LI", 1).await;
    assert_eq!(
        (ty, &s[0].value),
        (PayloadType::ScalarInt, &Value::ScalarInt(-42))
    );
    let (ty, s) = samples(&engine, "PE:SI", 1).await;
    assert_eq!(
        (ty, &s[0].value),
        (
            PayloadType::ScalarString,
            &Value::ScalarString("some_text".into())
        )
    );
    let (ty, s) = samples(&engine, "PE:WF", 1).await;
    assert_eq!(
        (ty, &s[0].value),
        (
            PayloadType::WaveformDouble,
            &Value::VectorDouble(vec![1.0, 2.5, -3.0])
        )
    );
    assert_eq!(s[0].time.nanos, 125_000_000);
    assert_eq!(engine.status("PE:WF").unwrap().conn.element_count, 3);
    let (ty, s) = samples(&engine, "PE:MBBI", 1).await;
    assert_eq!(
        (ty, &s[0].value),
        (PayloadType::ScalarEnum, &Value::ScalarEnum(2))
    );
    assert_eq!(s[0].severity, 2);
    assert_eq!(
        engine.status("PE:MBBI").unwrap().meta.labels,
        ["OK", "WARN", "FAULT"]
    );

    // a custom structure: V4_GENERIC_BYTES holding the type and the whole value
    let (ty, s) = samples(&engine, "PS:STRUCT", 1).await;
    assert_eq!(ty, PayloadType::V4GenericBytes);
    assert_eq!((s[0].time.secs, s[0].time.nanos), (t0 + 5, 9));
    let Value::V4GenericBytes(bytes) = &s[0].value else {
        panic!()
    };
    let mut r = Reader::new(bytes, true);
    let mut cache = TypeCache::new();
    let d = types::decode_type(&mut r, &mut cache).unwrap().unwrap();
    let mut v = PvValue::default_for(&d);
    decode_value(&mut r, &mut cache, &d, &mut v).unwrap();
    assert_eq!(d.id(), "test:point_t");
    assert_eq!(lookup(&d, &v, "value.x").unwrap().1, &PvValue::F64(4.5));
    assert_eq!(s[0].user_tag, Some(0));

    // one member as its own PV
    let (ty, s) = samples(&engine, "PS:STRUCT#value/x", 1).await;
    assert_eq!(
        (ty, &s[0].value),
        (PayloadType::ScalarDouble, &Value::ScalarDouble(4.5))
    );
    let (ty, s) = samples(&engine, "PS:TABLE#value/pos", 1).await;
    assert_eq!(
        (ty, &s[0].value),
        (
            PayloadType::WaveformDouble,
            &Value::VectorDouble(vec![0.5, 1.5])
        )
    );

    // an update of y reaches the structure but not the x member's PV; one of x reaches both
    p4p.cmd(&format!("y 7.0 {}", t0 + 6));
    samples(&engine, "PS:STRUCT", 2).await;
    p4p.cmd(&format!("x 6.5 {} 0", t0 + 7));
    let (_, s) = samples(&engine, "PS:STRUCT#value/x", 2).await;
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[1].value, Value::ScalarDouble(6.5));
    assert_eq!(s[1].time.secs, t0 + 7);
    assert_eq!(samples(&engine, "PS:STRUCT", 3).await.1.len(), 3);
    // a path naming no member (a typo after '#'): nothing stored, never the whole
    // structure; its updates are counted as dropped for want of a type
    let st = engine.status("PS:STRUCT#value/nonexist").unwrap();
    assert_eq!(
        (st.archived_type, st.buffered, st.counters.events_stored),
        (None, 0, 0),
        "{st:?}"
    );
    assert!(st.counters.dropped_no_type >= 1, "{:?}", st.counters);

    // a restart: disconnect counted, the first sample after it carries the marks
    ioc.restart();
    ioc.cmd(&format!("set AI 33.5 {}.5", t0 + 10));
    let (_, s) = samples(&engine, "PE:AI", 3).await;
    let last = s.last().unwrap();
    assert_eq!(last.value, Value::ScalarDouble(33.5));
    let lost: i64 = field(last, "cnxlostepsecs").unwrap().parse().unwrap();
    assert!(lost > t0, "{:?}", last.field_values);
    assert!(field(last, "cnxregainedepsecs").is_some());
    let st = engine.status("PE:AI").unwrap();
    assert_eq!(st.counters.disconnects, 1);

    // paused and resumed after that outage: the first sample after the resume is a
    // startup that lost nothing (Java makes new metrics), never the outage before the
    // pause again (found by a fresh-user test)
    engine.pause("PE:AI").await.unwrap();
    engine.resume("PE:AI").unwrap();
    for _ in 0..200 {
        if engine.status("PE:AI").is_some_and(|s| s.conn.connected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ioc.cmd(&format!("set AI 34.5 {}.5", t0 + 11));
    let mut resumed = None;
    for _ in 0..200 {
        let buffered = engine.buffered("PE:AI").map(|b| b.samples);
        resumed = buffered
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.value == Value::ScalarDouble(34.5));
        if resumed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed = resumed.expect("a sample after the resume");
    assert_eq!(
        (field(&resumed, "cnxlostepsecs"), field(&resumed, "startup")),
        (Some("0"), Some("true")),
        "{:?}",
        resumed.field_values
    );
    engine.shutdown().await;
}
