// SPDX-License-Identifier: GPL-2.0

//! Fault injection for the page allocator: fail every N-th page request.
//!
//! A *page request* is a call of [`super::PageAllocator::alloc_pages`] (a
//! slab growing by a slab, a large `kmalloc`, a `page-alloc` of the control
//! file) or a request the page allocator makes to the platform for a new
//! chunk. With injection on, requests are numbered from 1 from the moment
//! the rate was set, and request `k * N` fails as if memory had run out:
//! `N = 1` fails every request, 0 turns injection off. The kernel's
//! `fail_page_alloc` has the same `interval` idea; this one is deterministic
//! so that tests can predict which request fails.
//!
//! Everything is atomic, so requests from any context and any CPU may
//! consult the injector; with injection off a request costs one relaxed
//! load.

use core::num::NonZeroUsize;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The counters of a [`FaultInjector`], from [`FaultInjector::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// The current rate: every `every`-th request fails; 0 when off.
    pub every: usize,
    /// Page requests seen while injection was on (since the allocator was
    /// created, over every rate set).
    pub requests: u64,
    /// Requests failed on purpose (since the allocator was created).
    pub injected: u64,
}

/// Decides which page requests fail on purpose, and counts them.
///
/// # Invariants
///
/// `injected <= requests`; while `every` has stayed at `N > 0`, the
/// requests numbered `k * N` in `since_set` are exactly the injected ones.
pub struct FaultInjector {
    every: AtomicUsize,
    since_set: AtomicUsize,
    requests: AtomicU64,
    injected: AtomicU64,
}

impl Default for FaultInjector {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultInjector {
    /// An injector that fails nothing.
    pub const fn new() -> Self {
        // INVARIANT: nothing seen, nothing injected.
        FaultInjector {
            every: AtomicUsize::new(0),
            since_set: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Fails every `every`-th page request from now on (the next request is
    /// number 1); 0 turns injection off. Requests racing with the change
    /// may be numbered under the old or the new rate.
    pub fn set_every(&self, every: usize) {
        self.since_set.store(0, Ordering::Relaxed);
        self.every.store(every, Ordering::Relaxed);
    }

    /// The current rate (0: off).
    pub fn every(&self) -> usize {
        self.every.load(Ordering::Relaxed)
    }

    /// Counts one page request and says whether it is to fail.
    pub fn should_fail(&self) -> bool {
        let Some(every) = NonZeroUsize::new(self.every.load(Ordering::Relaxed)) else {
            return false;
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let number = self
            .since_set
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        // Division by a `NonZeroUsize`: no divide-by-zero path.
        if number % every != 0 {
            return false;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The rate and the counters.
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            every: self.every(),
            requests: self.requests.load(Ordering::Relaxed),
            injected: self.injected.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(injector: &FaultInjector, requests: usize) -> [bool; 12] {
        let mut out = [false; 12];
        for slot in out.iter_mut().take(requests) {
            *slot = injector.should_fail();
        }
        out
    }

    #[test]
    fn off_fails_nothing_and_counts_nothing() {
        let injector = FaultInjector::new();
        assert_eq!(pattern(&injector, 12), [false; 12]);
        assert_eq!(injector.stats(), FaultStats::default());
    }

    #[test]
    fn every_nth_request_fails_from_the_setting_on() {
        let injector = FaultInjector::new();
        injector.set_every(3);
        let got = pattern(&injector, 12);
        let want: [bool; 12] = core::array::from_fn(|i| (i + 1) % 3 == 0);
        assert_eq!(got, want);
        assert_eq!(
            injector.stats(),
            FaultStats {
                every: 3,
                requests: 12,
                injected: 4
            }
        );
        // Setting the rate again restarts the numbering; the totals go on.
        injector.set_every(1);
        assert_eq!(pattern(&injector, 2)[..2], [true, true]);
        injector.set_every(0);
        assert!(!injector.should_fail());
        assert_eq!(
            injector.stats(),
            FaultStats {
                every: 0,
                requests: 14,
                injected: 6
            }
        );
    }
}
