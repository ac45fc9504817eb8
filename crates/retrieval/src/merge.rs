//! The merge/dedup rule of the Java appliance's retrieval.

use archiver_pb::{Sample, Timestamp};

/// Applies the Java retrieval rule to samples pushed in time order, source after source.
#[derive(Debug, Clone)]
pub struct MergeDedup {
    from: Timestamp,
    to: Timestamp,
    before: Option<Sample>,
    last: Option<Timestamp>,
}

impl MergeDedup {
    /// A merge for the range `[from, to]`.
    pub fn new(from: Timestamp, to: Timestamp) -> Self {
        MergeDedup {
            from,
            to,
            before: None,
            last: None,
        }
    }

    /// Offers a sample; calls `emit` for each sample that belongs in the response, in order.
    pub fn push<E>(
        &mut self,
        s: &Sample,
        emit: &mut impl FnMut(&Sample) -> Result<(), E>,
    ) -> Result<(), E> {
        if s.time > self.to {
            return Ok(());
        }
        if s.time <= self.from {
            if self.last.is_none() && self.before.as_ref().is_none_or(|b| s.time >= b.time) {
                self.before = Some(s.clone());
            }
            return Ok(());
        }
        if self.last.is_some_and(|last| s.time <= last) {
            return Ok(());
        }
        if let Some(b) = self.before.take() {
            emit(&b)?;
        }
        emit(s)?;
        self.last = Some(s.time);
        Ok(())
    }

    /// Ends the response: a lone sample at or before `from` is emitted now.
    pub fn finish<E>(&mut self, emit: &mut impl FnMut(&Sample) -> Result<(), E>) -> Result<(), E> {
        if let Some(b) = self.before.take() {
            self.last = Some(b.time);
            emit(&b)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::Value;

    fn s(secs: i64) -> Sample {
        Sample::new(Timestamp::new(secs, 0), Value::ScalarInt(secs as i32))
    }

    fn run(from: i64, to: i64, sources: &[&[i64]]) -> Vec<i64> {
        let mut m = MergeDedup::new(Timestamp::new(from, 0), Timestamp::new(to, 0));
        let mut out = Vec::new();
        let mut emit = |x: &Sample| -> Result<(), ()> {
            out.push(x.time.secs);
            Ok(())
        };
        for src in sources {
            for &t in *src {
                m.push(&s(t), &mut emit).ok();
            }
        }
        m.finish(&mut emit).ok();
        out
    }

    #[test]
    fn java_rule() {
        // One sample at or before from, then (from, to].
        assert_eq!(
            run(10, 20, &[&[1, 5, 9, 11, 15, 20, 21]]),
            vec![9, 11, 15, 20]
        );
        assert_eq!(run(10, 20, &[&[1, 10, 11]]), vec![10, 11]);
        // Nothing after from: the last value before still shows.
        assert_eq!(run(10, 20, &[&[1, 5]]), vec![5]);
        // Overlap between a file and the buffer is dropped.
        assert_eq!(run(0, 100, &[&[1, 2, 3], &[2, 3, 4]]), vec![1, 2, 3, 4]);
        // The buffer may hold the sample before from.
        assert_eq!(run(10, 20, &[&[1, 2], &[8, 12]]), vec![8, 12]);
        assert_eq!(run(10, 20, &[],), Vec::<i64>::new());
    }
}
