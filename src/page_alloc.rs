// SPDX-License-Identifier: GPL-2.0

//! The page allocator: a buddy allocator over chunks of pages taken from the
//! platform, with per-CPU lists of small blocks in front of it.
//!
//! Long because one concept, the allocator over the buddy core, has many
//! faces that share its tags and lists: chunks in and out, the per-CPU
//! lists of four orders, page tags and owner words, watermarks, draining
//! for CPU hotplug and shrinking, statistics; the buddy algorithm itself,
//! the fault injector and the watermark arithmetic are in their own files.
//!
//! - Memory comes from [`Platform::alloc_pages`] in chunks of
//!   `2^CHUNK_ORDER` pages, taken when the free lists cannot serve a
//!   request. [`PageAllocator::shrink`] gives chunks whose pages are all free
//!   back; dropping the allocator gives back every chunk.
//! - Memory is kept per node (see [`numa`]): chunks are taken from the
//!   platform on a given node, the buddy lists are per node, a CPU's lists
//!   hold blocks of its own node only, and a request is served from its
//!   preferred node first, then from the others by distance, counted.
//! - The buddy state ([`BuddyCore`]) sits under one [`LockClass::Buddy`]
//!   lock, all nodes' lists together (the kernel has a lock per zone; here
//!   the per-CPU lists in front take the lock once per batch). Blocks of orders 0 to [`PCP_MAX_ORDER`] (the kernel's
//!   `PAGE_ALLOC_COSTLY_ORDER`) go through one list per CPU and order, like
//!   the kernel's `pcp` lists: only their CPU touches them, with interrupts
//!   off ([`PerCpu::with_local`]) and no lock, so the common allocation and
//!   free touch only the local list. An empty list is refilled with
//!   [`pcp_batch`] blocks, and a list grown above [`pcp_high`] is drained
//!   by a batch, under the buddy lock. Other CPUs' lists are emptied by
//!   their own CPUs ([`Platform::on_each_cpu`]), or after their CPU went
//!   offline ([`PageAllocator::cpu_dead`]). Blocks on a per-CPU list are
//!   linked through their first page (they are free, so nothing else uses
//!   it), which also names the block's chunk metadata.
//! - Each chunk's metadata has, per page, an atomic *tag* and an atomic
//!   *owner word*. Only the first page of a handed-out block is tagged (with
//!   its order); the other pages of a block are not touched when it is
//!   handed out or taken back, so the cost of an allocation and a free does
//!   not grow with the block. Frees are validated against the tags without
//!   any lock, and a compare-and-swap on the first page's tag lets exactly
//!   one of two racing frees of a block through. Owner words are written
//!   into every page of a block only by [`PageAllocator::set_block_owner`]
//!   (the slab layer, for its slabs), and cleared again when such a block is
//!   freed; [`PageAllocator::block_owner`] reads them through the lock-free
//!   chunk table.
//!
//! - Watermarks `min`, `low` and `high` on the free pages of the buddy
//!   lists, as the kernel keeps on each zone (see [`watermark`]), decide
//!   who may take the last free pages: a request that would take them
//!   below `low` first refills the pool from the platform if it may sleep;
//!   `GFP_NOWAIT` stops at `low`, a sleeping request whose refill failed
//!   at `min`, and only `GFP_ATOMIC` may go below `min`, into the
//!   emergency reserve. Blocks are checked when they leave the buddy lists
//!   (a per-CPU list's refill, a block of a higher order); a request served
//!   by a CPU's list takes pages that left the free count, under that
//!   check, when the list was filled.
//!
//! Nothing slow runs under a lock: pages and metadata are requested from the
//! platform, and blocks are zeroed, with no lock held.
//!
//! For tests of the failure paths, a [`FaultInjector`] (see [`fault`]) can
//! make every N-th page request fail: every [`PageAllocator::alloc_pages`]
//! call, every vmalloc mapping and every chunk request to the platform is
//! one request (or only the chunk requests, [`FailScope::Refill`]).

pub mod fault;
pub mod numa;
pub mod watermark;

pub use self::fault::{FailScope, FaultInjector, FaultStats};
pub use self::numa::NodeStats;
pub use self::watermark::{Reserve, ReserveBasis, WatermarkStats, Watermarks};

use self::numa::{count_alloc, NodeCounters, NodeOrder};
use self::watermark::{reserve_pages, WatermarkCounters};

use crate::buddy::{
    AddChunkError, AllocatedBlock, BuddyCore, ChunkMeta, ChunkTable, FrameFreeError, RadixLeaf,
    CHUNK_FRAMES, NR_ORDERS,
};
use crate::gfp::Gfp;
use crate::platform::{
    AllocError, Lock, LockClass, PerCpu, Platform, MAX_NODES, PAGE_SHIFT, PAGE_SIZE,
};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Largest block order handed out: blocks of `2^0 ..= 2^MAX_ORDER` pages.
pub const MAX_ORDER: u32 = crate::buddy::MAX_ORDER;
/// Order of the chunks taken from the platform (one chunk is one block of
/// the largest order).
pub const CHUNK_ORDER: u32 = MAX_ORDER;
/// Highest order served by the per-CPU lists, the kernel's
/// `PAGE_ALLOC_COSTLY_ORDER`: larger blocks always go to the buddy lists.
pub const PCP_MAX_ORDER: u32 = 3;
/// Orders with a per-CPU list: `0..=PCP_MAX_ORDER`.
pub const PCP_ORDERS: usize = PCP_MAX_ORDER as usize + 1;
/// Order-0 pages moved between a per-CPU list and the buddy lists at a
/// time ([`pcp_batch`] of order 0).
pub const PCP_BATCH: usize = 16;
/// An order-0 per-CPU list holding more pages than this is drained by
/// [`PCP_BATCH`] ([`pcp_high`] of order 0).
pub const PCP_HIGH: usize = 64;

/// Blocks of `order` moved between a per-CPU list and the buddy lists at a
/// time: [`PCP_BATCH`] pages' worth, at least 2 blocks (the kernel's
/// `nr_pcp_alloc` scales its batch the same way for orders above 0).
pub const fn pcp_batch(order: u32) -> usize {
    let blocks = PCP_BATCH >> (order & 31);
    if blocks > 2 {
        blocks
    } else {
        2
    }
}

/// A per-CPU list of `order` holding more blocks than this is drained by
/// [`pcp_batch`]: [`PCP_HIGH`] pages' worth, at least twice the batch.
pub const fn pcp_high(order: u32) -> usize {
    let blocks = PCP_HIGH >> (order & 31);
    let floor = 2 * pcp_batch(order);
    if blocks > floor {
        blocks
    } else {
        floor
    }
}

