// SPDX-License-Identifier: GPL-2.0

//! Slab caches on the host platform: allocation and free through the
//! per-CPU arrays, constructors, shrinking, destroying, statistics, cheap
//! invalid-free checks, and a model-based property test.

use proptest::prelude::*;
use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::page_alloc::{PageAllocator, MAX_ORDER};
use rmm_core::platform::PAGE_SIZE;
use rmm_core::slab::{
    CacheStats, CreateError, CtorCall, DestroyError, KmemCache, LayoutError, SlabFlags,
    SlabFreeError, MAX_OBJECT_SIZE,
};
use std::collections::{BTreeMap, HashSet};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

type Pages = PageAllocator<HostPlatform>;
type Cache = KmemCache<HostPlatform>;

fn pages(cpus: usize) -> Pages {
    HostPlatform::set_this_cpu(0);
    PageAllocator::new(HostPlatform::new(cpus)).unwrap()
}

/// A page allocator that has already held `chunks` chunks, and the
/// platform's bookkeeping count then. The page allocator keeps the metadata
/// of chunks it gave back for reuse, so from here on the count moves only
/// with what the slab caches allocate, as long as they need no more chunks.
fn warmed_pages(cpus: usize, chunks: usize) -> (Pages, usize) {
    let pages = pages(cpus);
    let blocks: Vec<_> = (0..chunks)
        .map(|_| pages.alloc_pages(MAX_ORDER, Gfp::KERNEL).unwrap())
        .collect();
    for block in blocks {
        // SAFETY: allocated just above at this order.
        unsafe { pages.free_pages(block, MAX_ORDER) }.unwrap();
    }
    pages.shrink();
    let baseline = pages.platform().meta_outstanding();
    (pages, baseline)
}

/// Gives every free chunk back and checks that nothing the caches took is
/// left: no page, no bookkeeping.
fn assert_no_leaks(pages: &Pages, meta_baseline: usize) {
    pages.shrink();
    assert_eq!(pages.platform().pages_outstanding(), 0);
    assert_eq!(pages.stats().chunks, 0);
    assert_eq!(pages.platform().meta_outstanding(), meta_baseline);
}

fn cache(pages: &Pages, name: &str, size: usize, align: usize, flags: SlabFlags) -> Cache {
    KmemCache::create(pages, name, size, align, flags, None).unwrap()
}

fn alloc_n(cache: &Cache, pages: &Pages, count: usize) -> Vec<NonNull<u8>> {
    (0..count)
        .map(|_| cache.alloc(pages, Gfp::KERNEL).unwrap())
        .collect()
}

fn free_all(cache: &Cache, pages: &Pages, objects: impl IntoIterator<Item = NonNull<u8>>) {
    for obj in objects {
        // SAFETY: every object was allocated from `cache` and is freed once.
        unsafe { cache.free(pages, obj) }.unwrap();
    }
}

#[test]
fn objects_are_distinct_aligned_and_usable() {
    let (pages, meta_baseline) = warmed_pages(2, 8);
    for (size, align, flags) in [
        (1, 0, SlabFlags::NONE),
        (24, 0, SlabFlags::NONE),
        (100, 32, SlabFlags::NONE),
        (100, 0, SlabFlags::HWCACHE_ALIGN),
        (700, 256, SlabFlags::NONE),
        (3000, 0, SlabFlags::NONE),
        (PAGE_SIZE, PAGE_SIZE, SlabFlags::NONE),
        (40_000, 8, SlabFlags::NONE),
    ] {
        let cache = cache(&pages, "test", size, align, flags);
        let objects = alloc_n(&cache, &pages, 300);
        let mut seen = HashSet::new();
        for (n, obj) in objects.iter().enumerate() {
            assert!(seen.insert(obj.as_ptr() as usize));
            assert_eq!(obj.as_ptr() as usize % cache.align(), 0);
            assert!(cache.contains(&pages, obj.as_ptr()));
            // SAFETY: the object is ours, `size` bytes.
            unsafe { obj.as_ptr().write_bytes(n as u8, size) };
        }
        for (n, obj) in objects.iter().enumerate() {
            // SAFETY: as above.
            let bytes = unsafe { std::slice::from_raw_parts(obj.as_ptr(), size) };
            assert!(
                bytes.iter().all(|&b| b == n as u8),
                "object {n} overwritten"
            );
        }
        cache.check_invariants(&pages).unwrap();
        free_all(&cache, &pages, objects);
        cache.check_invariants(&pages).unwrap();
        let stats = cache.stats();
        assert_eq!((stats.allocs, stats.frees, stats.active), (300, 300, 0));
        assert_eq!(stats.errors, 0);
        cache.destroy(&pages).unwrap();
    }
    assert_no_leaks(&pages, meta_baseline);
}

