// SPDX-License-Identifier: GPL-2.0

//! Tests of the module state behind the control file: every command, every
//! error code and its report line, that a failing command changes nothing,
//! partial progress on running out of memory, constructor pattern checks,
//! shrinking, the demo, teardown returning every page and every piece of
//! bookkeeping, and a random model of command sequences.

use proptest::prelude::*;
use rmm_core::host::HostPlatform;
use rmm_core::kmalloc::KMALLOC_NAMES;
use rmm_core::page_alloc::CHUNK_ORDER;
use rmm_core::platform::Platform;
use rmm_core::ratelimit::{DEFAULT_BURST, DEFAULT_INTERVAL_NS};
use rmm_core::slab::SlabFreeError;
use rmm_core::state::{
    demo_ctor_logs, errno, pattern_byte, CtlError, CtlErrorKind, Missed, ReapStats, Rmm, Student,
    TeardownSummary, Verb, CORRUPTION_REPORTS, DEMO_CACHE, MAX_USER_CACHES, RESCHED_EVERY,
};
use rmm_core::views::{write_buddyinfo, write_slabinfo, write_stats};
use std::collections::{BTreeMap, HashSet};
use std::ptr::NonNull;

mod common;
use common::{cache_stats, new_rmm, run, run_err, Shared};

