// SPDX-License-Identifier: GPL-2.0

//! The remote-free benchmark's hand-off ([`RemoteFree`]): one thread
//! allocates batches of objects and hands each to a thread on another CPU,
//! which frees it while the first fills the next. Handing over whole
//! batches keeps the threads' own traffic small next to the allocator's.
//!
//! # The protocol
//!
//! [`REMOTE_BUFFERS`] buffers of `batch` slots take turns: batch `k` goes
//! into buffer `k % REMOTE_BUFFERS`. Two counters, each written by one
//! thread, say how far each side is:
//!
//! - the producer fills batch `k` only once `consumed` shows that the batch
//!   that last used its buffer (`k - REMOTE_BUFFERS`) is freed, then
//!   publishes it by storing `produced = k + 1` (release: the slot stores
//!   before it are seen by whoever acquires the new value);
//! - the consumer frees batch `k` once it sees `produced > k` (acquire),
//!   then hands the buffer back by storing `consumed = k + 1` (release: its
//!   reads of the slots are done before the producer may overwrite them).
//!
//! The slots themselves are relaxed atomics: the counters order them. If an
//! allocation fails, the producer frees what it put into the current buffer
//! (never handed over) and sets `failed` *after* its last `produced`; the
//! consumer stops once it sees `failed` and, reading `produced` again,
//! that no further batch was published.
//!
//! The loom model below (`RUSTFLAGS="--cfg loom" cargo test --lib --release
//! bench_remote`) runs this very code on loom's atomics and checks that
//! every object is freed exactly once, by the consumer, after it was
//! allocated, in every interleaving.

use crate::bench_loops::{Objects, SmpJob};
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

// Under loom, the hand-off runs on loom's atomics so that its model checker
// explores every interleaving of this very code.
#[cfg(all(test, loom))]
use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};

#[cfg(not(all(test, loom)))]
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};

/// Buffers between the allocating and the freeing thread: one is filled
/// while the other is freed.
pub const REMOTE_BUFFERS: usize = 2;

/// Thread 0 allocates `batches` batches and hands each to thread 1, which
/// frees it (see the module documentation). `wait` is called in every turn
/// of a wait for the other thread (the kernel's `cond_resched` and
/// `cpu_relax`).
pub struct RemoteFree<'a, O, W> {
    objects: &'a O,
    batches: usize,
    /// Objects per batch.
    batch: usize,
    /// `REMOTE_BUFFERS` buffers of `batch` slots.
    slots: &'a [AtomicPtr<u8>],
    /// Batches filled so far.
    produced: AtomicUsize,
    /// Batches freed so far.
    consumed: AtomicUsize,
    /// The allocating thread gave up.
    failed: AtomicBool,
    wait: W,
}

impl<'a, O: Objects, W: Fn() + Sync> RemoteFree<'a, O, W> {
    /// A hand-off of `batches` batches of `slots.len() / REMOTE_BUFFERS`
    /// objects each.
    pub fn new(objects: &'a O, batches: usize, slots: &'a [AtomicPtr<u8>], wait: W) -> Self {
        RemoteFree {
            objects,
            batches,
            batch: slots.len() / REMOTE_BUFFERS,
            slots,
            produced: AtomicUsize::new(0),
            consumed: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            wait,
        }
    }

    /// Objects handed over in all when nothing fails.
    pub fn objects(&self) -> usize {
        self.batches * self.batch
    }

    /// The buffer of batch `k`.
    fn buffer(&self, k: usize) -> Option<&[AtomicPtr<u8>]> {
        let start = (k % REMOTE_BUFFERS) * self.batch;
        self.slots.get(start..start + self.batch)
    }

    /// The allocating side; false if an allocation failed.
    pub fn produce(&self) -> bool {
        for k in 0..self.batches {
            // Wait until the batch that last used this buffer is freed.
            while k - self.consumed.load(Ordering::Acquire) >= REMOTE_BUFFERS {
                (self.wait)();
            }
            let Some(buffer) = self.buffer(k) else {
                self.failed.store(true, Ordering::Release);
                return false;
            };
            for (filled, slot) in buffer.iter().enumerate() {
                let Some(obj) = self.objects.alloc() else {
                    for slot in &buffer[..filled] {
                        if let Some(obj) = NonNull::new(slot.load(Ordering::Relaxed)) {
                            // SAFETY: Allocated above, never handed over.
                            unsafe { self.objects.free(obj) };
                        }
                    }
                    self.failed.store(true, Ordering::Release);
                    return false;
                };
                slot.store(obj.as_ptr(), Ordering::Relaxed);
            }
            self.produced.store(k + 1, Ordering::Release);
        }
        true
    }

    /// The freeing side; false if the allocating side gave up.
    pub fn consume(&self) -> bool {
        for k in 0..self.batches {
            while self.produced.load(Ordering::Acquire) <= k {
                // `produced` is stored before `failed`: seen `failed`, a
                // fresh `produced` is final.
                if self.failed.load(Ordering::Acquire) && self.produced.load(Ordering::Acquire) <= k
                {
                    return false;
                }
                (self.wait)();
            }
            let Some(buffer) = self.buffer(k) else {
                return false;
            };
            for slot in buffer {
                if let Some(obj) = NonNull::new(slot.load(Ordering::Relaxed)) {
                    // SAFETY: The producer allocated it and handed it over
                    // (published by the release store of `produced`); it is
                    // freed once, here, before the buffer is handed back.
                    unsafe { self.objects.free(obj) };
                }
            }
            self.consumed.store(k + 1, Ordering::Release);
        }
        true
    }
}

