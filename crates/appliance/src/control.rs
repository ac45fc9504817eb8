//! Conditional archiving (spec §4.3, Java `controllingPV`): a PV archived with a
//! controlling PV is paused while the controlling PV's value is 0 and resumed when it is
//! not (Java `DBR_Helper.decodeBooleanValue`: any non-zero number is true).
//!
//! [`Control`] keeps, per controlling PV, the PVs it controls and what it last said; one
//! task per controlling PV ([`Control::ensure_running`]) monitors it on the engine's CA
//! client ([`archiver_engine::Engine::ca_client`]) on a channel of its own, beside the
//! engine's event path, and pauses or resumes the controlled PVs through the engine.
//!
//! The rules:
//! * A controlled PV starts archiving at once; the first value of the controlling PV
//!   pauses it if it is 0. While the controlling PV is unknown (never connected), nothing
//!   changes.
//! * A pause by the controlling PV is not written to the catalogue (after a restart the PV
//!   is restored running and the controlling PV decides again); the controlling PV only
//!   resumes the PVs it paused itself, so a PV an operator paused stays paused.
//! * An operator's pause of a PV the controlling PV had paused makes it the operator's;
//!   an operator's resume of it is obeyed until the next transition.
//! * Every transition is counted and timed: [`ControlStatus`] (in `getPVStatus` and
//!   `getPVDetails`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use archiver_ca::{ChannelEvent, Subscription, mask};
use archiver_engine::PvState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::appliance::Appliance;

/// What a controlled PV's status shows of its controlling PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlStatus {
    /// The controlling PV.
    pub controlling_pv: String,
    /// Whether its channel is connected.
    pub connected: bool,
    /// What it says: `Some(true)` archive, `Some(false)` pause, `None` no value yet.
    pub enabled: Option<bool>,
    /// True when the controlled PV is paused because of it.
    pub paused_by_control: bool,
    /// Changes of its value between zero and non-zero seen since start.
    pub transitions: u64,
    /// Epoch seconds (server clock) of the last transition (0 = none).
    pub last_transition_secs: i64,
}

#[derive(Debug, Default)]
struct Watch {
    controlled: BTreeSet<String>,
    running: bool,
    connected: bool,
    enabled: Option<bool>,
    transitions: u64,
    last_transition_secs: i64,
}

#[derive(Debug, Default)]
struct State {
    watches: HashMap<String, Watch>,
    /// Controlled PV → its controlling PV.
    by_pv: HashMap<String, String>,
    /// Controlled PVs paused by their controlling PV.
    paused_by_control: HashSet<String>,
}

/// The controlling PVs of an appliance (see the module documentation).
#[derive(Debug, Default)]
pub struct Control {
    state: Mutex<State>,
    cancel: CancellationToken,
    /// The runtime the appliance was built on (the engine's): the monitor tasks run there
    /// even when an HTTP request (on the server's own, lower-priority threads) starts them.
    runtime: Option<tokio::runtime::Handle>,
}

