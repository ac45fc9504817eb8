//! `archiver serve` and `archiver demo`: wiring of registry, storage, engine, appliance and
//! HTTP, and the shutdown order of `archiver_appliance` (stop accepting HTTP requests →
//! stop ETL (a move under way completes) → cancel the catalogue sync → engine shutdown,
//! every buffer written → final catalogue sync → consolidation of the stores that ask for
//! it (`consolidateOnShutdown=true`) → exit).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use archiver_appliance::{
    Appliance, ApplianceParts, ArchiveSpec, CancellationToken, SYNC_PERIOD, SamplingPeriod,
};
use archiver_ca::{Client, ClientConfig};
use archiver_engine::{Engine, SamplingMethod, Unwritten};
use archiver_http::{RetrievalState, ops};
use archiver_registry::{Registry, SqliteRegistry};
use archiver_time::SystemClock;
use tracing::{info, warn};

use crate::config::{FileConfig, Resolved};

/// Flags shared by `serve` and `demo`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); every key with its default: `archiver config defaults`.
    /// Keys are also read from ARCHIVER_<KEY> / ARCHIVER_<SECTION>_<KEY> environment
    /// variables (over the file); the flags below win over both.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder for the registry and the storage tiers; over `data_dir` of the config file
    /// and ARCHIVER_DATA_DIR, whose default is ./archiver-data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP listener; over `listen` of the config file and
    /// ARCHIVER_LISTEN, whose default is 127.0.0.1:17665. Channel Access reads the usual
    /// EPICS_CA_* environment (EPICS_CA_ADDR_LIST, EPICS_CA_AUTO_ADDR_LIST, ...).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
}

