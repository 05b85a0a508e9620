// SPDX-License-Identifier: GPL-2.0

//! Per-CPU counters in the manner of the kernel's `percpu_counter`, and plain
//! per-CPU statistics.
//!
//! About a third of the file is the loom model of the counter's CPU-local
//! protocol, kept next to the code it checks.
//!
//! A [`PerCpuCounter`] lets many CPUs add to one number without all of them
//! writing the same cache line: every CPU accumulates its changes in its own
//! slot and only moves them into a shared total once they reach `batch` in
//! either direction. Reading the shared total is cheap but approximate;
//! [`PerCpuCounter::sum`] visits every CPU and is exact.
//!
//! # How the slots work
//!
//! Each slot holds two numbers: `count`, everything ever added on that CPU,
//! and `folded`, the part of `count` already moved into the shared total. The
//! CPU's delta (what the kernel keeps in its per-CPU variable) is
//! `count - folded`.
//!
//! Only the slot's own CPU writes it, inside [`PerCpu::with_local`] (in the
//! kernel: interrupts off, the slot reached `%gs`-relative), so an add is a
//! plain load, add and store of `count` with no locked instruction, as the
//! kernel's `this_cpu_add` is; the same section then compares the delta with
//! `batch` and, at the batch, folds: it moves `folded` up to `count` and adds
//! the difference to the total (one atomic add, the only shared write).
//! Other CPUs only read the slots, as relaxed atomics.
//!
//! Because `count` itself never moves, [`PerCpuCounter::sum`] (the sum of
//! every `count`) never sees an amount "in transit" between a slot and the
//! total, and so it is as exact under concurrency as the kernel's locked
//! sum, without its lock: it includes every add that completed before it
//! started.
//!
//! All arithmetic wraps on overflow, as the kernel's `s64` does when built
//! with `-fno-strict-overflow`.

use crate::platform::{AllocError, PerCpu, Platform};
use core::cmp::Ordering as CmpOrdering;
use core::sync::atomic::Ordering;

// Under loom, the counter runs on loom's atomics so that its model checker
// explores every interleaving of this very code.
#[cfg(all(test, loom))]
use loom::sync::atomic::{AtomicI64, AtomicU64};

#[cfg(not(all(test, loom)))]
use core::sync::atomic::{AtomicI64, AtomicU64};

/// The smallest batch [`default_batch`] chooses, as the kernel's
/// `percpu_counter_batch` never goes below 32.
pub const MIN_DEFAULT_BATCH: i64 = 32;

/// The batch the kernel would choose for `nr_cpus` CPUs: `max(32, 2 * nr_cpus)`
/// (`compute_batch_value` in `lib/percpu_counter.c`).
///
/// A larger machine gets a larger batch so that folding, which writes the
/// shared total, stays rare as CPUs are added, at the price of a larger error
/// in [`PerCpuCounter::read`].
pub fn default_batch(nr_cpus: usize) -> i64 {
    i64::try_from(nr_cpus)
        .unwrap_or(i64::MAX)
        .saturating_mul(2)
        .max(MIN_DEFAULT_BATCH)
}

/// One CPU's share of a [`PerCpuCounter`].
///
/// Written only by its own CPU, with exclusive use of it
/// ([`PerCpu::with_local`]); read by anyone. The fields are atomics only so
/// that those reads are defined: every write is a relaxed load followed by a
/// relaxed store (plain `mov`s on x86-64), like the slab arrays'
/// `LocalCount`.
struct CpuSlot {
    /// Every amount ever added on this CPU (plus the initial value, on CPU 0).
    count: AtomicI64,
    /// The part of `count` already added to the shared total.
    folded: AtomicI64,
}

impl CpuSlot {
    fn new(value: i64) -> Self {
        CpuSlot {
            count: AtomicI64::new(value),
            folded: AtomicI64::new(value),
        }
    }
}

