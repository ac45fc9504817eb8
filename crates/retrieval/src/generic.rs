//! V4_GENERIC_BYTES (a pvAccess structure that is no normative type) in JSON, as the Java
//! appliance writes it: `ByteBufSampleValue.toJSONString` decodes the stored bytes (the
//! big-endian pvData type description, then the value) and writes the structure as an
//! object whose members are sorted by name (a `TreeMap`), recursively:
//!
//! - a scalar is a JSON number, boolean or string; NaN and infinities are `null`
//!   (json-simple); unsigned integers are written as Java reads them, signed of the same
//!   width (a `ubyte` 200 is `-56`, as `PVAByte.get()`);
//! - a scalar array is a JSON array; a structure array an array of objects (`null` for a
//!   null element);
//! - a union is `{"union": <selected member's value or null>}`, a variant union
//!   `{"any": <value or null>}`, an array of variant unions an array of those; an array of
//!   unions is `null` (Java has no case for it);
//! - bytes that do not decode give `{}` (Java logs the error and writes its empty map);
//! - a value that is no structure (a member archived as its own PV, `pva://NAME#a/b`,
//!   of a type with no PlainPB twin such as `long`) is written as its value.
//!
//! The pbraw response sends the stored bytes untouched, as Java does. Decoding allocates
//! (a pvData value per sample): V4_GENERIC_BYTES PVs are few and slow.

use archiver_pva::types::{FieldDesc, TypeCache, decode_type};
use archiver_pva::value::{PvValue, decode_value};
use archiver_pva::wire::Reader;

use crate::json::{f32_val, f64_val, string, strings};
use crate::text::{int, list};

/// Writes the JSON of one V4_GENERIC_BYTES value (`bytes` as stored).
pub fn generic_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut r = Reader::new(bytes, true);
    let mut cache = TypeCache::new();
    let decoded = decode_type(&mut r, &mut cache)
        .ok()
        .flatten()
        .and_then(|d| {
            let mut v = PvValue::default_for(&d);
            decode_value(&mut r, &mut cache, &d, &mut v).ok()?;
            Some((d, v))
        });
    match decoded {
        // A member archived as its own PV (`pva://NAME#a/b`) may be a scalar or an array
        // of a type with no PlainPB twin (a `long`): its value, not an empty object.
        Some((d, v)) => value(out, &d, Some(&v)),
        None => out.extend_from_slice(b"{}"),
    }
}

/// An object with one member (`{"union": ...}`, `{"any": ...}`).
fn wrapped(out: &mut Vec<u8>, key: &str, inner: impl FnOnce(&mut Vec<u8>)) {
    out.push(b'{');
    string(out, key);
    out.push(b':');
    inner(out);
    out.push(b'}');
}

