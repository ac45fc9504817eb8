//! Status words: ECA status codes, alarm severity/status names, access rights.

use std::fmt;

/// An ECA status code as carried in replies (`(message << 3) | severity`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EcaStatus(pub u32);

impl EcaStatus {
    /// Normal successful completion.
    pub const NORMAL: EcaStatus = EcaStatus(1);
    /// Memory allocation failed.
    pub const ALLOCMEM: EcaStatus = EcaStatus(48);
    /// Request too large.
    pub const TOLARGE: EcaStatus = EcaStatus(72);
    /// Timeout.
    pub const TIMEOUT: EcaStatus = EcaStatus(80);
    /// The data type is not valid.
    pub const BADTYPE: EcaStatus = EcaStatus(114);
    /// Internal failure.
    pub const INTERNAL: EcaStatus = EcaStatus(142);
    /// The read failed.
    pub const GETFAIL: EcaStatus = EcaStatus(152);
    /// The write failed.
    pub const PUTFAIL: EcaStatus = EcaStatus(160);
    /// Bad element count.
    pub const BADCOUNT: EcaStatus = EcaStatus(176);
    /// Bad string.
    pub const BADSTR: EcaStatus = EcaStatus(186);
    /// Virtual circuit disconnect.
    pub const DISCONN: EcaStatus = EcaStatus(192);
    /// Bad monitor subscription id.
    pub const BADMONID: EcaStatus = EcaStatus(242);
    /// Bad event mask.
    pub const BADMASK: EcaStatus = EcaStatus(330);
    /// A put callback is already in progress.
    pub const PUTCBINPROG: EcaStatus = EcaStatus(362);
    /// No read access.
    pub const NORDACCESS: EcaStatus = EcaStatus(368);
    /// No write access.
    pub const NOWTACCESS: EcaStatus = EcaStatus(376);
    /// No conversion between the types.
    pub const NOCONVERT: EcaStatus = EcaStatus(400);
    /// Bad channel id.
    pub const BADCHID: EcaStatus = EcaStatus(410);
    /// Client too old for large arrays.
    pub const K16ARRAYCLIENT: EcaStatus = EcaStatus(464);
    /// Virtual circuit unresponsive.
    pub const UNRESPTMO: EcaStatus = EcaStatus(480);

    /// Whether the code means success (bit 0).
    pub const fn is_success(self) -> bool {
        self.0 & 1 == 1
    }

    /// The symbolic name, if known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "ECA_NORMAL",
            48 => "ECA_ALLOCMEM",
            72 => "ECA_TOLARGE",
            80 => "ECA_TIMEOUT",
            114 => "ECA_BADTYPE",
            142 => "ECA_INTERNAL",
            152 => "ECA_GETFAIL",
            160 => "ECA_PUTFAIL",
            176 => "ECA_BADCOUNT",
            186 => "ECA_BADSTR",
            192 => "ECA_DISCONN",
            200 => "ECA_DBLCHNL",
            210 => "ECA_EVDISALLOW",
            242 => "ECA_BADMONID",
            278 => "ECA_DEFUNCT",
            330 => "ECA_BADMASK",
            339 => "ECA_IODONE",
            347 => "ECA_IOINPROGRESS",
            362 => "ECA_PUTCBINPROG",
            368 => "ECA_NORDACCESS",
            376 => "ECA_NOWTACCESS",
            400 => "ECA_NOCONVERT",
            410 => "ECA_BADCHID",
            432 => "ECA_UNAVAILINSERV",
            440 => "ECA_CHANDESTROY",
            464 => "ECA_16KARRAYCLIENT",
            472 => "ECA_CONNSEQTMO",
            480 => "ECA_UNRESPTMO",
            _ => return None,
        })
    }
}

impl fmt::Debug for EcaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for EcaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "ECA status {}", self.0),
        }
    }
}

const SEVERITY_NAMES: [&str; 4] = ["NO_ALARM", "MINOR", "MAJOR", "INVALID"];
const STATUS_NAMES: [&str; 22] = [
    "NO_ALARM",
    "READ",
    "WRITE",
    "HIHI",
    "HIGH",
    "LOLO",
    "LOW",
    "STATE",
    "COS",
    "COMM",
    "TIMEOUT",
    "HWLIMIT",
    "CALC",
    "SCAN",
    "LINK",
    "SOFT",
    "BAD_SUB",
    "UDF",
    "DISABLE",
    "SIMM",
    "READ_ACCESS",
    "WRITE_ACCESS",
];

/// Name of an alarm severity (0 NO_ALARM … 3 INVALID); unknown values give "UNKNOWN".
pub fn severity_name(severity: u16) -> &'static str {
    SEVERITY_NAMES
        .get(usize::from(severity))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Name of an alarm status (0 NO_ALARM … 21 WRITE_ACCESS); unknown values give "UNKNOWN".
pub fn alarm_status_name(status: u16) -> &'static str {
    STATUS_NAMES
        .get(usize::from(status))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Access rights of a channel (ACCESS_RIGHTS parameter 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccessRights {
    /// Read permitted.
    pub read: bool,
    /// Write permitted.
    pub write: bool,
}

impl AccessRights {
    /// Decodes the wire bit field (bit 0 read, bit 1 write).
    pub const fn from_bits(bits: u32) -> Self {
        AccessRights {
            read: bits & 1 != 0,
            write: bits & 2 != 0,
        }
    }

    /// Encodes to the wire bit field.
    pub const fn bits(self) -> u32 {
        (self.read as u32) | ((self.write as u32) << 1)
    }
}

impl fmt::Display for AccessRights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.read, self.write) {
            (true, true) => "read/write",
            (true, false) => "read-only",
            (false, true) => "write-only",
            (false, false) => "no access",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eca_success_bit_and_names() {
        assert!(EcaStatus::NORMAL.is_success());
        assert!(!EcaStatus::GETFAIL.is_success());
        assert_eq!(EcaStatus::NORDACCESS.to_string(), "ECA_NORDACCESS (368)");
        assert_eq!(EcaStatus(9999).to_string(), "ECA status 9999");
    }

    #[test]
    fn alarm_names() {
        assert_eq!(severity_name(2), "MAJOR");
        assert_eq!(severity_name(99), "UNKNOWN");
        assert_eq!(alarm_status_name(3), "HIHI");
        assert_eq!(alarm_status_name(21), "WRITE_ACCESS");
        assert_eq!(alarm_status_name(22), "UNKNOWN");
    }

    #[test]
    fn access_bits_roundtrip() {
        for b in 0..4 {
            assert_eq!(AccessRights::from_bits(b).bits(), b);
        }
        assert_eq!(AccessRights::from_bits(1).to_string(), "read-only");
    }
}
