// SPDX-License-Identifier: GPL-2.0

//! Fault injection (`fail N`, `Rmm::set_fail_every`): every N-th page
//! request fails, whether a slab cache asks for a new slab, the page
//! allocator asks the platform for a chunk, or `page-alloc` asks for
//! blocks. Checked at several N: allocations fail with `-ENOMEM` keeping
//! what they got, every failure is counted, no half-built slab remains and
//! no constructor runs for a slab that was not built, no page or piece of
//! bookkeeping leaks, and after `fail 0` everything works again and all
//! memory comes back on shrink and teardown.

use proptest::prelude::*;
use rmm_core::gfp::Gfp;
use rmm_core::host::HostPlatform;
use rmm_core::kmalloc::Kmalloc;
use rmm_core::page_alloc::{FailScope, FaultStats, PageAllocator, MAX_ORDER};
use rmm_core::platform::AllocError;
use rmm_core::slab::{KmemCache, SlabFlags};
use rmm_core::state::{errno, pattern_byte, pattern_ctor, CtlError, CtlErrorKind, Rmm, DEMO_CACHE};
use std::collections::BTreeMap;

mod common;
use common::{key_values, new_rmm, run, run_err, stats_text, Shared};

/// The rates the tests inject at.
const RATES: [usize; 5] = [1, 2, 3, 7, 13];

/// The objects (or blocks) a command that ran out of memory kept.
fn kept(error: &CtlError, requested: usize) -> usize {
    assert_eq!(error.errno(), errno::ENOMEM, "{error}");
    match error.kind() {
        CtlErrorKind::OutOfMemory {
            done,
            requested: asked,
        } => {
            assert_eq!(asked, requested);
            assert!(done < requested);
            done
        }
        kind => panic!("unexpected error {kind:?}"),
    }
}

/// Runs `alloc NAME COUNT` (or `page-alloc`), returning how many it got.
fn alloc_some(rmm: &mut Rmm<Shared>, line: &str, count: usize) -> usize {
    match rmm.execute(line.as_bytes()) {
        Ok(()) => count,
        Err(error) => kept(&error, count),
    }
}

/// The `rmm` line of the stats as key/value pairs.
fn rmm_line(rmm: &Rmm<Shared>) -> BTreeMap<String, u64> {
    let out = stats_text(rmm);
    let line = out.lines().last().unwrap();
    assert!(line.starts_with("rmm "), "{line}");
    key_values(line)
}

fn failures(rmm: &Rmm<Shared>) -> u64 {
    rmm.pages().stats().failures.iter().sum()
}

/// Whether the test created cache `name` with the pattern constructor (the
/// tests name those caches `c...`).
fn has_ctor(name: &str) -> bool {
    name.starts_with('c')
}

/// Everything that must hold whatever failed: the pages handed out are
/// exactly the slabs of the caches and the held blocks (no half-built slab,
/// no lost block), the platform's pages are exactly the chunks, constructors
/// ran for every object of every slab built and for no other, every held
/// object is in constructed state, and the allocators' own invariants.
fn check_accounting(platform: &Shared, rmm: &Rmm<Shared>) {
    let pages = rmm.pages().stats();
    let mut slab_pages = 0;
    for entry in rmm.caches() {
        let cache = entry.cache;
        let name = cache.name();
        let info = cache.slabinfo();
        let stats = cache.stats();
        slab_pages += info.num_slabs * info.pagesperslab;
        assert_eq!(stats.grown - stats.reaped, info.num_slabs, "{name}");
        assert_eq!(info.num_objs, info.num_slabs * info.objperslab, "{name}");
        assert_eq!(stats.active, entry.held, "{name}");
        assert_eq!(info.active_objs, stats.active + stats.cached, "{name}");
        if has_ctor(name) || name == DEMO_CACHE {
            assert_eq!(stats.ctor_calls, stats.grown * info.objperslab, "{name}");
        } else {
            assert_eq!(stats.ctor_calls, 0, "{name}");
        }
        if has_ctor(name) {
            let size = cache.object_size();
            for addr in rmm.held_objects(name).unwrap() {
                // SAFETY: a held object of `size` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(addr.as_ptr(), size) };
                assert!(
                    bytes
                        .iter()
                        .enumerate()
                        .all(|(offset, &byte)| byte == pattern_byte(offset)),
                    "{name}: object {addr:p} not constructed"
                );
            }
        }
        cache.check_invariants(rmm.pages()).unwrap();
    }
    let block_pages: usize = (0..=MAX_ORDER).map(|o| rmm.held_blocks(o) << o).sum();
    assert_eq!(rmm.kmalloc().large_blocks(), 0);
    assert_eq!(pages.pages_allocated, slab_pages + block_pages);
    assert_eq!(platform.host().pages_outstanding(), pages.pages_total);
    rmm.pages().check_invariants().unwrap();
}