impl Control {
    /// No controlling PV yet; monitor tasks will run on the current tokio runtime, if any
    /// (else on the runtime of the call that starts them).
    pub(crate) fn on_current_runtime() -> Control {
        Control {
            runtime: tokio::runtime::Handle::try_current().ok(),
            ..Control::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `pv` is controlled by `controlling` (replacing any other controlling PV of `pv`).
    pub(crate) fn add(&self, controlling: &str, pv: &str) {
        let mut st = self.lock();
        if let Some(old) = st.by_pv.insert(pv.to_string(), controlling.to_string())
            && let Some(w) = st.watches.get_mut(&old)
        {
            w.controlled.remove(pv);
        }
        st.watches
            .entry(controlling.to_string())
            .or_default()
            .controlled
            .insert(pv.to_string());
    }

    /// `pv` is no longer controlled (deleted, or its policy changed).
    pub(crate) fn remove(&self, pv: &str) {
        let mut st = self.lock();
        st.paused_by_control.remove(pv);
        if let Some(c) = st.by_pv.remove(pv)
            && let Some(w) = st.watches.get_mut(&c)
        {
            w.controlled.remove(pv);
        }
    }

    /// The controlling PV of `pv`.
    pub(crate) fn controlling_pv(&self, pv: &str) -> Option<String> {
        self.lock().by_pv.get(pv).cloned()
    }

    /// True when `pv` is paused by its controlling PV (not by an operator).
    pub(crate) fn is_paused_by_control(&self, pv: &str) -> bool {
        self.lock().paused_by_control.contains(pv)
    }

    /// An operator paused or resumed `pv`: the pause is no longer the controlling PV's.
    pub(crate) fn operator_took_over(&self, pv: &str) {
        self.lock().paused_by_control.remove(pv);
    }

    /// What the status of `pv` shows of its controlling PV.
    pub fn status(&self, pv: &str) -> Option<ControlStatus> {
        let st = self.lock();
        let c = st.by_pv.get(pv)?;
        let w = st.watches.get(c)?;
        Some(ControlStatus {
            controlling_pv: c.clone(),
            connected: w.connected,
            enabled: w.enabled,
            paused_by_control: st.paused_by_control.contains(pv),
            transitions: w.transitions,
            last_transition_secs: w.last_transition_secs,
        })
    }

    /// Starts a monitor task for every controlling PV that has none (must be called in a
    /// tokio runtime).
    pub(crate) fn ensure_running(&self, app: &Appliance) {
        let todo: Vec<String> = {
            let mut st = self.lock();
            st.watches
                .iter_mut()
                .filter(|(_, w)| !w.running && !w.controlled.is_empty())
                .map(|(name, w)| {
                    w.running = true;
                    name.clone()
                })
                .collect()
        };
        for name in todo {
            let task = watch(app.clone(), name, self.cancel.clone());
            match &self.runtime {
                Some(rt) => drop(rt.spawn(task)),
                None => drop(tokio::spawn(task)),
            }
        }
    }

    /// Stops every monitor task (at shutdown, before the engine stops).
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
    }

    fn set_connected(&self, controlling: &str, connected: bool) {
        if let Some(w) = self.lock().watches.get_mut(controlling) {
            w.connected = connected;
        }
    }

    /// Records the value `enabled` of `controlling`; returns the PVs it controls if the
    /// value changed (or is the first).
    fn record(&self, controlling: &str, enabled: bool, now_secs: i64) -> Option<Vec<String>> {
        let mut st = self.lock();
        let w = st.watches.get_mut(controlling)?;
        if w.enabled == Some(enabled) {
            return None;
        }
        if w.enabled.is_some() {
            w.transitions += 1;
            w.last_transition_secs = now_secs;
        }
        w.enabled = Some(enabled);
        Some(w.controlled.iter().cloned().collect())
    }

    fn mark_paused(&self, pv: &str, paused: bool) {
        let mut st = self.lock();
        if paused {
            st.paused_by_control.insert(pv.to_string());
        } else {
            st.paused_by_control.remove(pv);
        }
    }
}

/// Java's `decodeBooleanValue`: the first element of a number is true when not 0; a
/// string is true when it is a number that is not 0. `None` for an empty array.
fn decode_bool(v: &archiver_ca::Value) -> Option<bool> {
    match v {
        archiver_ca::Value::String(s) => s
            .to_str_lossy()
            .trim()
            .parse::<f64>()
            .ok()
            .map(|x| x != 0.0),
        other => other.get_f64(0).map(|x| x != 0.0),
    }
}

/// The monitor of one controlling PV: until cancelled, each value that changes its
/// verdict pauses or resumes the PVs it controls.
async fn watch(app: Appliance, name: String, cancel: CancellationToken) {
    let (channel, events) = match app.engine().ca_client().channel(&name) {
        Ok(c) => c,
        Err(e) => {
            warn!(controlling_pv = %name, "cannot monitor the controlling PV: {e}");
            return;
        }
    };
    if let Err(e) = channel.subscribe(Subscription::time(mask::DBE_VALUE | mask::DBE_ALARM)) {
        warn!(controlling_pv = %name, "cannot subscribe to the controlling PV: {e}");
        return;
    }
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            e = events.recv() => e,
        };
        let Some(event) = event else { break };
        match event.kind {
            ChannelEvent::Connected { .. } => app.control().set_connected(&name, true),
            ChannelEvent::Disconnected { .. } => app.control().set_connected(&name, false),
            ChannelEvent::Value { data, .. } => {
                if let Some(enabled) = decode_bool(&data.value) {
                    apply(&app, &name, enabled).await;
                }
            }
            _ => {}
        }
    }
    debug!(controlling_pv = %name, "controlling PV monitor stopped");
}

