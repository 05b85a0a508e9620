// SPDX-License-Identifier: GPL-2.0

//! A concurrent stress test (`insmod rmm.ko stress=OPS`).
//!
//! One kernel thread per online CPU does random allocations and frees
//! (about `OPS` in all) across four caches of its own (small and large
//! objects, with and without a constructor, with and without
//! [`SlabFlags::DEBUG`]) and the generic kmalloc caches. Threads hand some
//! of their objects to each other through small lock-protected inboxes, so
//! objects are freed on another CPU than the one that allocated them.
//!
//! Every object is stamped with its owner (thread and sequence number) when
//! it is allocated, and the stamp is checked and wiped before it is freed:
//! an object handed out twice at once shows up as a wrong stamp. Objects of
//! a cache with a constructor must also come out in the constructed state.
//! Every mismatch, refused free and leftover object is a corruption, reported
//! with [`Platform::report`] (the first few) and counted in the summary line.

use super::bindings;
use super::cpu_threads::{now, online_cpus, pause, run_on_cpus, CpuWork};
use super::platform::KernelPlatform;
use crate::gfp::Gfp;
use crate::kmalloc::Kmalloc;
use crate::page_alloc::PageAllocator;
use crate::platform::{Lock, LockClass, Platform};
use crate::slab::{Ctor, CtorCall, KmemCache, SlabFlags};
use crate::state::Rmm;
use core::num::NonZeroUsize;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::alloc::{flags, KVec};
use kernel::c_str;
use kernel::prelude::*;

type Pages = PageAllocator<KernelPlatform>;
type Cache = KmemCache<KernelPlatform>;
type Inbox = <KernelPlatform as Platform>::Lock<Ring>;

/// Objects a thread holds at most at once.
const HELD_MAX: usize = 64;
/// Room in a thread's inbox.
const INBOX_LEN: usize = 16;
/// Corruptions reported line by line; later ones are only counted.
const REPORT_MAX: usize = 10;
/// A thread offers to reschedule every this many loop turns (a power of
/// two; the kernels here are not preemptible).
const RESCHED_EVERY: usize = 64;
/// The largest kmalloc request: the largest generic cache.
const KMALLOC_MAX_SHIFT: u32 = 9;
/// The smallest kmalloc request (room for the stamp).
const KMALLOC_MIN: usize = 16;

/// The two words at the start of a live object: its tag, then the tag
/// mixed with this key (so that stale or random memory does not pass).
const STAMP_KEY: u64 = 0x5354_5245_5353_2121;
/// What a free leaves in the second word of an object without constructor.
const FREED: u64 = 0x6b6b_f4ee_6b6b_f4ee;
/// The constructed state of the first two words of a constructor cache's
/// objects, restored before every free.
const CONSTRUCTED: u64 = 0xc7c7_c7c7_c7c7_c7c7;
/// Bits of a tag for the sequence number; the thread number is above.
const SEQ_BITS: u32 = 40;

/// One of the stress caches.
struct CacheSpec {
    name: &'static str,
    size: usize,
    flags: SlabFlags,
    ctor: Option<Ctor>,
}

/// Small and large objects, with and without constructor and debugging.
const CACHE_SPECS: [CacheSpec; 4] = [
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

/// Where objects of [`Held::source`] come from: a stress cache index below
/// this, kmalloc at it.
const KMALLOC_SOURCE: usize = CACHE_SPECS.len();

/// The constructor of the stress caches: the first two words constructed.
///
/// # Safety
///
/// As for every [`crate::slab::Ctor`]: `obj` is `call.size` writable bytes,
/// word-aligned.
unsafe fn construct(obj: NonNull<u8>, call: &CtorCall<'_>) {
    if call.size < 2 * size_of::<u64>() {
        return;
    }
    let words = obj.as_ptr().cast::<u64>();
    // SAFETY: The slab allocator passes an object of `call.size` bytes (at least
    // two words, checked above), word-aligned, that the constructor may
    // write.
    unsafe {
        words.write(CONSTRUCTED);
        words.add(1).write(CONSTRUCTED);
    }
}

/// An xorshift64 generator: cheap, and a run is repeatable from its seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        XorShift(if seed == 0 { 1 } else { seed })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// An object held by a thread or waiting in an inbox.
#[derive(Clone, Copy)]
struct Held {
    addr: usize,
    source: usize,
    tag: u64,
}

impl Held {
    const EMPTY: Held = Held {
        addr: 0,
        source: 0,
        tag: 0,
    };

    fn thread(&self) -> usize {
        (self.tag >> SEQ_BITS) as usize
    }
}

/// A thread's inbox: objects other threads handed over for it to free.
struct Ring {
    slots: [Held; INBOX_LEN],
    head: usize,
    len: usize,
}

impl Ring {
    fn new() -> Self {
        Ring {
            slots: [Held::EMPTY; INBOX_LEN],
            head: 0,
            len: 0,
        }
    }

    /// Adds `held`; gives it back if the ring is full.
    fn push(&mut self, held: Held) -> Result<(), Held> {
        if self.len == INBOX_LEN {
            return Err(held);
        }
        let index = (self.head + self.len) & (INBOX_LEN - 1);
        self.slots[index] = held;
        self.len += 1;
        Ok(())
    }

    fn pop(&mut self) -> Option<Held> {
        if self.len == 0 {
            return None;
        }
        let held = self.slots[self.head];
        self.head = (self.head + 1) & (INBOX_LEN - 1);
        self.len -= 1;
        Some(held)
    }
}

const _: () = assert!(INBOX_LEN.is_power_of_two() && RESCHED_EVERY.is_power_of_two());

/// What the threads share.
struct Shared<'a> {
    pages: &'a Pages,
    kmalloc: &'a Kmalloc<KernelPlatform>,
    caches: &'a [Cache],
    /// One per thread, indexed by thread number.
    inboxes: KVec<Inbox>,
    threads: NonZeroUsize,
    /// Threads that did their share and hand over nothing more.
    finished: AtomicUsize,
    /// Corruptions reported so far (all threads).
    reported: AtomicUsize,
}

