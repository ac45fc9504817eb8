/*!
Time for the archiver: the sample [`Timestamp`], UTC calendar arithmetic, the injected
[`Clock`], and the one ISO-8601 parser and formatter of the project.

This crate is at the bottom of the dependency graph (it depends on no other crate of the
workspace) so that every part, from the PlainPB codec to storage, retrieval, the registry and
the engine, shares one notion of time:

* [`Timestamp`] — seconds since the Unix epoch and nanoseconds, ordered as the Java appliance
  orders sample times. [`UtcDateTime`] and the functions of [`calendar`]
  ([`days_from_civil`](calendar::days_from_civil), [`civil_from_days`](calendar::civil_from_days),
  [`start_of_year`](calendar::start_of_year)...) convert between it and UTC calendar fields
  (proleptic Gregorian, no leap seconds, as Java's `Instant`). `archiver_pb` re-exports them
  at their old paths (`archiver_pb::Timestamp`, `archiver_pb::time::*`).
* [`Clock`] — where "now" comes from. Production code takes an `Arc<dyn Clock>` holding a
  [`SystemClock`]; tests hold a [`ManualClock`] and [`set`](ManualClock::set) or
  [`advance`](ManualClock::advance) it.
* [`parse_iso8601`] — text to [`Timestamp`] for every ISO-8601 instant the archiver reads
  (retrieval's `from`/`to`, PVTypeInfo's `creationTime`), built on jiff's Temporal grammar;
  a [`BadTime`] error names the text and the problem, and no input makes it panic.
* [`Iso8601`] / [`write_iso8601`] — [`Timestamp`] to ISO-8601 UTC text with a [`Precision`]
  (seconds, milliseconds as Java's `TimeUtils.convertToISO8601String`, microseconds,
  nanoseconds), allocation-free for the per-sample text encoders. `Display for Timestamp` is
  the nanosecond form.

# Example

```
use archiver_time::{parse_iso8601, Clock, ManualClock, Precision, Timestamp};
use std::time::Duration;

let t = parse_iso8601("2014-12-08T07:21:07.601158377+01:00")?;
assert_eq!(t, Timestamp::new(1_418_019_667, 601_158_377));
assert_eq!(t.to_string(), "2014-12-08T06:21:07.601158377Z");
assert_eq!(t.iso(Precision::Millis).to_string(), "2014-12-08T06:21:07.601Z");

let clock = ManualClock::new(t);
clock.advance(Duration::from_secs(60));
assert_eq!(clock.now().secs, t.secs + 60);
# Ok::<(), archiver_time::BadTime>(())
```
*/
#![deny(missing_docs)]

pub mod calendar;
pub mod clock;
pub mod iso;

pub use crate::calendar::{Timestamp, UtcDateTime};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::iso::{BadTime, Iso8601, Precision, parse_iso8601, write_iso8601};
