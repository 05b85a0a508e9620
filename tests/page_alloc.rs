// SPDX-License-Identifier: GPL-2.0

//! Tests of the page allocator on the host platform: orders, alignment,
//! zeroing, invalid frees, exhaustion, shrinking, owner words, per-CPU lists,
//! a random model and a multi-threaded stress run.

use proptest::prelude::*;
use rmm_core::buddy::{CHUNK_FRAMES, NR_ORDERS};
use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::page_alloc::{
    pcp_batch, pcp_high, PageAllocator, PageFreeError, PageStats, MAX_ORDER, PCP_BATCH, PCP_HIGH,
    PCP_MAX_ORDER,
};
use rmm_core::platform::{AllocError, Platform, PAGE_SIZE};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::fmt;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// A host platform shared with the test, so that it can be inspected after
/// the allocator that owns a handle to it is dropped.
#[derive(Clone)]
struct Shared(Arc<HostPlatform>);

impl Platform for Shared {
    type Lock<T: Send> = <HostPlatform as Platform>::Lock<T>;
    type PerCpu<T: Send + Sync> = <HostPlatform as Platform>::PerCpu<T>;

    fn new_lock<T: Send>(
        &self,
        value: T,
        class: rmm_core::platform::LockClass,
    ) -> Result<Self::Lock<T>, AllocError> {
        self.0.new_lock(value, class)
    }

    fn new_percpu<T: Send + Sync>(
        &self,
        init: impl FnMut(usize) -> Result<T, AllocError>,
    ) -> Result<Self::PerCpu<T>, AllocError> {
        self.0.new_percpu(init)
    }

    fn on_each_cpu<T: Send + Sync>(&self, data: &Self::PerCpu<T>, f: &(dyn Fn(usize, &T) + Sync)) {
        self.0.on_each_cpu(data, f)
    }

    fn nr_cpu_ids(&self) -> usize {
        self.0.nr_cpu_ids()
    }

    fn this_cpu(&self) -> usize {
        self.0.this_cpu()
    }

    fn alloc_pages(&self, order: u32, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
        self.0.alloc_pages(order, gfp, node)
    }

    unsafe fn free_pages(&self, ptr: NonNull<u8>, order: u32) {
        // SAFETY: the caller's guarantees are passed on unchanged.
        unsafe { self.0.free_pages(ptr, order) }
    }

    fn alloc_meta(&self, layout: Layout, gfp: Gfp) -> Option<NonNull<u8>> {
        self.0.alloc_meta(layout, gfp)
    }

    unsafe fn free_meta(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's guarantees are passed on unchanged.
        unsafe { self.0.free_meta(ptr, layout) }
    }

    fn report(&self, args: fmt::Arguments<'_>) {
        self.0.report(args)
    }

    fn monotonic_ns(&self) -> u64 {
        self.0.monotonic_ns()
    }
}

fn allocator(nr_cpus: usize) -> (PageAllocator<Shared>, Arc<HostPlatform>) {
    let host = Arc::new(HostPlatform::new(nr_cpus));
    let pages = PageAllocator::new(Shared(host.clone())).expect("allocator");
    (pages, host)
}

/// Drops the allocator and checks that it gave everything back.
fn finish(pages: PageAllocator<Shared>, host: &HostPlatform) {
    drop(pages);
    assert_eq!(host.pages_outstanding(), 0, "pages not given back");
    assert_eq!(host.meta_outstanding(), 0, "metadata not given back");
}

fn bytes(addr: NonNull<u8>, order: u32) -> &'static mut [u8] {
    // SAFETY: tests only call this on blocks they hold.
    unsafe { std::slice::from_raw_parts_mut(addr.as_ptr(), PAGE_SIZE << order) }
}

fn buddy_pages(info: &[usize; NR_ORDERS]) -> usize {
    info.iter()
        .enumerate()
        .map(|(order, count)| count << order)
        .sum()
}

/// Checks the relations between the counters that must always hold.
fn check_counts(pages: &PageAllocator<Shared>, host: &HostPlatform, allocated: usize) {
    let stats = pages.stats();
    assert_eq!(stats.pages_total, stats.chunks * CHUNK_FRAMES);
    assert_eq!(host.pages_outstanding(), stats.pages_total);
    assert_eq!(
        stats.pages_free + stats.pages_pcp + stats.pages_allocated,
        stats.pages_total
    );
    assert_eq!(stats.pages_allocated, allocated);
    assert_eq!(buddy_pages(&pages.buddyinfo()), stats.pages_free);
    pages.check_invariants().expect("buddy invariants");
}

#[test]
fn every_order_is_aligned_usable_and_counted() {
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    for order in 0..=MAX_ORDER {
        let block = pages.alloc_pages(order, Gfp::KERNEL).expect("alloc");
        assert_eq!(block.as_ptr() as usize % (PAGE_SIZE << order), 0);
        bytes(block, order).fill(order as u8);
        check_counts(&pages, &host, 1 << order);
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(block, order) }.unwrap();
        check_counts(&pages, &host, 0);
    }
    let stats = pages.stats();
    assert_eq!(stats.allocs, [1; NR_ORDERS]);
    assert_eq!(stats.failures, [0; NR_ORDERS]);
    assert_eq!(
        pages.alloc_pages(MAX_ORDER + 1, Gfp::KERNEL),
        Err(AllocError)
    );
    assert!(host.reports().is_empty(), "{:?}", host.reports());
    finish(pages, &host);
}

