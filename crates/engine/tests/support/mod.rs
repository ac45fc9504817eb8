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
