//! What the engine's tests against the in-process IOC share (the appliance's tests include
//! this file by path too).

#![allow(dead_code)]

use std::time::Duration;

use archiver_engine::{PvConfig, SamplingMethod};

/// Polls `f` every 50 ms for up to `secs` seconds; whether it became true.
pub async fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Posts values `from..from + n` to `pv`, one every `gap`, all stamped in the next second
/// (`k` µs into it): distinct, increasing time stamps.
pub async fn post_values(pv: &archiver_ca::server::Pv, from: u32, n: u32, gap: Duration) {
    let t0 = archiver_ca::Timestamp::now().secs + 1;
    for k in from..from + n {
        pv.post(
            archiver_ca::Value::Double(f64::from(k)),
            archiver_ca::Timestamp {
                secs: t0,
                nanos: k * 1000,
            },
            0,
            0,
        )
        .unwrap();
        tokio::time::sleep(gap).await;
    }
}

/// MONITOR with period `period` (0: every event), no archive fields.
pub fn monitor(period: f64) -> PvConfig {
    PvConfig {
        method: SamplingMethod::Monitor,
        period,
        archive_fields: vec!["NONE".into()],
    }
}

/// Every event archived, no archive fields.
pub fn every_event() -> PvConfig {
    monitor(0.0)
}
