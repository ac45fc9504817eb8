//! pvData codec: round trips of every type in both byte orders, partial updates, and
//! proptests over arbitrary and mutated bytes (never a panic, bounded work).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use archiver_pva::value::{decode_partial, decode_value, encode_value};
use archiver_pva::wire::{Reader, Writer};
use archiver_pva::{BitSet, FieldDesc, PvValue, ScalarType, StructDesc, TypeCache, types};
use proptest::prelude::*;

fn s(t: ScalarType) -> Arc<FieldDesc> {
    Arc::new(FieldDesc::Scalar(t))
}
fn a(t: ScalarType) -> Arc<FieldDesc> {
    Arc::new(FieldDesc::ScalarArray(t))
}

fn point() -> Arc<FieldDesc> {
    Arc::new(FieldDesc::structure(
        "point_t",
        vec![
            ("x".into(), s(ScalarType::F64)),
            ("y".into(), s(ScalarType::F64)),
        ],
    ))
}

fn union() -> Arc<FieldDesc> {
    Arc::new(FieldDesc::Union(StructDesc::new(
        "",
        vec![
            ("i".into(), s(ScalarType::I32)),
            ("s".into(), s(ScalarType::String)),
        ],
    )))
}

/// Every kind of field.
fn rich() -> FieldDesc {
    use ScalarType::*;
    let mut fields = Vec::new();
    for t in [Bool, I8, I16, I32, I64, U8, U16, U32, U64, F32, F64, String] {
        fields.push((format!("s_{}", t.name()), s(t)));
        fields.push((format!("a_{}", t.name()), a(t)));
    }
    fields.push(("pt".into(), point()));
    fields.push(("u".into(), union()));
    fields.push(("any".into(), Arc::new(FieldDesc::Any)));
    fields.push(("pts".into(), Arc::new(FieldDesc::StructureArray(point()))));
    fields.push(("us".into(), Arc::new(FieldDesc::UnionArray(union()))));
    fields.push(("anys".into(), Arc::new(FieldDesc::AnyArray)));
    FieldDesc::structure("rich_t", fields)
}

fn rich_value() -> PvValue {
    let pt = |x: f64, y: f64| PvValue::Structure(vec![PvValue::F64(x), PvValue::F64(y)]);
    PvValue::Structure(vec![
        PvValue::Bool(true),
        PvValue::BoolArray(vec![true, false]),
        PvValue::I8(-5),
        PvValue::I8Array(vec![-1, 2]),
        PvValue::I16(-300),
        PvValue::I16Array(vec![1000, -1000]),
        PvValue::I32(-70000),
        PvValue::I32Array(vec![1, 2, 3]),
        PvValue::I64(-1 << 40),
        PvValue::I64Array(vec![i64::MIN, i64::MAX]),
        PvValue::U8(200),
        PvValue::U8Array(vec![0, 255]),
        PvValue::U16(60000),
        PvValue::U16Array(vec![65535]),
        PvValue::U32(4_000_000_000),
        PvValue::U32Array(vec![7]),
        PvValue::U64(u64::MAX),
        PvValue::U64Array(vec![]),
        PvValue::F32(1.5),
        PvValue::F32Array(vec![-0.25]),
        PvValue::F64(std::f64::consts::PI),
        PvValue::F64Array((0..300).map(f64::from).collect()),
        PvValue::String("héllo".into()),
        PvValue::StringArray(vec!["".into(), "x".repeat(300)]),
        pt(1.0, 2.0),
        PvValue::Union(Some((1, Box::new(PvValue::String("sel".into()))))),
        PvValue::Any(Some((point(), Box::new(pt(3.0, 4.0))))),
        PvValue::StructureArray(vec![Some(pt(5.0, 6.0)), None]),
        PvValue::UnionArray(vec![
            Some(PvValue::Union(Some((0, Box::new(PvValue::I32(9)))))),
            None,
        ]),
        PvValue::AnyArray(vec![
            Some(PvValue::Any(Some((
                s(ScalarType::I16),
                Box::new(PvValue::I16(4)),
            )))),
            None,
        ]),
    ])
}

#[test]
fn every_type_round_trips_in_both_byte_orders() {
    let d = rich();
    let v = rich_value();
    for be in [false, true] {
        let mut w = Writer::new(be);
        types::encode_type(&mut w, &d);
        encode_value(&mut w, &d, &v);
        let mut r = Reader::new(&w.buf, be);
        let mut cache = TypeCache::new();
        let got_d = types::decode_type(&mut r, &mut cache).unwrap().unwrap();
        assert_eq!(*got_d, d);
        let mut got = PvValue::default_for(&got_d);
        decode_value(&mut r, &mut cache, &got_d, &mut got).unwrap();
        assert_eq!(got, v);
        assert_eq!(r.remaining(), 0);
    }
}

#[test]
fn big_endian_bytes_are_what_the_spec_says() {
    let d = FieldDesc::structure("", vec![("v".into(), s(ScalarType::I32))]);
    let mut w = Writer::new(true);
    encode_value(
        &mut w,
        &d,
        &PvValue::Structure(vec![PvValue::I32(0x01020304)]),
    );
    assert_eq!(w.buf, [1, 2, 3, 4]);
    let mut w = Writer::new(false);
    encode_value(
        &mut w,
        &d,
        &PvValue::Structure(vec![PvValue::I32(0x01020304)]),
    );
    assert_eq!(w.buf, [4, 3, 2, 1]);
}

