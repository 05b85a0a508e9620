// SPDX-License-Identifier: GPL-2.0

//! kmalloc: size classes for every size up to 8192, page blocks beyond,
//! the zero-size sentinel, kfree/ksize through the page owner words,
//! invalid kfrees, destroy.

use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::kmalloc::{
    is_zero_size_ptr, kmalloc_index, large_order, zero_size_ptr, Kmalloc, KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_MAX_SIZE, KMALLOC_NAMES, KMALLOC_SIZES,
};
use rmm_core::page_alloc::{PageAllocator, MAX_ORDER};
use rmm_core::platform::PAGE_SIZE;
use rmm_core::slab::{DestroyError, KmemCache, SlabFlags, SlabFreeError};
use std::ptr::NonNull;

type Pages = PageAllocator<HostPlatform>;

fn pages() -> Pages {
    HostPlatform::set_this_cpu(0);
    PageAllocator::new(HostPlatform::new(2)).unwrap()
}

/// The smallest class of at least `size` bytes, by linear search.
fn expected_class(size: usize) -> usize {
    *KMALLOC_SIZES.iter().find(|&&class| class >= size).unwrap()
}

fn kfree(kmalloc: &Kmalloc<HostPlatform>, pages: &Pages, ptr: NonNull<u8>) {
    // SAFETY: the tests only pass memory from `kmalloc` here, freed once.
    unsafe { kmalloc.kfree(pages, ptr) }.unwrap();
}

