//! The PVA client against a real EPICS IOC (pythonSoftIOC; its records served over
//! pvAccess by pvxs's QSRV): NTScalar double/int/string, NTScalarArray and NTEnum with
//! exact values and time stamps, monitors, and a server restart.
#![allow(clippy::unwrap_used)]

mod pva_support;

use std::time::{Duration, Instant};

use archiver_pva::nt::{self, TimeStamp};
use archiver_pva::value::lookup;
use archiver_pva::{ChannelEvent, Client, PvRequest, PvValue};
use pva_support::Server;

const T: Duration = Duration::from_secs(10);

fn ioc() -> Server {
    Server::start("pva_ioc.py", "PT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_ntscalar_types_with_exact_values_and_time_stamps() {
    let mut ioc = ioc();
    ioc.cmd("set AI 12.625 1700000000.25 1");
    ioc.cmd("set LI -42 1700000001.5");
    ioc.cmd("set SI some_text 1700000002.75");
    ioc.cmd("set WF 1,2.5,-3 1700000003.125");
    ioc.cmd("set MBBI 2 1700000004.0 2");
    let client = Client::new(ioc.client_config()).await.unwrap();
    let full = PvRequest::parse("").unwrap();

    let (ch, _rx) = client.channel("PT:AI").unwrap();
    let (d, v) = ch.get(full.clone(), T).await.unwrap();
    assert_eq!(d.id(), "epics:nt/NTScalar:1.0");
    assert_eq!(lookup(&d, &v, "value").unwrap().1, &PvValue::F64(12.625));
    let a = nt::alarm(&d, &v).unwrap();
    assert_eq!((a.severity, a.status), (1, 1));
    assert_eq!(
        nt::time_stamp(&d, &v).unwrap(),
        TimeStamp {
            seconds: 1_700_000_000,
            nanos: 250_000_000,
            user_tag: 0
        }
    );
    let disp = nt::display(&d, &v);
    assert_eq!(disp.units.as_deref(), Some("mm"));
    assert_eq!(disp.precision, Some(3));
    assert_eq!((disp.low, disp.high), (Some(-100.0), Some(100.0)));
    assert_eq!(
        disp.alarm_limits,
        [Some(-90.0), Some(-70.0), Some(70.0), Some(90.0)]
    );

    let (ch, _rx) = client.channel("PT:LI").unwrap();
    let (d, v) = ch.get(full.clone(), T).await.unwrap();
    assert_eq!(lookup(&d, &v, "value").unwrap().1, &PvValue::I32(-42));
    assert_eq!(nt::time_stamp(&d, &v).unwrap().nanos, 500_000_000);

    let (ch, _rx) = client.channel("PT:SI").unwrap();
    let (d, v) = ch.get(full.clone(), T).await.unwrap();
    assert_eq!(
        lookup(&d, &v, "value").unwrap().1,
        &PvValue::String("some_text".into())
    );

    let (ch, _rx) = client.channel("PT:WF").unwrap();
    let (d, v) = ch.get(full.clone(), T).await.unwrap();
    assert_eq!(d.id(), "epics:nt/NTScalarArray:1.0");
    assert_eq!(
        lookup(&d, &v, "value").unwrap().1,
        &PvValue::F64Array(vec![1.0, 2.5, -3.0])
    );
    assert_eq!(
        nt::time_stamp(&d, &v).unwrap(),
        TimeStamp {
            seconds: 1_700_000_003,
            nanos: 125_000_000,
            user_tag: 0
        }
    );

    let (ch, _rx) = client.channel("PT:MBBI").unwrap();
    let (d, v) = ch.get(full.clone(), T).await.unwrap();
    let (vd, vv) = lookup(&d, &v, "value").unwrap();
    assert!(nt::is_enum(vd));
    let (idx, choices) = nt::enum_value(vd, vv).unwrap();
    assert_eq!(idx, 2);
    assert_eq!(choices, ["OK", "WARN", "FAULT"]);
    assert_eq!(nt::alarm(&d, &v).unwrap().severity, 2);

    // GET_FIELD gives the same type as the GET
    let t = ch.get_field(T).await.unwrap();
    assert_eq!(*t, *d);

    // a PV nobody serves times out naming the addresses searched
    let (nope, _rx) = client.channel("PT:NOPE").unwrap();
    let e = nope
        .get(full, Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("PT:NOPE") && e.contains(&ioc.udp.to_string()),
        "{e}"
    );
}

/// Takes events until `pred` holds for one, or panics after `timeout`.
async fn wait_for(
    rx: &archiver_pva::EventReceiver,
    timeout: Duration,
    mut pred: impl FnMut(&ChannelEvent) -> bool,
) -> ChannelEvent {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("timed out waiting for an event")
            .expect("queue closed");
        if pred(&ev.kind) {
            return ev.kind;
        }
    }
}

