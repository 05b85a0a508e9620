// SPDX-License-Identifier: GPL-2.0

//! Tests of the read-only files: `/proc/slabinfo` 2.1 header, row format
//! and column widths, row invariants and order; `/proc/buddyinfo` format
//! and its agreement with the page allocator; the stats keys and their
//! agreement with slabinfo and the per-CPU lines; the per-node lines of
//! buddyinfo, zoneinfo and the stats on a platform of two nodes.

use rmm_core::host::HostPlatform;
use rmm_core::kmalloc::KMALLOC_NAMES;
use rmm_core::page_alloc::{CHUNK_ORDER, MAX_ORDER, PCP_BATCH, PCP_HIGH, PCP_MAX_ORDER};
use rmm_core::platform::Platform;
use rmm_core::state::{Rmm, DEMO_CACHE};
use rmm_core::views::{write_buddyinfo, write_slabinfo, write_stats, write_zoneinfo};
use std::collections::BTreeMap;
use std::fmt::{self, Write};

const HEADER_1: &str = "slabinfo - version: 2.1";
const HEADER_2: &str = "# name            <active_objs> <num_objs> <objsize> <objperslab> \
<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> \
<num_slabs> <sharedavail>";

fn new_rmm(nr_cpus: usize) -> Rmm<HostPlatform> {
    Rmm::new(HostPlatform::new(nr_cpus), false).expect("Rmm::new")
}

fn run(rmm: &mut Rmm<HostPlatform>, input: &str) {
    if let Err(error) = rmm.execute(input.as_bytes()) {
        panic!("{input:?} failed: {error}");
    }
}

fn slabinfo(rmm: &Rmm<HostPlatform>) -> String {
    let mut out = String::new();
    write_slabinfo(&mut out, rmm).unwrap();
    out
}

fn buddyinfo(rmm: &Rmm<HostPlatform>) -> String {
    let mut out = String::new();
    write_buddyinfo(&mut out, rmm).unwrap();
    out
}

fn stats(rmm: &Rmm<HostPlatform>) -> String {
    let mut out = String::new();
    write_stats(&mut out, rmm).unwrap();
    out
}

/// A parsed slabinfo row.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    name: String,
    active_objs: usize,
    num_objs: usize,
    objsize: usize,
    objperslab: usize,
    pagesperslab: usize,
    limit: usize,
    batchcount: usize,
    sharedfactor: usize,
    active_slabs: usize,
    num_slabs: usize,
    sharedavail: usize,
}

fn parse_row(line: &str) -> Row {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 16, "{line:?}");
    assert_eq!(
        (words[6], words[7], words[11], words[12]),
        (":", "tunables", ":", "slabdata"),
        "{line:?}"
    );
    let number = |index: usize| -> usize { words[index].parse().expect(line) };
    Row {
        name: words[0].to_string(),
        active_objs: number(1),
        num_objs: number(2),
        objsize: number(3),
        objperslab: number(4),
        pagesperslab: number(5),
        limit: number(8),
        batchcount: number(9),
        sharedfactor: number(10),
        active_slabs: number(13),
        num_slabs: number(14),
        sharedavail: number(15),
    }
}

fn rows(rmm: &Rmm<HostPlatform>) -> Vec<Row> {
    let text = slabinfo(rmm);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(HEADER_1));
    assert_eq!(lines.next(), Some(HEADER_2));
    lines.map(parse_row).collect()
}

/// The kernel's `cache_show` line, formatted here the way C's printf would
/// with `%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u : slabdata
/// %6lu %6lu %6lu`.
fn c_format_row(row: &Row) -> String {
    fn pad_left(value: usize, width: usize) -> String {
        let digits = value.to_string();
        " ".repeat(width.saturating_sub(digits.len())) + &digits
    }
    let mut name = row.name.clone();
    while name.len() < 17 {
        name.push(' ');
    }
    format!(
        "{name} {} {} {} {} {} : tunables {} {} {} : slabdata {} {} {}",
        pad_left(row.active_objs, 6),
        pad_left(row.num_objs, 6),
        pad_left(row.objsize, 6),
        pad_left(row.objperslab, 4),
        pad_left(row.pagesperslab, 4),
        pad_left(row.limit, 4),
        pad_left(row.batchcount, 4),
        pad_left(row.sharedfactor, 4),
        pad_left(row.active_slabs, 6),
        pad_left(row.num_slabs, 6),
        pad_left(row.sharedavail, 6),
    )
}

#[test]
fn slabinfo_header_is_the_kernels() {
    let rmm = new_rmm(2);
    let text = slabinfo(&rmm);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], HEADER_1);
    assert_eq!(lines[1], HEADER_2);
    assert!(text.ends_with('\n'));
    // Only the generic caches, largest first, as the kernel lists them.
    let names: Vec<String> = lines[2..].iter().map(|line| parse_row(line).name).collect();
    let expected: Vec<&str> = KMALLOC_NAMES.iter().rev().copied().collect();
    assert_eq!(names, expected);
}

