// SPDX-License-Identifier: GPL-2.0

//! The page allocator's watermarks and emergency reserve: `min`, `low`
//! and `high` follow the pool and the reserve setting; sleeping requests
//! refill below `low`; `GFP_NOWAIT` stops at `low`, a sleeping request
//! whose refill failed at `min`, and only `GFP_ATOMIC` takes the reserve
//! below `min`; refills that fail (fault injection) lose nothing; and
//! `rmm_zoneinfo` shows it all in `/proc/zoneinfo`'s format.

mod common;

use common::{key_values, new_rmm, run, run_err, stats_text, Shared};
use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::page_alloc::{
    PageAllocator, Reserve, ReserveBasis, Watermarks, CHUNK_ORDER, PCP_BATCH, PCP_HIGH,
};
use rmm_core::platform::{AllocError, Platform};
use rmm_core::state::{errno, CtlErrorKind, Rmm};
use rmm_core::views::write_zoneinfo;
use std::collections::BTreeMap;

const CHUNK: usize = 1 << CHUNK_ORDER;

/// The `zone` line of the stats.
fn zone(rmm: &Rmm<Shared>) -> BTreeMap<String, usize> {
    let text = stats_text(rmm);
    let line = text.lines().find(|line| line.starts_with("zone ")).unwrap();
    key_values(line)
}

/// The first `buddy` line of the stats.
fn buddy(rmm: &Rmm<Shared>) -> BTreeMap<String, usize> {
    let text = stats_text(rmm);
    let line = text
        .lines()
        .find(|line| line.starts_with("buddy "))
        .unwrap();
    key_values(line)
}

/// Objects or blocks a failed `alloc` or `page-alloc` kept.
fn kept(error: &rmm_core::state::CtlError) -> usize {
    match error.kind() {
        CtlErrorKind::OutOfMemory { done, .. } => done,
        other => panic!("not out of memory: {other:?}"),
    }
}

/// An `Rmm` on one CPU with one chunk in the pool, all free.
fn one_chunk(reserve: &str) -> (Shared, Rmm<Shared>) {
    HostPlatform::set_this_cpu(0);
    let (platform, mut rmm) = new_rmm(1);
    run(
        &mut rmm,
        &format!("reserve {reserve}\npage-alloc 0 1\npage-free 0 1"),
    );
    assert_eq!(rmm.pages().stats().chunks, 1);
    (platform, rmm)
}

#[test]
fn watermarks_follow_the_pool_and_the_setting() {
    HostPlatform::set_this_cpu(0);
    let (platform, mut rmm) = new_rmm(1);
    // The kernel's reserve: 724 pages over 131072 (512 MiB).
    platform.host().set_reserve_basis(ReserveBasis {
        min_pages: 724,
        managed_pages: 131_072,
    });
    // The basis is read when the reserve is set.
    run(&mut rmm, "reserve auto");
    assert_eq!(rmm.pages().reserve(), Reserve::Auto);
    // No pool, no watermarks.
    assert_eq!(rmm.pages().watermarks(), Watermarks::default());
    run(&mut rmm, "page-alloc 0 1");
    // One chunk: 724 * 1024 / 131072 = 5 pages; delta max(5/4, 1) = 1.
    assert_eq!(
        rmm.pages().watermarks(),
        Watermarks {
            min: 5,
            low: 6,
            high: 7
        }
    );
    run(&mut rmm, "page-alloc 10 3");
    // Four chunks: 22 pages; delta max(5, 4) = 5.
    assert_eq!(
        rmm.pages().watermarks(),
        Watermarks {
            min: 22,
            low: 27,
            high: 32
        }
    );
    let z = zone(&rmm);
    assert_eq!((z["min"], z["reserve_kb"], z["reserve_auto"]), (22, 88, 1));
    // A fixed reserve does not follow the pool.
    run(&mut rmm, "reserve 1024");
    assert_eq!(
        rmm.pages().watermarks(),
        Watermarks {
            min: 256,
            low: 320,
            high: 384
        }
    );
    assert_eq!(zone(&rmm)["reserve_auto"], 0);
    assert!(platform
        .host()
        .infos()
        .contains(&"rmm_ctl: reserve 1024: watermarks min 256 low 320 high 384 pages".into()));
    run(&mut rmm, "reserve 0");
    assert_eq!(rmm.pages().watermarks(), Watermarks::default());
    // Giving chunks back lowers the automatic watermarks again.
    run(&mut rmm, "reserve auto\npage-free 10 all\nshrink kmalloc-8");
    assert_eq!(rmm.pages().stats().chunks, 1);
    assert_eq!(rmm.pages().watermarks().min, 5);
    for line in ["reserve", "reserve -1", "reserve 262145", "reserve 1M"] {
        assert_eq!(run_err(&mut rmm, line).errno(), errno::EINVAL, "{line}");
    }
}