/// A counter spread over CPUs, like the kernel's `struct percpu_counter`.
///
/// Adds touch only the calling CPU's slot until its delta reaches `batch`;
/// then the delta is folded into the shared total. [`read`](Self::read) returns
/// the shared total, off by less than `batch` per CPU; [`sum`](Self::sum)
/// returns the exact value.
///
/// An add is CPU-local: inside [`PerCpu::with_local`], a load, add and store
/// of the CPU's own slot and a comparison with the batch; at the batch, one
/// atomic add to the shared total. Nothing takes a lock. Like the kernel's
/// counter, it may be used from interrupt handlers (the CPU-local section
/// keeps them out) but not from NMIs.
///
/// # Invariants
///
/// - `batch >= 1`, `fold_bias == batch - 1`, `fold_span == 2 * (batch - 1)`
///   (as `u64`), and `nr_cpus` is the number of slots in `slots`.
/// - A slot is written only with exclusive use of it (its CPU's
///   [`PerCpu::with_local`]), so its load-then-store updates are never lost.
/// - The `count`s of all slots add up (wrapping) to the initial value plus
///   every amount added so far.
/// - A slot's `folded` only changes from `x` to `y` together with adding
///   `y - x` to `total`, in the same CPU-local section; so once no fold is in
///   progress, `total` equals the sum of all `folded` values.
/// - Once a CPU-local section on a slot has finished, the slot's delta
///   `count - folded` lies strictly between `-batch` and `batch`.
pub struct PerCpuCounter<P: Platform> {
    slots: P::PerCpu<CpuSlot>,
    total: AtomicI64,
    batch: i64,
    fold_bias: u64,
    fold_span: u64,
    nr_cpus: usize,
}

impl<P: Platform> PerCpuCounter<P> {
    /// Creates a counter holding `initial` that folds a CPU's delta into the
    /// shared total once it reaches `batch` in either direction.
    ///
    /// A `batch` below 1 is taken as 1, which folds every change at once (the
    /// counter then behaves like one shared atomic). Fails if the per-CPU
    /// storage cannot be allocated, or if the platform reports no CPUs.
    pub fn new(platform: &P, initial: i64, batch: i64) -> Result<Self, AllocError> {
        let nr_cpus = platform.nr_cpu_ids();
        if nr_cpus == 0 {
            return Err(AllocError);
        }
        let batch = batch.max(1);
        // `batch >= 1`, so `batch - 1` is not negative and twice it fits in
        // a `u64`.
        let fold_bias = batch.unsigned_abs() - 1;
        // INVARIANT: CPU 0's slot starts with `initial` as both its count and
        // its folded part, every other slot with zero, and the total with
        // `initial`: the counts add up to `initial`, the total equals the sum
        // of the folded parts, and every delta is zero. The batch fields are
        // computed as documented.
        let slots =
            platform.new_percpu(|cpu| Ok(CpuSlot::new(if cpu == 0 { initial } else { 0 })))?;
        Ok(PerCpuCounter {
            slots,
            total: AtomicI64::new(initial),
            batch,
            fold_bias,
            fold_span: fold_bias * 2,
            nr_cpus,
        })
    }

    /// Creates a counter holding `initial` with the kernel's default batch for
    /// this platform's CPU count (see [`default_batch`]).
    pub fn with_default_batch(platform: &P, initial: i64) -> Result<Self, AllocError> {
        Self::new(platform, initial, default_batch(platform.nr_cpu_ids()))
    }

    /// Adds `amount` (which may be negative) on the calling CPU
    /// (`percpu_counter_add`).
    ///
    /// In the kernel this is `percpu_counter_add_batch` with interrupts
    /// instead of a local `cmpxchg` keeping the CPU's slot to itself: the
    /// slot's `count` is loaded, added to and stored back, the delta compared
    /// with the batch, and only at the batch is anything shared written.
    #[inline]
    pub fn add(&self, amount: i64) {
        self.slots.with_local(|slot| {
            // Exclusive use of the slot (`with_local`): nothing writes it
            // between this load and the store, so the add is not lost.
            let count = slot.count.load(Ordering::Relaxed).wrapping_add(amount);
            slot.count.store(count, Ordering::Relaxed);
            let delta = count.wrapping_sub(slot.folded.load(Ordering::Relaxed));
            if self.must_fold(delta) {
                self.fold(slot, count, delta);
            }
        });
    }

