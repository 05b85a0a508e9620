// SPDX-License-Identifier: GPL-2.0

//! CPU-local access as the kernel's own fast paths do it: interrupts off on
//! this CPU, this CPU's instance reached through its per-CPU base, no lock.
//!
//! - Interrupts: on kernels that trace interrupt state
//!   (`CONFIG_TRACE_IRQFLAGS`, the lockdep flavour) through the kernel's
//!   `local_irq_save`/`local_irq_restore` (C helpers), so lockdep's view of
//!   the interrupt state stays right; elsewhere with the instructions those
//!   helpers come down to on x86-64 without paravirtualised interrupt
//!   control (`pushf; pop; cli` and `push; popf`), inline.
//! - This CPU's instance: `%gs`-relative load of `this_cpu_off` plus the
//!   per-CPU allocation's offset, which is what `this_cpu_ptr` compiles to.
//! - Other CPUs: [`on_each_cpu`] runs a closure on every online CPU through
//!   the kernel's `on_each_cpu_cond_mask`, in IPI context with interrupts
//!   off, so it excludes that CPU's own CPU-local sections.

use super::bindings;
use core::ffi::c_void;

/// Saved interrupt state, from [`irq_save`].
#[derive(Clone, Copy)]
pub struct IrqFlags(usize);

/// Saves the interrupt state and disables interrupts on this CPU.
#[inline(always)]
pub fn irq_save() -> IrqFlags {
    #[cfg(CONFIG_TRACE_IRQFLAGS)]
    {
        // SAFETY: `local_irq_save` may be called in any context.
        IrqFlags(unsafe { bindings::rmm_local_irq_save() } as usize)
    }
    #[cfg(not(CONFIG_TRACE_IRQFLAGS))]
    {
        let flags: usize;
        // SAFETY: reads RFLAGS and clears IF, as `native_save_fl` followed
        // by `native_irq_disable` do; the stack is left as found.
        unsafe {
            core::arch::asm!(
                "pushfq",
                "pop {flags}",
                "cli",
                flags = out(reg) flags,
                // Not `nomem`: like the kernel's "memory" clobber, the
                // compiler must not move the section's loads and stores
                // (or the per-CPU base read) across `cli`.
                options(preserves_flags)
            )
        };
        IrqFlags(flags)
    }
}

/// Restores the interrupt state saved by [`irq_save`].
#[inline(always)]
pub fn irq_restore(flags: IrqFlags) {
    #[cfg(CONFIG_TRACE_IRQFLAGS)]
    {
        // SAFETY: `flags` came from `rmm_local_irq_save` on this CPU (the
        // caller has stayed on it with interrupts off since).
        unsafe { bindings::rmm_local_irq_restore(flags.0 as _) };
    }
    #[cfg(not(CONFIG_TRACE_IRQFLAGS))]
    {
        // SAFETY: writes back RFLAGS saved by `irq_save` on this CPU, as
        // `native_restore_fl` does; the stack is left as found.
        unsafe {
            core::arch::asm!(
                "push {flags}",
                "popfq",
                flags = in(reg) flags.0,
                // Not `nomem`: nothing of the section may move past `popfq`.
            )
        };
    }
}

/// This CPU's address of the per-CPU allocation `ptr` (`this_cpu_ptr`).
///
/// # Safety
///
/// `ptr` must be a live per-CPU allocation; the caller must not migrate to
/// another CPU while it uses the result (interrupts off, or preemption
/// disabled).
#[inline(always)]
pub unsafe fn this_cpu_ptr(ptr: *mut c_void) -> *mut c_void {
    let offset: usize;
    // SAFETY: `this_cpu_off` is this CPU's per-CPU offset, a per-CPU
    // variable of the kernel read `%gs`-relative as the kernel's own
    // `this_cpu_read` does.
    unsafe {
        core::arch::asm!(
            "movq %gs:{off}, {out}",
            off = sym bindings::this_cpu_off,
            out = out(reg) offset,
            options(att_syntax, nostack, preserves_flags, readonly, pure)
        )
    };
    (ptr as usize).wrapping_add(offset) as *mut c_void
}

/// What [`on_each_cpu`] hands to every CPU.
struct Call<'a> {
    per_cpu: *mut c_void,
    f: &'a (dyn Fn(usize, *mut c_void) + Sync),
}

/// Runs in IPI context (or locally with interrupts off) on every CPU.
///
/// # Safety
///
/// `info` points to a live [`Call`].
unsafe extern "C" fn call_on_this_cpu(info: *mut c_void) {
    // SAFETY: `on_each_cpu` passes a `Call` that outlives the waiting call.
    let call = unsafe { &*info.cast::<Call<'_>>() };
    // SAFETY: reading the CPU number has no preconditions; we cannot
    // migrate with interrupts off.
    let cpu = unsafe { bindings::rmm_raw_smp_processor_id() } as usize;
    // SAFETY: the allocation is live for the call (the caller's borrow) and
    // interrupts are off here.
    let this = unsafe { this_cpu_ptr(call.per_cpu) };
    (call.f)(cpu, this);
}

/// Runs `f(cpu, this CPU's address of per_cpu)` on every online CPU, with
/// interrupts off there, and waits for all of them.
///
/// # Safety
///
/// `per_cpu` must be a live per-CPU allocation for the whole call. Must be
/// called with interrupts enabled, from process context.
pub unsafe fn on_each_cpu(per_cpu: *mut c_void, f: &(dyn Fn(usize, *mut c_void) + Sync)) {
    let call = Call { per_cpu, f };
    // SAFETY: `call` lives until `on_each_cpu_cond_mask` returns, which with
    // `wait` is after every CPU ran the function; the online mask is the
    // kernel's own.
    unsafe {
        bindings::on_each_cpu_cond_mask(
            None,
            Some(call_on_this_cpu),
            (&call as *const Call<'_>).cast_mut().cast(),
            true,
            core::ptr::addr_of!(bindings::__cpu_online_mask),
        )
    };
}
