// SPDX-License-Identifier: GPL-2.0

//! The read-only files of the rmm module, formatted from an [`Rmm`] into
//! any [`fmt::Write`] without allocating.
//!
//! # `rmm_slabinfo` ([`write_slabinfo`])
//!
//! `/proc/slabinfo` version 2.1: its two header lines, then one row per
//! live cache, in the kernel's format (`%-17s %6lu %6lu %6u %4u %4d :
//! tunables %4u %4u %4u : slabdata %6lu %6lu %6lu`), most recently created
//! first as in the kernel: the control file's caches, then the generic
//! caches from `kmalloc-8192` down to `kmalloc-8`.
//!
//! The columns follow SLAB, whose design rmm's slab allocator has:
//! `active_objs` counts every object not free in its slab, so objects
//! sitting in per-CPU arrays count as active (SLAB's `/proc/slabinfo` did
//! the same: only `free_objects` on the node lists were inactive);
//! `num_objs` is slabs times objects per slab; `objsize` is the slot size
//! (red zones and alignment padding included, the kernel's `s->size`); the
//! tunables are the cache's real per-CPU array `limit`, `batchcount`, and a
//! shared factor of 0 (rmm has no shared array, so `sharedavail` is 0 too);
//! `active_slabs` are the slabs with at least one object not free.
//!
//! # `rmm_buddyinfo` ([`write_buddyinfo`])
//!
//! `/proc/buddyinfo`'s format (`mm/vmstat.c`, `frag_show_print`): one line
//! `Node 0, zone      rmm ` (`"Node %d, zone %8s "`) followed by the free
//! blocks of orders 0 to 10 on the buddy lists, each as `"%6lu "`, then a
//! newline. As in the kernel, pages cached on the per-CPU page lists are
//! not counted (see `pages_pcp` in the stats).
//!
//! # `rmm_stats` ([`write_stats`])
//!
//! Lines of space-separated `key=value` pairs after a leading word.
//!
//! For every live cache (slabinfo order), one line
//! `cache=NAME objsize= active= cached= total= slabs= allocs= frees=
//! allochit= allocmiss= freehit= freemiss= grown= reaped= high= errors=
//! ctor_calls= held= corruptions=`:
//! - `objsize`: the slot size (as in slabinfo).
//! - `active`: objects allocated and not freed by callers.
//! - `cached`: free objects in the per-CPU arrays (so slabinfo's
//!   `active_objs` is `active + cached`).
//! - `total`: objects in all slabs (slabinfo's `num_objs`).
//! - `slabs`: slabs of the cache (slabinfo's `num_slabs`).
//! - `allocs`, `frees`: successful allocations and frees.
//! - `allochit`, `allocmiss`: allocations served by the CPU's array, and
//!   allocations that found it empty (refill, growth or failure).
//! - `freehit`, `freemiss`: frees that found room in the CPU's array, and
//!   frees that found it full and flushed a batch to the slabs first.
//! - `grown`, `reaped`: slabs created, and slabs given back to the page
//!   allocator.
//! - `high`: the most objects out of their slabs at once (SLAB's high
//!   mark, per-CPU cached objects included).
//! - `errors`: invalid frees and other errors the cache detected.
//! - `ctor_calls`: constructor calls (one per object of every slab created
//!   for a cache with a constructor).
//! - `held`: objects held for the control file (`alloc`/`free`).
//! - `corruptions`: held objects found not to match the constructor
//!   pattern when freed through the control file.
//!
//! After each cache line, for every CPU, one line `cache=NAME cpu=N allocs=
//! frees= allochit= allocmiss= freehit= freemiss= grown= reaped= errors=
//! ctor_calls= cached=` with the same meanings, counted on that CPU
//! (`cached`: objects in that CPU's array).
//!
//! Then the page allocator, first one line `buddy chunks= max_chunks=
//! pages_total= pages_free= pages_pcp= pages_allocated= invalid_frees=`:
//! - `chunks`, `max_chunks`: chunks of `2^10` pages held from the kernel,
//!   and the most it can hold.
//! - `pages_total`: pages in the chunks held.
//! - `pages_free`: free pages on the buddy lists (what buddyinfo counts).
//! - `pages_pcp`: free pages cached on the per-CPU page lists.
//! - `pages_allocated`: pages handed out (slabs, large kmalloc blocks,
//!   `page-alloc` blocks).
//! - `invalid_frees`: rejected frees.
//!
//! then one line per order 0 to 10, `buddy order=N allocs= failures=
//! free_blocks= pcp_blocks= held=`: successful and failed allocations of
//! blocks of that order, free blocks of that order on the buddy lists, free
//! blocks of that order cached on the per-CPU lists of all CPUs (orders 0
//! to 3; always 0 above), and blocks of that order held for the control
//! file (`page-alloc`).
//!
//! Last, one line `rmm user_caches= max_user_caches= corruptions=
//! large_blocks= kmalloc_errors= reclaimable= reaps= reaped_slabs=
//! ctl_errors= ctl_errors_unlogged= fail_every= fail_requests=
//! fail_injected=`: caches created through the control file and their
//! limit, corrupted objects found in all caches (destroyed ones included),
//! large kmalloc blocks outstanding, invalid `kfree`s outside every generic
//! cache, [`Rmm::reclaimable_pages`], the reaper's passes and the slabs
//! they gave back ([`Rmm::reap_all`]), the failed control-file commands
//! and how many of them the rate limit kept out of the kernel log
//! ([`Rmm::ctl_errors`]), and fault injection (`fail N`): the
//! current N (0: off), the page requests seen while injection was on, and
//! the requests it failed. Both counts run from load, over every N set;
//! while one N stays set, the failures it adds are the requests it adds
//! divided by N (rounded down). Injected failures of page allocations are
//! also counted in the `failures` of their order.

