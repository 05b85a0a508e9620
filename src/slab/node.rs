// SPDX-License-Identifier: GPL-2.0

//! The per-node half of a cache: one set of slab lists for every memory
//! node, SLAB's `kmem_cache_node`.
//!
//! A slab lives on the lists of the node its pages are on, found with
//! [`crate::page_alloc::PageAllocator::node_of`] when it is grown and kept
//! in its owner word (`OwnerTag`), and its objects never leave that node:
//! a CPU's array holds objects of its own node only, an object freed on a
//! CPU of another node waits in that CPU's alien array (still in use in its
//! slab, never handed out there) and goes back to its node's lists with
//! the others of its node when the alien array is flushed, and an
//! object handed out from another node than the caller's (`alloc_node`, or
//! a fallback when a node is out of pages) comes straight from that node's
//! lists. Each node's lists have their own lock, so the CPUs of different
//! nodes refilling and flushing their arrays do not contend.
//!
//! Locks of two nodes are never held at once: code that needs two nodes
//! (a fallback allocation counted on both, an alien flush to several
//! nodes) takes them one after the other.

use super::descriptor::{ListKind, SlabList, SlabPtr};
use super::layout::SlabLayout;
use crate::platform::MAX_NODES;
use core::ptr::NonNull;

/// Counts of one node's lists, kept under its lock (see
/// [`super::CacheNodeStats`] for what each means).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct NodeCounts {
    pub(super) grown: usize,
    pub(super) reaped: usize,
    pub(super) remote_allocs: usize,
    pub(super) fallback_allocs: usize,
    pub(super) foreign_allocs: usize,
    pub(super) remote_frees: usize,
    pub(super) alien_flushes: usize,
}

impl NodeCounts {
    /// Adds one to `count`, wrapping as the kernel's statistics do.
    #[inline]
    pub(super) fn bump(count: &mut usize) {
        *count = count.wrapping_add(1);
    }
}

/// The slab lists of one node, under its [`crate::platform::LockClass::SlabNode`]
/// lock (SLAB's `kmem_cache_node`).
///
/// # Invariants
///
/// Every live slab of the cache whose pages are on this node is on exactly
/// one of `full`, `partial`, `empty` of this node, matching its `inuse`
/// (all, some, none of its objects), and no other slab is;
/// `free_objects` is the sum of the free objects of those slabs and
/// `slab_active` of their `inuse`; `high_water >= slab_active` and
/// `recent_peak >= slab_active`. `spare` holds released off-slab
/// descriptors of this cache. Once `destroyed`, all lists are empty.
pub(super) struct NodeLists {
    pub(super) full: SlabList,
    pub(super) partial: SlabList,
    pub(super) empty: SlabList,
    pub(super) spare: SlabList,
    pub(super) free_objects: usize,
    pub(super) slab_active: usize,
    pub(super) high_water: usize,
    /// Most objects out of the slabs at once since the last reap: how many
    /// free objects the lists keep when frees empty their slabs (see
    /// [`NodeLists::keep_free`]).
    pub(super) recent_peak: usize,
    /// Free objects kept in empty slabs in any case: `(1 + CPUs of the
    /// node) * batchcount + objects per slab` (SLAB's per-node
    /// `free_limit`).
    pub(super) free_limit: usize,
    /// The last slab grown for a request wanting this node had to come
    /// from another node: the node is out of pages. Until the next reap,
    /// a miss that finds these lists empty takes an object from the other
    /// nodes' lists before growing again, as SLAB's `fallback_alloc` does,
    /// instead of growing a slab elsewhere for every object.
    pub(super) short_of_pages: bool,
    pub(super) destroyed: bool,
    pub(super) counts: NodeCounts,
}

// SAFETY: the descriptors the lists point to belong to the cache and are
// only touched under the lock that protects this value.
unsafe impl Send for NodeLists {}

impl NodeLists {
    /// Empty lists keeping `free_limit` free objects.
    pub(super) fn new(free_limit: usize) -> Self {
        NodeLists {
            full: SlabList::new(ListKind::Full),
            partial: SlabList::new(ListKind::Partial),
            empty: SlabList::new(ListKind::Empty),
            spare: SlabList::new(ListKind::Detached),
            free_objects: 0,
            slab_active: 0,
            high_water: 0,
            recent_peak: 0,
            free_limit,
            short_of_pages: false,
            destroyed: false,
            counts: NodeCounts::default(),
        }
    }

    fn list_mut(&mut self, kind: ListKind) -> Option<&mut SlabList> {
        match kind {
            ListKind::Full => Some(&mut self.full),
            ListKind::Partial => Some(&mut self.partial),
            ListKind::Empty => Some(&mut self.empty),
            ListKind::Detached => None,
        }
    }

