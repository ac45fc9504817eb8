//! Settings of the C allocator (glibc) for a server that runs for months.
//!
//! glibc gives each thread that meets contention an arena of its own and keeps freed
//! memory inside each arena. For this archiver, which allocates little once its channels
//! are up (the ingest path allocates nothing per sample), that costs memory and buys
//! nothing: at 1000 PVs the arenas of the runtime's threads held ≈ 14 MiB for ≈ 9 MiB of
//! live objects. So, unless the operator has tuned glibc's allocator (`MALLOC_ARENA_MAX`,
//! or `GLIBC_TUNABLES` naming `glibc.malloc.`):
//!
//! * all threads share one arena (glibc's per-thread caches still serve most small
//!   allocations without a lock);
//! * blocks up to 1 MiB come from the heap (`M_MMAP_THRESHOLD`), and `free` gives the
//!   heap's top back to the kernel only past 8 MiB (`M_TRIM_THRESHOLD`): a retrieval
//!   response is made of pieces of ≈ 256–512 KiB, allocated and freed a few thousand
//!   times a second; with glibc's defaults each came from fresh pages (an `mmap`, or the
//!   heap top just trimmed), so that zeroing those pages was the largest cost of a JSON
//!   response (perf: `clear_page_erms` 16 %, BENCHMARKS.md "Retrieval, third round").
//!   [`trim`] still returns every free page once per write period;
//! * [`trim`], called after each write period, hands the free pages inside the heap back
//!   to the kernel (transient buffers: a large status or data response, a write batch).
//!   It walks the heap under the arena's lock, so other threads' allocations wait for it,
//!   once per write period (at 800k events/s with a 274 MiB heap the ingest benchmark
//!   lost nothing and its CPU went down, not up).
//!
//! BENCHMARKS.md ("Ingest") has the resident memory with and without these settings.
//! On other platforms both are no-ops.

use std::sync::OnceLock;

/// True when the operator tuned glibc's allocator through its environment: the archiver
/// then leaves it alone. Read once.
fn operator_tuned() -> bool {
    static TUNED: OnceLock<bool> = OnceLock::new();
    *TUNED.get_or_init(|| {
        std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."))
    })
}

/// Applies the settings; call once at start, before the runtime's threads exist.
pub fn configure() {
    if operator_tuned() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only sets an allocator parameter; it is called before any other
    // thread exists and takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// Returns free heap pages to the kernel.
pub fn trim() {
    if operator_tuned() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` is thread-safe (it takes the arena locks) and takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
