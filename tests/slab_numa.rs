// SPDX-License-Identifier: GPL-2.0

//! Slab caches on a host platform with two memory nodes (four CPUs: 0 and 1
//! on node 0, 2 and 3 on node 1): objects come from the allocating CPU's
//! node, frees on another node's CPU wait in its alien array and go back
//! home in batches (never handed out on the way), `alloc_node` lands on
//! the node asked for, a node out of pages falls back to the other one,
//! and shrink, reap, `cpu_dead` and destroy reach every node; with a
//! model-based property test over random steps.

use proptest::prelude::*;
use rmm_core::gfp::Gfp;
use rmm_core::host::{HostPlatform, SharedHostPlatform};
use rmm_core::kmalloc::Kmalloc;
use rmm_core::page_alloc::PageAllocator;
use rmm_core::platform::Platform;
use rmm_core::slab::{CacheNodeStats, KmemCache, SlabFlags, SlabFreeError};
use std::ptr::NonNull;

type Pages = PageAllocator<SharedHostPlatform>;
type Cache = KmemCache<SharedHostPlatform>;

const CPUS: usize = 4;
const NODES: usize = 2;

/// The node of CPU `cpu` on the test platform.
fn node_of_cpu(cpu: usize) -> usize {
    cpu * NODES / CPUS
}

fn pages() -> (Pages, SharedHostPlatform) {
    HostPlatform::set_this_cpu(0);
    let platform = SharedHostPlatform::with_nodes(CPUS, NODES);
    let pages = PageAllocator::new(platform.clone()).unwrap();
    (pages, platform)
}

fn cache(pages: &Pages, size: usize, flags: SlabFlags) -> Cache {
    KmemCache::create(pages, "numa", size, 0, flags, None).unwrap()
}

/// The node of the page `obj` is on, as the platform (the kernel's
/// `page_to_nid`) says.
fn page_node(platform: &SharedHostPlatform, obj: NonNull<u8>) -> usize {
    platform.host().page_node(obj)
}

fn alloc_on(cache: &Cache, pages: &Pages, cpu: usize, count: usize) -> Vec<NonNull<u8>> {
    HostPlatform::set_this_cpu(cpu);
    (0..count)
        .map(|_| cache.alloc(pages, Gfp::KERNEL).unwrap())
        .collect()
}

fn free_on(cache: &Cache, pages: &Pages, cpu: usize, objects: &[NonNull<u8>]) {
    HostPlatform::set_this_cpu(cpu);
    for &obj in objects {
        // SAFETY: every object was allocated from `cache` and is freed once.
        unsafe { cache.free(pages, obj) }.unwrap();
    }
}

fn node_stats(cache: &Cache, node: usize) -> CacheNodeStats {
    cache.node_stats(node).unwrap()
}

fn check(cache: &Cache, pages: &Pages) {
    cache.check_invariants(pages).unwrap();
    // The per-node figures add up to the cache's.
    let (stats, info) = (cache.stats(), cache.slabinfo());
    let nodes: Vec<_> = (0..NODES).map(|node| node_stats(cache, node)).collect();
    assert_eq!(nodes.iter().map(|n| n.slabs).sum::<usize>(), info.num_slabs);
    assert_eq!(
        nodes.iter().map(|n| n.active_slabs).sum::<usize>(),
        info.active_slabs
    );
    assert_eq!(
        nodes.iter().map(|n| n.objects).sum::<usize>(),
        info.num_objs
    );
    assert_eq!(
        nodes.iter().map(|n| n.active_objs).sum::<usize>(),
        info.active_objs
    );
    assert_eq!(nodes.iter().map(|n| n.cached).sum::<usize>(), stats.cached);
    assert_eq!(nodes.iter().map(|n| n.alien).sum::<usize>(), stats.alien);
    assert_eq!(
        nodes.iter().map(|n| n.alien_flushes).sum::<usize>(),
        stats.alien_flushes
    );
    assert_eq!(
        nodes.iter().map(|n| n.remote_frees).sum::<usize>(),
        stats.remote_frees
    );
    for cpu in 0..CPUS {
        assert!(cache.cpu_stats(cpu).alien <= cache.alien_limit());
    }
    assert_eq!(
        nodes
            .iter()
            .map(|n| n.local_allocs + n.remote_allocs + n.fallback_allocs)
            .sum::<usize>(),
        stats.allocs
    );
    assert_eq!(
        nodes
            .iter()
            .map(|n| n.local_frees + n.remote_frees + n.alien)
            .sum::<usize>(),
        stats.frees
    );
    assert_eq!(
        nodes.iter().map(|n| n.grown - n.reaped).sum::<usize>(),
        info.num_slabs
    );
    assert_eq!(stats.grown - stats.reaped, info.num_slabs);
    assert_eq!(
        nodes.iter().map(|n| n.foreign_allocs).sum::<usize>(),
        nodes.iter().map(|n| n.fallback_allocs).sum::<usize>()
    );
    assert_eq!(stats.errors, 0);
}

