//! Normative types (EPICS "Normative Types Specification"): reading the standard members
//! of NTScalar, NTScalarArray and NTEnum values: `value`, `alarm`, `timeStamp`, `display`,
//! `control`, and the `enum_t` value of an NTEnum.
//!
//! All accessors work on any structure that has the member with a compatible shape (as
//! pvxs's and the Java appliance's readers do) and return `None` otherwise.

use crate::types::FieldDesc;
use crate::value::{PvValue, lookup};

/// `alarm_t`: severity (0 none, 1 minor, 2 major, 3 invalid), status, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm<'a> {
    /// Severity.
    pub severity: i32,
    /// Status (pvData alarm status: 0 none, 1 device, 2 driver, 3 record, ...).
    pub status: i32,
    /// Message.
    pub message: &'a str,
}

/// `time_t`: seconds past the **Unix** epoch, nanoseconds, user tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeStamp {
    /// Seconds past 1970-01-01 UTC.
    pub seconds: i64,
    /// Nanoseconds (0..1e9).
    pub nanos: i32,
    /// User tag.
    pub user_tag: i32,
}

/// `display` and `control` metadata of an NTScalar/NTScalarArray.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Display {
    /// `display.units`.
    pub units: Option<String>,
    /// `display.precision`.
    pub precision: Option<i32>,
    /// `display.limitLow`.
    pub low: Option<f64>,
    /// `display.limitHigh`.
    pub high: Option<f64>,
    /// `display.description`.
    pub description: Option<String>,
    /// `control.limitLow`.
    pub control_low: Option<f64>,
    /// `control.limitHigh`.
    pub control_high: Option<f64>,
    /// `valueAlarm.lowAlarmLimit`, `lowWarningLimit`, `highWarningLimit`, `highAlarmLimit`.
    pub alarm_limits: [Option<f64>; 4],
}

fn num(d: &FieldDesc, v: &PvValue, path: &str) -> Option<f64> {
    lookup(d, v, path).and_then(|(_, v)| v.as_f64())
}

fn int(d: &FieldDesc, v: &PvValue, path: &str) -> Option<i64> {
    lookup(d, v, path).and_then(|(_, v)| v.as_i64())
}

fn text(d: &FieldDesc, v: &PvValue, path: &str) -> Option<String> {
    lookup(d, v, path).and_then(|(_, v)| v.as_str().map(str::to_string))
}

/// The `alarm` member.
pub fn alarm<'a>(d: &'a FieldDesc, v: &'a PvValue) -> Option<Alarm<'a>> {
    let (ad, av) = lookup(d, v, "alarm")?;
    Some(Alarm {
        severity: i32::try_from(int(ad, av, "severity")?).ok()?,
        status: int(ad, av, "status")
            .and_then(|s| i32::try_from(s).ok())
            .unwrap_or(0),
        message: lookup(ad, av, "message")
            .and_then(|(_, m)| m.as_str())
            .unwrap_or(""),
    })
}

/// The `timeStamp` member.
pub fn time_stamp(d: &FieldDesc, v: &PvValue) -> Option<TimeStamp> {
    let (td, tv) = lookup(d, v, "timeStamp")?;
    Some(TimeStamp {
        seconds: int(td, tv, "secondsPastEpoch")?,
        nanos: i32::try_from(int(td, tv, "nanoseconds")?).ok()?,
        user_tag: int(td, tv, "userTag")
            .and_then(|s| i32::try_from(s).ok())
            .unwrap_or(0),
    })
}

/// The `display`, `control` and `valueAlarm` metadata present.
pub fn display(d: &FieldDesc, v: &PvValue) -> Display {
    Display {
        units: text(d, v, "display.units"),
        precision: int(d, v, "display.precision").and_then(|p| i32::try_from(p).ok()),
        low: num(d, v, "display.limitLow"),
        high: num(d, v, "display.limitHigh"),
        description: text(d, v, "display.description"),
        control_low: num(d, v, "control.limitLow"),
        control_high: num(d, v, "control.limitHigh"),
        alarm_limits: [
            num(d, v, "valueAlarm.lowAlarmLimit"),
            num(d, v, "valueAlarm.lowWarningLimit"),
            num(d, v, "valueAlarm.highWarningLimit"),
            num(d, v, "valueAlarm.highAlarmLimit"),
        ],
    }
}

