//! Settings of the C allocator (glibc) for a server that runs for months.
//!
//! glibc gives each thread that meets contention an arena of its own and keeps freed
//! memory inside each arena. For this archiver, which allocates little once its channels
//! are up (the ingest path allocates nothing per sample), that costs memory and buys
//! nothing: at 1000 PVs the arenas of the runtime's threads held ≈ 14 MiB for ≈ 9 MiB of
//! live objects. So, unless the operator has set `MALLOC_ARENA_MAX`:
//!
//! * all threads share one arena (glibc's per-thread caches still serve most small
//!   allocations without a lock);
//! * [`trim`], called after each write period, hands the free pages inside the heap back
//!   to the kernel (transient buffers: a large status or data response, a write batch).
//!
//! BENCHMARKS.md ("Ingest") has the resident memory with and without these settings.
//! On other platforms both are no-ops.

/// True when the operator chose the arena count (glibc's `MALLOC_ARENA_MAX`): the
/// archiver then leaves the allocator alone.
fn operator_tuned() -> bool {
    std::env::var_os("MALLOC_ARENA_MAX").is_some()
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
    }
}

/// Returns free heap pages to the kernel (cheap: a walk over the arena's free lists).
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