use crate::platform::Platform;
use crate::slab::{CacheStats, SLABINFO_HEADER};
use crate::state::{CacheEntry, Rmm, MAX_USER_CACHES};
use core::fmt::{self, Write};

/// Writes `rmm_slabinfo`: the `/proc/slabinfo` 2.1 header lines and a row
/// per live cache (see the module documentation), each row in the kernel's
/// format ([`crate::slab::SlabInfoRow`]).
pub fn write_slabinfo<P: Platform>(out: &mut impl Write, rmm: &Rmm<P>) -> fmt::Result {
    writeln!(out, "{SLABINFO_HEADER}")?;
    for entry in rmm.caches() {
        writeln!(out, "{}", entry.cache.slabinfo_row())?;
    }
    Ok(())
}

/// Writes `rmm_buddyinfo`: one `/proc/buddyinfo` line for rmm's zone.
pub fn write_buddyinfo<P: Platform>(out: &mut impl Write, rmm: &Rmm<P>) -> fmt::Result {
    write!(out, "Node {}, zone {:>8} ", 0, "rmm")?;
    for free_blocks in rmm.pages().buddyinfo() {
        write!(out, "{free_blocks:6} ")?;
    }
    writeln!(out)
}

/// The counters a cache line and a CPU line share.
fn write_counters(out: &mut impl Write, stats: &CacheStats) -> fmt::Result {
    write!(
        out,
        " allocs={} frees={} allochit={} allocmiss={} freehit={} freemiss={} grown={} reaped={}",
        stats.allocs,
        stats.frees,
        stats.allochit,
        stats.allocmiss,
        stats.freehit,
        stats.freemiss,
        stats.grown,
        stats.reaped
    )
}

fn write_cache_stats<P: Platform>(
    out: &mut impl Write,
    rmm: &Rmm<P>,
    entry: &CacheEntry<'_, P>,
) -> fmt::Result {
    let cache = entry.cache;
    let name = cache.name();
    let stats = cache.stats();
    let info = cache.slabinfo();
    write!(
        out,
        "cache={name} objsize={} active={} cached={} total={} slabs={}",
        info.objsize, stats.active, stats.cached, info.num_objs, info.num_slabs
    )?;
    write_counters(out, &stats)?;
    writeln!(
        out,
        " high={} errors={} ctor_calls={} held={} corruptions={}",
        stats.high_water, stats.errors, stats.ctor_calls, entry.held, entry.corruptions
    )?;
    for cpu in 0..rmm.platform().nr_cpu_ids() {
        let stats = cache.cpu_stats(cpu);
        write!(out, "cache={name} cpu={cpu}")?;
        write_counters(out, &stats)?;
        writeln!(
            out,
            " errors={} ctor_calls={} cached={}",
            stats.errors, stats.ctor_calls, stats.cached
        )?;
    }
    Ok(())
}

/// Writes `rmm_stats`: per-cache, per-CPU, page allocator and module lines
/// (every key is described in the module documentation).
pub fn write_stats<P: Platform>(out: &mut impl Write, rmm: &Rmm<P>) -> fmt::Result {
    for entry in rmm.caches() {
        write_cache_stats(out, rmm, &entry)?;
    }
    let pages = rmm.pages().stats();
    writeln!(
        out,
        "buddy chunks={} max_chunks={} pages_total={} pages_free={} pages_pcp={} pages_allocated={} invalid_frees={}",
        pages.chunks,
        pages.max_chunks,
        pages.pages_total,
        pages.pages_free,
        pages.pages_pcp,
        pages.pages_allocated,
        pages.invalid_frees
    )?;
    let free_blocks = rmm.pages().buddyinfo();
    let per_order = pages
        .allocs
        .iter()
        .zip(&pages.failures)
        .zip(&free_blocks)
        .zip(&pages.pcp_blocks);
    for (order, (((allocs, failures), free), pcp)) in per_order.enumerate() {
        writeln!(
            out,
            "buddy order={order} allocs={allocs} failures={failures} free_blocks={free} pcp_blocks={pcp} held={}",
            rmm.held_blocks(order as u32)
        )?;
    }
    let kmalloc = rmm.kmalloc();
    let faults = rmm.fault_stats();
    writeln!(
        out,
        "rmm user_caches={} max_user_caches={MAX_USER_CACHES} corruptions={} large_blocks={} kmalloc_errors={} reclaimable={} reaps={} reaped_slabs={} ctl_errors={} ctl_errors_unlogged={} fail_every={} fail_requests={} fail_injected={}",
        rmm.user_caches(),
        rmm.corruptions(),
        kmalloc.large_blocks(),
        kmalloc.errors(),
        rmm.reclaimable_pages(),
        rmm.reap_stats().passes,
        rmm.reap_stats().released,
        rmm.ctl_errors().0,
        rmm.ctl_errors().1,
        faults.every,
        faults.requests,
        faults.injected
    )
}
