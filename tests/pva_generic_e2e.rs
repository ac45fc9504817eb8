//! End to end, a structure that is no normative type (p4p's custom `test:point_t`):
//! `archivePV?pv=pva://NAME` stores it as V4_GENERIC_BYTES; getData.json gives each sample
//! as the decoded structure (members sorted by name, unions as `{"union": ..}`, variant
//! unions as `{"any": ..}`, as the Java appliance's `ByteBufSampleValue.toJSONString`);
//! getData.raw gives the stored bytes, the big-endian pvData type and value, with the
//! time stamp's userTag.

#![allow(clippy::unwrap_used)]

mod pva_support;
mod support;

use archiver_pva::types::{TypeCache, decode_type};
use archiver_pva::value::{PvValue, decode_value, lookup};
use archiver_pva::wire::Reader;
use serde_json::{Value as Json, json};
use support::{Archiver, enc, iso, now_secs};

const PV: &str = "PG:STRUCT";

fn range() -> (String, String) {
    (iso(now_secs() - 600), iso(now_secs() + 60))
}

fn data(a: &Archiver) -> Vec<Json> {
    let (from, to) = range();
    a.data_so_far(PV, &from, &to)
}

#[test]
fn a_custom_structure_is_archived_as_generic_bytes_and_read_back_as_java_does() {
    let mut srv = pva_support::Server::start("p4p_server.py", "PG");
    // the archiver's PVA client reads EPICS_PVA_*; this test is the only one in its
    // process, and no other thread reads the environment meanwhile
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("EPICS_PVA_ADDR_LIST", format!("127.0.0.1:{}", srv.udp));
        std::env::set_var("EPICS_PVA_AUTO_ADDR_LIST", "NO");
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Archiver::start(dir.path(), 1, 1, 1.0);
    let (status, body) = a.post(
        "/mgmt/bpl/archivePV",
        &json!([{"pv": format!("pva://{PV}")}]).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    a.wait_until(20.0, "the structure archived with data", |a| {
        a.status(PV)["status"] == "Being archived" && !data(a).is_empty()
    });
    assert_eq!(a.status(PV)["dbrType"], "DBR_V4_GENERIC_BYTES");

    let d = data(&a);
    assert_eq!(
        (d[0]["secs"].as_i64(), d[0]["nanos"].as_i64()),
        (Some(1_600_000_000), Some(5)),
        "{d:?}"
    );
    assert_eq!(
        d[0]["val"],
        json!({
            "alarm": {"message": "", "severity": 0, "status": 0},
            "timeStamp": {"nanoseconds": 5, "secondsPastEpoch": 1_600_000_000, "userTag": 0},
            "value": {"any": {"any": null}, "label": "origin", "u": {"union": null}, "x": 1.0, "y": 2.0}
        }),
        "{d:?}"
    );

    // partial updates (value.x, then value.y, each with a time stamp of now: the engine
    // drops stamps far in the past): each archived sample is the whole structure, the
    // members not sent kept
    let t0 = now_secs() - 30;
    srv.cmd(&format!("x 5.5 {t0} 7"));
    srv.cmd(&format!("y 3.25 {}", t0 + 1));
    a.wait_until(10.0, "the updates", |a| data(a).len() >= 3);
    let d = data(&a);
    let n = d.len();
    assert_eq!(
        (d[n - 2]["secs"].as_i64(), d[n - 2]["nanos"].as_i64()),
        (Some(t0), Some(7)),
        "{d:?}"
    );
    assert_eq!(d[n - 2]["val"]["value"]["x"], json!(5.5));
    assert_eq!(d[n - 2]["val"]["value"]["y"], json!(2.0));
    assert_eq!(d[n - 2]["val"]["timeStamp"]["nanoseconds"], json!(7));
    assert_eq!(d[n - 1]["secs"].as_i64(), Some(t0 + 1));
    assert_eq!(
        d[n - 1]["val"]["value"],
        json!({"any": {"any": null}, "label": "origin", "u": {"union": null}, "x": 5.5, "y": 3.25})
    );

    // pbraw: the stored bytes, which decode to the structure
    let (from, to) = range();
    let (code, raw) = a.get_bytes(&format!(
        "/retrieval/data/getData.raw?pv={}&from={}&to={}",
        enc(PV),
        enc(&from),
        enc(&to)
    ));
    assert_eq!(code, 200);
    let mut r = archiver_pb::PbReader::new(std::io::Cursor::new(raw)).unwrap();
    assert_eq!(
        r.header().payload_type,
        archiver_pb::PayloadType::V4GenericBytes
    );
    let s = r.next_sample().unwrap().expect("a sample");
    assert_eq!(s.user_tag, Some(0));
    let archiver_pb::Value::V4GenericBytes(bytes) = &s.value else {
        panic!("{:?}", s.value)
    };
    let mut rd = Reader::new(bytes, true);
    let mut cache = TypeCache::new();
    let desc = decode_type(&mut rd, &mut cache).unwrap().unwrap();
    let mut v = PvValue::default_for(&desc);
    decode_value(&mut rd, &mut cache, &desc, &mut v).unwrap();
    assert_eq!(desc.id(), "test:point_t");
    assert_eq!(
        lookup(&desc, &v, "value.label").unwrap().1.as_str(),
        Some("origin")
    );
}
