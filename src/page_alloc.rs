// SPDX-License-Identifier: GPL-2.0

//! The page allocator: a buddy allocator over chunks of pages taken from the
//! platform, with per-CPU lists of single pages in front of it.
//!
//! - Memory comes from [`Platform::alloc_pages`] in chunks of
//!   `2^CHUNK_ORDER` pages, taken when the free lists cannot serve a
//!   request. [`PageAllocator::shrink`] gives chunks whose pages are all free
//!   back; dropping the allocator gives back every chunk.
//! - The buddy state ([`BuddyCore`]) sits under one [`LockClass::Buddy`]
//!   lock. Order-0 pages go through a small list per CPU under a
//!   [`LockClass::PageCpu`] lock, like the kernel's `pcp` lists: the common
//!   single-page allocation and free touch only the local list; when it runs
//!   empty it is refilled, and when it grows above [`PCP_HIGH`] it is
//!   drained, [`PCP_BATCH`] pages at a time under the buddy lock. Lock order:
//!   `PageCpu` before `Buddy`. Pages on a per-CPU list are linked through
//!   their first word (the pages are free, so nothing else uses it).
//! - Each chunk's metadata has, per page, an atomic *tag* saying whether the
//!   page has been handed out (first page of a block of some order, or a
//!   later page) and an atomic *owner word*. Frees are validated against the
//!   tags without any lock, and a compare-and-swap on the first page's tag
//!   lets exactly one of two racing frees of a block through;
//!   [`PageAllocator::block_owner`] reads them through the lock-free chunk
//!   table.
//!
//! Nothing slow runs under a lock: pages and metadata are requested from the
//! platform, and blocks are zeroed, with no lock held.
//!
//! For tests of the failure paths, a [`FaultInjector`] (see [`fault`]) can
//! make every N-th page request fail: every [`PageAllocator::alloc_pages`]
//! call and every chunk request to the platform is one request.

pub mod fault;

pub use self::fault::{FaultInjector, FaultStats};

use crate::buddy::{
    AddChunkError, BuddyCore, ChunkMeta, ChunkTable, RadixLeaf, CHUNK_FRAMES, NR_ORDERS,
};
use crate::gfp::Gfp;
use crate::platform::{AllocError, Lock, LockClass, PerCpu, Platform, PAGE_SHIFT, PAGE_SIZE};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

/// Largest block order handed out: blocks of `2^0 ..= 2^MAX_ORDER` pages.
pub const MAX_ORDER: u32 = crate::buddy::MAX_ORDER;
/// Order of the chunks taken from the platform (one chunk is one block of
/// the largest order).
pub const CHUNK_ORDER: u32 = MAX_ORDER;
/// Pages moved between a per-CPU list and the buddy lists at a time.
pub const PCP_BATCH: usize = 16;
/// A per-CPU list holding more pages than this is drained by [`PCP_BATCH`].
pub const PCP_HIGH: usize = 64;

/// Bytes in a chunk.
const CHUNK_BYTES: usize = PAGE_SIZE << CHUNK_ORDER;
/// Page tag: not handed out (free, or cached on a per-CPU list).
const TAG_NOT_HANDED_OUT: u8 = 0;
/// Page tag: handed out, not the first page of its block.
const TAG_TAIL: u8 = 0x40;
/// Page tag bit: first page of a handed-out block; the low bits hold the order.
const TAG_HEAD: u8 = 0x80;
/// Mask of the order in a head tag.
const TAG_ORDER_MASK: u8 = 0x3f;

/// Why [`PageAllocator::free_pages`] rejected a free. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFreeError {
    /// The address is not inside any chunk of this allocator.
    NotOurs,
    /// The address is inside a chunk but is not the first byte of a block
    /// that was handed out.
    NotBlockHead,
    /// The block was allocated with a different order.
    WrongOrder {
        /// The order the block was allocated with.
        actual: u32,
    },
    /// The block is not allocated (double free, or never allocated).
    AlreadyFree,
    /// The order is above [`MAX_ORDER`].
    BadOrder,
}

