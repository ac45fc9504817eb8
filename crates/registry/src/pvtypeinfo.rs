//! `PVTypeInfo`: what the archiver knows about one PV, in the Java appliance's JSON.
//!
//! The Java appliance encodes a `PVTypeInfo` with `JSONEncoder` (bean introspection):
//!
//! * every scalar is a JSON **string**: `"scalar": "true"`, `"elementCount": "1"`,
//!   `"lowerAlarmLimit": "NaN"`, `"samplingPeriod": "1.0"` (Java's `toString`, see
//!   [`crate::javanum`]);
//! * instants are ISO-8601 UTC with milliseconds: `"2014-12-11T14:49:58.523Z"`;
//! * `dataStores` and `archiveFields` are arrays of strings, `extraFields` an object of
//!   strings;
//! * a null field is left out.
//!
//! [`PvTypeInfo::to_json_value`] writes exactly that, keys in the order of the reference
//! table (Java's order is that of a `HashMap` and carries no meaning).
//! [`PvTypeInfo::from_json_value`] reads it back and is lenient where the Java decoder
//! would not hurt anyone: JSON numbers and booleans are accepted where strings are
//! expected, a `null` is the same as an absent key, and an absent primitive takes the
//! Java default (`0`, `false`, `MONITOR`) — except the eight limits, which become `NaN`
//! ("unknown") rather than Java's `0.0`.
//!
//! **Unknown keys are kept**, in [`PvTypeInfo::unknown_fields`], and written back after
//! the known ones: a type info exported by a newer Java appliance survives a round trip
//! through this registry unchanged. `pvName` and `DBRType` are required.
//!
//! `usePVAccess` and `useDBEProperties` are `Option<bool>` because Java appliances older
//! than those fields exported type infos without them; `None` means `false` and is not
//! written, so such an export reads and writes back identically.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use archiver_pb::{PayloadType, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::TypeInfoError;
use crate::instant::{format_iso_millis, parse_iso, truncate_to_millis};
use crate::javanum::{format_f32, format_f64, parse_f32, parse_f64};
use crate::names::parse_channel_name;

/// The appliance identity of a single-appliance installation (`appliances.xml` default).
pub const DEFAULT_APPLIANCE_IDENTITY: &str = "appliance0";

/// How the engine samples a PV (`PolicyConfig.SamplingMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SamplingMethod {
    /// Archive every monitor update (the buffer keeps the newest).
    #[default]
    Monitor,
    /// Archive at most one value per sampling period.
    Scan,
    /// Do not archive (a policy outcome that aborts the request).
    DontArchive,
}

impl SamplingMethod {
    /// The Java name: `MONITOR`, `SCAN` or `DONT_ARCHIVE`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SamplingMethod::Monitor => "MONITOR",
            SamplingMethod::Scan => "SCAN",
            SamplingMethod::DontArchive => "DONT_ARCHIVE",
        }
    }
}