#[test]
fn many_blocks_are_aligned_and_disjoint() {
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    let mut live = BTreeMap::new();
    for i in 0..600usize {
        let order = [0, 0, 1, 2, 3, 0, 5, 1][i % 8];
        let block = pages.alloc_pages(order, Gfp::KERNEL).unwrap();
        let start = block.as_ptr() as usize;
        assert_eq!(start % (PAGE_SIZE << order), 0);
        live.insert(start, (block, order));
    }
    let mut end = 0;
    for (&start, &(_, order)) in &live {
        assert!(start >= end, "blocks overlap");
        end = start + (PAGE_SIZE << order);
    }
    let allocated = live.values().map(|&(_, o)| 1usize << o).sum();
    check_counts(&pages, &host, allocated);
    for (_, (block, order)) in live {
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(block, order) }.unwrap();
    }
    check_counts(&pages, &host, 0);
    finish(pages, &host);
}

#[test]
fn zeroing_only_on_request() {
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    // Fresh platform pages are 0xa5; without ZERO they stay garbage (the
    // per-CPU list link overwrites two words of blocks of orders 0 to 3).
    let dirty = pages.alloc_pages(4, Gfp::KERNEL).unwrap();
    assert!(bytes(dirty, 4).iter().all(|&b| b == 0xa5));
    for order in [0, 1, 4, MAX_ORDER] {
        let block = pages.alloc_pages(order, Gfp::KERNEL | Gfp::ZERO).unwrap();
        assert!(bytes(block, order).iter().all(|&b| b == 0), "order {order}");
        bytes(block, order).fill(0x5a);
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(block, order) }.unwrap();
        // Reused memory is zeroed again.
        let again = pages.alloc_pages(order, Gfp::ATOMIC | Gfp::ZERO).unwrap();
        assert!(
            bytes(again, order).iter().all(|&b| b == 0),
            "order {order} reuse"
        );
        bytes(again, order).fill(0x77);
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(again, order) }.unwrap();
    }
    for _ in 0..3 * PCP_BATCH {
        let page = pages.get_zeroed_page(Gfp::KERNEL).unwrap();
        assert!(bytes(page, 0).iter().all(|&b| b == 0));
        bytes(page, 0).fill(1);
        // SAFETY: the page is not used afterwards.
        unsafe { pages.free_pages(page, 0) }.unwrap();
    }
    // SAFETY: the block is not used afterwards.
    unsafe { pages.free_pages(dirty, 4) }.unwrap();
    finish(pages, &host);
}

#[test]
fn invalid_frees_are_refused_counted_reported_and_change_nothing() {
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    let order2 = pages.alloc_pages(2, Gfp::KERNEL).unwrap();
    let order0 = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    let freed = pages.alloc_pages(3, Gfp::KERNEL).unwrap();
    let freed_page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    // SAFETY: the blocks are not used afterwards.
    unsafe {
        pages.free_pages(freed, 3).unwrap();
        pages.free_pages(freed_page, 0).unwrap();
    }
    let foreign = Box::new([0u8; 64]);
    let foreign = NonNull::from(&foreign[0]);
    let at = |block: NonNull<u8>, offset: usize| {
        NonNull::new(block.as_ptr().wrapping_add(offset)).unwrap()
    };
    let before_stats = pages.stats();
    let before_info = pages.buddyinfo();
    let cases = [
        (foreign, 0, PageFreeError::NotOurs),
        (at(order2, PAGE_SIZE), 0, PageFreeError::NotBlockHead),
        (at(order2, 2 * PAGE_SIZE), 1, PageFreeError::NotBlockHead),
        (at(order2, 8), 2, PageFreeError::NotBlockHead),
        (order2, 1, PageFreeError::WrongOrder { actual: 2 }),
        (order2, 3, PageFreeError::WrongOrder { actual: 2 }),
        (order0, 2, PageFreeError::WrongOrder { actual: 0 }),
        (freed, 3, PageFreeError::AlreadyFree),
        (at(freed, PAGE_SIZE), 0, PageFreeError::AlreadyFree),
        // A page cached on the per-CPU list.
        (freed_page, 0, PageFreeError::AlreadyFree),
        (order2, MAX_ORDER + 1, PageFreeError::BadOrder),
    ];
    for (n, &(addr, order, expected)) in cases.iter().enumerate() {
        host.take_reports();
        // SAFETY: invalid frees change nothing.
        let result = unsafe { pages.free_pages(addr, order) };
        assert_eq!(result, Err(expected), "case {n}");
        let reports = host.take_reports();
        assert_eq!(reports.len(), 1, "case {n}: {reports:?}");
        assert!(
            reports[0].contains(&format!("{:p}", addr.as_ptr())),
            "report without address: {}",
            reports[0]
        );
        assert!(reports[0].contains(&expected.to_string()));
        let stats = pages.stats();
        assert_eq!(stats.invalid_frees, n as u64 + 1);
        assert_eq!(
            PageStats {
                invalid_frees: before_stats.invalid_frees,
                ..stats
            },
            before_stats
        );
        assert_eq!(pages.buddyinfo(), before_info);
        check_counts(&pages, &host, 5);
    }
    // The blocks named in invalid frees are intact and free properly.
    assert_eq!(
        pages.block_owner(at(order2, 3 * PAGE_SIZE).as_ptr()),
        Some(0)
    );
    // SAFETY: the blocks are not used afterwards.
    unsafe {
        pages.free_pages(order2, 2).unwrap();
        pages.free_pages(order0, 0).unwrap();
        assert_eq!(pages.free_pages(order0, 0), Err(PageFreeError::AlreadyFree));
        assert_eq!(pages.free_pages(order2, 2), Err(PageFreeError::AlreadyFree));
    }
    check_counts(&pages, &host, 0);
    finish(pages, &host);
}

