//! The appliance's operational figures at one moment, for the metrics endpoint: PVs by
//! state, the engine's counters summed over every PV, the writer's latency, buffer fill,
//! ETL per stage, free disk per store, the CA client's searches and circuits. Everything
//! is read from counters the engine, ETL and CA client already keep (relaxed atomics);
//! nothing is counted twice on the hot paths.

use archiver_engine::{CountersSnapshot, PvState, PvSummary, WriteStatsSnapshot};
use archiver_storage::Etl;
use std::sync::atomic::Ordering::Relaxed;

use crate::Appliance;

/// PVs by state, as `getApplianceMetrics` counts them (Java `ApplianceMetrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PvCounts {
    /// Every PV the engine holds.
    pub total: u64,
    /// Archiving and connected.
    pub connected: u64,
    /// Archiving, connected once, not connected now.
    pub disconnected: u64,
    /// Paused.
    pub paused: u64,
    /// Archiving, never connected since the start.
    pub never_connected: u64,
}

impl PvCounts {
    /// The counts of `summaries`.
    pub fn of(summaries: &[PvSummary]) -> Self {
        let mut c = PvCounts::default();
        for s in summaries {
            c.total += 1;
            match s.state {
                PvState::Paused => c.paused += 1,
                PvState::NeverConnected => c.never_connected += 1,
                PvState::Archiving if s.connected => c.connected += 1,
                PvState::Archiving => c.disconnected += 1,
            }
        }
        c
    }
}

/// One data store: its name, root folder and the free space of its file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFigures {
    /// Store name (`STS`, `MTS`, `LTS`...).
    pub name: String,
    /// Its root folder.
    pub root: std::path::PathBuf,
    /// Bytes available to the archiver on the store's file system (`statvfs`); `None`
    /// when it cannot be known (the folder's file system cannot be read).
    pub available_bytes: Option<u64>,
    /// Failed writes into the store since start (the engine's and ETL's), by reason.
    pub write_failures: archiver_storage::StoreWriteFailures,
    /// PVs whose last write into the store failed.
    pub failing_pvs: usize,
}

/// One ETL stage (a move from one store into the next) since start.
#[derive(Debug, Clone, PartialEq)]
pub struct StageFigures {
    /// Source store.
    pub from: String,
    /// Destination store (or the blackhole).
    pub to: String,
    /// Runs of the stage.
    pub runs: u64,
    /// Files moved.
    pub files_moved: u64,
    /// Bytes of those files.
    pub bytes_moved: u64,
    /// PVs whose move failed (to be retried).
    pub errors: u64,
    /// Files dropped because the destination was out of space.
    pub files_dropped_out_of_space: u64,
    /// Seconds spent in runs.
    pub busy_secs: f64,
}

/// The CA client's searches and circuits since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaFigures {
    /// Search datagrams sent.
    pub search_datagrams: u64,
    /// Names searched for.
    pub search_names: u64,
    /// Search replies that found a channel's server.
    pub search_replies: u64,
    /// Virtual circuits started.
    pub circuits_opened: u64,
    /// Virtual circuits open now.
    pub circuits_open: u64,
    /// Times the client took the host's beacon repeater port over after its holder went
    /// away (`archiver_ca::repeater`).
    pub repeater_takeovers: u64,
}

/// Everything the metrics endpoint exports, read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// PVs by state.
    pub pvs: PvCounts,
    /// The engine's per-PV counters summed over every PV the engine holds now (a deleted
    /// PV's counts leave the sums: the counters are per PV, as Java's).
    pub events: CountersSnapshot,
    /// The writer's flush latency.
    pub write: WriteStatsSnapshot,
    /// Samples in memory over every PV.
    pub buffered_samples: u64,
    /// The most samples the buffers may hold, summed.
    pub buffer_capacity: u64,
    /// Each data store.
    pub stores: Vec<StoreFigures>,
    /// Each ETL stage (empty without ETL).
    pub etl: Vec<StageFigures>,
    /// The CA client.
    pub ca: CaFigures,
    /// The write-ahead journal; `None` without one.
    pub journal: Option<archiver_engine::JournalStats>,
}

