// SPDX-License-Identifier: GPL-2.0

//! What a cache tells about itself: [`CacheStats`] (SLAB's `STATS_*`
//! counters), [`CacheNodeStats`] (where its objects are, node by node, and
//! how local their use is) and [`SlabInfo`] (a row of `/proc/slabinfo`).

use core::fmt;

/// Counters of a cache, from [`super::KmemCache::stats`] (summed over the
/// CPUs) or [`super::KmemCache::cpu_stats`] (one CPU).
///
/// The counters are kept per CPU and credited to the CPU the operation ran
/// on, so that no shared cache line is written on the fast paths; a free on
/// another CPU than the allocation's is a `free` of the CPU that freed.
/// Under concurrent use the sum is a close approximation, not a snapshot.
///
/// `allocs` counts every object handed out: `allochit`, the objects
/// refilled into the array after a miss, `remote_allocs` and
/// `fallback_allocs`; `frees` every object taken back: `freehit`,
/// `freemiss`, `remote_frees` and the objects now in the alien arrays
/// (`alien`: freed, not yet returned to their node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Allocations served from the CPU's array.
    pub allochit: usize,
    /// Allocations that found the CPU's array empty and refilled it (or
    /// grew the cache, or failed).
    pub allocmiss: usize,
    /// Frees that found room in the CPU's array.
    pub freehit: usize,
    /// Frees that found the CPU's array full and flushed `batchcount`
    /// objects back to their slabs first.
    pub freemiss: usize,
    /// Objects handed out (successful allocations).
    pub allocs: usize,
    /// Objects taken back (successful frees).
    pub frees: usize,
    /// Slabs created.
    pub grown: usize,
    /// Slabs given back to the page allocator (over the free limit, by
    /// shrink, or by destroy).
    pub reaped: usize,
    /// Errors detected and reported (invalid frees, corruption, refused
    /// requests).
    pub errors: usize,
    /// Constructor calls.
    pub ctor_calls: usize,
    /// Objects handed out by [`super::KmemCache::alloc_node`] for another
    /// node than the CPU's, straight from that node's lists (objects of
    /// that node, never through this CPU's array).
    pub remote_allocs: usize,
    /// Objects handed out from the slabs of another node than the one the
    /// request wanted (the CPU's, or the one `alloc_node` named), because
    /// that node was out of pages: SLAB's `fallback_alloc`. Straight from
    /// the other node's lists, never through the CPU's array.
    pub fallback_allocs: usize,
    /// Objects of another node than the CPU's, freed on the CPU, returned
    /// to their own node's lists (never through this CPU's array): in
    /// batches from the CPU's alien array when it is flushed (full, drained,
    /// reaped), or one at a time in debug mode.
    pub remote_frees: usize,
    /// Lock rounds taken to return the objects of alien arrays: one per
    /// node present at each flush (`remote_frees / alien_flushes` is the
    /// average batch).
    pub alien_flushes: usize,
    /// Objects held by callers: `allocs - frees`. Whole-cache figure, 0 in
    /// a per-CPU view.
    pub active: usize,
    /// Free objects sitting in per-CPU arrays (of this CPU in a per-CPU
    /// view).
    pub cached: usize,
    /// Objects of other nodes freed on a CPU and waiting in its alien
    /// array to go home (of this CPU in a per-CPU view): counted in
    /// `frees`, not yet in `remote_frees`, still in use in their slabs
    /// (`slab_active`), never handed out from there.
    pub alien: usize,
    /// Objects not free in their slabs: held by callers or cached in a
    /// per-CPU array (slabinfo's `active_objs`). Whole-cache figure, 0 in a
    /// per-CPU view.
    pub slab_active: usize,
    /// The most objects ever out of the slabs at once (SLAB's `high_mark`,
    /// the maximum of `slab_active`), kept per node and summed: with
    /// several nodes, the sum of each node's maximum, which may exceed the
    /// cache's. Whole-cache figure, 0 in a per-CPU view.
    pub high_water: usize,
}