/// An `enum_t` (`{int index; string[] choices}`) at `d`/`v`: the index and the choices.
pub fn enum_value<'a>(d: &'a FieldDesc, v: &'a PvValue) -> Option<(i32, &'a [String])> {
    let idx = int(d, v, "index")?;
    let choices = match lookup(d, v, "choices")?.1 {
        PvValue::StringArray(c) => c.as_slice(),
        _ => return None,
    };
    Some((i32::try_from(idx).ok()?, choices))
}

/// True when `d` is an `enum_t` shape (index + choices).
pub fn is_enum(d: &FieldDesc) -> bool {
    matches!(d.lookup("index"), Some((FieldDesc::Scalar(_), _)))
        && matches!(
            d.lookup("choices"),
            Some((FieldDesc::ScalarArray(crate::ScalarType::String), _))
        )
}

/// Descriptions of the normative types' standard structures as servers send them (NT
/// specification; pvxs `nt.cpp`), for tools and tests that build values: mock servers,
/// fixtures, the archiver's own tests. One place, so that every test speaks the same
/// `alarm_t`, `time_t` and `display_t`.
pub mod desc {
    use std::sync::Arc;

    use crate::types::{FieldDesc, ScalarType};

    /// A structure `id` of `members` (name, type) in order.
    pub fn members(id: &str, members: Vec<(&str, FieldDesc)>) -> FieldDesc {
        FieldDesc::structure(
            id,
            members
                .into_iter()
                .map(|(n, d)| (n.to_string(), Arc::new(d)))
                .collect(),
        )
    }

    /// A scalar of type `t`.
    pub fn scalar(t: ScalarType) -> FieldDesc {
        FieldDesc::Scalar(t)
    }

    /// `alarm_t {int severity; int status; string message}`.
    pub fn alarm() -> FieldDesc {
        members(
            "alarm_t",
            vec![
                ("severity", scalar(ScalarType::I32)),
                ("status", scalar(ScalarType::I32)),
                ("message", scalar(ScalarType::String)),
            ],
        )
    }

    /// `time_t {long secondsPastEpoch; int nanoseconds; int userTag}`.
    pub fn time_stamp() -> FieldDesc {
        members(
            "time_t",
            vec![
                ("secondsPastEpoch", scalar(ScalarType::I64)),
                ("nanoseconds", scalar(ScalarType::I32)),
                ("userTag", scalar(ScalarType::I32)),
            ],
        )
    }

    /// `enum_t {int index; string[] choices}`.
    pub fn enumerated() -> FieldDesc {
        members(
            "enum_t",
            vec![
                ("index", scalar(ScalarType::I32)),
                ("choices", FieldDesc::ScalarArray(ScalarType::String)),
            ],
        )
    }

    /// `display_t {double limitLow; double limitHigh; string description; string units;
    /// int precision; enum_t form}`.
    pub fn display() -> FieldDesc {
        members(
            "display_t",
            vec![
                ("limitLow", scalar(ScalarType::F64)),
                ("limitHigh", scalar(ScalarType::F64)),
                ("description", scalar(ScalarType::String)),
                ("units", scalar(ScalarType::String)),
                ("precision", scalar(ScalarType::I32)),
                ("form", enumerated()),
            ],
        )
    }

    /// `epics:nt/NTScalar:1.0` (or NTScalarArray for an array `value`) with `value`,
    /// `alarm`, `timeStamp` and `display`.
    pub fn nt_scalar(value: FieldDesc) -> FieldDesc {
        let id = if matches!(value, FieldDesc::ScalarArray(_)) {
            "epics:nt/NTScalarArray:1.0"
        } else {
            "epics:nt/NTScalar:1.0"
        };
        members(
            id,
            vec![
                ("value", value),
                ("alarm", alarm()),
                ("timeStamp", time_stamp()),
                ("display", display()),
            ],
        )
    }
}