impl fmt::Display for PageFreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageFreeError::NotOurs => f.write_str("address not managed by rmm"),
            PageFreeError::NotBlockHead => f.write_str("not the start of an allocated block"),
            PageFreeError::WrongOrder { actual } => {
                write!(f, "wrong order, the block has order {actual}")
            }
            PageFreeError::AlreadyFree => f.write_str("block already free"),
            PageFreeError::BadOrder => f.write_str("order out of range"),
        }
    }
}

/// Counters of a [`PageAllocator`], from [`PageAllocator::stats`].
///
/// The per-CPU lists and the buddy lists are read one after the other, so
/// under concurrent use the numbers are a close approximation, not a
/// snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Chunks currently held from the platform.
    pub chunks: usize,
    /// Most chunks the allocator can hold.
    pub max_chunks: usize,
    /// Pages in the chunks held (`chunks * 2^CHUNK_ORDER`).
    pub pages_total: usize,
    /// Pages on the buddy free lists (what [`PageAllocator::buddyinfo`]
    /// counts).
    pub pages_free: usize,
    /// Free pages cached on the per-CPU lists (not in `pages_free`).
    pub pages_pcp: usize,
    /// Pages handed out to callers: `pages_total - pages_free - pages_pcp`.
    pub pages_allocated: usize,
    /// Successful allocations per order.
    pub allocs: [u64; NR_ORDERS],
    /// Failed allocations per order (no chunk could be obtained, or the
    /// fault injector failed the request).
    pub failures: [u64; NR_ORDERS],
    /// Frees rejected as invalid.
    pub invalid_frees: u64,
}

/// The state under the buddy lock.
struct Zone {
    core: BuddyCore,
    /// Allocations per order served by the buddy lists directly (order 0
    /// only when it bypasses the per-CPU lists while growing).
    allocs: [u64; NR_ORDERS],
}

/// One CPU's list of free order-0 pages.
///
/// # Invariants
///
/// `head` is 0 or the address of a free page of the owning allocator whose
/// first word holds the address of the next page of the list (0 at the end);
/// the list has `count` pages, all with tag `TAG_NOT_HANDED_OUT` and
/// allocated in the buddy core.
struct PcpList {
    head: usize,
    count: usize,
    /// Order-0 allocations served from this list.
    allocs: u64,
}

impl PcpList {
    /// Puts a page on the list.
    ///
    /// # Safety
    ///
    /// `addr` is a page of the owning allocator, allocated in its buddy core
    /// at order 0, not handed out and used by nothing else.
    unsafe fn push(&mut self, addr: usize) {
        // SAFETY: the caller gives us the page, so its first word is ours.
        unsafe { (addr as *mut usize).write(self.head) };
        // INVARIANT: the page links to the old head.
        self.head = addr;
        self.count += 1;
    }

    /// Takes a page off the list.
    fn pop(&mut self) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        let addr = self.head;
        // SAFETY: by the type invariants a non-empty list's head is a free
        // page of ours whose first word links to the next page.
        self.head = unsafe { (addr as *const usize).read() };
        self.count -= 1;
        Some(addr)
    }
}

/// The page allocator: buddy lists over chunks from the platform, per-CPU
/// lists of single pages in front.
///
/// # Invariants
///
/// `table` is the chunk table of the core in `zone`, valid until `drop`.
pub struct PageAllocator<P: Platform> {
    zone: P::Lock<Zone>,
    pcp: P::PerCpu<P::Lock<PcpList>>,
    table: NonNull<ChunkTable>,
    failures: [AtomicU64; NR_ORDERS],
    invalid_frees: AtomicU64,
    faults: FaultInjector,
    platform: P,
}