static CTOR_CALLS: AtomicUsize = AtomicUsize::new(0);
const CONSTRUCTED: u8 = 0xc7;

/// Counts its calls, and checks that the cache numbers them from 1 (the
/// test uses one cache at a time and resets the count for each).
///
/// # Safety
///
/// As for every constructor: `obj` is `call.size` writable bytes.
unsafe fn counting_ctor(obj: NonNull<u8>, call: &CtorCall<'_>) {
    let before = CTOR_CALLS.fetch_add(1, Ordering::Relaxed);
    assert_eq!(call.number, before + 1);
    // SAFETY: per the caller's guarantee.
    unsafe { obj.as_ptr().write_bytes(CONSTRUCTED, call.size) };
}

fn is_constructed(obj: NonNull<u8>, size: usize) -> bool {
    // SAFETY: objects of the test caches are `size` bytes.
    unsafe { std::slice::from_raw_parts(obj.as_ptr(), size) }
        .iter()
        .all(|&b| b == CONSTRUCTED)
}

/// Constructor semantics, plus failed slab creation, in one test because
/// the constructor counts through a static.
#[test]
fn constructors_run_once_per_object_and_never_for_failed_slabs() {
    // Debug mode too: poisoning is skipped with a constructor, so the
    // semantics are the same.
    for flags in [SlabFlags::NONE, SlabFlags::DEBUG] {
        CTOR_CALLS.store(0, Ordering::Relaxed);
        let pages = pages(1);
        let cache = KmemCache::create(&pages, "ctor", 200, 0, flags, Some(counting_ctor)).unwrap();
        assert!(!cache.poisons());
        let per_slab = cache.layout().objects();
        // No slab before the first allocation.
        assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), 0);

        // The fresh page allocator has no chunk yet: every platform page
        // request fails, so slab creation fails before any constructor.
        pages.platform().fail_every(1);
        assert!(cache.alloc(&pages, Gfp::KERNEL).is_err());
        assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), 0);
        assert_eq!(cache.stats().grown, 0);
        assert_eq!(cache.stats().ctor_calls, 0);
        pages.platform().fail_every(0);

        let objects = alloc_n(&cache, &pages, 3 * per_slab + 1);
        let grown = cache.stats().grown;
        assert!(grown >= 4);
        assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), grown * per_slab);
        assert_eq!(cache.stats().ctor_calls, grown * per_slab);
        assert!(objects.iter().all(|&obj| is_constructed(obj, 200)));
        // Freed in constructed state, handed out again without constructor.
        free_all(&cache, &pages, objects);
        let again = alloc_n(&cache, &pages, 3 * per_slab + 1);
        assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), grown * per_slab);
        assert!(again.iter().all(|&obj| is_constructed(obj, 200)));
        // Zeroing would destroy the constructed state: refused, reported.
        assert!(cache.alloc(&pages, Gfp::KERNEL | Gfp::ZERO).is_err());
        assert_eq!(cache.stats().errors, 1);
        let reports = pages.platform().take_reports();
        assert_eq!(reports.len(), 1);
        assert!(
            reports[0].contains("ctor") && reports[0].contains("ZERO"),
            "{reports:?}"
        );
        free_all(&cache, &pages, again);
        cache.destroy(&pages).unwrap();
    }
}

#[test]
fn slab_creation_fails_cleanly_when_pages_run_out() {
    HostPlatform::set_this_cpu(0);
    // One chunk of 4 MiB at most.
    let pages = PageAllocator::with_max_chunks(HostPlatform::new(1), 1).unwrap();
    let cache = cache(&pages, "big", 100_000, 0, SlabFlags::NONE);
    let mut objects = Vec::new();
    while let Ok(obj) = cache.alloc(&pages, Gfp::KERNEL) {
        objects.push(obj);
        assert!(objects.len() < 1000, "never ran out");
    }
    let stats = cache.stats();
    // 100 000 bytes need order 5: 32 slabs of 128 KiB fill the chunk.
    assert_eq!(stats.grown, 32);
    assert_eq!(objects.len(), 32);
    cache.check_invariants(&pages).unwrap();
    // Still works after giving back.
    free_all(&cache, &pages, objects.drain(..1));
    objects.push(cache.alloc(&pages, Gfp::KERNEL).unwrap());
    free_all(&cache, &pages, objects);
    cache.destroy(&pages).unwrap();
}

