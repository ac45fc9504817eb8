//! `changeTypeForPV` (Java `ChangeTypeForPV`): the archived type of a paused PV changes,
//! its data rewritten to the new type — what an operator does after the IOC's record
//! changed type (the engine drops and counts every event of another type until then).
//!
//! The conversion is Java's `ThruNumberAndStringConversion`, per sample
//! ([`convert_value`]): numbers to numbers by casting, numbers to strings as text, strings
//! to numbers when they parse; a scalar becomes a one-element waveform and a waveform its
//! first element. A sample that cannot be converted (a string that is not a number, an
//! empty waveform to a scalar, pvAccess bytes) is left out and counted.
//!
//! **Crash safety**: every partition file of every data store is rewritten whole with the
//! storage crate's write-sync-rename (`Tier::replace_partition_locked`) under the PV's
//! write lock, so a crash leaves each file either old or new, never a mix. Only when every
//! file is rewritten is the `PVTypeInfo`'s `DBRType` changed; after a crash part-way the
//! type info still names the old type, each file names its own (retrieval reads each by
//! its header), and running the call again finishes the job (a file already of the new
//! type is rewritten unchanged).

use archiver_engine::PvState;
use archiver_pb::codec::{encode_header_line, encode_line};
use archiver_pb::{PayloadInfo, PayloadType, PbReader, Value};
use archiver_storage::DataStores;
use tracing::{info, warn};

use crate::appliance::Appliance;
use crate::error::{ApplianceError, blocking};

/// The elements of a value as numbers (`None` for a string that does not parse).
fn numbers(v: &Value) -> Option<Vec<f64>> {
    let parse = |s: &str| s.trim().parse::<f64>().ok();
    Some(match v {
        Value::ScalarString(s) => vec![parse(s)?],
        Value::ScalarShort(x) | Value::ScalarEnum(x) => vec![f64::from(*x)],
        Value::ScalarFloat(x) => vec![f64::from(*x)],
        Value::ScalarByte(x) => vec![f64::from(*x)],
        Value::ScalarInt(x) => vec![f64::from(*x)],
        Value::ScalarDouble(x) => vec![*x],
        Value::VectorString(v) => v.iter().map(|s| parse(s)).collect::<Option<_>>()?,
        Value::VectorShort(v) | Value::VectorEnum(v) => v.iter().map(|x| f64::from(*x)).collect(),
        Value::VectorFloat(v) => v.iter().map(|x| f64::from(*x)).collect(),
        Value::VectorChar(v) => v.iter().map(|x| f64::from(*x as i8)).collect(),
        Value::VectorInt(v) => v.iter().map(|x| f64::from(*x)).collect(),
        Value::VectorDouble(v) => v.clone(),
        Value::V4GenericBytes(_) => return None,
    })
}

/// The elements of a value as text (numbers as Rust writes them: `1.5`, `3`).
fn texts(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::ScalarString(s) => Some(vec![s.clone()]),
        Value::VectorString(v) => Some(v.clone()),
        other => Some(numbers(other)?.iter().map(|x| x.to_string()).collect()),
    }
}

/// Java's `ThruNumberAndStringConversion` of one value to type `to` (see the module
/// documentation); `None` when it cannot be converted. Numbers are cast as Rust's `as`
/// does (saturating at the target's range, NaN to 0).
pub fn convert_value(v: &Value, to: PayloadType) -> Option<Value> {
    if v.payload_type() == to {
        return Some(v.clone());
    }
    let first = |n: Vec<f64>| n.first().copied();
    Some(match to {
        PayloadType::ScalarString => Value::ScalarString(texts(v)?.into_iter().next()?),
        PayloadType::ScalarShort => Value::ScalarShort(first(numbers(v)?)? as i16),
        PayloadType::ScalarEnum => Value::ScalarEnum(first(numbers(v)?)? as i16),
        PayloadType::ScalarFloat => Value::ScalarFloat(first(numbers(v)?)? as f32),
        PayloadType::ScalarByte => Value::ScalarByte(first(numbers(v)?)? as i8),
        PayloadType::ScalarInt => Value::ScalarInt(first(numbers(v)?)? as i32),
        PayloadType::ScalarDouble => Value::ScalarDouble(first(numbers(v)?)?),
        PayloadType::WaveformString => Value::VectorString(texts(v)?),
        PayloadType::WaveformShort => {
            Value::VectorShort(numbers(v)?.into_iter().map(|x| x as i16).collect())
        }
        PayloadType::WaveformEnum => {
            Value::VectorEnum(numbers(v)?.into_iter().map(|x| x as i16).collect())
        }
        PayloadType::WaveformFloat => {
            Value::VectorFloat(numbers(v)?.into_iter().map(|x| x as f32).collect())
        }
        PayloadType::WaveformByte => {
            Value::VectorChar(numbers(v)?.into_iter().map(|x| x as i8 as u8).collect())
        }
        PayloadType::WaveformInt => {
            Value::VectorInt(numbers(v)?.into_iter().map(|x| x as i32).collect())
        }
        PayloadType::WaveformDouble => Value::VectorDouble(numbers(v)?),
        _ => return None,
    })
}

/// What a conversion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Converted {
    /// Partition files rewritten.
    pub files: usize,
    /// Samples written in the new type.
    pub samples: u64,
    /// Samples left out (not convertible).
    pub dropped: u64,
}