// SAFETY: the chunk table behind `table` is made for lock-free shared
// reads from any CPU; everything else is `Send`/`Sync` through `Platform`'s
// bounds and atomics.
unsafe impl<P: Platform> Send for PageAllocator<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for PageAllocator<P> {}

/// `gfp` without the zeroing request, for chunks and metadata.
fn plain_gfp(gfp: Gfp) -> Gfp {
    if gfp.may_sleep() {
        Gfp::KERNEL
    } else {
        Gfp::ATOMIC
    }
}

fn frame_of(addr: usize) -> usize {
    addr >> PAGE_SHIFT
}

fn offset_in_chunk(frame: usize) -> usize {
    frame & (CHUNK_FRAMES - 1)
}

fn addr_of_frame(frame: usize) -> usize {
    frame << PAGE_SHIFT
}

impl<P: Platform> PageAllocator<P> {
    /// Creates an allocator taking its memory from `platform`, able to hold
    /// [`crate::buddy::DEFAULT_MAX_CHUNKS`] chunks (4 GiB).
    pub fn new(platform: P) -> Result<Self, AllocError> {
        Self::with_max_chunks(platform, crate::buddy::DEFAULT_MAX_CHUNKS)
    }

    /// Creates an allocator able to hold `max_chunks` chunks (clamped to
    /// `1..=`[`crate::buddy::MAX_CHUNKS_LIMIT`]).
    ///
    /// Bookkeeping from [`Platform::alloc_meta`]: the chunk table, 32 bytes
    /// per chunk of capacity, at once; and about 21 KiB of metadata per
    /// chunk (0.5% of its 4 MiB), taken when a chunk is added and kept for
    /// reuse after the chunk is given back, until the allocator is dropped.
    /// So metadata follows the largest number of chunks held at once.
    pub fn with_max_chunks(platform: P, max_chunks: usize) -> Result<Self, AllocError> {
        let pcp = platform.new_percpu(|_| {
            platform.new_lock(
                PcpList {
                    head: 0,
                    count: 0,
                    allocs: 0,
                },
                LockClass::PageCpu,
            )
        })?;
        let core = BuddyCore::new(&platform, max_chunks, Gfp::KERNEL)?;
        let table = NonNull::from(core.table());
        let table_layout = core.table_layout();
        let zone = Zone {
            core,
            allocs: [0; NR_ORDERS],
        };
        let zone = match platform.new_lock(zone, LockClass::Buddy) {
            Ok(zone) => zone,
            Err(error) => {
                // SAFETY: the failed `new_lock` dropped the core, which has
                // no drop glue touching memory and never had chunks, so its
                // only allocation is the table: from this platform's
                // `alloc_meta`, at `table` with `table_layout`.
                unsafe { platform.free_meta(table.cast(), table_layout) };
                return Err(error);
            }
        };
        // INVARIANT: `table` belongs to the core now inside `zone`.
        Ok(PageAllocator {
            zone,
            pcp,
            table,
            failures: Default::default(),
            invalid_frees: AtomicU64::new(0),
            faults: FaultInjector::new(),
            platform,
        })
    }

    /// The platform this allocator runs on.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The fault injector consulted by every page request (off unless set).
    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    #[inline(always)]
    fn table(&self) -> &ChunkTable {
        // SAFETY: the table lives until `drop` (type invariants).
        unsafe { self.table.as_ref() }
    }

    fn this_cpu_list(&self) -> &P::Lock<PcpList> {
        // `this_cpu` is below `nr_cpu_ids` by the `Platform` contract. (No
        // `%` here: a division by a runtime value brings a divide-by-zero
        // panic path that the kernel's objtool of 6.12 does not recognise.)
        self.pcp.get(self.platform.this_cpu())
    }