/// Destroys the cache, gives every chunk back and checks that no page of
/// any node is left with the platform, then drops the allocator and checks
/// again.
fn destroy_and_check_no_pages(cache: Cache, pages: Pages, platform: &SharedHostPlatform) {
    cache.destroy(&pages).unwrap();
    check(&cache, &pages);
    assert_eq!(pages.stats().pages_allocated, 0);
    pages.shrink();
    for node in 0..NODES {
        assert_eq!(
            platform.host().node_pages_outstanding(node),
            0,
            "node {node}"
        );
    }
    assert!(platform.host().reports().is_empty());
    drop(cache);
    drop(pages);
    assert_eq!(platform.host().pages_outstanding(), 0);
}

#[test]
fn arrays_belong_to_their_cpus_node() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 64, SlabFlags::NONE);
    for cpu in 0..CPUS {
        assert_eq!(cache.cpu_node(cpu), Some(node_of_cpu(cpu)));
        assert_eq!(platform.cpu_node(cpu), node_of_cpu(cpu));
    }
    assert_eq!(cache.cpu_node(CPUS), None);
    // Two CPUs per node: (1 + 2) * batchcount + objects per slab each.
    let per_node = 3 * cache.batchcount() + cache.layout().objects();
    for node in 0..NODES {
        assert_eq!(node_stats(&cache, node).free_limit, per_node);
    }
    assert_eq!(cache.free_limit(), 2 * per_node);
    assert_eq!(cache.node_stats(2), None);
    assert_eq!(cache.node_stats(usize::MAX), None);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn allocations_come_from_the_allocating_cpus_node() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 64, SlabFlags::NONE);
    let mut all = Vec::new();
    for cpu in 0..CPUS {
        let objects = alloc_on(&cache, &pages, cpu, 100);
        for &obj in &objects {
            assert_eq!(page_node(&platform, obj), node_of_cpu(cpu), "CPU {cpu}");
            assert_eq!(pages.node_of(obj.as_ptr()), Some(node_of_cpu(cpu)));
        }
        check(&cache, &pages);
        all.push((cpu, objects));
    }
    for node in 0..NODES {
        let stats = node_stats(&cache, node);
        assert_eq!(stats.local_allocs, 200);
        assert_eq!(stats.remote_allocs + stats.fallback_allocs, 0);
        assert!(stats.slabs > 0 && stats.grown == stats.slabs);
        assert_eq!(stats.active_objs, 200 + stats.cached);
    }
    // Frees on the allocating CPU are local.
    for (cpu, objects) in &all {
        free_on(&cache, &pages, *cpu, objects);
        check(&cache, &pages);
    }
    for node in 0..NODES {
        let stats = node_stats(&cache, node);
        assert_eq!((stats.local_frees, stats.remote_frees), (200, 0));
    }
    assert_eq!(cache.stats().remote_frees, 0);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn remote_frees_go_back_to_their_node() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 128, SlabFlags::NONE);
    // CPU 0 keeps some of its own objects in its array.
    let own = alloc_on(&cache, &pages, 0, 10);
    free_on(&cache, &pages, 0, &own);
    let cached_before = cache.cpu_stats(0).cached;
    assert!(cached_before >= 10);
    // Objects of node 1, freed on CPU 0 (node 0).
    let remote = alloc_on(&cache, &pages, 2, 150);
    check(&cache, &pages);
    free_on(&cache, &pages, 0, &remote);
    check(&cache, &pages);
    let cpu0 = cache.cpu_stats(0);
    assert_eq!(
        cpu0.cached, cached_before,
        "CPU 0's array took none of them"
    );
    // Through the alien array: a batch home each time it was full, the
    // rest still there.
    let limit = cache.alien_limit();
    assert_eq!(limit, cache.limit().min(32));
    let batches = (150 - 1) / limit;
    assert_eq!(cpu0.remote_frees, batches * limit);
    assert_eq!(cpu0.alien, 150 - batches * limit);
    assert_eq!(cpu0.alien_flushes, batches);
    assert_eq!(cpu0.freehit, 10);
    let node1 = node_stats(&cache, 1);
    assert_eq!(node1.remote_frees, batches * limit);
    assert_eq!((node1.alien, node1.alien_flushes), (cpu0.alien, batches));
    assert_eq!(node1.local_frees, 0);
    // Back in their slabs but for the alien ones: only CPU 2's array and
    // CPU 0's alien array hold objects of node 1.
    assert_eq!(node1.active_objs, cache.cpu_stats(2).cached + node1.alien);
    assert_eq!(node_stats(&cache, 0).remote_frees, 0);
    let stats = cache.stats();
    assert_eq!((stats.active, stats.frees), (0, 160));
    // A shrink sends the rest home.
    cache.shrink(&pages);
    check(&cache, &pages);
    assert_eq!(cache.cpu_stats(0).remote_frees, 150);
    assert_eq!(node_stats(&cache, 1).remote_frees, 150);
    assert_eq!(node_stats(&cache, 1).active_objs, 0);
    // And on the other side: objects of node 0 freed on CPU 3.
    let remote = alloc_on(&cache, &pages, 1, 50);
    free_on(&cache, &pages, 3, &remote);
    let cpu3 = cache.cpu_stats(3);
    assert_eq!(cpu3.remote_frees + cpu3.alien, 50);
    assert_eq!(cpu3.cached, 0);
    assert_eq!(node_stats(&cache, 0).remote_frees, cpu3.remote_frees);
    check(&cache, &pages);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn alloc_node_lands_on_the_node_asked_for() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 256, SlabFlags::NONE);
    HostPlatform::set_this_cpu(0);
    let remote: Vec<_> = (0..40)
        .map(|_| cache.alloc_node(&pages, Gfp::KERNEL, 1).unwrap())
        .collect();
    for &obj in &remote {
        assert_eq!(page_node(&platform, obj), 1);
    }
    check(&cache, &pages);
    // Straight from node 1's lists: CPU 0's array is untouched.
    let cpu0 = cache.cpu_stats(0);
    assert_eq!(
        (cpu0.cached, cpu0.allocmiss, cpu0.remote_allocs),
        (0, 0, 40)
    );
    let node1 = node_stats(&cache, 1);
    assert_eq!((node1.remote_allocs, node1.local_allocs), (40, 0));
    assert_eq!(node1.active_objs, 40);
    // The CPU's own node takes the normal path, through the array.
    let local = cache.alloc_node(&pages, Gfp::KERNEL, 0).unwrap();
    assert_eq!(page_node(&platform, local), 0);
    assert_eq!(cache.cpu_stats(0).allocmiss, 1);
    assert_eq!(node_stats(&cache, 0).local_allocs, 1);
    // Nodes without memory, or out of range, are refused.
    for node in [2, 7, 8, usize::MAX] {
        assert!(cache.alloc_node(&pages, Gfp::KERNEL, node).is_err());
    }
    // Zeroing works on the remote path too.
    let zeroed = cache.alloc_node(&pages, Gfp::ZERO, 1).unwrap();
    // SAFETY: the object has 256 bytes.
    assert!(unsafe { std::slice::from_raw_parts(zeroed.as_ptr(), 256) }
        .iter()
        .all(|&b| b == 0));
    check(&cache, &pages);
    // Freed on CPU 0: home to node 1; freed on CPU 2: into CPU 2's array.
    free_on(&cache, &pages, 0, &remote[..20]);
    free_on(&cache, &pages, 2, &remote[20..]);
    free_on(&cache, &pages, 2, &[zeroed]);
    free_on(&cache, &pages, 0, &[local]);
    check(&cache, &pages);
    let node1 = node_stats(&cache, 1);
    assert_eq!(
        (node1.remote_frees + node1.alien, node1.local_frees),
        (20, 21)
    );
    assert_eq!(cache.cpu_stats(2).cached, 21);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn a_node_out_of_pages_falls_back_to_the_other() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 64, SlabFlags::NONE);
    let per_slab = cache.layout().objects();
    // Node 1 can get no page from the platform at all.
    platform.host().set_node_limit(1, Some(0));
    let objects = alloc_on(&cache, &pages, 2, 3 * per_slab);
    for &obj in &objects {
        assert_eq!(page_node(&platform, obj), 0, "served from node 0");
    }
    check(&cache, &pages);
    let cpu2 = cache.cpu_stats(2);
    assert_eq!(cpu2.fallback_allocs, 3 * per_slab);
    assert_eq!(cpu2.cached, 0, "no object of node 0 in CPU 2's array");
    assert_eq!(cache.stats().active, 3 * per_slab);
    // A slab per slab's worth of objects, not one per object.
    assert_eq!(cache.stats().grown, 3);
    let (node0, node1) = (node_stats(&cache, 0), node_stats(&cache, 1));
    assert_eq!(node0.fallback_allocs, 3 * per_slab);
    assert_eq!(node1.foreign_allocs, 3 * per_slab);
    assert_eq!((node0.slabs, node1.slabs), (3, 0));
    assert_eq!(node0.local_allocs, 0);
    // alloc_node(1) falls back as well.
    HostPlatform::set_this_cpu(0);
    let pinned = cache.alloc_node(&pages, Gfp::KERNEL, 1).unwrap();
    assert_eq!(page_node(&platform, pinned), 0);
    assert_eq!(cache.cpu_stats(0).fallback_allocs, 1);
    check(&cache, &pages);
    // Freed on CPU 2: remote frees, home to node 0.
    free_on(&cache, &pages, 2, &objects);
    free_on(&cache, &pages, 0, &[pinned]);
    let cpu2 = cache.cpu_stats(2);
    assert_eq!(cpu2.remote_frees + cpu2.alien, 3 * per_slab);
    assert_eq!(cpu2.cached, 0);
    check(&cache, &pages);
    // Node 1 gets pages again: after a reap, its CPUs ask for them first.
    platform.host().set_node_limit(1, None);
    cache.reap(&pages);
    let objects = alloc_on(&cache, &pages, 3, 10);
    for &obj in &objects {
        assert_eq!(page_node(&platform, obj), 1);
    }
    assert_eq!(node_stats(&cache, 1).local_allocs, 10);
    free_on(&cache, &pages, 3, &objects);
    check(&cache, &pages);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn atomic_fallbacks_take_a_slab_per_slabs_worth_of_objects() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 64, SlabFlags::NONE);
    let per_slab = cache.layout().objects();
    // Node 0's pool gets a chunk (a sleeping request may refill it); node
    // 1 can get no page at all, and atomic requests never refill a pool.
    HostPlatform::set_this_cpu(0);
    let warm = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    // SAFETY: just allocated, not used.
    unsafe { pages.free_pages(warm, 0) }.unwrap();
    platform.host().set_node_limit(1, Some(0));
    HostPlatform::set_this_cpu(2);
    let objects: Vec<_> = (0..3 * per_slab)
        .map(|_| cache.alloc(&pages, Gfp::ATOMIC).expect("atomic fallback"))
        .collect();
    for &obj in &objects {
        assert_eq!(page_node(&platform, obj), 0);
    }
    // The first fallback marks node 1 out of pages, so later misses take
    // node 0's free objects before growing: not one slab per object.
    assert_eq!(cache.stats().grown, 3);
    check(&cache, &pages);
    free_on(&cache, &pages, 2, &objects);
    check(&cache, &pages);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn both_nodes_out_of_pages_fail_cleanly() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 64, SlabFlags::NONE);
    platform.host().set_node_limit(0, Some(0));
    platform.host().set_node_limit(1, Some(0));
    HostPlatform::set_this_cpu(2);
    assert!(cache.alloc(&pages, Gfp::KERNEL).is_err());
    assert!(cache.alloc_node(&pages, Gfp::KERNEL, 0).is_err());
    check(&cache, &pages);
    assert_eq!(cache.stats().allocs, 0);
    platform.host().set_node_limit(0, None);
    platform.host().set_node_limit(1, None);
    let obj = cache.alloc(&pages, Gfp::KERNEL).unwrap();
    free_on(&cache, &pages, 2, &[obj]);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn shrink_reap_and_cpu_dead_reach_every_node() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 512, SlabFlags::NONE);
    let a = alloc_on(&cache, &pages, 0, 100);
    let b = alloc_on(&cache, &pages, 3, 100);
    free_on(&cache, &pages, 1, &a);
    free_on(&cache, &pages, 2, &b);
    check(&cache, &pages);
    assert!(cache.cpu_stats(1).cached > 0 && cache.cpu_stats(2).cached > 0);
    // CPU 2 goes offline: its array goes back to node 1's lists.
    let cached = cache.cpu_stats(2).cached;
    // SAFETY: no thread runs on CPU 2 during the call.
    assert_eq!(unsafe { cache.cpu_dead(&pages, 2) }, cached);
    assert_eq!(cache.cpu_stats(2).cached, 0);
    check(&cache, &pages);
    // A reap gives back the empty slabs beyond each node's free limit.
    cache.reap(&pages);
    check(&cache, &pages);
    for node in 0..NODES {
        let stats = node_stats(&cache, node);
        assert!((stats.objects - stats.active_objs) <= stats.free_limit);
    }
    // Shrink empties every array and every node.
    cache.shrink(&pages);
    check(&cache, &pages);
    for node in 0..NODES {
        let stats = node_stats(&cache, node);
        assert_eq!((stats.slabs, stats.active_objs, stats.cached), (0, 0, 0));
        assert!(stats.grown > 0 && stats.grown == stats.reaped);
    }
    assert_eq!(pages.stats().pages_allocated, 0);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn destroy_refuses_while_any_node_is_busy() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 64, SlabFlags::NONE);
    let a = alloc_on(&cache, &pages, 0, 5);
    let b = alloc_on(&cache, &pages, 2, 7);
    free_on(&cache, &pages, 0, &a);
    // Only node 1 is busy: node 0 must not stay marked destroyed.
    assert_eq!(
        cache.destroy(&pages),
        Err(rmm_core::slab::DestroyError::Busy { active: 7 })
    );
    check(&cache, &pages);
    let more = alloc_on(&cache, &pages, 1, 3);
    free_on(&cache, &pages, 1, &more);
    free_on(&cache, &pages, 0, &b);
    check(&cache, &pages);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn debug_caches_catch_double_frees_across_nodes() {
    let (pages, platform) = pages();
    for size in [64, 1000] {
        let cache = cache(&pages, size, SlabFlags::DEBUG);
        let objects = alloc_on(&cache, &pages, 2, 20);
        // Freed on node 0's CPU: home to node 1.
        free_on(&cache, &pages, 0, &objects);
        check(&cache, &pages);
        // SAFETY: a double free, which debug mode detects.
        let again = unsafe { cache.free(&pages, objects[3]) };
        assert_eq!(again, Err(SlabFreeError::DoubleFree));
        assert_eq!(cache.stats().errors, 1);
        // Debug mode: straight home, one at a time, no alien array.
        assert_eq!(cache.alien_limit(), 0);
        let cpu0 = cache.cpu_stats(0);
        assert_eq!(
            (cpu0.remote_frees, cpu0.alien, cpu0.alien_flushes),
            (20, 0, 0)
        );
        platform.host().take_reports();
        cache.destroy(&pages).unwrap();
    }
    pages.shrink();
    assert_eq!(platform.host().pages_outstanding(), 0);
}

