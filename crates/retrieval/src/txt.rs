//! `getData.txt` (Java `TextResponse`, `text/plain`): for each PV with data a line
//! `Beginning data for <PV>`, then one line per sample, tab-separated:
//!
//! ```text
//! Beginning data for LN-AM{RadMon:2}DoseRate-I
//! Dec/08/2014 06:21:07 UTC<TAB>-0.09<TAB>0<TAB>0<TAB>601158377
//! ```
//!
//! time (`MMM/dd/yyyy HH:mm:ss z`, whole seconds, in UTC where Java uses the server's time
//! zone; epoch second 0 is `Never`, as Java's `TimeUtils.convertToHumanReadableString`),
//! the value as Java's `toString` ([`crate::text`]), severity, status, nanoseconds.
//! Differences from Java: the `Data from stream <source>` lines Java writes at each
//! source switch are not written (the merge hides the sources), and a PV without samples
//! gets no `Beginning data` line. No data at all: an empty body (Java's, when no store
//! holds anything for the range).

use archiver_pb::Sample;
use archiver_time::UtcDateTime;

use crate::encode::Encoder;
use crate::plan::StreamDesc;
use crate::text::{int, value_columns};

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Writes `n` as exactly `width` zero-padded digits (higher digits dropped).
fn digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut n = n;
    for i in (0..width).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Writes `secs` as Java's `convertToHumanReadableString` does in UTC:
/// `Dec/08/2014 06:21:07 UTC` (`Never` for 0).
pub fn human_time(out: &mut Vec<u8>, secs: i64) {
    if secs == 0 {
        out.extend_from_slice(b"Never");
        return;
    }
    let d = UtcDateTime::from_epoch_secs(secs);
    let month = (d.month as usize).clamp(1, 12) - 1;
    out.extend_from_slice(MONTHS[month]);
    out.push(b'/');
    digits(out, d.day, 2);
    out.push(b'/');
    if (0..=9999).contains(&d.year) {
        digits(out, d.year as u32, 4);
    } else {
        int(out, d.year);
    }
    out.push(b' ');
    digits(out, d.hour, 2);
    out.push(b':');
    digits(out, d.minute, 2);
    out.push(b':');
    digits(out, d.second, 2);
    out.extend_from_slice(b" UTC");
}

/// Builds a `getData.txt` body.
#[derive(Debug, Default)]
pub struct TextResponse {
    out: Vec<u8>,
    /// The PV begun whose `Beginning data` line waits for a first sample.
    deferred: Option<String>,
}

impl TextResponse {
    /// An empty response.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Encoder for TextResponse {
    fn begin_pv(&mut self, desc: &StreamDesc) {
        self.deferred = Some(desc.name.clone());
    }

    fn sample(&mut self, s: &Sample) {
        let o = &mut self.out;
        if let Some(pv) = self.deferred.take() {
            o.extend_from_slice(b"Beginning data for ");
            o.extend_from_slice(pv.as_bytes());
            o.push(b'\n');
        }
        human_time(o, s.time.secs);
        value_columns(o, s, b'\t');
    }

    fn end_pv(&mut self) {
        self.deferred = None;
    }

    fn end(&mut self) {}

    fn pending(&self) -> usize {
        self.out.len()
    }

    fn take(&mut self) -> Vec<u8> {
        crate::encode::take_keeping_capacity(&mut self.out)
    }
}
