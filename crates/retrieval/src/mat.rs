//! `getData.mat` (Java `MatlabResponse`, `application/matlab`): a MATLAB level-5 MAT-file
//! with two variables, as Java writes them through JMatIO:
//!
//! * `header`, a 1×1 struct of char arrays: `source` (`Archiver appliance`), `pvName`,
//!   `from`, `to` (ISO 8601 with milliseconds, Java's `convertToISO8601String`);
//! * `data`, a 1×1 struct: `epochSeconds` (uint64 N×1), `values` (double N×1, or N×M for a
//!   waveform of M elements, the element count of the first sample; a shorter sample is
//!   padded with 0, as Java's `MLDouble`), `nanos` (uint64 N×1), `isDST` (uint8 N×1: all
//!   0, times are UTC).
//!
//! Values are Java's `doubleValue()` of each element ([`crate::text::as_f64`]: an enum
//! its index, a string parsed or NaN).
//!
//! Differences from Java: the variables are written uncompressed (`miMATRIX`; JMatIO
//! compresses each with `miCOMPRESSED`; every reader of level 5 reads both), and the
//! descriptive text of the file header names this server instead of the date. No data:
//! the same file with N = 0 (Java fails on a PV without any stored data).
//!
//! A MAT-file states every array's size before its data, so, as Java's, this format holds
//! the response's columns in memory until the end (24 bytes a scalar sample, in four
//! growing vectors: nothing is allocated per sample) and hands the file over in one piece.

use archiver_pb::{Sample, Timestamp, Value};
use archiver_time::Precision;

use crate::encode::Encoder;
use crate::plan::StreamDesc;
use crate::text::as_f64;

// Data types (MAT-File Format, table 1-1).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_DOUBLE: u32 = 9;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;

// Array classes (table 1-3).
const MX_STRUCT: u32 = 2;
const MX_CHAR: u32 = 4;
const MX_DOUBLE: u32 = 6;
const MX_UINT8: u32 = 9;
const MX_UINT64: u32 = 15;

/// Longest struct field name written, with its terminating NUL (MATLAB's usual 32).
const FIELD_NAME_LEN: usize = 32;

fn u32le(out: &mut Vec<u8>, x: u32) {
    out.extend_from_slice(&x.to_le_bytes());
}