fn value(out: &mut Vec<u8>, d: &FieldDesc, v: Option<&PvValue>) {
    let Some(v) = v else {
        out.extend_from_slice(b"null");
        return;
    };
    match (d, v) {
        (FieldDesc::Structure { desc, .. }, PvValue::Structure(members)) => {
            let mut order: Vec<usize> = (0..desc.fields.len().min(members.len())).collect();
            order.sort_by(|a, b| desc.fields[*a].0.cmp(&desc.fields[*b].0));
            out.push(b'{');
            for (n, i) in order.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                string(out, &desc.fields[i].0);
                out.push(b':');
                value(out, &desc.fields[i].1, members.get(i));
            }
            out.push(b'}');
        }
        (FieldDesc::Union(u), PvValue::Union(sel)) => wrapped(out, "union", |out| match sel {
            Some((i, m)) => value(
                out,
                u.fields.get(*i).map_or(&FieldDesc::Any, |f| &f.1),
                Some(m),
            ),
            None => out.extend_from_slice(b"null"),
        }),
        (FieldDesc::Any, PvValue::Any(a)) => wrapped(out, "any", |out| match a {
            Some((t, m)) => value(out, t, Some(m)),
            None => out.extend_from_slice(b"null"),
        }),
        (FieldDesc::StructureArray(_), PvValue::StructureArray(items))
        | (FieldDesc::AnyArray, PvValue::AnyArray(items)) => {
            let elem = match d {
                FieldDesc::StructureArray(e) => &**e,
                _ => &FieldDesc::Any,
            };
            out.push(b'[');
            for (n, it) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                value(out, elem, it.as_ref());
            }
            out.push(b']');
        }
        (_, PvValue::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        (_, PvValue::I8(x)) => int(out, *x),
        (_, PvValue::I16(x)) => int(out, *x),
        (_, PvValue::I32(x)) => int(out, *x),
        (_, PvValue::I64(x)) => int(out, *x),
        (_, PvValue::U8(x)) => int(out, *x as i8),
        (_, PvValue::U16(x)) => int(out, *x as i16),
        (_, PvValue::U32(x)) => int(out, *x as i32),
        (_, PvValue::U64(x)) => int(out, *x as i64),
        (_, PvValue::F32(x)) => f32_val(out, *x),
        (_, PvValue::F64(x)) => f64_val(out, *x),
        (_, PvValue::String(s)) => string(out, s),
        (_, PvValue::BoolArray(v)) => list(out, v, |o, b| {
            o.extend_from_slice(if b { b"true" } else { b"false" })
        }),
        (_, PvValue::I8Array(v)) => list(out, v, int),
        (_, PvValue::I16Array(v)) => list(out, v, int),
        (_, PvValue::I32Array(v)) => list(out, v, int),
        (_, PvValue::I64Array(v)) => list(out, v, int),
        (_, PvValue::U8Array(v)) => list(out, v, |o, x| int(o, x as i8)),
        (_, PvValue::U16Array(v)) => list(out, v, |o, x| int(o, x as i16)),
        (_, PvValue::U32Array(v)) => list(out, v, |o, x| int(o, x as i32)),
        (_, PvValue::U64Array(v)) => list(out, v, |o, x| int(o, x as i64)),
        (_, PvValue::F32Array(v)) => list(out, v, f32_val),
        (_, PvValue::F64Array(v)) => list(out, v, f64_val),
        (_, PvValue::StringArray(v)) => strings(out, v),
        // arrays of unions (Java: no case), or a value not of its description
        _ => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use archiver_pva::types::{ScalarType as S, StructDesc, encode_type};
    use archiver_pva::value::encode_value;
    use archiver_pva::wire::Writer;
    use serde_json::json;

    use super::*;

    fn f(name: &str, d: FieldDesc) -> (String, Arc<FieldDesc>) {
        (name.to_string(), Arc::new(d))
    }

    /// The bytes the engine stores (crates/engine/src/convert.rs `pva_generic_bytes`).
    fn stored(d: &FieldDesc, v: &PvValue) -> Vec<u8> {
        let mut w = Writer::new(true);
        encode_type(&mut w, d);
        encode_value(&mut w, d, v);
        w.buf
    }

    fn render(bytes: &[u8]) -> serde_json::Value {
        let mut out = Vec::new();
        generic_bytes(&mut out, bytes);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn a_custom_structure_is_an_object_sorted_by_member_name_as_java_writes_it() {
        let point = FieldDesc::structure(
            "point_t",
            vec![
                f("y", FieldDesc::Scalar(S::F64)),
                f("x", FieldDesc::Scalar(S::F64)),
            ],
        );
        let d = FieldDesc::structure(
            "test:custom_t",
            vec![
                f(
                    "value",
                    FieldDesc::structure(
                        "",
                        vec![
                            f("x", FieldDesc::Scalar(S::F64)),
                            f("label", FieldDesc::Scalar(S::String)),
                            f("flags", FieldDesc::Scalar(S::U8)),
                            f("on", FieldDesc::Scalar(S::Bool)),
                            f("nan", FieldDesc::Scalar(S::F32)),
                            f(
                                "u",
                                FieldDesc::Union(StructDesc::new(
                                    "",
                                    vec![
                                        f("i", FieldDesc::Scalar(S::I32)),
                                        f("s", FieldDesc::Scalar(S::String)),
                                    ],
                                )),
                            ),
                            f(
                                "none",
                                FieldDesc::Union(StructDesc::new(
                                    "",
                                    vec![f("i", FieldDesc::Scalar(S::I32))],
                                )),
                            ),
                            f("any", FieldDesc::Any),
                            f("arr", FieldDesc::ScalarArray(S::F64)),
                            f("names", FieldDesc::ScalarArray(S::String)),
                            f("raw", FieldDesc::ScalarArray(S::U16)),
                            f("points", FieldDesc::StructureArray(Arc::new(point.clone()))),
                            f("anys", FieldDesc::AnyArray),
                        ],
                    ),
                ),
                f(
                    "timeStamp",
                    FieldDesc::structure(
                        "time_t",
                        vec![
                            f("secondsPastEpoch", FieldDesc::Scalar(S::I64)),
                            f("nanoseconds", FieldDesc::Scalar(S::I32)),
                        ],
                    ),
                ),
            ],
        );
        let v = PvValue::Structure(vec![
            PvValue::Structure(vec![
                PvValue::F64(5.5),
                PvValue::String("a \"b\"".into()),
                PvValue::U8(200),
                PvValue::Bool(true),
                PvValue::F32(f32::NAN),
                PvValue::Union(Some((1, Box::new(PvValue::String("hi".into()))))),
                PvValue::Union(None),
                PvValue::Any(Some((
                    Arc::new(FieldDesc::Scalar(S::I64)),
                    Box::new(PvValue::I64(42)),
                ))),
                PvValue::F64Array(vec![1.0, -2.25]),
                PvValue::StringArray(vec!["p".into(), "q".into()]),
                PvValue::U16Array(vec![1, 65535]),
                PvValue::StructureArray(vec![
                    Some(PvValue::Structure(vec![
                        PvValue::F64(2.0),
                        PvValue::F64(1.0),
                    ])),
                    None,
                ]),
                PvValue::AnyArray(vec![
                    Some(PvValue::Any(Some((
                        Arc::new(FieldDesc::Scalar(S::String)),
                        Box::new(PvValue::String("z".into())),
                    )))),
                    Some(PvValue::Any(None)),
                ]),
            ]),
            PvValue::Structure(vec![PvValue::I64(1_600_000_001), PvValue::I32(7)]),
        ]);
        let bytes = stored(&d, &v);
        let mut out = Vec::new();
        generic_bytes(&mut out, &bytes);
        let text = String::from_utf8(out).unwrap();
        // members in name order, at every level
        assert!(
            text.starts_with(
                r#"{"timeStamp":{"nanoseconds":7,"secondsPastEpoch":1600000001},"value":{"any":"#
            ),
            "{text}"
        );
        assert_eq!(
            render(&bytes),
            json!({
                "timeStamp": {"nanoseconds": 7, "secondsPastEpoch": 1_600_000_001},
                "value": {
                    "any": {"any": 42},
                    "anys": [{"any": "z"}, {"any": null}],
                    "arr": [1.0, -2.25],
                    "flags": -56,
                    "label": "a \"b\"",
                    "names": ["p", "q"],
                    "nan": null,
                    "none": {"union": null},
                    "on": true,
                    "points": [{"x": 1.0, "y": 2.0}, null],
                    "raw": [1, -1],
                    "u": {"union": "hi"},
                    "x": 5.5,
                }
            })
        );
    }

    #[test]
    fn a_member_that_is_no_structure_is_its_value() {
        let long = FieldDesc::Scalar(S::I64);
        assert_eq!(
            render(&stored(&long, &PvValue::I64(1_796_009_537))),
            json!(1_796_009_537i64)
        );
        let b = FieldDesc::Scalar(S::Bool);
        assert_eq!(render(&stored(&b, &PvValue::Bool(true))), json!(true));
    }

    #[test]
    fn bytes_that_do_not_decode_are_an_empty_object_never_a_panic() {
        assert_eq!(render(&[]), json!({}));
        let d = FieldDesc::structure(
            "",
            vec![
                f("s", FieldDesc::Scalar(S::String)),
                f("a", FieldDesc::ScalarArray(S::I32)),
            ],
        );
        let bytes = stored(
            &d,
            &PvValue::Structure(vec![
                PvValue::String("abc".into()),
                PvValue::I32Array(vec![1, 2, 3]),
            ]),
        );
        assert_eq!(render(&bytes), json!({"a": [1, 2, 3], "s": "abc"}));
        for n in 0..bytes.len() {
            assert_eq!(render(&bytes[..n]), json!({}), "{n} bytes");
        }
        let mut junk = bytes.clone();
        for b in junk.iter_mut().step_by(3) {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        let _ = render(&junk);
    }
}