/// Checks the injector's counters against the requests seen since the
/// rate was set: `injected` grows by the requests over `every`.
fn check_rate(rmm: &Rmm<Shared>, since: FaultStats, every: usize) -> FaultStats {
    let now = rmm.fault_stats();
    assert_eq!(now.every, every);
    let requests = now.requests - since.requests;
    assert_eq!(now.injected - since.injected, requests / every as u64);
    now
}

/// Frees everything, shrinks, tears down and drops: no page and no
/// bookkeeping may remain.
fn release_everything(platform: &Shared, mut rmm: Rmm<Shared>) {
    let names: Vec<String> = rmm
        .caches()
        .filter(|entry| entry.held > 0)
        .map(|entry| entry.cache.name().to_string())
        .collect();
    for name in names {
        run(&mut rmm, &format!("free {name} all"));
    }
    for order in 0..=MAX_ORDER {
        run(&mut rmm, &format!("page-free {order} all"));
    }
    check_accounting(platform, &rmm);
    rmm.shrink_all();
    assert_eq!(platform.host().pages_outstanding(), 0, "pages after shrink");
    rmm.teardown();
    assert_eq!(
        platform.host().pages_outstanding(),
        0,
        "pages after teardown"
    );
    drop(rmm);
    assert_eq!(platform.host().meta_outstanding(), 0, "bookkeeping left");
}

/// At every rate and for caches of every kind (small on-slab objects,
/// debug caches, off-slab descriptors, multi-page slabs, a generic cache),
/// growing fails cleanly and what was allocated stays usable.
#[test]
fn slab_growth_fails_cleanly_at_every_rate() {
    let caches = [
        ("create c_small 64 ctor", "c_small", 3000),
        ("create c_debug 200 ctor debug", "c_debug", 1500),
        ("create c_off 1500 ctor", "c_off", 300),
        ("create c_pages 9000 ctor", "c_pages", 100),
        ("create plain 100", "plain", 2000),
        ("create big_debug 3000 debug", "big_debug", 200),
        ("", "kmalloc-512", 1000),
    ];
    for every in RATES {
        let (platform, mut rmm) = new_rmm(2);
        for (create, _, _) in caches {
            if !create.is_empty() {
                run(&mut rmm, create);
            }
        }
        run(&mut rmm, &format!("fail {every}"));
        let since = rmm.fault_stats();
        let mut denied = 0;
        for round in 0..4 {
            for (_, name, count) in caches {
                let before = rmm.cache(name).unwrap().held;
                let got = alloc_some(&mut rmm, &format!("alloc {name} {count}"), count);
                denied += usize::from(got < count);
                assert_eq!(rmm.cache(name).unwrap().held, before + got);
                check_accounting(&platform, &rmm);
                if round % 2 == 1 && got > 1 {
                    run(&mut rmm, &format!("free {name} {}", got / 2));
                }
            }
        }
        let stats = check_rate(&rmm, since, every);
        assert!(denied > 0, "fail {every}: no allocation failed");
        assert!(stats.injected > 0);
        // Every failed command met at least one failed page allocation;
        // only injected ones fail here (the host has memory).
        assert!(failures(&rmm) >= 1 && failures(&rmm) <= stats.injected);
        let line = rmm_line(&rmm);
        assert_eq!(line["fail_every"], every as u64);
        assert_eq!(line["fail_requests"], stats.requests);
        assert_eq!(line["fail_injected"], stats.injected);
        if every == 1 {
            // Nothing at all could be allocated: no slab, no constructor.
            for (_, name, _) in caches {
                let stats = rmm.cache(name).unwrap().cache.stats();
                assert_eq!((stats.grown, stats.ctor_calls), (0, 0), "{name}");
            }
            assert_eq!(platform.host().pages_outstanding(), 0);
        }

        // Off again: everything works.
        run(&mut rmm, "fail 0");
        let since = rmm.fault_stats();
        for (_, name, count) in caches {
            run(&mut rmm, &format!("alloc {name} {count}"));
        }
        run(&mut rmm, "page-alloc 10 2\npage-alloc 0 100");
        assert_eq!(rmm.fault_stats().requests, since.requests);
        assert_eq!(rmm.fault_stats().injected, since.injected);
        check_accounting(&platform, &rmm);
        release_everything(&platform, rmm);
    }
}