fn pad8(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

/// A data element: tag (type, byte count), the bytes, padding to 8 bytes.
fn element(out: &mut Vec<u8>, ty: u32, bytes: &[u8]) {
    u32le(out, ty);
    u32le(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
    pad8(out);
}

/// A data element whose bytes are written by `write` (its length patched afterwards).
fn element_with(out: &mut Vec<u8>, ty: u32, write: impl FnOnce(&mut Vec<u8>)) {
    u32le(out, ty);
    let at = out.len();
    u32le(out, 0);
    write(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    pad8(out);
}

/// An `miMATRIX` of class `class` and `dims`, named `name`, whose data subelements are
/// written by `data`.
fn matrix(
    out: &mut Vec<u8>,
    class: u32,
    dims: &[u32],
    name: &str,
    data: impl FnOnce(&mut Vec<u8>),
) {
    element_with(out, MI_MATRIX, |o| {
        let mut flags = Vec::with_capacity(8);
        u32le(&mut flags, class);
        u32le(&mut flags, 0);
        element(o, MI_UINT32, &flags);
        let mut d = Vec::with_capacity(dims.len() * 4);
        for x in dims {
            u32le(&mut d, *x);
        }
        element(o, MI_INT32, &d);
        element(o, MI_INT8, name.as_bytes());
        data(o);
    });
}

/// A 1×n char array (UTF-16 code units).
fn char_array(out: &mut Vec<u8>, name: &str, text: &str) {
    let units: Vec<u16> = text.encode_utf16().collect();
    matrix(out, MX_CHAR, &[1, units.len() as u32], name, |o| {
        element_with(o, MI_UINT16, |o| {
            for u in &units {
                o.extend_from_slice(&u.to_le_bytes());
            }
        });
    });
}

/// A 1×1 struct named `name` with `fields`, each written (unnamed) by its closure.
fn struct_1x1(
    out: &mut Vec<u8>,
    name: &str,
    fields: &[&str],
    write_fields: impl FnOnce(&mut Vec<u8>),
) {
    matrix(out, MX_STRUCT, &[1, 1], name, |o| {
        let mut len = Vec::with_capacity(4);
        u32le(&mut len, FIELD_NAME_LEN as u32);
        element(o, MI_INT32, &len);
        let mut names = vec![0u8; FIELD_NAME_LEN * fields.len()];
        for (i, f) in fields.iter().enumerate() {
            let n = f.len().min(FIELD_NAME_LEN - 1);
            names[i * FIELD_NAME_LEN..i * FIELD_NAME_LEN + n].copy_from_slice(&f.as_bytes()[..n]);
        }
        element(o, MI_INT8, &names);
        write_fields(o);
    });
}

/// Builds a `getData.mat` body (one PV).
#[derive(Debug, Default)]
pub struct MatResponse {
    out: Vec<u8>,
    pv: String,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    secs: Vec<u64>,
    nanos: Vec<u64>,
    /// Row-major: `cols` values per sample.
    values: Vec<f64>,
    /// Elements per row (1 for scalars; a waveform's first sample's count).
    cols: Option<usize>,
    done: bool,
}

impl MatResponse {
    /// An empty response.
    pub fn new() -> Self {
        Self::default()
    }

    fn push_values(&mut self, v: &Value) {
        fn row<T: Copy>(
            values: &mut Vec<f64>,
            cols: &mut Option<usize>,
            v: &[T],
            f: impl Fn(T) -> f64,
        ) {
            let n = *cols.get_or_insert(v.len());
            values.extend(v.iter().take(n).map(|x| f(*x)));
            for _ in v.len()..n {
                values.push(0.0);
            }
        }
        let (values, cols) = (&mut self.values, &mut self.cols);
        match v {
            Value::VectorShort(x) | Value::VectorEnum(x) => row(values, cols, x, f64::from),
            Value::VectorFloat(x) => row(values, cols, x, f64::from),
            Value::VectorChar(x) => row(values, cols, x, |b| f64::from(b as i8)),
            Value::VectorInt(x) => row(values, cols, x, f64::from),
            Value::VectorDouble(x) => row(values, cols, x, |d| d),
            Value::VectorString(x) => {
                let n = *cols.get_or_insert(x.len());
                values.extend(
                    x.iter()
                        .take(n)
                        .map(|s| s.trim().parse().unwrap_or(f64::NAN)),
                );
                for _ in x.len()..n {
                    values.push(0.0);
                }
            }
            scalar => {
                cols.get_or_insert(1);
                let first = as_f64(scalar);
                values.push(first);
                // A scalar among waveform rows fills the rest of its row with 0.
                for _ in 1..cols.unwrap_or(1) {
                    values.push(0.0);
                }
            }
        }
    }

    fn write_file(&mut self) {
        let o = &mut self.out;
        let mut text =
            b"MATLAB 5.0 MAT-file, Platform: EPICS archiver, Created by: archiver-retrieval"
                .to_vec();
        text.resize(116, b' ');
        o.extend_from_slice(&text);
        o.extend_from_slice(&[0u8; 8]); // no subsystem data
        o.extend_from_slice(&0x0100u16.to_le_bytes());
        o.extend_from_slice(b"IM");

        let iso = |t: Option<Timestamp>| {
            t.map(|t| t.iso(Precision::Millis).to_string())
                .unwrap_or_default()
        };
        let (from, to) = (iso(self.from), iso(self.to));
        let pv = self.pv.clone();
        struct_1x1(o, "header", &["source", "pvName", "from", "to"], |o| {
            char_array(o, "", "Archiver appliance");
            char_array(o, "", &pv);
            char_array(o, "", &from);
            char_array(o, "", &to);
        });
        let n = self.secs.len() as u32;
        let cols = self.cols.unwrap_or(1);
        let (secs, nanos, values) = (&self.secs, &self.nanos, &self.values);
        struct_1x1(
            o,
            "data",
            &["epochSeconds", "values", "nanos", "isDST"],
            |o| {
                matrix(o, MX_UINT64, &[n, 1], "", |o| {
                    element_with(o, MI_UINT64, |o| {
                        secs.iter()
                            .for_each(|x| o.extend_from_slice(&x.to_le_bytes()))
                    })
                });
                matrix(o, MX_DOUBLE, &[n, cols as u32], "", |o| {
                    // Column-major, as MATLAB stores arrays.
                    element_with(o, MI_DOUBLE, |o| {
                        for c in 0..cols {
                            for r in 0..n as usize {
                                let x = values.get(r * cols + c).copied().unwrap_or(0.0);
                                o.extend_from_slice(&x.to_le_bytes());
                            }
                        }
                    })
                });
                matrix(o, MX_UINT64, &[n, 1], "", |o| {
                    element_with(o, MI_UINT64, |o| {
                        nanos
                            .iter()
                            .for_each(|x| o.extend_from_slice(&x.to_le_bytes()))
                    })
                });
                matrix(o, MX_UINT8, &[n, 1], "", |o| {
                    element_with(o, MI_UINT8, |o| o.resize(o.len() + n as usize, 0))
                });
            },
        );
        self.secs = Vec::new();
        self.nanos = Vec::new();
        self.values = Vec::new();
    }
}

impl Encoder for MatResponse {
    fn begin_pv(&mut self, desc: &StreamDesc) {
        self.pv.clone_from(&desc.name);
        self.from = Some(desc.from);
        self.to = Some(desc.to);
    }

    fn sample(&mut self, s: &Sample) {
        // Java's MLUInt64 of a long: the bits as they are.
        self.secs.push(s.time.secs as u64);
        self.nanos.push(u64::from(s.time.nanos));
        self.push_values(&s.value);
    }

    fn end_pv(&mut self) {}

    fn end(&mut self) {
        if !self.done {
            self.done = true;
            self.write_file();
        }
    }

    fn pending(&self) -> usize {
        self.out.len()
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn max_samples(&self) -> Option<u64> {
        Some(MAX_MAT_SAMPLES)
    }
}

/// The most samples a `.mat` answer holds (about 24 bytes each in memory until it is
/// sent, so at most about 240 MB for a scalar PV): the format states its array sizes
/// first, so it cannot be streamed like the others.
pub const MAX_MAT_SAMPLES: u64 = 10_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::PayloadType;

    /// A minimal level-5 reader: the top-level variables as (name, class, dims, data bytes
    /// of the first data subelement, field names).
    #[derive(Debug)]
    struct Var {
        name: String,
        class: u32,
        dims: Vec<u32>,
        fields: Vec<String>,
        children: Vec<Var>,
        data: Vec<u8>,
    }

    fn rd(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Reads one element at `at`: (type, bytes, next offset).
    fn elem(b: &[u8], at: usize) -> (u32, &[u8], usize) {
        let ty = rd(b, at);
        let n = rd(b, at + 4) as usize;
        let start = at + 8;
        (ty, &b[start..start + n], start + n.div_ceil(8) * 8)
    }

    fn parse_matrix(body: &[u8]) -> Var {
        let (ty, flags, at) = elem(body, 0);
        assert_eq!(ty, MI_UINT32);
        let class = rd(flags, 0) & 0xff;
        let (_, dims, at) = elem(body, at);
        let dims: Vec<u32> = dims.chunks(4).map(|c| rd(c, 0)).collect();
        let (_, name, mut at) = elem(body, at);
        let name = String::from_utf8(name.to_vec()).expect("name");
        let mut v = Var {
            name,
            class,
            dims,
            fields: Vec::new(),
            children: Vec::new(),
            data: Vec::new(),
        };
        if class == MX_STRUCT {
            let (_, len, a) = elem(body, at);
            let len = rd(len, 0) as usize;
            let (_, names, a) = elem(body, a);
            at = a;
            v.fields = names
                .chunks(len)
                .map(|c| {
                    String::from_utf8_lossy(c)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .collect();
            for _ in 0..v.fields.len() {
                let (ty, m, a) = elem(body, at);
                assert_eq!(ty, MI_MATRIX);
                v.children.push(parse_matrix(m));
                at = a;
            }
        } else {
            let (_, data, _) = elem(body, at);
            v.data = data.to_vec();
        }
        v
    }

    fn parse(file: &[u8]) -> Vec<Var> {
        assert_eq!(&file[..10], b"MATLAB 5.0");
        assert_eq!(&file[126..128], b"IM");
        assert_eq!(u16::from_le_bytes([file[124], file[125]]), 0x0100);
        let mut at = 128;
        let mut vars = Vec::new();
        while at < file.len() {
            let (ty, m, next) = elem(file, at);
            assert_eq!(ty, MI_MATRIX);
            vars.push(parse_matrix(m));
            at = next;
        }
        assert_eq!(at, file.len());
        vars
    }

    fn desc(ty: PayloadType) -> StreamDesc {
        StreamDesc {
            name: "LN-AM{RadMon:2}DoseRate-I".into(),
            payload_type: ty,
            element_count: 1,
            headers: Vec::new(),
            from: Timestamp::new(1_418_000_000, 0),
            to: Timestamp::new(1_418_100_000, 500_000_000),
        }
    }

    fn file(ty: PayloadType, samples: &[Sample]) -> Vec<u8> {
        let mut m = MatResponse::new();
        m.begin_pv(&desc(ty));
        for s in samples {
            m.sample(s);
            assert_eq!(m.pending(), 0, "nothing before the end");
        }
        m.end_pv();
        m.end();
        m.take()
    }

    fn f64s(b: &[u8]) -> Vec<f64> {
        b.chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect()
    }

    fn u64s(b: &[u8]) -> Vec<u64> {
        b.chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
            .collect()
    }

    #[test]
    fn scalars_as_javas_header_and_data_structs() {
        let samples: Vec<Sample> = (0..3)
            .map(|k| {
                Sample::new(
                    Timestamp::new(1_418_019_667 + k, 601_158_377),
                    Value::ScalarDouble(-0.09 * k as f64),
                )
            })
            .collect();
        let vars = parse(&file(PayloadType::ScalarDouble, &samples));
        assert_eq!(vars.len(), 2);
        let (h, d) = (&vars[0], &vars[1]);
        assert_eq!(h.name, "header");
        assert_eq!(h.class, MX_STRUCT);
        assert_eq!(h.fields, ["source", "pvName", "from", "to"]);
        let text = |v: &Var| {
            let units: Vec<u16> = v
                .data
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).expect("utf16")
        };
        assert_eq!(text(&h.children[0]), "Archiver appliance");
        assert_eq!(text(&h.children[1]), "LN-AM{RadMon:2}DoseRate-I");
        assert_eq!(h.children[1].dims, [1, 25]);
        assert_eq!(text(&h.children[2]), "2014-12-08T00:53:20.000Z");
        assert_eq!(text(&h.children[3]), "2014-12-09T04:40:00.500Z");
        assert_eq!(d.name, "data");
        assert_eq!(d.fields, ["epochSeconds", "values", "nanos", "isDST"]);
        assert_eq!(d.children[0].class, MX_UINT64);
        assert_eq!(d.children[0].dims, [3, 1]);
        assert_eq!(
            u64s(&d.children[0].data),
            [1_418_019_667, 1_418_019_668, 1_418_019_669]
        );
        assert_eq!(d.children[1].class, MX_DOUBLE);
        assert_eq!(f64s(&d.children[1].data), [0.0, -0.09, -0.18]);
        assert_eq!(u64s(&d.children[2].data), [601_158_377; 3]);
        assert_eq!(d.children[3].class, MX_UINT8);
        assert_eq!(d.children[3].data, [0, 0, 0]);
    }

    #[test]
    fn waveforms_are_n_by_m_column_major_and_no_data_is_empty_columns() {
        let samples = [
            Sample::new(Timestamp::new(10, 0), Value::VectorInt(vec![1, 2, 3])),
            Sample::new(Timestamp::new(11, 0), Value::VectorInt(vec![4, 5])),
        ];
        let vars = parse(&file(PayloadType::WaveformInt, &samples));
        let values = &vars[1].children[1];
        assert_eq!(values.dims, [2, 3]);
        assert_eq!(f64s(&values.data), [1.0, 4.0, 2.0, 5.0, 3.0, 0.0]);

        let vars = parse(&file(PayloadType::ScalarDouble, &[]));
        for c in &vars[1].children {
            assert_eq!(c.dims[0], 0);
            assert!(c.data.is_empty());
        }
    }
}