#[test]
fn array_refills_and_hits_count_as_expected() {
    let pages = pages(1);
    let cache = cache(&pages, "hits", 64, 0, SlabFlags::NONE);
    assert_eq!((cache.limit(), cache.batchcount()), (120, 60));
    let per_slab = cache.layout().objects();
    assert!(per_slab > 61 && per_slab < 120, "{per_slab}");
    let count = |stats: CacheStats| {
        (
            stats.allocmiss,
            stats.allochit,
            stats.grown,
            stats.cached,
            stats.slab_active,
        )
    };
    // Miss: no slab, grow one, refill a batch of 60 and take one.
    let mut objects = alloc_n(&cache, &pages, 1);
    assert_eq!(count(cache.stats()), (1, 0, 1, 59, 60));
    assert_eq!(cache.slabinfo().active_objs, 60);
    // Hits until the array is empty.
    objects.extend(alloc_n(&cache, &pages, 59));
    assert_eq!(count(cache.stats()), (1, 59, 1, 0, 60));
    // Miss: the partial slab's remaining objects come first, no growth.
    objects.extend(alloc_n(&cache, &pages, 1));
    let rest = per_slab - 60;
    assert_eq!(count(cache.stats()), (2, 59, 1, rest - 1, per_slab));
    objects.extend(alloc_n(&cache, &pages, rest - 1));
    assert_eq!(count(cache.stats()), (2, 59 + rest - 1, 1, 0, per_slab));
    // Miss with every slab full: grow again.
    objects.extend(alloc_n(&cache, &pages, 1));
    assert_eq!(
        count(cache.stats()),
        (3, 59 + rest - 1, 2, 59, per_slab + 60)
    );
    let stats = cache.stats();
    assert_eq!(stats.allocs, stats.allochit + stats.allocmiss);
    assert_eq!((stats.allocs, stats.active), (per_slab + 1, per_slab + 1));
    assert_eq!(stats.high_water, per_slab + 60);
    assert_eq!(cache.slabinfo().active_objs, stats.active + stats.cached);
    free_all(&cache, &pages, objects);
    cache.check_invariants(&pages).unwrap();
    cache.destroy(&pages).unwrap();
}

#[test]
fn full_array_flushes_a_batch() {
    let pages = pages(1);
    let cache = cache(&pages, "flush", 64, 0, SlabFlags::NONE);
    let objects = alloc_n(&cache, &pages, 240);
    // Start the frees with an empty array.
    cache.shrink(&pages);
    assert_eq!(cache.stats().cached, 0);
    free_all(&cache, &pages, objects);
    // 120 frees fill the array; the 121st flushes 60 first, and so on.
    let stats = cache.stats();
    assert_eq!((stats.freehit, stats.freemiss, stats.cached), (238, 2, 120));
    assert_eq!(cache.slabinfo().active_objs, 120);
    cache.check_invariants(&pages).unwrap();
    cache.destroy(&pages).unwrap();
}

#[test]
fn remote_frees_go_to_the_freeing_cpu() {
    let pages = pages(4);
    let cache = cache(&pages, "remote", 128, 0, SlabFlags::NONE);
    HostPlatform::set_this_cpu(2);
    let objects = alloc_n(&cache, &pages, 50);
    HostPlatform::set_this_cpu(3);
    free_all(&cache, &pages, objects.iter().copied());
    let (on_2, on_3) = (cache.cpu_stats(2), cache.cpu_stats(3));
    assert_eq!((on_2.allocs, on_2.frees), (50, 0));
    assert_eq!((on_3.allocs, on_3.frees, on_3.cached), (0, 50, 50));
    assert_eq!(cache.stats().slab_active, 50 + on_2.cached);
    assert_eq!(cache.cpu_stats(0), CacheStats::default());
    assert_eq!(cache.cpu_stats(4), CacheStats::default());
    // CPU 3 now allocates its freed objects back, most recent first.
    let again = alloc_n(&cache, &pages, 50);
    assert_eq!(cache.cpu_stats(3).allochit, 50);
    let expected: Vec<_> = objects.iter().rev().copied().collect();
    assert_eq!(again, expected);
    let stats = cache.stats();
    assert_eq!((stats.allocs, stats.frees, stats.active), (100, 50, 50));
    cache.check_invariants(&pages).unwrap();
    HostPlatform::set_this_cpu(0);
    free_all(&cache, &pages, again);
    assert_eq!(cache.stats().active, 0);
    cache.destroy(&pages).unwrap();
}