#[test]
fn ordinary_requests_stop_at_min_and_atomic_ones_take_the_reserve() {
    // 64 pages of reserve: min 64, low 80, high 96.
    let (platform, mut rmm) = one_chunk("256");
    assert_eq!(
        rmm.pages().watermarks(),
        Watermarks {
            min: 64,
            low: 80,
            high: 96
        }
    );
    // No more chunks: every refill fails, nothing else does.
    run(&mut rmm, "fail 1 refill");
    let error = run_err(&mut rmm, "page-alloc 0 2000");
    assert_eq!(error.errno(), errno::ENOMEM);
    // Sleeping requests went below low after their refill failed, and
    // stopped at min: the reserve is intact.
    assert_eq!(kept(&error), CHUNK - 64);
    let z = zone(&rmm);
    assert_eq!(z["free"], 64);
    assert_eq!(z["min_allocs"], 16, "from low (80) down to min (64)");
    assert_eq!((z["reserve_allocs"], z["reserve_pages"]), (0, 0));
    assert_eq!(z["refused"], 1);
    assert!(z["refill_failures"] >= 1);
    assert_eq!(buddy(&rmm)["pages_pcp"], 0, "the lists were drained first");
    // GFP_NOWAIT may not go below low: fails cleanly, takes nothing.
    let error = run_err(&mut rmm, "page-alloc 0 1 nowait");
    assert_eq!((error.errno(), kept(&error)), (errno::ENOMEM, 0));
    assert_eq!(zone(&rmm)["free"], 64);
    assert_eq!(zone(&rmm)["refused"], 2);
    // Neither may a sleeping request.
    assert_eq!(kept(&run_err(&mut rmm, "page-alloc 0 1")), 0);
    // GFP_ATOMIC takes the reserve, page by page, to the last one.
    run(&mut rmm, "page-alloc 0 1 atomic");
    let z = zone(&rmm);
    assert_eq!(
        (z["free"], z["reserve_allocs"], z["reserve_pages"]),
        (63, 1, 1)
    );
    run(&mut rmm, "page-alloc 1 1 atomic\npage-alloc 0 61 atomic");
    let z = zone(&rmm);
    assert_eq!(
        (z["free"], z["reserve_allocs"], z["reserve_pages"]),
        (0, 63, 64)
    );
    let error = run_err(&mut rmm, "page-alloc 0 1 atomic");
    assert_eq!(kept(&error), 0);
    assert_eq!(zone(&rmm)["refused"], 3, "an empty pool is not a watermark");
    // Nothing was lost: every page is held, the books balance.
    assert_eq!(rmm.held_blocks(0), CHUNK - 64 + 62);
    assert_eq!(rmm.held_blocks(1), 1);
    let b = buddy(&rmm);
    assert_eq!(b["pages_allocated"], CHUNK);
    assert_eq!(b["pages_total"], CHUNK);
    assert_eq!(platform.host().pages_outstanding(), CHUNK);
    // Process context allocating again refills the pool, reserve and all.
    run(&mut rmm, "fail 0\npage-alloc 0 1");
    let z = zone(&rmm);
    assert_eq!(rmm.pages().stats().chunks, 2);
    assert!(z["free"] >= z["high"], "{z:?}");
    assert_eq!(z["min"], 64);
    // Everything goes back.
    run(
        &mut rmm,
        "page-free 0 all\npage-free 1 all\nshrink kmalloc-8",
    );
    assert_eq!(rmm.pages().stats().chunks, 0);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert!(platform
        .host()
        .reports()
        .iter()
        .all(|line| line.starts_with("rmm_ctl: page-alloc")));
}

#[test]
fn nowait_stops_exactly_at_low_and_never_refills() {
    let (_platform, mut rmm) = one_chunk("256");
    let refills = zone(&rmm)["refills"];
    let error = run_err(&mut rmm, "page-alloc 0 2000 nowait");
    assert_eq!(kept(&error), CHUNK - 80);
    let z = zone(&rmm);
    assert_eq!(
        (z["free"], z["min_allocs"], z["reserve_allocs"]),
        (80, 0, 0)
    );
    assert_eq!(z["refills"], refills, "GFP_NOWAIT does not refill");
    assert_eq!(rmm.pages().stats().chunks, 1);
    // Atomic requests go on below low, down to 0.
    let error = run_err(&mut rmm, "page-alloc 0 2000 atomic");
    assert_eq!(kept(&error), 80);
    let z = zone(&rmm);
    assert_eq!(
        (z["min_allocs"], z["reserve_allocs"], z["reserve_pages"]),
        (16, 64, 64)
    );
    assert_eq!(z["refills"], refills, "GFP_ATOMIC does not refill either");
    rmm.teardown();
}

