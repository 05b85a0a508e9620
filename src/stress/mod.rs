// SPDX-License-Identifier: GPL-2.0

//! The concurrent stress test (`insmod rmm.ko stress=OPS`), without the
//! kernel threads.
//!
//! One thread per online CPU (started by `kernel_layer/stress.rs`, each
//! running a [`Runner`]) does random allocations and frees (about `OPS` in
//! all) across four caches of its own ([`CACHE_SPECS`]: small and large
//! objects, with and without a constructor, with and without
//! [`SlabFlags::DEBUG`]) and the generic kmalloc caches. Threads hand some
//! of their objects to each other through small lock-protected inboxes
//! ([`Ring`]), so objects are freed on another CPU than the one that
//! allocated them.
//!
//! Every object is stamped with its owner (thread and sequence number) when
//! it is allocated, and the stamp is checked and wiped before it is freed
//! ([`object`]): an object handed out twice at once shows up as a wrong
//! stamp. Objects of a cache with a constructor must also come out in the
//! constructed state. Every mismatch, refused free and leftover object is a
//! corruption, reported with [`Platform::report`] (the first few) and
//! counted in the summary line ([`Summary`]).
//!
//! Everything here is plain core code over any [`Platform`], so the host
//! tests run the same threads on `std` threads (`tests/stress.rs`).

mod choice;
mod object;

pub use choice::{
    hand_over_target, held_index, kmalloc_size, quota, seed, source, Op, XorShift,
    KMALLOC_MAX_SHIFT, KMALLOC_MIN, KMALLOC_SOURCE,
};
pub use object::{
    check_fresh, wiped, Ring, StressObject, CONSTRUCTED, FREED, INBOX_LEN, SEQ_BITS, STAMP_KEY,
};

use crate::gfp::Gfp;
use crate::kmalloc::Kmalloc;
use crate::page_alloc::PageAllocator;
use crate::platform::{Lock, Platform};
use crate::slab::{CreateError, Ctor, CtorCall, KmemCache, SlabFlags};
use core::fmt;
use core::num::NonZeroUsize;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Objects a thread holds at most at once.
pub const HELD_MAX: usize = 64;

/// Corruptions reported line by line; later ones are only counted.
pub const REPORT_MAX: usize = 10;

/// A thread offers to reschedule every this many loop turns (a power of
/// two; the kernels here are not preemptible).
pub const RESCHED_EVERY: usize = 64;

const _: () = assert!(RESCHED_EVERY.is_power_of_two());

/// One of the stress caches.
pub struct CacheSpec {
    /// The cache's name.
    pub name: &'static str,
    /// Its object size.
    pub size: usize,
    /// Its flags.
    pub flags: SlabFlags,
    /// Its constructor, if any.
    pub ctor: Option<Ctor>,
}

impl CacheSpec {
    /// Creates the cache on `pages`.
    pub fn create<P: Platform>(
        &self,
        pages: &PageAllocator<P>,
    ) -> Result<KmemCache<P>, CreateError> {
        KmemCache::create(pages, self.name, self.size, 0, self.flags, self.ctor)
    }
}

/// Small and large objects, with and without constructor and debugging.
pub const CACHE_SPECS: [CacheSpec; KMALLOC_SOURCE] = [
    CacheSpec {
        name: "rmm_stress_small",
        size: 16,
        flags: SlabFlags::NONE,
        ctor: None,
    },
    CacheSpec {
        name: "rmm_stress_ctor",
        size: 96,
        flags: SlabFlags::NONE,
        ctor: Some(construct),
    },
    CacheSpec {
        name: "rmm_stress_debug",
        size: 200,
        flags: SlabFlags::DEBUG,
        ctor: None,
    },
    CacheSpec {
        name: "rmm_stress_large",
        size: 3000,
        flags: SlabFlags::DEBUG,
        ctor: Some(construct),
    },
];

/// The constructor of the stress caches: the first two words constructed.
///
/// # Safety
///
/// As for every [`crate::slab::Ctor`]: `obj` is `call.size` writable bytes,
/// word-aligned.
unsafe fn construct(obj: NonNull<u8>, call: &CtorCall<'_>) {
    if call.size < 2 * core::mem::size_of::<u64>() {
        return;
    }
    let words = obj.as_ptr().cast::<u64>();
    // SAFETY: The slab allocator passes an object of `call.size` bytes (at
    // least two words, checked above), word-aligned, that the constructor
    // may write.
    unsafe { words.write(CONSTRUCTED) };
    // SAFETY: As above; the second word is inside the object too.
    unsafe { words.add(1).write(CONSTRUCTED) };
}

