// SPDX-License-Identifier: GPL-2.0

//! The stress test's random choices: its generator, and what one random
//! word decides (the operation, the object's source and size, which
//! thread gets a hand-over), plus how the work and the seeds are shared
//! out among the threads.

use core::num::NonZeroUsize;

/// An xorshift64 generator: cheap, and a run is repeatable from its seed.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        XorShift(if seed == 0 { 1 } else { seed })
    }

    /// The next word (never 0).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// What a thread does in one loop turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate an object and keep it.
    Alloc,
    /// Free one of the objects it holds (allocate if it holds none).
    Free,
    /// Hand one of its objects to another thread (allocate if it holds
    /// none).
    HandOver,
    /// Free an object from its inbox (allocate if the inbox is empty).
    FreeFromInbox,
}

impl Op {
    /// The operation of random word `r` (its low 3 bits) for a thread whose
    /// hands are `full` or not: alloc 4 in 8 (free instead when full),
    /// free 2 in 8, hand over 1 in 8, free from the inbox 1 in 8.
    pub fn choose(r: u64, full: bool) -> Op {
        let choice = r & 7;
        if choice < 4 && !full {
            Op::Alloc
        } else if choice < 6 {
            Op::Free
        } else if choice == 6 {
            Op::HandOver
        } else {
            Op::FreeFromInbox
        }
    }
}

/// Sources of objects: the stress caches `0..KMALLOC_SOURCE`, and kmalloc.
pub const KMALLOC_SOURCE: usize = 4;

/// The largest kmalloc request is `KMALLOC_MIN << KMALLOC_MAX_SHIFT`: the
/// largest generic cache.
pub const KMALLOC_MAX_SHIFT: u32 = 9;

/// The smallest kmalloc size class a request may fall in (room for the
/// stamp): requests go down to `KMALLOC_MIN / 2 + 1` bytes, which that
/// class serves.
pub const KMALLOC_MIN: usize = 16;

/// Where an allocation with random word `r` comes from (its low 3 bits):
/// each stress cache 1 in 8, kmalloc ([`KMALLOC_SOURCE`]) 4 in 8.
pub fn source(r: u64) -> usize {
    ((r & 7) as usize).min(KMALLOC_SOURCE)
}

/// The size of a kmalloc request with random word `r`: every size class
/// from [`KMALLOC_MIN`] bytes to the largest generic cache as likely (bits
/// 3 and up pick the class, a power of two, bits 8 and up a size in it,
/// above the power below).
pub fn kmalloc_size(r: u64) -> usize {
    let shift = ((r >> 3) as u32) % (KMALLOC_MAX_SHIFT + 1);
    let top = KMALLOC_MIN << shift;
    top - ((r >> 8) as usize & (top / 2 - 1))
}

/// Which of `count` held objects random word `r` picks.
pub fn held_index(r: u64, count: NonZeroUsize) -> usize {
    (r as usize) % count
}

/// The thread that thread `id` of `threads` hands an object to for random
/// word `r`: any other thread, each as likely; `None` if there is none.
pub fn hand_over_target(id: usize, threads: NonZeroUsize, r: u64) -> Option<usize> {
    let threads = threads.get();
    NonZeroUsize::new(threads - 1).map(|others| {
        let target = id + 1 + (r as usize) % others;
        if target >= threads {
            target - threads
        } else {
            target
        }
    })
}

/// The operations thread `id` of `threads` does out of `ops` in all: an
/// equal share, the remainder spread over the first threads.
pub fn quota(ops: usize, threads: NonZeroUsize, id: usize) -> usize {
    ops / threads + usize::from(id < ops % threads)
}