#[test]
fn exhaustion_and_recovery() {
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    // Two chunks' worth, then the platform refuses more.
    let mut held: Vec<_> = (0..2)
        .map(|_| pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).unwrap())
        .collect();
    let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    host.fail_every(1);
    // What the third chunk, split by the per-CPU refill, still holds.
    let order3_blocks: usize = pages.buddyinfo()[3..]
        .iter()
        .enumerate()
        .map(|(above, count)| count << above)
        .sum();
    assert!(order3_blocks > CHUNK_FRAMES / 8 / 2);
    let mut small = Vec::new();
    while let Ok(block) = pages.alloc_pages(3, Gfp::KERNEL) {
        small.push(block);
    }
    assert_eq!(small.len(), order3_blocks);
    assert_eq!(pages.alloc_pages(MAX_ORDER, Gfp::KERNEL), Err(AllocError));
    assert_eq!(pages.alloc_pages(7, Gfp::ATOMIC), Err(AllocError));
    let stats = pages.stats();
    assert_eq!(stats.failures[3], 1);
    assert_eq!(stats.failures[MAX_ORDER as usize], 1);
    assert_eq!(stats.failures[7], 1);
    assert_eq!(stats.chunks, 3);
    assert_eq!(host.pages_outstanding(), 3 * CHUNK_FRAMES);
    // Recovery: a freed block serves the next request without the platform.
    // SAFETY: the block is not used afterwards.
    unsafe { pages.free_pages(held.pop().unwrap(), MAX_ORDER) }.unwrap();
    let block = pages.alloc_pages(7, Gfp::KERNEL).expect("recovered");
    host.fail_every(0);
    held.push(
        pages
            .alloc_pages(MAX_ORDER, Gfp::KERNEL)
            .expect("grows again"),
    );
    // SAFETY: the blocks are not used afterwards.
    unsafe {
        pages.free_pages(block, 7).unwrap();
        pages.free_pages(page, 0).unwrap();
        for block in small {
            pages.free_pages(block, 3).unwrap();
        }
        for block in held {
            pages.free_pages(block, MAX_ORDER).unwrap();
        }
    }
    check_counts(&pages, &host, 0);
    let total = pages.stats().pages_total;
    assert_eq!(total, 4 * CHUNK_FRAMES);
    assert_eq!(pages.shrink(), total);
    assert_eq!(host.pages_outstanding(), 0);
    finish(pages, &host);
}

#[test]
fn chunk_capacity_is_enforced() {
    let host = Arc::new(HostPlatform::new(1));
    let pages = PageAllocator::with_max_chunks(Shared(host.clone()), 2).unwrap();
    let a = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).unwrap();
    let b = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).unwrap();
    assert_eq!(pages.alloc_pages(0, Gfp::KERNEL), Err(AllocError));
    assert_eq!(
        host.pages_outstanding(),
        2 * CHUNK_FRAMES,
        "refused chunk kept"
    );
    assert_eq!(pages.stats().failures[0], 1);
    assert_eq!(pages.stats().max_chunks, 2);
    // SAFETY: the blocks are not used afterwards.
    unsafe {
        pages.free_pages(a, MAX_ORDER).unwrap();
        pages.free_pages(b, MAX_ORDER).unwrap();
    }
    finish(pages, &host);
}

#[test]
fn shrink_returns_free_chunks_only() {
    let (pages, host) = allocator(2);
    HostPlatform::set_this_cpu(1);
    let mut blocks: Vec<_> = (0..5 * CHUNK_FRAMES / 4)
        .map(|i| {
            (
                pages.alloc_pages((i % 3) as u32, Gfp::KERNEL).unwrap(),
                (i % 3) as u32,
            )
        })
        .collect();
    let chunks = pages.stats().chunks;
    assert!(chunks >= 3);
    assert_eq!(pages.shrink(), 0, "nothing is free yet");
    let keep = blocks.pop().unwrap();
    for (block, order) in blocks {
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(block, order) }.unwrap();
    }
    assert!(pages.stats().pages_pcp > 0);
    let released = pages.shrink();
    assert_eq!(released, (chunks - 1) * CHUNK_FRAMES);
    let stats = pages.stats();
    assert_eq!(stats.chunks, 1);
    assert_eq!(stats.pages_pcp, 0, "shrink drains the per-CPU lists");
    assert_eq!(host.pages_outstanding(), CHUNK_FRAMES);
    check_counts(&pages, &host, 1 << keep.1);
    // SAFETY: the block is not used afterwards.
    unsafe { pages.free_pages(keep.0, keep.1) }.unwrap();
    assert_eq!(pages.shrink(), CHUNK_FRAMES);
    assert_eq!(host.pages_outstanding(), 0);
    assert_eq!(pages.buddyinfo(), [0; NR_ORDERS]);
    // Growing again after a full shrink reuses the kept metadata.
    let metas = host.meta_outstanding();
    let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    assert_eq!(host.meta_outstanding(), metas);
    // SAFETY: the page is not used afterwards.
    unsafe { pages.free_pages(page, 0) }.unwrap();
    finish(pages, &host);
}