impl fmt::Display for SamplingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sampling method name that is not `MONITOR`, `SCAN` or `DONT_ARCHIVE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sampling method {0:?} (expected MONITOR, SCAN or DONT_ARCHIVE)")]
pub struct UnknownSamplingMethod(pub String);

impl FromStr for SamplingMethod {
    type Err = UnknownSamplingMethod;

    /// The Java names, in any case (`scan` is `SCAN`, as the BPL accepts it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            SamplingMethod::Monitor,
            SamplingMethod::Scan,
            SamplingMethod::DontArchive,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| UnknownSamplingMethod(s.to_string()))
    }
}

/// The eight limits of a PV from its `DBR_CTRL` structure; `NaN` means "not known".
///
/// Equality treats `NaN` as equal to `NaN` (two type infos with unknown limits are the
/// same type info).
#[derive(Debug, Clone, Copy)]
pub struct CtrlLimits {
    /// `LOLO` (`lowerAlarmLimit`).
    pub lower_alarm: f64,
    /// `LOW` (`lowerWarningLimit`).
    pub lower_warning: f64,
    /// `HIGH` (`upperWarningLimit`).
    pub upper_warning: f64,
    /// `HIHI` (`upperAlarmLimit`).
    pub upper_alarm: f64,
    /// `LOPR` (`lowerDisplayLimit`).
    pub lower_display: f64,
    /// `HOPR` (`upperDisplayLimit`).
    pub upper_display: f64,
    /// `DRVL` (`lowerCtrlLimit`).
    pub lower_ctrl: f64,
    /// `DRVH` (`upperCtrlLimit`).
    pub upper_ctrl: f64,
}

impl CtrlLimits {
    /// All eight limits unknown (`NaN`).
    pub const UNKNOWN: CtrlLimits = CtrlLimits {
        lower_alarm: f64::NAN,
        lower_warning: f64::NAN,
        upper_warning: f64::NAN,
        upper_alarm: f64::NAN,
        lower_display: f64::NAN,
        upper_display: f64::NAN,
        lower_ctrl: f64::NAN,
        upper_ctrl: f64::NAN,
    };

    /// The limits with their Java keys, in the order they are written.
    fn keyed(&self) -> [(&'static str, f64); 8] {
        [
            ("lowerAlarmLimit", self.lower_alarm),
            ("lowerWarningLimit", self.lower_warning),
            ("upperWarningLimit", self.upper_warning),
            ("upperAlarmLimit", self.upper_alarm),
            ("lowerDisplayLimit", self.lower_display),
            ("upperDisplayLimit", self.upper_display),
            ("lowerCtrlLimit", self.lower_ctrl),
            ("upperCtrlLimit", self.upper_ctrl),
        ]
    }

    fn slot(&mut self, key: &str) -> Option<&mut f64> {
        Some(match key {
            "lowerAlarmLimit" => &mut self.lower_alarm,
            "lowerWarningLimit" => &mut self.lower_warning,
            "upperWarningLimit" => &mut self.upper_warning,
            "upperAlarmLimit" => &mut self.upper_alarm,
            "lowerDisplayLimit" => &mut self.lower_display,
            "upperDisplayLimit" => &mut self.upper_display,
            "lowerCtrlLimit" => &mut self.lower_ctrl,
            "upperCtrlLimit" => &mut self.upper_ctrl,
            _ => return None,
        })
    }
}

impl Default for CtrlLimits {
    fn default() -> Self {
        CtrlLimits::UNKNOWN
    }
}

impl PartialEq for CtrlLimits {
    fn eq(&self, other: &Self) -> bool {
        self.keyed()
            .iter()
            .zip(other.keyed().iter())
            .all(|((_, a), (_, b))| same_f64(*a, *b))
    }
}

/// What the archiver knows about one PV: the Java `PVTypeInfo`, field for field.
///
/// Fields are public: this is a record. Optional fields are those the Java appliance
/// may leave null (and then omits from the JSON). See the module documentation for the
/// JSON rules.
#[derive(Debug, Clone)]
pub struct PvTypeInfo {
    /// `pvName`: the real PV name (no `.VAL`, no protocol prefix).
    pub pv_name: String,
    /// `DBRType`: the archived sample type, written `DBR_SCALAR_DOUBLE` etc.
    pub dbr_type: PayloadType,
    /// `scalar`: false for waveforms.
    pub scalar: bool,
    /// `elementCount`: NELM / the CA element count.
    pub element_count: u32,
    /// `applianceIdentity`: the appliance that archives this PV.
    pub appliance_identity: Option<String>,
    /// `chunkKey`: the storage key (`ABC/DEF:`); the recorded key wins over a recomputed one.
    pub chunk_key: Option<String>,
    /// `hostName`: the IOC host the PV was last served from.
    pub host_name: Option<String>,
    /// The eight `DBR_CTRL` limits (`lowerAlarmLimit` … `upperCtrlLimit`).
    pub limits: CtrlLimits,
    /// `precision`: PREC.
    pub precision: f64,
    /// `units`: EGU.
    pub units: Option<String>,
    /// `computedEventRate`: events per second measured before archiving started.
    pub computed_event_rate: f32,
    /// `computedStorageRate`: bytes per second, same measurement.
    pub computed_storage_rate: f32,
    /// `computedBytesPerEvent`.
    pub computed_bytes_per_event: u32,
    /// `userSpecifiedEventRate` (legacy).
    pub user_specified_event_rate: f32,
    /// `hasReducedDataSet` (legacy).
    pub has_reduced_data_set: bool,
    /// `creationTime`.
    pub creation_time: Option<Timestamp>,
    /// `modificationTime`.
    pub modification_time: Option<Timestamp>,
    /// `paused`: archiving is suspended.
    pub paused: bool,
    /// `samplingMethod`.
    pub sampling_method: SamplingMethod,
    /// `samplingPeriod` in seconds.
    pub sampling_period: f32,
    /// `policyName`: the policy that chose the parameters.
    pub policy_name: Option<String>,
    /// `dataStores`: the storage URLs, short-term first.
    pub data_stores: Vec<String>,
    /// `extraFields`: fields read at archive time (`MDEL`, `ADEL`, `SCAN`, `RTYP`, `NAME`…).
    pub extra_fields: BTreeMap<String, String>,
    /// `controllingPV`: the PV whose value pauses/resumes this one.
    pub controlling_pv: Option<String>,
    /// `archiveFields`: fields stored inside this PV's stream (`HIHI`, `LOLO`…).
    pub archive_fields: Vec<String>,
    /// `usePVAccess`; `None` (absent in old exports) means false.
    pub use_pv_access: Option<bool>,
    /// `useDBEProperties`; `None` (absent in old exports) means false.
    pub use_dbe_properties: Option<bool>,
    /// Keys this version does not know, kept and written back verbatim.
    pub unknown_fields: Map<String, Value>,
}

impl PvTypeInfo {
    /// A type info for a PV about to be archived, with the defaults of the Java
    /// appliance's archive workflow:
    ///
    /// * the type follows the element count as Java's `JCA2ArchDBRType` does: a scalar
    ///   type with `element_count > 1` becomes the matching waveform type; `scalar` is
    ///   true unless the final type is a waveform;
    /// * `chunkKey` from [`archiver_pb::path::chunk_key`], `applianceIdentity`
    ///   [`DEFAULT_APPLIANCE_IDENTITY`];
    /// * creation and modification time `now`, truncated to milliseconds (what the JSON
    ///   keeps, so a stored copy compares equal);
    /// * not paused; limits unknown (`NaN`), precision `0`, no units or host until the
    ///   `DBR_CTRL` metadata is recorded with the setters; rates `0`;
    /// * `usePVAccess` and `useDBEProperties` false (written explicitly).
    ///
    /// `pv_name` must already be normalised (see [`crate::names::normalize_channel_name`]);
    /// it is checked with [`crate::names::parse_channel_name`].
    pub fn new_for_archiving(
        pv_name: &str,
        dbr_type: PayloadType,
        element_count: u32,
        sampling_method: SamplingMethod,
        sampling_period: f32,
        data_stores: Vec<String>,
        now: Timestamp,
    ) -> Result<Self, TypeInfoError> {
        parse_channel_name(pv_name)?;
        let chunk_key = archiver_pb::path::chunk_key(pv_name)?;
        let dbr_type = if element_count > 1 {
            dbr_type.to_waveform()
        } else {
            dbr_type
        };
        let now = truncate_to_millis(now);
        Ok(PvTypeInfo {
            pv_name: pv_name.to_string(),
            dbr_type,
            scalar: !dbr_type.is_waveform(),
            element_count,
            appliance_identity: Some(DEFAULT_APPLIANCE_IDENTITY.to_string()),
            chunk_key: Some(chunk_key),
            host_name: None,
            limits: CtrlLimits::UNKNOWN,
            precision: 0.0,
            units: None,
            computed_event_rate: 0.0,
            computed_storage_rate: 0.0,
            computed_bytes_per_event: 0,
            user_specified_event_rate: 0.0,
            has_reduced_data_set: false,
            creation_time: Some(now),
            modification_time: Some(now),
            paused: false,
            sampling_method,
            sampling_period,
            policy_name: None,
            data_stores,
            extra_fields: BTreeMap::new(),
            controlling_pv: None,
            archive_fields: Vec::new(),
            use_pv_access: Some(false),
            use_dbe_properties: Some(false),
            unknown_fields: Map::new(),
        })
    }

    /// Records EGU.
    pub fn set_units(&mut self, egu: impl Into<String>) {
        self.units = Some(egu.into());
    }

    /// Records PREC.
    pub fn set_precision(&mut self, prec: f64) {
        self.precision = prec;
    }

    /// Records the eight `DBR_CTRL` limits.
    pub fn set_limits(&mut self, limits: CtrlLimits) {
        self.limits = limits;
    }

    /// Records what a PlainPB file header (`PayloadInfo.headers`) says of the PV, as a
    /// live PV's metadata is recorded: `EGU` → `units`, `PREC` → `precision`, and the
    /// limits `LOLO LOW HIGH HIHI LOPR HOPR DRVL DRVH` → [`CtrlLimits`]. A header that is
    /// absent, or whose value is not a number (Java writes numbers as `Double.toString`
    /// or integers), leaves the field as it was. Used for a retired PV (files without a
    /// `PVTypeInfo`, `archiver import --retired`), so that retrieval's `meta` says what
    /// the Java appliance said.
    pub fn set_from_headers(&mut self, headers: &[archiver_pb::FieldValue]) {
        for h in headers {
            let num = || h.val.trim().parse::<f64>().ok();
            let limit = match h.name.as_str() {
                "EGU" => {
                    self.set_units(h.val.clone());
                    continue;
                }
                "PREC" => {
                    if let Some(p) = num() {
                        self.set_precision(p);
                    }
                    continue;
                }
                "LOLO" => &mut self.limits.lower_alarm,
                "LOW" => &mut self.limits.lower_warning,
                "HIGH" => &mut self.limits.upper_warning,
                "HIHI" => &mut self.limits.upper_alarm,
                "LOPR" => &mut self.limits.lower_display,
                "HOPR" => &mut self.limits.upper_display,
                "DRVL" => &mut self.limits.lower_ctrl,
                "DRVH" => &mut self.limits.upper_ctrl,
                _ => continue,
            };
            if let Some(v) = num() {
                *limit = v;
            }
        }
    }

    /// Records the IOC host the PV is served from.
    pub fn set_host_name(&mut self, host: impl Into<String>) {
        self.host_name = Some(host.into());
    }

    /// Records a field read at archive time (`MDEL`, `ADEL`, `SCAN`, `RTYP`, `NAME`…).
    pub fn set_extra_field(&mut self, field: impl Into<String>, value: impl Into<String>) {
        self.extra_fields.insert(field.into(), value.into());
    }

    /// Records the rates measured before archiving (Java `absorbMetaInfo`).
    pub fn set_computed_rates(&mut self, event_rate: f32, storage_rate: f32, bytes_per_event: u32) {
        self.computed_event_rate = event_rate;
        self.computed_storage_rate = storage_rate;
        self.computed_bytes_per_event = bytes_per_event;
    }

    /// Adds a field to `archiveFields`, as Java's `addArchiveField`: empty names and
    /// `VAL` are ignored, a field already present is not added twice. True if added.
    pub fn add_archive_field(&mut self, field: &str) -> bool {
        if field.is_empty() || field == "VAL" || self.archive_fields.iter().any(|f| f == field) {
            return false;
        }
        self.archive_fields.push(field.to_string());
        true
    }

    /// Sets `modificationTime` (truncated to milliseconds).
    pub fn touch(&mut self, now: Timestamp) {
        self.modification_time = Some(truncate_to_millis(now));
    }

    /// `usePVAccess`, absent meaning false.
    pub fn uses_pv_access(&self) -> bool {
        self.use_pv_access.unwrap_or(false)
    }

    /// `useDBEProperties`, absent meaning false.
    pub fn uses_dbe_properties(&self) -> bool {
        self.use_dbe_properties.unwrap_or(false)
    }

    /// The Java JSON object (see the module documentation).
    pub fn to_json_value(&self) -> Value {
        let mut m = Map::new();
        let mut put = |key: &str, value: Value| {
            m.insert(key.to_string(), value);
        };
        let text = |s: &str| Value::String(s.to_string());
        put("pvName", text(&self.pv_name));
        put(
            "DBRType",
            Value::String(format!("DBR_{}", self.dbr_type.name())),
        );
        put("scalar", text(bool_text(self.scalar)));
        put(
            "elementCount",
            Value::String(self.element_count.to_string()),
        );
        if let Some(s) = &self.appliance_identity {
            put("applianceIdentity", text(s));
        }
        if let Some(s) = &self.chunk_key {
            put("chunkKey", text(s));
        }
        if let Some(s) = &self.host_name {
            put("hostName", text(s));
        }
        for (key, v) in self.limits.keyed() {
            put(key, Value::String(format_f64(v)));
        }
        put("precision", Value::String(format_f64(self.precision)));
        if let Some(s) = &self.units {
            put("units", text(s));
        }
        put(
            "computedEventRate",
            Value::String(format_f32(self.computed_event_rate)),
        );
        put(
            "computedStorageRate",
            Value::String(format_f32(self.computed_storage_rate)),
        );
        put(
            "computedBytesPerEvent",
            Value::String(self.computed_bytes_per_event.to_string()),
        );
        put(
            "userSpecifiedEventRate",
            Value::String(format_f32(self.user_specified_event_rate)),
        );
        put(
            "hasReducedDataSet",
            text(bool_text(self.has_reduced_data_set)),
        );
        if let Some(t) = self.creation_time {
            put("creationTime", Value::String(format_iso_millis(t)));
        }
        if let Some(t) = self.modification_time {
            put("modificationTime", Value::String(format_iso_millis(t)));
        }
        put("paused", text(bool_text(self.paused)));
        put("samplingMethod", text(self.sampling_method.as_str()));
        put(
            "samplingPeriod",
            Value::String(format_f32(self.sampling_period)),
        );
        if let Some(s) = &self.policy_name {
            put("policyName", text(s));
        }
        put("dataStores", string_array(&self.data_stores));
        put(
            "extraFields",
            Value::Object(
                self.extra_fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
        if let Some(s) = &self.controlling_pv {
            put("controllingPV", text(s));
        }
        put("archiveFields", string_array(&self.archive_fields));
        if let Some(b) = self.use_pv_access {
            put("usePVAccess", text(bool_text(b)));
        }
        if let Some(b) = self.use_dbe_properties {
            put("useDBEProperties", text(bool_text(b)));
        }
        for (k, v) in &self.unknown_fields {
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m)
    }

    /// The Java JSON as compact text (what the `PVTypeInfo.typeInfoJSON` column holds).
    pub fn to_json_string(&self) -> String {
        self.to_json_value().to_string()
    }

    /// Reads the Java JSON object (see the module documentation for what is accepted).
    pub fn from_json_value(value: Value) -> Result<Self, TypeInfoError> {
        let Value::Object(mut m) = value else {
            return Err(TypeInfoError::NotAnObject);
        };
        let pv_name =
            get_string(&mut m, "pvName")?.ok_or(TypeInfoError::Missing { key: "pvName" })?;
        if pv_name.is_empty() {
            return Err(TypeInfoError::Missing { key: "pvName" });
        }
        let dbr_type = match take(&mut m, "DBRType") {
            None => return Err(TypeInfoError::Missing { key: "DBRType" }),
            Some(Value::String(s)) => match s.parse::<PayloadType>() {
                Ok(t) => t,
                Err(_) => return Err(invalid("DBRType", &Value::String(s), EXPECT_DBR)),
            },
            Some(other) => return Err(invalid("DBRType", &other, EXPECT_DBR)),
        };
        let mut limits = CtrlLimits::UNKNOWN;
        for (key, _) in CtrlLimits::UNKNOWN.keyed() {
            if let Some(v) = get_f64(&mut m, key)?
                && let Some(slot) = limits.slot(key)
            {
                *slot = v;
            }
        }
        let sampling_method = match take(&mut m, "samplingMethod") {
            None => SamplingMethod::default(),
            Some(Value::String(s)) => match s.parse() {
                Ok(method) => method,
                Err(_) => {
                    return Err(invalid(
                        "samplingMethod",
                        &Value::String(s),
                        "MONITOR, SCAN or DONT_ARCHIVE",
                    ));
                }
            },
            Some(other) => {
                return Err(invalid(
                    "samplingMethod",
                    &other,
                    "MONITOR, SCAN or DONT_ARCHIVE",
                ));
            }
        };
        let info = PvTypeInfo {
            pv_name,
            dbr_type,
            scalar: get_bool(&mut m, "scalar")?.unwrap_or(false),
            element_count: get_u32(&mut m, "elementCount")?.unwrap_or(0),
            appliance_identity: get_string(&mut m, "applianceIdentity")?,
            chunk_key: get_string(&mut m, "chunkKey")?,
            host_name: get_string(&mut m, "hostName")?,
            limits,
            precision: get_f64(&mut m, "precision")?.unwrap_or(0.0),
            units: get_string(&mut m, "units")?,
            computed_event_rate: get_f32(&mut m, "computedEventRate")?.unwrap_or(0.0),
            computed_storage_rate: get_f32(&mut m, "computedStorageRate")?.unwrap_or(0.0),
            computed_bytes_per_event: get_u32(&mut m, "computedBytesPerEvent")?.unwrap_or(0),
            user_specified_event_rate: get_f32(&mut m, "userSpecifiedEventRate")?.unwrap_or(0.0),
            has_reduced_data_set: get_bool(&mut m, "hasReducedDataSet")?.unwrap_or(false),
            creation_time: get_instant(&mut m, "creationTime")?,
            modification_time: get_instant(&mut m, "modificationTime")?,
            paused: get_bool(&mut m, "paused")?.unwrap_or(false),
            sampling_method,
            sampling_period: get_f32(&mut m, "samplingPeriod")?.unwrap_or(0.0),
            policy_name: get_string(&mut m, "policyName")?,
            data_stores: get_string_array(&mut m, "dataStores")?.unwrap_or_default(),
            extra_fields: get_string_map(&mut m, "extraFields")?.unwrap_or_default(),
            controlling_pv: get_string(&mut m, "controllingPV")?,
            archive_fields: get_string_array(&mut m, "archiveFields")?.unwrap_or_default(),
            use_pv_access: get_bool(&mut m, "usePVAccess")?,
            use_dbe_properties: get_bool(&mut m, "useDBEProperties")?,
            unknown_fields: Map::new(),
        };
        Ok(PvTypeInfo {
            unknown_fields: m,
            ..info
        })
    }

    /// Reads the Java JSON from text.
    pub fn from_json_str(text: &str) -> Result<Self, TypeInfoError> {
        Self::from_json_value(serde_json::from_str(text)?)
    }
}

impl PartialEq for PvTypeInfo {
    /// Field-wise equality; `NaN` equals `NaN` (see [`CtrlLimits`]).
    fn eq(&self, o: &Self) -> bool {
        self.pv_name == o.pv_name
            && self.dbr_type == o.dbr_type
            && self.scalar == o.scalar
            && self.element_count == o.element_count
            && self.appliance_identity == o.appliance_identity
            && self.chunk_key == o.chunk_key
            && self.host_name == o.host_name
            && self.limits == o.limits
            && same_f64(self.precision, o.precision)
            && self.units == o.units
            && same_f32(self.computed_event_rate, o.computed_event_rate)
            && same_f32(self.computed_storage_rate, o.computed_storage_rate)
            && self.computed_bytes_per_event == o.computed_bytes_per_event
            && same_f32(self.user_specified_event_rate, o.user_specified_event_rate)
            && self.has_reduced_data_set == o.has_reduced_data_set
            && self.creation_time == o.creation_time
            && self.modification_time == o.modification_time
            && self.paused == o.paused
            && self.sampling_method == o.sampling_method
            && same_f32(self.sampling_period, o.sampling_period)
            && self.policy_name == o.policy_name
            && self.data_stores == o.data_stores
            && self.extra_fields == o.extra_fields
            && self.controlling_pv == o.controlling_pv
            && self.archive_fields == o.archive_fields
            && self.use_pv_access == o.use_pv_access
            && self.use_dbe_properties == o.use_dbe_properties
            && self.unknown_fields == o.unknown_fields
    }
}

impl Serialize for PvTypeInfo {
    /// Serialises as the Java JSON object ([`PvTypeInfo::to_json_value`]).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PvTypeInfo {
    /// Deserialises from the Java JSON object ([`PvTypeInfo::from_json_value`]).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        PvTypeInfo::from_json_value(value).map_err(serde::de::Error::custom)
    }
}

const EXPECT_DBR: &str = "an ArchDBRTypes name such as \"DBR_SCALAR_DOUBLE\"";

fn same_f64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

fn string_array(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// Removes `key`; a JSON `null` counts as absent.
fn take(m: &mut Map<String, Value>, key: &str) -> Option<Value> {
    match m.shift_remove(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

fn invalid(key: &'static str, value: &Value, expected: &'static str) -> TypeInfoError {
    TypeInfoError::InvalidValue {
        key,
        value: value.to_string(),
        expected,
    }
}

fn get_string(
    m: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, TypeInfoError> {
    match take(m, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(key, &other, "a string")),
    }
}

fn get_bool(m: &mut Map<String, Value>, key: &'static str) -> Result<Option<bool>, TypeInfoError> {
    const EXPECTED: &str = "\"true\" or \"false\"";
    match take(m, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(invalid(key, &other, EXPECTED)),
    }
}

fn get_u32(m: &mut Map<String, Value>, key: &'static str) -> Result<Option<u32>, TypeInfoError> {
    const EXPECTED: &str = "a non-negative Java int such as \"1\"";
    match take(m, key) {
        None => Ok(None),
        Some(v) => {
            let n = match &v {
                Value::String(s) => s.parse::<u32>().ok(),
                Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                _ => None,
            };
            n.map(Some).ok_or_else(|| invalid(key, &v, EXPECTED))
        }
    }
}

fn get_f64(m: &mut Map<String, Value>, key: &'static str) -> Result<Option<f64>, TypeInfoError> {
    const EXPECTED: &str = "a Java double such as \"1.0\" or \"NaN\"";
    match take(m, key) {
        None => Ok(None),
        Some(v) => {
            let x = match &v {
                Value::String(s) => parse_f64(s),
                Value::Number(n) => n.as_f64(),
                _ => None,
            };
            x.map(Some).ok_or_else(|| invalid(key, &v, EXPECTED))
        }
    }
}

fn get_f32(m: &mut Map<String, Value>, key: &'static str) -> Result<Option<f32>, TypeInfoError> {
    const EXPECTED: &str = "a Java float such as \"1.0\"";
    match take(m, key) {
        None => Ok(None),
        Some(v) => {
            let x = match &v {
                Value::String(s) => parse_f32(s),
                // A JSON number is read as text so it rounds straight to f32.
                Value::Number(n) => parse_f32(&n.to_string()),
                _ => None,
            };
            x.map(Some).ok_or_else(|| invalid(key, &v, EXPECTED))
        }
    }
}

fn get_instant(
    m: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<Timestamp>, TypeInfoError> {
    const EXPECTED: &str = "an ISO-8601 instant such as \"2014-12-11T14:49:58.523Z\"";
    match take(m, key) {
        None => Ok(None),
        Some(v) => match &v {
            Value::String(s) => parse_iso(s)
                .map(Some)
                .ok_or_else(|| invalid(key, &v, EXPECTED)),
            _ => Err(invalid(key, &v, EXPECTED)),
        },
    }
}

fn get_string_array(
    m: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<Vec<String>>, TypeInfoError> {
    const EXPECTED: &str = "an array of strings";
    match take(m, key) {
        None => Ok(None),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s),
                    other => return Err(invalid(key, &other, EXPECTED)),
                }
            }
            Ok(Some(out))
        }
        Some(other) => Err(invalid(key, &other, EXPECTED)),
    }
}

fn get_string_map(
    m: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<BTreeMap<String, String>>, TypeInfoError> {
    const EXPECTED: &str = "an object of strings";
    match take(m, key) {
        None => Ok(None),
        Some(Value::Object(fields)) => {
            let mut out = BTreeMap::new();
            for (name, value) in fields {
                let text = match value {
                    Value::String(s) => s,
                    // Java writes `toString()` of whatever the map held.
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => bool_text(b).to_string(),
                    other => return Err(invalid(key, &other, EXPECTED)),
                };
                out.insert(name, text);
            }
            Ok(Some(out))
        }
        Some(other) => Err(invalid(key, &other, EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROTOTYPE: &str = include_str!("../tests/data/PVTypeInfoPrototype.json");

    fn prototype_value() -> Value {
        serde_json::from_str(PROTOTYPE).unwrap()
    }

    #[test]
    fn prototype_vector_parses_field_by_field() {
        let info = PvTypeInfo::from_json_str(PROTOTYPE).unwrap();
        assert_eq!(info.pv_name, "UnitTestNoNamingConvention:inactive1");
        assert_eq!(info.dbr_type, PayloadType::ScalarDouble);
        assert!(info.scalar);
        assert_eq!(info.element_count, 1);
        assert_eq!(info.appliance_identity.as_deref(), Some("appliance0"));
        assert_eq!(info.chunk_key, None);
        assert_eq!(
            info.host_name.as_deref(),
            Some("mshankar-GNOME3-VirtualBox")
        );
        assert!(info.limits.lower_alarm.is_nan());
        assert!(info.limits.upper_alarm.is_nan());
        assert_eq!(info.limits.lower_warning, -0.7);
        assert_eq!(info.limits.upper_warning, 0.5);
        assert_eq!(info.limits.lower_display, 0.0);
        assert_eq!(info.limits.upper_ctrl, 0.0);
        assert_eq!(info.precision, 0.0);
        assert_eq!(info.units.as_deref(), Some(""));
        assert_eq!(info.computed_event_rate, 0.016_666_668);
        assert_eq!(info.computed_storage_rate, 0.283_333_33);
        assert_eq!(info.computed_bytes_per_event, 17);
        assert!(!info.has_reduced_data_set);
        // 2014-12-11T14:49:58.523Z
        let t = Timestamp::new(1_418_309_398, 523_000_000);
        assert_eq!(info.creation_time, Some(t));
        assert_eq!(info.modification_time, Some(t));
        assert!(!info.paused);
        assert_eq!(info.sampling_method, SamplingMethod::Monitor);
        assert_eq!(info.sampling_period, 1.0);
        assert_eq!(info.policy_name, None);
        assert_eq!(info.data_stores.len(), 3);
        assert!(info.data_stores[0].starts_with("pb://localhost?name=STS&"));
        assert!(info.data_stores[2].contains("PARTITION_YEAR"));
        assert_eq!(
            info.archive_fields,
            ["LOLO", "HIGH", "LOW", "LOPR", "HOPR", "HIHI"]
        );
        assert_eq!(info.extra_fields.len(), 5);
        assert_eq!(info.extra_fields["RTYP"], "ai");
        assert_eq!(info.extra_fields["ADEL"], "0.0");
        assert_eq!(info.controlling_pv, None);
        assert_eq!(info.use_pv_access, None);
        assert!(!info.uses_pv_access() && !info.uses_dbe_properties());
        assert!(info.unknown_fields.is_empty());
    }

    #[test]
    fn prototype_vector_reserialises_to_the_same_json() {
        let original = prototype_value();
        let info = PvTypeInfo::from_json_value(original.clone()).unwrap();
        let again = info.to_json_value();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&again), keys(&original));
        for (key, value) in original.as_object().unwrap() {
            assert_eq!(&again[key], value, "key {key}");
        }
        assert_eq!(again, original);
        // And through text and serde.
        let text = serde_json::to_string(&info).unwrap();
        let back: PvTypeInfo = serde_json::from_str(&text).unwrap();
        assert_eq!(back, info);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), original);
    }

    #[test]
    fn unknown_keys_are_kept_and_written_back() {
        let mut v = prototype_value();
        v["someFutureField"] = json!({"nested": ["x", 1]});
        v["anotherOne"] = json!("7");
        let info = PvTypeInfo::from_json_value(v.clone()).unwrap();
        assert_eq!(info.unknown_fields.len(), 2);
        assert_eq!(info.unknown_fields["anotherOne"], json!("7"));
        assert_eq!(info.to_json_value(), v);
    }

    #[test]
    fn nulls_are_absent_and_absent_optionals_are_not_written() {
        let v = json!({
            "pvName": "A:B",
            "DBRType": "DBR_SCALAR_INT",
            "units": null,
            "lowerAlarmLimit": null,
            "policyName": null,
        });
        let info = PvTypeInfo::from_json_value(v).unwrap();
        assert_eq!(info.units, None);
        assert!(info.limits.lower_alarm.is_nan());
        assert_eq!(info.sampling_method, SamplingMethod::Monitor);
        let out = info.to_json_value();
        let obj = out.as_object().unwrap();
        assert!(obj.values().all(|v| !v.is_null()));
        for absent in [
            "units",
            "policyName",
            "hostName",
            "chunkKey",
            "applianceIdentity",
            "controllingPV",
            "creationTime",
            "usePVAccess",
        ] {
            assert!(!obj.contains_key(absent), "{absent} should be omitted");
        }
        assert_eq!(out["lowerAlarmLimit"], "NaN");
        assert_eq!(out["DBRType"], "DBR_SCALAR_INT");
        assert_eq!(out["dataStores"], json!([]));
        assert_eq!(out["extraFields"], json!({}));
    }

    #[test]
    fn json_numbers_and_booleans_are_accepted_for_scalars() {
        let v = json!({
            "pvName": "A:B",
            "DBRType": "DBR_WAVEFORM_SHORT",
            "scalar": false,
            "elementCount": 2048,
            "samplingPeriod": 0.1,
            "precision": 3,
            "paused": "TRUE",
            "extraFields": {"MDEL": 0.5, "X": true},
        });
        let info = PvTypeInfo::from_json_value(v).unwrap();
        assert!(!info.scalar && info.paused);
        assert_eq!(info.element_count, 2048);
        assert_eq!(info.sampling_period, 0.1);
        assert_eq!(info.precision, 3.0);
        assert_eq!(info.extra_fields["MDEL"], "0.5");
        assert_eq!(info.extra_fields["X"], "true");
        let out = info.to_json_value();
        assert_eq!(out["elementCount"], "2048");
        assert_eq!(out["samplingPeriod"], "0.1");
        assert_eq!(out["paused"], "true");
        assert_eq!(out["precision"], "3.0");
    }

    #[test]
    fn bad_values_are_typed_errors_naming_the_key() {
        let bad = |patch: Value| {
            let mut v = prototype_value();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            PvTypeInfo::from_json_value(v).unwrap_err()
        };
        let key_of = |e: TypeInfoError| match e {
            TypeInfoError::InvalidValue { key, .. } => key,
            other => panic!("expected InvalidValue, got {other:?}"),
        };
        assert_eq!(key_of(bad(json!({"elementCount": "abc"}))), "elementCount");
        assert_eq!(key_of(bad(json!({"elementCount": "-1"}))), "elementCount");
        assert_eq!(
            key_of(bad(json!({"DBRType": "DBR_SCALAR_LONG"}))),
            "DBRType"
        );
        assert_eq!(
            key_of(bad(json!({"samplingMethod": "SOMETIMES"}))),
            "samplingMethod"
        );
        assert_eq!(
            key_of(bad(json!({"creationTime": "yesterday"}))),
            "creationTime"
        );
        assert_eq!(
            key_of(bad(json!({"upperAlarmLimit": "high"}))),
            "upperAlarmLimit"
        );
        assert_eq!(key_of(bad(json!({"paused": "maybe"}))), "paused");
        assert_eq!(key_of(bad(json!({"dataStores": "pb://x"}))), "dataStores");
        assert_eq!(key_of(bad(json!({"archiveFields": [1]}))), "archiveFields");
        assert_eq!(key_of(bad(json!({"units": 5}))), "units");
        let msg = bad(json!({"samplingPeriod": "fast"})).to_string();
        assert!(
            msg.contains("samplingPeriod") && msg.contains("fast"),
            "{msg}"
        );

        let mut v = prototype_value();
        v.as_object_mut().unwrap().remove("pvName");
        assert!(matches!(
            PvTypeInfo::from_json_value(v),
            Err(TypeInfoError::Missing { key: "pvName" })
        ));
        assert!(matches!(
            PvTypeInfo::from_json_value(json!([1, 2])),
            Err(TypeInfoError::NotAnObject)
        ));
        assert!(matches!(
            PvTypeInfo::from_json_str("{\"pvName\": "),
            Err(TypeInfoError::Json(_))
        ));
        assert!(serde_json::from_str::<PvTypeInfo>("{\"pvName\":\"A\"}").is_err());
    }

    #[test]
    fn new_for_archiving_fills_java_defaults() {
        let now = Timestamp::new(1_700_000_000, 123_456_789);
        let stores = vec!["pb://localhost?name=STS&rootFolder=/sts".to_string()];
        let info = PvTypeInfo::new_for_archiving(
            "ABC:DEF-1",
            PayloadType::ScalarDouble,
            1,
            SamplingMethod::Scan,
            2.5,
            stores.clone(),
            now,
        )
        .unwrap();
        assert_eq!(info.pv_name, "ABC:DEF-1");
        assert_eq!(info.dbr_type, PayloadType::ScalarDouble);
        assert!(info.scalar);
        assert_eq!(info.chunk_key.as_deref(), Some("ABC/DEF/1:"));
        assert_eq!(info.appliance_identity.as_deref(), Some("appliance0"));
        let ms = Timestamp::new(1_700_000_000, 123_000_000);
        assert_eq!(info.creation_time, Some(ms));
        assert_eq!(info.modification_time, Some(ms));
        assert!(!info.paused);
        assert_eq!(info.limits, CtrlLimits::UNKNOWN);
        assert_eq!(info.data_stores, stores);
        assert_eq!(info.sampling_method, SamplingMethod::Scan);
        let v = info.to_json_value();
        assert_eq!(v["upperAlarmLimit"], "NaN");
        assert_eq!(v["precision"], "0.0");
        assert_eq!(v["samplingPeriod"], "2.5");
        assert_eq!(v["samplingMethod"], "SCAN");
        assert_eq!(v["creationTime"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["usePVAccess"], "false");
        assert_eq!(v["scalar"], "true");
        // A stored copy reads back equal (NaN limits and truncated times included).
        assert_eq!(PvTypeInfo::from_json_value(v).unwrap(), info);
    }

    #[test]
    fn new_for_archiving_derives_waveform_type_and_checks_the_name() {
        let now = Timestamp::new(0, 0);
        let w = PvTypeInfo::new_for_archiving(
            "W:F",
            PayloadType::ScalarShort,
            2048,
            SamplingMethod::Monitor,
            1.0,
            vec![],
            now,
        )
        .unwrap();
        assert_eq!(w.dbr_type, PayloadType::WaveformShort);
        assert!(!w.scalar);
        assert_eq!(w.element_count, 2048);
        let v4 = PvTypeInfo::new_for_archiving(
            "V:4",
            PayloadType::V4GenericBytes,
            1,
            SamplingMethod::Monitor,
            1.0,
            vec![],
            now,
        )
        .unwrap();
        assert!(v4.scalar);
        let err = PvTypeInfo::new_for_archiving(
            "BAD NAME",
            PayloadType::ScalarDouble,
            1,
            SamplingMethod::Monitor,
            1.0,
            vec![],
            now,
        )
        .unwrap_err();
        assert!(matches!(err, TypeInfoError::InvalidName(_)), "{err:?}");
    }

    #[test]
    fn ctrl_metadata_setters_write_java_keys() {
        let mut info = PvTypeInfo::new_for_archiving(
            "A:B",
            PayloadType::ScalarFloat,
            1,
            SamplingMethod::Monitor,
            1.0,
            vec![],
            Timestamp::new(0, 0),
        )
        .unwrap();
        info.set_units("mA");
        info.set_precision(3.0);
        info.set_host_name("ioc-host-1");
        info.set_limits(CtrlLimits {
            lower_alarm: -10.0,
            lower_warning: -5.0,
            upper_warning: 5.0,
            upper_alarm: 10.0,
            lower_display: -20.0,
            upper_display: 20.0,
            lower_ctrl: -1e8,
            upper_ctrl: 1e8,
        });
        info.set_extra_field("RTYP", "ai");
        info.set_computed_rates(0.5, 8.5, 17);
        assert!(info.add_archive_field("HIHI"));
        assert!(!info.add_archive_field("HIHI"));
        assert!(!info.add_archive_field("VAL"));
        assert!(!info.add_archive_field(""));
        info.touch(Timestamp::new(60, 999_999_999));
        let v = info.to_json_value();
        assert_eq!(v["units"], "mA");
        assert_eq!(v["precision"], "3.0");
        assert_eq!(v["hostName"], "ioc-host-1");
        assert_eq!(v["lowerAlarmLimit"], "-10.0");
        assert_eq!(v["lowerWarningLimit"], "-5.0");
        assert_eq!(v["upperWarningLimit"], "5.0");
        assert_eq!(v["upperAlarmLimit"], "10.0");
        assert_eq!(v["lowerDisplayLimit"], "-20.0");
        assert_eq!(v["upperDisplayLimit"], "20.0");
        assert_eq!(v["lowerCtrlLimit"], "-1.0E8");
        assert_eq!(v["upperCtrlLimit"], "1.0E8");
        assert_eq!(v["extraFields"], json!({"RTYP": "ai"}));
        assert_eq!(v["computedEventRate"], "0.5");
        assert_eq!(v["computedStorageRate"], "8.5");
        assert_eq!(v["computedBytesPerEvent"], "17");
        assert_eq!(v["archiveFields"], json!(["HIHI"]));
        assert_eq!(v["modificationTime"], "1970-01-01T00:01:00.999Z");
        assert_eq!(v["creationTime"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn sampling_method_names() {
        for m in [
            SamplingMethod::Monitor,
            SamplingMethod::Scan,
            SamplingMethod::DontArchive,
        ] {
            assert_eq!(m.as_str().parse::<SamplingMethod>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!("scan".parse::<SamplingMethod>(), Ok(SamplingMethod::Scan));
        assert!("DELTA".parse::<SamplingMethod>().is_err());
    }

    #[test]
    fn equality_sees_every_difference_but_treats_nan_as_equal() {
        let a = PvTypeInfo::from_json_str(PROTOTYPE).unwrap();
        assert_eq!(a, a.clone());
        let mut b = a.clone();
        b.limits.upper_alarm = 1.0;
        assert_ne!(a, b);
        let mut c = a.clone();
        c.paused = true;
        assert_ne!(a, c);
        let mut d = a.clone();
        d.unknown_fields.insert("x".into(), json!(1));
        assert_ne!(a, d);
    }

    /// A retired PV's type info takes EGU, PREC and the limits of its file header (the
    /// Java vector's `EGU=mR/h`, `PREC=2`); a value that is not a number is left alone.
    #[test]
    fn a_file_header_gives_units_precision_and_limits() {
        use archiver_pb::FieldValue;
        let mut info = PvTypeInfo::new_for_archiving(
            "R:1",
            PayloadType::ScalarDouble,
            1,
            SamplingMethod::Monitor,
            1.0,
            Vec::new(),
            Timestamp::new(1_700_000_000, 0),
        )
        .unwrap();
        info.set_from_headers(&[
            FieldValue::new("EGU", "mR/h"),
            FieldValue::new("PREC", "2"),
            FieldValue::new("HIHI", "10.5"),
            FieldValue::new("LOPR", "-1"),
            FieldValue::new("HOPR", "many"),
            FieldValue::new("cnxlostepsecs", "1"),
        ]);
        assert_eq!(info.units.as_deref(), Some("mR/h"));
        assert_eq!(info.precision, 2.0);
        assert_eq!(info.limits.upper_alarm, 10.5);
        assert_eq!(info.limits.lower_display, -1.0);
        assert!(info.limits.upper_display.is_nan());
        let json = info.to_json_value();
        assert_eq!(
            (&json["units"], &json["precision"]),
            (&"mR/h".into(), &"2.0".into())
        );
    }
}