/// Whether objects of `source` come from a cache with a constructor.
fn has_ctor(source: usize) -> bool {
    CACHE_SPECS
        .get(source)
        .is_some_and(|spec| spec.ctor.is_some())
}

/// Destroys the stress caches; a cache that still has objects counts as a
/// leak (and stays, leaked, until the page allocator goes). Returns the
/// leaks.
pub fn destroy_caches<P: Platform>(pages: &PageAllocator<P>, caches: &[KmemCache<P>]) -> usize {
    let mut leaks = 0;
    for cache in caches {
        if let Err(error) = cache.destroy(pages) {
            pages.platform().report(format_args!(
                "stress: cannot destroy {}: {:?}",
                cache.name(),
                error
            ));
            leaks += 1;
        }
    }
    leaks
}

/// What the threads of a run share.
///
/// # Invariants
///
/// Every [`StressObject`] in an inbox is an object that a [`Runner`]
/// allocated and stamped, not freed yet, and owned by the inbox: only
/// runners push into inboxes (they start empty, [`Shared::new`] checks),
/// and they push only objects they take out of their own hands.
pub struct Shared<'a, P: Platform> {
    pages: &'a PageAllocator<P>,
    kmalloc: &'a Kmalloc<P>,
    caches: &'a [KmemCache<P>],
    /// One per thread, indexed by thread number.
    inboxes: &'a [P::Lock<Ring>],
    threads: NonZeroUsize,
    /// Threads that did their share and hand over nothing more.
    finished: AtomicUsize,
    /// Corruptions reported so far (all threads).
    reported: AtomicUsize,
}

impl<'a, P: Platform> Shared<'a, P> {
    /// The shared state of a run of one thread per inbox on `caches` (made
    /// from [`CACHE_SPECS`], in order) and `kmalloc`. `None` if there is no
    /// inbox, the caches are not as many as the specs, or an inbox is not
    /// empty (its objects would be freed by this run).
    pub fn new(
        pages: &'a PageAllocator<P>,
        kmalloc: &'a Kmalloc<P>,
        caches: &'a [KmemCache<P>],
        inboxes: &'a [P::Lock<Ring>],
    ) -> Option<Self> {
        let threads = NonZeroUsize::new(inboxes.len())?;
        let all_empty = inboxes
            .iter()
            .all(|inbox| inbox.with(|ring| ring.is_empty()));
        if caches.len() != CACHE_SPECS.len() || !all_empty {
            return None;
        }
        Some(Shared {
            pages,
            kmalloc,
            caches,
            inboxes,
            threads,
            finished: AtomicUsize::new(0),
            reported: AtomicUsize::new(0),
        })
    }

    /// The number of threads.
    pub fn threads(&self) -> NonZeroUsize {
        self.threads
    }
}

/// What one thread did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Allocations and frees.
    pub operations: usize,
    /// Frees of objects another thread allocated.
    pub cross_frees: usize,
    /// Wrong stamps, objects not in their constructed state, refused frees.
    pub corruptions: usize,
    /// Allocations that failed.
    pub failures: usize,
}

/// A thread's [`Counts`], stored by the thread when it is done and read by
/// the thread that waited for it.
#[derive(Debug, Default)]
pub struct CountsCell {
    operations: AtomicUsize,
    cross_frees: AtomicUsize,
    corruptions: AtomicUsize,
    failures: AtomicUsize,
}

impl CountsCell {
    /// Stores `counts`. Relaxed: the reader learns that the thread is done
    /// through its own synchronisation (the end of the thread).
    pub fn store(&self, counts: &Counts) {
        self.operations.store(counts.operations, Ordering::Relaxed);
        self.cross_frees
            .store(counts.cross_frees, Ordering::Relaxed);
        self.corruptions
            .store(counts.corruptions, Ordering::Relaxed);
        self.failures.store(counts.failures, Ordering::Relaxed);
    }

    /// The counts stored last.
    pub fn load(&self) -> Counts {
        Counts {
            operations: self.operations.load(Ordering::Relaxed),
            cross_frees: self.cross_frees.load(Ordering::Relaxed),
            corruptions: self.corruptions.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// The counts of a whole run, and its summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every thread's counts added up.
    pub counts: Counts,
    /// Threads that did any operation.
    pub cpus: usize,
    /// Wall time of the run.
    pub elapsed_ns: i64,
}

impl Summary {
    /// Adds one thread's counts.
    pub fn add_thread(&mut self, counts: &Counts) {
        self.counts.operations += counts.operations;
        self.cpus += usize::from(counts.operations > 0);
        self.counts.cross_frees += counts.cross_frees;
        self.counts.corruptions += counts.corruptions;
        self.counts.failures += counts.failures;
    }
}

/// The summary line (`tests/guest/stress.sh` reads it).
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stress: {} operations on {} CPUs in {} ms, {} cross-CPU frees, {} corruptions, {} allocation failures",
            self.counts.operations,
            self.cpus,
            self.elapsed_ns / 1_000_000,
            self.counts.cross_frees,
            self.counts.corruptions,
            self.counts.failures
        )
    }
}