#[test]
fn slabinfo_row_formatted_by_hand() {
    let mut rmm = new_rmm(2);
    // A 1 MiB object fills a 256-page slab alone; such large objects get a
    // per-CPU array of 1 (SLAB's enable_cpucache), batch 1.
    run(&mut rmm, "create big 1048576\nalloc big 1");
    let text = slabinfo(&rmm);
    let big = text.lines().find(|line| line.starts_with("big ")).unwrap();
    assert_eq!(
        big,
        "big                    1      1 1048576    1  256 : tunables    1    1    0 : slabdata      1      1      0"
    );
    // Names longer than the column push the row right, as `%-17s` does.
    run(&mut rmm, "create a_name_longer_than_17 100");
    let text = slabinfo(&rmm);
    let long = text
        .lines()
        .find(|line| line.starts_with("a_name_longer_than_17 "))
        .unwrap();
    assert!(
        long.starts_with("a_name_longer_than_17      0      0    104 "),
        "{long:?}"
    );
    // A page-sized generic object: eight per order-3 slab, 24-object arrays
    // (SLAB's limit for slots above 1 KiB), batches of 12. The refill took
    // the whole slab into this CPU's array, and objects in arrays count as
    // active, as in SLAB.
    run(&mut rmm, "alloc kmalloc-4096 1");
    let text = slabinfo(&rmm);
    let page = text
        .lines()
        .find(|line| line.starts_with("kmalloc-4096 "))
        .unwrap();
    assert_eq!(
        page,
        "kmalloc-4096           8      8   4096    8    8 : tunables   24   12    0 : slabdata      1      1      0"
    );
    // Every row, small and large numbers alike, is exactly the C format.
    run(
        &mut rmm,
        "alloc kmalloc-8 100000\nalloc kmalloc-4096 3\nalloc kmalloc-8 1000000",
    );
    for line in slabinfo(&rmm).lines().skip(2) {
        assert_eq!(line, c_format_row(&parse_row(line)));
    }
}

#[test]
fn slabinfo_rows_keep_their_invariants() {
    let mut rmm = new_rmm(4);
    // name, size, align (0: default), options
    let created: &[(&str, usize, usize, &str)] = &[
        ("tiny", 1, 0, ""),
        ("odd", 13, 0, "ctor"),
        ("aligned", 100, 128, ""),
        ("hw", 24, 0, "hwcache"),
        ("dbg", 300, 0, "debug"),
        ("page", 4096, 4096, ""),
        ("offslab", 1000, 0, "debug ctor"),
        ("huge", 70000, 0, ""),
    ];
    for &(name, size, align, options) in created {
        let align_option = if align > 0 {
            format!(" align={align}")
        } else {
            String::new()
        };
        run(
            &mut rmm,
            &format!("create {name} {size}{align_option} {options}"),
        );
        run(&mut rmm, &format!("alloc {name} 37\nfree {name} 11"));
    }
    run(
        &mut rmm,
        "create unused 50\nalloc kmalloc-192 500\nfree kmalloc-192 499",
    );
    let rows = rows(&rmm);
    assert_eq!(rows.len(), KMALLOC_NAMES.len() + created.len() + 1);
    // Newest first.
    assert_eq!(rows[0].name, "unused");
    assert_eq!(rows[1].name, "huge");
    for row in &rows {
        assert_eq!(row.num_objs, row.num_slabs * row.objperslab, "{row:?}");
        assert!(row.active_objs <= row.num_objs, "{row:?}");
        assert!(row.active_slabs <= row.num_slabs, "{row:?}");
        assert!(row.pagesperslab.is_power_of_two(), "{row:?}");
        assert!(row.objperslab >= 1);
        assert!(
            row.objsize * row.objperslab <= row.pagesperslab * 4096,
            "{row:?}"
        );
        assert!(
            row.limit >= 1 && row.batchcount == row.limit.div_ceil(2),
            "{row:?}"
        );
        assert_eq!((row.sharedfactor, row.sharedavail), (0, 0));
        let entry = rmm.cache(&row.name).unwrap();
        let stats = entry.cache.stats();
        // SLAB: objects in per-CPU arrays count as active.
        assert_eq!(row.active_objs, stats.active + stats.cached, "{row:?}");
        assert_eq!(stats.active, entry.held);
        if let Some(&(_, size, align, _)) = created.iter().find(|c| c.0 == row.name) {
            assert!(row.objsize >= size, "{row:?}");
            assert_eq!(row.objsize % align.max(8), 0, "{row:?}");
            assert_eq!(entry.held, 26, "{row:?}");
            assert!(row.active_objs >= 26, "{row:?}");
        }
    }
    let unused = rows.iter().find(|row| row.name == "unused").unwrap();
    assert_eq!(
        (unused.active_objs, unused.num_objs, unused.num_slabs),
        (0, 0, 0)
    );
}

#[test]
fn destroyed_caches_leave_slabinfo() {
    let mut rmm = new_rmm(2);
    run(
        &mut rmm,
        "create a 10\ncreate b 20\ncreate c 30\nalloc b 5\nfree b all",
    );
    let names = |rmm: &Rmm<HostPlatform>| -> Vec<String> {
        rows(rmm).into_iter().map(|row| row.name).take(3).collect()
    };
    assert_eq!(names(&rmm), ["c", "b", "a"]);
    run(&mut rmm, "destroy b");
    assert_eq!(names(&rmm), ["c", "a", "kmalloc-8192"]);
    run(&mut rmm, "destroy c\ndestroy a");
    assert_eq!(rows(&rmm).len(), KMALLOC_NAMES.len());
    rmm.teardown();
    assert_eq!(slabinfo(&rmm), format!("{HEADER_1}\n{HEADER_2}\n"));
}

