// SPDX-License-Identifier: GPL-2.0

//! vmalloc over rmm's pages: the core ([`vmalloc`], [`vfree`]) on the host
//! platform's emulated mapping service, the control file's named areas
//! (`vmalloc NAME SIZE`, `vfree NAME`), and the views that show them
//! (`rmm_vmallocinfo`, `rmm_frames`).

mod common;

use common::{new_rmm, run, run_err, stats_text, Shared};
use rmm_core::areas::MAX_AREAS;
use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::page_alloc::PageAllocator;
use rmm_core::platform::{Platform, PAGE_SHIFT, PAGE_SIZE};
use rmm_core::state::{errno, CtlErrorKind, Rmm};
use rmm_core::views::{write_frames, write_vmallocinfo, FRAMES_HEADER};
use rmm_core::vmalloc::{pages_for, vfree, vmalloc, VmallocError, MAX_VMALLOC_SIZE};
use std::collections::BTreeSet;
use std::ptr::NonNull;

fn allocator() -> (Shared, PageAllocator<Shared>) {
    let platform = Shared::new(2);
    let pages = PageAllocator::new(platform.clone()).expect("PageAllocator::new");
    (platform, pages)
}

/// What must be the same before a failed vmalloc and after it.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    pages_allocated: usize,
    mappings: usize,
    meta: usize,
}

fn books(platform: &Shared, pages: &PageAllocator<Shared>) -> Books {
    Books {
        pages_allocated: pages.stats().pages_allocated,
        mappings: platform.host().mappings_outstanding(),
        meta: platform.host().meta_outstanding(),
    }
}

#[test]
fn an_area_maps_its_own_pages_in_order() {
    let (platform, pages) = allocator();
    // A chunk first: its metadata stays for reuse.
    let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    // SAFETY: just allocated, unused.
    unsafe { pages.free_pages(page, 0) }.unwrap();
    let before = books(&platform, &pages);
    let area = vmalloc(&pages, 64 * PAGE_SIZE, Gfp::KERNEL).unwrap();
    assert_eq!(area.nr_pages(), 64);
    assert_eq!(area.size(), 64 * PAGE_SIZE);
    assert_eq!(area.reserved_size(), 65 * PAGE_SIZE, "one guard page");
    let addr = area.addr().as_ptr() as usize;
    assert_eq!(addr % PAGE_SIZE, 0);
    // The mapping stands for exactly the area's pages, in its order.
    let mapped = platform.host().mapped_pages(addr).expect("mapped");
    let own: Vec<usize> = area.pages().iter().map(|p| p.as_ptr() as usize).collect();
    assert_eq!(mapped, own);
    // Distinct single pages, each handed out by the page allocator.
    assert_eq!(own.iter().collect::<BTreeSet<_>>().len(), 64);
    assert!(own.iter().all(|page| page % PAGE_SIZE == 0));
    for page in &own {
        assert_eq!(pages.block_owner(*page as *const u8), Some(0));
    }
    assert_eq!(pages.stats().pages_allocated, before.pages_allocated + 64);
    // Each page of the range leads to its page's frame, as
    // vmalloc_to_pfn would; past the end (the guard page) to nothing.
    for (index, page) in area.pages().iter().enumerate() {
        let at = NonNull::new(area.page_addr(index) as *mut u8).unwrap();
        assert_eq!(area.page_addr(index), addr + index * PAGE_SIZE);
        assert_eq!(platform.mapped_frame(at), Some(platform.page_frame(*page)));
        assert_eq!(
            platform.page_frame(*page),
            page.as_ptr() as usize >> PAGE_SHIFT
        );
    }
    let guard = NonNull::new(area.page_addr(64) as *mut u8).unwrap();
    assert_eq!(platform.mapped_frame(guard), None);
    // SAFETY: the area came from `vmalloc` with `pages`, nothing uses it.
    unsafe { vfree(&pages, area) };
    assert_eq!(books(&platform, &pages), before);
    for page in &own {
        assert_eq!(pages.block_owner(*page as *const u8), None, "page freed");
    }
    assert!(platform.host().reports().is_empty());
}

