// SPDX-License-Identifier: GPL-2.0

//! The loops the benchmarks time, over any allocator: one side of an object
//! benchmark is an [`Objects`], of a page benchmark a [`Blocks`], and the
//! same loop runs rmm's side and the kernel's (`kernel_layer/bench/` has
//! both sides and the clock; [`crate::bench_spec`] the sizes, counts and
//! result lines).
//!
//! The multi-CPU measurements are [`SmpJob`]s: every thread gets a role
//! number and runs its share. [`ParallelPairs`] and [`ParallelBatches`]
//! give every thread the same work; the remote-free hand-off, where one
//! thread allocates and another frees, is [`crate::bench_remote`].

use core::hint::black_box;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

/// One side of an object benchmark: objects of one size.
pub trait Objects: Sync {
    /// What the log calls this side.
    const IMPL: &'static str;

    /// One object, or `None` if none could be had.
    fn alloc(&self) -> Option<NonNull<u8>>;

    /// Gives an object back.
    ///
    /// # Safety
    ///
    /// `obj` came from `self.alloc()`, was not given back yet, and is not
    /// used afterwards.
    unsafe fn free(&self, obj: NonNull<u8>);

    /// Slabs created so far, if the allocator counts them (SLUB does only
    /// with `CONFIG_SLUB_STATS`).
    fn slabs_grown(&self) -> Option<u64> {
        None
    }
}

/// `iters` allocation and free pairs; false if an allocation failed.
pub fn pairs<O: Objects>(objects: &O, iters: u32) -> bool {
    for _ in 0..iters {
        let Some(obj) = objects.alloc() else {
            return false;
        };
        // SAFETY: `obj` was just allocated and is not used again.
        unsafe { objects.free(black_box(obj)) };
    }
    true
}

/// One batch round: fills `slots` with new objects, then frees them all in
/// the order they were allocated. False if an allocation failed (what was
/// allocated is freed all the same).
pub fn batch_round<O: Objects>(objects: &O, slots: &mut [*mut u8]) -> bool {
    let mut filled = 0;
    for slot in slots.iter_mut() {
        let Some(obj) = objects.alloc() else { break };
        *slot = obj.as_ptr();
        filled += 1;
    }
    for &obj in &slots[..filled] {
        if let Some(obj) = NonNull::new(obj) {
            // SAFETY: Allocated above, freed once, not used again.
            unsafe { objects.free(obj) };
        }
    }
    filled == slots.len()
}

/// `rounds` batch rounds; stops at the first that fails.
pub fn batch_rounds<O: Objects>(objects: &O, slots: &mut [*mut u8], rounds: u32) -> bool {
    (0..rounds).all(|_| batch_round(objects, slots))
}

/// One side of a page benchmark.
pub trait Blocks {
    /// What the log calls this side.
    const IMPL: &'static str;

    /// A block of `2^order` pages.
    fn alloc(&self, order: u32) -> Option<NonNull<u8>>;

    /// Gives a block back.
    ///
    /// # Safety
    ///
    /// `block` came from `self.alloc(order)`, was not given back yet, and
    /// is not used afterwards.
    unsafe fn free(&self, block: NonNull<u8>, order: u32);
}

/// `iters` allocation and free pairs of blocks of `order`.
pub fn block_pairs<B: Blocks>(blocks: &B, order: u32, iters: u32) -> bool {
    for _ in 0..iters {
        let Some(block) = blocks.alloc(order) else {
            return false;
        };
        // SAFETY: Just allocated with this order, not used again.
        unsafe { blocks.free(black_box(block), order) };
    }
    true
}

/// Rounds of `slots.len()` order-0 pages, freed in allocation order.
pub fn block_batches<B: Blocks>(blocks: &B, slots: &mut [*mut u8], rounds: u32) -> bool {
    for _ in 0..rounds {
        let mut filled = 0;
        for slot in slots.iter_mut() {
            let Some(block) = blocks.alloc(0) else { break };
            *slot = block.as_ptr();
            filled += 1;
        }
        for &block in &slots[..filled] {
            if let Some(block) = NonNull::new(block) {
                // SAFETY: Allocated above at order 0, freed once.
                unsafe { blocks.free(block, 0) };
            }
        }
        if filled != slots.len() {
            return false;
        }
    }
    true
}

/// Work shared out to one thread per CPU.
pub trait SmpJob: Sync {
    /// Runs the share of thread `role`; false if an allocation failed.
    fn run(&self, role: usize) -> bool;
}