/// The seed of the thread on CPU `cpu` in a run started at `clock`:
/// distinct per thread and per run.
pub fn seed(clock: u64, cpu: u32) -> u64 {
    clock ^ (u64::from(cpu) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn xorshift_follows_the_xorshift64_recurrence() {
        // Marsaglia's xorshift64 with shifts 13, 7, 17, worked by hand from 1:
        // 1 ^ 1<<13 = 0x2001; ^ >>7 = 0x2041; ^ <<17 = 0x4082_2041.
        let mut rng = XorShift::new(1);
        assert_eq!(rng.next(), 0x4082_2041);
        // The same from its own state, step by step.
        let mut x: u64 = 0x4082_2041;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert_eq!(rng.next(), x);
    }

    #[test]
    fn xorshift_zero_seed_is_seed_one_and_runs_repeat() {
        let mut zero = XorShift::new(0);
        let mut one = XorShift::new(1);
        for _ in 0..100 {
            let word = zero.next();
            assert_ne!(word, 0);
            assert_eq!(word, one.next());
        }
        let mut a = XorShift::new(0xdead_beef);
        let mut b = a.clone();
        assert!((0..100).all(|_| a.next() == b.next()));
        let mut c = XorShift::new(0xdead_bef0);
        let mut d = XorShift::new(0xdead_beef);
        assert!((0..10).any(|_| c.next() != d.next()));
    }

    #[test]
    fn operations_have_their_shares_and_a_full_thread_frees() {
        let ops: [Op; 8] = core::array::from_fn(|r| Op::choose(r as u64, false));
        assert_eq!(
            ops,
            [
                Op::Alloc,
                Op::Alloc,
                Op::Alloc,
                Op::Alloc,
                Op::Free,
                Op::Free,
                Op::HandOver,
                Op::FreeFromInbox
            ]
        );
        let full: [Op; 8] = core::array::from_fn(|r| Op::choose(r as u64, true));
        assert_eq!(&full[..6], &[Op::Free; 6]);
        assert_eq!(full[6], Op::HandOver);
        assert_eq!(full[7], Op::FreeFromInbox);
        // Only the low three bits count.
        assert_eq!(Op::choose(0xffff_fff8 | 6, false), Op::HandOver);
    }

    #[test]
    fn sources_cover_every_cache_and_kmalloc_half_the_time() {
        let mut counts = [0usize; KMALLOC_SOURCE + 1];
        for r in 0..64u64 {
            counts[source(r)] += 1;
        }
        assert_eq!(counts, [8, 8, 8, 8, 32]);
    }

    #[test]
    fn kmalloc_sizes_fall_in_every_class_from_16_bytes_to_the_largest() {
        let max = KMALLOC_MIN << KMALLOC_MAX_SHIFT;
        assert_eq!(max, 8192);
        let mut seen_powers = [false; KMALLOC_MAX_SHIFT as usize + 1];
        let mut rng = XorShift::new(7);
        for _ in 0..20_000 {
            let r = rng.next();
            let size = kmalloc_size(r);
            let shift = ((r >> 3) as u32) % (KMALLOC_MAX_SHIFT + 1);
            let top = KMALLOC_MIN << shift;
            assert!(size > top / 2 && size <= top, "size {size} for top {top}");
            assert!((KMALLOC_MIN / 2 + 1..=max).contains(&size));
            seen_powers[shift as usize] = true;
        }
        assert!(seen_powers.iter().all(|&seen| seen));
        // The extremes: bits 3.. pick the power, bits 8.. subtract.
        assert_eq!(kmalloc_size(0), 16);
        assert_eq!(kmalloc_size(9 << 3), 8192);
        assert_eq!(kmalloc_size((9 << 3) | (4095 << 8)), 4097);
        assert_eq!(kmalloc_size(230 << 3), 9);
    }

    #[test]
    fn hand_over_goes_to_every_other_thread_never_to_itself() {
        assert_eq!(hand_over_target(0, nz(1), 12345), None);
        for threads in 2..6 {
            for id in 0..threads {
                let mut seen = [false; 6];
                for r in 0..64 {
                    let target = hand_over_target(id, nz(threads), r).unwrap();
                    assert!(target < threads);
                    assert_ne!(target, id);
                    seen[target] = true;
                }
                let others = (0..threads).filter(|&t| t != id);
                assert!(
                    others.clone().all(|t| seen[t]),
                    "{threads} threads, id {id}"
                );
            }
        }
    }

    #[test]
    fn held_index_stays_in_range() {
        for count in 1..70 {
            for r in [0, 1, 63, 64, u64::MAX, 0x1234_5678_9abc] {
                assert!(held_index(r, nz(count)) < count);
            }
        }
    }

    #[test]
    fn quotas_add_up_to_the_operations() {
        for ops in [0, 1, 7, 1_000_000, 1_000_003] {
            for threads in 1..9 {
                let quotas = (0..threads).map(|id| quota(ops, nz(threads), id));
                assert_eq!(quotas.clone().sum::<usize>(), ops);
                let (min, max) = (quotas.clone().min().unwrap(), quotas.max().unwrap());
                assert!(max - min <= 1);
            }
        }
    }

    #[test]
    fn seeds_differ_per_cpu_and_per_clock() {
        assert_ne!(seed(0, 0), seed(0, 1));
        assert_ne!(seed(1, 0), seed(2, 0));
        assert_eq!(seed(5, 3), seed(5, 3));
        assert_eq!(seed(0, 0), 0x9e37_79b9_7f4a_7c15);
    }
}
