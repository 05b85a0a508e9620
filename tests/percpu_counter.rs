// SPDX-License-Identifier: GPL-2.0

//! Tests of the per-CPU counter and per-CPU statistics: exactness, the error
//! bound of the approximate read, folding at the batch, and many threads on
//! shared and migrating CPUs.

use proptest::prelude::*;
use rmm_core::host::HostPlatform;
use rmm_core::percpu_counter::{default_batch, PerCpuCounter, PerCpuStat, MIN_DEFAULT_BATCH};
use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread;

/// A small deterministic random source (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An amount in `-max..=max`.
    fn amount(&mut self, max: i64) -> i64 {
        self.below(2 * max as u64 + 1) as i64 - max
    }
}

/// How far the approximate read is from the exact sum, modulo 2^64 as the
/// counter computes.
fn read_error(counter: &PerCpuCounter<HostPlatform>) -> u64 {
    counter.sum().wrapping_sub(counter.read()).unsigned_abs()
}

/// The checks that hold whenever no update is in progress.
fn assert_quiescent(counter: &PerCpuCounter<HostPlatform>, expected: i64) {
    assert_eq!(counter.sum(), expected, "exact sum");
    assert!(
        read_error(counter) <= counter.max_read_error(),
        "read {} too far from sum {expected} (bound {})",
        counter.read(),
        counter.max_read_error()
    );
    for cpu in 0..counter.nr_cpus() {
        let delta = counter.cpu_delta(cpu).unwrap();
        assert!(
            delta.unsigned_abs() < counter.batch().unsigned_abs(),
            "cpu {cpu} delta {delta} not below batch {}",
            counter.batch()
        );
    }
}

#[test]
fn default_batch_follows_the_kernel() {
    assert_eq!(MIN_DEFAULT_BATCH, 32);
    assert_eq!(default_batch(1), 32);
    assert_eq!(default_batch(16), 32);
    assert_eq!(default_batch(17), 34);
    assert_eq!(default_batch(100), 200);
    assert_eq!(default_batch(usize::MAX), i64::MAX);

    let platform = HostPlatform::new(40);
    let counter = PerCpuCounter::with_default_batch(&platform, 7).unwrap();
    assert_eq!(counter.batch(), 80);
    assert_eq!(counter.nr_cpus(), 40);
    assert_eq!(counter.sum(), 7);
    assert_eq!(counter.read(), 7);
    assert_eq!(counter.max_read_error(), 40 * 79);
}

#[test]
fn batch_below_one_folds_every_change() {
    let platform = HostPlatform::new(3);
    for batch in [i64::MIN, -5, 0, 1] {
        let counter = PerCpuCounter::new(&platform, -4, batch).unwrap();
        assert_eq!(counter.batch(), 1);
        assert_eq!(counter.max_read_error(), 0);
        let mut expected = -4;
        for (cpu, amount) in [(0, 3), (1, -9), (2, 1), (1, 0), (0, 12)] {
            HostPlatform::set_this_cpu(cpu);
            counter.add(amount);
            expected += amount;
            assert_eq!(counter.read(), expected, "batch 1 keeps the total exact");
            assert_quiescent(&counter, expected);
        }
    }
}

#[test]
fn folds_exactly_when_the_delta_reaches_batch_upwards() {
    let platform = HostPlatform::new(4);
    let counter = PerCpuCounter::new(&platform, 100, 8).unwrap();
    HostPlatform::set_this_cpu(2);
    for step in 1..8 {
        counter.inc();
        assert_eq!(counter.read(), 100, "no fold below the batch");
        assert_eq!(counter.cpu_delta(2), Some(step));
        assert_eq!(counter.sum(), 100 + step);
    }
    counter.inc();
    assert_eq!(counter.read(), 108, "the whole delta moves at the batch");
    assert_eq!(counter.cpu_delta(2), Some(0));
    assert_quiescent(&counter, 108);
    for cpu in [0, 1, 3] {
        assert_eq!(counter.cpu_delta(cpu), Some(0));
    }
}