/// SIGTERM and SIGINT, caught from the moment this is built: built before the address is
/// printed, so that a signal sent as soon as a caller reads it stops the server cleanly
/// instead of killing it.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => {
                    warn!("cannot install signal handlers; use Ctrl-C");
                    None
                }
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.streams {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Takes the exclusive lock of `data_dir` (the file `archiver.lock` in it), or fails naming
/// the folder when another process holds it.
pub(crate) fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File> {
    let path = data_dir.join("archiver.lock");
    let file = open_lock_file(&path).with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another archiver is already using the data folder {} (it holds {}); stop it \
             first or give this one another --data-dir",
            data_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// A lock file opened (created if missing, never truncated) to take an OS lock on.
fn open_lock_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// The lock file in each data store's root folder (held until exit, as `archiver.lock`).
const STORE_LOCK: &str = ".archiver.lock";

/// Takes a shared lock (`flock`) on the file [`STORE_LOCK`] in each existing store folder
/// and warns, naming the store and the folder, when another archiver process holds one
/// too (an exclusive lock is tried first, then kept as a shared one, so whichever of two
/// servers starts later sees the other): two archivers writing the same PV's files corrupt
/// them (a fresh-user test pointed a second server's data_stores at a running server's STS
/// without a word). A warning, not a refusal: appliances of a Java-style cluster may share
/// a long-term store's folder for different PVs. Folders that do not exist yet or cannot
/// take the file (read-only) are passed over.
fn lock_store_folders(stores: &archiver_storage::DataStores) -> Vec<std::fs::File> {
    let mut held = Vec::new();
    for tier in stores.tiers() {
        let Ok(file) = open_lock_file(&tier.root().join(STORE_LOCK)) else {
            continue;
        };
        match file.try_lock() {
            // Alone: kept shared, so that a later server sees this one.
            Ok(()) => {
                if file.lock_shared().is_ok() {
                    held.push(file);
                }
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                warn!(
                    store = tier.name(),
                    folder = %tier.root().display(),
                    "another archiver process is using the folder of data store {} ({}): \
                     two archivers writing the same PV's files corrupt them; give each its \
                     own folder unless they archive different PVs",
                    tier.name(),
                    tier.root().display()
                );
                if file.try_lock_shared().is_ok() {
                    held.push(file);
                }
            }
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    held
}

/// Fails, naming `dir` and why (`EROFS`, `EACCES`), when this process may not create files
/// in the existing folder `dir` (`access(2)` with `W_OK`, which sees a read-only mount even
/// for root); a missing folder passes (its creation reports its own error). `what` names
/// the folder and `why` says what needs it. Writes nothing.
pub(crate) fn check_writable(dir: &std::path::Path, what: &str, why: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        if !dir.exists() {
            return Ok(());
        }
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .with_context(|| format!("{what} {} has a NUL byte", dir.display()))?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        #[allow(unsafe_code)]
        let refused = unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0;
        if refused {
            let e = std::io::Error::last_os_error();
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            };
            anyhow::bail!(
                "{what} {} is not writable ({e}){why}; nothing was written (give a writable \
                 folder, or fix its permissions or its mount)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Every endpoint of `appliance` (management, retrieval over `retrieval`), the
/// operations endpoints (`/metrics` over the appliance and `etl`, `/health`, `/ready` of
/// `ready`), and the retrieval requests counted for `/metrics`.
fn with_ops(
    appliance: &Appliance,
    etl: Option<archiver_storage::Etl>,
    ready: &ops::Readiness,
    retrieval: RetrievalState,
) -> axum::Router {
    let counters = Arc::new(ops::RetrievalCounters::default());
    let source = appliance.clone();
    let state = ops::OpsState {
        figures: Arc::new(move || source.figures(etl.as_ref())),
        retrieval: counters.clone(),
        ready: ready.clone(),
    };
    let api = archiver_http::app(Arc::new(appliance.clone()), retrieval);
    ops::count_retrieval(api.merge(ops::router(state)), counters)
}

/// When the start-up summary's second line (PVs connected) is logged.
const CONNECTED_CHECK_AFTER: Duration = Duration::from_secs(10);

/// The configuration file for the start-up summary.
fn config_name(path: Option<&std::path::Path>) -> String {
    match path {
        // Absolute, so that the log says which file whatever the service's folder.
        Some(p) => std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string(),
        None => "none (defaults and ARCHIVER_* environment)".to_string(),
    }
}

/// `NAME=root` of every data store, for the start-up summary.
fn store_roots(stores: &archiver_storage::DataStores) -> String {
    let mut roots: Vec<String> = stores
        .tiers()
        .iter()
        .map(|t| format!("{}={}", t.name(), t.root().display()))
        .collect();
    roots.extend(stores.blackhole().map(|b| format!("{b}=blackhole")));
    roots.join(" ")
}

/// How long requests under way at a shutdown signal may go on before they are cut and the
/// shutdown goes on (a stuck client must not keep the buffers from being written).
const HTTP_DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Replays the write-ahead journal in `dir` into `sts` (samples of PVs the catalogue no
/// longer holds are left out) and returns the number its next segment takes. Creates the
/// folder: a journal that cannot be written is an error at start, naming it.
async fn replay_journal(
    dir: &std::path::Path,
    sts: &archiver_storage::Tier,
    stores: &archiver_storage::DataStores,
    registry: &SqliteRegistry,
) -> Result<u64> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the journal folder {}", dir.display()))?;
    if archiver_storage::journal::segments(dir)?.is_empty() {
        return Ok(1);
    }
    let started = std::time::Instant::now();
    let newest_stored = |pv: &str| {
        let archived = registry.get_type_info(pv).ok().flatten().is_some()
            || registry.get_archive_request(pv).ok().flatten().is_some();
        archived.then(|| archiver_appliance::newest_stored(stores, pv))
    };
    let (r, next) = archiver_storage::journal::replay(dir, sts, &newest_stored)
        .with_context(|| format!("cannot replay the journal in {}", dir.display()))?;
    info!(
        samples = r.samples,
        written = r.written,
        already_stored = r.already_stored,
        pvs = r.pvs,
        failed = r.failed,
        not_archived = r.not_archived,
        refused = r.refused,
        unreadable = r.unreadable,
        "journal replayed in {:.2} s: {} samples of {} PVs recovered that the last run had \
         not written ({} already stored, {} of deleted PVs left out, {} failed) from {} \
         segments",
        started.elapsed().as_secs_f64(),
        r.written,
        r.pvs,
        r.already_stored,
        r.not_archived,
        r.failed,
        r.segments
    );
    Ok(next)
}

/// File descriptors kept for archiving (CA/PVA circuits, the journal, the registry, the
/// partition files being written, ETL) when `max_connections` is fitted to the open-file
/// limit ([`fit_to_open_file_limit`]), with those of the quick 503 answers over the limit
/// (`archiver_http::server::BUSY_ANSWERS`).
const FDS_KEPT: u64 = 256 + archiver_http::server::BUSY_ANSWERS as u64;

/// File descriptors one HTTP connection may hold: its socket and the partition file a
/// retrieval is reading.
const FDS_PER_CONNECTION: u64 = 2;

/// Raises the open-file limit (`RLIMIT_NOFILE`) to its hard limit, then lowers
/// `limits.max_connections`, with a warning, if that many connections could take the file
/// descriptors archiving needs (found by a fresh-user test: with the usual soft limit of
/// 1024 and the default 1024 connections, idle clients took every descriptor; partition
/// files, journal segments and `/health` failed with EMFILE and samples were dropped).
fn fit_to_open_file_limit(limits: &mut archiver_http::server::ConnLimits) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(l) => l,
        Err(e) => {
            warn!("cannot read or raise the open-file limit: {e}");
            return;
        }
    };
    let fit = (limit.saturating_sub(FDS_KEPT) / FDS_PER_CONNECTION).max(1);
    if limits.max_connections as u64 > fit {
        warn!(
            "max_connections = {} lowered to {fit}: the open-file limit is {limit} (ulimit \
             -n; LimitNOFILE= in a systemd unit) and archiving keeps {FDS_KEPT} of them; \
             raise the limit to serve more connections at once",
            limits.max_connections
        );
        limits.max_connections = usize::try_from(fit).unwrap_or(usize::MAX);
    }
}

/// Pending connections the listener queues (tokio's `TcpListener::bind` default).
const LISTEN_BACKLOG: u32 = 1024;

/// A TCP socket bound to `addr` (address reuse on Unix, as `TcpListener::bind` sets it, so
/// that a restart does not wait for the last run's connections in TIME_WAIT), not yet
/// listening.
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// The threads that answer HTTP: a runtime of their own, each thread at `http_nice` nice
/// levels below the process ([`lower_thread_priority`]), so that the CA/PVA circuits, the
/// engine and the writer (on the main runtime, at the process's priority) are not queued
/// behind response writing on the same workers and win the CPU over retrieval encoding
/// when it is short. Made for the load suite (issue 13: a run with 4 clients pulling large
/// retrievals on a saturated 2-core machine lost 0.092 % of the updates inside the IOC;
/// against the code before, the slowest management call under that load went from 1.4 s
/// to 0.16 s, RELIABILITY.md). Tasks spawned by handlers run here too; the engine's and
/// the CA client's own tasks stay on the runtime they started on.
/// Shut down in the background when dropped (allowed in async code, unlike a drop).
struct HttpRuntime(Option<tokio::runtime::Runtime>);

impl HttpRuntime {
    fn start(nice: i32) -> Result<HttpRuntime> {
        let base = thread_nice();
        if nice > 0 && base + nice > 19 {
            info!(
                "the process runs at nice {base}: the HTTP threads get nice 19, {} below \
                 archiving instead of http_nice = {nice}",
                19 - base
            );
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .thread_name("http")
            .on_thread_start(move || lower_thread_priority(base, nice))
            .enable_all()
            .build()
            .context("cannot start the HTTP threads")?;
        Ok(HttpRuntime(Some(rt)))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for HttpRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Sets the calling thread's nice value to `nice` levels above the process's `base`
/// (`setpriority(2)`: on Linux the nice value belongs to the thread, and threads it starts
/// inherit it, such as retrieval's decoding helper). Absolute, not relative: a blocking
/// thread started from an HTTP worker has already inherited the worker's value. Elsewhere,
/// where it would lower the whole process, nothing is done. A failure is logged: the
/// thread then keeps its priority. libc directly: one call, and the crate is already a
/// dependency for `access(2)`.
fn lower_thread_priority(base: i32, nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let target = (base + nice).min(19);
        // SAFETY: setpriority(2) takes integers and only changes the calling thread's
        // priority (who = 0: the calling thread, under Linux).
        #[allow(unsafe_code)]
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, target) };
        if r != 0 {
            warn!(
                "cannot lower the priority of an HTTP thread to nice {target}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (base, nice);
}

/// The calling thread's nice value (0 when it cannot be read).
fn thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority(2) takes integers; errno is reset first because -1 is a
        // valid answer.
        #[allow(unsafe_code)]
        let (r, errno) = unsafe {
            *libc::__errno_location() = 0;
            let r = libc::getpriority(libc::PRIO_PROCESS, 0);
            (r, *libc::__errno_location())
        };
        if errno == 0 { r } else { 0 }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Runs the appliance until SIGTERM/SIGINT; a second signal exits at once.
pub async fn run(args: &ServeArgs, demo: bool) -> Result<()> {
    let file = FileConfig::layered(args.config.as_deref())?;
    let Resolved {
        access,
        tls,
        conn_limits,
        http_nice,
        data_dir,
        listen,
        identity,
        stores,
        policy,
        engine: mut engine_cfg,
        out_of_space,
        etl: etl_enabled,
        ..
    } = file.resolve(
        args.data_dir.as_deref(),
        args.listen,
        args.config.as_deref(),
    )?;
    // The port first: a port in use refuses the start before anything is created or
    // locked (a fresh-user test found a failed start's folders left behind). Listening
    // starts later, on the HTTP threads, once the engine runs.
    let socket = bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    // A read-only folder is refused before anything is written, naming the folder: a
    // service that started but could archive nothing would look healthy to systemd.
    check_writable(
        &data_dir,
        "the data folder",
        "the archiver creates archiver.lock and registry.sqlite there",
    )?;
    // One archiver per data folder: a second one would write the same files and catalogue.
    // Held (an OS lock, released when the process ends, however it ends) until exit.
    let _data_dir_lock = lock_data_dir(&data_dir)?;
    // Every configured store; the engine writes to the first (the STS), new PVs get all.
    for w in file.storage.warnings(&stores) {
        warn!("{w}");
    }
    let sts = stores
        .tiers()
        .first()
        .cloned()
        .context("no data store is configured")?;
    // The engine writes here: a folder that cannot be written is an error now, not a write
    // failure for every PV later. Checked (an existing one) before the registry is opened,
    // so that a refused start writes nothing.
    let sts_check = |what: &str| {
        check_writable(
            sts.root(),
            &format!("the folder of data store {}", sts.name()),
            what,
        )
    };
    sts_check("the engine writes every sample there first")?;
    // The later stores only receive ETL moves, which keep the data in the store before
    // when they fail: a warning, not a refusal.
    for tier in stores.tiers().iter().skip(1) {
        if let Err(e) = check_writable(tier.root(), &format!("data store {}", tier.name()), "") {
            warn!("{e:#}; ETL into it will fail and keep the data where it is");
        }
    }
    // Before any folder is created: a registry refused (corrupt, foreign, newer, locked)
    // leaves nothing behind but the data folder's lock (a fresh-user test found sts/ and
    // journal/ created by a start that then failed).
    let registry = SqliteRegistry::open(&data_dir.join("registry.sqlite"))
        .with_context(|| format!("cannot open the registry in {}", data_dir.display()))?;
    std::fs::create_dir_all(sts.root()).with_context(|| {
        format!(
            "cannot create the folder of data store {} ({})",
            sts.name(),
            sts.root().display()
        )
    })?;
    sts_check("the engine writes every sample there first")?;
    let _store_locks = lock_store_folders(&stores);
    // Free heap pages go back to the kernel after each write (see malloc.rs).
    engine_cfg.after_write = Some(crate::malloc::trim);
    // What a crash left in the journal goes to the short-term store before anything else
    // writes there (a newer sample first would make the replayed ones "not newer").
    // Replayed even with the journal now off: its samples were received and are nowhere
    // else (found by a fresh-user test: a journal left by a crash was ignored, then later
    // counted as already stored).
    let journal_dir = data_dir.join("journal");
    let first_seq = if journal_dir.exists() || engine_cfg.journal.is_some() {
        replay_journal(&journal_dir, &sts, &stores, &registry).await?
    } else {
        1
    };
    match engine_cfg.journal.as_mut() {
        Some(journal) => journal.first_seq = first_seq,
        None => info!(
            "write-ahead journal off ([engine] journal = false): a kill -9 loses what is \
             still in memory, up to a write period"
        ),
    }

    // The demo serves its own simulated IOC on a free loopback port and searches only there.
    let (ca_cfg, demo_pvs, _demo_server) = if demo {
        let (server, names) = crate::demo::start_ioc().await?;
        let cfg = server.client_config().build()?;
        (cfg, names, Some(server))
    } else {
        (ClientConfig::from_env()?, Vec::new(), None)
    };
    let client = Client::new(ca_cfg)
        .await
        .context("cannot start the CA client")?;
    let clock = Arc::new(SystemClock);
    let engine = Engine::start(client, sts, engine_cfg, clock.clone());
    let registry: Arc<dyn Registry> = Arc::new(registry);
    let identity: Arc<str> = Arc::from(identity.as_str());
    let appliance = Appliance::new(ApplianceParts {
        engine,
        registry,
        clock: clock.clone(),
        identity,
        policy,
        stores,
    });
    // The policy file is re-read when it changes (a broken edit keeps the policies read).
    let appliance = match file.policy.file.clone() {
        Some(path) => appliance.with_policy_file(path),
        None => appliance,
    };
    // The retrieval pipeline, built once: catalogue, data stores, the engine's buffers.
    let retrieval = RetrievalState::new(appliance.retrieval(), clock);
    // ETL over every store, on the Java schedule (started after the restore below); built
    // here so that /metrics reads its totals.
    let etl = appliance.new_etl(out_of_space);
    let ready = ops::Readiness::default();
    let router = archiver_http::auth::guard(
        with_ops(
            &appliance,
            etl_enabled.then(|| etl.clone()),
            &ready,
            retrieval,
        ),
        access.clone(),
    );

    // Read before binding: a bad certificate is an error at start, naming the file.
    let tls = match &tls {
        Some((cert, key)) => Some(archiver_http::tls::server_config(cert, key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let http_runtime = HttpRuntime::start(http_nice)?;
    let http = http_runtime
        .handle()
        .context("the HTTP threads are gone")?
        .clone();
    // Registered with the HTTP threads' reactor: the connections' readiness is theirs too.
    let listener = {
        let _in_http = http.enter();
        socket
            .listen(LISTEN_BACKLOG)
            .with_context(|| format!("cannot listen on {listen}"))?
    };
    let local = listener.local_addr()?;
    let mut signals = Signals::install();
    // HTTP answers at once, while the PVs are restored (with many PVs that takes a while;
    // a PV not restored yet is answered as not archived). 1. on a signal: stop accepting
    // HTTP requests (those under way finish, for at most HTTP_DRAIN_DEADLINE: a client
    // that stops reading a large body must not keep the buffers from being written).
    let signalled = Arc::new(tokio::sync::Notify::new());
    let on_signal = signalled.clone();
    let shutdown = async move {
        signals.recv().await;
        info!("shutting down: flushing every buffer (a second signal exits at once)");
        on_signal.notify_one();
        tokio::spawn(async move {
            signals.recv().await;
            eprintln!("second signal: exiting without flushing");
            std::process::exit(130);
        });
    };
    let mut limits = conn_limits;
    fit_to_open_file_limit(&mut limits);
    let mut server = match tls {
        Some(config) => http.spawn(archiver_http::server::serve(
            archiver_http::ErrorBodies(
                archiver_http::tls::TlsListener::new(listener, config)
                    .max_handshakes(limits.max_connections),
            ),
            router,
            limits,
            shutdown,
        )),
        None => http.spawn(archiver_http::server::serve(
            archiver_http::ErrorBodies(listener),
            router,
            limits,
            shutdown,
        )),
    };
    info!("HTTP listening on {local}; restoring the PVs of the catalogue");
    // Registry open and engine started: ready (PVs not restored yet answer as not archived).
    ready.set_restoring();
    let restored = appliance.restore().await?;
    ready.set_restored();
    // Stopped (cancelled) by `Appliance::shutdown`, after the HTTP listener.
    let sync = appliance.spawn_catalogue_sync(SYNC_PERIOD, CancellationToken::new());
    // ETL stopped before the engine's final write.
    let etl_service =
        etl_enabled.then(|| appliance.spawn_etl(etl.clone(), CancellationToken::new()));
    if demo {
        let mut specs = Vec::with_capacity(demo_pvs.len());
        for (name, period) in &demo_pvs {
            specs.push(ArchiveSpec {
                method: Some(SamplingMethod::Monitor),
                period: Some(SamplingPeriod::new(*period)?),
                ..ArchiveSpec::new(name.clone())
            });
        }
        appliance.archive_many(specs).await?;
    }
    println!(
        "archiver {} listening on {scheme}://{local} (data in {}, {restored} PVs and pending \
         archive requests restored)",
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );
    if demo {
        let first = demo_pvs.first().map(|p| p.0.as_str()).unwrap_or("DEMO:AI");
        println!(
            "demo: {} simulated PVs are being archived. Try:",
            demo_pvs.len()
        );
        println!("  curl '{scheme}://{local}/mgmt/bpl/getAllPVs'");
        println!("  curl '{scheme}://{local}/mgmt/bpl/getPVStatus?pv={first}'");
        println!("  curl '{scheme}://{local}/retrieval/data/getData.json?pv={first}'");
        println!("  (samples are written every write period; recent ones come from memory)");
    }
    info!(
        config = %config_name(args.config.as_deref()),
        data_dir = %data_dir.display(),
        stores = %store_roots(appliance.stores()),
        restored,
        listen = %local,
        etl = etl_enabled,
        writes_need_key = access.writes_need_key,
        reads_need_key = access.reads_need_key,
        "started: listening on {local}, {restored} PVs and pending archive requests restored"
    );
    // 10 s after start, how many PVs connected: a site whose IOCs cannot be reached (a
    // wrong EPICS_CA_ADDR_LIST) sees it in the log at once.
    let later = appliance.clone();
    tokio::spawn(async move {
        tokio::time::sleep(CONNECTED_CHECK_AFTER).await;
        let c = archiver_appliance::PvCounts::of(&later.engine().summaries());
        info!(
            connected = c.connected,
            not_connected = c.disconnected + c.never_connected,
            paused = c.paused,
            "{} s after start: {} of {} PVs connected, {} not (yet), {} paused",
            CONNECTED_CHECK_AFTER.as_secs(),
            c.connected,
            c.total,
            c.disconnected + c.never_connected,
            c.paused
        );
    });
    let drain_deadline = async {
        signalled.notified().await;
        tokio::time::sleep(HTTP_DRAIN_DEADLINE).await;
    };
    tokio::select! {
        r = &mut server => r.context("HTTP server task failed")?.context("HTTP server failed")?,
        () = drain_deadline => {
            warn!(
                "HTTP requests still under way {} s after the signal are cut",
                HTTP_DRAIN_DEADLINE.as_secs()
            );
            server.abort();
        }
    }
    // 2. Stop ETL (a file being moved completes or stays whole in its source).
    if let Some(service) = etl_service {
        service.stop().await;
    }
    // 3.-5. Cancel the catalogue sync, write every buffer, record the final state.
    let unwritten = match appliance.shutdown(sync).await {
        Ok(report) => report.unwritten,
        Err(e) => {
            warn!("final catalogue sync failed: {e}");
            Unwritten::default()
        }
    };
    // After the final write: stores that ask for it move whole into the next.
    match appliance.consolidate_on_shutdown(&etl).await {
        Ok(c) if c.files_moved > 0 => info!(files = c.files_moved, "consolidated on shutdown"),
        Ok(_) => {}
        Err(e) => warn!("consolidation on shutdown failed: {e}"),
    }
    if unwritten.samples > 0 {
        anyhow::bail!(
            "archiver stopped, but {} samples of {} PVs could not be written to the \
             short-term store (see the warnings above) and are lost",
            unwritten.samples,
            unwritten.pvs
        );
    }
    println!("archiver stopped; every buffer was written");
    Ok(())
}