#[test]
fn shrink_drains_arrays_and_releases_empty_slabs() {
    let pages = pages(2);
    let cache = cache(&pages, "shrink", 256, 0, SlabFlags::NONE);
    let objects = alloc_n(&cache, &pages, 1000);
    let grown = cache.stats().grown;
    let kept: Vec<_> = objects.iter().step_by(100).copied().collect();
    HostPlatform::set_this_cpu(1);
    free_all(
        &cache,
        &pages,
        objects
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 100 != 0)
            .map(|(_, &o)| o),
    );
    let before = cache.slabinfo();
    let released = cache.shrink(&pages);
    let after = cache.slabinfo();
    assert!(released > 0);
    assert_eq!(cache.stats().cached, 0);
    // Only objects held by callers remain active, and only their slabs.
    assert_eq!(after.active_objs, kept.len());
    assert_eq!(after.num_slabs, after.active_slabs);
    assert!(after.num_slabs <= kept.len());
    assert_eq!(cache.stats().reaped, grown - after.num_slabs);
    assert!(before.num_slabs > after.num_slabs);
    cache.check_invariants(&pages).unwrap();
    // The cache keeps working.
    let more = alloc_n(&cache, &pages, 10);
    free_all(&cache, &pages, kept.into_iter().chain(more));
    cache.shrink(&pages);
    assert_eq!(cache.slabinfo().num_slabs, 0);
    cache.destroy(&pages).unwrap();
}

#[test]
fn empty_slabs_are_kept_for_the_recent_peak_until_a_reap() {
    let pages = pages(1);
    // 2048-byte objects: eight per order-2 slab, limit 24, batch 12.
    let cache = cache(&pages, "limit", 2048, 0, SlabFlags::NONE);
    assert_eq!(cache.layout().objects(), 8);
    assert_eq!(cache.free_limit(), 2 * 12 + 8);
    let objects = alloc_n(&cache, &pages, 200);
    let grown = cache.stats().grown;
    assert_eq!(grown, 25);
    free_all(&cache, &pages, objects);
    // All 200 objects were out at once, so the frees keep every slab.
    let info = cache.slabinfo();
    assert_eq!((info.num_slabs, cache.stats().reaped), (25, 0));
    cache.check_invariants(&pages).unwrap();
    // A second round of the same size builds nothing.
    let objects = alloc_n(&cache, &pages, 200);
    assert_eq!(cache.stats().grown, grown, "the kept slabs were reused");
    free_all(&cache, &pages, objects);
    // A reap while the cache is idle gives back all empty slabs beyond the
    // free limit.
    let released = cache.reap(&pages);
    let info = cache.slabinfo();
    let stats = cache.stats();
    assert!(released > 0);
    assert_eq!(stats.reaped, released);
    assert_eq!(stats.reaped, grown - info.num_slabs);
    let empty_slabs = info.num_slabs - info.active_slabs;
    assert!(empty_slabs * info.objperslab <= cache.free_limit());
    assert_eq!(info.active_objs, stats.cached);
    cache.check_invariants(&pages).unwrap();
    // Nothing more to give back. A new round of use sets a new peak: a reap
    // meanwhile takes nothing that is out, and the round's frees are kept
    // again until the next reap.
    assert_eq!(cache.reap(&pages), 0);
    let objects = alloc_n(&cache, &pages, 200);
    let reaped = cache.stats().reaped;
    assert_eq!(cache.reap(&pages), 0, "objects out are not reaped");
    free_all(&cache, &pages, objects);
    assert_eq!(cache.stats().reaped, reaped, "within the new peak");
    cache.reap(&pages);
    let info = cache.slabinfo();
    assert!((info.num_slabs - info.active_slabs) * info.objperslab <= cache.free_limit());
    cache.check_invariants(&pages).unwrap();
    cache.destroy(&pages).unwrap();
}