#[test]
fn drop_returns_everything_and_reports_leaks() {
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    let _leaked = pages.alloc_pages(3, Gfp::KERNEL).unwrap();
    let _leaked_page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    let freed = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).unwrap();
    // SAFETY: the block is not used afterwards.
    unsafe { pages.free_pages(freed, MAX_ORDER) }.unwrap();
    assert!(host.reports().is_empty());
    finish(pages, &host);
    let reports = host.reports();
    assert!(
        reports.iter().any(|r| r.contains("9 pages leaked")),
        "{reports:?}"
    );
}

#[test]
fn block_owner_covers_every_byte_of_the_block_only() {
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    let mut blocks = Vec::new();
    for order in 0..=MAX_ORDER {
        let block = pages.alloc_pages(order, Gfp::KERNEL).unwrap();
        let size = PAGE_SIZE << order;
        let owner = 0x1000 + 4 * order as usize;
        let base = block.as_ptr();
        assert_eq!(pages.block_owner(base), Some(0), "no owner set yet");
        assert_eq!(pages.block_aux(base), 0, "no auxiliary word set yet");
        // SAFETY: our block; the word's two low bits are clear, so it
        // means nothing to rmm.
        unsafe { pages.set_block_owner(block, order, owner, owner * 2) };
        assert_eq!(pages.block_aux(base), owner * 2);
        // First, last and page-boundary bytes of the block.
        for page in 0..1usize << order {
            for offset in [0, 1, PAGE_SIZE / 2, PAGE_SIZE - 1] {
                let addr = base.wrapping_add(page * PAGE_SIZE + offset);
                assert_eq!(pages.block_owner(addr), Some(owner));
            }
        }
        assert_eq!(pages.block_owner(base.wrapping_add(size - 1)), Some(owner));
        blocks.push((block, order, owner));
    }
    // Bytes just outside each block belong to another block or none.
    for &(block, order, owner) in &blocks {
        let before = pages.block_owner(block.as_ptr().wrapping_sub(1));
        let after = pages.block_owner(block.as_ptr().wrapping_add(PAGE_SIZE << order));
        assert_ne!(before, Some(owner));
        assert_ne!(after, Some(owner));
    }
    let foreign = Box::new(0u64);
    assert_eq!(
        pages.block_owner(&*foreign as *const u64 as *const u8),
        None
    );
    assert_eq!(pages.block_owner(std::ptr::null()), None);
    // Wrong calls are reported and ignored.
    let (block, order, owner) = blocks[3];
    // SAFETY: our block (the calls are refused before any word is
    // written); the words' low bits are clear.
    unsafe {
        pages.set_block_owner(block, order + 1, 8, 8);
        pages.set_block_owner(
            NonNull::new(block.as_ptr().wrapping_add(PAGE_SIZE)).unwrap(),
            0,
            8,
            8,
        );
    }
    assert_eq!(host.take_reports().len(), 2);
    assert_eq!(pages.block_owner(block.as_ptr()), Some(owner));
    assert_eq!(pages.block_aux(block.as_ptr()), owner * 2);
    // Freed blocks have no owner, and the words do not come back on reuse.
    for (block, order, _) in blocks {
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(block, order) }.unwrap();
        for page in 0..1usize << order {
            assert_eq!(
                pages.block_owner(block.as_ptr().wrapping_add(page * PAGE_SIZE)),
                None
            );
        }
    }
    let again = pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).unwrap();
    for page in 0..CHUNK_FRAMES {
        let addr = again.as_ptr().wrapping_add(page * PAGE_SIZE);
        assert_eq!(pages.block_owner(addr), Some(0));
        assert_eq!(pages.block_aux(addr), 0);
    }
    // SAFETY: the block is not used afterwards.
    unsafe { pages.free_pages(again, MAX_ORDER) }.unwrap();
    finish(pages, &host);
}

