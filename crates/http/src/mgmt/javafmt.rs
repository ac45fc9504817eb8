//! Values written as the Java appliance writes them in its JSON (`JSONEncoder`: every
//! scalar a string), each written in place into the response, without a `String` of its
//! own.

use archiver_pb::Timestamp;

/// Java's `MMM/dd/yyyy HH:mm:ss z`, in UTC; `Never` for 0.
pub fn java_time(secs: i64) -> String {
    JavaTime(secs).to_string()
}

/// [`java_time`] as a `Display` (written into a response without a `String` of its own).
#[derive(Clone, Copy, Debug)]
pub struct JavaTime(pub i64);

impl std::fmt::Display for JavaTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            return f.write_str("Never");
        }
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let d = Timestamp::new(self.0, 0).to_utc();
        write!(
            f,
            "{}/{:02}/{:04} {:02}:{:02}:{:02} UTC",
            MONTHS[(d.month as usize).saturating_sub(1) % 12],
            d.day,
            d.year,
            d.hour,
            d.minute,
            d.second
        )
    }
}

/// Serializes a `Display` value as a JSON string, written in place (Java's status values
/// are strings, numbers included).
pub(crate) struct Str<T>(pub T);

impl<T: std::fmt::Display> serde::Serialize for Str<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A PV's `dbrType` (`DBR_SCALAR_DOUBLE`…).
pub(crate) struct DbrName(pub archiver_pb::PayloadType);

impl std::fmt::Display for DbrName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DBR_{}", self.0)
    }
}

/// An optional `Display`, empty when absent.
pub(crate) struct OrEmpty<T>(pub Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrEmpty<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

/// Items joined by commas.
pub(crate) struct Joined<'a>(pub &'a [String]);

impl std::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(x)?;
        }
        Ok(())
    }
}

/// A sampling period as Java prints a double (`1.0`, `0.5`).
pub(crate) struct Period(pub f64);

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_time_format() {
        assert_eq!(java_time(0), "Never");
        assert_eq!(java_time(1_418_019_667), "Dec/08/2014 06:21:07 UTC");
    }

    #[test]
    fn java_doubles_and_lists() {
        assert_eq!(Period(1.0).to_string(), "1.0");
        assert_eq!(Period(0.25).to_string(), "0.25");
        assert_eq!(Joined(&["A".into(), "B".into()]).to_string(), "A,B");
        assert_eq!(OrEmpty::<u8>(None).to_string(), "");
    }
}
