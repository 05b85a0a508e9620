// SPDX-License-Identifier: GPL-2.0

//! The mutex around the module's state: a kernel `struct mutex` that can
//! also be tried.
//!
//! The kernel crate's `Mutex` of 6.12 has no `try_lock`, and the memory
//! shrinker needs one: reclaim may run in the very thread that holds the
//! state's mutex (a control-file command allocating with `GFP_KERNEL`), so
//! a shrinker that waited for the mutex could wait for itself. Built with
//! pin-init like the kernel crate's locks, and checked by lockdep the same
//! way (trylocks add no lock-order dependencies).

use super::bindings;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use kernel::init::PinInit;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::types::Opaque;

/// A lockdep class for [`StateMutex`], which must live in static memory.
#[repr(transparent)]
pub struct StaticLockClass(Opaque<bindings::lock_class_key>);

// SAFETY: Lockdep owns the key's contents and serialises access to them;
// Rust only ever passes its address.
unsafe impl Sync for StaticLockClass {}

impl StaticLockClass {
    /// An uninitialised key, as lockdep expects static keys to be.
    pub const fn new() -> Self {
        StaticLockClass(Opaque::uninit())
    }
}

impl Default for StaticLockClass {
    fn default() -> Self {
        Self::new()
    }
}

/// A sleeping mutex around a `T`, with [`StateMutex::try_lock`].
///
/// # Invariants
///
/// `mutex` was initialised by `__mutex_init` and stays pinned; `data` is only
/// reached through a [`StateGuard`], which exists only while the mutex is
/// held.
#[pin_data]
pub struct StateMutex<T> {
    #[pin]
    mutex: Opaque<bindings::mutex>,
    data: UnsafeCell<T>,
}

// SAFETY: The mutex hands `&mut T` to one thread at a time, so sharing or
// sending the whole needs only `T: Send`.
unsafe impl<T: Send> Send for StateMutex<T> {}
// SAFETY: As above.
unsafe impl<T: Send> Sync for StateMutex<T> {}

impl<T> StateMutex<T> {
    /// An initialiser for a mutex around `data`, of lockdep class `key`.
    pub fn new(data: T, name: &'static CStr, key: &'static StaticLockClass) -> impl PinInit<Self> {
        // INVARIANT: `__mutex_init` initialises the mutex in place.
        pin_init!(Self {
            data: UnsafeCell::new(data),
            // SAFETY: `slot` is valid for writes during the call; `name` and
            // `key` are static.
            mutex <- Opaque::ffi_init(|slot| unsafe {
                bindings::__mutex_init(slot, name.as_char_ptr(), key.0.get())
            }),
        })
    }

    /// Waits for the mutex. May sleep.
    pub fn lock(&self) -> StateGuard<'_, T> {
        // SAFETY: The mutex is initialised (type invariant).
        unsafe { bindings::mutex_lock(self.mutex.get()) };
        // INVARIANT: the mutex is held now.
        StateGuard { lock: self }
    }

    /// Takes the mutex if it is free, without waiting.
    pub fn try_lock(&self) -> Option<StateGuard<'_, T>> {
        // SAFETY: The mutex is initialised (type invariant).
        if unsafe { bindings::mutex_trylock(self.mutex.get()) } != 0 {
            // INVARIANT: the mutex is held now.
            Some(StateGuard { lock: self })
        } else {
            None
        }
    }
}

/// Access to the data of a held [`StateMutex`]; unlocks when dropped.
///
/// # Invariants
///
/// The current thread holds `lock`'s mutex.
pub struct StateGuard<'a, T> {
    lock: &'a StateMutex<T>,
}

impl<T> Deref for StateGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: The mutex is held (type invariant), so no other reference
        // to the data exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for StateGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: As above, and `&mut self` makes this the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for StateGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: This thread holds the mutex (type invariant).
        unsafe { bindings::mutex_unlock(self.lock.mutex.get()) };
    }
}