#[test]
fn per_cpu_lists_refill_drain_and_cross_cpu_frees() {
    let (pages, host) = allocator(2);
    HostPlatform::set_this_cpu(0);
    // The first page comes straight from a new chunk, the second one
    // through a refill of the CPU-0 list.
    let grown = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    assert_eq!(pages.stats().pages_pcp, 0);
    let first = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    let stats = pages.stats();
    assert_eq!(stats.pages_pcp, PCP_BATCH - 1, "refilled by one batch");
    // The rest of the batch is served without touching the buddy lists.
    let info = pages.buddyinfo();
    let mut on_cpu0: Vec<_> = (0..PCP_BATCH - 1)
        .map(|_| pages.alloc_pages(0, Gfp::KERNEL).unwrap())
        .collect();
    assert_eq!(pages.buddyinfo(), info);
    assert_eq!(pages.stats().pages_pcp, 0);
    on_cpu0.push(first);
    // Free on another CPU than the allocating one.
    HostPlatform::set_this_cpu(1);
    for &page in &on_cpu0 {
        // SAFETY: the page is not used afterwards.
        unsafe { pages.free_pages(page, 0) }.unwrap();
    }
    assert_eq!(pages.stats().pages_pcp, PCP_BATCH);
    assert_eq!(pages.buddyinfo(), info, "frees stay on the CPU-1 list");
    // CPU 1 allocates from its own list.
    let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    assert!(on_cpu0.contains(&page));
    // SAFETY: the page is not used afterwards.
    unsafe { pages.free_pages(page, 0) }.unwrap();
    // Above the high mark a batch goes back to the buddy lists.
    HostPlatform::set_this_cpu(0);
    let many: Vec<_> = (0..3 * PCP_HIGH)
        .map(|_| pages.alloc_pages(0, Gfp::KERNEL).unwrap())
        .collect();
    for &page in &many {
        // SAFETY: the page is not used afterwards.
        unsafe { pages.free_pages(page, 0) }.unwrap();
        let stats = pages.stats();
        assert!(stats.pages_pcp <= PCP_HIGH + PCP_BATCH, "{stats:?}");
    }
    // SAFETY: the page is not used afterwards.
    unsafe { pages.free_pages(grown, 0) }.unwrap();
    check_counts(&pages, &host, 0);
    pages.shrink();
    assert_eq!(pages.stats().pages_pcp, 0);
    assert_eq!(host.pages_outstanding(), 0);
    finish(pages, &host);
}

/// Orders 1 to 3 have lists of their own, with the kernel's scaling of
/// batch and high mark by order: refilled by a batch, served without the
/// buddy lists, drained by a batch above the high mark, never above it.
#[test]
fn every_per_cpu_order_refills_and_drains_by_its_batch() {
    assert_eq!((pcp_batch(0), pcp_high(0)), (PCP_BATCH, PCP_HIGH));
    assert_eq!(
        (1..=PCP_MAX_ORDER)
            .map(|order| (pcp_batch(order), pcp_high(order)))
            .collect::<Vec<_>>(),
        [(8, 32), (4, 16), (2, 8)]
    );
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    // A chunk to start with; the first block of a new chunk bypasses the
    // lists.
    let grown = pages.alloc_pages(MAX_ORDER - 1, Gfp::KERNEL).unwrap();
    for order in 1..=PCP_MAX_ORDER {
        let (batch, high) = (pcp_batch(order), pcp_high(order));
        let o = order as usize;
        let first = pages.alloc_pages(order, Gfp::KERNEL).unwrap();
        let stats = pages.stats();
        assert_eq!(stats.pcp_blocks[o], batch - 1, "order {order}: refilled");
        assert_eq!(stats.pages_pcp, (batch - 1) << order);
        assert_eq!(stats.allocs[o], 1);
        let info = pages.buddyinfo();
        let mut held: Vec<_> = (1..batch)
            .map(|_| pages.alloc_pages(order, Gfp::KERNEL).unwrap())
            .collect();
        assert_eq!(pages.buddyinfo(), info, "order {order}: served by the list");
        assert_eq!(pages.stats().pcp_blocks[o], 0);
        held.push(first);
        held.extend((0..2 * high).map(|_| pages.alloc_pages(order, Gfp::KERNEL).unwrap()));
        for (n, &block) in held.iter().enumerate() {
            // SAFETY: the block is not used afterwards.
            unsafe { pages.free_pages(block, order) }.unwrap();
            let cached = pages.stats().pcp_blocks[o];
            assert!(cached <= high, "order {order}: {cached} cached");
            if n < high {
                assert_eq!(cached, n + 1, "order {order}: frees stay on the list");
            }
        }
        let stats = pages.stats();
        assert_eq!(stats.allocs[o], (batch + 2 * high) as u64);
        assert_eq!(stats.pcp_blocks.iter().sum::<usize>(), stats.pcp_blocks[o]);
        check_counts(&pages, &host, CHUNK_FRAMES / 2);
        // The lists of other orders are untouched by this order's traffic;
        // shrinking empties them all.
        pages.shrink();
        assert_eq!(pages.stats().pcp_blocks, [0; NR_ORDERS]);
    }
    // SAFETY: the block is not used afterwards.
    unsafe { pages.free_pages(grown, MAX_ORDER - 1) }.unwrap();
    check_counts(&pages, &host, 0);
    finish(pages, &host);
}

