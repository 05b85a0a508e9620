// SPDX-License-Identifier: GPL-2.0

//! Several CPUs at once (`smp`): an rmm cache and a SLUB cache shared by
//! one kernel thread per online CPU, doing pairs or batch rounds all at
//! once, and the remote-free hand-off (one CPU allocates, another frees;
//! [`crate::bench_remote`]). Wall time from the first thread's start to the
//! last one's end. `numa` is the same hand-off between two memory nodes: a
//! CPU of node 0 allocates, a CPU of another node frees.

use super::objects::{RmmCache, SlubCache};
use super::{log, Pages};
use crate::bench_loops::{Objects, ParallelBatches, ParallelPairs, SmpJob};
use crate::bench_remote::{RemoteFree, REMOTE_BUFFERS};
use crate::bench_spec::{Record, Selection, BATCH, SMP_SIZES};
use crate::kernel_layer::cpu_threads::{self, now, pause, CpuWork};
use crate::kernel_layer::platform::KernelPlatform;
use crate::platform::Platform;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, Ordering};
use kernel::alloc::{flags, KVec};
use kernel::c_str;
use kernel::ffi::c_uint;
use kernel::prelude::*;

/// One thread of a multi-CPU run: its role in the job, when it started and
/// ended, and whether an allocation failed.
struct Worker<'a> {
    job: &'a dyn SmpJob,
    failed: &'a AtomicBool,
    role: usize,
    start: AtomicI64,
    end: AtomicI64,
}

impl CpuWork for Worker<'_> {
    fn run(&self) {
        let start = now();
        let ok = self.job.run(self.role);
        let end = now();
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        if !ok {
            self.failed.store(true, Ordering::Relaxed);
        }
    }
}

/// Times `job` with one kernel thread bound to each CPU of `cpus` (thread
/// `i` on `cpus[i]`, role `i`), all started together
/// ([`cpu_threads::run_on_cpus`]); returns the wall time from the first
/// start to the last end.
fn time_on_cpus(job: &dyn SmpJob, cpus: &[c_uint]) -> Result<i64> {
    let failed = AtomicBool::new(false);
    let mut workers = KVec::with_capacity(cpus.len(), flags::GFP_KERNEL)?;
    for role in 0..cpus.len() {
        workers.push(
            Worker {
                job,
                failed: &failed,
                role,
                start: AtomicI64::new(0),
                end: AtomicI64::new(0),
            },
            flags::GFP_KERNEL,
        )?;
    }
    cpu_threads::run_on_cpus(&workers, cpus, c_str!("rmm_bench/%u"))?;
    if failed.load(Ordering::Acquire) {
        return Err(ENOMEM);
    }
    let start = workers
        .iter()
        .map(|w| w.start.load(Ordering::Relaxed))
        .min();
    let end = workers.iter().map(|w| w.end.load(Ordering::Relaxed)).max();
    match (start, end) {
        (Some(start), Some(end)) => Ok(end - start),
        _ => Err(EINVAL),
    }
}

/// `count` empty slots for objects handed between threads.
fn atomic_slots(count: usize) -> Result<KVec<AtomicPtr<u8>>> {
    let mut slots = KVec::with_capacity(count, flags::GFP_KERNEL)?;
    for _ in 0..count {
        slots.push(AtomicPtr::new(null_mut()), flags::GFP_KERNEL)?;
    }
    Ok(slots)
}

/// The multi-CPU measurements.
#[derive(Clone, Copy)]
enum SmpKind {
    /// Every CPU does pairs.
    Pair,
    /// Every CPU does batch rounds.
    Batch,
    /// One CPU allocates, another frees.
    Remote,
}

impl SmpKind {
    const ALL: [SmpKind; 3] = [SmpKind::Pair, SmpKind::Batch, SmpKind::Remote];
}

/// The remote-free hand-off of `selection`'s size on `cpus` (the first
/// allocates, the second frees): the objects handed over and the wall
/// time.
fn remote_free<O: Objects>(
    objects: &O,
    selection: &Selection,
    cpus: &[c_uint],
) -> Result<(u64, i64)> {
    let slots = atomic_slots(REMOTE_BUFFERS * BATCH)?;
    let batches = (selection.pair_iters() as usize / BATCH).max(1);
    let job = RemoteFree::new(objects, batches, &slots, pause);
    let ns = time_on_cpus(&job, cpus)?;
    Ok((job.objects() as u64, ns))
}