/// Bytes in a chunk.
const CHUNK_BYTES: usize = PAGE_SIZE << CHUNK_ORDER;
/// Page tag: not the first page of a handed-out block (free, cached on a
/// per-CPU list, or a later page of a block of any kind).
const TAG_NOT_HANDED_OUT: u8 = 0;
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
    /// Blocks cached on the per-CPU lists per order, all CPUs together (0
    /// above [`PCP_MAX_ORDER`]); `pages_pcp` is their sum in pages.
    pub pcp_blocks: [usize; NR_ORDERS],
    /// Successful allocations per order.
    pub allocs: [u64; NR_ORDERS],
    /// Failed allocations per order (no chunk could be obtained, or the
    /// fault injector failed the request).
    pub failures: [u64; NR_ORDERS],
    /// Frees rejected as invalid.
    pub invalid_frees: u64,
    /// Number of node numbers: `nodes[..nr_nodes]` are meaningful.
    pub nr_nodes: usize,
    /// Each node's pages, allocations and frees.
    pub nodes: [NodeStats; MAX_NODES],
}

/// The state under the buddy lock.
///
/// # Invariants
///
/// `nodes[n].wm` is the watermarks of node `n`'s share of the reserve of
/// `reserve` and `basis` (in proportion to its pages), for the pages of
/// its chunks in `core` ([`Zone::update_watermarks`] after every change).
struct Zone {
    core: BuddyCore,
    nodes: [NodeZone; MAX_NODES],
    reserve: Reserve,
    basis: ReserveBasis,
}

/// One node's part of the [`Zone`], as each node has its own zone in the
/// kernel.
#[derive(Clone, Copy, Default)]
struct NodeZone {
    /// Allocations per order served by the buddy lists directly (for the
    /// per-CPU orders only when a request bypasses the lists: a new chunk,
    /// a request below `low`, a pinned or fallback request, or a retry
    /// after draining).
    allocs: [u64; NR_ORDERS],
    /// Frees given straight to the buddy lists (not through a per-CPU
    /// list), local and remote.
    frees: u64,
    wm: Watermarks,
}

/// Why [`Zone::alloc_to_floor`] found no block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Short {
    /// The free pages cover the request, but only below what its flags
    /// allow.
    Watermark,
    /// No free block of the order.
    Empty,
}

impl Zone {
    #[inline(always)]
    fn node(&self, node: usize) -> &NodeZone {
        &self.nodes[node & (MAX_NODES - 1)]
    }

    /// Allocates a block of `order` on `node` for a caller, counting it.
    #[inline(always)]
    fn alloc(&mut self, order: u32, node: usize) -> Option<Taken> {
        let block = self.core.alloc_block(order, node)?;
        let zone = &mut self.nodes[node & (MAX_NODES - 1)];
        if let Some(count) = zone.allocs.get_mut(order as usize) {
            *count = count.wrapping_add(1);
        }
        Some(Taken::from(block))
    }

    /// Whether taking a block of `order` leaves at least `low` free pages
    /// on `node`.
    #[inline(always)]
    fn above_low(&self, order: u32, node: usize) -> bool {
        self.core.free_frames_on(node) >= pages_of(order).wrapping_add(self.node(node).wm.low)
    }

    /// [`Zone::alloc`] if the block leaves at least `low` free pages on
    /// `node`.
    #[inline(always)]
    fn alloc_above_low(&mut self, order: u32, node: usize) -> Option<Taken> {
        if !self.above_low(order, node) {
            return None;
        }
        self.alloc(order, node)
    }

    /// [`Zone::alloc`] down to the lowest level `gfp` allows: `low` for
    /// `GFP_NOWAIT`, `min` for a request that may sleep (after its refill
    /// failed), nothing for one that may use the reserve. Counts what went
    /// below `low` in `counters`.
    fn alloc_to_floor(
        &mut self,
        order: u32,
        node: usize,
        gfp: Gfp,
        counters: &WatermarkCounters,
    ) -> Result<Taken, Short> {
        let pages = pages_of(order);
        let after = self
            .core
            .free_frames_on(node)
            .checked_sub(pages)
            .ok_or(Short::Empty)?;
        let wm = self.node(node).wm;
        let floor = if gfp.may_use_reserve() {
            0
        } else if gfp.may_sleep() {
            wm.min
        } else {
            wm.low
        };
        if after < floor {
            return Err(Short::Watermark);
        }
        let taken = self.alloc(order, node).ok_or(Short::Empty)?;
        if after < wm.min {
            WatermarkCounters::bump(&counters.reserve_allocs, 1);
            let below = (wm.min - after).min(pages);
            WatermarkCounters::bump(&counters.reserve_pages, below as u64);
        } else if after < wm.low {
            WatermarkCounters::bump(&counters.min_allocs, 1);
        }
        Ok(taken)
    }

    /// Recomputes the watermarks after the pool or the reserve changed:
    /// the reserve of the whole pool is shared among the nodes in
    /// proportion to their pages, as `__setup_per_zone_wmarks` shares
    /// `min_free_kbytes` among zones.
    fn update_watermarks(&mut self) {
        let managed = self.core.total_frames();
        let reserve = reserve_pages(self.reserve, self.basis, managed) as u64;
        for (node, zone) in self.nodes.iter_mut().enumerate() {
            let node_managed = self.core.total_frames_on(node);
            let share = reserve
                .saturating_mul(node_managed as u64)
                .checked_div(managed as u64)
                .unwrap_or(0) as usize;
            // INVARIANT: the node's watermarks for the current pool and
            // reserve.
            zone.wm = Watermarks::compute(share, node_managed);
        }
    }

    /// The watermarks of all nodes added up.
    fn total_watermarks(&self) -> Watermarks {
        self.nodes
            .iter()
            .fold(Watermarks::default(), |sum, zone| Watermarks {
                min: sum.min + zone.wm.min,
                low: sum.low + zone.wm.low,
                high: sum.high + zone.wm.high,
            })
    }
}

/// A free block just taken for a caller, with its chunk's metadata.
#[derive(Clone, Copy)]
struct Taken {
    addr: usize,
    meta: NonNull<ChunkMeta>,
}

impl From<AllocatedBlock> for Taken {
    #[inline(always)]
    fn from(block: AllocatedBlock) -> Self {
        Taken {
            addr: addr_of_frame(block.frame),
            meta: block.meta,
        }
    }
}

/// What a per-CPU list keeps in the first page of each of its blocks.
#[repr(C)]
struct PcpNode {
    /// Address of the next block of the list, 0 at the end.
    next: usize,
    /// Metadata of the block's chunk.
    meta: NonNull<ChunkMeta>,
}

/// A count bumped only by the CPU owning its list (a plain load and store,
/// no locked instruction, wrapping as the kernel's statistics do), read by
/// anyone.
#[derive(Default)]
struct LocalCount(AtomicU64);