/// The CPU-hotplug teardown hands back the blocks of every order cached on
/// the dead CPU, and only that CPU's.
#[test]
fn cpu_dead_hands_back_every_order_of_that_cpu() {
    let (pages, host) = allocator(2);
    HostPlatform::set_this_cpu(0);
    let grown = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    let on_cpu0 = pages.alloc_pages(2, Gfp::KERNEL).unwrap();
    HostPlatform::set_this_cpu(1);
    let mut held = Vec::new();
    for order in 0..=PCP_MAX_ORDER {
        for _ in 0..3 {
            held.push((pages.alloc_pages(order, Gfp::KERNEL).unwrap(), order));
        }
    }
    for &(block, order) in &held {
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(block, order) }.unwrap();
    }
    let before = pages.stats();
    let cpu0_pages = (pcp_batch(2) - 1) << 2;
    assert!(before.pcp_blocks[..=PCP_MAX_ORDER as usize]
        .iter()
        .all(|&n| n > 0));
    // SAFETY: nothing uses CPU 1's lists during the call (this thread plays
    // CPU 1 and the hotplug control at once, one after the other).
    let back = unsafe { pages.cpu_dead(1) };
    assert_eq!(back, before.pages_pcp - cpu0_pages);
    let after = pages.stats();
    assert_eq!(after.pages_pcp, cpu0_pages, "CPU 0's list is kept");
    assert_eq!(after.pages_free, before.pages_free + back);
    // SAFETY: as above; nothing is left, and no CPU 7 exists.
    unsafe {
        assert_eq!(pages.cpu_dead(1), 0);
        assert_eq!(pages.cpu_dead(7), 0);
    }
    // The CPU may come back and use its lists again.
    let again = pages.alloc_pages(3, Gfp::KERNEL).unwrap();
    // SAFETY: the blocks are not used afterwards.
    unsafe {
        pages.free_pages(again, 3).unwrap();
        pages.free_pages(on_cpu0, 2).unwrap();
        pages.free_pages(grown, 0).unwrap();
    }
    check_counts(&pages, &host, 0);
    assert_eq!(pages.shrink(), CHUNK_FRAMES);
    finish(pages, &host);
}

/// Only the first page of a handed-out block is tagged, yet a free of any
/// later page of a block of any order is told apart from a double free,
/// and such pages still read as part of their block.
#[test]
fn later_pages_of_every_order_are_refused_as_not_block_heads() {
    let (pages, host) = allocator(1);
    HostPlatform::set_this_cpu(0);
    let blocks: Vec<_> = (1..=MAX_ORDER)
        .map(|order| (pages.alloc_pages(order, Gfp::KERNEL).unwrap(), order))
        .collect();
    let at = |block: NonNull<u8>, page: usize| {
        NonNull::new(block.as_ptr().wrapping_add(page * PAGE_SIZE)).unwrap()
    };
    let mut refused = 0;
    for &(block, order) in &blocks {
        let last = (1usize << order) - 1;
        for page in [1, last / 2 + 1, last] {
            // Every order of aligned sub-block starting at that page.
            for sub in 0..=page.trailing_zeros().min(order - 1) {
                // SAFETY: invalid frees change nothing.
                let result = unsafe { pages.free_pages(at(block, page), sub) };
                assert_eq!(
                    result,
                    Err(PageFreeError::NotBlockHead),
                    "order {order}, page {page}, order {sub}"
                );
                refused += 1;
            }
            assert_eq!(pages.block_owner(at(block, page).as_ptr()), Some(0));
        }
    }
    assert_eq!(pages.stats().invalid_frees, refused);
    // A freed block's later pages are free, not block heads.
    let (block, order) = blocks[4];
    // SAFETY: the block is not used afterwards.
    unsafe { pages.free_pages(block, order) }.unwrap();
    for page in [0, 1, 7] {
        // SAFETY: invalid frees change nothing.
        let result = unsafe { pages.free_pages(at(block, page), 0) };
        assert_eq!(result, Err(PageFreeError::AlreadyFree), "page {page}");
        assert_eq!(pages.block_owner(at(block, page).as_ptr()), None);
    }
    for &(block, order) in blocks.iter().filter(|&&(_, o)| o != order) {
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(block, order) }.unwrap();
    }
    check_counts(&pages, &host, 0);
    finish(pages, &host);
}

#[test]
fn pages_cached_on_other_cpus_are_used_before_failing() {
    let host = Arc::new(HostPlatform::new(2));
    let pages = PageAllocator::with_max_chunks(Shared(host.clone()), 1).unwrap();
    HostPlatform::set_this_cpu(0);
    let cached: Vec<_> = (0..PCP_HIGH / 2)
        .map(|_| pages.alloc_pages(0, Gfp::KERNEL).unwrap())
        .collect();
    HostPlatform::set_this_cpu(1);
    for &page in &cached {
        // SAFETY: the page is not used afterwards.
        unsafe { pages.free_pages(page, 0) }.unwrap();
    }
    assert!(pages.stats().pages_pcp > 0);
    // The only chunk is whole again only once the lists are drained.
    HostPlatform::set_this_cpu(0);
    let whole = pages
        .alloc_pages(MAX_ORDER, Gfp::KERNEL)
        .expect("drained and merged");
    let stats = pages.stats();
    assert_eq!(stats.pages_pcp, 0);
    assert_eq!(stats.failures, [0; NR_ORDERS]);
    assert_eq!(pages.alloc_pages(0, Gfp::KERNEL), Err(AllocError));
    // SAFETY: the block is not used afterwards.
    unsafe { pages.free_pages(whole, MAX_ORDER) }.unwrap();
    finish(pages, &host);
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u32, bool),
    Free(usize),
    FreeWrong(usize, u32),
    Shrink,
    Cpu(usize),
    CpuDead(usize),
    FailNext(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=MAX_ORDER, any::<bool>()).prop_map(|(o, z)| Op::Alloc(o, z)),
        6 => (0..=PCP_MAX_ORDER, any::<bool>()).prop_map(|(o, z)| Op::Alloc(o, z)),
        8 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 0..=MAX_ORDER + 1).prop_map(|(i, o)| Op::FreeWrong(i, o)),
        1 => Just(Op::Shrink),
        1 => (0usize..2).prop_map(Op::Cpu),
        1 => (0usize..2).prop_map(Op::CpuDead),
        1 => any::<bool>().prop_map(Op::FailNext),
    ]
}