/// `page-alloc` blocks are page requests: with memory at hand, request
/// number `k * N` still fails.
#[test]
fn page_alloc_requests_fail_every_nth() {
    let (platform, mut rmm) = new_rmm(2);
    // A chunk in the allocator, so that only block requests are made.
    run(&mut rmm, "page-alloc 0 1\npage-free 0 1");
    run(&mut rmm, "fail 3");
    let error = run_err(&mut rmm, "page-alloc 3 10");
    assert_eq!(kept(&error, 10), 2);
    assert_eq!(rmm.held_blocks(3), 2);
    assert_eq!(rmm.pages().stats().failures[3], 1);
    assert_eq!(
        rmm.fault_stats(),
        FaultStats {
            every: 3,
            scope: FailScope::All,
            requests: 3,
            injected: 1
        }
    );
    // The numbering goes on: requests 4 and 5 pass, 6 fails.
    let error = run_err(&mut rmm, "page-alloc 3 10");
    assert_eq!(kept(&error, 10), 2);
    assert_eq!(rmm.held_blocks(3), 4);

    run(&mut rmm, "fail 1");
    let error = run_err(&mut rmm, "page-alloc 0 1");
    assert_eq!(kept(&error, 1), 0);
    assert!(rmm.pages().stats().pages_free > 0, "memory was at hand");
    assert_eq!(rmm.pages().stats().failures[0], 1);
    assert_eq!(
        platform.host().take_reports().last().unwrap(),
        "rmm_ctl: page-alloc order 0: out of memory after 0 of 1 blocks, 0 kept (-ENOMEM)"
    );
    check_accounting(&platform, &rmm);

    run(&mut rmm, "fail 0\npage-alloc 3 10");
    assert_eq!(rmm.held_blocks(3), 14);
    release_everything(&platform, rmm);
}

/// The page allocator's requests to the platform for new chunks are page
/// requests too.
#[test]
fn chunk_requests_fail_too() {
    let (platform, mut rmm) = new_rmm(2);
    // Request 1 (the block) passes, request 2 (a chunk for it) fails.
    run(&mut rmm, "fail 2");
    let error = run_err(&mut rmm, "page-alloc 0 1");
    assert_eq!(kept(&error, 1), 0);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(rmm.pages().stats().chunks, 0);
    assert_eq!(rmm.pages().stats().failures[0], 1);

    // A slab the same way: its pages pass, the chunk under them does not.
    run(&mut rmm, "create c 64 ctor\nfail 2");
    let error = run_err(&mut rmm, "alloc c 1");
    assert_eq!(kept(&error, 1), 0);
    let stats = rmm.cache("c").unwrap().cache.stats();
    assert_eq!((stats.grown, stats.ctor_calls, stats.active), (0, 0, 0));
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(rmm.fault_stats().injected, 2);

    // With every third request failing the first slab gets its chunk.
    run(&mut rmm, "fail 3\nalloc c 1");
    assert_eq!(rmm.pages().stats().chunks, 1);
    check_accounting(&platform, &rmm);
    release_everything(&platform, rmm);
}

/// `fail N` is logged, shows in the stats, keeps its limits, and is
/// refused after teardown like every command.
#[test]
fn fail_command_and_its_errors() {
    let (platform, mut rmm) = new_rmm(2);
    assert_eq!(rmm.fault_stats(), FaultStats::default());
    run(&mut rmm, "fail 7");
    assert_eq!(
        platform.host().take_infos(),
        vec!["rmm_ctl: fail 7: one page request in 7 fails".to_string()]
    );
    assert_eq!(rmm_line(&rmm)["fail_every"], 7);
    for bad in [
        "fail 1000001",
        "fail -1",
        "fail",
        "fail 1 2",
        "fail 99999999999999999999",
    ] {
        let error = run_err(&mut rmm, bad);
        assert_eq!(error.errno(), errno::EINVAL, "{bad}");
        assert!(
            platform.host().take_reports()[0].starts_with("rmm_ctl: fail: "),
            "{bad}"
        );
        assert_eq!(rmm.fault_stats().every, 7, "{bad} changed the rate");
    }
    run(&mut rmm, "fail 1000000\nfail 0");
    assert_eq!(
        platform.host().take_infos()[1],
        "rmm_ctl: fail 0: fault injection off"
    );
    rmm.set_fail_every(5);
    assert_eq!(rmm_line(&rmm)["fail_every"], 5);
    rmm.teardown();
    assert_eq!(run_err(&mut rmm, "fail 0").errno(), errno::ENODEV);
    drop(rmm);
    assert_eq!(platform.host().meta_outstanding(), 0);
}