#[test]
fn size_index_matches_the_classes() {
    assert_eq!(kmalloc_index(0), None);
    for size in 1..=KMALLOC_MAX_CACHE_SIZE {
        let index = kmalloc_index(size).unwrap();
        assert_eq!(KMALLOC_SIZES[index], expected_class(size), "size {size}");
    }
    assert_eq!(kmalloc_index(KMALLOC_MAX_CACHE_SIZE + 1), None);
    assert_eq!(kmalloc_index(usize::MAX), None);
    assert!(KMALLOC_SIZES.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn every_small_size_gets_its_class() {
    let pages = pages();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    let names: Vec<_> = kmalloc
        .caches()
        .map(|cache| cache.name().to_owned())
        .collect();
    assert_eq!(names, KMALLOC_NAMES);
    let mut held = Vec::new();
    for size in 1..=KMALLOC_MAX_CACHE_SIZE {
        let class = expected_class(size);
        let cache = kmalloc.cache_for(size).unwrap();
        assert_eq!(cache.object_size(), class);
        let ptr = kmalloc.kmalloc(&pages, size, Gfp::KERNEL).unwrap();
        assert!(cache.contains(&pages, ptr.as_ptr()), "size {size}");
        assert_eq!(kmalloc.ksize(&pages, ptr.as_ptr()), Some(class));
        // Natural alignment for power-of-two classes, 8 bytes otherwise.
        let align = if class.is_power_of_two() {
            class.min(PAGE_SIZE)
        } else {
            8
        };
        assert_eq!(ptr.as_ptr() as usize % align, 0, "size {size}");
        // SAFETY: `size` bytes of ours.
        unsafe { ptr.as_ptr().write_bytes(0x3c, size) };
        held.push(ptr);
        if held.len() == 64 {
            for ptr in held.drain(..) {
                kfree(&kmalloc, &pages, ptr);
            }
        }
    }
    for ptr in held {
        kfree(&kmalloc, &pages, ptr);
    }
    let total: usize = kmalloc.caches().map(|cache| cache.stats().allocs).sum();
    assert_eq!(total, KMALLOC_MAX_CACHE_SIZE);
    assert!(kmalloc.caches().all(|cache| cache.stats().active == 0));
    assert!(pages.platform().reports().is_empty());
    kmalloc.destroy(&pages).unwrap();
}

#[test]
fn large_requests_get_page_blocks() {
    let pages = pages();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    for (size, order) in [
        (KMALLOC_MAX_CACHE_SIZE + 1, 2),
        (3 * PAGE_SIZE, 2),
        (4 * PAGE_SIZE, 2),
        (4 * PAGE_SIZE + 1, 3),
        (100_000, 5),
        (1 << 20, 8),
        (KMALLOC_MAX_SIZE, MAX_ORDER),
    ] {
        assert_eq!(large_order(size), Some(order), "size {size}");
        let ptr = kmalloc
            .kmalloc(&pages, size, Gfp::KERNEL | Gfp::ZERO)
            .unwrap();
        assert_eq!(ptr.as_ptr() as usize % (PAGE_SIZE << order), 0);
        assert_eq!(
            kmalloc.ksize(&pages, ptr.as_ptr()),
            Some(PAGE_SIZE << order)
        );
        // SAFETY: the block is ours, `size` bytes at least.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), size) };
        assert!(bytes.iter().all(|&b| b == 0));
        assert_eq!(kmalloc.large_blocks(), 1);
        kfree(&kmalloc, &pages, ptr);
        assert_eq!(kmalloc.large_blocks(), 0);
    }
    assert_eq!(large_order(KMALLOC_MAX_SIZE + 1), None);
    assert!(kmalloc
        .kmalloc(&pages, KMALLOC_MAX_SIZE + 1, Gfp::KERNEL)
        .is_err());
    // Sizes between classes, all the way up, in one sweep.
    for size in (KMALLOC_MAX_CACHE_SIZE + 1..=64 * PAGE_SIZE).step_by(1531) {
        let ptr = kmalloc.kmalloc(&pages, size, Gfp::KERNEL).unwrap();
        let usable = kmalloc.ksize(&pages, ptr.as_ptr()).unwrap();
        assert!(
            usable >= size && usable < 2 * size.max(PAGE_SIZE),
            "size {size}"
        );
        kfree(&kmalloc, &pages, ptr);
    }
    assert!(pages.platform().reports().is_empty());
    kmalloc.destroy(&pages).unwrap();
}

#[test]
fn zero_size_requests_get_the_sentinel() {
    let pages = pages();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    let ptr = kmalloc.kmalloc(&pages, 0, Gfp::KERNEL).unwrap();
    assert_eq!(ptr, zero_size_ptr());
    assert!(is_zero_size_ptr(ptr.as_ptr()));
    assert_eq!(kmalloc.ksize(&pages, ptr.as_ptr()), Some(0));
    kfree(&kmalloc, &pages, ptr);
    assert!(kmalloc.caches().all(|cache| cache.stats().allocs == 0));
    assert!(pages.platform().reports().is_empty());
    kmalloc.destroy(&pages).unwrap();
}

#[test]
fn invalid_kfrees_are_refused_and_reported() {
    let pages = pages();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    let user_cache = KmemCache::create(&pages, "user", 64, 0, SlabFlags::NONE, None).unwrap();
    let small = kmalloc.kmalloc(&pages, 64, Gfp::KERNEL).unwrap();
    let large = kmalloc.kmalloc(&pages, 5 * PAGE_SIZE, Gfp::KERNEL).unwrap();
    let user_obj = user_cache.alloc(&pages, Gfp::KERNEL).unwrap();
    let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    let boxed = Box::new(7u64);
    let at = |ptr: NonNull<u8>, offset| NonNull::new(ptr.as_ptr().wrapping_add(offset)).unwrap();
    for (ptr, expected, what) in [
        (page, SlabFreeError::NotFromCache, "not a kmalloc object"),
        (
            user_obj,
            SlabFreeError::NotFromCache,
            "not a kmalloc object",
        ),
        (
            NonNull::from(&*boxed).cast(),
            SlabFreeError::NotFromCache,
            "not a kmalloc object",
        ),
        (
            at(large, PAGE_SIZE),
            SlabFreeError::NotAnObject,
            "not the start",
        ),
        (at(small, 8), SlabFreeError::NotAnObject, "kmalloc-64"),
    ] {
        // SAFETY: none of these may be freed; kfree must refuse them.
        assert_eq!(unsafe { kmalloc.kfree(&pages, ptr) }, Err(expected));
        let reports = pages.platform().take_reports();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(
            reports[0].contains(&format!("{:p}", ptr.as_ptr())),
            "{reports:?}"
        );
        assert!(reports[0].contains(what), "{reports:?}");
        assert_eq!(kmalloc.ksize(&pages, ptr.as_ptr()), None);
    }
    // Counted by kmalloc, or by the generic cache the pointer was in.
    assert_eq!(kmalloc.errors(), 4);
    assert_eq!(kmalloc.cache_for(64).unwrap().stats().errors, 1);
    assert_eq!(user_cache.stats().errors, 0);
    kfree(&kmalloc, &pages, small);
    kfree(&kmalloc, &pages, large);
    // A second free of the large block finds it free.
    // SAFETY: deliberate double free of a page block.
    assert!(unsafe { kmalloc.kfree(&pages, large) }.is_err());
    assert_eq!(pages.platform().take_reports().len(), 1);
    // SAFETY: objects from their own allocators.
    unsafe {
        user_cache.free(&pages, user_obj).unwrap();
        pages.free_pages(page, 0).unwrap();
    }
    user_cache.destroy(&pages).unwrap();
    kmalloc.destroy(&pages).unwrap();
}

#[test]
fn destroy_waits_for_every_allocation() {
    let pages = pages();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    let small = kmalloc.kmalloc(&pages, 100, Gfp::KERNEL).unwrap();
    let large = kmalloc.kmalloc(&pages, 20_000, Gfp::KERNEL).unwrap();
    assert_eq!(
        kmalloc.destroy(&pages),
        Err(DestroyError::Busy { active: 2 })
    );
    kfree(&kmalloc, &pages, small);
    assert_eq!(
        kmalloc.destroy(&pages),
        Err(DestroyError::Busy { active: 1 })
    );
    // Nothing was destroyed by the refusals.
    assert!(kmalloc.caches().all(|cache| !cache.is_destroyed()));
    let again = kmalloc.kmalloc(&pages, 100, Gfp::KERNEL).unwrap();
    kfree(&kmalloc, &pages, again);
    kfree(&kmalloc, &pages, large);
    kmalloc.destroy(&pages).unwrap();
    assert!(kmalloc.caches().all(|cache| cache.is_destroyed()));
    assert!(kmalloc.kmalloc(&pages, 100, Gfp::KERNEL).is_err());
    assert_eq!(kmalloc.destroy(&pages), Err(DestroyError::AlreadyDestroyed));
    pages.shrink();
    assert_eq!(pages.platform().pages_outstanding(), 0);
}

#[test]
fn debug_kmalloc_catches_overruns_past_the_class() {
    let pages = pages();
    let mut kmalloc = Kmalloc::with_flags(&pages, SlabFlags::DEBUG).unwrap();
    let ptr = kmalloc.kmalloc(&pages, 100, Gfp::KERNEL).unwrap();
    assert_eq!(kmalloc.ksize(&pages, ptr.as_ptr()), Some(128));
    // SAFETY: one byte past the 128-byte object: its red zone.
    unsafe { ptr.as_ptr().add(128).write(0) };
    kfree(&kmalloc, &pages, ptr);
    let reports = pages.platform().take_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("kmalloc-128") && reports[0].contains("red zone after"));
    // SAFETY: deliberate double free.
    let result = unsafe { kmalloc.kfree(&pages, ptr) };
    assert_eq!(result, Err(SlabFreeError::DoubleFree));
    assert!(pages.platform().take_reports()[0].contains("double free"));
    kmalloc.destroy(&pages).unwrap();
}

#[test]
fn slabinfo_lists_every_generic_cache() {
    let pages = pages();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    let ptr = kmalloc.kmalloc(&pages, 1000, Gfp::KERNEL).unwrap();
    let rows: Vec<String> = kmalloc
        .caches()
        .map(|c| c.slabinfo_row().to_string())
        .collect();
    assert_eq!(rows.len(), KMALLOC_SIZES.len());
    let row = rows
        .iter()
        .find(|row| row.starts_with("kmalloc-1024 "))
        .unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[3], "1024");
    assert!(fields[1].parse::<usize>().unwrap() >= 1);
    kfree(&kmalloc, &pages, ptr);
    kmalloc.destroy(&pages).unwrap();
}
