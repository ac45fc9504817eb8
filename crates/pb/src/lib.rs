/*!
The Java EPICS Archiver Appliance's **PlainPB** storage format, byte for byte.

A PlainPB file holds the samples of one PV for one partition (an hour, a day, a year...)
of one UTC year. It is a sequence of lines, each a protobuf message with three bytes
escaped so that `0x0A` only ever ends a line:

```text
<escaped PayloadInfo {type, pvname, year}>\n     the header
<escaped Scalar/Vector... sample>\n              one line per sample, times increasing
...
```

# Brief overview

* [`PayloadType`] — the 15 sample types with the Java numbers (0..=14).
* [`Sample`], [`Value`], [`FieldValue`], [`PayloadInfo`] — the sample model.
* [`codec`] — protobuf encoding and decoding with the exact wire types of the Java
  appliance's `EPICSEvent.proto`; [`LineDecoder`] decodes escaped lines without
  allocating per sample for scalar types.
* [`escape`] — the line escaping of `LineEscaper`.
* [`Granularity`] — partitions (5 min … year), their UTC bounds and Java names.
* [`path`] — PV name → file path (`LN-AM{RadMon:2}DoseRate-I` →
  `LN/AM{RadMon/2}DoseRate/I:2014.pb`), refusing names that would leave the tier root.
* [`PbWriter`] — appends to a file, repairs a torn last line on open, refuses (and
  counts) samples not newer than the last one, rolls a failed (or short) write back.
* [`PbReader`] — iterates samples, skips and counts undecodable lines, and finds the first
  sample at or after a time by binary search on byte offsets; [`PbReader::copy_lines_through`]
  hands the stored lines up to a time over verbatim, in blocks, undecoded (pbraw's copy of
  a partition inside a request, as Java's).
* [`FileIo`] — the per-file I/O both use (length, positional read, append, set length,
  sync), so that the storage crate can run them over the real filesystem ([`StdFile`]) or
  a fault-injecting one; [`FileCursor`] gives `Read + Seek` over it for the reader.

The crate does no async work and has no I/O policy: which file to write when, when to
sync, and what to do with refused samples, belongs to the storage and engine crates.

# Example

```
use archiver_pb::{PbReader, PbWriter, PayloadType, Sample, Timestamp, Value};

let dir = tempfile::tempdir()?;
let path = dir.path().join("ABC/DEF:2014.pb");
let mut w = PbWriter::open(&path, "ABC:DEF", PayloadType::ScalarDouble, 2014)?;
let t = Timestamp::new(1_418_019_667, 601_158_377); // 2014-12-08T06:21:07.601158377Z
let counts = w.append(&[Sample::new(t, Value::ScalarDouble(-0.09))])?;
assert_eq!(counts.written, 1);

let mut r = PbReader::open(&path)?;
assert_eq!(r.header().pv_name, "ABC:DEF");
let s = r.next_sample()?.expect("one sample");
assert_eq!((s.time, &s.value), (t, &Value::ScalarDouble(-0.09)));
# Ok::<(), Box<dyn std::error::Error>>(())
```
*/
#![deny(missing_docs)]

pub mod codec;
pub mod escape;
pub mod io;
pub mod partition;
pub mod path;
pub mod reader;
pub mod sample;
pub mod time;
pub mod types;
pub mod writer;

pub use crate::codec::{DecodeError, EncodeError, LineDecoder};
pub use crate::io::{FileCursor, FileIo, StdFile};
pub use crate::partition::Granularity;
pub use crate::reader::{CopyError, Line, PbReader, ReadError};
pub use crate::sample::{FieldValue, PayloadInfo, Sample, Value};
pub use crate::time::Timestamp;
pub use crate::types::PayloadType;
pub use crate::writer::{AppendCounts, PbWriter, WriteError};
