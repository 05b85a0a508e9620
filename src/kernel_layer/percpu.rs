// SPDX-License-Identifier: GPL-2.0

//! Per-CPU storage over the kernel's per-CPU allocator (`alloc_percpu`).

use super::bindings;
use super::cpu_local;
use crate::platform::{AllocError, PerCpu};
use core::ffi::c_void;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

/// One `T` for every possible CPU, in the kernel's per-CPU areas.
///
/// # Invariants
///
/// `ptr` is a live per-CPU allocation of `size_of::<T>()` bytes aligned for
/// `T`, and for every CPU number below `nr_cpus` the slot `per_cpu_ptr(ptr,
/// cpu)` holds an initialised `T` owned by this value.
pub struct KernelPerCpu<T> {
    ptr: NonNull<kernel::ffi::c_void>,
    nr_cpus: usize,
    _owns: PhantomData<T>,
}

// SAFETY: The slots are only reached through `&T` (shared) or by `Drop`
// (exclusive), so sending the whole set to another thread is sound if `T` is
// `Send`, and sharing it if `T` is `Sync`.
unsafe impl<T: Send> Send for KernelPerCpu<T> {}
// SAFETY: See above; `get` hands out `&T` to any thread.
unsafe impl<T: Sync> Sync for KernelPerCpu<T> {}

impl<T> KernelPerCpu<T> {
    /// Allocates the per-CPU slots and fills them by calling `init` for CPUs
    /// `0..nr_cpus`.
    pub(crate) fn new(
        nr_cpus: usize,
        mut init: impl FnMut(usize) -> Result<T, AllocError>,
    ) -> Result<Self, AllocError> {
        // The per-CPU allocator needs a non-zero size.
        let size = size_of::<T>().max(1);
        // SAFETY: `rmm_alloc_percpu` may be called with any size and
        // alignment; it returns null on failure.
        let raw = unsafe { bindings::rmm_alloc_percpu(size, align_of::<T>()) };
        let ptr = NonNull::new(raw).ok_or(AllocError)?;
        for cpu in 0..nr_cpus {
            match init(cpu) {
                Ok(value) => {
                    // SAFETY: `ptr` is a live per-CPU allocation sized and
                    // aligned for `T`, and `cpu` is a possible CPU number, so
                    // its slot is valid for writes; it is not initialised yet.
                    unsafe { Self::slot(ptr, cpu).write(value) };
                }
                Err(e) => {
                    for done in 0..cpu {
                        // SAFETY: The slots of CPUs below `cpu` were
                        // initialised above and are dropped once.
                        unsafe { core::ptr::drop_in_place(Self::slot(ptr, done)) };
                    }
                    // SAFETY: `ptr` came from the per-CPU allocator and no
                    // slot holds a live value any more.
                    unsafe { bindings::free_percpu(ptr.as_ptr()) };
                    return Err(e);
                }
            }
        }
        // INVARIANT: every slot below `nr_cpus` was initialised above.
        Ok(KernelPerCpu {
            ptr,
            nr_cpus,
            _owns: PhantomData,
        })
    }

    /// The slot of `cpu` in the per-CPU allocation `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be a live per-CPU allocation and `cpu` below `nr_cpu_ids`.
    unsafe fn slot(ptr: NonNull<kernel::ffi::c_void>, cpu: usize) -> *mut T {
        // SAFETY: The caller guarantees `ptr` is a per-CPU allocation and
        // `cpu` a valid CPU number; `cpu` fits in a `c_uint` because
        // `nr_cpu_ids` does.
        unsafe { bindings::rmm_per_cpu_ptr(ptr.as_ptr(), cpu as u32).cast::<T>() }
    }
}

impl<T: Send + Sync> PerCpu<T> for KernelPerCpu<T> {
    fn get(&self, cpu: usize) -> &T {
        assert!(cpu < self.nr_cpus, "rmm: CPU number {cpu} out of range");
        // SAFETY: By the type invariant, the slot of every CPU below
        // `nr_cpus` holds an initialised `T` that lives as long as `self`.
        unsafe { &*Self::slot(self.ptr, cpu) }
    }

    #[inline(always)]
    fn with_local<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let flags = cpu_local::irq_save();
        // SAFETY: `ptr` is a live per-CPU allocation (type invariant) and
        // interrupts are off, so this CPU's slot, which holds an initialised
        // `T`, is ours until they are back on: no other task runs here, no
        // interrupt handler, and other CPUs reach it only through
        // `on_each_cpu`, an interrupt.
        let this = unsafe { &*cpu_local::this_cpu_ptr(self.ptr.as_ptr()).cast::<T>() };
        let result = f(this);
        cpu_local::irq_restore(flags);
        result
    }
}

impl<T: Send + Sync> KernelPerCpu<T> {
    /// [`crate::platform::Platform::on_each_cpu`] for this allocation.
    pub(crate) fn on_each_cpu(&self, f: &(dyn Fn(usize, &T) + Sync)) {
        let each = |cpu: usize, this: *mut c_void| {
            // SAFETY: `this` is this CPU's slot of our live allocation,
            // initialised (type invariant), reached with interrupts off.
            f(cpu, unsafe { &*this.cast::<T>() })
        };
        // SAFETY: the allocation lives as long as `self`; the `Platform`
        // contract has callers in process context with interrupts on.
        unsafe { cpu_local::on_each_cpu(self.ptr.as_ptr(), &each) };
    }
}

impl<T> Drop for KernelPerCpu<T> {
    fn drop(&mut self) {
        for cpu in 0..self.nr_cpus {
            // SAFETY: By the type invariant the slot holds an initialised `T`;
            // it is dropped exactly once, here.
            unsafe { core::ptr::drop_in_place(Self::slot(self.ptr, cpu)) };
        }
        // SAFETY: `ptr` came from the per-CPU allocator and its slots are no
        // longer used.
        unsafe { bindings::free_percpu(self.ptr.as_ptr()) };
    }
}
