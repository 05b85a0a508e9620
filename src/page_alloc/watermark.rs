// SPDX-License-Identifier: GPL-2.0

//! Watermarks and the emergency reserve of the page allocator.
//!
//! The kernel keeps three watermarks on the free pages of every zone
//! (`mm/page_alloc.c`, `__setup_per_zone_wmarks`):
//!
//! - `min`: the zone's share of `min_free_kbytes`. Below it lies the
//!   emergency reserve, which only requests that may not fail for lack of
//!   sleep (`GFP_ATOMIC`, `__GFP_HIGH`) may take.
//! - `low` = `min` + delta: when a request would take the free pages below
//!   it, reclaim starts (kswapd is woken).
//! - `high` = `min` + 2 delta: reclaim goes on until the free pages are
//!   back above it.
//!
//! with delta = max(`min` / 4, managed pages × `watermark_scale_factor` /
//! 10000), `watermark_scale_factor` being 10 by default.
//!
//! rmm's pool is one more zone: its managed pages are the pages of the
//! chunks it holds. Its `min` is set by [`Reserve`]: either its share of
//! the kernel's `min_free_kbytes` ([`Reserve::Auto`]: the kernel's reserve
//! times the pool's pages over the kernel's managed pages, from
//! [`ReserveBasis`], as the kernel computes each zone's share), or a fixed
//! size ([`Reserve::Kbytes`]). Refilling means taking a new chunk from the
//! kernel, which only a request that may sleep does, synchronously (rmm
//! has no kswapd); see [`super::PageAllocator::alloc_pages`] for the rules.
//! A reserve of 0 turns the watermarks off (all three are 0): the pool
//! then grows only when a request finds no free block, as it did before
//! it had watermarks.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// The kernel's default `watermark_scale_factor`: the distance between
/// the watermarks is at least this many ten-thousandths of the zone.
pub const WATERMARK_SCALE_FACTOR: usize = 10;
/// Largest reserve that may be set, in KiB: the kernel's upper clamp of
/// its automatic `min_free_kbytes` (256 MiB).
pub const MAX_RESERVE_KB: usize = 262_144;
/// KiB per page.
const KB_PER_PAGE: usize = crate::platform::PAGE_SIZE / 1024;

/// How big rmm's emergency reserve (its `min` watermark) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reserve {
    /// The pool's share of the kernel's `min_free_kbytes`, in proportion to
    /// its size, as the kernel shares it among its zones (the default).
    #[default]
    Auto,
    /// A fixed size in KiB, whatever the size of the pool; 0 turns the
    /// watermarks off.
    Kbytes(usize),
}

impl fmt::Display for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reserve::Auto => f.write_str("auto"),
            Reserve::Kbytes(kb) => write!(f, "{kb}"),
        }
    }
}

/// Why a reserve setting was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadReserve;

impl fmt::Display for BadReserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reserve must be auto or 0 to {MAX_RESERVE_KB} (KiB)")
    }
}

impl Reserve {
    /// Parses `auto` or a decimal number of KiB up to [`MAX_RESERVE_KB`]
    /// (the control file's `reserve` and the module's `reserve=`).
    pub fn parse(word: &[u8]) -> Result<Reserve, BadReserve> {
        if word == b"auto" {
            return Ok(Reserve::Auto);
        }
        if word.is_empty() || word.len() > 9 || !word.iter().all(u8::is_ascii_digit) {
            return Err(BadReserve);
        }
        let kb = word
            .iter()
            .fold(0usize, |acc, &b| acc * 10 + usize::from(b - b'0'));
        if kb > MAX_RESERVE_KB {
            return Err(BadReserve);
        }
        Ok(Reserve::Kbytes(kb))
    }
}

/// What the automatic reserve is computed from: the kernel's reserve and
/// the pages it is shared among, from
/// [`crate::platform::Platform::reserve_basis`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReserveBasis {
    /// The kernel's reserve in pages: the sum of the `min` watermarks of
    /// its low-memory zones (`min_free_kbytes` / 4, up to the rounding of
    /// each zone's share).
    pub min_pages: usize,
    /// The managed pages of those zones, which the reserve is shared
    /// among.
    pub managed_pages: usize,
}

/// The three watermarks of the pool, in pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// Below it lies the emergency reserve.
    pub min: usize,
    /// A request that would take the free pages below it makes a sleeping
    /// caller refill the pool first.
    pub low: usize,
    /// A refill takes chunks until the free pages reach it.
    pub high: usize,
}

impl Watermarks {
    /// The watermarks of a pool of `managed` pages with a reserve of
    /// `reserve` pages: `min` = `reserve`, delta = max(`min` / 4, `managed`
    /// × [`WATERMARK_SCALE_FACTOR`] / 10000), `low` = `min` + delta,
    /// `high` = `min` + 2 delta. All 0 without a reserve.
    pub fn compute(reserve: usize, managed: usize) -> Watermarks {
        if reserve == 0 {
            return Watermarks::default();
        }
        let scaled = managed.saturating_mul(WATERMARK_SCALE_FACTOR) / 10_000;
        let delta = (reserve / 4).max(scaled);
        Watermarks {
            min: reserve,
            low: reserve.saturating_add(delta),
            high: reserve.saturating_add(delta.saturating_mul(2)),
        }
    }

