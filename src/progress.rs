//! Progress of long command-line operations (`archiver import`, `archiver mgmt`): a line on stderr at
//! most once per interval (`import: 1200/5000 files read, 2 s`), and the caller prints
//! the summary. Plain lines, not a redrawn bar, so that a log file or a pipe reads the
//! same as a terminal. Small enough not to need a progress-bar crate.

use std::io::Write;
use std::time::{Duration, Instant};

/// How often a long operation reports.
pub const EVERY: Duration = Duration::from_secs(1);

/// One operation's progress.
#[derive(Debug)]
pub struct Progress {
    /// The command, at the start of each line (`import`).
    command: &'static str,
    /// What is counted (`files read`).
    what: &'static str,
    /// The count to reach, when known.
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Progress {
    /// Starts counting `what` towards `total` for `archiver import`, reporting at most once
    /// per `every`.
    pub fn new(what: &'static str, total: Option<u64>, every: Duration) -> Self {
        Self::of("import", what, total, every)
    }

    /// [`Progress::new`] for another command, its lines starting with `command`.
    pub fn of(
        command: &'static str,
        what: &'static str,
        total: Option<u64>,
        every: Duration,
    ) -> Self {
        let now = Instant::now();
        Progress {
            command,
            what,
            total,
            done: 0,
            started: now,
            last: now,
            every,
        }
    }

    /// Counts `n` more; writes a line to `out` when `every` has passed since the last.
    pub fn add(&mut self, n: u64, out: &mut dyn Write) {
        self.done += n;
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            let _ = writeln!(out, "{}: {}", self.command, self.line());
        }
    }

    /// `1200/5000 files read, 2 s` (or `1200 files read, 2 s` without a total).
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs();
        match self.total {
            Some(t) => format!("{}/{t} {}, {secs} s", self.done, self.what),
            None => format!("{} {}, {secs} s", self.done, self.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_at_most_once_per_interval_with_the_total() {
        let mut out = Vec::new();
        let mut p = Progress::new("files read", Some(3), Duration::ZERO);
        p.add(1, &mut out);
        p.add(2, &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            ["import: 1/3 files read, 0 s", "import: 3/3 files read, 0 s"]
        );
        let mut quiet = Vec::new();
        let mut p = Progress::new("PVs found", None, Duration::from_secs(3600));
        p.add(5, &mut quiet);
        assert!(quiet.is_empty(), "nothing before the interval");
        assert_eq!(p.line(), "5 PVs found, 0 s");
    }
}