/// One multi-CPU measurement of one side, logged.
fn parallel_once<O: Objects>(
    kind: SmpKind,
    objects: &O,
    size: usize,
    selection: &Selection,
    cpus: &[c_uint],
    rep: u32,
) -> Result {
    let threads = cpus.len();
    let iters = selection.pair_iters();
    let (case, threads, ops, ns) = match kind {
        SmpKind::Pair => {
            let ns = time_on_cpus(&ParallelPairs { objects, iters }, cpus)?;
            ("smp_pair", threads, u64::from(iters) * threads as u64, ns)
        }
        SmpKind::Batch => {
            let rounds = selection.batch_rounds();
            let slots = atomic_slots(threads * BATCH)?;
            let job = ParallelBatches {
                objects,
                rounds,
                batch: BATCH,
                slots: &slots,
            };
            let ns = time_on_cpus(&job, cpus)?;
            let ops = u64::from(rounds) * (threads * BATCH) as u64;
            ("smp_batch", threads, ops, ns)
        }
        SmpKind::Remote => {
            let (objects, ns) = remote_free(objects, selection, &cpus[..2])?;
            ("smp_remote", 2, objects, ns)
        }
    };
    log(Record::new(case, O::IMPL, ops, ns)
        .size(size)
        .parallel(threads, rep));
    Ok(())
}

/// Warms both sides up with alloc/free pairs on every CPU of `cpus` (not
/// logged), so that neither is timed while it still builds its slabs.
fn warm_up<R: Objects, S: Objects>(
    rmm: &R,
    slub: &S,
    selection: &Selection,
    cpus: &[c_uint],
) -> Result {
    let iters = Selection::warmup(selection.pair_iters());
    time_on_cpus(
        &ParallelPairs {
            objects: rmm,
            iters,
        },
        cpus,
    )?;
    time_on_cpus(
        &ParallelPairs {
            objects: slub,
            iters,
        },
        cpus,
    )?;
    Ok(())
}

pub(super) fn parallel(selection: &Selection, pages: &Pages, cpus: &[c_uint]) -> Result {
    if cpus.len() < 2 {
        pr_info!("rmm_bench: case smp skipped: it needs 2 online CPUs\n");
        return Ok(());
    }
    for size in SMP_SIZES {
        let rmm = RmmCache::new(pages, size, None)?;
        let slub = SlubCache::new(size, None)?;
        warm_up(&rmm, &slub, selection, cpus)?;
        for rep in 0..selection.reps {
            for kind in SmpKind::ALL {
                // The two sides run back to back, taking turns to go first,
                // so that a change in the host's load affects both alike.
                if rep % 2 == 0 {
                    parallel_once(kind, &rmm, size, selection, cpus, rep)?;
                    parallel_once(kind, &slub, size, selection, cpus, rep)?;
                } else {
                    parallel_once(kind, &slub, size, selection, cpus, rep)?;
                    parallel_once(kind, &rmm, size, selection, cpus, rep)?;
                }
            }
        }
    }
    Ok(())
}

/// The first online CPU of node 0 and the first online CPU of another
/// node, if there are such CPUs.
fn cpus_on_two_nodes(cpus: &[c_uint]) -> Option<[c_uint; 2]> {
    let platform = KernelPlatform::new();
    let node_of = |cpu: c_uint| platform.cpu_node(cpu as usize);
    let home = *cpus.iter().find(|&&cpu| node_of(cpu) == 0)?;
    let away = *cpus.iter().find(|&&cpu| node_of(cpu) != 0)?;
    Some([home, away])
}

/// One measurement of the `numa` case for one side, logged.
fn numa_once<O: Objects>(
    objects: &O,
    size: usize,
    selection: &Selection,
    pair: &[c_uint; 2],
    rep: u32,
) -> Result {
    let (handed, ns) = remote_free(objects, selection, pair)?;
    log(Record::new("numa_remote", O::IMPL, handed, ns)
        .size(size)
        .parallel(2, rep));
    Ok(())
}

/// The `numa` case: the remote-free hand-off from a CPU of node 0 to a CPU
/// of another node, rmm against SLUB back to back, `selection.reps` times
/// per size (`case=numa_remote`). The caches' slabs come from the
/// allocating CPU's node, so every free is of an object of another node.
pub(super) fn remote_across_nodes(selection: &Selection, pages: &Pages, cpus: &[c_uint]) -> Result {
    let Some(pair) = cpus_on_two_nodes(cpus) else {
        pr_info!("rmm_bench: case numa skipped: it needs online CPUs on two memory nodes\n");
        return Ok(());
    };
    pr_info!(
        "rmm_bench: case numa: allocating on CPU {} (node 0), freeing on CPU {} (node {})\n",
        pair[0],
        pair[1],
        KernelPlatform::new().cpu_node(pair[1] as usize)
    );
    for size in SMP_SIZES {
        let rmm = RmmCache::new(pages, size, None)?;
        let slub = SlubCache::new(size, None)?;
        warm_up(&rmm, &slub, selection, &pair)?;
        for rep in 0..selection.reps {
            // Taking turns to go first, as in `parallel`.
            if rep % 2 == 0 {
                numa_once(&rmm, size, selection, &pair, rep)?;
                numa_once(&slub, size, selection, &pair, rep)?;
            } else {
                numa_once(&slub, size, selection, &pair, rep)?;
                numa_once(&rmm, size, selection, &pair, rep)?;
            }
        }
    }
    Ok(())
}