#[test]
fn partial_update_touches_only_changed_fields() {
    let d = rich();
    let mut cur = rich_value();
    // bits: 0 = top, then 24 scalar fields (1..=24), pt = 25 (x 26, y 27), u = 28
    let (_, off_y) = d.lookup("pt.y").unwrap();
    let (_, off_i32) = d.lookup("s_int").unwrap();
    assert_eq!(off_y, 27);
    let mut changed = BitSet::new();
    changed.set(off_i32);
    changed.set(off_y);
    for be in [false, true] {
        let mut w = Writer::new(be);
        changed.encode(&mut w);
        w.put_i32(42).put_f64(-8.5);
        let mut r = Reader::new(&w.buf, be);
        let mut got_changed = BitSet::new();
        got_changed.decode_into(&mut r).unwrap();
        assert_eq!(got_changed, changed);
        decode_partial(&mut r, &mut TypeCache::new(), &d, &mut cur, &got_changed).unwrap();
        assert_eq!(r.remaining(), 0);
        let mut expect = rich_value();
        if let PvValue::Structure(m) = &mut expect {
            m[6] = PvValue::I32(42);
            m[24] = PvValue::Structure(vec![PvValue::F64(1.0), PvValue::F64(-8.5)]);
        }
        assert_eq!(cur, expect);
    }
    // a set structure bit means the whole structure follows
    let mut changed = BitSet::new();
    changed.set(d.lookup("pt").unwrap().1);
    let mut w = Writer::new(false);
    w.put_f64(10.0).put_f64(11.0);
    decode_partial(
        &mut Reader::new(&w.buf, false),
        &mut TypeCache::new(),
        &d,
        &mut cur,
        &changed,
    )
    .unwrap();
    assert_eq!(
        archiver_pva::value::lookup(&d, &cur, "pt.x").unwrap().1,
        &PvValue::F64(10.0)
    );
}

#[test]
fn bitset_wire_form_matches_pvdata() {
    // bits 0 and 9: two bytes 0x01 0x02
    let mut b = BitSet::new();
    b.set(0);
    b.set(9);
    let mut w = Writer::new(true);
    b.encode(&mut w);
    assert_eq!(w.buf, [2, 0x01, 0x02]);
    // bit 64: a whole first word (byte-order dependent) then one byte
    let mut b = BitSet::new();
    b.set(1);
    b.set(64);
    let mut w = Writer::new(true);
    b.encode(&mut w);
    assert_eq!(w.buf, [9, 0, 0, 0, 0, 0, 0, 0, 2, 1]);
    assert!(b.any_in(60, 70) && b.any_in(1, 2) && !b.any_in(2, 64) && !b.any_in(65, 500));
}

#[test]
fn a_short_message_cannot_expand_a_cached_type_without_bound() {
    // define a struct with 200 members, then a variant-union array of many references to it
    let big = FieldDesc::structure(
        "",
        (0..200)
            .map(|i| (format!("f{i}"), Arc::new(FieldDesc::structure("", vec![]))))
            .collect(),
    );
    let mut w = Writer::new(false);
    w.put_u8(0xFD).put_u16(1);
    types::encode_type(&mut w, &big);
    let mut cache = TypeCache::new();
    let mut r = Reader::new(&w.buf, false);
    types::decode_type(&mut r, &mut cache).unwrap();
    let mut w = Writer::new(false);
    w.put_size(100_000);
    for _ in 0..100_000 {
        w.put_u8(1).put_u8(0xFE).put_u16(1);
    }
    let mut r = Reader::new(&w.buf, false);
    let mut v = PvValue::AnyArray(vec![]);
    let err = decode_value(&mut r, &mut cache, &FieldDesc::AnyArray, &mut v).unwrap_err();
    assert!(matches!(err, archiver_pva::DecodeError::Budget(_)), "{err}");
}

fn encoded_rich(be: bool) -> Vec<u8> {
    let mut w = Writer::new(be);
    types::encode_type(&mut w, &rich());
    encode_value(&mut w, &rich(), &rich_value());
    w.buf
}

fn decode_all(bytes: &[u8], be: bool) {
    let mut cache = TypeCache::new();
    let mut r = Reader::new(bytes, be);
    while r.remaining() > 0 {
        match types::decode_type(&mut r, &mut cache) {
            Ok(Some(d)) => {
                let mut v = PvValue::default_for(&d);
                if decode_value(&mut r, &mut cache, &d, &mut v).is_err() {
                    break;
                }
                let mut changed = BitSet::new();
                if changed.decode_into(&mut r).is_err() {
                    break;
                }
                let _ = decode_partial(&mut r, &mut cache, &d, &mut v, &changed);
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), be in any::<bool>()) {
        decode_all(&bytes, be);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        be in any::<bool>(),
    ) {
        let mut bytes = encoded_rich(be);
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep);
        decode_all(&bytes, be);
    }

    #[test]
    fn doubles_round_trip(x in any::<f64>(), n in any::<i64>(), text in ".{0,300}", be in any::<bool>()) {
        let d = FieldDesc::structure("", vec![
            ("x".into(), s(ScalarType::F64)),
            ("n".into(), s(ScalarType::I64)),
            ("t".into(), s(ScalarType::String)),
        ]);
        let v = PvValue::Structure(vec![PvValue::F64(x), PvValue::I64(n), PvValue::String(text)]);
        let mut w = Writer::new(be);
        encode_value(&mut w, &d, &v);
        let mut got = PvValue::default_for(&d);
        decode_value(&mut Reader::new(&w.buf, be), &mut TypeCache::new(), &d, &mut got).unwrap();
        // compare bit patterns (NaN != NaN)
        let same = match (&got, &v) {
            (PvValue::Structure(g), PvValue::Structure(e)) => match (&g[0], &e[0]) {
                (PvValue::F64(a), PvValue::F64(b)) => a.to_bits() == b.to_bits() && g[1..] == e[1..],
                _ => false,
            },
            _ => false,
        };
        prop_assert!(same);
    }
}