proptest! {
    #[test]
    fn model(ops in proptest::collection::vec(op(), 1..80)) {
        let (pages, host) = allocator(2);
        HostPlatform::set_this_cpu(0);
        // start address -> (block, order, stamp)
        let mut live: BTreeMap<usize, (NonNull<u8>, u32, u8)> = BTreeMap::new();
        let mut stamp = 0u8;
        let mut invalid = 0;
        for op in ops {
            match op {
                Op::Alloc(order, zero) => {
                    let gfp = if zero { Gfp::KERNEL | Gfp::ZERO } else { Gfp::KERNEL };
                    if let Ok(block) = pages.alloc_pages(order, gfp) {
                        let start = block.as_ptr() as usize;
                        prop_assert_eq!(start % (PAGE_SIZE << order), 0);
                        let memory = bytes(block, order);
                        if zero {
                            prop_assert!(memory.iter().all(|&b| b == 0));
                        }
                        stamp = stamp.wrapping_add(1);
                        // Stamp the first and last byte of every page.
                        for page in memory.chunks_mut(PAGE_SIZE) {
                            page[0] = stamp;
                            page[PAGE_SIZE - 1] = stamp;
                        }
                        // SAFETY: our block; the word's two low bits are clear,
                        // so it means nothing to rmm.
                        unsafe { pages.set_block_owner(block, order, start ^ 0x10, 0) };
                        prop_assert!(live.insert(start, (block, order, stamp)).is_none());
                    }
                }
                Op::Free(i) if !live.is_empty() => {
                    let start = *live.keys().nth(i % live.len()).unwrap();
                    let (block, order, stamp) = live.remove(&start).unwrap();
                    for page in bytes(block, order).chunks(PAGE_SIZE) {
                        prop_assert_eq!((page[0], page[PAGE_SIZE - 1]), (stamp, stamp));
                    }
                    // SAFETY: the block is not used afterwards.
                    prop_assert_eq!(unsafe { pages.free_pages(block, order) }, Ok(()));
                    prop_assert_eq!(pages.block_owner(block.as_ptr()), None);
                }
                Op::Free(_) => {}
                Op::FreeWrong(i, order) => {
                    let Some((&start, &(block, actual, _))) = live.iter().nth(i % live.len().max(1)) else {
                        continue;
                    };
                    if order != actual {
                        // SAFETY: an invalid free changes nothing.
                        let result = unsafe { pages.free_pages(block, order) };
                        prop_assert!(result.is_err());
                        invalid += 1;
                    }
                    if actual > 0 {
                        let tail = NonNull::new((start + PAGE_SIZE) as *mut u8).unwrap();
                        // SAFETY: an invalid free changes nothing.
                        prop_assert_eq!(unsafe { pages.free_pages(tail, 0) }, Err(PageFreeError::NotBlockHead));
                        invalid += 1;
                    }
                }
                Op::Shrink => {
                    let before = pages.stats();
                    let released = pages.shrink();
                    let after = pages.stats();
                    prop_assert_eq!(after.pages_pcp, 0);
                    prop_assert_eq!(released, before.pages_total - after.pages_total);
                    // No wholly free chunk is left.
                    prop_assert_eq!(pages.buddyinfo()[MAX_ORDER as usize], 0);
                }
                Op::Cpu(cpu) => HostPlatform::set_this_cpu(cpu),
                Op::CpuDead(cpu) => {
                    let before = pages.stats();
                    // SAFETY: nothing else uses the allocator meanwhile.
                    let back = unsafe { pages.cpu_dead(cpu) };
                    let after = pages.stats();
                    prop_assert_eq!(back, before.pages_pcp - after.pages_pcp);
                    prop_assert_eq!(after.pages_free, before.pages_free + back);
                }
                Op::FailNext(fail) => host.fail_every(usize::from(fail)),
            }
            // No two live blocks overlap; owners are intact.
            let mut end = 0;
            for (&start, &(block, order, _)) in &live {
                prop_assert!(start >= end, "blocks overlap");
                end = start + (PAGE_SIZE << order);
                let last = block.as_ptr().wrapping_add((PAGE_SIZE << order) - 1);
                prop_assert_eq!(pages.block_owner(last), Some(start ^ 0x10));
            }
            let allocated: usize = live.values().map(|&(_, o, _)| 1usize << o).sum();
            let stats = pages.stats();
            prop_assert_eq!(stats.pages_allocated, allocated);
            prop_assert_eq!(stats.pages_free + stats.pages_pcp + allocated, stats.pages_total);
            // Per-CPU lists of orders 0 to 3 only, each at most at its high
            // mark on each of the 2 CPUs; they add up to `pages_pcp`.
            let mut pcp_pages = 0;
            for (order, &blocks) in stats.pcp_blocks.iter().enumerate() {
                if order > PCP_MAX_ORDER as usize {
                    prop_assert_eq!(blocks, 0);
                } else {
                    prop_assert!(blocks <= 2 * pcp_high(order as u32));
                }
                pcp_pages += blocks << order;
            }
            prop_assert_eq!(pcp_pages, stats.pages_pcp);
            prop_assert_eq!(host.pages_outstanding(), stats.pages_total);
            prop_assert_eq!(buddy_pages(&pages.buddyinfo()), stats.pages_free);
            prop_assert_eq!(stats.invalid_frees, invalid);
            prop_assert_eq!(pages.check_invariants(), Ok(()));
        }
        host.fail_every(0);
        for (_, (block, order, _)) in live {
            // SAFETY: the block is not used afterwards.
            prop_assert_eq!(unsafe { pages.free_pages(block, order) }, Ok(()));
        }
        pages.shrink();
        prop_assert_eq!(host.pages_outstanding(), 0);
        drop(pages);
        prop_assert_eq!(host.meta_outstanding(), 0);
        prop_assert!(host.reports().iter().all(|r| r.contains("invalid free")));
    }
}

