// SPDX-License-Identifier: GPL-2.0

//! [`KmemCache`]: a cache of equally sized objects over slabs from the page
//! allocator, with slab lists per memory node and per-CPU arrays in front.
//!
//! One file for one concept, the cache: its fast paths, its slow paths
//! (refill, grow, flush to slabs, allocations and frees across nodes),
//! shrink, reap, destroy and its invariant checks all work on the same lists
//! and arrays under the same rules, and read best side by side; the parts
//! that stand alone (layout, descriptor, per-CPU array, per-node lists,
//! debug, statistics) have files of their own.
//!
//! See the documentation of [`crate::slab`] for the design; the comments
//! here say why each step is where it is.

use super::cpu_array::{batchcount_for, cpucache_limit, CpuArray, ALIEN_CAPACITY};
use super::debug::{self, RedZoneDamage};
use super::descriptor::{
    reserve_owner_ids, ListKind, OwnerTag, SlabList, SlabPtr, DESC_ALIGN, STATE_ALLOCATED,
    STATE_FREE,
};
use super::layout::{LayoutError, SlabFlags, SlabLayout};
use super::node::{NodeCounts, NodeLists, NodeSet};
use super::stats::{CacheNodeStats, CacheStats, SlabInfo, SlabInfoRow};
use crate::gfp::Gfp;
use crate::page_alloc::PageAllocator;
use crate::platform::{AllocError, Lock, LockClass, PerCpu, Platform, MAX_NODES};
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// An object constructor: called once for every object when its slab is
/// created, with the object and what the cache tells it about the call.
/// Objects are handed out in constructed state and must be freed in
/// constructed state.
///
/// # Safety
///
/// Only the cache calls it, with `obj` an object of `call.size` bytes,
/// aligned as the cache's alignment, that the constructor may write and
/// nothing else uses during the call.
pub type Ctor = unsafe fn(obj: NonNull<u8>, call: &CtorCall<'_>);

/// What a constructor is told besides its object: its context, kept by the
/// cache (Bonwick's constructors got the cache's private argument; a
/// constructor here needs no global state to count or to log).
pub struct CtorCall<'a> {
    /// The cache's object size in bytes.
    pub size: usize,
    /// This call's number in the cache, from 1: calls are numbered in the
    /// order they start, across all CPUs.
    pub number: usize,
    /// Logs one line, as the platform's `info` does.
    pub log: &'a dyn Fn(fmt::Arguments<'_>),
}

/// Longest cache name, in bytes.
pub const MAX_NAME_LEN: usize = 31;

/// Why [`KmemCache::create`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The name is empty or longer than [`MAX_NAME_LEN`] bytes.
    InvalidName,
    /// The size or the alignment is out of range.
    Layout(LayoutError),
    /// Bookkeeping memory (locks, per-CPU arrays) could not be allocated.
    NoMemory,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::InvalidName => {
                write!(f, "cache name must be 1..={MAX_NAME_LEN} bytes")
            }
            CreateError::Layout(error) => error.fmt(f),
            CreateError::NoMemory => f.write_str("out of memory for cache bookkeeping"),
        }
    }
}

/// Why [`KmemCache::free`] rejected a pointer. Each rejection is reported
/// and counted in [`CacheStats::errors`]; nothing is changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabFreeError {
    /// The pointer is not inside a slab of this cache (another cache's
    /// object, a page allocator block, a freed slab, anything else).
    NotFromCache,
    /// The pointer is inside a slab of this cache but not at the start of an
    /// object (an interior pointer, or inside the colour area or a red zone).
    NotAnObject,
    /// The object is already free (detected in debug mode only).
    DoubleFree,
    /// The cache has been destroyed.
    Destroyed,
}

impl fmt::Display for SlabFreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlabFreeError::NotFromCache => "not an object of this cache",
            SlabFreeError::NotAnObject => "not the start of an object",
            SlabFreeError::DoubleFree => "double free",
            SlabFreeError::Destroyed => "cache already destroyed",
        })
    }
}

/// Why [`KmemCache::destroy`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyError {
    /// Objects are still allocated; nothing was changed.
    Busy {
        /// Objects still held by callers.
        active: usize,
    },
    /// The cache was destroyed before.
    AlreadyDestroyed,
}

impl fmt::Display for DestroyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestroyError::Busy { active } => {
                write!(f, "cache still has {active} objects allocated")
            }
            DestroyError::AlreadyDestroyed => f.write_str("cache already destroyed"),
        }
    }
}

/// Result of trying to allocate from a CPU's array.
enum ArrayAlloc {
    /// An object.
    Got(NonNull<u8>),
    /// The array and its node's lists are empty (and no other node's lists
    /// may be used instead): the cache must grow a slab for `node`.
    Empty {
        /// The array's node.
        node: usize,
    },
    /// The request is for `node`, another node than the array's.
    Remote {
        /// The node asked for.
        node: usize,
    },
    /// The cache is destroyed.
    Dead,
}

/// What a slab just grown gave the allocation that grew it.
enum Grown {
    /// The CPU's array was refilled from the slab's node.
    Refilled,
    /// One object straight from the slab's node's lists, the array left
    /// alone.
    Direct(Option<NonNull<u8>>),
}

/// Fast-path flag: allocations take the slow path (debug state tracking).
const SLOW_ALLOC: u32 = 1 << 0;

/// A tag no owner word matches in `OwnerTag::colour_if_tagged_on`: the
/// test masks the colour bits out of the word, and they are set here.
const NEVER_MATCHES: usize = usize::MAX;

/// The node whose objects the array of `cpu` holds: the CPU's node, or for
/// a CPU of a node without memory the nearest node with memory (SLAB's
/// `numa_mem_id`).
fn array_node<P: Platform>(pages: &PageAllocator<P>, cpu: usize) -> usize {
    let node = pages.platform().cpu_node(cpu);
    pages
        .fallback_order(node)
        .first()
        .map_or(0, |&node| usize::from(node))
}

/// Runs `f` with `lists` locked; `None` if there are no lists (a node
/// number that cannot hold slabs of ours).
#[inline]
fn with_lists<L: Lock<NodeLists>, R>(
    lists: Option<&L>,
    f: impl FnOnce(&mut NodeLists) -> R,
) -> Option<R> {
    lists.map(|lists| lists.with(f))
}

/// `ceil(2^32 / stride)`: the multiplier that turns an offset in a slab into
/// an object index without a division, as SLUB's `obj_to_index` does with
/// `reciprocal_divide`. For an offset that is an exact multiple `i * stride`
/// below 2^32 the result is exactly `i`: with `recip = (2^32 + e) / stride`,
/// `0 <= e < stride`, the product is `i * 2^32 + i * e` and `i * e < offset
/// < 2^32`. Slabs are at most 2 MiB, so every offset qualifies.
fn reciprocal(stride: usize) -> u64 {
    (1u64 << 32).div_ceil(stride.max(1) as u64)
}

/// A slab cache: objects of one size and alignment, carved from slabs of
/// `2^order` pages, with a per-CPU array of free objects in front of the
/// cache's lists of full, partial and empty slabs, one set of lists per
/// memory node.
///
/// Operations take the [`PageAllocator`] the cache was created with; the
/// cache does not keep a reference to it. Using a cache with another page
/// allocator than its own is a bug (caught as invalid frees at best).
///
/// Dropping a cache does not give its slabs back: without the page
/// allocator it can neither free pages nor report. A cache dropped without a
/// successful [`KmemCache::destroy`] leaks its slabs (until the page
/// allocator itself is dropped), its spare descriptors and its per-CPU array
/// block; the owner of a cache destroys it first, as the kernel's
/// `kmem_cache_destroy` is called before a module goes away.
///
/// # Invariants
///
/// `id` is unique among the caches and kmalloc instances of its page
/// allocator (`PageAllocator::reserve_owner_ids`) and is the id in
/// the owner tags of this cache's slabs. `recip` is `reciprocal(stride)`,
/// `span` is `objects * stride`; `slab_tag` is the owner word of this
/// cache's slabs without their colour and node;
/// `slab_mask`, `colour_off`, `first_obj` and
/// `stride` are the layout's slab address mask, colour unit, object offset
/// in a slot and stride, copied for the free fast path. `slow_paths` has
/// `SLOW_ALLOC` set exactly when the layout tracks object states; then
/// every array's `free_tag` is `NEVER_MATCHES`, otherwise `slab_tag` with
/// the array's node bits (so that a free in debug mode fails the fast
/// path's check without testing a flag of its own). `nodes` has lists for
/// every node with memory, and every array's node is one of them.
/// `free_limit` is the sum of the nodes' free limits.
pub struct KmemCache<P: Platform> {
    slow_paths: u32,
    id: usize,
    recip: u64,
    span: usize,
    slab_tag: usize,
    slab_mask: usize,
    colour_off: usize,
    first_obj: usize,
    stride: usize,
    cpus: P::PerCpu<CpuArray>,
    name: [u8; MAX_NAME_LEN],
    name_len: usize,
    layout: SlabLayout,
    flags: SlabFlags,
    ctor: Option<Ctor>,
    poison: bool,
    limit: usize,
    batchcount: usize,
    free_limit: usize,
    nr_cpus: usize,
    nodes: NodeSet<P::Lock<NodeLists>>,
    destroyed: AtomicBool,
    colour_next: AtomicUsize,
    /// Constructor calls started, for [`CtorCall::number`].
    ctor_calls: AtomicUsize,
}

// SAFETY: the raw pointers of a cache (entry block, descriptors) point to
// memory the cache owns and only touches under its locks or through
// atomics; the platform's locks and per-CPU storage are `Send + Sync`.
unsafe impl<P: Platform> Send for KmemCache<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for KmemCache<P> {}

/// `gfp` without the zeroing request: slab pages and descriptors need no
/// zeroing (whether the request may sleep or use the reserve is kept).
fn plain_gfp(gfp: Gfp) -> Gfp {
    gfp.without_zero()
}

