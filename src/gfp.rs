// SPDX-License-Identifier: GPL-2.0

//! Allocation flags, the subset of the kernel's GFP flags that rmm honours.

use core::fmt;
use core::ops::BitOr;

/// How an allocation may behave, in the manner of the kernel's `gfp_t`.
///
/// rmm distinguishes three things, as the kernel's page allocator does for
/// the flags below:
///
/// - may the caller sleep? Only a sleeping request refills rmm's page pool
///   from the kernel when its free pages fall below the `low` watermark
///   (the kernel's `__GFP_DIRECT_RECLAIM`);
/// - may it use the emergency reserve below the `min` watermark
///   (`__GFP_HIGH`, part of `GFP_ATOMIC`)?
/// - must the memory be zeroed (`__GFP_ZERO`)?
///
/// | flags | sleeps, refills | goes down to |
/// |-------|-----------------|--------------|
/// | [`Gfp::KERNEL`] | yes | `low`, then `min` if the refill failed |
/// | [`Gfp::NOWAIT`] | no | `low` |
/// | [`Gfp::ATOMIC`] | no | `min`, then into the reserve below it |
///
/// The kernel layer translates these into the real GFP flags when it goes
/// to the kernel's page allocator.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Gfp(u32);

impl Gfp {
    const NO_SLEEP_BIT: u32 = 1 << 0;
    const ZERO_BIT: u32 = 1 << 1;
    const HIGH_BIT: u32 = 1 << 2;

    /// Process context, may sleep (`GFP_KERNEL`).
    pub const KERNEL: Gfp = Gfp(0);
    /// Must not sleep and may use the emergency reserve: interrupt context
    /// or under a spinlock (`GFP_ATOMIC`, which carries `__GFP_HIGH`).
    pub const ATOMIC: Gfp = Gfp(Self::NO_SLEEP_BIT | Self::HIGH_BIT);
    /// Must not sleep and may not use the reserve (`GFP_NOWAIT`): fails as
    /// soon as the free pages would fall below the `low` watermark.
    pub const NOWAIT: Gfp = Gfp(Self::NO_SLEEP_BIT);
    /// Return zeroed memory (`__GFP_ZERO`).
    pub const ZERO: Gfp = Gfp(Self::ZERO_BIT);

    /// Whether the caller allows the allocator to sleep.
    pub const fn may_sleep(self) -> bool {
        self.0 & Self::NO_SLEEP_BIT == 0
    }

    /// Whether the request may take pages below the `min` watermark, from
    /// the emergency reserve (`__GFP_HIGH`).
    pub const fn may_use_reserve(self) -> bool {
        self.0 & Self::HIGH_BIT != 0
    }

    /// Whether the memory must be zeroed before it is handed out.
    pub const fn zeroed(self) -> bool {
        self.0 & Self::ZERO_BIT != 0
    }

    /// The same flags without the zeroing request (for chunks, slabs and
    /// bookkeeping, which need no zeroing).
    pub const fn without_zero(self) -> Gfp {
        Gfp(self.0 & !Self::ZERO_BIT)
    }

    /// The kernel's name of the base flags: `GFP_KERNEL`, `GFP_ATOMIC`,
    /// `GFP_NOWAIT`, or `GFP_KERNEL|__GFP_HIGH` for a sleeping request that
    /// may use the reserve.
    pub const fn base_name(self) -> &'static str {
        match (self.may_sleep(), self.may_use_reserve()) {
            (true, false) => "GFP_KERNEL",
            (true, true) => "GFP_KERNEL|__GFP_HIGH",
            (false, true) => "GFP_ATOMIC",
            (false, false) => "GFP_NOWAIT",
        }
    }
}

impl BitOr for Gfp {
    type Output = Gfp;

    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

/// Prints the flags as the kernel's names, e.g. `GFP_ATOMIC|__GFP_ZERO`.
impl fmt::Display for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base_name())?;
        if self.zeroed() {
            f.write_str("|__GFP_ZERO")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gfp({self})")
    }
}
