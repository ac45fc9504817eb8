//! Simulated PVs for the demo IOC, interop tests and load generation.
//!
//! Every PV updates at tick k with time stamp k / rate and a value that is a pure function
//! of (kind, k) ([`value_at`]), so a client can verify each sample exactly.

use std::sync::Arc;
use std::time::Duration;

use super::{Pv, PvSpec, Server};
use crate::value::{CaString, Limits, Meta, Timestamp, Value};

/// The kinds served by [`every_type`], by name suffix.
pub const KINDS: [&str; 13] = [
    "AI", "LI", "SHORT", "FLOAT", "CHAR", "SI", "MBBI", "WF", "WFC", "WFS", "WFL", "WFF", "WFSTR",
];

/// The value of kind `kind` at tick `k` (`None` for an unknown kind).
pub fn value_at(kind: &str, k: i64) -> Option<Value> {
    let j = |n: i64| 0..n;
    Some(match kind {
        "AI" | "LOAD" => Value::Double(((k % 800) - 400) as f64 * 0.25),
        "LI" => Value::Long((k % 1000) as i32),
        "SHORT" => Value::Short(((k % 30000) - 15000) as i16),
        "FLOAT" => Value::Float((k % 1000) as f32 * 0.5),
        "CHAR" => Value::Char((k % 256) as u8),
        "SI" => Value::String(CaString::new(&format!("k={k}"))),
        "MBBI" => Value::Enum((k % 4) as u16),
        "WF" => Value::DoubleArray(j(16).map(|j| k as f64 * 0.5 + j as f64).collect()),
        "WFC" => Value::CharArray(j(64).map(|j| ((k + j) % 256) as u8).collect()),
        "WFS" => Value::ShortArray(j(10).map(|j| ((k + j) % 30000) as i16).collect()),
        "WFL" => Value::LongArray(j(8).map(|j| (k * 10 + j) as i32).collect()),
        "WFF" => Value::FloatArray(j(8).map(|j| (k % 1000) as f32 * 0.25 + j as f32).collect()),
        "WFSTR" => Value::StringArray(
            j(3).map(|j| CaString::new(&format!("k={k} j={j}")))
                .collect(),
        ),
        _ => return None,
    })
}

/// Alarm (status, severity) of an AI-like value: HIHI/LOLO ±90 MAJOR, HIGH/LOW ±70 MINOR.
pub fn ai_alarm(v: f64) -> (u16, u16) {
    if v >= 90.0 {
        (3, 2)
    } else if v <= -90.0 {
        (5, 2)
    } else if v >= 70.0 {
        (4, 1)
    } else if v <= -70.0 {
        (6, 1)
    } else {
        (0, 0)
    }
}

/// The metadata served for a kind.
pub fn meta_of(kind: &str) -> Meta {
    let lim = |a: [f64; 8]| Limits::from_array(a);
    match kind {
        "AI" | "LOAD" => Meta {
            units: "mm".into(),
            precision: 3,
            limits: lim([100.0, -100.0, 90.0, 70.0, -70.0, -90.0, 100.0, -100.0]),
            enum_strs: vec![],
        },
        "LI" => Meta {
            units: "counts".into(),
            precision: 0,
            limits: lim([1000.0, 0.0, 900.0, 800.0, 100.0, 50.0, 1000.0, 0.0]),
            enum_strs: vec![],
        },
        "FLOAT" => Meta {
            units: "A".into(),
            precision: 2,
            ..Meta::default()
        },
        "WF" => Meta {
            units: "V".into(),
            precision: 4,
            ..Meta::default()
        },
        "MBBI" => Meta {
            enum_strs: ["OK", "WARN", "FAULT", "OFF"].map(String::from).to_vec(),
            ..Meta::default()
        },
        _ => Meta::default(),
    }
}

/// One PV of every kind, named `prefix + kind`, plus a writable double `prefix + "AO"`.
pub fn every_type(prefix: &str) -> Vec<PvSpec> {
    let mut v: Vec<PvSpec> = KINDS
        .iter()
        .filter_map(|k| {
            Some(PvSpec::new(&format!("{prefix}{k}"), value_at(k, 0)?).meta(meta_of(k)))
        })
        .collect();
    v.push(
        PvSpec::new(&format!("{prefix}AO"), Value::Double(0.0))
            .meta(meta_of("AI"))
            .writable(),
    );
    v
}

/// `n` AI-like double PVs named `prefix + "LOAD:" + i` (for load tests).
pub fn load_pvs(prefix: &str, n: usize) -> Vec<PvSpec> {
    (0..n)
        .map(|i| {
            PvSpec::new(&format!("{prefix}LOAD:{i}"), Value::Double(0.0)).meta(meta_of("LOAD"))
        })
        .collect()
}

/// The kind of a PV name made by this module (the text after the last `:`, or `LOAD`).
pub fn kind_of(name: &str) -> &str {
    if name.contains(":LOAD:") {
        return "LOAD";
    }
    name.rsplit(':').next().unwrap_or(name)
}

/// Posts tick `k` to each PV (value from [`value_at`] of its kind).
pub fn post_tick(pvs: &[Arc<Pv>], k: i64, rate: u32) {
    let rate = i64::from(rate.max(1));
    let stamp = Timestamp {
        secs: k.div_euclid(rate),
        nanos: (k.rem_euclid(rate) * (1_000_000_000 / rate)) as u32,
    };
    for pv in pvs {
        let kind = kind_of(pv.name());
        let Some(v) = value_at(kind, k) else { continue };
        let (status, severity) = match (kind, &v) {
            ("AI" | "LOAD", Value::Double(d)) => ai_alarm(*d),
            _ => (0, 0),
        };
        let _ = pv.post(v, stamp, status, severity);
    }
}

/// Adds `specs` to `server` and updates them `rate` times per second, forever (abort the
/// task to stop). Ticks follow the wall clock: k = ⌊now · rate⌋.
pub fn spawn_updates(
    server: &Server,
    specs: Vec<PvSpec>,
    rate: u32,
) -> tokio::task::JoinHandle<()> {
    let pvs: Vec<Arc<Pv>> = specs.into_iter().map(|s| server.add_pv(s)).collect();
    let rate = rate.max(1);
    tokio::spawn(async move {
        let now = || Timestamp::now();
        let tick_of = |t: Timestamp| {
            t.secs * i64::from(rate) + i64::from(t.nanos) * i64::from(rate) / 1_000_000_000
        };
        let mut k = tick_of(now());
        post_tick(&pvs, k, rate);
        loop {
            k += 1;
            let due_ns = (k as i128) * 1_000_000_000 / i128::from(rate);
            let t = now();
            let now_ns = i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos);
            if due_ns > now_ns {
                tokio::time::sleep(Duration::from_nanos((due_ns - now_ns) as u64)).await;
            } else if now_ns - due_ns > 1_000_000_000 {
                k = tick_of(t); // fell far behind: skip ahead
            }
            post_tick(&pvs, k, rate);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_value_and_a_spec() {
        let specs = every_type("P:");
        assert_eq!(specs.len(), KINDS.len() + 1);
        assert_eq!(kind_of("P:WFSTR"), "WFSTR");
        assert_eq!(kind_of("X:LOAD:7"), "LOAD");
        assert_eq!(ai_alarm(95.0), (3, 2));
        assert_eq!(value_at("WFSTR", 2).map(|v| v.len()), Some(3));
        assert!(value_at("NOPE", 0).is_none());
    }
}
