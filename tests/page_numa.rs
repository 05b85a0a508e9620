// SPDX-License-Identifier: GPL-2.0

//! The page allocator on a platform of two memory nodes: blocks come from
//! the calling CPU's node, pinned requests from the node they name, an
//! exhausted node falls back to the other one (counted with the kernel's
//! numastat names), frees of another node's blocks go back to that node,
//! and shrinking and dropping give back every chunk of every node.

use rmm_core::buddy::{CHUNK_FRAMES, NR_ORDERS};
use rmm_core::gfp::Gfp;
use rmm_core::host::{HostPlatform, SharedHostPlatform};
use rmm_core::page_alloc::{NodeStats, PageAllocator, Reserve, MAX_ORDER, PCP_MAX_ORDER};
use rmm_core::platform::{Platform, PAGE_SIZE};
use std::ptr::NonNull;

/// Four CPUs on two nodes: CPUs 0 and 1 on node 0, 2 and 3 on node 1.
const CPUS: usize = 4;
const NODE1_CPU: usize = 2;

fn two_nodes() -> (PageAllocator<SharedHostPlatform>, SharedHostPlatform) {
    let platform = SharedHostPlatform::with_nodes(CPUS, 2);
    let pages = PageAllocator::new(platform.clone()).expect("allocator");
    (pages, platform)
}

fn node_stats(pages: &PageAllocator<SharedHostPlatform>, node: usize) -> NodeStats {
    let stats = pages.stats();
    assert_eq!(stats.nr_nodes, 2);
    stats.nodes[node]
}

fn page_node(platform: &SharedHostPlatform, block: NonNull<u8>) -> usize {
    platform.page_node(block)
}

/// The per-node figures add up to the whole pool's, and the buddy lists
/// of each node hold what its line of buddyinfo says.
fn check_nodes(pages: &PageAllocator<SharedHostPlatform>, platform: &SharedHostPlatform) {
    let stats = pages.stats();
    let nodes = &stats.nodes[..stats.nr_nodes];
    assert_eq!(nodes.iter().map(|n| n.chunks).sum::<usize>(), stats.chunks);
    assert_eq!(
        nodes.iter().map(|n| n.pages_free).sum::<usize>(),
        stats.pages_free
    );
    assert_eq!(
        nodes.iter().map(|n| n.pages_pcp).sum::<usize>(),
        stats.pages_pcp
    );
    for (node, figures) in nodes.iter().enumerate() {
        assert_eq!(figures.pages_total, figures.chunks * CHUNK_FRAMES);
        assert_eq!(
            platform.host().node_pages_outstanding(node),
            figures.pages_total,
            "node {node}: chunks held and pages taken from the platform differ"
        );
        let free: usize = pages
            .node_buddyinfo(node)
            .iter()
            .enumerate()
            .map(|(order, count)| count << order)
            .sum();
        assert_eq!(free, figures.pages_free, "node {node}: buddyinfo");
    }
    let mut total = [0; NR_ORDERS];
    for node in 0..stats.nr_nodes {
        for (sum, count) in total.iter_mut().zip(pages.node_buddyinfo(node)) {
            *sum += count;
        }
    }
    assert_eq!(total, pages.buddyinfo());
    pages.check_invariants().expect("buddy invariants");
}

fn free(pages: &PageAllocator<SharedHostPlatform>, block: NonNull<u8>, order: u32) {
    // SAFETY: tests free only blocks they hold, once.
    unsafe { pages.free_pages(block, order) }.expect("valid free");
}

#[test]
fn the_platform_spreads_cpus_over_nodes_and_orders_fallbacks_by_distance() {
    let (pages, platform) = two_nodes();
    let nodes: Vec<usize> = (0..CPUS).map(|cpu| platform.cpu_node(cpu)).collect();
    assert_eq!(nodes, [0, 0, 1, 1]);
    assert_eq!(pages.nr_nodes(), 2);
    assert!(pages.node_has_memory(0) && pages.node_has_memory(1));
    assert!(!pages.node_has_memory(2));
    assert_eq!(pages.fallback_order(0), [0, 1]);
    assert_eq!(pages.fallback_order(1), [1, 0]);
}