/// The free-block counts of a buddyinfo line, checking its exact layout.
fn parse_buddyinfo(text: &str) -> Vec<usize> {
    let prefix = "Node 0, zone      rmm ";
    assert!(text.starts_with(prefix), "{text:?}");
    assert!(text.ends_with(" \n"), "{text:?}");
    let counts = &text[prefix.len()..text.len() - 1];
    assert_eq!(counts.len(), 7 * (MAX_ORDER as usize + 1), "{text:?}");
    counts
        .as_bytes()
        .chunks(7)
        .map(|field| {
            let field = std::str::from_utf8(field).unwrap();
            assert!(field.ends_with(' '), "{field:?}");
            field.trim().parse().unwrap()
        })
        .collect()
}

fn assert_buddyinfo_matches_stats(rmm: &Rmm<HostPlatform>) -> Vec<usize> {
    let counts = parse_buddyinfo(&buddyinfo(rmm));
    let stats = rmm.pages().stats();
    let free: usize = counts.iter().enumerate().map(|(order, n)| n << order).sum();
    assert_eq!(free, stats.pages_free);
    assert_eq!(
        stats.pages_free + stats.pages_pcp + stats.pages_allocated,
        stats.pages_total
    );
    counts
}

#[test]
fn buddyinfo_is_the_kernels_format_and_agrees_with_the_allocator() {
    let mut rmm = new_rmm(2);
    assert_eq!(
        buddyinfo(&rmm),
        format!("Node 0, zone      rmm {}\n", "     0 ".repeat(11))
    );
    // A whole chunk as one block: nothing free.
    run(&mut rmm, "page-alloc 10 1");
    assert_eq!(assert_buddyinfo_matches_stats(&rmm), vec![0; 11]);
    // One page from a fresh chunk (taken straight from the chunk while it
    // is added): the other 1023 pages split into one free block of each
    // order below the chunk's.
    run(&mut rmm, "page-alloc 0 1");
    let counts = assert_buddyinfo_matches_stats(&rmm);
    let mut expected = vec![0; 11];
    let mut left = (1 << MAX_ORDER) - 1;
    for (order, slot) in expected.iter_mut().enumerate().rev() {
        if left >= 1 << order {
            *slot = 1;
            left -= 1 << order;
        }
    }
    assert_eq!(counts, expected);
    run(
        &mut rmm,
        "page-alloc 3 5\ncreate x 500\nalloc x 333\npage-free 10 1",
    );
    let counts = assert_buddyinfo_matches_stats(&rmm);
    assert_eq!(counts[10], 1, "the freed chunk-sized block");
    // Free blocks per order agree with the stats lines.
    let text = stats(&rmm);
    for (order, count) in counts.iter().enumerate() {
        let prefix = format!("buddy order={order} ");
        let line = text.lines().find(|line| line.starts_with(&prefix)).unwrap();
        assert!(line.contains(&format!(" free_blocks={count} ")), "{line}");
    }
    rmm.teardown();
    assert_eq!(parse_buddyinfo(&buddyinfo(&rmm)), vec![0; 11]);
}

/// The example of design-buddy.md: after the demo's one slab page and one
/// order-3 block, one block of that order sits on the CPU's list, not free.
#[test]
fn buddyinfo_leaves_out_blocks_on_per_cpu_lists() {
    HostPlatform::set_this_cpu(0);
    let mut rmm = new_rmm(1);
    rmm.run_demo().expect("demo");
    assert_eq!(
        buddyinfo(&rmm),
        format!("Node 0, zone      rmm {}     0 \n", "     1 ".repeat(10))
    );
    run(&mut rmm, "page-alloc 3 1");
    assert_eq!(
        buddyinfo(&rmm),
        "Node 0, zone      rmm      1      1      1      1      0      1      1      1      1      1      0 \n"
    );
    let text = stats(&rmm);
    assert!(
        text.contains("buddy order=3 allocs=1 failures=0 free_blocks=1 pcp_blocks=1 held=1\n"),
        "{text}"
    );
    assert_buddyinfo_matches_stats(&rmm);
    rmm.teardown();
}