/// One thread of a run while it runs: its random generator, the objects it
/// holds, its counts.
///
/// # Invariants
///
/// The first `held_len` entries of `held` are objects this runner allocated
/// and stamped, not freed yet, that only it holds. With the inboxes'
/// invariant ([`Shared`]), every object [`Runner::free`] gets (from its
/// hands, from its inbox, or just allocated) is a live object of this
/// run's caches or kmalloc that nothing else uses.
pub struct Runner<'a, P: Platform> {
    shared: &'a Shared<'a, P>,
    id: usize,
    rng: XorShift,
    /// Objects held: the first `held_len`.
    held: &'a mut [StressObject],
    held_len: usize,
    seq: u64,
    counts: Counts,
}

impl<'a, P: Platform> Runner<'a, P> {
    /// Thread `id` of the run `shared`, its generator seeded with `seed`,
    /// holding at most `held.len()` objects at once (whatever `held` holds
    /// now is overwritten). With no room at all the thread still works:
    /// every object it allocates is freed at once.
    pub fn new(
        shared: &'a Shared<'a, P>,
        id: usize,
        seed: u64,
        held: &'a mut [StressObject],
    ) -> Self {
        Runner {
            shared,
            id,
            rng: XorShift::new(seed),
            held,
            held_len: 0,
            seq: 0,
            counts: Counts::default(),
        }
    }

    /// Counts an allocation failure of the caller's (no room for `held`).
    pub fn count_failure(&mut self) {
        self.counts.failures += 1;
    }

    /// What the thread did so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Objects it holds now.
    pub fn held(&self) -> usize {
        self.held_len
    }

    fn report(&mut self, what: &str, object: &StressObject, found: u64) {
        self.counts.corruptions += 1;
        if self.shared.reported.fetch_add(1, Ordering::Relaxed) < REPORT_MAX {
            self.shared.pages.platform().report(format_args!(
                "stress: thread {}: {} at {:#x} (source {}, tag {:#x}): found {:#x}",
                self.id,
                what,
                object.addr(),
                object.source(),
                object.tag(),
                found
            ));
        }
    }

    /// Allocates a random object and keeps it.
    fn alloc(&mut self) {
        let r = self.rng.next();
        self.alloc_with(r);
    }

    /// Allocates the object random word `r` names ([`source`],
    /// [`kmalloc_size`]), checks and stamps it, and keeps it (or frees it
    /// at once if the thread's hands are full).
    pub fn alloc_with(&mut self, r: u64) {
        self.counts.operations += 1;
        let source = source(r);
        let shared = self.shared;
        let result = match shared.caches.get(source) {
            Some(cache) => cache.alloc(shared.pages, Gfp::KERNEL),
            None => shared
                .kmalloc
                .kmalloc(shared.pages, kmalloc_size(r), Gfp::KERNEL),
        };
        let Ok(obj) = result else {
            self.counts.failures += 1;
            return;
        };
        self.seq += 1;
        let object = StressObject::new(obj.as_ptr() as usize, source, self.id, self.seq);
        let words = obj.as_ptr().cast::<u64>();
        // SAFETY: Every source hands out word-aligned objects of at least
        // two words, and this one is ours until it is freed.
        let found = unsafe { [words.read(), words.add(1).read()] };
        if let Err(what) = check_fresh(found, has_ctor(source)) {
            self.report(what, &object, found[0]);
        }
        let [first, second] = object.stamp();
        // SAFETY: As above.
        unsafe { words.write(first) };
        // SAFETY: As above.
        unsafe { words.add(1).write(second) };
        if let Some(slot) = self.held.get_mut(self.held_len) {
            // INVARIANT: A live object just allocated and stamped, held by
            // this runner alone.
            *slot = object;
            self.held_len += 1;
        } else {
            self.free(object);
        }
    }