impl LocalCount {
    #[inline(always)]
    fn bump(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One CPU's list of free blocks of one order, like one list of the
/// kernel's `struct per_cpu_pages`, with its own `count`, `high` and
/// `batch`.
///
/// Lives in the allocator's per-CPU storage. The list itself (`head`, the
/// blocks on it, `count` as written) is only touched with exclusive use of
/// the CPU's lists: by its CPU inside [`PerCpu::with_local`], by
/// [`Platform::on_each_cpu`], for a CPU that is offline by the hotplug
/// teardown ([`PageAllocator::cpu_dead`]), or by `drop`. The methods that
/// touch it are `unsafe` for that reason. `count` and `allocs` may be read
/// by anyone.
///
/// # Invariants
///
/// `head` is 0 or the address of the first block of the list; each block's
/// first page begins with a [`PcpNode`] linking to the next block (0 after
/// the last) and naming the block's chunk metadata. The list has `count`
/// blocks, all of its order, allocated in the buddy core, not handed out
/// (head tag `TAG_NOT_HANDED_OUT`) and with all owner words 0. `high` and
/// `batch` never change.
struct PcpList {
    head: AtomicUsize,
    count: AtomicUsize,
    high: usize,
    batch: usize,
    /// Allocations served from this list.
    allocs: LocalCount,
    /// Frees put on this list.
    frees: LocalCount,
}

impl PcpList {
    fn new(order: u32) -> Self {
        // INVARIANT: empty.
        PcpList {
            head: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            high: pcp_high(order),
            batch: pcp_batch(order),
            allocs: LocalCount::default(),
            frees: LocalCount::default(),
        }
    }

    /// Blocks on the list (a recent value when read from another CPU).
    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Puts a block on the list; returns whether the list is now above its
    /// high mark.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the list. `addr` is a block of the
    /// list's order of the owning allocator, allocated in its buddy core,
    /// not handed out, with its owner words 0, and used by nothing else;
    /// `meta` is the metadata of its chunk.
    #[inline(always)]
    unsafe fn push(&self, addr: usize, meta: NonNull<ChunkMeta>) -> bool {
        let next = self.head.load(Ordering::Relaxed);
        // SAFETY: the caller gives us the block, so its first page is ours;
        // blocks are page-aligned, so aligned for a `PcpNode`.
        unsafe { (addr as *mut PcpNode).write(PcpNode { next, meta }) };
        // At most one count per page of the allocator: no overflow.
        let count = self.count.load(Ordering::Relaxed).wrapping_add(1);
        // INVARIANT: the block links to the old head and names its chunk.
        self.head.store(addr, Ordering::Relaxed);
        self.count.store(count, Ordering::Relaxed);
        count > self.high
    }

    /// Takes the most recently pushed block off the list.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of the list.
    #[inline(always)]
    unsafe fn pop(&self) -> Option<Taken> {
        let addr = self.head.load(Ordering::Relaxed);
        if addr == 0 {
            return None;
        }
        // SAFETY: by the type invariants a non-empty list's head is a free
        // block of ours that begins with its node; exclusive use per the
        // caller.
        let node = unsafe { (addr as *const PcpNode).read() };
        self.head.store(node.next, Ordering::Relaxed);
        // The list holds `addr`, so `count > 0`.
        self.count.store(
            self.count.load(Ordering::Relaxed).wrapping_sub(1),
            Ordering::Relaxed,
        );
        Some(Taken {
            addr,
            meta: node.meta,
        })
    }

    /// [`PcpList::pop`] for a caller, counted.
    ///
    /// # Safety
    ///
    /// As [`PcpList::pop`].
    #[inline(always)]
    unsafe fn pop_for_caller(&self) -> Option<Taken> {
        // SAFETY: the caller's guarantee, passed on.
        let taken = unsafe { self.pop() }?;
        self.allocs.bump();
        Some(taken)
    }
}

/// One CPU's per-CPU lists, one per order `0..=PCP_MAX_ORDER`.
///
/// # Invariants
///
/// Every block on the lists is on node `node`, the CPU's node.
struct PcpLists {
    lists: [PcpList; PCP_ORDERS],
    node: usize,
}

impl PcpLists {
    fn new(node: usize) -> Self {
        // INVARIANT: empty lists.
        PcpLists {
            node,
            lists: [
                PcpList::new(0),
                PcpList::new(1),
                PcpList::new(2),
                PcpList::new(3),
            ],
        }
    }

    /// The list of `order` (masked to the per-CPU orders: callers check
    /// `order <= PCP_MAX_ORDER` first).
    #[inline(always)]
    fn list(&self, order: u32) -> &PcpList {
        &self.lists[order as usize & (PCP_ORDERS - 1)]
    }
}

/// The page allocator: buddy lists over chunks from the platform, per-CPU
/// lists of small blocks in front.
///
/// # Invariants
///
/// `table` is the chunk table of the core in `zone`, valid until `drop`;
/// the chunk metadata it leads to, and that blocks on the per-CPU lists
/// name, stays valid until then too.
pub struct PageAllocator<P: Platform> {
    zone: P::Lock<Zone>,
    pcp: P::PerCpu<PcpLists>,
    table: NonNull<ChunkTable>,
    failures: [AtomicU64; NR_ORDERS],
    invalid_frees: AtomicU64,
    faults: FaultInjector,
    wm_counters: WatermarkCounters,
    /// The next owner id to hand out (see [`PageAllocator::reserve_owner_ids`]).
    next_owner_id: AtomicUsize,
    nodes: NodeOrder,
    node_counters: [NodeCounters; MAX_NODES],
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
    gfp.without_zero()
}

#[inline(always)]
fn frame_of(addr: usize) -> usize {
    addr >> PAGE_SHIFT
}

#[inline(always)]
fn offset_in_chunk(frame: usize) -> usize {
    frame & (CHUNK_FRAMES - 1)
}

#[inline(always)]
fn addr_of_frame(frame: usize) -> usize {
    frame << PAGE_SHIFT
}

/// Pages in a block of `order` (at most [`MAX_ORDER`]).
#[inline(always)]
fn pages_of(order: u32) -> usize {
    1usize << (order & 31)
}

/// The order of the handed-out block covering page `offset` of the chunk
/// of `meta`, if one does. Walks the page's possible block heads from the
/// page itself up, reading at most [`NR_ORDERS`] tags: handed-out blocks do
/// not overlap, so the first head tag found either covers the page or
/// proves that no block does.
#[inline(never)]
fn covering_block(meta: &ChunkMeta, offset: usize) -> Option<u32> {
    for order in 0..=MAX_ORDER {
        let head = offset & !(pages_of(order) - 1);
        let tag = meta.tag(head).load(Ordering::Acquire);
        if tag & TAG_HEAD != 0 {
            let block_order = u32::from(tag & TAG_ORDER_MASK);
            return (block_order >= order).then_some(block_order);
        }
    }
    None
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
        let nodes = NodeOrder::new(&platform);
        // A CPU of a node without memory takes its pages from the nearest
        // node with memory, as the kernel's `numa_mem_id` says.
        let pcp = platform.new_percpu(|cpu| {
            let node = nodes
                .fallbacks(platform.cpu_node(cpu))
                .first()
                .map_or(0, |&node| usize::from(node));
            Ok(PcpLists::new(node))
        })?;
        let core = BuddyCore::new(&platform, max_chunks, Gfp::KERNEL)?;
        let table = NonNull::from(core.table());
        let table_layout = core.table_layout();
        // INVARIANT: no chunks, so no watermarks whatever the reserve.
        let zone = Zone {
            core,
            nodes: [NodeZone::default(); MAX_NODES],
            reserve: Reserve::Auto,
            basis: platform.reserve_basis(),
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
            wm_counters: WatermarkCounters::default(),
            next_owner_id: AtomicUsize::new(1),
            nodes,
            node_counters: Default::default(),
            platform,
        })
    }

