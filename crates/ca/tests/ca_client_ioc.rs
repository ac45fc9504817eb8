//! The client against a real EPICS IOC (RSRV from EPICS base through `softioc`): search,
//! circuits, CTRL metadata, reads and monitors of every native type with exact values
//! and time stamps, large arrays, writes, queues and drop counters.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use archiver_ca::{
    CaError, ChannelEvent, Client, DbfType, DbrClass, DbrRequest, DbrType, Limits, Overflow,
    Subscription, Value, event_queue, mask,
};
use common::{Ioc, ai_severity, expected, tick_of};

const ALL: [(&str, DbfType, u32); 13] = [
    ("AI", DbfType::Double, 1),
    ("LI", DbfType::Long, 1),
    ("SHORT", DbfType::Short, 1),
    ("FLOAT", DbfType::Float, 1),
    ("CHAR", DbfType::Char, 1),
    ("SI", DbfType::String, 1),
    ("MBBI", DbfType::Enum, 1),
    ("WF", DbfType::Double, 16),
    ("WFC", DbfType::Char, 64),
    ("WFS", DbfType::Short, 10),
    ("WFL", DbfType::Long, 8),
    ("WFF", DbfType::Float, 8),
    ("BIG", DbfType::Double, 100_000),
];

const T: Duration = Duration::from_secs(10);