/// The threads get `Shared` through a raw pointer: make sure it may be
/// shared.
const _: fn() = || {
    fn is_sync<T: Sync>() {}
    is_sync::<Shared<'_>>();
};

/// One thread: its part of the work and, when it is done, its counts.
struct Worker<'a> {
    shared: &'a Shared<'a>,
    id: usize,
    seed: u64,
    quota: usize,
    operations: AtomicUsize,
    cross_frees: AtomicUsize,
    corruptions: AtomicUsize,
    failures: AtomicUsize,
}

/// The state of one thread while it runs.
struct Run<'a> {
    shared: &'a Shared<'a>,
    id: usize,
    rng: XorShift,
    held: KVec<Held>,
    held_len: usize,
    seq: u64,
    operations: usize,
    cross_frees: usize,
    corruptions: usize,
    failures: usize,
}

impl Run<'_> {
    fn report(&mut self, what: &str, held: &Held, found: u64) {
        self.corruptions += 1;
        if self.shared.reported.fetch_add(1, Ordering::Relaxed) < REPORT_MAX {
            self.shared.pages.platform().report(format_args!(
                "stress: thread {}: {} at {:#x} (source {}, tag {:#x}): found {:#x}",
                self.id, what, held.addr, held.source, held.tag, found
            ));
        }
    }

    /// Allocates a random object and keeps it.
    fn alloc(&mut self) {
        self.operations += 1;
        let r = self.rng.next();
        let source = (r & 7) as usize;
        let result = match self.shared.caches.get(source) {
            Some(cache) => cache.alloc(self.shared.pages, Gfp::KERNEL),
            None => {
                // 16 bytes to the largest generic cache, every power of two
                // as likely.
                let shift = ((r >> 3) as u32) % (KMALLOC_MAX_SHIFT + 1);
                let top = KMALLOC_MIN << shift;
                let size = top - ((r >> 8) as usize & (top / 2 - 1));
                self.shared
                    .kmalloc
                    .kmalloc(self.shared.pages, size, Gfp::KERNEL)
            }
        };
        let Ok(obj) = result else {
            self.failures += 1;
            return;
        };
        let source = source.min(KMALLOC_SOURCE);
        self.seq += 1;
        let held = Held {
            addr: obj.as_ptr() as usize,
            source,
            tag: ((self.id as u64) << SEQ_BITS) | (self.seq & ((1 << SEQ_BITS) - 1)),
        };
        let words = obj.as_ptr().cast::<u64>();
        // SAFETY: Every source hands out word-aligned objects of at least
        // two words, and this one is ours until it is freed.
        let (first, second) = unsafe { (words.read(), words.add(1).read()) };
        if self.has_ctor(source) {
            if first != CONSTRUCTED || second != CONSTRUCTED {
                self.report("object not in its constructed state", &held, first);
            }
        } else if second == first ^ STAMP_KEY {
            self.report("object handed out while stamped live", &held, first);
        }
        // SAFETY: As above.
        unsafe {
            words.write(held.tag);
            words.add(1).write(held.tag ^ STAMP_KEY);
        }
        if let Some(slot) = self.held.get_mut(self.held_len) {
            *slot = held;
            self.held_len += 1;
        } else {
            self.free(held);
        }
    }

    fn has_ctor(&self, source: usize) -> bool {
        CACHE_SPECS
            .get(source)
            .is_some_and(|spec| spec.ctor.is_some())
    }

    /// Checks the stamp of `held`, wipes it and frees the object.
    fn free(&mut self, held: Held) {
        self.operations += 1;
        if held.thread() != self.id {
            self.cross_frees += 1;
        }
        let words = held.addr as *mut u64;
        // SAFETY: `held` is an object allocated by `alloc`, not freed yet,
        // that only this thread has now.
        let (first, second) = unsafe { (words.read(), words.add(1).read()) };
        if first != held.tag || second != held.tag ^ STAMP_KEY {
            // Someone else has it too: freeing it again could corrupt the
            // cache, so it is left allocated (and shows up as a leak).
            self.report("stamp changed", &held, first);
            return;
        }
        let (first, second) = if self.has_ctor(held.source) {
            (CONSTRUCTED, CONSTRUCTED)
        } else {
            (first, FREED)
        };
        // SAFETY: As above.
        unsafe {
            words.write(first);
            words.add(1).write(second);
        }
        let Some(obj) = NonNull::new(held.addr as *mut u8) else {
            return;
        };
        let result = match self.shared.caches.get(held.source) {
            // SAFETY: `obj` came from this cache, is freed once, here, and
            // not used afterwards; the cache outlives the threads.
            Some(cache) => unsafe { cache.free(self.shared.pages, obj) }.map_err(|_| ()),
            // SAFETY: `obj` came from this kmalloc and is freed once, here.
            None => unsafe { self.shared.kmalloc.kfree(self.shared.pages, obj) }.map_err(|_| ()),
        };
        if result.is_err() {
            self.report("free refused", &held, first);
        }
    }

    /// Takes a random held object out of the thread's hands.
    fn take_held(&mut self, r: u64) -> Option<Held> {
        let count = NonZeroUsize::new(self.held_len)?;
        let index = (r as usize) % count;
        let last = *self.held.get(self.held_len - 1)?;
        let held = core::mem::replace(self.held.get_mut(index)?, last);
        self.held_len -= 1;
        Some(held)
    }

    /// Hands `held` to another thread, or frees it here if there is none or
    /// its inbox is full.
    fn hand_over(&mut self, held: Held, r: u64) {
        let threads = self.shared.threads.get();
        let target = NonZeroUsize::new(threads - 1).map(|others| {
            let target = self.id + 1 + (r as usize) % others;
            if target >= threads {
                target - threads
            } else {
                target
            }
        });
        let refused = match target.and_then(|t| self.shared.inboxes.get(t)) {
            Some(inbox) => inbox.with(|ring| ring.push(held)).err(),
            None => Some(held),
        };
        if let Some(held) = refused {
            self.free(held);
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
            Some(held) => {
                self.free(held);
                true
            }
            None => false,
        }
    }

    /// Random operations until `quota` are done.
    fn work(&mut self, quota: usize) {
        let mut turn = 0usize;
        while self.operations < quota {
            turn += 1;
            if turn & (RESCHED_EVERY - 1) == 0 {
                // SAFETY: A kernel thread may sleep.
                unsafe { bindings::rmm_cond_resched() };
            }
            let r = self.rng.next();
            let choice = r & 7;
            let full = self.held_len == self.held.len();
            if choice < 4 && !full {
                self.alloc();
            } else if choice < 6 {
                match self.take_held(r >> 3) {
                    Some(held) => self.free(held),
                    None => self.alloc(),
                }
            } else if choice == 6 {
                match self.take_held(r >> 3) {
                    Some(held) => self.hand_over(held, r >> 32),
                    None => self.alloc(),
                }
            } else if !self.free_from_inbox() {
                self.alloc();
            }
        }
    }

    /// Frees what the thread holds, then empties its inbox until every
    /// thread has stopped handing objects over.
    fn finish(&mut self) {
        while let Some(held) = self.take_held(0) {
            self.free(held);
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

impl CpuWork for Worker<'_> {
    fn run(&self) {
        let shared = self.shared;
        // Without room to hold objects the thread still works (every
        // object it allocates is freed at once) and empties its inbox.
        let (held, failures) = match KVec::from_elem(Held::EMPTY, HELD_MAX, flags::GFP_KERNEL) {
            Ok(held) => (held, 0),
            Err(_) => (KVec::new(), 1),
        };
        let mut run = Run {
            shared,
            id: self.id,
            rng: XorShift::new(self.seed),
            held,
            held_len: 0,
            seq: 0,
            operations: 0,
            cross_frees: 0,
            corruptions: 0,
            failures,
        };
        run.work(self.quota);
        run.finish();
        self.operations.store(run.operations, Ordering::Relaxed);
        self.cross_frees.store(run.cross_frees, Ordering::Relaxed);
        self.corruptions.store(run.corruptions, Ordering::Relaxed);
        self.failures.store(run.failures, Ordering::Relaxed);
    }
}

/// Creates the stress caches into `caches`.
fn create_caches(pages: &Pages, caches: &mut KVec<Cache>) -> Result {
    for spec in &CACHE_SPECS {
        let cache = KmemCache::create(pages, spec.name, spec.size, 0, spec.flags, spec.ctor)
            .map_err(|_| ENOMEM)?;
        caches.push(cache, flags::GFP_KERNEL)?;
    }
    Ok(())
}

/// Destroys the stress caches; a cache that still has objects counts as a
/// corruption (and stays, leaked, until the page allocator goes).
fn destroy_caches(pages: &Pages, caches: &[Cache]) -> usize {
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

/// Runs about `ops` random operations (allocations and frees) on every
/// online CPU at once and logs the summary line. Fails only if the test
/// could not be set up.
pub fn run(rmm: &Rmm<KernelPlatform>, ops: usize) -> Result {
    let pages = rmm.pages();
    let mut caches = KVec::with_capacity(CACHE_SPECS.len(), flags::GFP_KERNEL)?;
    let result = create_caches(pages, &mut caches).and_then(|()| run_threads(rmm, &caches, ops));
    let leaks = destroy_caches(pages, &caches);
    let summary = result?;
    pr_info!(
        "stress: {} operations on {} CPUs in {} ms, {} cross-CPU frees, {} corruptions, {} allocation failures\n",
        summary.operations,
        summary.cpus,
        summary.elapsed_ns / 1_000_000,
        summary.cross_frees,
        summary.corruptions + leaks,
        summary.failures
    );
    Ok(())
}

/// The counts of a run.
#[derive(Default)]
struct Summary {
    operations: usize,
    cpus: usize,
    elapsed_ns: i64,
    cross_frees: usize,
    corruptions: usize,
    failures: usize,
}

/// Starts one thread per online CPU on `caches` and kmalloc, and waits
/// until every thread is stopped.
fn run_threads(rmm: &Rmm<KernelPlatform>, caches: &[Cache], ops: usize) -> Result<Summary> {
    let cpus = online_cpus()?;
    let threads = NonZeroUsize::new(cpus.len()).ok_or(EINVAL)?;
    let platform = rmm.platform();
    let mut inboxes = KVec::with_capacity(threads.get(), flags::GFP_KERNEL)?;
    for _ in 0..threads.get() {
        let inbox = platform
            .new_lock(Ring::new(), LockClass::Other)
            .map_err(|_| ENOMEM)?;
        inboxes.push(inbox, flags::GFP_KERNEL)?;
    }
    let shared = Shared {
        pages: rmm.pages(),
        kmalloc: rmm.kmalloc(),
        caches,
        inboxes,
        threads,
        finished: AtomicUsize::new(0),
        reported: AtomicUsize::new(0),
    };
    let share = ops / threads;
    let extra = ops % threads;
    let clock = now() as u64;
    let mut workers = KVec::with_capacity(threads.get(), flags::GFP_KERNEL)?;
    for (id, &cpu) in cpus.iter().enumerate() {
        // Distinct per thread and per run.
        let seed = clock ^ (u64::from(cpu) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        pr_info!("stress: thread {} on CPU {} seed {:#x}\n", id, cpu, seed);
        workers.push(
            Worker {
                shared: &shared,
                id,
                seed,
                quota: share + usize::from(id < extra),
                operations: AtomicUsize::new(0),
                cross_frees: AtomicUsize::new(0),
                corruptions: AtomicUsize::new(0),
                failures: AtomicUsize::new(0),
            },
            flags::GFP_KERNEL,
        )?;
    }
    let elapsed_ns = run_on_cpus(&workers, &cpus, c_str!("rmm_stress/%u"))?;
    let mut summary = Summary {
        elapsed_ns,
        ..Summary::default()
    };
    for worker in workers.iter() {
        let operations = worker.operations.load(Ordering::Relaxed);
        summary.operations += operations;
        summary.cpus += usize::from(operations > 0);
        summary.cross_frees += worker.cross_frees.load(Ordering::Relaxed);
        summary.corruptions += worker.corruptions.load(Ordering::Relaxed);
        summary.failures += worker.failures.load(Ordering::Relaxed);
    }
    Ok(summary)
}
