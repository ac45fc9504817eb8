//! The field values an archived sample carries besides its value (reference §1.6), kept
//! per PV by an [`Annotator`]: a pure state machine over (state, event, now), so that each
//! rule is testable without a channel or a clock.
//!
//! * **Connection marks** (Java `PVMetrics.addConnectionLostRegainedFields`): the loss
//!   time is the last loss *since the PV was started* and not yet reported; it is reported
//!   once and then forgotten, so that a later sample never repeats an earlier outage.
//!   - The first sample archived after a start (archive, restore or resume: Java makes a
//!     new channel and new metrics for each) carries `cnxlostepsecs` (a loss since the
//!     start, else `0`: a resume after a pause is `0`, not the pause nor an outage before
//!     it), `cnxregainedepsecs` (server epoch seconds when that sample was archived) and
//!     `startup=true`.
//!   - The first sample archived after a reconnect carries `cnxlostepsecs` (that loss) and
//!     `cnxregainedepsecs`, unless no loss is pending (a connect without a loss before it)
//!     or the loss and the regain fall in the same second, as Java.
//!   - An event whose time stamp repeats the last archived one forgets the pending loss
//!     (Java `ArchiveChannel.addValueToBuffer`: the PV has not processed since, so as far
//!     as can be told nothing was missed): the reconnect is then not marked.
//! * **Changed archive fields** — a field whose value changes (not its first value after a
//!   connect) rides on the next archived sample with `fieldactualchange=true`; only the
//!   latest value of each field.
//! * **Daily dump** — at most once every [`DAILY_DUMP_SECS`] by the server clock (and on the
//!   first sample once any field has a value), a sample carries every field with a value,
//!   runtime fields included, plus `EGU` and `PREC` when the metadata is known, with
//!   `fieldactualchange=false`; pending changes are then part of the dump.
//!
//! Hot path: a sample with nothing to report costs two comparisons; nothing is allocated.

use archiver_pb::{FieldValue, Sample, Timestamp};

/// Seconds between two full dumps of a PV's fields (Java: once a day).
pub(crate) const DAILY_DUMP_SECS: i64 = 86_400;

/// One monitored field and the last value seen since its channel was (re)created.
#[derive(Debug, Clone)]
struct FieldState {
    /// The name a change is reported under.
    name: String,
    /// The name in the daily dump when it differs (a pvAccess member: its V3 name for a
    /// change, its pvData path in the dump, as Java's `FieldValuesCache`).
    dump_name: Option<String>,
    /// A runtime field: dumped daily, never reported as a change.
    runtime: bool,
    value: Option<String>,
    /// No longer archived (its channel closed): values still queued are ignored.
    gone: bool,
}

/// The annotation state of one PV.
#[derive(Debug, Clone, Default)]
pub(crate) struct Annotator {
    fields: Vec<FieldState>,
    /// Epoch seconds of the last loss since the start not yet reported (0 = none; Java
    /// `PVMetrics.connectionLastLostEpochSeconds`).
    lost_at_secs: i64,
    /// The next archived sample is the first since a start by archive, restore or resume
    /// (Java `firstDataAfterStartUp`).
    first_after_start: bool,
    /// The next archived sample is the first since a connect (Java
    /// `isFirstDataAfterConnection`).
    first_after_connect: bool,
    changed: Vec<FieldValue>,
    last_dump_secs: i64,
}

impl Annotator {
    /// The PV is being started (`startup`: by archive, restore or resume): the next
    /// archived sample is marked `startup=true`, and no loss before the start is reported
    /// (Java starts a resumed PV with new metrics). Its fields start over without values
    /// (their channels are recreated), so the first value of each is not a change.
    pub fn start(&mut self, startup: bool) {
        self.first_after_start = startup;
        self.first_after_connect = false;
        self.lost_at_secs = 0;
        self.fields.clear();
    }

    /// Adds a monitored field; returns its index (0-based, in order of addition).
    pub fn add_field(&mut self, name: &str, runtime: bool) -> usize {
        self.add_field_as(name, None, runtime)
    }