    /// Reserves `count` consecutive owner ids for the users of this
    /// allocator's owner words (slab caches, kmalloc instances), or `None`
    /// once they run out (above `max`). Ids are distinct among the users of
    /// one page allocator, which is all an owner word needs: a word lives
    /// in that allocator's pages.
    pub(crate) fn reserve_owner_ids(&self, count: usize, max: usize) -> Option<usize> {
        let first = self.next_owner_id.fetch_add(count, Ordering::Relaxed);
        if first.checked_add(count)? > max {
            return None;
        }
        Some(first)
    }

    /// The platform this allocator runs on.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The fault injector consulted by every page request (off unless set).
    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// Sets the size of the emergency reserve (the `min` watermark), and
    /// reads the platform's [`ReserveBasis`] again for [`Reserve::Auto`].
    /// The other watermarks follow. Nothing is allocated or freed: the next
    /// request that may sleep refills the pool if it is now below `low`.
    pub fn set_reserve(&self, reserve: Reserve) {
        let basis = self.platform.reserve_basis();
        self.zone.with(|zone| {
            zone.reserve = reserve;
            zone.basis = basis;
            zone.update_watermarks();
        });
    }

    /// The reserve setting.
    pub fn reserve(&self) -> Reserve {
        self.zone.with(|zone| zone.reserve)
    }

    /// The watermarks of the pool as it is now (they follow its size), all
    /// nodes' added up.
    pub fn watermarks(&self) -> Watermarks {
        self.zone.with(|zone| zone.total_watermarks())
    }

    /// The watermarks of `node`'s part of the pool.
    pub fn node_watermarks(&self, node: usize) -> Watermarks {
        self.zone.with(|zone| zone.node(node).wm)
    }

    /// Number of node numbers (`nr_node_ids`, at most [`MAX_NODES`]).
    pub fn nr_nodes(&self) -> usize {
        self.nodes.nr_nodes()
    }

    /// Whether requests may name `node`: a node with memory, present when
    /// the allocator was created.
    pub fn node_has_memory(&self, node: usize) -> bool {
        self.nodes.has_memory(node)
    }

    /// The nodes a request preferring `node` tries, in order: `node`, then
    /// the others with memory by distance.
    pub fn fallback_order(&self, node: usize) -> &[u8] {
        self.nodes.fallbacks(node)
    }

    /// The node of the calling CPU (a hint, like [`Platform::this_cpu`]).
    #[inline]
    pub fn this_node(&self) -> usize {
        self.pcp.with_local(|lists| lists.node)
    }

    /// The node of the block containing `addr`, from its chunk (no lock);
    /// `None` if `addr` is in no chunk of ours. Reliable for blocks the
    /// caller holds.
    #[inline]
    pub fn node_of(&self, addr: *const u8) -> Option<usize> {
        self.table()
            .lookup(frame_of(addr as usize))
            .map(|meta| meta.node())
    }

    /// The watermarks' decisions so far.
    pub fn watermark_stats(&self) -> WatermarkStats {
        self.wm_counters.stats()
    }

    /// Empties every online CPU's per-CPU lists into the buddy lists, each
    /// CPU its own ([`Platform::on_each_cpu`]). Call only where sleeping is
    /// allowed and no interrupt-disabling lock is held.
    pub fn drain_pcp(&self) {
        self.drain_all_pcp();
    }

    /// Pages cached on the per-CPU lists of `cpu`, all orders (a recent
    /// value; 0 for a CPU number out of range).
    pub fn pcp_pages(&self, cpu: usize) -> usize {
        if cpu >= self.platform.nr_cpu_ids() {
            return 0;
        }
        let lists = self.pcp.get(cpu);
        (0..)
            .zip(&lists.lists)
            .map(|(order, list)| list.count() << order)
            .sum()
    }

    /// The address of the first chunk held and the end of the last one, in
    /// address order: the range the pool's pages span, holes between
    /// chunks included. `None` without chunks.
    pub fn span(&self) -> Option<(NonNull<u8>, usize)> {
        self.span_of(None)
    }

    /// [`PageAllocator::span`] of `node`'s chunks only: the range a node's
    /// zone spans.
    pub fn node_span(&self, node: usize) -> Option<(NonNull<u8>, usize)> {
        self.span_of(Some(node))
    }

    fn span_of(&self, node: Option<usize>) -> Option<(NonNull<u8>, usize)> {
        let (first, last) = self.zone.with(|zone| {
            let mut first = usize::MAX;
            let mut last = 0;
            zone.core.for_each_chunk(|frame| {
                let on = |node| {
                    zone.core
                        .table()
                        .lookup(frame)
                        .is_some_and(|meta| meta.node() == node)
                };
                if node.map_or(true, on) {
                    first = first.min(frame);
                    last = last.max(frame);
                }
            });
            (first, last)
        });
        if first > last {
            return None;
        }
        let start = NonNull::new(addr_of_frame(first) as *mut u8)?;
        Some((start, addr_of_frame(last).wrapping_add(CHUNK_BYTES)))
    }

    #[inline(always)]
    fn table(&self) -> &ChunkTable {
        // SAFETY: the table lives until `drop` (type invariants).
        unsafe { self.table.as_ref() }
    }