#[test]
fn destroy_refuses_while_busy_and_then_frees_everything() {
    let (pages, meta_baseline) = warmed_pages(2, 2);
    for (size, flags) in [(64, SlabFlags::NONE), (1500, SlabFlags::DEBUG)] {
        let cache = cache(&pages, "destroy", size, 0, flags);
        let objects = alloc_n(&cache, &pages, 300);
        let (info, stats) = (cache.slabinfo(), cache.stats());
        let outstanding = pages.platform().pages_outstanding();
        assert_eq!(
            cache.destroy(&pages),
            Err(DestroyError::Busy { active: 300 })
        );
        // Nothing changed, and the cache still works.
        assert_eq!((cache.slabinfo(), cache.stats()), (info, stats));
        assert_eq!(pages.platform().pages_outstanding(), outstanding);
        let (last, rest) = objects.split_last().unwrap();
        free_all(&cache, &pages, rest.iter().copied());
        assert_eq!(cache.destroy(&pages), Err(DestroyError::Busy { active: 1 }));
        free_all(&cache, &pages, [*last]);
        cache.destroy(&pages).unwrap();
        assert!(cache.is_destroyed());
        assert_eq!(cache.slabinfo().num_slabs, 0);
        assert!(cache.alloc(&pages, Gfp::KERNEL).is_err());
        // SAFETY: the cache is destroyed; the free must be rejected.
        let result = unsafe { cache.free(&pages, *last) };
        assert_eq!(result, Err(SlabFreeError::Destroyed));
        assert_eq!(cache.destroy(&pages), Err(DestroyError::AlreadyDestroyed));
        assert_eq!(cache.shrink(&pages), 0);
        let reports = pages.platform().take_reports();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(
            reports[0].contains("destroy") && reports[0].contains(&format!("{:p}", last.as_ptr()))
        );
        cache.check_invariants(&pages).unwrap();
    }
    assert_no_leaks(&pages, meta_baseline);
}

#[test]
fn zeroed_allocation() {
    let pages = pages(1);
    for flags in [SlabFlags::NONE, SlabFlags::DEBUG] {
        let cache = cache(&pages, "zero", 300, 0, flags);
        let obj = cache.alloc(&pages, Gfp::KERNEL).unwrap();
        // SAFETY: our object of 300 bytes.
        unsafe { obj.as_ptr().write_bytes(0x5a, 300) };
        free_all(&cache, &pages, [obj]);
        let again = cache.alloc(&pages, Gfp::KERNEL | Gfp::ZERO).unwrap();
        assert_eq!(again, obj);
        // SAFETY: as above.
        assert!(unsafe { std::slice::from_raw_parts(again.as_ptr(), 300) }
            .iter()
            .all(|&b| b == 0));
        free_all(&cache, &pages, [again]);
        assert_eq!(cache.stats().errors, 0);
        cache.destroy(&pages).unwrap();
    }
}

#[test]
fn creation_arguments_are_validated() {
    let (pages, meta_baseline) = warmed_pages(1, 0);
    let create = |name: &str, size, align| {
        KmemCache::create(&pages, name, size, align, SlabFlags::NONE, None).map(|_| ())
    };
    assert_eq!(create("", 8, 0), Err(CreateError::InvalidName));
    assert_eq!(create(&"x".repeat(32), 8, 0), Err(CreateError::InvalidName));
    assert_eq!(
        create("zero", 0, 0),
        Err(CreateError::Layout(LayoutError::InvalidSize))
    );
    assert_eq!(
        create("huge", MAX_OBJECT_SIZE + 1, 0),
        Err(CreateError::Layout(LayoutError::InvalidSize))
    );
    assert_eq!(
        create("align", 8, 24),
        Err(CreateError::Layout(LayoutError::InvalidAlign))
    );
    let longest = "y".repeat(31);
    let cache = KmemCache::create(&pages, &longest, 8, 0, SlabFlags::NONE, None).unwrap();
    assert_eq!(cache.name(), longest);
    cache.destroy(&pages).unwrap();
    assert_no_leaks(&pages, meta_baseline);
}