/// Every thread does `iters` pairs.
pub struct ParallelPairs<'a, O> {
    /// The allocator.
    pub objects: &'a O,
    /// Pairs per thread.
    pub iters: u32,
}

impl<O: Objects> SmpJob for ParallelPairs<'_, O> {
    fn run(&self, _role: usize) -> bool {
        pairs(self.objects, self.iters)
    }
}

/// Every thread does `rounds` batch rounds of `batch` objects, thread
/// `role` in its own part of `slots` (`batch` slots from `role * batch`).
pub struct ParallelBatches<'a, O> {
    /// The allocator.
    pub objects: &'a O,
    /// Rounds per thread.
    pub rounds: u32,
    /// Objects per round.
    pub batch: usize,
    /// At least `batch` slots per thread.
    pub slots: &'a [AtomicPtr<u8>],
}

impl<O: Objects> SmpJob for ParallelBatches<'_, O> {
    fn run(&self, role: usize) -> bool {
        let Some(mine) = self.slots.get(role * self.batch..(role + 1) * self.batch) else {
            return false;
        };
        for _ in 0..self.rounds {
            let mut filled = 0;
            for slot in mine {
                let Some(obj) = self.objects.alloc() else {
                    break;
                };
                slot.store(obj.as_ptr(), Ordering::Relaxed);
                filled += 1;
            }
            for slot in &mine[..filled] {
                if let Some(obj) = NonNull::new(slot.load(Ordering::Relaxed)) {
                    // SAFETY: Allocated above by this thread, freed once.
                    unsafe { self.objects.free(obj) };
                }
            }
            if filled != mine.len() {
                return false;
            }
        }
        true
    }
}

/// A pretend allocator for the host tests of the benchmark loops: objects
/// are the slots of an array, handed out and taken back with checks.
#[cfg(test)]
pub(crate) mod test_pool {
    extern crate std;

    use super::{Blocks, Objects};
    use core::ptr::NonNull;
    use std::sync::Mutex;
    use std::vec::Vec;

    /// Up to `capacity` objects at once; allocation fails when all are out
    /// or once `fail_after` allocations are done. Panics on a free of
    /// something that is not out.
    pub(crate) struct Pool {
        base: NonNull<u64>,
        state: Mutex<PoolState>,
        _memory: Vec<u64>,
    }

    struct PoolState {
        out: Vec<bool>,
        free: Vec<usize>,
        allocs: usize,
        frees: usize,
        fail_after: usize,
        /// Indices in the order they were freed.
        freed: Vec<usize>,
    }

    // SAFETY: The base pointer is only turned into addresses, never read or
    // written through; the state is behind a mutex.
    unsafe impl Sync for Pool {}
    // SAFETY: As above.
    unsafe impl Send for Pool {}

    impl Pool {
        pub(crate) fn new(capacity: usize) -> Self {
            let mut memory = std::vec![0u64; capacity.max(1)];
            let base = NonNull::new(memory.as_mut_ptr()).unwrap();
            Pool {
                base,
                state: Mutex::new(PoolState {
                    out: std::vec![false; capacity],
                    free: (0..capacity).rev().collect(),
                    allocs: 0,
                    frees: 0,
                    fail_after: usize::MAX,
                    freed: Vec::new(),
                }),
                _memory: memory,
            }
        }

        /// Fails every allocation after `n` more.
        pub(crate) fn fail_after(&self, n: usize) {
            let mut state = self.state.lock().unwrap();
            state.fail_after = state.allocs + n;
        }

        /// Allocations and frees so far, and objects out now.
        pub(crate) fn counts(&self) -> (usize, usize, usize) {
            let state = self.state.lock().unwrap();
            let out = state.out.iter().filter(|&&out| out).count();
            (state.allocs, state.frees, out)
        }

        /// Indices of the objects in the order they were freed.
        pub(crate) fn freed(&self) -> Vec<usize> {
            self.state.lock().unwrap().freed.clone()
        }

        /// The index of the object at `obj`.
        pub(crate) fn index(&self, obj: NonNull<u8>) -> usize {
            (obj.as_ptr() as usize - self.base.as_ptr() as usize) / 8
        }

        fn take(&self) -> Option<NonNull<u8>> {
            let mut state = self.state.lock().unwrap();
            if state.allocs >= state.fail_after {
                return None;
            }
            let index = state.free.pop()?;
            state.out[index] = true;
            state.allocs += 1;
            // SAFETY: `index` is below the capacity, inside `_memory`.
            Some(unsafe { self.base.add(index) }.cast())
        }