    /// Allocates `2^order` pages, aligned to their size (the address is a
    /// multiple of `PAGE_SIZE << order`); zeroed if `gfp.zeroed()`.
    ///
    /// Orders up to [`PCP_MAX_ORDER`] come from this CPU's list of the
    /// order, larger ones from the buddy lists. Blocks leave the buddy
    /// lists (into a CPU's list, or for a caller) only while the free pages
    /// stay at or above the `low` watermark. Below it:
    ///
    /// 1. a request that may sleep refills the pool: it takes a chunk from
    ///    the platform, and its block from that chunk, then more chunks
    ///    until the free pages reach `high`;
    /// 2. if there was no refill (the request may not sleep) or it failed,
    ///    the block comes from the buddy lists directly if that leaves the
    ///    free pages at or above the request's floor: `low` for
    ///    [`Gfp::NOWAIT`], `min` for [`Gfp::KERNEL`], nothing for
    ///    [`Gfp::ATOMIC`], which alone takes the reserve below `min`;
    /// 3. failing that, the per-CPU lists are emptied into the buddy lists
    ///    (every CPU's if the request may sleep, this CPU's otherwise) and
    ///    step 2 is tried once more.
    ///
    /// Fails if `order > MAX_ORDER`, if the steps find no block, or if the
    /// fault injector fails the request; failures of valid orders are
    /// counted in [`PageStats::failures`], the watermarks' decisions in
    /// [`WatermarkStats`].
    ///
    /// The request prefers the calling CPU's node; see
    /// [`PageAllocator::alloc_pages_node`] for the nodes it falls back to.
    #[inline]
    pub fn alloc_pages(&self, order: u32, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if order > MAX_ORDER {
            return Err(AllocError);
        }
        if self.faults.should_fail() {
            return Err(self.count_failure(order));
        }
        let taken = if order <= PCP_MAX_ORDER {
            // SAFETY: `with_local` gives this CPU's lists for our exclusive
            // use.
            self.pcp
                .with_local(|lists| unsafe { lists.list(order).pop_for_caller() })
        } else {
            let node = self.this_node();
            self.zone.with(|zone| zone.alloc_above_low(order, node))
        };
        let taken = match taken {
            Some(taken) => taken,
            None => match self.alloc_slow(order, gfp, None) {
                Some(taken) => taken,
                None => return Err(self.count_failure(order)),
            },
        };
        self.hand_out(taken, order, gfp)
    }

    /// [`PageAllocator::alloc_pages`] preferring node `node` (the kernel's
    /// `alloc_pages_node`): the block comes from `node`'s lists (refilled
    /// from the platform on that node if the request may sleep), and only
    /// if `node` cannot serve it at the request's floor from the other
    /// nodes with memory in increasing distance. The node that served it is
    /// counted ([`NodeStats`]). A request for the calling CPU's node takes
    /// the per-CPU lists as `alloc_pages` does; one for another node goes
    /// to the buddy lists. Fails for a node without memory.
    pub fn alloc_pages_node(
        &self,
        order: u32,
        gfp: Gfp,
        node: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        if order > MAX_ORDER {
            return Err(AllocError);
        }
        if !self.nodes.has_memory(node) {
            return Err(self.count_failure(order));
        }
        if node == self.this_node() {
            return self.alloc_pages(order, gfp);
        }
        if self.faults.should_fail() {
            return Err(self.count_failure(order));
        }
        match self.alloc_slow(order, gfp, Some(node)) {
            Some(taken) => self.hand_out(taken, order, gfp),
            None => Err(self.count_failure(order)),
        }
    }

    /// Tags a block just taken for a caller as handed out, zeroes it if
    /// asked, and returns its address.
    #[inline(always)]
    fn hand_out(&self, taken: Taken, order: u32, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: chunk metadata stays valid until `drop` (type invariants).
        let meta = unsafe { taken.meta.as_ref() };
        // The block is ours: its first page's tag says it is handed out.
        // Its other pages' tags are 0 and its owner words 0 already.
        meta.tag(offset_in_chunk(frame_of(taken.addr)))
            .store(TAG_HEAD | order as u8, Ordering::Release);
        let addr = taken.addr as *mut u8;
        if gfp.zeroed() {
            // SAFETY: the block of `PAGE_SIZE << order` bytes was just
            // allocated for this caller; nothing else uses it.
            unsafe { addr.write_bytes(0, PAGE_SIZE << order) };
        }
        // Chunks are real memory, never at address 0.
        NonNull::new(addr).ok_or(AllocError)
    }

    /// Counts a failed request of a valid order.
    #[cold]
    #[inline(never)]
    fn count_failure(&self, order: u32) -> AllocError {
        if let Some(count) = self.failures.get(order as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        AllocError
    }

    /// When the first try found nothing: the steps of
    /// [`PageAllocator::alloc_pages`], node by node. A request that is not
    /// pinned to a node (`pinned` is `None`) prefers the calling CPU's node
    /// and, for a per-CPU order, first refills this CPU's list from that
    /// node's buddy lists (above `low`). Then, as the kernel walks its
    /// zonelist at `low` before it goes lower on any zone:
    ///
    /// 1. every node in the preferred node's fallback order, above `low`;
    ///    a request that may sleep refills each node's pool from the
    ///    platform on the way, without reclaim while another node remains
    ///    to try (the kernel's `node_reclaim_mode` 0: another node's free
    ///    memory beats reclaim on this one);
    /// 2. every node again, down to the request's floor, after a refill
    ///    that may reclaim (requests that may sleep, several nodes only);
    /// 3. the per-CPU lists are drained and every node tried at the floor
    ///    once more.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, order: u32, gfp: Gfp, pinned: Option<usize>) -> Option<Taken> {
        let cpu_node = self.this_node();
        let wanted = pinned.unwrap_or(cpu_node);
        if pinned.is_none() && order <= PCP_MAX_ORDER {
            let taken = self.pcp.with_local(|lists| {
                let list = lists.list(order);
                // SAFETY: `with_local` gives exclusive use of the list,
                // which holds blocks of `lists.node`.
                unsafe {
                    self.refill(list, order, lists.node);
                    list.pop_for_caller()
                }
            });
            if taken.is_some() {
                return taken;
            }
        }
        let nodes = self.nodes.fallbacks(wanted);
        let several = nodes.len() > 1;
        let counters = &self.wm_counters;
        let found = |node: usize, taken: Taken| {
            count_alloc(&self.node_counters, wanted, node, cpu_node);
            Some(taken)
        };
        for &node in nodes {
            let node = usize::from(node);
            if let Some(taken) = self.zone.with(|zone| zone.alloc_above_low(order, node)) {
                return found(node, taken);
            }
            if gfp.may_sleep() {
                let refill_gfp = if several { Gfp::NOWAIT } else { gfp };
                if let Some(taken) = self.refill_pool(order, refill_gfp, node) {
                    return found(node, taken);
                }
            }
        }
        let mut refused = false;
        for &node in nodes {
            let node = usize::from(node);
            if several && gfp.may_sleep() {
                if let Some(taken) = self.refill_pool(order, gfp, node) {
                    return found(node, taken);
                }
            }
            match self
                .zone
                .with(|zone| zone.alloc_to_floor(order, node, gfp, counters))
            {
                Ok(taken) => return found(node, taken),
                Err(short) => refused |= short == Short::Watermark,
            }
        }
        // As the kernel drains its per-CPU lists before declaring memory
        // exhausted: the pages cached there count as free again.
        if gfp.may_sleep() {
            self.drain_all_pcp();
        } else {
            // No IPIs where sleeping is not allowed (interrupts may be
            // off): only this CPU's lists, as the kernel drains no remote
            // lists for atomic requests.
            // SAFETY: `with_local` gives exclusive use of the lists.
            self.pcp
                .with_local(|lists| unsafe { self.drain_lists(lists) });
        }
        for &node in nodes {
            let node = usize::from(node);
            match self
                .zone
                .with(|zone| zone.alloc_to_floor(order, node, gfp, counters))
            {
                Ok(taken) => return found(node, taken),
                Err(short) => refused |= short == Short::Watermark,
            }
        }
        if refused {
            WatermarkCounters::bump(&counters.refused, 1);
        }
        None
    }

