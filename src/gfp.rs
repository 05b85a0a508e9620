// SPDX-License-Identifier: GPL-2.0

//! Allocation flags, the subset of the kernel's GFP flags that rmm honours.

use core::ops::BitOr;

/// How an allocation may behave, in the manner of the kernel's `gfp_t`.
///
/// rmm only distinguishes whether the caller may sleep and whether the memory
/// must be zeroed; the kernel layer translates these into real GFP flags when
/// it has to go to the kernel's page allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Gfp(u32);

impl Gfp {
    const ATOMIC_BIT: u32 = 1 << 0;
    const ZERO_BIT: u32 = 1 << 1;

    /// Process context, may sleep (`GFP_KERNEL`).
    pub const KERNEL: Gfp = Gfp(0);
    /// Must not sleep: interrupt context or under a spinlock (`GFP_ATOMIC`).
    pub const ATOMIC: Gfp = Gfp(Self::ATOMIC_BIT);
    /// Return zeroed memory (`__GFP_ZERO`).
    pub const ZERO: Gfp = Gfp(Self::ZERO_BIT);

    /// Whether the caller allows the allocator to sleep.
    pub const fn may_sleep(self) -> bool {
        self.0 & Self::ATOMIC_BIT == 0
    }

    /// Whether the memory must be zeroed before it is handed out.
    pub const fn zeroed(self) -> bool {
        self.0 & Self::ZERO_BIT != 0
    }
}

impl BitOr for Gfp {
    type Output = Gfp;

    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}