impl<P: Platform> KmemCache<P> {
    /// Creates a cache of `size`-byte objects aligned to `align` (0: a
    /// machine word), named `name` (1 to [`MAX_NAME_LEN`] bytes, copied).
    ///
    /// No slab is allocated until the first allocation. `ctor`, if given,
    /// runs once for every object when its slab is created.
    pub fn create(
        pages: &PageAllocator<P>,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<Self, CreateError> {
        let id = reserve_owner_ids(pages, 1).ok_or(CreateError::NoMemory)?;
        Self::create_with_id(pages, name, size, align, flags, ctor, id)
    }

    /// [`KmemCache::create`] with an owner id reserved by the caller.
    pub(crate) fn create_with_id(
        pages: &PageAllocator<P>,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
        id: usize,
    ) -> Result<Self, CreateError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(CreateError::InvalidName);
        }
        let layout = SlabLayout::compute(size, align, flags).map_err(CreateError::Layout)?;
        let platform = pages.platform();
        let nr_cpus = platform.nr_cpu_ids();
        let limit = cpucache_limit(layout.stride());
        let batchcount = batchcount_for(limit);
        let slow_paths = if layout.track_state() { SLOW_ALLOC } else { 0 };
        let slab_tag = OwnerTag::slab_tag(id);
        let cpus = platform
            .new_percpu(|cpu| {
                let node = array_node(pages, cpu);
                // In debug mode every free takes the slow path, and frees
                // of other nodes' objects go straight home.
                let (free_tag, alien_limit) = if layout.track_state() {
                    (NEVER_MATCHES, 0)
                } else {
                    (slab_tag | OwnerTag::node_field(node), limit)
                };
                Ok(CpuArray::new(limit, node, free_tag, alien_limit))
            })
            .map_err(|AllocError| CreateError::NoMemory)?;
        // SLAB's per-node free_limit: what every CPU of the node could
        // flush at once, plus a slab's worth.
        let node_free_limit = |node: usize| {
            let node_cpus = (0..nr_cpus)
                .filter(|&cpu| cpus.get(cpu).node() == node)
                .count();
            (1 + node_cpus) * batchcount + layout.objects()
        };
        let nodes = NodeSet::new(
            pages.nr_nodes(),
            |node| pages.node_has_memory(node),
            |node| platform.new_lock(NodeLists::new(node_free_limit(node)), LockClass::SlabNode),
        )
        .map_err(|AllocError| CreateError::NoMemory)?;
        let free_limit = nodes.iter().map(|(node, _)| node_free_limit(node)).sum();
        let mut name_bytes = [0u8; MAX_NAME_LEN];
        name_bytes[..name.len()].copy_from_slice(name.as_bytes());
        // INVARIANT: `id` was reserved for this cache alone; `recip`,
        // `span`, `slow_paths` and the arrays' free tags follow the layout;
        // arrays' nodes are nodes with memory (first of a fallback order),
        // which all have lists.
        Ok(KmemCache {
            slow_paths,
            id,
            recip: reciprocal(layout.stride()),
            span: layout.objects() * layout.stride(),
            slab_tag,
            slab_mask: !(layout.slab_bytes() - 1),
            colour_off: layout.colour_offset(1),
            first_obj: layout.obj_offset(),
            stride: layout.stride(),
            cpus,
            name: name_bytes,
            name_len: name.len(),
            layout,
            flags,
            ctor,
            // SLUB's rule: poisoning would destroy the constructed state.
            poison: flags.contains(SlabFlags::POISON) && ctor.is_none(),
            limit,
            batchcount,
            free_limit,
            nr_cpus,
            nodes,
            destroyed: AtomicBool::new(false),
            colour_next: AtomicUsize::new(0),
            ctor_calls: AtomicUsize::new(0),
        })
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        // The bytes were copied from a `str` of `name_len` bytes.
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    /// Size of the objects as asked for at creation.
    pub fn object_size(&self) -> usize {
        self.layout.object_size()
    }

    /// Whether the cache has a constructor (which `Gfp::ZERO` would undo).
    pub fn has_ctor(&self) -> bool {
        self.ctor.is_some()
    }

    /// Bytes per object slot (the stride), red zones and padding included.
    pub fn size(&self) -> usize {
        self.layout.stride()
    }

    /// Alignment of every object.
    pub fn align(&self) -> usize {
        self.layout.align()
    }

    /// The flags given at creation.
    pub fn flags(&self) -> SlabFlags {
        self.flags
    }

    /// The slab layout.
    pub fn layout(&self) -> &SlabLayout {
        &self.layout
    }

    /// Most objects in a per-CPU array.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Objects moved between a per-CPU array and the lists at a time.
    pub fn batchcount(&self) -> usize {
        self.batchcount
    }

    /// Most objects of other nodes a CPU's alien array holds before they
    /// are sent home in one batch per node: 32 (SLAB had 12 per remote
    /// node), or the array's `limit` if lower; 0 in debug mode, where a
    /// free of another node's object goes straight home.
    pub fn alien_limit(&self) -> usize {
        if self.layout.track_state() {
            0
        } else {
            self.limit.min(ALIEN_CAPACITY)
        }
    }

    /// Free objects the cache keeps in empty slabs before giving empty slabs
    /// back to the page allocator, summed over the nodes: each node keeps
    /// `(1 + CPUs of the node) * batchcount + objects_per_slab`, as SLAB's
    /// per-node `free_limit` (on one node: `(1 + nr_cpus) * batchcount +
    /// objects_per_slab`).
    pub fn free_limit(&self) -> usize {
        self.free_limit
    }

    /// The memory node whose objects the per-CPU array of `cpu` holds: the
    /// CPU's node, or the nearest node with memory for a CPU of a node
    /// without (`None` for a CPU number out of range).
    pub fn cpu_node(&self, cpu: usize) -> Option<usize> {
        (cpu < self.nr_cpus).then(|| self.cpus.get(cpu).node())
    }

    /// The lists of `node`, if it has memory.
    #[inline]
    fn lists(&self, node: usize) -> Option<&P::Lock<NodeLists>> {
        self.nodes.get(node)
    }

    /// Whether free objects are poisoned (POISON requested and no
    /// constructor).
    pub fn poisons(&self) -> bool {
        self.poison
    }

