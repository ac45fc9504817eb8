//! The ingest path (`Tier::append_lines` of a PV's buffered lines to an existing file)
//! allocates per call and per file, never per sample: appending 10,000 lines costs about
//! as many allocations as appending 10. Counted with a global allocator that counts calls.

#[path = "../../pb/tests/support/counting_alloc.rs"]
mod counting_alloc;

use archiver_pb::codec::encode_line;
use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_storage::Tier;
use counting_alloc::allocs;

fn lines(from: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for k in from..from + n {
        // One per 0.1 s: 10,000 lines stay in one hourly partition.
        let t = Timestamp::new(
            start_of_year(2024) + (k / 10) as i64,
            (k % 10) as u32 * 100_000_000,
        );
        encode_line(
            &Sample::new(t, Value::ScalarDouble(k as f64)),
            2024,
            &mut out,
            &mut scratch,
        )
        .expect("encode");
    }
    out
}

#[test]
fn appending_lines_allocates_per_call_not_per_sample() {
    let dir = tempfile::tempdir().expect("tmp");
    let tier = Tier::new("STS", dir.path(), Granularity::Hour);
    let (few, many) = (lines(0, 10), lines(10, 10_000));
    let more_few = lines(10_010, 10);
    // The file exists (its creation allocates more, once).
    tier.append_lines("A:B", PayloadType::ScalarDouble, 2024, &few)
        .expect("first");
    let count = |bytes: &[u8]| {
        let before = allocs();
        let c = tier
            .append_lines("A:B", PayloadType::ScalarDouble, 2024, bytes)
            .expect("append");
        (allocs() - before, c.written)
    };
    let (a_many, w_many) = count(&many);
    let (a_few, w_few) = count(&more_few);
    assert_eq!((w_many, w_few), (10_000, 10));
    // The write buffer grows by doubling: a few more allocations for 1,000 times the
    // lines, not thousands.
    assert!(
        a_many <= a_few + 32,
        "10,000 lines: {a_many} allocations; 10 lines: {a_few}"
    );
    assert!(a_few < 40, "10 lines: {a_few} allocations");
}