/// Where a cache's objects are on one memory node, and how local their use
/// is, from [`super::KmemCache::node_stats`].
///
/// Every slab is on the lists of the node of its pages; its objects stay
/// with that node. The per-CPU arrays of the node's CPUs hold only objects
/// of the node; objects of the node freed on other nodes' CPUs wait in
/// those CPUs' alien arrays (`alien`) until they are sent home. The slab and object counts are taken under the node's list
/// lock and agree with each other; the allocation and free counts are
/// running totals (wrapping, as the kernel's statistics), read without a
/// lock.
///
/// Locality at a glance: `local_allocs` against `remote_allocs +
/// fallback_allocs` (objects of this node used by CPUs of this node, or
/// not), `foreign_allocs` (requests this node could not serve), and
/// `remote_frees` against `local_frees`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheNodeStats {
    /// Slabs on the node's lists (all of them with pages on this node).
    pub slabs: usize,
    /// Slabs with at least one object not free in them.
    pub active_slabs: usize,
    /// Objects in the node's slabs: `slabs * objperslab`.
    pub objects: usize,
    /// Objects of the node's slabs not free in them: held by callers,
    /// cached in the arrays of the node's CPUs, or waiting in alien arrays.
    pub active_objs: usize,
    /// Free objects of the node cached in the arrays of the node's CPUs.
    pub cached: usize,
    /// Objects of the node freed by CPUs of other nodes and waiting in
    /// their alien arrays to come back (counted in `active_objs`).
    pub alien: usize,
    /// The most objects out of the node's slabs at once.
    pub high_water: usize,
    /// Free objects the node's lists keep in empty slabs before giving
    /// slabs back (SLAB's per-node `free_limit`: `(1 + CPUs of the node) *
    /// batchcount + objperslab`).
    pub free_limit: usize,
    /// Objects handed out by the node's CPUs through their arrays: always
    /// objects of this node (allocation hits, and objects refilled from
    /// this node's lists after a miss).
    pub local_allocs: usize,
    /// Objects of this node handed out by `alloc_node(this node)` to CPUs
    /// of other nodes, straight from the node's lists.
    pub remote_allocs: usize,
    /// Objects of this node handed out for requests that wanted another
    /// node, out of pages (the kernel's `numa_miss`, for objects).
    pub fallback_allocs: usize,
    /// Requests that wanted this node and got an object of another node,
    /// because this node was out of pages (the kernel's `numa_foreign`).
    pub foreign_allocs: usize,
    /// Frees by the node's CPUs into their arrays (always objects of this
    /// node).
    pub local_frees: usize,
    /// Objects of this node freed by CPUs of other nodes and returned to
    /// this node's lists (in batches from their alien arrays, one at a time
    /// in debug mode).
    pub remote_frees: usize,
    /// Batches of alien objects returned to this node's lists, one lock
    /// round each.
    pub alien_flushes: usize,
    /// Slabs created on this node (pages from this node).
    pub grown: usize,
    /// Slabs of this node given back to the page allocator.
    pub reaped: usize,
}

/// A row of `/proc/slabinfo` (version 2.1), from
/// [`super::KmemCache::slabinfo`].
///
/// As in SLAB, objects in per-CPU arrays (and in alien arrays) are not
/// free slab objects: they count in `active_objs`, which is therefore the
/// objects held by callers plus those cached in per-CPU and alien arrays. Taken under the cache's list lock,
/// so the numbers agree with each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabInfo {
    /// Objects not free in their slabs (held by callers or cached in
    /// per-CPU arrays).
    pub active_objs: usize,
    /// Objects in all slabs: `num_slabs * objperslab`.
    pub num_objs: usize,
    /// Bytes per object slot (the stride, red zones and padding included).
    pub objsize: usize,
    /// Objects per slab.
    pub objperslab: usize,
    /// Pages per slab.
    pub pagesperslab: usize,
    /// Most objects in a per-CPU array.
    pub limit: usize,
    /// Objects moved between a per-CPU array and the lists at a time.
    pub batchcount: usize,
    /// Shared-array factor: always 0, rmm has no shared array.
    pub sharedfactor: usize,
    /// Slabs with at least one object not free.
    pub active_slabs: usize,
    /// All slabs.
    pub num_slabs: usize,
}

/// The header lines of `/proc/slabinfo` version 2.1, matching
/// [`SlabInfoRow`].
pub const SLABINFO_HEADER: &str = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> \
: tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>";

/// A [`SlabInfo`] with its cache name, formatted as a `/proc/slabinfo` line
/// in the kernel's format (`cache_show` in `mm/slab_common.c`):
/// `%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u : slabdata %6lu %6lu %6lu`.
pub struct SlabInfoRow<'a> {
    /// The cache's name.
    pub name: &'a str,
    /// The cache's figures.
    pub info: SlabInfo,
}

impl fmt::Display for SlabInfoRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.info;
        write!(
            f,
            "{:<17} {:6} {:6} {:6} {:4} {:4} : tunables {:4} {:4} {:4} : slabdata {:6} {:6} {:6}",
            self.name,
            info.active_objs,
            info.num_objs,
            info.objsize,
            info.objperslab,
            info.pagesperslab,
            info.limit,
            info.batchcount,
            info.sharedfactor,
            info.active_slabs,
            info.num_slabs,
            // rmm has no shared arrays.
            0
        )
    }
}