#[test]
fn cheap_invalid_frees_are_rejected_and_reported() {
    let pages = pages(1);
    for (size, flags) in [
        (48, SlabFlags::NONE),
        (1024, SlabFlags::NONE),
        (48, SlabFlags::DEBUG),
        (1024, SlabFlags::DEBUG),
    ] {
        let cache = cache(&pages, "victim", size, 0, flags);
        let other = cache_for_other(&pages, size);
        let mine = alloc_n(&cache, &pages, 5);
        let theirs = other.alloc(&pages, Gfp::KERNEL).unwrap();
        let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
        let boxed = Box::new(0u64);
        let heap = NonNull::from(&*boxed).cast::<u8>();
        let interior = NonNull::new(mine[1].as_ptr().wrapping_add(8)).unwrap();
        let before_first = NonNull::new(mine[0].as_ptr().wrapping_sub(1)).unwrap();
        let cases = [
            (theirs, SlabFreeError::NotFromCache),
            (page, SlabFreeError::NotFromCache),
            (heap, SlabFreeError::NotFromCache),
            (interior, SlabFreeError::NotAnObject),
        ];
        for (n, (ptr, expected)) in cases.iter().enumerate() {
            // SAFETY: every pointer here is invalid for this cache, which
            // must reject it without touching it.
            let result = unsafe { cache.free(&pages, *ptr) };
            assert_eq!(result, Err(*expected), "case {n}");
            let reports = pages.platform().take_reports();
            assert_eq!(reports.len(), 1, "{reports:?}");
            assert!(reports[0].contains("victim"), "{reports:?}");
            assert!(
                reports[0].contains(&format!("{:p}", ptr.as_ptr())),
                "{reports:?}"
            );
            assert_eq!(cache.stats().errors, n + 1);
        }
        // Just before the first object: in the slab but not an object start.
        // SAFETY: as above.
        let result = unsafe { cache.free(&pages, before_first) };
        assert!(result.is_err());
        pages.platform().take_reports();
        cache.check_invariants(&pages).unwrap();
        // The cache still works.
        free_all(&cache, &pages, mine);
        free_all(&cache, &pages, alloc_n(&cache, &pages, 10));
        free_all(&other, &pages, [theirs]);
        // SAFETY: the page came from `alloc_pages` at order 0.
        unsafe { pages.free_pages(page, 0) }.unwrap();
        assert!(pages.platform().reports().is_empty());
        cache.destroy(&pages).unwrap();
        other.destroy(&pages).unwrap();
    }
}

fn cache_for_other(pages: &Pages, size: usize) -> Cache {
    cache(pages, "bystander", size, 0, SlabFlags::NONE)
}

#[test]
fn large_objects_and_single_entry_arrays() {
    let pages = pages(2);
    for (size, flags) in [
        (200_000, SlabFlags::NONE),
        (MAX_OBJECT_SIZE, SlabFlags::NONE),
        (MAX_OBJECT_SIZE, SlabFlags::DEBUG),
    ] {
        let cache = KmemCache::create(&pages, "large", size, PAGE_SIZE, flags, None).unwrap();
        assert_eq!((cache.limit(), cache.batchcount()), (1, 1));
        let objects = alloc_n(&cache, &pages, 3);
        for obj in &objects {
            // SAFETY: our object of `size` bytes.
            unsafe { obj.as_ptr().write_bytes(0x11, size) };
        }
        free_all(&cache, &pages, objects);
        assert_eq!(cache.stats().errors, 0, "{:?}", pages.platform().reports());
        cache.check_invariants(&pages).unwrap();
        cache.destroy(&pages).unwrap();
    }
}

#[test]
fn colours_cycle_through_the_leftover() {
    let pages = pages(1);
    let cache = cache(&pages, "colour", 3000, 0, SlabFlags::NONE);
    let layout = *cache.layout();
    // Ten 3000-byte objects in an order-3 slab leave 2768 bytes: 43 colours
    // of a cache line.
    assert_eq!((layout.objects(), layout.colours()), (10, 43));
    let objects = alloc_n(&cache, &pages, layout.objects() * 2 * layout.colours());
    let mut first_offset = BTreeMap::new();
    for obj in &objects {
        let addr = obj.as_ptr() as usize;
        let base = addr & !(layout.slab_bytes() - 1);
        let offset = first_offset.entry(base).or_insert(usize::MAX);
        *offset = (*offset).min(addr - base);
    }
    let mut counts = BTreeMap::new();
    for offset in first_offset.values() {
        *counts.entry(*offset).or_insert(0) += 1;
    }
    let expected: BTreeMap<usize, usize> = (0..43).map(|colour| (colour * 64, 2)).collect();
    assert_eq!(counts, expected);
    free_all(&cache, &pages, objects);
    cache.destroy(&pages).unwrap();
}

