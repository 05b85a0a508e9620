// SPDX-License-Identifier: GPL-2.0

//! The concurrent stress test's kernel side (`insmod rmm.ko stress=OPS`):
//! one kernel thread per online CPU, each running a [`Runner`] of the
//! stress model in [`crate::stress`] (what the threads do, the stamps, the
//! inboxes, the summary), and the summary line in the kernel log.

use super::cpu_threads::{now, online_cpus, pause, run_on_cpus, CpuWork};
use super::platform::KernelPlatform;
use crate::platform::{LockClass, Platform};
use crate::slab::KmemCache;
use crate::state::Rmm;
use crate::stress::{
    destroy_caches, quota, seed, CountsCell, Ring, Runner, Shared, StressObject, Summary,
    CACHE_SPECS, HELD_MAX,
};
use core::num::NonZeroUsize;
use kernel::alloc::{flags, KVec};
use kernel::c_str;
use kernel::prelude::*;

type Cache = KmemCache<KernelPlatform>;
type Inbox = <KernelPlatform as Platform>::Lock<Ring>;

/// The threads get `Shared` through a raw pointer: make sure it may be
/// shared.
const _: fn() = || {
    fn is_sync<T: Sync>() {}
    is_sync::<Shared<'_, KernelPlatform>>();
};

/// One thread: its part of the work and, when it is done, its counts.
struct Worker<'a> {
    shared: &'a Shared<'a, KernelPlatform>,
    id: usize,
    seed: u64,
    quota: usize,
    counts: CountsCell,
}

impl CpuWork for Worker<'_> {
    fn run(&self) {
        // Without room to hold objects the thread still works (every
        // object it allocates is freed at once) and empties its inbox.
        let (mut held, no_room) =
            match KVec::from_elem(StressObject::EMPTY, HELD_MAX, flags::GFP_KERNEL) {
                Ok(held) => (held, false),
                Err(_) => (KVec::new(), true),
            };
        let mut runner = Runner::new(self.shared, self.id, self.seed, &mut held);
        if no_room {
            runner.count_failure();
        }
        runner.work(self.quota);
        runner.finish(pause);
        self.counts.store(&runner.counts());
    }
}

/// Creates the stress caches into `caches`.
fn create_caches(rmm: &Rmm<KernelPlatform>, caches: &mut KVec<Cache>) -> Result {
    for spec in &CACHE_SPECS {
        let cache = spec.create(rmm.pages()).map_err(|_| ENOMEM)?;
        caches.push(cache, flags::GFP_KERNEL)?;
    }
    Ok(())
}

/// Runs about `ops` random operations (allocations and frees) on every
/// online CPU at once and logs the summary line. Fails only if the test
/// could not be set up.
pub fn run(rmm: &Rmm<KernelPlatform>, ops: usize) -> Result {
    let pages = rmm.pages();
    let mut caches = KVec::with_capacity(CACHE_SPECS.len(), flags::GFP_KERNEL)?;
    let result = create_caches(rmm, &mut caches).and_then(|()| run_threads(rmm, &caches, ops));
    let leaks = destroy_caches(pages, &caches);
    let mut summary = result?;
    summary.counts.corruptions += leaks;
    pr_info!("{}\n", summary);
    Ok(())
}

/// Starts one thread per online CPU on `caches` and kmalloc, and waits
/// until every thread is stopped.
fn run_threads(rmm: &Rmm<KernelPlatform>, caches: &[Cache], ops: usize) -> Result<Summary> {
    let cpus = online_cpus()?;
    let threads = NonZeroUsize::new(cpus.len()).ok_or(EINVAL)?;
    let platform = rmm.platform();
    let mut inboxes: KVec<Inbox> = KVec::with_capacity(threads.get(), flags::GFP_KERNEL)?;
    for _ in 0..threads.get() {
        let inbox = platform
            .new_lock(Ring::new(), LockClass::Other)
            .map_err(|_| ENOMEM)?;
        inboxes.push(inbox, flags::GFP_KERNEL)?;
    }
    let shared = Shared::new(rmm.pages(), rmm.kmalloc(), caches, &inboxes).ok_or(EINVAL)?;
    let clock = now() as u64;
    let mut workers = KVec::with_capacity(threads.get(), flags::GFP_KERNEL)?;
    for (id, &cpu) in cpus.iter().enumerate() {
        let seed = seed(clock, cpu);
        pr_info!("stress: thread {} on CPU {} seed {:#x}\n", id, cpu, seed);
        workers.push(
            Worker {
                shared: &shared,
                id,
                seed,
                quota: quota(ops, threads, id),
                counts: CountsCell::default(),
            },
            flags::GFP_KERNEL,
        )?;
    }
    let elapsed_ns = run_on_cpus(&workers, &cpus, c_str!("rmm_stress/%u"))?;
    let mut summary = Summary {
        elapsed_ns,
        ..Summary::default()
    };
    for worker in workers.iter() {
        summary.add_thread(&worker.counts.load());
    }
    Ok(summary)
}
