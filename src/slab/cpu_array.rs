// SPDX-License-Identifier: GPL-2.0

//! Per-CPU arrays of free objects, SLAB's `array_cache`.
//!
//! Every CPU has, for every cache, a small stack of pointers to free objects
//! under its own [`crate::platform::LockClass::SlabCpu`] lock. Allocation
//! pops from it and free pushes to it, so the common case touches only
//! CPU-local data; the cache's lists are visited once per `batchcount`
//! objects, to refill an empty array or to flush a full one.
//!
//! The pointer slots of all CPUs live in one block from
//! [`crate::platform::Platform::alloc_meta`], each CPU's part starting on its
//! own cache line, sized by the cache's `limit` rather than by the largest
//! limit, so that a cache of large objects costs 64 bytes per CPU instead of
//! a kilobyte.

use crate::platform::{Platform, PAGE_SIZE};
use core::ptr::{self, NonNull};
use core::sync::atomic::AtomicUsize;

/// SLAB's `enable_cpucache` table: the array limit for slots of `stride`
/// bytes. Large objects are expensive to keep idle, small ones cheap.
pub(crate) fn cpucache_limit(stride: usize) -> usize {
    if stride > 131_072 {
        1
    } else if stride > PAGE_SIZE {
        8
    } else if stride > 1024 {
        24
    } else if stride > 256 {
        54
    } else {
        120
    }
}

/// Objects moved between an array and the lists at a time, as SLAB:
/// half the limit, rounded up.
pub(crate) fn batchcount_for(limit: usize) -> usize {
    limit.div_ceil(2)
}

/// Operation counts of one CPU's array, kept under its lock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ArrayCounters {
    /// Allocations served straight from the array.
    pub(crate) allochit: usize,
    /// Allocations that found the array empty.
    pub(crate) allocmiss: usize,
    /// Frees that found room in the array.
    pub(crate) freehit: usize,
    /// Frees that found the array full and flushed a batch first.
    pub(crate) freemiss: usize,
    /// Objects handed out to callers.
    pub(crate) allocs: usize,
    /// Objects taken back from callers.
    pub(crate) frees: usize,
}

/// One CPU's stack of free objects.
///
/// # Invariants
///
/// `entries` points to `limit` pointer slots owned by this array (inside the
/// cache's entry block), or is null with `limit == 0` once the cache is
/// destroyed; `avail <= limit`; slots `0..avail` hold distinct free objects of
/// the cache, each counted as in use by its slab, the most recently freed
/// last.
pub(crate) struct CpuArray {
    entries: *mut *mut u8,
    avail: usize,
    limit: usize,
    /// The array's operation counts.
    pub(crate) counters: ArrayCounters,
}

// SAFETY: the array owns its slots; the object pointers it holds are plain
// addresses handed between CPUs under the locks.
unsafe impl Send for CpuArray {}

impl CpuArray {
    /// An empty array over `limit` slots at `entries`.
    ///
    /// # Safety
    ///
    /// `entries` must be valid for `limit` pointer-sized, pointer-aligned
    /// slots that nothing else uses until [`CpuArray::retire`].
    pub(crate) unsafe fn new(entries: NonNull<*mut u8>, limit: usize) -> Self {
        // INVARIANT: the caller gives us `limit` slots; the array is empty.
        CpuArray {
            entries: entries.as_ptr(),
            avail: 0,
            limit,
            counters: ArrayCounters::default(),
        }
    }

    /// Objects held.
    pub(crate) fn avail(&self) -> usize {
        self.avail
    }

    /// Free slots.
    pub(crate) fn room(&self) -> usize {
        self.limit - self.avail
    }

    /// Whether the cache was destroyed and the slots are gone.
    pub(crate) fn is_retired(&self) -> bool {
        self.entries.is_null()
    }

    /// Takes the most recently freed object.
    pub(crate) fn pop(&mut self) -> Option<NonNull<u8>> {
        if self.avail == 0 {
            return None;
        }
        self.avail -= 1;
        // SAFETY: slot `avail` (the old top) holds an object by the type
        // invariants.
        NonNull::new(unsafe { self.entries.add(self.avail).read() })
    }

    /// Adds an object; `false` (and nothing done) if the array is full.
    pub(crate) fn push(&mut self, obj: NonNull<u8>) -> bool {
        if self.avail >= self.limit {
            return false;
        }
        // SAFETY: `avail < limit`, so the slot exists (type invariants).
        unsafe { self.entries.add(self.avail).write(obj.as_ptr()) };
        // INVARIANT: the caller passes a free object counted by its slab.
        self.avail += 1;
        true
    }

    /// The `count` least recently freed objects (the bottom of the stack).
    pub(crate) fn oldest(&self, count: usize) -> &[*mut u8] {
        let count = count.min(self.avail);
        if count == 0 {
            return &[];
        }
        // SAFETY: slots `0..avail` are initialised and owned by the array.
        unsafe { core::slice::from_raw_parts(self.entries, count) }
    }

    /// Forgets the `count` oldest objects (which the caller has given back
    /// to their slabs), moving the others down.
    pub(crate) fn drop_oldest(&mut self, count: usize) {
        let count = count.min(self.avail);
        let kept = self.avail - count;
        // SAFETY: both ranges lie in slots `0..avail`; `copy` handles the
        // overlap.
        unsafe { ptr::copy(self.entries.add(count), self.entries, kept) };
        // INVARIANT: the remaining objects are still distinct and free.
        self.avail = kept;
    }

    /// Detaches the array from its slots (the cache is being destroyed and
    /// the array is empty).
    pub(crate) fn retire(&mut self) {
        debug_assert_eq!(self.avail, 0);
        // INVARIANT: null slots with limit 0.
        self.entries = ptr::null_mut();
        self.limit = 0;
        self.avail = 0;
    }
}

/// Counters of one CPU updated outside the array lock.
#[derive(Debug, Default)]
pub(crate) struct SlotCounters {
    /// Slabs created.
    pub(crate) grown: AtomicUsize,
    /// Slabs given back to the page allocator.
    pub(crate) reaped: AtomicUsize,
    /// Errors detected and reported.
    pub(crate) errors: AtomicUsize,
    /// Constructor calls.
    pub(crate) ctor_calls: AtomicUsize,
}

/// A cache's per-CPU state: the array under its lock, and counters.
pub(crate) struct CpuSlot<P: Platform> {
    /// The array of free objects.
    pub(crate) array: P::Lock<CpuArray>,
    /// Counters bumped without the lock.
    pub(crate) counters: SlotCounters,
}