#[test]
fn slabinfo_rows_read_like_proc_slabinfo() {
    let pages = pages(1);
    let cache = cache(&pages, "dentry", 192, 0, SlabFlags::NONE);
    let objects = alloc_n(&cache, &pages, 3);
    let row = cache.slabinfo_row().to_string();
    let info = cache.slabinfo();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[0], "dentry");
    assert_eq!(fields[1], info.active_objs.to_string());
    assert_eq!(fields[2], info.num_objs.to_string());
    assert_eq!(fields[3], "192");
    assert_eq!(fields[6], ":");
    assert_eq!(&fields[7..11], &["tunables", "120", "60", "0"]);
    assert_eq!(&fields[12..], &["slabdata", "1", "1", "0"]);
    assert!(rmm_core::slab::SLABINFO_HEADER.starts_with("slabinfo - version: 2.1"));
    free_all(&cache, &pages, objects);
    cache.destroy(&pages).unwrap();
}

// ---------------------------------------------------------------------------
// Model-based property test.

const SIZES: [usize; 12] = [1, 8, 24, 64, 100, 200, 511, 512, 1000, 3000, 4096, 20_000];
/// Most live objects per cache: with 20 000-byte objects in 32 KiB slabs,
/// three caches stay within the chunks the page allocator was warmed with.
const MAX_LIVE: usize = 150;
const ALIGNS: [usize; 4] = [0, 16, 256, PAGE_SIZE];
const FLAG_SETS: [SlabFlags; 3] = [SlabFlags::NONE, SlabFlags::HWCACHE_ALIGN, SlabFlags::DEBUG];
const SLOTS: usize = 3;
const CPUS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Create {
        slot: usize,
        size: usize,
        align: usize,
        flags: usize,
    },
    Alloc {
        slot: usize,
        count: usize,
    },
    Free {
        slot: usize,
        pick: usize,
        count: usize,
    },
    Shrink {
        slot: usize,
    },
    Destroy {
        slot: usize,
    },
    Cpu {
        cpu: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..SLOTS, 0..SIZES.len(), 0..ALIGNS.len(), 0..FLAG_SETS.len())
            .prop_map(|(slot, size, align, flags)| Op::Create { slot, size, align, flags }),
        6 => (0..SLOTS, 1..150usize).prop_map(|(slot, count)| Op::Alloc { slot, count }),
        5 => (0..SLOTS, any::<usize>(), 1..150usize)
            .prop_map(|(slot, pick, count)| Op::Free { slot, pick, count }),
        1 => (0..SLOTS).prop_map(|slot| Op::Shrink { slot }),
        1 => (0..SLOTS).prop_map(|slot| Op::Destroy { slot }),
        2 => (0..CPUS).prop_map(|cpu| Op::Cpu { cpu }),
    ]
}

struct Live {
    ptr: NonNull<u8>,
    stamp: u8,
}

struct ModelCache {
    cache: Cache,
    live: Vec<Live>,
}

fn stamp(live: &Live, size: usize) {
    // SAFETY: the model owns the object of `size` bytes.
    unsafe { live.ptr.as_ptr().write_bytes(live.stamp, size) };
}

fn stamp_intact(live: &Live, size: usize) -> bool {
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts(live.ptr.as_ptr(), size) }
        .iter()
        .all(|&b| b == live.stamp)
}

fn check_model(pages: &Pages, slots: &[Option<ModelCache>]) -> Result<(), TestCaseError> {
    let mut ranges = Vec::new();
    for model in slots.iter().flatten() {
        let cache = &model.cache;
        cache
            .check_invariants(pages)
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", cache.name())))?;
        let size = cache.object_size();
        for live in &model.live {
            let addr = live.ptr.as_ptr() as usize;
            prop_assert!(cache.contains(pages, live.ptr.as_ptr()));
            prop_assert_eq!(addr % cache.align(), 0);
            prop_assert!(stamp_intact(live, size));
            ranges.push((addr, addr + size));
        }
        let (stats, info) = (cache.stats(), cache.slabinfo());
        prop_assert_eq!(stats.active, model.live.len());
        prop_assert_eq!(stats.allocs - stats.frees, model.live.len());
        prop_assert_eq!(info.active_objs, stats.active + stats.cached);
        prop_assert_eq!(info.active_objs, stats.slab_active);
        prop_assert!(stats.high_water >= stats.slab_active);
        prop_assert_eq!(info.num_objs, info.num_slabs * info.objperslab);
        prop_assert!(info.active_objs <= info.num_objs);
        prop_assert!(info.active_slabs <= info.num_slabs);
        prop_assert_eq!(stats.grown - stats.reaped, info.num_slabs);
        prop_assert_eq!(stats.errors, 0);
        prop_assert!(stats.cached <= CPUS * cache.limit());
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        prop_assert!(pair[0].1 <= pair[1].0, "live objects overlap: {:?}", pair);
    }
    Ok(())
}

