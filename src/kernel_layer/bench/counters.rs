// SPDX-License-Identifier: GPL-2.0

//! Counters (`counter`): rmm's per-CPU counter against the kernel's
//! `percpu_counter` and one shared atomic, adds and exact sums.

use super::{log, timed};
use crate::bench_spec::{Record, Selection};
use crate::kernel_layer::bindings;
use crate::kernel_layer::platform::KernelPlatform;
use crate::percpu_counter::PerCpuCounter;
use core::hint::black_box;
use core::sync::atomic::{AtomicI64, Ordering};
use kernel::alloc::{flags, KBox};
use kernel::prelude::*;
use kernel::types::Opaque;

/// One side of a counter benchmark.
trait Counter {
    const IMPL: &'static str;

    /// Adds `amount` on this CPU.
    fn add(&self, amount: i64);

    /// The exact value.
    fn sum(&self) -> i64;
}

struct RmmCounter {
    counter: PerCpuCounter<KernelPlatform>,
}

impl Counter for RmmCounter {
    const IMPL: &'static str = "rmm";

    #[inline(never)]
    fn add(&self, amount: i64) {
        self.counter.add(amount);
    }

    #[inline(never)]
    fn sum(&self) -> i64 {
        self.counter.sum()
    }
}

/// A kernel `percpu_counter` with the kernel's default batch.
///
/// # Invariants
///
/// `counter` was initialised by `percpu_counter_init` and is destroyed on
/// drop; it never moves (it lives in its own allocation).
struct KernelCounter {
    counter: KBox<Opaque<bindings::percpu_counter>>,
}

impl KernelCounter {
    fn new() -> Result<Self> {
        let counter = KBox::new(Opaque::uninit(), flags::GFP_KERNEL)?;
        // SAFETY: The memory is valid for a `percpu_counter` and stays at
        // this address until `drop`.
        let ret = unsafe { bindings::rmm_percpu_counter_init(counter.get(), 0) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: Initialised above, in its own allocation.
        Ok(KernelCounter { counter })
    }
}

impl Counter for KernelCounter {
    const IMPL: &'static str = "kernel";

    #[inline]
    fn add(&self, amount: i64) {
        // SAFETY: The counter is initialised (type invariant); the kernel
        // serialises concurrent users itself. `percpu_counter_add` is this
        // call with the global batch.
        unsafe {
            bindings::percpu_counter_add_batch(
                self.counter.get(),
                amount,
                bindings::percpu_counter_batch,
            )
        };
    }

    #[inline]
    fn sum(&self) -> i64 {
        // SAFETY: As for `add`.
        unsafe { bindings::__percpu_counter_sum(self.counter.get()) }
    }
}

impl Drop for KernelCounter {
    fn drop(&mut self) {
        // SAFETY: Initialised (type invariant) and not used any more.
        unsafe { bindings::percpu_counter_destroy_many(self.counter.get(), 1) };
    }
}

/// The floor: one shared atomic.
struct AtomicCounter(AtomicI64);

impl Counter for AtomicCounter {
    const IMPL: &'static str = "atomic";

    #[inline(never)]
    fn add(&self, amount: i64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    #[inline(never)]
    fn sum(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn log_counter<C: Counter>(counter: &C, selection: &Selection) -> Result {
    let adds = selection.pair_iters();
    let sums = selection.sum_iters();
    let ns = timed(|| {
        for _ in 0..adds {
            counter.add(black_box(1));
        }
        true
    })?;
    log(Record::new("counter_add", C::IMPL, adds.into(), ns));
    let ns = timed(|| {
        for _ in 0..sums {
            black_box(counter.sum());
        }
        true
    })?;
    log(Record::new("counter_sum", C::IMPL, sums.into(), ns));
    if counter.sum() != i64::from(adds) {
        pr_err!("rmm_bench: {} counter lost adds\n", C::IMPL);
        return Err(EINVAL);
    }
    Ok(())
}

pub(super) fn counters(selection: &Selection) -> Result {
    let counter =
        PerCpuCounter::with_default_batch(&KernelPlatform::new(), 0).map_err(|_| ENOMEM)?;
    log_counter(&RmmCounter { counter }, selection)?;
    log_counter(&KernelCounter::new()?, selection)?;
    log_counter(&AtomicCounter(AtomicI64::new(0)), selection)
}