#[test]
fn folds_exactly_when_the_delta_reaches_batch_downwards() {
    let platform = HostPlatform::new(4);
    let counter = PerCpuCounter::new(&platform, 0, 8).unwrap();
    HostPlatform::set_this_cpu(1);
    counter.add(5);
    // 5 - 12 = -7 is still above -batch: nothing folded yet.
    for step in 1..=12 {
        counter.dec();
        assert_eq!(counter.read(), 0);
        assert_eq!(counter.cpu_delta(1), Some(5 - step));
    }
    counter.dec();
    assert_eq!(counter.read(), -8, "folds at exactly -batch");
    assert_eq!(counter.cpu_delta(1), Some(0));
    counter.dec();
    assert_eq!(counter.read(), -8);
    assert_eq!(counter.cpu_delta(1), Some(-1));
    assert_quiescent(&counter, -9);
}

#[test]
fn a_single_large_add_folds_at_once() {
    let platform = HostPlatform::new(2);
    let counter = PerCpuCounter::new(&platform, 0, 10).unwrap();
    HostPlatform::set_this_cpu(0);
    counter.add(9);
    counter.add(-1_000);
    assert_eq!(counter.read(), -991);
    assert_eq!(counter.cpu_delta(0), Some(0));
    HostPlatform::set_this_cpu(1);
    counter.add(10);
    assert_eq!(counter.read(), -981);
    assert_quiescent(&counter, -981);
}

#[test]
fn single_thread_read_stays_within_the_bound_at_every_step() {
    let platform = HostPlatform::new(5);
    let counter = PerCpuCounter::new(&platform, 12_345, 16).unwrap();
    assert_eq!(counter.max_read_error(), 5 * 15);
    let mut rng = Rng::new(1);
    let mut expected = 12_345i64;
    for _ in 0..20_000 {
        HostPlatform::set_this_cpu(rng.below(5) as usize);
        let amount = rng.amount(20);
        counter.add(amount);
        expected += amount;
        assert_quiescent(&counter, expected);
    }
}

#[test]
fn inc_dec_and_positive_reads() {
    let platform = HostPlatform::new(2);
    let counter = PerCpuCounter::new(&platform, 0, 4).unwrap();
    HostPlatform::set_this_cpu(0);
    for _ in 0..6 {
        counter.dec();
    }
    // Four decrements folded, two are still in CPU 0's delta.
    assert_eq!(counter.read(), -4);
    assert_eq!(counter.read_positive(), 0);
    assert_eq!(counter.sum(), -6);
    assert_eq!(counter.sum_positive(), 0);
    for _ in 0..9 {
        counter.inc();
    }
    assert_eq!(counter.sum(), 3);
    assert_eq!(counter.sum_positive(), 3);
    assert_eq!(counter.read_positive(), counter.read().max(0));
    assert_quiescent(&counter, 3);
}

#[test]
fn set_replaces_the_value() {
    let platform = HostPlatform::new(3);
    let counter = PerCpuCounter::new(&platform, 50, 10).unwrap();
    let mut rng = Rng::new(2);
    for round in 0..50 {
        for _ in 0..30 {
            HostPlatform::set_this_cpu(rng.below(3) as usize);
            counter.add(rng.amount(9));
        }
        let value = rng.amount(1_000) * round;
        counter.set(value);
        assert_quiescent(&counter, value);
    }
    counter.set(i64::MIN);
    assert_quiescent(&counter, i64::MIN);
    counter.set(i64::MAX);
    assert_quiescent(&counter, i64::MAX);
}