    /// Allocates `2^order` pages, aligned to their size (the address is a
    /// multiple of `PAGE_SIZE << order`); zeroed if `gfp.zeroed()`.
    ///
    /// Fails if `order > MAX_ORDER`, if no chunk can be obtained, or if the
    /// fault injector fails the request; failures of valid orders are
    /// counted in [`PageStats::failures`].
    pub fn alloc_pages(&self, order: u32, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if order > MAX_ORDER {
            return Err(AllocError);
        }
        if self.faults.should_fail() {
            self.failures[order as usize].fetch_add(1, Ordering::Relaxed);
            return Err(AllocError);
        }
        let frame = if order == 0 {
            self.alloc_from_pcp()
        } else {
            self.zone.with(|zone| {
                let frame = zone.core.alloc(order);
                if frame.is_some() {
                    zone.allocs[order as usize] += 1;
                }
                frame
            })
        };
        let Some(frame) = frame.or_else(|| self.alloc_slow(order, gfp)) else {
            self.failures[order as usize].fetch_add(1, Ordering::Relaxed);
            return Err(AllocError);
        };
        self.mark_handed_out(frame, order);
        let addr = addr_of_frame(frame) as *mut u8;
        if gfp.zeroed() {
            // SAFETY: the block of `PAGE_SIZE << order` bytes was just
            // allocated for this caller; nothing else uses it.
            unsafe { addr.write_bytes(0, PAGE_SIZE << order) };
        }
        // Chunks are real memory, never at address 0.
        NonNull::new(addr).ok_or(AllocError)
    }

    /// When the lists cannot serve a request: grow by a chunk, or if the
    /// platform has none, give the pages cached on every CPU's list back to
    /// the buddy lists and try once more (as the kernel drains its per-CPU
    /// lists before declaring memory exhausted).
    fn alloc_slow(&self, order: u32, gfp: Gfp) -> Option<usize> {
        self.grow_and_alloc(order, gfp).or_else(|| {
            self.drain_all_pcp();
            self.zone.with(|zone| {
                let frame = zone.core.alloc(order);
                if frame.is_some() {
                    zone.allocs[order as usize] += 1;
                }
                frame
            })
        })
    }

    /// Takes an order-0 page from this CPU's list, refilling it from the
    /// buddy lists when empty.
    fn alloc_from_pcp(&self) -> Option<usize> {
        self.this_cpu_list().with(|list| {
            if list.count == 0 {
                let mut batch = [0usize; PCP_BATCH];
                let got = self.zone.with(|zone| {
                    let mut got = 0;
                    while got < PCP_BATCH {
                        let Some(frame) = zone.core.alloc(0) else {
                            break;
                        };
                        batch[got] = addr_of_frame(frame);
                        got += 1;
                    }
                    got
                });
                for &addr in &batch[..got] {
                    // SAFETY: the page was just allocated at order 0 in the
                    // core for this list and is not handed out.
                    unsafe { list.push(addr) };
                }
            }
            let addr = list.pop()?;
            list.allocs += 1;
            Some(frame_of(addr))
        })
    }