impl<O: Objects, W: Fn() + Sync> SmpJob for RemoteFree<'_, O, W> {
    fn run(&self, role: usize) -> bool {
        match role {
            0 => self.produce(),
            _ => self.consume(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;

    use super::*;
    use crate::bench_loops::test_pool::Pool;
    use core::ptr::null_mut;
    use std::thread;
    use std::vec::Vec;

    fn slots(n: usize) -> Vec<AtomicPtr<u8>> {
        (0..n).map(|_| AtomicPtr::new(null_mut())).collect()
    }

    /// Runs both sides on two threads; returns what each said.
    fn run_both<O: Objects, W: Fn() + Sync>(job: &RemoteFree<'_, O, W>) -> (bool, bool) {
        thread::scope(|scope| {
            let consumer = scope.spawn(|| job.run(1));
            let producer = job.run(0);
            (producer, consumer.join().unwrap())
        })
    }

    #[test]
    fn every_batch_is_freed_by_the_other_thread() {
        // Two buffers of 8 objects: the producer can be at most two
        // batches ahead, so 16 objects are enough for 100 batches.
        let pool = Pool::new(REMOTE_BUFFERS * 8);
        let slots = slots(REMOTE_BUFFERS * 8);
        let job = RemoteFree::new(&pool, 100, &slots, thread::yield_now);
        assert_eq!(job.objects(), 800);
        assert_eq!(run_both(&job), (true, true));
        assert_eq!(pool.counts(), (800, 800, 0));
    }

    #[test]
    fn a_failed_allocation_stops_both_sides_and_loses_nothing() {
        for fail_after in [0, 1, 7, 8, 13, 40] {
            let pool = Pool::new(REMOTE_BUFFERS * 8);
            pool.fail_after(fail_after);
            let slots = slots(REMOTE_BUFFERS * 8);
            let job = RemoteFree::new(&pool, 10, &slots, thread::yield_now);
            assert_eq!(run_both(&job), (false, false), "fail after {fail_after}");
            let (allocs, frees, out) = pool.counts();
            assert_eq!((allocs, frees, out), (fail_after, fail_after, 0));
        }
    }

    #[test]
    fn too_few_slots_for_a_batch_hand_over_nothing() {
        let pool = Pool::new(4);
        let slots = slots(1);
        let job = RemoteFree::new(&pool, 3, &slots, thread::yield_now);
        assert_eq!(job.objects(), 0);
        assert_eq!(run_both(&job), (true, true));
        assert_eq!(pool.counts(), (0, 0, 0));
    }
}

/// Model checks with loom: `RUSTFLAGS="--cfg loom" cargo test --lib
/// --release bench_remote`.
///
/// The producer and the consumer are two loom threads running
/// [`RemoteFree::produce`] and [`RemoteFree::consume`] on loom's atomics,
/// with batches of one object so that the buffers are reused within a few
/// steps. The objects come from a pool that checks every free (the object
/// must be out, freed once) and records which thread freed it: loom would
/// show a slot read before the producer's store reached it (a stale or null
/// pointer: an object freed twice or never) or a buffer overwritten before
/// its batch was freed. Mutations tried by hand and caught: the release
/// store or the acquire load of `produced` made relaxed, the consumer's
/// second look at `produced` after seeing `failed` left out, the producer
/// let `REMOTE_BUFFERS + 1` batches ahead. Not caught: the same orderings
/// on `consumed` made relaxed. They keep the consumer's reads of a buffer
/// from seeing the producer's next stores into it (load buffering), which
/// loom does not model.
#[cfg(all(test, loom))]
mod loom_tests {
    extern crate std;

    use super::*;
    use crate::bench_loops::test_pool::Pool;
    use core::ptr::null_mut;
    use loom::thread;
    use std::boxed::Box;
    use std::vec::Vec;

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    /// Leaks `value` for the model's threads, which loom wants `'static`;
    /// [`reclaim`] frees it once they are joined.
    fn leak<T>(value: T) -> &'static T {
        Box::leak(Box::new(value))
    }

    /// Frees what [`leak`] leaked.
    ///
    /// # Safety
    ///
    /// `value` came from [`leak`], and nothing uses it any more.
    unsafe fn reclaim<T>(value: &'static T) {
        // SAFETY: `leak` made it from a `Box`; the caller guarantees that no
        // reference to it is used any more.
        drop(unsafe { Box::from_raw(value as *const T as *mut T) });
    }

    /// `batches` batches of one object through the hand-off, the pool
    /// failing after `fail_after` allocations; checks what both sides say
    /// and that every allocated object was freed once.
    fn hand_off(batches: usize, fail_after: usize) {
        model(move || {
            let pool = leak(Pool::new(REMOTE_BUFFERS + 1));
            pool.fail_after(fail_after);
            let slots: &'static Vec<AtomicPtr<u8>> = leak(
                (0..REMOTE_BUFFERS)
                    .map(|_| AtomicPtr::new(null_mut()))
                    .collect(),
            );
            let wait: fn() = thread::yield_now;
            let job = leak(RemoteFree::new(pool, batches, slots, wait));
            let consumer = thread::spawn(move || job.run(1));
            let produced = job.run(0);
            let consumed = consumer.join().unwrap();
            let ok = fail_after >= batches;
            assert_eq!((produced, consumed), (ok, ok));
            let expected = fail_after.min(batches);
            assert_eq!(pool.counts(), (expected, expected, 0));
            // SAFETY: Both threads are done; nothing uses the three any more
            // (the job first: it borrows the others).
            unsafe {
                reclaim(job);
                reclaim(slots);
                reclaim(pool);
            }
        });
    }

    #[test]
    fn three_batches_through_two_buffers() {
        hand_off(3, usize::MAX);
    }

    #[test]
    fn a_failure_after_the_first_batch() {
        hand_off(3, 1);
    }

    #[test]
    fn a_failure_on_the_first_batch() {
        hand_off(2, 0);
    }
}