#[test]
fn compare_matches_the_exact_value() {
    let platform = HostPlatform::new(4);
    let counter = PerCpuCounter::new(&platform, 0, 100).unwrap();
    // Leave a delta of 99 on every CPU: the shared total still reads 0.
    for cpu in 0..4 {
        HostPlatform::set_this_cpu(cpu);
        counter.add(99);
    }
    assert_eq!(counter.read(), 0);
    assert_eq!(counter.sum(), 396);
    for rhs in [
        -1_000,
        -1,
        0,
        1,
        395,
        396,
        397,
        500,
        1_000,
        i64::MIN,
        i64::MAX,
    ] {
        assert_eq!(counter.compare(rhs), 396.cmp(&rhs), "compare with {rhs}");
    }
    assert_eq!(counter.compare(396), CmpOrdering::Equal);
}

#[test]
fn cpu_numbers_outside_the_counter() {
    let platform = HostPlatform::new(3);
    let counter = PerCpuCounter::new(&platform, 0, 5).unwrap();
    assert_eq!(counter.cpu_delta(3), None);
    assert_eq!(counter.cpu_delta(usize::MAX), None);
    // A thread numbered beyond the counter's CPUs (the host's CPU numbers
    // are per thread): the host's `with_local` wraps it round.
    HostPlatform::set_this_cpu(7);
    counter.add(2);
    assert_eq!(counter.cpu_delta(1), Some(2));
    assert_quiescent(&counter, 2);
}

#[test]
fn arithmetic_wraps_like_the_kernel() {
    let platform = HostPlatform::new(2);
    let counter = PerCpuCounter::new(&platform, i64::MAX, 4).unwrap();
    HostPlatform::set_this_cpu(1);
    counter.inc();
    assert_eq!(counter.sum(), i64::MIN);
    counter.add(3);
    assert_eq!(counter.read(), i64::MIN.wrapping_add(3));
    assert_quiescent(&counter, i64::MIN.wrapping_add(3));
    counter.add(i64::MIN);
    assert_quiescent(&counter, 3);
}

