// SPDX-License-Identifier: GPL-2.0

//! A CPU-hotplug teardown callback (`cpuhp_setup_state`), the way SLAB's
//! `cpuup_callback` and SLUB's `slub_cpu_dead` hand back what a CPU held.
//!
//! rmm's per-CPU arrays and page lists are only ever touched by their own
//! CPU or, through an IPI, on it; an offline CPU answers no IPI. So when a
//! CPU has gone down, a callback on the CPU that took it down gives its
//! objects and pages back. The state is a dynamic one of the "prepare"
//! section (`CPUHP_BP_PREPARE_DYN`), whose teardown runs after the CPU is
//! dead, before it can come back.

use super::bindings;
use crate::platform::OfflineCpu;
use kernel::ffi::{c_int, c_uint};
use kernel::prelude::*;
use kernel::str::CStr;

/// What runs when a CPU has gone offline.
pub trait CpuDead {
    /// Hands back what `cpu` held. Runs in process context and may sleep.
    fn cpu_dead(cpu: &OfflineCpu);
}

/// The teardown in the kernel's signature, calling `T::cpu_dead`.
///
/// # Safety
///
/// Only the kernel's hotplug code may call it, for a CPU that is dead.
unsafe extern "C" fn cpu_dead_trampoline<T: CpuDead>(cpu: c_uint) -> c_int {
    // SAFETY: the kernel calls the teardown of a `CPUHP_BP_PREPARE_DYN`
    // state after `cpu` died and before it can come back, and runs no other
    // code on its per-CPU data meanwhile.
    let cpu = unsafe { OfflineCpu::new(cpu as usize) };
    // The token stays here: it is gone when the CPU can come back.
    T::cpu_dead(&cpu);
    0
}

/// A registered teardown callback, removed when dropped.
///
/// # Invariants
///
/// `state` is the dynamic hotplug state `__cpuhp_setup_state` returned.
pub struct CpuDeadCallback {
    state: c_int,
}

impl CpuDeadCallback {
    /// Registers `T::cpu_dead`, to be called for every CPU that goes
    /// offline from now on (not for the ones already offline).
    pub fn register<T: CpuDead>(name: &'static CStr) -> Result<Self> {
        // SAFETY: `name` is static and NUL-terminated; with `invoke` false
        // nothing is called now; the trampoline stays valid until `drop`
        // removes the state (it is a function of this module, which
        // outlives `self`).
        let state = unsafe {
            bindings::__cpuhp_setup_state(
                bindings::cpuhp_state_CPUHP_BP_PREPARE_DYN,
                name.as_char_ptr(),
                false,
                None,
                Some(cpu_dead_trampoline::<T>),
                false,
            )
        };
        if state < 0 {
            return Err(Error::from_errno(state));
        }
        // INVARIANT: a dynamic state was allocated and returned.
        Ok(CpuDeadCallback { state })
    }
}

impl Drop for CpuDeadCallback {
    fn drop(&mut self) {
        // SAFETY: the state was set up by `register` (type invariant);
        // removing it waits for a running callback and calls nothing more.
        unsafe { bindings::__cpuhp_remove_state(self.state, false) };
    }
}