/// Rewrites every partition of `pv` in every store of `stores` to `to` (see the module
/// documentation).
fn convert_files(
    stores: &DataStores,
    pv: &str,
    to: PayloadType,
) -> Result<Converted, ApplianceError> {
    let storage = |e: String| ApplianceError::Storage(e);
    let mut done = Converted::default();
    let mut line = Vec::new();
    let mut scratch = Vec::new();
    for tier in stores.tiers() {
        let lock = tier.lock_pv(pv).map_err(|e| storage(e.to_string()))?;
        for part in tier.partitions(pv).map_err(|e| storage(e.to_string()))? {
            let mut reader = PbReader::open(&part.path)
                .map_err(|e| storage(format!("{}: {e}", part.path.display())))?;
            let old = reader.header().clone();
            let header = PayloadInfo {
                payload_type: to,
                ..old.clone()
            };
            let mut out = Vec::new();
            encode_header_line(&header, &mut out);
            while let Some(s) = reader
                .next_sample()
                .map_err(|e| storage(format!("{}: {e}", part.path.display())))?
            {
                match convert_value(&s.value, to) {
                    Some(value) => {
                        let mut sample = s.clone();
                        sample.value = value;
                        line.clear();
                        encode_line(&sample, old.year, &mut line, &mut scratch)
                            .map_err(|e| storage(format!("{}: {e}", part.path.display())))?;
                        out.extend_from_slice(&line);
                        done.samples += 1;
                    }
                    None => done.dropped += 1,
                }
            }
            tier.replace_partition_locked(&lock, part.start, &out)
                .map_err(|e| storage(e.to_string()))?;
            done.files += 1;
        }
    }
    Ok(done)
}

impl Appliance {
    /// Java `changeTypeForPV`: rewrites every stored sample of the paused `pv` to `to`,
    /// then records `to` as its `DBRType` (and puts it into the engine, paused), so that
    /// once resumed the IOC's new type is archived. Returns what was converted.
    ///
    /// # Errors
    ///
    /// [`ApplianceError::UnknownPv`] without a type info; [`ApplianceError::Validation`]
    /// (Java's message) when the PV is not paused; [`ApplianceError::BadRequest`] for
    /// `V4_GENERIC_BYTES`; [`ApplianceError::Storage`] when a file cannot be read or
    /// rewritten (the files done so far are in the new type; call again).
    pub async fn change_type(
        &self,
        pv: &str,
        to: PayloadType,
    ) -> Result<Converted, ApplianceError> {
        let info = self.type_info_of(pv).await?;
        let status = self.engine().status(pv);
        let paused = status.as_ref().is_none_or(|s| s.state == PvState::Paused);
        if !paused || !info.paused {
            return Err(ApplianceError::Validation(format!(
                "Need to pause PV before changing type for {pv}"
            )));
        }
        if to == PayloadType::V4GenericBytes {
            return Err(ApplianceError::BadRequest(
                "cannot convert data to DBR_V4_GENERIC_BYTES".to_string(),
            ));
        }
        let stores = self.stores().clone();
        let name = pv.to_string();
        let done = blocking(move || convert_files(&stores, &name, to)).await?;
        if done.dropped > 0 {
            warn!(
                pv,
                dropped = done.dropped,
                "samples not convertible to {to}: left out"
            );
        }
        let reg = self.registry().clone();
        let mut new_info = info.clone();
        new_info.dbr_type = to;
        new_info.scalar = !to.is_waveform();
        new_info.modification_time = Some(self.clock().now());
        blocking(move || reg.put_type_info(&new_info)).await?;
        if let Some(mut s) = status {
            let config = s.config.clone();
            s.archived_type = Some(to);
            self.reconfigure(&s, config, true).await?;
        }
        info!(pv, from = %info.dbr_type, to = %to, files = done.files, samples = done.samples, "type changed");
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_through_numbers_and_strings() {
        use PayloadType as T;
        let c = |v: Value, t| convert_value(&v, t);
        assert_eq!(
            c(Value::ScalarDouble(2.7), T::ScalarInt),
            Some(Value::ScalarInt(2))
        );
        assert_eq!(
            c(Value::ScalarInt(7), T::ScalarDouble),
            Some(Value::ScalarDouble(7.0))
        );
        assert_eq!(
            c(Value::ScalarDouble(1.5), T::ScalarString),
            Some(Value::ScalarString("1.5".into()))
        );
        assert_eq!(
            c(Value::ScalarString(" 42 ".into()), T::ScalarShort),
            Some(Value::ScalarShort(42))
        );
        assert_eq!(c(Value::ScalarString("high".into()), T::ScalarDouble), None);
        assert_eq!(
            c(Value::ScalarDouble(3.0), T::WaveformDouble),
            Some(Value::VectorDouble(vec![3.0]))
        );
        assert_eq!(
            c(Value::VectorInt(vec![4, 5]), T::ScalarDouble),
            Some(Value::ScalarDouble(4.0))
        );
        assert_eq!(c(Value::VectorInt(Vec::new()), T::ScalarDouble), None);
        assert_eq!(
            c(Value::ScalarDouble(1e10), T::ScalarShort),
            Some(Value::ScalarShort(i16::MAX)),
            "saturating"
        );
        assert_eq!(c(Value::V4GenericBytes(vec![1]), T::ScalarDouble), None);
        assert_eq!(
            c(Value::VectorChar(vec![0xff]), T::WaveformInt),
            Some(Value::VectorInt(vec![-1])),
            "bytes are signed, as Java's"
        );
    }
}
