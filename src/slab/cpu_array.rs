// SPDX-License-Identifier: GPL-2.0

//! Per-CPU arrays of free objects, SLAB's `array_cache`.
//!
//! Every CPU has, for every cache, a small stack of pointers to free objects
//! in its per-CPU area. Only that CPU touches it, with interrupts off
//! ([`crate::platform::PerCpu::with_local`]): allocation pops from it and
//! free pushes to it with no lock and no atomic read-modify-write, as in
//! SLAB. Other CPUs reach it only by asking its CPU to run their code
//! ([`crate::platform::Platform::on_each_cpu`], SLAB's `on_each_cpu(do_drain)`)
//! and, once the CPU is offline, from its hotplug teardown. The cache's
//! lists are visited once per `batchcount` objects, to refill an empty array
//! or to flush a full one.
//!
//! The slots are inside the array, [`ARRAY_CAPACITY`] of them whatever the
//! cache's `limit`: about a kilobyte per CPU and cache, the price of a fast
//! path with no pointer to follow.

use crate::platform::{MAX_NODES, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

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

/// Most objects a per-CPU array can hold: the largest limit
/// [`cpucache_limit`] chooses. The slots live inside the array, in the CPU's
/// per-CPU area, so that the fast path reaches them with no pointer to
/// follow.
pub(crate) const ARRAY_CAPACITY: usize = 120;

/// Most objects of other nodes an alien array holds, for all remote nodes
/// together (SLAB had 12 per remote node): 32 pointers and 32 node bytes
/// per CPU and cache, a batch of up to 32 objects per lock round of the
/// other node. An array of a cache whose `limit` is lower holds `limit`.
pub(crate) const ALIEN_CAPACITY: usize = 32;

// Node numbers and per-node counts are kept in bytes.
const _: () = assert!(ALIEN_CAPACITY <= u8::MAX as usize);
const _: () = assert!(MAX_NODES <= u8::MAX as usize);

/// A count kept by one CPU and read by anyone.
///
/// Only the owning CPU, with exclusive use of its array, bumps it, so the
/// increment is a plain load and store (no locked instruction), wrapping as
/// the kernel's `unsigned long` statistics do; readers on other CPUs see a
/// recent value.
#[derive(Debug, Default)]
pub(crate) struct LocalCount(AtomicUsize);

impl LocalCount {
    /// Adds `n` (owning CPU only).
    #[inline(always)]
    pub(crate) fn add(&self, n: usize) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one (owning CPU only).
    #[inline(always)]
    pub(crate) fn bump(&self) {
        self.add(1);
    }

    /// The current value.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One CPU's stack of free objects of one cache, and its statistics.
///
/// Lives in the cache's per-CPU storage. Its stack (`avail`, `limit`, the
/// slots) is only touched with exclusive use of the array: by its CPU
/// inside [`crate::platform::PerCpu::with_local`], by
/// [`crate::platform::Platform::on_each_cpu`], or for a CPU that is offline
/// by the hotplug teardown. The methods that touch it are `unsafe` for that
/// reason. Counters are readable by anyone.
///
/// Every array belongs to one memory node, its CPU's (the nearest node with
/// memory for a CPU of a node without), and holds objects of that node's
/// slabs only, as SLAB's arrays did: `node` and `free_tag` are set when the
/// array is made and never change.
///
/// # Invariants
///
/// `avail <= limit <= ARRAY_CAPACITY`; slots `0..avail` hold distinct free
/// objects of the cache, each counted as in use by its slab, all of slabs
/// on node `node`, the most recently freed last. `limit` is 0 once the
/// cache is destroyed.
pub(crate) struct CpuArray {
    avail: AtomicUsize,
    limit: AtomicUsize,
    /// The owner word a free fast path must find (colour bits aside) to
    /// push an object here: the cache's slab tag with `node`'s bits, or a
    /// tag nothing matches if every free must take the slow path.
    free_tag: usize,
    node: usize,
    slots: UnsafeCell<[*mut u8; ARRAY_CAPACITY]>,
    /// Allocations served straight from the array.
    pub(crate) allochit: LocalCount,
    /// Allocations that found the array empty.
    pub(crate) allocmiss: LocalCount,
    /// Frees that found room in the array.
    pub(crate) freehit: LocalCount,
    /// Frees that found the array full and flushed a batch first.
    pub(crate) freemiss: LocalCount,
    /// Objects handed out after a miss (refilled or freshly grown).
    pub(crate) missed_allocs: LocalCount,
    /// Slabs created (any CPU may add: atomic read-modify-write).
    pub(crate) grown: AtomicUsize,
    /// Slabs given back to the page allocator.
    pub(crate) reaped: AtomicUsize,
    /// Errors detected and reported.
    pub(crate) errors: AtomicUsize,
    /// Constructor calls.
    pub(crate) ctor_calls: AtomicUsize,
    /// Objects handed out straight from the lists of another node than
    /// this array's, the node asked for by `alloc_node` (atomic: counted
    /// outside the CPU-local section).
    pub(crate) remote_allocs: AtomicUsize,
    /// Objects handed out from another node's slabs than the one the
    /// request wanted, which was out of pages.
    pub(crate) fallback_allocs: AtomicUsize,
    /// Frees of objects of another node than this array's, returned to
    /// their node's lists (from the alien array when it is flushed, or
    /// straight in debug mode).
    pub(crate) remote_frees: AtomicUsize,
    /// Lock rounds taken to return alien objects to their nodes: one per
    /// node present at each flush of the alien array.
    pub(crate) alien_flushes: AtomicUsize,
    /// Objects of other nodes freed on this CPU, on their way home.
    pub(crate) alien: AlienArray,
}

// SAFETY: the slots are only touched with exclusive use of the array (type
// documentation); the object pointers they hold are plain addresses.
unsafe impl Send for CpuArray {}
// SAFETY: as above; everything else is atomic.
unsafe impl Sync for CpuArray {}

impl CpuArray {
    /// An empty array of `limit` slots for objects of node `node`, taking
    /// fast frees of objects whose owner word is `free_tag` (colour aside),
    /// with an empty alien array of `alien_limit` slots (0: frees of other
    /// nodes' objects go straight home).
    pub(crate) fn new(limit: usize, node: usize, free_tag: usize, alien_limit: usize) -> Self {
        // INVARIANT: empty, limit clamped to the capacity.
        CpuArray {
            avail: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit.min(ARRAY_CAPACITY)),
            free_tag,
            node,
            slots: UnsafeCell::new([ptr::null_mut(); ARRAY_CAPACITY]),
            allochit: LocalCount::default(),
            allocmiss: LocalCount::default(),
            freehit: LocalCount::default(),
            freemiss: LocalCount::default(),
            missed_allocs: LocalCount::default(),
            grown: AtomicUsize::new(0),
            reaped: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            ctor_calls: AtomicUsize::new(0),
            remote_allocs: AtomicUsize::new(0),
            fallback_allocs: AtomicUsize::new(0),
            remote_frees: AtomicUsize::new(0),
            alien_flushes: AtomicUsize::new(0),
            alien: AlienArray::new(alien_limit),
        }
    }

    /// The memory node whose objects the array holds.
    #[inline(always)]
    pub(crate) fn node(&self) -> usize {
        self.node
    }

    /// The owner word (colour bits aside) of the objects the free fast
    /// path may push here.
    #[inline(always)]
    pub(crate) fn free_tag(&self) -> usize {
        self.free_tag
    }

    fn slot(&self, index: usize) -> *mut *mut u8 {
        self.slots.get().cast::<*mut u8>().wrapping_add(index)
    }

    /// Objects held (a recent value when read from another CPU).
    pub(crate) fn avail(&self) -> usize {
        self.avail.load(Ordering::Relaxed)
    }

    /// Whether the cache was destroyed.
    pub(crate) fn is_retired(&self) -> bool {
        self.limit.load(Ordering::Relaxed) == 0
    }

    /// Takes the most recently freed object, counting nothing.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array (type documentation).
    #[inline(always)]
    pub(crate) unsafe fn pop(&self) -> Option<NonNull<u8>> {
        let avail = self.avail.load(Ordering::Relaxed);
        let top = avail.checked_sub(1)?;
        self.avail.store(top, Ordering::Relaxed);
        // SAFETY: `top < avail <= ARRAY_CAPACITY`, and slot `top` holds an
        // object (type invariants), never null; exclusive use per the caller.
        Some(unsafe { NonNull::new_unchecked(self.slot(top).read()) })
    }

    /// Adds an object, counting nothing; `false` (nothing done) if the
    /// array is full or retired.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array, and `obj` is a free object
    /// of the cache counted as in use by its slab, a slab of the array's
    /// node.
    #[inline(always)]
    pub(crate) unsafe fn push(&self, obj: NonNull<u8>) -> bool {
        let avail = self.avail.load(Ordering::Relaxed);
        if avail >= self.limit.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: `avail < limit <= ARRAY_CAPACITY`; exclusive use.
        unsafe { self.slot(avail).write(obj.as_ptr()) };
        // INVARIANT: the caller passes a free object counted by its slab.
        self.avail.store(avail + 1, Ordering::Relaxed);
        true
    }

    /// The fast path of an allocation: [`CpuArray::pop`], counted as a hit.
    ///
    /// # Safety
    ///
    /// As [`CpuArray::pop`].
    #[inline(always)]
    pub(crate) unsafe fn pop_hit(&self) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee, passed on.
        let obj = unsafe { self.pop() }?;
        self.allochit.bump();
        Some(obj)
    }

    /// The fast path of a free: [`CpuArray::push`], counted as a hit.
    ///
    /// # Safety
    ///
    /// As [`CpuArray::push`].
    #[inline(always)]
    pub(crate) unsafe fn push_hit(&self, obj: NonNull<u8>) -> bool {
        // SAFETY: the caller's guarantee, passed on.
        let pushed = unsafe { self.push(obj) };
        if pushed {
            self.freehit.bump();
        }
        pushed
    }

    /// Free slots.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array.
    pub(crate) unsafe fn room(&self) -> usize {
        self.limit
            .load(Ordering::Relaxed)
            .saturating_sub(self.avail.load(Ordering::Relaxed))
    }

    /// Appends objects written by `fill` into the free slots it is given
    /// (as many as there is room for), which returns how many it wrote:
    /// refilling many objects with one update of `avail`.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array; `fill` writes distinct
    /// free objects of the cache, each counted as in use by its slab (a slab
    /// of the array's node), into the first slots of the slice, as many as
    /// it returns.
    #[inline]
    pub(crate) unsafe fn append_with(&self, fill: impl FnOnce(&mut [*mut u8]) -> usize) -> usize {
        let avail = self.avail();
        let room = self.limit.load(Ordering::Relaxed).saturating_sub(avail);
        // SAFETY: slots `avail..avail + room` lie below `limit <=
        // ARRAY_CAPACITY`, and nothing else touches them (exclusive use).
        let free = unsafe { core::slice::from_raw_parts_mut(self.slot(avail), room) };
        let written = fill(free).min(room);
        // INVARIANT: the caller's `fill` wrote `written` distinct free
        // objects into the slots above `avail`.
        self.avail.store(avail + written, Ordering::Relaxed);
        written
    }

    /// The `count` least recently freed objects (the bottom of the stack).
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array for as long as it uses the
    /// slice.
    pub(crate) unsafe fn oldest(&self, count: usize) -> &[*mut u8] {
        let count = count.min(self.avail());
        // SAFETY: slots `0..avail` are initialised; exclusive use.
        unsafe { core::slice::from_raw_parts(self.slot(0), count) }
    }

    /// Forgets the `count` oldest objects (which the caller has given back
    /// to their slabs), moving the others down.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array.
    pub(crate) unsafe fn drop_oldest(&self, count: usize) {
        let avail = self.avail();
        let count = count.min(avail);
        let kept = avail - count;
        // SAFETY: both ranges lie in slots `0..avail`; `copy` handles the
        // overlap; exclusive use.
        unsafe { ptr::copy(self.slot(count), self.slot(0), kept) };
        // INVARIANT: the remaining objects are still distinct and free.
        self.avail.store(kept, Ordering::Relaxed);
    }

    /// Marks the array of a destroyed cache: nothing is kept any more,
    /// in the array or in its alien array.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array, which is empty, and so is
    /// its alien array.
    pub(crate) unsafe fn retire(&self) {
        debug_assert_eq!(self.avail(), 0);
        // INVARIANT: limit 0, so no push succeeds.
        self.limit.store(0, Ordering::Relaxed);
        // SAFETY: exclusive use per the caller; the alien array is empty.
        unsafe { self.alien.retire() };
    }
}