    /// The kernel's `promo` watermark, `high` + delta (for zoneinfo; rmm
    /// does not demote or promote pages).
    pub fn promo(&self) -> usize {
        self.high.saturating_add(self.high.saturating_sub(self.low))
    }
}

/// The reserve in pages for `reserve` on a pool of `managed` pages.
///
/// [`Reserve::Auto`] gives the pool's share of the kernel's reserve, as
/// `__setup_per_zone_wmarks` gives each zone its share of
/// `min_free_kbytes`: `basis.min_pages` × `managed` /
/// `basis.managed_pages`, rounded down (0 if the basis is empty).
pub fn reserve_pages(reserve: Reserve, basis: ReserveBasis, managed: usize) -> usize {
    match reserve {
        Reserve::Kbytes(kb) => kb / KB_PER_PAGE,
        Reserve::Auto => {
            let pages_min = basis.min_pages as u64;
            let share = pages_min.saturating_mul(managed as u64);
            share.checked_div(basis.managed_pages as u64).unwrap_or(0) as usize
        }
    }
}

/// Counters of watermark decisions, from
/// [`super::PageAllocator::watermark_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatermarkStats {
    /// Refills: a request that may sleep found the free pages below `low`
    /// (or no free block of its order) and took chunks from the kernel.
    pub refills: u64,
    /// Chunks those refills took.
    pub refill_chunks: u64,
    /// Refills that got no chunk (the kernel refused, or fault injection).
    pub refill_failures: u64,
    /// Allocations that took the free pages below `low` but not below
    /// `min`: atomic requests, and sleeping ones whose refill failed.
    pub min_allocs: u64,
    /// Allocations that took pages from the reserve below `min` (atomic
    /// requests only).
    pub reserve_allocs: u64,
    /// Pages those allocations took from below `min`.
    pub reserve_pages: u64,
    /// Requests refused by a watermark: `GFP_NOWAIT` below `low`, sleeping
    /// requests below `min` after a failed refill, atomic ones with the
    /// reserve empty.
    pub refused: u64,
}

/// The counters behind [`WatermarkStats`], bumped on slow paths only.
#[derive(Default)]
pub(super) struct WatermarkCounters {
    pub(super) refills: AtomicU64,
    pub(super) refill_chunks: AtomicU64,
    pub(super) refill_failures: AtomicU64,
    pub(super) min_allocs: AtomicU64,
    pub(super) reserve_allocs: AtomicU64,
    pub(super) reserve_pages: AtomicU64,
    pub(super) refused: AtomicU64,
}

impl WatermarkCounters {
    pub(super) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub(super) fn stats(&self) -> WatermarkStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WatermarkStats {
            refills: get(&self.refills),
            refill_chunks: get(&self.refill_chunks),
            refill_failures: get(&self.refill_failures),
            min_allocs: get(&self.min_allocs),
            reserve_allocs: get(&self.reserve_allocs),
            reserve_pages: get(&self.reserve_pages),
            refused: get(&self.refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_follow_the_kernels_formula() {
        assert_eq!(Watermarks::compute(0, 1 << 20), Watermarks::default());
        // Small pool: delta is min / 4.
        assert_eq!(
            Watermarks::compute(64, 1024),
            Watermarks {
                min: 64,
                low: 80,
                high: 96
            }
        );
        // Large pool: delta is 0.1% of it.
        let wm = Watermarks::compute(8, 1 << 20);
        assert_eq!((wm.min, wm.low, wm.high), (8, 8 + 1048, 8 + 2096));
        assert_eq!(wm.promo(), 8 + 3 * 1048);
    }

    #[test]
    fn the_automatic_reserve_is_the_pools_share() {
        // min_free_kbytes 2896 (512 MiB of low memory) is 724 pages.
        let basis = ReserveBasis {
            min_pages: 724,
            managed_pages: 131_072,
        };
        // 724 pages over 131072: 5 for a chunk of 1024 (rounded down).
        assert_eq!(reserve_pages(Reserve::Auto, basis, 1024), 5);
        assert_eq!(reserve_pages(Reserve::Auto, basis, 0), 0);
        assert_eq!(
            reserve_pages(Reserve::Auto, ReserveBasis::default(), 1024),
            0
        );
        assert_eq!(reserve_pages(Reserve::Kbytes(256), basis, 0), 64);
    }

    #[test]
    fn reserve_words_parse() {
        assert_eq!(Reserve::parse(b"auto"), Ok(Reserve::Auto));
        assert_eq!(Reserve::parse(b"0"), Ok(Reserve::Kbytes(0)));
        assert_eq!(
            Reserve::parse(b"262144"),
            Ok(Reserve::Kbytes(MAX_RESERVE_KB))
        );
        for bad in [
            &b""[..],
            b"262145",
            b"-1",
            b"1k",
            b"Auto",
            b"99999999999999999999",
        ] {
            assert_eq!(Reserve::parse(bad), Err(BadReserve), "{bad:?}");
        }
    }
}