/// Pauses (`enabled` false) or resumes the PVs `controlling` controls, if its verdict
/// changed.
async fn apply(app: &Appliance, controlling: &str, enabled: bool) {
    let now = app.clock().now().secs;
    let Some(pvs) = app.control().record(controlling, enabled, now) else {
        return;
    };
    info!(
        controlling_pv = controlling,
        enabled,
        pvs = pvs.len(),
        "controlling PV changed"
    );
    for pv in pvs {
        let Some(state) = app.engine().status(&pv).map(|s| s.state) else {
            continue;
        };
        if enabled {
            if state == PvState::Paused && app.control().is_paused_by_control(&pv) {
                match app.engine().resume(&pv) {
                    Ok(()) => app.control().mark_paused(&pv, false),
                    Err(e) => warn!(pv, controlling_pv = controlling, "cannot resume: {e}"),
                }
            }
        } else if state != PvState::Paused {
            // Marked first: a status read meanwhile shows why the PV pauses.
            app.control().mark_paused(&pv, true);
            if let Err(e) = app.engine().pause(&pv).await {
                app.control().mark_paused(&pv, false);
                warn!(pv, controlling_pv = controlling, "cannot pause: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_as_java_decodes_them() {
        use archiver_ca::{CaString, Value};
        assert_eq!(decode_bool(&Value::Double(0.0)), Some(false));
        assert_eq!(decode_bool(&Value::Double(0.5)), Some(true));
        assert_eq!(decode_bool(&Value::Enum(1)), Some(true));
        assert_eq!(decode_bool(&Value::Long(0)), Some(false));
        assert_eq!(decode_bool(&Value::ShortArray(vec![2, 0])), Some(true));
        assert_eq!(decode_bool(&Value::DoubleArray(Vec::new())), None);
        assert_eq!(decode_bool(&Value::String(CaString::new("1"))), Some(true));
        assert_eq!(decode_bool(&Value::String(CaString::new("0"))), Some(false));
        assert_eq!(decode_bool(&Value::String(CaString::new("on"))), None);
    }

    #[test]
    fn transitions_are_counted_and_controlled_pvs_listed() {
        let c = Control::default();
        c.add("BEAM:ON", "A");
        c.add("BEAM:ON", "B");
        c.add("OTHER", "C");
        assert_eq!(
            c.record("BEAM:ON", true, 10),
            Some(vec!["A".into(), "B".into()])
        );
        assert_eq!(c.record("BEAM:ON", true, 11), None, "no change");
        assert_eq!(
            c.record("BEAM:ON", false, 12),
            Some(vec!["A".into(), "B".into()])
        );
        c.mark_paused("A", true);
        let s = c.status("A").expect("controlled");
        assert_eq!(
            (
                s.enabled,
                s.paused_by_control,
                s.transitions,
                s.last_transition_secs
            ),
            (Some(false), true, 1, 12)
        );
        // Moving B to another controlling PV; removing A.
        c.add("OTHER", "B");
        c.remove("A");
        assert!(c.status("A").is_none());
        assert!(!c.is_paused_by_control("A"));
        assert_eq!(c.record("BEAM:ON", true, 13), Some(Vec::new()));
        assert_eq!(c.controlling_pv("B").as_deref(), Some("OTHER"));
    }
}