    /// Adds one on the calling CPU (`percpu_counter_inc`).
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one on the calling CPU (`percpu_counter_dec`).
    #[inline]
    pub fn dec(&self) {
        self.add(-1);
    }

    /// Whether a delta has reached the batch: `|delta| >= batch`, for any
    /// `delta` including `i64::MIN`.
    #[inline(always)]
    fn must_fold(&self, delta: i64) -> bool {
        // `|delta| <= batch - 1` exactly when `delta + (batch - 1)` lies in
        // `0..=2 * (batch - 1)`, counted modulo 2^64: one add and one
        // compare instead of an absolute value.
        (delta as u64).wrapping_add(self.fold_bias) > self.fold_span
    }

    /// Moves `slot`'s delta, `count - folded`, into the total.
    ///
    /// Called inside the CPU-local section of the add that made `count`, so
    /// the slot is still the caller's alone.
    #[cold]
    #[inline(never)]
    fn fold(&self, slot: &CpuSlot, count: i64, delta: i64) {
        // INVARIANT: `folded` goes from `count - delta` to `count` and the
        // total up by `delta`, in the same CPU-local section; the delta is
        // now zero.
        slot.folded.store(count, Ordering::Relaxed);
        self.total.fetch_add(delta, Ordering::Relaxed);
    }

    /// The shared total: cheap, approximate (`percpu_counter_read`).
    ///
    /// Once no add or set is in progress, the result differs from
    /// [`sum`](Self::sum) by at most [`max_read_error`](Self::max_read_error)
    /// `= nr_cpus * (batch - 1)`, that is by less than `batch * nr_cpus`.
    /// While updates run concurrently, amounts being folded can make the error
    /// momentarily larger, as in the kernel.
    pub fn read(&self) -> i64 {
        self.total.load(Ordering::Relaxed)
    }

    /// [`read`](Self::read), but never below zero
    /// (`percpu_counter_read_positive`): for counters of things that cannot
    /// be negative but whose approximation can be.
    pub fn read_positive(&self) -> i64 {
        self.read().max(0)
    }

    /// The exact value: every CPU's count added up (`percpu_counter_sum`).
    ///
    /// Costs one load per possible CPU, online or not. Called while other
    /// threads add, it includes every add that completed before it started
    /// (the slot's store happened before the load, which therefore reads it
    /// or a later value: coherence, no fence needed), counts no amount
    /// twice, and may or may not include adds that run concurrently, the
    /// same guarantee as the kernel's sum under its lock.
    pub fn sum(&self) -> i64 {
        (0..self.nr_cpus).fold(0i64, |sum, cpu| {
            sum.wrapping_add(self.slots.get(cpu).count.load(Ordering::Relaxed))
        })
    }

    /// [`sum`](Self::sum), but never below zero
    /// (`percpu_counter_sum_positive`).
    pub fn sum_positive(&self) -> i64 {
        self.sum().max(0)
    }

    /// Makes the counter hold `value` (`percpu_counter_set`).
    ///
    /// Applied as an add of `value - sum()` on the calling CPU, so adds
    /// running concurrently are never lost and never corrupt the counter:
    /// those the sum did not see are counted on top of `value`. No other
    /// CPU's slot is written, so no IPI is needed. (The kernel's set instead
    /// overwrites every CPU's delta under its lock, and may lose concurrent
    /// adds.)
    pub fn set(&self, value: i64) {
        self.add(value.wrapping_sub(self.sum()));
    }

