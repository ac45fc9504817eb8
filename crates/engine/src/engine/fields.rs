//! Archive fields: the mechanism that monitors `PV.FIELD` channels for a PV and extends its
//! archive fields by record type, and the Java default policy values
//! ([`super::EngineConfig::default`] uses them; the appliance may pass others).
//!
//! Java (`PolicyConfig.archiveFields`, reference §4.2): each archive field gets its own CA
//! monitor on `PV.FIELD`, and its values ride on the PV's samples as field values. When a
//! request names no archive fields, the engine uses the configured defaults and, once the PV
//! has connected, reads `PV.RTYP` and adds the fields the policy lists for that record type
//! (by default `DRVH` and `DRVL` for output records).
//!
//! Every channel of the engine reports to the one shared event queue under a key
//! [`key`]`(id, index)`: index 0 is the PV itself, 1..=[`MAX_FIELD_INDEX`] its fields,
//! [`RTYP_INDEX`] the one-shot `.RTYP` read.

use std::collections::BTreeMap;
use std::time::Duration;

use archiver_ca::{Channel, Client, EventQueue, Subscription, mask};

/// Java's default archive fields (`policies.py`), for a request that names none.
pub(crate) const DEFAULT_ARCHIVE_FIELDS: [&str; 6] =
    ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR"];

/// Record types whose default archive fields include [`OUTPUT_RECORD_FIELDS`] (Java's
/// default policy: output records).
pub(crate) const OUTPUT_RECORD_TYPES: [&str; 2] = ["ao", "longout"];

/// The extra fields of an output record (Java's default policy).
pub(crate) const OUTPUT_RECORD_FIELDS: [&str; 2] = ["DRVH", "DRVL"];

/// The record types that keep the default archive fields (Java's `policies.py`).
pub(crate) const DEFAULT_FIELD_RECORD_TYPES: [&str; 8] = [
    "ai", "calc", "calcout", "longin", "dfanout", "sub", "ao", "longout",
];

/// The most archive fields a request may name ([`crate::EngineError::TooManyFields`]).
pub(crate) const MAX_ARCHIVE_FIELDS: usize = 200;

/// The highest field channel index (the key keeps 8 bits for it; 255 is [`RTYP_INDEX`]).
/// Fields beyond it (only possible with a very long configured default list plus extras)
/// are not monitored.
pub(crate) const MAX_FIELD_INDEX: usize = 254;

/// The field index of the channel that reads `PV.RTYP` (no archive field has it; its
/// events on the shared queue are ignored).
pub(crate) const RTYP_INDEX: usize = 255;

/// Runtime fields (Java `RuntimeKeys`): monitored and kept, written only in the daily dump.
pub(crate) const RUNTIME_FIELDS: &[&str] = &["DESC"];

/// How long the `.RTYP` read waits for its channel to connect.
const RTYP_TIMEOUT: Duration = Duration::from_secs(5);

/// The event-queue key of channel `field` (0 = the PV, 1.. = its fields) of PV `id`.
pub(crate) fn key(id: u64, field: usize) -> u64 {
    (id << 8) | (field as u64 & 0xFF)
}

/// The PV id and field index of an event-queue key (the inverse of [`key`]).
pub(crate) fn split_key(key: u64) -> (u64, usize) {
    (key >> 8, (key & 0xFF) as usize)
}

/// True for a runtime field (dumped daily, never reported as a change).
pub(crate) fn is_runtime(field: &str) -> bool {
    RUNTIME_FIELDS.contains(&field)
}

/// The fields the policy adds for record type `rtyp` (empty when it lists none).
pub(crate) fn extra_fields<'a>(
    policy: &'a BTreeMap<String, Vec<String>>,
    rtyp: &str,
) -> &'a [String] {
    policy.get(rtyp).map_or(&[], Vec::as_slice)
}

/// A monitored channel on `pv.field`, reporting to `queue` under field index `idx`; `None`
/// when the channel or its subscription cannot be created (the field then never has a
/// value, as for a field the IOC does not serve).
pub(crate) fn field_channel(
    client: &Client,
    queue: &EventQueue,
    pv: &str,
    field: &str,
    id: u64,
    idx: usize,
) -> Option<Channel> {
    if idx == 0 || idx > MAX_FIELD_INDEX {
        return None;
    }
    let ch = client
        .create_channel(&format!("{pv}.{field}"), queue, key(id, idx))
        .ok()?;
    ch.subscribe(Subscription::time(
        mask::DBE_VALUE | mask::DBE_LOG | mask::DBE_ALARM,
    ))
    .ok()?;
    Some(ch)
}

/// A channel on `pv.RTYP` for [`read_rtyp`].
pub(crate) fn rtyp_channel(
    client: &Client,
    queue: &EventQueue,
    pv: &str,
    id: u64,
) -> Option<Channel> {
    client
        .create_channel(&format!("{pv}.RTYP"), queue, key(id, RTYP_INDEX))
        .ok()
}

/// Reads the record type once (`None` if the channel does not connect in time or the read
/// fails: the PV then keeps its default fields).
pub(crate) async fn read_rtyp(ch: Channel) -> Option<String> {
    ch.wait_connected(RTYP_TIMEOUT).await.ok()?;
    let d = ch.get().await.ok()?;
    Some(d.value.get_string(0, &[]).unwrap_or_default())
}

/// A field value as stored: doubles and floats in Rust's shortest round-trip form, enums by
/// `labels`, anything else as CA's string conversion.
pub(crate) fn field_text(v: &archiver_ca::Value, labels: &[String]) -> String {
    match v {
        archiver_ca::Value::Double(x) => format!("{x:?}"),
        archiver_ca::Value::Float(x) => format!("{x:?}"),
        other => other.get_string(0, labels).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineConfig;

    #[test]
    fn keys_round_trip_and_never_spill_into_the_id() {
        assert_eq!(split_key(key(7, 0)), (7, 0));
        assert_eq!(split_key(key(7, MAX_FIELD_INDEX)), (7, MAX_FIELD_INDEX));
        assert_eq!(split_key(key(7, RTYP_INDEX)), (7, RTYP_INDEX));
        assert_eq!(split_key(key(7, 256)).0, 7);
    }

    #[test]
    fn extra_fields_come_from_the_configured_map() {
        let default = EngineConfig::default().record_type_fields;
        assert_eq!(extra_fields(&default, "ao"), ["DRVH", "DRVL"]);
        assert_eq!(extra_fields(&default, "longout"), ["DRVH", "DRVL"]);
        assert!(extra_fields(&default, "ai").is_empty());
        assert!(extra_fields(&default, "AO").is_empty());
        let mut custom = BTreeMap::new();
        custom.insert("mbbo".to_string(), vec!["ZRST".to_string()]);
        assert_eq!(extra_fields(&custom, "mbbo"), ["ZRST"]);
        assert!(extra_fields(&custom, "ao").is_empty());
    }

    #[test]
    fn field_text_keeps_full_precision_and_enum_labels() {
        assert_eq!(field_text(&archiver_ca::Value::Double(0.1), &[]), "0.1");
        assert_eq!(field_text(&archiver_ca::Value::Double(2.0), &[]), "2.0");
        assert_eq!(field_text(&archiver_ca::Value::Float(1.5), &[]), "1.5");
        let labels = ["Off".to_string(), "On".to_string()];
        assert_eq!(field_text(&archiver_ca::Value::Enum(1), &labels), "On");
    }
}