    /// Checks the stamp of `object`, wipes it and frees the object.
    ///
    /// `object` was allocated by a runner of this run (this one, or one that
    /// handed it over) and is not freed yet: only this runner has it now.
    fn free(&mut self, object: StressObject) {
        self.counts.operations += 1;
        if object.thread() != self.id {
            self.counts.cross_frees += 1;
        }
        let words = object.addr() as *mut u64;
        // SAFETY: By the type invariants `object` is a live object of at
        // least two words, word-aligned, allocated by `alloc_with` and not
        // freed yet, that only this thread has now.
        let found = unsafe { [words.read(), words.add(1).read()] };
        if !object.stamp_matches(found) {
            // Someone else has it too: freeing it again could corrupt the
            // cache, so it is left allocated (and shows up as a leak).
            self.report("stamp changed", &object, found[0]);
            return;
        }
        let [first, second] = wiped(found, has_ctor(object.source()));
        // SAFETY: As above.
        unsafe { words.write(first) };
        // SAFETY: As above.
        unsafe { words.add(1).write(second) };
        let Some(obj) = NonNull::new(words.cast::<u8>()) else {
            return;
        };
        let shared = self.shared;
        let result = match shared.caches.get(object.source()) {
            // SAFETY: `obj` came from this cache, is freed once, here, and
            // not used afterwards; the cache outlives the threads.
            Some(cache) => unsafe { cache.free(shared.pages, obj) }.map_err(|_| ()),
            // SAFETY: `obj` came from this kmalloc and is freed once, here.
            None => unsafe { shared.kmalloc.kfree(shared.pages, obj) }.map_err(|_| ()),
        };
        if result.is_err() {
            self.report("free refused", &object, first);
        }
    }

    /// Takes the held object random word `r` picks out of the thread's
    /// hands.
    fn take_held(&mut self, r: u64) -> Option<StressObject> {
        let count = NonZeroUsize::new(self.held_len)?;
        let index = held_index(r, count);
        let last = *self.held.get(self.held_len - 1)?;
        let object = core::mem::replace(self.held.get_mut(index)?, last);
        self.held_len -= 1;
        Some(object)
    }

    /// Hands `object` to another thread ([`hand_over_target`] of `r`), or
    /// frees it here if there is none or its inbox is full.
    fn hand_over(&mut self, object: StressObject, r: u64) {
        let target = hand_over_target(self.id, self.shared.threads, r);
        let refused = match target.and_then(|t| self.shared.inboxes.get(t)) {
            // INVARIANT: `object` was taken out of this runner's hands: the
            // inbox alone holds it now.
            Some(inbox) => inbox.with(|ring| ring.push(object)).err(),
            None => Some(object),
        };
        if let Some(object) = refused {
            self.free(object);
        }
    }

    /// Frees one object from the inbox; false if it was empty.
    fn free_from_inbox(&mut self) -> bool {
        let popped = self
            .shared
            .inboxes
            .get(self.id)
            .and_then(|inbox| inbox.with(Ring::pop));
        match popped {
            Some(object) => {
                self.free(object);
                true
            }
            None => false,
        }
    }

    /// Random operations ([`Op::choose`]) until `quota` are done.
    pub fn work(&mut self, quota: usize) {
        let mut turn = 0usize;
        while self.counts.operations < quota {
            turn += 1;
            if turn & (RESCHED_EVERY - 1) == 0 {
                self.shared.pages.platform().cond_resched();
            }
            let r = self.rng.next();
            let full = self.held_len == self.held.len();
            match Op::choose(r, full) {
                Op::Alloc => self.alloc(),
                Op::Free => match self.take_held(r >> 3) {
                    Some(object) => self.free(object),
                    None => self.alloc(),
                },
                Op::HandOver => match self.take_held(r >> 3) {
                    Some(object) => self.hand_over(object, r >> 32),
                    None => self.alloc(),
                },
                Op::FreeFromInbox => {
                    if !self.free_from_inbox() {
                        self.alloc();
                    }
                }
            }
        }
    }

    /// Frees what the thread holds, then empties its inbox until every
    /// thread has stopped handing objects over, calling `pause` between
    /// looks at the inbox. Every thread of the run must get here, or the
    /// others wait for ever.
    pub fn finish(&mut self, pause: impl Fn()) {
        while let Some(object) = self.take_held(0) {
            self.free(object);
        }
        let shared = self.shared;
        shared.finished.fetch_add(1, Ordering::AcqRel);
        loop {
            while self.free_from_inbox() {}
            // Once every thread has finished, nothing more arrives: one last
            // round empties the inbox for good.
            if shared.finished.load(Ordering::Acquire) == shared.threads.get() {
                while self.free_from_inbox() {}
                break;
            }
            pause();
        }
    }
}

#[cfg(test)]
mod tests;