    /// Refills `node`'s pool for a request that may sleep and found its
    /// free pages below `low` (or no block of its order): takes a chunk on
    /// the node and the request's block from it, then more chunks while
    /// the node's free pages are below `high`. Returns the block, or `None`
    /// if no chunk came.
    fn refill_pool(&self, order: u32, gfp: Gfp, node: usize) -> Option<Taken> {
        WatermarkCounters::bump(&self.wm_counters.refills, 1);
        let taken = self.grow(gfp, Some(order), node)?;
        while self
            .zone
            .with(|zone| zone.core.free_frames_on(node) < zone.node(node).wm.high)
        {
            if self.grow(gfp, None, node).is_none() {
                break;
            }
        }
        taken
    }

    /// Moves up to a batch of blocks of `order` from `node`'s buddy lists
    /// onto `list`, under one hold of the buddy lock, as long as each leaves
    /// the node's free pages at or above `low`.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `list`, which is the list of `order`
    /// of some CPU of node `node`.
    unsafe fn refill(&self, list: &PcpList, order: u32, node: usize) {
        self.zone.with(|zone| {
            for _ in 0..list.batch {
                if !zone.above_low(order, node) {
                    break;
                }
                let Some(block) = zone.core.alloc_block(order, node) else {
                    break;
                };
                // SAFETY: exclusive use per the caller; the block was just
                // allocated at `order` in the core for this list, is not
                // handed out and its owner words are 0 (cleared when it was
                // last freed); `meta` is its chunk's.
                unsafe { list.push(addr_of_frame(block.frame), block.meta) };
            }
        });
    }

