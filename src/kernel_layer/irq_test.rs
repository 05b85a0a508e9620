// SPDX-License-Identifier: GPL-2.0

//! A self-test of interrupt safety (`insmod rmm.ko irqtest=N`).
//!
//! Runs `N` rounds of `GFP_ATOMIC` allocations and frees in hard interrupt
//! context on every online CPU at once (a function-call IPI, as
//! `on_each_cpu` sends), through the generic kmalloc caches and the page
//! allocator. On the debug kernel lockdep then knows every rmm lock as
//! taken in hard-interrupt context, and reports any place that takes one
//! with interrupts enabled: the check that rmm cannot deadlock against an
//! interrupt on its own CPU.
//!
//! A second round draws on the page allocator's emergency reserve: every
//! CPU takes order-0 pages with `GFP_ATOMIC` in interrupt context until
//! the pool runs dry (atomic requests never refill it), which takes them
//! below the `min` watermark into the reserve; a second IPI gives them all
//! back. The reserve's counters show how many pages came from it: all of
//! it, `min` pages, when nothing else used the pool meanwhile.
//!
//! Atomic requests never refill rmm's pool, so the test first makes one
//! sleeping allocation, which does: a freshly loaded rmm holds no pages.

use super::bindings;
use super::platform::KernelPlatform;
use crate::gfp::Gfp;
use crate::state::Rmm;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::alloc::{flags, KVVec};
use kernel::ffi::c_void;

/// What the interrupt handlers share.
struct IrqTest<'a> {
    rmm: &'a Rmm<KernelPlatform>,
    rounds: usize,
    operations: AtomicUsize,
    failures: AtomicUsize,
    cpus: AtomicUsize,
}

/// Outcome of [`run`].
pub struct IrqTestResult {
    /// CPUs that ran the test in interrupt context.
    pub cpus: usize,
    /// Allocation and free pairs done.
    pub operations: usize,
    /// Allocations that failed (`GFP_ATOMIC` may fail; nothing else may).
    pub failures: usize,
    /// The reserve round, if its bookkeeping could be allocated.
    pub reserve: Option<ReserveRound>,
}

/// Outcome of the reserve round.
pub struct ReserveRound {
    /// CPUs that took pages.
    pub cpus: usize,
    /// Pages taken in interrupt context before the pool ran dry.
    pub pages: usize,
    /// Allocations that went below `min`.
    pub reserve_allocs: u64,
    /// Pages they took from below `min`.
    pub reserve_pages: u64,
    /// The `min` watermark during the round.
    pub min: usize,
    /// Pages given back in interrupt context (and accepted as valid
    /// frees).
    pub freed: usize,
}