#[test]
fn kmalloc_frees_on_another_node_go_home() {
    let (pages, platform) = pages();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    HostPlatform::set_this_cpu(3);
    let objects: Vec<_> = [8, 64, 100, 1000, 4000, 20_000]
        .iter()
        .map(|&size| (size, kmalloc.kmalloc(&pages, size, Gfp::KERNEL).unwrap()))
        .collect();
    for &(size, obj) in &objects {
        if size <= 8192 {
            assert_eq!(page_node(&platform, obj), 1, "{size} bytes");
        }
    }
    HostPlatform::set_this_cpu(0);
    for &(_, obj) in &objects {
        // SAFETY: allocated above, freed once.
        unsafe { kmalloc.kfree(&pages, obj) }.unwrap();
    }
    let remote: usize = kmalloc
        .caches()
        .map(|c| c.stats().remote_frees + c.stats().alien)
        .sum();
    assert_eq!(remote, 5);
    for cache in kmalloc.caches() {
        check(cache, &pages);
        assert_eq!(cache.cpu_stats(0).cached, 0);
    }
    kmalloc.destroy(&pages).unwrap();
    pages.shrink();
    assert_eq!(platform.host().pages_outstanding(), 0);
}

// The model: random allocations on any CPU, allocations for a node, frees
// on any CPU, shrinks, reaps, CPUs going offline, and node 1 running out of
// pages and getting them back.

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        cpu: usize,
        count: usize,
    },
    AllocNode {
        cpu: usize,
        node: usize,
        count: usize,
    },
    Free {
        cpu: usize,
        pick: usize,
        count: usize,
    },
    Shrink,
    Reap,
    CpuDead {
        cpu: usize,
    },
    Exhaust {
        node: usize,
    },
    Restore {
        node: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..CPUS, 1..80usize).prop_map(|(cpu, count)| Op::Alloc { cpu, count }),
        3 => (0..CPUS, 0..NODES, 1..40usize)
            .prop_map(|(cpu, node, count)| Op::AllocNode { cpu, node, count }),
        6 => (0..CPUS, any::<usize>(), 1..80usize)
            .prop_map(|(cpu, pick, count)| Op::Free { cpu, pick, count }),
        1 => Just(Op::Shrink),
        1 => Just(Op::Reap),
        1 => (0..CPUS).prop_map(|cpu| Op::CpuDead { cpu }),
        1 => (0..NODES).prop_map(|node| Op::Exhaust { node }),
        1 => (0..NODES).prop_map(|node| Op::Restore { node }),
    ]
}