#[test]
fn every_order_comes_from_the_calling_cpus_node() {
    let (pages, platform) = two_nodes();
    for (cpu, node) in [(0, 0), (NODE1_CPU, 1)] {
        HostPlatform::set_this_cpu(cpu);
        assert_eq!(pages.this_node(), node);
        for order in 0..=MAX_ORDER {
            let block = pages.alloc_pages(order, Gfp::KERNEL).expect("alloc");
            assert_eq!(page_node(&platform, block), node, "order {order}");
            assert_eq!(pages.node_of(block.as_ptr()), Some(node));
            free(&pages, block, order);
        }
        check_nodes(&pages, &platform);
    }
    for node in 0..2 {
        let stats = node_stats(&pages, node);
        assert_eq!(stats.numa_hit, u64::from(MAX_ORDER) + 1, "node {node}");
        assert_eq!(stats.local_node, stats.numa_hit);
        assert_eq!((stats.numa_miss, stats.numa_foreign), (0, 0));
        assert_eq!((stats.other_node, stats.free_remote), (0, 0));
        assert_eq!(stats.free_local, stats.numa_hit);
    }
}

#[test]
fn a_pinned_request_lands_on_its_node_and_counts_there() {
    let (pages, platform) = two_nodes();
    HostPlatform::set_this_cpu(0);
    let mut held = Vec::new();
    for order in [0, PCP_MAX_ORDER, PCP_MAX_ORDER + 1, MAX_ORDER] {
        let block = pages
            .alloc_pages_node(order, Gfp::KERNEL, 1)
            .expect("alloc");
        assert_eq!(page_node(&platform, block), 1, "order {order}");
        held.push((block, order));
    }
    // The calling CPU's own lists stay out of it: only node 1's pool grew.
    assert_eq!(pages.pcp_pages(0), 0);
    assert_eq!(node_stats(&pages, 0).chunks, 0);
    let node1 = node_stats(&pages, 1);
    assert_eq!(
        (node1.numa_hit, node1.other_node, node1.local_node),
        (4, 4, 0)
    );
    // A request pinned to the CPU's own node takes the usual path.
    let local = pages.alloc_pages_node(0, Gfp::KERNEL, 0).expect("alloc");
    assert_eq!(page_node(&platform, local), 0);
    free(&pages, local, 0);
    for (block, order) in held {
        free(&pages, block, order);
    }
    check_nodes(&pages, &platform);
    // Nodes without memory are refused, not served from elsewhere.
    assert!(pages.alloc_pages_node(0, Gfp::KERNEL, 2).is_err());
    assert!(pages.alloc_pages_node(0, Gfp::KERNEL, usize::MAX).is_err());
}

#[test]
fn a_free_from_another_node_goes_home() {
    let (pages, platform) = two_nodes();
    HostPlatform::set_this_cpu(NODE1_CPU);
    let blocks: Vec<_> = (0..8)
        .map(|_| pages.alloc_pages(0, Gfp::KERNEL).expect("alloc"))
        .collect();
    let big = pages
        .alloc_pages(PCP_MAX_ORDER + 2, Gfp::KERNEL)
        .expect("alloc");
    let node1_free = node_stats(&pages, 1).pages_free;
    HostPlatform::set_this_cpu(0);
    for &block in &blocks {
        free(&pages, block, 0);
    }
    free(&pages, big, PCP_MAX_ORDER + 2);
    // Nothing went to CPU 0's lists, which hold node 0's blocks only.
    assert_eq!(pages.pcp_pages(0), 0);
    let node1 = node_stats(&pages, 1);
    assert_eq!(node1.free_remote, 9);
    assert_eq!(
        node1.pages_free,
        node1_free + 8 + (1 << (PCP_MAX_ORDER + 2))
    );
    check_nodes(&pages, &platform);
    // Node 1's CPU gets the blocks back from its node.
    HostPlatform::set_this_cpu(NODE1_CPU);
    let again = pages.alloc_pages(0, Gfp::KERNEL).expect("alloc");
    assert_eq!(page_node(&platform, again), 1);
    free(&pages, again, 0);
}

