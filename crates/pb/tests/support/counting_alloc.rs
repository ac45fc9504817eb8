//! A global allocator that counts allocation calls per thread (and forwards them to the
//! system's), for the no-allocation tests of the hot paths. Per thread: the test harness's
//! own threads allocate now and then (a loaded machine made one count 4 allocations that
//! were not the tested code's, `scalar_encode_and_decode_allocate_nothing_per_sample`). Shared by `archiver-pb`'s and
//! `archiver-storage`'s `no_alloc` tests (the latter includes this file by path): a test
//! binary that declares this module counts every allocation it makes.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Const-initialized without a destructor: reading it never allocates.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down has no counter any more; nothing to count.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocation calls (`alloc` and `realloc`) so far by the calling thread.
pub fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}
