// SPDX-License-Identifier: GPL-2.0

//! Debug mode: every detection (red zone damage before and after, write
//! after free, double free, foreign and interior pointers) is reported with
//! the cache name and the object address, counted, and leaves the cache
//! working.

use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::page_alloc::PageAllocator;
use rmm_core::slab::{KmemCache, SlabFlags, SlabFreeError, POISON_END, POISON_FREE, RED_ZONE_BYTE};
use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::Barrier;
use std::thread;

type Pages = PageAllocator<HostPlatform>;
type Cache = KmemCache<HostPlatform>;

fn pages() -> Pages {
    HostPlatform::set_this_cpu(0);
    PageAllocator::new(HostPlatform::new(2)).unwrap()
}

/// A small on-slab and a larger off-slab debug cache.
const SIZES: [usize; 2] = [40, 1000];

fn debug_cache(pages: &Pages, name: &str, size: usize) -> Cache {
    KmemCache::create(pages, name, size, 0, SlabFlags::DEBUG, None).unwrap()
}

fn alloc(cache: &Cache, pages: &Pages) -> NonNull<u8> {
    cache.alloc(pages, Gfp::KERNEL).unwrap()
}

/// Frees, expecting success.
fn free(cache: &Cache, pages: &Pages, obj: NonNull<u8>) {
    // SAFETY: the tests only pass objects of `cache` here, freed once.
    unsafe { cache.free(pages, obj) }.unwrap();
}

/// Takes the reports so far, expecting exactly one line naming the cache,
/// the address and containing `what`.
fn expect_one_report(pages: &Pages, cache: &Cache, addr: *const u8, what: &str) {
    let reports = pages.platform().take_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let line = &reports[0];
    assert!(line.contains(cache.name()), "{line}");
    assert!(line.contains(&format!("{addr:p}")), "{line}");
    assert!(line.contains(what), "{line}");
}

/// The cache still hands out distinct, intact objects, and its invariants
/// hold.
fn assert_still_works(cache: &Cache, pages: &Pages) {
    cache.check_invariants(pages).unwrap();
    let errors = cache.stats().errors;
    let objects: Vec<_> = (0..300).map(|_| alloc(cache, pages)).collect();
    let distinct: HashSet<_> = objects.iter().map(|o| o.as_ptr() as usize).collect();
    assert_eq!(distinct.len(), objects.len());
    for (n, obj) in objects.iter().enumerate() {
        // SAFETY: our object, `object_size` bytes.
        unsafe { obj.as_ptr().write_bytes(n as u8, cache.object_size()) };
    }
    for obj in objects {
        free(cache, pages, obj);
    }
    assert_eq!(
        cache.stats().errors,
        errors,
        "{:?}",
        pages.platform().reports()
    );
    cache.check_invariants(pages).unwrap();
}

#[test]
fn fresh_objects_are_poisoned_and_fenced() {
    let pages = pages();
    for size in SIZES {
        let cache = debug_cache(&pages, "fresh", size);
        let layout = *cache.layout();
        assert!(cache.poisons() && layout.red_zone() && layout.track_state());
        let obj = alloc(&cache, &pages);
        let ptr = obj.as_ptr();
        // SAFETY: the slot around our object is the cache's memory, readable.
        let slot =
            unsafe { std::slice::from_raw_parts(ptr.sub(layout.obj_offset()), layout.stride()) };
        let (before, rest) = slot.split_at(layout.obj_offset());
        let (object, after) = rest.split_at(size);
        assert!(before.iter().all(|&b| b == RED_ZONE_BYTE));
        assert!(after.iter().all(|&b| b == RED_ZONE_BYTE));
        assert!(object[..size - 1].iter().all(|&b| b == POISON_FREE));
        assert_eq!(object[size - 1], POISON_END);
        free(&cache, &pages, obj);
        assert!(pages.platform().reports().is_empty());
        cache.destroy(&pages).unwrap();
    }
}

#[test]
fn red_zone_damage_is_reported_on_free() {
    let pages = pages();
    for size in SIZES {
        let cache = debug_cache(&pages, "redzone-free", size);
        let layout = *cache.layout();
        // Before the object, right after it, and at the end of the padding.
        for (offset, zone) in [
            (-1isize, "before"),
            (-(layout.obj_offset() as isize), "before"),
            (size as isize, "after"),
            (
                (layout.stride() - layout.obj_offset()) as isize - 1,
                "after",
            ),
        ] {
            let obj = alloc(&cache, &pages);
            let errors = cache.stats().errors;
            // SAFETY: the red zones are in the object's slot, cache memory.
            unsafe { obj.as_ptr().offset(offset).write(0) };
            // The free still happens; the damage is reported and repaired.
            free(&cache, &pages, obj);
            expect_one_report(&pages, &cache, obj.as_ptr(), &format!("red zone {zone}"));
            assert_eq!(cache.stats().errors, errors + 1);
            assert_eq!(cache.stats().active, 0);
        }
        assert_still_works(&cache, &pages);
        cache.destroy(&pages).unwrap();
    }
}