const CACHE_KEYS: &[&str] = &[
    "cache",
    "objsize",
    "active",
    "cached",
    "alien",
    "total",
    "slabs",
    "allocs",
    "frees",
    "allochit",
    "allocmiss",
    "freehit",
    "freemiss",
    "grown",
    "reaped",
    "high",
    "errors",
    "ctor_calls",
    "held",
    "corruptions",
];
const CPU_KEYS: &[&str] = &[
    "cache",
    "cpu",
    "allocs",
    "frees",
    "allochit",
    "allocmiss",
    "freehit",
    "freemiss",
    "grown",
    "reaped",
    "errors",
    "ctor_calls",
    "cached",
    "alien",
];
const CACHE_NODE_KEYS: &[&str] = &[
    "cache",
    "node",
    "slabs",
    "active_slabs",
    "objects",
    "active_objs",
    "cached",
    "alien",
    "high",
    "free_limit",
    "local_allocs",
    "remote_allocs",
    "fallback_allocs",
    "foreign_allocs",
    "local_frees",
    "remote_frees",
    "alien_flushes",
    "grown",
    "reaped",
];
const BUDDY_KEYS: &[&str] = &[
    "chunks",
    "max_chunks",
    "pages_total",
    "pages_free",
    "pages_pcp",
    "pages_allocated",
    "invalid_frees",
];
const ORDER_KEYS: &[&str] = &[
    "order",
    "allocs",
    "failures",
    "free_blocks",
    "pcp_blocks",
    "held",
];
const RMM_KEYS: &[&str] = &[
    "user_caches",
    "max_user_caches",
    "corruptions",
    "large_blocks",
    "kmalloc_errors",
    "reclaimable",
    "reaps",
    "reaped_slabs",
    "ctl_errors",
    "ctl_errors_unlogged",
    "fail_every",
    "fail_refill",
    "fail_requests",
    "fail_injected",
];
const ZONE_KEYS: &[&str] = &[
    "free",
    "min",
    "low",
    "high",
    "reserve_kb",
    "reserve_auto",
    "refills",
    "refill_chunks",
    "refill_failures",
    "min_allocs",
    "reserve_allocs",
    "reserve_pages",
    "refused",
];
const NODE_KEYS: &[&str] = &[
    "node",
    "chunks",
    "pages_total",
    "pages_free",
    "pages_pcp",
    "numa_hit",
    "numa_miss",
    "numa_foreign",
    "local_node",
    "other_node",
    "free_local",
    "free_remote",
    "held_pages",
    "held_objects",
];
const VMALLOC_KEYS: &[&str] = &[
    "areas",
    "max_areas",
    "pages",
    "vmallocs",
    "vfrees",
    "failures",
];

/// Splits `key=value` words, checking the keys against `keys`.
fn pairs<'a>(words: &[&'a str], keys: &[&str]) -> BTreeMap<&'a str, &'a str> {
    let found: Vec<(&str, &str)> = words
        .iter()
        .map(|word| word.split_once('=').unwrap_or_else(|| panic!("{word:?}")))
        .collect();
    let names: Vec<&str> = found.iter().map(|(key, _)| *key).collect();
    assert_eq!(names, keys);
    found.into_iter().collect()
}

fn number(map: &BTreeMap<&str, &str>, key: &str) -> usize {
    map[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key}={}", map[key]))
}