#[test]
fn sizes_round_up_to_pages_up_to_64_mib_and_beyond() {
    let (platform, pages) = allocator();
    for (size, want) in [
        (1, 1),
        (PAGE_SIZE, 1),
        (PAGE_SIZE + 1, 2),
        (5000, 2),
        (64 << 20, 16384),
    ] {
        assert_eq!(pages_for(size), want);
        let area = vmalloc(&pages, size, Gfp::KERNEL).unwrap();
        assert_eq!(area.nr_pages(), want, "size {size}");
        assert_eq!(
            platform
                .host()
                .mapped_pages(area.addr().as_ptr() as usize)
                .unwrap()
                .len(),
            want
        );
        // SAFETY: from `vmalloc` with `pages`, unused.
        unsafe { vfree(&pages, area) };
    }
    // 64 MiB took 16 chunks, which shrink gives back: nothing is kept.
    assert_eq!(pages.stats().pages_allocated, 0);
    assert!(pages.shrink() >= 16 << 10);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(platform.host().mappings_outstanding(), 0);
}

#[test]
fn bad_requests_take_nothing() {
    let (platform, pages) = allocator();
    let before = books(&platform, &pages);
    for (size, gfp) in [
        (0, Gfp::KERNEL),
        (MAX_VMALLOC_SIZE + 1, Gfp::KERNEL),
        (usize::MAX, Gfp::KERNEL),
        (PAGE_SIZE, Gfp::ATOMIC),
        (PAGE_SIZE, Gfp::NOWAIT),
    ] {
        assert_eq!(
            vmalloc(&pages, size, gfp).err(),
            Some(VmallocError::BadRequest),
            "size {size} {gfp}"
        );
    }
    assert_eq!(books(&platform, &pages), before);
    assert_eq!(pages.stats().chunks, 0);
}

#[test]
fn running_out_of_pages_gives_back_every_page_taken() {
    let (platform, pages) = allocator();
    // A chunk first, so that only page requests are numbered.
    let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    // SAFETY: just allocated, unused.
    unsafe { pages.free_pages(page, 0) }.unwrap();
    for fail_at in [1, 2, 17, 64] {
        let before = books(&platform, &pages);
        pages.faults().set_every(fail_at);
        let error = vmalloc(&pages, 64 * PAGE_SIZE, Gfp::KERNEL).err();
        pages.faults().set_every(0);
        assert_eq!(
            error,
            Some(VmallocError::NoPages {
                got: fail_at - 1,
                wanted: 64
            })
        );
        assert_eq!(
            books(&platform, &pages),
            before,
            "failing at page {fail_at}"
        );
    }
    assert!(platform.host().reports().is_empty());
}

#[test]
fn a_failed_mapping_gives_back_every_page() {
    let (platform, pages) = allocator();
    let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    // SAFETY: just allocated, unused.
    unsafe { pages.free_pages(page, 0) }.unwrap();
    let before = books(&platform, &pages);
    // The platform cannot map.
    platform.host().fail_maps_every(1);
    assert_eq!(
        vmalloc(&pages, 10 * PAGE_SIZE, Gfp::KERNEL).err(),
        Some(VmallocError::MapFailed)
    );
    platform.host().fail_maps_every(0);
    assert_eq!(books(&platform, &pages), before);
    // Fault injection numbers the mapping after the pages: 10 pages, then
    // request 11 is the mapping.
    pages.faults().set_every(11);
    assert_eq!(
        vmalloc(&pages, 10 * PAGE_SIZE, Gfp::KERNEL).err(),
        Some(VmallocError::MapFailed)
    );
    pages.faults().set_every(0);
    assert_eq!(books(&platform, &pages), before);
    assert_eq!(pages.faults().stats().injected, 1);
    // And it works again.
    let area = vmalloc(&pages, 10 * PAGE_SIZE, Gfp::KERNEL).unwrap();
    // SAFETY: from `vmalloc` with `pages`, unused.
    unsafe { vfree(&pages, area) };
    assert_eq!(books(&platform, &pages), before);
}