#[test]
fn requests_that_may_not_sleep_never_grow_the_pool() {
    HostPlatform::set_this_cpu(0);
    let (platform, mut rmm) = new_rmm(1);
    for line in [
        "page-alloc 0 1 atomic",
        "page-alloc 0 1 nowait",
        "page-alloc 10 1 atomic",
        "alloc kmalloc-64 1 atomic",
        "alloc kmalloc-64 1 nowait",
    ] {
        let error = run_err(&mut rmm, line);
        assert_eq!((error.errno(), kept(&error)), (errno::ENOMEM, 0), "{line}");
    }
    assert_eq!(rmm.pages().stats().chunks, 0);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(zone(&rmm)["refills"], 0);
    // One sleeping allocation refills; then they are served.
    run(&mut rmm, "page-alloc 0 1\nalloc kmalloc-64 100 atomic\nalloc kmalloc-64 100 nowait\npage-alloc 3 2 atomic");
    assert_eq!(zone(&rmm)["refills"], 1);
    assert_eq!(rmm.cache("kmalloc-64").unwrap().held, 200);
}

#[test]
fn a_large_reserve_refills_to_high_at_once() {
    HostPlatform::set_this_cpu(0);
    let (_platform, mut rmm) = new_rmm(1);
    // 8 MiB: min 2048, low 2560, high 3072: one page takes four chunks,
    // to leave 3072 free after it.
    run(&mut rmm, "reserve 8192\npage-alloc 0 1");
    let z = zone(&rmm);
    assert_eq!(rmm.pages().stats().chunks, 4);
    assert_eq!((z["refills"], z["refill_chunks"]), (1, 4));
    assert!(z["free"] >= z["high"]);
    assert_eq!((z["min"], z["low"], z["high"]), (2048, 2560, 3072));
}

#[test]
fn failed_refills_lose_nothing() {
    let (platform, mut rmm) = one_chunk("256");
    run(&mut rmm, "create obj 512 ctor");
    // Every second refill fails: allocations go on as far as the pool and
    // the refills that work allow; what fails keeps what it got.
    run(&mut rmm, "fail 2 refill");
    let mut held_pages = 0;
    for line in ["page-alloc 0 3000", "alloc obj 20000", "page-alloc 4 300"] {
        match rmm.execute(line.as_bytes()) {
            Ok(()) => {}
            Err(error) => assert_eq!(error.errno(), errno::ENOMEM),
        }
    }
    held_pages += rmm.held_blocks(0) + (rmm.held_blocks(4) << 4);
    let z = zone(&rmm);
    assert!(z["refill_failures"] >= 1, "{z:?}");
    let faults = rmm.fault_stats();
    assert_eq!(faults.injected, z["refill_failures"] as u64);
    assert_eq!(faults.injected, faults.requests / 2);
    // The books balance: the pages handed out are the held blocks and the
    // cache's slabs; every chunk taken is in the pool.
    let info = rmm.cache("obj").unwrap().cache.slabinfo();
    let b = buddy(&rmm);
    assert_eq!(
        b["pages_allocated"],
        held_pages + info.num_slabs * info.pagesperslab
    );
    assert_eq!(platform.host().pages_outstanding(), b["pages_total"]);
    assert_eq!(
        rmm.cache("obj").unwrap().held,
        rmm.cache("obj").unwrap().cache.stats().active
    );
    rmm.pages().check_invariants().unwrap();
    // Without injection it all works and all goes back.
    run(
        &mut rmm,
        "fail 0\nalloc obj 100\nfree obj all\npage-free 0 all\npage-free 4 all\nshrink obj",
    );
    assert_eq!(rmm.pages().stats().chunks, 0);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(rmm.corruptions(), 0);
}