    /// Compares the counter with `rhs`, reading every CPU only when the
    /// approximate value is too close to decide
    /// (`__percpu_counter_compare`).
    ///
    /// Exact when no update runs concurrently; otherwise as exact as the
    /// kernel's, which relies on the same error bound.
    pub fn compare(&self, rhs: i64) -> CmpOrdering {
        let approximate = self.read();
        let distance = (i128::from(approximate) - i128::from(rhs)).unsigned_abs();
        if distance > u128::from(self.max_read_error()) {
            approximate.cmp(&rhs)
        } else {
            self.sum().cmp(&rhs)
        }
    }

    /// The batch: how far a CPU's delta may grow before it is folded.
    pub fn batch(&self) -> i64 {
        self.batch
    }

    /// The number of CPUs the counter has a slot for.
    pub fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    /// The largest difference between [`read`](Self::read) and
    /// [`sum`](Self::sum) once no update is in progress:
    /// `nr_cpus * (batch - 1)` (saturating).
    pub fn max_read_error(&self) -> u64 {
        u64::try_from(self.nr_cpus)
            .unwrap_or(u64::MAX)
            .saturating_mul(self.fold_bias)
    }

    /// The delta `cpu` has not folded into the total yet, or `None` if the
    /// counter has no such CPU.
    ///
    /// A snapshot of two values: exact once no update on that CPU is in
    /// progress, and then strictly between `-batch` and `batch`.
    pub fn cpu_delta(&self, cpu: usize) -> Option<i64> {
        if cpu >= self.nr_cpus {
            return None;
        }
        let slot = self.slots.get(cpu);
        let folded = slot.folded.load(Ordering::Relaxed);
        let count = slot.count.load(Ordering::Relaxed);
        Some(count.wrapping_sub(folded))
    }
}

/// A per-CPU statistic: one `u64` per CPU, summed on demand.
///
/// For event counts that are only ever added to and read rarely (allocations,
/// frees, refills), where even [`PerCpuCounter`]'s occasional folding is more
/// than needed: an add touches only the calling CPU's own cache line. Each
/// add is an atomic add, so a caller that migrates mid-update loses nothing.
/// Values wrap at `u64::MAX`.
pub struct PerCpuStat<P: Platform> {
    slots: P::PerCpu<AtomicU64>,
    nr_cpus: usize,
}

impl<P: Platform> PerCpuStat<P> {
    /// Creates a statistic that is zero on every CPU. Fails if the per-CPU
    /// storage cannot be allocated, or if the platform reports no CPUs.
    pub fn new(platform: &P) -> Result<Self, AllocError> {
        let nr_cpus = platform.nr_cpu_ids();
        if nr_cpus == 0 {
            return Err(AllocError);
        }
        Ok(PerCpuStat {
            slots: platform.new_percpu(|_| Ok(AtomicU64::new(0)))?,
            nr_cpus,
        })
    }

    /// Adds `amount` on the calling CPU.
    pub fn add(&self, platform: &P, amount: u64) {
        let mut cpu = platform.this_cpu();
        if cpu >= self.nr_cpus {
            // Not `%`: its division-by-zero panic path trips the 6.12
            // objtool ("falls through to next function").
            cpu = cpu.checked_rem(self.nr_cpus).unwrap_or(0);
        }
        // Relaxed: statistics order nothing else, and atomicity alone keeps
        // every add.
        self.slots.get(cpu).fetch_add(amount, Ordering::Relaxed);
    }

    /// Adds one on the calling CPU.
    pub fn inc(&self, platform: &P) {
        self.add(platform, 1);
    }

    /// The total over all CPUs (wrapping). Includes every add that completed
    /// before the call; concurrent adds may or may not be counted.
    pub fn sum(&self) -> u64 {
        (0..self.nr_cpus).fold(0u64, |sum, cpu| {
            sum.wrapping_add(self.slots.get(cpu).load(Ordering::Relaxed))
        })
    }

    /// What has been added on `cpu`, or `None` if there is no such CPU.
    pub fn cpu_value(&self, cpu: usize) -> Option<u64> {
        (cpu < self.nr_cpus).then(|| self.slots.get(cpu).load(Ordering::Relaxed))
    }
}