#[test]
fn both_zones_damaged_give_two_reports() {
    let pages = pages();
    let cache = debug_cache(&pages, "both", 64);
    let obj = alloc(&cache, &pages);
    // SAFETY: both bytes are red-zone bytes of the object's slot.
    unsafe {
        obj.as_ptr().sub(1).write(1);
        obj.as_ptr().add(64).write(1);
    }
    free(&cache, &pages, obj);
    let reports = pages.platform().take_reports();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports[0].contains("red zone before") && reports[1].contains("red zone after"));
    assert_eq!(cache.stats().errors, 2);
    assert_still_works(&cache, &pages);
    cache.destroy(&pages).unwrap();
}

#[test]
fn red_zone_damage_of_a_free_object_is_reported_on_alloc() {
    let pages = pages();
    for size in SIZES {
        let cache = debug_cache(&pages, "redzone-alloc", size);
        let obj = alloc(&cache, &pages);
        free(&cache, &pages, obj);
        // SAFETY: the red zone after the (free) object is cache memory.
        unsafe { obj.as_ptr().add(size).write(0x42) };
        // The array hands the same object out again, most recent first.
        let again = alloc(&cache, &pages);
        assert_eq!(again, obj);
        expect_one_report(&pages, &cache, obj.as_ptr(), "red zone after");
        assert_eq!(cache.stats().errors, 1);
        free(&cache, &pages, again);
        assert!(pages.platform().reports().is_empty());
        assert_still_works(&cache, &pages);
        cache.destroy(&pages).unwrap();
    }
}

#[test]
fn write_after_free_is_reported_when_handed_out_again() {
    let pages = pages();
    for size in SIZES {
        let cache = debug_cache(&pages, "use-after-free", size);
        let obj = alloc(&cache, &pages);
        free(&cache, &pages, obj);
        // SAFETY: deliberately writing to the freed object (still cache
        // memory) to test the poison check.
        unsafe { obj.as_ptr().add(5).write(0) };
        let again = alloc(&cache, &pages);
        assert_eq!(again, obj);
        expect_one_report(&pages, &cache, obj.as_ptr(), "write after free");
        assert!(pages.platform().reports().is_empty());
        assert_eq!(cache.stats().errors, 1);
        free(&cache, &pages, again);
        // The object was poisoned afresh: no report the next time.
        let third = alloc(&cache, &pages);
        assert_eq!(third, obj);
        assert!(pages.platform().reports().is_empty());
        free(&cache, &pages, third);
        assert_still_works(&cache, &pages);
        cache.destroy(&pages).unwrap();
    }
}

#[test]
fn double_free_is_refused_without_corrupting_the_cache() {
    let pages = pages();
    for size in SIZES {
        let cache = debug_cache(&pages, "double-free", size);
        // Object in the per-CPU array.
        let obj = alloc(&cache, &pages);
        free(&cache, &pages, obj);
        // SAFETY: a deliberate double free, which debug mode must refuse.
        let result = unsafe { cache.free(&pages, obj) };
        assert_eq!(result, Err(SlabFreeError::DoubleFree));
        expect_one_report(&pages, &cache, obj.as_ptr(), "double free");
        // Object back in its slab (the arrays drained by shrink), which
        // stays because its neighbours are still allocated.
        let second = alloc(&cache, &pages);
        let neighbours: Vec<_> = (0..3).map(|_| alloc(&cache, &pages)).collect();
        free(&cache, &pages, second);
        cache.shrink(&pages);
        assert_eq!(cache.stats().cached, 0);
        // SAFETY: as above.
        let result = unsafe { cache.free(&pages, second) };
        assert_eq!(result, Err(SlabFreeError::DoubleFree));
        expect_one_report(&pages, &cache, second.as_ptr(), "double free");
        assert_eq!(cache.stats().errors, 2);
        assert_eq!(cache.stats().frees, 2);
        for obj in neighbours {
            free(&cache, &pages, obj);
        }
        // Neither object is handed out twice.
        let objects: Vec<_> = (0..50).map(|_| alloc(&cache, &pages)).collect();
        let distinct: HashSet<_> = objects.iter().map(|o| o.as_ptr() as usize).collect();
        assert_eq!(distinct.len(), objects.len());
        for obj in objects {
            free(&cache, &pages, obj);
        }
        assert_still_works(&cache, &pages);
        cache.destroy(&pages).unwrap();
    }
}