    /// Takes a new chunk from the platform, adds it to the buddy lists and
    /// allocates a block of `order` from it (under the same lock, so the
    /// chunk cannot be taken by others first).
    fn grow_and_alloc(&self, order: u32, gfp: Gfp) -> Option<usize> {
        if self.faults.should_fail() {
            return None;
        }
        let gfp = plain_gfp(gfp);
        let chunk = self.platform.alloc_pages(CHUNK_ORDER, gfp)?;
        let base = chunk.as_ptr() as usize;
        let mut spare_meta: Option<NonNull<ChunkMeta>> = None;
        let mut spare_leaf: Option<NonNull<RadixLeaf>> = None;
        let mut added = None;
        if base % CHUNK_BYTES == 0 {
            // Up to three rounds: more after allocating metadata or a radix
            // leaf, which must not happen under the lock.
            for _ in 0..3 {
                let outcome = self.zone.with(|zone| {
                    // SAFETY: `spare_meta` and `spare_leaf` come from this
                    // platform's `alloc_meta` with their layouts,
                    // initialised, and are not used here once taken.
                    let result = unsafe {
                        zone.core
                            .add_chunk(frame_of(base), &mut spare_meta, &mut spare_leaf)
                    };
                    result.map(|()| {
                        let frame = zone.core.alloc(order);
                        if frame.is_some() {
                            zone.allocs[order as usize] += 1;
                        }
                        frame
                    })
                });
                match outcome {
                    Ok(frame) => {
                        added = Some(frame);
                        break;
                    }
                    Err(AddChunkError::NeedMeta) if spare_meta.is_none() => {
                        let Some(mem) = self.platform.alloc_meta(ChunkMeta::LAYOUT, gfp) else {
                            break;
                        };
                        // SAFETY: `mem` is a fresh allocation of
                        // `ChunkMeta::LAYOUT`.
                        spare_meta = Some(unsafe { ChunkMeta::init(mem) });
                    }
                    Err(AddChunkError::NeedLeaf) if spare_leaf.is_none() => {
                        let Some(mem) = self.platform.alloc_meta(RadixLeaf::LAYOUT, gfp) else {
                            break;
                        };
                        // SAFETY: `mem` is a fresh allocation of
                        // `RadixLeaf::LAYOUT`.
                        spare_leaf = Some(unsafe { RadixLeaf::init(mem) });
                    }
                    Err(_) => break,
                }
            }
        } else {
            self.platform.report(format_args!(
                "rmm: platform returned a misaligned chunk at {base:#x}"
            ));
        }
        if let Some(meta) = spare_meta {
            // SAFETY: allocated above with this layout and not taken by the
            // core.
            unsafe { self.platform.free_meta(meta.cast(), ChunkMeta::LAYOUT) };
        }
        if let Some(leaf) = spare_leaf {
            // SAFETY: as above.
            unsafe { self.platform.free_meta(leaf.cast(), RadixLeaf::LAYOUT) };
        }
        match added {
            Some(frame) => frame,
            None => {
                // SAFETY: the chunk came from `alloc_pages` with this order
                // and was not added to the core.
                unsafe { self.platform.free_pages(chunk, CHUNK_ORDER) };
                None
            }
        }
    }

    /// Tags the pages of a block the core just allocated as handed out.
    fn mark_handed_out(&self, frame: usize, order: u32) {
        let Some(meta) = self.table().lookup(frame) else {
            debug_assert!(false, "allocated frame outside every chunk");
            return;
        };
        let offset = offset_in_chunk(frame);
        for tail in offset + 1..offset + (1 << order) {
            meta.word(tail).store(0, Ordering::Relaxed);
            meta.tag(tail).store(TAG_TAIL, Ordering::Relaxed);
        }
        meta.word(offset).store(0, Ordering::Relaxed);
        meta.aux_word(offset).store(0, Ordering::Relaxed);
        meta.tag(offset)
            .store(TAG_HEAD | order as u8, Ordering::Release);
    }

    /// One zeroed page.
    pub fn get_zeroed_page(&self, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.alloc_pages(0, gfp | Gfp::ZERO)
    }

    /// Frees a block from [`PageAllocator::alloc_pages`].
    ///
    /// Invalid frees (an address that is not ours, not the start of a
    /// handed-out block, the wrong order, a block already free, an order out
    /// of range) change nothing: they are counted in
    /// [`PageStats::invalid_frees`], reported through
    /// [`Platform::report`] with the address, and returned.
    ///
    /// # Safety
    ///
    /// If the free is valid, nothing may use the block afterwards.
    pub unsafe fn free_pages(&self, addr: NonNull<u8>, order: u32) -> Result<(), PageFreeError> {
        if let Err(error) = self.claim_for_free(addr.as_ptr() as usize, order) {
            self.invalid_frees.fetch_add(1, Ordering::Relaxed);
            self.platform.report(format_args!(
                "rmm: invalid free_pages({:p}, order {}): {}",
                addr.as_ptr(),
                order,
                error
            ));
            return Err(error);
        }
        let frame = frame_of(addr.as_ptr() as usize);
        if order == 0 {
            self.free_to_pcp(frame);
        } else {
            let result = self.zone.with(|zone| zone.core.free(frame, order));
            self.check_internal(result);
        }
        Ok(())
    }

