// SPDX-License-Identifier: GPL-2.0

//! What a cache tells about itself: [`CacheStats`] (SLAB's `STATS_*`
//! counters) and [`SlabInfo`] (a row of `/proc/slabinfo`).

use core::fmt;

/// Counters of a cache, from [`super::KmemCache::stats`] (summed over the
/// CPUs) or [`super::KmemCache::cpu_stats`] (one CPU).
///
/// The counters are kept per CPU and credited to the CPU the operation ran
/// on, so that no shared cache line is written on the fast paths; a remote
/// free is a `free` of the CPU that freed. Under concurrent use the sum is a
/// close approximation, not a snapshot.
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
    /// Objects held by callers: `allocs - frees`. Whole-cache figure, 0 in
    /// a per-CPU view.
    pub active: usize,
    /// Free objects sitting in per-CPU arrays (of this CPU in a per-CPU
    /// view).
    pub cached: usize,
    /// Objects not free in their slabs: held by callers or cached in a
    /// per-CPU array (slabinfo's `active_objs`). Whole-cache figure, 0 in a
    /// per-CPU view.
    pub slab_active: usize,
    /// The most objects ever out of the slabs at once (SLAB's `high_mark`,
    /// the maximum of `slab_active`). Whole-cache figure, 0 in a per-CPU
    /// view.
    pub high_water: usize,
}

/// A row of `/proc/slabinfo` (version 2.1), from
/// [`super::KmemCache::slabinfo`].
///
/// As in SLAB, objects in per-CPU arrays are not free slab objects: they
/// count in `active_objs`, which is therefore the objects held by callers
/// plus those cached in per-CPU arrays. Taken under the cache's list lock,
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