#[test]
fn stats_lines_carry_the_documented_keys() {
    let nr_cpus = 3;
    HostPlatform::set_this_cpu(0);
    let mut rmm = new_rmm(nr_cpus);
    run(
        &mut rmm,
        "create a 40 ctor\nalloc a 500\nfree a 100\npage-alloc 2 3\nalloc kmalloc-32 7\n\
         reserve 64\nvmalloc v 20K\nvmalloc w 1\nvfree w",
    );
    // Allocations from other CPUs show in their per-CPU lines.
    std::thread::scope(|scope| {
        let rmm = &rmm;
        scope.spawn(move || {
            HostPlatform::set_this_cpu(2);
            let cache = rmm.cache("kmalloc-32").unwrap().cache;
            let obj = cache
                .alloc(rmm.pages(), rmm_core::gfp::Gfp::KERNEL)
                .unwrap();
            // SAFETY: just allocated, not used afterwards.
            unsafe { cache.free(rmm.pages(), obj).unwrap() };
        });
    });
    let text = stats(&rmm);
    let slab_rows: BTreeMap<String, Row> = rows(&rmm)
        .into_iter()
        .map(|row| (row.name.clone(), row))
        .collect();
    let mut caches_seen = Vec::new();
    let mut cpu_sums: BTreeMap<String, usize> = BTreeMap::new();
    let mut orders_seen = 0;
    let mut pcp_pages = 0;
    let mut pages_pcp = None;
    let mut buddy_seen = false;
    let mut zone_seen = false;
    let mut nodes_seen = 0;
    let mut cache_node_lines = 0;
    let mut vmalloc_seen = false;
    let mut rmm_seen = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        if line.starts_with("cache=") && words[1].starts_with("node=") {
            // One node: the cache's whole figures.
            let map = pairs(&words, CACHE_NODE_KEYS);
            assert_eq!(number(&map, "node"), 0);
            let row = &slab_rows[map["cache"]];
            assert_eq!(number(&map, "slabs"), row.num_slabs, "{line}");
            assert_eq!(number(&map, "active_slabs"), row.active_slabs, "{line}");
            assert_eq!(number(&map, "objects"), row.num_objs, "{line}");
            assert_eq!(number(&map, "active_objs"), row.active_objs, "{line}");
            for key in [
                "remote_allocs",
                "fallback_allocs",
                "foreign_allocs",
                "remote_frees",
                "alien",
                "alien_flushes",
            ] {
                assert_eq!(number(&map, key), 0, "{line}");
            }
            cache_node_lines += 1;
        } else if line.starts_with("cache=") && words[1].starts_with("cpu=") {
            let map = pairs(&words, CPU_KEYS);
            assert!(number(&map, "cpu") < nr_cpus);
            *cpu_sums.entry(map["cache"].to_string()).or_default() += number(&map, "allocs");
        } else if line.starts_with("cache=") {
            let map = pairs(&words, CACHE_KEYS);
            let name = map["cache"];
            caches_seen.push(name.to_string());
            let row = &slab_rows[name];
            assert_eq!(number(&map, "objsize"), row.objsize);
            assert_eq!(number(&map, "total"), row.num_objs);
            assert_eq!(number(&map, "slabs"), row.num_slabs);
            assert_eq!(
                number(&map, "active") + number(&map, "cached") + number(&map, "alien"),
                row.active_objs
            );
            assert_eq!(number(&map, "active"), number(&map, "held"), "{line}");
            assert_eq!(
                number(&map, "allocs") - number(&map, "frees"),
                number(&map, "active")
            );
            assert!(number(&map, "allochit") + number(&map, "allocmiss") >= number(&map, "allocs"));
            assert_eq!(
                number(&map, "freehit") + number(&map, "freemiss"),
                number(&map, "frees")
            );
            assert!(number(&map, "high") >= row.active_objs);
            if name == "a" {
                assert_eq!(
                    number(&map, "ctor_calls"),
                    number(&map, "grown") * row.objperslab
                );
                assert_eq!(number(&map, "held"), 400);
            }
        } else if line.starts_with("buddy order=") {
            let map = pairs(&words[1..], ORDER_KEYS);
            assert_eq!(number(&map, "order"), orders_seen);
            let held = if orders_seen == 2 { 3 } else { 0 };
            assert_eq!(number(&map, "held"), held);
            let pcp_blocks = number(&map, "pcp_blocks");
            if orders_seen > PCP_MAX_ORDER as usize {
                assert_eq!(pcp_blocks, 0, "{line}");
            }
            pcp_pages += pcp_blocks << orders_seen;
            orders_seen += 1;
        } else if line.starts_with("buddy ") {
            let map = pairs(&words[1..], BUDDY_KEYS);
            let pages = rmm.pages().stats();
            assert_eq!(number(&map, "pages_total"), pages.pages_total);
            assert_eq!(number(&map, "chunks") << MAX_ORDER, pages.pages_total);
            pages_pcp = Some(number(&map, "pages_pcp"));
            buddy_seen = true;
        } else if line.starts_with("zone ") {
            assert!(buddy_seen && !rmm_seen, "zone line after the buddy lines");
            let map = pairs(&words[1..], ZONE_KEYS);
            let wm = rmm.pages().watermarks();
            assert_eq!(number(&map, "free"), rmm.pages().stats().pages_free);
            assert_eq!(
                (
                    number(&map, "min"),
                    number(&map, "low"),
                    number(&map, "high")
                ),
                (16, 20, 24),
                "reserve 64 KiB is 16 pages, delta 4"
            );
            assert_eq!(number(&map, "min"), wm.min);
            assert_eq!(number(&map, "reserve_kb"), 64);
            assert_eq!(number(&map, "reserve_auto"), 0);
            assert!(number(&map, "refills") >= 1 && number(&map, "refill_chunks") >= 1);
            zone_seen = true;
        } else if line.starts_with("node=") {
            assert!(zone_seen && !vmalloc_seen, "node lines after the zone line");
            // One node: it has the whole pool and every allocation.
            let map = pairs(&words, NODE_KEYS);
            assert_eq!(number(&map, "node"), nodes_seen);
            let pages = rmm.pages().stats();
            assert_eq!(number(&map, "chunks"), pages.chunks);
            assert_eq!(number(&map, "pages_total"), pages.pages_total);
            assert_eq!(number(&map, "pages_free"), pages.pages_free);
            assert_eq!(number(&map, "pages_pcp"), pages.pages_pcp);
            let allocs: u64 = pages.allocs.iter().sum();
            assert_eq!(number(&map, "numa_hit") as u64, allocs);
            assert_eq!(number(&map, "local_node") as u64, allocs);
            for key in ["numa_miss", "numa_foreign", "other_node", "free_remote"] {
                assert_eq!(number(&map, key), 0, "{line}");
            }
            assert_eq!(number(&map, "held_pages"), 3 << 2, "page-alloc 2 3");
            assert_eq!(number(&map, "held_objects"), 400 + 7, "a and kmalloc-32");
            nodes_seen += 1;
        } else if line.starts_with("vmalloc ") {
            let map = pairs(&words[1..], VMALLOC_KEYS);
            assert_eq!(number(&map, "areas"), 1);
            assert_eq!(number(&map, "max_areas"), 64);
            assert_eq!(number(&map, "pages"), 5);
            assert_eq!(number(&map, "vmallocs"), 2);
            assert_eq!(number(&map, "vfrees"), 1);
            assert_eq!(number(&map, "failures"), 0);
            vmalloc_seen = true;
        } else if line.starts_with("rmm ") {
            assert!(zone_seen && vmalloc_seen, "the rmm line comes last");
            let map = pairs(&words[1..], RMM_KEYS);
            assert_eq!(number(&map, "user_caches"), 1);
            assert_eq!(number(&map, "max_user_caches"), 64);
            assert_eq!(number(&map, "reclaimable"), rmm.reclaimable_pages());
            assert_eq!(number(&map, "fail_every"), 0);
            assert_eq!(number(&map, "fail_refill"), 0);
            assert_eq!(number(&map, "fail_injected"), 0);
            rmm_seen = true;
        } else {
            panic!("unexpected stats line {line:?}");
        }
    }
    assert_eq!(caches_seen, slab_rows_in_order(&rmm));
    assert_eq!(Some(pcp_pages), pages_pcp, "pcp_blocks add up to pages_pcp");
    assert!(
        pcp_pages > 0,
        "the page-alloc refilled CPU 0's order-2 list"
    );
    for name in &caches_seen {
        let stats = rmm.cache(name).unwrap().cache.stats();
        assert_eq!(cpu_sums[name], stats.allocs, "{name}");
    }
    assert_eq!(
        text.lines().filter(|line| line.contains(" cpu=")).count(),
        caches_seen.len() * nr_cpus
    );
    let kmalloc_32_cpu2 = text
        .lines()
        .find(|line| line.starts_with("cache=kmalloc-32 cpu=2 "))
        .unwrap();
    assert!(
        kmalloc_32_cpu2.contains(" allocs=1 frees=1 "),
        "{kmalloc_32_cpu2}"
    );
    assert_eq!(orders_seen, MAX_ORDER as usize + 1);
    assert!(buddy_seen && zone_seen && vmalloc_seen && rmm_seen);
    assert_eq!(nodes_seen, 1, "one node line without NUMA");
    assert_eq!(cache_node_lines, caches_seen.len(), "a node line per cache");
    rmm.teardown();
}