    /// [`Annotator::add_field`] for a field whose daily dump name (`dump_name`) differs
    /// from the name its changes are reported under (`name`).
    pub fn add_field_as(&mut self, name: &str, dump_name: Option<&str>, runtime: bool) -> usize {
        self.fields.push(FieldState {
            name: name.to_string(),
            dump_name: dump_name.filter(|d| *d != name).map(str::to_string),
            runtime,
            value: None,
            gone: false,
        });
        self.fields.len() - 1
    }

    /// Stops archiving field `name` (its channel is closed by the caller): its value and
    /// any change not yet reported are forgotten, values still queued for it are ignored.
    /// Returns its index, `None` if it is not monitored.
    pub fn forget_field(&mut self, name: &str) -> Option<usize> {
        let idx = self.fields.iter().position(|f| f.name == name && !f.gone)?;
        let f = &mut self.fields[idx];
        f.gone = true;
        f.value = None;
        self.changed.retain(|c| c.name != name);
        Some(idx)
    }

    /// True when `name` is monitored.
    pub fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.name == name && !f.gone)
    }

    /// Fields monitored.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// The PV connected: the next archived sample carries the connection mark, if a loss
    /// is pending (or it is the first since the start).
    pub fn connected(&mut self) {
        self.first_after_connect = true;
    }

    /// The PV lost its connection at `at_secs` (epoch seconds): reported by the first
    /// sample archived after the next connect.
    pub fn disconnected(&mut self, at_secs: i64) {
        self.lost_at_secs = at_secs;
        self.first_after_connect = false;
    }

    /// An event repeated the time stamp of the last archived one: the PV has not
    /// processed since, so the pending loss is forgotten (Java
    /// `PVMetrics.resetConnectionLastLostEpochSeconds`).
    pub fn repeated_timestamp(&mut self) {
        self.lost_at_secs = 0;
    }

    /// Field `idx` has the value `text`. A different value from the one held is recorded
    /// as a change, unless it is the first value since the start or a runtime field.
    pub fn field_value(&mut self, idx: usize, text: String) {
        let Some(f) = self.fields.get_mut(idx).filter(|f| !f.gone) else {
            return;
        };
        if f.value.as_deref() == Some(text.as_str()) {
            return;
        }
        if f.value.is_some() && !f.runtime {
            self.changed.retain(|c| c.name != f.name);
            self.changed
                .push(FieldValue::new(f.name.clone(), text.clone()));
        }
        f.value = Some(text);
    }

    /// Field `idx` has the value `text`, reported on the next sample as a change even when
    /// it is the first value or the same as before (a runtime field excepted): Java's
    /// pvAccess channel reports every field it names in V3 terms on the first sample after
    /// each connect.
    pub fn field_value_reported(&mut self, idx: usize, text: String) {
        let Some(f) = self.fields.get_mut(idx).filter(|f| !f.gone) else {
            return;
        };
        if !f.runtime {
            self.changed.retain(|c| c.name != f.name);
            self.changed
                .push(FieldValue::new(f.name.clone(), text.clone()));
        }
        f.value = Some(text);
    }

    /// Adds what `s` must carry, archived at server time `now`; `meta` gives EGU and PREC
    /// when the PV's metadata is known (asked only for a dump).
    pub fn annotate(
        &mut self,
        s: &mut Sample,
        now: Timestamp,
        meta: impl FnOnce() -> Option<(String, i16)>,
    ) {
        if self.first_after_start || self.first_after_connect {
            let startup = std::mem::take(&mut self.first_after_start);
            self.first_after_connect = false;
            let lost = std::mem::take(&mut self.lost_at_secs);
            if startup || (lost != 0 && lost != now.secs) {
                s.field_values
                    .push(FieldValue::new("cnxlostepsecs", lost.to_string()));
                s.field_values
                    .push(FieldValue::new("cnxregainedepsecs", now.secs.to_string()));
                if startup {
                    s.field_values.push(FieldValue::new("startup", "true"));
                }
            }
        }
        if now.secs.saturating_sub(self.last_dump_secs) >= DAILY_DUMP_SECS
            && self.fields.iter().any(|f| f.value.is_some())
        {
            self.last_dump_secs = now.secs;
            let first = s.field_values.len();
            for f in &self.fields {
                if let Some(v) = &f.value {
                    let name = f.dump_name.as_ref().unwrap_or(&f.name);
                    s.field_values
                        .push(FieldValue::new(name.clone(), v.clone()));
                }
            }
            if let Some((egu, prec)) = meta() {
                s.field_values.push(FieldValue::new("EGU", egu));
                s.field_values
                    .push(FieldValue::new("PREC", prec.to_string()));
            }
            // a pending change under a name the dump does not carry rides along
            for c in self.changed.drain(..) {
                if !s.field_values[first..].iter().any(|f| f.name == c.name) {
                    s.field_values.push(c);
                }
            }
            s.field_actual_change = Some(false);
        } else if !self.changed.is_empty() {
            s.field_values.append(&mut self.changed);
            s.field_actual_change = Some(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use archiver_pb::Value;

    use super::*;
    use archiver_time::Clock;

    /// A clock the test sets (the time crate's manual clock will replace it).
    #[derive(Debug)]
    struct TestClock(Mutex<Timestamp>);

    impl TestClock {
        fn at(secs: i64) -> Self {
            TestClock(Mutex::new(Timestamp::new(secs, 0)))
        }
        fn advance(&self, secs: i64) {
            let mut t = self.0.lock().unwrap();
            t.secs += secs;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Timestamp {
            *self.0.lock().unwrap()
        }
    }

    const T0: i64 = 1_700_000_000;

    fn sample(clock: &TestClock) -> Sample {
        Sample::new(clock.now(), Value::ScalarDouble(1.0))
    }

    /// Annotates a fresh sample at the clock's time; returns its field values (name=value)
    /// and its fieldactualchange flag.
    fn next(
        a: &mut Annotator,
        clock: &TestClock,
        meta: Option<(&str, i16)>,
    ) -> (Vec<String>, Option<bool>) {
        let mut s = sample(clock);
        a.annotate(&mut s, clock.now(), || {
            meta.map(|(egu, prec)| (egu.to_string(), prec))
        });
        let fields = s
            .field_values
            .iter()
            .map(|f| format!("{}={}", f.name, f.val))
            .collect();
        (fields, s.field_actual_change)
    }

    /// A started annotator with HIHI and DESC (runtime), both with a value, and its dump
    /// already taken, so that the rules under test stand alone.
    fn settled(clock: &TestClock) -> Annotator {
        let mut a = Annotator::default();
        a.start(true);
        a.add_field("HIHI", false);
        a.add_field("DESC", true);
        a.connected();
        a.field_value(0, "10.0".into());
        a.field_value(1, "a pump".into());
        let (first, _) = next(&mut a, clock, None);
        assert!(first.contains(&"HIHI=10.0".to_string()), "{first:?}");
        a
    }

    #[test]
    fn first_sample_after_the_first_connect_is_marked_lost_never_and_startup() {
        let clock = TestClock::at(T0);
        let mut a = Annotator::default();
        a.start(true);
        a.connected();
        clock.advance(3);
        assert_eq!(
            next(&mut a, &clock, None),
            (
                vec![
                    "cnxlostepsecs=0".to_string(),
                    format!("cnxregainedepsecs={}", T0 + 3),
                    "startup=true".to_string(),
                ],
                None
            )
        );
        // Only the first sample.
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
    }

    #[test]
    fn a_reconnect_carries_the_loss_time_and_no_startup() {
        let clock = TestClock::at(T0);
        let mut a = settled(&clock);
        clock.advance(60);
        let lost = clock.now().secs;
        a.disconnected(lost);
        clock.advance(30);
        a.connected();
        assert_eq!(
            next(&mut a, &clock, None),
            (
                vec![
                    format!("cnxlostepsecs={lost}"),
                    format!("cnxregainedepsecs={}", T0 + 90),
                ],
                None
            )
        );
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
    }

    /// Found by a fresh-user test: each outage is reported by the first sample after it,
    /// never an earlier one again.
    #[test]
    fn each_reconnect_reports_the_outage_just_ended() {
        let clock = TestClock::at(T0);
        let mut a = settled(&clock);
        for (lost_after, regained_after) in [(10, 5), (100, 20), (7, 3)] {
            clock.advance(lost_after);
            let lost = clock.now().secs;
            a.disconnected(lost);
            clock.advance(regained_after);
            a.connected();
            let regained = clock.now().secs;
            assert_eq!(
                next(&mut a, &clock, None).0,
                [
                    format!("cnxlostepsecs={lost}"),
                    format!("cnxregainedepsecs={regained}"),
                ]
            );
        }
        // A connect with no loss before it (a channel re-created by its client) reports
        // nothing: the last outage was reported already.
        clock.advance(50);
        a.connected();
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
        // A loss and its regain within one second: not marked, as Java.
        a.disconnected(clock.now().secs);
        a.connected();
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
    }

    #[test]
    fn a_disconnect_before_the_first_sample_of_a_connect_waits_for_the_next_connect() {
        let clock = TestClock::at(T0);
        let mut a = settled(&clock);
        a.disconnected(T0 + 1);
        a.connected();
        // Lost again before any sample: the later loss is the one reported.
        a.disconnected(T0 + 2);
        clock.advance(9);
        assert_eq!(next(&mut a, &clock, None), (vec![], None), "not connected");
        a.connected();
        assert_eq!(
            next(&mut a, &clock, None).0,
            [
                format!("cnxlostepsecs={}", T0 + 2),
                format!("cnxregainedepsecs={}", T0 + 9),
            ]
        );
    }

    #[test]
    fn a_repeated_time_stamp_after_a_reconnect_forgets_the_loss() {
        let clock = TestClock::at(T0);
        let mut a = settled(&clock);
        a.disconnected(T0 + 1);
        clock.advance(30);
        a.connected();
        // The server sent the value archived last (it did not process meanwhile).
        a.repeated_timestamp();
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
    }

    /// Found by a fresh-user test: a resume carried an outage from before the pause.
    #[test]
    fn a_resume_marks_startup_again_with_no_earlier_loss() {
        let clock = TestClock::at(T0);
        let mut a = settled(&clock);
        // An outage, reported; another, never reported (paused while disconnected).
        a.disconnected(T0 + 5);
        a.connected();
        let _ = next(&mut a, &clock, None);
        a.disconnected(T0 + 8);
        // Pause, then resume: started again, the channel connects.
        a.start(true);
        a.add_field("HIHI", false);
        a.connected();
        clock.advance(100);
        let (fields, _) = next(&mut a, &clock, None);
        assert_eq!(
            fields,
            [
                "cnxlostepsecs=0".to_string(),
                format!("cnxregainedepsecs={}", T0 + 100),
                "startup=true".to_string(),
            ]
        );
        // A loss after the resume and before its first sample is that sample's, as Java.
        a.start(true);
        a.connected();
        a.disconnected(T0 + 101);
        clock.advance(5);
        a.connected();
        assert_eq!(
            next(&mut a, &clock, None).0,
            [
                format!("cnxlostepsecs={}", T0 + 101),
                format!("cnxregainedepsecs={}", T0 + 105),
                "startup=true".to_string(),
            ]
        );
        // A start that is not a startup (none today, but the flag is honoured).
        a.start(false);
        a.connected();
        let (fields, _) = next(&mut a, &clock, None);
        assert!(!fields.contains(&"startup=true".to_string()), "{fields:?}");
    }

    #[test]
    fn a_changed_archive_field_rides_on_the_next_sample() {
        let clock = TestClock::at(T0);
        let mut a = settled(&clock);
        clock.advance(10);
        // The same value again is no change.
        a.field_value(0, "10.0".into());
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
        // Two changes before the next sample: only the latest is reported, once.
        a.field_value(0, "11.0".into());
        a.field_value(0, "12.0".into());
        assert_eq!(
            next(&mut a, &clock, None),
            (vec!["HIHI=12.0".to_string()], Some(true))
        );
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
        // A runtime field's change waits for the dump.
        a.field_value(1, "another pump".into());
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
    }

    #[test]
    fn the_first_value_of_a_field_after_a_start_is_not_a_change() {
        let clock = TestClock::at(T0);
        let mut a = settled(&clock);
        a.start(true);
        a.add_field("HIHI", false);
        a.connected();
        let _ = next(&mut a, &clock, None);
        a.field_value(0, "99.0".into());
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
    }

    #[test]
    fn every_field_is_dumped_once_a_day_with_egu_and_prec() {
        let clock = TestClock::at(T0);
        let mut a = Annotator::default();
        a.start(true);
        a.add_field("HIHI", false);
        a.add_field("LOLO", false);
        a.add_field("DESC", true);
        a.connected();
        // No field has a value yet: nothing to dump.
        let (fields, change) = next(&mut a, &clock, Some(("mA", 3)));
        assert_eq!(change, None, "{fields:?}");
        a.field_value(0, "10.0".into());
        a.field_value(2, "a pump".into());
        // The first sample with values: a full dump, LOLO (no value) left out.
        assert_eq!(
            next(&mut a, &clock, Some(("mA", 3))),
            (
                ["HIHI=10.0", "DESC=a pump", "EGU=mA", "PREC=3"]
                    .map(String::from)
                    .to_vec(),
                Some(false)
            )
        );
        // A change is reported as one until a day has passed...
        a.field_value(0, "11.0".into());
        clock.advance(DAILY_DUMP_SECS - 1);
        assert_eq!(
            next(&mut a, &clock, Some(("mA", 3))),
            (vec!["HIHI=11.0".to_string()], Some(true))
        );
        // ...then everything is dumped again, the pending change inside the dump.
        a.field_value(0, "12.0".into());
        clock.advance(1);
        assert_eq!(
            next(&mut a, &clock, None),
            (
                ["HIHI=12.0", "DESC=a pump"].map(String::from).to_vec(),
                Some(false)
            )
        );
        assert_eq!(next(&mut a, &clock, None), (vec![], None));
        clock.advance(DAILY_DUMP_SECS);
        assert_eq!(next(&mut a, &clock, None).1, Some(false));
    }

    /// A pvAccess member: its change under its V3 name, the dump under its path (Java
    /// `FieldValuesCache`), both on one sample when they meet.
    #[test]
    fn a_field_may_be_dumped_under_another_name_than_its_changes() {
        let clock = TestClock::at(T0);
        let mut a = Annotator::default();
        a.start(true);
        a.connected();
        let hihi = a.add_field_as("HIHI", Some("valueAlarm.highAlarmLimit"), false);
        let form = a.add_field_as("display.form.index", None, true);
        a.field_value_reported(hihi, "90.0".into());
        a.field_value_reported(form, "0".into());
        let (fields, change) = next(&mut a, &clock, None);
        assert_eq!(
            fields[3..],
            [
                "valueAlarm.highAlarmLimit=90.0",
                "display.form.index=0",
                "HIHI=90.0"
            ],
            "{fields:?}"
        );
        assert_eq!(change, Some(false));
        // later: a change under the V3 name; a dump-only member never as a change
        a.field_value(hihi, "95.0".into());
        a.field_value(form, "2".into());
        assert_eq!(
            next(&mut a, &clock, None),
            (vec!["HIHI=95.0".to_string()], Some(true))
        );
        // reported again although unchanged (a reconnect)
        a.field_value_reported(hihi, "95.0".into());
        assert_eq!(
            next(&mut a, &clock, None),
            (vec!["HIHI=95.0".to_string()], Some(true))
        );
    }

    #[test]
    fn a_dump_and_a_connection_mark_share_the_first_sample() {
        let clock = TestClock::at(T0);
        let mut a = Annotator::default();
        a.start(true);
        a.add_field("HIHI", false);
        a.field_value(0, "1.0".into());
        a.connected();
        assert_eq!(
            next(&mut a, &clock, Some(("V", 2))),
            (
                [
                    "cnxlostepsecs=0".to_string(),
                    format!("cnxregainedepsecs={T0}"),
                    "startup=true".to_string(),
                    "HIHI=1.0".to_string(),
                    "EGU=V".to_string(),
                    "PREC=2".to_string(),
                ]
                .to_vec(),
                Some(false)
            )
        );
    }

    #[test]
    fn a_clock_going_backwards_or_to_the_extremes_does_not_overflow() {
        let clock = TestClock::at(i64::MIN);
        let mut a = settled(&TestClock::at(T0));
        a.field_value(0, "13.0".into());
        assert_eq!(next(&mut a, &clock, None).1, Some(true));
        let clock = TestClock::at(i64::MAX);
        assert_eq!(next(&mut a, &clock, None).1, Some(false));
    }
}