#[test]
fn an_area_takes_one_block_of_bookkeeping() {
    let (platform, pages) = allocator();
    // Grow the pool first: chunk metadata is kept for reuse.
    let warm = vmalloc(&pages, 16 << 20, Gfp::KERNEL).unwrap();
    // SAFETY: from `vmalloc` with `pages`, unused.
    unsafe { vfree(&pages, warm) };
    let meta = platform.host().meta_outstanding();
    let area = vmalloc(&pages, 16 << 20, Gfp::KERNEL).unwrap();
    assert_eq!(
        platform.host().meta_outstanding(),
        meta + 1,
        "the page array"
    );
    // SAFETY: from `vmalloc` with `pages`, unused.
    unsafe { vfree(&pages, area) };
    assert_eq!(platform.host().meta_outstanding(), meta);
}

#[test]
fn zeroed_areas_are_zero() {
    let (_platform, pages) = allocator();
    // Dirty some pages first, so that reuse without zeroing would show.
    let mut dirty = Vec::new();
    for _ in 0..32 {
        let page = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
        // SAFETY: a page of ours.
        unsafe { page.as_ptr().write_bytes(0x77, PAGE_SIZE) };
        dirty.push(page);
    }
    for page in dirty {
        // SAFETY: allocated above, unused.
        unsafe { pages.free_pages(page, 0) }.unwrap();
    }
    let area = vmalloc(&pages, 32 * PAGE_SIZE, Gfp::KERNEL | Gfp::ZERO).unwrap();
    for page in area.pages() {
        // SAFETY: the area's page, `PAGE_SIZE` bytes, ours.
        let bytes = unsafe { std::slice::from_raw_parts(page.as_ptr(), PAGE_SIZE) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
    // SAFETY: from `vmalloc` with `pages`, unused.
    unsafe { vfree(&pages, area) };
}

fn vmallocinfo(rmm: &Rmm<Shared>) -> String {
    let mut out = String::new();
    write_vmallocinfo(&mut out, rmm).unwrap();
    out
}

fn frames(rmm: &Rmm<Shared>) -> String {
    let mut out = String::new();
    write_frames(&mut out, rmm).unwrap();
    out
}

fn vmalloc_line(rmm: &Rmm<Shared>) -> String {
    stats_text(rmm)
        .lines()
        .find(|line| line.starts_with("vmalloc "))
        .unwrap()
        .to_string()
}

#[test]
fn named_areas_through_the_control_file() {
    let (platform, mut rmm) = new_rmm(2);
    run(
        &mut rmm,
        "vmalloc small 5000\nvmalloc big 1M\nvmalloc one 1",
    );
    let areas = rmm.areas();
    assert_eq!(areas.stats().areas, 3);
    assert_eq!(areas.stats().pages, 2 + 256 + 1);
    assert_eq!(areas.get("small").unwrap().nr_pages(), 2);
    assert_eq!(areas.get("big").unwrap().nr_pages(), 256);
    // In address order, as /proc/vmallocinfo lists them.
    let addrs: Vec<usize> = areas
        .iter()
        .map(|(_, area)| area.addr().as_ptr() as usize)
        .collect();
    let mut sorted = addrs.clone();
    sorted.sort_unstable();
    assert_eq!(addrs, sorted);
    assert!(platform
        .host()
        .infos()
        .contains(&"rmm_ctl: vmalloc big: 256 pages mapped".to_string()));
    // Names are unique among areas; caches have names of their own.
    let error = run_err(&mut rmm, "vmalloc big 4096");
    assert_eq!(error.errno(), errno::EEXIST);
    assert_eq!(
        error.to_string(),
        "vmalloc big: an area of that name exists"
    );
    run(&mut rmm, "create big 64\nvmalloc kmalloc-64 4096");
    let error = run_err(&mut rmm, "vfree nope");
    assert_eq!(error.errno(), errno::ENOENT);
    assert_eq!(error.to_string(), "vfree nope: no such area");
    assert_eq!(
        platform.host().reports().last().unwrap(),
        "rmm_ctl: vfree nope: no such area (-ENOENT)"
    );
    for line in [
        "vmalloc x 0",
        "vmalloc x 2G",
        "vmalloc b/d 4096",
        "vfree",
        "vmalloc x",
    ] {
        let error = run_err(&mut rmm, line);
        assert_eq!(error.errno(), errno::EINVAL, "{line}");
        assert!(matches!(error.kind(), CtlErrorKind::Parse(_)));
    }
    run(&mut rmm, "vfree big");
    assert!(rmm.areas().get("big").is_none());
    assert_eq!(
        vmalloc_line(&rmm),
        "vmalloc areas=3 max_areas=64 pages=4 vmallocs=4 vfrees=1 failures=0"
    );
    // The name is free again.
    run(
        &mut rmm,
        "vmalloc big 8K\nvfree big\nvfree small\nvfree one\nvfree kmalloc-64",
    );
    assert_eq!(rmm.areas().stats().areas, 0);
    assert_eq!(platform.host().mappings_outstanding(), 0);
    assert_eq!(rmm.pages().stats().pages_allocated, 0);
    run(&mut rmm, "destroy big");
}

#[test]
fn at_most_64_areas() {
    let (platform, mut rmm) = new_rmm(1);
    for i in 0..MAX_AREAS {
        run(&mut rmm, &format!("vmalloc a{i} 4096"));
    }
    let error = run_err(&mut rmm, "vmalloc more 4096");
    assert_eq!(error.errno(), errno::ENOSPC);
    assert_eq!(
        error.to_string(),
        "vmalloc more: too many areas (at most 64)"
    );
    assert_eq!(platform.host().mappings_outstanding(), MAX_AREAS);
    run(&mut rmm, "vfree a7\nvmalloc more 4096");
    let summary = rmm.teardown();
    assert_eq!(summary.areas_freed, MAX_AREAS);
    assert_eq!(platform.host().mappings_outstanding(), 0);
}

#[test]
fn a_failed_vmalloc_command_keeps_nothing() {
    let (platform, mut rmm) = new_rmm(2);
    run(&mut rmm, "vmalloc keep 16K");
    let stats = rmm.pages().stats();
    let meta = platform.host().meta_outstanding();
    // Page 7 of 16 fails.
    run(&mut rmm, "fail 7");
    let error = run_err(&mut rmm, "vmalloc f 64K");
    assert_eq!(error.errno(), errno::ENOMEM);
    assert_eq!(
        error.to_string(),
        "vmalloc f: out of memory after 6 of 16 pages, all given back"
    );
    // The mapping fails: 4 pages, then the mapping is request 5.
    run(&mut rmm, "fail 5");
    let error = run_err(&mut rmm, "vmalloc m 16K");
    assert_eq!(error.errno(), errno::ENOMEM);
    assert_eq!(
        error.to_string(),
        "vmalloc m: mapping the pages failed, all given back"
    );
    run(&mut rmm, "fail 0");
    assert_eq!(rmm.pages().stats().pages_allocated, stats.pages_allocated);
    assert_eq!(platform.host().meta_outstanding(), meta);
    assert_eq!(platform.host().mappings_outstanding(), 1);
    assert_eq!(
        vmalloc_line(&rmm),
        "vmalloc areas=1 max_areas=64 pages=4 vmallocs=1 vfrees=0 failures=2"
    );
    assert_eq!(rmm.areas().iter().count(), 1);
}

#[test]
fn vmallocinfo_is_in_the_kernels_format() {
    let (_platform, mut rmm) = new_rmm(2);
    assert_eq!(vmallocinfo(&rmm), "");
    run(&mut rmm, "vmalloc buf 10000\nvmalloc big 64M");
    let text = vmallocinfo(&rmm);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let mut previous_end = 0;
    for line in &lines {
        // "0x%pK-0x%pK %7ld caller pages=%d vmalloc"
        let (range, rest) = line.split_once(' ').unwrap();
        let (start, end) = range.split_once('-').unwrap();
        for addr in [start, end] {
            assert!(addr.starts_with("0x") && addr.len() == 18, "{line}");
        }
        let start = usize::from_str_radix(&start[2..], 16).unwrap();
        let end = usize::from_str_radix(&end[2..], 16).unwrap();
        assert!(start >= previous_end, "address order");
        previous_end = end;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let size: usize = words[0].parse().unwrap();
        assert_eq!(end - start, size);
        let (_, area) = rmm
            .areas()
            .iter()
            .find(|(name, _)| *name == words[1])
            .unwrap();
        assert_eq!(start, area.addr().as_ptr() as usize);
        assert_eq!(size, (area.nr_pages() + 1) * PAGE_SIZE);
        assert_eq!(words[2], format!("pages={}", area.nr_pages()));
        assert_eq!(words[3], "vmalloc");
        assert_eq!(words.len(), 4);
        // The size is right-aligned in 7 columns, as %7ld.
        assert!(rest.starts_with(&format!("{:>7} ", words[0])), "{line}");
    }
    let buf = lines.iter().find(|line| line.contains(" buf ")).unwrap();
    assert!(buf.ends_with("   16384 buf pages=3 vmalloc"), "{buf}");
    let big = lines.iter().find(|line| line.contains(" big ")).unwrap();
    assert!(big.ends_with(" 67112960 big pages=16384 vmalloc"), "{big}");
}

#[test]
fn frames_show_contiguous_addresses_over_the_pages_own_frames() {
    let (platform, mut rmm) = new_rmm(1);
    HostPlatform::set_this_cpu(0);
    run(
        &mut rmm,
        "vmalloc demo 256K\npage-alloc 6 1\npage-alloc 0 2",
    );
    let text = frames(&rmm);
    let mut lines = text.lines();
    assert_eq!(lines.next(), FRAMES_HEADER.lines().next());
    assert_eq!(lines.next(), FRAMES_HEADER.lines().nth(1));
    let area = rmm.areas().get("demo").unwrap();
    let mut area_pfns = Vec::new();
    let mut block_pfns: Vec<(usize, usize, usize)> = Vec::new();
    let mut last_addr = None;
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        let hex = |word: &str| usize::from_str_radix(word.strip_prefix("0x").unwrap(), 16).unwrap();
        match words[0] {
            "vmalloc" => {
                assert_eq!(words.len(), 6, "{line}");
                assert_eq!(words[1], "demo");
                let index: usize = words[2].parse().unwrap();
                let addr = hex(words[3]);
                assert_eq!(index, area_pfns.len());
                // Consecutive virtual addresses...
                if let Some(last) = last_addr {
                    assert_eq!(addr, last + PAGE_SIZE);
                }
                last_addr = Some(addr);
                let pfn: usize = words[4].parse().unwrap();
                // ...each mapping the frame of the area's own page.
                assert_eq!(words[5], words[4], "{line}");
                assert_eq!(pfn, platform.page_frame(area.pages()[index]));
                area_pfns.push(pfn);
            }
            "block" => {
                assert_eq!(words.len(), 6, "{line}");
                let order: usize = words[1].parse().unwrap();
                let block: usize = words[2].parse().unwrap();
                let page: usize = words[3].parse().unwrap();
                let addr = hex(words[4]);
                let pfn: usize = words[5].parse().unwrap();
                assert_eq!(pfn, addr >> PAGE_SHIFT);
                block_pfns.push((order, block, pfn - page));
            }
            other => panic!("unexpected line kind {other:?}"),
        }
    }
    assert_eq!(area_pfns.len(), 64);
    // The area's frames are not one contiguous run (rmm hands out single
    // pages from per-CPU lists, most recently freed first).
    assert!(
        area_pfns.windows(2).any(|w| w[1] != w[0] + 1),
        "{area_pfns:?}"
    );
    // A block's are: every page's frame is the first frame plus its index.
    let order6: Vec<_> = block_pfns.iter().filter(|(o, _, _)| *o == 6).collect();
    assert_eq!(order6.len(), 64);
    assert!(order6
        .iter()
        .all(|&&(_, b, first)| b == 0 && first == order6[0].2));
    assert_eq!(block_pfns.iter().filter(|(o, _, _)| *o == 0).count(), 2);
    rmm.teardown();
}

#[test]
fn areas_go_at_teardown_and_their_pages_with_them() {
    let (platform, mut rmm) = new_rmm(2);
    run(&mut rmm, "vmalloc a 1M\nvmalloc b 3\nvfree a\nvmalloc c 2M");
    let summary = rmm.teardown();
    assert_eq!(summary.areas_freed, 2);
    assert_eq!(platform.host().mappings_outstanding(), 0);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(rmm.areas().stats().areas, 0);
    assert_eq!(
        run_err(&mut rmm, "vmalloc d 1").errno(),
        errno::ENODEV,
        "no commands after teardown"
    );
    drop(rmm);
    assert_eq!(platform.host().meta_outstanding(), 0);
    assert!(platform
        .host()
        .reports()
        .iter()
        .all(|r| !r.contains("leak")));
}