/// Adds every counter of `b` to `a` (times are not added: they stay 0).
fn add_counters(a: &mut CountersSnapshot, b: &CountersSnapshot) {
    a.events_received += b.events_received;
    a.events_stored += b.events_stored;
    a.events_written += b.events_written;
    a.dropped_timestamp += b.dropped_timestamp;
    a.repeated_timestamp += b.repeated_timestamp;
    a.dropped_type_change += b.dropped_type_change;
    a.dropped_buffer_overflow += b.dropped_buffer_overflow;
    a.dropped_no_type += b.dropped_no_type;
    a.dropped_by_client += b.dropped_by_client;
    a.refused_by_writer += b.refused_by_writer;
    a.disconnects += b.disconnects;
    a.transient_errors += b.transient_errors;
    a.write_errors += b.write_errors;
    a.dropped_rate_limit += b.dropped_rate_limit;
    a.bytes_stored += b.bytes_stored;
}

impl Appliance {
    /// `pv`'s last write error if its last write into a data store failed (the first
    /// store with one, in the configured order), as `<ISO time> <reason>: <error>`, e.g.
    /// `2026-11-30T08:00:00Z out_of_space: tier STS: ...: No space left on device`.
    pub fn last_write_error(&self, pv: &str) -> Option<String> {
        self.stores().tiers().iter().find_map(|t| {
            let e = t.last_write_error(pv)?;
            let at =
                archiver_time::Timestamp::new(e.at_secs, 0).iso(archiver_time::Precision::Seconds);
            Some(format!("{at} {}: {}", e.reason.label(), e.message))
        })
    }
}

impl Appliance {
    /// The operational figures now, ETL's from `etl` (the one the server runs; `None`:
    /// no ETL). Reads every PV's counters (one short lock each) and `statvfs`s each
    /// store's folder: blocking, meant for a metrics scrape (run it off the async
    /// workers).
    pub fn figures(&self, etl: Option<&Etl>) -> Figures {
        let summaries = self.engine().summaries();
        let mut events = CountersSnapshot::default();
        for s in &summaries {
            add_counters(&mut events, &s.counters);
        }
        let (buffered_samples, buffer_capacity) = self.engine().buffer_fill();
        let io = self.stores().backend().io();
        let stores = self
            .stores()
            .tiers()
            .iter()
            .map(|t| StoreFigures {
                name: t.name().to_string(),
                root: t.root().to_path_buf(),
                available_bytes: io.available_space(t.root()).ok().flatten(),
                write_failures: t.write_failures(),
                failing_pvs: t.failing_pvs(),
            })
            .collect();
        let etl = etl.map_or_else(Vec::new, |etl| {
            (0..etl.stages())
                .filter_map(|i| {
                    let (from, to) = etl.stage_names(i)?;
                    let t = etl.stage_totals(i)?;
                    Some(StageFigures {
                        from: from.to_string(),
                        to: to.to_string(),
                        runs: t.runs.load(Relaxed),
                        files_moved: t.files_moved.load(Relaxed),
                        bytes_moved: t.bytes_moved.load(Relaxed),
                        errors: t.errors.load(Relaxed),
                        files_dropped_out_of_space: t.files_dropped_out_of_space.load(Relaxed),
                        busy_secs: t.busy_micros.load(Relaxed) as f64 / 1e6,
                    })
                })
                .collect()
        });
        let ca = self.engine().ca_client().stats();
        Figures {
            pvs: PvCounts::of(&summaries),
            events,
            write: self.engine().write_stats(),
            buffered_samples,
            buffer_capacity,
            stores,
            etl,
            journal: self.engine().journal_stats(),
            ca: CaFigures {
                search_datagrams: ca.search_datagrams.load(Relaxed),
                search_names: ca.search_names.load(Relaxed),
                search_replies: ca.search_replies.load(Relaxed),
                circuits_opened: ca.circuits_opened.load(Relaxed),
                circuits_open: ca.circuits_open.load(Relaxed),
                repeater_takeovers: ca.repeater_takeovers.load(Relaxed),
            },
        }
    }
}