/// Runs `threads` threads that each add `ops` random amounts in
/// `-max_amount..=max_amount`, with `place(thread, rng)` choosing the CPU
/// before every add, and checks the exact sum afterwards.
fn hammer(
    nr_cpus: usize,
    batch: i64,
    threads: usize,
    ops: usize,
    max_amount: i64,
    place: impl Fn(usize, &mut Rng) -> Option<usize> + Sync,
) {
    let platform = HostPlatform::new(nr_cpus);
    let counter = PerCpuCounter::new(&platform, -77, batch).unwrap();
    let added: i64 = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (counter, place) = (&counter, &place);
                scope.spawn(move || {
                    let mut rng = Rng::new(1_000 + thread as u64);
                    let mut added = 0i64;
                    for _ in 0..ops {
                        if let Some(cpu) = place(thread, &mut rng) {
                            HostPlatform::set_this_cpu(cpu);
                        }
                        let amount = rng.amount(max_amount);
                        counter.add(amount);
                        added += amount;
                    }
                    added
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_quiescent(&counter, -77 + added);
}

#[test]
fn threads_pinned_to_their_own_cpus() {
    hammer(4, 16, 4, 100_000, 9, |thread, _| Some(thread));
}

#[test]
fn threads_sharing_cpus() {
    // Eight threads on two CPUs: every slot has four writers and small
    // batches make them fold into each other constantly.
    hammer(2, 3, 8, 500_000, 4, |thread, _| Some(thread % 2));
}

#[test]
fn threads_migrating_between_cpus() {
    // Each thread hops to a random CPU before about one add in eight.
    hammer(3, 5, 6, 200_000, 7, |_, rng| {
        (rng.below(8) == 0).then(|| rng.below(3) as usize)
    });
}

#[test]
fn large_amounts_from_many_threads() {
    hammer(2, 1_000, 6, 20_000, 1 << 40, |thread, _| Some(thread % 2));
}

#[test]
fn concurrent_sums_include_completed_adds_and_never_go_backwards() {
    // Batch 1 folds on every add, so sums race folds all the time.
    for batch in [1, 4] {
        concurrent_sums(batch);
    }
}

fn concurrent_sums(batch: i64) {
    const ADDERS: usize = 4;
    let platform = HostPlatform::new(2);
    let counter = PerCpuCounter::new(&platform, 1_000, batch).unwrap();
    let progress: Vec<AtomicI64> = (0..ADDERS).map(|_| AtomicI64::new(0)).collect();
    let running = AtomicBool::new(true);
    let final_sum = thread::scope(|scope| {
        let adders: Vec<_> = (0..ADDERS)
            .map(|thread| {
                let (counter, progress) = (&counter, &progress);
                scope.spawn(move || {
                    HostPlatform::set_this_cpu(thread % 2);
                    let mut rng = Rng::new(77 + thread as u64);
                    let mut added = 0;
                    for _ in 0..40_000 {
                        let amount = 1 + rng.below(5) as i64;
                        counter.add(amount);
                        added += amount;
                        progress[thread].store(added, Ordering::Release);
                    }
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            let (mut last_sum, mut last_read, mut checks) = (i64::MIN, i64::MIN, 0u64);
            while running.load(Ordering::Acquire) || checks < 100 {
                let completed: i64 = progress.iter().map(|p| p.load(Ordering::Acquire)).sum();
                let read = counter.read();
                let sum = counter.sum();
                assert!(sum >= 1_000 + completed, "sum {sum} misses completed adds");
                assert!(sum >= last_sum, "sum went back from {last_sum} to {sum}");
                assert!(
                    read >= last_read,
                    "read went back from {last_read} to {read}"
                );
                (last_sum, last_read) = (sum, read);
                checks += 1;
            }
            (last_sum, last_read, checks)
        });
        for adder in adders {
            adder.join().unwrap();
        }
        running.store(false, Ordering::Release);
        let (last_sum, last_read, checks) = reader.join().unwrap();
        let final_sum = counter.sum();
        assert!(last_sum <= final_sum && last_read <= final_sum);
        assert!(checks >= 100);
        final_sum
    });
    let added: i64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
    assert_eq!(final_sum, 1_000 + added);
    assert_quiescent(&counter, final_sum);
}

#[test]
fn set_racing_adds_leaves_the_counter_consistent() {
    let platform = HostPlatform::new(2);
    let counter = PerCpuCounter::new(&platform, 0, 3).unwrap();
    thread::scope(|scope| {
        for thread in 0..3 {
            let counter = &counter;
            scope.spawn(move || {
                HostPlatform::set_this_cpu(thread % 2);
                let mut rng = Rng::new(500 + thread as u64);
                for _ in 0..30_000 {
                    counter.add(rng.amount(3));
                }
            });
        }
        scope.spawn(|| {
            for value in 0..2_000 {
                counter.set(value);
            }
        });
    });
    let sum = counter.sum();
    assert_quiescent(&counter, sum);
    counter.set(42);
    assert_quiescent(&counter, 42);
}

#[test]
fn stat_sums_every_cpu() {
    let platform = HostPlatform::new(3);
    let stat = PerCpuStat::new(&platform).unwrap();
    assert_eq!(stat.sum(), 0);
    HostPlatform::set_this_cpu(2);
    stat.inc(&platform);
    stat.add(&platform, 10);
    HostPlatform::set_this_cpu(0);
    stat.add(&platform, 5);
    assert_eq!(stat.cpu_value(0), Some(5));
    assert_eq!(stat.cpu_value(1), Some(0));
    assert_eq!(stat.cpu_value(2), Some(11));
    assert_eq!(stat.cpu_value(3), None);
    assert_eq!(stat.sum(), 16);
    stat.add(&platform, u64::MAX);
    assert_eq!(stat.sum(), 15, "wraps at u64::MAX");
}

#[test]
fn stat_loses_nothing_across_threads() {
    let platform = HostPlatform::new(2);
    let stat = PerCpuStat::new(&platform).unwrap();
    thread::scope(|scope| {
        for thread in 0..6u64 {
            let (platform, stat) = (&platform, &stat);
            scope.spawn(move || {
                let mut rng = Rng::new(thread);
                for _ in 0..20_000 {
                    if rng.below(4) == 0 {
                        HostPlatform::set_this_cpu(rng.below(2) as usize);
                    }
                    stat.add(platform, thread + 1);
                }
            });
        }
    });
    assert_eq!(stat.sum(), 20_000 * (1..=6).sum::<u64>());
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Add { cpu: usize, amount: i64 },
    Read,
    Sum,
    Set { cpu: usize, value: i64 },
    Compare(i64),
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![12 => -60i64..=60, 1 => any::<i64>()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0usize..8, amount()).prop_map(|(cpu, amount)| Op::Add { cpu, amount }),
        2 => Just(Op::Read),
        2 => Just(Op::Sum),
        1 => (0usize..8, amount()).prop_map(|(cpu, value)| Op::Set { cpu, value }),
        2 => amount().prop_map(Op::Compare),
    ]
}

/// The kernel's `percpu_counter` semantics, one thread, no concurrency:
/// a CPU's delta moves into the total as soon as its magnitude reaches
/// `batch`; `set` is an add of the difference on the calling CPU.
struct Model {
    total: i64,
    deltas: Vec<i64>,
    batch: u64,
}

impl Model {
    fn add(&mut self, cpu: usize, amount: i64) {
        let delta = self.deltas[cpu].wrapping_add(amount);
        if delta.unsigned_abs() >= self.batch {
            self.total = self.total.wrapping_add(delta);
            self.deltas[cpu] = 0;
        } else {
            self.deltas[cpu] = delta;
        }
    }

    fn value(&self) -> i64 {
        self.deltas
            .iter()
            .fold(self.total, |sum, d| sum.wrapping_add(*d))
    }
}

proptest! {
    #[test]
    fn matches_the_kernel_model(
        nr_cpus in 1usize..=6,
        batch in prop_oneof![8 => -2i64..=40, 1 => Just(i64::MAX)],
        initial in amount(),
        ops in prop::collection::vec(op(), 0..300),
    ) {
        let platform = HostPlatform::new(nr_cpus);
        let counter = PerCpuCounter::new(&platform, initial, batch).unwrap();
        let mut model = Model { total: initial, deltas: vec![0; nr_cpus], batch: batch.max(1) as u64 };
        for op in ops {
            match op {
                Op::Add { cpu, amount } => {
                    HostPlatform::set_this_cpu(cpu);
                    counter.add(amount);
                    model.add(cpu % nr_cpus, amount);
                }
                Op::Read => {
                    prop_assert_eq!(counter.read_positive(), model.total.max(0));
                }
                Op::Sum => {
                    prop_assert_eq!(counter.sum_positive(), model.value().max(0));
                }
                Op::Set { cpu, value } => {
                    HostPlatform::set_this_cpu(cpu);
                    counter.set(value);
                    let difference = value.wrapping_sub(model.value());
                    model.add(cpu % nr_cpus, difference);
                    prop_assert_eq!(model.value(), value);
                }
                Op::Compare(rhs) => {
                    // Meaningful only while the approximation has not wrapped
                    // round i64 relative to the exact value.
                    let (read, sum) = (i128::from(counter.read()), i128::from(counter.sum()));
                    if (sum - read).unsigned_abs() <= u128::from(counter.max_read_error()) {
                        prop_assert_eq!(counter.compare(rhs), model.value().cmp(&rhs));
                    }
                }
            }
            prop_assert_eq!(counter.read(), model.total);
            prop_assert_eq!(counter.sum(), model.value());
            for (cpu, delta) in model.deltas.iter().enumerate() {
                prop_assert_eq!(counter.cpu_delta(cpu), Some(*delta));
            }
            prop_assert!(read_error(&counter) <= counter.max_read_error());
        }
    }
}