#[test]
fn stress_many_threads() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 15_000;
    let host = Arc::new(HostPlatform::new(THREADS));
    let pages = Arc::new(PageAllocator::new(Shared(host.clone())).unwrap());
    // Blocks handed from one thread to another, to be freed on another CPU.
    let mailbox: Arc<Mutex<Vec<(usize, u32, u64)>>> = Arc::default();
    // Every block held by any thread: start -> end, to catch double hand-outs.
    let held: Arc<Mutex<BTreeMap<usize, usize>>> = Arc::default();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let pages = pages.clone();
            let mailbox = mailbox.clone();
            let held = held.clone();
            std::thread::spawn(move || {
                HostPlatform::set_this_cpu(t);
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut mine: Vec<(usize, u32, u64)> = Vec::new();
                let check_and_free = |(start, order, stamp): (usize, u32, u64)| {
                    let block = NonNull::new(start as *mut u8).unwrap();
                    for page in 0..1usize << order {
                        // SAFETY: this thread holds the block.
                        let word = unsafe { *(block.as_ptr().add(page * PAGE_SIZE) as *const u64) };
                        assert_eq!(word, stamp, "block corrupted");
                    }
                    assert_eq!(
                        pages.block_owner(block.as_ptr()),
                        Some((stamp << 2) as usize)
                    );
                    assert!(held.lock().unwrap().remove(&start).is_some());
                    // SAFETY: the block is not used afterwards.
                    unsafe { pages.free_pages(block, order) }.unwrap();
                };
                for round in 0..ROUNDS {
                    let r = next();
                    if mine.len() < 64 && !r.is_multiple_of(3) {
                        let order = match r >> 8 & 15 {
                            0..=9 => 0,
                            10..=12 => 1 + (r >> 16) as u32 % 3,
                            _ => (r >> 16) as u32 % (MAX_ORDER + 1),
                        };
                        let block = pages.alloc_pages(order, Gfp::KERNEL).unwrap();
                        let start = block.as_ptr() as usize;
                        assert_eq!(start % (PAGE_SIZE << order), 0);
                        {
                            let mut held = held.lock().unwrap();
                            let end = start + (PAGE_SIZE << order);
                            if let Some((&s, &e)) = held.range(..end).next_back() {
                                assert!(e <= start, "block {start:#x} overlaps {s:#x}");
                            }
                            held.insert(start, end);
                        }
                        let stamp = ((t as u64) << 56) | (round as u64 * 64 + mine.len() as u64);
                        for page in 0..1usize << order {
                            // SAFETY: the block was just allocated for us.
                            unsafe { *(block.as_ptr().add(page * PAGE_SIZE) as *mut u64) = stamp };
                        }
                        // SAFETY: our block; the word's two low bits are clear,
                        // so it means nothing to rmm.
                        unsafe { pages.set_block_owner(block, order, (stamp << 2) as usize, 0) };
                        mine.push((start, order, stamp));
                    } else if !mine.is_empty() {
                        let block = mine.swap_remove((r >> 4) as usize % mine.len());
                        if r & 0x30 == 0 {
                            mailbox.lock().unwrap().push(block);
                        } else {
                            check_and_free(block);
                        }
                    }
                    if round.is_multiple_of(16) {
                        let taken = mailbox.lock().unwrap().pop();
                        if let Some(block) = taken {
                            check_and_free(block);
                        }
                    }
                    if t == 0 && round % 1000 == 999 {
                        pages.shrink();
                    }
                }
                for block in mine {
                    check_and_free(block);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for (start, order, stamp) in std::mem::take(&mut *mailbox.lock().unwrap()) {
        let block = NonNull::new(start as *mut u8).unwrap();
        // SAFETY: the block was handed out and is only read here.
        assert_eq!(unsafe { *(block.as_ptr() as *const u64) }, stamp);
        // SAFETY: the block is not used afterwards.
        unsafe { pages.free_pages(block, order) }.unwrap();
    }
    let stats = pages.stats();
    assert_eq!(stats.pages_allocated, 0, "{stats:?}");
    assert_eq!(stats.invalid_frees, 0);
    assert!(stats.allocs.iter().all(|&n| n > 0), "{stats:?}");
    pages.check_invariants().unwrap();
    assert!(host.reports().is_empty(), "{:?}", host.reports());
    assert_eq!(pages.shrink(), stats.pages_total);
    assert_eq!(host.pages_outstanding(), 0);
    let pages = Arc::try_unwrap(pages).ok().unwrap();
    finish(pages, &host);
}
