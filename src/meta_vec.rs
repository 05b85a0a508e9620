// SPDX-License-Identifier: GPL-2.0

//! A growable array of plain values in bookkeeping memory
//! ([`Platform::alloc_meta`]), for the few places that hold an unbounded
//! number of things (objects and blocks held through the control file).
//!
//! The core builds without the `alloc` crate, so this is its `Vec`: only
//! `Copy` elements, fallible growth, and the platform passed to every call
//! that allocates or frees (the vector does not keep a reference to it).

use crate::gfp::Gfp;
use crate::platform::{AllocError, Platform};
use core::alloc::Layout;
use core::mem::size_of;
use core::ptr::NonNull;

/// A growable array of `T`.
///
/// # Invariants
///
/// When `cap > 0`, `ptr` is an allocation from `alloc_meta` with the layout
/// `Layout::array::<T>(cap)`, and its first `len <= cap` elements are
/// initialised. When `cap == 0`, `ptr` is dangling and `len == 0`.
pub struct MetaVec<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
}

// SAFETY: `MetaVec` owns its elements like a `Vec` does.
unsafe impl<T: Copy + Send> Send for MetaVec<T> {}
// SAFETY: Shared access only reads the elements.
unsafe impl<T: Copy + Sync> Sync for MetaVec<T> {}

impl<T: Copy> Default for MetaVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> MetaVec<T> {
    /// An empty vector; allocates nothing.
    pub const fn new() -> Self {
        // INVARIANT: `cap == 0` with a dangling pointer and no elements.
        MetaVec {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: By the type invariant the first `len` elements are
        // initialised (and `ptr` is dangling but aligned when `len == 0`).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Appends `value`, growing the array (doubling) when it is full.
    pub fn push<P: Platform>(&mut self, platform: &P, value: T) -> Result<(), AllocError> {
        if self.len == self.cap {
            let new_cap = if self.cap == 0 {
                (256 / size_of::<T>().max(1)).max(4)
            } else {
                self.cap.checked_mul(2).ok_or(AllocError)?
            };
            self.grow(platform, new_cap)?;
        }
        // SAFETY: `len < cap` now, so the slot is inside the allocation.
        unsafe { self.ptr.as_ptr().add(self.len).write(value) };
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: The element at the old `len - 1` is initialised.
        Some(unsafe { self.ptr.as_ptr().add(self.len).read() })
    }

    /// Frees the storage; the vector is empty afterwards.
    pub fn clear<P: Platform>(&mut self, platform: &P) {
        if self.cap > 0 {
            // By the type invariant this is the layout the storage was
            // allocated with, which `grow` already checked.
            if let Ok(layout) = Layout::array::<T>(self.cap) {
                // SAFETY: `ptr` came from `alloc_meta` with `layout` and is
                // not used again: the vector becomes empty and dangling.
                unsafe { platform.free_meta(self.ptr.cast(), layout) };
            }
        }
        // INVARIANT: back to the empty state.
        *self = Self::new();
    }

    fn grow<P: Platform>(&mut self, platform: &P, new_cap: usize) -> Result<(), AllocError> {
        let layout = Layout::array::<T>(new_cap).map_err(|_| AllocError)?;
        let new = platform
            .alloc_meta(layout, Gfp::KERNEL)
            .ok_or(AllocError)?
            .cast::<T>();
        // SAFETY: Both regions are valid for `len` elements and distinct.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.as_ptr(), new.as_ptr(), self.len) };
        let len = self.len;
        self.clear(platform);
        // INVARIANT: `new` has room for `new_cap` elements, `len` of them copied.
        self.ptr = new;
        self.cap = new_cap;
        self.len = len;
        Ok(())
    }
}

impl<T: Copy> Drop for MetaVec<T> {
    fn drop(&mut self) {
        // The storage can only be freed through the platform, which the
        // vector does not keep: owners must call `clear` first.
        debug_assert!(
            self.cap == 0,
            "MetaVec dropped without clear(): storage leaked"
        );
    }
}