/// One CPU's objects of other nodes than its array's, freed on the CPU and
/// waiting to go home a batch at a time (SLAB's alien caches, one array for
/// all remote nodes): when it is full, or when the array is drained, each
/// node present gets its objects back under one round of its list lock.
///
/// Part of the [`CpuArray`], under the same rules: its slots are only
/// touched with exclusive use of the array (the methods doing so are
/// `unsafe`); the counts are readable by anyone.
///
/// # Invariants
///
/// `avail <= limit <= ALIEN_CAPACITY`; slots `0..avail` hold distinct
/// objects of the cache that callers freed, each still counted as in use
/// by its slab, a slab of node `nodes[i]` (never the array's node), and
/// `per_node[n]` is the number of slots `0..avail` of node `n`. Objects
/// here are never handed out: they only go back to their node's lists.
/// `limit` is 0 in debug mode and, once the cache is destroyed, for every
/// CPU that was online then (the destroy's drain reaches online CPUs only;
/// a CPU offline at that time keeps its limit, harmlessly: its alien array
/// was emptied when it went down, and no owner word matches the destroyed
/// cache any more).
pub(crate) struct AlienArray {
    avail: AtomicUsize,
    limit: AtomicUsize,
    slots: UnsafeCell<[*mut u8; ALIEN_CAPACITY]>,
    nodes: UnsafeCell<[u8; ALIEN_CAPACITY]>,
    per_node: [AtomicU8; MAX_NODES],
}