fn update_value(ev: &ChannelEvent) -> Option<(f64, TimeStamp)> {
    match ev {
        ChannelEvent::Update { data, .. } => Some((
            lookup(&data.desc, &data.value, "value")?.1.as_f64()?,
            nt::time_stamp(&data.desc, &data.value)?,
        )),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_sees_every_update_in_order_then_reconnects_after_a_restart() {
    let mut ioc = ioc();
    let client = Client::new(ioc.client_config()).await.unwrap();
    let (ch, rx) = client.channel("PT:AI").unwrap();
    ch.subscribe(PvRequest::parse("field(value,alarm,timeStamp)").unwrap());
    let ev = wait_for(&rx, T, |e| matches!(e, ChannelEvent::Connected { .. })).await;
    let ChannelEvent::Connected { server, .. } = ev else {
        unreachable!()
    };
    assert_eq!(server.port(), ioc.tcp);
    // the first update is the current value (1.5 initially)
    let first = wait_for(&rx, T, |e| update_value(e).is_some()).await;
    assert_eq!(update_value(&first).unwrap().0, 1.5);
    // lock-step (softioc's set() keeps only the latest value until the record processes)
    for k in 1..=20 {
        ioc.cmd(&format!(
            "set AI {} {}.5",
            k as f64 * 0.5,
            1_700_000_000 + k
        ));
        let ev = wait_for(&rx, T, |e| update_value(e).is_some()).await;
        let (v, ts) = update_value(&ev).unwrap();
        assert_eq!(v, k as f64 * 0.5);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000 + k, 500_000_000));
        // only the requested fields are sent (pvxs keeps the full type, masked)
        if let ChannelEvent::Update { data, .. } = &ev {
            let (dd, off) = data.desc.lookup("display").unwrap();
            assert!(!data.changed.any_in(off, off + dd.bits()));
            let (_, voff) = data.desc.lookup("value").unwrap();
            assert!(data.changed.get(voff) || data.changed.get(0));
        }
    }
    assert_eq!(ch.overruns(), 0);
    assert_eq!(ch.dropped(), 0);

    // restart: disconnect seen at once, values again within 2 s of the server being back
    ioc.kill();
    wait_for(&rx, T, |e| matches!(e, ChannelEvent::Disconnected { .. })).await;
    assert!(ch.server().is_none());
    ioc = Server::start_on("pva_ioc.py", "PT", ioc.tcp, ioc.udp, ioc.ca);
    let back = Instant::now();
    wait_for(&rx, T, |e| matches!(e, ChannelEvent::Connected { .. })).await;
    let ev = wait_for(&rx, T, |e| update_value(e).is_some()).await;
    assert_eq!(update_value(&ev).unwrap().0, 1.5);
    // The 2 s target is a figure for the benchmarks (a loaded CI machine stretches it);
    // here: reconnected and resumed by themselves, well within a hang bound.
    eprintln!(
        "reconnected with values {:?} after the server came back",
        back.elapsed()
    );
    assert!(
        back.elapsed() < Duration::from_secs(10),
        "reconnect took {:?}",
        back.elapsed()
    );
    ioc.cmd("set AI 77.25 1700000100.0");
    let ev = wait_for(&rx, T, |e| update_value(e).is_some()).await;
    assert_eq!(update_value(&ev).unwrap().0, 77.25);
}