/// Model checks with loom: `RUSTFLAGS="--cfg loom" cargo test --lib percpu_counter`.
///
/// These live in the library rather than in `tests/` because the counter
/// itself must be built on loom's atomics, and the library can only see loom
/// (a dev-dependency) when it is compiled for its own unit tests.
///
/// # What is modelled
///
/// Each loom thread is a task running on one modelled CPU (a loom
/// thread-local says which). [`PerCpu::with_local`] takes a loom mutex of the
/// CPU's slot for the length of the section: that is what interrupts off
/// gives in the kernel, exclusive use of the slot by one section at a time,
/// whether the other sections are tasks on the same CPU or interrupt
/// handlers. Sections on different CPUs interleave freely, and every read
/// from another CPU (`sum`, `read`, `cpu_delta`) is a relaxed load that loom
/// may answer with any value coherence allows. So the model checks the
/// claims the documentation makes: no add is lost, `sum` includes every add
/// that completed before it and counts nothing twice, the deltas end below
/// the batch, and `read` stays within its bound and never goes backwards
/// with positive amounts.
///
/// A broken platform whose `with_local` gives no exclusive use (an add that
/// is not CPU-local) shows that the model can fail: two tasks on one CPU
/// then lose an add.
///
/// # What is not covered
///
/// That the kernel's `with_local` really keeps the slot to its CPU (the
/// interrupts-off section; see `cpu_local_model` for the slab's side of the
/// same protocol). CPU hotplug needs no model: an offline CPU runs no
/// section, its slot keeps its delta, and `sum` and the read bound count
/// every possible CPU, online or not.
#[cfg(all(test, loom))]
mod loom_tests {
    extern crate std;

    use super::*;
    use crate::gfp::Gfp;
    use crate::platform::{Lock, LockClass};
    use core::alloc::Layout;
    use core::cell::Cell;
    use core::fmt;
    use core::ptr::NonNull;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;
    use std::boxed::Box;
    use std::sync::Mutex;
    use std::vec::Vec;

    loom::thread_local! {
        static THIS_CPU: Cell<usize> = Cell::new(0);
    }

    /// Just enough of a platform for a counter: CPUs come from a loom
    /// thread-local (loom threads share one OS thread, so `HostPlatform`'s
    /// `std` thread-local would be shared by all of them).
    struct LoomPlatform {
        nr_cpus: usize,
        /// Whether `with_local` gives exclusive use of the slot; `false`
        /// only for the broken variant.
        exclusive: bool,
    }

    fn run_on_cpu(cpu: usize) {
        THIS_CPU.with(|c| c.set(cpu));
    }

    struct UnusedLock<T>(Mutex<T>);