        fn give_back(&self, obj: NonNull<u8>) {
            let index = self.index(obj);
            let mut state = self.state.lock().unwrap();
            assert!(state.out[index], "object {index} freed but not out");
            state.out[index] = false;
            state.free.push(index);
            state.frees += 1;
            state.freed.push(index);
        }
    }

    impl Objects for Pool {
        const IMPL: &'static str = "pool";

        fn alloc(&self) -> Option<NonNull<u8>> {
            self.take()
        }

        unsafe fn free(&self, obj: NonNull<u8>) {
            self.give_back(obj);
        }

        fn slabs_grown(&self) -> Option<u64> {
            Some(7)
        }
    }

    impl Blocks for Pool {
        const IMPL: &'static str = "pool";

        fn alloc(&self, order: u32) -> Option<NonNull<u8>> {
            assert!(order <= 10);
            self.take()
        }

        unsafe fn free(&self, block: NonNull<u8>, _order: u32) {
            self.give_back(block);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::test_pool::Pool;
    use super::*;
    use core::ptr::null_mut;
    use std::thread;
    use std::vec::Vec;

    #[test]
    fn pairs_free_what_they_allocate_and_stop_at_a_failure() {
        let pool = Pool::new(1);
        assert!(pairs(&pool, 100));
        assert_eq!(pool.counts(), (100, 100, 0));
        pool.fail_after(5);
        assert!(!pairs(&pool, 10));
        assert_eq!(pool.counts(), (105, 105, 0));
        assert!(pairs(&pool, 0));
        assert_eq!(<Pool as Objects>::IMPL, "pool");
        assert_eq!(pool.slabs_grown(), Some(7));
    }

    #[test]
    fn a_batch_round_frees_in_allocation_order_even_when_short() {
        let pool = Pool::new(10);
        let mut slots = [null_mut(); 6];
        assert!(batch_round(&pool, &mut slots));
        assert_eq!(pool.counts(), (6, 6, 0));
        let first: Vec<usize> = slots
            .iter()
            .map(|&p| pool.index(NonNull::new(p).unwrap()))
            .collect();
        assert_eq!(pool.freed(), first);
        assert!(batch_rounds(&pool, &mut slots, 3));
        assert_eq!(pool.counts(), (24, 24, 0));
        // Four objects only: the round fails, the four go back.
        pool.fail_after(4);
        assert!(!batch_rounds(&pool, &mut slots, 3));
        assert_eq!(pool.counts(), (28, 28, 0));
    }

    #[test]
    fn block_loops_free_every_block() {
        let pool = Pool::new(3);
        assert!(block_pairs(&pool, 10, 50));
        assert_eq!(pool.counts(), (50, 50, 0));
        let mut slots = [null_mut(); 3];
        assert!(block_batches(&pool, &mut slots, 4));
        assert_eq!(pool.counts(), (62, 62, 0));
        // More slots than blocks: the round comes up short.
        let mut slots = [null_mut(); 4];
        assert!(!block_batches(&pool, &mut slots, 2));
        assert_eq!(pool.counts(), (65, 65, 0));
        pool.fail_after(0);
        assert!(!block_pairs(&pool, 0, 1));
    }

    #[test]
    fn parallel_batches_keep_each_thread_in_its_own_slots() {
        const THREADS: usize = 3;
        const BATCH: usize = 5;
        let pool = Pool::new(THREADS * BATCH);
        let slots: Vec<AtomicPtr<u8>> = (0..THREADS * BATCH)
            .map(|_| AtomicPtr::new(null_mut()))
            .collect();
        let job = ParallelBatches {
            objects: &pool,
            rounds: 20,
            batch: BATCH,
            slots: &slots,
        };
        let pairs_job = ParallelPairs {
            objects: &pool,
            iters: 30,
        };
        thread::scope(|scope| {
            let runs: Vec<_> = (0..THREADS)
                .map(|role| {
                    let (job, pairs_job) = (&job, &pairs_job);
                    scope.spawn(move || job.run(role) && pairs_job.run(role))
                })
                .collect();
            for run in runs {
                assert!(run.join().unwrap());
            }
        });
        let total = THREADS * (20 * BATCH + 30);
        assert_eq!(pool.counts(), (total, total, 0));
        // A role beyond the slots has no share and fails.
        assert!(!job.run(THREADS));
    }
}