/// The IPI callback: runs in hard interrupt context with interrupts off.
///
/// # Safety
///
/// `info` must point to an [`IrqTest`] that outlives the call.
unsafe extern "C" fn in_interrupt(info: *mut c_void) {
    // SAFETY: `run` passes a pointer to its `IrqTest` and waits for every
    // CPU to finish before it returns.
    let test = unsafe { &*info.cast::<IrqTest<'_>>() };
    test.cpus.fetch_add(1, Ordering::Relaxed);
    let pages = test.rmm.pages();
    let kmalloc = test.rmm.kmalloc();
    for round in 0..test.rounds {
        // Sizes 8 to 4096 and orders 0 to 2, round after round.
        let size = 8usize << (round % 10);
        match kmalloc.kmalloc(pages, size, Gfp::ATOMIC) {
            Ok(obj) => {
                // SAFETY: `obj` came from this kmalloc just now and is not
                // used again.
                let freed = unsafe { kmalloc.kfree(pages, obj) };
                debug_assert!(freed.is_ok());
                test.operations.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                test.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        let order = (round % 3) as u32;
        match pages.alloc_pages(order, Gfp::ATOMIC) {
            Ok(block) => {
                // SAFETY: `block` came from this allocator with this order
                // just now and is not used again.
                let freed = unsafe { pages.free_pages(block, order) };
                debug_assert!(freed.is_ok());
                test.operations.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                test.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs `callback` with `info` on every online CPU and waits for all.
///
/// # Safety
///
/// `callback` must be sound to run in hard interrupt context with `info`,
/// which must stay valid until this returns.
unsafe fn on_every_cpu(callback: unsafe extern "C" fn(*mut c_void), info: *mut c_void) {
    // SAFETY: the caller vouches for `callback` and `info`; `wait` makes
    // this return only after every CPU ran it. `__cpu_online_mask` is the
    // kernel's mask of online CPUs; only its address is taken.
    unsafe {
        bindings::on_each_cpu_cond_mask(
            None,
            Some(callback),
            info,
            true,
            core::ptr::addr_of!(bindings::__cpu_online_mask),
        )
    };
}

/// Runs the test on every online CPU and waits for all of them.
pub fn run(rmm: &Rmm<KernelPlatform>, rounds: usize) -> IrqTestResult {
    let pages = rmm.pages();
    // A sleeping allocation refills the pool, as atomic ones never do.
    if let Ok(page) = pages.alloc_pages(0, Gfp::KERNEL) {
        // SAFETY: just allocated at order 0, not used.
        let _ = unsafe { pages.free_pages(page, 0) };
    }
    let test = IrqTest {
        rmm,
        rounds,
        operations: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
        cpus: AtomicUsize::new(0),
    };
    // SAFETY: `in_interrupt` runs in interrupt context (atomic requests
    // only), and `test` lives until the call returns.
    unsafe { on_every_cpu(in_interrupt, core::ptr::addr_of!(test).cast_mut().cast()) };
    IrqTestResult {
        cpus: test.cpus.load(Ordering::Relaxed),
        operations: test.operations.load(Ordering::Relaxed),
        failures: test.failures.load(Ordering::Relaxed),
        reserve: reserve_round(rmm),
    }
}

/// What the reserve round's interrupt handlers share.
struct Drain<'a> {
    rmm: &'a Rmm<KernelPlatform>,
    /// A slot per page the pool can give; 0 for no page.
    slots: KVVec<AtomicUsize>,
    /// Next slot to fill, then to empty.
    next: AtomicUsize,
    cpus: AtomicUsize,
    freed: AtomicUsize,
}

/// First IPI of the reserve round: takes order-0 pages with `GFP_ATOMIC`
/// into free slots until the pool or the slots run out.
///
/// # Safety
///
/// `info` must point to a [`Drain`] that outlives the call.
unsafe extern "C" fn take_until_dry(info: *mut c_void) {
    // SAFETY: `reserve_round` passes its `Drain` and waits for every CPU.
    let drain = unsafe { &*info.cast::<Drain<'_>>() };
    drain.cpus.fetch_add(1, Ordering::Relaxed);
    let pages = drain.rmm.pages();
    loop {
        let index = drain.next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = drain.slots.get(index) else {
            return;
        };
        match pages.alloc_pages(0, Gfp::ATOMIC) {
            Ok(page) => slot.store(page.as_ptr() as usize, Ordering::Relaxed),
            Err(_) => return,
        }
    }
}

/// Second IPI of the reserve round: gives back the pages of the slots.
///
/// # Safety
///
/// `info` must point to a [`Drain`] that outlives the call, whose slots
/// hold order-0 pages of its allocator taken by [`take_until_dry`].
unsafe extern "C" fn give_back(info: *mut c_void) {
    // SAFETY: `reserve_round` passes its `Drain` and waits for every CPU.
    let drain = unsafe { &*info.cast::<Drain<'_>>() };
    let pages = drain.rmm.pages();
    loop {
        let index = drain.next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = drain.slots.get(index) else {
            return;
        };
        if let Some(page) = NonNull::new(slot.swap(0, Ordering::Relaxed) as *mut u8) {
            // SAFETY: a page taken at order 0 by `take_until_dry`; the swap
            // gives it to this CPU alone.
            if unsafe { pages.free_pages(page, 0) }.is_ok() {
                drain.freed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The reserve round (see the module documentation). `None` if the slots
/// cannot be allocated.
fn reserve_round(rmm: &Rmm<KernelPlatform>) -> Option<ReserveRound> {
    let pages = rmm.pages();
    // Pages cached on per-CPU lists are not counted as free: give them
    // back first, so that the pool runs dry exactly when its free pages do.
    pages.drain_pcp();
    let capacity = pages.stats().pages_free + 64;
    let mut slots = KVVec::with_capacity(capacity, flags::GFP_KERNEL).ok()?;
    for _ in 0..capacity {
        slots.push(AtomicUsize::new(0), flags::GFP_KERNEL).ok()?;
    }
    let drain = Drain {
        rmm,
        slots,
        next: AtomicUsize::new(0),
        cpus: AtomicUsize::new(0),
        freed: AtomicUsize::new(0),
    };
    let before = pages.watermark_stats();
    let min = pages.watermarks().min;
    let info = core::ptr::addr_of!(drain).cast_mut().cast();
    // SAFETY: `take_until_dry` only makes atomic requests and writes slots
    // it claimed; `drain` lives until both calls return.
    unsafe { on_every_cpu(take_until_dry, info) };
    let after = pages.watermark_stats();
    let taken = drain
        .slots
        .iter()
        .filter(|slot| slot.load(Ordering::Relaxed) != 0)
        .count();
    drain.next.store(0, Ordering::Relaxed);
    // SAFETY: the slots hold pages taken by `take_until_dry`, which has
    // finished on every CPU.
    unsafe { on_every_cpu(give_back, info) };
    Some(ReserveRound {
        cpus: drain.cpus.load(Ordering::Relaxed),
        pages: taken,
        reserve_allocs: after.reserve_allocs.wrapping_sub(before.reserve_allocs),
        reserve_pages: after.reserve_pages.wrapping_sub(before.reserve_pages),
        min,
        freed: drain.freed.load(Ordering::Relaxed),
    })
}