fn slab_rows_in_order(rmm: &Rmm<HostPlatform>) -> Vec<String> {
    rows(rmm).into_iter().map(|row| row.name).collect()
}

#[test]
fn demo_cache_shows_in_every_view() {
    let mut rmm = new_rmm(2);
    rmm.run_demo().unwrap();
    let rows = rows(&rmm);
    let student = &rows[0];
    assert_eq!(student.name, DEMO_CACHE);
    assert!(student.objsize >= 20 && student.objsize % 4 == 0);
    // The two students went back to the per-CPU array: SLAB counts them
    // (and the rest of the refill batch) as active.
    assert!(student.active_objs >= 2 && student.num_slabs == 1);
    assert!(stats(&rmm).contains(&format!("cache={DEMO_CACHE} objsize=")));
}

#[test]
fn views_after_teardown_show_no_cache() {
    let mut rmm = new_rmm(2);
    run(&mut rmm, "create a 8\nalloc a 9\npage-alloc 1 1");
    rmm.teardown();
    let text = stats(&rmm);
    assert!(!text.contains("cache="));
    assert!(text.contains("buddy chunks=0 "));
    assert!(text
        .lines()
        .last()
        .unwrap()
        .starts_with("rmm user_caches=0 "));
}

/// A fixed-capacity writer: the views need no allocation, so they format
/// into a stack buffer too, and fail cleanly when it is full.
struct FixedBuf {
    bytes: [u8; 4096],
    len: usize,
}

impl Write for FixedBuf {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[test]
fn views_write_into_fixed_buffers() {
    let rmm = new_rmm(2);
    let mut buf = FixedBuf {
        bytes: [0; 4096],
        len: 0,
    };
    write_buddyinfo(&mut buf, &rmm).unwrap();
    assert_eq!(
        std::str::from_utf8(&buf.bytes[..buf.len]).unwrap(),
        buddyinfo(&rmm)
    );
    buf.len = 0;
    // The stats of 13 caches on 2 CPUs do not fit in 4 KiB: an error, not a
    // panic.
    assert_eq!(write_stats(&mut buf, &rmm), Err(fmt::Error));
}

// Memory nodes: a platform of two CPUs on two nodes (CPU 0 on node 0, CPU 1
// on node 1), as the guest tests' VM.

fn new_numa_rmm() -> Rmm<HostPlatform> {
    Rmm::new(HostPlatform::with_nodes(2, 2), false).expect("Rmm::new")
}

/// A buddyinfo line as the kernel's `frag_show_print` writes it.
fn c_buddyinfo_line(node: usize, counts: &[usize]) -> String {
    let mut line = format!("Node {node}, zone {:>8} ", "rmm");
    for count in counts {
        line += &format!("{count:6} ");
    }
    line + "\n"
}

/// The `cache=NAME node=N` lines of the stats, by node.
fn cache_node_lines(rmm: &Rmm<HostPlatform>, name: &str) -> Vec<BTreeMap<String, usize>> {
    let prefix = format!("cache={name} node=");
    stats(rmm)
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            pairs(&words, CACHE_NODE_KEYS)
                .into_iter()
                .filter(|(key, _)| *key != "cache")
                .map(|(key, value)| (key.to_string(), value.parse().unwrap()))
                .collect()
        })
        .collect()
}

/// The `node=N` lines of the stats, by node.
fn node_lines(rmm: &Rmm<HostPlatform>) -> Vec<BTreeMap<String, usize>> {
    stats(rmm)
        .lines()
        .filter(|line| line.starts_with("node="))
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            pairs(&words, NODE_KEYS)
                .into_iter()
                .map(|(key, value)| (key.to_string(), value.parse().unwrap()))
                .collect()
        })
        .collect()
}