/// Everything the three views show.
/// Everything the three views show, but the failed-command counters: a
/// failed command changes those and nothing else.
fn render(rmm: &Rmm<Shared>) -> String {
    let mut out = String::new();
    write_slabinfo(&mut out, rmm).unwrap();
    write_buddyinfo(&mut out, rmm).unwrap();
    write_stats(&mut out, rmm).unwrap();
    out.split(' ')
        .filter(|word| !word.starts_with("ctl_errors"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn failed_commands_are_counted_and_their_lines_rate_limited() {
    let (platform, mut rmm) = new_rmm(1);
    platform.host().take_reports();
    // Three thousand failing writes within one rate-limit window.
    for _ in 0..3000 {
        run_err(&mut rmm, "destroy nosuch");
    }
    let reports = platform.host().take_reports();
    assert_eq!(reports.len(), DEFAULT_BURST, "{reports:?}");
    assert!(reports.iter().all(|line| line.contains("destroy nosuch")));
    assert_eq!(rmm.ctl_errors(), (3000, 3000 - DEFAULT_BURST));
    let mut stats = String::new();
    write_stats(&mut stats, &rmm).unwrap();
    assert!(
        stats.contains(&format!(
            " ctl_errors=3000 ctl_errors_unlogged={} ",
            3000 - DEFAULT_BURST
        )),
        "{stats}"
    );
    // After the window, the first line says how many were not logged.
    platform.host().advance_clock(DEFAULT_INTERVAL_NS + 1);
    run_err(&mut rmm, "destroy nosuch");
    let reports = platform.host().take_reports();
    assert_eq!(
        reports,
        [
            format!(
                "rmm_ctl: {} failed commands not logged (rate limit)",
                3000 - DEFAULT_BURST
            ),
            "rmm_ctl: destroy nosuch: no such cache (-ENOENT)".to_string()
        ]
    );
    assert_eq!(rmm.ctl_errors(), (3001, 3000 - DEFAULT_BURST));
    teardown_and_drop(&platform, rmm);
}

fn held(rmm: &Rmm<Shared>, name: &str) -> usize {
    rmm.cache(name).map_or(0, |entry| entry.held)
}

fn teardown_and_drop(platform: &Shared, mut rmm: Rmm<Shared>) -> TeardownSummary {
    let summary = rmm.teardown();
    assert_eq!(
        platform.host().pages_outstanding(),
        0,
        "pages left after teardown"
    );
    drop(rmm);
    assert_eq!(
        platform.host().meta_outstanding(),
        0,
        "bookkeeping left after drop"
    );
    summary
}

/// The kernel layer keeps the state in a mutex shared by every CPU.
#[test]
fn rmm_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Rmm<HostPlatform>>();
    assert_send_sync::<CtlError>();
}

#[test]
fn commands_round_trip() {
    let (platform, mut rmm) = new_rmm(2);
    run(&mut rmm, "create foo 100\nalloc foo 10\n");
    assert_eq!(held(&rmm, "foo"), 10);
    let stats = cache_stats(&rmm, "foo");
    assert_eq!(stats["active"], 10);
    assert_eq!(stats["held"], 10);
    assert_eq!(stats["allocs"], 10);
    run(&mut rmm, "free foo 3");
    assert_eq!(held(&rmm, "foo"), 7);
    assert_eq!(cache_stats(&rmm, "foo")["active"], 7);
    run(&mut rmm, "free foo all\nfree foo all");
    assert_eq!(held(&rmm, "foo"), 0);
    assert_eq!(cache_stats(&rmm, "foo")["frees"], 10);
    run(&mut rmm, "shrink foo\ndestroy foo");
    assert!(rmm.cache("foo").is_none());
    assert_eq!(rmm.user_caches(), 0);
    // The name is free again.
    run(&mut rmm, "create foo 200\ndestroy foo");
    assert!(
        platform.host().reports().is_empty(),
        "{:?}",
        platform.host().reports()
    );
    teardown_and_drop(&platform, rmm);
}

#[test]
fn generic_caches_are_addressable_by_name() {
    let (platform, mut rmm) = new_rmm(2);
    for name in KMALLOC_NAMES {
        run(&mut rmm, &format!("alloc {name} 3\nfree {name} 1"));
        assert_eq!(held(&rmm, name), 2, "{name}");
        assert_eq!(cache_stats(&rmm, name)["active"], 2, "{name}");
    }
    run(&mut rmm, "shrink kmalloc-64");
    let summary = teardown_and_drop(&platform, rmm);
    assert_eq!(summary.objects_freed, 2 * KMALLOC_NAMES.len());
    assert_eq!(summary.caches_destroyed, KMALLOC_NAMES.len());
}

#[test]
fn create_options_shape_the_cache() {
    let (platform, mut rmm) = new_rmm(2);
    run(
        &mut rmm,
        "create aligned 40 align=256\ncreate hw 20 hwcache\ncreate dbg 40 debug\ncreate plain 40\n\
         alloc aligned 5\nalloc hw 5\nalloc dbg 5",
    );
    let aligned = rmm.cache("aligned").unwrap().cache;
    assert_eq!(aligned.align(), 256);
    for obj in rmm.held_objects("aligned").unwrap() {
        assert_eq!(obj.as_ptr() as usize % 256, 0);
    }
    let hw = rmm.cache("hw").unwrap().cache;
    assert!(hw.align() >= 32, "hwcache alignment {}", hw.align());
    for obj in rmm.held_objects("hw").unwrap() {
        assert_eq!(obj.as_ptr() as usize % hw.align(), 0);
    }
    let dbg = rmm.cache("dbg").unwrap().cache;
    assert!(dbg.flags().debug());
    assert!(
        dbg.size() > rmm.cache("plain").unwrap().cache.size(),
        "no red zones"
    );
    assert!(!rmm.cache("plain").unwrap().cache.flags().debug());
    teardown_and_drop(&platform, rmm);
}

#[test]
fn debug_all_debugs_every_cache() {
    let platform = Shared::new(2);
    let mut rmm = Rmm::new(platform.clone(), true).unwrap();
    assert!(rmm.debug_all());
    run(&mut rmm, "create mine 64\nalloc mine 3\nalloc kmalloc-32 3");
    for entry in rmm.caches() {
        assert!(entry.cache.flags().debug(), "{}", entry.cache.name());
    }
    teardown_and_drop(&platform, rmm);
}

/// Runs a command that must fail with `errno` and the report line `line`,
/// and checks that the views did not change.
fn check_refused(rmm: &mut Rmm<Shared>, platform: &Shared, input: &str, errno: i32, line: &str) {
    platform.host().take_reports();
    // A new rate-limit window, so that the line is logged whatever came
    // before.
    platform.host().advance_clock(DEFAULT_INTERVAL_NS + 1);
    let before = render(rmm);
    let error = run_err(rmm, input);
    assert_eq!(error.errno(), errno, "{input:?}: {error}");
    assert_eq!(render(rmm), before, "{input:?} changed the state");
    let reports: Vec<String> = platform
        .host()
        .take_reports()
        .into_iter()
        .filter(|report| !report.ends_with("failed commands not logged (rate limit)"))
        .collect();
    assert_eq!(reports, vec![line.to_string()], "{input:?}");
}

#[test]
fn every_error_code_changes_nothing() {
    let (platform, mut rmm) = new_rmm(3);
    run(&mut rmm, "create foo 64\nalloc foo 3\npage-alloc 2 2");
    let cases: &[(&str, i32, &str)] = &[
        (
            "create foo 32",
            errno::EEXIST,
            "rmm_ctl: create foo: a cache of that name exists (-EEXIST)",
        ),
        (
            "create kmalloc-64 64",
            errno::EEXIST,
            "rmm_ctl: create kmalloc-64: a cache of that name exists (-EEXIST)",
        ),
        (
            "alloc nope 1",
            errno::ENOENT,
            "rmm_ctl: alloc nope: no such cache (-ENOENT)",
        ),
        (
            "free nope all",
            errno::ENOENT,
            "rmm_ctl: free nope: no such cache (-ENOENT)",
        ),
        (
            "shrink nope",
            errno::ENOENT,
            "rmm_ctl: shrink nope: no such cache (-ENOENT)",
        ),
        (
            "destroy nope",
            errno::ENOENT,
            "rmm_ctl: destroy nope: no such cache (-ENOENT)",
        ),
        (
            "destroy foo",
            errno::EBUSY,
            "rmm_ctl: destroy foo: 3 objects still allocated (-EBUSY)",
        ),
        (
            "destroy kmalloc-64",
            errno::EPERM,
            "rmm_ctl: destroy kmalloc-64: generic kmalloc caches cannot be destroyed (-EPERM)",
        ),
        (
            "free foo 4",
            errno::EINVAL,
            "rmm_ctl: free foo: 4 objects to free but only 3 held (-EINVAL)",
        ),
        (
            "page-free 2 3",
            errno::EINVAL,
            "rmm_ctl: page-free order 2: 3 blocks to free but only 2 held (-EINVAL)",
        ),
        (
            "page-free 5 1",
            errno::EINVAL,
            "rmm_ctl: page-free order 5: 1 blocks to free but only 0 held (-EINVAL)",
        ),
        (
            "frobnicate foo",
            errno::EINVAL,
            "rmm_ctl: line 1: unknown command (-EINVAL)",
        ),
        (
            "alloc foo 0",
            errno::EINVAL,
            "rmm_ctl: alloc: count must be 1 to 1048576 (-EINVAL)",
        ),
        (
            "create bar 0",
            errno::EINVAL,
            "rmm_ctl: create: size must be 1 to the largest object size (-EINVAL)",
        ),
        (
            "create bar 8 align=3",
            errno::EINVAL,
            "rmm_ctl: create: alignment must be a power of two up to the page size (-EINVAL)",
        ),
        (
            "page-alloc 11 1",
            errno::EINVAL,
            "rmm_ctl: page-alloc: order must be 0 to 10 (-EINVAL)",
        ),
        (
            "page-alloc 0 1 node=1",
            errno::EINVAL,
            "rmm_ctl: page-alloc order 0: no node 1 with memory (nodes with memory: 0) (-EINVAL)",
        ),
        (
            "page-alloc 0 1 node=x",
            errno::EINVAL,
            "rmm_ctl: page-alloc: node must be node=N, N a decimal node number (-EINVAL)",
        ),
        (
            "alloc foo 1 node=1",
            errno::EINVAL,
            "rmm_ctl: alloc foo: no node 1 with memory (nodes with memory: 0) (-EINVAL)",
        ),
        (
            "alloc foo",
            errno::EINVAL,
            "rmm_ctl: alloc: missing argument (-EINVAL)",
        ),
        (
            "shrink foo bar",
            errno::EINVAL,
            "rmm_ctl: shrink: unexpected argument (-EINVAL)",
        ),
        (
            "destroy bad/name",
            errno::EINVAL,
            "rmm_ctl: destroy: name must be 1 to 31 characters of A-Za-z0-9_.- (-EINVAL)",
        ),
        (
            "alloc foo\u{7f} 1",
            errno::EINVAL,
            "rmm_ctl: alloc: line is not printable text (-EINVAL)",
        ),
        (
            "\u{1b}[0m",
            errno::EINVAL,
            "rmm_ctl: line 1: line is not printable text (-EINVAL)",
        ),
        (
            "invalid-free nope interior",
            errno::ENOENT,
            "rmm_ctl: invalid-free nope: no such cache (-ENOENT)",
        ),
        (
            "invalid-free foo double",
            errno::EINVAL,
            "rmm_ctl: invalid-free foo: double frees are detected only in debug caches \
             (create ... debug, or debug=1) (-EINVAL)",
        ),
        (
            "invalid-free kmalloc-64 double",
            errno::EINVAL,
            "rmm_ctl: invalid-free kmalloc-64: double frees are detected only in debug caches \
             (create ... debug, or debug=1) (-EINVAL)",
        ),
        (
            "invalid-free foo sideways",
            errno::EINVAL,
            "rmm_ctl: invalid-free: kind must be interior, foreign, wrong-cache or double (-EINVAL)",
        ),
        (
            "invalid-free foo",
            errno::EINVAL,
            "rmm_ctl: invalid-free: missing argument (-EINVAL)",
        ),
    ];
    for &(input, errno, line) in cases {
        check_refused(&mut rmm, &platform, input, errno, line);
    }
    assert_eq!(held(&rmm, "foo"), 3);
    assert_eq!(rmm.held_blocks(2), 2);

    // Too many caches: fill up to the limit, then one more.
    for index in rmm.user_caches()..MAX_USER_CACHES {
        run(&mut rmm, &format!("create c{index} 16"));
    }
    assert_eq!(rmm.user_caches(), MAX_USER_CACHES);
    check_refused(
        &mut rmm,
        &platform,
        "create one_too_many 16",
        errno::ENOSPC,
        "rmm_ctl: create one_too_many: too many caches (at most 64) (-ENOSPC)",
    );
    // Destroying one makes room again.
    run(&mut rmm, "destroy c10\ncreate one_more 16");
    assert_eq!(rmm.user_caches(), MAX_USER_CACHES);

    let summary = teardown_and_drop(&platform, rmm);
    assert_eq!(
        summary.caches_destroyed,
        MAX_USER_CACHES + KMALLOC_NAMES.len()
    );
    assert_eq!(summary.objects_freed, 3);
    assert_eq!(summary.blocks_freed, 2);
}

#[test]
fn error_accessors_and_display() {
    let (platform, mut rmm) = new_rmm(2);
    let error = run_err(
        &mut rmm,
        "create foo 8\n\nalloc foo 2\ndestroy foo\nalloc foo 5\n",
    );
    assert_eq!(error.line(), 4);
    assert_eq!(error.verb(), Some(Verb::Destroy));
    assert_eq!(error.cache_name(), Some("foo"));
    assert_eq!(error.kind(), CtlErrorKind::Busy { objects: 2 });
    assert_eq!(error.errno(), errno::EBUSY);
    assert_eq!(error.errno_name(), "EBUSY");
    assert_eq!(error.to_string(), "destroy foo: 2 objects still allocated");
    // The lines before the failing one stand, the ones after did not run.
    assert_eq!(held(&rmm, "foo"), 2);
    let parse = run_err(&mut rmm, "shrink foo\nbogus");
    assert_eq!(parse.line(), 2);
    assert_eq!(parse.verb(), None);
    assert_eq!(parse.to_string(), "line 2: unknown command");
    // Empty writes and blank lines are fine.
    run(&mut rmm, "");
    run(&mut rmm, "\n \t \n\n");
    teardown_and_drop(&platform, rmm);
}

/// `node=N` on a platform of two nodes: pinned blocks and objects land on
/// their node (by the platform's account of the pages), and a node without
/// memory or beyond the last is refused with its own line.
#[test]
fn node_options_pin_blocks_and_refuse_bad_nodes() {
    HostPlatform::set_this_cpu(0);
    let platform = Shared::with_nodes(2, 2);
    let mut rmm = Rmm::new(platform.clone(), false).expect("Rmm::new");
    run(
        &mut rmm,
        "create foo 64
alloc foo 3",
    );
    run(
        &mut rmm,
        "page-alloc 2 4 node=1
page-alloc 3 2 node=0
page-alloc 0 5",
    );
    let nodes: Vec<usize> = rmm
        .held_blocks_of(2)
        .chain(rmm.held_blocks_of(3))
        .chain(rmm.held_blocks_of(0))
        .map(|block| platform.page_node(block))
        .collect();
    assert_eq!(nodes, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    for (line, text) in [
        ("page-alloc 0 1 node=2", "page-alloc order 0: no node 2"),
        (
            "page-alloc 4 1 atomic node=5",
            "page-alloc order 4: no node 5",
        ),
        (
            "page-alloc 4 1 node=4096",
            "page-alloc order 4: no node 4096",
        ),
        ("alloc foo 1 node=7", "alloc foo: no node 7"),
    ] {
        check_refused(
            &mut rmm,
            &platform,
            line,
            errno::EINVAL,
            &format!("rmm_ctl: {text} with memory (nodes with memory: 0 1) (-EINVAL)"),
        );
    }
    assert_eq!(held(&rmm, "foo"), 3);
    // Objects of a user cache and a generic one, on the node named.
    run(
        &mut rmm,
        "alloc foo 50 node=1\nalloc kmalloc-128 40 node=1 atomic\nalloc foo 20 node=0",
    );
    let nodes: Vec<usize> = rmm
        .held_objects("foo")
        .unwrap()
        .map(|obj| platform.page_node(obj))
        .collect();
    assert_eq!(nodes.len(), 73);
    assert!(nodes[..20].iter().all(|&node| node == 0), "{nodes:?}");
    assert!(nodes[20..70].iter().all(|&node| node == 1), "{nodes:?}");
    assert!(rmm
        .held_objects("kmalloc-128")
        .unwrap()
        .all(|obj| platform.page_node(obj) == 1));
    // An unknown cache is still ENOENT with a good node, the node checked
    // first.
    assert_eq!(
        run_err(&mut rmm, "alloc nope 1 node=1").errno(),
        errno::ENOENT
    );
    assert_eq!(
        run_err(&mut rmm, "alloc nope 1 node=2").errno(),
        errno::EINVAL
    );
    let summary = teardown_and_drop(&platform, rmm);
    assert_eq!(summary.blocks_freed, 11);
    assert_eq!(summary.objects_freed, 73 + 40);
    for node in [0, 1] {
        assert_eq!(platform.host().node_pages_outstanding(node), 0);
    }
}

#[test]
fn destroy_needs_held_objects_freed_first() {
    let (platform, mut rmm) = new_rmm(2);
    run(&mut rmm, "create foo 300\nalloc foo 50");
    assert_eq!(
        run_err(&mut rmm, "destroy foo").kind(),
        CtlErrorKind::Busy { objects: 50 }
    );
    run(&mut rmm, "free foo 49");
    assert_eq!(
        run_err(&mut rmm, "destroy foo").kind(),
        CtlErrorKind::Busy { objects: 1 }
    );
    assert!(rmm.cache("foo").is_some());
    run(&mut rmm, "free foo 1\ndestroy foo");
    assert!(rmm.cache("foo").is_none());
    let mut slabinfo = String::new();
    write_slabinfo(&mut slabinfo, &rmm).unwrap();
    assert!(!slabinfo.lines().any(|line| line.starts_with("foo ")));
    teardown_and_drop(&platform, rmm);
}

#[test]
fn alloc_runs_out_of_memory_keeping_what_it_got() {
    let (platform, mut rmm) = new_rmm(2);
    // One 1 MiB object per slab, four slabs per 4 MiB chunk.
    run(&mut rmm, "create big 1048576");
    platform.host().fail_every(2);
    platform.host().take_reports();
    let error = run_err(&mut rmm, "alloc big 10");
    let CtlErrorKind::OutOfMemory { done, requested } = error.kind() else {
        panic!("unexpected error {error}");
    };
    assert_eq!(requested, 10);
    assert!(done > 0 && done < 10, "done {done}");
    assert_eq!(error.errno(), errno::ENOMEM);
    assert_eq!(held(&rmm, "big"), done);
    let stats = cache_stats(&rmm, "big");
    assert_eq!(stats["active"], done);
    assert_eq!(stats["held"], done);
    assert_eq!(
        platform.host().take_reports(),
        vec![format!(
            "rmm_ctl: alloc big: out of memory after {done} of 10 objects, {done} kept (-ENOMEM)"
        )]
    );

    // Page blocks: every order-10 block is a fresh chunk, the third
    // request to the platform fails.
    platform.host().fail_every(3);
    let error = run_err(&mut rmm, "page-alloc 10 5");
    assert_eq!(
        error.kind(),
        CtlErrorKind::OutOfMemory {
            done: 2,
            requested: 5
        }
    );
    assert_eq!(rmm.held_blocks(10), 2);
    assert!(platform.host().take_reports()[0]
        .ends_with("page-alloc order 10: out of memory after 2 of 5 blocks, 2 kept (-ENOMEM)"));
    let mut stats = String::new();
    write_stats(&mut stats, &rmm).unwrap();
    assert!(
        stats.contains("buddy order=10 allocs=2 failures=1 free_blocks=0 pcp_blocks=0 held=2\n"),
        "{stats}"
    );

    platform.host().fail_every(0);
    run(
        &mut rmm,
        "alloc big 3\nfree big all\npage-free 10 all\nshrink big",
    );
    assert_eq!(held(&rmm, "big"), 0);
    assert_eq!(platform.host().pages_outstanding(), 0);
    teardown_and_drop(&platform, rmm);
}

#[test]
fn page_blocks_round_trip() {
    let (platform, mut rmm) = new_rmm(2);
    run(&mut rmm, "page-alloc 3 4\npage-alloc 0 5");
    assert_eq!(rmm.held_blocks(3), 4);
    assert_eq!(rmm.held_blocks(0), 5);
    let stats = rmm.pages().stats();
    assert_eq!(stats.pages_allocated, 4 * 8 + 5);
    assert_eq!(stats.allocs[3], 4);
    run(&mut rmm, "page-free 3 1");
    assert_eq!(rmm.held_blocks(3), 3);
    assert_eq!(rmm.pages().stats().pages_allocated, 3 * 8 + 5);
    run(&mut rmm, "page-free 3 all\npage-free 3 all\npage-free 0 5");
    assert_eq!(rmm.pages().stats().pages_allocated, 0);
    rmm.pages().check_invariants().unwrap();
    assert!(platform.host().reports().is_empty());
    teardown_and_drop(&platform, rmm);
}

#[test]
fn many_held_objects_cross_stack_blocks() {
    let (platform, mut rmm) = new_rmm(2);
    run(
        &mut rmm,
        "alloc kmalloc-8 20000\nfree kmalloc-8 1234\nalloc kmalloc-8 1000",
    );
    let addrs: Vec<NonNull<u8>> = rmm.held_objects("kmalloc-8").unwrap().collect();
    assert_eq!(addrs.len(), 20000 - 1234 + 1000);
    assert_eq!(addrs.iter().collect::<HashSet<_>>().len(), addrs.len());
    let cache = rmm.cache("kmalloc-8").unwrap().cache;
    for &addr in &addrs {
        assert!(cache.contains(rmm.pages(), addr.as_ptr()));
    }
    // Long loops give the scheduler a chance.
    let before = platform.resched_calls();
    run(&mut rmm, "alloc kmalloc-8 1000");
    assert_eq!(
        platform.resched_calls() - before,
        (1000 - 1) / RESCHED_EVERY
    );
    teardown_and_drop(&platform, rmm);
}

#[test]
fn reap_passes_give_back_what_an_idle_cache_kept() {
    let (platform, mut rmm) = new_rmm(1);
    // 2048-byte objects, eight per slab: 400 of them are 50 slabs.
    run(&mut rmm, "create foo 2048\nalloc foo 400\nfree foo all");
    let stats = cache_stats(&rmm, "foo");
    assert_eq!(
        (stats["grown"], stats["reaped"], stats["slabs"]),
        (50, 0, 50)
    );
    let released = rmm.reap_all();
    assert!(released > 0);
    let stats = cache_stats(&rmm, "foo");
    assert_eq!(stats["reaped"], released);
    assert_eq!(stats["grown"] - stats["reaped"], stats["slabs"]);
    assert_eq!(rmm.reap_all(), 0, "nothing beyond the free limit is left");
    assert_eq!(
        rmm.reap_stats(),
        ReapStats {
            passes: 2,
            released
        }
    );
    assert!(
        render(&rmm).contains(&format!(" reaps=2 reaped_slabs={released} ")),
        "{}",
        render(&rmm)
    );
    teardown_and_drop(&platform, rmm);
}

#[test]
fn shrink_returns_slabs_and_chunks() {
    let (platform, mut rmm) = new_rmm(2);
    run(&mut rmm, "create foo 256\nalloc foo 3000\nfree foo all");
    assert!(platform.host().pages_outstanding() > 0);
    let reaped_before = cache_stats(&rmm, "foo")["reaped"];
    platform.host().take_infos();
    run(&mut rmm, "shrink foo");
    let stats = cache_stats(&rmm, "foo");
    assert!(stats["grown"] > 1);
    assert_eq!(stats["grown"], stats["reaped"], "every slab released");
    assert_eq!((stats["total"], stats["slabs"], stats["cached"]), (0, 0, 0));
    let infos = platform.host().take_infos();
    assert_eq!(infos.len(), 1);
    assert!(infos[0].starts_with("rmm_ctl: shrink foo: "), "{infos:?}");
    assert_eq!(
        released_by_shrink(&infos[0]),
        stats["reaped"] - reaped_before
    );
    assert!(released_by_shrink(&infos[0]) > 0);
    assert!(
        infos[0].ends_with(&format!("{} pages returned", 1 << CHUNK_ORDER)),
        "{infos:?}"
    );
    assert_eq!(platform.host().pages_outstanding(), 0);
    teardown_and_drop(&platform, rmm);
}

/// The slab count of a `shrink` info line.
fn released_by_shrink(line: &str) -> usize {
    let (_, rest) = line.split_once(": ").unwrap();
    let (_, rest) = rest.split_once(": ").unwrap();
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn shrink_all_and_reclaimable_pages() {
    let (platform, mut rmm) = new_rmm(2);
    run(
        &mut rmm,
        "create a 100\ncreate b 3000\nalloc a 5000\nalloc b 100\nalloc kmalloc-128 2000",
    );
    run(&mut rmm, "free a all\nfree b all\nfree kmalloc-128 all");
    // Freed objects flushed from the per-CPU arrays left empty slabs.
    let empty_slab_pages: usize = rmm
        .caches()
        .map(|entry| {
            let info = entry.cache.slabinfo();
            (info.num_slabs - info.active_slabs) * info.pagesperslab
        })
        .sum();
    assert!(empty_slab_pages > 0);
    let free_chunks = rmm.pages().buddyinfo()[CHUNK_ORDER as usize];
    assert_eq!(
        rmm.reclaimable_pages(),
        empty_slab_pages + (free_chunks << CHUNK_ORDER)
    );
    let total = rmm.pages().stats().pages_total;
    assert_eq!(rmm.shrink_all(), total, "everything was free");
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(rmm.reclaimable_pages(), 0);
    assert_eq!(rmm.shrink_all(), 0);
    // Held memory stays.
    run(&mut rmm, "alloc a 10\npage-alloc 4 1");
    assert!(rmm.shrink_all() == 0 && platform.host().pages_outstanding() > 0);
    assert_eq!(held(&rmm, "a"), 10);
    teardown_and_drop(&platform, rmm);
}

fn object_matches_pattern(obj: NonNull<u8>, size: usize) -> bool {
    // SAFETY: `obj` is an object held by the test's `Rmm`, `size` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(obj.as_ptr(), size) };
    bytes
        .iter()
        .enumerate()
        .all(|(offset, &byte)| byte == pattern_byte(offset))
}

#[test]
fn constructor_runs_once_per_object_created() {
    let (platform, mut rmm) = new_rmm(2);
    run(
        &mut rmm,
        "create c 40 ctor\ncreate d 700 ctor debug\nalloc c 1000\nalloc d 100",
    );
    for name in ["c", "d"] {
        let entry = rmm.cache(name).unwrap();
        let stats = cache_stats(&rmm, name);
        let per_slab = entry.cache.slabinfo().objperslab;
        assert!(stats["grown"] > 1);
        assert_eq!(stats["ctor_calls"], stats["grown"] * per_slab, "{name}");
        let size = entry.cache.object_size();
        for addr in rmm.held_objects(name).unwrap() {
            assert!(object_matches_pattern(addr, size));
        }
    }
    // Objects come back constructed: reallocating freed objects does not
    // construct them again; only new slabs do.
    let calls = cache_stats(&rmm, "c")["ctor_calls"];
    run(&mut rmm, "free c 50\nalloc c 50");
    assert_eq!(cache_stats(&rmm, "c")["ctor_calls"], calls);
    run(&mut rmm, "free c 900\nshrink c\nalloc c 900");
    let stats = cache_stats(&rmm, "c");
    assert!(stats["reaped"] > 0 && stats["ctor_calls"] > calls);
    let per_slab = rmm.cache("c").unwrap().cache.slabinfo().objperslab;
    assert_eq!(stats["ctor_calls"], stats["grown"] * per_slab);
    assert!(platform.host().reports().is_empty());
    teardown_and_drop(&platform, rmm);
}

#[test]
fn corrupted_constructed_objects_are_reported_and_repaired() {
    let (platform, mut rmm) = new_rmm(2);
    run(&mut rmm, "create c 40 ctor\nalloc c 10");
    let victim = rmm.held_objects("c").unwrap().next().unwrap();
    // SAFETY: a held object of 40 bytes nobody else uses.
    unsafe { victim.as_ptr().add(5).write(0) };
    platform.host().take_reports();
    run(&mut rmm, "free c 1");
    assert_eq!(
        platform.host().take_reports(),
        vec![format!(
            "rmm_ctl: free c: object {victim:p} corrupted: byte 5 is 0x00, expected {:#04x}",
            pattern_byte(5)
        )]
    );
    assert_eq!(cache_stats(&rmm, "c")["corruptions"], 1);
    assert_eq!(rmm.corruptions(), 1);
    assert_eq!(rmm.cache("c").unwrap().corruptions, 1);
    // The object was repaired before it went back: allocating it again
    // hands out the constructed pattern.
    run(&mut rmm, "alloc c 1");
    let again = rmm.held_objects("c").unwrap().next().unwrap();
    assert_eq!(again, victim, "LIFO per-CPU array returns the same object");
    assert!(object_matches_pattern(again, 40));

    // Many corruptions: a few lines, then a summary line.
    let addrs: Vec<NonNull<u8>> = rmm.held_objects("c").unwrap().collect();
    for &addr in &addrs {
        // SAFETY: as above.
        unsafe { addr.as_ptr().write(0xff) };
    }
    run(&mut rmm, "free c all");
    let reports = platform.host().take_reports();
    assert_eq!(reports.len(), CORRUPTION_REPORTS + 1, "{reports:?}");
    assert_eq!(
        reports[CORRUPTION_REPORTS],
        format!(
            "rmm_ctl: free c: {} more corrupted objects not listed",
            addrs.len() - CORRUPTION_REPORTS
        )
    );
    assert_eq!(rmm.corruptions(), 1 + addrs.len());
    assert_eq!(
        cache_stats(&rmm, "c")["errors"],
        0,
        "the slab allocator saw valid frees"
    );

    // Corruption found at teardown is counted in its summary.
    run(&mut rmm, "alloc c 2");
    let addr = rmm.held_objects("c").unwrap().next().unwrap();
    // SAFETY: as above.
    unsafe { addr.as_ptr().add(39).write(0) };
    let summary = teardown_and_drop(&platform, rmm);
    assert_eq!(summary.corruptions, 1);
    assert!(summary.to_string().ends_with(", 1 corrupted objects found"));
}

/// The reason a cache gives for refusing each `invalid-free` kind.
fn expected_reason(kind: &str) -> SlabFreeError {
    match kind {
        "interior" => SlabFreeError::NotAnObject,
        "foreign" | "wrong-cache" => SlabFreeError::NotFromCache,
        "double" => SlabFreeError::DoubleFree,
        _ => unreachable!("{kind}"),
    }
}

/// Runs `invalid-free NAME KIND`, which must succeed, and checks what it
/// leaves behind: one report line from the cache with the kind's reason,
/// one info line, the cache's `errors` up by one, and nothing else of the
/// cache changed that a user can see (held objects, their contents, the
/// slab invariants).
fn check_invalid_free(rmm: &mut Rmm<Shared>, platform: &Shared, name: &str, kind: &str) {
    let reason = expected_reason(kind).to_string();
    let before = cache_stats(rmm, name);
    let held_before: Vec<NonNull<u8>> = rmm.held_objects(name).unwrap().collect();
    platform.host().take_reports();
    platform.host().take_infos();
    run(rmm, &format!("invalid-free {name} {kind}"));
    let reports = platform.host().take_reports();
    assert_eq!(reports.len(), 1, "{name} {kind}: {reports:?}");
    let prefix = format!("rmm slab {name}: free of 0x");
    assert!(
        reports[0].starts_with(&prefix) && reports[0].ends_with(&format!(": {reason}")),
        "{name} {kind}: {}",
        reports[0]
    );
    assert_eq!(
        platform.host().take_infos(),
        vec![format!(
            "rmm_ctl: invalid-free {name} {kind}: detected: {reason}"
        )]
    );
    let after = cache_stats(rmm, name);
    assert_eq!(after["errors"], before["errors"] + 1, "{name} {kind}");
    for key in ["held", "active", "corruptions"] {
        assert_eq!(after[key], before[key], "{name} {kind}: {key}");
    }
    let held_after: Vec<NonNull<u8>> = rmm.held_objects(name).unwrap().collect();
    assert_eq!(held_after, held_before, "{name} {kind}: held objects");
    for entry in rmm.caches() {
        entry.cache.check_invariants(rmm.pages()).unwrap();
        assert_eq!(
            entry.cache.stats().active,
            entry.held,
            "{}",
            entry.cache.name()
        );
    }
    rmm.pages().check_invariants().unwrap();
}

#[test]
fn invalid_frees_are_detected_reported_and_counted() {
    let (platform, mut rmm) = new_rmm(3);
    // On-slab and off-slab, constructed, debugged, tiny, and generic caches,
    // each holding a few objects that must come through untouched.
    run(
        &mut rmm,
        "create small 40
create big 3000
create pat 100 ctor
create dbg 64 debug
\
         create tiny 1
\
         alloc small 5
alloc big 2
alloc pat 7
alloc dbg 3
alloc tiny 9
alloc kmalloc-64 4",
    );
    assert!(rmm.cache("small").unwrap().cache.layout().on_slab());
    assert!(!rmm.cache("big").unwrap().cache.layout().on_slab());
    let caches = [
        "small",
        "big",
        "pat",
        "dbg",
        "tiny",
        "kmalloc-64",
        "kmalloc-8",
    ];
    for name in caches {
        for kind in ["interior", "foreign", "wrong-cache"] {
            check_invalid_free(&mut rmm, &platform, name, kind);
        }
    }
    check_invalid_free(&mut rmm, &platform, "dbg", "double");
    check_invalid_free(&mut rmm, &platform, "dbg", "double");
    assert_eq!(cache_stats(&rmm, "dbg")["errors"], 5);
    assert_eq!(cache_stats(&rmm, "small")["errors"], 3);
    // The caches work on: more objects come and go, constructed ones with
    // their pattern intact, and the held ones free without complaint.
    run(
        &mut rmm,
        "alloc small 100
alloc pat 50
alloc dbg 20
free small all
free pat all
\
         free dbg all
free big all
free tiny all
free kmalloc-64 all",
    );
    assert_eq!(rmm.corruptions(), 0);
    assert!(platform.host().take_reports().is_empty());
    for name in ["small", "big", "pat", "dbg", "tiny"] {
        run(&mut rmm, &format!("destroy {name}"));
    }
    let summary = teardown_and_drop(&platform, rmm);
    assert_eq!(summary.objects_freed, 0);
    assert_eq!(summary.corruptions, 0);
}

#[test]
fn every_invalid_free_is_detected_when_everything_is_debugged() {
    let platform = Shared::new(2);
    let mut rmm = Rmm::new(platform.clone(), true).unwrap();
    run(
        &mut rmm,
        "create mine 200
alloc mine 4
alloc kmalloc-128 2",
    );
    for name in ["mine", "kmalloc-128"] {
        for kind in ["interior", "foreign", "wrong-cache", "double"] {
            check_invalid_free(&mut rmm, &platform, name, kind);
        }
    }
    run(
        &mut rmm,
        "free mine all
free kmalloc-128 all
destroy mine",
    );
    assert!(platform.host().take_reports().is_empty());
    teardown_and_drop(&platform, rmm);
}

#[test]
fn invalid_free_without_memory_changes_nothing() {
    let (platform, mut rmm) = new_rmm(2);
    run(&mut rmm, "create empty 64 debug");
    // Every page request fails: the cache cannot build the slab the
    // test's object would come from.
    run(&mut rmm, "fail 1");
    for kind in ["interior", "double"] {
        platform.host().take_reports();
        let error = run_err(&mut rmm, &format!("invalid-free empty {kind}"));
        assert_eq!(error.errno(), errno::ENOMEM, "{kind}: {error}");
        assert_eq!(error.kind(), CtlErrorKind::NoMemory);
        assert_eq!(
            platform.host().take_reports(),
            vec!["rmm_ctl: invalid-free empty: out of memory (-ENOMEM)".to_string()]
        );
        assert_eq!(cache_stats(&rmm, "empty")["errors"], 0);
        assert_eq!(cache_stats(&rmm, "empty")["active"], 0);
    }
    run(
        &mut rmm,
        "fail 0
invalid-free empty interior
destroy empty",
    );
    teardown_and_drop(&platform, rmm);
}

#[test]
fn missed_invalid_frees_say_how() {
    assert_eq!(
        Missed::Accepted.to_string(),
        "not detected: the cache accepted the free"
    );
    assert_eq!(
        Missed::WrongReason {
            got: SlabFreeError::NotFromCache,
            expected: SlabFreeError::NotAnObject
        }
        .to_string(),
        "refused as \"not an object of this cache\", expected \"not the start of an object\""
    );
    assert_eq!(
        Missed::NotCounted.to_string(),
        "refused but not counted in errors"
    );
}

#[test]
fn demo_logs_and_leaves_its_cache() {
    let (platform, mut rmm) = new_rmm(2);
    rmm.run_demo().unwrap();
    let infos = platform.host().take_infos();
    let entry = rmm.cache(DEMO_CACHE).expect("the demo's cache stays");
    let info = entry.cache.slabinfo();
    assert_eq!(entry.cache.object_size(), std::mem::size_of::<Student>());
    assert_eq!(
        infos[0],
        format!(
            "demo: created cache rmm_student: 20 byte students in {} byte slots, {} per slab",
            info.objsize, info.objperslab
        )
    );
    let ctor_lines: Vec<&String> = infos
        .iter()
        .filter(|line| line.contains("constructor"))
        .collect();
    let calls = cache_stats(&rmm, DEMO_CACHE)["ctor_calls"];
    assert_eq!(calls, info.objperslab);
    let expected: Vec<String> = (1..=calls)
        .filter(|&call| demo_ctor_logs(call))
        .map(|call| format!("demo: student constructor running (call {call})"))
        .collect();
    assert_eq!(ctor_lines, expected.iter().collect::<Vec<_>>());
    assert!(ctor_lines.len() < 16, "rate limit");
    let rest: Vec<&str> = infos[1 + ctor_lines.len()..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        rest,
        [
            "student 1: id=1 name=alice",
            "student 2: id=2 name=bob",
            &format!(
                "demo: {} objects in the first slab, each constructed once ({} calls)",
                info.objperslab, calls
            ),
            "demo: freed both students; rmm_student stays until unload",
        ]
    );
    let stats = cache_stats(&rmm, DEMO_CACHE);
    assert_eq!((stats["allocs"], stats["frees"], stats["held"]), (2, 2, 0));
    let mut slabinfo = String::new();
    write_slabinfo(&mut slabinfo, &rmm).unwrap();
    assert!(slabinfo.lines().nth(2).unwrap().starts_with("rmm_student "));
    // A second run finds the cache taken.
    assert_eq!(rmm.run_demo().unwrap_err().errno(), errno::EEXIST);
    // Later allocations go on numbering the constructor's calls, and log
    // the powers of two only.
    run(&mut rmm, &format!("alloc {DEMO_CACHE} 500"));
    let calls_after = cache_stats(&rmm, DEMO_CACHE)["ctor_calls"];
    let expected: Vec<String> = (calls + 1..=calls_after)
        .filter(|&call| demo_ctor_logs(call))
        .map(|call| format!("demo: student constructor running (call {call})"))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(platform.host().take_infos(), expected);
    let summary = teardown_and_drop(&platform, rmm);
    assert_eq!(summary.caches_destroyed, 1 + KMALLOC_NAMES.len());
    assert_eq!(summary.objects_freed, 500);
}

#[test]
fn teardown_frees_everything_once() {
    let (platform, mut rmm) = new_rmm(4);
    run(
        &mut rmm,
        "create a 24 ctor\ncreate b 5000 debug\ncreate c 64 hwcache\n\
         alloc a 700\nalloc b 30\nalloc c 1\nalloc kmalloc-8192 3\nalloc kmalloc-96 200\n\
         page-alloc 0 20\npage-alloc 5 3\npage-alloc 10 1\nvmalloc v1 10K\nvmalloc v2 1M",
    );
    let pages_total = rmm.pages().stats().pages_total;
    let summary = rmm.teardown();
    assert_eq!(
        summary,
        TeardownSummary {
            objects_freed: 700 + 30 + 1 + 3 + 200,
            blocks_freed: 24,
            caches_destroyed: 3 + KMALLOC_NAMES.len(),
            pages_returned: pages_total,
            corruptions: 0,
            areas_freed: 2,
        }
    );
    assert_eq!(
        summary.to_string(),
        format!("freed 934 objects and 24 page blocks, unmapped 2 vmalloc areas, destroyed 16 caches, returned {pages_total} pages")
    );
    assert_eq!(rmm.areas().stats().areas, 0);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert!(rmm.is_torn_down());
    assert_eq!(rmm.caches().count(), 0);
    assert_eq!(rmm.user_caches(), 0);
    assert_eq!(rmm.shrink_all(), 0);
    assert_eq!(rmm.reclaimable_pages(), 0);
    // Commands are refused, a second teardown does nothing.
    let error = run_err(&mut rmm, "\ncreate x 8");
    assert_eq!((error.errno(), error.line()), (errno::ENODEV, 2));
    assert_eq!(
        run_err(&mut rmm, "alloc kmalloc-8 1").errno(),
        errno::ENODEV
    );
    assert_eq!(rmm.teardown(), TeardownSummary::default());
    let reports = platform.host().take_reports();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(platform.host().mappings_outstanding(), 0);
    platform.host().take_infos();
    drop(rmm);
    assert_eq!(platform.host().meta_outstanding(), 0);
    assert!(
        platform.host().infos().is_empty(),
        "drop after teardown logs nothing"
    );
}

#[test]
fn drop_without_teardown_frees_everything() {
    let (platform, mut rmm) = new_rmm(2);
    run(
        &mut rmm,
        "create a 100 ctor\nalloc a 300\nalloc kmalloc-1024 7\npage-alloc 2 3",
    );
    drop(rmm);
    assert_eq!(platform.host().pages_outstanding(), 0);
    assert_eq!(platform.host().meta_outstanding(), 0);
    let infos = platform.host().infos();
    assert_eq!(infos.len(), 1);
    assert!(
        infos[0].starts_with("teardown: freed 307 objects and 3 page blocks, destroyed 14 caches"),
        "{infos:?}"
    );
    assert!(platform.host().reports().is_empty());
}

#[test]
fn views_and_shrinker_run_beside_each_other() {
    let (platform, mut rmm) = new_rmm(4);
    run(
        &mut rmm,
        "create a 100\nalloc a 4000\nfree a 3000\nalloc kmalloc-64 500",
    );
    let rmm_ref = &rmm;
    std::thread::scope(|scope| {
        for cpu in 0..4 {
            scope.spawn(move || {
                HostPlatform::set_this_cpu(cpu);
                for _ in 0..20 {
                    let _ = rmm_ref.reclaimable_pages();
                    let _ = rmm_ref.shrink_all();
                    assert!(!render(rmm_ref).is_empty());
                }
            });
        }
    });
    for entry in rmm.caches() {
        entry.cache.check_invariants(rmm.pages()).unwrap();
    }
    assert_eq!(held(&rmm, "a"), 1000);
    teardown_and_drop(&platform, rmm);
}

/// One command of the random model.
#[derive(Clone, Debug)]
enum Op {
    Create(usize, usize, bool, bool),
    Alloc(usize, usize),
    Free(usize, Option<usize>),
    Shrink(usize),
    Destroy(usize),
    PageAlloc(u32, usize),
    PageFree(u32, Option<usize>),
    InvalidFree(usize, usize),
}

/// The kinds of `invalid-free`.
const FREE_KINDS: [&str; 4] = ["interior", "foreign", "wrong-cache", "double"];

/// Names the model uses: three of its own and one generic cache.
const MODEL_NAMES: [&str; 4] = ["a", "b", "c", "kmalloc-64"];

fn op_strategy() -> impl Strategy<Value = Op> {
    let name = 0..MODEL_NAMES.len();
    let count = prop_oneof![Just(None), (1usize..200).prop_map(Some)];
    prop_oneof![
        1 => (name.clone(), 1usize..3000, any::<bool>(), any::<bool>())
            .prop_map(|(n, size, ctor, debug)| Op::Create(n, size, ctor, debug)),
        3 => (name.clone(), 1usize..300).prop_map(|(n, count)| Op::Alloc(n, count)),
        3 => (name.clone(), count.clone()).prop_map(|(n, count)| Op::Free(n, count)),
        1 => name.clone().prop_map(Op::Shrink),
        1 => name.clone().prop_map(Op::Destroy),
        1 => (0u32..5, 1usize..8).prop_map(|(order, count)| Op::PageAlloc(order, count)),
        1 => (0u32..5, count).prop_map(|(order, count)| Op::PageFree(order, count)),
        1 => (name, 0..FREE_KINDS.len()).prop_map(|(n, kind)| Op::InvalidFree(n, kind)),
    ]
}

fn count_word(count: Option<usize>) -> String {
    count.map_or("all".to_string(), |n| n.to_string())
}

/// Checks the slabinfo invariants of every cache and the allocators'.
fn check_consistent(rmm: &Rmm<Shared>) {
    for entry in rmm.caches() {
        let info = entry.cache.slabinfo();
        assert_eq!(info.num_objs, info.num_slabs * info.objperslab);
        assert!(info.active_objs <= info.num_objs);
        assert!(info.active_slabs <= info.num_slabs);
        assert!(info.pagesperslab.is_power_of_two());
        let stats = entry.cache.stats();
        assert_eq!(info.active_objs, stats.active + stats.cached);
        assert_eq!(stats.active, entry.held, "{}", entry.cache.name());
        entry.cache.check_invariants(rmm.pages()).unwrap();
    }
    rmm.pages().check_invariants().unwrap();
}

fn proptest_config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    config
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn random_commands_follow_the_model(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let (platform, mut rmm) = new_rmm(3);
        // name -> objects held, for the caches that exist.
        let mut caches: BTreeMap<&str, usize> = BTreeMap::new();
        caches.insert("kmalloc-64", 0);
        // The caches created with `debug`, where double frees are detected.
        let mut debugged: HashSet<&str> = HashSet::new();
        let mut blocks = [0usize; 5];
        for op in &ops {
            let before = render(&rmm);
            let (line, expected): (String, Result<(), i32>) = match *op {
                Op::Create(n, size, ctor, debug) => {
                    let name = MODEL_NAMES[n];
                    let line = format!(
                        "create {name} {size}{}{}",
                        if ctor { " ctor" } else { "" },
                        if debug { " debug" } else { "" }
                    );
                    let expected = if caches.contains_key(name) {
                        Err(errno::EEXIST)
                    } else {
                        caches.insert(name, 0);
                        if debug {
                            debugged.insert(name);
                        }
                        Ok(())
                    };
                    (line, expected)
                }
                Op::Alloc(n, count) => {
                    let name = MODEL_NAMES[n];
                    let expected = match caches.get_mut(name) {
                        None => Err(errno::ENOENT),
                        Some(held) => {
                            *held += count;
                            Ok(())
                        }
                    };
                    (format!("alloc {name} {count}"), expected)
                }
                Op::Free(n, count) => {
                    let name = MODEL_NAMES[n];
                    let expected = match caches.get_mut(name) {
                        None => Err(errno::ENOENT),
                        Some(held) => match count {
                            Some(count) if count > *held => Err(errno::EINVAL),
                            Some(count) => {
                                *held -= count;
                                Ok(())
                            }
                            None => {
                                *held = 0;
                                Ok(())
                            }
                        },
                    };
                    (format!("free {name} {}", count_word(count)), expected)
                }
                Op::Shrink(n) => {
                    let name = MODEL_NAMES[n];
                    let expected = if caches.contains_key(name) { Ok(()) } else { Err(errno::ENOENT) };
                    (format!("shrink {name}"), expected)
                }
                Op::Destroy(n) => {
                    let name = MODEL_NAMES[n];
                    let expected = match caches.get(name) {
                        None => Err(errno::ENOENT),
                        Some(_) if name.starts_with("kmalloc-") => Err(errno::EPERM),
                        Some(&held) if held > 0 => Err(errno::EBUSY),
                        Some(_) => {
                            caches.remove(name);
                            debugged.remove(name);
                            Ok(())
                        }
                    };
                    (format!("destroy {name}"), expected)
                }
                Op::PageAlloc(order, count) => {
                    blocks[order as usize] += count;
                    (format!("page-alloc {order} {count}"), Ok(()))
                }
                Op::PageFree(order, count) => {
                    let held = &mut blocks[order as usize];
                    let expected = match count {
                        Some(count) if count > *held => Err(errno::EINVAL),
                        Some(count) => {
                            *held -= count;
                            Ok(())
                        }
                        None => {
                            *held = 0;
                            Ok(())
                        }
                    };
                    (format!("page-free {order} {}", count_word(count)), expected)
                }
                Op::InvalidFree(n, kind) => {
                    let (name, kind) = (MODEL_NAMES[n], FREE_KINDS[kind]);
                    let expected = if !caches.contains_key(name) {
                        Err(errno::ENOENT)
                    } else if kind == "double" && !debugged.contains(name) {
                        Err(errno::EINVAL)
                    } else {
                        Ok(())
                    };
                    (format!("invalid-free {name} {kind}"), expected)
                }
            };
            let result = rmm.execute(line.as_bytes()).map_err(|error| error.errno());
            prop_assert_eq!(result, expected, "{}", line);
            if result.is_err() {
                prop_assert_eq!(render(&rmm), before, "failed {} changed the state", line);
            }
            for (&name, &held_now) in &caches {
                prop_assert_eq!(held(&rmm, name), held_now, "{} after {}", name, line);
            }
            for (order, &count) in blocks.iter().enumerate() {
                prop_assert_eq!(rmm.held_blocks(order as u32), count);
            }
            check_consistent(&rmm);
        }
        prop_assert!(platform.host().reports().len() <= ops.len());
        let summary = teardown_and_drop(&platform, rmm);
        prop_assert_eq!(summary.objects_freed, caches.values().sum::<usize>());
        prop_assert_eq!(summary.blocks_freed, blocks.iter().sum::<usize>());
        prop_assert_eq!(summary.caches_destroyed, caches.len() - 1 + KMALLOC_NAMES.len());
    }
}
