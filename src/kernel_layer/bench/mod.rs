// SPDX-License-Identifier: GPL-2.0

//! Benchmarks of rmm against the kernel's own allocators, run at load when
//! asked (`insmod rmm.ko bench=all`; see [`crate::bench_spec`] for the
//! grammar).
//!
//! Every case runs rmm and the kernel in the same loop, with the same sizes,
//! in the same boot: an rmm [`KmemCache`](crate::slab::KmemCache) against a
//! SLUB `kmem_cache`, rmm's [`Kmalloc`](crate::kmalloc::Kmalloc) against
//! `kmalloc` ([`objects`]), rmm's [`PageAllocator`] against
//! `__get_free_pages` and rmm's [`vmalloc`](crate::vmalloc) against
//! `vmalloc` ([`pages`]), rmm's
//! [`PerCpuCounter`](crate::percpu_counter::PerCpuCounter) against
//! `percpu_counter` and a plain atomic ([`counters`]); the pieces of rmm's
//! fast paths alone ([`parts`]); and several CPUs at once ([`smp`]). Each
//! operation is one out-of-line call on both sides: the rmm side goes
//! through `#[inline(never)]` wrappers, the kernel side calls the exported C
//! function directly. Results go to the kernel log as [`Record`] lines for
//! `scripts/bench`.
//!
//! The loops themselves are kernel-free ([`crate::bench_loops`],
//! [`crate::bench_remote`]); this module holds the two sides, the clock and
//! the log. The rmm side uses allocators of its own (its own page
//! allocator, caches and kmalloc caches), not the module's state, so a
//! benchmark neither sees nor disturbs what `/proc/rmm_ctl` did.

mod counters;
mod objects;
mod pages;
mod parts;
mod smp;

use super::cpu_threads::{now, online_cpus};
use super::platform::KernelPlatform;
use crate::bench_spec::{Case, Record, Selection};
use crate::page_alloc::PageAllocator;
use core::hint::black_box;
use kernel::prelude::*;
use kernel::str::CStr;

type Pages = PageAllocator<KernelPlatform>;

/// Runs the benchmarks the `bench` parameter asks for (nothing if it is
/// unset or empty), logging one line per measurement.
pub fn run_if_asked(param: Option<&CStr>) {
    let Some(text) = param else {
        return;
    };
    let selection = match Selection::parse(text.as_bytes()) {
        Ok(selection) => selection,
        Err(error) => {
            pr_err!("rmm_bench: bad bench parameter: {}\n", error);
            return;
        }
    };
    if selection.is_empty() {
        return;
    }
    let cpus = online_cpus().unwrap_or_default();
    pr_info!(
        "rmm_bench: start iters={} reps={} online_cpus={}\n",
        selection.iters,
        selection.reps,
        cpus.len()
    );
    let pages = match PageAllocator::new(KernelPlatform::new()) {
        Ok(pages) => pages,
        Err(_) => {
            pr_err!("rmm_bench: cannot create a page allocator\n");
            return;
        }
    };
    empty_loops(&selection);
    for case in selection.cases() {
        let result = match case {
            Case::Pair => objects::object_pairs(&selection, &pages),
            Case::Batch => objects::object_batches(&selection, &pages),
            Case::Kmalloc => objects::kmalloc_pairs(&selection, &pages),
            Case::Pages => pages::page_blocks(&selection, &pages),
            Case::Counter => counters::counters(&selection),
            Case::Ctor => objects::constructors(&selection, &pages),
            Case::Parts => parts::parts(&selection, &pages),
            Case::Vmalloc => pages::vmallocs(&selection, &pages),
            Case::Smp => smp::parallel(&selection, &pages, &cpus),
            Case::Numa => smp::remote_across_nodes(&selection, &pages, &cpus),
        };
        if let Err(error) = result {
            pr_err!("rmm_bench: case {} failed: {:?}\n", case.name(), error);
        }
    }
    pr_info!("rmm_bench: end\n");
}

/// Runs `body` and returns how long it took, or `ENOMEM` if it failed.
fn timed(body: impl FnOnce() -> bool) -> Result<i64> {
    let start = now();
    let ok = body();
    let elapsed = now() - start;
    if ok {
        Ok(elapsed)
    } else {
        Err(ENOMEM)
    }
}

fn log(record: Record<'_>) {
    pr_info!("{}\n", record);
}

/// What the loops cost without any allocator: a bare loop, and a loop of
/// two out-of-line calls (the shape of an allocation and free pair).
fn empty_loops(selection: &Selection) {
    let iters = selection.pair_iters();
    if let Ok(ns) = timed(|| {
        for i in 0..iters {
            black_box(i);
        }
        true
    }) {
        log(Record::new("empty", "loop", iters.into(), ns));
    }
    if let Ok(ns) = timed(|| {
        for i in 0..iters {
            black_box(nothing(black_box(i)));
            nothing(i);
        }
        true
    }) {
        log(Record::new("empty", "call", iters.into(), ns));
    }
}

#[inline(never)]
fn nothing(value: u32) -> u32 {
    value
}
