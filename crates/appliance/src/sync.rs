//! The catalogue sync task and the appliance's part of the shutdown order.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::appliance::Appliance;
use crate::error::ApplianceError;

/// The catalogue sync of the binary: every 2 s, as the Java workflow's PVs become
/// `PVTypeInfo`s soon after they connect.
pub const SYNC_PERIOD: Duration = Duration::from_secs(2);

/// The running catalogue sync: [`Appliance::sync_catalogue`] every period until its
/// [`CancellationToken`] is cancelled.
#[derive(Debug)]
pub struct CatalogueSync {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl CatalogueSync {
    /// Starts the sync of `appliance` every `period` (the first round one period from now);
    /// it stops when `cancel` is cancelled
    /// (or through [`CatalogueSync::stop`]). A round under way when the token is cancelled
    /// finishes first (it is one catalogue transaction), so the catalogue is never left
    /// half-written.
    pub fn spawn(appliance: Appliance, period: Duration, cancel: CancellationToken) -> Self {
        let task = tokio::spawn(run(appliance, period, cancel.clone()));
        CatalogueSync { cancel, task }
    }

    /// The token that stops this sync.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Cancels the sync and waits until its task has ended (at most one round).
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            warn!("catalogue sync task ended badly: {e}");
        }
    }
}

async fn run(app: Appliance, period: Duration, cancel: CancellationToken) {
    // Type infos restored at start-up are marked recorded by the restore: a round looks
    // only at PVs that connected since (one flag per PV, no name set to keep in step).
    // The first round comes one period after the start, as every later one: "every
    // period" holds from the start (an immediate first round would race the first
    // connections, recording some PVs at once and others a period later).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match app.record_connected(false).await {
            Ok((_, new)) if !new.is_empty() && app.site_policy().has_rules() => {
                // Java decides the policy once the PV's metadata is known: the rules on
                // element count and record type apply now (event rates are measured
                // too briefly yet: they apply when the policies are re-applied).
                if let Err(e) = app.decide_on_connect(&new).await {
                    warn!("deciding the policies of newly connected PVs failed: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => warn!("catalogue sync failed: {e}"),
        }
    }
}

impl Appliance {
    /// Starts the catalogue sync of this appliance (see [`CatalogueSync::spawn`]).
    pub fn spawn_catalogue_sync(
        &self,
        period: Duration,
        cancel: CancellationToken,
    ) -> CatalogueSync {
        CatalogueSync::spawn(self.clone(), period, cancel)
    }

    /// Steps 2 to 4 of the shutdown order (see the crate documentation), once the HTTP
    /// listener has stopped accepting requests: stop the catalogue sync, shut the engine
    /// down (every held-back sample committed, every buffer written), then record in one
    /// last sync every PV's final state (paused flags, metadata, PVs that connected since
    /// the last round). Returns how many PVs the final sync wrote and what could not be
    /// written (a full disk, an I/O error: the engine retries a few times, then gives up
    /// and says so here, so the caller never reports success for lost samples).
    ///
    /// # Errors
    ///
    /// The final sync failed (the catalogue is as the last round left it; what was
    /// written is on disk).
    pub async fn shutdown(&self, sync: CatalogueSync) -> Result<ShutdownReport, ApplianceError> {
        sync.stop().await;
        self.control().stop();
        let unwritten = self.engine().shutdown().await;
        let catalogued = self.sync_catalogue(true).await?;
        Ok(ShutdownReport {
            catalogued,
            unwritten,
        })
    }
}

/// What [`Appliance::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// PVs whose type info the final catalogue sync wrote.
    pub catalogued: usize,
    /// Samples (and their PVs) that could not be written: lost when the process exits.
    pub unwritten: archiver_engine::Unwritten,
}