    /// Validates a free against the page tags and, if valid, takes the block
    /// back from the caller: its tags and owner words are cleared.
    fn claim_for_free(&self, addr: usize, order: u32) -> Result<(), PageFreeError> {
        if order > MAX_ORDER {
            return Err(PageFreeError::BadOrder);
        }
        let frame = frame_of(addr);
        let meta = self.table().lookup(frame).ok_or(PageFreeError::NotOurs)?;
        if addr % PAGE_SIZE != 0 {
            return Err(PageFreeError::NotBlockHead);
        }
        let offset = offset_in_chunk(frame);
        let head_tag = TAG_HEAD | order as u8;
        let mut tag = meta.tag(offset).load(Ordering::Acquire);
        loop {
            if tag == TAG_NOT_HANDED_OUT {
                return Err(PageFreeError::AlreadyFree);
            }
            if tag & TAG_HEAD == 0 {
                return Err(PageFreeError::NotBlockHead);
            }
            if tag != head_tag {
                return Err(PageFreeError::WrongOrder {
                    actual: u32::from(tag & TAG_ORDER_MASK),
                });
            }
            // Only one of several racing frees of the block gets past this.
            match meta.tag(offset).compare_exchange(
                tag,
                TAG_NOT_HANDED_OUT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(current) => tag = current,
            }
        }
        meta.word(offset).store(0, Ordering::Relaxed);
        meta.aux_word(offset).store(0, Ordering::Relaxed);
        for tail in offset + 1..offset + (1 << order) {
            meta.tag(tail).store(TAG_NOT_HANDED_OUT, Ordering::Relaxed);
            meta.word(tail).store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Reports a core refusal that the tags should have prevented.
    fn check_internal(&self, result: Result<(), crate::buddy::FrameFreeError>) {
        if let Err(error) = result {
            self.platform.report(format_args!(
                "rmm: page tags and buddy state disagree: {error}"
            ));
            debug_assert!(false, "page tags and buddy state disagree: {error}");
        }
    }

    /// Puts a page freed by a caller on this CPU's list, draining a batch to
    /// the buddy lists if the list is above its high mark.
    fn free_to_pcp(&self, frame: usize) {
        self.this_cpu_list().with(|list| {
            // SAFETY: the page was handed out at order 0 and has just been
            // claimed back from the caller, so it is ours alone.
            unsafe { list.push(addr_of_frame(frame)) };
            if list.count > PCP_HIGH {
                self.drain_batch(list);
            }
        });
    }

    /// Moves up to [`PCP_BATCH`] pages from `list` to the buddy lists.
    fn drain_batch(&self, list: &mut PcpList) {
        let mut batch = [0usize; PCP_BATCH];
        let mut taken = 0;
        while taken < PCP_BATCH {
            let Some(addr) = list.pop() else { break };
            batch[taken] = frame_of(addr);
            taken += 1;
        }
        if taken == 0 {
            return;
        }
        let result = self.zone.with(|zone| {
            batch[..taken]
                .iter()
                .try_for_each(|&frame| zone.core.free(frame, 0))
        });
        self.check_internal(result);
    }

    /// Gives the pages on the list of `cpu`, which went offline, back to
    /// the buddy lists; returns how many.
    ///
    /// # Safety
    ///
    /// `cpu` is offline (the CPU-hotplug teardown). The lists are locked
    /// today, so this is safe in itself; it is `unsafe` so that callers
    /// keep to the hotplug contract the lock-free per-CPU data needs.
    pub unsafe fn cpu_dead(&self, cpu: usize) -> usize {
        if cpu >= self.platform.nr_cpu_ids() {
            return 0;
        }
        self.pcp.get(cpu).with(|list| {
            let count = list.count;
            while list.count > 0 {
                self.drain_batch(list);
            }
            count
        })
    }

    /// Empties every CPU's list into the buddy lists.
    fn drain_all_pcp(&self) {
        for cpu in 0..self.platform.nr_cpu_ids() {
            self.pcp.get(cpu).with(|list| {
                while list.count > 0 {
                    self.drain_batch(list);
                }
            });
        }
    }

    /// Sets the owner word of every page of the handed-out block of
    /// `2^order` pages at `addr` (like the slab pointer in `struct page`),
    /// and the block's auxiliary word (kept once, for the head page; the
    /// slab layer keeps an off-slab descriptor there, as `struct slab`
    /// would). The words are cleared when the block is freed. A call that
    /// does not name a handed-out block is reported and ignored.
    pub fn set_block_owner(&self, addr: NonNull<u8>, order: u32, owner: usize, aux: usize) {
        let addr_value = addr.as_ptr() as usize;
        let frame = frame_of(addr_value);
        let meta = match self.table().lookup(frame) {
            Some(meta)
                if order <= MAX_ORDER
                    && addr_value % PAGE_SIZE == 0
                    && meta.tag(offset_in_chunk(frame)).load(Ordering::Acquire)
                        == TAG_HEAD | order as u8 =>
            {
                meta
            }
            _ => {
                self.platform.report(format_args!(
                    "rmm: set_block_owner({:p}, order {}): not an allocated block",
                    addr.as_ptr(),
                    order
                ));
                return;
            }
        };
        let offset = offset_in_chunk(frame);
        meta.aux_word(offset).store(aux, Ordering::Release);
        for page in offset..offset + (1 << order) {
            meta.word(page).store(owner, Ordering::Release);
        }
    }

    /// The auxiliary word of the handed-out block starting at `block` (see
    /// [`PageAllocator::set_block_owner`]), 0 if none was set or `block` is
    /// not in a chunk of ours.
    pub fn block_aux(&self, block: *const u8) -> usize {
        let frame = frame_of(block as usize);
        match self.table().lookup(frame) {
            Some(meta) => meta
                .aux_word(offset_in_chunk(frame))
                .load(Ordering::Acquire),
            None => 0,
        }
    }

    /// The owner word of the handed-out block containing `addr` (any byte
    /// of it), 0 if none was set; `None` if `addr` is not inside a block
    /// this allocator has handed out.
    ///
    /// Lock-free: two directory loads, the chunk's key, its tag and word.
    #[inline(always)]
    pub fn block_owner(&self, addr: *const u8) -> Option<usize> {
        let frame = frame_of(addr as usize);
        let meta = self.table().lookup(frame)?;
        let offset = offset_in_chunk(frame);
        if meta.tag(offset).load(Ordering::Acquire) == TAG_NOT_HANDED_OUT {
            return None;
        }
        Some(meta.word(offset).load(Ordering::Acquire))
    }

    /// The owner word of the block containing `addr` (any byte of it), or 0
    /// if `addr` is in no chunk of ours or its page is not handed out:
    /// [`PageAllocator::block_owner`] without the `Option`, for the slab
    /// free fast path. Owner words are cleared when their block is freed,
    /// so the tag need not be read.
    #[inline(always)]
    pub fn owner_word(&self, addr: *const u8) -> usize {
        let frame = frame_of(addr as usize);
        match self.table().lookup(frame) {
            Some(meta) => meta.word(offset_in_chunk(frame)).load(Ordering::Acquire),
            None => 0,
        }
    }

    /// Drains the per-CPU lists, then gives every chunk whose pages are all
    /// free back to the platform. Returns the number of pages given back.
    pub fn shrink(&self) -> usize {
        self.drain_all_pcp();
        let mut released = 0;
        while let Some(base_frame) = self.zone.with(|zone| zone.core.take_free_chunk()) {
            // Chunks are real memory, never at address 0.
            if let Some(chunk) = NonNull::new(addr_of_frame(base_frame) as *mut u8) {
                // SAFETY: the chunk came from `alloc_pages` with
                // `CHUNK_ORDER`, it is out of the core and all its pages
                // were free.
                unsafe { self.platform.free_pages(chunk, CHUNK_ORDER) };
                released += CHUNK_FRAMES;
            }
        }
        released
    }

    /// Free blocks per order on the buddy lists, like a line of
    /// `/proc/buddyinfo`. Pages cached on the per-CPU lists are not
    /// included, as in the kernel; see [`PageStats::pages_pcp`].
    pub fn buddyinfo(&self) -> [usize; NR_ORDERS] {
        self.zone.with(|zone| zone.core.free_blocks())
    }

    /// The allocator's counters.
    pub fn stats(&self) -> PageStats {
        let mut pages_pcp = 0;
        let mut order0_pcp_allocs = 0;
        for cpu in 0..self.platform.nr_cpu_ids() {
            self.pcp.get(cpu).with(|list| {
                pages_pcp += list.count;
                order0_pcp_allocs += list.allocs;
            });
        }
        let mut stats = self.zone.with(|zone| PageStats {
            chunks: zone.core.chunks(),
            max_chunks: zone.core.max_chunks(),
            pages_total: zone.core.total_frames(),
            pages_free: zone.core.free_frames(),
            allocs: zone.allocs,
            ..PageStats::default()
        });
        stats.allocs[0] += order0_pcp_allocs;
        stats.pages_pcp = pages_pcp;
        stats.pages_allocated = stats
            .pages_total
            .saturating_sub(stats.pages_free)
            .saturating_sub(pages_pcp);
        for (count, failures) in stats.failures.iter_mut().zip(&self.failures) {
            *count = failures.load(Ordering::Relaxed);
        }
        stats.invalid_frees = self.invalid_frees.load(Ordering::Relaxed);
        stats
    }

    /// Checks the buddy core's invariants (O(pages); for tests).
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        self.zone.with(|zone| zone.core.check_invariants())
    }
}

/// Dropping the allocator gives every chunk back to the platform, including
/// chunks with pages still handed out: the allocator's users must be gone
/// by then, and keeping the memory would only turn a use-after-free into a
/// leak nobody can reclaim. Pages still handed out are reported as a leak,
/// one line per chunk that has some.
impl<P: Platform> Drop for PageAllocator<P> {
    fn drop(&mut self) {
        self.drain_all_pcp();
        let mut leaked = 0;
        while let Some(evicted) = self.zone.with(|zone| zone.core.evict_chunk()) {
            let addr = addr_of_frame(evicted.base_frame) as *mut u8;
            if evicted.allocated_frames != 0 {
                leaked += evicted.allocated_frames;
                self.platform.report(format_args!(
                    "rmm: chunk {:p} freed with {} pages still allocated",
                    addr, evicted.allocated_frames
                ));
            }
            // Chunks are real memory, never at address 0.
            if let Some(chunk) = NonNull::new(addr) {
                // SAFETY: the chunk came from `alloc_pages` with
                // `CHUNK_ORDER` and is out of the core; users are gone (see
                // above).
                unsafe { self.platform.free_pages(chunk, CHUNK_ORDER) };
            }
        }
        if leaked != 0 {
            self.platform.report(format_args!(
                "rmm: page allocator dropped with {leaked} pages leaked"
            ));
        }
        let platform = &self.platform;
        self.zone.with(|zone| {
            // SAFETY: the core was created with this platform, its metadata
            // came from this platform's `alloc_meta` with the right layout,
            // and after this `drop` nothing uses the table or the core.
            unsafe { zone.core.destroy(platform) }
        });
    }
}