#[test]
fn zero_flags_zero_objects_but_not_constructed_ones() {
    let (_platform, mut rmm) = new_rmm(1);
    run(&mut rmm, "create plain 200\ncreate built 64 ctor");
    // Dirty objects go back to the cache first.
    run(&mut rmm, "alloc plain 50\nfree plain all");
    // (Fresh host pages are 0xa5, so unzeroed objects would show.)
    assert_eq!(rmm.held_objects("plain").unwrap().count(), 0);
    let error = run_err(&mut rmm, "alloc built 1 zero");
    assert_eq!(error.errno(), errno::EINVAL);
    assert_eq!(error.kind(), CtlErrorKind::ZeroWithCtor);
    assert_eq!(rmm.cache("built").unwrap().cache.stats().errors, 0);
    run(&mut rmm, "alloc plain 50 kernel|zero");
    for addr in rmm.held_objects("plain").unwrap() {
        // SAFETY: a held object of 200 bytes.
        let bytes = unsafe { std::slice::from_raw_parts(addr.as_ptr(), 200) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
    run(&mut rmm, "page-alloc 2 3 atomic|zero");
    for block in rmm.held_blocks_of(2) {
        // SAFETY: a held block of 4 pages.
        let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr(), 4 << 12) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
    rmm.teardown();
}

#[test]
fn the_page_allocator_alone_keeps_the_rules() {
    HostPlatform::set_this_cpu(0);
    let platform = Shared::new(1);
    let pages = PageAllocator::new(platform.clone()).unwrap();
    pages.set_reserve(Reserve::Kbytes(64));
    assert_eq!(pages.alloc_pages(0, Gfp::ATOMIC), Err(AllocError));
    let first = pages.alloc_pages(0, Gfp::KERNEL).unwrap();
    let wm = pages.watermarks();
    assert_eq!((wm.min, wm.low, wm.high), (16, 20, 24));
    // Blocks above the per-CPU orders are checked too: an order-10 block
    // would take the pool below low, so a sleeping request refills.
    let big = pages.alloc_pages(10, Gfp::KERNEL).unwrap();
    assert_eq!(pages.stats().chunks, 2);
    assert!(pages.stats().pages_free >= wm.low);
    // SAFETY: allocated above, unused.
    unsafe {
        pages.free_pages(big, 10).unwrap();
        pages.free_pages(first, 0).unwrap();
    }
    // The first atomic request found no pages at all: not a watermark.
    assert_eq!(pages.watermark_stats().refused, 0);
    drop(pages);
    assert_eq!(platform.host().pages_outstanding(), 0);
}

/// The fields of `rmm_zoneinfo`, by name.
fn zoneinfo(rmm: &Rmm<Shared>) -> (String, BTreeMap<String, usize>) {
    let mut text = String::new();
    write_zoneinfo(&mut text, rmm).unwrap();
    let mut fields = BTreeMap::new();
    for line in text.lines().skip(1) {
        let line = line.trim();
        if let Some((key, value)) = line.rsplit_once([' ', ':']) {
            if let Ok(value) = value.trim().parse() {
                let key = key.trim().trim_end_matches(':').to_string();
                fields.entry(key).or_insert(value);
            }
        }
    }
    (text, fields)
}

#[test]
fn zoneinfo_is_in_the_kernels_format() {
    HostPlatform::set_this_cpu(1);
    let (platform, mut rmm) = new_rmm(2);
    let (text, _) = zoneinfo(&rmm);
    assert_eq!(
        text,
        format!(
            "Node 0, zone      rmm\n  pages free     0\n        boost    0\n        min      0\n        low      0\n        high     0\n        promo    0\n        spanned  0\n        present  0\n        managed  0\n        cma      0\n        protection: (0)\n      nr_free_pages 0\n  pagesets\n    cpu: 0\n              count: 0\n              high:  {PCP_HIGH}\n              batch: {PCP_BATCH}\n  vm stats threshold: 0\n    cpu: 1\n              count: 0\n              high:  {PCP_HIGH}\n              batch: {PCP_BATCH}\n  vm stats threshold: 0\n  node_unreclaimable:  0\n  start_pfn:           0\n"
        )
    );
    run(
        &mut rmm,
        "reserve 256\npage-alloc 0 3\npage-free 0 1\npage-alloc 10 2",
    );
    let (text, fields) = zoneinfo(&rmm);
    let stats = rmm.pages().stats();
    assert_eq!(fields["pages free"], stats.pages_free);
    assert_eq!(fields["nr_free_pages"], stats.pages_free);
    assert_eq!((fields["min"], fields["low"], fields["high"]), (64, 80, 96));
    assert_eq!(fields["promo"], 112);
    assert_eq!(fields["present"], 3 * CHUNK);
    assert_eq!(fields["managed"], 3 * CHUNK);
    assert!(fields["spanned"] >= 3 * CHUNK, "holes between chunks count");
    let (start, end) = rmm.pages().span().unwrap();
    assert_eq!(fields["start_pfn"], platform.page_frame(start));
    assert_eq!(fields["spanned"], (end - start.as_ptr() as usize) >> 12);
    // CPU 1 took its first page straight from the new chunk, refilled its
    // order-0 list with a batch for the next two, and got one back.
    let counts: Vec<usize> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("count: "))
        .map(|count| count.parse().unwrap())
        .collect();
    assert_eq!(counts, vec![0, rmm.pages().pcp_pages(1)]);
    assert_eq!(counts[1], PCP_BATCH - 2 + 1);
    rmm.teardown();
}