#[test]
fn buddyinfo_has_a_line_per_node_in_the_kernels_format() {
    HostPlatform::set_this_cpu(0);
    let mut rmm = new_numa_rmm();
    let zeros = [0; 11];
    assert_eq!(
        buddyinfo(&rmm),
        c_buddyinfo_line(0, &zeros) + &c_buddyinfo_line(1, &zeros)
    );
    assert_eq!(
        buddyinfo(&rmm),
        format!(
            "Node 0, zone      rmm {0}\nNode 1, zone      rmm {0}\n",
            "     0 ".repeat(11)
        )
    );
    // From CPU 0, a block of 16 pages pinned to node 1: node 1 takes a
    // chunk and splits it, node 0 stays empty.
    run(&mut rmm, "page-alloc 4 1 node=1");
    assert_eq!(
        buddyinfo(&rmm),
        format!(
            "Node 0, zone      rmm {}\nNode 1, zone      rmm      0      0      0      0      1      1      1      1      1      1      0 \n",
            "     0 ".repeat(11)
        )
    );
    // And one on CPU 0's own node: its order-0 list takes a batch.
    run(&mut rmm, "page-alloc 0 1");
    let text = buddyinfo(&rmm);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let stats = rmm.pages().stats();
    for (node, line) in lines.iter().enumerate() {
        let counts = parse_buddyinfo_line(line, node);
        assert_eq!(counts, rmm.pages().node_buddyinfo(node).to_vec());
        assert_eq!(format!("{line}\n"), c_buddyinfo_line(node, &counts));
        let free: usize = counts.iter().enumerate().map(|(o, n)| n << o).sum();
        assert_eq!(free, stats.nodes[node].pages_free, "node {node}");
    }
    // Both lines together are the whole pool's free blocks.
    let sum: Vec<usize> = (0..2)
        .map(|node| rmm.pages().node_buddyinfo(node))
        .fold(vec![0; 11], |sum, node| {
            sum.iter().zip(node).map(|(a, b)| a + b).collect()
        });
    assert_eq!(sum, rmm.pages().buddyinfo().to_vec());
    rmm.teardown();
    assert_eq!(
        buddyinfo(&rmm),
        c_buddyinfo_line(0, &zeros) + &c_buddyinfo_line(1, &zeros)
    );
}

/// The counts of a buddyinfo line of `node` (without its newline).
fn parse_buddyinfo_line(line: &str, node: usize) -> Vec<usize> {
    parse_buddyinfo(&format!("{line}\n").replacen(&format!("Node {node},"), "Node 0,", 1))
}

#[test]
fn stats_have_a_line_per_node_with_the_kernels_numastat_counters() {
    HostPlatform::set_this_cpu(0);
    let mut rmm = new_numa_rmm();
    let lines = node_lines(&rmm);
    assert_eq!(lines.len(), 2);
    for (node, line) in lines.iter().enumerate() {
        assert_eq!(line["node"], node);
        assert!(
            line.iter().all(|(key, &value)| key == "node" || value == 0),
            "{line:?}"
        );
    }
    // CPU 0: three pages on its own node, two blocks of 2 pages pinned to
    // node 1.
    run(&mut rmm, "page-alloc 0 3\npage-alloc 1 2 node=1");
    let lines = node_lines(&rmm);
    let (n0, n1) = (&lines[0], &lines[1]);
    assert_eq!(
        (n0["numa_hit"], n0["local_node"], n0["other_node"]),
        (3, 3, 0)
    );
    assert_eq!(
        (n1["numa_hit"], n1["local_node"], n1["other_node"]),
        (2, 0, 2)
    );
    assert_eq!((n0["held_pages"], n1["held_pages"]), (3, 4));
    assert_eq!((n0["held_objects"], n1["held_objects"]), (0, 0));
    assert_eq!((n0["chunks"], n1["chunks"]), (1, 1));
    let stats = rmm.pages().stats();
    for (node, line) in lines.iter().enumerate() {
        let part = &stats.nodes[node];
        assert_eq!(line["pages_total"], part.pages_total);
        assert_eq!(line["pages_total"], line["chunks"] << CHUNK_ORDER);
        assert_eq!(line["pages_free"], part.pages_free);
        assert_eq!(line["pages_pcp"], part.pages_pcp);
        assert_eq!((line["numa_miss"], line["numa_foreign"]), (0, 0));
    }
    // held_pages is the platform's account of the pages (page_to_nid in
    // the kernel), and rmm's own agrees.
    for order in [0, 1] {
        for block in rmm.held_blocks_of(order) {
            let node = rmm.platform().page_node(block);
            assert_eq!(node, if order == 0 { 0 } else { 1 });
            assert_eq!(rmm.pages().node_of(block.as_ptr()), Some(node));
        }
    }
    // CPU 1 frees everything: node 1's blocks locally, node 0's remotely
    // (back to node 0's lists).
    HostPlatform::set_this_cpu(1);
    run(&mut rmm, "page-free 0 all\npage-free 1 all");
    let lines = node_lines(&rmm);
    assert_eq!((lines[0]["free_local"], lines[0]["free_remote"]), (0, 3));
    assert_eq!((lines[1]["free_local"], lines[1]["free_remote"]), (2, 0));
    assert_eq!((lines[0]["held_pages"], lines[1]["held_pages"]), (0, 0));
    // Node 0 cannot give another chunk: a request of CPU 0 falls back to
    // node 1, a miss there and foreign on node 0.
    HostPlatform::set_this_cpu(0);
    run(&mut rmm, "page-alloc 10 1");
    rmm.platform().set_node_limit(0, Some(0));
    run(&mut rmm, "page-alloc 10 1");
    let lines = node_lines(&rmm);
    assert_eq!((lines[0]["numa_foreign"], lines[0]["numa_miss"]), (1, 0));
    assert_eq!((lines[1]["numa_foreign"], lines[1]["numa_miss"]), (0, 1));
    assert_eq!(lines[1]["other_node"], 2 + 1);
    assert_eq!(
        (lines[0]["held_pages"], lines[1]["held_pages"]),
        (1024, 1024)
    );
    rmm.platform().set_node_limit(0, None);
    // Objects: held_objects by the pages' own node, and the cache's node
    // lines.
    run(
        &mut rmm,
        "create obj 100\nalloc obj 30\nalloc obj 12 node=1\nalloc kmalloc-64 5 node=1",
    );
    let lines = node_lines(&rmm);
    assert_eq!(
        (lines[0]["held_objects"], lines[1]["held_objects"]),
        (30, 17)
    );
    let obj = cache_node_lines(&rmm, "obj");
    assert_eq!(obj.len(), 2);
    assert_eq!((obj[0]["node"], obj[1]["node"]), (0, 1));
    assert_eq!((obj[0]["remote_allocs"], obj[1]["remote_allocs"]), (0, 12));
    assert!(obj[0]["local_allocs"] >= 30, "{obj:?}");
    assert_eq!(obj[1]["local_allocs"], 0);
    assert!(obj[0]["slabs"] >= 1 && obj[1]["slabs"] >= 1, "{obj:?}");
    // CPU 1 frees everything: node 0's objects go home as remote frees,
    // in batches through CPU 1's alien array, node 1's are local.
    HostPlatform::set_this_cpu(1);
    run(&mut rmm, "free obj all");
    let obj = cache_node_lines(&rmm, "obj");
    assert_eq!(obj[0]["remote_frees"] + obj[0]["alien"], 30, "{obj:?}");
    assert!(obj[0]["alien"] > 0, "{obj:?}");
    assert_eq!(obj[1]["remote_frees"] + obj[1]["alien"], 0);
    assert_eq!(obj[1]["local_frees"], 12);
    // A shrink sends the alien objects home.
    run(&mut rmm, "shrink obj");
    let obj = cache_node_lines(&rmm, "obj");
    assert_eq!((obj[0]["remote_frees"], obj[0]["alien"]), (30, 0));
    HostPlatform::set_this_cpu(0);
    rmm.teardown();
    assert!(node_lines(&rmm).iter().all(|line| line["chunks"] == 0));
}

