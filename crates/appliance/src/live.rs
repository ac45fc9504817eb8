//! The engine as the retrieval pipeline's [`LiveSource`]: the type and metadata of a PV not
//! yet in the catalogue ([`Engine::status`]) and the samples not yet written
//! ([`Engine::buffered`]). Retrieval knows no engine; the appliance, which holds both,
//! connects them ([`crate::Appliance::live_source`], [`crate::Appliance::retrieval`]).

use archiver_engine::{Engine, PvState};
use archiver_pb::{FieldValue, PayloadType, Sample};
use archiver_registry::javanum::format_f64;
use archiver_retrieval::{LiveDesc, LiveSource};

/// The engine's live buffers and status as a [`LiveSource`]. Its methods take the PV's
/// lock only to copy (the engine decodes a buffer after releasing it), so a retrieval never
/// holds up ingest.
#[derive(Clone)]
pub struct EngineLive(pub Engine);

impl std::fmt::Debug for EngineLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineLive").finish_non_exhaustive()
    }
}

impl LiveSource for EngineLive {
    fn describe(&self, pv: &str) -> Option<LiveDesc> {
        let status = self.0.status(pv)?;
        let mut headers = Vec::new();
        if status.meta.known {
            if !status.meta.egu.is_empty() {
                headers.push(FieldValue::new("EGU", status.meta.egu.clone()));
            }
            headers.push(FieldValue::new("PREC", status.meta.prec.to_string()));
            // The labels of an enum PV (DBR_CTRL_ENUM), as Java's getMetadata: ENUM_0...
            for (i, label) in status.meta.labels.iter().enumerate() {
                if !label.is_empty() {
                    headers.push(FieldValue::new(format!("ENUM_{i}"), label.clone()));
                }
            }
        }
        Some(LiveDesc {
            payload_type: status.archived_type,
            element_count: status.conn.element_count.max(1),
            headers,
        })
    }

    fn buffered(&self, pv: &str) -> Vec<Sample> {
        self.0.buffered(pv).map(|b| b.samples).unwrap_or_default()
    }

    /// An archiving PV (not paused) that is not connected now and has lost a connection
    /// (`ConnState::lost_at_secs`, 0 when it never did), as Java's engine adds
    /// `cnxlostepsecs` for a channel that is not connected.
    fn disconnected_since(&self, pv: &str) -> Option<i64> {
        let status = self.0.status(pv)?;
        (status.state == PvState::Archiving
            && !status.conn.connected
            && status.conn.lost_at_secs != 0)
            .then_some(status.conn.lost_at_secs)
    }

    /// What the engine knows now (Java engine `getMetadata`): `EGU`, `PREC`, the limits
    /// from `DBR_CTRL` (`HOPR LOPR HIHI HIGH LOW LOLO DRVH DRVL`, as Java's
    /// `Double.toString`), the `ENUM_n` labels of an enum PV; empty values left out.
    fn latest_metadata(&self, pv: &str) -> Vec<FieldValue> {
        let Some(status) = self.0.status(pv) else {
            return Vec::new();
        };
        let mut headers = Vec::new();
        if !status.meta.known {
            return headers;
        }
        if !status.meta.egu.is_empty() {
            headers.push(FieldValue::new("EGU", status.meta.egu.clone()));
        }
        headers.push(FieldValue::new("PREC", status.meta.prec.to_string()));
        let names = [
            "HOPR", "LOPR", "HIHI", "HIGH", "LOW", "LOLO", "DRVH", "DRVL",
        ];
        // Strings and enums have no control limits (Java reads none for them), and a limit
        // never read (NaN, from a catalogue entry of a PV not connected yet) is not sent.
        let has_limits = !matches!(
            status.archived_type,
            Some(
                PayloadType::ScalarString
                    | PayloadType::WaveformString
                    | PayloadType::ScalarEnum
                    | PayloadType::WaveformEnum
                    | PayloadType::V4GenericBytes
            )
        );
        for (name, v) in names.iter().zip(status.meta.limits) {
            if has_limits && v.is_finite() {
                headers.push(FieldValue::new(*name, format_f64(v)));
            }
        }
        for (i, label) in status.meta.labels.iter().enumerate() {
            if !label.is_empty() {
                headers.push(FieldValue::new(format!("ENUM_{i}"), label.clone()));
            }
        }
        headers
    }
}