#[test]
fn racing_double_frees_let_exactly_one_through() {
    let pages = pages();
    let cache = debug_cache(&pages, "race", 96);
    let barrier = Barrier::new(2);
    for _ in 0..300 {
        let obj = alloc(&cache, &pages);
        let addr = obj.as_ptr() as usize;
        let results: Vec<_> = thread::scope(|scope| {
            let workers: Vec<_> = (0..2)
                .map(|cpu| {
                    let (cache, pages, barrier) = (&cache, &pages, &barrier);
                    scope.spawn(move || {
                        HostPlatform::set_this_cpu(cpu);
                        let obj = NonNull::new(addr as *mut u8).unwrap();
                        barrier.wait();
                        // SAFETY: one of the two frees is a double free,
                        // which debug mode must refuse.
                        unsafe { cache.free(pages, obj) }
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{results:?}");
        assert!(results.contains(&Err(SlabFreeError::DoubleFree)));
        expect_one_report(&pages, &cache, obj.as_ptr(), "double free");
    }
    assert_eq!(cache.stats().errors, 300);
    assert_eq!(cache.stats().active, 0);
    assert_still_works(&cache, &pages);
    cache.destroy(&pages).unwrap();
}

#[test]
fn foreign_and_interior_pointers_are_refused() {
    let pages = pages();
    for size in SIZES {
        let cache = debug_cache(&pages, "victim", size);
        let other = debug_cache(&pages, "other", size);
        let plain = KmemCache::create(&pages, "plain", size, 0, SlabFlags::NONE, None).unwrap();
        let mine = alloc(&cache, &pages);
        let theirs = alloc(&other, &pages);
        let plain_obj = alloc(&plain, &pages);
        let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
        let boxed = Box::new([0u8; 64]);
        let heap = NonNull::from(&boxed[0]);
        let at = |offset: usize| NonNull::new(mine.as_ptr().wrapping_add(offset)).unwrap();
        let cases = [
            (theirs, SlabFreeError::NotFromCache),
            (plain_obj, SlabFreeError::NotFromCache),
            (page, SlabFreeError::NotFromCache),
            (heap, SlabFreeError::NotFromCache),
            (at(1), SlabFreeError::NotAnObject),
            (at(size / 2), SlabFreeError::NotAnObject),
            // Inside the red zone after the object.
            (at(size + 1), SlabFreeError::NotAnObject),
            // Inside the red zone before the object.
            (
                NonNull::new(mine.as_ptr().wrapping_sub(4)).unwrap(),
                SlabFreeError::NotAnObject,
            ),
        ];
        for (n, (ptr, expected)) in cases.into_iter().enumerate() {
            // SAFETY: none of these is an object of `cache`; it must refuse
            // them without touching the memory.
            let result = unsafe { cache.free(&pages, ptr) };
            assert_eq!(result, Err(expected), "case {n}");
            let what = match expected {
                SlabFreeError::NotFromCache => "not an object of this cache",
                _ => "not the start of an object",
            };
            expect_one_report(&pages, &cache, ptr.as_ptr(), what);
            assert_eq!(cache.stats().errors, n + 1);
        }
        // The refused objects are still allocated and intact.
        assert_eq!(cache.stats().active, 1);
        assert_eq!(other.stats().errors, 0);
        free(&cache, &pages, mine);
        free(&other, &pages, theirs);
        free(&plain, &pages, plain_obj);
        // SAFETY: the page came from `alloc_pages` at order 0.
        unsafe { pages.free_pages(page, 0) }.unwrap();
        assert!(pages.platform().reports().is_empty());
        assert_still_works(&cache, &pages);
        for cache in [cache, other, plain] {
            cache.destroy(&pages).unwrap();
        }
    }
}

#[test]
fn single_debug_flags() {
    let pages = pages();
    // Red zones alone: no poison, state still tracked.
    let fenced = KmemCache::create(&pages, "fenced", 100, 0, SlabFlags::RED_ZONE, None).unwrap();
    assert!(!fenced.poisons() && fenced.layout().red_zone());
    let obj = alloc(&fenced, &pages);
    // SAFETY: red-zone byte right after the object.
    unsafe { obj.as_ptr().add(100).write(0) };
    free(&fenced, &pages, obj);
    expect_one_report(&pages, &fenced, obj.as_ptr(), "red zone after");
    // SAFETY: deliberate double free.
    let result = unsafe { fenced.free(&pages, obj) };
    assert_eq!(result, Err(SlabFreeError::DoubleFree));
    expect_one_report(&pages, &fenced, obj.as_ptr(), "double free");
    assert_still_works(&fenced, &pages);

    // Poison alone: no red zones, state still tracked.
    let poisoned = KmemCache::create(&pages, "poisoned", 100, 0, SlabFlags::POISON, None).unwrap();
    assert!(poisoned.poisons() && !poisoned.layout().red_zone());
    assert_eq!(poisoned.size(), 104);
    let obj = alloc(&poisoned, &pages);
    free(&poisoned, &pages, obj);
    // SAFETY: deliberate write to the freed object.
    unsafe { obj.as_ptr().add(99).write(0) };
    let again = alloc(&poisoned, &pages);
    expect_one_report(&pages, &poisoned, again.as_ptr(), "byte 99");
    free(&poisoned, &pages, again);
    // SAFETY: deliberate double free.
    let result = unsafe { poisoned.free(&pages, again) };
    assert_eq!(result, Err(SlabFreeError::DoubleFree));
    expect_one_report(&pages, &poisoned, again.as_ptr(), "double free");
    assert_still_works(&poisoned, &pages);
    fenced.destroy(&pages).unwrap();
    poisoned.destroy(&pages).unwrap();
}