    impl<T: Send> Lock<T> for UnusedLock<T> {
        fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            f(&mut self.0.lock().unwrap())
        }
    }

    /// Per-CPU slots; a loom mutex per slot stands in for "interrupts
    /// off on this CPU", so loom explores every interleaving the kernel
    /// allows between CPU-local sections of different CPUs.
    struct LoomPerCpu<T> {
        slots: Box<[(loom::sync::Mutex<()>, T)]>,
        exclusive: bool,
    }

    impl<T: Send + Sync> PerCpu<T> for LoomPerCpu<T> {
        fn get(&self, cpu: usize) -> &T {
            &self.slots[cpu].1
        }

        fn with_local<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            let (exclusive, value) = &self.slots[THIS_CPU.with(|c| c.get())];
            let _guard = self.exclusive.then(|| exclusive.lock().unwrap());
            f(value)
        }
    }

    impl Platform for LoomPlatform {
        type Lock<T: Send> = UnusedLock<T>;
        type PerCpu<T: Send + Sync> = LoomPerCpu<T>;

        fn new_lock<T: Send>(&self, value: T, _: LockClass) -> Result<UnusedLock<T>, AllocError> {
            Ok(UnusedLock(Mutex::new(value)))
        }

        fn new_percpu<T: Send + Sync>(
            &self,
            init: impl FnMut(usize) -> Result<T, AllocError>,
        ) -> Result<LoomPerCpu<T>, AllocError> {
            let slots: Result<Vec<(loom::sync::Mutex<()>, T)>, AllocError> = (0..self.nr_cpus)
                .map(init)
                .map(|value| value.map(|value| (loom::sync::Mutex::new(()), value)))
                .collect();
            Ok(LoomPerCpu {
                slots: slots?.into_boxed_slice(),
                exclusive: self.exclusive,
            })
        }

        fn on_each_cpu<T: Send + Sync>(
            &self,
            data: &LoomPerCpu<T>,
            f: &(dyn Fn(usize, &T) + Sync),
        ) {
            for (cpu, (exclusive, value)) in data.slots.iter().enumerate() {
                let _guard = exclusive.lock().unwrap();
                f(cpu, value);
            }
        }

        fn nr_cpu_ids(&self) -> usize {
            self.nr_cpus
        }

        fn this_cpu(&self) -> usize {
            THIS_CPU.with(|c| c.get())
        }

        fn alloc_pages(&self, _: u32, _: Gfp, _: usize) -> Option<NonNull<u8>> {
            None
        }

        unsafe fn free_pages(&self, _: NonNull<u8>, _: u32) {}

        fn alloc_meta(&self, _: Layout, _: Gfp) -> Option<NonNull<u8>> {
            None
        }

        unsafe fn free_meta(&self, _: NonNull<u8>, _: Layout) {}

        fn report(&self, _: fmt::Arguments<'_>) {}

        fn monotonic_ns(&self) -> u64 {
            0
        }
    }

    const BATCH: i64 = 2;

    fn counter_on(platform: LoomPlatform) -> Arc<PerCpuCounter<LoomPlatform>> {
        Arc::new(PerCpuCounter::new(&platform, 0, BATCH).unwrap())
    }

    /// A counter on two CPUs with a batch of 2.
    fn setup() -> Arc<PerCpuCounter<LoomPlatform>> {
        counter_on(LoomPlatform {
            nr_cpus: 2,
            exclusive: true,
        })
    }

    /// Spawns a task on `cpu` that adds `amounts` one after the other.
    fn adder(
        counter: &Arc<PerCpuCounter<LoomPlatform>>,
        cpu: usize,
        amounts: &'static [i64],
    ) -> thread::JoinHandle<()> {
        let counter = counter.clone();
        thread::spawn(move || {
            run_on_cpu(cpu);
            for &amount in amounts {
                counter.add(amount);
            }
        })
    }

    /// What every test checks once all threads are joined.
    fn check_quiescent(counter: &PerCpuCounter<LoomPlatform>, expected: i64) {
        assert_eq!(counter.sum(), expected);
        let error = counter.read().abs_diff(expected);
        assert!(
            error <= counter.max_read_error(),
            "read {} sum {expected}",
            counter.read()
        );
        for cpu in 0..counter.nr_cpus() {
            let delta = counter.cpu_delta(cpu).unwrap();
            assert!(delta.abs() < BATCH, "cpu {cpu} delta {delta}");
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    /// Task A adds 1 then 4, task B adds 16, on `cpu_a` and `cpu_b`, while
    /// the main thread sums. The amounts are chosen so that every set of
    /// completed adds has its own total: a sum that lost or doubled an amount
    /// in the middle of a fold would show up as a value outside the set.
    fn two_adders_and_a_sum(counter: Arc<PerCpuCounter<LoomPlatform>>, cpu_a: usize, cpu_b: usize) {
        let adder_a = adder(&counter, cpu_a, &[1, 4]);
        let adder_b = adder(&counter, cpu_b, &[16]);
        let concurrent = counter.sum();
        assert!(
            [0, 1, 5, 16, 17, 21].contains(&concurrent),
            "concurrent sum {concurrent}"
        );
        adder_a.join().unwrap();
        adder_b.join().unwrap();
        check_quiescent(&counter, 21);
    }

    /// Two tasks on one CPU: one may be an interrupt handler that adds in
    /// the middle of the other's work, but never inside its CPU-local
    /// section.
    #[test]
    fn adders_on_the_same_cpu() {
        model(|| two_adders_and_a_sum(setup(), 0, 0));
    }

    #[test]
    fn adders_on_different_cpus() {
        model(|| two_adders_and_a_sum(setup(), 0, 1));
    }

    /// Broken: a `with_local` without exclusive use, so two tasks on one
    /// CPU can both load the same `count` and one add is lost.
    #[test]
    #[should_panic(expected = "assertion `left == right` failed")]
    fn broken_non_exclusive_local_section_is_caught() {
        model(|| {
            let counter = counter_on(LoomPlatform {
                nr_cpus: 2,
                exclusive: false,
            });
            two_adders_and_a_sum(counter, 0, 0);
        });
    }

    /// One task folds a large add while another undoes most of it on the
    /// same CPU: whichever runs last must see the other's work, or a delta
    /// at or beyond the batch would be left behind.
    #[test]
    fn opposite_adds_on_the_same_cpu() {
        model(|| {
            let counter = setup();
            let adders = [adder(&counter, 0, &[4]), adder(&counter, 0, &[-3])];
            let concurrent = counter.sum();
            assert!([0, 4, -3, 1].contains(&concurrent), "sum {concurrent}");
            for adder in adders {
                adder.join().unwrap();
            }
            check_quiescent(&counter, 1);
        });
    }

    /// An add that finished before the sum started must be in the sum, even
    /// while another task folds the same CPU's slot.
    #[test]
    fn completed_add_is_always_summed() {
        model(|| {
            let counter = setup();
            let done = Arc::new(AtomicBool::new(false));
            let first = {
                let (counter, done) = (counter.clone(), done.clone());
                thread::spawn(move || {
                    run_on_cpu(0);
                    counter.add(1);
                    done.store(true, Ordering::Release);
                })
            };
            let folder = adder(&counter, 0, &[4]);
            if done.load(Ordering::Acquire) {
                let sum = counter.sum();
                assert!(sum == 1 || sum == 5, "sum {sum} misses a completed add");
            }
            first.join().unwrap();
            folder.join().unwrap();
            check_quiescent(&counter, 5);
        });
    }

    /// `set` (on CPU 0) racing an add on `adder_cpu` keeps the add, on top
    /// of the set value or inside it, and leaves the counter consistent.
    fn set_racing_an_add(adder_cpu: usize) {
        model(move || {
            let counter = setup();
            let adder = adder(&counter, adder_cpu, &[3]);
            counter.set(10);
            adder.join().unwrap();
            let sum = counter.sum();
            assert!(sum == 10 || sum == 13, "sum {sum}");
            check_quiescent(&counter, sum);
        });
    }

    #[test]
    fn set_racing_an_add_on_another_cpu() {
        set_racing_an_add(1);
    }

    #[test]
    fn set_racing_an_add_on_its_own_cpu() {
        set_racing_an_add(0);
    }

    /// With only positive amounts the shared total and the sum never go
    /// backwards, even when two tasks fold the same slot.
    #[test]
    fn reads_are_monotonic_for_positive_adds() {
        model(|| {
            let counter = setup();
            let adders = [adder(&counter, 0, &[3]), adder(&counter, 0, &[2])];
            let (earlier, earlier_sum) = (counter.read(), counter.sum());
            let (later, later_sum) = (counter.read(), counter.sum());
            assert!(
                earlier <= later && later <= 5,
                "read {earlier} then {later}"
            );
            assert!(
                earlier_sum <= later_sum && later_sum <= 5,
                "sum {earlier_sum} then {later_sum}"
            );
            for adder in adders {
                adder.join().unwrap();
            }
            check_quiescent(&counter, 5);
        });
    }
}
