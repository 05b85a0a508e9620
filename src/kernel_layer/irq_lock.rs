// SPDX-License-Identifier: GPL-2.0

//! A spinlock that disables interrupts while held (`spin_lock_irqsave`).
//!
//! The kernel crate of 6.12 offers `SpinLock`, which leaves interrupts on: an
//! interrupt handler on the same CPU allocating with `GFP_ATOMIC` would then
//! spin forever on a lock its own CPU holds. rmm's allocators may be called
//! from interrupt context, so every lock they take is this one. It plugs into
//! the kernel crate's generic [`Lock`] as another [`Backend`], so it is
//! created with pin-init and lockdep sees it like any kernel spinlock.

use super::bindings;
use kernel::sync::lock::{Backend, Lock};

/// A spinlock taken with interrupts disabled on the local CPU.
pub type SpinLockIrq<T> = Lock<T, SpinLockIrqBackend>;

/// [`Backend`] for [`SpinLockIrq`]: a `spinlock_t` with saved interrupt flags.
pub struct SpinLockIrqBackend;

// SAFETY: `spin_lock_irqsave` ensures mutual exclusion like `spin_lock`, and
// `relock` uses the default implementation, which calls `lock` again.
unsafe impl Backend for SpinLockIrqBackend {
    type State = bindings::spinlock_t;
    /// The interrupt flags saved by `spin_lock_irqsave`, restored on unlock.
    type GuardState = kernel::ffi::c_ulong;

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: The caller guarantees that `ptr` is valid for writes and
        // that `name` and `key` live forever.
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: The caller guarantees that `ptr` points to a lock that
        // `init` initialised.
        unsafe { bindings::rmm_spin_lock_irqsave(ptr) }
    }

    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: The caller guarantees that it owns the lock, and `flags`
        // are the ones `lock` saved when it took it.
        unsafe { bindings::rmm_spin_unlock_irqrestore(ptr, *flags) }
    }
}