    /// Whether [`KmemCache::destroy`] has succeeded.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// This cache's line of `/proc/slabinfo`.
    pub fn slabinfo_row(&self) -> SlabInfoRow<'_> {
        SlabInfoRow {
            name: self.name(),
            info: self.slabinfo(),
        }
    }

    /// The array of the CPU the caller runs on, for counters that any CPU
    /// may add to (atomic read-modify-write): the CPU is only a hint.
    fn this_array(&self, platform: &P) -> &CpuArray {
        // `this_cpu` is below `nr_cpu_ids` by the `Platform` contract; no
        // `%` (its division-by-zero panic path trips the 6.12 objtool).
        self.cpus.get(platform.this_cpu())
    }

    /// Reports one line naming the cache and counts an error.
    fn report_error(&self, platform: &P, args: fmt::Arguments<'_>) {
        platform.report(format_args!("rmm slab {}: {}", self.name(), args));
        self.this_array(platform)
            .errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Allocates an object.
    ///
    /// The object comes from this CPU's array if it has one; otherwise the
    /// array is refilled with up to `batchcount` objects from partial, then
    /// empty slabs of the CPU's node; if there are none, a slab is created
    /// on that node (pages taken and constructors run with no lock held)
    /// and the array refilled from it. The array holds objects of its
    /// node's slabs only: if the node is out of pages, the slab's pages come
    /// from the nearest node that has some, the slab goes on that node's
    /// lists, and the object comes straight from them, counted in
    /// `fallback_allocs` (SLAB's `fallback_alloc`); until the next reap, a
    /// miss then takes from the other nodes' lists before growing again.
    ///
    /// `Gfp::ZERO` zeroes the object. For a cache with a constructor it is
    /// refused (reported, counted, `Err`): zeroing would destroy the
    /// constructed state the constructor promises.
    #[inline]
    pub fn alloc(&self, pages: &PageAllocator<P>, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if self.slow_paths & SLOW_ALLOC == 0 && !gfp.zeroed() {
            // SAFETY: `with_local` gives this CPU's array for our exclusive
            // use.
            if let Some(obj) = self.cpus.with_local(|array| unsafe { array.pop_hit() }) {
                return Ok(obj);
            }
        }
        self.alloc_slow(pages, gfp, None)
    }

    /// Allocates an object of a slab on memory node `node` (the kernel's
    /// `kmem_cache_alloc_node`).
    ///
    /// For the node of the calling CPU's array this is [`KmemCache::alloc`].
    /// For another node the object comes straight from that node's lists,
    /// not through the CPU's array (which keeps objects of its own node
    /// only), counted in `remote_allocs`; if the node's lists are empty a
    /// slab is grown on that node first. If that node is out of pages, the
    /// object comes from the nearest node with pages, counted in
    /// `fallback_allocs`, as for [`KmemCache::alloc`].
    ///
    /// Fails for a node without memory (or out of range), as for any
    /// allocation that cannot be satisfied.
    pub fn alloc_node(
        &self,
        pages: &PageAllocator<P>,
        gfp: Gfp,
        node: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        if self.lists(node).is_none() || !pages.node_has_memory(node) {
            return Err(AllocError);
        }
        self.alloc_slow(pages, gfp, Some(node))
    }

    /// Everything but a hit without debug checks or zeroing: refill, grow,
    /// allocations for another node, debug checks, zeroing, refusals.
    /// `want` is the node `alloc_node` asked for.
    #[cold]
    #[inline(never)]
    fn alloc_slow(
        &self,
        pages: &PageAllocator<P>,
        gfp: Gfp,
        want: Option<usize>,
    ) -> Result<NonNull<u8>, AllocError> {
        let platform = pages.platform();
        if gfp.zeroed() && self.ctor.is_some() {
            self.report_error(
                platform,
                format_args!("Gfp::ZERO refused, the cache has a constructor"),
            );
            return Err(AllocError);
        }
        let got = self.cpus.with_local(|array| match want {
            Some(node) if node != array.node() => ArrayAlloc::Remote { node },
            _ => self.alloc_from_array(pages, array),
        });
        let obj = match got {
            ArrayAlloc::Got(obj) => obj,
            ArrayAlloc::Empty { node } => self.grow_and_alloc(pages, gfp, node, false)?,
            ArrayAlloc::Remote { node } => self.alloc_remote(pages, gfp, node)?,
            ArrayAlloc::Dead => return Err(AllocError),
        };
        if self.layout.track_state() {
            self.check_on_alloc(pages, obj);
        }
        if gfp.zeroed() {
            // SAFETY: the object is ours to hand out, `object_size` bytes.
            unsafe { obj.as_ptr().write_bytes(0, self.layout.object_size()) };
        }
        Ok(obj)
    }

    /// Takes an object from this CPU's array, refilling it from its node's
    /// lists if it is empty (SLAB's `cache_alloc_refill`, with interrupts
    /// off); if those are empty too and the node is out of pages, takes an
    /// object straight from another node's lists. Runs inside
    /// `with_local`: `array` is ours alone.
    fn alloc_from_array(&self, pages: &PageAllocator<P>, array: &CpuArray) -> ArrayAlloc {
        // SAFETY: the caller has exclusive use of the array (so for the
        // array calls below too).
        if let Some(obj) = unsafe { array.pop_hit() } {
            return ArrayAlloc::Got(obj);
        }
        if array.is_retired() {
            return ArrayAlloc::Dead;
        }
        array.allocmiss.bump();
        let node = array.node();
        let refilled = with_lists(self.lists(node), |lists| {
            if lists.destroyed {
                return None;
            }
            // SAFETY: exclusive use, as above; these are the lists of the
            // array's node.
            unsafe { self.refill(lists, array) };
            Some(lists.short_of_pages)
        });
        let Some(Some(short_of_pages)) = refilled else {
            return ArrayAlloc::Dead;
        };
        // SAFETY: as above.
        if let Some(obj) = unsafe { array.pop() } {
            array.missed_allocs.bump();
            return ArrayAlloc::Got(obj);
        }
        if short_of_pages {
            if let Some(obj) = self.alloc_fallback(pages, node) {
                return ArrayAlloc::Got(obj);
            }
        }
        ArrayAlloc::Empty { node }
    }

    /// Takes one object straight from the lists of `node`, another node
    /// than the calling CPU's, growing a slab there if they are empty.
    fn alloc_remote(
        &self,
        pages: &PageAllocator<P>,
        gfp: Gfp,
        node: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let taken = with_lists(self.lists(node), |lists| {
            if lists.destroyed {
                return Err(AllocError);
            }
            let obj = lists.take_one(&self.layout);
            if obj.is_some() {
                NodeCounts::bump(&mut lists.counts.remote_allocs);
            }
            Ok((obj, lists.short_of_pages))
        });
        let (obj, short_of_pages) = taken.unwrap_or(Err(AllocError))?;
        if let Some(obj) = obj {
            self.this_array(pages.platform())
                .remote_allocs
                .fetch_add(1, Ordering::Relaxed);
            return Ok(obj);
        }
        if short_of_pages {
            if let Some(obj) = self.alloc_fallback(pages, node) {
                return Ok(obj);
            }
        }
        self.grow_and_alloc(pages, gfp, node, true)
    }

    /// For a request that wanted `wanted`, a node out of pages whose lists
    /// are empty: one object straight from the lists of the nearest other
    /// node that has a free one (SLAB's `fallback_alloc`), counted on both
    /// nodes. `None` if no other node has a free object.
    fn alloc_fallback(&self, pages: &PageAllocator<P>, wanted: usize) -> Option<NonNull<u8>> {
        let obj = pages
            .fallback_order(wanted)
            .iter()
            .map(|&node| usize::from(node))
            .filter(|&node| node != wanted)
            .find_map(|node| {
                with_lists(self.lists(node), |lists| {
                    if lists.destroyed {
                        return None;
                    }
                    let obj = lists.take_one(&self.layout)?;
                    NodeCounts::bump(&mut lists.counts.fallback_allocs);
                    Some(obj)
                })
                .flatten()
            })?;
        self.note_foreign(pages, wanted, true);
        Some(obj)
    }

    /// Notes on node `wanted` that a slab grown for it came from another
    /// node, and counts there a request it did not serve if `foreign`.
    /// The node is marked out of pages whatever the request's flags: an
    /// atomic request that fell back would otherwise grow a whole slab on
    /// the other node for each object it takes (the rest of the slab being
    /// out of its CPU's reach), and drain the reserve doing so. Takes
    /// `wanted`'s lock: call with no other node's lock held.
    fn note_foreign(&self, pages: &PageAllocator<P>, wanted: usize, foreign: bool) {
        with_lists(self.lists(wanted), |lists| {
            lists.short_of_pages = true;
            if foreign {
                NodeCounts::bump(&mut lists.counts.foreign_allocs);
            }
        });
        if foreign {
            self.this_array(pages.platform())
                .fallback_allocs
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Creates a slab for node `wanted` (no lock held, interrupts on) and
    /// adds it to the lists of the node its pages are on. If that is this
    /// CPU's array's node and the request is not `pinned` to a node by
    /// `alloc_node`, refills the array from those lists and takes an
    /// object, inside one `with_local`, so that the array gets at least
    /// one object. Otherwise (the pages fell back to another node, or the
    /// request is for another node than the CPU's) takes one object
    /// straight from the lists, leaving the array alone.
    fn grow_and_alloc(
        &self,
        pages: &PageAllocator<P>,
        gfp: Gfp,
        wanted: usize,
        pinned: bool,
    ) -> Result<NonNull<u8>, AllocError> {
        let (slab, node, lists) = self.grow(pages, gfp, wanted)?;
        let objects = self.layout.objects();
        let got = self.cpus.with_local(|array| {
            let local = !pinned && array.node() == node;
            let direct = lists.with(|lists| {
                if node == wanted {
                    lists.short_of_pages = false;
                }
                NodeCounts::bump(&mut lists.counts.grown);
                if lists.destroyed {
                    // SAFETY: the new slab is ours alone, detached and free.
                    unsafe { self.release_detached(pages, lists, slab) };
                    return None;
                }
                // SAFETY: the new slab is live and detached; lock held; it
                // goes on the lists of its pages' node.
                unsafe { lists.empty.push_front(slab) };
                lists.free_objects += objects;
                if local {
                    // SAFETY: `with_local` gives exclusive use of the
                    // array, whose node these lists are.
                    unsafe { self.refill(lists, array) };
                    return Some(Grown::Refilled);
                }
                let obj = lists.take_one(&self.layout);
                if obj.is_some() {
                    if node == wanted {
                        NodeCounts::bump(&mut lists.counts.remote_allocs);
                    } else {
                        NodeCounts::bump(&mut lists.counts.fallback_allocs);
                    }
                }
                Some(Grown::Direct(obj))
            })?;
            match direct {
                Grown::Direct(obj) => {
                    let obj = obj?;
                    if node == wanted {
                        array.remote_allocs.fetch_add(1, Ordering::Relaxed);
                    }
                    Some((obj, false))
                }
                Grown::Refilled => {
                    // SAFETY: as above.
                    let obj = unsafe { array.pop() }?;
                    array.missed_allocs.bump();
                    Some((obj, true))
                }
            }
        });
        if node != wanted {
            // Counted as a fallback only if the object did not go through
            // an array of its own node (after a migration to that node).
            let foreign = matches!(got, Some((_, false)));
            self.note_foreign(pages, wanted, foreign);
        }
        got.map(|(obj, _)| obj).ok_or(AllocError)
    }

    /// Moves up to `batchcount` free objects from partial, then empty slabs
    /// into `array` (SLAB's `cache_alloc_refill`).
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `array`, and `node` are the lists of
    /// the array's node.
    unsafe fn refill(&self, node: &mut NodeLists, array: &CpuArray) {
        let layout = &self.layout;
        // SAFETY: exclusive use per the caller.
        let want = self.batchcount.min(unsafe { array.room() });
        let mut got = 0;
        while got < want {
            let Some(slab) = node.partial.first().or_else(|| node.empty.first()) else {
                break;
            };
            // SAFETY: a slab on our lists is live; the lock is held.
            let first = unsafe { slab.s_mem() }.wrapping_add(layout.obj_offset());
            let stride = layout.stride();
            // SAFETY: exclusive use of the array per the caller; the slab is
            // live and locked, on the array's node, and every object taken
            // off its index is a distinct free object, counted in use from
            // now on.
            let taken = unsafe {
                array.append_with(|slots| {
                    let mut slots = slots.iter_mut().take(want - got);
                    slab.take_many(layout, slots.len(), |index| {
                        if let Some(slot) = slots.next() {
                            // In a slab at most 2 MiB long: no overflow.
                            *slot = first.wrapping_add(index.wrapping_mul(stride)) as *mut u8;
                        }
                    })
                })
            };
            got += taken;
            // SAFETY: as above.
            unsafe { node.relist(slab, layout.objects()) };
            if taken == 0 {
                // The array is full (the slab had free objects, or it would
                // not be on these lists).
                break;
            }
        }
        node.note_taken(got);
    }

    /// Creates a slab: pages (preferring node `wanted`), descriptor, red
    /// zones and poison, constructors, owner tag. Returns the slab, the
    /// node of its pages and that node's lists. Runs with no lock of the
    /// cache held except briefly to take a spare descriptor; nothing is
    /// constructed unless the pages and the descriptor were obtained.
    fn grow(
        &self,
        pages: &PageAllocator<P>,
        gfp: Gfp,
        wanted: usize,
    ) -> Result<(SlabPtr, usize, &P::Lock<NodeLists>), AllocError> {
        let layout = &self.layout;
        let platform = pages.platform();
        let gfp = plain_gfp(gfp);
        let block = pages.alloc_pages_node(layout.order(), gfp, wanted)?;
        let placed = pages
            .node_of(block.as_ptr())
            .and_then(|node| Some((node, self.lists(node)?)));
        let Some((node, lists)) = placed else {
            // Pages of a node the cache has no lists for: nodes with memory
            // do not come and go, so this does not happen.
            self.free_slab_pages(pages, block);
            return Err(AllocError);
        };
        let (slab, spare) = if layout.on_slab() {
            let desc = block.as_ptr().wrapping_add(layout.desc_offset());
            // Inside the slab, so never null.
            (SlabPtr::new(NonNull::new(desc).ok_or(AllocError)?), false)
        } else {
            // SAFETY: the lock is held inside `with`.
            match lists.with(|lists| unsafe { lists.spare.pop_front() }) {
                Some(slab) => (slab, true),
                None => match platform.alloc_meta(self.desc_layout(), gfp) {
                    Some(mem) => (SlabPtr::new(mem), false),
                    None => {
                        self.free_slab_pages(pages, block);
                        return Err(AllocError);
                    }
                },
            }
        };
        let colour = self.colour_next.fetch_add(1, Ordering::Relaxed) % layout.colour_cycle();
        let s_mem = block.as_ptr() as usize + layout.colour_offset(colour);
        // SAFETY: the descriptor memory is ours (inside our fresh slab, fresh
        // from alloc_meta, or a spare of this cache taken off the spare
        // list), sized and aligned by `desc_layout`/the layout.
        unsafe { slab.init(layout, self.id, s_mem, colour, spare) };
        for index in 0..layout.objects() {
            let obj = (s_mem + index * layout.stride() + layout.obj_offset()) as *mut u8;
            if layout.red_zone() {
                // SAFETY: the slot is inside our fresh slab.
                unsafe { debug::fill_red_zones(layout, obj) };
            }
            if self.poison {
                // SAFETY: as above.
                unsafe { debug::poison(layout, obj) };
            }
            if let Some(ctor) = self.ctor {
                // Slab memory is never at address 0.
                if let Some(obj) = NonNull::new(obj) {
                    let call = CtorCall {
                        size: layout.object_size(),
                        number: self.ctor_calls.fetch_add(1, Ordering::Relaxed) + 1,
                        log: &|args| platform.info(args),
                    };
                    // SAFETY: a slot of our fresh slab, `object_size`
                    // bytes aligned for the cache, which nothing else can
                    // reach before the slab is published.
                    unsafe { ctor(obj, &call) };
                }
            }
        }
        let tag = OwnerTag::Slab {
            cache_id: self.id,
            colour,
            node,
        };
        // An off-slab descriptor goes into the block's auxiliary word.
        let aux = if layout.on_slab() { 0 } else { slab.addr() };
        // SAFETY: our fresh slab's block, tagged as this cache's slab of
        // this colour; an off-slab descriptor is this slab's, initialised
        // above, and lives as long as the slab.
        unsafe { pages.set_block_owner(block, layout.order(), tag.encode(), aux) };
        let counters = self.this_array(platform);
        counters.grown.fetch_add(1, Ordering::Relaxed);
        if self.ctor.is_some() {
            counters
                .ctor_calls
                .fetch_add(layout.objects(), Ordering::Relaxed);
        }
        Ok((slab, node, lists))
    }

    fn desc_layout(&self) -> Layout {
        // The size is at most a few kilobytes and the alignment a power of
        // two, so this cannot fail.
        Layout::from_size_align(self.layout.desc_size(), DESC_ALIGN).unwrap_or(Layout::new::<u8>())
    }

    fn free_slab_pages(&self, pages: &PageAllocator<P>, block: NonNull<u8>) {
        // SAFETY: `block` is a slab of ours that nothing uses any more.
        let result = unsafe { pages.free_pages(block, self.layout.order()) };
        // The page allocator has reported a failure already.
        debug_assert!(result.is_ok(), "slab pages rejected by the page allocator");
    }

    /// Gives a slab back to the page allocator, keeping an off-slab
    /// descriptor as a spare.
    ///
    /// # Safety
    ///
    /// `slab` is a live, detached slab of this cache with no object in use
    /// and not counted in `node.free_objects`; `node` are the locked lists
    /// of the slab's node.
    unsafe fn release_detached(
        &self,
        pages: &PageAllocator<P>,
        node: &mut NodeLists,
        slab: SlabPtr,
    ) {
        // SAFETY: per the caller's guarantee the slab is ours and live.
        let base = unsafe { slab.s_mem() } & self.slab_mask;
        // SAFETY: as above.
        unsafe { slab.clear_magic() };
        if !self.layout.on_slab() {
            if node.destroyed {
                // A slab grown while the cache was being destroyed: the spare
                // list has been emptied for good.
                // SAFETY: the descriptor came from `alloc_meta` with
                // `desc_layout` and nothing refers to it any more.
                unsafe {
                    pages
                        .platform()
                        .free_meta(slab.as_bytes(), self.desc_layout())
                };
            } else {
                // SAFETY: detached descriptor of this cache, lock held.
                unsafe { node.spare.push_front(slab) };
            }
        }
        // Slab memory is never at address 0.
        if let Some(block) = NonNull::new(base as *mut u8) {
            self.free_slab_pages(pages, block);
        }
        NodeCounts::bump(&mut node.counts.reaped);
        self.this_array(pages.platform())
            .reaped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The slab holding `obj`, an object known to be out of its slab (in an
    /// array or handed out), so its slab is live.
    #[inline]
    fn slab_of_live(&self, pages: &PageAllocator<P>, obj: *const u8) -> Option<SlabPtr> {
        let base = obj as usize & self.slab_mask;
        let desc = if self.layout.on_slab() {
            // Inside the slab: no overflow.
            base.wrapping_add(self.layout.desc_offset())
        } else {
            pages.block_aux(base as *const u8)
        };
        NonNull::new(desc as *mut u8).map(SlabPtr::new)
    }

    /// Index of the object at `obj` in `slab`.
    ///
    /// # Safety
    ///
    /// `slab` is live and `obj` one of its objects.
    #[inline]
    unsafe fn index_in(&self, slab: SlabPtr, obj: *const u8) -> usize {
        // SAFETY: per the caller's guarantee.
        let s_mem = unsafe { slab.s_mem() };
        // `obj` is one of the slab's objects, at or after `s_mem`.
        self.index_of_offset(
            (obj as usize)
                .wrapping_sub(s_mem)
                .wrapping_sub(self.first_obj),
        )
    }

    /// `offset / stride` for an offset inside the slab's objects, by the
    /// reciprocal multiply (see [`reciprocal`]); exact for multiples of the
    /// stride.
    #[inline(always)]
    fn index_of_offset(&self, offset: usize) -> usize {
        ((offset as u64).wrapping_mul(self.recip) >> 32) as usize
    }

    /// Checks without any lock that `obj` is the start of an object slot of
    /// a slab of this cache (on any node); returns the object's index in
    /// its slab. Only the owner word (cache id and colour) is needed,
    /// whether the slab's descriptor is on the slab or off it.
    #[inline(always)]
    fn locate(&self, pages: &PageAllocator<P>, obj: *const u8) -> Result<usize, SlabFreeError> {
        self.locate_word(obj, pages.owner_word(obj))
    }

    /// [`KmemCache::locate`] with the owner word of `obj`'s page already
    /// read (`PageAllocator::owner_word`).
    #[inline(always)]
    fn locate_word(&self, obj: *const u8, word: usize) -> Result<usize, SlabFreeError> {
        let colour =
            OwnerTag::colour_if_tagged(word, self.slab_tag).ok_or(SlabFreeError::NotFromCache)?;
        self.locate_in(obj, colour)
    }

    /// The index of `obj` in a slab of this cache of colour `colour` whose
    /// block holds `obj` (as its owner word says), if `obj` is at the start
    /// of one of its object slots.
    #[inline(always)]
    fn locate_in(&self, obj: *const u8, colour: usize) -> Result<usize, SlabFreeError> {
        // Wrapping arithmetic: these are addresses and small products that
        // cannot overflow (a slab is at most 2 MiB), and overflow checks
        // would cost the fast path a branch each.
        let s_mem =
            (obj as usize & self.slab_mask).wrapping_add(colour.wrapping_mul(self.colour_off));
        // Below the first object the subtraction wraps to a huge offset.
        let offset = (obj as usize)
            .wrapping_sub(s_mem)
            .wrapping_sub(self.first_obj);
        if offset >= self.span {
            return Err(SlabFreeError::NotAnObject);
        }
        let index = self.index_of_offset(offset);
        if index.wrapping_mul(self.stride) != offset {
            return Err(SlabFreeError::NotAnObject);
        }
        Ok(index)
    }

    /// Whether `ptr` is the start of an object (allocated or free) of a live
    /// slab of this cache. Lock-free; the answer may be stale by the time it
    /// is used if the slab is released concurrently.
    pub fn contains(&self, pages: &PageAllocator<P>, ptr: *const u8) -> bool {
        !self.is_destroyed() && self.locate(pages, ptr).is_ok()
    }

    /// Debug mode: validates a free under the lock of `node`'s lists (so
    /// the slab cannot be released meanwhile) and moves the object from
    /// allocated to free. `node` is the node the owner word of `obj` named
    /// when it was read before taking the lock; it is checked again under
    /// the lock, as only the lock of the slab's own node keeps the slab
    /// alive.
    fn claim_for_free(
        &self,
        pages: &PageAllocator<P>,
        lists: &NodeLists,
        node: usize,
        obj: *const u8,
    ) -> Result<(), SlabFreeError> {
        if lists.destroyed {
            return Err(SlabFreeError::Destroyed);
        }
        let word = pages.owner_word(obj);
        let index = self.locate_word(obj, word)?;
        if OwnerTag::node_bits(word) != node {
            // The page changed hands since the first read: not an object
            // a caller holds.
            return Err(SlabFreeError::NotFromCache);
        }
        let slab = self
            .slab_of_live(pages, obj)
            .ok_or(SlabFreeError::NotFromCache)?;
        // SAFETY: the owner word, read under the lock of the node it names,
        // names a slab of ours on that node, and our slabs are only released
        // under the lock of their node, so the slab is live; `index <
        // objects` was checked.
        let changed =
            unsafe { slab.change_state(&self.layout, index, STATE_ALLOCATED, STATE_FREE) };
        changed.map_err(|_| SlabFreeError::DoubleFree)
    }

    /// Frees an object.
    ///
    /// The object goes to this CPU's array (`freehit`); if the array is
    /// full, its `batchcount` oldest objects go back to their slabs first
    /// (`freemiss`). Any CPU may free any object: an object of another
    /// node than the CPU's goes into the CPU's alien array instead (SLAB's
    /// alien caches), never handed out from there, and back to its slab on
    /// its own node's lists with the others of its node when the alien
    /// array is full, drained or reaped (`remote_frees`), so that arrays
    /// keep objects of their own node only. In debug mode it goes straight
    /// home.
    ///
    /// Invalid pointers are rejected, reported through
    /// [`Platform::report`] with the cache name and the address, and
    /// counted in [`CacheStats::errors`]; nothing changes. Always: pointers
    /// outside every slab of this cache and pointers that are not at the
    /// start of an object. In debug mode also double frees; red-zone damage
    /// is reported (and repaired) but the free goes ahead.
    ///
    /// # Safety
    ///
    /// If the free succeeds, nothing may use the object afterwards. Outside
    /// debug mode `obj` must not be an object that is already free (a double
    /// free is not detected there and corrupts the cache, as in the kernel);
    /// and `obj` must not point into a slab of a cache that is being
    /// destroyed concurrently.
    #[inline]
    pub unsafe fn free(
        &self,
        pages: &PageAllocator<P>,
        obj: NonNull<u8>,
    ) -> Result<(), SlabFreeError> {
        let word = pages.owner_word(obj.as_ptr());
        // SAFETY: the caller's contract, passed on; the word is `obj`'s.
        if unsafe { self.try_free_fast(obj, word) } {
            return Ok(());
        }
        // SAFETY: as above.
        unsafe { self.free_missed(pages, obj, word) }
    }

    /// The free fast path: if `obj` is an object of this cache on this
    /// CPU's node (by `word`, its page's owner word), not in debug mode,
    /// and this CPU's array has room, puts it there and returns `true`.
    /// Otherwise changes nothing and returns `false`: the caller takes the
    /// slow path, which frees objects of other nodes and reports what is
    /// wrong.
    ///
    /// # Safety
    ///
    /// As [`KmemCache::free`]; `word` is `pages.owner_word(obj)`.
    #[inline(always)]
    pub(crate) unsafe fn try_free_fast(&self, obj: NonNull<u8>, word: usize) -> bool {
        self.cpus.with_local(|array| {
            // The array's tag has its node's bits: one comparison checks the
            // cache and the node. In debug mode it matches nothing: every
            // free goes slow.
            OwnerTag::colour_if_tagged_on(word, array.free_tag())
                .is_some_and(|colour| self.locate_in(obj.as_ptr(), colour).is_ok())
                // SAFETY: exclusive use of this CPU's array by
                // `with_local`; the object was just validated as one of
                // ours on the array's node, handed out (the caller's
                // contract rules out double frees here).
                && unsafe { array.push_hit(obj) }
        })
    }

    /// Where a free goes when the fast path refused it: first the alien
    /// array, for an object of another node (with `word`, its page's owner
    /// word, already read: a remote free is common enough across nodes to
    /// get a short way of its own, out of line so that the local fast path
    /// keeps its length), then [`KmemCache::free_slow`].
    ///
    /// # Safety
    ///
    /// As [`KmemCache::free`]; `word` is `pages.owner_word(obj)`.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn free_missed(
        &self,
        pages: &PageAllocator<P>,
        obj: NonNull<u8>,
        word: usize,
    ) -> Result<(), SlabFreeError> {
        let alien = self.cpus.with_local(|array| {
            // SAFETY: `with_local` gives exclusive use of this CPU's array;
            // the caller's contract for `obj` and `word`.
            unsafe { self.try_free_alien(array, obj, word) }
        });
        if alien {
            return Ok(());
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { self.free_slow(pages, obj) }
    }

    /// If `obj` is an object of this cache on another node than `array`'s
    /// (by `word`) and the array's alien array has room, puts it there and
    /// returns `true`; otherwise changes nothing and returns `false` (the
    /// slow path flushes a full alien array, and reports what is wrong).
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `array`, this CPU's (inside
    /// `with_local`); as [`KmemCache::free`] for `obj`, and `word` is its
    /// page's owner word.
    #[inline(always)]
    unsafe fn try_free_alien(&self, array: &CpuArray, obj: NonNull<u8>, word: usize) -> bool {
        let node = OwnerTag::node_bits(word);
        // Debug mode and destroyed caches have no alien room.
        if node == array.node() || !array.alien.enabled() || self.lists(node).is_none() {
            return false;
        }
        let Some(colour) = OwnerTag::colour_if_tagged(word, self.slab_tag) else {
            return false;
        };
        self.locate_in(obj.as_ptr(), colour).is_ok()
            // SAFETY: exclusive use of the array per the caller; `obj` was
            // just validated as an object of ours on node `node`, which
            // has lists and is not the array's, handed out (the caller's
            // contract rules out double frees outside debug mode).
            && unsafe { array.alien.push(obj, node) }
    }

    /// Every free but a valid one without debug checks into an array with
    /// room: errors, debug checks, objects of another node, flushing a full
    /// array.
    ///
    /// # Safety
    ///
    /// As [`KmemCache::free`].
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn free_slow(
        &self,
        pages: &PageAllocator<P>,
        obj: NonNull<u8>,
    ) -> Result<(), SlabFreeError> {
        let platform = pages.platform();
        let ptr = obj.as_ptr();
        let word = pages.owner_word(ptr);
        let node = OwnerTag::node_bits(word);
        let checked = if self.is_destroyed() {
            Err(SlabFreeError::Destroyed)
        } else {
            self.locate_word(ptr, word).and_then(|_| {
                let lists = self.lists(node).ok_or(SlabFreeError::NotFromCache)?;
                if self.layout.track_state() {
                    lists.with(|lists| self.claim_for_free(pages, lists, node, ptr))?;
                }
                Ok(lists)
            })
        };
        let lists = match checked {
            Ok(lists) => lists,
            Err(error) => {
                self.report_error(platform, format_args!("free of {ptr:p}: {error}"));
                return Err(error);
            }
        };
        if self.layout.track_state() {
            // The object is marked free but on no list yet: ours alone.
            self.check_red_zones(platform, ptr, "free");
            if self.poison {
                // SAFETY: as above.
                unsafe { debug::poison(&self.layout, ptr) };
            }
        }
        let pushed = self.cpus.with_local(|array| {
            if array.node() != node {
                if !array.alien.enabled() {
                    // Debug mode, or destroyed: straight home.
                    return None;
                }
                // SAFETY: `with_local` gives exclusive use of the array;
                // `obj` is a validated object of ours a caller just freed,
                // of node `node` (which has lists), not the array's.
                unsafe {
                    if !array.alien.push(obj, node) {
                        self.flush_alien(pages, array);
                        if !array.alien.push(obj, node) {
                            return None;
                        }
                    }
                }
                return Some(true);
            }
            // SAFETY: `with_local` gives exclusive use of the array, for
            // every array call here; `obj` is a validated object of ours,
            // of the array's node, and so are the objects in the array,
            // which go back to the lists of that node.
            unsafe {
                if array.push_hit(obj) {
                    return Some(true);
                }
                if array.is_retired() {
                    return Some(false);
                }
                array.freemiss.bump();
                let batch = self.batchcount.min(array.avail());
                lists.with(|lists| self.free_block(pages, lists, array.oldest(batch)));
                array.drop_oldest(batch);
                Some(array.push(obj))
            }
        });
        let pushed = match pushed {
            Some(pushed) => pushed,
            None => self.free_remote(pages, lists, obj),
        };
        if !pushed {
            // Only reachable when racing with a successful destroy, which
            // means the object was not live.
            self.report_error(platform, format_args!("free of {ptr:p}: cache destroyed"));
            return Err(SlabFreeError::Destroyed);
        }
        Ok(())
    }

    /// Gives `obj`, a validated object of ours freed on a CPU of another
    /// node, straight back to its slab on `lists`, its own node's lists
    /// (SLAB's `cache_free_alien` without alien caches: debug mode, where
    /// every free is checked and settled at once); `false` if the cache is
    /// destroyed.
    fn free_remote(
        &self,
        pages: &PageAllocator<P>,
        lists: &P::Lock<NodeLists>,
        obj: NonNull<u8>,
    ) -> bool {
        let freed = lists.with(|lists| {
            if lists.destroyed {
                return false;
            }
            self.free_block(pages, lists, &[obj.as_ptr()]);
            NodeCounts::bump(&mut lists.counts.remote_frees);
            true
        });
        if freed {
            self.this_array(pages.platform())
                .remote_frees
                .fetch_add(1, Ordering::Relaxed);
        }
        freed
    }

    /// Sends every object of the alien array of `array` home (SLAB's
    /// `__drain_alien_cache`): for each node present, in the order of its
    /// oldest object, one round of that node's list lock gives all its
    /// objects back to their slabs, counted as remote frees of the array's
    /// CPU and of the node. Returns the slabs released on the way.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `array`.
    unsafe fn flush_alien(&self, pages: &PageAllocator<P>, array: &CpuArray) -> usize {
        let mut released = 0;
        let mut batch = [core::ptr::null_mut(); ALIEN_CAPACITY];
        // SAFETY: exclusive use per the caller, for every alien call here.
        while let Some(node) = unsafe { array.alien.first_node() } {
            // SAFETY: as above.
            let count = unsafe { array.alien.take_node(node, &mut batch) };
            let objects = batch.get(..count).unwrap_or_default();
            // Alien objects are of nodes with lists (checked before the
            // push), still in use in their slabs, so the node is not
            // destroyed (destroy needs every node's slabs unused).
            let freed = with_lists(self.lists(node), |lists| {
                released += self.free_block(pages, lists, objects);
                lists.counts.remote_frees = lists.counts.remote_frees.wrapping_add(count);
                NodeCounts::bump(&mut lists.counts.alien_flushes);
            });
            debug_assert!(freed.is_some(), "alien object of a node without lists");
            array.remote_frees.fetch_add(count, Ordering::Relaxed);
            array.alien_flushes.fetch_add(1, Ordering::Relaxed);
        }
        released
    }

    /// Gives objects from a per-CPU array (or the objects of one node from
    /// an alien array, or one object freed remotely) back to their slabs
    /// (SLAB's `free_block`), releasing slabs that become empty while the
    /// free objects exceed what the node keeps (`NodeLists::keep_free`).
    /// Returns the number of slabs released.
    ///
    /// Every object is out of a slab on `node`'s node: arrays hold objects
    /// of their own node only, and alien arrays are emptied node by node.
    fn free_block(
        &self,
        pages: &PageAllocator<P>,
        node: &mut NodeLists,
        objs: &[*mut u8],
    ) -> usize {
        let layout = &self.layout;
        let mut released = 0;
        // Objects put back whose move is not yet in `free_objects` and
        // `slab_active`: the counts are brought up to date where they are
        // read (a slab became empty) and at the end, not once per object.
        let mut back = 0usize;
        for &obj in objs {
            let Some(slab) = self.slab_of_live(pages, obj) else {
                self.report_error(
                    pages.platform(),
                    format_args!("object {obj:p} in a per-CPU array has no slab"),
                );
                debug_assert!(false, "object in a per-CPU array has no slab");
                continue;
            };
            // SAFETY: objects in arrays are counted in use by their slab,
            // so the slab is live; the lock is held; `obj` is one of its
            // objects, out of the slab.
            let inuse = unsafe {
                debug_assert!(slab.magic_ok() && slab.inuse() > 0);
                slab.put(layout, self.index_in(slab, obj));
                slab.inuse()
            };
            // At most `objs.len()`: no overflow.
            back = back.wrapping_add(1);
            // Only a slab that was full or is now empty changes lists.
            if inuse == 0 {
                node.free_objects += back;
                node.slab_active -= back;
                back = 0;
                // SAFETY: live slab of ours on a list, lock held.
                unsafe { node.relist(slab, layout.objects()) };
                if node.free_objects > node.keep_free() {
                    // SAFETY: the slab just went to the empty list; with no
                    // object in use it may be released once detached.
                    unsafe {
                        node.empty.remove(slab);
                        node.free_objects -= layout.objects();
                        self.release_detached(pages, node, slab);
                    }
                    released += 1;
                }
            } else if inuse == layout.objects().wrapping_sub(1) {
                // SAFETY: live slab of ours on a list, lock held.
                unsafe { node.relist(slab, layout.objects()) };
            }
        }
        node.free_objects += back;
        node.slab_active -= back;
        released
    }

    /// Debug checks when an object is handed out: state, red zones, poison.
    fn check_on_alloc(&self, pages: &PageAllocator<P>, obj: NonNull<u8>) {
        let platform = pages.platform();
        let ptr = obj.as_ptr();
        if let Some(slab) = self.slab_of_live(pages, ptr) {
            // SAFETY: the object is out of its slab, so the slab is live.
            let index = unsafe { self.index_in(slab, ptr) };
            // SAFETY: as above; `index < objects` for a valid object.
            let changed =
                unsafe { slab.change_state(&self.layout, index, STATE_FREE, STATE_ALLOCATED) };
            if let Err(state) = changed {
                self.report_error(
                    platform,
                    format_args!("object {ptr:p} handed out in state {state:#04x}, not free"),
                );
            }
        }
        self.check_red_zones(platform, ptr, "alloc");
        if self.poison {
            // SAFETY: the object is ours to hand out.
            if let Some(offset) = unsafe { debug::check_poison(&self.layout, ptr) } {
                // SAFETY: `offset < object_size`.
                let value = unsafe { ptr.add(offset).read() };
                self.report_error(
                    platform,
                    format_args!(
                        "write after free in object {ptr:p}: byte {offset} is {value:#04x}"
                    ),
                );
            }
        }
    }

    /// Checks and repairs the red zones of `obj`, reporting damage.
    fn check_red_zones(&self, platform: &P, ptr: *mut u8, when: &str) {
        if !self.layout.red_zone() {
            return;
        }
        // SAFETY: callers own the object's slot at this point (being freed
        // or being handed out).
        let damage = unsafe { debug::check_red_zones(&self.layout, ptr) };
        for RedZoneDamage { zone, bad_bytes } in damage.into_iter().flatten() {
            self.report_error(
                platform,
                format_args!(
                    "red zone {} object {ptr:p} overwritten ({bad_bytes} bytes), found on {when}",
                    zone.name()
                ),
            );
        }
    }

    /// Empties every CPU's array into the slabs and gives every empty slab
    /// of every node back to the page allocator. Returns the number of
    /// slabs released.
    ///
    /// The arrays are emptied by their own CPUs ([`Platform::on_each_cpu`]);
    /// call only where sleeping is allowed.
    pub fn shrink(&self, pages: &PageAllocator<P>) -> usize {
        let released = AtomicUsize::new(0);
        pages.platform().on_each_cpu(&self.cpus, &|_cpu, array| {
            // SAFETY: `on_each_cpu` gives exclusive use of the array.
            let count = unsafe { self.drain_array(pages, array) };
            released.fetch_add(count, Ordering::Relaxed);
        });
        let emptied: usize = self
            .nodes
            .iter()
            .map(|(_, lists)| {
                lists.with(|lists| {
                    // Shrinking also ends the reap period: what was freed is
                    // not kept for a return, and a node out of pages is
                    // asked for pages again.
                    lists.recent_peak = lists.slab_active;
                    lists.short_of_pages = false;
                    self.release_empty(pages, lists)
                })
            })
            .sum();
        released.load(Ordering::Relaxed) + emptied
    }

    /// Gives every object of `array` back to its slab, on the lists of the
    /// array's node, and sends the objects of its alien array home; returns
    /// the slabs released on the way (beyond the free limit).
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `array`.
    unsafe fn drain_array(&self, pages: &PageAllocator<P>, array: &CpuArray) -> usize {
        // SAFETY: exclusive use per the caller.
        let alien_released = unsafe { self.flush_alien(pages, array) };
        // SAFETY: as above.
        let released = unsafe { self.drain_local(pages, array) };
        alien_released + released
    }

    /// Gives every object of `array` (not its alien array) back to its
    /// slab, on the lists of the array's node; returns the slabs released.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `array`.
    unsafe fn drain_local(&self, pages: &PageAllocator<P>, array: &CpuArray) -> usize {
        let count = array.avail();
        if count == 0 {
            return 0;
        }
        let released = with_lists(self.lists(array.node()), |lists| {
            // SAFETY: exclusive use per the caller; the array's objects are
            // all of its node, whose lists these are.
            let objects = unsafe { array.oldest(count) };
            self.free_block(pages, lists, objects)
        });
        // The array's node always has lists (type invariants); were it
        // otherwise, the objects would stay where they are.
        let Some(released) = released else {
            return 0;
        };
        // SAFETY: as above.
        unsafe { array.drop_oldest(count) };
        released
    }

    /// Hands back what the array of `cpu` holds, after `cpu` went offline
    /// (the CPU-hotplug teardown, SLAB's `cpuup_canceled` and SLUB's
    /// `slub_cpu_dead`): its objects go back to the lists of its node, and
    /// those of its alien array to theirs. Returns the number of objects
    /// given back.
    ///
    /// # Safety
    ///
    /// `cpu` is offline and nothing else uses its array during the call: the
    /// hotplug teardown of that CPU, before it can come back.
    pub unsafe fn cpu_dead(&self, pages: &PageAllocator<P>, cpu: usize) -> usize {
        if cpu >= self.nr_cpus {
            return 0;
        }
        let array = self.cpus.get(cpu);
        let count = array.avail() + array.alien.avail();
        // SAFETY: nothing else uses the array, per the caller.
        unsafe { self.drain_array(pages, array) };
        count
    }

    /// Ends a reap period (SLAB's `cache_reap`, run periodically), node by
    /// node: forgets the recent peak, so that only the objects out of the
    /// slabs now count as recent use, and gives back empty slabs until the
    /// free objects are within `NodeLists::keep_free` again, that is within
    /// the free limit unless objects are out of the slabs. A node marked
    /// out of pages is asked for pages again at its next miss. Returns the
    /// slabs released.
    ///
    /// A cache used steadily keeps its slabs between reaps; one no longer
    /// used gives back, at its first reap, everything beyond the free limit.
    /// Per-CPU arrays are left alone (bounded by `limit`; `shrink` drains
    /// them), but their alien arrays are sent home first (SLAB's
    /// `cache_reap` drained them every round), by their own CPUs
    /// ([`Platform::on_each_cpu`], only if one holds objects): objects
    /// freed on another node do not wait there for more frees. Call only
    /// where sleeping is allowed.
    pub fn reap(&self, pages: &PageAllocator<P>) -> usize {
        let mut released = 0;
        if (0..self.nr_cpus).any(|cpu| self.cpus.get(cpu).alien.avail() != 0) {
            let flushed = AtomicUsize::new(0);
            pages.platform().on_each_cpu(&self.cpus, &|_cpu, array| {
                // SAFETY: `on_each_cpu` gives exclusive use of the array.
                let count = unsafe { self.flush_alien(pages, array) };
                flushed.fetch_add(count, Ordering::Relaxed);
            });
            released += flushed.load(Ordering::Relaxed);
        }
        for (_, lists) in self.nodes.iter() {
            released += lists.with(|node| {
                node.recent_peak = node.slab_active;
                node.short_of_pages = false;
                let keep = node.keep_free();
                let mut released = 0;
                while node.free_objects > keep {
                    // SAFETY: the lock is held; slabs on the empty list are
                    // live with no object in use.
                    let Some(slab) = (unsafe { node.empty.pop_front() }) else {
                        break;
                    };
                    node.free_objects -= self.layout.objects();
                    // SAFETY: detached now and not counted in free_objects.
                    unsafe { self.release_detached(pages, node, slab) };
                    released += 1;
                }
                released
            });
        }
        released
    }

    fn release_empty(&self, pages: &PageAllocator<P>, node: &mut NodeLists) -> usize {
        let mut released = 0;
        // SAFETY: the lock is held; slabs on the empty list are live with no
        // object in use.
        while let Some(slab) = unsafe { node.empty.pop_front() } {
            node.free_objects -= self.layout.objects();
            // SAFETY: detached now and not counted in free_objects.
            unsafe { self.release_detached(pages, node, slab) };
            released += 1;
        }
        released
    }

    /// Objects held by callers: those out of their slabs on every node less
    /// those in the per-CPU arrays and their alien arrays, each CPU
    /// counting its own (so exact while nobody else uses the cache). Call
    /// only where sleeping is allowed.
    pub(crate) fn live_objects(&self, pages: &PageAllocator<P>) -> usize {
        let cached = AtomicUsize::new(0);
        pages.platform().on_each_cpu(&self.cpus, &|_cpu, array| {
            cached.fetch_add(array.avail() + array.alien.avail(), Ordering::Relaxed);
        });
        self.slab_active()
            .saturating_sub(cached.load(Ordering::Relaxed))
    }

    /// Objects out of their slabs, summed over the nodes (each node's count
    /// taken under its lock).
    fn slab_active(&self) -> usize {
        self.nodes
            .iter()
            .map(|(_, lists)| lists.with(|lists| lists.slab_active))
            .sum()
    }

    /// Destroys the cache: every slab of every node goes back to the page
    /// allocator and every piece of bookkeeping is freed; afterwards
    /// allocations fail and frees are rejected.
    ///
    /// Refuses with [`DestroyError::Busy`], changing nothing, while callers
    /// still hold objects.
    pub fn destroy(&self, pages: &PageAllocator<P>) -> Result<(), DestroyError> {
        if self.is_destroyed() {
            return Err(DestroyError::AlreadyDestroyed);
        }
        let platform = pages.platform();
        let active = self.live_objects(pages);
        if active > 0 {
            return Err(DestroyError::Busy { active });
        }
        // With the arrays emptied, every object out of its slab is one a
        // caller holds (objects allocated since the count, by a racing
        // caller, are caught below).
        self.shrink(pages);
        // Mark the nodes destroyed one by one, each only if nothing is out
        // of its slabs; if one is busy, unmark those marked before. A racing
        // allocation may fail meanwhile, as it may once the cache is gone.
        let mut marked = 0;
        let mut refusal = None;
        for (_, lists) in self.nodes.iter() {
            refusal = lists.with(|node| {
                if node.destroyed {
                    Some(DestroyError::AlreadyDestroyed)
                } else if node.slab_active > 0 {
                    Some(DestroyError::Busy {
                        active: node.slab_active,
                    })
                } else {
                    node.destroyed = true;
                    None
                }
            });
            if refusal.is_some() {
                break;
            }
            marked += 1;
        }
        if let Some(refusal) = refusal {
            for (_, lists) in self.nodes.iter().take(marked) {
                lists.with(|node| node.destroyed = false);
            }
            return Err(refusal);
        }
        for (_, lists) in self.nodes.iter() {
            lists.with(|node| {
                self.release_empty(pages, node);
                // SAFETY: the lock is held.
                while let Some(desc) = unsafe { node.spare.pop_front() } {
                    // SAFETY: spares came from `alloc_meta` with
                    // `desc_layout` and are referenced by no live slab.
                    unsafe { platform.free_meta(desc.as_bytes(), self.desc_layout()) };
                }
            });
        }
        platform.on_each_cpu(&self.cpus, &|_cpu, array| {
            // SAFETY: exclusive use by `on_each_cpu`; nothing can have been
            // refilled since the lists were marked destroyed, and a free
            // racing with destroy is the caller's bug, handed back here.
            unsafe {
                self.drain_array(pages, array);
                array.retire();
            }
        });
        self.destroyed.store(true, Ordering::Release);
        Ok(())
    }

    /// This cache's line of `/proc/slabinfo`: the totals over the nodes,
    /// each node's figures taken under its lock.
    pub fn slabinfo(&self) -> SlabInfo {
        let layout = &self.layout;
        let (mut full, mut partial, mut empty, mut slab_active) = (0, 0, 0, 0);
        for (_, lists) in self.nodes.iter() {
            lists.with(|node| {
                full += node.full.len();
                partial += node.partial.len();
                empty += node.empty.len();
                slab_active += node.slab_active;
            });
        }
        let num_slabs = full + partial + empty;
        SlabInfo {
            active_objs: slab_active,
            num_objs: num_slabs * layout.objects(),
            objsize: layout.stride(),
            objperslab: layout.objects(),
            pagesperslab: layout.pages_per_slab(),
            limit: self.limit,
            batchcount: self.batchcount,
            sharedfactor: 0,
            active_slabs: full + partial,
            num_slabs,
        }
    }

    /// The counters of one CPU (all zero for a CPU number out of range).
    pub fn cpu_stats(&self, cpu: usize) -> CacheStats {
        if cpu >= self.nr_cpus {
            return CacheStats::default();
        }
        let array = self.cpus.get(cpu);
        let (allochit, freehit, freemiss) = (
            array.allochit.get(),
            array.freehit.get(),
            array.freemiss.get(),
        );
        let remote_allocs = array.remote_allocs.load(Ordering::Relaxed);
        let fallback_allocs = array.fallback_allocs.load(Ordering::Relaxed);
        let remote_frees = array.remote_frees.load(Ordering::Relaxed);
        let alien = array.alien.avail();
        CacheStats {
            allochit,
            allocmiss: array.allocmiss.get(),
            freehit,
            freemiss,
            allocs: allochit
                .wrapping_add(array.missed_allocs.get())
                .wrapping_add(remote_allocs)
                .wrapping_add(fallback_allocs),
            // Objects in the alien array were freed and are not yet
            // counted in `remote_frees`.
            frees: freehit
                .wrapping_add(freemiss)
                .wrapping_add(remote_frees)
                .wrapping_add(alien),
            grown: array.grown.load(Ordering::Relaxed),
            reaped: array.reaped.load(Ordering::Relaxed),
            errors: array.errors.load(Ordering::Relaxed),
            ctor_calls: array.ctor_calls.load(Ordering::Relaxed),
            remote_allocs,
            fallback_allocs,
            remote_frees,
            alien_flushes: array.alien_flushes.load(Ordering::Relaxed),
            cached: array.avail(),
            alien,
            ..CacheStats::default()
        }
    }

    /// The counters summed over all CPUs, plus the whole-cache figures.
    pub fn stats(&self) -> CacheStats {
        let mut total = CacheStats::default();
        for cpu in 0..self.nr_cpus {
            let one = self.cpu_stats(cpu);
            total.allochit += one.allochit;
            total.allocmiss += one.allocmiss;
            total.freehit += one.freehit;
            total.freemiss += one.freemiss;
            total.allocs += one.allocs;
            total.frees += one.frees;
            total.grown += one.grown;
            total.reaped += one.reaped;
            total.errors += one.errors;
            total.ctor_calls += one.ctor_calls;
            total.remote_allocs += one.remote_allocs;
            total.fallback_allocs += one.fallback_allocs;
            total.remote_frees += one.remote_frees;
            total.alien_flushes += one.alien_flushes;
            total.cached += one.cached;
            total.alien += one.alien;
        }
        total.active = total.allocs.wrapping_sub(total.frees);
        for (_, lists) in self.nodes.iter() {
            lists.with(|node| {
                total.slab_active += node.slab_active;
                total.high_water += node.high_water;
            });
        }
        total
    }

    /// Where the cache's objects are on memory node `node` and how local
    /// their use is (see [`CacheNodeStats`]); `None` for a node without
    /// memory or out of range, which never holds slabs.
    pub fn node_stats(&self, node: usize) -> Option<CacheNodeStats> {
        let lists = self.lists(node)?;
        let mut stats = lists.with(|lists| CacheNodeStats {
            slabs: lists.slabs(),
            active_slabs: lists.full.len() + lists.partial.len(),
            objects: lists.slabs() * self.layout.objects(),
            active_objs: lists.slab_active,
            high_water: lists.high_water,
            free_limit: lists.free_limit,
            remote_allocs: lists.counts.remote_allocs,
            fallback_allocs: lists.counts.fallback_allocs,
            foreign_allocs: lists.counts.foreign_allocs,
            remote_frees: lists.counts.remote_frees,
            alien_flushes: lists.counts.alien_flushes,
            grown: lists.counts.grown,
            reaped: lists.counts.reaped,
            ..CacheNodeStats::default()
        });
        for cpu in 0..self.nr_cpus {
            let array = self.cpus.get(cpu);
            stats.alien += array.alien.of_node(node);
            if array.node() != node {
                continue;
            }
            stats.cached += array.avail();
            stats.local_allocs = stats
                .local_allocs
                .wrapping_add(array.allochit.get())
                .wrapping_add(array.missed_allocs.get());
            stats.local_frees = stats
                .local_frees
                .wrapping_add(array.freehit.get())
                .wrapping_add(array.freemiss.get());
        }
        Some(stats)
    }

    /// Checks one slab of the lists of `node` against its list `kind`, its
    /// colour, its cache, its node and its free index; returns its objects
    /// in use.
    ///
    /// # Safety
    ///
    /// `slab` is a live slab on one of our lists, and the list lock is held.
    unsafe fn check_slab(
        &self,
        pages: &PageAllocator<P>,
        slab: SlabPtr,
        kind: ListKind,
        node: usize,
    ) -> Result<usize, &'static str> {
        let layout = &self.layout;
        // SAFETY: per the caller's guarantee.
        let (magic_ok, list, inuse, cache_id, s_mem, colour) = unsafe {
            (
                slab.magic_ok(),
                slab.list(),
                slab.inuse(),
                slab.cache_id(),
                slab.s_mem(),
                slab.colour(),
            )
        };
        if !magic_ok || list != kind {
            return Err("slab on the wrong list or without magic");
        }
        let expected = if inuse == 0 {
            ListKind::Empty
        } else if inuse == layout.objects() {
            ListKind::Full
        } else {
            ListKind::Partial
        };
        if expected != kind {
            return Err("slab on a list that does not match its use");
        }
        if cache_id != self.id {
            return Err("slab of another cache on our list");
        }
        let base = s_mem & self.slab_mask;
        if s_mem != base + layout.colour_offset(colour) || colour >= layout.colour_cycle() {
            return Err("slab's first slot does not match its colour");
        }
        if !self.contains(pages, (s_mem + layout.obj_offset()) as *const u8) {
            return Err("slab's first object not recognised as ours");
        }
        if pages.node_of(base as *const u8) != Some(node) {
            return Err("slab on the lists of another node than its pages'");
        }
        if OwnerTag::node_bits(pages.owner_word(base as *const u8)) != node {
            return Err("slab's owner word names another node than its lists'");
        }
        // Free indices distinct and in range: a small bitmap, one window of
        // 1024 indices at a time.
        let mut window_start = 0;
        while window_start < layout.objects() {
            let mut seen = [0u64; 16];
            for position in inuse..layout.objects() {
                // SAFETY: per the caller's guarantee; `position < objects`.
                let index = unsafe { slab.free_entry(layout, position) };
                if index >= layout.objects() {
                    return Err("free index out of range");
                }
                let Some(bit) = index.checked_sub(window_start).filter(|&b| b < 1024) else {
                    continue;
                };
                if seen[bit / 64] & (1 << (bit % 64)) != 0 {
                    return Err("free index listed twice");
                }
                seen[bit / 64] |= 1 << (bit % 64);
                // SAFETY: as above; `index < objects`.
                if layout.track_state() && unsafe { slab.state(layout, index) } != STATE_FREE {
                    return Err("free object not marked free");
                }
            }
            window_start += 1024;
        }
        Ok(inuse)
    }

    /// Checks the cache's invariants (O(objects); for tests): list
    /// membership matches each slab's use, every slab is on the lists of
    /// its pages' node, the counts of every node add up, every free index
    /// is distinct, objects in per-CPU arrays are out of their slabs and of
    /// their CPU's node, objects in alien arrays are out of live slabs of
    /// the node they are kept for, never the CPU's, and in debug mode the
    /// state bytes agree and the alien arrays are unused.
    pub fn check_invariants(&self, pages: &PageAllocator<P>) -> Result<(), &'static str> {
        let layout = &self.layout;
        const ARRAY_ERRORS: [&str; 11] = [
            "object in a per-CPU array is not an object of the cache",
            "object in a per-CPU array has no slab",
            "object in a per-CPU array is also free in its slab",
            "object in a per-CPU array is not marked free",
            "object in a per-CPU array is of another node than its CPU's",
            "per-CPU array of a node without lists",
            "object in an alien array is not an object of the cache",
            "object in an alien array is of its CPU's node or not of the node it is kept for",
            "object in an alien array is free in its slab or has none",
            "alien array's count of a node does not match its objects",
            "alien array in use in debug mode",
        ];
        let cached: [AtomicUsize; MAX_NODES] = Default::default();
        // Index + 1 into ARRAY_ERRORS of the first problem seen.
        let problem = AtomicUsize::new(0);
        pages.platform().on_each_cpu(&self.cpus, &|_cpu, array| {
            // SAFETY: `on_each_cpu` gives exclusive use of the array.
            let objects = unsafe { array.oldest(array.avail()) };
            let node = array.node();
            if let Some(count) = cached.get(node) {
                count.fetch_add(objects.len(), Ordering::Relaxed);
            }
            // The lock of the array's node keeps its objects' slabs alive.
            let found = with_lists(self.lists(node), |_lists| {
                for &obj in objects {
                    if self.locate(pages, obj).is_err() {
                        return 1;
                    }
                    if OwnerTag::node_bits(pages.owner_word(obj)) != node
                        || pages.node_of(obj) != Some(node)
                    {
                        return 5;
                    }
                    let Some(slab) = self.slab_of_live(pages, obj) else {
                        return 2;
                    };
                    // SAFETY: the lock is held and the slab is live.
                    let index = unsafe { self.index_in(slab, obj) };
                    // SAFETY: as above.
                    if unsafe { slab.is_free_in_index(layout, index) } {
                        return 3;
                    }
                    if layout.track_state()
                            // SAFETY: as above.
                            && unsafe { slab.state(layout, index) } != STATE_FREE
                    {
                        return 4;
                    }
                }
                0
            })
            .unwrap_or(6);
            let found = if found == 0 {
                // SAFETY: exclusive use of the array, as above.
                unsafe { self.check_alien(pages, array, &cached) }
            } else {
                found
            };
            if found != 0 {
                let _ = problem.compare_exchange(0, found, Ordering::Relaxed, Ordering::Relaxed);
            }
        });
        if let Some(index) = problem.load(Ordering::Relaxed).checked_sub(1) {
            return Err(ARRAY_ERRORS[index]);
        }
        for (node, lists) in self.nodes.iter() {
            let cached = cached[node].load(Ordering::Relaxed);
            lists.with(|lists| self.check_node(pages, node, lists, cached))?;
        }
        Ok(())
    }

    /// Checks the alien array of `array`, adding its objects to `cached`
    /// per node; returns 0, or the index + 1 of the problem in
    /// `check_invariants`' list.
    ///
    /// # Safety
    ///
    /// The caller has exclusive use of `array`.
    unsafe fn check_alien(
        &self,
        pages: &PageAllocator<P>,
        array: &CpuArray,
        cached: &[AtomicUsize; MAX_NODES],
    ) -> usize {
        // SAFETY: exclusive use per the caller.
        let (objects, nodes) = unsafe { array.alien.objects() };
        if self.layout.track_state() && !objects.is_empty() {
            return 11;
        }
        for node in 0..MAX_NODES {
            if nodes.iter().filter(|&&n| usize::from(n) == node).count()
                != array.alien.of_node(node)
            {
                return 10;
            }
        }
        for (&obj, &node) in objects.iter().zip(nodes) {
            let node = usize::from(node);
            if let Some(count) = cached.get(node) {
                count.fetch_add(1, Ordering::Relaxed);
            }
            if self.locate(pages, obj).is_err() {
                return 7;
            }
            if node == array.node()
                || OwnerTag::node_bits(pages.owner_word(obj)) != node
                || pages.node_of(obj) != Some(node)
            {
                return 8;
            }
            // The lock of the object's node keeps its slab alive.
            let in_use = with_lists(self.lists(node), |_lists| {
                self.slab_of_live(pages, obj).is_some_and(|slab| {
                    // SAFETY: the lock is held; the owner word names a slab
                    // of ours on this node, live while the lock is held.
                    unsafe {
                        slab.magic_ok()
                            && !slab.is_free_in_index(&self.layout, self.index_in(slab, obj))
                    }
                })
            });
            if in_use != Some(true) {
                return 9;
            }
        }
        0
    }

    /// Checks the lists of `node`, locked, with `cached` objects of the
    /// node in per-CPU arrays and alien arrays.
    fn check_node(
        &self,
        pages: &PageAllocator<P>,
        node: usize,
        lists: &NodeLists,
        cached: usize,
    ) -> Result<(), &'static str> {
        let layout = &self.layout;
        let mut free_objects = 0;
        let mut slab_active = 0;
        for (list, kind) in [
            (&lists.full, ListKind::Full),
            (&lists.partial, ListKind::Partial),
            (&lists.empty, ListKind::Empty),
        ] {
            let mut count = 0;
            let mut next = list.first();
            while let Some(slab) = next {
                count += 1;
                // SAFETY: slabs on our lists are live; the lock is held.
                let inuse = unsafe { self.check_slab(pages, slab, kind, node) }?;
                free_objects += layout.objects() - inuse;
                slab_active += inuse;
                // SAFETY: as above.
                next = unsafe { SlabList::next(slab) };
            }
            if count != list.len() {
                return Err("list length does not match");
            }
        }
        if free_objects != lists.free_objects {
            return Err("free object count does not match the slabs");
        }
        if slab_active != lists.slab_active {
            return Err("active object count does not match the slabs");
        }
        if lists.high_water < lists.slab_active {
            return Err("high-water mark below the active objects");
        }
        if lists.recent_peak < lists.slab_active {
            return Err("recent peak below the active objects");
        }
        if cached > lists.slab_active {
            return Err("more objects cached than out of the slabs");
        }
        if lists.destroyed && free_objects + slab_active != 0 {
            return Err("destroyed cache still has slabs");
        }
        Ok(())
    }
}