    /// Takes a new chunk on `node` from the platform and adds it to the
    /// node's buddy lists; with `order`, also allocates a block of that
    /// order for the caller (under the same lock, so the chunk cannot be
    /// taken by others first). `None` if no chunk came (counted as a refill
    /// failure); otherwise the block, if one was asked for. A chunk the
    /// platform put on another node than asked (it should not) is given
    /// back at once and counted as a failed refill: a node's pool holds
    /// that node's pages only.
    fn grow(&self, gfp: Gfp, order: Option<u32>, node: usize) -> Option<Option<Taken>> {
        let chunk = if self.faults.should_fail_refill() {
            None
        } else {
            self.platform.alloc_pages(CHUNK_ORDER, plain_gfp(gfp), node)
        };
        let Some(chunk) = chunk else {
            WatermarkCounters::bump(&self.wm_counters.refill_failures, 1);
            return None;
        };
        if self.platform.page_node(chunk) != node {
            // SAFETY: the chunk came from `alloc_pages` with this order and
            // is not used.
            unsafe { self.platform.free_pages(chunk, CHUNK_ORDER) };
            WatermarkCounters::bump(&self.wm_counters.refill_failures, 1);
            return None;
        }
        let gfp = plain_gfp(gfp);
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
                        zone.core.add_chunk_on(
                            frame_of(base),
                            node,
                            &mut spare_meta,
                            &mut spare_leaf,
                        )
                    };
                    result.map(|()| {
                        zone.update_watermarks();
                        order.and_then(|order| zone.alloc(order, node))
                    })
                });
                match outcome {
                    Ok(taken) => {
                        added = Some(taken);
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
            Some(taken) => {
                WatermarkCounters::bump(&self.wm_counters.refill_chunks, 1);
                Some(taken)
            }
            None => {
                // SAFETY: the chunk came from `alloc_pages` with this order
                // and was not added to the core.
                unsafe { self.platform.free_pages(chunk, CHUNK_ORDER) };
                WatermarkCounters::bump(&self.wm_counters.refill_failures, 1);
                None
            }
        }
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
    #[inline]
    pub unsafe fn free_pages(&self, addr: NonNull<u8>, order: u32) -> Result<(), PageFreeError> {
        let addr_value = addr.as_ptr() as usize;
        let meta = match self.claim_for_free(addr_value, order) {
            Ok(meta) => meta,
            Err(error) => return Err(self.refuse_free(addr, order, error)),
        };
        let node = meta.node();
        if order <= PCP_MAX_ORDER {
            let cached = self.pcp.with_local(|lists| {
                if lists.node != node {
                    // A CPU's lists hold its own node's blocks only.
                    return false;
                }
                let list = lists.list(order);
                list.frees.bump();
                // SAFETY: `with_local` gives exclusive use of the list; the
                // block was handed out at this order and has just been
                // claimed back from the caller (owner words cleared), so it
                // is ours alone; `meta` is its chunk's, on the list's node.
                if unsafe { list.push(addr_value, NonNull::from(meta)) } {
                    // SAFETY: exclusive use, as above.
                    unsafe { self.drain_batch(list, order) };
                }
                true
            });
            if !cached {
                self.free_to_buddy(meta, addr_value, order);
            }
        } else {
            self.free_to_buddy(meta, addr_value, order);
        }
        Ok(())
    }

    /// Gives a claimed block straight back to its node's buddy lists (a
    /// large block, or a block of another node than the freeing CPU's),
    /// counting the free on the block's node (and apart, as remote, if the
    /// freeing CPU is on another node).
    #[inline(never)]
    fn free_to_buddy(&self, meta: &ChunkMeta, addr: usize, order: u32) {
        let node = meta.node();
        let offset = offset_in_chunk(frame_of(addr));
        let result = self.zone.with(|zone| {
            let part = &mut zone.nodes[node & (MAX_NODES - 1)];
            part.frees = part.frees.wrapping_add(1);
            zone.core.free_in_chunk(meta, offset, order)
        });
        // Counted after the free itself, as a fallback is counted after its
        // allocation: [`PageAllocator::stats`] reads these first, so what
        // it takes out of a total is always in that total.
        if node != self.this_node() {
            NodeCounters::bump(&self.node_counters[node & (MAX_NODES - 1)].free_remote);
        }
        if let Err(error) = result {
            self.report_disagreement(error);
        }
    }

    /// Counts and reports a refused free.
    #[cold]
    #[inline(never)]
    fn refuse_free(&self, addr: NonNull<u8>, order: u32, error: PageFreeError) -> PageFreeError {
        self.invalid_frees.fetch_add(1, Ordering::Relaxed);
        self.platform.report(format_args!(
            "rmm: invalid free_pages({:p}, order {}): {}",
            addr.as_ptr(),
            order,
            error
        ));
        error
    }

    /// Validates a free against the page tags and, if valid, takes the block
    /// back from the caller: its head tag and any owner words are cleared.
    /// Returns the metadata of the block's chunk: the one lookup of a free.
    #[inline(always)]
    fn claim_for_free(&self, addr: usize, order: u32) -> Result<&ChunkMeta, PageFreeError> {
        if order > MAX_ORDER {
            return Err(PageFreeError::BadOrder);
        }
        let frame = frame_of(addr);
        let meta = self.table().lookup(frame).ok_or(PageFreeError::NotOurs)?;
        if addr % PAGE_SIZE != 0 {
            return Err(PageFreeError::NotBlockHead);
        }
        let offset = offset_in_chunk(frame);
        // Only one of several racing frees of the block gets past this.
        if let Err(tag) = meta.tag(offset).compare_exchange(
            TAG_HEAD | order as u8,
            TAG_NOT_HANDED_OUT,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            return Err(Self::refusal(meta, offset, tag));
        }
        // Owner words are set in every page of a block or in none, so the
        // first page's tells whether there are any to clear.
        if meta.word(offset).load(Ordering::Relaxed) != 0 {
            Self::clear_owner_words(meta, offset, order);
        }
        Ok(meta)
    }

    /// Why a free whose first page had tag `tag` instead of the expected
    /// head tag is refused.
    #[cold]
    #[inline(never)]
    fn refusal(meta: &ChunkMeta, offset: usize, tag: u8) -> PageFreeError {
        if tag & TAG_HEAD != 0 {
            PageFreeError::WrongOrder {
                actual: u32::from(tag & TAG_ORDER_MASK),
            }
        } else if covering_block(meta, offset).is_some() {
            // A later page of a handed-out block.
            PageFreeError::NotBlockHead
        } else {
            // Free, cached on a per-CPU list, or never handed out.
            PageFreeError::AlreadyFree
        }
    }

    /// Clears the owner words of the block of `order` at `offset`.
    #[cold]
    #[inline(never)]
    fn clear_owner_words(meta: &ChunkMeta, offset: usize, order: u32) {
        meta.aux_word(offset).store(0, Ordering::Relaxed);
        for page in offset..offset.wrapping_add(pages_of(order)) {
            meta.word(page).store(0, Ordering::Relaxed);
        }
    }

    /// Reports a core refusal that the tags should have prevented.
    #[cold]
    #[inline(never)]
    fn report_disagreement(&self, error: FrameFreeError) {
        self.platform.report(format_args!(
            "rmm: page tags and buddy state disagree: {error}"
        ));
        debug_assert!(false, "page tags and buddy state disagree: {error}");
    }

    /// Moves up to a batch of blocks of `order` from `list` to the buddy
    /// lists, under one hold of the buddy lock; returns how many.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `list`, which is the list of `order`
    /// of some CPU.
    #[inline(never)]
    unsafe fn drain_batch(&self, list: &PcpList, order: u32) -> usize {
        let (moved, error) = self.zone.with(|zone| {
            let mut moved = 0;
            let mut error = None;
            while moved < list.batch {
                // SAFETY: exclusive use per the caller.
                let Some(taken) = (unsafe { list.pop() }) else {
                    break;
                };
                // SAFETY: blocks on the lists name live chunk metadata
                // (type invariants of the list and the allocator).
                let meta = unsafe { taken.meta.as_ref() };
                let offset = offset_in_chunk(frame_of(taken.addr));
                if let Err(e) = zone.core.free_in_chunk(meta, offset, order) {
                    error = Some(e);
                }
                moved += 1;
            }
            (moved, error)
        });
        if let Some(error) = error {
            self.report_disagreement(error);
        }
        moved
    }

    /// Empties every list of one CPU into the buddy lists; returns the
    /// pages moved.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `lists`.
    unsafe fn drain_lists(&self, lists: &PcpLists) -> usize {
        let mut pages = 0;
        for (order, list) in (0..).zip(&lists.lists) {
            while list.count() > 0 {
                // SAFETY: exclusive use per the caller.
                let moved = unsafe { self.drain_batch(list, order) };
                if moved == 0 {
                    break;
                }
                pages += moved << order;
            }
        }
        pages
    }

    /// Empties every online CPU's lists into the buddy lists, each CPU its
    /// own ([`Platform::on_each_cpu`]). Call only where sleeping is allowed
    /// and no interrupt-disabling lock is held.
    fn drain_all_pcp(&self) {
        self.platform.on_each_cpu(&self.pcp, &|_cpu, lists| {
            // SAFETY: `on_each_cpu` gives exclusive use of the lists.
            unsafe { self.drain_lists(lists) };
        });
    }

    /// Gives the blocks on every list of `cpu`, which went offline, back to
    /// the buddy lists; returns how many pages.
    ///
    /// # Safety
    ///
    /// `cpu` is offline and nothing else uses its lists during the call:
    /// the CPU-hotplug teardown of that CPU, before it can come back.
    pub unsafe fn cpu_dead(&self, cpu: usize) -> usize {
        if cpu >= self.platform.nr_cpu_ids() {
            return 0;
        }
        // SAFETY: nothing else uses the lists of an offline CPU, per the
        // caller.
        unsafe { self.drain_lists(self.pcp.get(cpu)) }
    }

    /// Sets the owner word of every page of the handed-out block of
    /// `2^order` pages at `addr` (like the slab pointer in `struct page`),
    /// so that any byte of the block leads to it, and the block's
    /// auxiliary word (kept once, at the first page; the slab layer keeps an
    /// off-slab descriptor there, as `struct slab` would). An auxiliary
    /// word goes with an owner: with `owner` 0 it is stored as 0. The words
    /// are cleared when the block is freed. A call that does not name a
    /// handed-out block is reported and ignored.
    ///
    /// # Safety
    ///
    /// The words are trusted by the slab layer and kmalloc without further
    /// checks: the caller owns the block, and a word in one of their
    /// formats (a slab's tag, a large kmalloc block's tag, see
    /// `OwnerTag`) must tell the truth about the block, with `aux` the
    /// slab's live descriptor when the slab keeps it off the slab. Words
    /// with the two low bits clear are the caller's own and mean nothing to
    /// rmm.
    pub unsafe fn set_block_owner(&self, addr: NonNull<u8>, order: u32, owner: usize, aux: usize) {
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
        let aux = if owner == 0 { 0 } else { aux };
        meta.aux_word(offset).store(aux, Ordering::Release);
        for page in offset..offset + pages_of(order) {
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
    /// Lock-free: two directory loads, the chunk's key and the page's owner
    /// word; for a block without an owner, also the tags of the page's
    /// possible block heads (at most 11).
    #[inline(always)]
    pub fn block_owner(&self, addr: *const u8) -> Option<usize> {
        let frame = frame_of(addr as usize);
        let meta = self.table().lookup(frame)?;
        let offset = offset_in_chunk(frame);
        match meta.word(offset).load(Ordering::Acquire) {
            0 => covering_block(meta, offset).map(|_| 0),
            word => Some(word),
        }
    }

    /// The owner word of the block containing `addr` (any byte of it), or 0
    /// if `addr` is in no chunk of ours, its page is not handed out or its
    /// block has no owner: [`PageAllocator::block_owner`] without the
    /// `Option`, for the slab free fast path. Owner words are cleared when
    /// their block is freed, so no tag need be read.
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
    ///
    /// The lists are emptied by their own CPUs ([`Platform::on_each_cpu`]);
    /// call only where sleeping is allowed.
    pub fn shrink(&self) -> usize {
        self.drain_all_pcp();
        let mut released = 0;
        while let Some(base_frame) = self.zone.with(|zone| {
            let chunk = zone.core.take_free_chunk();
            zone.update_watermarks();
            chunk
        }) {
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

    /// Free blocks per order on the buddy lists, all nodes together.
    /// Blocks cached on the per-CPU lists are not included, as in the
    /// kernel; see [`PageStats::pcp_blocks`].
    pub fn buddyinfo(&self) -> [usize; NR_ORDERS] {
        self.zone.with(|zone| zone.core.free_blocks())
    }

    /// Free blocks per order on `node`'s buddy lists: the node's line of
    /// `/proc/buddyinfo`.
    pub fn node_buddyinfo(&self, node: usize) -> [usize; NR_ORDERS] {
        self.zone.with(|zone| zone.core.free_blocks_on(node))
    }

    /// The allocator's counters.
    pub fn stats(&self) -> PageStats {
        // The rare events first: each is counted after the event it takes
        // out of a total (see `count_alloc`, `free_to_buddy`), so reading
        // them before the totals keeps every difference below from going
        // negative under concurrent use.
        let rare: [[u64; 4]; MAX_NODES] = core::array::from_fn(|node| {
            let counters = &self.node_counters[node];
            let get = |counter: &AtomicU64| counter.load(Ordering::Acquire);
            [
                get(&counters.numa_miss),
                get(&counters.numa_foreign),
                get(&counters.other_node),
                get(&counters.free_remote),
            ]
        });
        let mut pcp_blocks = [0; NR_ORDERS];
        let mut pcp_allocs = [0; NR_ORDERS];
        let mut nodes = [NodeStats::default(); MAX_NODES];
        for cpu in 0..self.platform.nr_cpu_ids() {
            let lists = self.pcp.get(cpu);
            let node = &mut nodes[lists.node & (MAX_NODES - 1)];
            for (order, list) in lists.lists.iter().enumerate() {
                let (count, allocs) = (list.count(), list.allocs.get());
                pcp_blocks[order] += count;
                pcp_allocs[order] += allocs;
                // Per-CPU lists serve their own CPU from its own node.
                node.pages_pcp += count << order;
                node.numa_hit = node.numa_hit.wrapping_add(allocs);
                node.local_node = node.local_node.wrapping_add(allocs);
                node.free_local = node.free_local.wrapping_add(list.frees.get());
            }
        }
        let mut stats = self.zone.with(|zone| {
            let mut allocs = [0u64; NR_ORDERS];
            for (node, part) in zone.nodes.iter().enumerate() {
                let stats = &mut nodes[node];
                for (sum, count) in allocs.iter_mut().zip(&part.allocs) {
                    *sum = sum.wrapping_add(*count);
                    // Served by the buddy lists: hits and local for now,
                    // misses and others taken out below.
                    stats.numa_hit = stats.numa_hit.wrapping_add(*count);
                    stats.local_node = stats.local_node.wrapping_add(*count);
                }
                stats.free_local = stats.free_local.wrapping_add(part.frees);
                stats.chunks = zone.core.chunks_on(node);
                stats.pages_total = zone.core.total_frames_on(node);
                stats.pages_free = zone.core.free_frames_on(node);
            }
            PageStats {
                chunks: zone.core.chunks(),
                max_chunks: zone.core.max_chunks(),
                pages_total: zone.core.total_frames(),
                pages_free: zone.core.free_frames(),
                allocs,
                ..PageStats::default()
            }
        });
        for (stats, [miss, foreign, other, remote]) in nodes.iter_mut().zip(rare) {
            stats.numa_miss = miss;
            stats.numa_foreign = foreign;
            stats.other_node = other;
            stats.free_remote = remote;
            // Every allocation served is a hit or a miss, local or other;
            // every free local or remote. Saturating: the totals wrap only
            // after 2^64 events, when the kernel's wrap too.
            stats.numa_hit = stats.numa_hit.saturating_sub(miss);
            stats.local_node = stats.local_node.saturating_sub(other);
            stats.free_local = stats.free_local.saturating_sub(remote);
        }
        stats.nr_nodes = self.nodes.nr_nodes();
        stats.nodes = nodes;
        for (order, (allocs, pcp)) in stats.allocs.iter_mut().zip(pcp_allocs).enumerate() {
            *allocs = allocs.wrapping_add(pcp);
            stats.pages_pcp += pcp_blocks[order] << order;
        }
        stats.pcp_blocks = pcp_blocks;
        stats.pages_allocated = stats
            .pages_total
            .saturating_sub(stats.pages_free)
            .saturating_sub(stats.pages_pcp);
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
        for cpu in 0..self.platform.nr_cpu_ids() {
            // SAFETY: `&mut self`: no CPU is inside a `with_local` of ours
            // or runs an `on_each_cpu` for us, so every CPU's lists are ours
            // alone, online or not.
            unsafe { self.drain_lists(self.pcp.get(cpu)) };
        }
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
