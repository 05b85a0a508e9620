// SPDX-License-Identifier: GPL-2.0

//! Fault injection for the page allocator: fail every N-th page request.
//!
//! A *page request* is a call of [`super::PageAllocator::alloc_pages`] (a
//! slab growing by a slab, a large `kmalloc`, a `page-alloc` of the control
//! file, each page of a vmalloc area), the mapping of a vmalloc area, or a
//! request the page allocator makes to the platform for a new chunk (a
//! *refill*). With injection on, requests are numbered from 1 from the
//! moment the rate was set, and request `k * N` fails as if memory had run
//! out: `N = 1` fails every request, 0 turns injection off. With the scope
//! [`FailScope::Refill`] only refills are numbered and failed, so that
//! tests can make the pool's refills fail while allocations from the free
//! pages go on. The kernel's `fail_page_alloc` has the same `interval`
//! idea; this one is deterministic so that tests can predict which request
//! fails.
//!
//! Everything is atomic, so requests from any context and any CPU may
//! consult the injector; with injection off a request costs one relaxed
//! load.

use core::fmt;
use core::num::NonZeroUsize;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Which page requests fault injection numbers and fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailScope {
    /// Every page request (the default).
    #[default]
    All,
    /// Only the pool's refills: chunk requests to the platform.
    Refill,
}

impl FailScope {
    /// The scope's word (`fail N refill`; `all` is the default).
    pub const fn as_str(self) -> &'static str {
        match self {
            FailScope::All => "all",
            FailScope::Refill => "refill",
        }
    }
}

impl fmt::Display for FailScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The counters of a [`FaultInjector`], from [`FaultInjector::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// The current rate: every `every`-th request fails; 0 when off.
    pub every: usize,
    /// Which requests are numbered and failed.
    pub scope: FailScope,
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
    /// Only refills are numbered ([`FailScope::Refill`]).
    refills_only: AtomicBool,
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
            refills_only: AtomicBool::new(false),
            since_set: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Fails every `every`-th page request from now on (the next request is
    /// number 1); 0 turns injection off. Requests racing with the change
    /// may be numbered under the old or the new rate.
    pub fn set_every(&self, every: usize) {
        self.set(every, FailScope::All);
    }

    /// Fails every `every`-th request of `scope` from now on (the next
    /// such request is number 1); 0 turns injection off.
    pub fn set(&self, every: usize, scope: FailScope) {
        self.since_set.store(0, Ordering::Relaxed);
        self.refills_only
            .store(scope == FailScope::Refill, Ordering::Relaxed);
        self.every.store(every, Ordering::Relaxed);
    }

    /// The current scope.
    pub fn scope(&self) -> FailScope {
        if self.refills_only.load(Ordering::Relaxed) {
            FailScope::Refill
        } else {
            FailScope::All
        }
    }

    /// The current rate (0: off).
    pub fn every(&self) -> usize {
        self.every.load(Ordering::Relaxed)
    }

    /// Counts one page request that is not a refill (an allocation or a
    /// mapping) and says whether it is to fail.
    #[inline(always)]
    pub fn should_fail(&self) -> bool {
        self.consult(false)
    }

    /// Counts one refill (a chunk request) and says whether it is to fail.
    pub fn should_fail_refill(&self) -> bool {
        self.consult(true)
    }

    #[inline(always)]
    fn consult(&self, refill: bool) -> bool {
        let Some(every) = NonZeroUsize::new(self.every.load(Ordering::Relaxed)) else {
            return false;
        };
        if !refill && self.refills_only.load(Ordering::Relaxed) {
            return false;
        }
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
            scope: self.scope(),
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
                scope: FailScope::All,
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
                scope: FailScope::All,
                requests: 14,
                injected: 6
            }
        );
    }

    #[test]
    fn the_refill_scope_numbers_only_refills() {
        let injector = FaultInjector::new();
        injector.set(2, FailScope::Refill);
        assert_eq!(injector.scope(), FailScope::Refill);
        // Allocations are neither counted nor failed.
        assert!(!(0..10).any(|_| injector.should_fail()));
        let refills: [bool; 4] = core::array::from_fn(|_| injector.should_fail_refill());
        assert_eq!(refills, [false, true, false, true]);
        assert_eq!(
            injector.stats(),
            FaultStats {
                every: 2,
                scope: FailScope::Refill,
                requests: 4,
                injected: 2
            }
        );
        // Every request counts again in the default scope.
        injector.set_every(1);
        assert!(injector.should_fail() && injector.should_fail_refill());
        assert_eq!(injector.scope(), FailScope::All);
    }
}
