//! Limits on per-PV log noise. A failure that repeats for a PV every write period (a full
//! disk, a folder that cannot be written) or that hits every PV at once would otherwise
//! write a line per PV per period: 100 000 PVs on a full disk, 10 000 lines a second. Two
//! gates, both lock-free and without memory per PV:
//!
//! * [`repeat_worth_logging`]: a PV's n-th failure of one kind is logged when n is a power
//!   of two (1st, 2nd, 4th, 8th...), so a PV failing every 10 s for a day logs 14 lines;
//! * [`Gate`]: at most [`Gate::PER_MINUTE`] lines of one kind a minute for the whole
//!   process; the first line of the next minute says how many were left out.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Whether a PV's `n`-th occurrence (counting from 1) of a repeated warning is logged: when
/// `n` is a power of two.
pub(crate) fn repeat_worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}

/// A process-wide limit on one kind of per-PV warning (see the module).
#[derive(Debug)]
pub(crate) struct Gate {
    /// The minute (epoch seconds / 60) being counted.
    minute: AtomicI64,
    /// Lines let through in that minute.
    passed: AtomicU64,
    /// Lines left out in that minute.
    suppressed: AtomicU64,
}

/// What [`Gate::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Log the line; `left_out` lines of the previous minute were not logged.
    Log {
        /// Lines of this kind left out in the minute before (0: none).
        left_out: u64,
    },
    /// Leave the line out (it is counted).
    Quiet,
}

impl Gate {
    /// Lines of one kind logged per minute at most.
    pub(crate) const PER_MINUTE: u64 = 20;

    /// A gate with nothing counted.
    pub(crate) const fn new() -> Self {
        Gate {
            minute: AtomicI64::new(i64::MIN),
            passed: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line at `now_secs` (epoch seconds) is logged. Racing callers at a minute's
    /// turn may let a line or two more through; never fewer.
    pub(crate) fn admit(&self, now_secs: i64) -> Admit {
        let minute = now_secs.div_euclid(60);
        let mut left_out = 0;
        if self.minute.swap(minute, Relaxed) != minute {
            self.passed.store(0, Relaxed);
            left_out = self.suppressed.swap(0, Relaxed);
        }
        if self.passed.fetch_add(1, Relaxed) < Self::PER_MINUTE {
            Admit::Log { left_out }
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            Admit::Quiet
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_logged_at_powers_of_two() {
        let logged: Vec<u64> = (1..=100).filter(|&n| repeat_worth_logging(n)).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64]);
        // A day of failures every 10 s: 14 lines.
        assert_eq!((1..=8640).filter(|&n| repeat_worth_logging(n)).count(), 14);
    }

    #[test]
    fn a_gate_lets_twenty_a_minute_through_and_reports_the_rest() {
        let g = Gate::new();
        let t = 1_700_000_040; // the start of a minute
        let logged = (0..1000)
            .filter(|_| matches!(g.admit(t + 5), Admit::Log { .. }))
            .count();
        assert_eq!(logged as u64, Gate::PER_MINUTE);
        // The next minute's first line says how many were left out.
        assert_eq!(g.admit(t + 65), Admit::Log { left_out: 980 });
        assert_eq!(g.admit(t + 66), Admit::Log { left_out: 0 });
    }
}