impl AlienArray {
    fn new(limit: usize) -> Self {
        // INVARIANT: empty, limit clamped to the capacity.
        AlienArray {
            avail: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit.min(ALIEN_CAPACITY)),
            slots: UnsafeCell::new([ptr::null_mut(); ALIEN_CAPACITY]),
            nodes: UnsafeCell::new([0; ALIEN_CAPACITY]),
            per_node: Default::default(),
        }
    }

    /// Objects held, of all nodes (a recent value when read from another
    /// CPU).
    pub(crate) fn avail(&self) -> usize {
        self.avail.load(Ordering::Relaxed)
    }

    /// Objects of `node` held (a recent value when read from another CPU;
    /// 0 for a node out of range).
    pub(crate) fn of_node(&self, node: usize) -> usize {
        self.per_node
            .get(node)
            .map_or(0, |count| usize::from(count.load(Ordering::Relaxed)))
    }

    /// Whether objects of other nodes may be kept here (not in debug mode,
    /// cache not destroyed).
    pub(crate) fn enabled(&self) -> bool {
        self.limit.load(Ordering::Relaxed) != 0
    }

    fn slot(&self, index: usize) -> *mut *mut u8 {
        self.slots.get().cast::<*mut u8>().wrapping_add(index)
    }

    fn node_slot(&self, index: usize) -> *mut u8 {
        self.nodes.get().cast::<u8>().wrapping_add(index)
    }

    /// Adds `obj`, an object of node `node`; `false` (nothing done) if the
    /// array is full or disabled.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array; `obj` is an object of the
    /// cache a caller just freed, counted as in use by its slab, a slab of
    /// node `node` (below `MAX_NODES`, not the array's node).
    pub(crate) unsafe fn push(&self, obj: NonNull<u8>, node: usize) -> bool {
        let avail = self.avail();
        let Some(count) = self.per_node.get(node) else {
            return false;
        };
        if avail >= self.limit.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: `avail < limit <= ALIEN_CAPACITY`; exclusive use.
        unsafe {
            self.slot(avail).write(obj.as_ptr());
            // `node < MAX_NODES <= u8::MAX`.
            self.node_slot(avail).write(node as u8);
        }
        // INVARIANT: one more object of `node`, at most ALIEN_CAPACITY of
        // them, so the byte does not overflow.
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.avail.store(avail + 1, Ordering::Relaxed);
        true
    }

    /// The node of the oldest object held, if any.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array.
    pub(crate) unsafe fn first_node(&self) -> Option<usize> {
        // SAFETY: slot 0 is initialised when `avail > 0`; exclusive use.
        (self.avail() > 0).then(|| usize::from(unsafe { self.node_slot(0).read() }))
    }

    /// Takes every object of `node` out of the array into the first slots
    /// of `out`, keeping the others in order; returns how many.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array.
    pub(crate) unsafe fn take_node(
        &self,
        node: usize,
        out: &mut [*mut u8; ALIEN_CAPACITY],
    ) -> usize {
        let avail = self.avail();
        let (mut taken, mut kept) = (0, 0);
        for index in 0..avail {
            // SAFETY: `index < avail <= ALIEN_CAPACITY`, initialised slots;
            // exclusive use; `kept <= index`.
            unsafe {
                let (obj, obj_node) = (self.slot(index).read(), self.node_slot(index).read());
                if usize::from(obj_node) == node {
                    if let Some(slot) = out.get_mut(taken) {
                        *slot = obj;
                    }
                    taken += 1;
                } else {
                    self.slot(kept).write(obj);
                    self.node_slot(kept).write(obj_node);
                    kept += 1;
                }
            }
        }
        if let Some(count) = self.per_node.get(node) {
            count.store(0, Ordering::Relaxed);
        }
        // INVARIANT: the objects of `node` are out, the others kept below
        // `kept`, and `node`'s count is 0.
        self.avail.store(kept, Ordering::Relaxed);
        taken
    }

    /// The objects held and their nodes.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array for as long as it uses the
    /// slices.
    pub(crate) unsafe fn objects(&self) -> (&[*mut u8], &[u8]) {
        let avail = self.avail();
        // SAFETY: slots `0..avail` are initialised; exclusive use.
        unsafe {
            (
                core::slice::from_raw_parts(self.slot(0), avail),
                core::slice::from_raw_parts(self.node_slot(0), avail),
            )
        }
    }

    /// Keeps nothing any more (the cache is destroyed).
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the array, which is empty.
    unsafe fn retire(&self) {
        debug_assert_eq!(self.avail(), 0);
        // INVARIANT: limit 0, so no push succeeds.
        self.limit.store(0, Ordering::Relaxed);
    }
}
