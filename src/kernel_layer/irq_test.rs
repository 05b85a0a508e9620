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

use super::bindings;
use super::platform::KernelPlatform;
use crate::gfp::Gfp;
use crate::state::Rmm;
use core::sync::atomic::{AtomicUsize, Ordering};
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

/// Runs the test on every online CPU and waits for all of them.
pub fn run(rmm: &Rmm<KernelPlatform>, rounds: usize) -> IrqTestResult {
    let test = IrqTest {
        rmm,
        rounds,
        operations: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
        cpus: AtomicUsize::new(0),
    };
    // SAFETY: `in_interrupt` has the IPI callback's signature; `info` points
    // to `test`, which lives until the call returns, and `wait` makes it
    // return only after every CPU ran the callback. `__cpu_online_mask` is
    // the kernel's mask of online CPUs; only its address is taken.
    unsafe {
        bindings::on_each_cpu_cond_mask(
            None,
            Some(in_interrupt),
            core::ptr::addr_of!(test).cast_mut().cast(),
            true,
            core::ptr::addr_of!(bindings::__cpu_online_mask),
        )
    };
    IrqTestResult {
        cpus: test.cpus.load(Ordering::Relaxed),
        operations: test.operations.load(Ordering::Relaxed),
        failures: test.failures.load(Ordering::Relaxed),
    }
}
