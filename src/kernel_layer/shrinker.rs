// SPDX-License-Identifier: GPL-2.0

//! A memory shrinker: lets the kernel take back, under memory pressure,
//! the empty slabs and free chunks rmm keeps.

use super::bindings;
use core::ptr::NonNull;
use kernel::ffi::c_ulong;
use kernel::prelude::*;
use kernel::str::CStr;

/// What a shrinker does when the kernel asks.
pub trait ShrinkerOps {
    /// `count_objects`: how many pages could be given back now.
    fn count() -> usize;
    /// `scan_objects`: gives back what it can and returns the pages given
    /// back, or `None` if it can do nothing now (`SHRINK_STOP`).
    fn scan() -> Option<usize>;
}

/// What a scan returns when it can do nothing now (`SHRINK_STOP`).
const SHRINK_STOP: c_ulong = c_ulong::MAX;

/// `count_objects` in the kernel's signature.
///
/// # Safety
///
/// Only the kernel's shrinker code may call it.
unsafe extern "C" fn count_trampoline<T: ShrinkerOps>(
    _shrinker: *mut bindings::shrinker,
    _control: *mut bindings::shrink_control,
) -> c_ulong {
    T::count() as c_ulong
}

/// `scan_objects` in the kernel's signature.
///
/// # Safety
///
/// Only the kernel's shrinker code may call it.
unsafe extern "C" fn scan_trampoline<T: ShrinkerOps>(
    _shrinker: *mut bindings::shrinker,
    _control: *mut bindings::shrink_control,
) -> c_ulong {
    T::scan().map_or(SHRINK_STOP, |pages| pages as c_ulong)
}

/// A registered shrinker, unregistered and freed when dropped.
///
/// # Invariants
///
/// `shrinker` came from `shrinker_alloc` and is registered.
pub struct Shrinker {
    shrinker: NonNull<bindings::shrinker>,
}

// SAFETY: The shrinker is only unregistered (in `drop`), from any thread.
unsafe impl Send for Shrinker {}
// SAFETY: `Shrinker` has no methods taking `&self`.
unsafe impl Sync for Shrinker {}

impl Shrinker {
    /// Registers a shrinker named `name` (shown in debugfs) that runs
    /// `T`'s operations.
    pub fn register<T: ShrinkerOps>(name: &'static CStr) -> Result<Self> {
        // SAFETY: "%s" with one string argument is a valid format; `name` is
        // NUL-terminated and static.
        let raw = unsafe { bindings::shrinker_alloc(0, c"%s".as_ptr().cast(), name.as_char_ptr()) };
        let shrinker = NonNull::new(raw).ok_or(ENOMEM)?;
        // SAFETY: `shrinker_alloc` returned a shrinker that is not
        // registered yet, so nothing else reads these fields now.
        unsafe {
            let s = shrinker.as_ptr();
            (*s).count_objects = Some(count_trampoline::<T>);
            (*s).scan_objects = Some(scan_trampoline::<T>);
            // The kernel's DEFAULT_SEEKS: rebuilding a slab is cheap.
            (*s).seeks = 2;
            bindings::shrinker_register(s);
        }
        // INVARIANT: allocated and registered above.
        Ok(Shrinker { shrinker })
    }
}

impl Drop for Shrinker {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the shrinker is registered;
        // `shrinker_free` unregisters it and waits for running callbacks.
        unsafe { bindings::shrinker_free(self.shrinker.as_ptr()) };
    }
}
