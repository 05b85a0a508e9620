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
//! `/proc/buddyinfo`'s format (`mm/vmstat.c`, `frag_show_print`): for every
//! node with memory, in node order, one line `Node N, zone      rmm `
//! (`"Node %d, zone %8s "`) followed by the free blocks of orders 0 to 10
//! on that node's buddy lists, each as `"%6lu "`, then a newline (rmm's
//! pool is one zone per node, as the kernel's `DMA32` or `Normal`). As in
//! the kernel, pages cached on the per-CPU page lists are not counted (see
//! `pages_pcp` in the stats).
//!
//! # `rmm_stats` ([`write_stats`])
//!
//! Lines of space-separated `key=value` pairs after a leading word.
//!
//! For every live cache (slabinfo order), one line
//! `cache=NAME objsize= active= cached= alien= total= slabs= allocs= frees=
//! allochit= allocmiss= freehit= freemiss= grown= reaped= high= errors=
//! ctor_calls= held= corruptions=`:
//! - `objsize`: the slot size (as in slabinfo).
//! - `active`: objects allocated and not freed by callers.
//! - `cached`: free objects in the per-CPU arrays.
//! - `alien`: objects freed on a CPU of another node than theirs, waiting
//!   in that CPU's alien array to go home in a batch (so slabinfo's
//!   `active_objs` is `active + cached + alien`).
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
//! ctor_calls= cached= alien=` with the same meanings, counted on that CPU
//! (`cached`, `alien`: objects in that CPU's array and alien array).
//!
//! Then for every node with memory (node 0 alone without NUMA), one line
//! `cache=NAME node=N slabs= active_slabs= objects= active_objs= cached=
//! alien= high= free_limit= local_allocs= remote_allocs= fallback_allocs=
//! foreign_allocs= local_frees= remote_frees= alien_flushes= grown=
//! reaped=`: the
//! cache's part on that node ([`crate::slab::CacheNodeStats`]; slabinfo's
//! row is the total over the nodes):
//! - `slabs`, `active_slabs`, `objects`, `active_objs`: the node's slabs
//!   (their pages are on the node), those with an object not free, their
//!   objects, and those not free (held, cached in the arrays of the
//!   node's CPUs, `cached`, or freed on CPUs of other nodes and waiting in
//!   their alien arrays, `alien`).
//! - `high`: the most objects out of the node's slabs at once; `free_limit`:
//!   free objects the node keeps in empty slabs before giving slabs back.
//! - `local_allocs`, `local_frees`: objects of the node allocated and freed
//!   by the node's CPUs through their arrays.
//! - `remote_allocs`: objects of the node handed to CPUs of other nodes
//!   that asked for this node (`alloc NAME COUNT node=N`).
//! - `fallback_allocs`, `foreign_allocs`: objects of the node handed out
//!   for requests that wanted another node, out of pages (the kernel's
//!   `numa_miss`), and requests that wanted this node and got an object of
//!   another (`numa_foreign`).
//! - `remote_frees`: objects of the node freed by CPUs of other nodes and
//!   returned to the node's lists, in batches from those CPUs' alien
//!   arrays (one at a time for a debug cache); `alien_flushes`: the
//!   batches, one lock round of the node's lists each.
//! - `grown`, `reaped`: slabs built on the node and given back.
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
//! Then one line `zone free= min= low= high= reserve_kb= reserve_auto=
//! refills= refill_chunks= refill_failures= min_allocs= reserve_allocs=
//! reserve_pages= refused=`, the watermarks of the page allocator (see
//! [`crate::page_alloc::watermark`]):
//! - `free`: free pages on the buddy lists (`pages_free`), what the
//!   watermarks are compared with.
//! - `min`, `low`, `high`: the watermarks, in pages, for the pool's
//!   current size; below `min` lies the emergency reserve.
//! - `reserve_kb`, `reserve_auto`: the reserve (`min`) in KiB, and 1 if it
//!   is the pool's share of the kernel's `min_free_kbytes` (`reserve auto`,
//!   the default), 0 if it was set in KiB.
//! - `refills`, `refill_chunks`, `refill_failures`: times a request that
//!   may sleep found the free pages below `low` (or no block of its order)
//!   and refilled the pool, the chunks it took, and chunk requests refused
//!   meanwhile.
//! - `min_allocs`: allocations that went below `low` but not below `min`
//!   (atomic ones, and sleeping ones whose refill failed).
//! - `reserve_allocs`, `reserve_pages`: allocations that went below `min`,
//!   into the reserve (`GFP_ATOMIC` only), and the pages they took there.
//! - `refused`: requests refused by a watermark (`GFP_NOWAIT` below `low`,
//!   a sleeping request below `min` after its refill failed, an atomic one
//!   with too little left even in the reserve).
//!
//! Then for every node number below `nr_node_ids` (one line, `node=0`, on
//! a machine without NUMA), one line `node=N chunks= pages_total=
//! pages_free= pages_pcp= numa_hit= numa_miss= numa_foreign= local_node=
//! other_node= free_local= free_remote= held_pages= held_objects=`: the
//! node's part of
//! the pool and its allocations and frees, with the kernel's numastat
//! names (`/sys/devices/system/node/nodeN/numastat`; see
//! [`crate::page_alloc::NodeStats`]):
//! - `chunks`, `pages_total`: chunks held on the node (taken from the
//!   kernel on that node, `__GFP_THISNODE`) and their pages.
//! - `pages_free`: free pages on the node's buddy lists (its buddyinfo
//!   line); `pages_pcp`: free pages of the node on per-CPU lists (those of
//!   the node's CPUs: a CPU's lists hold pages of its own node only).
//! - `numa_hit`: allocations served here that preferred this node (the
//!   calling CPU's, or the one named with `node=N`); `numa_miss`:
//!   allocations served here that preferred another node (fallbacks into
//!   this node); `numa_foreign`: allocations that preferred this node and
//!   were served by another (fallbacks out of it).
//! - `local_node`, `other_node`: allocations served here for a CPU of this
//!   node, and for a CPU of another node.
//! - `free_local`, `free_remote`: frees of this node's pages by a CPU of
//!   this node, and by a CPU of another node (which go back to this node's
//!   lists, not to the freeing CPU's).
//! - `held_pages`, `held_objects`: pages of the control file's
//!   `page-alloc` blocks, and objects it holds (`alloc`, all caches), that
//!   are on this node by the kernel's own account of their pages
//!   ([`Platform::page_node`]: `page_to_nid`), not rmm's bookkeeping.
//!
//! Then one line `vmalloc areas= max_areas= pages= vmallocs= vfrees=
//! failures=`: the control file's vmalloc areas now, their limit, the
//! pages in them, and the successful `vmalloc` and `vfree` commands and the
//! `vmalloc` commands that failed for lack of memory or mapping since load.
//!
//! Last, one line `rmm user_caches= max_user_caches= corruptions=
//! large_blocks= kmalloc_errors= reclaimable= reaps= reaped_slabs=
//! ctl_errors= ctl_errors_unlogged= fail_every= fail_refill= fail_requests=
//! fail_injected=`: caches created through the control file and their
//! limit, corrupted objects found in all caches (destroyed ones included),
//! large kmalloc blocks outstanding, invalid `kfree`s outside every generic
//! cache, [`Rmm::reclaimable_pages`], the reaper's passes and the slabs
//! they gave back ([`Rmm::reap_all`]), the failed control-file commands
//! and how many of them the rate limit kept out of the kernel log
//! ([`Rmm::ctl_errors`]), and fault injection (`fail N [refill]`): the
//! current N (0: off), 1 if it numbers only refills (`fail N refill`), the
//! page requests seen while injection was on, and the requests it failed.
//! Both counts run from load, over every N set; while one N stays set, the
//! failures it adds are the requests it adds divided by N (rounded down).
//! Injected failures of page allocations are also counted in the
//! `failures` of their order.
//!
//! # `rmm_vmallocinfo` ([`write_vmallocinfo`])
//!
//! `/proc/vmallocinfo`'s format (`mm/vmalloc.c`, `vmalloc_info_show`), one
//! line per area of the control file, in address order: `0x%pK-0x%pK
//! %7ld` (the range and size the area takes in the vmalloc address space,
//! its guard page included, as the kernel prints them), the caller (here
//! the area's name), `pages=N` and `vmalloc`. Addresses go through
//! [`Platform::write_address`]: in the kernel they are hashed unless
//! `kptr_restrict` lets the reader see them, as in `/proc/vmallocinfo`.
//! rmm's areas, mapped with `vmap`, also show in the kernel's own file, as
//! `vmap` areas whose caller is `rmm_vmap`.
//!
//! # `rmm_zoneinfo` ([`write_zoneinfo`])
//!
//! `/proc/zoneinfo`'s format (`mm/vmstat.c`, `zoneinfo_show_print`) for
//! rmm's zone on every node with memory, in node order: `Node N, zone
//! rmm`, then the node's `pages free`, `boost` (0), `min`, `low`, `high`
//! (the node's watermarks: its share of the reserve, in proportion to its
//! pages), `promo` (`high` plus the watermark distance), `spanned` (pages
//! from the node's first chunk's start to its last one's end, holes
//! between chunks included), `present` and `managed` (pages in the node's
//! chunks), `cma` (0), `protection: (0)`, the zone counter
//! `nr_free_pages`, then `pagesets` with every CPU's per-CPU lists, as the
//! kernel lists every CPU under every zone: `count` (pages of this node
//! cached, all orders: a CPU's lists hold pages of its own node only, so 0
//! under the other nodes), `high` and `batch` (of order 0, in pages), and
//! `vm stats threshold: 0`; last `node_unreclaimable:  0` and `start_pfn:`
//! (the frame number of the node's first chunk, 0 without chunks).
//!
//! # `rmm_frames` ([`write_frames`])
//!
//! Which physical pages back the control file's vmalloc areas and page
//! blocks, from the pages' own frame numbers. Two header lines starting
//! with `#`, then for every page of every area (address order) a line
//! `vmalloc NAME PAGE ADDRESS PFN MAPPED_PFN`: the page's index in the
//! area, its address in the area (virtual, consecutive), the frame number
//! of the page rmm allocated for it ([`Platform::page_frame`]:
//! `page_to_pfn`) and the frame number the mapping leads to at that
//! address ([`Platform::mapped_frame`]: `vmalloc_to_pfn`, a page-table
//! walk; `-` if nothing is mapped). Then for every page of every held
//! `page-alloc` block, by order and most recent block first, a line
//! `block ORDER BLOCK PAGE ADDRESS PFN`. An area's frame numbers need not
//! be consecutive; a block's always are.