const SIZES: [usize; 4] = [32, 200, 700, 3000];
const MAX_LIVE: usize = 400;

struct Live {
    ptr: NonNull<u8>,
    stamp: u8,
}

/// What the model knows about a node: whether its platform pages are
/// limited now, and whether requests for it may have been served by the
/// other node since the cache last forgot (reap, shrink).
#[derive(Clone, Copy, Default)]
struct NodeModel {
    exhausted: bool,
    may_fall_back: bool,
}

fn run_model(size: usize, debug: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (pages, platform) = pages();
    let flags = if debug {
        SlabFlags::DEBUG
    } else {
        SlabFlags::NONE
    };
    let cache = cache(&pages, size, flags);
    let mut live: Vec<Live> = Vec::new();
    let mut nodes = [NodeModel::default(); NODES];
    let mut next_stamp = 0u8;
    let mut remote_frees = 0;
    // What each CPU's alien array holds: objects of the other node freed
    // there, until it overflows, is drained or reaped (never in debug
    // mode).
    let alien_limit = cache.alien_limit();
    prop_assert_eq!(alien_limit, if debug { 0 } else { cache.limit().min(32) });
    let mut aliens: Vec<Vec<NonNull<u8>>> = vec![Vec::new(); CPUS];
    let mut sent_home = 0;
    for op in ops {
        match op {
            Op::Alloc { cpu, count } | Op::AllocNode { cpu, count, .. } => {
                HostPlatform::set_this_cpu(cpu);
                let node = match op {
                    Op::AllocNode { node, .. } => node,
                    _ => node_of_cpu(cpu),
                };
                for _ in 0..count.min(MAX_LIVE - live.len()) {
                    let ptr = match op {
                        Op::AllocNode { .. } => cache.alloc_node(&pages, Gfp::KERNEL, node),
                        _ => cache.alloc(&pages, Gfp::KERNEL),
                    };
                    // The other node never runs out of pages in the model
                    // while one does; both at once may.
                    let Ok(ptr) = ptr else {
                        prop_assert!(nodes.iter().all(|n| n.exhausted));
                        break;
                    };
                    // Never an object waiting in an alien array.
                    prop_assert!(
                        aliens.iter().all(|alien| !alien.contains(&ptr)),
                        "alien object handed out"
                    );
                    prop_assert!(live.iter().all(|object| object.ptr != ptr));
                    let on = page_node(&platform, ptr);
                    if on != node {
                        prop_assert!(nodes[node].may_fall_back, "fell back unexpectedly");
                    }
                    next_stamp = next_stamp.wrapping_add(1);
                    // SAFETY: the model owns the object of `size` bytes.
                    unsafe { ptr.as_ptr().write_bytes(next_stamp, size) };
                    live.push(Live {
                        ptr,
                        stamp: next_stamp,
                    });
                }
            }
            Op::Free { cpu, pick, count } => {
                HostPlatform::set_this_cpu(cpu);
                for n in 0..count {
                    if live.is_empty() {
                        break;
                    }
                    let index = pick.wrapping_add(n * 7919) % live.len();
                    let object = live.swap_remove(index);
                    if page_node(&platform, object.ptr) != node_of_cpu(cpu) {
                        remote_frees += 1;
                        if debug {
                            sent_home += 1;
                        } else {
                            if aliens[cpu].len() == alien_limit {
                                sent_home += aliens[cpu].len();
                                aliens[cpu].clear();
                            }
                            aliens[cpu].push(object.ptr);
                        }
                    }
                    // SAFETY: a live object of this cache, freed once.
                    unsafe { cache.free(&pages, object.ptr) }.unwrap();
                }
            }
            Op::Shrink => {
                cache.shrink(&pages);
                sent_home += aliens.iter().map(Vec::len).sum::<usize>();
                aliens.iter_mut().for_each(Vec::clear);
                let info = cache.slabinfo();
                prop_assert_eq!(info.num_slabs, info.active_slabs);
                prop_assert_eq!(info.active_objs, live.len());
            }
            Op::Reap => {
                cache.reap(&pages);
                // Alien arrays are sent home at every reap.
                sent_home += aliens.iter().map(Vec::len).sum::<usize>();
                aliens.iter_mut().for_each(Vec::clear);
            }
            Op::CpuDead { cpu } => {
                let held = cache.cpu_stats(cpu).cached + aliens[cpu].len();
                // SAFETY: the test thread is the only one, and runs on no
                // CPU during the call.
                let back = unsafe { cache.cpu_dead(&pages, cpu) };
                prop_assert_eq!(back, held);
                prop_assert_eq!(cache.cpu_stats(cpu).cached, 0);
                sent_home += aliens[cpu].len();
                aliens[cpu].clear();
            }
            Op::Exhaust { node } => {
                let out = platform.host().node_pages_outstanding(node);
                platform.host().set_node_limit(node, Some(out));
                nodes[node].exhausted = true;
                nodes[node].may_fall_back = true;
            }
            Op::Restore { node } => {
                platform.host().set_node_limit(node, None);
                nodes[node].exhausted = false;
            }
        }
        if matches!(op, Op::Shrink | Op::Reap) {
            for node in &mut nodes {
                node.may_fall_back = node.exhausted;
            }
        }
        cache
            .check_invariants(&pages)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for object in &live {
            // SAFETY: the model owns the object of `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(object.ptr.as_ptr(), size) };
            prop_assert!(bytes.iter().all(|&b| b == object.stamp));
        }
        let stats = cache.stats();
        prop_assert_eq!(stats.active, live.len());
        // Counted as remote frees when they reach home.
        prop_assert_eq!(stats.remote_frees, sent_home);
        prop_assert_eq!(stats.remote_frees + stats.alien, remote_frees);
        prop_assert_eq!(stats.errors, 0);
        for (cpu, alien) in aliens.iter().enumerate() {
            prop_assert_eq!(cache.cpu_stats(cpu).alien, alien.len(), "cpu {}", cpu);
        }
        let mut on_node = [0usize; NODES];
        for object in &live {
            on_node[page_node(&platform, object.ptr)] += 1;
        }
        for (node, &held) in on_node.iter().enumerate() {
            let node_stats = cache.node_stats(node).unwrap();
            // Objects of the node out of its slabs: held, cached in the
            // arrays of the node's CPUs, or in alien arrays of the other
            // node's CPUs.
            prop_assert_eq!(
                node_stats.active_objs,
                held + node_stats.cached + node_stats.alien
            );
            let waiting = aliens
                .iter()
                .flatten()
                .filter(|&&obj| page_node(&platform, obj) == node)
                .count();
            prop_assert_eq!(node_stats.alien, waiting);
        }
        for cpu in 0..CPUS {
            prop_assert!(cache.cpu_stats(cpu).cached <= cache.limit());
        }
    }
    HostPlatform::set_this_cpu(0);
    for object in live.drain(..) {
        // SAFETY: as above.
        unsafe { cache.free(&pages, object.ptr) }.unwrap();
    }
    prop_assert_eq!(cache.destroy(&pages), Ok(()));
    prop_assert_eq!(pages.stats().pages_allocated, 0);
    prop_assert!(platform.host().reports().is_empty());
    pages.shrink();
    for node in 0..NODES {
        prop_assert_eq!(platform.host().node_pages_outstanding(node), 0);
    }
    drop(cache);
    drop(pages);
    prop_assert_eq!(platform.host().pages_outstanding(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn two_node_caches_behave_like_the_model(
        size in proptest::sample::select(SIZES.to_vec()),
        debug in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run_model(size, debug, ops)?;
    }
}

/// Whether `obj` is one of `objects`.
fn among(objects: &[NonNull<u8>], obj: NonNull<u8>) -> bool {
    objects.contains(&obj)
}

#[test]
fn remote_frees_wait_in_the_alien_array() {
    let (pages, platform) = pages();
    let cache = cache(&pages, 64, SlabFlags::NONE);
    let limit = cache.alien_limit();
    assert_eq!(limit, 32);
    let objects = alloc_on(&cache, &pages, 2, 3 * limit);
    let active_before = node_stats(&cache, 1).active_objs;
    // Freed on CPU 0: they wait in its alien array, still in use in their
    // slabs.
    free_on(&cache, &pages, 0, &objects[..5]);
    check(&cache, &pages);
    let cpu0 = cache.cpu_stats(0);
    assert_eq!((cpu0.alien, cpu0.remote_frees, cpu0.cached), (5, 0, 0));
    assert_eq!((cpu0.frees, cache.stats().active), (5, 3 * limit - 5));
    let node1 = node_stats(&cache, 1);
    assert_eq!((node1.alien, node1.remote_frees), (5, 0));
    assert_eq!(node1.active_objs, active_before);
    // Neither CPU 0 nor node 1's CPUs hand them out meanwhile.
    let again0 = alloc_on(&cache, &pages, 0, 300);
    let again2 = alloc_on(&cache, &pages, 2, 300);
    let again3 = alloc_on(&cache, &pages, 3, 300);
    for &obj in again0.iter().chain(&again2).chain(&again3) {
        assert!(!among(&objects[..5], obj), "alien object handed out");
    }
    check(&cache, &pages);
    free_on(&cache, &pages, 0, &again0);
    free_on(&cache, &pages, 2, &again2);
    free_on(&cache, &pages, 3, &again3);
    check(&cache, &pages);
    // Full at `limit`; the next remote free sends the batch home first,
    // one lock round.
    free_on(&cache, &pages, 0, &objects[5..limit]);
    let cpu0 = cache.cpu_stats(0);
    assert_eq!(
        (cpu0.alien, cpu0.remote_frees, cpu0.alien_flushes),
        (limit, 0, 0)
    );
    free_on(&cache, &pages, 0, &objects[limit..limit + 1]);
    check(&cache, &pages);
    let cpu0 = cache.cpu_stats(0);
    assert_eq!(
        (cpu0.alien, cpu0.remote_frees, cpu0.alien_flushes),
        (1, limit, 1)
    );
    let node1 = node_stats(&cache, 1);
    assert_eq!(
        (node1.alien, node1.remote_frees, node1.alien_flushes),
        (1, limit, 1)
    );
    assert_eq!(node_stats(&cache, 0).alien_flushes, 0);
    // A reap sends what waits home.
    cache.reap(&pages);
    check(&cache, &pages);
    let cpu0 = cache.cpu_stats(0);
    assert_eq!(
        (cpu0.alien, cpu0.remote_frees, cpu0.alien_flushes),
        (0, limit + 1, 2)
    );
    // So does a shrink, and a CPU going offline (counted in what it hands
    // back), on both sides.
    free_on(&cache, &pages, 1, &objects[limit + 1..limit + 4]);
    let node0_objects = alloc_on(&cache, &pages, 0, 4);
    free_on(&cache, &pages, 3, &node0_objects);
    assert_eq!((cache.cpu_stats(1).alien, cache.cpu_stats(3).alien), (3, 4));
    check(&cache, &pages);
    cache.shrink(&pages);
    check(&cache, &pages);
    assert_eq!(cache.stats().alien, 0);
    assert_eq!(cache.stats().remote_frees, limit + 1 + 3 + 4);
    free_on(&cache, &pages, 1, &objects[limit + 4..limit + 6]);
    let own = alloc_on(&cache, &pages, 1, 3);
    free_on(&cache, &pages, 1, &own);
    let cached = cache.cpu_stats(1).cached;
    // SAFETY: no thread runs on CPU 1 during the call.
    assert_eq!(unsafe { cache.cpu_dead(&pages, 1) }, cached + 2);
    check(&cache, &pages);
    assert_eq!(
        (cache.cpu_stats(1).alien, cache.cpu_stats(1).cached),
        (0, 0)
    );
    assert_eq!(node_stats(&cache, 1).remote_frees, limit + 1 + 3 + 2);
    // Destroy with objects waiting in an alien array: refused while a
    // caller holds one (the alien ones are not counted as held), then
    // drained first and every slab given back.
    free_on(&cache, &pages, 0, &objects[limit + 6..3 * limit - 1]);
    assert!(cache.stats().alien > 0);
    assert_eq!(
        cache.destroy(&pages),
        Err(rmm_core::slab::DestroyError::Busy { active: 1 })
    );
    check(&cache, &pages);
    free_on(&cache, &pages, 3, &objects[3 * limit - 1..]);
    assert!(cache.stats().alien > 0);
    assert_eq!(cache.stats().active, 0);
    destroy_and_check_no_pages(cache, pages, &platform);
}

#[test]
fn alien_arrays_go_home_one_lock_round_per_node() {
    // Four nodes of one CPU each: CPU 0's alien array holds objects of
    // nodes 1, 2 and 3.
    HostPlatform::set_this_cpu(0);
    let platform = SharedHostPlatform::with_nodes(4, 4);
    let pages = PageAllocator::new(platform.clone()).unwrap();
    let cache = cache(&pages, 128, SlabFlags::NONE);
    let limit = cache.alien_limit();
    let per_node: Vec<_> = (1..4)
        .map(|cpu| alloc_on(&cache, &pages, cpu, limit))
        .collect();
    for (node, objects) in (1..4).zip(&per_node) {
        assert!(objects.iter().all(|&obj| page_node(&platform, obj) == node));
    }
    // Interleaved, one of node 1, one of node 2, one of node 3, ... until
    // full.
    let mut freed = [0usize; 3];
    for i in 0..limit {
        let k = i % 3;
        free_on(&cache, &pages, 0, &per_node[k][freed[k]..freed[k] + 1]);
        freed[k] += 1;
    }
    cache.check_invariants(&pages).unwrap();
    assert_eq!(cache.cpu_stats(0).alien, limit);
    for node in 1..4 {
        assert_eq!(node_stats(&cache, node).alien, freed[node - 1]);
    }
    // One more: three lock rounds, one per node, every object home.
    let k = limit % 3;
    free_on(&cache, &pages, 0, &per_node[k][freed[k]..freed[k] + 1]);
    cache.check_invariants(&pages).unwrap();
    let cpu0 = cache.cpu_stats(0);
    assert_eq!(
        (cpu0.alien, cpu0.remote_frees, cpu0.alien_flushes),
        (1, limit, 3)
    );
    for node in 1..4 {
        let stats = node_stats(&cache, node);
        assert_eq!(stats.remote_frees, freed[node - 1]);
        assert_eq!(stats.alien_flushes, 1);
        assert_eq!(stats.alien, usize::from(node - 1 == k));
    }
    freed[k] += 1;
    for (objects, &freed) in per_node.iter().zip(&freed) {
        free_on(&cache, &pages, 0, &objects[freed..]);
    }
    cache.check_invariants(&pages).unwrap();
    assert_eq!(cache.stats().active, 0);
    assert_eq!(cache.stats().remote_frees + cache.stats().alien, 3 * limit);
    cache.destroy(&pages).unwrap();
    assert_eq!(pages.stats().pages_allocated, 0);
    assert!(platform.host().reports().is_empty());
    pages.shrink();
    drop(cache);
    drop(pages);
    assert_eq!(platform.host().pages_outstanding(), 0);
}