/// The warmed page allocator of the last passing case: reusing it spares
/// every case faulting in fresh chunks, and carries page allocator state from
/// case to case. A failing case does not put it back, so the next one starts
/// afresh.
static WARM: Mutex<Option<(Pages, usize)>> = Mutex::new(None);

fn run_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let taken = WARM.lock().unwrap().take();
    let (pages, meta_baseline) = taken.unwrap_or_else(|| warmed_pages(CPUS, 6));
    HostPlatform::set_this_cpu(0);
    let mut slots: Vec<Option<ModelCache>> = (0..SLOTS).map(|_| None).collect();
    let mut next_stamp = 0u8;
    for op in ops {
        match op {
            Op::Create {
                slot,
                size,
                align,
                flags,
            } => {
                if slots[slot].is_none() {
                    let cache = KmemCache::create(
                        &pages,
                        &format!("model-{slot}"),
                        SIZES[size],
                        ALIGNS[align],
                        FLAG_SETS[flags],
                        None,
                    )
                    .unwrap();
                    slots[slot] = Some(ModelCache {
                        cache,
                        live: Vec::new(),
                    });
                }
            }
            Op::Alloc { slot, count } => {
                if let Some(model) = &mut slots[slot] {
                    for _ in 0..count.min(MAX_LIVE - model.live.len()) {
                        let ptr = model.cache.alloc(&pages, Gfp::KERNEL).unwrap();
                        next_stamp = next_stamp.wrapping_add(1);
                        let live = Live {
                            ptr,
                            stamp: next_stamp,
                        };
                        stamp(&live, model.cache.object_size());
                        model.live.push(live);
                    }
                }
            }
            Op::Free { slot, pick, count } => {
                if let Some(model) = &mut slots[slot] {
                    for n in 0..count {
                        if model.live.is_empty() {
                            break;
                        }
                        let index = pick.wrapping_add(n * 7919) % model.live.len();
                        let live = model.live.swap_remove(index);
                        prop_assert!(stamp_intact(&live, model.cache.object_size()));
                        // SAFETY: a live object of this cache, freed once.
                        unsafe { model.cache.free(&pages, live.ptr) }.unwrap();
                    }
                }
            }
            Op::Shrink { slot } => {
                if let Some(model) = &slots[slot] {
                    let before = model.cache.slabinfo();
                    let released = model.cache.shrink(&pages);
                    let after = model.cache.slabinfo();
                    prop_assert_eq!(after.num_slabs, after.active_slabs);
                    prop_assert_eq!(after.active_objs, model.live.len());
                    prop_assert_eq!(released, before.num_slabs - after.num_slabs);
                }
            }
            Op::Destroy { slot } => {
                if let Some(model) = &slots[slot] {
                    let result = model.cache.destroy(&pages);
                    if model.live.is_empty() {
                        prop_assert_eq!(result, Ok(()));
                        slots[slot] = None;
                    } else {
                        prop_assert_eq!(
                            result,
                            Err(DestroyError::Busy {
                                active: model.live.len()
                            })
                        );
                    }
                }
            }
            Op::Cpu { cpu } => HostPlatform::set_this_cpu(cpu),
        }
        check_model(&pages, &slots)?;
    }
    for model in slots.iter_mut().flatten() {
        for live in model.live.drain(..) {
            // SAFETY: as above.
            unsafe { model.cache.free(&pages, live.ptr) }.unwrap();
        }
        model.cache.destroy(&pages).unwrap();
    }
    // Every page back in the page allocator, no bookkeeping left.
    prop_assert_eq!(pages.stats().pages_allocated, 0);
    prop_assert_eq!(pages.platform().meta_outstanding(), meta_baseline);
    prop_assert!(pages.platform().reports().is_empty());
    *WARM.lock().unwrap() = Some((pages, meta_baseline));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn caches_behave_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(ops)?;
    }
}