    /// Slabs on the three lists.
    pub(super) fn slabs(&self) -> usize {
        self.full.len() + self.partial.len() + self.empty.len()
    }

    /// How many free objects the lists keep when frees empty slabs: the
    /// free limit, or as many as were out of the slabs at the recent peak
    /// and are back now, if more. A cache that just had `n` objects out
    /// will likely want them again: keeping their slabs until the next
    /// reap (SLAB's `cache_reap`, every two seconds in the kernel module)
    /// saves rebuilding them. The peak is forgotten only by a reap or a
    /// shrink of the cache: an owner that never reaps keeps up to its
    /// all-time peak until it shrinks (the module's memory shrinker does,
    /// under pressure).
    pub(super) fn keep_free(&self) -> usize {
        self.free_limit.max(self.recent_peak - self.slab_active)
    }

    /// Accounts for `taken` objects just taken out of the slabs.
    pub(super) fn note_taken(&mut self, taken: usize) {
        self.free_objects -= taken;
        self.slab_active += taken;
        self.high_water = self.high_water.max(self.slab_active);
        self.recent_peak = self.recent_peak.max(self.slab_active);
    }

    /// Takes one free object, from a partial slab if there is one, else
    /// from an empty one, for a caller (not for an array), and accounts
    /// for it.
    pub(super) fn take_one(&mut self, layout: &SlabLayout) -> Option<NonNull<u8>> {
        let slab = self.partial.first().or_else(|| self.empty.first())?;
        // SAFETY: a slab on our lists is live; the lock is held (we have
        // `&mut self`).
        let first = unsafe { slab.s_mem() }.wrapping_add(layout.obj_offset());
        let mut obj = None;
        // SAFETY: as above; the object taken off the index is free and
        // counted in use from now on.
        let taken = unsafe {
            slab.take_many(layout, 1, |index| {
                // In a slab at most 2 MiB long: no overflow.
                obj = NonNull::new(
                    first.wrapping_add(index.wrapping_mul(layout.stride())) as *mut u8
                );
            })
        };
        // SAFETY: as above.
        unsafe { self.relist(slab, layout.objects()) };
        self.note_taken(taken);
        obj
    }

    /// Moves `slab` to the list matching its `inuse`.
    ///
    /// # Safety
    ///
    /// `slab` is a live slab of this cache on one of these three lists; the
    /// lock is held (we have `&mut self`).
    #[inline]
    pub(super) unsafe fn relist(&mut self, slab: SlabPtr, objects: usize) {
        // SAFETY: lock held, slab live.
        let (inuse, current) = unsafe { (slab.inuse(), slab.list()) };
        let wanted = if inuse == 0 {
            ListKind::Empty
        } else if inuse == objects {
            ListKind::Full
        } else {
            ListKind::Partial
        };
        if wanted == current {
            return;
        }
        if let Some(list) = self.list_mut(current) {
            // SAFETY: the slab is on `current`.
            unsafe { list.remove(slab) };
        }
        if let Some(list) = self.list_mut(wanted) {
            // SAFETY: the slab is detached now.
            unsafe { list.push_front(slab) };
        }
    }
}

/// One `L` (a lock around a [`NodeLists`]) for every memory node with
/// memory, indexed by node number.
///
/// # Invariants
///
/// Entries of nodes without memory, and of node numbers at or above the
/// page allocator's `nr_nodes`, are `None`; every other entry is `Some`.
pub(super) struct NodeSet<L> {
    lists: [Option<L>; MAX_NODES],
}

impl<L> NodeSet<L> {
    /// Makes the entry of every node below `nr_nodes` for which
    /// `has_memory` says yes with `make(node)`.
    pub(super) fn new<E>(
        nr_nodes: usize,
        has_memory: impl Fn(usize) -> bool,
        mut make: impl FnMut(usize) -> Result<L, E>,
    ) -> Result<Self, E> {
        let mut lists: [Option<L>; MAX_NODES] = Default::default();
        for (node, entry) in lists.iter_mut().enumerate().take(nr_nodes) {
            if has_memory(node) {
                *entry = Some(make(node)?);
            }
        }
        // INVARIANT: an entry exactly for each node with memory.
        Ok(NodeSet { lists })
    }

    /// The lists of `node`, if it has memory.
    #[inline]
    pub(super) fn get(&self, node: usize) -> Option<&L> {
        self.lists.get(node)?.as_ref()
    }

    /// Every node with memory and its lists, in node order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &L)> {
        self.lists
            .iter()
            .enumerate()
            .filter_map(|(node, lists)| Some((node, lists.as_ref()?)))
    }
}