#[test]
fn an_exhausted_node_falls_back_to_the_other_and_counts_it() {
    let (pages, platform) = two_nodes();
    platform.host().set_node_limit(0, Some(0));
    HostPlatform::set_this_cpu(0);
    let mut held = Vec::new();
    for order in [0, 1, PCP_MAX_ORDER + 1] {
        let block = pages.alloc_pages(order, Gfp::KERNEL).expect("fallback");
        assert_eq!(page_node(&platform, block), 1, "order {order}");
        held.push((block, order));
    }
    let (node0, node1) = (node_stats(&pages, 0), node_stats(&pages, 1));
    assert_eq!(
        (node0.numa_foreign, node0.numa_hit, node0.chunks),
        (3, 0, 0)
    );
    assert_eq!(
        (node1.numa_miss, node1.other_node, node1.numa_hit),
        (3, 3, 0)
    );
    assert!(platform.host().node_refusals() > 0);
    // Atomic requests fall back too, without refilling anything.
    let atomic = pages.alloc_pages(0, Gfp::ATOMIC).expect("atomic fallback");
    assert_eq!(page_node(&platform, atomic), 1);
    held.push((atomic, 0));
    // Once node 0 may grow again, its CPU is served locally.
    platform.host().set_node_limit(0, None);
    let local = pages.alloc_pages(0, Gfp::KERNEL).expect("alloc");
    assert_eq!(page_node(&platform, local), 0);
    held.push((local, 0));
    for (block, order) in held {
        free(&pages, block, order);
    }
    check_nodes(&pages, &platform);
    // With both nodes exhausted the request fails, and is counted.
    platform.host().set_node_limit(0, Some(0));
    platform.host().set_node_limit(1, Some(0));
    pages.shrink();
    assert!(pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).is_err());
    assert_eq!(pages.stats().failures[MAX_ORDER as usize], 1);
}

#[test]
fn the_reserve_is_shared_among_nodes_by_their_pages() {
    let (pages, platform) = two_nodes();
    HostPlatform::set_this_cpu(0);
    let a = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).expect("alloc");
    let b = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).expect("alloc");
    HostPlatform::set_this_cpu(NODE1_CPU);
    let c = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).expect("alloc");
    // Node 0 has two chunks, node 1 one: a reserve of 3 chunks' worth of
    // 48 pages splits 2:1.
    pages.set_reserve(Reserve::Kbytes(48 * 3 * PAGE_SIZE / 1024));
    let (w0, w1) = (pages.node_watermarks(0), pages.node_watermarks(1));
    assert_eq!((w0.min, w1.min), (96, 48));
    assert_eq!(pages.watermarks().min, 144);
    assert!(w0.low > w0.min && w0.high > w0.low);
    free(&pages, c, MAX_ORDER);
    HostPlatform::set_this_cpu(0);
    free(&pages, a, MAX_ORDER);
    free(&pages, b, MAX_ORDER);
    check_nodes(&pages, &platform);
}

#[test]
fn shrink_and_drop_give_back_every_chunk_of_every_node() {
    let (pages, platform) = two_nodes();
    let mut held = Vec::new();
    for cpu in [0, NODE1_CPU] {
        HostPlatform::set_this_cpu(cpu);
        for order in 0..=MAX_ORDER {
            held.push((pages.alloc_pages(order, Gfp::KERNEL).expect("alloc"), order));
        }
    }
    assert!(node_stats(&pages, 0).chunks > 0 && node_stats(&pages, 1).chunks > 0);
    // Frees from the "wrong" CPU on purpose: half of them are remote.
    HostPlatform::set_this_cpu(0);
    for (block, order) in held {
        free(&pages, block, order);
    }
    check_nodes(&pages, &platform);
    pages.shrink();
    for node in 0..2 {
        assert_eq!(node_stats(&pages, node).chunks, 0, "node {node}");
        assert_eq!(platform.host().node_pages_outstanding(node), 0);
    }
    // Chunks held at the end are given back by drop, every node's.
    HostPlatform::set_this_cpu(NODE1_CPU);
    let kept = pages.alloc_pages(3, Gfp::KERNEL).expect("alloc");
    assert_eq!(page_node(&platform, kept), 1);
    free(&pages, kept, 3);
    drop(pages);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(platform.host().meta_outstanding(), 0);
}
