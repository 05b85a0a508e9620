// SPDX-License-Identifier: GPL-2.0

//! The caches created through the control file (and the demo): a table of
//! at most [`MAX_USER_CACHES`] slots, oldest first, each cache with the
//! objects the control file holds in it.

use super::held::Held;
use super::MAX_USER_CACHES;
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::KmemCache;
use core::alloc::Layout;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

/// A value in bookkeeping memory ([`Platform::alloc_meta`]): a box whose
/// allocator is the platform. A cache with its array of per-CPU pointers
/// is a few hundred bytes, too much to keep 64 of them inline in the state
/// that kernel stacks build and move.
///
/// The platform is not kept, so the value goes back with
/// [`MetaBox::into_inner`]; dropping a `MetaBox` instead leaks its memory
/// (and is a bug, caught by a debug assertion).
///
/// # Invariants
///
/// `ptr` came from `alloc_meta` with `Layout::new::<T>()` and holds an
/// initialised `T` that this value owns.
pub(super) struct MetaBox<T> {
    ptr: NonNull<T>,
}

// SAFETY: a `MetaBox<T>` owns its `T` like a `Box<T>` does.
unsafe impl<T: Send> Send for MetaBox<T> {}
// SAFETY: as above; `&MetaBox<T>` only gives `&T`.
unsafe impl<T: Sync> Sync for MetaBox<T> {}

impl<T> MetaBox<T> {
    /// Moves `value` into bookkeeping memory; gives it back if there is
    /// none.
    pub(super) fn new<P: Platform>(platform: &P, value: T) -> Result<Self, T> {
        let Some(mem) = platform.alloc_meta(Layout::new::<T>(), Gfp::KERNEL) else {
            return Err(value);
        };
        let ptr = mem.cast::<T>();
        // SAFETY: a fresh allocation with `T`'s layout.
        unsafe { ptr.as_ptr().write(value) };
        // INVARIANT: allocated with `T`'s layout and initialised.
        Ok(MetaBox { ptr })
    }

    /// Moves the value out and frees the memory.
    ///
    /// # Safety
    ///
    /// `platform` is the platform `self` was made with.
    pub(super) unsafe fn into_inner<P: Platform>(self, platform: &P) -> T {
        let this = ManuallyDrop::new(self);
        // SAFETY: initialised (type invariant) and moved out once: `this`
        // is not dropped.
        let value = unsafe { this.ptr.as_ptr().read() };
        // SAFETY: allocated by `platform` with this layout (invariant and
        // the caller's guarantee), and nothing uses it any more.
        unsafe { platform.free_meta(this.ptr.cast(), Layout::new::<T>()) };
        value
    }
}

impl<T> Deref for MetaBox<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: initialised and owned (type invariant).
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for MetaBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: initialised and owned, and `self` is borrowed exclusively.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for MetaBox<T> {
    fn drop(&mut self) {
        debug_assert!(false, "MetaBox dropped: its memory leaks");
    }
}

/// A cache created through the control file and the objects held in it.
pub(super) struct UserCache<P: Platform> {
    pub(super) cache: KmemCache<P>,
    pub(super) held: Held,
}

/// The user caches, oldest first.
///
/// # Invariants
///
/// `slots[..len]` are `Some`, in the order the caches were added, and
/// `slots[len..]` are `None`.
pub(super) struct UserCaches<P: Platform> {
    slots: [Option<MetaBox<UserCache<P>>>; MAX_USER_CACHES],
    len: usize,
}

impl<P: Platform> UserCaches<P> {
    pub(super) fn new() -> Self {
        // INVARIANT: empty.
        UserCaches {
            slots: core::array::from_fn(|_| None),
            len: 0,
        }
    }

    /// Number of caches.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The caches, oldest first.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = &UserCache<P>> + '_ {
        self.slots[..self.len].iter().flatten().map(|user| &**user)
    }

    /// The index of the cache named `name`.
    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.iter().position(|user| user.cache.name() == name)
    }

    pub(super) fn get(&self, index: usize) -> Option<&UserCache<P>> {
        self.slots.get(index)?.as_deref()
    }

    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut UserCache<P>> {
        self.slots.get_mut(index)?.as_deref_mut()
    }

    /// Adds `user` as the newest cache; gives it back if
    /// [`MAX_USER_CACHES`] caches exist.
    pub(super) fn push(
        &mut self,
        user: MetaBox<UserCache<P>>,
    ) -> Result<(), MetaBox<UserCache<P>>> {
        let Some(slot) = self.slots.get_mut(self.len) else {
            return Err(user);
        };
        // INVARIANT: the first free slot, after every used one.
        *slot = Some(user);
        self.len += 1;
        Ok(())
    }

    /// Takes the cache at `index` out, moving the newer ones down.
    ///
    /// # Safety
    ///
    /// `platform` made every box [`UserCaches::push`] was given.
    pub(super) unsafe fn remove(&mut self, platform: &P, index: usize) -> Option<UserCache<P>> {
        if index >= self.len {
            return None;
        }
        let boxed = self.slots[index].take()?;
        // INVARIANT: the used slots stay contiguous and in order.
        self.slots[index..self.len].rotate_left(1);
        self.len -= 1;
        // SAFETY: made by `push` with `platform`, per the caller.
        Some(unsafe { boxed.into_inner(platform) })
    }
}