/// The module's `fail=N` sets the rate before the demo runs: with every
/// request failing the demo fails cleanly, its cache stays without slabs,
/// and after `fail 0` it works.
#[test]
fn demo_under_fail_1_fails_cleanly() {
    let (platform, mut rmm) = new_rmm(2);
    rmm.set_fail_every(1);
    let error = rmm.run_demo().unwrap_err();
    assert_eq!(error.errno(), errno::ENOMEM);
    let stats = rmm.cache(DEMO_CACHE).unwrap().cache.stats();
    assert_eq!((stats.grown, stats.ctor_calls, stats.active), (0, 0, 0));
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert!(!platform.host().reports().is_empty());
    rmm.set_fail_every(0);
    run(
        &mut rmm,
        &format!("alloc {DEMO_CACHE} 3\nfree {DEMO_CACHE} all"),
    );
    release_everything(&platform, rmm);
}

/// Large `kmalloc` blocks are page requests as well.
#[test]
fn large_kmalloc_fails_cleanly() {
    let platform = Shared::new(1);
    let pages = PageAllocator::new(platform.clone()).unwrap();
    let mut kmalloc = Kmalloc::new(&pages).unwrap();
    pages.faults().set_every(1);
    assert!(kmalloc.kmalloc(&pages, 100_000, Gfp::KERNEL).is_err());
    assert!(kmalloc.kmalloc(&pages, 100, Gfp::KERNEL).is_err());
    assert_eq!(kmalloc.large_blocks(), 0);
    assert_eq!(platform.host().pages_outstanding(), 0);
    pages.faults().set_every(0);
    let block = kmalloc.kmalloc(&pages, 100_000, Gfp::KERNEL).unwrap();
    assert_eq!(kmalloc.large_blocks(), 1);
    // SAFETY: allocated above, not used afterwards.
    unsafe { kmalloc.kfree(&pages, block) }.unwrap();
    kmalloc.destroy(&pages).unwrap();
    let total = pages.stats().pages_total;
    assert!(total > 0);
    assert_eq!(pages.shrink(), total);
    drop(pages);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(platform.host().meta_outstanding(), 0);
}