use crate::areas::MAX_AREAS;
use crate::page_alloc::{FailScope, NodeStats, Reserve, MAX_ORDER, PCP_BATCH, PCP_HIGH};
use crate::platform::{Platform, MAX_NODES, PAGE_SIZE};
use crate::slab::{CacheStats, SLABINFO_HEADER};
use crate::state::{CacheEntry, Rmm, MAX_USER_CACHES};
use core::fmt::{self, Write};
use core::ptr::NonNull;

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

/// The nodes with memory, in order: the nodes rmm's zone is on.
fn nodes_with_memory<P: Platform>(rmm: &Rmm<P>) -> impl Iterator<Item = usize> + '_ {
    let pages = rmm.pages();
    (0..pages.nr_nodes()).filter(|&node| pages.node_has_memory(node))
}

/// Writes `rmm_buddyinfo`: one `/proc/buddyinfo` line for rmm's zone on
/// each node with memory.
pub fn write_buddyinfo<P: Platform>(out: &mut impl Write, rmm: &Rmm<P>) -> fmt::Result {
    for node in nodes_with_memory(rmm) {
        write!(out, "Node {node}, zone {:>8} ", "rmm")?;
        for free_blocks in rmm.pages().node_buddyinfo(node) {
            write!(out, "{free_blocks:6} ")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Pages of the control file's held `page-alloc` blocks, and its held
/// objects, on each node, by the platform's account of the pages
/// ([`Platform::page_node`]).
fn held_per_node<P: Platform>(rmm: &Rmm<P>) -> ([usize; MAX_NODES], [usize; MAX_NODES]) {
    let platform = rmm.platform();
    let mut pages = [0; MAX_NODES];
    for order in 0..=MAX_ORDER {
        for block in rmm.held_blocks_of(order) {
            // A block is on one node: its first page's.
            pages[platform.page_node(block) & (MAX_NODES - 1)] += 1 << order;
        }
    }
    let mut objects = [0; MAX_NODES];
    for entry in rmm.caches().filter(|entry| entry.held > 0) {
        for obj in rmm.held_objects(entry.cache.name()).into_iter().flatten() {
            // An object is in one slab, whose pages are on one node.
            objects[platform.page_node(obj) & (MAX_NODES - 1)] += 1;
        }
    }
    (pages, objects)
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
        "cache={name} objsize={} active={} cached={} alien={} total={} slabs={}",
        info.objsize, stats.active, stats.cached, stats.alien, info.num_objs, info.num_slabs
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
            " errors={} ctor_calls={} cached={} alien={}",
            stats.errors, stats.ctor_calls, stats.cached, stats.alien
        )?;
    }
    for node in nodes_with_memory(rmm) {
        let Some(stats) = cache.node_stats(node) else {
            continue;
        };
        writeln!(
            out,
            "cache={name} node={node} slabs={} active_slabs={} objects={} active_objs={} cached={} alien={} high={} free_limit={} local_allocs={} remote_allocs={} fallback_allocs={} foreign_allocs={} local_frees={} remote_frees={} alien_flushes={} grown={} reaped={}",
            stats.slabs,
            stats.active_slabs,
            stats.objects,
            stats.active_objs,
            stats.cached,
            stats.alien,
            stats.high_water,
            stats.free_limit,
            stats.local_allocs,
            stats.remote_allocs,
            stats.fallback_allocs,
            stats.foreign_allocs,
            stats.local_frees,
            stats.remote_frees,
            stats.alien_flushes,
            stats.grown,
            stats.reaped
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
    let wm = rmm.pages().watermarks();
    let decisions = rmm.pages().watermark_stats();
    let auto = rmm.pages().reserve() == Reserve::Auto;
    writeln!(
        out,
        "zone free={} min={} low={} high={} reserve_kb={} reserve_auto={} refills={} refill_chunks={} refill_failures={} min_allocs={} reserve_allocs={} reserve_pages={} refused={}",
        pages.pages_free,
        wm.min,
        wm.low,
        wm.high,
        wm.min * (PAGE_SIZE / 1024),
        u8::from(auto),
        decisions.refills,
        decisions.refill_chunks,
        decisions.refill_failures,
        decisions.min_allocs,
        decisions.reserve_allocs,
        decisions.reserve_pages,
        decisions.refused
    )?;
    let (held_pages, held_objects) = held_per_node(rmm);
    for (node, stats) in pages.nodes.iter().enumerate().take(pages.nr_nodes) {
        writeln!(
            out,
            "node={node} chunks={} pages_total={} pages_free={} pages_pcp={} numa_hit={} numa_miss={} numa_foreign={} local_node={} other_node={} free_local={} free_remote={} held_pages={} held_objects={}",
            stats.chunks,
            stats.pages_total,
            stats.pages_free,
            stats.pages_pcp,
            stats.numa_hit,
            stats.numa_miss,
            stats.numa_foreign,
            stats.local_node,
            stats.other_node,
            stats.free_local,
            stats.free_remote,
            held_pages[node],
            held_objects[node]
        )?;
    }
    let areas = rmm.areas().stats();
    writeln!(
        out,
        "vmalloc areas={} max_areas={MAX_AREAS} pages={} vmallocs={} vfrees={} failures={}",
        areas.areas, areas.pages, areas.vmallocs, areas.vfrees, areas.failures
    )?;
    let kmalloc = rmm.kmalloc();
    let faults = rmm.fault_stats();
    writeln!(
        out,
        "rmm user_caches={} max_user_caches={MAX_USER_CACHES} corruptions={} large_blocks={} kmalloc_errors={} reclaimable={} reaps={} reaped_slabs={} ctl_errors={} ctl_errors_unlogged={} fail_every={} fail_refill={} fail_requests={} fail_injected={}",
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
        u8::from(faults.scope == FailScope::Refill),
        faults.requests,
        faults.injected
    )
}

/// Writes `rmm_vmallocinfo`: one `/proc/vmallocinfo` line per vmalloc
/// area of the control file (see the module documentation).
pub fn write_vmallocinfo<P: Platform>(out: &mut impl Write, rmm: &Rmm<P>) -> fmt::Result {
    let platform = rmm.platform();
    for (name, area) in rmm.areas().iter() {
        let start = area.addr().as_ptr() as usize;
        let size = area.reserved_size();
        platform.write_address(out, start)?;
        out.write_char('-')?;
        platform.write_address(out, start.wrapping_add(size))?;
        writeln!(out, " {size:7} {name} pages={} vmalloc", area.nr_pages())?;
    }
    Ok(())
}

/// Writes `rmm_zoneinfo`: rmm's zone on every node with memory in
/// `/proc/zoneinfo`'s format (see the module documentation).
pub fn write_zoneinfo<P: Platform>(out: &mut impl Write, rmm: &Rmm<P>) -> fmt::Result {
    let stats = rmm.pages().stats();
    for node in nodes_with_memory(rmm) {
        write_node_zone(out, rmm, node, &stats.nodes[node & (MAX_NODES - 1)])?;
    }
    Ok(())
}

/// One node's block of `rmm_zoneinfo`.
fn write_node_zone<P: Platform>(
    out: &mut impl Write,
    rmm: &Rmm<P>,
    node: usize,
    stats: &NodeStats,
) -> fmt::Result {
    let pages = rmm.pages();
    let platform = rmm.platform();
    let wm = pages.node_watermarks(node);
    let (start_pfn, spanned) = match pages.node_span(node) {
        Some((start, end)) => {
            let first = platform.page_frame(start);
            let span = end.wrapping_sub(start.as_ptr() as usize) / PAGE_SIZE;
            (first, span)
        }
        None => (0, 0),
    };
    write!(out, "Node {node}, zone {:>8}", "rmm")?;
    write!(out, "\n  pages free     {}", stats.pages_free)?;
    write!(out, "\n        boost    0")?;
    write!(out, "\n        min      {}", wm.min)?;
    write!(out, "\n        low      {}", wm.low)?;
    write!(out, "\n        high     {}", wm.high)?;
    write!(out, "\n        promo    {}", wm.promo())?;
    write!(out, "\n        spanned  {spanned}")?;
    write!(out, "\n        present  {}", stats.pages_total)?;
    write!(out, "\n        managed  {}", stats.pages_total)?;
    write!(out, "\n        cma      0")?;
    write!(out, "\n        protection: (0)")?;
    write!(out, "\n      {:<12} {}", "nr_free_pages", stats.pages_free)?;
    write!(out, "\n  pagesets")?;
    for cpu in 0..platform.nr_cpu_ids() {
        write!(out, "\n    cpu: {cpu}")?;
        // A CPU's lists hold pages of its own node only (of the nearest
        // node with memory for a CPU of a node without).
        let lists_node = pages
            .fallback_order(platform.cpu_node(cpu))
            .first()
            .map_or(0, |&node| usize::from(node));
        let count = if lists_node == node {
            pages.pcp_pages(cpu)
        } else {
            0
        };
        write!(out, "\n              count: {count}")?;
        write!(out, "\n              high:  {PCP_HIGH}")?;
        write!(out, "\n              batch: {PCP_BATCH}")?;
        write!(out, "\n  vm stats threshold: 0")?;
    }
    write!(out, "\n  node_unreclaimable:  0")?;
    write!(out, "\n  start_pfn:           {start_pfn}")?;
    writeln!(out)
}

/// Header of `rmm_frames`.
pub const FRAMES_HEADER: &str = "# vmalloc <name> <page> <address> <pfn> <mapped_pfn>\n# block <order> <block> <page> <address> <pfn>";

/// Writes `rmm_frames`: the frame number of every page of every vmalloc
/// area and held page block (see the module documentation).
pub fn write_frames<P: Platform>(out: &mut impl Write, rmm: &Rmm<P>) -> fmt::Result {
    let platform = rmm.platform();
    writeln!(out, "{FRAMES_HEADER}")?;
    for (name, area) in rmm.areas().iter() {
        for (index, page) in area.pages().iter().enumerate() {
            let addr = area.page_addr(index);
            write!(out, "vmalloc {name} {index} ")?;
            platform.write_address(out, addr)?;
            write!(out, " {}", platform.page_frame(*page))?;
            match NonNull::new(addr as *mut u8).and_then(|addr| platform.mapped_frame(addr)) {
                Some(pfn) => writeln!(out, " {pfn}")?,
                None => writeln!(out, " -")?,
            }
        }
    }
    for order in 0..=MAX_ORDER {
        for (block, base) in rmm.held_blocks_of(order).enumerate() {
            for page in 0..1usize << order {
                // Inside the block: no overflow, never null.
                let addr = base.as_ptr().wrapping_add(page * PAGE_SIZE);
                write!(out, "block {order} {block} {page} ")?;
                platform.write_address(out, addr as usize)?;
                let pfn = NonNull::new(addr).map_or(0, |addr| platform.page_frame(addr));
                writeln!(out, " {pfn}")?;
            }
        }
    }
    Ok(())
}