#[test]
fn zoneinfo_has_a_block_per_node() {
    HostPlatform::set_this_cpu(1);
    let mut rmm = new_numa_rmm();
    run(
        &mut rmm,
        "reserve 256\npage-alloc 0 3\npage-alloc 10 1 node=0",
    );
    let mut text = String::new();
    write_zoneinfo(&mut text, &rmm).unwrap();
    let blocks: Vec<&str> = text.split("Node ").skip(1).collect();
    assert_eq!(blocks.len(), 2, "{text}");
    let stats = rmm.pages().stats();
    for (node, block) in blocks.iter().enumerate() {
        assert!(
            block.starts_with(&format!("{node}, zone      rmm\n")),
            "{block}"
        );
        let field = |key: &str| -> usize {
            block
                .lines()
                .map(str::trim)
                .find_map(|line| line.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {block}"))
                .trim()
                .parse()
                .unwrap()
        };
        let part = &stats.nodes[node];
        let wm = rmm.pages().node_watermarks(node);
        assert_eq!(field("pages free"), part.pages_free);
        assert_eq!(field("nr_free_pages"), part.pages_free);
        assert_eq!(field("present"), part.pages_total);
        assert_eq!(field("managed"), part.pages_total);
        assert_eq!(
            (field("min"), field("low"), field("high")),
            (wm.min, wm.low, wm.high)
        );
        let (start, end) = rmm.pages().node_span(node).unwrap();
        assert_eq!(field("start_pfn:"), rmm.platform().page_frame(start));
        assert_eq!(field("spanned"), (end - start.as_ptr() as usize) >> 12);
        // Every CPU under every node, as the kernel lists pagesets; a CPU's
        // pages only under its own node.
        let counts: Vec<usize> = block
            .lines()
            .filter_map(|line| line.trim().strip_prefix("count: "))
            .map(|count| count.parse().unwrap())
            .collect();
        let own = rmm.pages().pcp_pages(node);
        assert_eq!(
            counts,
            if node == 0 {
                vec![own, 0]
            } else {
                vec![0, own]
            }
        );
        assert_eq!(block.matches(&format!("high:  {PCP_HIGH}\n")).count(), 2);
        assert_eq!(block.matches(&format!("batch: {PCP_BATCH}\n")).count(), 2);
    }
    // CPU 1 (node 1) refilled its order-0 list from node 1's chunk; the
    // pinned block took a whole chunk on node 0, and node 0 one more to
    // get back above its high watermark.
    assert_eq!(stats.nodes[0].pages_total, 2 << CHUNK_ORDER);
    assert_eq!(stats.nodes[1].pages_total, 1 << CHUNK_ORDER);
    assert!(rmm.pages().pcp_pages(1) > 0);
    // The reserve is split between the nodes by their pages.
    let total = rmm.pages().watermarks();
    let (w0, w1) = (
        rmm.pages().node_watermarks(0),
        rmm.pages().node_watermarks(1),
    );
    assert_eq!(w0.min + w1.min, total.min);
    rmm.teardown();
}