async fn client(ioc: &Ioc) -> Client {
    Client::new(ioc.config().build().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_every_native_type_with_exact_value_and_time() {
    let ioc = Ioc::start("G");
    let c = client(&ioc).await;
    let mut chans = Vec::new();
    for (name, ..) in ALL {
        chans.push(c.channel(&ioc.pv(name)).unwrap());
    }
    for ((name, native, count), (ch, _rx)) in ALL.iter().zip(&chans) {
        let info = ch.wait_connected(T).await.unwrap();
        assert_eq!((info.native, info.count), (*native, *count), "{name}");
        assert_eq!(info.server.port(), ioc.port);
        assert!(info.access.read && info.access.write);
        let d = ch.get().await.unwrap();
        let k = tick_of(d.stamp.unwrap());
        assert_eq!(d.value, expected(name, k), "{name} at tick {k}");
        if *name == "AI" {
            let v = d.value.get_f64(0).unwrap();
            assert_eq!(d.severity, ai_severity(v), "AI severity for {v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_and_gr_metadata() {
    let ioc = Ioc::start("M");
    let c = client(&ioc).await;
    let (ai, _r1) = c.channel(&ioc.pv("AI")).unwrap();
    let (li, _r2) = c.channel(&ioc.pv("LI")).unwrap();
    let (mbbi, _r3) = c.channel(&ioc.pv("MBBI")).unwrap();
    let (wf, _r4) = c.channel(&ioc.pv("WF")).unwrap();
    let (fl, _r5) = c.channel(&ioc.pv("FLOAT")).unwrap();
    for ch in [&ai, &li, &mbbi, &wf, &fl] {
        ch.wait_connected(T).await.unwrap();
    }

    let d = ai.get_ctrl().await.unwrap();
    let m = d.meta.unwrap();
    assert_eq!(m.units, "mm");
    assert_eq!(m.precision, 3);
    assert_eq!(
        m.limits,
        Limits::from_array([100.0, -100.0, 90.0, 70.0, -70.0, -90.0, 100.0, -100.0])
    );
    assert!(matches!(d.value, Value::Double(_)));

    let d = ai
        .read(DbrRequest::Native(DbrClass::Gr), None)
        .await
        .unwrap();
    let m = d.meta.unwrap();
    assert_eq!(
        m.limits,
        Limits::from_array([100.0, -100.0, 90.0, 70.0, -70.0, -90.0, 0.0, 0.0])
    );

    let m = li.get_ctrl().await.unwrap().meta.unwrap();
    assert_eq!(m.units, "counts");
    assert_eq!((m.limits.upper_disp, m.limits.lower_disp), (1000.0, 0.0));
    assert_eq!(
        (m.limits.upper_alarm, m.limits.upper_warning),
        (900.0, 800.0)
    );
    assert_eq!(
        (m.limits.lower_warning, m.limits.lower_alarm),
        (100.0, 50.0)
    );

    let m = mbbi.get_ctrl().await.unwrap().meta.unwrap();
    assert_eq!(m.enum_strs, ["OK", "WARN", "FAULT", "OFF"]);
    // the server converts enum to string through the labels
    let s = mbbi
        .read(DbrRequest::Exact(DbrType::time(DbfType::String)), None)
        .await
        .unwrap();
    let k = tick_of(s.stamp.unwrap());
    let Value::Enum(idx) = expected("MBBI", k) else {
        unreachable!()
    };
    assert_eq!(s.value.to_string(), m.enum_strs[usize::from(idx)]);

    let d = wf.get_ctrl().await.unwrap();
    assert_eq!(d.value.len(), 16);
    let m = d.meta.unwrap();
    assert_eq!((m.units.as_str(), m.precision), ("V", 4));

    let m = fl.get_ctrl().await.unwrap().meta.unwrap();
    assert_eq!((m.units.as_str(), m.precision), ("A", 2));

    // PLAIN and STS classes, and a converted type
    let d = li
        .read(DbrRequest::Native(DbrClass::Sts), None)
        .await
        .unwrap();
    assert!(d.stamp.is_none() && d.meta.is_none());
    let d = li
        .read(DbrRequest::Exact(DbrType::time(DbfType::Double)), None)
        .await
        .unwrap();
    let k = tick_of(d.stamp.unwrap());
    assert_eq!(d.value, Value::Double((k % 1000) as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_every_type_gap_free_with_exact_values() {
    let ioc = Ioc::start("S");
    let c = client(&ioc).await;
    let (q, rx) = event_queue(100_000, Overflow::DropNewest);
    let mut chans = Vec::new();
    for (i, (name, ..)) in ALL.iter().enumerate() {
        let ch = c.create_channel(&ioc.pv(name), &q, i as u64).unwrap();
        ch.subscribe(Subscription::time(
            mask::DBE_VALUE | mask::DBE_LOG | mask::DBE_ALARM,
        ))
        .unwrap();
        chans.push(ch);
    }
    drop(q);
    let mut last: HashMap<u64, i64> = HashMap::new();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    let mut connected = 0;
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        buf.clear();
        let _ =
            tokio::time::timeout(Duration::from_millis(200), rx.recv_many(&mut buf, 1000)).await;
        for ev in buf.drain(..) {
            let (name, native, count) = ALL[ev.key as usize];
            match ev.kind {
                ChannelEvent::Connected {
                    native: n,
                    count: c,
                    ..
                } => {
                    assert_eq!((n, c), (native, count), "{name}");
                    connected += 1;
                }
                ChannelEvent::Value { data, .. } => {
                    let k = tick_of(data.stamp.unwrap());
                    assert_eq!(data.value, expected(name, k), "{name} at tick {k}");
                    if name == "AI" {
                        assert_eq!(data.severity, ai_severity(data.value.get_f64(0).unwrap()));
                    }
                    if let Some(prev) = last.insert(ev.key, k) {
                        assert_eq!(
                            k,
                            prev + 1,
                            "{name}: gap or reorder between ticks {prev} and {k}"
                        );
                    }
                    *counts.entry(ev.key).or_default() += 1;
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }
    assert_eq!(connected, ALL.len());
    for (i, (name, ..)) in ALL.iter().enumerate() {
        let n = counts.get(&(i as u64)).copied().unwrap_or(0);
        assert!(n >= 20, "{name}: only {n} updates in 4 s at 10 Hz");
        assert_eq!(chans[i].dropped(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variable_length_count_zero_and_max_array_bytes_clamp() {
    let ioc = Ioc::start("V");
    // 16384 bytes: the BIG waveform (800 kB) cannot fit; requests are clamped
    let c = Client::new(ioc.config().max_array_bytes(16384).build().unwrap())
        .await
        .unwrap();
    let (big, _rx) = c.channel(&ioc.pv("BIG")).unwrap();
    big.wait_connected(T).await.unwrap();
    let d = big.get().await.unwrap();
    let n = DbrType::time(DbfType::Double).max_count(16384);
    assert_eq!(d.value.len(), n);
    let k = tick_of(d.stamp.unwrap());
    let Value::DoubleArray(full) = expected("BIG", k) else {
        unreachable!()
    };
    assert_eq!(d.value, Value::DoubleArray(full[..n].to_vec()));

    let c = client(&ioc).await;
    let (wf, rx) = c.channel(&ioc.pv("WFL")).unwrap();
    wf.wait_connected(T).await.unwrap();
    // count 0 = current length (protocol 4.13)
    let d = wf
        .read(DbrRequest::Native(DbrClass::Time), Some(0))
        .await
        .unwrap();
    assert_eq!(d.value.len(), 8);
    wf.subscribe(Subscription {
        count: Some(3),
        ..Subscription::time(mask::DBE_VALUE)
    })
    .unwrap();
    loop {
        let ev = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        if let ChannelEvent::Value { data, .. } = ev.kind {
            let k = tick_of(data.stamp.unwrap());
            assert_eq!(
                data.value,
                Value::LongArray(vec![
                    (k * 10) as i32,
                    (k * 10 + 1) as i32,
                    (k * 10 + 2) as i32
                ])
            );
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_notify_and_read_back() {
    let ioc = Ioc::start("W");
    let c = client(&ioc).await;
    let (ao, _r) = c.channel(&ioc.pv("AO")).unwrap();
    let (so, _r2) = c.channel(&ioc.pv("SO")).unwrap();
    ao.wait_connected(T).await.unwrap();
    so.wait_connected(T).await.unwrap();
    ao.write(Value::Double(12.5)).await.unwrap();
    assert_eq!(ao.get().await.unwrap().value, Value::Double(12.5));
    ao.write(Value::Long(-3)).await.unwrap();
    assert_eq!(ao.get().await.unwrap().value, Value::Double(-3.0));
    so.write(Value::String(archiver_ca::CaString::new("hello there")))
        .await
        .unwrap();
    assert_eq!(so.get().await.unwrap().value.to_string(), "hello there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_name_reports_searched_addresses() {
    let ioc = Ioc::start("N");
    let c = client(&ioc).await;
    let (ch, _rx) = c.channel("NO:SUCH:PV").unwrap();
    let t0 = Instant::now();
    let e = ch.wait_connected(Duration::from_secs(1)).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3));
    let CaError::NotFound { .. } = &e else {
        panic!("{e:?}")
    };
    let msg = e.to_string();
    assert!(
        msg.contains("NO:SUCH:PV") && msg.contains(&format!("127.0.0.1:{}", ioc.port)),
        "{msg}"
    );
    assert!(matches!(ch.get().await, Err(CaError::Disconnected(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_drops_are_counted_and_state_events_kept() {
    let ioc = Ioc::start("D");
    let c = client(&ioc).await;
    let (q, rx) = event_queue(3, Overflow::DropNewest);
    let ch = c.create_channel(&ioc.pv("AI"), &q, 9).unwrap();
    ch.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    ch.wait_connected(T).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(ch.dropped() >= 5, "dropped {}", ch.dropped());
    assert_eq!(rx.dropped(), ch.dropped());
    let mut got = Vec::new();
    rx.try_recv_many(&mut got, 100);
    assert!(matches!(got[0].kind, ChannelEvent::Connected { .. }));
    assert_eq!(
        got.iter()
            .filter(|e| matches!(e.kind, ChannelEvent::Value { .. }))
            .count(),
        3
    );
    assert!(got.iter().all(|e| e.key == 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_loses_nothing() {
    let ioc = Ioc::start("B");
    let c = Client::new(
        ioc.config()
            .queue(2, Overflow::Backpressure)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (ch, rx) = c.channel(&ioc.pv("LI")).unwrap();
    ch.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    ch.wait_connected(T).await.unwrap();
    // stall the consumer for a second; the circuit waits (TCP buffers hold the updates)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut last = None;
    let mut n = 0;
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await else {
            continue;
        };
        if let ChannelEvent::Value { data, .. } = ev.kind {
            let k = tick_of(data.stamp.unwrap());
            if let Some(p) = last {
                assert_eq!(k, p + 1);
            }
            last = Some(k);
            n += 1;
        }
    }
    assert!(n >= 20, "{n}");
    assert_eq!(ch.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_and_clear_channel() {
    let ioc = Ioc::start("U");
    let c = client(&ioc).await;
    let (ch, rx) = c.channel(&ioc.pv("LI")).unwrap();
    let a = ch.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    let b = ch
        .subscribe(Subscription {
            request: DbrRequest::Native(DbrClass::Ctrl),
            count: None,
            mask: mask::DBE_PROPERTY,
        })
        .unwrap();
    ch.wait_connected(T).await.unwrap();
    let mut seen_b = false;
    let mut seen_a = 0;
    while seen_a < 3 {
        let ev = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        if let ChannelEvent::Value { sub, data } = ev.kind {
            if sub == b {
                assert!(data.meta.is_some());
                seen_b = true;
            } else {
                assert_eq!(sub, a);
                seen_a += 1;
            }
        }
    }
    assert!(
        seen_b,
        "DBE_PROPERTY subscription delivers its initial CTRL update"
    );
    ch.unsubscribe(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut buf = Vec::new();
    rx.try_recv_many(&mut buf, 1000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    buf.clear();
    rx.try_recv_many(&mut buf, 1000);
    assert!(buf.is_empty(), "updates after EVENT_CANCEL: {buf:?}");
    drop(ch);
    let end = tokio::time::timeout(T, async { while rx.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "receiver ends once the channel is dropped");
}
