//! Reading one PV over a time range from every source, oldest source first.

use archiver_pb::{Sample, Timestamp};
use archiver_storage::{StorageError, Tier};

use crate::MergeDedup;

/// Calls `emit` with the samples of `pv` for `[from, to]` under the Java rule (see
/// [`MergeDedup`]), reading `tiers` in the order given (oldest data first: LTS, MTS, STS)
/// and then `buffer` (the engine's samples not yet written). An error from `emit` stops
/// the reading and is returned (a response whose client has gone, say). Returns how many
/// undecodable lines were skipped in the files.
pub fn for_each_sample<E: From<StorageError>>(
    tiers: &[&Tier],
    pv: &str,
    from: Timestamp,
    to: Timestamp,
    buffer: &[Sample],
    mut sink: impl FnMut(&Sample) -> Result<(), E>,
) -> Result<u64, E> {
    let mut merge = MergeDedup::new(from, to);
    let mut skipped = 0;
    for tier in tiers {
        let mut q = tier.query(pv, from, to)?;
        while let Some(s) = q.next_sample()? {
            merge.push(s, &mut sink)?;
        }
        skipped += q.skipped_lines();
    }
    for s in buffer {
        merge.push(s, &mut sink)?;
    }
    merge.finish(&mut sink)?;
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::time::start_of_year;
    use archiver_pb::{Granularity, PayloadType, Value};

    #[test]
    fn files_then_buffer_without_duplicates() {
        let dir = tempfile::tempdir().expect("tmp");
        let sts = Tier::new("STS", dir.path(), Granularity::Hour);
        let y = start_of_year(2024);
        let s = |k: i64| Sample::new(Timestamp::new(y + k, 0), Value::ScalarDouble(k as f64));
        sts.append("A:B", PayloadType::ScalarDouble, &[s(1), s(2), s(3)])
            .expect("append");
        let buffer = vec![s(3), s(4), s(5)];
        let mut got = Vec::new();
        for_each_sample(
            &[&sts],
            "A:B",
            Timestamp::new(y + 2, 0),
            Timestamp::new(y + 4, 0),
            &buffer,
            |x| {
                got.push(x.time.secs - y);
                Ok::<(), StorageError>(())
            },
        )
        .expect("read");
        assert_eq!(got, vec![2, 3, 4]);
    }

    #[derive(Debug, PartialEq)]
    enum Stop {
        Enough,
        Storage,
    }

    impl From<StorageError> for Stop {
        fn from(_: StorageError) -> Self {
            Stop::Storage
        }
    }

    #[test]
    fn an_error_from_the_sink_stops_the_reading() {
        let dir = tempfile::tempdir().expect("tmp");
        let sts = Tier::new("STS", dir.path(), Granularity::Hour);
        let y = start_of_year(2024);
        let s = |k: i64| Sample::new(Timestamp::new(y + k, 0), Value::ScalarDouble(k as f64));
        let all: Vec<Sample> = (1..100).map(s).collect();
        sts.append("A:B", PayloadType::ScalarDouble, &all)
            .expect("append");
        let mut seen = 0;
        let r = for_each_sample(
            &[&sts],
            "A:B",
            Timestamp::new(y, 0),
            Timestamp::new(y + 1000, 0),
            &[s(100)],
            |_| {
                seen += 1;
                if seen == 10 {
                    Err(Stop::Enough)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(Stop::Enough));
        assert_eq!(seen, 10);
    }
}