/// Several threads allocate and free with failures injected: failures are
/// clean under contention (constructors only for slabs built, exact
/// injection count), and everything comes back afterwards.
#[test]
fn concurrent_requests_under_injection() {
    const THREADS: usize = 4;
    const EVERY: usize = 5;
    let platform = Shared::new(THREADS);
    let pages = PageAllocator::new(platform.clone()).unwrap();
    let cache =
        KmemCache::create(&pages, "c_conc", 48, 0, SlabFlags::NONE, Some(pattern_ctor)).unwrap();
    let debug_cache =
        KmemCache::create(&pages, "conc_debug", 600, 0, SlabFlags::DEBUG, None).unwrap();
    pages.faults().set_every(EVERY);
    let (pages, cache, debug_cache) = (&pages, &cache, &debug_cache);
    let failed: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|cpu| {
                scope.spawn(move || {
                    HostPlatform::set_this_cpu(cpu);
                    let mut held = Vec::new();
                    let mut failed = 0;
                    for round in 0..3000 {
                        let target = if round % 3 == 0 { debug_cache } else { cache };
                        match target.alloc(pages, Gfp::KERNEL) {
                            Ok(obj) => held.push((target, obj)),
                            Err(AllocError) => failed += 1,
                        }
                        if round % 7 == 0 {
                            if let Ok(block) = pages.alloc_pages(1, Gfp::KERNEL) {
                                // SAFETY: just allocated at order 1, unused.
                                unsafe { pages.free_pages(block, 1) }.unwrap();
                            } else {
                                failed += 1;
                            }
                        }
                        if round % 5 == 4 {
                            // Give back the older half, keep the rest.
                            for (target, obj) in held.drain(..held.len() / 2) {
                                // SAFETY: allocated from `target`, freed once.
                                unsafe { target.free(pages, obj) }.unwrap();
                            }
                        }
                    }
                    for &(target, obj) in &held {
                        if std::ptr::eq(target, cache) {
                            // SAFETY: a 48-byte object of `cache` we hold.
                            let bytes = unsafe { std::slice::from_raw_parts(obj.as_ptr(), 48) };
                            assert!(bytes.iter().enumerate().all(|(i, &b)| b == pattern_byte(i)));
                        }
                    }
                    for (target, obj) in held {
                        // SAFETY: as above.
                        unsafe { target.free(pages, obj) }.unwrap();
                    }
                    failed
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let stats = pages.faults().stats();
    assert_eq!(stats.injected, stats.requests / EVERY as u64);
    assert!(failed > 0 && failed as u64 <= stats.injected);
    for target in [cache, debug_cache] {
        let info = target.slabinfo();
        let counters = target.stats();
        assert_eq!(counters.active, 0);
        assert_eq!(counters.grown - counters.reaped, info.num_slabs);
        target.check_invariants(pages).unwrap();
    }
    let counters = cache.stats();
    assert_eq!(
        counters.ctor_calls,
        counters.grown * cache.slabinfo().objperslab
    );
    assert_eq!(debug_cache.stats().ctor_calls, 0);
    assert!(platform.host().reports().is_empty());
    pages.faults().set_every(0);
    cache.destroy(pages).unwrap();
    debug_cache.destroy(pages).unwrap();
    pages.shrink();
    assert_eq!(platform.host().pages_outstanding(), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Fail(usize),
    Alloc(usize, usize),
    Free(usize, usize),
    Shrink(usize),
    PageAlloc(u32, usize),
    PageFree(u32, usize),
}

/// Caches of the model: two with the constructor, one off-slab, a generic.
const MODEL_CACHES: [(&str, &str); 4] = [
    ("c1", "create c1 40 ctor"),
    ("c2", "create c2 2000 ctor debug"),
    ("plain", "create plain 700"),
    ("kmalloc-64", ""),
];

fn op_strategy() -> impl Strategy<Value = Op> {
    let cache = 0..MODEL_CACHES.len();
    prop_oneof![
        1 => prop_oneof![Just(0usize), Just(1), Just(2), Just(3), Just(7)].prop_map(Op::Fail),
        4 => (cache.clone(), 1usize..400).prop_map(|(c, n)| Op::Alloc(c, n)),
        3 => (cache.clone(), 0usize..400).prop_map(|(c, n)| Op::Free(c, n)),
        1 => cache.prop_map(Op::Shrink),
        1 => (0u32..5, 1usize..10).prop_map(|(o, n)| Op::PageAlloc(o, n)),
        1 => (0u32..5, 0usize..10).prop_map(|(o, n)| Op::PageFree(o, n)),
    ]
}

fn proptest_config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Random commands with random rates: allocations either succeed or
    /// fail with `-ENOMEM` keeping a prefix, the books always balance, and
    /// everything comes back at the end.
    #[test]
    fn random_commands_with_injected_failures(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let (platform, mut rmm) = new_rmm(3);
        for (_, create) in MODEL_CACHES {
            if !create.is_empty() {
                run(&mut rmm, create);
            }
        }
        let mut held = [0usize; MODEL_CACHES.len()];
        let mut blocks = [0usize; 5];
        let mut every = 0;
        let mut since = rmm.fault_stats();
        for op in &ops {
            match *op {
                Op::Fail(n) => {
                    run(&mut rmm, &format!("fail {n}"));
                    every = n;
                    since = rmm.fault_stats();
                }
                Op::Alloc(c, n) => {
                    let name = MODEL_CACHES[c].0;
                    let got = alloc_some(&mut rmm, &format!("alloc {name} {n}"), n);
                    prop_assert!(got == n || every != 0, "failed with injection off");
                    held[c] += got;
                }
                Op::Free(c, n) => {
                    let name = MODEL_CACHES[c].0;
                    let n = n.min(held[c]);
                    if n > 0 {
                        run(&mut rmm, &format!("free {name} {n}"));
                        held[c] -= n;
                    }
                }
                Op::Shrink(c) => run(&mut rmm, &format!("shrink {}", MODEL_CACHES[c].0)),
                Op::PageAlloc(order, n) => {
                    let got = alloc_some(&mut rmm, &format!("page-alloc {order} {n}"), n);
                    prop_assert!(got == n || every != 0, "failed with injection off");
                    blocks[order as usize] += got;
                }
                Op::PageFree(order, n) => {
                    let n = n.min(blocks[order as usize]);
                    if n > 0 {
                        run(&mut rmm, &format!("page-free {order} {n}"));
                        blocks[order as usize] -= n;
                    }
                }
            }
            for (c, (name, _)) in MODEL_CACHES.iter().enumerate() {
                prop_assert_eq!(rmm.cache(name).unwrap().held, held[c]);
            }
            for (order, &count) in blocks.iter().enumerate() {
                prop_assert_eq!(rmm.held_blocks(order as u32), count);
            }
            if every != 0 {
                check_rate(&rmm, since, every);
            }
            check_accounting(&platform, &rmm);
        }
        run(&mut rmm, "fail 0");
        release_everything(&platform, rmm);
    }
}
