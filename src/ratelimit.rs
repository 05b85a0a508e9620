// SPDX-License-Identifier: GPL-2.0

//! Rate limiting of log lines that users can trigger, as the kernel's
//! `___ratelimit` does for `pr_err_ratelimited`: at most `burst` lines per
//! `interval`, then silence until the interval is over, when one line says
//! how many were suppressed. The exact counts stay available to be shown
//! elsewhere (`rmm_stats`), so nothing is lost but the log stays readable.

/// The kernel's `DEFAULT_RATELIMIT_INTERVAL`: 5 seconds.
pub const DEFAULT_INTERVAL_NS: u64 = 5_000_000_000;
/// The kernel's `DEFAULT_RATELIMIT_BURST`.
pub const DEFAULT_BURST: usize = 10;

/// What to do with one more line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines were dropped in the interval that just
    /// ended (say so first if it is not 0).
    Log {
        /// Lines dropped since the last one logged.
        suppressed: usize,
    },
    /// Drop it.
    Drop,
}

/// A rate limiter for one kind of line.
///
/// # Invariants
///
/// `logged_in_window <= burst`; `missed` counts the lines dropped since the
/// current window began; `total` and `dropped` count every line and every
/// dropped line since creation.
#[derive(Debug)]
pub struct RateLimit {
    interval_ns: u64,
    burst: usize,
    window_start: Option<u64>,
    logged_in_window: usize,
    missed: usize,
    total: usize,
    dropped: usize,
}

impl RateLimit {
    /// A limiter of `burst` lines per `interval_ns` nanoseconds.
    pub const fn new(interval_ns: u64, burst: usize) -> Self {
        RateLimit {
            interval_ns,
            burst,
            window_start: None,
            logged_in_window: 0,
            missed: 0,
            total: 0,
            dropped: 0,
        }
    }

    /// The kernel's defaults: 10 lines per 5 seconds.
    pub const fn kernel_default() -> Self {
        Self::new(DEFAULT_INTERVAL_NS, DEFAULT_BURST)
    }

    /// Decides about one more line at time `now_ns` (a monotonic clock).
    pub fn check(&mut self, now_ns: u64) -> Verdict {
        self.total += 1;
        let expired = match self.window_start {
            None => true,
            // Strictly after the interval, as the kernel's
            // `time_is_before_jiffies(begin + interval)`.
            Some(start) => now_ns.saturating_sub(start) > self.interval_ns,
        };
        let mut suppressed = 0;
        if expired {
            suppressed = self.missed;
            self.window_start = Some(now_ns);
            self.logged_in_window = 0;
            self.missed = 0;
        }
        if self.logged_in_window < self.burst {
            self.logged_in_window += 1;
            Verdict::Log { suppressed }
        } else {
            // A window that just began has room (`burst` is at least 1 in
            // any useful limiter), so nothing suppressed is forgotten here
            // unless `burst` is 0.
            self.missed += 1 + suppressed;
            self.dropped += 1;
            Verdict::Drop
        }
    }

    /// Every line seen.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Every line dropped.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_drops_then_reports_the_count() {
        let mut limit = RateLimit::new(1000, 3);
        let verdicts: [Verdict; 5] = core::array::from_fn(|i| limit.check(i as u64));
        assert_eq!(
            verdicts,
            [
                Verdict::Log { suppressed: 0 },
                Verdict::Log { suppressed: 0 },
                Verdict::Log { suppressed: 0 },
                Verdict::Drop,
                Verdict::Drop
            ]
        );
        // Still inside the window.
        assert_eq!(limit.check(999), Verdict::Drop);
        // Still inside at exactly the interval; the next window says how
        // many went.
        assert_eq!(limit.check(1000), Verdict::Drop);
        assert_eq!(limit.check(1001), Verdict::Log { suppressed: 4 });
        assert_eq!(limit.check(1002), Verdict::Log { suppressed: 0 });
        assert_eq!((limit.total(), limit.dropped()), (9, 4));
    }

    #[test]
    fn thousands_of_lines_in_one_window_log_a_burst() {
        let mut limit = RateLimit::kernel_default();
        let logged = (0..3000)
            .filter(|&i| matches!(limit.check(i), Verdict::Log { .. }))
            .count();
        assert_eq!(logged, DEFAULT_BURST);
        assert_eq!(
            (limit.total(), limit.dropped()),
            (3000, 3000 - DEFAULT_BURST)
        );
    }
}
